"""The saliency benchmark: how well each saliency method points at the finding.

``xcf bench saliency --out DIR [--pack phantom] [--methods a,b] [--n N]
[--nih-csv BBox_List_2017.csv --nih-images DIR [--classifier NAME]]`` (also ``python
benchmarks/saliency.py ...``).

For every registered saliency method (or ``--methods``), on

- the phantom test set (``generate_case(phantom_test_seed(i), [f])``, findings cycling over the
  classifier's phantom findings, at the classifier's input size; ground truth: the finding's
  pixel-exact mask), unless ``--no-phantom``;
- NIH ChestX-ray14 bounding boxes (Wang et al., CVPR 2017) when ``--nih-csv`` and ``--nih-images``
  are given: every box whose finding is one of the classifier's labels (``Effusion`` matches
  ``Pleural Effusion``), the mask being the union of that finding's boxes on the image;

the map of the classifier's target finding is scored with (:mod:`xcf.metrics`):

- ``iou@t`` for ``t = 0.1 ... 0.9``: IoU of ``saliency > t`` with the ground truth (the seed's table;
  maps are min-max normalized by the methods);
- ``pointing_game``: the map's maximum lies inside the ground truth;
- ``relevance_mass``: share of the map's mass inside the ground truth;
- ``seconds`` per image.

Writes ``rows.csv`` (per image and method), ``summary.csv`` and ``summary.md`` (mean per method and
dataset, with n and the best threshold).
"""

from __future__ import annotations

import argparse
import contextlib
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..atomic import atomic_file
from ..errors import ConfigError, DataError, XcfError

__all__ = ["THRESHOLDS", "score_saliency", "phantom_items", "nih_items", "run", "main"]

#: IoU thresholds of the seed's saliency table.
THRESHOLDS: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
_ALIASES = {"effusion": "pleural effusion", "infiltrate": "infiltration"}


def _iou_key(t: float) -> str:
    return f"iou@{t:.1f}"


def score_saliency(saliency: Tensor, gt: Tensor) -> dict[str, Tensor]:
    """Localization scores of a batch of maps.

    Args:
        saliency: ``(B, 1, S, S)`` in [0, 1].
        gt: ``(B, 1, S, S)`` bool ground truth.

    Returns:
        ``{"iou@0.1": (B,), ..., "iou@0.9": (B,), "pointing_game": (B,), "relevance_mass": (B,)}``.
    """
    from ..metrics import relevance_mass, saliency_iou, saliency_pointing_game

    ious = saliency_iou(saliency, gt, list(THRESHOLDS))
    out = {_iou_key(t): ious[:, j] for j, t in enumerate(THRESHOLDS)}
    out["pointing_game"] = saliency_pointing_game(saliency, gt).float()
    out["relevance_mass"] = relevance_mass(saliency, gt)
    return out


Item = tuple[str, str, Any]  # (case id, target label, loader -> (image (1,S,S), mask (1,S,S)))


def phantom_items(n: int, labels: Sequence[str], size: int) -> list[Item]:
    """Phantom test cases with one finding each (see module docstring)."""
    from .counterfactuals import phantom_cases

    items = []
    for case in phantom_cases(n, labels, size):
        def load(case=case) -> tuple[Tensor, Tensor]:
            image, mask, _ = case.load()
            return image, mask
        items.append((case.case_id, case.target, load))
    return items


def nih_items(csv_path: str, images: str, labels: Sequence[str], size: int,
              n: int | None = None) -> tuple[list[Item], list[str]]:
    """NIH ChestX-ray14 box cases whose finding the classifier has, and the findings left out.

    Args:
        csv_path: ``BBox_List_2017.csv``.
        images: Folder with the images (searched directly and one level down, e.g. ``images_001/``).
        labels: The classifier's labels.
        size: Image side.
        n: At most this many cases.
    """
    from ..data import NIHBoxes
    from ..imageio import load_image

    boxes = NIHBoxes(csv_path, size=size)
    root = Path(images)
    if not root.is_dir():
        raise DataError(f"{images}: not a folder; --nih-images takes the folder of the NIH images")
    files = {p.name: p for p in root.glob("*.png")}
    for p in root.glob("*/*.png"):
        files.setdefault(p.name, p)
    folded = {lab.casefold(): lab for lab in labels}
    items: list[Item] = []
    missing: set[str] = set()
    for index in sorted(boxes):
        path = files.get(index)
        if path is None:
            continue
        for finding in sorted({f for f, _ in boxes[index]}):
            key = finding.casefold()
            label = folded.get(key) or folded.get(_ALIASES.get(key, ""))
            if label is None:
                missing.add(finding)
                continue

            def load(path=path, index=index, finding=finding) -> tuple[Tensor, Tensor]:
                return load_image(path, size=size)[0], boxes.mask(index, finding, size=size)

            items.append((f"nih-{index}-{finding.lower()}", label, load))
            if n is not None and len(items) >= n:
                return items, sorted(missing)
    return items, sorted(missing)


