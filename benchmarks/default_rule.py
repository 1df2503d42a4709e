"""Check the design's rule (docs: Design) for a new default method against the current default.

The rule: a method becomes the default only when a benchmark shows it at least as good as the
current default on validity, locality and the independent oracle's agreement, on both packs (and
on removal where there is a true counterfactual). This script reads the rows that
``xcf bench counterfactuals`` wrote (one or more ``rows.csv``, each ``FILE`` or ``FILE:LABEL``),
keeps the cases both methods ran, and prints, per file, the means side by side:

- validity (the finding flipped, p < 0.5);
- locality against the ground truth where the rows have it (phantoms): the share of the change
  strictly inside the finding's mask, and within 8 px of it;
- locality in the seed's mask (Grad-CAM++ > 0.5 of the input: ``share_in_ref_mask_l1``), the
  only locality measure there is on films without ground truth;
- the oracle's agreement on the findings it can see: the share of counterfactuals the pack's
  independently trained oracle puts below 0.5, among the films whose input the oracle puts at 0.5
  or above (a finding the oracle does not see on the input cannot count as removed by the change);
- the removal score against the true counterfactual (phantoms);
- and, not part of the rule but reported with it, the largest change of another finding's
  probability and the mean number of steps.

A rule row passes when the candidate's mean is at least the reference's, both as printed (to 3
decimals: a difference below that is no difference). Exit
status 0 when every rule row of every file passes, 1 otherwise.

    python benchmarks/default_rule.py docs/results/phantom-matrix-rows.csv:phantom \\
        docs/results/pneumonia-matrix-rows.csv:pneumonia --reference seed --candidate local-in-mask
"""

from __future__ import annotations

import argparse
import csv
import math
import sys

RULE = [("validity", "findings flipped"),
        ("share_in_gt_l1", "share of the change inside the true finding"),
        ("share_in_gt_dilated_l1", "share of the change within 8 px of the true finding"),
        ("share_in_ref_mask_l1", "share of the change in the seed's Grad-CAM++ mask"),
        ("oracle_agrees_seen", "the independent oracle agrees (findings it sees on the input)"),
        ("removal", "removal score vs the true counterfactual")]
REPORTED = [("off_target_max", "largest change of another finding's p (not in the rule)"),
            ("steps", "mean optimizer steps (not in the rule)")]


def _value(row: dict, key: str) -> str | None:
    if key == "oracle_agrees_seen":  # only where the oracle saw the finding on the input
        try:
            seen = float(row.get("oracle_p_input") or "nan") >= 0.5
        except ValueError:
            return None
        return row.get("oracle_validity") if seen else None
    return row.get(key)


def _mean(rows: list[dict], key: str) -> float:
    vals = [float(_value(r, key)) for r in rows if _value(r, key) not in (None, "", "nan")]
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
    ap.add_argument("--reference", default="local-in-mask",
                    help="the method to match: the current default (default: local-in-mask)")
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
