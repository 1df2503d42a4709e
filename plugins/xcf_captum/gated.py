"""A saliency map confined to another method's region: ``saliency-in-gradcam++``.

Grad-CAM++ (the seed's saliency) says *which part of the film* the classifier used, on its coarse
feature grid (14x14 for the small CNN, 7x7 for DenseNet-121): above 0.5 it covers about a fifth of
a phantom film, most of it away from the finding (README, ``benchmarks/regions.py``). The input
gradient says *which pixels* move the logit, sharply, but also points at pixels Grad-CAM++ does not
count as evidence. :class:`GatedSaliency` keeps the gradient's map only inside the gate's region
(``gate > gate_threshold``, shrunk by ``margin`` pixels from its edge) and rescales it so that its
maximum is 1 again::

    s = inner(x) * erode([gate(x) > gate_threshold], margin);   s = s / max(s)

So every region ``s > level`` lies inside the seed's mask, at least ``margin`` pixels from its edge:
a search grown over those levels changes only pixels the seed's method could have changed
(the margin keeps a blend feathered by 2 px, as in the presets, inside it too: without it, 6 % of
the change of pneumonia counterfactuals fell just outside), starting with the most
gradient-salient of them. A film whose gate region is empty, or whose inner map is zero throughout it, gets the
inner map unchanged (never an empty region).
"""

from __future__ import annotations

import torch
from torch import Tensor

from xcf import Classifier, SaliencyMethod
from xcf.metrics import dilate

__all__ = ["GatedSaliency"]


class GatedSaliency(SaliencyMethod):
    """``inner`` saliency restricted to ``gate > gate_threshold``, rescaled to a maximum of 1.

    Args:
        inner: The map kept (default: the vanilla gradient, ``saliency``).
        gate: The map whose region bounds it (default: Grad-CAM++, the seed's saliency).
        gate_threshold: The gate's level; the seed's mask is Grad-CAM++ above 0.5.
        margin: Pixels the gate's region is shrunk by (a square erosion), so that a feathered
            blend of a region stays inside it; 0 keeps the region as it is.
    """

    def __init__(self, inner: SaliencyMethod | None = None, gate: SaliencyMethod | None = None,
                 gate_threshold: float = 0.5, margin: int = 4) -> None:
        if not 0.0 <= gate_threshold < 1.0:
            raise ValueError(f"gate_threshold must be in [0, 1), got {gate_threshold}")
        if int(margin) != margin or margin < 0:
            raise ValueError(f"margin must be a whole number of pixels >= 0, got {margin}")
        self.margin = int(margin)
        if inner is None:
            from .gradient import VanillaGradient

            inner = VanillaGradient()
        if gate is None:
            from xcf_gradcam.cam import GradCAMPlusPlus

            gate = GradCAMPlusPlus()
        self.inner, self.gate, self.gate_threshold = inner, gate, float(gate_threshold)

    def __call__(self, classifier: Classifier, x: Tensor, targets: Tensor) -> Tensor:
        s = self.inner(classifier, x, targets).float()
        region = self.gate(classifier, x, targets).float() > self.gate_threshold
        # erode: a pixel stays if its whole (2 margin + 1)^2 square is inside
        region = ~dilate(~region, self.margin)
        gated = s * region
        peak = gated.flatten(1).amax(1).view(-1, 1, 1, 1)
        ok = peak > 0  # a film with an empty gate, or no inner saliency in it, keeps `s`
        return torch.where(ok, gated / peak.clamp_min(torch.finfo(s.dtype).tiny), s).clamp(0, 1)
