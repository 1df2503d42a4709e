"""Locality losses: how much changing each pixel of the reconstruction costs.

All take ``x`` and ``x_ref`` of shape ``(B, 1, H, W)`` in [0, 1] and a saliency map of the same
shape in [0, 1], and return a per-sample ``(B,)`` loss that is zero when ``x == x_ref``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from xcf import LocalityLoss
from xcf.errors import ConfigError


def _check_weights(threshold: float, outside_weight: float, inside_weight: float) -> None:
    if not 0.0 <= threshold <= 1.0:
        raise ConfigError(f"threshold must be in [0, 1], got {threshold}")
    if outside_weight < 0 or inside_weight < 0:
        raise ConfigError(
            f"weights must be non-negative, got outside_weight={outside_weight}, inside_weight={inside_weight}")


class MaskedL2(LocalityLoss):
    """The seed's loss: ``mean_pixels((x - x_ref)^2 * (w_out * (1 - m) + w_in * m))``, ``m = S > threshold``.

    Args:
        threshold: Saliency level above which a pixel is inside the mask (seed: 0.5).
        outside_weight: Weight of change outside the mask (seed: 1e5).
        inside_weight: Weight of change inside the mask (seed: 1).
    """

    power = 2

    def __init__(self, threshold: float = 0.5, outside_weight: float = 1e5,
                 inside_weight: float = 1.0) -> None:
        _check_weights(threshold, outside_weight, inside_weight)
        self.threshold = float(threshold)
        self.outside_weight = float(outside_weight)
        self.inside_weight = float(inside_weight)

    def mask(self, saliency: Tensor) -> Tensor:
        return saliency > self.threshold

    def weights(self, saliency: Tensor) -> Tensor:
        """Per-pixel weight ``(B, 1, H, W)``."""
        m = self.mask(saliency).to(saliency.dtype)
        return self.outside_weight * (1 - m) + self.inside_weight * m

    def __call__(self, x: Tensor, x_ref: Tensor, saliency: Tensor) -> Tensor:
        diff = (x - x_ref).abs()
        if self.power == 2:
            diff = diff * diff
        return (diff * self.weights(saliency)).flatten(1).mean(dim=1)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(threshold={self.threshold}, outside_weight={self.outside_weight:g}, "
                f"inside_weight={self.inside_weight:g})")


class MaskedL1(MaskedL2):
    """As :class:`MaskedL2` with absolute instead of squared change: ``mean(|x - x_ref| * w)``."""

    power = 1


class SoftMask(MaskedL2):
    """Weights from the continuous saliency map instead of a hard threshold.

    ``w = exp(S * log(w_in) + (1 - S) * log(w_out))`` (geometric interpolation: saliency 1 costs
    ``w_in``, saliency 0 costs ``w_out``, 0.5 costs ``sqrt(w_in * w_out)``), or with
    ``interpolation="linear"``, ``w = S * w_in + (1 - S) * w_out``. ``mask()`` (for figures and
    metrics) is still ``S > threshold``.
    """

    def __init__(self, threshold: float = 0.5, outside_weight: float = 1e5,
                 inside_weight: float = 1.0, interpolation: str = "geometric") -> None:
        super().__init__(threshold, outside_weight, inside_weight)
        if interpolation not in ("geometric", "linear"):
            raise ConfigError(f"interpolation must be 'geometric' or 'linear', got {interpolation!r}")
        if interpolation == "geometric" and (outside_weight <= 0 or inside_weight <= 0):
            raise ConfigError("geometric interpolation needs positive weights")
        self.interpolation = interpolation

    def weights(self, saliency: Tensor) -> Tensor:
        s = saliency.clamp(0, 1)
        if self.interpolation == "linear":
            return s * self.inside_weight + (1 - s) * self.outside_weight
        return torch.exp(s * math.log(self.inside_weight) + (1 - s) * math.log(self.outside_weight))


class GlobalL2(LocalityLoss):
    """No locality: ``weight * mean((x - x_ref)^2)`` over the whole image (mask = everything)."""

    def __init__(self, weight: float = 1.0) -> None:
        if weight < 0:
            raise ConfigError(f"weight must be non-negative, got {weight}")
        self.weight = float(weight)

    def mask(self, saliency: Tensor) -> Tensor:
        return torch.ones_like(saliency, dtype=torch.bool)

    def __call__(self, x: Tensor, x_ref: Tensor, saliency: Tensor) -> Tensor:
        return self.weight * ((x - x_ref) ** 2).flatten(1).mean(dim=1)

    def __repr__(self) -> str:
        return f"GlobalL2(weight={self.weight:g})"
