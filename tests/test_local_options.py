"""Blending by construction and adaptive regions, on analytic cases (identity latent, known region)."""

from __future__ import annotations

import pytest
import torch
from _analytic import IdentityLatent, RegionClassifier, region_image

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
