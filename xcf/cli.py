"""The ``xcf`` command line.

Errors the user caused (a bad file, an unknown label, missing weights, a faulty plugin) print one line
to stderr and exit with status 2, never a traceback; ``--debug`` shows the traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from .commands import COMMANDS, add_component_options, command, config_overrides
from .errors import XcfError

__all__ = ["main", "build_parser", "COMMANDS"]

# the shared option helpers, under the names the command modules used
_add_component_options = add_component_options
_config_overrides = config_overrides


def make_explainer(args: argparse.Namespace, progress=None):
    from .explainer import Explainer

    return Explainer(pack=args.pack, classifier=args.classifier, latent=args.latent,
                     saliency=args.saliency, locality=args.locality, method=args.method,
                     progress=progress, **_config_overrides(args))


class ProgressBar:
    """A progress line on stderr for a long search: the batch, the region level, the step within
    the level's budget and the median target probability of the films still searching. Off when
    stderr is not a terminal, unless forced."""

    def __init__(self, n_images: int, *, enabled: bool | None = None) -> None:
        from tqdm import tqdm

        self.n_images = n_images
        self.done = 0
        self._level = None
        self.bar = tqdm(total=0, unit="step", file=sys.stderr, leave=False, dynamic_ncols=True,
                        disable=not (sys.stderr.isatty() if enabled is None else enabled))

    def __call__(self, level: int, n_levels: int, step: int, budget: int, p_target) -> None:
        if self._level != (level, budget) or step == 1:
            self._level = (level, budget)
            self.bar.reset(total=budget)
            self.bar.set_description(f"films {self.done + 1}-{self.n_images}, region {level + 1}/{n_levels}")
        self.bar.n = step
        p = float(p_target.median()) if p_target.numel() else float("nan")
        self.bar.set_postfix_str(f"p {p:.3f}, {p_target.numel()} searching", refresh=False)
        self.bar.refresh()

    def finished(self, n: int) -> None:
        """``n`` more films are done."""
        self.done += n

    def close(self) -> None:
        self.bar.close()


@command("explain")
def _explain_parser(sub) -> None:
    p = sub.add_parser("explain", help="explain a finding in one or more images",
                       description="Write a local counterfactual for each image: figure.png, "
                                   "input.png, counterfactual.png, difference.png, overlay-change.png, "
                                   "overlay-region.png and report.json. A progress bar on stderr shows "
                                   "the region level, the step and the median p of the films still "
                                   "searching.")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="PNG, JPEG or DICOM file(s)")
    p.add_argument("--target", required=True, help="finding to remove (label name or index)")
    p.add_argument("--out", required=True, help="output folder (one sub-folder per image when several)")
    p.add_argument("--gif", action="store_true",
                   help="also write the optimization path as an animated GIF (optimization.gif)")
    p.add_argument("--gif-frames", type=int, default=20, help="frames of the GIF's path (default 20)")
    _add_component_options(p)
    p.set_defaults(func=_run_explain)


def _run_explain(args: argparse.Namespace) -> int:
    import torch

    bar = ProgressBar(len(args.images))
    # a disabled bar takes no callback: the search then skips the per-step host sync it costs
    explainer = make_explainer(args, progress=None if bar.bar.disable else bar)
    out = Path(args.out)
    tidx = explainer.target_index(args.target)
    # an unreadable image is reported (one line) and skipped; the others are explained
    good, xs = [], []
    for path in args.images:
        try:
            xs.append(explainer.load(path))
            good.append(path)
        except XcfError as exc:
            if len(args.images) == 1:
                raise
            print(f"xcf: error: {str(exc).splitlines()[0]} (skipped)", file=sys.stderr)
    results, paths = [], []
    bs = explainer.batch_size
    for i in range(0, len(xs), bs):
        x = torch.cat(xs[i:i + bs])
        t = torch.full((x.shape[0],), tidx, dtype=torch.long)
        if getattr(args, "gif", False):
            from .gif import explain_with_paths

            cfs, frames = explain_with_paths(explainer, x, t, sources=good[i:i + bs],
                                             frames=args.gif_frames)
        else:
            cfs, frames = explainer.explain_tensor(x, t, sources=good[i:i + bs]), [None] * x.shape[0]
        bar.finished(x.shape[0])
        results += cfs
        paths += frames
    bar.close()
    for path, cf, frames in zip(good, results, paths):
        folder = out if len(args.images) == 1 else out / Path(path).stem
        if frames:
            from .atomic import atomic_dir
            from .gif import GIF_NAME, write_gif

            with atomic_dir(folder) as tmp:  # the GIF lands with the other files, atomically
                cf.save(tmp)
                write_gif(frames, tmp / GIF_NAME)
        else:
            cf.save(folder)
        print(f"{path}: p({cf.target}) {cf.p_input:.3f} -> reconstruction {cf.p_reconstruction:.3f} "
              f"-> counterfactual {cf.p_counterfactual:.3f} in {cf.steps} steps ({cf.status}), "
              f"{cf.seconds:.1f} s -> {folder}")
    return 0 if len(good) == len(args.images) else 2


@command("plugins")
def _plugins_parser(sub) -> None:
    p = sub.add_parser("plugins", help="list every registered component")
    p.add_argument("--kind", choices=["classifier", "latent", "saliency", "locality", "method"])
    p.set_defaults(func=_run_plugins)


def _run_plugins(args: argparse.Namespace) -> int:
    from .registry import get_registry

    reg = get_registry()
    rows = [(s.kind, s.name, s.distribution, s.plugin, s.description) for s in reg.all_specs()
            if args.kind is None or s.kind == args.kind]
    head = ("KIND", "NAME", "PACKAGE", "PLUGIN", "DESCRIPTION")
    widths = [max(len(str(r[i])) for r in [head, *rows]) for i in range(4)]
    for r in [head, *rows]:
        print("  ".join(str(c).ljust(w) for c, w in zip(r[:4], widths)) + "  " + r[4])
    for name, msg in sorted(getattr(reg.pm, "xcf_failed", {}).items()):
        print(f"FAILED plugin '{name}': {msg}")
    return 0


@command("packs")
def _packs_parser(sub) -> None:
    p = sub.add_parser("packs", help="list the shipped packs (classifier + latent model weights)")
    p.set_defaults(func=_run_packs)


def _run_packs(args: argparse.Namespace) -> int:
    from .packs import list_packs, load_pack

    names = list_packs()
    if not names:
        print("no packs found (see XCF_WEIGHTS_DIR)")
    for name in names:
        try:
            pack = load_pack(name)
        except XcfError as exc:  # an incomplete pack is listed, not fatal
            print(f"{name}: unusable - {str(exc).splitlines()[0]}")
            continue
        print(f"{name}: labels {', '.join(pack.labels)} - {pack.description}")
        print(f"  latent models: {', '.join(pack.latent_names)} (the first is the default)")
        extra = [f"{role} {pack.entry[role]}" for role in ("oracle", "inpainter") if pack.entry.get(role)]
        if extra:
            print(f"  {', '.join(extra)}")
    return 0


def _load_extra_commands() -> None:
    # Commands implemented in their own modules register themselves on import.
    import importlib

    for mod in ("xcf.demo", "xcf.train", "xcf.bench", "xcf.engines.runner", "xcf.html_report"):
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as exc:
            if exc.name != mod:
                raise


def build_parser() -> argparse.ArgumentParser:
    _load_extra_commands()
    parser = argparse.ArgumentParser(prog="xcf", description="Local counterfactual explanations for chest X-ray classifiers.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in sorted(COMMANDS):
        COMMANDS[name](sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    args.argv = argv  # the exact command, for manifests and reports
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except XcfError as exc:
        if args.debug:
            raise
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        print(f"xcf: error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("xcf: interrupted; completed outputs are kept", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    # `python -m xcf.cli`: run the importable module's main, where subcommands register themselves
    from xcf.cli import main as _main

    sys.exit(_main())
