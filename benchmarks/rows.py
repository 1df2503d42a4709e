"""Put together and count the per-image rows of `xcf bench counterfactuals` runs.

    python benchmarks/rows.py merge OUT SRC:METHOD[=NEWNAME] ...
        rows of METHOD from SRC/rows.csv, or from SRC itself where it is a .csv file (relabelled
        NEWNAME), into OUT/rows.csv and OUT/run.json (the first folder source's settings); then
        `xcf bench counterfactuals --summary-only --out OUT` writes the tables and plots.
        A (method, case) pair may come from one source only. --common keeps only the cases every
        merged method has (e.g. the seed's first 100 of 200 beside variants run on 100). --first N
        keeps the first N cases in the order the rows list them (a table of the first 40 phantoms
        from runs on 200).
    python benchmarks/rows.py levels ROWS.csv
        per method: n, valid, the final region level's counts, and the films that needed the
        region fallback (the `region_fallback` column, or for rows written before it existed,
        more steps than every level of the first search can take: 4 x 200 with the presets).
    python benchmarks/rows.py compare ROWS.csv METHOD_A METHOD_B
        film by film on the cases both methods ran: how many differ in validity, in step count
        and in final region level (to a larger or a smaller region), and, over the films valid
        under both, each metric's mean under A and B and the largest difference between them.
    python benchmarks/rows.py means ROWS.csv [--columns C,...] [--exclude-finding F]
        per method: n and the mean of each column, over all rows or over the rows whose `finding`
        is not F (README's "oracle valid without Nodule": the oracle cannot see nodules).

How the rows files of docs/results were put together: docs/results/index.md names the runs
(`python benchmarks/report.py` writes it).
"""

from __future__ import annotations

import argparse
import collections
import csv
import json
import sys
from pathlib import Path

FIRST_SEARCH_STEPS = 800  # 4 region levels x 200 steps: more means the fallback ran


