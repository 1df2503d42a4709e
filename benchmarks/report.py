"""Write the results page, docs/results/index.md, its plots, and README's results table.

    python benchmarks/report.py            # (re)write them from the rows files in docs/results
    python benchmarks/report.py --check    # exit 1 if any of them differs from what it would write

The page is generated: every number on it is a mean over the per-film rows that
``xcf bench counterfactuals`` wrote (the rows files named in :data:`TABLES`, with the pack they were
measured on and the commands that made them), or a median of a speed run in :data:`PERFS`. Each
table gets a validity-vs-locality plot (PNG). README.md's text between the lines
``<!-- results-table:start -->`` and ``<!-- results-table:end -->`` is replaced by a compact table
of the methods; without both lines README is left alone (said on stderr).

``--check`` compares the page and README's table as text, and each plot by the digest of the data
it draws, which the PNG carries in a text chunk (``xcf-report``): a plot is stale when its data
changed, not when another matplotlib draws the same data with other pixels.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import statistics
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from xcf.methods import DEFAULT_METHOD

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "docs" / "results"
README = REPO / "README.md"
PAGE = "index.md"
START, END = "<!-- results-table:start -->", "<!-- results-table:end -->"
DIGEST_KEY = "xcf-report"


@dataclass(frozen=True)
class Table:
    """One rows file of ``xcf bench counterfactuals`` and what the page says about it.

    Attributes:
        rows: File name in the results folder.
        pack: The pack it was measured with.
        title: Section title on the page.
        about: What was explained, on what, how (one paragraph).
        oracle: Which oracle ``oracle_validity`` is about and which findings it can see.
        oracle_blind: Findings the oracle cannot see (their rows are left out of the second
            oracle column).
        locality: The rows' column the plot puts on its y axis.
        commands: The exact commands that made the rows file.
        omit: Columns not shown for this table, with the reason in ``omit_note``.
        omit_note: One sentence on why ``omit`` is left out.
        plot: File name of the plot in the results folder.
        readme: The methods of this table README's table shows (``None``: :data:`README_METHODS`).
    """

    rows: str
    pack: str
    title: str
    about: str
    oracle: str
    oracle_blind: tuple[str, ...]
    locality: str
    commands: str
    plot: str
    omit: tuple[str, ...] = ()
    omit_note: str = ""
    readme: tuple[str, ...] | None = None


PNEUMONIA_DATA = ("`$PNEUMONIA`: the folder of the Kermany et al. pediatric pneumonia films at 224 px "
                  "(the Makefile's `PNEUMONIA`).")

ORACLE_PHANTOM = ("`phantom-mobilenet-oracle`, a mobilenet-v3-small trained independently of the classifier "
                  "(other phantoms, another seed); test ROC AUC 0.998 / 0.992 / 0.948 / 0.505 / 0.999 on "
                  "Cardiomegaly / Pleural Effusion / Consolidation / Nodule / Pneumothorax: it sees every "
                  "finding but Nodule. It calls 0.993 of the true counterfactuals of the films it sees "
                  "without the finding: the most this column can reach ([`oracle-reference.md`](oracle-reference.md)).")
ORACLE_PNEUMONIA = ("`pneumonia-mobilenet-oracle`, a mobilenet-v3-small trained independently of the "
                    "classifier (1,000 training films, 20 epochs); test ROC AUC 0.959: it sees pneumonia. But "
                    "it calls only 0.514 of the *normal* test films normal (0.982 of the normal training films "
                    "it was not trained on): the test split does not look like the training split, and the "
                    "oracle reads its look as pneumonia about half the time. `local-exemplar`'s content "
                    "comes from the training split; with a bank of the test split's own normal films instead, "
                    "the oracle agrees with 0.188 of its counterfactuals, not 0.540 "
                    "([`oracle-reference.md`](oracle-reference.md)).")

TABLES: tuple[Table, ...] = (
    Table(
        rows="phantom-matrix-rows.csv",
        pack="phantom",
        title="Phantoms: 200 test phantoms, phantom pack",
        about=("The first 200 test phantoms of `phantom_cases` (40 of each finding), each with its true "
               "finding mask and its true counterfactual (the same phantom drawn without the finding), "
               "drawn from the held-out test set's anatomies, which no training set of the pack holds "
               "(`xcf.train.phantom_test_seed`; `tests/test_bench.py` checks it against every training "
               "command in the manifest). Pack `phantom`, trained on a 2-core CPU "
               "(`train-phantom-pack-cpu.md`). Runs of the same command on the same films: `local-fill`, "
               "`fast` and the Latent Shift baseline in one run; `local-exemplar` alone (with the pack's "
               "bank: 1,000 phantoms drawn without findings from a seed of their own); the default, "
               "`local-fill-in-mask`, alone; `local-in-mask` in two runs of 100; the seed's method in three runs (the first 80, the next 60, "
               "the last 60) and `local` on the first 100 (in three runs: the first 40, then 40-69 and 70-99; the CPU had no time for more). One thread per run, three to five runs sharing the 2-core CPU, so "
               "the seconds are two to three times an idle CPU's."),
        oracle=ORACLE_PHANTOM,
        oracle_blind=("Nodule",),
        locality="share_in_gt_dilated_l1",
        commands="""\
