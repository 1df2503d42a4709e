"""Reliability: bad inputs through xcf.explain and the CLI, faulty plugins named, reproducibility."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from _analytic import BoxSaliency, IdentityLatent, RegionClassifier, region_image
from PIL import Image

import xcf
from xcf import errors
from xcf import registry as xreg
from xcf.cli import main

UNTRAINED = ["--classifier", "small-cnn", "--latent", "conv-ae", "--steps", "2"]


def _png(path, arr):
    Image.fromarray(arr).save(path)
    return path


def _truncated(path):
    _png(path, (np.random.default_rng(0).random((64, 64)) * 255).astype(np.uint8))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def _write(path, data: bytes):
    path.write_bytes(data)
    return path


def _mkdir(path):
    path.mkdir()
    return path


FILE_CASES = {
    "missing": (lambda d: d / "absent.png", errors.InvalidImageError, "no such file"),
    "directory": (lambda d: _mkdir(d / "folder.png"), errors.InvalidImageError, "directory"),
    "empty": (lambda d: _write(d / "empty.png", b""), errors.InvalidImageError, "empty"),
    "text": (lambda d: _write(d / "notes.png", b"hello, not an image"), errors.InvalidImageError, ""),
    "truncated": (lambda d: _truncated(d / "cut.png"), errors.InvalidImageError, ""),
    "too-small": (lambda d: _png(d / "tiny.png", np.zeros((16, 16), np.uint8)), errors.ImageTooSmallError, "32"),
}


@pytest.mark.parametrize("case", sorted(FILE_CASES))
def test_bad_files_through_explain_and_cli(case, tmp_path, capsys):
    make, exc_class, fragment = FILE_CASES[case]
    path = make(tmp_path)
    with pytest.raises(exc_class) as err:
        xcf.explain(path, 0, classifier="small-cnn", latent="conv-ae", steps=1)
    msg = str(err.value)
    assert "\n" not in msg and path.name in msg and fragment in msg
    out = tmp_path / "out"
    assert main(["explain", str(path), "--target", "0", "--out", str(out), *UNTRAINED]) == 2
    cli_err = capsys.readouterr().err
    assert cli_err.startswith("xcf: error: ") and cli_err.count("\n") == 1 and path.name in cli_err
    assert not out.exists()  # nothing half-written


def test_too_large_is_refused_before_decoding(tmp_path, monkeypatch):
    import xcf.imageio

    monkeypatch.setattr(xcf.imageio, "MAX_PIXELS", 100 * 100)
    path = _png(tmp_path / "big.png", np.zeros((200, 200), np.uint8))
    with pytest.raises(errors.ImageTooLargeError, match="big.png"):
        xcf.explain(path, 0, classifier="small-cnn", latent="conv-ae", steps=1)


ARRAY_CASES = {
    "nan": (np.full((64, 64), np.nan, np.float32), "NaN"),
    "inf": (np.full((64, 64), np.inf, np.float32), ""),
    "out-of-range": (np.full((64, 64), 1.5, np.float32), "[0, 1]"),
    "rgb": (np.zeros((3, 64, 64), np.float32), "channel"),
    "ndim": (np.zeros((2, 2, 64, 64), np.float32), ""),
}


@pytest.mark.parametrize("case", sorted(ARRAY_CASES))
def test_bad_arrays_through_explain(case):
    arr, fragment = ARRAY_CASES[case]
    for src in (arr, torch.from_numpy(arr)):
        with pytest.raises(errors.InvalidImageError) as err:
            xcf.explain(src, 0, classifier="small-cnn", latent="conv-ae", steps=1)
        assert "\n" not in str(err.value) and fragment.lower() in str(err.value).lower()


def test_accepted_variants_load(tmp_path):
    p16 = tmp_path / "sixteen.png"
    Image.fromarray((np.linspace(0, 65535, 64 * 80).reshape(64, 80)).astype(np.uint16)).save(p16)
    cf = xcf.explain(p16, "Edema", classifier="small-cnn", latent="conv-ae", steps=1)
    assert cf.input.shape == (1, 224, 224)
    rgb = tmp_path / "colour.png"
    Image.fromarray((np.random.default_rng(0).random((64, 64, 3)) * 255).astype(np.uint8)).save(rgb)
    with pytest.warns(UserWarning, match="colour.png"):
        xcf.explain(rgb, 0, classifier="small-cnn", latent="conv-ae", steps=1)
    for arr in (np.zeros((64, 64), np.uint8), np.ones((1, 64, 64), np.uint16), np.zeros((64, 64), bool)):
        xcf.explain(arr, 0, classifier="small-cnn", latent="conv-ae", steps=1)


# -- faulty components are named, checked once at the boundary -----------------------------------

class _Plugin:
    def __init__(self, saliency):
        self.saliency = saliency

    @xcf.hookimpl
    def xcf_register_saliency_methods(self, register):
        register("faulty", lambda: self.saliency)


class WrongShape(xcf.SaliencyMethod):
    def __call__(self, classifier, x, targets):
        return torch.zeros(x.shape[0], 1, 5, 5)


class WrongRange(xcf.SaliencyMethod):
    def __call__(self, classifier, x, targets):
        return torch.full_like(x, 3.0)


class NaNs(xcf.SaliencyMethod):
    def __call__(self, classifier, x, targets):
        return torch.full_like(x, float("nan"))


class Raises(xcf.SaliencyMethod):
    def __call__(self, classifier, x, targets):
        raise ValueError("internal failure")


@pytest.mark.parametrize("method, fragment", [(WrongShape(), "returned shape (1, 1, 5, 5), expected (1, 1, 32, 32)"),
                                               (WrongRange(), "expected [0, 1]"), (NaNs(), "NaN"),
                                               (Raises(), "ValueError: internal failure")])
def test_faulty_saliency_named_with_its_plugin(method, fragment):
    reg = xreg.Registry(xreg.make_plugin_manager())
    reg.register_plugin(_Plugin(method), name="acme")
    ex = xcf.Explainer(classifier=RegionClassifier(), latent=IdentityLatent(), saliency="faulty",
                       registry=reg, config=xcf.ExplainConfig(steps=2))
    with pytest.raises(errors.ComponentError) as err:
        ex.explain(region_image(), 0)
    msg = str(err.value)
    assert "saliency method 'faulty'" in msg and "plugin 'acme'" in msg and fragment in msg


class BadDecoder(IdentityLatent):
    def decode(self, latent):
        return latent.z * 5


class BadClassifier(RegionClassifier):
    def forward(self, x):
        return super().forward(x)[:, :1]


def test_faulty_latent_and_classifier_are_named():
    with pytest.raises(errors.ComponentError, match=r"BadDecoder.*decode\(\) returned values in"):
        xcf.Explainer(classifier=RegionClassifier(), latent=BadDecoder(), saliency=BoxSaliency(),
                      config=xcf.ExplainConfig(steps=1)).explain(region_image(), 0)
    with pytest.raises(errors.ComponentError, match=r"BadClassifier returned shape \(1, 1\), expected \(1, 2\)"):
        xcf.Explainer(classifier=BadClassifier(), latent=IdentityLatent(), saliency=BoxSaliency(),
                      config=xcf.ExplainConfig(steps=1)).explain(region_image(), 0)


# -- reproducibility -------------------------------------------------------------------------------

def test_bit_identical_with_real_plugins(tmp_path):
    torch.manual_seed(1)
    clf = xcf.create("classifier", "small-cnn", input_size=64)
    lat = xcf.create("latent", "conv-ae", input_size=64)
    x = torch.rand(2, 1, 64, 64, generator=torch.Generator().manual_seed(2))
    runs = []
    for _ in range(2):
        ex = xcf.Explainer(classifier=clf, latent=lat, saliency="gradcam++", config=xcf.ExplainConfig(steps=5, seed=7))
        runs.append(ex.explain(x, [0, 3]))
    for a, b in zip(*runs):
        assert torch.equal(a.counterfactual, b.counterfactual) and a.losses == b.losses
    a = runs[0][0]
    a.save(tmp_path / "r")
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    prov = report["provenance"]
    assert prov["xcf_version"] == xcf.__version__ and prov["seed"] == 7
    assert prov["components"]["saliency"]["package"] == "xcf"
    assert prov["components"]["saliency"]["version"] == xcf.__version__
    assert report["config"]["seed"] == 7
