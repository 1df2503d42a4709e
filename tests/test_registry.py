"""Plugin registry: third-party plugins, entry points, failures, duplicates, disabling."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import pytest
import tomllib
from _analytic import BoxSaliency, IdentityLatent, RegionClassifier

import xcf
from xcf import registry as xreg
from xcf.errors import ComponentError, DuplicateComponentError, UnknownComponentError

REPO = Path(__file__).resolve().parents[1]


class ThirdParty:
    """A plugin declared inside the test, as a third party would write it."""

    @xcf.hookimpl
    def xcf_register_classifiers(self, register):
        register("region", RegionClassifier, description="reads region means")

    @xcf.hookimpl
    def xcf_register_latent_models(self, register):
        register("identity", IdentityLatent, description="z = x")

    @xcf.hookimpl
    def xcf_register_saliency_methods(self, register):
        register("box", BoxSaliency, description="the classifier's region")


def test_nothing_loaded_at_import():
    code = "import sys, xcf; import xcf.registry as r; print(r._default is None, 'pluggy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split()[0] == "True"


def test_builtins_listed():
    assert "gradcam++" in xcf.list_components("saliency")
    assert "masked-l2" in xcf.list_components("locality")
    assert "small-cnn" in xcf.list_components("classifier")
    assert "conv-ae" in xcf.list_components("latent")


def test_third_party_plugin_in_code_is_usable_by_explain():
    reg = xreg.Registry(xreg.make_plugin_manager())
    reg.register_plugin(ThirdParty(), name="thirdparty")
    assert "box" in reg.list("saliency")
    spec = reg.spec("saliency", "box")
    assert spec.plugin == "thirdparty"
    assert spec.description == "the classifier's region"
    assert spec.distribution == "(registered in code)"
    ex = xcf.Explainer(classifier="region", latent="identity", saliency="box", registry=reg,
                       config=xcf.ExplainConfig(steps=60))
    from _analytic import region_image

    (cf,) = ex.explain(region_image(), "finding0")
    assert cf.p_counterfactual < 0.5
    assert cf.components["saliency"] == "box"
    assert cf.provenance["components"]["saliency"]["plugin"] == "thirdparty"


def test_default_registry_register_plugin():
    xreg.register_plugin(ThirdParty(), name="tp")
    assert "identity" in xcf.list_components("latent")
    assert isinstance(xcf.create("latent", "identity", input_size=16), IdentityLatent)


def test_unknown_name_lists_known():
    with pytest.raises(UnknownComponentError) as err:
        xcf.create("saliency", "nope")
    msg = str(err.value)
    assert "nope" in msg and "gradcam++" in msg and "\n" not in msg
    with pytest.raises(UnknownComponentError, match="valid kinds"):
        xcf.list_components("widget")


def test_duplicate_names_fail_naming_both():
    class A:
        @xcf.hookimpl
        def xcf_register_saliency_methods(self, register):
            register("same", BoxSaliency)

    class B(A):
        pass

    reg = xreg.Registry(xreg.make_plugin_manager(load_entry_points=False))
    reg.register_plugin(A(), name="first")
    reg.register_plugin(B(), name="second")
    with pytest.raises(DuplicateComponentError) as err:
        reg.list("saliency")
    assert "'first'" in str(err.value) and "'second'" in str(err.value) and "same" in str(err.value)


def test_factory_building_wrong_type_is_named():
    class Bad:
        @xcf.hookimpl
        def xcf_register_locality_losses(self, register):
            register("not-a-loss", lambda: object())

    reg = xreg.Registry(xreg.make_plugin_manager(load_entry_points=False))
    reg.register_plugin(Bad(), name="badplugin")
    with pytest.raises(ComponentError, match="locality loss 'not-a-loss'.*badplugin.*LocalityLoss"):
        reg.create("locality", "not-a-loss")


def test_misspelled_hook_is_caught():
    class Typo:
        @xcf.hookimpl
        def xcf_register_saliency_method(self, register):  # missing "s"
            pass

    reg = xreg.Registry(xreg.make_plugin_manager(load_entry_points=False))
    with pytest.raises(Exception, match="xcf_register_saliency_method"):
        reg.register_plugin(Typo(), name="typo")
        reg.pm.check_pending()


def test_every_plugin_package_has_an_entry_point():
    eps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["entry-points"]["xcf"]
    declared = set(eps.values())
    packages = {p.name for p in (REPO / "plugins").iterdir() if p.is_dir() and p.name.startswith("xcf_")}
    assert packages <= declared, f"plugins without an entry point: {packages - declared}"


# -- faked installed distributions (entry points on sys.path) ---------------------------------

def _fake_dist(root: Path, dist: str, ep_name: str, module: str, source: str) -> None:
    (root / f"{module}.py").write_text(textwrap.dedent(source))
    info = root / f"{dist.replace('-', '_')}-1.0.dist-info"  # normalized, as pip writes it
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[xcf]\n{ep_name} = {module}\n")


GOOD = """
    import torch
    import xcf

    class Everywhere(xcf.SaliencyMethod):
        '''Saliency 1 everywhere.'''
        def __call__(self, classifier, x, targets):
            return torch.ones_like(x)

    @xcf.hookimpl
    def xcf_register_saliency_methods(register):
        register("everywhere", Everywhere, description="all ones (test plugin)")
