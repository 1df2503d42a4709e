"""Baselines: latent-shift (Cohen et al. 2021) on analytic components, and the pixel latent model."""

from __future__ import annotations

import math

import pytest
import torch
from _analytic import BoxSaliency, IdentityLatent, RegionClassifier, region_image
from torch import Tensor, nn

import xcf
from xcf.baselines import RISE_TOLERANCE, latent_shift, shift_schedule
from xcf.errors import ConfigError
from xcf.methods import LineSearch


def _sig_prime(v: float) -> float:
    s = 1 / (1 + math.exp(-v))
    return s * (1 - s)


# -- the schedule -------------------------------------------------------------------------------

def test_schedules():
    geo = shift_schedule(LineSearch(lambda_min=0.1, lambda_max=1000, num=5))
    assert geo == pytest.approx([-0.1, -1, -10, -100, -1000])
    lin = shift_schedule(LineSearch(schedule="linear", lambda_max=10, num=4))
    assert lin == pytest.approx([-2.5, -5, -7.5, -10])
    assert shift_schedule(LineSearch(lambdas=(-1, -4))) == [-1.0, -4.0]
    with pytest.raises(ConfigError, match="lambda_min"):
        shift_schedule(LineSearch(lambda_min=10, lambda_max=1))
    with pytest.raises(ConfigError, match="lambdas"):
        LineSearch(lambdas=(-4, -1))


# -- latent shift on an identity latent + region classifier (known answer) ---------------------

@pytest.mark.parametrize("use_logit", [False, True])
def test_latent_shift_moves_along_gradient_and_crosses(use_logit):
    clf, lat = RegionClassifier(), IdentityLatent()
    x = region_image(1)  # region 0 (rows 8:16, cols 8:16) at 0.8: logit 20 * 0.3 = 6
    cfg = LineSearch(use_logit=use_logit)
    res = latent_shift(clf, lat, x, torch.tensor([0]), cfg)
    # d f / d x: uniform over region 0's 64 pixels, zero elsewhere
    g = 20 / 64 * (1.0 if use_logit else _sig_prime(6.0))
    lambdas = shift_schedule(cfg)
    # the first lambda in the schedule whose shifted image has p < 0.5 (region mean < 0.5)
    k = next(i for i, lam in enumerate(lambdas) if 0.8 + lam * g < 0.5)
    d = res.counterfactual - res.reconstruction
    inside = d[0, 0, 8:16, 8:16]
    torch.testing.assert_close(inside, torch.full_like(inside, lambdas[k] * g), atol=1e-5, rtol=1e-4)
    assert float(d.abs().sum() - inside.abs().sum()) == pytest.approx(0.0, abs=1e-4)  # no change outside
    assert res.status == ["stopped-early"] and int(res.steps[0]) == k + 1
    p_cf = float(res.probs_counterfactual[0, 0])
    assert p_cf < 0.5
    assert p_cf == pytest.approx(1 / (1 + math.exp(-20 * (0.8 + lambdas[k] * g - 0.5))), abs=1e-4)
    # the other finding did not move, and the reported losses are the target probability per decode
    assert float(res.probs_counterfactual[0, 1]) == pytest.approx(float(res.probs_reconstruction[0, 1]))
    assert res.losses.shape == (len(lambdas), 1)
    assert float(res.losses[k, 0]) == pytest.approx(p_cf, abs=1e-5)
    assert torch.isnan(res.losses[k + 1:, 0]).all()
    torch.testing.assert_close(res.latent.z, x + d, atol=1e-5, rtol=1e-5)


