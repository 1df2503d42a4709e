"""Blending by construction and adaptive regions, on analytic cases (identity latent, known region)."""

from __future__ import annotations

import pytest
import torch
from _analytic import BoxSaliency, IdentityLatent, RegionClassifier, region_image

import xcf
from xcf.explainer import feather_mask


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
    ex = xcf.Explainer(classifier=RegionClassifier(gain=8.0), latent=NoisyLatent(),
                       saliency=GradedSaliency(), config=xcf.ExplainConfig(**cfg))
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
    with pytest.raises(xcf.errors.ConfigError, match="residual"):
        xcf.ExplainConfig.build(blend="sideways")


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
    with pytest.raises(xcf.errors.ConfigError, match="level_steps"):
        xcf.ExplainConfig.build(level_steps=0)


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


def test_level_lr_scale_grows_the_learning_rate_level_by_level(monkeypatch):
    import xcf.explainer as explainer_mod

    lrs = []
    real = explainer_mod.optimize_latent

    def spy(*args, **kwargs):
        lrs.append(args[6].lr)  # the level's config
        return real(*args, **kwargs)

    monkeypatch.setattr(explainer_mod, "optimize_latent", spy)
    x = region_image(value=0.95)  # does not flip in 2 steps at any level: every level runs
    common = dict(steps=2, lr=0.05, blend="input", region_thresholds=(0.5, 0.3, 0.1))
    _explain(x, **common)
    assert lrs == [0.05, 0.05, 0.05]
    lrs.clear()
    grown = _explain(x, level_lr_scale=2.0, **common)
    assert lrs == pytest.approx([0.05, 0.1, 0.2])
    assert grown.metrics["region_threshold"] == pytest.approx(0.1)
    with pytest.raises(xcf.errors.ConfigError, match="level_lr_scale"):
        xcf.ExplainConfig.build(level_lr_scale=0)


def test_logit_loss_pushes_the_target_past_its_margin_and_no_further():
    # gain 20 at value 0.9: logit 8, p = 0.9997. The logit hinge pushes until logit < -margin and
    # then stops pulling, where the seed's MSE keeps pulling p towards 0: a smaller change
    x = region_image(value=0.9)

    def run(**cfg):
        ex = xcf.Explainer(classifier=RegionClassifier(gain=20.0), latent=IdentityLatent(),
                           saliency=BoxSaliency(), config=xcf.ExplainConfig(steps=60, lr=0.02, **cfg))
        return ex.explain(x, "finding0")[0]

    cf = run(classification_loss="logit", logit_margin=1.0)
    assert cf.p_counterfactual < torch.sigmoid(torch.tensor(-0.9)).item()
    assert cf.p_counterfactual > torch.sigmoid(torch.tensor(-4.0)).item()
    assert abs(cf.probs_counterfactual[1] - cf.probs_input[1]) < 1e-3  # the other finding holds
    mse = run()
    assert mse.p_counterfactual < cf.p_counterfactual
    assert (mse.counterfactual - x[0]).abs().sum() > (cf.counterfactual - x[0]).abs().sum()


class WideSaliency(xcf.SaliencyMethod):
    """Saliency 1 on the target region grown by 3 pixels: the mask is larger than what matters."""

    def __call__(self, classifier, x, targets):
        out = torch.zeros_like(x)
        for b, t in enumerate(targets.tolist()):
            r0, r1, c0, c1 = classifier.regions[t]
            out[b, 0, r0 - 3:r1 + 3, c0 - 3:c1 + 3] = 1.0
        return out


def test_prune_keeps_the_smallest_valid_part_of_the_change():
    x = region_image(value=0.62)

    def run(**cfg):
        ex = xcf.Explainer(classifier=RegionClassifier(gain=8.0), latent=IdentityLatent(),
                           saliency=WideSaliency(), config=xcf.ExplainConfig(
                               steps=150, blend="residual", **cfg))
        return ex.explain(x, "finding0")[0]

    full = run()
    pruned = run(prune_shares=(0.3, 0.6, 0.95))
    assert full.p_counterfactual < 0.5 and pruned.p_counterfactual < 0.5
    assert any(pruned.metrics["pruned_share"] == pytest.approx(q) for q in (0.3, 0.6, 0.95))
    # the change lies on the 8x8 region the classifier reads; the mask was 14x14
    assert full.mask.sum() == 14 * 14 and pruned.mask.sum() <= 8 * 8
    # nothing changes outside the kept pixels (no feathering here); inside, the change is the full one
    keep = pruned.mask
    assert torch.equal(pruned.counterfactual[~keep], pruned.reconstruction[~keep])
    assert torch.allclose(pruned.counterfactual[keep], full.counterfactual[keep])
    # a share too small to stay valid is skipped, not forced: 1 % of the change does not flip it
    tiny = run(prune_shares=(0.01, 0.999))
    assert tiny.metrics["pruned_share"] == pytest.approx(0.999) and tiny.p_counterfactual < 0.5
    assert "pruned_share" not in full.metrics
    with pytest.raises(xcf.errors.ConfigError, match="prune_shares"):
        xcf.ExplainConfig.build(prune_shares=(0.0, 1.5))


