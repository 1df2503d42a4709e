"""The ``pixel`` latent model: no latent model at all, the optimizer works on the pixels.

With it, xcf's objective (the seed's: locality loss + classification term) is minimized directly
over the image, which is the benchmarks' ``pixel`` baseline: it shows what a learned latent space
buys in realism (an unconstrained pixel search finds adversarial-looking edits that flip the
classifier), and it has no reconstruction error (``D(E(x)) == x``).
"""

from __future__ import annotations

from torch import Tensor

from xcf import Latent, LatentModel, hookimpl
from xcf.optimize import clamp01_straight_through

__all__ = ["PixelLatent"]


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


@hookimpl
def xcf_register_latent_models(register) -> None:
    register("pixel", PixelLatent,
             description="no latent model: z = x, decode = clamp to [0, 1] (straight-through); "
                         "the objective optimized on pixels (benchmark baseline)")
