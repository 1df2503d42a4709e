"""The local-fill method and the inpainter: analytic cases with known answers, and the training."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _analytic import BoxSaliency, IdentityLatent, RegionClassifier, region_image
from PIL import Image
from torch import Tensor, nn

import xcf
from xcf.errors import ConfigError
from xcf.methods import Fill, LocalFill, Region, StopRule
from xcf.metrics import dilate


class ConstantInpainter(xcf.LatentModel):
    """Fills every hole with one grey value; its latent is that value per film (``(B, 1, 1, 1)``),
    so a search in it changes the fill's brightness."""

    def __init__(self, value: float = 0.3, input_size: int = 32) -> None:
        super().__init__()
        self.input_size = input_size
        self.value = value
        self.calls: list[Tensor] = []

    def encode_masked(self, x: Tensor, hole: Tensor) -> xcf.Latent:
        self.calls.append(hole.detach().clone())
        return xcf.Latent(torch.full((x.shape[0], 1, 1, 1), self.value))

    def decode(self, latent: xcf.Latent) -> Tensor:
        return latent.z.expand(-1, 1, self.input_size, self.input_size)

    def encode(self, x: Tensor) -> xcf.Latent:
        return self.encode_masked(x, torch.zeros_like(x))

    def inpaint(self, x: Tensor, hole: Tensor) -> Tensor:
        return self.decode(self.encode_masked(x, hole))


def _fill(**changes) -> LocalFill:
    m = LocalFill("fill-test", region=Region("gradcam++", (0.5,)), stop=StopRule(0.5), steps=0,
                  fill=Fill(dilate=0, feather=0.0))
    return m.replace(**changes) if changes else m


def _explain(method, latent, x=None, target=0):
    ex = xcf.Explainer(classifier=RegionClassifier(), latent=latent, saliency=BoxSaliency(), method=method)
    return ex.explain(region_image() if x is None else x, target)[0]


def test_the_fill_replaces_the_region_and_nothing_else():
    x = region_image()
    cf = _explain(_fill(), ConstantInpainter(0.3), x)
    box = torch.zeros(1, 32, 32, dtype=torch.bool)
    box[:, 8:16, 8:16] = True
    assert torch.equal(cf.mask, box)
    assert torch.allclose(cf.counterfactual[box], torch.tensor(0.3))
    assert torch.equal(cf.counterfactual[~box], x[0][~box])  # exactly the film outside
    assert cf.p_counterfactual < 0.5 and cf.status == "stopped-early" and cf.steps == 0
    assert cf.config["method"] == "fill-test" and cf.config["fill.dilate"] == 0


def test_the_region_grows_by_dilate_and_the_hole_the_inpainter_sees_is_that_region():
    lat = ConstantInpainter(0.3)
    cf = _explain(_fill(fill=Fill(dilate=2, feather=0.0)), lat)
    box = torch.zeros(1, 1, 32, 32, dtype=torch.bool)
    box[..., 8:16, 8:16] = True
    grown = dilate(box, 2, "disk")
    assert torch.equal(cf.mask, grown[0])
    assert int(cf.mask.sum()) == 8 * 8 + 4 * (8 * 2) + 4 * 1  # the box, 2 px each side, round corners
    assert torch.equal(lat.calls[-1].bool(), grown)  # the inpainter was asked to fill that region


class HalfSaliency(xcf.SaliencyMethod):
    """1 on the left half of finding 0's box, 0.3 on its right half."""

    def __call__(self, classifier, x, targets):
        out = torch.zeros_like(x)
        out[:, :, 8:16, 8:12] = 1.0
        out[:, :, 8:16, 12:16] = 0.3
        return out


