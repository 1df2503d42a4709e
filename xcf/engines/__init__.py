"""Explaining datasets at scale: the runner (:mod:`xcf.engines.runner`, ``xcf explain-dataset``) and
the engines that run its jobs.

An engine is a function ``run(jobs, out, *, spec, explainer, batch_size, workers, address,
gif_frames, on_rows)`` that explains every :class:`~xcf.engines.runner.Job`, writes its case folder under
``out/cases/`` and hands each batch's rows to ``on_rows`` as they finish (any order). Both engines
read the same inputs and write the same layout, so a run moves from a laptop to a cluster by
switching ``--engine local`` to ``--engine ray --address ...``, and either can resume the other's
run.

- ``local`` (:mod:`xcf.engines.local`): in-process, batched (``config.batch_size``, ``"auto"``: 8 on a CPU, 16 on a GPU), on the
  explainer's device (``auto``: the GPU when present); the next batch is decoded while the current
  one is optimized.
- ``ray`` (:mod:`xcf.engines.ray_engine`): Ray Data ``map_batches`` over a pool of actors, each
  building the models once (one GPU per actor when the cluster has GPUs). Needs ``pip install
  'xcf[ray]'``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..errors import ConfigError

__all__ = ["ENGINES", "get_engine"]

#: Engine name -> "module:function".
ENGINES: dict[str, str] = {
    "local": "xcf.engines.local:run",
    "ray": "xcf.engines.ray_engine:run",
}


def get_engine(name: str) -> Callable[..., Any]:
    """The run function of an engine by name.

    Raises:
        ConfigError: Unknown engine name (the message lists the valid ones), or the engine's
            package is not installed (the message says what to install).
    """
    if name not in ENGINES:
        raise ConfigError(f"unknown engine '{name}'; valid engines: {', '.join(ENGINES)}")
    import importlib

    module_name, attr = ENGINES[name].split(":")
    module = importlib.import_module(module_name)
    check = getattr(module, "check_available", None)
    if check is not None:
        check()  # e.g. Ray not installed: one line, before any work
    return getattr(module, attr)
