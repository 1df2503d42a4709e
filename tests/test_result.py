"""Counterfactual results: save() is atomic, report.json is complete and strict JSON."""

from __future__ import annotations

import json

import pytest
import torch
from _analytic import BoxSaliency, IdentityLatent, RegionClassifier, region_image

import xcf
from xcf.result import REPORT_FILES


@pytest.fixture
def cf():
    ex = xcf.Explainer(classifier=RegionClassifier(), latent=IdentityLatent(), saliency=BoxSaliency(),
                       config=xcf.ExplainConfig(steps=50))
    return ex.explain(region_image(), "finding0")[0]


def test_fields_and_shapes(cf):
    for name in ("input", "reconstruction", "counterfactual", "saliency", "mask"):
        t = getattr(cf, name)
        assert t.shape == (1, 32, 32) and t.device.type == "cpu"
    assert cf.mask.dtype == torch.bool
    assert cf.probs_input.shape == cf.probs_counterfactual.shape == (2,)
    assert cf.labels == ("finding0", "finding1") and cf.target == "finding0"
    assert len(cf.losses) == cf.steps == 50
    assert cf.losses[-1] < cf.losses[0]
    assert cf.metrics["validity"] == 1.0 and cf.metrics["share_in_mask_l1"] > 0.999


def test_save_and_report(cf, tmp_path):
    out = cf.save(tmp_path / "case")
    assert sorted(p.name for p in out.iterdir()) == sorted(REPORT_FILES)
    report = json.loads((out / "report.json").read_text())
    assert report["p_counterfactual"] == pytest.approx(cf.p_counterfactual)
    assert report["status"] == "completed"
    assert report["metrics"]["validity"] == 1.0
    assert report["provenance"]["seed"] == 0


def test_save_is_atomic(cf, tmp_path, monkeypatch):
    target = tmp_path / "case"
    cf.save(target)
    before = {p.name: p.read_bytes() for p in target.iterdir()}

    import xcf.figures

    def broken(_cf):
        raise RuntimeError("disk full")

    monkeypatch.setattr(xcf.figures, "difference_figure", broken)
    with pytest.raises(RuntimeError):
        cf.save(target)
    assert {p.name: p.read_bytes() for p in target.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["case"]  # no temporary left behind
    with pytest.raises(RuntimeError):
        cf.save(tmp_path / "new")
    assert not (tmp_path / "new").exists()


def test_figure_footer_says_when_seconds_are_a_batch_share():
    from xcf.figures import four_panel

    ex = xcf.Explainer(classifier=RegionClassifier(), latent=IdentityLatent(), saliency=BoxSaliency(),
                       config=xcf.ExplainConfig(steps=3))
    one = ex.explain(region_image(), "finding0")[0]
    two = ex.explain(region_image(2), ["finding0", "finding1"])[0]
    text = lambda cf: four_panel(cf)._suptitle.get_text()  # noqa: E731
    assert "batch" not in text(one)
    assert "(batch of 2: wall / 2)" in text(two)
