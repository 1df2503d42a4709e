"""The ``local`` engine: in-process, batched, on the explainer's device.

Three stages overlap: a loader thread decodes the next batch, the main thread optimizes the current
one (on the GPU when there is one), and a writer thread renders and writes the previous batch's case
folders (figures are drawn with matplotlib's thread-safe object API). A batch's rows are reported
only once its folders are written, so ``results.csv`` never names a case that is not on disk.
"""

from __future__ import annotations

import contextlib
import logging
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..explainer import Explainer
    from .runner import ExplainerSpec, Job

__all__ = ["run"]

logger = logging.getLogger(__name__)

#: Batches whose folders may be waiting for the writer (bounds memory when writing is slower).
MAX_PENDING_WRITES = 2


def run(jobs: Sequence[Job], out: str | Path, *, spec: ExplainerSpec | None = None,
        explainer: Explainer | None = None, batch_size: int = 16, workers: int | None = None,
        address: str | None = None, gif_frames: int | None = None,
        on_rows: Callable[[list[dict[str, Any]]], None]) -> None:
    """Explain ``jobs`` in batches of ``batch_size`` in this process.

    Args:
        jobs: The jobs to run (already filtered for resume).
        out: Output folder; cases go to ``out/cases/<id>``.
        spec: Used to build the explainer when ``explainer`` is not given.
        explainer: A built explainer (preferred: the models are loaded once).
        batch_size: Images optimized together.
        workers, address: Ray options; ignored here (a warning says so).
        gif_frames: Write ``optimization.gif`` with this many frames (``None``: no GIF).
        on_rows: Receives each batch's rows once its case folders are written.
    """
    from .runner import compute_batch, load_batch, save_batch

    if workers not in (None, 1) or address:
        logger.warning("the local engine runs in this process; --workers/--address are ignored "
                       "(use --engine ray)")
    if explainer is None:
        if spec is None:
            raise ValueError("give an explainer or a spec")
        explainer = spec.build()
    out = Path(out)
    batches = [list(jobs[i:i + batch_size]) for i in range(0, len(jobs), batch_size)]
    if not batches:
        return
    pending: deque[Future] = deque()
    with ThreadPoolExecutor(1, thread_name_prefix="xcf-load") as loader, \
            ThreadPoolExecutor(1, thread_name_prefix="xcf-write") as writer:
        future = loader.submit(load_batch, explainer, batches[0])
        try:
            for i in range(len(batches)):
                good, x, errors = future.result()
                if i + 1 < len(batches):
                    future = loader.submit(load_batch, explainer, batches[i + 1])
                if good and x is not None:
                    items, failed = compute_batch(explainer, good, x, gif_frames=gif_frames)
                    errors = errors + failed
                    if items:
                        pending.append(writer.submit(save_batch, out, items))
                if errors:
                    on_rows(errors)
                while pending and (pending[0].done() or len(pending) > MAX_PENDING_WRITES):
                    on_rows(pending.popleft().result())
            while pending:
                on_rows(pending.popleft().result())
        except BaseException:
            future.cancel()
            # folders being written complete (each atomically); report them before leaving
            while pending:
                with contextlib.suppress(BaseException):
                    on_rows(pending.popleft().result())
            raise
