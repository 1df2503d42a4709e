"""Occlusion (Zeiler & Fergus, "Visualizing and Understanding Convolutional Networks", ECCV 2014)."""

from __future__ import annotations

from torch import Tensor

from xcf import Classifier
from xcf.errors import ConfigError

from .base import AttributionSaliency, check_count

__all__ = ["Occlusion"]


class Occlusion(AttributionSaliency):
    """How much the target logit drops when a square window of the image is replaced by a constant.

    ``captum.attr.Occlusion`` slides a ``window`` x ``window`` patch set to ``baseline`` with step
    ``stride``; each pixel gets the mean logit change of the windows that cover it (Zeiler & Fergus,
    "Visualizing and Understanding Convolutional Networks", ECCV 2014). Gradient-free: it works for
    any classifier. The default window is 1/8 of the image side with a stride of half a window
    (28 px / 14 px at 224 px: 15 x 15 = 225 occluded copies per image). Pixels no window covers
    (when ``side - window`` is not a multiple of ``stride``) get zero attribution.

    Args:
        window: Side of the occluding square in pixels; ``None``: ``max(1, side // 8)``.
        stride: Step between windows in pixels; ``None``: ``max(1, window // 2)``.
        baseline: Value written into the window, in ``[0, 1]`` units (0: black).
        perturbations_per_eval: Occluded copies evaluated in one forward pass.
        sigma: Smoothing in pixels (see :class:`~xcf_captum.base.AttributionSaliency`).
    """

    def __init__(self, window: int | None = None, stride: int | None = None, baseline: float = 0.0,
                 perturbations_per_eval: int = 16, sigma: float = 4.0) -> None:
        super().__init__(sigma=sigma)
        self.window = check_count("window", window, optional=True)
        self.stride = check_count("stride", stride, optional=True)
        self.baseline = float(baseline)
        self.perturbations_per_eval = check_count("perturbations_per_eval", perturbations_per_eval)

    def window_and_stride(self, height: int, width: int) -> tuple[int, int]:
        """The window side and stride used for a ``height`` x ``width`` image."""
        window = self.window if self.window is not None else max(1, min(height, width) // 8)
        if window > min(height, width):
            raise ConfigError(f"occlusion window {window} px is larger than the image "
                              f"({height}x{width}); use window <= {min(height, width)}")
        stride = self.stride if self.stride is not None else max(1, window // 2)
        return window, stride

    def attribute(self, classifier: Classifier, x: Tensor, targets: Tensor) -> Tensor:
        from captum.attr import Occlusion as CaptumOcclusion

        window, stride = self.window_and_stride(x.shape[-2], x.shape[-1])
        return CaptumOcclusion(classifier).attribute(
            x, sliding_window_shapes=(1, window, window), strides=(1, stride, stride),
            baselines=self.baseline, target=targets,
            perturbations_per_eval=self.perturbations_per_eval)

    def _params(self) -> dict[str, object]:
        return {"window": self.window, "stride": self.stride, "baseline": self.baseline,
                "perturbations_per_eval": self.perturbations_per_eval, **super()._params()}
