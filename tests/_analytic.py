"""Tiny analytic components with known answers, shared by the tests."""

from __future__ import annotations

import torch
from torch import Tensor, nn

import xcf


class IdentityLatent(xcf.LatentModel):
    """``z = x``; ``decode(z) = z``: the optimizer then works on pixels."""

    def __init__(self, input_size: int = 32) -> None:
        super().__init__()
        self.input_size = input_size

    def encode(self, x: Tensor) -> xcf.Latent:
        return xcf.Latent(x.clone())

    def decode(self, latent: xcf.Latent) -> Tensor:
        return latent.z


class RegionClassifier(xcf.Classifier):
    """Logit k = gain * (mean of x over region k - 0.5): reads only its region."""

    def __init__(self, regions: list[tuple[int, int, int, int]] | None = None, input_size: int = 32,
                 gain: float = 20.0) -> None:
        super().__init__()
        self.input_size = input_size
        self.regions = regions or [(8, 16, 8, 16), (20, 28, 4, 12)]
        self.labels = tuple(f"finding{k}" for k in range(len(self.regions)))
        self.gain = nn.Parameter(torch.tensor(gain))
        self.conv = nn.Conv2d(1, 1, 1)  # unused in forward; lets tests check state restoration

    def forward(self, x: Tensor) -> Tensor:
        outs = [x[:, 0, r0:r1, c0:c1].mean(dim=(1, 2)) for r0, r1, c0, c1 in self.regions]
        return self.gain * (torch.stack(outs, dim=1) - 0.5)


class BoxSaliency(xcf.SaliencyMethod):
    """Saliency 1 inside the target's region of a RegionClassifier, 0 elsewhere."""

    def __call__(self, classifier, x, targets):
        out = torch.zeros_like(x)
        for b, t in enumerate(targets.tolist()):
            r0, r1, c0, c1 = classifier.regions[t]
            out[b, 0, r0:r1, c0:c1] = 1.0
        return out


def region_image(n: int = 1, size: int = 32, value: float = 0.8, seed: int = 0) -> Tensor:
    g = torch.Generator().manual_seed(seed)
    x = 0.3 + 0.1 * torch.rand(n, 1, size, size, generator=g)
    x[:, :, 8:16, 8:16] = value
    x[:, :, 20:28, 4:12] = value
    return x


# -- methods from the former flat settings -----------------------------------------------------

_PART_FIELDS = {
    "mask_threshold": "objective__mask_threshold",
    "outside_weight": "objective__outside_weight",
    "classification_weight": "objective__classification_weight",
    "stop_off_target": "stop__off_target",
    "autocast_bf16": "execution__autocast_bf16",
    "channels_last": "execution__channels_last",
    "fold_batchnorm": "execution__fold_batchnorm",
    "blend": "blend__kind",
    "feather": "blend__feather",
    "region_thresholds": "region__levels",
    "saliency": "region__saliency",
    "region_fallback": "region__fallback",
    "level_steps": "region__level_steps",
    "level_warm_start": "region__warm_start",
    "level_lr_scale": "region__lr_growth",
}
_SHARED = {"steps", "lr", "stop_probability", "decision_threshold", "seed", "device", "batch_size"}


def method_with(base: str = "seed", **settings):
    """``(method, config)`` for an Explainer: the registered method ``base`` with settings named as
    the tests name them (``blend="residual"``, ``region_thresholds=(0.5, 0.2)``, ...; see the docs'
    Configuration page for where each lives), shared settings (``steps``, ``lr``, ...) in the config."""
    import xcf

    changes = {}
    for key, value in settings.items():
        if key in _SHARED:
            continue
        if key == "classification_loss":
            changes["objective__stable"] = value == "mse-stable"
        elif key == "detail_gate":
            changes["detail_gate"] = value
        else:
            changes[_PART_FIELDS[key]] = value
    method = xcf.get_method(base)
    if changes:
        method = method.replace(name=f"{base}-variant", **changes)
    return method, xcf.ExplainConfig(**{k: v for k, v in settings.items() if k in _SHARED})
