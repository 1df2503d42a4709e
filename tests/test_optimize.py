"""The optimizer: analytic answers, exact Adam, batching, early stopping, model state."""

from __future__ import annotations

import pytest
import torch
from _analytic import BoxSaliency, IdentityLatent, RegionClassifier, method_with, region_image

import xcf
from xcf.errors import ComponentError
from xcf.methods import StopRule
from xcf.optimize import frozen, target_vector


def _explainer(analytic, **cfg):
    """The seed's method with settings named as :func:`_analytic.method_with` names them."""
    clf, lat, sal = analytic
    method, config = method_with("seed", **cfg)
    return xcf.Explainer(classifier=clf, latent=lat, saliency=sal, locality="masked-l2",
                         method=method, config=config)


def test_analytic_change_stays_inside_mask_and_flips(analytic):
    ex = _explainer(analytic, steps=200)
    x = region_image()
    (cf,) = ex.explain(x, "finding0")
    assert cf.p_input > 0.99
    assert cf.p_counterfactual < 0.5
    d = (cf.counterfactual - cf.reconstruction).abs()[0]
    inside = torch.zeros_like(d, dtype=torch.bool)
    inside[8:16, 8:16] = True
    assert torch.equal(cf.mask[0], inside)
    assert d[inside].sum() > 0
    assert d[~inside].sum() < 1e-3 * d[inside].sum()
    # the other finding keeps its probability
    assert abs(float(cf.probs_counterfactual[1] - cf.probs_reconstruction[1])) < 1e-3


def test_seed_objective_matches_torch_adam(analytic):
    """Our written-out Adam equals torch.optim.Adam on the seed objective."""
    clf, lat, sal = analytic
    steps = 15
    x = region_image()
    ex = _explainer(analytic, steps=steps)
    (cf,) = ex.explain(x, 0)

    z = x.clone().requires_grad_(True)
    x0 = x.clone()
    p0 = torch.sigmoid(clf(x0)).detach()
    y = target_vector(p0, torch.tensor([0]))
    m = sal(clf, x, torch.tensor([0])) > 0.5
    w = 1e5 * (~m).float() + m.float()
    opt = torch.optim.Adam([z], lr=0.1)
    for _ in range(steps):
        opt.zero_grad()
        loss = ((z - x0) ** 2 * w).flatten(1).mean(1) + 1e3 * ((torch.sigmoid(clf(z)) - y) ** 2).mean(1)
        loss.sum().backward()
        opt.step()
    torch.testing.assert_close(cf.counterfactual, z.detach()[0].clamp(0, 1), rtol=0, atol=1e-6)
    assert cf.steps == steps


def test_batch_equals_single_calls(analytic):
    ex = _explainer(analytic, steps=40)
    x = torch.cat([region_image(seed=s, value=v) for s, v in [(0, 0.8), (1, 0.9), (2, 0.75)]])
    targets = ["finding0", "finding1", "finding0"]
    batched = ex.explain(x, targets)
    for i in range(3):
        (single,) = ex.explain(x[i:i + 1], targets[i])
        torch.testing.assert_close(batched[i].counterfactual, single.counterfactual, atol=1e-6, rtol=0)
        assert batched[i].target == single.target


def test_early_stopping_each_sample_at_its_own_step(analytic):
    ex = _explainer(analytic, steps=300, stop_probability=0.5)
    x = torch.cat([region_image(value=0.6), region_image(value=0.95)])
    a, b = ex.explain(x, [0, 0])
    assert a.status == b.status == "stopped-early"
    assert a.p_counterfactual < 0.5 and b.p_counterfactual < 0.5
    assert 0 < a.steps < b.steps < 300
    # each stop is the first step whose probability is below 0.5: one step fewer is not below
    (a_short,) = _explainer(analytic, steps=a.steps - 1).explain(x[:1], 0)
    assert a_short.p_counterfactual >= 0.5
    # a stopped sample's result equals running exactly that many steps without stopping
    (a_exact,) = _explainer(analytic, steps=a.steps).explain(x[:1], 0)
    torch.testing.assert_close(a.counterfactual, a_exact.counterfactual, atol=1e-6, rtol=0)


def _state(model):
    return ([m.training for m in model.modules()],
            [(p.requires_grad, p.grad) for p in model.parameters()])


def _assert_same_state(model, before):
    flags, params = _state(model)
    assert flags == before[0]
    for (rg, g), (rg0, g0) in zip(params, before[1]):
        assert rg == rg0
        assert g is g0
        if g is not None:
            torch.testing.assert_close(g, g0)


