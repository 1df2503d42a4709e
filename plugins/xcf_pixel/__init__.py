"""Latent models without learned weights: the optimizer works on the pixels.

``pixel``: no latent model at all, ``z`` is the image. ``smooth``: ``z`` is a coarse grid of
brightness offsets added to the image, so every change is smooth (no texture finer than a grid
cell can be drawn).

``pixel``:

With it, xcf's objective (the seed's: locality loss + classification term) is minimized directly
over the image, which is the benchmarks' ``pixel`` baseline: it shows what a learned latent space
buys in realism (an unconstrained pixel search finds adversarial-looking edits that flip the
classifier), and it has no reconstruction error (``D(E(x)) == x``).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from xcf import Latent, LatentModel, hookimpl
from xcf.optimize import clamp01_straight_through

__all__ = ["PixelLatent", "SmoothLatent"]


class PixelLatent(LatentModel):
    """Identity "latent model": ``encode(x).z`` is a copy of ``x``; ``decode`` clamps to [0, 1].

    The clamp is straight-through: its output is exactly ``clamp(z, 0, 1)`` (always a valid
    canonical image), its gradient is the identity, so a pixel pushed past 0 or 1 still feels the
    locality loss pulling it back (a plain clamp would give it zero gradient and it would stay
    stuck at the bound). The seed's locality term keeps ``z`` near ``x`` anyway, so ``z`` rarely
    leaves [0, 1] by much.

    Args:
        input_size: Side length of the square images (set it to the size the other components
            work at; no parameters depend on it).
    """

    def __init__(self, input_size: int = 224) -> None:
        super().__init__()
        self.input_size = int(input_size)

    def encode(self, x: Tensor) -> Latent:
        """``(B, 1, S, S)`` images -> ``Latent(z=x.clone())`` (float32, detached)."""
        return Latent(x.detach().float().clone())

    def decode(self, latent: Latent) -> Tensor:
        """``Latent`` -> ``clamp(z, 0, 1)``, ``(B, 1, S, S)``; differentiable (straight-through)."""
        return clamp01_straight_through(latent.z)


class SmoothLatent(LatentModel):
    """A smooth brightness change: ``z`` is a ``(B, 1, g, g)`` grid of offsets, zero at the start,
    and ``decode`` is ``clamp(x + upsample(z), 0, 1)`` with ``x`` the input (kept in ``aux``) and a
    bicubic upsampling to the image size.

    A change is then smooth at the scale of a grid cell (``input_size / grid`` pixels): it can
    brighten or darken a region (an opacity taken away, a shadow filled in) but cannot draw the
    pixel-fine textures that flip a classifier without changing what a reader sees. ``D(E(x)) ==
    x`` exactly (no reconstruction error). The clamp is straight-through (see ``pixel``).

    Args:
        input_size: Side of the square images.
        grid: Cells per side of the offset grid (28 at 224 px: 8-pixel cells).
    """

    def __init__(self, input_size: int = 224, grid: int = 28) -> None:
        super().__init__()
        self.input_size = int(input_size)
        self.grid = int(grid)
        if not 1 <= self.grid <= self.input_size:
            raise ValueError(f"grid must be in 1..input_size ({self.input_size}), got {grid}")

    def encode(self, x: Tensor) -> Latent:
        """``(B, 1, S, S)`` images -> zero offsets ``(B, 1, g, g)``, the image in ``aux``."""
        x = x.detach().float()
        return Latent(x.new_zeros(x.shape[0], 1, self.grid, self.grid), {"image": x.clone()})

    def decode(self, latent: Latent) -> Tensor:
        """``clamp(x + upsample(z), 0, 1)``, ``(B, 1, S, S)``; differentiable in ``z``."""
        x = latent.aux["image"]
        up = F.interpolate(latent.z, size=x.shape[-2:], mode="bicubic", align_corners=False)
        return clamp01_straight_through(x + up)


@hookimpl
def xcf_register_latent_models(register) -> None:
    register("pixel", PixelLatent,
             description="no latent model: z = x, decode = clamp to [0, 1] (straight-through); "
                         "the objective optimized on pixels (benchmark baseline)")
    register("smooth", SmoothLatent,
             description="no learned model: z is a coarse grid of brightness offsets (8-px cells at "
                         "224 px) added to the image, so every change is smooth")
