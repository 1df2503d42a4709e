"""``xcf bench``: the benchmarks, reachable from an installed xcf.

Every module ``xcf/bench/NAME.py`` with a ``main(argv) -> int`` is a benchmark, run as
``xcf bench NAME ...``: ``counterfactuals`` (:mod:`xcf.bench.counterfactuals`: methods x
dataset -> rows.csv, summary.md, summary.csv, plots), ``perf`` (:mod:`xcf.bench.perf`: time per
explanation, side by side), ``saliency`` (:mod:`xcf.bench.saliency`: localization of the saliency
methods), and any other such module.
The scripts in the source tree's ``benchmarks/`` folder are thin wrappers around the same entry
points, so ``python benchmarks/counterfactuals.py ...`` and ``xcf bench counterfactuals ...`` are
one program. ``xcf bench NAME --help`` shows each benchmark's options.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
from collections.abc import Sequence

from ..errors import ConfigError

__all__ = ["available_benchmarks", "run_benchmark", "keep_threads"]


def keep_threads(run, argv):
    """``run(argv)``, with torch's thread count restored afterwards (a benchmark's ``--threads``
    must not outlive an in-process call)."""
    import torch

    threads = torch.get_num_threads()
    try:
        return run(argv)
    finally:
        torch.set_num_threads(threads)


def available_benchmarks() -> dict[str, str]:
    """Benchmark name -> module name, found by listing the package (nothing is imported)."""
    names = sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_"))
    return {n: f"{__name__}.{n}" for n in names}


def run_benchmark(name: str, argv: Sequence[str]) -> int:
    """Run benchmark ``name`` with command-line arguments ``argv``; returns the exit status.

    Raises:
        ConfigError: No such benchmark (the message lists them).
    """
    found = available_benchmarks()
    if name not in found:
        raise ConfigError(f"unknown benchmark {name!r}; available: {', '.join(found)}")
    module = importlib.import_module(found[name])
    return int(module.main(list(argv)) or 0)


def _add_parser(sub) -> None:
    p = sub.add_parser(
        "bench", help="run a benchmark: counterfactuals (methods x data), saliency (localization), ...",
        description="Run a benchmark, e.g. counterfactuals (methods x dataset -> rows.csv, "
                    "summary.md, plots) or saliency (localization against ground-truth regions). "
                    "Options after NAME go to the benchmark: `xcf bench counterfactuals --help`.")
    p.add_argument("benchmark", metavar="NAME", help=f"one of: {', '.join(available_benchmarks())}")
    p.add_argument("args", nargs=argparse.REMAINDER, help="the benchmark's own options")
    p.set_defaults(func=lambda a: run_benchmark(a.benchmark, a.args))


def _register_cli() -> None:
    from ..commands import COMMANDS

    COMMANDS["bench"] = _add_parser


_register_cli()