xcf bench counterfactuals --out A --n 200 --methods local-fill,fast,latent-shift --threads 1
xcf bench counterfactuals --out A --n 100 --methods local-in-mask --threads 1
xcf bench counterfactuals --out L2 --n 200 --cases <ids 100-199> --methods local-in-mask --threads 1
xcf bench counterfactuals --out B --n 200 --methods seed --threads 1      # stopped after 80 films
xcf bench counterfactuals --out B2 --n 200 --cases <ids 80-139> --methods seed --threads 1
xcf bench counterfactuals --out B3 --n 200 --cases <ids 140-199> --methods seed --threads 1
xcf bench counterfactuals --out X --n 200 --methods local-exemplar --threads 1
xcf bench counterfactuals --out L --n 100 --methods local --threads 1     # stopped after 40 films
xcf bench counterfactuals --out LA --n 200 --cases <ids 40-69> --methods local --threads 1
xcf bench counterfactuals --out LB --n 200 --cases <ids 70-99> --methods local --threads 1
xcf bench counterfactuals --out F --n 200 --methods local-fill-in-mask --threads 1
python benchmarks/rows.py merge M B:seed B2:seed B3:seed A:fast L:local LA:local LB:local A:local-in-mask L2:local-in-mask A:local-fill \\
    X:local-exemplar A:latent-shift F:local-fill-in-mask
cp M/rows.csv docs/results/phantom-matrix-rows.csv""",
        plot="phantom-validity-vs-locality.png",
    ),
    Table(
        rows="pneumonia-matrix-rows.csv",
        pack="pneumonia",
        title="Pneumonia: test films of the pediatric pneumonia data set, pneumonia pack",
        about=("Test films labelled pneumonia (Kermany et al. 2018), in the data set's order: `fast` and "
               "`local-exemplar` and the default, `local-fill-in-mask`, ran on all 202, `local-in-mask` "
               "and `local-fill` on the first 48, `seed` "
               "and `local` on the first 24. No "
               "ground truth, so the only locality measure is the share of the change in the seed's "
               "region. Pack `pneumonia`, trained on a 2-core CPU (`train-pneumonia-pack-cpu.md`). One "
               "thread per run, two or three runs sharing the 2-core CPU; `perf-pneumonia-cpu.md` has "
               "a speed run alone on the CPU. " + PNEUMONIA_DATA),
        oracle=ORACLE_PNEUMONIA,
        oracle_blind=(),
        locality="share_in_ref_mask_l1",
        commands="""\
xcf bench counterfactuals --data $PNEUMONIA --split test --target pneumonia --pack pneumonia --threads 1 --methods seed --n 24 --out D
xcf bench counterfactuals --data $PNEUMONIA --split test --target pneumonia --pack pneumonia --threads 1 --methods local-in-mask --n 48 --out E
xcf bench counterfactuals --data $PNEUMONIA --split test --target pneumonia --pack pneumonia --threads 1 --methods fast --out F
xcf bench counterfactuals --data $PNEUMONIA --split test --target pneumonia --pack pneumonia --threads 1 --methods local --n 24 --out G
python benchmarks/rows.py merge M D:seed F:fast G:local E:local-in-mask
cp M/rows.csv docs/results/pneumonia-matrix-rows.csv
xcf bench counterfactuals --data $PNEUMONIA --split test --target pneumonia --pack pneumonia --threads 1 --methods local-fill --n 48 --out R
tail -n +2 R/rows.csv >> docs/results/pneumonia-matrix-rows.csv
xcf bench counterfactuals --data $PNEUMONIA --split test --target pneumonia --pack pneumonia --threads 1 --methods local-exemplar --out X
tail -n +2 X/rows.csv >> docs/results/pneumonia-matrix-rows.csv
xcf bench counterfactuals --data $PNEUMONIA --split test --target pneumonia --pack pneumonia --threads 1 --methods local-fill-in-mask --out Y
tail -n +2 Y/rows.csv >> docs/results/pneumonia-matrix-rows.csv""",
        plot="pneumonia-validity-vs-locality.png",
        omit=("off_target_max",),
        omit_note="The pneumonia classifier has one finding, so no other finding's probability can move.",
    ),
    Table(
        rows="phantom-40-faithful-rows.csv",
        pack="phantom",
        title="Phantoms, faithfulness: 40 test phantoms, every method side by side in one run",
        about=("The first 40 test phantoms (8 of each finding), every method on the same films: the rows "
               "of these 40 from the runs of the table above (the seed's method, the default "
               "`local-fill-in-mask`, `local-in-mask`, `fast`, the Latent Shift baseline, `local-fill`, "
               "`local-exemplar`), and `local-robust` (`local-in-mask` with a flip that must survive small blurs, shifts and noise) in a run of its own on the "
               "same 40. The oracle never takes part in a search (`tests/test_bench.py`); it judges "
               "after. One thread per run, three to five runs sharing the 2-core CPU."),
        oracle=ORACLE_PHANTOM,
        oracle_blind=("Nodule",),
        locality="share_in_gt_dilated_l1",
        commands="""\
xcf bench counterfactuals --n 40 --threads 1 --out V --methods local-robust
python benchmarks/rows.py merge P B:seed F:local-fill-in-mask A:local-in-mask A:fast V:local-robust \\
    A:local-fill X:local-exemplar A:latent-shift --first 40     # A, B, F, X: the runs of the 200-phantom table
cp P/rows.csv docs/results/phantom-40-faithful-rows.csv""",
        plot="phantom-40-faithful-validity-vs-locality.png",
        readme=("local-robust",),
    ),
    Table(
        rows="pneumonia-12-faithful-rows.csv",
        pack="pneumonia",
        title="Pneumonia, faithfulness: 12 test films, every method side by side in one run",
        about=("The first 12 test films labelled pneumonia, in the data set's order, every method on the "
               "same films: the seed's method, `local-in-mask`, `fast`, the Latent Shift baseline and "
               "`local-fill` in one run; `local-robust` in an earlier run, `local-exemplar` and the default, "
               "`local-fill-in-mask`, in later ones of the same bench (the default's: the first 12 rows of "
               "its run on all 202 films of the table above), their rows appended. No ground truth: locality is the share of the change in the seed's "
               "region. One thread per run, two runs sharing the 2-core CPU. " + PNEUMONIA_DATA),
        oracle=ORACLE_PNEUMONIA,
        oracle_blind=(),
        locality="share_in_ref_mask_l1",
        commands="""\