def _prepared_models():
    clf, lat = RegionClassifier(), IdentityLatent()
    clf.train()
    clf.conv.eval()  # a mixed state must come back mixed
    clf.gain.grad = torch.tensor(3.0)
    clf.conv.weight.requires_grad_(False)
    return clf, lat


def test_models_restored_after_explain():
    clf, lat = _prepared_models()
    before = _state(clf)
    xcf.Explainer(classifier=clf, latent=lat, saliency=BoxSaliency(), method="seed",
                  config=xcf.ExplainConfig(steps=5)).explain(region_image(), 0)
    _assert_same_state(clf, before)
    assert float(clf.gain.grad) == 3.0


class _Exploding(xcf.SaliencyMethod):
    def __call__(self, classifier, x, targets):
        raise RuntimeError("boom")


def test_models_restored_after_error():
    clf, lat = _prepared_models()
    before = _state(clf)
    ex = xcf.Explainer(classifier=clf, latent=lat, saliency=_Exploding(), method="seed",
                       config=xcf.ExplainConfig(steps=5))
    with pytest.raises(ComponentError, match="boom"):
        ex.explain(region_image(), 0)
    _assert_same_state(clf, before)


def test_frozen_restores_on_exception():
    clf, _ = _prepared_models()
    before = _state(clf)
    with pytest.raises(ValueError), frozen(clf):
        assert not any(p.requires_grad for p in clf.parameters())
        assert not clf.training
        raise ValueError
    _assert_same_state(clf, before)


def test_deterministic_bit_identical(analytic):
    x = region_image()
    a = _explainer(analytic, steps=30, seed=3).explain(x, 0)[0]
    b = _explainer(analytic, steps=30, seed=3).explain(x, 0)[0]
    assert torch.equal(a.counterfactual, b.counterfactual)
    assert a.losses == b.losses


class _NaNAfter(RegionClassifier):
    """Becomes NaN once the region's mean drops below a level."""

    def forward(self, x):
        out = super().forward(x)
        bad = x[:, 0, 8:16, 8:16].mean(dim=(1, 2)) < 0.7
        return torch.where(bad[:, None], torch.full_like(out, float("nan")), out)


def test_nonfinite_loss_stops_sample_with_status():
    ex = xcf.Explainer(classifier=_NaNAfter(), latent=IdentityLatent(), saliency=BoxSaliency(),
                       method="seed", config=xcf.ExplainConfig(steps=100))
    (cf,) = ex.explain(region_image(), 0)
    assert cf.status == "nonfinite"
    assert torch.isfinite(cf.counterfactual).all()
    assert 0 < cf.steps < 100
    # the kept latent is the last finite one: its mean is still above the NaN level
    assert cf.counterfactual[0, 8:16, 8:16].mean() >= 0.7


def test_zero_steps_returns_reconstruction(analytic):
    (cf,) = _explainer(analytic, steps=0).explain(region_image(), 0)
    assert torch.equal(cf.counterfactual, cf.reconstruction)
    assert cf.steps == 0


def test_stable_sigmoid_gradient_matches_and_survives_saturation():
    from xcf.optimize import stable_sigmoid

    logits = torch.tensor([-30.0, -5.0, 0.0, 3.0, 16.0, 20.0, 40.0], requires_grad=True)
    stable_sigmoid(logits).sum().backward()
    e = torch.exp(-logits.detach().double().abs())
    exact = (e / (1 + e) ** 2).float()  # sigmoid'(l), without cancellation
    assert torch.allclose(logits.grad, exact, rtol=1e-5, atol=0)
    plain = torch.tensor([20.0, 40.0], requires_grad=True)
    torch.sigmoid(plain).sum().backward()
    assert torch.all(plain.grad == 0)  # what the seed's loss sees: nothing to follow
    assert torch.all(logits.grad[-2:] > 0)
    assert torch.equal(stable_sigmoid(logits.detach()), torch.sigmoid(logits.detach()))


