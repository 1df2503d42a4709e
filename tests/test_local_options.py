"""Blending by construction and adaptive regions, on analytic cases (identity latent, known region)."""

from __future__ import annotations

import pytest
import torch
from _analytic import BoxSaliency, IdentityLatent, RegionClassifier, method_with, region_image

import xcf
from xcf.errors import ConfigError, UnknownComponentError
from xcf.explainer import feather_mask
from xcf.methods import Blend, Region


class GradedSaliency(xcf.SaliencyMethod):
    """Saliency 0.9 on the left quarter of the target region, 0.4 on the rest of it, 0 elsewhere."""

    def __call__(self, classifier, x, targets):
        out = torch.zeros_like(x)
        for b, t in enumerate(targets.tolist()):
            r0, r1, c0, c1 = classifier.regions[t]
            mid = c0 + (c1 - c0) // 4
            out[b, 0, r0:r1, c0:mid] = 0.9
            out[b, 0, r0:r1, mid:c1] = 0.4
        return out


class NoisyLatent(IdentityLatent):
    """Identity plus a fixed reconstruction error everywhere (like a real autoencoder's)."""

    def decode(self, latent):
        return (latent.z + 0.05 * torch.sin(torch.arange(32.0) * 1.7)).clamp(0, 1)


def _explain(x, **cfg):
    """The seed's method with settings named as :func:`_analytic.method_with` names them."""
    method, config = method_with("seed", **cfg)
    ex = xcf.Explainer(classifier=RegionClassifier(gain=8.0), latent=NoisyLatent(),
                       saliency=GradedSaliency(), method=method, config=config)
    return ex.explain(x, "finding0")[0]


def test_blend_input_changes_nothing_outside_the_mask():
    x = region_image()
    cf = _explain(x, steps=150, blend="input")
    outside = ~cf.mask
    # outside the mask the counterfactual *is* the input: no autoencoder error, no optimizer change
    assert torch.equal(cf.counterfactual[outside], x[0][outside])
    assert torch.equal(cf.reconstruction[outside], x[0][outside])
    # the seed's objective without blending changes pixels outside (the reconstruction error differs)
    seed = _explain(x, steps=150)
    assert (seed.counterfactual - x[0])[outside].abs().max() > 0.01


def test_blend_reconstruction_keeps_reconstruction_outside():
    cf = _explain(region_image(), steps=50, blend="reconstruction")
    outside = ~cf.mask
    assert torch.equal(cf.counterfactual[outside], cf.reconstruction[outside])


def test_blend_residual_starts_at_the_input_and_adds_only_the_decoders_change():
    x = region_image(value=0.62)
    cf = _explain(x, steps=150, blend="residual")
    outside = ~cf.mask
    # the start (shown as the reconstruction) is the input itself, to rounding: the autoencoder's
    # error cancels, inside the mask too
    assert torch.allclose(cf.reconstruction, x[0], atol=1e-6)
    assert torch.equal(cf.counterfactual[outside], x[0][outside])
    # inside, the change is exactly the decoder's change D(z) - D(z0); the finding is removed
    assert cf.p_input > 0.5 and cf.p_counterfactual < 0.5
    inside = (cf.counterfactual - x[0])[cf.mask]
    assert inside.abs().max() > 0.05
    # an unknown blend is a one-line config error naming the valid ones
    with pytest.raises(ConfigError, match="residual"):
        Blend("sideways")
    # the blend is the method's: ExplainConfig says where it lives
    with pytest.raises(ConfigError, match="Method.blend"):
        xcf.ExplainConfig.build(blend="residual")


def test_feathered_blend_leaks_only_near_the_edge():
    m = torch.zeros(1, 1, 32, 32)
    m[..., 10:20, 10:20] = 1
    f = feather_mask(m, 2.0)
    assert f.shape == m.shape and f.min() >= 0 and f.max() <= 1
    assert torch.all(f[m.bool()] == 1) and f[..., 0, 0] == 0
    assert 0 < f[..., 15, 21] < 1  # soft edge just outside
    assert torch.equal(feather_mask(m, 0.0), m)


