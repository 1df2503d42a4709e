"""The benchmarks run end to end on a tiny phantom pack trained here (64 px, seconds); the outputs
have the right shape and sane values (not good values: the pack is barely trained)."""

from __future__ import annotations

import csv
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from xcf.cli import main

REPO = Path(__file__).resolve().parents[1]
SIZE = 64


@pytest.fixture(scope="module")
def tiny_pack(tmp_path_factory):
    """A 'phantom' pack (classifier, SegNet latent model, oracle, inpainter) at 64 px in a temp folder."""
    from safetensors.torch import save_file

    from xcf.data.phantoms import FINDINGS, PhantomDataset
    from xcf.packs import sha256_file
    from xcf.registry import Registry, make_plugin_manager
    from xcf.train.trainer import (
        TrainData,
        _stack,
        train_classifier,
        train_inpainter,
        train_latent,
        update_manifest,
    )

    out = tmp_path_factory.mktemp("weights")
    tx, ty = _stack(PhantomDataset(96, seed=0, size=SIZE))
    vx, vy = _stack(PhantomDataset(32, seed=1, size=SIZE))
    data = TrainData("phantom:96", FINDINGS, tx, ty, vx, vy, None, None, "synthetic", "test pack")
    reg = Registry(make_plugin_manager())
    quiet = lambda s: None  # noqa: E731
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: one thread is fastest, and robust on a busy CPU

    def save(model, name, kind, component, args, role):
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(out / f"{name}.safetensors"))
        entry = {"file": f"{name}.safetensors", "sha256": sha256_file(out / f"{name}.safetensors"),
                 "kind": kind, "component": component, "args": args}
        if kind == "classifier":
            entry["labels"] = list(FINDINGS)
        update_manifest(out, name, entry, pack="phantom", role=role)

    for name, widths, seed, role in (("clf", [8, 8, 16, 16, 16], 0, "classifier"),
                                     ("oracle", [4, 8, 8, 16, 16], 1, "oracle")):
        args = {"labels": list(FINDINGS), "input_size": SIZE, "widths": widths}
        torch.manual_seed(seed)
        clf = reg.create("classifier", "small-cnn", **args)
        train_classifier(clf, data, epochs=1, seed=seed, device="cpu", log=quiet)
        save(clf, name, "classifier", "small-cnn", args, role)
    args = {"input_size": SIZE, "widths": [4, 8, 8, 16, 16]}
    torch.manual_seed(0)
    ae = reg.create("latent", "segnet-ae", **args)
    train_latent(ae, data, epochs=1, device="cpu", log=quiet)
    save(ae, "ae", "latent", "segnet-ae", args, "latent")
    args = {"input_size": SIZE, "widths": [8, 16], "scale": 1}
    torch.manual_seed(0)
    inp = reg.create("latent", "inpaint-unet", **args)
    train_inpainter(inp, data, epochs=1, device="cpu", log=quiet)
    save(inp, "inpainter", "latent", "inpaint-unet", args, "inpainter")
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["packs"]["phantom"]["exemplars"] = {"component": "exemplar-bank", "data": "phantom:16:11"}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    torch.set_num_threads(threads)
    return out


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _num(v: str) -> float:
    return float(v) if v not in ("", None) else math.nan


