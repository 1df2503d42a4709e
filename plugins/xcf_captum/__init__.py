"""Built-in attribution-family saliency methods on captum: ``integrated-gradients``, ``saliency``,
``smoothgrad``, ``occlusion``, and ``saliency-in-gradcam++`` (the gradient confined to the seed's
Grad-CAM++ mask, :mod:`xcf_captum.gated`).

Each computes a captum attribution of the target logit and shares the post-processing of
:class:`~xcf_captum.base.AttributionSaliency` (absolute value, Gaussian smoothing of ``sigma``
pixels, per-image min-max to [0, 1]). captum is imported when a method is called, not here.
"""

from __future__ import annotations

from xcf import hookimpl

from .base import AttributionSaliency, gaussian_smooth, minmax_normalize, postprocess
from .gated import GatedSaliency
from .gradient import VanillaGradient
from .integrated_gradients import IntegratedGradients
from .occlusion import Occlusion
from .smoothgrad import SmoothGrad

__all__ = [
    "AttributionSaliency",
    "GatedSaliency",
    "IntegratedGradients",
    "VanillaGradient",
    "SmoothGrad",
    "Occlusion",
    "gaussian_smooth",
    "minmax_normalize",
    "postprocess",
]


@hookimpl
def xcf_register_saliency_methods(register) -> None:
    register("integrated-gradients", IntegratedGradients,
             description="Integrated Gradients (Sundararajan et al. 2017) of the target logit from a "
                         "black baseline, n_steps=50; |IG| smoothed (sigma px), min-max")
    register("saliency", VanillaGradient,
             description="vanilla gradient saliency (Simonyan et al. 2014): |d logit / d x|, "
                         "smoothed (sigma px), min-max")
    register("smoothgrad", SmoothGrad,
             description="SmoothGrad (Smilkov et al. 2017): mean |gradient| over nt_samples=25 noisy "
                         "copies (stdevs=0.15, seeded)")
    register("occlusion", Occlusion,
             description="occlusion (Zeiler & Fergus 2014): target-logit drop under a sliding black "
                         "window (1/8 of the side, stride 1/2 window); model-agnostic")
    register("saliency-in-gradcam++", GatedSaliency,
             description="the vanilla gradient map kept only inside Grad-CAM++ > 0.5 (the seed's "
                         "mask), rescaled to max 1: every region it gives lies in the seed's mask")
