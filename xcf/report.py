"""Summaries people read: the measures named in plain language (:data:`MEASURES`), what a search's
step count means (:func:`steps_sentence`), a per-case CSV and a Markdown table of means/medians
with n (written atomically). The results page is :mod:`xcf.html_report`."""

from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .atomic import atomic_file
from .metrics import summarize

__all__ = ["write_csv", "markdown_table", "fmt", "Measure", "MEASURES", "measure_labels", "fmt_measure",
           "percent", "search_levels", "steps_sentence"]


@dataclass(frozen=True)
class Measure:
    """A per-case measure as people read it.

    Attributes:
        key: Its key in a result's ``metrics`` (or the result itself, for ``steps``).
        name: A short plain-language name, for column headers.
        legend: One line saying what it is.
        unit: ``"share"`` (a fraction shown in %), ``"points"`` (a probability difference shown in
            percentage points) or ``"count"``.
    """

    key: str
    name: str
    legend: str
    unit: str = "share"


#: The measures a results page and the demo's summary show, in this order (each where present).
MEASURES: tuple[Measure, ...] = (
    Measure("target_drop", "fall in probability",
            "how far the finding's probability fell from the search's starting image to the "
            "counterfactual, in percentage points", "points"),
    Measure("share_in_gt_l1", "inside the finding",
            "share of the change that lies within the true finding's outline"),
    Measure("share_in_gt_dilated_l1", "near the finding",
            "share of the change that lies within 8 px of the true finding's outline"),
    Measure("share_in_mask_l1", "inside the search region",
            "share of the change that lies within the region the search was allowed to change"),
    Measure("iou_gt", "overlap with the finding",
            "overlap (intersection over union) of the most-changed pixels, as many as the finding "
            "has, with the finding's outline"),
    Measure("removal", "removed as the truth does",
            "how close the change comes to the same film drawn without the finding: 100 % the "
            "same, 0 % nothing removed, below 0 something else painted in"),
    Measure("off_target_max", "largest shift of another finding",
            "the most that any other finding's probability moved, in percentage points", "points"),
    Measure("mask_area", "search region size", "share of the film inside the search region"),
    Measure("steps", "optimizer updates",
            "updates of the search, summed over all the region levels the film was searched in",
            "count"),
)


def measure_labels() -> dict[str, str]:
    """``{key: plain name}`` of :data:`MEASURES` (for :func:`markdown_table`)."""
    return {m.key: m.name for m in MEASURES}


def percent(p: float | None, digits: int = 0) -> str:
    """A probability or fraction in [0, 1] as ``"97 %"``; ``"–"`` when unknown."""
    if p is None or not math.isfinite(p):
        return "–"
    v = round(100 * p, digits)
    if digits == 0 and v == 0 and p > 0:
        return "< 1 %"
    if digits == 0 and v == 100 and p < 1:
        return "> 99 %"
    return f"{v:.{digits}f} %"


def fmt_measure(m: Measure, v: float | None) -> str:
    """A measure's value for people: ``"25 %"``, ``"82 points"``, ``"461"``; ``"–"`` when unknown."""
    if v is None or not math.isfinite(v):
        return "–"
    if m.unit == "count":
        return f"{int(round(v))}"
    if m.unit == "points":
        return f"{100 * v:.0f} points"
    return f"{100 * v:.0f} %"


def search_levels(config: dict[str, Any] | None) -> tuple[list[float], list[int], str | None]:
    """``(region levels, step budget of each level, fallback saliency)`` of a result's ``config``
    (a method's ``region.*`` settings or the flat ``region_thresholds`` / ``level_steps`` /
    ``region_fallback``). No levels recorded: one level with the ``steps`` budget (or none)."""
    cfg = config or {}
    levels = cfg.get("region.levels", cfg.get("region_thresholds")) or []
    level_steps = cfg.get("region.level_steps", cfg.get("level_steps"))
    fallback = cfg.get("region.fallback", cfg.get("region_fallback"))
    steps = cfg.get("steps")
    if steps is None:
        return [float(v) for v in levels], [], fallback
    n = max(1, len(levels))
    budgets = [int(level_steps) if level_steps and i < n - 1 else int(steps) for i in range(n)]
    return [float(v) for v in levels], budgets, fallback