@pytest.mark.parametrize(("stop", "kept"), [(0.05, 64), (1e-6, 32)])
def test_a_film_keeps_the_first_level_that_meets_the_whole_rule_else_the_first_flip(stop, kept):
    """A fill of 0.1 on half the finding flips it (p 0.27) but not below 0.05; the whole finding
    goes below 0.05 at the next level. With stop 0.05 the film keeps the larger region; with a stop
    no level meets, it keeps the first region below the decision threshold."""
    method = _fill(region=Region("gradcam++", (0.5, 0.25)), stop=StopRule(stop))
    ex = xcf.Explainer(classifier=RegionClassifier(), latent=ConstantInpainter(0.1), saliency=HalfSaliency(),
                       method=method)
    cf = ex.explain(region_image(), 0)[0]
    assert int(cf.mask.sum()) == kept and cf.p_counterfactual < 0.5
    assert cf.status == ("stopped-early" if kept == 64 else "ran-all-steps")


def test_a_fill_that_does_not_flip_grows_the_region_level_by_level():
    """Saliency 1 on the left half of the finding, 0.3 on the right: at level 0.5 only the left half
    is filled (the mean stays above 0.5), at level 0.25 all of it."""
    lat = ConstantInpainter(0.3)
    method = _fill(region=Region("gradcam++", (0.5, 0.25)))
    ex = xcf.Explainer(classifier=RegionClassifier(), latent=lat, saliency=HalfSaliency(), method=method)
    cf = ex.explain(region_image(), 0)[0]
    assert [int(h.sum()) for h in lat.calls[1:]] == [32, 64]  # (calls[0]: the explainer's encode)
    assert int(cf.mask.sum()) == 64 and cf.p_counterfactual < 0.5


def test_a_search_from_the_fill_moves_only_the_inpainters_latent_inside_the_region():
    """A fill of 0.62 leaves the finding (logit 20 * (0.62 - 0.5) > 0); with steps the inpainter's
    latent (the fill's grey) is searched down until the classifier flips."""
    x = region_image()
    no_steps = _explain(_fill(), ConstantInpainter(0.62), x)
    assert no_steps.p_counterfactual > 0.5 and no_steps.status == "ran-all-steps"
    cf = _explain(_fill(steps=200, lr=0.01), ConstantInpainter(0.62), x)
    box = cf.mask
    assert cf.p_counterfactual < 0.5 and cf.status == "stopped-early" and 0 < cf.steps < 200
    inside = cf.counterfactual[box]
    assert torch.allclose(inside, inside[0].expand_as(inside)) and float(inside[0]) < 0.5
    assert torch.equal(cf.counterfactual[~box], x[0][~box])


def test_a_latent_model_without_inpaint_is_refused_in_one_line():
    with pytest.raises(ConfigError, match=r"needs an inpainter .* got .*IdentityLatent") as e:
        _explain(_fill(), IdentityLatent())
    assert "\n" not in str(e.value)


def test_a_pack_without_an_inpainter_says_how_to_train_one(tmp_path, monkeypatch):
    from xcf.packs import load_pack

    pack = load_pack("phantom")
    monkeypatch.setitem(pack.entry, "inpainter", None)
    with pytest.raises(ConfigError, match="needs an inpainter and pack 'phantom' has none; train one"):
        xcf.Explainer(pack=pack, method="local-fill")


def test_the_default_fills_where_there_is_an_inpainter_and_searches_where_there_is_none(monkeypatch):
    """No method named: ``local-fill-in-mask`` with the pack's inpainter (or an inpainter given as
    the latent model), ``local-in-mask`` with a pack or a latent model without one; the method the
    explanation records is the one that ran."""
    from xcf.packs import load_pack

    assert xcf.Explainer(pack="phantom").method.name == "local-fill-in-mask"
    assert callable(getattr(xcf.Explainer(pack="phantom").latent, "inpaint", None))
    ex = xcf.Explainer(classifier=RegionClassifier(), latent=ConstantInpainter(0.3), saliency=BoxSaliency())
    assert ex.method == xcf.get_method("local-fill-in-mask")
    cf = ex.explain(region_image(), 0)[0]
    assert cf.config["method"] == "local-fill-in-mask" and cf.p_counterfactual < 0.5
    assert xcf.Explainer(classifier=RegionClassifier(), latent=IdentityLatent()).method.name == "local-in-mask"

    class InpaintOnly(IdentityLatent):  # inpaint() but no encode_masked(): local-fill-in-mask cannot use it
        def inpaint(self, x, hole):
            return x

    assert not xcf.get_method("local-fill-in-mask").can_use(InpaintOnly())
    assert xcf.get_method("local-fill-in-mask").can_use(ConstantInpainter(0.3))
    assert xcf.Explainer(classifier=RegionClassifier(), latent=InpaintOnly()).method.name == "local-in-mask"
    pack = load_pack("phantom")
    monkeypatch.setitem(pack.entry, "inpainter", None)
    plain = xcf.Explainer(pack=pack, steps=3)
    assert plain.method == xcf.get_method("local-in-mask").replace(steps=3)
    assert plain.latent is pack.latent