def test_region_grows_only_until_the_finding_flips():
    x = region_image(value=0.95)
    # the strong quarter alone (saliency 0.9 > 0.5) cannot bring the region's mean below 0.5, even
    # at black: with blending it cannot flip; growing to level 0.3 includes the rest (0.4)
    one = _explain(x, steps=40, blend="input")
    grown = _explain(x, steps=40, blend="input", region_thresholds=(0.5, 0.3))
    assert one.p_counterfactual >= 0.5
    assert grown.p_counterfactual < 0.5
    assert grown.metrics["region_threshold"] == pytest.approx(0.3)
    assert grown.mask.sum() == 4 * one.mask.sum()
    assert grown.steps > 40  # both levels' steps are counted
    # a case that flips at the first level stays there
    easy = _explain(region_image(value=0.62), steps=80, blend="input", region_thresholds=(0.5, 0.3))
    assert easy.p_counterfactual < 0.5 and easy.metrics["region_threshold"] == pytest.approx(0.5)
    # a stop probability below 0.5 is a goal: the quarter alone reaches p 0.43 at best, so the
    # region grows until the whole region takes p below 0.05
    far = _explain(region_image(value=0.62), steps=80, blend="input", region_thresholds=(0.5, 0.3),
                   stop_probability=0.05)
    assert far.p_counterfactual < 0.05 and far.metrics["region_threshold"] == pytest.approx(0.3)


def test_level_steps_budget_every_level_but_the_last():
    x = region_image(value=0.95)  # cannot flip at level 0.5 (see above); flips at 0.3
    full = _explain(x, steps=40, blend="input", region_thresholds=(0.5, 0.3))
    short = _explain(x, steps=40, blend="input", region_thresholds=(0.5, 0.3), level_steps=5)
    assert short.p_counterfactual < 0.5 and short.metrics["region_threshold"] == pytest.approx(0.3)
    # the first level stopped after its budget of 5, the last ran as long as the full search's
    assert full.steps - short.steps == 40 - 5
    # each level starts afresh: the last level's search is the same in both
    assert torch.allclose(short.counterfactual, full.counterfactual, atol=1e-6)
    with pytest.raises(ConfigError, match="level_steps"):
        Region(level_steps=0)


def test_level_warm_start_continues_the_larger_region_from_where_the_smaller_ended():
    x = region_image(value=0.95)  # cannot flip at level 0.5 (the strong quarter); flips at 0.3
    common = dict(blend="input", region_thresholds=(0.5, 0.3), level_steps=5, lr=0.05)
    # one step at the last level: cold starts it from the input, warm from level 0.5's end
    cold = _explain(x, steps=1, **common)
    warm = _explain(x, steps=1, level_warm_start=True, **common)
    quarter = _explain(x, steps=1, blend="input").mask  # the 0.5 region
    grown = warm.mask & ~quarter
    assert quarter.any() and grown.any() and torch.equal(warm.mask, cold.mask)
    d_cold, d_warm = ((c.counterfactual - x[0]).abs() for c in (cold, warm))
    # in the quarter, warm carries level 0.5's five steps on; cold shows one step's change
    assert d_warm[quarter].mean() > 3 * d_cold[quarter].mean() > 0
    # in the part the region grew by, both took the same first step (the identity latent's
    # change there was blended away at level 0.5, so it never moved)
    assert torch.allclose(d_warm[grown], d_cold[grown], atol=1e-6)
    # with early stopping, warm needs fewer steps in all to flip
    stop = dict(common, steps=80, stop_probability=0.5)
    c80, w80 = _explain(x, **stop), _explain(x, level_warm_start=True, **stop)
    assert c80.p_counterfactual < 0.5 and w80.p_counterfactual < 0.5
    assert w80.steps < c80.steps


