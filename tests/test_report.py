"""benchmarks/report.py: the results page's numbers, README's table block and --check."""

from __future__ import annotations

import csv
import importlib.util
import sys
from dataclasses import replace
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

HEADER = ["method", "case", "target", "finding", "validity", "oracle_validity", "target_drop",
          "share_in_gt_l1", "share_in_gt_dilated_l1", "share_in_ref_mask_l1", "removal",
          "mae_true_inside", "mae_true_outside", "off_target_max", "realism", "steps", "seconds"]
#: Three films of "seed", two of "local-fill-in-mask"; one empty and one NaN cell (left out of means).
ROWS = [
    ["seed", "c0", "Cardiomegaly", "Cardiomegaly", "1", "1", "0.9", "0.2", "0.5", "0.9", "0.1", "0.2", "0.04", "0.01", "0.3", "200", "10"],
    ["seed", "c1", "Nodule", "Nodule", "0", "1", "0.3", "0.4", "0.7", "1.0", "0.3", "0.1", "0.02", "0.03", "0.5", "200", "12"],
    ["seed", "c2", "Pneumothorax", "Pneumothorax", "1", "0", "0.6", "", "nan", "0.8", "0.2", "0.3", "0.06", "0.02", "0.4", "200", "14"],
    ["local-fill-in-mask", "c0", "Cardiomegaly", "Cardiomegaly", "1", "0", "0.7", "0.6", "0.9", "1.0", "0.05", "0.2", "0.01", "0.2", "1.1", "100", "5"],
    ["local-fill-in-mask", "c1", "Nodule", "Nodule", "1", "1", "0.8", "0.5", "0.8", "1.0", "0.07", "0.1", "0.01", "0.1", "1.3", "7", "1"],
]


