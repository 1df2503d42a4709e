"""Counterfactual results: save() is atomic, report.json is complete and strict JSON, the figures
carry no pixel axes, the page's overlays, the status in words; xcf.figures does not import
xcf.result (no import circle)."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from _analytic import BoxSaliency, IdentityLatent, RegionClassifier, region_image
from PIL import Image

import xcf
from xcf.result import PAGE_FILES, REPORT_FILES, status_words


@pytest.fixture
def cf():
    ex = xcf.Explainer(classifier=RegionClassifier(), latent=IdentityLatent(), saliency=BoxSaliency(),
                       config="seed", steps=50)  # the seed's method: every step, no early stop
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
    assert report["status"] in ("ran-all-steps", "completed")
    assert report["max_change"] == pytest.approx(cf.max_change) and report["max_change"] > 0
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
                       config="seed", steps=3)
    one = ex.explain(region_image(), "finding0")[0]
    two = ex.explain(region_image(2), ["finding0", "finding1"])[0]
    text = lambda cf: four_panel(cf)._suptitle.get_text()  # noqa: E731
    assert "batch" not in text(one)
    assert "s per film (batch of 2)" in text(two)
    assert "3 optimizer updates" in text(one) and text(one).endswith("used all steps")


def test_figures_have_no_pixel_axes(cf):
    from xcf.figures import difference_figure, four_panel

    for fig in (four_panel(cf), difference_figure(cf)):
        films = [ax for ax in fig.axes if ax.images and ax.get_label() != "<colorbar>"]
        assert films and not any(ax.axison for ax in films)


def test_save_writes_the_page_files(cf, tmp_path):
    out = cf.save(tmp_path / "case")
    assert set(PAGE_FILES.values()) <= set(REPORT_FILES)
    with Image.open(out / PAGE_FILES["film"]) as im:
        assert im.mode == "L" and im.size == (32, 32)
        assert np.array_equal(np.asarray(im), (cf.input[0] * 255).round().byte().numpy())
    with Image.open(out / PAGE_FILES["change"]) as im:
        assert im.mode == "RGBA" and im.size == (32, 32)
        change = np.asarray(im)
    moved = (cf.counterfactual - cf.input)[0].abs().numpy() > 2 / 255
    assert change[..., 3][~moved].max() == 0  # see-through where the film did not change
    assert change[..., 3][moved].min() > 0
    with Image.open(out / PAGE_FILES["region"]) as im:
        assert im.mode == "RGBA" and im.size[0] >= 448 and im.size[0] % 32 == 0
        region = np.asarray(im)
    s = region.shape[0] // 32
    line = region[..., 3] == 255
    r0, r1, c0, c1 = RegionClassifier().regions[0]  # the box saliency's region of finding0
    assert line.any() and not line[:r0 * s - 2].any() and not line[r1 * s + 2:].any()
    assert not line[:, :c0 * s - 2].any() and not line[:, c1 * s + 2:].any()
    assert not line[(r0 + 2) * s:(r1 - 2) * s, (c0 + 2) * s:(c1 - 2) * s].any()  # an outline, not a fill


def test_status_in_words_old_and_new_names():
    assert status_words("stopped-early", 0.5) == status_words("stopped", 0.5) == "stopped once p < 50 %"
    assert status_words("ran-all-steps") == status_words("completed") == "used all steps"
    assert "points of their start" in status_words("stopped-early", 0.5, 0.1)
    assert "NaN" in status_words("nonfinite")


def test_figures_do_not_import_result():
    """One direction only: xcf.result draws with xcf.figures, which knows nothing of it."""
    src = Path(xcf.__file__).with_name("figures.py").read_text()
    names = set()
    for node in ast.walk(ast.parse(src)):
        if isinstance(node, ast.ImportFrom):
            names.add(f"{'.' * node.level}{node.module or ''}")
            names.update(f"{'.' * node.level}{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
    assert not any(n.endswith("result") or n.startswith(("xcf", ".")) for n in names), names
