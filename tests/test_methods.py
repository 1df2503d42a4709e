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
