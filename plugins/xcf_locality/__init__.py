"""Built-in locality losses: ``masked-l2`` (the seed's), ``masked-l1``, ``soft-mask``, ``global``."""

from __future__ import annotations

from xcf import hookimpl

from .losses import GlobalL2, MaskedL1, MaskedL2, SoftMask

__all__ = ["MaskedL2", "MaskedL1", "SoftMask", "GlobalL2"]


@hookimpl
def xcf_register_locality_losses(register) -> None:
    register("masked-l2", MaskedL2,
             description="seed's loss: mean squared change, weight outside_weight (1e5) outside saliency > threshold, 1 inside")
    register("masked-l1", MaskedL1,
             description="as masked-l2 with absolute change (sparser edits)")
    register("soft-mask", SoftMask,
             description="per-pixel weight interpolated between outside_weight and 1 by the continuous saliency map")
    register("global", GlobalL2,
             description="plain mean squared change everywhere (no locality; benchmark baseline)")
