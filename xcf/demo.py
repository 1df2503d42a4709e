"""``xcf demo``: explain generated phantom films with the shipped ``phantom`` pack.

For each phantom finding, several synthetic patients are generated with that finding (and the same
anatomy without it: the true counterfactual), explained with the default method
(:data:`xcf.methods.DEFAULT_METHOD`, unless ``--method`` says otherwise), and written to ``--out``: one folder per case
(figure, film, counterfactual, overlays, difference map, report), ``summary.csv``, ``summary.md``
(how many fell below the threshold, the fall in probability, where the change lies against the true
finding), ``run.json`` (what was run, the wall time) and ``index.html`` (:mod:`xcf.html_report`: a
card per film with the film and its counterfactual side by side).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import torch

from .atomic import atomic_file
from .html_report import build_report
from .report import markdown_table, measure_labels, steps_sentence, write_csv

__all__ = ["run_demo", "DEMO_SEED"]

DEMO_SEED = 20_000

#: summary.md's columns (``seconds`` is not one: a batch's films share its time, given once instead).
SUMMARY_METRICS = ["validity", "p_input", "p_counterfactual", "target_drop", "share_in_gt_l1",
                   "share_in_gt_dilated_l1", "share_in_mask_l1", "iou_gt", "mask_area", "steps"]
LABELS = {"validity": "below the threshold", "p_input": "probability before",
          "p_counterfactual": "probability after", **measure_labels()}


def run_demo(out: str | Path, *, per_finding: int = 2, pack: str = "phantom", method: str | None = None,
             device: str = "cpu", screen: bool = True, log=print, **overrides: Any) -> list[dict[str, Any]]:
    """Generate, explain and write the demo; returns the summary rows.

    With ``screen`` (default), only patients whose finding the classifier detects (p > 0.5) are
    explained, up to ``per_finding`` per finding out of ``8 * per_finding`` generated.
    """
    from .data.phantoms import FINDINGS, generate_case
    from .explainer import Explainer

    out = Path(out)
    ex = Explainer(pack=pack, method=method, device=device, **overrides)
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
        log(f"  {case_id}: p {cf.p_input:.3f} -> {cf.p_counterfactual:.3f} ({cf.steps} update"
            f"{'' if cf.steps == 1 else 's'}, "
            f"{cf.status_text}), change inside the finding {row.get('share_in_gt_l1', float('nan')):.2f}")
    search = sum(cf.seconds for cf in results)  # each film carries its batch's time / batch size
    batches = sorted({int(cf.provenance.get("batch_size", 1) or 1) for cf in results})
    write_csv(rows, out / "summary.csv")
    table = markdown_table(rows, "finding", SUMMARY_METRICS, LABELS)
    overall = markdown_table(rows, None, SUMMARY_METRICS, LABELS)
    name = method or f"{ex.method.name} (the default)"
    config = results[0].config if results else {}
    total = time.perf_counter() - t0
    md = (f"# xcf demo: pack `{pack}`, {len(rows)} phantom cases\n\n"
          f"Method: `{name}`{' with overrides' if overrides else ''}; "
          f"saliency `{ex.components()['saliency']}`, locality `{ex.components()['locality']}`, "
          f"stop probability {config.get('stop.probability', config.get('stop_probability'))}. "
          f"{steps_sentence(config)} "
          f"Cases: phantom patients with one finding that the classifier detects (p > 0.5). "
          f"Cells: mean (median); probabilities and shares as fractions. Time: {search:.1f} s of search "
          f"for {len(rows)} films in batches of {', '.join(map(str, batches))} ({search / max(1, len(rows)):.1f} s per "
          f"film), {total:.1f} s with writing, on {ex.device}.\n\n"
          + (f"Too few detected cases: {'; '.join(missing)}.\n\n" if missing else "")
          + f"{table}\n**All cases**\n\n{overall}")
    with atomic_file(out / "summary.md", "w", encoding="utf-8") as fh:
        fh.write(md)
    run = {"title": f"xcf demo: pack {pack}, {len(rows)} phantom films",
           "data": "phantom films generated by xcf.data.phantoms, one finding each, screened for "
                   "films whose finding the classifier detects (p > 50 %)" if screen else
                   "phantom films generated by xcf.data.phantoms, one finding each",
           "method": name, "components": ex.components(), "config": config,
           "n_explained": len(rows), "seconds": round(total, 3), "device": str(ex.device)}
    with atomic_file(out / "run.json", "w", encoding="utf-8") as fh:
        json.dump(run, fh, indent=2, default=str)
        fh.write("\n")
    build_report(out)
    log(md)
    log(f"wrote {out}/index.html, summary.md, summary.csv and {len(rows)} case folders in {total:.0f} s")
    return rows


def _add_parser(sub) -> None:
    p = sub.add_parser("demo", help="explain generated phantom films with the shipped phantom pack",
                       description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--per-finding", type=int, default=2, help="patients per finding (default 2)")
    p.add_argument("--pack", default="phantom")
    p.add_argument("--method", "--preset", dest="method",
                   help="counterfactual method (default: local-fill-in-mask; seed: the seed's method exactly; "
                        "--preset is an alias)")
    p.add_argument("--steps", type=int, help="optimizer updates per region level (default: the method's; "
                                             "a few make a quick look at the page)")
    p.add_argument("--device", default="cpu")
    p.set_defaults(func=lambda a: run_demo(a.out, per_finding=a.per_finding, pack=a.pack, method=a.method,
                                           device=a.device,
                                           **({} if a.steps is None else {"steps": a.steps})) and 0)


def _register_cli() -> None:
    from .commands import COMMANDS

    COMMANDS["demo"] = _add_parser


_register_cli()