def test_the_default_keeps_every_change_inside_the_seeds_mask():
    """``local-fill-in-mask``: the regions of ``local-fill`` without its growth or its Grad-CAM++
    fallback, so the fill's soft edge ends at the mask's edge."""
    m = xcf.get_method("local-fill-in-mask")
    lf = xcf.get_method("local-fill")
    assert isinstance(m, LocalFill) and m.region.saliency == lf.region.saliency == "saliency-in-gradcam++"
    assert m.region.fallback is None and lf.region.fallback == "gradcam++"
    assert m.fill.dilate == 0 and m.fill.feather == 2.0 and m.stop == lf.stop and m.repair and m.steps == lf.steps


def test_local_fill_is_registered_with_its_parts():
    m = xcf.get_method("local-fill")
    assert isinstance(m, LocalFill) and m.latent_role == "inpainter" and m.steps == 100
    assert m.settings()["fill.dilate"] == 4 and m.region.fallback == "gradcam++" and m.repair is True
    with pytest.raises(ConfigError, match="fill dilate must be an integer"):
        Fill(dilate=-1)
    with pytest.raises(ConfigError, match="local-fill repair must be true or false, got 'yes'"):
        m.replace(repair="yes")


# -- the inpainter -------------------------------------------------------------------------------

def test_random_holes_are_seeded_binary_blobs():
    from xcf_autoencoders import random_holes

    a = random_holes(6, 64, torch.Generator().manual_seed(3))
    b = random_holes(6, 64, torch.Generator().manual_seed(3))
    assert torch.equal(a, b) and a.shape == (6, 1, 64, 64)
    assert set(a.unique().tolist()) <= {0.0, 1.0}
    share = a.mean(dim=(1, 2, 3))
    assert bool((share > 0).all()) and bool((share < 0.7).all())


def test_the_inpainter_keeps_no_trace_of_whats_in_the_hole():
    """What the network sees of the film never depends on the pixels inside the hole."""
    from xcf_autoencoders import InpaintNet

    torch.manual_seed(0)
    net = InpaintNet(input_size=32, widths=(8, 16), scale=1).eval()
    hole = torch.zeros(1, 1, 32, 32)
    hole[..., 8:20, 8:20] = 1
    a = torch.rand(1, 1, 32, 32)
    b = a.clone()
    b[..., 8:20, 8:20] = torch.rand(1, 1, 12, 12)
    with torch.no_grad():
        assert torch.allclose(net.inpaint(a, hole), net.inpaint(b, hole))
        assert not torch.allclose(net.inpaint(a, hole), net.inpaint(a, torch.zeros_like(hole)))


