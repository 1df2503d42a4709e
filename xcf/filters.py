"""Gaussian blurs, one implementation for the whole package.

Used by the image-quality augmentation (``xcf.train.augment``, ``degradation_shift``), the detail
path of the built-in autoencoders (``detail_sigma``: ``xcf_autoencoders.detail.lowpass``) and the
feathering of blend masks (``xcf.explainer.feather_mask``). Separable, with a kernel of radius
``ceil(3 * sigma)`` unless given, normalized to sum 1.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor


def gaussian_blur(x: Tensor, sigma: float | Tensor, *, radius: int | None = None,
                  padding: str = "reflect") -> Tensor:
    """Blur each image of ``x`` ``(B, 1, H, W)`` with a Gaussian of standard deviation ``sigma``
    pixels: one number for all, or ``(B,)`` (each image its own; a sigma of 0 leaves that image
    unchanged). ``radius`` defaults to ``ceil(3 * max sigma)`` (at least 1); ``padding`` is
    ``"reflect"`` or ``"replicate"`` (as ``torch.nn.functional.pad``; reflect needs ``radius < H, W``).
    """
    B, _, H, W = x.shape
    s = torch.as_tensor(sigma, dtype=x.dtype, device=x.device).reshape(-1).expand(B)
    if radius is None:
        radius = max(1, math.ceil(3 * float(s.max()))) if B else 1
    t = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)
    k = torch.exp(-0.5 * (t[None] / s.clamp_min(1e-3)[:, None]) ** 2)
    k = k / k.sum(1, keepdim=True)
    h = F.pad(x.reshape(1, B, H, W), (radius,) * 4, mode=padding)
    h = F.conv2d(h, k[:, None, None, :], groups=B)
    h = F.conv2d(h, k[:, None, :, None], groups=B)
    return h.reshape(B, 1, H, W)
