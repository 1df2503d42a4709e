"""Put together and count the per-image rows of `xcf bench counterfactuals` runs.

    python benchmarks/rows.py merge OUT SRC:METHOD[=NEWNAME] ...
        rows of METHOD from SRC/rows.csv (relabelled NEWNAME) into OUT/rows.csv and OUT/run.json;
        then `xcf bench counterfactuals --summary-only --out OUT` writes the tables and plots.
        A (method, case) pair may come from one source only.
    python benchmarks/rows.py levels ROWS.csv [--cases-of METHOD]
        per method: n, valid, the final region level's counts, and the films that needed the
        region fallback (the `region_fallback` column, or for rows written before it existed,
        more steps than every level of the first search can take: 4 x 200 with the presets).

How README's matrices were put together (docs/results/bench-*-cpu.md name the runs).
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


def merge(out: Path, specs: list[str]) -> int:
    from xcf.benchmarks_counterfactuals import METHODS
    from xcf.errors import ConfigError

    rows: list[dict[str, str]] = []
    header: list[str] = []
    run: dict = {}
    for spec in specs:
        src, sep, method = spec.rpartition(":")
        if not sep or not method:
            raise ConfigError(f"{spec!r}: expected SRC:METHOD[=NEWNAME]")
        method, _, new = method.partition("=")
        got = [r for r in _read(Path(src) / "rows.csv") if r["method"] == method]
        if not got:
            raise ConfigError(f"{src}/rows.csv has no rows of method {method!r}")
        for r in got:
            r["method"] = new or method
            header += [k for k in r if k not in header]
        rows += got
        run = run or json.loads((Path(src) / "run.json").read_text(encoding="utf-8"))
        print(f"{spec}: {len(got)} rows", file=sys.stderr)
    pairs = collections.Counter((r["method"], r["case"]) for r in rows)
    twice = [p for p, k in pairs.items() if k > 1]
    if twice:
        raise ConfigError(f"(method, case) pairs from more than one source, e.g. {twice[0]}")
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "rows.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=header)
        w.writeheader()
        w.writerows(rows)
    names = dict.fromkeys(r["method"] for r in rows)
    run["methods"] = {m: METHODS[m].components() if m in METHODS else "" for m in names}
    run["command"] = "python benchmarks/rows.py merge " + " ".join([str(out), *specs])
    (out / "run.json").write_text(json.dumps(run, indent=2) + "\n", encoding="utf-8")
    return 0


def levels(path: Path) -> int:
    by: dict[str, list[dict[str, str]]] = collections.defaultdict(list)
    for r in _read(path):
        by[r["method"]].append(r)
    for m, rs in by.items():
        valid = sum(float(r["validity"]) for r in rs) / len(rs)
        lv = collections.Counter(r.get("region_threshold", "") for r in rs)
        fb = sum(1 for r in rs if (r.get("region_fallback") or "") == "1"
                 or (not r.get("region_fallback") and float(r["steps"]) > FIRST_SEARCH_STEPS))
        grew = sum(1 for r in rs if r.get("region_threshold") != "0.5" or float(r["steps"]) > FIRST_SEARCH_STEPS)
        print(f"{m}: n {len(rs)}, valid {valid:.3f}, final level {dict(sorted(lv.items(), reverse=True))}, "
              f"region grown {grew}, fallback {fb}")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python benchmarks/rows.py", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("merge")
    m.add_argument("out", type=Path)
    m.add_argument("specs", nargs="+")
    lv = sub.add_parser("levels")
    lv.add_argument("rows", type=Path)
    args = p.parse_args(argv)
    return merge(args.out, args.specs) if args.cmd == "merge" else levels(args.rows)


if __name__ == "__main__":
    sys.exit(main())