xcf bench counterfactuals --data $PNEUMONIA --split test --target pneumonia --pack pneumonia --n 12 \\
    --threads 1 --methods seed,local-in-mask,fast,latent-shift,local-fill --out Q
cp Q/rows.csv docs/results/pneumonia-12-faithful-rows.csv
xcf bench counterfactuals --data $PNEUMONIA --split test --target pneumonia --pack pneumonia --n 12 \\
    --threads 1 --methods local-robust --out V
tail -n +2 V/rows.csv >> docs/results/pneumonia-12-faithful-rows.csv
xcf bench counterfactuals --data $PNEUMONIA --split test --target pneumonia --pack pneumonia --n 12 \\
    --threads 1 --methods local-exemplar --out X
tail -n +2 X/rows.csv >> docs/results/pneumonia-12-faithful-rows.csv
python benchmarks/rows.py merge Y12 Y:local-fill-in-mask --first 12   # Y: the 202-film run above
tail -n +2 Y12/rows.csv >> docs/results/pneumonia-12-faithful-rows.csv""",
        plot="pneumonia-12-faithful-validity-vs-locality.png",
        omit=("off_target_max",),
        omit_note="The pneumonia classifier has one finding, so no other finding's probability can move.",
        readme=("local-robust", "latent-shift"),
    ),
)


@dataclass(frozen=True)
class Perf:
    """A speed run of ``python benchmarks/perf.py`` (its ``.json``) and what the page says about it."""

    json: str
    title: str
    command: str
    about: str


PERFS: tuple[Perf, ...] = (
    Perf(
        json="perf-pneumonia-cpu.json",
        title="Speed: 16 pneumonia films, pneumonia pack, 2-core CPU",
        command=("python benchmarks/perf.py --pack pneumonia --data $PNEUMONIA --n 16 --threads 2 "
                 "--variants seed-loop,local-fill-in-mask,local-in-mask,fast,local-fill,local-exemplar "
                 "--out docs/results/perf-pneumonia-cpu.md"),
        about=("Each method alone on the CPU (two threads), one after the other on the same 16 test films. "
               "`seed-loop`: an independent re-implementation of the seed notebook's loop (one film at a "
               "time, Adam on the latent, 200 steps), the reference of the speed-up; the others: "
               "`xcf.Explainer` with that method, batched (`local-fill-in-mask` and `local-fill` with the "
               "pack's inpainter, `local-exemplar` with the pack's bank of 1,031 normal training films, "
               "read from disk once before the timing). "
               + PNEUMONIA_DATA),
    ),
    Perf(
        json="perf-phantom-cpu.json",
        title="Speed: 16 test phantoms, phantom pack, 2-core CPU",
        command=("python benchmarks/perf.py --pack phantom --data phantom --n 16 --threads 2 "
                 "--variants seed-loop,local-fill-in-mask,local-in-mask,fast,local-fill,local-exemplar "
                 "--out docs/results/perf-phantom-cpu.md"),
        about=("As above, on the first 16 test phantoms (the five findings in turn; the held-out "
               "anatomies of the tables above), alone on the CPU (`local-exemplar` with the pack's bank "
               "of 1,000 phantoms, drawn once before the timing)."),
    ),
)
#: How the page names each method, in the order it lists them; methods not named here follow in
#: the order of the rows file.
METHODS: dict[str, str] = {
    "local-fill-in-mask": ("the default method: `local-in-mask`'s regions (levels 0.5 -> 0.1, inside the seed's "
                           "Grad-CAM++ > 0.5 mask, eroded 4 px), not grown, filled by the pack's inpainter "
                           "(trained on films without findings) with a 2 px soft edge; the smallest region "
                           "whose fill takes p(target) below 0.05 with the other findings within 0.1 of their "
                           "start; a film no fill flips is searched from the fill of the largest region in the "
                           "inpainter's latent (up to 100 steps). No region outside the mask."),
    "local-in-mask": ("`local` with its regions kept inside the seed's Grad-CAM++ > 0.5 mask (eroded 4 px); "
                      "stops once p(target) < 0.5 and every other finding is back within 0.1 of its start "
                      "(the default where the pack has no inpainter)."),
    "seed": ("the seed's method: the latent of the pack's autoencoder optimized with Adam (lr 0.1) for "
             "200 steps, the change held inside Grad-CAM++ > 0.5 of the classifier by a masked L2 loss."),
    "fast": ("Grad-CAM++ regions (> 0.5, 0.35, 0.2, 0.1) tried in turn, 20 steps each at lr 1.0 (x1.5 "
             "a region); the decoder's change added to the film inside the region, feathered 2 px; "
             "stops at p(target) < 0.5."),
    "local": ("like `fast` but its regions come from the input gradient (> 0.5, 0.35, 0.2, 0.1, "
              "falling back to Grad-CAM++ regions), up to 200 steps each."),
    "local-robust": ("`local-in-mask` whose classification term is averaged over 4 views of the "
                     "counterfactual per step (blur up to 1.5 px, shift up to 3 px, noise 0.02) and "
                     "whose films stop only once every view is below 0.5 too."),
    "local-fill": ("`local-in-mask`'s regions (levels 0.5 -> 0.1, then Grad-CAM++'s), grown 4 px and filled by "
                   "the pack's inpainter, trained on films without findings; the smallest region whose fill "
                   "takes p(target) below 0.05 with the other findings within 0.1 of their start; a film no "
                   "fill flips is searched from the fill in the inpainter's latent (up to 100 steps)."),
    "local-exemplar": ("`local-fill`'s regions filled with the same region of a real film without the "
                       "finding: of the pack's bank (pneumonia: the training films without it, less those the "
                       "oracle was trained on; phantoms: 1,000 phantoms drawn without findings), the 8 closest to the film outside the region are tried in turn, "
                       "each grey-matched to the film around the region; the smallest region whose fill "
                       "takes p(target) below 0.05. No search."),
    "latent-shift": ("the Latent Shift baseline (Cohen et al., MIDL 2021): one gradient of p(target) "
                     "in the latent, a line search along it, no region."),
    "local-in-mask+stop__probability=0.05": "`local-in-mask`, stopped at p(target) < 0.05 instead of 0.5.",
    "fast+stop__probability=0.05": "`fast`, stopped at p(target) < 0.05 instead of 0.5.",
}
README_METHODS = ("local-fill-in-mask", "local-in-mask", "seed", "fast", "local", "local-fill", "local-exemplar", "latent-shift")


@dataclass(frozen=True)
class Column:
    """A measure on the page: the rows' column, its header and its one-line meaning."""

    key: str
    header: str
    legend: str
    digits: int = 3