def test_latent_shift_per_sample_and_deterministic():
    clf, lat = RegionClassifier(), IdentityLatent()
    x = region_image(3, seed=1)
    x[1, :, 8:16, 8:16] = 0.95  # needs a larger shift than sample 0
    x[2, :, 8:16, 8:16] = 0.3   # already absent: not shifted
    t = torch.tensor([0, 0, 0])
    cfg = LineSearch(use_logit=True)
    res = latent_shift(clf, lat, x, t, cfg)
    assert res.status == ["stopped-early"] * 3
    assert int(res.steps[2]) == 0 and int(res.steps[1]) > int(res.steps[0]) > 0
    torch.testing.assert_close(res.counterfactual[2], x[2])
    again = latent_shift(clf, lat, x, t, cfg)
    assert torch.equal(again.counterfactual, res.counterfactual) and torch.equal(again.steps, res.steps)
    for b in range(3):  # each sample alone gives the same answer
        one = latent_shift(clf, lat, x[b:b + 1], t[b:b + 1], cfg)
        torch.testing.assert_close(one.counterfactual[0], res.counterfactual[b])
        assert int(one.steps[0]) == int(res.steps[b]) and one.status[0] == res.status[b]


class _Valley(xcf.Classifier):
    """logit = 2 + 40 (m - 0.7)^2 with m the mean of the central region: falling then rising as
    m drops from 0.8; never below p = sigmoid(2) = 0.88."""

    labels = ("valley",)
    input_size = 32

    def forward(self, x: Tensor) -> Tensor:
        m = x[:, 0, 8:16, 8:16].mean(dim=(1, 2))
        return (2 + 40 * (m - 0.7) ** 2)[:, None]


def test_latent_shift_stops_when_probability_stops_falling():
    x = region_image(1)
    cfg = LineSearch(use_logit=True, schedule="linear", lambda_max=1.0, num=100)
    res = latent_shift(_Valley(), IdentityLatent(), x, torch.tensor([0]), cfg)
    assert res.status == ["ran-all-steps"]
    assert 0 < int(res.steps[0]) < 100  # gave up early, not at the bound
    m = float(res.counterfactual[0, 0, 8:16, 8:16].mean())
    assert m == pytest.approx(0.7, abs=0.02)  # the lowest point of the valley, not the last decode
    p = float(res.probs_counterfactual[0, 0])
    assert p == pytest.approx(1 / (1 + math.exp(-2)), abs=0.01) and p >= 0.5
    # the decode that rose is counted, and the one before it is the answer
    tried = res.losses[:, 0][~torch.isnan(res.losses[:, 0])]
    assert len(tried) == int(res.steps[0]) and float(tried[-1]) > float(tried[-2]) - RISE_TOLERANCE


def test_latent_shift_gives_up_at_the_bound():
    x = region_image(1)
    cfg = LineSearch(lambdas=(-1e-3, -2e-3, -3e-3))
    res = latent_shift(RegionClassifier(), IdentityLatent(), x, torch.tensor([0]), cfg)
    assert res.status == ["ran-all-steps"] and int(res.steps[0]) == 3
    assert float(res.probs_counterfactual[0, 0]) < float(res.probs_reconstruction[0, 0])


def test_latent_shift_freezes_and_restores_models():
    clf, lat = RegionClassifier(), IdentityLatent()
    clf.train()
    grad = torch.ones(())
    clf.gain.grad = grad
    latent_shift(clf, lat, region_image(1), torch.tensor([0]), LineSearch())
    assert clf.training and clf.gain.requires_grad and clf.gain.grad is grad
    assert torch.equal(clf.gain.grad, torch.ones(()))


class _Tf32Spy(RegionClassifier):
    """Records the TF32 flags each forward pass runs under."""

    def __init__(self):
        super().__init__()
        self.seen: list[tuple[bool, bool]] = []

    def forward(self, x: Tensor) -> Tensor:
        self.seen.append((torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32))
        return super().forward(x)


@pytest.mark.parametrize("before", [(True, False), (True, True), (False, False)])
def test_latent_shift_compares_logits_without_tf32_and_restores_the_flags(before):
    # TF32 puts ~1e-3 of noise on a logit, more than RISE_TOLERANCE: on a GPU the search stopped
    # on noise after 2-3 tiny shifts, so every classifier call of the search runs in full fp32
    old = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = before
    try:
        spy = _Tf32Spy()
        latent_shift(spy, IdentityLatent(), region_image(1), torch.tensor([0]), LineSearch(num=5))
        assert len(spy.seen) >= 2 and set(spy.seen) == {(False, False)}
        assert (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32) == before
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = old


