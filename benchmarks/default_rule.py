"""Check the design's rule (docs: Design) for a new default method against the seed's method.

The rule: a method becomes the default "only when a benchmark in benchmarks/ shows it is at least
as good on validity and locality". This script reads the rows that ``xcf bench counterfactuals``
wrote (one or more ``rows.csv``, each ``FILE`` or ``FILE:LABEL``), keeps the cases both methods
ran, and prints, per file, the means side by side:

- validity (the finding flipped, p < 0.5);
- locality against the ground truth where the rows have it (phantoms): the share of the change
  strictly inside the finding's mask, and within 8 px of it;
- locality in the seed's mask (Grad-CAM++ > 0.5 of the input: ``share_in_ref_mask_l1``), the
  only locality measure there is on films without ground truth;
- and, not part of the rule but reported with it, the oracle's agreement, the removal score, the
  largest change of another finding's probability and the mean number of steps.

A rule row passes when the candidate's mean is at least the reference's, both as printed (to 3
decimals: a difference below that is no difference). Exit
status 0 when every rule row of every file passes, 1 otherwise.

    python benchmarks/default_rule.py docs/results/phantom-matrix-rows.csv:phantom \\
        docs/results/pneumonia-matrix-rows.csv:pneumonia --candidate local-in-mask
"""

from __future__ import annotations

import argparse
import csv
import math
import sys

RULE = [("validity", "findings flipped"),
        ("share_in_gt_l1", "share of the change inside the true finding"),
        ("share_in_gt_dilated_l1", "share of the change within 8 px of the true finding"),
        ("share_in_ref_mask_l1", "share of the change in the seed's Grad-CAM++ mask")]
REPORTED = [("oracle_validity", "the independent oracle agrees (not in the rule)"),
            ("removal", "removal score vs the true counterfactual (not in the rule)"),
            ("off_target_max", "largest change of another finding's p (not in the rule)"),
            ("steps", "mean optimizer steps (not in the rule)")]


def _mean(rows: list[dict], key: str) -> float:
    vals = [float(r[key]) for r in rows if r.get(key) not in (None, "", "nan")]
    vals = [v for v in vals if not math.isnan(v)]
    return sum(vals) / len(vals) if vals else float("nan")


def compare(path: str, reference: str, candidate: str) -> tuple[list[str], bool]:
    try:
        with open(path, newline="") as fh:
            rows = list(csv.DictReader(fh))
    except OSError as exc:
        raise SystemExit(f"{path}: cannot read rows ({exc.strerror}); give a rows.csv of xcf bench counterfactuals") from None
    if rows and not {"method", "case"} <= set(rows[0]):
        raise SystemExit(f"{path}: no 'method' and 'case' columns; give a rows.csv of xcf bench counterfactuals")
    ref = {r["case"]: r for r in rows if r["method"] == reference}
    cand = {r["case"]: r for r in rows if r["method"] == candidate}
    both = sorted(set(ref) & set(cand))
    if not both:
        raise SystemExit(f"{path}: no case has rows of both '{reference}' and '{candidate}'")
    a, b = [ref[c] for c in both], [cand[c] for c in both]
    lines = [f"| measure | {reference} | {candidate} | rule |", "|---|---|---|---|"]
    ok = True
    for key, label in RULE + REPORTED:
        ma, mb = _mean(a, key), _mean(b, key)
        if math.isnan(ma) and math.isnan(mb):
            continue
        verdict = ""
        if (key, label) in RULE:
            passed = round(mb, 3) >= round(ma, 3)
            ok &= passed
            verdict = "at least as good" if passed else "**worse**"
        lines.append(f"| {label} | {ma:.3f} | {mb:.3f} | {verdict} |")
    return [f"{len(both)} cases run by both"] + lines, ok


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("rows", nargs="+", help="rows.csv of xcf bench counterfactuals, FILE or FILE:LABEL")
    ap.add_argument("--reference", default="seed", help="the method to match (default: seed)")
    ap.add_argument("--candidate", required=True, help="the method proposed as the default")
    args = ap.parse_args(argv)
    all_ok = True
    for spec in args.rows:
        path, _, label = spec.partition(":")
        lines, ok = compare(path, args.reference, args.candidate)
        all_ok &= ok
        print(f"\n### {label or path}: {lines[0]}\n")
        print("\n".join(lines[1:]))
    print(f"\n{args.candidate} {'meets' if all_ok else 'does NOT meet'} the rule against {args.reference}")
    return 0 if all_ok else 1


if __name__ == "__main__":
    sys.exit(main())
