"""The method model: registered methods, their parts, the docs table and the bench list."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from _analytic import BoxSaliency, IdentityLatent, RegionClassifier, region_image

import xcf
from xcf.errors import ConfigError
from xcf.methods import Blend, Method, Region, StopRule

ROOT = Path(__file__).resolve().parents[1]


def _docs_table_methods() -> set[str]:
    text = (ROOT / "docs" / "concepts" / "methods.md").read_text(encoding="utf-8")
    return set(re.findall(r"^\|\s*`([^`]+)`\s*\|", text, flags=re.MULTILINE))


def test_every_registered_method_is_in_the_docs_table_and_the_bench():
    from xcf.bench.counterfactuals import METHODS, default_methods

    registered = set(xcf.list_methods())
    assert {"seed", "early-stop", "fast", "local", "local-in-mask", "latent-shift"} <= registered
    missing_docs = registered - _docs_table_methods()
    assert not missing_docs, f"methods missing from docs/concepts/methods.md's table: {missing_docs}"
    assert registered <= set(METHODS) and registered <= set(default_methods())
    for name in registered:
        assert METHODS[name].resolved().name == name


def test_the_docs_table_check_can_fail(tmp_path, monkeypatch):
    """A method registered by a plugin but not documented is caught by the check above."""

    class Plugin:
        @xcf.hookimpl
        def xcf_register_methods(self, register):
            register("undocumented", lambda: xcf.get_method("seed").replace(name="undocumented"))

    from xcf.registry import Registry, make_plugin_manager

    reg = Registry(make_plugin_manager())
    reg.register_plugin(Plugin(), name="undocumented-plugin")
    assert "undocumented" in reg.list("method")
    assert "undocumented" not in _docs_table_methods()


def test_a_plugin_method_is_registered_benchmarked_and_usable():
    class Plugin:
        @xcf.hookimpl
        def xcf_register_methods(self, register):
            register("seed-stop-0.3", lambda: xcf.get_method("seed").replace(
                name="seed-stop-0.3", stop__probability=0.3), description="seed, stop at 0.3")

    from xcf.bench.counterfactuals import METHODS
    from xcf.registry import register_plugin, reset_registry

    reset_registry()
    try:
        register_plugin(Plugin(), name="stop-plugin")
        assert "seed-stop-0.3" in xcf.list_methods() and "seed-stop-0.3" in METHODS
        ex = xcf.Explainer(classifier=RegionClassifier(), latent=IdentityLatent(),
                           saliency=BoxSaliency(), method="seed-stop-0.3", lr=0.05)
        cf = ex.explain(region_image(), 0)[0]
        assert cf.status == "stopped-early" and cf.p_counterfactual < 0.3
        assert cf.config["method"] == "seed-stop-0.3" and cf.components["method"] == "seed-stop-0.3"
    finally:
        reset_registry()


def test_replace_changes_a_part_and_refuses_unknown_fields():
    seed = xcf.get_method("seed")
    m = seed.replace(name="x", stop__probability=0.2, region__levels=(0.5, 0.2))
    assert m.stop == StopRule(0.2) and m.region.levels == (0.5, 0.2) and seed.stop == StopRule()
    with pytest.raises(ConfigError, match="no field 'colour'"):
        seed.replace(colour=1)
    with pytest.raises(ConfigError, match="stop"):
        seed.replace(stop__patience=2)
    with pytest.raises(ConfigError, match="residual"):
        Blend("sideways")
    with pytest.raises(ConfigError, match="decreasing"):
        Region(levels=(0.2, 0.5))
    with pytest.raises(ConfigError, match="stop probability"):
        StopRule(1.5)


def test_the_config_keeps_shared_settings_and_names_where_a_moved_field_lives():
    assert set(xcf.ExplainConfig.model_fields) == {
        "method", "steps", "lr", "stop_probability", "decision_threshold", "seed", "device", "batch_size"}
    with pytest.raises(ConfigError, match="Method.blend.kind") as exc:
        xcf.ExplainConfig.build(blend="residual")
    assert "\n" not in str(exc.value)
    assert xcf.ExplainConfig.preset("seed").method == "seed"
    with pytest.raises(ConfigError, match="valid methods: .*local-in-mask"):
        xcf.ExplainConfig.preset("nope")


def test_config_settings_override_the_methods_own():
    m = xcf.get_method("local").configured(xcf.ExplainConfig(steps=7, lr=0.3, stop_probability=0.1))
    assert (m.steps, m.lr, m.stop.probability, m.stop.off_target) == (7, 0.3, 0.1, None)
    same = xcf.get_method("local").configured(xcf.ExplainConfig())
    assert same == xcf.get_method("local")


def test_an_unknown_method_lists_the_valid_ones():
    with pytest.raises(xcf.errors.UnknownComponentError, match="registered: .*seed"):
        xcf.Explainer(classifier=RegionClassifier(), latent=IdentityLatent(), method="nope")
    with pytest.raises(ConfigError, match="registered name or an xcf.methods.Method"):
        xcf.Explainer(classifier=RegionClassifier(), latent=IdentityLatent(), method=3)


def test_progress_reports_every_step_with_the_films_still_searching():
    seen = []
    ex = xcf.Explainer(classifier=RegionClassifier(), latent=IdentityLatent(), saliency=BoxSaliency(),
                       method="seed", steps=6, progress=lambda *a: seen.append(a))
    ex.explain(region_image(2), [0, 1])
    assert [s[2] for s in seen] == [1, 2, 3, 4, 5, 6]
    level, n_levels, _, budget, p = seen[0]
    assert (level, n_levels, budget) == (0, 1, 6) and p.shape == (2,) and bool((p > 0.5).all())


def test_a_method_object_runs_without_registration():
    m = Method("mine", region=Region("gradcam++"), stop=StopRule(0.5), lr=0.05)
    ex = xcf.Explainer(classifier=RegionClassifier(), latent=IdentityLatent(), saliency=BoxSaliency(),
                       method=m)
    cf = ex.explain(region_image(), 0)[0]
    assert cf.p_counterfactual < 0.5 and cf.config["method"] == "mine"
    assert torch.isfinite(cf.counterfactual).all()


# -- views: the flip must survive small changes that do not change a diagnosis ---------------------

def test_views_are_reproducible_differentiable_and_batch_independent():
    from xcf.methods import Views

    v = Views(n=3, blur=1.5, shift=2, noise=0.02, seed=1)
    x = torch.rand(2, 1, 32, 32, requires_grad=True)
    out = v(x, 7)
    assert out.shape == (6, 1, 32, 32) and float(out.detach().min()) >= 0 and float(out.detach().max()) <= 1
    assert torch.equal(out, v(x, 7)) and not torch.equal(out, v(x, 8))
    alone = v(x[1:], 7)  # view k of film 1 is row k * 2 + 1 of the batch's
    torch.testing.assert_close(alone, out[1::2], atol=1e-6, rtol=0)
    (g,) = torch.autograd.grad(out.sum(), x)
    assert bool((g.abs().sum(dim=(1, 2, 3)) > 0).all())
    identity = Views(n=2, blur=0, shift=0, noise=0)
    assert torch.equal(identity(x, 3), torch.cat([x, x]).clamp(0, 1))


def test_objective_with_views_is_zero_where_nothing_changed():
    from xcf.methods import Objective, Reference, Views

    loc = xcf.create("locality", "masked-l2", threshold=0.5, outside_weight=1e5)
    x = torch.rand(2, 1, 32, 32)
    sal = torch.rand(2, 1, 32, 32)
    ref = Reference.of(torch.tensor([[0.9, 0.3], [0.8, 0.6]]), torch.tensor([0, 1]))
    obj = Objective(views=Views(n=3))
    zero = obj(loc, x, x, sal, ref.y.clone(), ref, ref.y.expand(3, 2, 2).clone())
    assert torch.equal(zero, torch.zeros(2))
    # a view that keeps the finding is penalized like the film itself: 1 of 4 terms off by 1
    pv = ref.y.expand(3, 2, 2).clone()
    pv[0, 0, 0] = 1.0
    loss = obj(loc, x, x, sal, ref.y.clone(), ref, pv)
    assert float(loss[0]) == pytest.approx(1e3 * (1.0 / 2) / 4) and float(loss[1]) == 0.0


def test_identity_views_give_the_seeds_loss_and_real_views_push_the_region_down():
    """Views that change nothing average identical terms: the loss and its gradient are the seed's.
    With real views the gradient still points into the target's region and lowers it."""
    from xcf.methods import Objective, Reference, Views

    clf, loc = RegionClassifier(), xcf.create("locality", "masked-l2", threshold=0.5, outside_weight=1e5)
    x0 = region_image(1)
    sal = BoxSaliency()(clf, x0, torch.tensor([0]))
    ref = Reference.of(torch.sigmoid(clf(x0)), torch.tensor([0]))

    def loss_grad(obj, step=0, noise=0.01):
        x = (x0 + noise * torch.randn(x0.shape, generator=torch.Generator().manual_seed(0))).requires_grad_(True)
        p = obj.probabilities(clf(x))
        pv = None
        if obj.views is not None:
            pv = obj.probabilities(clf(obj.views(x, step))).view(obj.views.n, 1, -1)
        loss = obj(loc, x, x0, sal, p, ref, pv)
        return loss, torch.autograd.grad(loss.sum(), x)[0]

    plain, g_plain = loss_grad(Objective())
    same, g_same = loss_grad(Objective(views=Views(n=3, blur=0, shift=0, noise=0)))
    torch.testing.assert_close(same, plain)
    torch.testing.assert_close(g_same, g_plain)
    # at the start the locality term is flat: the gradient is the classification term's alone
    _, g = loss_grad(Objective(views=Views(n=4, blur=1.0, shift=1, noise=0.01)), noise=0.0)
    r0, r1, c0, c1 = clf.regions[0]
    assert float(g[0, 0, r0:r1, c0:c1].mean()) > 0  # descent lowers the region holding the finding
    near = g[0, 0, r0 - 4:r1 + 4, c0 - 4:c1 + 4].abs().sum()  # blur and shift spread it a little
    assert float(near) > 0.98 * float(g.abs().sum())