def test_train_inpainter_reads_only_films_without_findings(tmp_path):
    from xcf.cli import main
    from xcf.packs import load_component, read_manifest
    from xcf.train import load_training_data

    root = tmp_path / "data"
    root.mkdir()
    rows = ["path,split,patient_id,sick"]
    rng = np.random.default_rng(0)
    for i in range(40):
        Image.fromarray((rng.uniform(0.2, 0.6, (32, 32)) * 255).astype(np.uint8)).save(root / f"{i}.png")
        rows.append(f"{i}.png,{'test' if i >= 32 else 'train'},p{i},{int(i % 3 == 0)}")
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    data = load_training_data(str(root), size=32, healthy=True, val_fraction=0.25)
    assert float(data.train_y.sum()) == 0 and float(data.val_y.sum()) == 0 and len(data.train_x) > 10
    out = tmp_path / "w"
    assert main(["train", "inpainter", "--data", str(root), "--out", str(out), "--name", "inp", "--size", "32",
                 "--epochs", "1", "--device", "cpu", "--val-fraction", "0.25",
                 "--arch-args", '{"widths": [8, 16], "scale": 1}']) == 0
    _, manifest = read_manifest(out)
    entry = manifest["weights"]["inp"]
    assert entry["kind"] == "latent" and entry["component"] == "inpaint-unet"
    assert set(entry["metrics"]["val"]) == {"mae_in_hole", "psnr_in_hole_db", "hole_share"}
    assert "films without findings only" in entry["data"]["description"]
    net = load_component("inp", out)
    assert isinstance(net, nn.Module) and callable(net.inpaint)


def test_the_fills_change_is_zero_where_the_fill_agrees_with_the_film_and_kept_to_the_region():
    torch.manual_seed(0)
    x = torch.rand(2, 1, 16, 16)
    m = torch.zeros_like(x)
    m[..., 4:12, 4:12] = 1
    for fill in (Fill(), Fill(shrink=0.05), Fill(one_sign=True), Fill(detail=(2.0,))):
        assert torch.equal(fill.change(x, x, m, fill.detail[0]), torch.zeros_like(x))  # nothing to change
    darker = x - 0.2 * m
    d = Fill().change(darker, x, m)
    assert torch.allclose(d, -0.2 * m) and bool((d[m == 0] == 0).all())
    assert torch.allclose(Fill(shrink=0.05).change(darker, x, m), -0.15 * m)  # |d| - shrink, same sign


def test_one_sign_keeps_the_fills_main_direction_and_detail_keeps_the_films_fine_structure():
    x = torch.full((1, 1, 16, 16), 0.5)
    m = torch.ones_like(x)
    fill = x.clone()
    fill[..., :, :12] -= 0.3  # mostly darker ...
    fill[..., :, 12:] += 0.1  # ... a strip brighter
    d = Fill(one_sign=True).change(fill, x, m)
    assert bool((d <= 0).all()) and float(d[..., :, :12].mean()) == pytest.approx(-0.3)
    # detail: the change is the fill's smooth difference; a film's fine pattern survives the fill
    fine = x + 0.05 * (torch.arange(16) % 2).float()  # a 1-px stripe pattern
    flat = torch.full_like(x, 0.4)  # a fill that would erase it
    cf = fine + Fill().change(flat, fine, m, detail=2.0)
    stripes = (cf[..., 1::2] - cf[..., 0::2])[..., 4:-4, 2:-2]
    assert float(stripes.mean()) == pytest.approx(0.05, abs=0.01)
    assert float((fine + Fill().change(flat, fine, m)).std()) == pytest.approx(0.0, abs=1e-6)


# -- repair: a fill that flips the target but raises another finding ------------------------------

class OpacityClassifier(RegionClassifier):
    """Finding 0 as in RegionClassifier (bright box: present); finding 1 reads the same box as an
    opacity when it is darker than ``dark`` (``gain * (dark - mean)``): a fill too dark takes
    finding 0 away and raises finding 1."""

    def __init__(self, dark: float) -> None:
        super().__init__()
        self.dark = dark

    def forward(self, x: Tensor) -> Tensor:
        m = x[:, 0, 8:16, 8:16].mean(dim=(1, 2))
        return self.gain * torch.stack([m - 0.5, self.dark - m], dim=1)


def _repair_case(dark: float, **changes):
    method = _fill(stop=StopRule(0.05, off_target=0.1), steps=60, lr=0.01, **changes)
    ex = xcf.Explainer(classifier=OpacityClassifier(dark), latent=ConstantInpainter(0.0), saliency=BoxSaliency(),
                       method=method)
    return ex.explain(region_image(), 0)[0]


