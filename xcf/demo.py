"""``xcf demo``: explain generated phantom films with the shipped ``phantom`` pack.

For each phantom finding, several synthetic patients are generated with that finding (and the same
anatomy without it: the true counterfactual), explained with the default method
(``preset("local-in-mask")``, :data:`xcf.config.DEFAULT_PRESET`, unless ``--preset`` says otherwise), and written to ``--out``: one folder per case
(figure, counterfactual, difference map, report), ``summary.csv``, ``summary.md`` (validity, target
drop, locality against the ground-truth region, time) and ``index.html``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch

from .config import DEFAULT_PRESET
from .report import markdown_table, write_csv, write_index_html

__all__ = ["run_demo", "DEMO_SEED"]

DEMO_SEED = 20_000

SUMMARY_METRICS = ["validity", "p_input", "p_counterfactual", "target_drop", "share_in_gt_l1",
                   "share_in_gt_dilated_l1", "share_in_mask_l1", "iou_gt", "mask_area", "steps", "seconds"]
LABELS = {"validity": "valid", "p_input": "p input", "p_counterfactual": "p cf",
          "target_drop": "drop", "share_in_gt_l1": "L1 in GT", "share_in_gt_dilated_l1": "L1 in GT+8px",
          "share_in_mask_l1": "L1 in mask", "iou_gt": "IoU GT", "mask_area": "mask area"}


def run_demo(out: str | Path, *, per_finding: int = 2, pack: str = "phantom", preset: str | None = None,
             device: str = "cpu", screen: bool = True, log=print, **overrides: Any) -> list[dict[str, Any]]:
    """Generate, explain and write the demo; returns the summary rows.

    With ``screen`` (default), only patients whose finding the classifier detects (p > 0.5) are
    explained, up to ``per_finding`` per finding out of ``8 * per_finding`` generated.
    """
    from .data.phantoms import FINDINGS, generate_case
    from .explainer import Explainer

    out = Path(out)
    ex = Explainer(pack=pack, config=preset, device=device, **overrides)
    S = ex.latent.input_size
    from .optimize import classify, frozen

    cases, xs, ts, gts, trues = [], [], [], [], []
    missing = []
    for k, finding in enumerate(FINDINGS):
        if finding not in ex.labels:
            continue
        t = ex.labels.index(finding)
        found = 0
        # like a user, explain findings the classifier sees: screen patients until p > 0.5
        for i in range(per_finding * 8):
            seed = DEMO_SEED + 100 * k + i
            case = generate_case(seed, findings=[finding], size=S)
            with torch.no_grad(), frozen(ex.classifier):
                p = float(classify(ex.classifier, case.image[None].to(ex.device))[0, t])
            if screen and p <= 0.5:
                continue
            j = FINDINGS.index(finding)
            found += 1
            cases.append((f"{finding.lower().replace(' ', '-')}-{found}", finding, seed))
            xs.append(case.image)
            ts.append(t)
            gts.append(case.masks[j])
            trues.append(case.counterfactual(finding))
            if found == per_finding:
                break
        if found < per_finding:
            missing.append(f"{finding} ({found} of {per_finding} in {per_finding * 8} patients)")
    if missing:
        log("the classifier saw too few cases of: " + "; ".join(missing)
            + " (see its per-finding ROC AUC in weights/manifest.json)")
    log(f"explaining {len(xs)} phantom cases with pack '{pack}' ...")
    t0 = time.perf_counter()
    results = ex.explain_tensor(torch.stack(xs), torch.tensor(ts), gt_masks=torch.stack(gts),
                                true_counterfactuals=torch.stack(trues))
    rows = []
    for (case_id, finding, seed), cf in zip(cases, results):
        folder = out / "cases" / case_id
        cf.save(folder)
        row = {"case": case_id, "finding": finding, "phantom_seed": seed, "status": cf.status,
               "p_input": cf.p_input, "p_reconstruction": cf.p_reconstruction,
               "p_counterfactual": cf.p_counterfactual, "steps": cf.steps, "seconds": cf.seconds,
               **cf.metrics, "figure": str(folder / "figure.png")}
        rows.append(row)
        log(f"  {case_id}: p {cf.p_input:.3f} -> {cf.p_counterfactual:.3f} ({cf.steps} steps), "
            f"L1 share in GT region {row.get('share_in_gt_l1', float('nan')):.2f}")
    total = time.perf_counter() - t0
    write_csv(rows, out / "summary.csv")
    table = markdown_table(rows, "finding", SUMMARY_METRICS, LABELS)
    overall = markdown_table(rows, None, SUMMARY_METRICS, LABELS)
    cfg = ex.config
    name = preset or f"{DEFAULT_PRESET} (the default)"
    md = (f"# xcf demo: pack `{pack}`, {len(rows)} phantom cases\n\n"
          f"Method: preset `{name}`{' with overrides' if overrides else ''}; "
          f"saliency `{ex.components()['saliency']}`, locality `{ex.components()['locality']}`, "
          f"{cfg.steps} steps max, lr {cfg.lr}, stop probability {cfg.stop_probability}. "
          f"Cases: phantom patients with one finding that the classifier detects (p > 0.5). "
          f"Cells: mean (median). Wall time {total:.1f} s on {ex.device}.\n\n"
          + (f"Too few detected cases: {'; '.join(missing)}.\n\n" if missing else "")
          + f"{table}\n**All cases**\n\n{overall}")
    from .atomic import atomic_file

    with atomic_file(out / "summary.md", "w", encoding="utf-8") as fh:
        fh.write(md)
    write_index_html(out / "index.html", f"xcf demo: pack {pack}", rows,
                     ["case", "finding", "status", "p_input", "p_counterfactual", "validity",
                      "share_in_gt_l1", "share_in_mask_l1", "steps", "seconds"],
                     intro=f"{len(rows)} phantom cases explained with the default method; "
                           "see summary.md for the table.")
    log(md)
    log(f"wrote {out}/index.html, summary.md, summary.csv and {len(rows)} case folders in {total:.0f} s")
    return rows


def _add_parser(sub) -> None:
    p = sub.add_parser("demo", help="explain generated phantom films with the shipped phantom pack",
                       description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--per-finding", type=int, default=2, help="patients per finding (default 2)")
    p.add_argument("--pack", default="phantom")
    p.add_argument("--preset", help="config preset (default: local-in-mask; seed: the seed's settings exactly)")
    p.add_argument("--device", default="cpu")
    p.set_defaults(func=lambda a: run_demo(a.out, per_finding=a.per_finding, pack=a.pack, preset=a.preset,
                                           device=a.device) and 0)


def _register_cli() -> None:
    from .cli import COMMANDS

    COMMANDS["demo"] = _add_parser


_register_cli()

