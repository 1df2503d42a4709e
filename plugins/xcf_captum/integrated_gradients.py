"""Integrated Gradients (Sundararajan et al., "Axiomatic Attribution for Deep Networks", ICML 2017)."""

from __future__ import annotations

from torch import Tensor

from xcf import Classifier

from .base import AttributionSaliency, check_count

__all__ = ["IntegratedGradients"]


class IntegratedGradients(AttributionSaliency):
    """Integrated Gradients of the target logit, through ``captum.attr.IntegratedGradients``.

    ``IG_i(x) = (x_i - x'_i) * integral_0^1 d logit_t(x' + a (x - x')) / dx_i da`` from a constant
    baseline image ``x'`` (default black, 0), approximated with ``n_steps`` Gauss-Legendre points
    (Sundararajan, Taly & Yan, "Axiomatic Attribution for Deep Networks", ICML 2017). The signed
    attribution is then post-processed by :class:`~xcf_captum.base.AttributionSaliency`.

    Args:
        n_steps: Points of the path integral (``B * n_steps`` classifier evaluations).
        baseline: Value of the constant baseline image, in ``[0, 1]`` units.
        internal_batch_size: Evaluate the path in chunks of at most this many images (saves
            memory); ``None``: all ``B * n_steps`` at once.
        sigma: Smoothing in pixels (see :class:`~xcf_captum.base.AttributionSaliency`).
    """

    def __init__(self, n_steps: int = 50, baseline: float = 0.0, internal_batch_size: int | None = None,
                 sigma: float = 4.0) -> None:
        super().__init__(sigma=sigma)
        self.n_steps = check_count("n_steps", n_steps)
        self.baseline = float(baseline)
        self.internal_batch_size = check_count("internal_batch_size", internal_batch_size, optional=True)

    def attribute(self, classifier: Classifier, x: Tensor, targets: Tensor) -> Tensor:
        from captum.attr import IntegratedGradients as CaptumIntegratedGradients

        return CaptumIntegratedGradients(classifier).attribute(
            x.requires_grad_(True), baselines=self.baseline, target=targets, n_steps=self.n_steps,
            internal_batch_size=self.internal_batch_size)

    def _params(self) -> dict[str, object]:
        return {"n_steps": self.n_steps, "baseline": self.baseline,
                "internal_batch_size": self.internal_batch_size, **super()._params()}