def test_repair_searches_a_fill_that_raised_another_finding_until_the_whole_rule_is_met():
    """The fill (grey 0) flips finding 0 but finding 1 goes from ~0 to 0.95. Searched from the fill,
    with the other findings held to the input's probabilities (not the fill's), the grey rises into
    the window where finding 0 stays below 0.05 and finding 1 is back within 0.1: grey in
    (0.26, 0.35)."""
    plain = _repair_case(0.15, repair=False)
    assert plain.p_counterfactual < 0.05 and plain.probs_counterfactual[1] > 0.9 and plain.steps == 0
    assert plain.status == "ran-all-steps"  # flipped, but not the whole rule
    cf = _repair_case(0.15)
    grey = float(cf.counterfactual[cf.mask][0])
    assert cf.status == "stopped-early" and 0 < cf.steps <= 60
    assert cf.p_counterfactual < 0.05 and abs(float(cf.probs_counterfactual[1] - cf.probs_input[1])) <= 0.1
    assert 0.26 < grey < 0.354
    assert torch.equal(cf.mask, plain.mask)  # searched in the region the film kept


def test_repair_keeps_the_fill_where_no_search_meets_the_rule_and_counts_its_steps():
    """Finding 1 reads any grey that takes finding 0 below 0.05 as an opacity: no search can meet
    the rule, so the film keeps its fill (flipped), and the steps the searches spent are counted."""
    plain = _repair_case(0.6, repair=False)
    cf = _repair_case(0.6)
    assert torch.equal(cf.counterfactual, plain.counterfactual) and cf.status == "ran-all-steps"
    assert cf.steps == 2 * 60  # in the kept region, then in the largest: both ran every step
    assert cf.p_counterfactual < 0.5


class EchoClassifier(RegionClassifier):
    """Finding 1 is read from finding 0's own box (``gain * (mean - 0.6)``): a reading the finding
    itself causes, as a consolidation also read as a nodule."""

    def forward(self, x: Tensor) -> Tensor:
        m = x[:, 0, 8:16, 8:16].mean(dim=(1, 2))
        return self.gain * torch.stack([m - 0.5, m - 0.6], dim=1)


def test_repair_lets_a_reading_the_finding_caused_fall_with_it():
    """The fill (grey 0) takes finding 0 away and finding 1 with it (0.98 -> 0), as the true
    counterfactual would. That is no off-target rise: the film keeps its fill, and no search paints
    finding 1 back."""
    method = _fill(stop=StopRule(0.05, off_target=0.1), steps=60, lr=0.01)
    ex = xcf.Explainer(classifier=EchoClassifier(), latent=ConstantInpainter(0.0), saliency=BoxSaliency(), method=method)
    cf = ex.explain(region_image(), 0)[0]
    assert cf.probs_input[1] > 0.95 and cf.probs_counterfactual[1] < 0.01 and cf.p_counterfactual < 0.05
    assert torch.all(cf.counterfactual[cf.mask] == 0.0) and cf.steps == 0 and cf.status == "stopped-early"


def test_the_step_sentence_of_a_fill_method_says_a_level_costs_no_updates():
    """Reports (demo page, dataset page) say what ``steps`` counts; for a fill method a region level
    is a fill, not a budget of updates, and only the searches count."""
    from xcf.report import steps_sentence

    s = steps_sentence(xcf.get_method("local-fill-in-mask").settings())
    assert s.startswith("Optimizer updates: none where the fill of a region (4 levels, saliency above 0.5, 0.35")
    assert "up to 100" in s and "gradcam++" not in s and "800" not in s
    assert "then gradcam++'s regions" in steps_sentence(xcf.get_method("local-fill").settings())
    no_repair = steps_sentence(xcf.get_method("local-fill").replace(repair=False).settings())
    assert "misses the rest" not in no_repair and no_repair.endswith("for up to 100.")
    ex = steps_sentence(xcf.get_method("local-exemplar").settings())
    assert ex.startswith("No optimizer updates") and "8 closest films" in ex
    assert "a budget of 200" in steps_sentence(xcf.get_method("local-in-mask").settings())