def run(out: str | Path, methods: Sequence[str], datasets: dict[str, list[Item]], classifier: Any, *,
        batch_size: int = 8, device: str = "cpu", log=print) -> list[dict[str, Any]]:
    """Score every method on every dataset; writes rows.csv, summary.csv, summary.md.

    Returns:
        The per-image rows.
    """
    from tqdm import tqdm

    from ..explainer import resolve_device
    from ..optimize import frozen, resize_to
    from ..registry import create
    from ..report import write_csv

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    dev = resolve_device(device)
    classifier.to(dev).eval()
    S = classifier.input_size
    rows: list[dict[str, Any]] = []
    errors: list[dict[str, str]] = []
    cache: dict[str, tuple[Tensor, Tensor]] = {}
    total = len(methods) * sum(len(v) for v in datasets.values())
    bar = tqdm(total=total, unit="img", disable=None, file=sys.stderr, dynamic_ncols=True)
    try:
        for name in methods:
            method = create("saliency", name)
            bar.set_description(name)
            for dname, items in datasets.items():
                for i in range(0, len(items), batch_size):
                    chunk, xs, gts = [], [], []
                    for cid, label, load in items[i:i + batch_size]:
                        try:
                            if cid not in cache:
                                cache[cid] = load()
                        except (XcfError, OSError, ValueError, KeyError) as exc:
                            errors.append({"method": name, "case": cid, "error": f"{type(exc).__name__}: {exc}"})
                            bar.write(f"skipped {cid}: {exc}")
                            continue
                        chunk.append((cid, label))
                        xs.append(cache[cid][0])
                        gts.append(cache[cid][1])
                    bar.update(len(items[i:i + batch_size]))
                    if not chunk:
                        continue
                    x = resize_to(torch.stack(xs).to(dev), S)
                    gt = torch.stack(gts).to(dev)
                    if gt.shape[-1] != S:
                        gt = resize_to(gt.float(), S) > 0.5
                    folded = {lab.casefold(): k for k, lab in enumerate(classifier.labels)}
                    targets = torch.tensor([folded[lab.casefold()] for _, lab in chunk], device=dev)
                    start = time.perf_counter()
                    try:
                        with torch.random.fork_rng(devices=[]), frozen(classifier):
                            torch.manual_seed(0)
                            sal = method(classifier, x, targets).detach().float()
                    except Exception as exc:  # a failing method is reported, the rest still runs
                        for cid, _ in chunk:
                            errors.append({"method": name, "case": cid, "error": f"{type(exc).__name__}: {exc}"})
                        bar.write(f"{name} failed on {dname}: {type(exc).__name__}: {exc}")
                        continue
                    secs = (time.perf_counter() - start) / len(chunk)
                    sal = resize_to(sal, S).clamp(0, 1)
                    scores = {k: v.cpu() for k, v in score_saliency(sal, gt).items()}
                    area = gt.flatten(1).float().mean(1).cpu()
                    for b, (cid, label) in enumerate(chunk):
                        rows.append({"method": name, "dataset": dname, "case": cid, "target": label,
                                     **{k: float(v[b]) for k, v in scores.items()},
                                     "gt_area": float(area[b]), "seconds": secs})
    finally:
        bar.close()
        if rows:
            write_csv(rows, out / "rows.csv")
            write_summary(out, rows, methods)
        if errors:
            write_csv(errors, out / "errors.csv")
    return rows


