"""``xcf report DIR``: a static ``index.html`` over a results folder, for people who read films.

The page reads ``results.csv`` (from :func:`xcf.explain_dataset`) and each case's ``report.json``;
a folder without ``results.csv`` (``xcf explain`` with several images, ``xcf demo``) is scanned for
``report.json`` files instead. It shows:

- what was run, in words: the method and models, what a case's optimizer updates count, the time
  (given once: films are searched in batches and a batch's time is shared by its films), a summary
  (films, how many fell below the decision threshold, median probabilities before and after), a
  one-line legend per measure, and, with several findings, a table per finding;
- one card per case: the film and its counterfactual side by side, a slider under the
  counterfactual that wipes back to the film (and a button that flips between the two), two
  see-through layers that can be switched on and off (the change, red brighter / blue darker, and
  the search region's outline), the finding's probability before and after in words, the other
  findings' probabilities, the measures by their plain names, and how the search ended;
- a tool bar: filter by text, by whether the counterfactual fell below the threshold, sort by a
  measure, and switch a layer on or off on every card.

The images are the files :meth:`xcf.Counterfactual.save` writes next to ``report.json``
(:data:`xcf.result.PAGE_FILES`), linked relatively; everything else is inline (no network, no
external scripts), so the folder can be copied, served, or opened from disk as it is. Cards fit the
window: no horizontal scrolling at 800 px or wider, and below 1000 px the text goes under the films.
"""

from __future__ import annotations

import csv
import html
import json
import logging
import math
import os
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .atomic import atomic_file
from .errors import DataError
from .gif import GIF_NAME
from .report import MEASURES, Measure, fmt_measure, percent, search_levels, steps_sentence
from .result import CHANGE_FLOOR, PAGE_FILES, status_words, stop_rule

__all__ = ["build_report", "load_rows", "REPORT_NAME"]

logger = logging.getLogger(__name__)

REPORT_NAME = "index.html"

#: The measures shown on a card and in the legend (``steps`` is said with how the search ended).
_CARD_MEASURES = tuple(m for m in MEASURES if m.key != "steps")
_STEPS = next(m for m in MEASURES if m.key == "steps")
#: The share measures the per-finding table shows (where present).
_TABLE_MEASURES = ("share_in_gt_l1", "share_in_gt_dilated_l1", "share_in_mask_l1")

esc = html.escape


def _num(v: Any) -> float | None:
    if isinstance(v, bool):
        return float(v)
    if v is None or v == "":
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _row_from_report(case_id: str, folder: Path, rep: dict[str, Any]) -> dict[str, Any]:
    m = rep.get("metrics") or {}
    return {"id": case_id, "path": rep.get("source") or "", "target": rep.get("target"),
            "p_input": rep.get("p_input"), "p_reconstruction": rep.get("p_reconstruction"),
            "p_counterfactual": rep.get("p_counterfactual"), "validity": m.get("validity"),
            "target_drop": m.get("target_drop"), "share_in_mask_l1": m.get("share_in_mask_l1"),
            "steps": rep.get("steps"), "seconds": rep.get("seconds"),
            "status": rep.get("status"), "error": "", "label": None, "_folder": folder}


def load_rows(directory: str | os.PathLike) -> list[dict[str, Any]]:
    """The cases of a results folder: ``results.csv`` rows (each with ``_folder``), or, without it,
    one row per ``report.json`` found at most two levels down.

    Raises:
        DataError: No ``results.csv`` and no ``report.json`` under ``directory``.
    """
    d = Path(directory)
    if not d.is_dir():
        raise DataError(f"{d}: not a folder; expected the --out folder of xcf explain-dataset")
    csv_path = d / "results.csv"
    rows: list[dict[str, Any]] = []
    if csv_path.is_file():
        try:
            with open(csv_path, newline="", encoding="utf-8") as fh:
                for r in csv.DictReader(fh):
                    r = dict(r)
                    r["_folder"] = d / "cases" / (r.get("id") or "")
                    rows.append(r)
        except (OSError, UnicodeDecodeError, csv.Error) as exc:
            raise DataError(f"{csv_path}: cannot read ({exc})") from None
        return rows
    reports = sorted(p for pat in ("report.json", "*/report.json", "*/*/report.json")
                     for p in d.glob(pat) if not any(s.startswith(".") for s in p.relative_to(d).parts))
    for p in reports:
        rep = _read_json(p)
        if rep is not None:
            rel = p.parent.relative_to(d)
            rows.append(_row_from_report(str(rel) if str(rel) != "." else d.name, p.parent, rep))
    if not rows:
        raise DataError(f"{d}: no results.csv and no report.json found; expected an xcf output folder")
    return rows


# --------------------------------------------------------------------------------------------------
# one case, as the page needs it
# --------------------------------------------------------------------------------------------------


