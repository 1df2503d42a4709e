"""The registry of ``xcf`` subcommands and the options they share.

Each module that implements a subcommand adds a function ``add(subparsers)`` to :data:`COMMANDS`
when it is imported; :mod:`xcf.cli` imports those modules and builds the parser. Neither side
imports the other's module at import time.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

__all__ = ["COMMANDS", "command", "add_component_options", "config_overrides"]

#: subcommand name -> function(subparsers) adding it; later modules add theirs here.
COMMANDS: dict[str, Callable[[argparse._SubParsersAction], None]] = {}


def command(name: str):
    def deco(fn):
        COMMANDS[name] = fn
        return fn
    return deco


def add_component_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--pack", help="a shipped pack (classifier + latent model), see `xcf packs`")
    p.add_argument("--classifier", help="registered classifier name (see `xcf plugins`)")
    p.add_argument("--latent", help="registered latent-model name, or one of the pack's trained latent "
                                    "models (`xcf packs`, e.g. phantom-vae)")
    p.add_argument("--saliency", help="saliency method (default: the method's)")
    p.add_argument("--locality", default="masked-l2", help="locality loss (default: masked-l2)")
    p.add_argument("--method", "--preset", dest="method",
                   help="counterfactual method (`xcf plugins --kind method`): local-fill-in-mask (the "
                        "default; local-in-mask where the pack has no inpainter), seed (the seed's "
                        "method exactly), local, local-fill, local-exemplar, fast, early-stop, "
                        "latent-shift; --preset is an alias")
    p.add_argument("--steps", type=int, help="optimizer steps per region level (default: the method's, "
                                             "200 in every shipped method)")
    p.add_argument("--lr", type=float, help="Adam learning rate (default: the method's; local-in-mask 1.0, local-fill-in-mask 0.2, seed 0.1)")
    p.add_argument("--stop-probability", type=float, help="stop a sample once p(target) is below this")
    p.add_argument("--seed", type=int, help="random seed (default 0)")
    p.add_argument("--device", help="cpu, cuda, cuda:N, mps or auto (default cpu)")
    p.add_argument("--batch-size", type=int, help="images optimized together (default: 8 on a CPU, 16 on a GPU)")


def config_overrides(args: argparse.Namespace) -> dict:
    out = {}
    for key in ("steps", "lr", "stop_probability", "seed", "device", "batch_size"):
        val = getattr(args, key, None)
        if val is not None:
            out[key] = val
    return out


