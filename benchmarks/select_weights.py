"""Pick among weights trained side by side and give the winner the name its pack uses.

A GPU run (benchmarks/gpu_retrain.sh) trains candidate recipes under their own names
(``phantom-segnet-ae-cw01``, ...) with ``--out weights`` and no ``--pack``; this script then keeps one
per role, by a rule fixed before the run:

- ``classifier``: the candidate replaces ``--target`` when its smallest held-out ROC AUC over the
  findings is higher than the target's (the goal is a floor on every finding).
- ``latent``: among candidates whose held-out PSNR is at most ``--max-psnr-loss`` dB below the
  target's, the one with the smallest held-out probability shift ``|p(x) - p(x_hat)|``; it replaces
  the target when that shift is below ``--baseline-shift`` (the shipped pair's shift against the
  classifier shipped *now*, measured by benchmarks/recon_shift.py - the manifest's own figure may be
  against an earlier classifier) or when ``--classifier-changed`` says the shipped pair is stale.
- ``--pick NAME --why TEXT`` replaces the rule with a choice made on other measurements (e.g. the
  counterfactual benchmark); the reason is recorded with the candidates' metrics.

The winner's file is renamed to the target's, its manifest entry takes the target's name (the
recorded command's ``--name`` with it: the name does not enter training, so the command reproduces
the same weights), and the entry records every candidate's metrics under ``selection``. Losers'
files and entries are deleted. The manifest is edited with ``xcf.train.edit_manifest`` (the lock
and atomic write ``xcf train`` uses).

    python benchmarks/select_weights.py latent --weights weights --target phantom-segnet-ae \\
        --candidates phantom-segnet-ae-cw01,phantom-segnet-ae-cw03 --baseline-shift 0.112
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path


def _min_auc(entry: dict) -> float:
    return min(entry["metrics"]["test_auc"].values())


def _shift(entry: dict) -> float:
    return float(entry["metrics"]["test"]["prob_shift_mean"])


def _psnr(entry: dict) -> float:
    return float(entry["metrics"]["test"]["psnr_db"])


def _summary(entry: dict, role: str) -> dict:
    m = entry["metrics"]
    if role == "classifier":
        return {"test_auc": m["test_auc"], "command": entry["command"]}
    t = m["test"]
    return {"prob_shift_mean": t["prob_shift_mean"], "prob_shift_median": t.get("prob_shift_median"),
            "psnr_db": t["psnr_db"], "ssim": t["ssim"], "command": entry["command"]}


def choose(role: str, target: dict | None, candidates: dict[str, dict], *, baseline_shift: float | None,
           max_psnr_loss: float, classifier_changed: bool) -> tuple[str | None, str]:
    """The winning candidate's name (``None``: keep the target) and the reason, in words."""
    if not candidates:
        return None, "no candidate finished"
    if role == "classifier":
        best = max(candidates, key=lambda n: _min_auc(candidates[n]))
        if target is None:
            return best, "nothing shipped"
        if _min_auc(candidates[best]) > _min_auc(target):
            return best, f"smallest test AUC {_min_auc(candidates[best]):.4f} > shipped {_min_auc(target):.4f}"
        return None, f"best candidate's smallest test AUC {_min_auc(candidates[best]):.4f} <= shipped {_min_auc(target):.4f}"
    floor = _psnr(target) - max_psnr_loss if target is not None else float("-inf")
    ok = {n: e for n, e in candidates.items() if _psnr(e) >= floor}
    if not ok:
        return None, f"every candidate's PSNR is more than {max_psnr_loss} dB below the shipped model's"
    best = min(ok, key=lambda n: _shift(ok[n]))
    if classifier_changed or baseline_shift is None or _shift(ok[best]) < baseline_shift:
        why = "classifier changed" if classifier_changed else f"shift {_shift(ok[best]):.4f} < shipped {baseline_shift}"
        return best, why
    return None, f"best candidate's shift {_shift(ok[best]):.4f} >= shipped {baseline_shift}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("role", choices=["classifier", "latent"])
    p.add_argument("--weights", default="weights")
    p.add_argument("--target", required=True, help="the name the pack uses, e.g. phantom-segnet-ae")
    p.add_argument("--candidates", required=True, help="comma-separated candidate entry names")
    p.add_argument("--baseline-shift", type=float, help="shipped pair's shift against the current classifier")
    p.add_argument("--max-psnr-loss", type=float, default=1.0)
    p.add_argument("--classifier-changed", action="store_true")
    p.add_argument("--pick", help="candidate to ship whatever the rule says (needs --why)")
    p.add_argument("--why", help="the measurement behind --pick, recorded in the manifest")
    from xcf.train import edit_manifest

    args = p.parse_args(argv)
    wdir = Path(args.weights)
    if not (wdir / "manifest.json").is_file():
        p.error(f"{wdir / 'manifest.json'} does not exist; --weights must be a folder `xcf train` wrote")
    names = [n.strip() for n in args.candidates.split(",") if n.strip()]
    if args.pick is not None and (args.pick not in names or not args.why):
        p.error(f"--pick must name one of --candidates ({', '.join(names)}) and come with --why")
    with edit_manifest(wdir) as data:
        weights = data["weights"]
        target = weights.get(args.target)
        cands = {n: weights[n] for n in names if n in weights and (wdir / weights[n]["file"]).is_file()}
        missing = [n for n in names if n not in cands]
        if args.pick is not None:
            if args.pick not in cands:
                p.error(f"candidate {args.pick!r} has no entry or no file in {wdir}")
            win, why = args.pick, f"picked by hand: {args.why}"
            rule = f"--pick of benchmarks/select_weights.py ({why})"
        else:
            win, why = choose(args.role, target, cands, baseline_shift=args.baseline_shift,
                              max_psnr_loss=args.max_psnr_loss, classifier_changed=args.classifier_changed)
            rule = f"{args.role} rule of benchmarks/select_weights.py ({why})"
        record = {"rule": rule,
                  "candidates": {n: _summary(e, args.role) for n, e in cands.items()},
                  "unfinished": missing,
                  "previous": _summary(target, args.role) if target is not None else None}
        if win is not None:
            entry = dict(cands[win])
            entry["file"] = f"{args.target}.safetensors"
            entry["command"] = entry["command"].replace(f"--name {win}", f"--name {args.target}")
            entry["selection"] = record
            os.replace(wdir / cands[win]["file"], wdir / entry["file"])
            weights[args.target] = entry
        for n, e in cands.items():
            if n != win:
                (wdir / e["file"]).unlink(missing_ok=True)
            weights.pop(n, None)
    print(json.dumps({"role": args.role, "target": args.target, "winner": win, "why": why,
                      "candidates": record["candidates"], "unfinished": missing}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
