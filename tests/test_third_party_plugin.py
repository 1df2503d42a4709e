"""A third-party plugin, end to end: a saliency method that returns a given box.

The same example is explained in docs/plugins.md and the README. A real package declares the plugin
under ``[project.entry-points.xcf]``; here it is registered in code into a fresh registry.
"""

from __future__ import annotations

import torch
from torch import Tensor

import xcf
from xcf import registry as xreg


# -- the plugin (what a third party writes) ------------------------------------------------------
class BoxSaliency(xcf.SaliencyMethod):
    """Saliency 1 inside a fixed box, 0 elsewhere (a known answer for tests and demos).

    Args:
        box: ``(top, left, bottom, right)`` in pixels of the classifier's input, end-exclusive.
    """

    def __init__(self, box: tuple[int, int, int, int] = (64, 64, 160, 160)) -> None:
        self.box = tuple(int(v) for v in box)

    def __call__(self, classifier: xcf.Classifier, x: Tensor, targets: Tensor) -> Tensor:
        """``(B, 1, S, S)`` float32 in {0, 1}, the same box for every sample and target."""
        top, left, bottom, right = self.box
        out = torch.zeros_like(x, dtype=torch.float32)
        out[:, :, top:bottom, left:right] = 1.0
        return out


class BoxPlugin:
    """The plugin object: one ``@xcf.hookimpl`` per kind it registers."""

    @xcf.hookimpl
    def xcf_register_saliency_methods(self, register) -> None:
        register("box", BoxSaliency, description="1 inside a given (top, left, bottom, right) box, 0 elsewhere")


# -- the test --------------------------------------------------------------------------------------
def test_box_plugin_end_to_end():
    reg = xreg.Registry(xreg.make_plugin_manager())
    assert reg.register_plugin(BoxPlugin(), name="box-plugin") == "box-plugin"
    assert "box" in reg.list("saliency") and "gradcam++" in reg.list("saliency")
    spec = reg.spec("saliency", "box")
    assert spec.plugin == "box-plugin" and spec.description.startswith("1 inside")
    assert "box" not in xcf.list_components("saliency")  # the default registry is untouched

    box = (40, 72, 120, 200)
    saliency = reg.create("saliency", "box", box=box)
    explainer = xcf.Explainer(classifier="small-cnn", latent="conv-ae", saliency=saliency,
                              method="seed", config=xcf.ExplainConfig(steps=3, device="cpu"), registry=reg)
    x = torch.rand(1, 1, 224, 224, generator=torch.Generator().manual_seed(0))
    (cf,) = explainer.explain(x, "Edema")

    expected = torch.zeros(1, 224, 224, dtype=torch.bool)
    expected[:, 40:120, 72:200] = True
    assert torch.equal(cf.mask.bool(), expected)
    assert torch.equal(cf.saliency, expected.float())
    assert cf.target == "Edema" and cf.steps == 3
    assert cf.components["saliency"] == "box"
