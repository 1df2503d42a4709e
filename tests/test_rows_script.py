"""benchmarks/rows.py: merging, comparing and averaging rows of `xcf bench counterfactuals`, on
hand-made rows with known answers."""

from __future__ import annotations

import csv
import importlib.util
import json
from pathlib import Path

import pytest

from xcf.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def rows_tool():
    spec = importlib.util.spec_from_file_location("rows", REPO / "benchmarks" / "rows.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


FIELDS = ["method", "case", "finding", "validity", "oracle_validity", "steps", "region_threshold",
          "share_in_ref_mask_l1"]


def _write(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=FIELDS)
        w.writeheader()
        w.writerows(rows)
    return path


def _row(method, case, valid, steps=10, level="0.5", share=0.5, finding="Nodule"):
    return {"method": method, "case": case, "finding": finding, "validity": valid, "oracle_validity": 0,
            "steps": steps, "region_threshold": level, "share_in_ref_mask_l1": share}


def _read(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture
def sources(tmp_path):
    """A run folder with method `a` on cases 0-3 and a rows CSV with method `b` on cases 0-1."""
    run = tmp_path / "run"
    _write(run / "rows.csv", [_row("a", f"c{i}", 1, steps=10 + i) for i in range(4)])
    (run / "run.json").write_text(json.dumps({"n": 4}), encoding="utf-8")
    other = _write(tmp_path / "other.csv", [_row("b", "c0", 1, steps=10), _row("b", "c1", 0, steps=99, level="0.2")])
    return run, other


def test_merge_relabels_and_keeps_every_case(rows_tool, sources, tmp_path):
    run, other = sources
    out = tmp_path / "merged"
    assert rows_tool.merge(out, [f"{run}:a=first", f"{other}:b"]) == 0
    rows = _read(out / "rows.csv")
    assert sorted((r["method"], r["case"]) for r in rows) == sorted(
        [("first", f"c{i}") for i in range(4)] + [("b", "c0"), ("b", "c1")])
    meta = json.loads((out / "run.json").read_text())
    assert meta["n"] == 4 and list(meta["methods"]) == ["first", "b"] and "--common" not in meta["command"]


def test_merge_common_keeps_only_shared_cases(rows_tool, sources, tmp_path):
    run, other = sources
    out = tmp_path / "merged"
    rows_tool.merge(out, [f"{run}:a", f"{other}:b"], common=True)
    rows = _read(out / "rows.csv")
    assert sorted((r["method"], r["case"]) for r in rows) == [("a", "c0"), ("a", "c1"), ("b", "c0"), ("b", "c1")]
    assert json.loads((out / "run.json").read_text())["command"].endswith("--common")


def test_merge_refuses_a_pair_from_two_sources_and_unknown_methods(rows_tool, sources, tmp_path):
    run, _ = sources
    with pytest.raises(ConfigError, match="more than one source"):
        rows_tool.merge(tmp_path / "m1", [f"{run}:a", f"{run / 'rows.csv'}:a"])
    with pytest.raises(ConfigError, match="no rows of method 'zzz'"):
        rows_tool.merge(tmp_path / "m2", [f"{run}:zzz"])
    with pytest.raises(ConfigError, match="SRC:METHOD"):
        rows_tool.merge(tmp_path / "m3", ["no-colon"])
    assert not (tmp_path / "m1").exists() and not (tmp_path / "m2").exists()


def test_compare_counts_differences_on_shared_cases(rows_tool, sources, tmp_path, capsys):
    run, other = sources
    out = tmp_path / "merged"
    rows_tool.merge(out, [f"{run}:a", f"{other}:b"])
    capsys.readouterr()
    rows_tool.compare(out / "rows.csv", "a", "b")
    text = capsys.readouterr().out
    # c0: same validity and steps; c1: valid under a only, 11 vs 99 steps, level 0.5 -> 0.2
    assert "2 cases in common; validity differs on 1 (c1)" in text
    assert "step count differs on 1" in text
    assert "1 moved (1 to a larger region under b, 0 to a smaller one)" in text
    assert "over the 1 films valid under both" in text


def test_means_and_excluded_finding(rows_tool, tmp_path, capsys):
    path = _write(tmp_path / "r.csv", [_row("m", "c0", 1, finding="Nodule"), _row("m", "c1", 0, finding="Nodule"),
                                       _row("m", "c2", 1, finding="Cardiomegaly")])
    rows_tool.means(path, ["validity"], None)
    assert "m: n 3, validity 0.667" in capsys.readouterr().out
    rows_tool.means(path, ["validity"], "Nodule")
    assert "m: n 1 without Nodule, validity 1.000" in capsys.readouterr().out
    with pytest.raises(ConfigError, match="no such finding"):
        rows_tool.means(path, ["validity"], "Effusion")