def test_config_names_the_region_saliency_and_an_explicit_one_wins():
    """``ExplainConfig.saliency`` (a preset's region source) is used when the Explainer is built
    without a saliency method; an explicit argument wins; the seed's settings keep Grad-CAM++."""
    from xcf.registry import component_name

    clf, lat = RegionClassifier(gain=8.0), NoisyLatent()
    seed = xcf.Explainer(classifier=clf, latent=lat, config="seed")
    assert component_name(seed.saliency) == "gradcam++"
    assert component_name(xcf.Explainer(classifier=clf, latent=lat,
                                        config=xcf.ExplainConfig()).saliency) == "gradcam++"
    local = xcf.Explainer(classifier=clf, latent=lat, config="local")
    assert xcf.ExplainConfig.preset("local").saliency == "saliency"
    assert component_name(local.saliency) == "saliency"
    assert local.components()["saliency"] == "saliency"
    explicit = xcf.Explainer(classifier=clf, latent=lat, config="local", saliency="gradcam")
    assert component_name(explicit.saliency) == "gradcam"
    own = GradedSaliency()
    assert xcf.Explainer(classifier=clf, latent=lat, config="local", saliency=own).saliency is own
    with pytest.raises(xcf.errors.UnknownComponentError, match="unknown saliency method 'nope'"):
        xcf.Explainer(classifier=clf, latent=lat, config={"saliency": "nope"})
    # the region really comes from the named map: GradedSaliency's 0.9 strip is the first level
    cf = xcf.Explainer(classifier=clf, latent=lat, saliency=own,
                       config=xcf.ExplainConfig(blend="residual")).explain(region_image(), "finding0")[0]
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
    plain = xcf.Explainer(classifier=clf, latent=NoisyLatent(), saliency=WrongForFinding0(),
                          config=xcf.ExplainConfig(**cfg))
    stuck, ok = plain.explain(x, ["finding0", "finding1"])
    assert stuck.p_counterfactual >= 0.5 and ok.p_counterfactual < 0.5
    assert "region_fallback" not in stuck.metrics
    ex = xcf.Explainer(classifier=clf, latent=NoisyLatent(), saliency=WrongForFinding0(),
                       config=xcf.ExplainConfig(**cfg, region_fallback="saliency"))
    a, b = ex.explain(x, ["finding0", "finding1"])
    assert a.p_counterfactual < 0.5 and a.metrics["region_fallback"] == 1.0
    r0, r1, c0, c1 = clf.regions[0]
    assert a.mask[0, r0:r1, c0:c1].any() and not a.mask[0, 24:30, 24:30].all()
    assert a.saliency[0, r0:r1, c0:c1].mean() > a.saliency[0, 24:30, 24:30].mean()
    assert b.metrics["region_fallback"] == 0.0 and torch.equal(b.counterfactual, ok.counterfactual)
    with pytest.raises(xcf.errors.UnknownComponentError, match="nope"):
        xcf.Explainer(classifier=clf, latent=NoisyLatent(), config={"region_fallback": "nope"})


def test_no_config_means_the_default_preset_and_explainconfig_stays_the_seeds():
    """The Explainer's default is ``preset(DEFAULT_PRESET)`` ("local-in-mask": the gradient regions
    inside the seed's Grad-CAM++ mask, the other findings kept near their start); ``ExplainConfig()`` is the seed's settings, the reference;
    overrides apply on top of the default preset."""
    from xcf.config import DEFAULT_PRESET, PRESETS
    from xcf.registry import component_name

    assert DEFAULT_PRESET == "local-in-mask" and DEFAULT_PRESET in PRESETS
    assert xcf.ExplainConfig() == xcf.ExplainConfig.preset("seed")
    assert xcf.ExplainConfig().lr == 0.1 and xcf.ExplainConfig().saliency is None
    clf, lat = RegionClassifier(gain=8.0), NoisyLatent()
    ex = xcf.Explainer(classifier=clf, latent=lat)
    assert ex.config == xcf.ExplainConfig.preset(DEFAULT_PRESET)
    assert component_name(ex.saliency) == "saliency-in-gradcam++"
    tuned = xcf.Explainer(classifier=clf, latent=lat, steps=7)
    assert tuned.config == xcf.ExplainConfig.preset(DEFAULT_PRESET, steps=7)
    # the preset differs from "local" only in where its regions come from
    diff = {k for k in PRESETS["local"] | PRESETS[DEFAULT_PRESET]
            if PRESETS["local"].get(k) != PRESETS[DEFAULT_PRESET].get(k)}
    assert diff == {"saliency", "stop_off_target"}