def _case(row: dict[str, Any], index: int) -> dict[str, Any]:
    """A row merged with its ``report.json`` (which has every finding's probabilities, all the
    metrics, the config and the batch size); numbers as floats or ``None``."""
    folder: Path = row["_folder"]
    rep = (_read_json(folder / "report.json") or {}) if folder.is_dir() else {}
    metrics = {k: _num(v) for k, v in (rep.get("metrics") or {}).items()}
    for k in ("validity", "target_drop", "share_in_mask_l1"):  # results.csv's columns
        if metrics.get(k) is None and _num(row.get(k)) is not None:
            metrics[k] = _num(row.get(k))
    cid = str(row.get("id") or "")
    status = str(row.get("status") or rep.get("status") or "")
    return {
        "index": index, "id": cid, "name": Path(cid).name or cid, "folder": folder,
        "path": str(row.get("path") or rep.get("source") or ""),
        "target": str(row.get("target") or rep.get("target") or ""),
        "label": _num(row.get("label")),
        "p_before": _num(row.get("p_input", rep.get("p_input"))),
        "p_start": _num(row.get("p_reconstruction", rep.get("p_reconstruction"))),
        "p_after": _num(row.get("p_counterfactual", rep.get("p_counterfactual"))),
        "probabilities": rep.get("probabilities") or {},
        "metrics": metrics,
        "steps": _num(row.get("steps", rep.get("steps"))),
        "seconds": _num(row.get("seconds", rep.get("seconds"))),
        "batch": int(_num((rep.get("provenance") or {}).get("batch_size")) or 1),
        "status": status, "error": str(row.get("error") or ""),
        "config": rep.get("config") or {}, "components": rep.get("components") or {},
        "max_change": _num(rep.get("max_change")),
    }


def _threshold(config: dict[str, Any]) -> float:
    return _num(config.get("decision_threshold")) or 0.5


def _is_valid(c: dict[str, Any]) -> bool | None:
    v = c["metrics"].get("validity")
    if v is not None:
        return v >= 0.5
    if c["p_after"] is None:
        return None
    return c["p_after"] < _threshold(c["config"])


