"""The ``ray`` engine: Ray Data ``map_batches`` over a pool of actors that hold the models once.

The driver turns the jobs into a Ray dataset (one row per job), and
``map_batches(_ExplainActor, compute=ActorPoolStrategy(size=workers), num_gpus=1 if the cluster has
GPUs)`` sends batches of ``batch_size`` jobs to the actors. Each actor builds its
:class:`~xcf.Explainer` once (``device="auto"``: its GPU when it has one), then for each batch reads
the images by path, explains them and writes their case folders exactly as the local engine does; it
returns only the small result rows, which stream back to the driver for the progress bar and
``results.csv``. Images and outputs therefore need a filesystem every node sees (NFS, a shared
volume, the one machine) at the same path.

Without ``address`` a local Ray instance is started (``num_cpus = workers``) and shut down at the
end; an already initialized Ray (e.g. started by a test or a notebook) is used as it is. With
``address`` (``"auto"`` on a cluster node, ``"ray://head:10001"`` from outside) the run joins that
cluster; ``XCF_WEIGHTS_DIR`` is passed to the actors when set.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError

if TYPE_CHECKING:
    from ..explainer import Explainer
    from .runner import ExplainerSpec, Job

__all__ = ["run", "check_available", "INSTALL_HINT"]

logger = logging.getLogger(__name__)

INSTALL_HINT = "the ray engine needs Ray, which is not installed: pip install 'xcf[ray]'"

_ENV_PASSED = ("XCF_WEIGHTS_DIR", "XCF_DISABLE_PLUGINS")


def _import_ray():
    try:
        import ray
        import ray.data
    except ImportError as exc:
        raise ConfigError(INSTALL_HINT) from exc
    return ray


def check_available() -> None:
    """Raise a one-line :class:`~xcf.errors.ConfigError` when Ray (with Ray Data) is missing."""
    _import_ray()


class _ExplainActor:
    """Callable class for ``map_batches``: builds the explainer once per actor."""

    def __init__(self, spec: ExplainerSpec, out: str, gif_frames: int | None,
                 env: dict[str, str] | None = None, threads: int | None = None) -> None:
        for k, v in (env or {}).items():
            os.environ[k] = v
        if threads:
            import torch

            torch.set_num_threads(int(threads))
        self.explainer = spec.build()
        self.out = out
        self.gif_frames = gif_frames
        logger.info("xcf actor ready on %s (pid %d)", self.explainer.device, os.getpid())

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        import numpy as np

        from .runner import Job, process_batch

        jobs = [Job.from_json(str(s)) for s in batch["job"]]
        rows = process_batch(self.explainer, jobs, self.out, gif_frames=self.gif_frames)
        return {"row": np.array([json.dumps(r) for r in rows], dtype=object)}


def run(jobs: Sequence[Job], out: str | Path, *, spec: ExplainerSpec, explainer: Explainer | None = None,
        batch_size: int = 16, workers: int | None = None, address: str | None = None,
        gif_frames: int | None = None, on_rows: Callable[[list[dict[str, Any]]], None]) -> None:
    """Explain ``jobs`` on a Ray cluster (or a local Ray instance).

    Args:
        jobs: The jobs to run (already filtered for resume).
        out: Output folder, visible at the same path on every node.
        spec: How each actor builds its explainer (names or picklable instances + config).
        explainer: Unused (the driver's explainer stays on the driver).
        batch_size: Jobs per ``map_batches`` batch (reduced so every actor gets work).
        workers: Actors in the pool (default: one per GPU of the cluster, else 2).
        address: Cluster address; ``None`` starts a local instance unless Ray is initialized.
        gif_frames: Write ``optimization.gif`` with this many frames (``None``: no GIF).
        on_rows: Receives each batch's rows as they arrive.

    Raises:
        ConfigError: Ray is not installed (one line: install ``xcf[ray]``).
    """
    ray = _import_ray()
    env = {k: os.environ[k] for k in _ENV_PASSED if os.environ.get(k)}
    started = False
    if not ray.is_initialized():
        kwargs: dict[str, Any] = {"include_dashboard": False, "logging_level": logging.WARNING,
                                  "runtime_env": {"env_vars": env} if env else None}
        if address:
            ray.init(address=address, **kwargs)
        else:
            ray.init(num_cpus=max(workers or 2, 1), **kwargs)
        started = True
    try:
        resources = ray.cluster_resources()
        gpus = int(resources.get("GPU", 0))
        cpus = int(resources.get("CPU", 1))
        n = workers or (gpus if gpus else min(2, max(cpus, 1)))
        # one CPU slot per actor (a fraction when there are more actors than CPUs); torch threads
        # share the CPUs between the actors
        actor_cpus = 1.0 if n <= cpus else cpus / n
        threads = max(1, cpus // n)
        bs = max(1, min(batch_size, math.ceil(len(jobs) / n)))
        logger.info("ray: %d actors (%s), batch size %d, cluster %s", n,
                    "1 GPU each" if gpus else f"{threads} torch threads each", bs, resources)
        ctx = ray.data.DataContext.get_current()
        with _quiet(ctx):
            items = [{"job": j.to_json()} for j in jobs]
            blocks = max(1, math.ceil(len(items) / bs))
            try:
                ds = ray.data.from_items(items, override_num_blocks=blocks)
            except TypeError:  # Ray < 2.10
                ds = ray.data.from_items(items, parallelism=blocks)
            map_kwargs: dict[str, Any] = {
                "fn_constructor_kwargs": {"spec": spec, "out": str(Path(out).resolve()),
                                          "gif_frames": gif_frames, "env": env,
                                          "threads": None if gpus else threads},
                "batch_size": bs, "batch_format": "numpy",
                "num_gpus": 1 if gpus else 0, "num_cpus": 1 if gpus else actor_cpus,
            }
            strategy = getattr(ray.data, "ActorPoolStrategy", None)
            if strategy is not None:
                map_kwargs["compute"] = strategy(size=n)
            else:  # older Ray
                map_kwargs["concurrency"] = n
            ds = ds.map_batches(_ExplainActor, **map_kwargs)
            for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
                on_rows([json.loads(str(s)) for s in batch["row"]])
    finally:
        if started:
            ray.shutdown()


class _quiet:
    """Turn off Ray Data's per-run console messages for the duration of the run."""

    def __init__(self, ctx: Any) -> None:
        self.ctx = ctx
        self.saved: dict[str, Any] = {}

    def __enter__(self) -> _quiet:
        self.logger = logging.getLogger("ray.data")
        self.level = self.logger.level
        self.logger.setLevel(logging.ERROR)
        for name in ("enable_progress_bars", "print_on_execution_start",
                     "enable_operator_progress_bars"):
            if hasattr(self.ctx, name):
                self.saved[name] = getattr(self.ctx, name)
                setattr(self.ctx, name, False)
        return self

    def __exit__(self, *exc: object) -> None:
        self.logger.setLevel(self.level)
        for name, value in self.saved.items():
            setattr(self.ctx, name, value)