def _read(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _by_method(rows: list[dict[str, str]]) -> dict[str, list[dict[str, str]]]:
    by: dict[str, list[dict[str, str]]] = collections.defaultdict(list)
    for r in rows:
        by[r["method"]].append(r)
    return by


def merge(out: Path, specs: list[str], common: bool = False, first: int | None = None) -> int:
    try:
        from xcf.bench.counterfactuals import METHODS
    except ImportError:
        from xcf.benchmarks_counterfactuals import METHODS
    from xcf.errors import ConfigError

    rows: list[dict[str, str]] = []
    header: list[str] = []
    run: dict = {}
    for spec in specs:
        src, sep, method = spec.rpartition(":")
        if not sep or not method:
            raise ConfigError(f"{spec!r}: expected SRC:METHOD[=NEWNAME]")
        is_csv = src.endswith(".csv")
        every = _read(Path(src) if is_csv else Path(src) / "rows.csv")
        new = ""
        if "=" in method and not any(r["method"] == method for r in every):
            # a variant's name holds '=' too (local-fill+widen=unflipped): the last one renames
            method, _, new = method.rpartition("=")
        got = [r for r in every if r["method"] == method]
        if not got:
            raise ConfigError(f"{src if is_csv else src + '/rows.csv'} has no rows of method {method!r}")
        for r in got:
            r["method"] = new or method
            header += [k for k in r if k not in header]
        rows += got
        if not run and not is_csv:
            run = json.loads((Path(src) / "run.json").read_text(encoding="utf-8"))
        print(f"{spec}: {len(got)} rows", file=sys.stderr)
    if common:  # only the cases every method has: means over the same films
        per = [{r["case"] for r in rs} for rs in _by_method(rows).values()]
        keep = set.intersection(*per)
        print(f"--common: {len(keep)} cases in every method, {len(rows) - sum(r['case'] in keep for r in rows)} "
              "rows of other cases left out", file=sys.stderr)
        rows = [r for r in rows if r["case"] in keep]
    if first is not None:  # the first N cases, in the rows' order
        keep = set(list(dict.fromkeys(r["case"] for r in rows))[:first])
        rows = [r for r in rows if r["case"] in keep]
        print(f"--first {first}: {len(rows)} rows of {len(keep)} cases", file=sys.stderr)
    pairs = collections.Counter((r["method"], r["case"]) for r in rows)
    twice = [p for p, k in pairs.items() if k > 1]
    if twice:
        raise ConfigError(f"(method, case) pairs from more than one source, e.g. {twice[0]}")
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "rows.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=header, restval="")
        w.writeheader()
        w.writerows(rows)
    names = dict.fromkeys(r["method"] for r in rows)
    run["methods"] = {m: METHODS[m].components() if m in METHODS else "" for m in names}
    run["command"] = "python benchmarks/rows.py merge " + " ".join(
        [str(out), *specs, *(["--common"] if common else []), *([f"--first {first}"] if first is not None else [])])
    (out / "run.json").write_text(json.dumps(run, indent=2) + "\n", encoding="utf-8")
    return 0


def levels(path: Path) -> int:
    for m, rs in _by_method(_read(path)).items():
        valid = sum(float(r["validity"]) for r in rs) / len(rs)
        lv = collections.Counter(r.get("region_threshold", "") for r in rs)
        fb = sum(1 for r in rs if (r.get("region_fallback") or "") == "1"
                 or (not r.get("region_fallback") and float(r["steps"]) > FIRST_SEARCH_STEPS))
        grew = sum(1 for r in rs if r.get("region_threshold") != "0.5" or float(r["steps"]) > FIRST_SEARCH_STEPS)
        print(f"{m}: n {len(rs)}, valid {valid:.3f}, final level {dict(sorted(lv.items(), reverse=True))}, "
              f"region grown {grew}, fallback {fb}")
    return 0


COMPARED = ("validity", "oracle_validity", "target_drop", "share_in_ref_mask_l1", "share_in_mask_l1",
            "share_in_gt_l1", "share_in_gt_dilated_l1", "removal", "mae_true_outside", "realism",
            "off_target_max", "mask_area")


def _num(v: str | None) -> float | None:
    try:
        x = float(v)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return None if x != x else x  # NaN: no value


def compare(path: Path, a: str, b: str) -> int:
    from xcf.errors import ConfigError

    rows = _read(path)
    by = {m: {r["case"]: r for r in rows if r["method"] == m} for m in (a, b)}
    for m, got in by.items():
        if not got:
            raise ConfigError(f"{path} has no rows of method {m!r}; it has {sorted({r['method'] for r in rows})}")
    common = [c for c in by[a] if c in by[b]]
    if not common:
        raise ConfigError(f"{a!r} and {b!r} share no case in {path}")
    ra, rb = ([by[m][c] for c in common] for m in (a, b))
    flips = [c for c, x, y in zip(common, ra, rb) if _num(x["validity"]) != _num(y["validity"])]
    steps = sum(1 for x, y in zip(ra, rb) if _num(x["steps"]) != _num(y["steps"]))
    lv = [(_num(x.get("region_threshold")), _num(y.get("region_threshold"))) for x, y in zip(ra, rb)]
    larger = sum(1 for u, v in lv if u is not None and v is not None and v < u)
    smaller = sum(1 for u, v in lv if u is not None and v is not None and v > u)
    print(f"{a} vs {b}: {len(common)} cases in common; validity differs on {len(flips)}"
          + (f" ({', '.join(flips[:10])}{', ...' if len(flips) > 10 else ''})" if flips else "")
          + f"; step count differs on {steps}; final region level: {larger + smaller} moved "
          f"({larger} to a larger region under {b}, {smaller} to a smaller one)")
    both = [(x, y) for x, y in zip(ra, rb) if _num(x["validity"]) == _num(y["validity"]) == 1.0]
    print(f"means over the {len(both)} films valid under both ({a} / {b} / difference):")
    worst = ("", 0.0)
    for col in COMPARED:
        pairs = [(_num(x.get(col)), _num(y.get(col))) for x, y in both]
        pairs = [(u, v) for u, v in pairs if u is not None and v is not None]
        if not pairs:
            continue
        ma, mb = (sum(p[i] for p in pairs) / len(pairs) for i in (0, 1))
        print(f"  {col}: {ma:.3f} / {mb:.3f} / {mb - ma:+.3f}")
        worst = max(worst, (col, abs(mb - ma)), key=lambda t: t[1])
    if worst[0]:
        print(f"largest difference of a mean: {worst[1]:.3f} ({worst[0]})")
    return 0


def means(path: Path, columns: list[str], exclude: str | None) -> int:
    from xcf.errors import ConfigError

    rows = _read(path)
    if exclude is not None:
        findings = {r.get("finding", "") for r in rows}
        if exclude not in findings:
            raise ConfigError(f"--exclude-finding {exclude!r}: no such finding in {path}; "
                              f"valid: {', '.join(sorted(findings))}")
        rows = [r for r in rows if r.get("finding") != exclude]
    missing = [c for c in columns if rows and c not in rows[0]]
    if missing:
        raise ConfigError(f"no column(s) {', '.join(missing)} in {path}; it has {', '.join(rows[0])}")
    for m, rs in _by_method(rows).items():
        cells = []
        for c in columns:
            v = [x for x in (_num(r.get(c)) for r in rs) if x is not None]
            cells.append(f"{c} {sum(v) / len(v):.3f}" if v else f"{c} n/a")
        print(f"{m}: n {len(rs)}{' without ' + exclude if exclude else ''}, " + ", ".join(cells))
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python benchmarks/rows.py", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("merge")
    m.add_argument("out", type=Path)
    m.add_argument("specs", nargs="+")
    m.add_argument("--common", action="store_true",
                   help="keep only the cases that every merged method has")
    m.add_argument("--first", type=int, metavar="N", help="keep only the first N cases, in the rows' order")
    m.set_defaults(run=lambda a: merge(a.out, a.specs, a.common, a.first))
    lv = sub.add_parser("levels")
    lv.add_argument("rows", type=Path)
    lv.set_defaults(run=lambda a: levels(a.rows))
    c = sub.add_parser("compare")
    c.add_argument("rows", type=Path)
    c.add_argument("a")
    c.add_argument("b")
    c.set_defaults(run=lambda a: compare(a.rows, a.a, a.b))
    mn = sub.add_parser("means")
    mn.add_argument("rows", type=Path)
    mn.add_argument("--columns", default="validity,oracle_validity")
    mn.add_argument("--exclude-finding")
    mn.set_defaults(run=lambda a: means(a.rows, [c for c in a.columns.split(",") if c], a.exclude_finding))
    args = p.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
