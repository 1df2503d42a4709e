"""Summaries people read: per-case CSV, a Markdown table of means/medians with n, and a static
``index.html`` with each case's figure side by side. Written atomically."""

from __future__ import annotations

import csv
import html
import io
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .atomic import atomic_file
from .metrics import summarize

__all__ = ["write_csv", "markdown_table", "write_index_html", "fmt"]


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


def write_index_html(path: str | os.PathLike, title: str, rows: Sequence[dict[str, Any]],
                     columns: Sequence[str], *, figure_key: str = "figure", intro: str = "") -> None:
    """A static page: a sortable table (click a header) and each case's figure."""
    base = Path(path).parent
    head = "".join(f"<th onclick=\"sortBy({i})\">{html.escape(c)}</th>" for i, c in enumerate(columns))
    body = []
    for r in rows:
        cells = []
        for c in columns:
            v = r.get(c)
            txt = fmt(v)
            sort = "" if v is None else (f"{float(v):.6f}" if isinstance(v, (int, float)) and not isinstance(v, bool) else txt)
            cells.append(f"<td data-sort=\"{html.escape(sort)}\">{html.escape(txt)}</td>")
        fig = r.get(figure_key)
        if fig:
            rel = os.path.relpath(fig, base)
            cells.append(f"<td><a href=\"{html.escape(rel)}\"><img src=\"{html.escape(rel)}\" loading=\"lazy\"></a></td>")
        else:
            cells.append("<td></td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }}
table {{ border-collapse: collapse; }} th, td {{ border-bottom: 1px solid #ddd; padding: 4px 8px; text-align: right; vertical-align: middle; }}
th {{ cursor: pointer; background: #f4f4f4; position: sticky; top: 0; }} td:first-child, th:first-child {{ text-align: left; }}
img {{ height: 150px; }}
</style></head><body>
<h1>{html.escape(title)}</h1>
<p>{intro}</p>
<table id="t"><thead><tr>{head}<th>figure</th></tr></thead><tbody>
{chr(10).join(body)}
</tbody></table>
<script>
let dir = 1;
function sortBy(i) {{
  const tb = document.querySelector('#t tbody');
  const rows = Array.from(tb.rows);
  dir = -dir;
  rows.sort((a, b) => {{
    const x = a.cells[i].dataset.sort, y = b.cells[i].dataset.sort;
    const nx = parseFloat(x), ny = parseFloat(y);
    return (isNaN(nx) || isNaN(ny) ? x.localeCompare(y) : nx - ny) * dir;
  }});
  rows.forEach(r => tb.appendChild(r));
}}
</script></body></html>
"""
    with atomic_file(path, "w", encoding="utf-8") as fh:
        fh.write(page)