def _median(values: Sequence[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return statistics.median(vals) if vals else None


def _rel(path: Path, base: Path) -> str:
    return Path(os.path.relpath(path, base)).as_posix()


def _level_note(c: dict[str, Any]) -> str:
    """"searched in 2 of 4 region levels" where the result says which level it ended at."""
    levels, _budgets, _fb = search_levels(c["config"])
    level = c["metrics"].get("region_threshold")
    if len(levels) < 2 or level is None:
        return ""
    used = next((i + 1 for i, v in enumerate(levels) if abs(v - level) < 1e-6), None)
    if used is None:
        return ""
    fb = " (and again in the second saliency map's regions)" if c["metrics"].get("region_fallback") else ""
    return f", over {used} of {len(levels)} region levels{fb}"


def _ended(c: dict[str, Any]) -> str:
    stop, off = stop_rule(c["config"])
    words = status_words(c["status"], stop, off)
    n = None if c["steps"] is None else int(c["steps"])
    steps = "" if n is None else f"{n} optimizer update{'' if n == 1 else 's'}{_level_note(c)}; "
    time = ""
    if c["seconds"] is not None and c["batch"] == 1:
        time = f"; {c['seconds']:.1f} s"
    return f"{steps}{words}{time}"


# --------------------------------------------------------------------------------------------------
# HTML pieces
# --------------------------------------------------------------------------------------------------


def _img(src: str, cls: str, alt: str) -> str:
    return f'<img class="{cls}" src="{esc(src)}" alt="{esc(alt)}" loading="lazy" decoding="async">'


def _layers(c: dict[str, Any], d: Path, files: dict[str, Path]) -> str:
    out = []
    if "change" in files:
        out.append(_img(_rel(files["change"], d), "ov ov-change", "change"))
    if "region" in files:
        out.append(_img(_rel(files["region"], d), "ov ov-region", "search region"))
    return "".join(out)


def _card(c: dict[str, Any], d: Path) -> str:
    folder: Path = c["folder"]
    valid = _is_valid(c)
    vkey = "error" if c["status"] == "error" else ("yes" if valid else "no")
    thr = _threshold(c["config"])
    target = c["target"] or "finding"
    text = " ".join((c["id"], c["target"], c["status"], c["path"])).lower()
    sort = {"p_after": c["p_after"], "p_before": c["p_before"], "steps": c["steps"],
            **{m.key: c["metrics"].get(m.key) for m in _CARD_MEASURES}}
    data = "".join(f' data-s-{k.replace("_", "-")}="{v:.6f}"' for k, v in sort.items() if v is not None)
    head = (f'<article class="case" id="{esc(c["id"])}" data-order="{c["index"]}" data-valid="{vkey}" '
            f'data-finding="{esc(c["target"].lower())}" data-text="{esc(text)}"{data}')
    title = (f'<h2><span class="finding">{esc(target)}</span> '
             f'<span class="cid">{esc(c["name"])}</span></h2>')
    if c["status"] == "error":
        return (f'{head}><div class="info">{title}<p class="err">Could not be explained: '
                f'{esc(c["error"])}</p><p class="files">{esc(c["path"])}</p></div></article>')

    files = {k: folder / n for k, n in PAGE_FILES.items() if (folder / n).is_file()}
    shows = ' class="case show-region"' if "region" in files else ' class="case"'
    head = head.replace(' class="case"', shows, 1)
    before, after = percent(c["p_before"]), percent(c["p_after"])
    if "film" in files and "counterfactual" in files:
        film = _rel(files["film"], d)
        cf = _rel(files["counterfactual"], d)
        layers = _layers(c, d, files)
        views = (
            '<div class="views">'
            f'<figure class="view"><div class="frame">{_img(film, "base", f"film, {target} {before}")}'
            f'{layers}</div><figcaption><b>Film</b> · {esc(target)} {esc(before)}</figcaption></figure>'
            f'<figure class="view"><div class="frame compare" title="click to flip between '
            f'counterfactual and film">{_img(cf, "base", f"counterfactual, {target} {after}")}'
            '<span class="tag r">counterfactual</span><div class="top">'
            f'{_img(film, "base", "film")}<span class="tag l">film</span></div><div class="line"></div>'
            f'{layers}</div><figcaption><b>Counterfactual</b> · {esc(target)} {esc(after)}'
            '</figcaption>'
            '<div class="wipe"><label for="w-' + esc(c["id"]) + '">film from the left</label>'
            '<input type="range" class="wipe-range" id="w-' + esc(c["id"]) + '" min="0" max="100" '
            'value="0" aria-label="how much of the film shows from the left, over the '
            'counterfactual">'
            '<button type="button" class="flip" title="flip between counterfactual and film">'
            'flip</button></div></figure></div>')
    else:  # a folder from an older xcf: its four-panel figure
        fig = next((folder / n for n in ("figure.png", "thumb.png", "counterfactual.png")
                    if (folder / n).is_file()), None)
        views = ('<div class="views one">' + (f'<figure class="view">{_img(_rel(fig, d), "wide", "figure")}'
                                              '</figure>' if fig else "") + '</div>')

    badge = (f'<span class="badge yes">below {esc(percent(thr))}</span>' if valid
             else f'<span class="badge no">still at or above {esc(percent(thr))}</span>')
    prob = (f'<p class="prob">{esc(target)}: <b>{esc(before)}</b> before, <b>{esc(after)}</b> '
            f'after {badge}</p>')
    if c["label"] is not None:
        prob += f'<p class="note">Labelled {"positive" if c["label"] >= 0.5 else "negative"} for {esc(target)} in the data set.</p>'
    lim = max(c["max_change"], CHANGE_FLOOR) if c["max_change"] is not None else None
    scale = f"; full colour at a change of {lim:.2f} of the grey range" if lim is not None else ""
    toggles = []
    if "change" in files:
        toggles.append(f'<label><input type="checkbox" class="layer" data-layer="change"> change '
                       f'<span class="key">(<i class="red">red</i> brighter, <i class="blue">blue</i> '
                       f'darker in the counterfactual{esc(scale)})</span></label>')
    if "region" in files:
        toggles.append('<label><input type="checkbox" class="layer" data-layer="region" checked> '
                       'search region <span class="key">(<i class="yellow">yellow</i> outline: where '
                       'the search could change the film)</span></label>')
    layers_html = (f'<fieldset class="layers"><legend>Show on both films</legend>{"".join(toggles)}'
                   '</fieldset>' if toggles else "")
    rows = "".join(f'<tr><th scope="row" title="{esc(m.legend)}">{esc(m.name)}</th>'
                   f'<td>{esc(fmt_measure(m, c["metrics"].get(m.key)))}</td></tr>'
                   for m in _CARD_MEASURES if c["metrics"].get(m.key) is not None)
    measures = f'<table class="measures">{rows}</table>' if rows else ""
    others = _others(c)
    links = [(c["folder"] / n, label) for n, label in (
        ("figure.png", "four-panel figure"), ("difference.png", "difference maps"),
        (GIF_NAME, "optimization path"), ("report.json", "report.json"))]
    links_html = " · ".join(f'<a href="{esc(_rel(p, d))}">{esc(label)}</a>' for p, label in links if p.is_file())
    src = f'<span class="src">{esc(c["path"])}</span> · ' if c["path"] else ""
    info = (f'<div class="info">{title}{prob}<p class="ended">{esc(_ended(c))}</p>{layers_html}'
            f'{measures}{others}<p class="files">{src}{links_html}</p></div>')
    return f"{head}>{views}{info}</article>"


def _others(c: dict[str, Any]) -> str:
    """The other findings' probabilities before and after; open when one moved by 10 points."""
    items = []
    moved = 0.0
    for name, p in c["probabilities"].items():
        if name == c["target"] or not isinstance(p, dict):
            continue
        a, b = _num(p.get("input")), _num(p.get("counterfactual"))
        shift = abs(b - a) if a is not None and b is not None else 0.0
        moved = max(moved, shift)
        cls = ' class="moved"' if shift >= 0.1 else ""
        items.append(f'<li{cls}>{esc(name)}: {esc(percent(a))} before, {esc(percent(b))} after</li>')
    if not items:
        return ""
    is_open = " open" if moved >= 0.1 else ""
    return (f'<details class="others"{is_open}><summary>Other findings (largest shift '
            f'{100 * moved:.0f} points)</summary><ul>{"".join(items)}</ul></details>')


def _time_stat(cases: list[dict[str, Any]], meta: dict[str, Any] | None) -> tuple[str, str, str]:
    """``(value, label, sentence)``: the search time per film, said once for the page."""
    secs = [c["seconds"] for c in cases if c["seconds"] is not None]
    if not secs:
        return "", "", ""
    total = sum(secs)  # each film carries its batch's time / batch size: the sum is the search time
    per = total / len(secs)
    batches = sorted({c["batch"] for c in cases if c["seconds"] is not None})
    if batches == [1]:
        label, how = "s per film", "films searched one at a time"
    else:
        sizes = ", ".join(str(b) for b in batches)
        label = f"s per film (batch{'es' if len(batches) > 1 else ''} of {sizes})"
        how = (f"films searched in batches of {sizes}: a batch's time is shared equally by its "
               "films, so no film has a time of its own")
    sentence = f"{total:.1f} s of search for {len(secs)} films, {per:.1f} s per film ({how})"
    wall = _num((meta or {}).get("seconds"))
    if wall is None:
        hist = [h for h in (meta or {}).get("history") or [] if isinstance(h, dict)]
        wall = _num(hist[-1].get("seconds")) if hist else None
    if wall is not None:
        sentence += f"; the whole run, with loading and writing, took {wall:.1f} s"
    return f"{per:.1f}", label, sentence + "."


def _run_info(cases: list[dict[str, Any]], meta: dict[str, Any] | None) -> str:
    meta = meta or {}
    ok = [c for c in cases if c["status"] != "error"]
    cfg = next((c["config"] for c in ok if c["config"]), None) or meta.get("config") or {}
    comps = next((c["components"] for c in ok if c["components"]), None) or meta.get("components") or {}
    method = meta.get("method") or (cfg.get("method") if "region.levels" in cfg else None)
    stop, off = stop_rule(cfg)
    items = [
        ("data", str(meta.get("data") or "") + (f" (split {meta['split']})" if meta.get("split") else "")),
        ("explaining", "every positive finding" if meta.get("all_positive") else str(meta.get("target") or "")),
        ("method", str(method or "")),
        ("models", ", ".join(f"{k} {v}" for k, v in comps.items() if k != "method")),
        ("stops", "" if not cfg else (
            f"once the finding's probability is below {percent(stop)}"
            + (f" and every other finding is within {off * 100:g} points of its start" if off is not None else "")
            if stop is not None else "never early: every film uses all its updates")),
        ("updates", steps_sentence(cfg) if cfg else ""),
        ("time", _time_stat(cases, meta)[2]),
        ("engine", str(meta.get("engine") or "") + (f", {meta['workers']} workers" if meta.get("workers") else "")),
        ("config hash", str(meta.get("config_hash") or "")),
    ]
    return '<dl class="run">' + "".join(
        f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in items if v) + "</dl>"


def _present(cases: list[dict[str, Any]], measures: Sequence[Measure]) -> list[Measure]:
    return [m for m in measures if any(c["metrics"].get(m.key) is not None for c in cases)]


def _legend(cases: list[dict[str, Any]]) -> str:
    ms = _present(cases, _CARD_MEASURES)
    if not ms:
        return ""
    lines = "".join(f"<li><b>{esc(m.name)}:</b> {esc(m.legend)}</li>" for m in ms)
    return ('<section class="legend"><h2>What the measures say</h2><p class="note">The change is '
            'the counterfactual minus the image the search started from (the film itself when '
            f'the method keeps the film outside its region).</p><ul>{lines}</ul></section>')


def _by_finding(cases: list[dict[str, Any]]) -> str:
    ok = [c for c in cases if c["status"] != "error"]
    groups: dict[str, list[dict[str, Any]]] = {}
    for c in ok:
        groups.setdefault(c["target"], []).append(c)
    if len(groups) < 2:
        return ""
    thr = percent(_threshold(next((c["config"] for c in ok if c["config"]), {})))
    ms = [m for m in _present(ok, MEASURES) if m.key in _TABLE_MEASURES]
    short = {"share_in_gt_l1": "inside the finding", "share_in_gt_dilated_l1": "within 8 px of it",
             "share_in_mask_l1": "inside the search region"}
    top = ('<tr><th rowspan="2">finding</th><th rowspan="2">films</th>'
           f'<th rowspan="2">below {esc(thr)} after</th><th colspan="2" class="grp">probability</th>'
           + (f'<th colspan="{len(ms)}" class="grp">share of the change</th>' if ms else "")
           + '<th rowspan="2">optimizer updates</th></tr>')
    sub = "<tr><th>before</th><th>after</th>" + "".join(f"<th>{esc(short[m.key])}</th>" for m in ms) + "</tr>"
    body = []
    for name, cs in [*groups.items(), ("all findings", ok)]:
        cells = [name, str(len(cs)), f"{sum(bool(_is_valid(c)) for c in cs)} of {len(cs)}",
                 percent(_median([c["p_before"] for c in cs])), percent(_median([c["p_after"] for c in cs])),
                 *[fmt_measure(m, _median([c["metrics"].get(m.key) for c in cs])) for m in ms],
                 fmt_measure(_STEPS, _median([c["steps"] for c in cs]))]
        cls = ' class="all"' if name == "all findings" else ""
        body.append(f"<tr{cls}>" + "".join(f"<td>{esc(v)}</td>" for v in cells) + "</tr>")
    return ('<section class="by-finding"><h2>By finding <span class="note">(medians over each '
            "finding's films)</span></h2><table><thead>" + top + sub + "</thead><tbody>"
            + "".join(body) + "</tbody></table></section>")


def _stats(cases: list[dict[str, Any]], meta: dict[str, Any] | None) -> str:
    ok = [c for c in cases if c["status"] != "error"]
    thr = _threshold(next((c["config"] for c in ok if c["config"]), {}))
    n_valid = sum(bool(_is_valid(c)) for c in ok)
    stats = [(str(len(ok)), "films explained"),
             (f"{n_valid} of {len(ok)}", f"below {percent(thr)} after")]
    pb, pa = _median([c["p_before"] for c in ok]), _median([c["p_after"] for c in ok])
    if pb is not None:
        stats.append((f"{percent(pb)} → {percent(pa)}", "median probability, before → after"))
    for key in ("share_in_gt_l1", "share_in_mask_l1"):
        m = next(m for m in MEASURES if m.key == key)
        v = _median([c["metrics"].get(key) for c in ok])
        if v is not None:
            stats.append((fmt_measure(m, v), f"median {m.name}"))
    per, label, _ = _time_stat(ok, meta)
    if per:
        stats.append((per, label))
    n_err = len(cases) - len(ok)
    if n_err:
        stats.append((str(n_err), "could not be explained"))
    return '<div class="stats">' + "".join(
        f'<div class="stat"><b>{esc(v)}</b><span>{esc(k)}</span></div>' for v, k in stats) + "</div>"


def _sort_options(cases: list[dict[str, Any]]) -> str:
    """``<option>``s of the sort menu: ``value`` is ``key|asc`` or ``key|desc`` (a card's
    ``data-s-<key>``); the measures of the finding's place list the worst cases first."""
    opts = [("order|asc", "as listed"), ("finding|asc", "finding"),
            ("p-after|desc", "probability after (highest first)"),
            ("p-before|asc", "probability before (lowest first)")]
    for m in _present(cases, _CARD_MEASURES):
        low = m.unit == "share" and m.key != "mask_area"
        opts.append((f"{m.key.replace('_', '-')}|{'asc' if low else 'desc'}",
                     f"{m.name} ({'lowest' if low else 'highest'} first)"))
    opts.append(("steps|desc", "optimizer updates (most first)"))
    return "".join(f'<option value="{esc(k)}">{esc(v)}</option>' for k, v in opts)


_CSS = """
:root { --fg:#1d2330; --muted:#5d6678; --line:#e2e5ea; --soft:#f6f7f9; --accent:#2458c6;
        --ok:#127a3e; --okbg:#dcf5e5; --bad:#b42318; --badbg:#fde4e1; --region:#ffd600; }
* { box-sizing: border-box; }
[hidden] { display: none !important; }
body { font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--fg);
       margin: 0; background: #fff; }
.wrap { max-width: 1480px; margin: 0 auto; padding: 0 24px; }
header.page { padding: 20px 0 6px; }
h1 { font-size: 24px; margin: 0 0 6px; }
h2 { font-size: 17px; margin: 0 0 6px; }
.lead { margin: 0 0 12px; max-width: 75ch; }
.note { color: var(--muted); font-size: 13px; font-weight: normal; }
.stats { display: flex; flex-wrap: wrap; gap: 10px; margin: 10px 0 12px; }
.stat { border: 1px solid var(--line); border-radius: 8px; padding: 8px 14px; min-width: 130px; }
.stat b { display: block; font-size: 20px; font-variant-numeric: tabular-nums; }
.stat span { color: var(--muted); font-size: 13px; }
dl.run { display: grid; grid-template-columns: max-content minmax(0, 1fr); gap: 3px 14px; margin: 8px 0 12px;
         font-size: 14px; }
dl.run dt { color: var(--muted); } dl.run dd { margin: 0; overflow-wrap: anywhere; }
.about { display: grid; grid-template-columns: minmax(0, 1fr) minmax(0, 1fr); gap: 4px 32px; }
.about h2 { margin-top: 4px; }
.legend ul { margin: 4px 0 10px; padding-left: 20px; font-size: 14px; }
.legend li { margin: 1px 0; }
.by-finding { margin: 10px 0 6px; }
.by-finding table { border-collapse: collapse; font-size: 14px; font-variant-numeric: tabular-nums;
                    max-width: 100%; }
.by-finding th, .by-finding td { padding: 3px 8px; border-bottom: 1px solid var(--line); text-align: right; }
.by-finding td { white-space: nowrap; }
.by-finding th { font-weight: 600; font-size: 13px; color: var(--muted); vertical-align: bottom; }
.by-finding th.grp { text-align: center; border-bottom: 1px solid #c9ced6; }
.by-finding th:first-child, .by-finding td:first-child { text-align: left; }
.by-finding tr.all td { font-weight: 600; border-top: 2px solid var(--line); }
.tools { position: sticky; top: 0; z-index: 5; background: #fbfbfc; border-top: 1px solid var(--line);
         border-bottom: 1px solid var(--line); }
.tools .wrap { display: flex; flex-wrap: wrap; gap: 8px 14px; align-items: center; padding-top: 8px;
               padding-bottom: 8px; }
.tools input[type=search], .tools select { font: inherit; font-size: 14px; padding: 4px 8px;
         border: 1px solid #cfd4dc; border-radius: 6px; max-width: 100%; }
.tools input[type=search] { width: 240px; }
.tools #sort { max-width: 280px; }
.tools label { font-size: 14px; white-space: nowrap; }
.tools .count { color: var(--muted); margin-left: auto; font-size: 14px; }
main { padding-bottom: 40px; }
article.case { display: grid; grid-template-columns: minmax(0, 1fr) minmax(280px, 360px); gap: 22px;
               border: 1px solid var(--line); border-radius: 10px; padding: 16px; margin: 16px 0;
               scroll-margin-top: 70px; }
.views { display: grid; grid-template-columns: repeat(2, minmax(0, 1fr)); gap: 14px; min-width: 0; }
.views.one { grid-template-columns: minmax(0, 1fr); }
.views img.wide { width: 100%; display: block; }
figure { margin: 0; min-width: 0; }
figcaption { font-size: 14px; margin-top: 4px; }
.frame { position: relative; width: 100%; aspect-ratio: 1 / 1; background: #000; border-radius: 4px;
         overflow: hidden; }
.frame img { position: absolute; inset: 0; width: 100%; height: 100%; object-fit: contain; display: block; }
.frame .top { position: absolute; inset: 0; clip-path: inset(0 calc(100% - var(--wipe, 0%)) 0 0); }
.frame .tag { position: absolute; top: 6px; font-size: 12px; color: #fff; background: rgba(0,0,0,.55);
              padding: 0 6px; border-radius: 3px; pointer-events: none; }
.frame .tag.l { left: 6px; } .frame .tag.r { right: 6px; }
.frame .line { position: absolute; top: 0; bottom: 0; left: var(--wipe, 0%); width: 2px;
               margin-left: -1px; background: rgba(255,255,255,.85); box-shadow: 0 0 2px #000;
               pointer-events: none; display: none; }
.frame.wiping .line { display: block; }
.frame.compare { cursor: pointer; }
.frame .ov { display: none; pointer-events: none; }
.case.show-change .ov-change, .case.show-region .ov-region { display: block; }
.wipe { display: flex; align-items: center; gap: 8px; font-size: 13px; color: var(--muted); margin-top: 4px; }
.wipe input { flex: 1 1 auto; min-width: 60px; }
.wipe button, .flip { font: inherit; font-size: 13px; padding: 2px 10px; border: 1px solid #cfd4dc;
                      border-radius: 6px; background: #fff; cursor: pointer; }
.info { min-width: 0; overflow-wrap: anywhere; }
.info h2 .cid { color: var(--muted); font-weight: normal; font-size: 14px; margin-left: 6px; }
.prob { font-size: 17px; margin: 2px 0 6px; }
.ended { margin: 0 0 8px; font-size: 14px; }
.badge { display: inline-block; padding: 1px 9px; border-radius: 10px; font-size: 13px; font-weight: 600;
         white-space: nowrap; vertical-align: 1px; }
.badge.yes { color: var(--ok); background: var(--okbg); } .badge.no { color: var(--bad); background: var(--badbg); }
fieldset.layers { border: 1px solid var(--line); border-radius: 8px; margin: 0 0 10px; padding: 4px 10px 6px; }
fieldset.layers legend { font-size: 13px; color: var(--muted); padding: 0 4px; }
fieldset.layers label { display: block; font-size: 14px; margin: 2px 0; }
.key { color: var(--muted); font-size: 13px; }
i.red { color: #c0392b; font-style: normal; font-weight: 600; }
i.blue { color: #1f5fa8; font-style: normal; font-weight: 600; }
i.yellow { color: #a08300; font-style: normal; font-weight: 600; }
table.measures { border-collapse: collapse; width: 100%; font-size: 14px; margin: 0 0 8px;
                 font-variant-numeric: tabular-nums; }
table.measures th { text-align: left; font-weight: normal; color: var(--muted); padding: 2px 8px 2px 0;
                    border-bottom: 1px solid var(--line); cursor: help; }
table.measures td { text-align: right; padding: 2px 0; border-bottom: 1px solid var(--line); white-space: nowrap; }
details.others { font-size: 14px; margin: 0 0 8px; }
details.others summary { cursor: pointer; color: var(--muted); }
details.others ul { margin: 4px 0; padding-left: 20px; }
details.others li.moved { color: var(--bad); font-weight: 600; }
.files { font-size: 13px; color: var(--muted); margin: 6px 0 0; }
.files a { color: var(--accent); }
.err { color: var(--bad); }
@media (max-width: 1000px) {
  article.case { grid-template-columns: minmax(0, 1fr); }
  .about { grid-template-columns: minmax(0, 1fr); }
}
@media (max-width: 640px) {
  .wrap { padding: 0 12px; }
  .views { grid-template-columns: minmax(0, 1fr); }
  dl.run { grid-template-columns: minmax(0, 1fr); } dl.run dd { margin-bottom: 4px; }
}
"""

_JS = """
const list = document.getElementById('cases');
const cards = Array.from(list.querySelectorAll('article.case'));
function wipe(card, v) {
  const f = card.querySelector('.compare'), r = card.querySelector('.wipe-range');
  if (!f) return;
  r.value = v; f.style.setProperty('--wipe', v + '%');
  f.classList.toggle('wiping', v > 0 && v < 100);
}
list.addEventListener('input', e => {
  if (e.target.matches('.wipe-range')) wipe(e.target.closest('.case'), e.target.value);
});
list.addEventListener('click', e => {
  const hit = e.target.closest('.flip, .compare');
  if (!hit) return;
  const card = hit.closest('.case'), r = card.querySelector('.wipe-range');
  wipe(card, Number(r.value) < 50 ? 100 : 0);
});
function setLayer(card, layer, on) {
  card.classList.toggle('show-' + layer, on);
  const box = card.querySelector('input.layer[data-layer="' + layer + '"]'); if (box) box.checked = on;
}
list.addEventListener('change', e => {
  if (e.target.matches('input.layer')) setLayer(e.target.closest('.case'), e.target.dataset.layer, e.target.checked);
});
document.querySelectorAll('input.all-layer').forEach(box => box.addEventListener('change', () =>
  cards.forEach(c => setLayer(c, box.dataset.layer, box.checked))));
function num(c, k) { const v = c.dataset['s' + k.replace(/(^|-)([a-z])/g, (m, a, b) => b.toUpperCase())]; return v === undefined ? NaN : parseFloat(v); }
function sortCards() {
  const [k, dir] = document.getElementById('sort').value.split('|');
  const sorted = cards.slice().sort((a, b) => {
    if (k === 'order') return a.dataset.order - b.dataset.order;
    if (k === 'finding') return a.dataset.finding.localeCompare(b.dataset.finding) || a.dataset.order - b.dataset.order;
    const x = num(a, k), y = num(b, k);
    if (isNaN(x) !== isNaN(y)) return isNaN(x) ? 1 : -1;
    return (dir === 'desc' ? y - x : x - y) || a.dataset.order - b.dataset.order;
  });
  sorted.forEach(c => list.appendChild(c));
}
function applyFilter() {
  const q = document.getElementById('q').value.trim().toLowerCase();
  const v = document.getElementById('v').value;
  let n = 0;
  cards.forEach(c => {
    const show = (!q || c.dataset.text.includes(q)) && (v === 'all' || c.dataset.valid === v);
    c.hidden = !show; n += show;
  });
  document.getElementById('count').textContent = n + ' of ' + cards.length + ' cases';
}
document.getElementById('q').addEventListener('input', applyFilter);
document.getElementById('v').addEventListener('change', applyFilter);
document.getElementById('sort').addEventListener('change', sortCards);
applyFilter();
"""


def build_report(directory: str | os.PathLike, *, title: str | None = None) -> Path:
    """Write ``index.html`` into a results folder (atomically) and return its path.

    Args:
        directory: The ``--out`` folder of ``xcf explain-dataset`` or ``xcf demo`` (or any folder of
            xcf results). A ``run.json`` there says what was run (data, method, models, time).
        title: Page title; default from ``run.json`` or the folder name.

    Raises:
        DataError: The folder holds no xcf results.
    """
    d = Path(directory)
    cases = [_case(r, i) for i, r in enumerate(load_rows(d))]
    meta = _read_json(d / "run.json")
    n = len(cases)
    if title is None:
        if meta and meta.get("title"):
            title = str(meta["title"])
        elif meta and (meta.get("components") or {}).get("pack"):
            title = f"xcf counterfactuals: pack {meta['components']['pack']}, {n} cases"
        else:
            title = f"xcf counterfactuals: {d.resolve().name}, {n} cases"
    thr = _threshold(next((c["config"] for c in cases if c["config"]), {}))
    has_change = any((c["folder"] / PAGE_FILES["change"]).is_file() for c in cases)
    has_region = any((c["folder"] / PAGE_FILES["region"]).is_file() for c in cases)
    all_layers = ""
    if has_change:
        all_layers += ('<label><input type="checkbox" class="all-layer" data-layer="change"> change on '
                       'every film</label>')
    if has_region:
        all_layers += ('<label><input type="checkbox" class="all-layer" data-layer="region" checked> '
                       'search region on every film</label>')
    lead = (
        "Each card shows a film and its counterfactual: the same film changed by the search until "
        f"the classifier's probability of the finding falls below {percent(thr)}, changing it only "
        "inside a search region where the classifier looked. Drag the slider under the "
        "counterfactual to uncover the film from the left, or click the image to flip between the "
        "two; switch on the change (red: brighter in the counterfactual, blue: darker) and the "
        "search region's outline. Link a case as index.html#&lt;case&gt;.")
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{esc(title)}</title>
<style>{_CSS}</style></head><body>
<header class="page"><div class="wrap">
<h1>{esc(title)}</h1>
<p class="lead">{lead}</p>
{_stats(cases, meta)}
<div class="about"><section class="what"><h2>What was run</h2>{_run_info(cases, meta)}</section>
{_legend(cases)}</div>
{_by_finding(cases)}
</div></header>
<div class="tools"><div class="wrap">
<input id="q" type="search" placeholder="filter by case, finding, status, path" aria-label="filter">
<select id="v" aria-label="which cases"><option value="all">all cases</option>
<option value="yes">below {esc(percent(thr))} after</option><option value="no">still at or above {esc(percent(thr))}</option>
<option value="error">could not be explained</option></select>
<label>sort by <select id="sort">{_sort_options(cases)}</select></label>
{all_layers}
<span class="count" id="count"></span></div></div>
<main><div class="wrap" id="cases">
{chr(10).join(_card(c, d) for c in cases)}
</div></main>
<script>{_JS}</script>
</body></html>
"""
    out = d / REPORT_NAME
    with atomic_file(out, "w", encoding="utf-8") as fh:
        fh.write(page)
    logger.info("wrote %s (%d cases)", out, n)
    return out


# --------------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------------


def _add_parser(sub) -> None:
    p = sub.add_parser("report", help="build a static index.html over a results folder",
                       description="Write DIR/index.html: one card per case in DIR (results.csv + "
                                   "report.json): the film and its counterfactual side by side with "
                                   "a before/after slider, the change and the search region as "
                                   "layers, the probabilities and measures in words.")
    p.add_argument("dir", metavar="DIR", help="the --out folder of xcf explain-dataset or xcf demo")
    p.add_argument("--title", help="page title")
    p.set_defaults(func=_run_cli)


def _run_cli(args) -> int:
    out = build_report(args.dir, title=args.title)
    print(f"wrote {out}")
    return 0


def _register_cli() -> None:
    from .commands import COMMANDS

    COMMANDS["report"] = _add_parser


_register_cli()