@pytest.mark.slow
def test_quick_counterfactual_benchmark(tiny_pack, tmp_path, monkeypatch, capsys):
    import xcf
    from xcf.bench.counterfactuals import COLUMNS, METHODS, QUICK_N, default_methods
    from xcf.packs import load_pack

    QUICK_METHODS = default_methods()
    assert set(xcf.list_methods()) | {"global", "pixel"} == set(QUICK_METHODS)  # --quick runs every method
    monkeypatch.setenv("XCF_WEIGHTS_DIR", str(tiny_pack))
    # ... that the pack has the content for: all of them here (the tiny pack has an inpainter and a
    # bank); a pack without a bank leaves local-exemplar out
    pack = load_pack("phantom")
    assert default_methods(pack) == QUICK_METHODS
    del pack.entry["exemplars"]
    assert set(QUICK_METHODS) - set(default_methods(pack)) == {"local-exemplar"}
    out = tmp_path / "bench"
    assert main(["bench", "counterfactuals", "--quick", "--out", str(out), "--steps", "8"]) == 0
    for name in ("rows.csv", "summary.md", "summary.csv", "run.json", "validity_vs_locality.png",
                 "time_per_method.png"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    rows = _rows(out / "rows.csv")
    assert list(rows[0]) == list(COLUMNS)
    assert len(rows) == len(QUICK_METHODS) * QUICK_N
    for m in QUICK_METHODS:
        mine = [r for r in rows if r["method"] == m]
        assert len(mine) == QUICK_N and len({r["case"] for r in mine}) == QUICK_N
        assert {r["finding"] for r in mine} == {"Cardiomegaly", "Pleural Effusion", "Consolidation",
                                                "Nodule", "Pneumothorax"}
    for r in rows:
        for key in ("p_input", "p_counterfactual", "share_in_gt_l1", "share_in_gt_dilated_l1",
                    "share_in_mask_l1", "share_in_ref_mask_l1", "iou_gt", "mask_area",
                    "oracle_p_counterfactual", "mae_true_inside", "mae_true_outside"):
            v = _num(r[key])
            assert math.isnan(v) or 0 <= v <= 1, (key, r[key])
        assert r["validity"] in ("0", "1") and r["oracle_validity"] in ("0", "1")
        assert r["pointing_game"] in ("0", "1")
        assert _num(r["realism"]) >= 0 and _num(r["seconds"]) > 0
        assert r["status"] in ("ran-all-steps", "stopped-early", "nonfinite")
        steps = int(float(r["steps"]))
        m = METHODS[r["method"]].resolved().replace(steps=8)
        if r["method"] == "latent-shift":
            assert 0 <= steps <= 50  # decodes of the default schedule
        else:  # every region level's budget, twice with a fallback
            assert 0 <= steps <= sum(b for _, b, _ in m.region.schedule(m.steps, m.lr)) * (
                2 if m.region.fallback else 1)
    pixel = [r for r in rows if r["method"] == "pixel"]
    assert all(_num(r["reconstruction_shift"]) == 0 for r in pixel)  # no autoencoder error
    md = (out / "summary.md").read_text()
    for m in QUICK_METHODS:
        assert f"| {m} | {QUICK_N} |" in md
    summary = _rows(out / "summary.csv")
    assert [r["method"] for r in summary] == list(QUICK_METHODS)
    assert all(0 <= float(r["validity_mean"]) <= 1 for r in summary)

    # a rerun resumes: nothing new to do, rows unchanged
    before = (out / "rows.csv").read_text()
    assert main(["bench", "counterfactuals", "--quick", "--out", str(out), "--steps", "8"]) == 0
    assert (out / "rows.csv").read_text() == before
    # other settings into the same folder are refused with one line
    assert main(["bench", "counterfactuals", "--quick", "--out", str(out), "--steps", "9"]) == 2
    assert "other settings" in capsys.readouterr().err


@pytest.mark.slow
def test_resume_after_partial_run_and_bad_image(tiny_pack, tmp_path, monkeypatch):
    """Half a run + a truncated last line: the rerun repairs the file and adds only the missing rows;
    a folder with an unreadable image skips it and reports it."""
    import numpy as np
    from PIL import Image

    monkeypatch.setenv("XCF_WEIGHTS_DIR", str(tiny_pack))
    out = tmp_path / "bench"
    common = ["bench", "counterfactuals", "--out", str(out), "--steps", "2", "--methods",
              "seed,latent-shift", "--batch-size", "2", "--threads", "1"]
    assert main([*common, "--n", "2"]) == 0
    with open(out / "rows.csv", "a", encoding="utf-8") as fh:
        fh.write("seed,phantom-0002-consolidation,Consol")  # a run killed mid-write
    assert main([*common, "--n", "3"]) == 0
    rows = _rows(out / "rows.csv")
    assert sorted((r["method"], r["case"]) for r in rows) == sorted(
        (m, c) for m in ("seed", "latent-shift")
        for c in ("phantom-0000-cardiomegaly", "phantom-0001-pleural-effusion", "phantom-0002-consolidation"))

    # rows.csv of an older xcf (no `removal` column): the rerun adds the column and fills it
    # exactly from mae_true_inside and the case, and new rows carry it too
    computed = {(r["method"], r["case"]): _num(r["removal"]) for r in rows if r["method"] == "seed"}
    assert all(v == v and v <= 1 for v in computed.values())
    old = [{k: v for k, v in r.items() if k != "removal"} for r in rows if r["method"] == "seed"]
    with open(out / "rows.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=list(old[0]))
        w.writeheader()
        w.writerows(old)
    assert main([*common, "--n", "3"]) == 0
    rows = _rows(out / "rows.csv")
    assert len(rows) == 6
    for r in rows:
        if r["method"] == "seed":
            assert _num(r["removal"]) == pytest.approx(computed[("seed", r["case"])], abs=1e-4)
        else:
            assert r["removal"] != ""

    data = tmp_path / "data"
    data.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray((rng.random((64, 64)) * 255).astype(np.uint8)).save(data / f"{i}.png")
    (data / "3.png").write_bytes(b"not a png")
    (data / "labels.csv").write_text("path,split,nodule\n0.png,test,1\n1.png,test,0\n2.png,test,1\n3.png,test,1\n")
    fout = tmp_path / "folder"
    assert main(["bench", "counterfactuals", "--data", str(data), "--target", "Nodule", "--pack", "phantom",
                 "--out", str(fout), "--steps", "2", "--methods", "seed", "--threads", "1"]) == 0
    rows = _rows(fout / "rows.csv")
    assert sorted(r["case"] for r in rows) == ["0.png", "2.png"]  # 1.png is negative, 3.png broken
    assert all(r["share_in_gt_l1"] == "" and r["share_in_ref_mask_l1"] != "" for r in rows)
    assert "3.png" in (fout / "errors.csv").read_text()
    assert (fout / "validity_vs_locality.png").is_file()
    cout = tmp_path / "chosen"  # --cases: only the named case, as the full run computed it
    assert main(["bench", "counterfactuals", "--data", str(data), "--target", "Nodule", "--pack", "phantom",
                 "--out", str(cout), "--steps", "2", "--methods", "seed", "--threads", "1",
                 "--cases", "2.png"]) == 0
    (chosen,) = _rows(cout / "rows.csv")
    (full,) = [r for r in rows if r["case"] == "2.png"]
    assert chosen["case"] == "2.png"
    assert _num(chosen["p_counterfactual"]) == pytest.approx(_num(full["p_counterfactual"]), abs=1e-4)


@pytest.mark.slow
def test_saliency_benchmark(tiny_pack, tmp_path, monkeypatch):
    from xcf.bench.saliency import THRESHOLDS

    monkeypatch.setenv("XCF_WEIGHTS_DIR", str(tiny_pack))
    out = tmp_path / "sal"
    methods = ["gradcam++", "gradcam", "saliency"]
    assert main(["bench", "saliency", "--out", str(out), "--n", "3", "--methods", ",".join(methods),
                 "--threads", "1"]) == 0
    rows = _rows(out / "rows.csv")
    assert len(rows) == 3 * len(methods)
    for r in rows:
        for t in THRESHOLDS:
            v = _num(r[f"iou@{t:.1f}"])
            assert math.isnan(v) or 0 <= v <= 1
        mass = _num(r["relevance_mass"])  # NaN for an all-zero map (a barely trained classifier)
        assert r["pointing_game"] in ("0.0", "1.0") and (math.isnan(mass) or 0 <= mass <= 1)
    md = (out / "summary.md").read_text()
    assert all(f"| {m} | 3 |" in md for m in methods) and "IoU@0.9" in md
    assert len(_rows(out / "summary.csv")) == len(methods)


def test_list_and_bad_method(capsys):
    assert main(["bench", "counterfactuals", "--list"]) == 0
    listed = capsys.readouterr().out
    for m in ("seed", "latent-shift", "global", "pixel", "fast", "early-stop", "local", "local-in-mask"):
        assert f"\n{m} " in "\n" + listed
    for gone in ("preset-fast", "fast-s8", "seed-nogate", "local-prune"):  # historical variants
        assert f"\n{gone} " not in "\n" + listed
    assert main(["bench", "counterfactuals", "--out", "x", "--methods", "nope"]) == 2
    assert "unknown method 'nope'" in capsys.readouterr().err


def test_select_cases_keeps_dataset_order_and_names_unknown_ids():
    from xcf.bench.counterfactuals import Case, select_cases
    from xcf.errors import ConfigError

    cases = [Case(f"c{i}", "Nodule", {}, lambda: None) for i in range(5)]
    assert [c.case_id for c in select_cases(cases, "c3, c1")] == ["c1", "c3"]
    with pytest.raises(ConfigError, match=r"unknown case id\(s\) c9; valid ids .* e\.g\. c0, c1, c2"):
        select_cases(cases, "c1,c9")
    with pytest.raises(ConfigError, match="none given"):
        select_cases(cases, " , ")


def test_methods_resolve_adhoc_and_all():
    from xcf.bench.counterfactuals import resolve_methods
    from xcf.errors import ConfigError

    ms = resolve_methods("seed,occlusion/masked-l1,gradcam/global/pixel")
    assert [m.name for m in ms] == ["seed", "occlusion/masked-l1", "gradcam/global/pixel"]
    assert ms[2].latent == "pixel" and ms[1].saliency == "occlusion"
    with pytest.raises(ConfigError, match="unknown locality"):
        resolve_methods("gradcam/nope")
    every = resolve_methods("seed", all_combinations=True)
    assert "gradcam++/masked-l2" not in [m.name for m in every]  # that pair is 'seed'
    assert "occlusion/soft-mask" in [m.name for m in every]


def test_scripts_are_thin_wrappers():
    for script in ("counterfactuals.py", "saliency.py"):
        res = subprocess.run([sys.executable, str(REPO / "benchmarks" / script), "--help"],
                             capture_output=True, text=True, timeout=120)
        assert res.returncode == 0 and "usage: xcf bench" in res.stdout


def _load_script(name: str):
    """A script of benchmarks/ loaded as a module (benchmarks/ is not a package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name.removesuffix(".py"), REPO / "benchmarks" / name)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_regions_script_reports_sane_shares(tiny_pack, monkeypatch, capsys):
    """benchmarks/regions.py: one row per (method, threshold), shares in [0, 1], the region
    shrinking as the threshold rises."""
    monkeypatch.setenv("XCF_WEIGHTS_DIR", str(tiny_pack))
    mod = _load_script("regions.py")
    assert mod.main(["--n", "5", "--methods", "gradcam++,saliency", "--thresholds", "0.8,0.5,0.2",
                     "--threads", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    rows = [line.split("|")[1:-1] for line in lines if "| > " in line]
    tops = [line for line in lines if line.startswith(("| gradcam++ |", "| saliency |"))
            and "| > " not in line and "top" not in line and line.count("|") == 6]
    assert len(rows) == 6 and len(tops) == 2  # (method, threshold) rows + one top-k row per method
    by_method: dict[str, list[float]] = {}
    for r in rows:
        area, near_mean, near_median, covers = (float(v) for v in r[3:7])
        assert all(0 <= v <= 1 for v in (area, near_mean, near_median, covers))
        by_method.setdefault(r[0].strip(), []).append(area)
    assert sorted(by_method) == ["gradcam++", "saliency"]
    assert all(a[0] <= a[1] <= a[2] for a in by_method.values())  # thresholds 0.8, 0.5, 0.2


def test_demo_writes_cases_summary_and_page(tiny_pack, tmp_path, monkeypatch):
    from xcf.demo import run_demo

    monkeypatch.setenv("XCF_WEIGHTS_DIR", str(tiny_pack))
    rows = run_demo(tmp_path / "demo", per_finding=1, screen=False, method="seed", steps=3, log=lambda s: None)
    assert [r["finding"] for r in rows] == ["Cardiomegaly", "Pleural Effusion", "Consolidation", "Nodule",
                                            "Pneumothorax"]
    for r in rows:
        assert (tmp_path / "demo" / "cases" / r["case"] / "figure.png").is_file()
        assert 0 <= r["share_in_gt_l1"] <= 1 and r["steps"] == 3
    md = (tmp_path / "demo" / "summary.md").read_text()
    assert "| finding | n |" in md and "Pleural Effusion" in md
    assert "Method: `seed` with overrides; saliency `gradcam++`" in md
    assert (tmp_path / "demo" / "summary.csv").is_file()
    assert "<table" in (tmp_path / "demo" / "index.html").read_text()


def test_perf_variants_split_validate_and_survive_a_failure(tiny_pack, tmp_path, monkeypatch, capsys):
    """perf.py: a list value keeps its commas, a bad setting stops the run before anything runs,
    and a variant that fails while running is named in the table without losing the others."""
    from xcf.bench.perf import main as perf_main
    from xcf.bench.perf import split_variants
    from xcf.errors import ConfigError

    assert split_variants("seed-loop, fast+region__levels=[0.5,0.2]+region__level_steps=2,early-stop") == [
        "seed-loop", "fast+region__levels=[0.5,0.2]+region__level_steps=2", "early-stop"]
    from types import SimpleNamespace

    from xcf.bench.perf import variant_config

    opts = SimpleNamespace(steps=200, batch_size=1, device="cpu")
    method, cfg = variant_config("local+region__saliency=gradcam+++lr=0.1+region__fallback=null", opts)
    assert (method.region.saliency, cfg.lr, method.region.fallback) == ("gradcam++", 0.1, None)  # '+' in a value
    with pytest.raises(ConfigError):
        variant_config("fast+lr", opts)
    monkeypatch.setenv("XCF_WEIGHTS_DIR", str(tiny_pack))
    common = ["--pack", "phantom", "--data", "phantom", "--n", "2", "--steps", "3", "--threads", "1",
              "--batch-size", "2", "--in-process"]
    with pytest.raises(ConfigError, match="level_steps"):
        perf_main([*common, "--variants", "seed-loop,fast+region__level_steps=0"])
    assert "done in" not in capsys.readouterr().err  # refused before the seed loop ran
    out = tmp_path / "perf.md"
    assert perf_main([*common, "--out", str(out), "--variants",
                      "seed-loop,fast+region__levels=[0.5,0.2]+region__level_steps=2,"
                      "fast+region__saliency=no-such-map"]) == 0
    text = out.read_text()
    assert "| seed-loop |" in text and "| fast+region__levels=[0.5,0.2]+region__level_steps=2 |" in text
    assert "Failed variants (no measurement): fast+region__saliency=no-such-map: " in text
    assert "\nMachine: " in text and f"torch {torch.__version__}" in text and " cores, bf16 instructions " in text
    rows = {r["variant"]: r["rows"] for r in __import__("json").loads(out.with_suffix(".json").read_text())}
    assert len(rows["seed-loop"]) == 2 and all(r["steps"] == 3 for r in rows["seed-loop"])
    assert all(0 <= r["steps"] <= 2 + 200 for r in rows["fast+region__levels=[0.5,0.2]+region__level_steps=2"])


@pytest.fixture(scope="module")
def rows_script():
    return _load_script("rows.py")


def test_rows_script_merges_relabels_and_counts(rows_script, tmp_path, capsys):
    import json

    from xcf.errors import ConfigError

    for name, lines in (("a", ["seed,c1,1,0.5,200", "preset-local,c1,1,0.35,300"]),
                        ("b", ["preset-local,c2,1,0.5,900"])):
        (tmp_path / name).mkdir()
        (tmp_path / name / "rows.csv").write_text("method,case,validity,region_threshold,steps\n"
                                                  + "\n".join(lines) + "\n")
        (tmp_path / name / "run.json").write_text('{"settings": {}}')
    out = tmp_path / "m"
    assert rows_script.main(["merge", str(out), f"{tmp_path / 'a'}:seed",
                             f"{tmp_path / 'a'}:preset-local=local-gradient", f"{tmp_path / 'b'}:preset-local"]) == 0
    got = [(r["method"], r["case"]) for r in _rows(out / "rows.csv")]
    assert got == [("seed", "c1"), ("local-gradient", "c1"), ("preset-local", "c2")]
    assert set(json.loads((out / "run.json").read_text())["methods"]) == {"seed", "local-gradient", "preset-local"}
    with pytest.raises(ConfigError, match="more than one source"):
        rows_script.main(["merge", str(tmp_path / "m2"), f"{tmp_path / 'a'}:seed", f"{tmp_path / 'a'}:seed"])
    with pytest.raises(ConfigError, match="no rows of method 'nope'"):
        rows_script.main(["merge", str(tmp_path / "m3"), f"{tmp_path / 'a'}:nope"])
    capsys.readouterr()
    assert rows_script.main(["levels", str(out / "rows.csv")]) == 0
    text = capsys.readouterr().out
    assert "local-gradient: n 1, valid 1.000, final level {'0.35': 1}, region grown 1, fallback 0" in text
    assert "preset-local: n 1, valid 1.000, final level {'0.5': 1}, region grown 1, fallback 1" in text


def test_rows_script_keeps_the_first_cases_of_the_merged_rows(rows_script, tmp_path):
    (tmp_path / "a.csv").write_text("method,case,validity\nseed,c0,1\nseed,c1,0\nseed,c2,1\n")
    (tmp_path / "b.csv").write_text("method,case,validity\nfast,c0,1\nfast,c1,1\nfast,c2,0\nfast,c3,0\n")
    out = tmp_path / "m"
    assert rows_script.main(["merge", str(out), f"{tmp_path / 'a.csv'}:seed", f"{tmp_path / 'b.csv'}:fast",
                             "--first", "2"]) == 0
    assert [(r["method"], r["case"]) for r in _rows(out / "rows.csv")] == [
        ("seed", "c0"), ("seed", "c1"), ("fast", "c0"), ("fast", "c1")]
    assert "--first 2" in __import__("json").loads((out / "run.json").read_text())["command"]


def test_rows_script_merges_a_variant_whose_name_holds_an_equals_sign(rows_script, tmp_path):
    v = "local-fill+fill__dilate=0"
    (tmp_path / "a.csv").write_text(f"method,case,validity\n{v},c0,1\nseed,c0,0\n")
    out = tmp_path / "m"
    assert rows_script.main(["merge", str(out), f"{tmp_path / 'a.csv'}:{v}", f"{tmp_path / 'a.csv'}:seed"]) == 0
    assert [r["method"] for r in _rows(out / "rows.csv")] == [v, "seed"]  # the whole name, not renamed
    out2 = tmp_path / "m2"
    assert rows_script.main(["merge", str(out2), f"{tmp_path / 'a.csv'}:{v}=dilate-0"]) == 0
    assert [r["method"] for r in _rows(out2 / "rows.csv")] == ["dilate-0"]  # the last '=' renames


def test_rows_script_merges_rows_csv_files_and_keeps_their_columns(rows_script, tmp_path):
    # a .csv source (e.g. docs/results/*-rows.csv, which has no run.json beside it) is read as it is;
    # a column only one source has is left empty in the other's rows
    (tmp_path / "cpu.csv").write_text("method,case,validity\nseed,c1,1\nseed,c2,0\n")
    (tmp_path / "gpu").mkdir()
    (tmp_path / "gpu" / "rows.csv").write_text("method,case,validity,fallback\nseed,c1,1,0\n")
    (tmp_path / "gpu" / "run.json").write_text('{"settings": {"device": "cuda"}}')
    out = tmp_path / "m"
    assert rows_script.main(["merge", str(out), f"{tmp_path / 'cpu.csv'}:seed=seed-cpu",
                             f"{tmp_path / 'gpu'}:seed=seed-gpu"]) == 0
    assert [(r["method"], r["case"], r["fallback"]) for r in _rows(out / "rows.csv")] == [
        ("seed-cpu", "c1", ""), ("seed-cpu", "c2", ""), ("seed-gpu", "c1", "0")]
    assert __import__("json").loads((out / "run.json").read_text())["settings"] == {"device": "cuda"}


def test_rows_script_merge_common_keeps_only_the_cases_every_method_has(rows_script, tmp_path):
    from xcf.errors import ConfigError

    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "rows.csv").write_text("method,case,validity\n" + "".join(f"a,c{i},1\n" for i in range(4)))
    (tmp_path / "a" / "run.json").write_text('{"settings": {}}')
    (tmp_path / "b.csv").write_text("method,case,validity\nb,c0,1\nb,c1,0\n")
    out = tmp_path / "m"
    assert rows_script.main(["merge", str(out), f"{tmp_path / 'a'}:a", f"{tmp_path / 'b.csv'}:b", "--common"]) == 0
    assert sorted((r["method"], r["case"]) for r in _rows(out / "rows.csv")) == [
        ("a", "c0"), ("a", "c1"), ("b", "c0"), ("b", "c1")]
    assert __import__("json").loads((out / "run.json").read_text())["command"].endswith("--common")
    with pytest.raises(ConfigError, match="SRC:METHOD"):
        rows_script.main(["merge", str(tmp_path / "m2"), "no-colon"])
    assert not (tmp_path / "m2").exists()


def test_rows_script_compare_counts_differences_on_shared_cases(rows_script, tmp_path, capsys):
    # c0: the same under a and b; c1: valid under a only, 11 vs 99 steps, level 0.5 -> 0.2; c2: a only
    (tmp_path / "r.csv").write_text("method,case,validity,steps,region_threshold\n"
                                    "a,c0,1,10,0.5\na,c1,1,11,0.5\na,c2,1,12,0.5\n"
                                    "b,c0,1,10,0.5\nb,c1,0,99,0.2\n")
    assert rows_script.main(["compare", str(tmp_path / "r.csv"), "a", "b"]) == 0
    text = capsys.readouterr().out
    assert "2 cases in common; validity differs on 1 (c1)" in text
    assert "step count differs on 1" in text
    assert "1 moved (1 to a larger region under b, 0 to a smaller one)" in text
    assert "over the 1 films valid under both" in text


def test_rows_script_means_with_and_without_a_finding(rows_script, tmp_path, capsys):
    from xcf.errors import ConfigError

    (tmp_path / "r.csv").write_text("method,case,finding,validity\n"
                                    "m,c0,Nodule,1\nm,c1,Nodule,0\nm,c2,Cardiomegaly,1\n")
    rows_script.main(["means", str(tmp_path / "r.csv"), "--columns", "validity"])
    assert "m: n 3, validity 0.667" in capsys.readouterr().out
    rows_script.main(["means", str(tmp_path / "r.csv"), "--columns", "validity", "--exclude-finding", "Nodule"])
    assert "m: n 1 without Nodule, validity 1.000" in capsys.readouterr().out
    with pytest.raises(ConfigError, match="no such finding"):
        rows_script.main(["means", str(tmp_path / "r.csv"), "--exclude-finding", "Effusion"])


@pytest.fixture(scope="module")
def select_script():
    return _load_script("select_weights.py")


def _ae_entry(name: str, shift: float, psnr: float) -> dict:
    return {"file": f"{name}.safetensors", "command": f"xcf train autoencoder --out weights --name {name} --seed 0",
            "metrics": {"test": {"prob_shift_mean": shift, "prob_shift_median": 0.01, "psnr_db": psnr,
                                 "ssim": 0.5}}}


def _write_weights(folder, entries: dict) -> None:
    import json

    folder.mkdir()
    (folder / "manifest.json").write_text(json.dumps({"format": 1, "weights": entries, "packs": {}}))
    for name, e in entries.items():
        (folder / e["file"]).write_text(name)


def test_select_weights_keeps_the_lowest_shift_within_the_psnr_floor(select_script, tmp_path, capsys):
    import json

    w = tmp_path / "w"
    _write_weights(w, {"ae": _ae_entry("ae", 0.10, 20.0), "ae-a": _ae_entry("ae-a", 0.05, 19.5),
                       "ae-b": _ae_entry("ae-b", 0.01, 15.0)})  # ae-b: lowest shift, but blurred
    assert select_script.main(["latent", "--weights", str(w), "--target", "ae", "--candidates",
                               "ae-a,ae-b,ae-c", "--baseline-shift", "0.08"]) == 0
    said = json.loads(capsys.readouterr().out)
    assert said["winner"] == "ae-a" and said["unfinished"] == ["ae-c"]
    data = json.loads((w / "manifest.json").read_text())
    assert list(data["weights"]) == ["ae"]
    entry = data["weights"]["ae"]
    assert entry["file"] == "ae.safetensors" and (w / "ae.safetensors").read_text() == "ae-a"
    assert entry["command"] == "xcf train autoencoder --out weights --name ae --seed 0"
    assert set(entry["selection"]["candidates"]) == {"ae-a", "ae-b"}
    assert sorted(p.name for p in w.glob("*.safetensors")) == ["ae.safetensors"]


def test_select_weights_keeps_the_shipped_model_when_no_candidate_beats_it(select_script, tmp_path, capsys):
    import json

    w = tmp_path / "w"
    _write_weights(w, {"ae": _ae_entry("ae", 0.10, 20.0), "ae-a": _ae_entry("ae-a", 0.09, 20.0)})
    assert select_script.main(["latent", "--weights", str(w), "--target", "ae", "--candidates", "ae-a",
                               "--baseline-shift", "0.05"]) == 0
    assert json.loads(capsys.readouterr().out)["winner"] is None
    assert (w / "ae.safetensors").read_text() == "ae" and not (w / "ae-a.safetensors").exists()
    assert list(json.loads((w / "manifest.json").read_text())["weights"]) == ["ae"]
    # the shipped pair is stale once the classifier changed: the best candidate is taken anyway
    _write_weights(tmp_path / "w2", {"ae": _ae_entry("ae", 0.10, 20.0), "ae-a": _ae_entry("ae-a", 0.09, 20.0)})
    assert select_script.main(["latent", "--weights", str(tmp_path / "w2"), "--target", "ae", "--candidates",
                               "ae-a", "--baseline-shift", "0.05", "--classifier-changed"]) == 0
    assert json.loads(capsys.readouterr().out)["winner"] == "ae-a"


def test_select_weights_pick_ships_the_named_candidate_and_records_why(select_script, tmp_path, capsys):
    import json

    w = tmp_path / "w"
    _write_weights(w, {"ae": _ae_entry("ae", 0.01, 20.0), "ae-a": _ae_entry("ae-a", 0.02, 20.0)})
    assert select_script.main(["latent", "--weights", str(w), "--target", "ae", "--candidates", "ae-a",
                               "--pick", "ae-a", "--why", "flips more findings"]) == 0
    said = json.loads(capsys.readouterr().out)
    assert said["winner"] == "ae-a" and said["why"] == "picked by hand: flips more findings"
    entry = json.loads((w / "manifest.json").read_text())["weights"]["ae"]
    assert (w / "ae.safetensors").read_text() == "ae-a"
    assert "flips more findings" in entry["selection"]["rule"]
    assert entry["selection"]["previous"]["prob_shift_mean"] == 0.01
    with pytest.raises(SystemExit):  # --pick without --why, or naming no candidate
        select_script.main(["latent", "--weights", str(w), "--target", "ae", "--candidates", "ae-b",
                            "--pick", "ae-b"])
    assert "--pick must name one of --candidates" in capsys.readouterr().err


def test_rows_script_compares_two_methods_film_by_film(rows_script, tmp_path, capsys):
    from xcf.errors import ConfigError

    rows = tmp_path / "rows.csv"
    rows.write_text("method,case,validity,region_threshold,steps,realism\n"
                    "a,c1,1,0.5,10,1.0\n" "b,c1,1,0.35,210,2.0\n"      # b grew the region
                    "a,c2,1,0.2,500,1.0\n" "b,c2,1,0.35,300,1.0\n"     # b stopped at a smaller one
                    "a,c3,0,0.1,800,5.0\n" "b,c3,1,0.1,800,9.0\n"      # only b valid: left out of the means
                    "a,c4,1,0.5,7,1.0\n")                              # only a ran it
    assert rows_script.main(["compare", str(rows), "a", "b"]) == 0
    text = capsys.readouterr().out
    assert ("a vs b: 3 cases in common; validity differs on 1 (c3); step count differs on 2; final region "
            "level: 2 moved (1 to a larger region under b, 1 to a smaller one)") in text
    assert "means over the 2 films valid under both" in text
    assert "realism: 1.000 / 1.500 / +0.500" in text and "largest difference of a mean: 0.500 (realism)" in text
    with pytest.raises(ConfigError, match="no rows of method 'z'"):
        rows_script.main(["compare", str(rows), "a", "z"])


def test_rows_script_means_without_a_finding(rows_script, tmp_path, capsys):
    from xcf.errors import ConfigError

    rows = tmp_path / "rows.csv"
    rows.write_text("method,case,finding,validity,oracle_validity\n"
                    "a,c1,Nodule,1,1\n" "a,c2,Effusion,1,0\n" "a,c3,Effusion,0,nan\n" "b,c1,Nodule,1,1\n")
    assert rows_script.main(["means", str(rows)]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "a: n 3, validity 0.667, oracle_validity 0.500",  # nan is no value, not a zero
        "b: n 1, validity 1.000, oracle_validity 1.000"]
    assert rows_script.main(["means", str(rows), "--exclude-finding", "Nodule"]) == 0
    assert capsys.readouterr().out.splitlines() == ["a: n 2 without Nodule, validity 0.500, oracle_validity 0.000"]
    with pytest.raises(ConfigError, match="valid: Effusion, Nodule"):
        rows_script.main(["means", str(rows), "--exclude-finding", "nodule"])
    with pytest.raises(ConfigError, match="no column"):
        rows_script.main(["means", str(rows), "--columns", "realism"])


def test_default_rule_script_compares_matched_cases(tmp_path, capsys):
    """benchmarks/default_rule.py: means over the cases both methods ran; fails on any worse rule
    measure (validity, locality, the oracle's agreement on the findings it sees on the input,
    removal); a measure absent from the rows (no ground truth) is left out."""
    rule = _load_script("default_rule.py")
    cols = ["method", "case", "validity", "share_in_gt_l1", "share_in_gt_dilated_l1",
            "share_in_ref_mask_l1", "oracle_p_input", "oracle_validity", "removal", "steps"]
    rows = [["seed", "a", 1, 0.2, 0.4, 0.9, 0.9, 1, 0.2, 200], ["seed", "b", 0, 0.1, 0.3, 0.8, 0.9, 0, 0.1, 200],
            ["seed", "c", 1, 0.0, 0.0, 0.0, 0.9, 0, 0.0, 200],  # only the seed ran c: not compared
            ["new", "a", 1, 0.6, 0.9, 1.0, 0.9, 1, 0.3, 5], ["new", "b", 1, 0.5, 0.8, 0.9, 0.9, 0, 0.2, 9],
            ["seed", "d", 1, 0.2, 0.4, 0.9, 0.1, 1, 0.2, 200],  # the oracle does not see d's finding:
            ["new", "d", 1, 0.2, 0.4, 0.9, 0.1, 0, 0.2, 200]]   # its agreement does not count
    good = tmp_path / "good.csv"
    good.write_text("\n".join(",".join(map(str, r)) for r in [cols] + rows) + "\n")
    assert rule.main([f"{good}:phantom", "--reference", "seed", "--candidate", "new"]) == 0
    out = capsys.readouterr().out
    assert "phantom: 3 cases run by both" in out and "| findings flipped | 0.667 | 1.000 | at least as good |" in out
    assert "| the independent oracle agrees (findings it sees on the input) | 0.500 | 0.500 | at least as good |" in out
    assert "new meets the rule" in out
    rows[3][7] = 0  # the oracle no longer agrees with the candidate on a
    worse = tmp_path / "worse.csv"
    worse.write_text("\n".join(",".join(map(str, r)) for r in [cols] + rows) + "\n")
    assert rule.main([str(worse), "--reference", "seed", "--candidate", "new"]) == 1
    assert "(findings it sees on the input) | 0.500 | 0.000 | **worse** |" in capsys.readouterr().out
    rows[3][7] = 1
    rows[3][5] = 0.7  # the candidate's share in the seed's mask falls below the seed's
    bad = tmp_path / "bad.csv"
    bad.write_text("\n".join(",".join(map(str, r)) for r in [cols] + rows) + "\n")
    assert rule.main([str(bad), "--reference", "seed", "--candidate", "new"]) == 1
    assert "| share of the change in the seed's Grad-CAM++ mask | 0.867 | 0.833 | **worse** |" in capsys.readouterr().out
    nogt = tmp_path / "nogt.csv"
    nogt.write_text("method,case,validity,share_in_gt_l1,share_in_ref_mask_l1\nseed,a,1,,0.8\nnew,a,1,,0.9\n")
    assert rule.main([str(nogt), "--reference", "seed", "--candidate", "new"]) == 0
    assert "inside the true finding" not in capsys.readouterr().out
    with pytest.raises(SystemExit, match="no case has rows of both"):
        rule.main([str(nogt), "--candidate", "other"])  # the reference: the default, local-in-mask
    with pytest.raises(SystemExit, match="cannot read rows"):
        rule.main([str(tmp_path / "missing.csv"), "--candidate", "new"])
    (tmp_path / "other.csv").write_text("a,b\n1,2\n")
    with pytest.raises(SystemExit, match="no 'method' and 'case' columns"):
        rule.main([str(tmp_path / "other.csv"), "--candidate", "new"])


def test_a_variant_of_a_registered_method_is_benchmarked_under_its_spec():
    from xcf.bench.counterfactuals import resolve_methods
    from xcf.errors import ConfigError

    var, seed = resolve_methods("local-in-mask+stop__probability=0.05+region__levels=[0.5,0.2],seed")
    m = var.resolved()
    assert var.name == m.name == "local-in-mask+stop__probability=0.05+region__levels=[0.5,0.2]"
    assert m.stop.probability == 0.05 and m.stop.off_target == 0.1 and m.region.levels == (0.5, 0.2)
    assert seed.resolved().name == "seed"
    views, _ = resolve_methods('local-in-mask+objective__views={"n":2,"blur":1.0}+stop__on_views=true,seed')
    assert views.resolved().objective.views.n == 2 and views.resolved().objective.views.blur == 1.0
    assert views.resolved().stop.on_views is True
    with pytest.raises(ConfigError, match="on_views must be true or false"):
        resolve_methods("seed+stop__on_views=True")
    with pytest.raises(ConfigError, match="no field 'nope'"):
        resolve_methods("seed+nope=1")
    with pytest.raises(ConfigError, match="unknown method 'turbo'"):
        resolve_methods("turbo+lr=1")


def test_the_oracle_judges_but_never_takes_part_in_a_search(tiny_pack, tmp_path, monkeypatch):
    """Every method of the bench (the shipped ones, a variant with views, the baselines) is run on
    the tiny pack with a hook on the oracle that fails the test if the oracle is called while an
    explanation (Explainer.explain_tensor: saliency, fills, searches) or a search (optimize_latent,
    latent_shift) is running; the oracle must still be called, after the search, to judge."""
    import xcf.baselines
    import xcf.explainer
    import xcf.optimize
    from xcf.bench.counterfactuals import default_methods, phantom_cases, resolve_methods, run
    from xcf.packs import load_pack

    monkeypatch.setenv("XCF_WEIGHTS_DIR", str(tiny_pack))
    pack = load_pack("phantom")
    state = {"searching": 0, "judged": 0}

    def hook(module, args):
        assert state["searching"] == 0, "the oracle was called inside a search"
        state["judged"] += 1

    pack.oracle.register_forward_pre_hook(hook)
    for mod, name in ((xcf.optimize, "optimize_latent"), (xcf.baselines, "latent_shift"),
                      (xcf.explainer.Explainer, "explain_tensor")):
        original = getattr(mod, name)

        def wrapped(*a, _original=original, **k):
            state["searching"] += 1
            try:
                return _original(*a, **k)
            finally:
                state["searching"] -= 1

        monkeypatch.setattr(mod, name, wrapped)
    spec = ",".join([*default_methods(pack), 'local-in-mask+objective__views={"n":2}+stop__on_views=true'])
    methods = resolve_methods(spec)
    cases = phantom_cases(2, pack.labels, pack.latent.input_size)
    run(tmp_path / "b", methods, cases, pack=pack, overrides={"steps": 2}, log=lambda s: None)
    assert state["judged"] >= 2 * len(methods) and state["searching"] == 0
    rows = _rows(tmp_path / "b" / "rows.csv")
    assert len(rows) == 2 * len(methods) and all(r["oracle_validity"] in ("0", "1") for r in rows)


def test_the_bench_phantoms_are_none_of_the_packs_training_phantoms():
    """Every phantom:N[:SEED] training set in the manifest (training items item_seed(s, j), its
    validation items of seed s + 1) and the phantom exemplar bank are disjoint from the bench's test
    phantoms: a test phantom's anatomy (and its true counterfactual) was never trained on. With
    ``PHANTOM_TEST_SEED + i`` as the seed, case i was item 1000 + i of every ``phantom:N`` set."""
    import re

    from xcf.bench.counterfactuals import phantom_cases
    from xcf.data.phantoms import item_seed
    from xcf.packs import read_manifest

    _, manifest = read_manifest()
    used: list[range] = []
    for entry in manifest["weights"].values():
        m = re.search(r"--data phantom:(\d+)(?::(\d+))?", entry.get("command", ""))
        if m:
            n = int(m.group(1))
            s = int(m.group(2)) if m.group(2) is not None else int(re.search(r"--seed (\d+)", entry["command"]).group(1))
            used += [range(item_seed(s, 0), item_seed(s, n)), range(item_seed(s + 1, 0), item_seed(s + 1, max(200, n // 10)))]
    bank = manifest["packs"]["phantom"]["exemplars"]["data"].split(":")
    used.append(range(item_seed(int(bank[2]), 0), item_seed(int(bank[2]), int(bank[1]))))
    assert len(used) >= 8
    seeds = [c.info["phantom_seed"] for c in phantom_cases(200, ("Cardiomegaly", "Nodule"), 64)]
    assert not [s for s in seeds if any(s in r for r in used)]
