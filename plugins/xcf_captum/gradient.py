"""Vanilla gradient saliency (Simonyan et al., "Deep Inside Convolutional Networks", ICLR-W 2014)."""

from __future__ import annotations

from torch import Tensor

from xcf import Classifier

from .base import AttributionSaliency

__all__ = ["VanillaGradient"]


class VanillaGradient(AttributionSaliency):
    """``|d logit_t / dx|`` through ``captum.attr.Saliency`` with ``abs=True``.

    Simonyan, Vedaldi & Zisserman, "Deep Inside Convolutional Networks: Visualising Image
    Classification Models and Saliency Maps", ICLR workshop 2014. One backward pass per batch.

    Args:
        sigma: Smoothing in pixels (see :class:`~xcf_captum.base.AttributionSaliency`).
    """

    def attribute(self, classifier: Classifier, x: Tensor, targets: Tensor) -> Tensor:
        from captum.attr import Saliency

        return Saliency(classifier).attribute(x.requires_grad_(True), target=targets, abs=True)