def test_explainer_dispatches_latent_shift():
    clf, lat = RegionClassifier(), IdentityLatent()
    method = xcf.get_method("latent-shift").replace(search__use_logit=True)
    ex = xcf.Explainer(classifier=clf, latent=lat, saliency=BoxSaliency(), method=method)
    cfs = ex.explain(region_image(2), [0, 1])
    for k, cf in enumerate(cfs):
        assert cf.status == "stopped-early" and cf.p_counterfactual < 0.5 and cf.steps > 0
        # no mask in the search, but the change follows the gradient, which lives in the region
        assert cf.metrics["share_in_mask_l1"] == pytest.approx(1.0, abs=1e-4)
        assert cf.target == f"finding{k}"


# -- the pixel latent model ---------------------------------------------------------------------

def test_pixel_model_is_registered_identity_with_straight_through_clamp():
    lat = xcf.create("latent", "pixel", input_size=32)
    assert isinstance(lat, xcf.LatentModel) and lat.input_size == 32
    x = torch.rand(2, 1, 32, 32)
    z = lat.encode(x)
    assert torch.equal(z.z, x) and z.z.data_ptr() != x.data_ptr()
    assert torch.equal(lat.decode(z), x)
    zz = torch.tensor([[-0.5, 0.25], [1.0, 1.75]]).view(1, 1, 2, 2).requires_grad_(True)
    out = lat.decode(xcf.Latent(zz))
    assert torch.equal(out.detach(), torch.tensor([[0.0, 0.25], [1.0, 1.0]]).view(1, 1, 2, 2))
    (g,) = torch.autograd.grad((out * torch.arange(1.0, 5.0).view(1, 1, 2, 2)).sum(), zz)
    assert torch.equal(g, torch.arange(1.0, 5.0).view(1, 1, 2, 2))  # identity gradient, also outside


def test_pixel_baseline_explains_without_reconstruction_error():
    clf = RegionClassifier()
    ex = xcf.Explainer(classifier=clf, latent=xcf.create("latent", "pixel", input_size=32),
                       saliency=BoxSaliency(), method="seed", steps=60, stop_probability=0.5, lr=0.05)
    cf = ex.explain(region_image(1), [0])[0]
    assert torch.equal(cf.reconstruction, cf.input)
    assert cf.metrics["reconstruction_shift"] == 0.0
    assert cf.p_counterfactual < 0.5 and cf.status == "stopped-early"
    assert cf.metrics["share_in_mask_l1"] > 0.99  # the seed's loss kept the change in the region


def test_pixel_model_has_no_parameters_and_moves_devices():
    lat = xcf.create("latent", "pixel")
    assert not list(lat.parameters()) and lat.input_size == 224
    assert isinstance(lat.to("cpu"), nn.Module)


def test_smooth_latent_starts_at_the_image_and_only_draws_smooth_changes():
    lat = xcf.create("latent", "smooth", input_size=32, grid=4)
    assert isinstance(lat, xcf.LatentModel) and not list(lat.parameters())
    x = torch.rand(2, 1, 32, 32)
    z = lat.encode(x)
    assert z.z.shape == (2, 1, 4, 4) and torch.equal(lat.decode(z), x)  # no reconstruction error
    assert torch.equal(lat.decode(z.select([1])), x[1:])
    zz = torch.zeros(1, 1, 4, 4)
    zz[0, 0, 1, 1] = -0.3  # one cell darker: a smooth dip, no pixel-fine texture
    out = lat.decode(xcf.Latent(zz, {"image": torch.full((1, 1, 32, 32), 0.5)}))
    d = out - 0.5
    assert float(d.min()) < -0.2 and float(d.max()) <= 0.05
    assert float((d[..., 1:, :] - d[..., :-1, :]).abs().max()) < 0.06  # neighbours differ little
    with pytest.raises(xcf.errors.ComponentError, match="grid"):
        xcf.create("latent", "smooth", input_size=32, grid=64)
