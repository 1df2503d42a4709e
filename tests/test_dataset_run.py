"""``xcf explain-dataset`` / ``xcf.explain_dataset``: layout, resume, bad images, Ctrl-C, data kinds."""

from __future__ import annotations

import csv
import json
import sys

import numpy as np
import pytest
import torch
from PIL import Image

import xcf
from xcf.cli import main
from xcf.engines.runner import RESULT_COLUMNS, read_jobs
from xcf.errors import ConfigError, DataError
from xcf.result import REPORT_FILES

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def make_dataset(root, n=4, bad=True):
    """``n`` 40 px images (odd ones 'bright'), ``labels.csv`` with a split column, a corrupt file."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    rows = ["path,split,patient_id,bright"]
    yy, xx = np.mgrid[:40, :40]
    for i in range(n):
        img = rng.normal(0.3, 0.05, (40, 40))
        if i % 2:
            img[(yy - 20) ** 2 + (xx - 18) ** 2 < 50] += 0.5
        (root / "imgs").mkdir(exist_ok=True)
        Image.fromarray((img.clip(0, 1) * 255).astype(np.uint8)).save(root / "imgs" / f"im{i}.png")
        rows.append(f"imgs/im{i}.png,test,p{i},{i % 2}")
    if bad:
        (root / "imgs" / "broken.png").write_bytes(b"this is not a PNG")
        rows.append("imgs/broken.png,test,p99,1")
    rows.append("imgs/im0.png,train,p0,0")
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    return root


def tiny_models(labels=("bright",)):
    torch.manual_seed(0)
    clf = xcf.create("classifier", "small-cnn", labels=list(labels), input_size=32, widths=[4, 8, 8, 8, 8])
    ae = xcf.create("latent", "conv-ae", input_size=32, widths=[4, 8, 8, 8, 8], latent_channels=4)
    return clf, ae


@pytest.fixture
def data(tmp_path):
    return make_dataset(tmp_path / "data")


def run(data, out, **kw):
    clf, ae = tiny_models()
    opts = dict(target="bright", classifier=clf, latent=ae, steps=2, batch_size=3, split="test",
                progress=False, device="cpu", config="seed")  # exactly `steps` steps per film
    opts.update(kw)
    return xcf.explain_dataset(data, out, **opts)


def read_csv(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_layout_errors_and_resume(data, tmp_path):
    out = tmp_path / "out"
    res = run(data, out)
    assert res.n_jobs == 5 and res.n_explained == 5 and res.n_errors == 1 and res.n_resumed == 0
    rows = read_csv(out / "results.csv")
    assert list(rows[0]) == list(RESULT_COLUMNS)
    assert [r["id"] for r in rows] == [f"im{i}" for i in range(4)] + ["broken"]
    bad = rows[-1]
    assert bad["status"] == "error" and "broken.png" in bad["error"] and "\n" not in bad["error"]
    assert bad["p_input"] == "" and bad["label"] == "1.0"
    for r in rows[:-1]:
        assert r["status"] in ("ran-all-steps", "stopped-early") and r["target"] == "bright"
        assert float(r["steps"]) == 2 and 0 <= float(r["p_counterfactual"]) <= 1
        folder = out / "cases" / r["id"]
        assert {p.name for p in folder.iterdir()} >= {*REPORT_FILES, "thumb.png"}
        assert json.loads((folder / "report.json").read_text())["target"] == "bright"
    assert [r["label"] for r in rows[:4]] == ["0.0", "1.0"] * 2
    assert (out / "index.html").is_file() and json.loads((out / "run.json").read_text())["n_jobs"] == 5
    assert not (out / "cases" / "broken").exists()

    stamps = {p: p.stat().st_mtime_ns for p in (out / "cases").glob("*/report.json")}
    again = run(data, out)
    assert again.n_resumed == 4 and again.n_explained == 1 and again.n_errors == 1  # only the bad one
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    assert read_csv(out / "results.csv") == rows


def test_resume_checks_the_report(data, tmp_path):
    out = tmp_path / "out"
    run(data, out, limit=3)
    (out / "cases" / "im1" / "report.json").write_text("{ truncated")
    (out / "cases" / "im2" / "figure.png").unlink()
    res = run(data, out, limit=3)
    assert res.n_resumed == 1 and res.n_explained == 2  # the broken and the incomplete folder redone
    assert json.loads((out / "cases" / "im1" / "report.json").read_text())["steps"] == 2
    other = run(data, out, limit=1, steps=3)  # another config hash: explained again
    assert other.n_resumed == 0 and other.n_explained == 1
    moved = run(data, out, limit=1, steps=3, batch_size=2)  # batch size is not part of the hash
    assert moved.n_resumed == 1


def test_ctrl_c_keeps_completed_cases_and_resume_finishes(data, tmp_path):
    out = tmp_path / "out"
    seen = []

    def interrupt(rows):
        seen.extend(rows)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run(data, out, on_batch=interrupt)
    done = {r["id"] for r in read_csv(out / "results.csv")}
    assert done and done == {r["id"] for r in seen}
    on_disk = {p.name for p in (out / "cases").iterdir()}
    assert not any(n.startswith(".") for n in on_disk)  # no half-written folders
    for name in on_disk:
        assert all((out / "cases" / name / f).is_file() for f in REPORT_FILES)
    res = run(data, out)
    assert res.n_resumed == len(on_disk) and res.n_jobs == 5
    assert len(read_csv(out / "results.csv")) == 5


def test_all_positive_one_job_per_positive_finding(tmp_path):
    root = make_dataset(tmp_path / "d", n=4, bad=False)
    text = (root / "labels.csv").read_text().replace("bright", "bright,dark")
    lines = text.splitlines()
    lines = [lines[0]] + [ln + ("," + ("1" if i % 2 == 0 else "0")) for i, ln in enumerate(lines[1:])]
    (root / "labels.csv").write_text("\n".join(lines) + "\n")
    jobs, kind = read_jobs(root / "labels.csv", ["Bright", "Dark"], all_positive=True, split="test")
    assert kind == "labels.csv"
    assert [(j.id, j.target) for j in jobs] == [("im0__Dark", "Dark"), ("im1__Bright", "Bright"),
                                                ("im2__Dark", "Dark"), ("im3__Bright", "Bright")]
    assert len(read_jobs(root, ["Bright", "Dark"], all_positive=True, split="test", limit=3)[0]) == 3
    plain, kind = read_jobs(root / "imgs", ["Bright"], target="Bright")
    assert kind == "folder" and [j.id for j in plain] == ["im0", "im1", "im2", "im3"]
    assert all(j.label is None for j in plain)
    with pytest.raises(DataError, match="no labels; --all-positive needs"):
        read_jobs(root / "imgs", ["Bright"], all_positive=True)
    with pytest.raises(DataError, match="no column matches the classifier's labels"):
        read_jobs(root, ["Edema"], all_positive=True)
    with pytest.raises(ConfigError):
        read_jobs(root, ["Bright"])


def test_chexpert_csv_and_duplicate_stems(tmp_path):
    root = tmp_path / "CheXpert-v1.0-small"
    header = "Path,Sex,Age,Frontal/Lateral,AP/PA,Cardiomegaly,Edema"
    rows = [header]
    for p, view, card, edema in [(1, "Frontal", "1.0", ""), (2, "Frontal", "-1.0", "1.0"),
                                 (2, "Lateral", "1.0", "1.0")]:
        rows.append(f"CheXpert-v1.0-small/valid/patient0000{p}/study1/view1_{view.lower()}.jpg,"
                    f"Male,50,{view},AP,{card},{edema}")
    root.mkdir()
    (root / "valid.csv").write_text("\n".join(rows) + "\n")
    jobs, kind = read_jobs(root, ["Cardiomegaly", "Edema", "Atelectasis"], all_positive=True)
    assert kind == "chexpert"  # uncertain (-1) is not positive; lateral views are left out
    assert [(j.id, j.target) for j in jobs] == [
        ("valid__patient00001__study1__view1_frontal__Cardiomegaly", "Cardiomegaly"),
        ("valid__patient00002__study1__view1_frontal__Edema", "Edema")]


def test_cli_plain_folder_and_ray_hint(tmp_path, capsys, monkeypatch):
    imgs = make_dataset(tmp_path / "d", n=2, bad=False) / "imgs"
    out = tmp_path / "out"
    args = ["explain-dataset", "--data", str(imgs), "--target", "cardiomegaly", "--out", str(out),
            "--classifier", "small-cnn", "--latent", "conv-ae", "--steps", "1", "--no-progress"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "2 jobs: 0 already complete, 2 explained now (0 errors)" in printed and "images/s" in printed
    assert [r["target"] for r in read_csv(out / "results.csv")] == ["Cardiomegaly"] * 2
    assert main(args) == 0
    assert "2 already complete, 0 explained now" in capsys.readouterr().out
    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    assert main([*args, "--engine", "ray"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "xcf: error: the ray engine needs Ray, which is not installed: pip install 'xcf[ray]'"
    with pytest.raises(SystemExit):  # --target and --all-positive exclude each other
        main([*args, "--all-positive"])