def _load():
    """benchmarks/report.py as a module (benchmarks/ is not a package; its dataclasses need the
    module in sys.modules while it loads)."""
    name = "benchmarks_report"
    spec = importlib.util.spec_from_file_location(name, REPO / "benchmarks" / "report.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[name]
    return module


@pytest.fixture
def report():
    return _load()


@pytest.fixture
def results(tmp_path):
    folder = tmp_path / "results"
    folder.mkdir()
    with open(folder / "tiny-rows.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(HEADER)
        w.writerows(ROWS)
    return folder


def _table(report):
    return replace(report.TABLES[0], rows="tiny-rows.csv", title="Tiny", pack="phantom",
                   plot="tiny-validity-vs-locality.png", commands="xcf bench counterfactuals --out tiny")


def test_table_numbers_are_the_means_of_the_rows(report, results):
    table = _table(report)
    rows = report.read_rows(results / table.rows)
    summ = {r["method"]: r for r in report.summarize(rows, table)}
    assert list(summ) == ["local-fill-in-mask", "seed"]  # the default first, as METHODS lists them
    seed = summ["seed"]
    assert seed["n"] == 3
    assert seed["validity"][:2] == pytest.approx(((1 + 0 + 1) / 3, 3))
    assert seed["oracle_validity"][:2] == pytest.approx((2 / 3, 3))
    # Nodule left out of the second oracle column: c0 (1) and c2 (0)
    assert seed[report.BLIND] == pytest.approx((0.5, 2, 2))
    # c2's empty and NaN cells are left out, so n is 2 of 3 films
    assert seed["share_in_gt_l1"] == pytest.approx(((0.2 + 0.4) / 2, 2, 3))
    assert seed["share_in_gt_dilated_l1"] == pytest.approx(((0.5 + 0.7) / 2, 2, 3))
    assert seed["removal"][:2] == pytest.approx((0.2, 3))
    assert seed["seconds"][:2] == pytest.approx((12.0, 3))
    lim = summ["local-fill-in-mask"]
    assert lim["steps"][:2] == pytest.approx((53.5, 2))
    assert lim[report.BLIND] == pytest.approx((0.0, 1, 1))

    md = report.locality_table(list(summ.values()), table)
    lines = md.splitlines()
    assert lines[0] == ("| method | films | valid | oracle agrees | oracle agrees, Nodule left out | p drop | "
                        "inside the finding | within 8 px of the finding | in the seed's mask |")
    assert lines[2] == "| **local-fill-in-mask** (default) | 2 | 1.000 | 0.500 | 0.000 | 0.750 | 0.550 | 0.850 | 1.000 |"
    assert lines[3] == "| seed | 3 | 0.667 | 0.667 | 0.500 | 0.600 | 0.300 (n 2) | 0.600 (n 2) | 0.900 |"
    assert "*valid*: share of films whose target probability fell below 0.5" in lines[-1]

    cost = report.fidelity_table(list(summ.values()), table).splitlines()
    assert cost[3] == "| seed | 3 | 0.200 | 0.200 | 0.040 | 0.020 | 0.40 | 200 | 12.00 |"

    readme = report.readme_table([(table, list(summ.values()))]).splitlines()
    assert readme[2] == "| **local-fill-in-mask** (default) | phantom | 2 | 1.000 | 0.000 | 0.850 | 1.000 | 0.060 | 3.00 |"
    assert readme[3] == "| seed | phantom | 3 | 0.667 | 0.500 | 0.600 (n 2) | 0.900 | 0.200 | 12.00 |"


def test_a_column_no_row_has_is_left_out(report, results):
    table = replace(_table(report), oracle_blind=())
    rows = [{k: v for k, v in r.items() if k not in ("share_in_gt_l1", "share_in_gt_dilated_l1")}
            for r in report.read_rows(results / table.rows)]
    head = report.locality_table(report.summarize(rows, table), table).splitlines()[0]
    assert "inside the finding" not in head and "within 8 px" not in head and "left out" not in head


def test_readme_block_is_replaced_between_the_markers_only(report):
    text = f"intro\n{report.START}\nold table\n{report.END}\nrest\n"
    assert report.replace_block(text, "| new |") == f"intro\n{report.START}\n| new |\n{report.END}\nrest\n"
    assert report.replace_block("no markers here\n", "| new |") is None
    assert report.replace_block(f"{report.END}\n{report.START}\n", "x") is None


def test_check_detects_a_stale_page_plot_and_readme(report, results, tmp_path, capsys, monkeypatch):
    table = _table(report)
    monkeypatch.setattr(report, "TABLES", (table,))
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n{report.START}\n{report.END}\n", encoding="utf-8")
    args = ["--results", str(results), "--readme", str(readme)]

    assert report.main([*args, "--check"]) == 1  # nothing written yet
    assert report.main(args) == 0
    page = (results / report.PAGE).read_text(encoding="utf-8")
    assert page.startswith("# Results\n\nThis page is generated by `python benchmarks/report.py`")
    assert "xcf bench counterfactuals --out tiny" in page and "tiny-validity-vs-locality.png" in page
    assert "| seed | phantom | 3 | 0.667 |" in readme.read_text(encoding="utf-8")
    assert (results / table.plot).stat().st_size > 0
    assert report.main([*args, "--check"]) == 0

    # the page edited by hand
    (results / report.PAGE).write_text(page + "\nedited\n", encoding="utf-8")
    assert report.main([*args, "--check"]) == 1
    report.main(args)
    assert report.main([*args, "--check"]) == 0

    # a rows file changed: page, plot and README's table are stale
    with open(results / table.rows, "a", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerow(["seed", "c3", "Nodule", "Nodule", "0", "0", "0.1", "0.1", "0.2", "0.5",
                                 "0", "0.1", "0.01", "0.01", "0.3", "200", "9"])
    capsys.readouterr()
    assert report.main([*args, "--check"]) == 1
    err = capsys.readouterr().err
    assert "index.md" in err and "tiny-validity-vs-locality.png" in err and "README.md" in err


def test_readme_without_markers_is_left_alone(report, results, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(report, "TABLES", (_table(report),))
    readme = tmp_path / "README.md"
    readme.write_text("# no markers\n", encoding="utf-8")
    assert report.main(["--results", str(results), "--readme", str(readme)]) == 0
    assert readme.read_text(encoding="utf-8") == "# no markers\n"
    assert "no '<!-- results-table:start -->'" in capsys.readouterr().err
    assert report.main(["--results", str(results), "--readme", str(readme), "--check"]) == 0


def test_a_missing_rows_file_is_a_one_line_error(report, tmp_path, monkeypatch):
    monkeypatch.setattr(report, "TABLES", (_table(report),))
    with pytest.raises(SystemExit, match="tiny-rows.csv: no such rows file"):
        report.main(["--results", str(tmp_path), "--readme", str(tmp_path / "README.md")])


def test_the_shipped_page_is_current():
    """docs/results/index.md, its plots and README's table match the rows files in the repository."""
    report = _load()
    built = report.build(report.RESULTS)
    assert report.stale(report.RESULTS, report.README, built) == []


def test_the_goals_table_says_by_how_much_each_goal_is_met_or_missed(report):
    rows = [{"method": "m", "validity": 1.0, "oracle_validity": 1.0, "oracle_p_input": 0.9, "off_target_max": 0.02},
            {"method": "m", "validity": 0.0, "oracle_validity": 0.0, "oracle_p_input": 0.8, "off_target_max": 0.10},
            {"method": "m", "validity": 1.0, "oracle_validity": 1.0, "oracle_p_input": 0.2, "off_target_max": 0.03},
            {"method": "other", "validity": 1.0, "oracle_validity": 1.0, "oracle_p_input": 0.9, "off_target_max": 0.0}]
    valid = report.Goal("r", "validity", "valid", True, 0.5)
    seen = report.Goal("r", report.SEEN, "oracle agrees", True, 0.9)
    off = report.Goal("r", "off_target_max", "off-target", False, 0.05)
    speed = report.Goal("p.json", "speedup", "speed-up", True, 10.0)
    run = [{"variant": "seed-loop", "rows": [{"seconds": 10.0}, {"seconds": 12.0}, {"seconds": 30.0}]},
           {"variant": "m", "rows": [{"seconds": 0.5}, {"seconds": 1.0}, {"seconds": 2.0}]}]
    assert report.goal_value(valid, rows, None, "m") == pytest.approx((2 / 3, 3))
    assert report.goal_value(seen, rows, None, "m") == pytest.approx((0.5, 2))  # the oracle saw 2 of 3 inputs
    assert report.goal_value(off, rows, None, "m") == pytest.approx((0.05, 3))
    assert report.goal_value(speed, None, run, "m") == pytest.approx((12.0, 3))  # median 12 s over median 1 s
    assert report.goal_value(speed, None, run, "absent") == (pytest.approx(float("nan"), nan_ok=True), 0)
    values = [(g, *report.goal_value(g, rows, run, "m")) for g in (valid, seen, off, speed)]
    values.append((valid, float("nan"), 0))
    lines = report.goals_table(values, "m").splitlines()
    assert lines[0] == "| goal | m | films | target | met |"
    assert lines[2] == "| valid | 0.667 | 3 | >= 0.500 | yes |"
    assert lines[3] == "| oracle agrees | 0.500 | 2 | >= 0.900 | **no**, short by 0.400 |"
    assert lines[4] == "| off-target | 0.050 | 3 | <= 0.050 | yes |"
    assert lines[5] == "| speed-up | 12.0x | 3 | >= 10.0x | yes |"
    assert lines[6] == "| valid | - | 0 | >= 0.5 | not measured |"