def test_mse_stable_moves_a_saturated_film_the_seed_loss_cannot():
    """logit = 37.5 * (0.95 - 0.5) = 16.9: float32 rounds p to exactly 1, so the seed's probability
    loss has a zero gradient and the film never changes; ``Objective(stable=True)`` flips it in the
    same region."""
    x = region_image(value=0.95)

    def run(stable):
        method, config = method_with("seed", steps=100, lr=0.05, blend="residual", stop_probability=0.5)
        method = method.replace(objective__stable=stable)
        ex = xcf.Explainer(classifier=RegionClassifier(gain=37.5), latent=IdentityLatent(),
                           saliency=BoxSaliency(), method=method, config=config)
        return ex.explain(x, "finding0")[0]

    seed, stable = run(False), run(True)
    assert seed.p_input == 1.0
    assert seed.p_counterfactual == 1.0 and torch.equal(seed.counterfactual, x[0])
    assert stable.p_counterfactual < 0.5
    assert torch.equal(stable.counterfactual[~stable.mask], x[0][~stable.mask])


class _Early(RegionClassifier):
    """The loop's model: logits 2 below the checker's, so it sees a flip the checker does not."""

    def forward(self, x):
        return super().forward(x) - 2.0


def test_check_classifier_confirms_stops_and_reports_its_probabilities(analytic):
    from xcf.optimize import classify, optimize_latent
    from xcf.registry import create

    clf, lat, sal = analytic
    x, t = region_image(value=0.6), torch.tensor([0])
    args = (_Early(), lat, x, t, sal(clf, x, t), create("locality", "masked-l2"))
    kw = dict(stop=StopRule(0.5), steps=300)
    alone = optimize_latent(*args, **kw)
    checked = optimize_latent(*args, **kw, check_classifier=clf)
    assert alone.status == checked.status == ["stopped-early"]
    assert classify(clf, alone.counterfactual)[0, 0] >= 0.5  # the loop model's stop, not the checker's
    assert int(checked.steps[0]) > int(alone.steps[0])
    p = classify(clf, checked.counterfactual)
    assert p[0, 0] < 0.5
    torch.testing.assert_close(checked.probs_counterfactual, p)  # reported: the checker's
    torch.testing.assert_close(checked.probs_reconstruction, classify(clf, checked.reconstruction))


def test_batch_size_auto_is_8_on_a_cpu_and_16_elsewhere(analytic, monkeypatch):
    from xcf.config import auto_batch_size

    ex = _explainer(analytic, steps=2)
    assert ex.config.batch_size == "auto" and ex.batch_size == 8
    assert auto_batch_size("cuda") == auto_batch_size("mps") == 16
    sizes = []
    real = ex.explain_tensor
    monkeypatch.setattr(ex, "explain_tensor", lambda x, t, **kw: sizes.append(len(x)) or real(x, t, **kw))
    assert len(ex.explain(region_image(n=10), 0)) == 10
    assert sizes == [8, 2]
    assert _explainer(analytic, steps=2, batch_size=3).batch_size == 3
    for bad in ("big", 0):
        with pytest.raises(xcf.errors.ConfigError, match="batch_size"):
            xcf.ExplainConfig.build(batch_size=bad)


def test_stop_off_target_waits_for_the_other_findings():
    """Finding 1 reads half of finding 0's region: darkening that region drops both. With the
    target alone deciding, the search stops as soon as finding 0 is below 0.5, finding 1 dragged
    down with it; with ``StopRule.off_target`` it goes on until the classification term has brought
    finding 1 back within the tolerance (changing the part only finding 0 reads), and is still
    valid."""
    clf = RegionClassifier(regions=[(8, 16, 8, 16), (8, 16, 12, 20)], gain=8.0)
    x = region_image(value=0.62)
    x[:, :, 8:16, 16:20] = 0.62  # finding 1's region uniformly bright too

    def run(**cfg):
        method, config = method_with("seed", steps=300, stop_probability=0.5, lr=0.02, **cfg)
        ex = xcf.Explainer(classifier=clf, latent=IdentityLatent(), saliency=BoxSaliency(),
                           method=method, config=config)
        return ex.explain(x, 0)[0]

    plain, held = run(), run(stop_off_target=0.05)
    drift = lambda cf: abs(float(cf.probs_counterfactual[1] - cf.probs_input[1]))  # noqa: E731
    assert plain.status == "stopped-early" and plain.p_counterfactual < 0.5 and drift(plain) > 0.05
    assert held.p_counterfactual < 0.5 and drift(held) <= 0.05 and held.steps > plain.steps
    with pytest.raises(xcf.errors.ConfigError, match="off_target"):
        StopRule(0.5, off_target=0)
    with pytest.raises(xcf.errors.ConfigError, match="Method.stop.off_target"):
        xcf.ExplainConfig.build(stop_off_target=0.05)