LOCALITY = (
    Column("validity", "valid", "share of films whose target probability fell below 0.5"),
    Column("oracle_validity", "oracle agrees", "share whose probability on the pack's oracle also fell below 0.5"),
    Column("target_drop", "p drop", "fall of the target probability from the reconstruction's"),
    Column("share_in_gt_l1", "inside the finding",
           "share of the change (counterfactual minus reconstruction, absolute) inside the finding's true mask"),
    Column("share_in_gt_dilated_l1", "within 8 px of the finding", "the same for the mask grown by 8 px"),
    Column("share_in_ref_mask_l1", "in the seed's mask",
           "share of the change inside Grad-CAM++ > 0.5 of the input, the seed's region"),
)
FIDELITY = (
    Column("removal", "removal",
           "1 - error to the true counterfactual inside the finding / the input's (1: the finding removed "
           "as truly, 0: nothing removed)"),
    Column("mae_true_inside", "error to the true counterfactual, inside",
           "mean absolute difference from the true counterfactual inside the finding's mask (0-1 scale)"),
    Column("mae_true_outside", "error to the true counterfactual, outside", "the same outside it"),
    Column("off_target_max", "largest off-target change",
           "largest change of another finding's probability"),
    Column("realism", "realism",
           "the latent model's reconstruction error of the counterfactual over the input's (1: as "
           "plausible as the input, higher: less)", 2),
    Column("steps", "steps", "optimizer steps", 0),
    Column("seconds", "s / film", "seconds per film (batch time / batch size)", 2),
)
BLIND = "oracle_validity_seen"  # oracle agreement without the findings the oracle cannot see
SEEN = "oracle_agrees_seen"  # oracle agreement over the films whose input the oracle calls positive


@dataclass(frozen=True)
class Goal:
    """A goal the default method is held to: a mean of a rows file's column, or a speed-up."""

    rows: str  # a rows file of :data:`TABLES`, or a speed run's json of :data:`PERFS`
    key: str  # a column, :data:`SEEN`, or "speedup" (the seed loop's median seconds over the default's)
    label: str
    at_least: bool
    goal: float


#: The goals the default method is held to (the faithfulness goals the design sets for it).
GOALS: tuple[Goal, ...] = (
    Goal("phantom-matrix-rows.csv", "validity", "phantoms: findings flipped", True, 0.98),
    Goal("phantom-matrix-rows.csv", SEEN, "phantoms: the oracle agrees (films whose finding it sees on the input)",
         True, 0.90),
    Goal("phantom-matrix-rows.csv", "removal", "phantoms: removal score vs the true counterfactual", True, 0.5),
    Goal("phantom-matrix-rows.csv", "share_in_gt_dilated_l1", "phantoms: share of the change within 8 px of the "
         "true finding", True, 0.85),
    Goal("phantom-matrix-rows.csv", "off_target_max", "phantoms: largest change of another finding's p", False, 0.05),
    Goal("pneumonia-matrix-rows.csv", "validity", "pneumonia: findings flipped", True, 0.95),
    Goal("pneumonia-matrix-rows.csv", SEEN, "pneumonia: the oracle agrees (films whose pneumonia it sees on the "
         "input)", True, 0.80),
    Goal("perf-phantom-cpu.json", "speedup", "phantoms: median time per film, times faster than the seed's loop",
         True, 10.0),
    Goal("perf-pneumonia-cpu.json", "speedup", "pneumonia: median time per film, times faster than the seed's "
         "loop", True, 10.0),
)
FINDING_COLUMNS = ("validity", "oracle_validity", "share_in_gt_l1", "share_in_gt_dilated_l1",
                   "off_target_max", "steps")


# --------------------------------------------------------------------------------------------
# numbers


def read_rows(path: Path) -> list[dict[str, Any]]:
    """The rows of a ``rows.csv`` of ``xcf bench counterfactuals``, numbers parsed.

    Raises:
        SystemExit: the file is missing or has no rows.
    """
    try:
        from xcf.bench.counterfactuals import read_rows as _read
    except ImportError:
        from xcf.benchmarks_counterfactuals import read_rows as _read
    if not path.is_file():
        raise SystemExit(f"{path}: no such rows file; give the results folder that holds it (--results)")
    rows = _read(path)
    if not rows:
        raise SystemExit(f"{path}: no rows with 'method' and 'case'; give a rows.csv of xcf bench counterfactuals")
    return rows


def _value(v: Any) -> float | None:
    if isinstance(v, bool):
        return float(v)
    if isinstance(v, (int, float)) and not math.isnan(v):
        return float(v)
    return None


def mean(rows: Sequence[Mapping[str, Any]], key: str) -> tuple[float, int]:
    """Mean of a column over the rows that have a number in it (empty and NaN cells left out).

    Returns:
        ``(mean, n)``; ``(nan, 0)`` when no row has a number.
    """
    vals = [v for v in (_value(r.get(key)) for r in rows) if v is not None]
    return (sum(vals) / len(vals), len(vals)) if vals else (math.nan, 0)


