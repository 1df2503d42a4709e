"""``xcf report DIR``: a static ``index.html`` over a results folder.

The page reads ``results.csv`` (from :func:`xcf.explain_dataset`) and each case's ``report.json``;
a folder without ``results.csv`` (``xcf explain`` with several images, ``xcf demo``) is scanned for
``report.json`` files instead. It shows:

- a summary (cases, valid counterfactuals, median target drop, locality and time, errors) and what
  was run (``run.json``: data, components, steps, engine, images per second);
- a table sortable by every column (click a header; numbers sort numerically) with a thumbnail per
  case (input | counterfactual | signed difference, ``thumb.png``, else ``counterfactual.png``), a
  text filter and a validity filter;
- each case's figure (``figure.png``), difference map and optimization GIF when present, opened by
  clicking its row (images load lazily, so a page over thousands of cases stays fast).

Everything is inline (no network, no external scripts); image paths are relative, so the folder can
be copied or served as it is.
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

__all__ = ["build_report", "load_rows", "REPORT_NAME"]

logger = logging.getLogger(__name__)

REPORT_NAME = "index.html"

#: (key, header, tooltip, kind) of the table's numeric/text columns after the thumbnail.
_COLUMNS: tuple[tuple[str, str, str, str], ...] = (
    ("id", "case", "case folder", "text"),
    ("target", "finding", "the finding removed", "text"),
    ("label", "label", "ground-truth label of the finding (1 positive, 0 negative)", "label"),
    ("p_input", "p input", "classifier probability of the finding on the input", "prob"),
    ("p_counterfactual", "p cf", "probability on the counterfactual", "prob"),
    ("target_drop", "drop", "p(reconstruction) - p(counterfactual)", "drop"),
    ("validity", "valid", "counterfactual below the decision threshold", "valid"),
    ("share_in_mask_l1", "locality", "share of |change| inside the saliency mask (L1)", "share"),
    ("steps", "steps", "optimizer steps", "int"),
    ("seconds", "time (s)", "seconds per image", "sec"),
    ("status", "status", "completed, stopped (early stop), nonfinite or error", "status"),
)


def _num(v: Any) -> float | None:
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


def _median(values: Sequence[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return statistics.median(vals) if vals else None


def _fmt(v: float | None, digits: int = 3) -> str:
    return "–" if v is None else f"{v:.{digits}f}"


def _rel(path: Path, base: Path) -> str:
    return Path(os.path.relpath(path, base)).as_posix()


def _bar(value: float | None, lo: float, hi: float, cls: str) -> str:
    if value is None:
        return ""
    frac = 0.0 if hi <= lo else min(1.0, max(0.0, (value - lo) / (hi - lo)))
    return f'<span class="bar {cls}"><span style="width:{frac * 100:.0f}%"></span></span>'


def _cell(key: str, kind: str, row: dict[str, Any]) -> str:
    raw = row.get(key)
    v = _num(raw)
    esc = html.escape
    if kind == "text":
        txt = str(raw or "")
        shown = esc(txt).replace("_", "_<wbr>")  # long ids may wrap at underscores
        return f'<td class="t {esc(key)}" data-sort="{esc(txt.lower())}">{shown}</td>'
    if kind == "status":
        txt = str(raw or "")
        return f'<td class="t" data-sort="{esc(txt)}"><span class="st st-{esc(txt)}">{esc(txt)}</span></td>'
    if kind == "label":
        txt = "" if v is None else f"{v:g}"
        return f'<td data-sort="{"" if v is None else v}">{txt}</td>'
    if kind == "valid":
        if v is None:
            return '<td data-sort="-1"></td>'
        ok = v >= 0.5
        return (f'<td data-sort="{v:g}"><span class="badge {"yes" if ok else "no"}">'
                f'{"yes" if ok else "no"}</span></td>')
    sort = "" if v is None else f"{v:.6f}"
    if kind == "drop":
        return f'<td data-sort="{sort}">{_fmt(v)}{_bar(v, 0.0, 1.0, "drop")}</td>'
    if kind == "share":
        return f'<td data-sort="{sort}">{_fmt(v, 2)}{_bar(v, 0.0, 1.0, "share")}</td>'
    if kind == "int":
        return f'<td data-sort="{sort}">{"" if v is None else int(v)}</td>'
    if kind == "sec":
        return f'<td data-sort="{sort}">{_fmt(v, 2)}</td>'
    return f'<td data-sort="{sort}">{_fmt(v)}</td>'


def _run_info(meta: dict[str, Any] | None) -> str:
    if not meta:
        return ""
    comps = meta.get("components") or {}
    worked = [h for h in meta.get("history") or [] if isinstance(h, dict) and h.get("n_explained")]
    last = worked[-1] if worked else meta
    cfg = meta.get("config") or {}
    items = [
        ("data", f"{meta.get('data', '')}" + (f" (split {meta['split']})" if meta.get("split") else "")),
        ("explaining", "every positive finding" if meta.get("all_positive") else str(meta.get("target") or "")),
        ("models", ", ".join(f"{k} {v}" for k, v in comps.items())),
        ("search", f"{cfg.get('steps')} steps max, lr {cfg.get('lr')}, "
                   + (f"stop below p {cfg['stop_probability']}" if cfg.get("stop_probability")
                      else "no early stop") + f", mask: saliency > {cfg.get('mask_threshold')}"),
        ("engine", f"{last.get('engine')}" + (f", {last['workers']} workers" if last.get("workers") else "")
         + (f"; last run that explained images: {last.get('n_explained')} images in "
            f"{last.get('seconds')} s ({last.get('images_per_second')} images/s, first results "
            f"after {last.get('first_batch_seconds')} s)"
            if last.get("seconds") is not None else "")
         + (f"; {len(meta['history'])} invocations" if len(meta.get("history") or []) > 1 else "")),
        ("config hash", str(meta.get("config_hash", ""))),
    ]
    return "<dl class=\"run\">" + "".join(
        f"<dt>{html.escape(k)}</dt><dd>{html.escape(v)}</dd>" for k, v in items if v) + "</dl>"


_CSS = """
:root { --fg:#1d2330; --muted:#667085; --line:#e4e7ec; --head:#f6f7f9; --accent:#2f6fde;
        --ok:#127a3e; --okbg:#dcf5e5; --bad:#b42318; --badbg:#fde4e1; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--fg);
       margin: 0; background: #fff; }
header { padding: 18px 28px 6px; }
h1 { font-size: 22px; margin: 0 0 4px; }
.sub { color: var(--muted); margin: 0 0 12px; }
.cards { display: flex; flex-wrap: wrap; gap: 10px; margin: 8px 0 10px; }
.card { border: 1px solid var(--line); border-radius: 8px; padding: 8px 14px; min-width: 120px; }
.card b { display: block; font-size: 20px; font-variant-numeric: tabular-nums; }
.card span { color: var(--muted); font-size: 12px; }
dl.run { display: grid; grid-template-columns: max-content 1fr; gap: 2px 14px; margin: 6px 0 8px;
         font-size: 13px; }
dl.run dt { color: var(--muted); } dl.run dd { margin: 0; word-break: break-all; }
.tools { display: flex; gap: 10px; align-items: center; padding: 8px 28px; border-top: 1px solid var(--line);
         border-bottom: 1px solid var(--line); background: #fbfbfc; position: sticky; top: 0; z-index: 3; }
.tools input, .tools select { font: inherit; padding: 4px 8px; border: 1px solid #cfd4dc; border-radius: 6px; }
.tools input { width: 320px; } .tools .count { color: var(--muted); margin-left: auto; }
main { padding: 6px 28px 40px; }
table { border-collapse: collapse; width: 100%; font-variant-numeric: tabular-nums; }
th, td { padding: 5px 8px; border-bottom: 1px solid var(--line); text-align: right; vertical-align: middle;
         white-space: nowrap; }
th { background: var(--head); position: sticky; top: 45px; z-index: 2; cursor: pointer; user-select: none;
     font-weight: 600; font-size: 13px; }
th:hover { background: #eceef2; } th.sorted { color: var(--accent); }
th .arrow { display: inline-block; width: 1em; color: var(--accent); }
td.t, th.t { text-align: left; } td.id { white-space: normal; max-width: 190px; } td.thumb { padding: 3px 8px; }
td.thumb img { height: 64px; display: block; border-radius: 3px; background: #000; }
tr.case { cursor: pointer; } tr.case:hover { background: #f5f8ff; }
tr.case.open { background: #eef3ff; }
tr.detail td { background: #fafbfd; text-align: left; padding: 12px 14px; white-space: normal; }
tr.detail img { width: 100%; display: block; border: 1px solid var(--line); border-radius: 4px; background: #fff; }
.detail-box { width: 0; min-width: 100%; }  /* never widens the table */
.figs { display: flex; flex-wrap: wrap; gap: 14px; align-items: flex-start; }
.figs figure { margin: 0; } .figs figcaption { color: var(--muted); font-size: 12px; margin-top: 3px; }
.figs .main { width: min(980px, 100%); } .figs .diff { width: min(560px, 100%); } .figs .gif { width: 256px; }
tr.case { scroll-margin-top: 96px; }
.meta { color: var(--muted); font-size: 12px; margin-top: 6px; }
.meta a { color: var(--accent); }
.badge { display: inline-block; padding: 1px 8px; border-radius: 10px; font-size: 12px; font-weight: 600; }
.badge.yes { color: var(--ok); background: var(--okbg); } .badge.no { color: var(--bad); background: var(--badbg); }
.st { font-size: 12px; color: var(--muted); } .st-error { color: var(--bad); font-weight: 600; }
.errline { color: var(--bad); font-size: 12px; width: 194px; max-height: 64px; overflow: hidden;
           white-space: normal; overflow-wrap: anywhere; line-height: 1.3; text-align: left; }
.err { color: var(--bad); white-space: normal; text-align: left; max-width: 520px; }
.bar { display: inline-block; width: 46px; height: 6px; background: #edf0f3; border-radius: 3px;
       margin-left: 8px; vertical-align: middle; overflow: hidden; }
.bar span { display: block; height: 100%; }
.bar.drop span { background: #5b8def; } .bar.share span { background: #3aa776; }
"""

_JS = """
const tbody = document.querySelector('#cases tbody');
const pairs = () => Array.from(tbody.querySelectorAll('tr.case')).map(r => [r, r.nextElementSibling]);
let sortCol = -1, sortDir = 1;
function sortBy(i) {
  sortDir = (sortCol === i) ? -sortDir : (document.querySelectorAll('#cases th')[i].dataset.desc ? -1 : 1);
  sortCol = i;
  const ps = pairs();
  ps.sort((a, b) => {
    const x = a[0].cells[i].dataset.sort ?? '', y = b[0].cells[i].dataset.sort ?? '';
    if (x === '' && y !== '') return 1; if (y === '' && x !== '') return -1;
    const nx = parseFloat(x), ny = parseFloat(y);
    const c = (isNaN(nx) || isNaN(ny)) ? x.localeCompare(y) : nx - ny;
    return c * sortDir;
  });
  ps.forEach(([r, d]) => { tbody.appendChild(r); tbody.appendChild(d); });
  document.querySelectorAll('#cases th').forEach((th, j) => {
    th.classList.toggle('sorted', j === i);
    const a = th.querySelector('.arrow'); if (a) a.textContent = j === i ? (sortDir > 0 ? '▲' : '▼') : '';
  });
}
function toggle(row) {
  const d = row.nextElementSibling, open = d.hidden;
  d.hidden = !open; row.classList.toggle('open', open);
  if (open) d.querySelectorAll('img[data-src]').forEach(im => { im.src = im.dataset.src; im.removeAttribute('data-src'); });
}
function applyFilter() {
  const q = document.getElementById('q').value.trim().toLowerCase();
  const v = document.getElementById('v').value;
  let n = 0;
  pairs().forEach(([r, d]) => {
    const okq = !q || r.dataset.text.includes(q);
    const okv = v === 'all' || r.dataset.valid === v;
    const show = okq && okv; r.hidden = !show; if (!show) { d.hidden = true; r.classList.remove('open'); }
    n += show;
  });
  document.getElementById('count').textContent = n + ' of ' + pairs().length + ' cases';
}
document.querySelectorAll('#cases th').forEach((th, i) => { if (th.dataset.sortable) th.addEventListener('click', () => sortBy(i)); });
tbody.addEventListener('click', e => { const r = e.target.closest('tr.case'); if (r && !e.target.closest('a')) toggle(r); });
document.getElementById('q').addEventListener('input', applyFilter);
document.getElementById('v').addEventListener('change', applyFilter);
applyFilter();
function openHash() {
  const id = decodeURIComponent(location.hash.slice(1));
  const r = id && document.getElementById(id);
  if (r && r.classList.contains('case')) { if (r.nextElementSibling.hidden) toggle(r); r.scrollIntoView(); }
}
window.addEventListener('hashchange', openHash);
openHash();
"""


def build_report(directory: str | os.PathLike, *, title: str | None = None) -> Path:
    """Write ``index.html`` into a results folder (atomically) and return its path.

    Args:
        directory: The ``--out`` folder of ``xcf explain-dataset`` (or any folder of xcf results).
        title: Page title; default from ``run.json`` or the folder name.

    Raises:
        DataError: The folder holds no xcf results.
    """
    from .gif import GIF_NAME

    d = Path(directory)
    rows = load_rows(d)
    meta = _read_json(d / "run.json")
    esc = html.escape
    ok_rows = [r for r in rows if (r.get("status") or "") != "error"]
    n_valid = sum(1 for r in ok_rows if (_num(r.get("validity")) or 0) >= 0.5)
    n_err = len(rows) - len(ok_rows)
    cards = [
        (str(len(rows)), "cases"),
        (f"{n_valid}/{len(ok_rows)}" if ok_rows else "0", "valid counterfactuals"),
        (_fmt(_median([_num(r.get("target_drop")) for r in ok_rows])), "median target drop"),
        (_fmt(_median([_num(r.get("share_in_mask_l1")) for r in ok_rows]), 2), "median locality"),
        (_fmt(_median([_num(r.get("seconds")) for r in ok_rows]), 2) + " s", "median time / image"),
        (str(n_err), "errors"),
    ]
    cards_html = "".join(f'<div class="card"><b>{esc(v)}</b><span>{esc(k)}</span></div>' for v, k in cards)
    if title is None:
        if meta and meta.get("components", {}).get("pack"):
            title = f"xcf counterfactuals: pack {meta['components']['pack']}, {len(rows)} cases"
        else:
            title = f"xcf counterfactuals: {d.resolve().name}, {len(rows)} cases"

    heads = ['<th class="t" title="thumbnail: input | counterfactual | change (red brighter, '
             'blue darker)">input · counterfactual · change</th>']
    for _key, label, tip, kind in _COLUMNS:
        cls = ' class="t"' if kind in ("text", "status") else ""
        desc = ' data-desc="1"' if kind in ("drop", "share", "prob", "valid") else ""
        heads.append(f'<th{cls} data-sortable="1"{desc} title="{esc(tip)}">{esc(label)}'
                     f'<span class="arrow"></span></th>')
    ncol = len(_COLUMNS) + 1
    body = []
    for r in rows:
        folder: Path = r["_folder"]
        status = str(r.get("status") or "")
        valid = _num(r.get("validity"))
        vkey = "error" if status == "error" else ("yes" if (valid or 0) >= 0.5 else "no")
        text = " ".join(str(r.get(k) or "") for k in ("id", "target", "status", "path")).lower()
        thumb = next((folder / n for n in ("thumb.png", "counterfactual.png") if (folder / n).is_file()), None)
        th = (f'<img src="{esc(_rel(thumb, d))}" loading="lazy" alt="">' if thumb else "")
        cells = [f'<td class="thumb">{th}</td>'] + [_cell(k, kind, r) for k, _, _, kind in _COLUMNS]
        if status == "error":
            msg = str(r.get("error") or "")
            cells[0] = f'<td class="thumb"><div class="errline" title="{esc(msg)}">{esc(msg)}</div></td>'
        body.append(f'<tr class="case" id="{esc(str(r.get("id") or ""))}" data-valid="{vkey}" '
                    f'data-text="{esc(text)}">{"".join(cells)}</tr>')
        if status == "error":
            detail = (f'<div class="err">{esc(str(r.get("error") or ""))}</div>'
                      f'<div class="meta">{esc(str(r.get("path") or ""))}</div>')
        else:
            figs = []
            for name, cls, cap in (("figure.png", "main", "input · reconstruction · counterfactual "
                                    "(mask in red) · saliency"),
                                   (GIF_NAME, "gif", "optimization path"),
                                   ("difference.png", "diff", "signed difference maps")):
                if (folder / name).is_file():
                    src = esc(_rel(folder / name, d))
                    figs.append(f'<figure class="{cls}"><a href="{src}"><img data-src="{src}" '
                                f'alt="{esc(cap)}"></a><figcaption>{esc(cap)}</figcaption></figure>')
            links = " · ".join(f'<a href="{esc(_rel(folder / n, d))}">{n}</a>' for n in
                               ("figure.png", "difference.png", "counterfactual.png", GIF_NAME, "report.json")
                               if (folder / n).is_file())
            detail = (f'<div class="figs">{"".join(figs)}</div><div class="meta">'
                      f'{esc(str(r.get("path") or ""))} — p(reconstruction) '
                      f'{_fmt(_num(r.get("p_reconstruction")))} — {links}</div>')
        body.append(f'<tr class="detail" hidden><td colspan="{ncol}"><div class="detail-box">{detail}'
                    '</div></td></tr>')

    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{esc(title)}</title>
<style>{_CSS}</style></head><body>
<header>
<h1>{esc(title)}</h1>
<p class="sub">Local counterfactuals: each image changed only where the classifier looked, until the
finding's probability drops. Click a column to sort, a row to open its figure; link a case as index.html#&lt;case&gt;.</p>
<div class="cards">{cards_html}</div>
{_run_info(meta)}
</header>
<div class="tools"><input id="q" type="search" placeholder="filter by case, finding, status, path">
<select id="v"><option value="all">all cases</option><option value="yes">valid</option>
<option value="no">not valid</option><option value="error">errors</option></select>
<span class="count" id="count"></span></div>
<main>
<table id="cases"><thead><tr>{"".join(heads)}</tr></thead>
<tbody>
{chr(10).join(body)}
</tbody></table>
</main>
<script>{_JS}</script>
</body></html>
"""
    out = d / REPORT_NAME
    with atomic_file(out, "w", encoding="utf-8") as fh:
        fh.write(page)
    logger.info("wrote %s (%d cases)", out, len(rows))
    return out


# --------------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------------


def _add_parser(sub) -> None:
    p = sub.add_parser("report", help="build a static index.html over a results folder",
                       description="Write DIR/index.html: a sortable table of the cases in DIR "
                                   "(results.csv + report.json) with thumbnails and figures.")
    p.add_argument("dir", metavar="DIR", help="the --out folder of xcf explain-dataset")
    p.add_argument("--title", help="page title")
    p.set_defaults(func=_run_cli)


def _run_cli(args) -> int:
    out = build_report(args.dir, title=args.title)
    print(f"wrote {out}")
    return 0


def _register_cli() -> None:
    from .cli import COMMANDS

    COMMANDS["report"] = _add_parser


_register_cli()