def test_lr_growth_grows_the_learning_rate_level_by_level(monkeypatch):
    import xcf.optimize as optimize_mod

    lrs = []
    real = optimize_mod.optimize_latent

    def spy(*args, **kwargs):
        lrs.append(kwargs["lr"])  # the level's learning rate
        return real(*args, **kwargs)

    monkeypatch.setattr(optimize_mod, "optimize_latent", spy)
    x = region_image(value=0.95)  # does not flip in 2 steps at any level: every level runs
    common = dict(steps=2, lr=0.05, blend="input", region_thresholds=(0.5, 0.3, 0.1))
    _explain(x, **common)
    assert lrs == [0.05, 0.05, 0.05]
    lrs.clear()
    grown = _explain(x, level_lr_scale=2.0, **common)
    assert lrs == pytest.approx([0.05, 0.1, 0.2])
    assert grown.metrics["region_threshold"] == pytest.approx(0.1)
    with pytest.raises(ConfigError, match="lr_growth"):
        Region(lr_growth=0)


def test_method_names_the_region_saliency_and_an_explicit_one_wins():
    """``Method.region.saliency`` (the method's region source) is used when the Explainer is built
    without a saliency method; an explicit argument wins; the seed's method keeps Grad-CAM++."""
    from xcf.registry import component_name

    clf, lat = RegionClassifier(gain=8.0), NoisyLatent()
    seed = xcf.Explainer(classifier=clf, latent=lat, method="seed")
    assert component_name(seed.saliency) == "gradcam++"
    assert xcf.get_method("seed").region.saliency == "gradcam++"
    local = xcf.Explainer(classifier=clf, latent=lat, method="local")
    assert xcf.get_method("local").region.saliency == "saliency"
    assert component_name(local.saliency) == "saliency"
    assert local.components()["saliency"] == "saliency"
    explicit = xcf.Explainer(classifier=clf, latent=lat, method="local", saliency="gradcam")
    assert component_name(explicit.saliency) == "gradcam"
    own = GradedSaliency()
    assert xcf.Explainer(classifier=clf, latent=lat, method="local", saliency=own).saliency is own
    with pytest.raises(UnknownComponentError, match="unknown saliency method 'nope'"):
        xcf.Explainer(classifier=clf, latent=lat,
                      method=xcf.get_method("seed").replace(region__saliency="nope"))
    # the region really comes from the named map: GradedSaliency's 0.9 strip is the first level
    method, config = method_with("seed", blend="residual")
    cf = xcf.Explainer(classifier=clf, latent=lat, saliency=own, method=method,
                       config=config).explain(region_image(), "finding0")[0]
    r0, r1, c0, c1 = clf.regions[0]
    assert cf.mask[0, r0:r1, c0:c0 + (c1 - c0) // 4].all() and not cf.mask[0, :, c1:].any()


class WrongForFinding0(xcf.SaliencyMethod):
    """Finding 0: a box far from its region (no change there can flip it); others: their region."""

    def __call__(self, classifier, x, targets):
        out = torch.zeros_like(x)
        for b, t in enumerate(targets.tolist()):
            r0, r1, c0, c1 = (24, 30, 24, 30) if t == 0 else classifier.regions[t]
            out[b, 0, r0:r1, c0:c1] = 1.0
        return out


def test_region_fallback_searches_again_in_the_second_methods_regions():
    """Images that do not flip in the first method's regions are searched again in the fallback
    method's (here the input gradient, which finds the classifier's region); images that flipped
    keep their first region; the result shows the map that was used."""
    x = torch.cat([region_image(), region_image()])
    cfg = dict(blend="residual", steps=60, lr=0.05, stop_probability=0.5, region_thresholds=(0.5, 0.2))
    clf = RegionClassifier(gain=8.0)
    method, config = method_with("seed", **cfg)
    plain = xcf.Explainer(classifier=clf, latent=NoisyLatent(), saliency=WrongForFinding0(),
                          method=method, config=config)
    stuck, ok = plain.explain(x, ["finding0", "finding1"])
    assert stuck.p_counterfactual >= 0.5 and ok.p_counterfactual < 0.5
    assert "region_fallback" not in stuck.metrics
    method, config = method_with("seed", **cfg, region_fallback="saliency")
    ex = xcf.Explainer(classifier=clf, latent=NoisyLatent(), saliency=WrongForFinding0(),
                       method=method, config=config)
    a, b = ex.explain(x, ["finding0", "finding1"])
    assert a.p_counterfactual < 0.5 and a.metrics["region_fallback"] == 1.0
    r0, r1, c0, c1 = clf.regions[0]
    assert a.mask[0, r0:r1, c0:c1].any() and not a.mask[0, 24:30, 24:30].all()
    assert a.saliency[0, r0:r1, c0:c1].mean() > a.saliency[0, 24:30, 24:30].mean()
    assert b.metrics["region_fallback"] == 0.0 and torch.equal(b.counterfactual, ok.counterfactual)
    with pytest.raises(UnknownComponentError, match="nope"):
        xcf.Explainer(classifier=clf, latent=NoisyLatent(),
                      method=xcf.get_method("seed").replace(region__fallback="nope"))


def test_no_method_means_the_default_method_and_the_seed_is_named():
    """With a latent model that cannot fill, the Explainer's default is
    :data:`xcf.methods.DEFAULT_METHOD_WITHOUT_INPAINTER` ("local-in-mask": the gradient regions
    inside the seed's Grad-CAM++ mask, the other findings kept near their start); the seed's method
    is asked for by name; overrides apply on top of the default method."""
    import dataclasses

    from xcf.methods import DEFAULT_METHOD, DEFAULT_METHOD_WITHOUT_INPAINTER
    from xcf.registry import component_name

    assert DEFAULT_METHOD == "local-fill-in-mask" and DEFAULT_METHOD in xcf.list_methods()
    assert DEFAULT_METHOD_WITHOUT_INPAINTER == "local-in-mask" and DEFAULT_METHOD_WITHOUT_INPAINTER in xcf.list_methods()
    assert xcf.ExplainConfig.preset("seed").method == "seed"
    clf, lat = RegionClassifier(gain=8.0), NoisyLatent()
    ex = xcf.Explainer(classifier=clf, latent=lat)
    assert ex.method == xcf.get_method(DEFAULT_METHOD_WITHOUT_INPAINTER)
    assert component_name(ex.saliency) == "saliency-in-gradcam++"
    tuned = xcf.Explainer(classifier=clf, latent=lat, steps=7)
    assert tuned.method.name == DEFAULT_METHOD_WITHOUT_INPAINTER and tuned.method.steps == 7
    assert tuned.method == xcf.get_method(DEFAULT_METHOD_WITHOUT_INPAINTER).replace(steps=7)
    # a method asked for by name is never swapped: a fill method without an inpainter is an error
    named = xcf.Explainer(classifier=clf, latent=lat, method=DEFAULT_METHOD, saliency=BoxSaliency())
    assert named.method.name == DEFAULT_METHOD
    with pytest.raises(ConfigError, match="needs an inpainter"):
        named.explain(region_image(), 0)
    # the default differs from "local" only in where its regions come from and when it stops

    def differing(a, b):
        out = set()
        for f in dataclasses.fields(a):
            va, vb = getattr(a, f.name), getattr(b, f.name)
            if dataclasses.is_dataclass(va):
                out |= {f"{f.name}.{k}" for k in differing(va, vb)}
            elif va != vb:
                out.add(f.name)
        return out

    diff = differing(xcf.get_method("local"), xcf.get_method(DEFAULT_METHOD_WITHOUT_INPAINTER))
    assert diff == {"name", "description", "region.saliency", "stop.off_target"}