"""

BROKEN = """
    raise ImportError("this plugin is broken on purpose")
"""


@pytest.fixture
def fake_site(tmp_path, monkeypatch):
    _fake_dist(tmp_path, "xcf-good-plugin", "goodplugin", "xcf_good_plugin", GOOD)
    _fake_dist(tmp_path, "xcf-broken-plugin", "brokenplugin", "xcf_broken_plugin", BROKEN)
    monkeypatch.syspath_prepend(str(tmp_path))
    import importlib

    importlib.invalidate_caches()
    return tmp_path


def test_entry_point_plugin_loads_and_broken_one_is_named(fake_site):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        names = xcf.list_components("saliency")
    assert "everywhere" in names and "gradcam++" in names  # the broken plugin took down nothing
    msgs = [str(w.message) for w in caught]
    assert any("brokenplugin" in m and "xcf-broken-plugin" in m and "broken on purpose" in m for m in msgs)
    spec = xreg.get_registry().spec("saliency", "everywhere")
    assert spec.distribution == "xcf-good-plugin" and spec.plugin == "goodplugin"
    from _analytic import region_image

    ex = xcf.Explainer(classifier=RegionClassifier(), latent=IdentityLatent(), saliency="everywhere",
                       config=xcf.ExplainConfig(steps=2))
    assert bool(ex.explain(region_image(), 0)[0].mask.all())


def test_disable_plugins_env(fake_site, monkeypatch):
    monkeypatch.setenv("XCF_DISABLE_PLUGINS", "goodplugin, brokenplugin,gradcam")
    xreg.reset_registry()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the broken one is not even imported
        names = xcf.list_components("saliency")
    assert "everywhere" not in names and "gradcam++" not in names


def test_cli_plugins_lists_installed_third_party(fake_site):
    env = {"PYTHONPATH": str(fake_site), "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-m", "xcf.cli", "plugins"], capture_output=True, text=True,
                         env=env, check=True)
    line = next(ln for ln in out.stdout.splitlines() if "everywhere" in ln)
    assert "saliency" in line and "xcf-good-plugin" in line and "all ones" in line
    assert "FAILED plugin 'brokenplugin'" in out.stdout
    assert "gradcam++" in out.stdout


def test_every_built_in_plugin_loads_and_registers_its_components():
    """A built-in plugin that fails to import is skipped with a warning, and every contract test
    parametrized over the registry would then silently lose its cases: the installed built-ins must
    all load, and register what they ship."""
    reg = xreg.Registry(xreg.make_plugin_manager())
    assert reg.pm.xcf_failed == {}
    expected = {
        "saliency": {"gradcam", "gradcam++", "hirescam", "saliency", "smoothgrad",
                     "integrated-gradients", "occlusion", "saliency-in-gradcam++"},
        "locality": {"masked-l2", "masked-l1", "soft-mask", "global"},
        "latent": {"conv-ae", "segnet-ae", "vae", "pixel"},
        "classifier": {"small-cnn", "mobilenet-v3-small"},
        "method": {"seed", "early-stop", "fast", "local", "local-in-mask", "latent-shift"},
    }
    for kind, names in expected.items():
        assert names <= set(reg.list(kind)), (kind, names - set(reg.list(kind)))
