"""Class activation maps: one template, each variant supplies its weighting.

:class:`CAM` runs the classifier with a forward hook on ``classifier.cam_layer()``, differentiates
the target logits (not probabilities) with respect to the activations ``A`` ``(B, C, h, w)``, asks the
variant for an element-wise map ``M (B, h, w)``, then post-processes as practitioners expect:
``ReLU``, bilinear upsampling to the input size, per-image min-max to [0, 1] (an all-zero map stays
zero). The hook is removed and the classifier's flags restored on every exit path.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from xcf import Classifier, SaliencyMethod
from xcf.errors import ComponentError
from xcf.optimize import frozen


def normalize_maps(maps: Tensor, size: tuple[int, int]) -> Tensor:
    """ReLU, bilinear upsampling to ``size`` and per-image min-max of ``(B, h, w)`` maps.

    Returns:
        ``(B, 1, H, W)`` in [0, 1]; constant maps become all-zero.
    """
    maps = F.relu(maps).unsqueeze(1).float()
    maps = F.interpolate(maps, size=size, mode="bilinear", align_corners=False)
    flat = maps.flatten(1)
    lo = flat.min(dim=1).values.view(-1, 1, 1, 1)
    hi = flat.max(dim=1).values.view(-1, 1, 1, 1)
    span = hi - lo
    out = torch.where(span > 0, (maps - lo) / span.clamp_min(torch.finfo(maps.dtype).tiny), torch.zeros_like(maps))
    return out.clamp_(0, 1)


class CAM(SaliencyMethod):
    """Template of the CAM family. Subclasses override :meth:`channel_weights` or :meth:`weighted_map`."""

    def activations_and_gradients(self, classifier: Classifier, x: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
        """``A`` and ``dlogit_target / dA``, each ``(B, C, h, w)``, detached."""
        layer = classifier.cam_layer()
        if layer is None:
            raise ComponentError(
                f"{type(classifier).__name__}.cam_layer() returned None; CAM-family saliency needs a "
                "feature block (use a gradient method such as 'saliency' or 'integrated-gradients')")
        captured: list[Tensor] = []

        versions: list[int] = []

        def hook(_module, _inputs, output):
            captured.append(output)
            first = output[0] if isinstance(output, (tuple, list)) else output
            versions.append(first._version)

        handle = layer.register_forward_hook(hook)
        try:
            with frozen(classifier), torch.enable_grad():
                xin = x.detach().clone().requires_grad_(True)  # builds the graph with frozen params
                logits = classifier(xin)
                if not captured:
                    raise ComponentError(f"cam_layer() of {type(classifier).__name__} was not called in forward()")
                acts = captured[-1]
                if isinstance(acts, (tuple, list)):
                    acts = acts[0]
                if acts._version != versions[-1]:
                    raise ComponentError(
                        f"the output of {type(classifier).__name__}.cam_layer() is modified in place later in "
                        "forward() (e.g. DenseNet's norm5 followed by an in-place ReLU), so its activations "
                        "and gradients are wrong; return the block before it")
                score = logits[torch.arange(logits.shape[0], device=logits.device), targets.to(logits.device)]
                (grads,) = torch.autograd.grad(score.sum(), acts)
        finally:
            handle.remove()
        return acts.detach().float(), grads.detach().float()

    def channel_weights(self, acts: Tensor, grads: Tensor) -> Tensor:
        """``(B, C)`` weight of each activation channel."""
        raise NotImplementedError

    def weighted_map(self, acts: Tensor, grads: Tensor) -> Tensor:
        """``(B, h, w)`` map before ReLU; default ``sum_c w_c A_c``."""
        w = self.channel_weights(acts, grads)
        return (w[:, :, None, None] * acts).sum(dim=1)

    def raw_map(self, classifier: Classifier, x: Tensor, targets: Tensor) -> Tensor:
        """The map at the layer's resolution, before ReLU/upsampling/normalization: ``(B, h, w)``."""
        acts, grads = self.activations_and_gradients(classifier, x, targets)
        return self.weighted_map(acts, grads)

    def __call__(self, classifier: Classifier, x: Tensor, targets: Tensor) -> Tensor:
        return normalize_maps(self.raw_map(classifier, x, targets), tuple(x.shape[-2:]))

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class GradCAM(CAM):
    """Grad-CAM: ``w_c = mean_ij dy/dA_cij`` (Selvaraju et al., "Grad-CAM: Visual Explanations from
    Deep Networks via Gradient-based Localization", ICCV 2017)."""

    def channel_weights(self, acts: Tensor, grads: Tensor) -> Tensor:
        return grads.mean(dim=(2, 3))


class GradCAMPlusPlus(CAM):
    """Grad-CAM++ (Chattopadhay et al., "Grad-CAM++: Improved Visual Explanations for Deep
    Convolutional Networks", WACV 2018), with the exponential-output assumption as commonly
    implemented::

        alpha_cij = g^2 / (2 g^2 + sum_ab A_cab * g^3 + eps),   alpha = 0 where g == 0
        w_c = sum_ij alpha_cij * relu(g_cij)

    Args:
        eps: The stabilizing term in alpha's denominator (1e-6 as in common implementations; the map
            depends on it when gradients are small).
    """

    def __init__(self, eps: float = 1e-6) -> None:
        self.eps = float(eps)

    def channel_weights(self, acts: Tensor, grads: Tensor) -> Tensor:
        g2 = grads.pow(2)
        g3 = grads.pow(3)
        sum_a = acts.sum(dim=(2, 3), keepdim=True)
        alpha = g2 / (2 * g2 + sum_a * g3 + self.eps)
        alpha = torch.where(grads != 0, alpha, torch.zeros_like(alpha))
        return (alpha * F.relu(grads)).sum(dim=(2, 3))


class HiResCAM(CAM):
    """HiResCAM: ``M = sum_c g_c * A_c`` element-wise (Draelos & Carin, "Use HiResCAM instead of
    Grad-CAM for faithful explanations of convolutional neural networks", 2020)."""

    def weighted_map(self, acts: Tensor, grads: Tensor) -> Tensor:
        return (grads * acts).sum(dim=1)
