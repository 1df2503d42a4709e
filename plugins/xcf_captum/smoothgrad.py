"""SmoothGrad (Smilkov et al., "SmoothGrad: removing noise by adding noise", 2017)."""

from __future__ import annotations

import torch
from torch import Tensor

from xcf import Classifier

from .base import AttributionSaliency, check_count, check_positive, seeded

__all__ = ["SmoothGrad"]


class SmoothGrad(AttributionSaliency):
    """The mean of ``|d logit_t / dx|`` over noisy copies of the image.

    ``captum.attr.NoiseTunnel`` over ``captum.attr.Saliency`` (``abs=True``) with
    ``nt_type="smoothgrad"``: ``nt_samples`` copies ``x + N(0, stdevs^2)`` (Smilkov, Thorat, Kim,
    Viégas & Wattenberg, "SmoothGrad: removing noise by adding noise", arXiv:1706.03825, 2017; they
    recommend a noise level of 10-20 % of the input range, and images here span [0, 1]).

    With an integer ``seed`` (the default) each sample's noise is drawn from a generator seeded with
    ``seed``, one sample at a time: the map is deterministic, the same whether the image is explained
    alone or in a batch, and the global random state is left untouched. ``seed=None`` draws from the
    global generator in one batched call (faster for large batches, not reproducible).

    Args:
        nt_samples: Noisy copies per image (``B * nt_samples`` forward and backward passes).
        stdevs: Standard deviation of the Gaussian noise, in ``[0, 1]`` image units.
        nt_samples_batch_size: Evaluate at most this many noisy copies at once (``None``: all).
        seed: Seed of the noise, or ``None`` for the global generator.
        sigma: Smoothing in pixels (see :class:`~xcf_captum.base.AttributionSaliency`).
    """

    def __init__(self, nt_samples: int = 25, stdevs: float = 0.15, nt_samples_batch_size: int | None = None,
                 seed: int | None = 0, sigma: float = 4.0) -> None:
        super().__init__(sigma=sigma)
        self.nt_samples = check_count("nt_samples", nt_samples)
        self.stdevs = check_positive("stdevs", stdevs, allow_zero=True)
        self.nt_samples_batch_size = check_count("nt_samples_batch_size", nt_samples_batch_size,
                                                 optional=True)
        self.seed = None if seed is None else int(seed)

    def attribute(self, classifier: Classifier, x: Tensor, targets: Tensor) -> Tensor:
        from captum.attr import NoiseTunnel, Saliency

        tunnel = NoiseTunnel(Saliency(classifier))

        def run(xb: Tensor, tb: Tensor) -> Tensor:
            return tunnel.attribute(
                xb.requires_grad_(True), nt_type="smoothgrad", nt_samples=self.nt_samples,
                nt_samples_batch_size=self.nt_samples_batch_size, stdevs=self.stdevs, target=tb,
                abs=True)

        if self.seed is None:
            return run(x, targets)
        parts = []
        for i in range(x.shape[0]):
            with seeded(self.seed, x.device):
                parts.append(run(x[i:i + 1].detach().clone(), targets[i:i + 1]))
        return torch.cat(parts)

    def _params(self) -> dict[str, object]:
        return {"nt_samples": self.nt_samples, "stdevs": self.stdevs,
                "nt_samples_batch_size": self.nt_samples_batch_size, "seed": self.seed,
                **super()._params()}