def steps_sentence(config: dict[str, Any] | None) -> str:
    """What a result's ``steps`` counts, in one sentence with this config's budgets, e.g. "Optimizer
    updates, summed over all the region levels a film was searched in: each level has a budget of
    200 (4 levels: saliency above 0.5, 0.35, 0.2, 0.1), so a film can use up to 800"."""
    levels, budgets, fallback = search_levels(config)
    cfg = config or {}
    if "fill.dilate" in cfg:  # a fill method: a level costs a fill, not updates
        where = f"{len(levels)} levels, saliency above {', '.join(f'{v:g}' for v in levels)}" if levels else "its levels"
        where += f"; then {fallback}'s regions" if fallback else ""
        if "donors" in cfg:
            return (f"No optimizer updates: each region ({where}) is filled from the {cfg['donors']} closest "
                    "films of the bank in turn, and a film keeps the first region and film that meet the stop rule.")
        steps = int(cfg.get("steps") or 0)
        if steps <= 0:
            return f"No optimizer updates: each region ({where}) is filled in turn, until one meets the stop rule."
        out = (f"Optimizer updates: none where the fill of a region ({where}) meets the stop rule; a film no "
               f"fill flips is searched in the inpainter's latent for up to {steps}")
        if cfg.get("repair"):
            out += (f", and a film whose fill flips but misses the rest of the rule for up to {steps} in its "
                    f"region and {steps} in the largest")
        return out + "."
    if not budgets:
        return ("Optimizer updates, summed over all the region levels a film was searched in "
                "(each level has its own budget).")
    total = sum(budgets)
    if len(budgets) == 1:
        return f"Optimizer updates: at most {total} (one search region)."
    where = f"saliency above {', '.join(f'{v:g}' for v in levels)}" if levels else "growing regions"
    if len(set(budgets)) == 1:
        each = f"each level has a budget of {budgets[0]}"
    else:
        each = f"every level but the last has a budget of {budgets[0]}, the last {budgets[-1]}"
    out = (f"Optimizer updates, summed over all the region levels a film was searched in: {each} "
           f"({len(budgets)} levels, {where}; a film moves to the next, larger region only if it "
           f"has not flipped), so a film can use up to {total}")
    if fallback:
        out += f", and as many again in the regions of a second saliency map ({fallback}) if it never flipped"
    return out + "."


def fmt(v: Any, digits: int = 3) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        if math.isnan(v):
            return "n/a"
        return f"{v:.{digits}f}"
    return str(v)


def write_csv(rows: Sequence[dict[str, Any]], path: str | os.PathLike, columns: Sequence[str] | None = None) -> None:
    """Write rows (dicts) as CSV with a header; the union of keys in first-seen order by default."""
    if columns is None:
        columns = []
        for r in rows:
            columns += [k for k in r if k not in columns]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(columns), extrasaction="ignore")
    w.writeheader()
    for r in rows:
        w.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in columns})
    with atomic_file(path, "w", encoding="utf-8", newline="") as fh:
        fh.write(buf.getvalue())


def markdown_table(rows: Sequence[dict[str, Any]], group: str | None, metrics: Sequence[str],
                   labels: dict[str, str] | None = None, stat: str = "mean") -> str:
    """A Markdown table: one line per value of ``group`` (or one line overall), one column per metric
    as ``mean (median)`` with ``n`` in its own column."""
    labels = labels or {}
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault(str(r.get(group, "all")) if group else "all", []).append(r)
    head = [group or "", "n", *[labels.get(m, m) for m in metrics]]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, rs in groups.items():
        summ = summarize(rs, list(metrics))
        cells = [name, str(len(rs))]
        for m in metrics:
            s = summ.get(m)
            if not s or not s["n"]:
                cells.append("n/a")
            else:
                cells.append(f"{fmt(s['mean'])} ({fmt(s['median'])})")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