def method_order(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """The methods of the rows: those of :data:`METHODS` in its order, then the others as they come."""
    seen = list(dict.fromkeys(r["method"] for r in rows))
    return [m for m in METHODS if m in seen] + [m for m in seen if m not in METHODS]


def summarize(rows: Sequence[Mapping[str, Any]], table: Table) -> list[dict[str, Any]]:
    """Per method: ``method``, ``n`` (films) and, per column, ``(mean, n used, n expected)``.

    ``n expected`` is the number of films the column applies to: all of them, or for the oracle
    column without the blind findings (key :data:`BLIND`), those whose finding the oracle sees.
    """
    out = []
    for m in method_order(rows):
        rs = [r for r in rows if r["method"] == m]
        row: dict[str, Any] = {"method": m, "n": len(rs)}
        for col in (*LOCALITY, *FIDELITY):
            row[col.key] = (*mean(rs, col.key), len(rs))
        if table.oracle_blind:
            seen = [r for r in rs if r.get("finding") not in table.oracle_blind]
            row[BLIND] = (*mean(seen, "oracle_validity"), len(seen))
        out.append(row)
    return out


# --------------------------------------------------------------------------------------------
# markdown


def _cell(stat: tuple[float, int, int], digits: int) -> str:
    m, n, expected = stat
    if n == 0:
        return "-"
    return f"{m:.{digits}f}" + (f" (n {n})" if n != expected else "")


def _columns(summ: Sequence[Mapping[str, Any]], cols: Sequence[Column], table: Table) -> list[Column]:
    return [c for c in cols if c.key not in table.omit and any(r[c.key][1] for r in summ)]


def _markdown(summ: Sequence[Mapping[str, Any]], cols: Sequence[Column], extra: Sequence[Column] = ()) -> str:
    heads = ["method", "films", *(c.header for c in cols)]
    lines = ["| " + " | ".join(heads) + " |", "|" + "---|" * len(heads)]
    for r in summ:
        name = f"**{r['method']}** (default)" if r["method"] == DEFAULT_METHOD else r["method"]
        lines.append("| " + " | ".join([name, str(r["n"]), *(_cell(r[c.key], c.digits) for c in cols)]) + " |")
    legend = "; ".join(f"*{c.header}*: {c.legend}" for c in (*cols, *extra))
    return "\n".join(lines) + "\n\n" + f"Means over the films; *films*: how many; {legend}."


def locality_table(summ: Sequence[Mapping[str, Any]], table: Table) -> str:
    """The validity and locality table of one rows file, with its legend line."""
    cols = _columns(summ, LOCALITY, table)
    if table.oracle_blind:
        blind = ", ".join(table.oracle_blind)
        extra = Column(BLIND, f"oracle agrees, {blind} left out",
                       f"the same over the films whose finding the oracle sees (not {blind})")
        at = [c.key for c in cols].index("oracle_validity") + 1 if any(c.key == "oracle_validity" for c in cols) else len(cols)
        cols = [*cols[:at], extra, *cols[at:]]
    return _markdown(summ, cols)


def fidelity_table(summ: Sequence[Mapping[str, Any]], table: Table) -> str:
    """The fidelity, realism and cost table of one rows file, with its legend line."""
    return _markdown(summ, _columns(summ, FIDELITY, table))


def finding_table(rows: Sequence[Mapping[str, Any]], table: Table) -> str:
    """Per finding and method: films and the means of :data:`FINDING_COLUMNS` the rows have."""
    by = {c.key: c for c in (*LOCALITY, *FIDELITY)}
    cols = [by[k] for k in FINDING_COLUMNS if any(_value(r.get(k)) is not None for r in rows)]
    heads = ["finding", "method", "films", *(c.header for c in cols)]
    lines = ["| " + " | ".join(heads) + " |", "|" + "---|" * len(heads)]
    for f in dict.fromkeys(r.get("finding") or "" for r in rows):
        for m in method_order(rows):
            rs = [r for r in rows if r["method"] == m and (r.get("finding") or "") == f]
            if rs:
                cells = [_cell((*mean(rs, c.key), len(rs)), c.digits) for c in cols]
                lines.append("| " + " | ".join([f, m, str(len(rs)), *cells]) + " |")
    blind = (f"; the oracle cannot see {', '.join(table.oracle_blind)}: its agreement there says nothing"
             if table.oracle_blind else "")
    return "\n".join(lines) + f"\n\nMeans over the films of each finding, the measures of the tables above{blind}."


def _median(run: Mapping[str, Any], key: str) -> float:
    """The median of ``key`` over the films of one variant of a ``benchmarks/perf.py`` run."""
    return statistics.median([float(x[key]) for x in run["rows"]])


def perf_table(runs: Sequence[Mapping[str, Any]]) -> str:
    """Per variant of a ``benchmarks/perf.py`` run: films, medians and the speed-up, as perf.py prints them."""
    base = _median(runs[0], "seconds")
    lines = ["| method | films | median s / film | speed-up vs the seed's loop | median steps | valid | "
             "in the seed's mask (median) | peak memory MB |", "|---|---|---|---|---|---|---|---|"]
    for r in runs:
        sec = _median(r, "seconds")
        valid = sum(bool(x["valid"]) for x in r["rows"]) / len(r["rows"])
        lines.append(f"| {r['variant']} | {len(r['rows'])} | {sec:.2f} | {base / sec:.1f}x | {_median(r, 'steps'):.0f} | "
                     f"{valid:.2f} | {_median(r, 'share_l1'):.3f} | {r['maxrss_mb']:.0f} |")
    return "\n".join(lines) + ("\n\n*valid*: share of films whose p(finding) fell below 0.5; *in the seed's "
                               "mask*: share of the change inside Grad-CAM++ > 0.5 of the input; *peak "
                               "memory*: the process's peak resident memory.")


def readme_table(results: Sequence[tuple[Table, list[dict[str, Any]]]]) -> str:
    """README's compact table: per method of :data:`README_METHODS` and pack, the headline means."""
    lines = ["| method | pack | films | valid | oracle agrees | within 8 px of the finding | in the seed's mask "
             "| removal | s / film |",
             "|---|---|---|---|---|---|---|---|---|"]
    order = list(README_METHODS) + [m for t, _ in results for m in (t.readme or ())
                                    if m not in README_METHODS]
    for m in dict.fromkeys(order):
        for table, summ in results:
            if m not in (table.readme if table.readme is not None else README_METHODS):
                continue
            r = next((s for s in summ if s["method"] == m), None)
            if r is None:
                continue
            oracle = r.get(BLIND, r["oracle_validity"])
            name = f"**{m}** (default)" if m == DEFAULT_METHOD else m
            cells = [name, table.pack, str(r["n"]), _cell(r["validity"], 3), _cell(oracle, 3),
                     _cell(r["share_in_gt_dilated_l1"], 3), _cell(r["share_in_ref_mask_l1"], 3),
                     _cell(r["removal"], 3), _cell(r["seconds"], 2)]
            lines.append("| " + " | ".join(cells) + " |")
    blind = list(dict.fromkeys(f"{t.pack}: {', '.join(t.oracle_blind)} left out, the oracle cannot see it"
                               for t, _ in results if t.oracle_blind))
    return "\n".join(lines) + (
        "\n\nMeans over each pack's test films, generated by `python benchmarks/report.py` from the rows in "
        "`docs/results/`; every measure, the commands and the plots: `docs/results/index.md`. *valid*: the "
        "target probability fell below 0.5; *oracle agrees*: it fell below 0.5 on the pack's independently "
        f"trained oracle too ({'; '.join(blind) or 'every finding'}); *within 8 px*: share of the change "
        "within 8 px of the finding's true mask; *in the seed's mask*: share of the change inside Grad-CAM++ "
        "> 0.5 of the input (the only locality measure on films without ground truth); *removal*: how much of the finding the change removed "
        "against the true counterfactual (1: all, 0: nothing); *s / film*: one thread, two to four runs "
        "sharing a 2-core CPU.")


def goal_value(goal: Goal, rows: Sequence[Mapping[str, Any]] | None, run: Sequence[Mapping[str, Any]] | None,
               method: str) -> tuple[float, int]:
    """``(value, films)`` of ``method`` for ``goal``: a mean over the rows (:data:`SEEN`: over the
    films whose input the oracle puts at 0.5 or above), or the speed-up of a speed run."""
    if goal.key == "speedup":
        mine = next((v for v in run or () if v["variant"] == method), None)
        if mine is None or not run:
            return math.nan, 0
        return _median(run[0], "seconds") / _median(mine, "seconds"), len(mine["rows"])
    mine = [r for r in rows or () if r["method"] == method]
    if goal.key == SEEN:
        mine = [r for r in mine if (_value(r.get("oracle_p_input")) or 0.0) >= 0.5]
        return mean(mine, "oracle_validity")
    return mean(mine, goal.key)


def goals_table(values: Sequence[tuple[Goal, float, int]], method: str) -> str:
    """The default's goals, its means and by how much each is met or missed."""
    lines = [f"| goal | {method} | films | target | met |", "|---|---|---|---|---|"]
    for g, v, n in values:
        if n == 0:
            lines.append(f"| {g.label} | - | 0 | {'>=' if g.at_least else '<='} {g.goal:g} | not measured |")
            continue
        digits = 1 if g.key == "speedup" else 3  # judged as printed, as default_rule.py does
        gap = round(v, digits) - g.goal if g.at_least else g.goal - round(v, digits)
        gap = round(gap, digits)
        fmt = (lambda x: f"{x:.1f}x") if g.key == "speedup" else (lambda x: f"{x:.3f}")
        verdict = "yes" if gap >= 0 else f"**no**, short by {fmt(abs(gap))}"
        lines.append(f"| {g.label} | {fmt(v)} | {n} | {'>=' if g.at_least else '<='} {fmt(g.goal)} | {verdict} |")
    return "\n".join(lines)


def page(results: Sequence[tuple[Table, list[dict[str, Any]], list[dict[str, Any]]]],
         perfs: Sequence[tuple[Perf, list[dict[str, Any]]]] = ()) -> str:
    """The whole results page (markdown)."""
    out = ["# Results", "",
           "This page is generated by `python benchmarks/report.py` from the rows files in this folder and must "
           "not be edited by hand; `python benchmarks/report.py --check` fails when it is stale.", "",
           "## Methods", ""]
    out += [f"- `{m}`: {d}" for m, d in METHODS.items()]
    out += ["", "Each is run by `xcf bench counterfactuals --methods NAME`; `tests/test_method_pins.py` "
            "pins every shipped method's result on fixed phantoms, so a rows file stays the method's "
            "as long as that test passes.", ""]
    by_rows = {t.rows: rows for t, rows, _ in results}
    by_json = {p.json: run for p, run in perfs}
    values = [(g, *goal_value(g, by_rows.get(g.rows), by_json.get(g.rows), DEFAULT_METHOD)) for g in GOALS]
    out += ["## The default method against its goals", "",
            f"The default method, `{DEFAULT_METHOD}`, on the rows of the tables below (phantoms: the 200 "
            "held-out test phantoms; pneumonia: the test films with pneumonia) and the two speed runs. "
            "The oracle's agreement counts the films whose finding the oracle itself sees on the input (p >= 0.5), "
            "as the default-method rule does. The pneumonia oracle calls only 0.514 of the test split's real "
            "normal films normal ([`oracle-reference.md`](oracle-reference.md)): a counterfactual that keeps "
            "most of a test film can hardly do better.", "",
            goals_table(values, DEFAULT_METHOD), ""]
    for table, rows, summ in results:
        out += [f"## {table.title}", "", table.about, "",
                f"Oracle: {table.oracle}", "",
                "### Validity and locality", "", locality_table(summ, table), "",
                "### Fidelity, realism and cost", "", fidelity_table(summ, table), ""]
        if table.omit_note:
            out += [table.omit_note, ""]
        if len({r.get("finding") for r in rows}) > 1:
            out += ["### Per finding", "", finding_table(rows, table), ""]
        out += [f"![validity against locality, {table.pack} pack]({table.plot})", "",
                plot_caption(table), "",
                f"Rows: [`{table.rows}`]({table.rows}), one per (method, film). Made by:", "",
                "```", table.commands, "```", ""]
    for perf, runs in perfs:
        out += [f"## {perf.title}", "", perf.about, "", perf_table(runs), "",
                f"Per-film rows: [`{perf.json}`]({perf.json}). Made by:", "", "```", perf.command, "```", ""]
    out += ["## Other results in this folder", "",
            "- [`local-fill-in-mask-vs-default.md`](local-fill-in-mask-vs-default.md): the rule that made "
            "`local-fill-in-mask` the default (at least as valid, as local and as often confirmed by the "
            "oracle as `local-in-mask` on both packs: `python benchmarks/default_rule.py`), and the same "
            "rule against the seed's method.",
            "- [`default-vs-seed.md`](default-vs-seed.md): the rule that made `local-in-mask` (the default "
            "where a pack has no inpainter) the default against the seed's method.",
            "- [`local-fill-vs-default.md`](local-fill-vs-default.md): `local-fill` against `local-in-mask` by "
            "the same rule: far more faithful on phantoms, but not the default (its change leaves the "
            "seed's mask and the finding's 8 px a little more often, and one pneumonia film of 48 does "
            "not flip).",
            "- [`local-exemplar-vs-default.md`](local-exemplar-vs-default.md): `local-exemplar` against "
            "`local-in-mask` by the same rule: the oracle agrees far more often on both packs, but on pneumonia "
            "its change lies far less in the seed's mask (it replaces half the film).",
            "- [`oracle-reference.md`](oracle-reference.md): what the oracle says of films really without "
            "the finding (the phantoms' true counterfactuals, the pneumonia test split's normal films, the "
            "exemplar bank): the reference for every *oracle agrees* column.",
            "- [`train-phantom-pack-cpu.md`](train-phantom-pack-cpu.md), "
            "[`train-pneumonia-pack-cpu.md`](train-pneumonia-pack-cpu.md): how the shipped packs were trained, "
            "command by command, with their times and held-out results.", ""]
    return "\n".join(out)


# --------------------------------------------------------------------------------------------
# plots


_LOCALITY_AXIS = {"share_in_gt_dilated_l1": "share of the change within 8 px of the finding",
                  "share_in_gt_l1": "share of the change inside the finding",
                  "share_in_ref_mask_l1": "share of the change in the seed's Grad-CAM++ mask"}


def plot_caption(table: Table) -> str:
    return (f"One point per method: filled, the classifier's validity; hollow, the oracle's agreement"
            f"{' without ' + ', '.join(table.oracle_blind) if table.oracle_blind else ''}; up: more "
            f"{_LOCALITY_AXIS[table.locality].removeprefix('share of the change ')}.")


def plot_data(table: Table, summ: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """What a table's plot draws: per method (validity, oracle agreement, locality), and its labels."""
    oracle_key = BLIND if table.oracle_blind else "oracle_validity"
    points = []
    for r in summ:
        x, y, o = r["validity"][0], r[table.locality][0], r[oracle_key][0]
        if not (math.isnan(x) or math.isnan(y)):
            points.append({"method": r["method"], "valid": round(x, 4), "oracle": None if math.isnan(o) else round(o, 4),
                           "locality": round(y, 4), "n": r["n"]})
    return {"title": table.title, "pack": table.pack, "y": _LOCALITY_AXIS[table.locality],
            "oracle": "independent oracle agrees" + (f" ({', '.join(table.oracle_blind)} left out)" if table.oracle_blind else ""),
            "points": points, "style": 3}


def digest(data: Mapping[str, Any]) -> str:
    """sha256 of a plot's data: the PNG carries it, ``--check`` compares it."""
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


def draw(data: Mapping[str, Any], path: Path) -> None:
    """Write one validity-vs-locality plot (PNG) with the digest of ``data`` in its metadata."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    fig = Figure(figsize=(7.2, 4.4), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    pts = data["points"]
    for p in pts:
        color = _color(p["method"])
        if p["oracle"] is not None:
            ax.plot([p["oracle"], p["valid"]], [p["locality"]] * 2, color=color, lw=0.8, alpha=0.5, zorder=1)
            ax.scatter([p["oracle"]], [p["locality"]], s=36, facecolors="white", edgecolors=color, zorder=2)
        ax.scatter([p["valid"]], [p["locality"]], s=40, color=color, zorder=3)
    ys = [p["locality"] for p in pts] or [0.0, 1.0]
    ax.set_xlim(0, 1.01)
    ax.set_ylim(max(0.0, min(ys) - 0.08), min(1.0, max(ys)) + 0.05)
    ax.set_xlabel("share of films whose target probability fell below 0.5")
    ax.set_ylabel(data["y"])
    ax.set_title(f"{data['pack']} pack: validity against locality", fontsize=10)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    ax.grid(True, alpha=0.25, lw=0.5)
    keys = [Line2D([], [], ls="", marker="o", color="0.3", label="classifier: valid"),
            Line2D([], [], ls="", marker="o", markerfacecolor="white", color="0.3", label=data["oracle"])]
    ax.legend(handles=keys, loc="best", fontsize=8, frameon=False)
    fig.subplots_adjust(left=0.1, right=0.74, bottom=0.12, top=0.92)
    _labels(fig, ax, pts)
    fig.savefig(path, bbox_inches="tight", metadata={"Software": None, DIGEST_KEY: digest(data)})


def _color(method: str) -> str:
    return "tab:red" if method == DEFAULT_METHOD else "black" if method == "seed" else "tab:gray"


def _labels(fig: Any, ax: Any, pts: Sequence[Mapping[str, Any]]) -> None:
    """Name each method right of the axes, level with its points, moved apart so that none overlap."""
    fig.canvas.draw()
    to_pt = 72.0 / fig.dpi  # display pixels -> points
    gap = 12.0  # points between two names' centres
    y0 = ax.transData.transform((0, ax.get_ylim()[0]))[1] * to_pt
    y1 = ax.transData.transform((0, ax.get_ylim()[1]))[1] * to_pt
    per_pt = (ax.get_ylim()[1] - ax.get_ylim()[0]) / (y1 - y0)  # data units per point
    placed: list[float] = []
    for p in sorted(pts, key=lambda q: -q["locality"]):
        y = p["locality"]
        if placed and placed[-1] - y < gap * per_pt:
            y = placed[-1] - gap * per_pt
        placed.append(y)
        name = f"{p['method']}{' (default)' if p['method'] == DEFAULT_METHOD else ''}, n {p['n']}"
        ax.annotate(name, (p["valid"], p["locality"]), xytext=(1.04, y), textcoords=("axes fraction", "data"),
                    ha="left", va="center", fontsize=8, color="black", annotation_clip=False,
                    arrowprops={"arrowstyle": "-", "lw": 0.5, "color": _color(p["method"]), "alpha": 0.6,
                                "shrinkA": 2, "shrinkB": 4})


def plot_digest_on_disk(path: Path) -> str | None:
    """The digest a PNG written by :func:`draw` carries, or ``None`` (missing, unreadable, other PNG)."""
    try:
        from PIL import Image

        with Image.open(path) as im:
            return im.text.get(DIGEST_KEY)  # type: ignore[attr-defined]
    except (OSError, AttributeError):
        return None


# --------------------------------------------------------------------------------------------
# files


def replace_block(text: str, block: str) -> str | None:
    """``text`` with the lines between :data:`START` and :data:`END` replaced by ``block``.

    Returns:
        The new text, or ``None`` when ``text`` lacks either marker (or has END before START).
    """
    i, j = text.find(START), text.find(END)
    if i < 0 or j < 0 or j < i:
        return None
    return text[: i + len(START)] + "\n" + block.rstrip("\n") + "\n" + text[j:]


def build(results_dir: Path, tables: Sequence[Table] | None = None,
          perfs: Sequence[Perf] | None = None) -> dict[str, Any]:
    """Everything the script writes, computed from the rows files.

    Args:
        results_dir: The folder of the rows files (and of the page).
        tables: The rows files to show (default :data:`TABLES`).
        perfs: The speed runs to show (default :data:`PERFS`; each left out where its file is missing).

    Returns:
        ``{"page": markdown, "readme_block": markdown, "plots": {file name: plot data}}``.
    """
    tables = TABLES if tables is None else tables
    perfs = PERFS if perfs is None else perfs
    results = []
    for table in tables:
        rows = read_rows(results_dir / table.rows)
        results.append((table, rows, summarize(rows, table)))
    runs = [(perf, json.loads((results_dir / perf.json).read_text(encoding="utf-8")))
            for perf in perfs if (results_dir / perf.json).is_file()]
    return {"page": page(results, runs),
            "readme_block": readme_table([(t, s) for t, _, s in results]),
            "plots": {t.plot: plot_data(t, s) for t, _, s in results}}


def stale(results_dir: Path, readme: Path | None, built: Mapping[str, Any]) -> list[str]:
    """The generated files that differ from what is on disk (names, with why)."""
    out = []
    page_path = results_dir / PAGE
    if not page_path.is_file() or page_path.read_text(encoding="utf-8") != built["page"]:
        out.append(f"{page_path} differs from the rows")
    for name, data in built["plots"].items():
        if plot_digest_on_disk(results_dir / name) != digest(data):
            out.append(f"{results_dir / name} was not drawn from the current rows")
    if readme is not None and readme.is_file():
        text = readme.read_text(encoding="utf-8")
        new = replace_block(text, built["readme_block"])
        if new is not None and new != text:
            out.append(f"{readme}: the results table differs from the rows")
    return out


def write(results_dir: Path, readme: Path | None, built: Mapping[str, Any]) -> list[str]:
    """Write the page, the plots and README's table; returns what was written."""
    done = []
    (results_dir / PAGE).write_text(built["page"], encoding="utf-8")
    done.append(str(results_dir / PAGE))
    for name, data in built["plots"].items():
        draw(data, results_dir / name)
        done.append(str(results_dir / name))
    if readme is not None and readme.is_file():
        text = readme.read_text(encoding="utf-8")
        new = replace_block(text, built["readme_block"])
        if new is None:
            print(f"{readme}: no '{START}' / '{END}' lines; its results table left alone", file=sys.stderr)
        elif new != text:
            readme.write_text(new, encoding="utf-8")
            done.append(str(readme))
    return done


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python benchmarks/report.py", description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true",
                    help="write nothing; exit 1 if the page, a plot or README's table is stale")
    ap.add_argument("--results", type=Path, default=RESULTS, help="the results folder (default: docs/results)")
    ap.add_argument("--readme", type=Path, default=README, help="README with the table markers (default: README.md)")
    args = ap.parse_args(argv)
    built = build(args.results)
    if args.check:
        bad = stale(args.results, args.readme, built)
        for line in bad:
            print(f"stale: {line}", file=sys.stderr)
        if bad:
            print("run: python benchmarks/report.py", file=sys.stderr)
        return 1 if bad else 0
    for path in write(args.results, args.readme, built):
        print(f"wrote {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
