"""Built-in CAM-family saliency methods: ``gradcam``, ``gradcam++``, ``hirescam``."""

from __future__ import annotations

from xcf import hookimpl

from .cam import CAM, GradCAM, GradCAMPlusPlus, HiResCAM

__all__ = ["CAM", "GradCAM", "GradCAMPlusPlus", "HiResCAM"]


@hookimpl
def xcf_register_saliency_methods(register) -> None:
    register("gradcam", GradCAM, description="Grad-CAM (Selvaraju et al. 2017) on the classifier's cam_layer()")
    register("gradcam++", GradCAMPlusPlus,
             description="Grad-CAM++ (Chattopadhay et al. 2018), the seed's saliency method")
    register("hirescam", HiResCAM, description="HiResCAM (Draelos & Carin 2020): element-wise gradient x activation")