def write_summary(out: Path, rows: Sequence[dict[str, Any]], methods: Sequence[str]) -> str:
    """summary.csv and summary.md: per dataset and method, the mean of each score and n."""
    from ..metrics import summarize
    from ..report import fmt, write_csv

    keys = [*(_iou_key(t) for t in THRESHOLDS), "pointing_game", "relevance_mass", "seconds"]
    datasets = list(dict.fromkeys(r["dataset"] for r in rows))
    table_rows = []
    md = ["# xcf saliency benchmark", "",
          "Localization of each saliency method's map of the target finding against the ground "
          "truth. `IoU@t`: IoU of map > t with the region (mean over images); `best`: the best "
          "threshold's mean IoU; `pointing`: the map's maximum is inside the region; `mass`: share "
          "of the map inside the region. The region's mean area is given per dataset.", ""]
    for dname in datasets:
        drows = [r for r in rows if r["dataset"] == dname]
        area = summarize(drows, ["gt_area"])["gt_area"]["mean"]
        md += [f"## {dname} (ground-truth area {fmt(area)} of the image)", "",
               "| method | n | " + " | ".join(f"IoU@{t:.1f}" for t in THRESHOLDS)
               + " | best IoU (t) | pointing | mass | s / image |",
               "|" + "---|" * (len(THRESHOLDS) + 6)]
        for name in methods:
            rs = [r for r in drows if r["method"] == name]
            if not rs:
                continue
            s = summarize(rs, keys)
            means = [s[_iou_key(t)]["mean"] for t in THRESHOLDS]
            valid = [(m, t) for m, t in zip(means, THRESHOLDS) if not math.isnan(m)]
            best = max(valid) if valid else (math.nan, math.nan)
            md.append(f"| {name} | {len(rs)} | " + " | ".join(fmt(m) for m in means)
                      + f" | {fmt(best[0])} ({fmt(best[1], 1)}) | {fmt(s['pointing_game']['mean'])} | "
                      f"{fmt(s['relevance_mass']['mean'])} | {fmt(s['seconds']['mean'])} |")
            row: dict[str, Any] = {"dataset": dname, "method": name, "n": len(rs)}
            for k in keys:
                row[f"{k}_mean"] = s[k]["mean"]
                row[f"{k}_median"] = s[k]["median"]
            row["best_iou"] = best[0]
            row["best_threshold"] = best[1]
            table_rows.append(row)
        md.append("")
    text = "\n".join(md)
    write_csv(table_rows, out / "summary.csv")
    with atomic_file(out / "summary.md", "w", encoding="utf-8") as fh:
        fh.write(text)
    return text


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="xcf bench saliency",
        description="Localization of the saliency methods against ground-truth regions (phantom "
                    "masks, NIH ChestX-ray14 boxes): IoU at thresholds 0.1..0.9, pointing game, "
                    "relevance mass.")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--pack", default="phantom", help="pack whose classifier is explained (default phantom)")
    p.add_argument("--classifier", help="a registered classifier instead of the pack's (e.g. xrv-densenet)")
    p.add_argument("--methods", help="comma-separated saliency methods (default: every registered one)")
    p.add_argument("--n", type=int, default=100, help="phantom cases (default 100)")
    p.add_argument("--no-phantom", action="store_true", help="skip the phantom test set")
    p.add_argument("--nih-csv", help="NIH ChestX-ray14 BBox_List_2017.csv")
    p.add_argument("--nih-images", help="folder with the NIH images named in the CSV")
    p.add_argument("--nih-n", type=int, help="at most this many NIH boxes")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """``xcf bench saliency`` (see the module docstring); returns the exit status."""
    from . import keep_threads

    return keep_threads(_main, argv)


def _main(argv: Sequence[str] | None) -> int:
    from ..registry import create, get_registry

    args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    if bool(args.nih_csv) != bool(args.nih_images):
        raise ConfigError("--nih-csv and --nih-images go together")
    if args.batch_size < 1 or args.n < 0:
        raise ConfigError("--batch-size must be at least 1 and --n at least 0")
    if args.threads is not None:
        if args.threads < 1:
            raise ConfigError(f"--threads must be at least 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    known = get_registry().list("saliency")
    methods = [m.strip() for m in args.methods.split(",") if m.strip()] if args.methods else known
    unknown = [m for m in methods if m not in known]
    if unknown:
        raise ConfigError(f"unknown saliency method(s) {', '.join(unknown)}; registered: {', '.join(known)}")
    if args.classifier:
        classifier = create("classifier", args.classifier)
    else:
        from ..packs import load_pack

        classifier = load_pack(args.pack).classifier
    S = classifier.input_size
    datasets: dict[str, list[Item]] = {}
    if not args.no_phantom and args.n:
        with contextlib.suppress(ConfigError):  # a non-phantom classifier: no phantom set
            datasets["phantom"] = phantom_items(args.n, classifier.labels, max(S, 64))
        if "phantom" not in datasets:
            print("the classifier has no phantom finding: phantom set skipped", file=sys.stderr)
    if args.nih_csv:
        items, missing = nih_items(args.nih_csv, args.nih_images, classifier.labels, S, args.nih_n)
        if missing:
            print(f"NIH findings the classifier lacks (skipped): {', '.join(missing)}", file=sys.stderr)
        if not items:
            raise DataError(f"{args.nih_images}: no image of {args.nih_csv} with a finding the classifier has")
        datasets["nih-boxes"] = items
    if not datasets:
        raise ConfigError("nothing to score: give the phantom set (a phantom classifier) or --nih-csv/--nih-images")
    rows = run(args.out, methods, datasets, classifier, batch_size=args.batch_size, device=args.device)
    text = (Path(args.out) / "summary.md").read_text(encoding="utf-8") if rows else "no rows"
    print(text)
    print(f"wrote {args.out}/rows.csv ({len(rows)} rows), summary.csv, summary.md", file=sys.stderr)
    return 0