def test_stop_on_views_waits_until_the_flip_survives_them():
    from xcf.methods import Views

    seed = xcf.get_method("seed")
    views = Views(n=4, blur=1.5, shift=3, noise=0.05)
    plain = seed.replace(name="plain", stop__probability=0.5, objective__views=views)
    robust = plain.replace(name="robust", stop__on_views=True)

    def run(method):
        ex = xcf.Explainer(classifier=RegionClassifier(), latent=IdentityLatent(), saliency=BoxSaliency(),
                           method=method, lr=0.01)
        return ex.explain(region_image(1), 0)[0]

    a, b = run(plain), run(robust)
    assert a.status == b.status == "stopped-early" and b.steps >= a.steps
    clf = RegionClassifier()
    pv = torch.sigmoid(clf(views(b.counterfactual[None], b.steps - 1)))[:, 0]
    assert bool((pv < 0.5).all())  # the stopping step's views are below the stop too


def test_one_sign_reads_the_findings_direction_and_penalizes_only_the_other_way():
    from xcf.methods import Objective, Reference

    clf, loc = RegionClassifier(), xcf.create("locality", "masked-l2", threshold=0.5, outside_weight=1e5)
    x0 = torch.cat([region_image(1), 1 - region_image(1)])  # a bright finding; a dark one
    region = torch.zeros_like(x0, dtype=torch.bool)
    region[..., 8:16, 8:16] = True
    obj = Objective(one_sign=100.0)
    sign = obj.sign(clf, x0, torch.tensor([0, 0]), region)
    assert sign.tolist() == [1.0, 1.0]  # brightening region 0 raises finding0 on both films
    clf_dark = RegionClassifier(gain=-20.0)  # a lucency: darkening raises it
    assert obj.sign(clf_dark, x0, torch.tensor([0, 0]), region).tolist() == [-1.0, -1.0]
    ref = Reference(torch.zeros(2, 2), torch.tensor([0, 0]), torch.tensor([1.0, -1.0]))
    sal = torch.zeros_like(x0)
    sal[region] = 1.0
    p = torch.zeros(2, 2)
    assert torch.equal(obj(loc, x0, x0, sal, p, ref), torch.zeros(2))  # nothing changed: zero
    darker = x0 - 0.1 * region.float()
    loss = obj(loc, darker, x0, sal, p, ref)
    locality = loc(darker, x0, sal)
    # film 0 (sign +1) may darken freely; film 1 (sign -1) pays for the darkening
    assert float(loss[0]) == pytest.approx(float(locality[0]))
    assert float(loss[1]) == pytest.approx(float(locality[1]) + 100 * 0.01 * 64 / 1024, rel=1e-5)
