"""The ``xcf`` command line: outputs, user errors (one line, exit 2), --debug."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from xcf.cli import main
from xcf.result import REPORT_FILES

UNTRAINED = ["--classifier", "small-cnn", "--latent", "conv-ae", "--steps", "3"]


@pytest.fixture
def png(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "film.png"
    Image.fromarray((rng.random((240, 260)) * 255).astype(np.uint8)).save(path)
    return path


def test_explain_writes_the_four_files(png, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["explain", str(png), "--target", "cardiomegaly", "--out", str(out), "--preset", "seed",
                 *UNTRAINED]) == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(REPORT_FILES)
    report = json.loads((out / "report.json").read_text())
    assert report["target"] == "Cardiomegaly" and report["steps"] == 3
    assert report["components"] == {"method": "seed", "classifier": "small-cnn", "latent": "conv-ae",
                                    "saliency": "gradcam++", "locality": "masked-l2"}
    assert report["config"]["steps"] == 3 and report["config"]["lr"] == 0.1
    assert report["provenance"]["xcf_version"]
    assert set(report["probabilities"]) == {"Cardiomegaly", "Edema", "Consolidation", "Atelectasis",
                                            "Pleural Effusion"}
    with Image.open(out / "counterfactual.png") as im:
        assert im.size == (224, 224) and im.mode == "L"
    with Image.open(out / "figure.png") as im:
        assert im.size[0] > 3 * im.size[1]  # four panels side by side
    assert "Cardiomegaly" in capsys.readouterr().out


def test_explain_without_a_method_uses_the_default_method(png, tmp_path):
    out = tmp_path / "out"
    assert main(["explain", str(png), "--target", "cardiomegaly", "--out", str(out), *UNTRAINED]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["components"]["saliency"] == "saliency-in-gradcam++"
    assert report["components"]["method"] == report["config"]["method"] == "local-in-mask"
    assert report["config"]["lr"] == 1.0 and report["config"]["stop.off_target"] == 0.1
    assert report["config"]["blend.kind"] == "residual" and report["config"]["steps"] == 3


def test_explain_several_images_one_folder_each(png, tmp_path):
    other = tmp_path / "second.png"
    Image.open(png).save(other)
    out = tmp_path / "out"
    assert main(["explain", str(png), str(other), "--target", "0", "--out", str(out), *UNTRAINED]) == 0
    assert (out / "film" / "report.json").is_file() and (out / "second" / "report.json").is_file()


@pytest.mark.parametrize("args, fragment", [
    (["--target", "Pneumothorax"], "unknown target 'Pneumothorax'; the classifier's labels are: Cardiomegaly"),
    (["--target", "0", "--saliency", "nope"], "unknown saliency method 'nope'; registered: "),
    (["--target", "0", "--steps", "-1"], "steps"),
    (["--target", "0", "--device", "tpu"], "device"),
])
def test_user_errors_one_line_exit_2(png, tmp_path, capsys, args, fragment):
    out = tmp_path / "out"
    argv = ["explain", str(png), "--out", str(out), "--classifier", "small-cnn", "--latent", "conv-ae", *args]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("xcf: error: ") and err.count("\n") == 1 and fragment in err
    assert not out.exists()


def test_missing_file_is_a_user_error(tmp_path, capsys):
    assert main(["explain", str(tmp_path / "absent.png"), "--target", "0", "--out", str(tmp_path / "o"),
                 *UNTRAINED]) == 2
    err = capsys.readouterr().err
    assert "absent.png" in err and err.count("\n") == 1


def test_debug_shows_traceback(png, tmp_path):
    cmd = [sys.executable, "-m", "xcf.cli", "--debug", "explain", str(png), "--target", "nope",
           "--out", str(tmp_path / "o"), *UNTRAINED]
    res = subprocess.run(cmd, capture_output=True, text=True)
    assert res.returncode != 0 and "Traceback" in res.stderr
    res = subprocess.run([c for c in cmd if c != "--debug"], capture_output=True, text=True)
    assert res.returncode == 2 and "Traceback" not in res.stderr


def test_plugins_lists_kinds_names_packages(capsys):
    assert main(["plugins"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split()[:4] == ["KIND", "NAME", "PACKAGE", "PLUGIN"]
    for name in ("gradcam++", "masked-l2", "small-cnn", "conv-ae", "seed", "local-in-mask"):
        assert any(line.split()[1] == name for line in out.splitlines()[1:] if line.split())


@pytest.mark.parametrize("flag, method", [("--preset", "seed"), *(("--method", m) for m in (
    "seed", "local", "fast", "early-stop", "local-in-mask", "latent-shift"))])
def test_every_method_runs_and_is_recorded(png, tmp_path, method, flag):
    import xcf

    out = tmp_path / method
    assert main(["explain", str(png), "--target", "cardiomegaly", "--out", str(out), flag, method,
                 *UNTRAINED]) == 0
    cfg = json.loads((out / "report.json").read_text())["config"]
    want = xcf.get_method(method).replace(steps=3).settings()
    assert {k: cfg[k] for k in want} == json.loads(json.dumps(want))
    assert cfg["steps"] == 3  # the explicit option wins over the method's


def test_unknown_method_is_a_user_error(png, tmp_path, capsys):
    assert main(["explain", str(png), "--target", "cardiomegaly", "--out", str(tmp_path / "o"),
                 "--method", "turbo", *UNTRAINED]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "turbo" in err and "local" in err
