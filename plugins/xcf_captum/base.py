"""Template of the gradient (attribution) family: a captum attribution, then shared post-processing.

:class:`AttributionSaliency` freezes the classifier (:func:`xcf.optimize.frozen`), enables autograd,
asks the subclass for a raw per-pixel attribution of the target *logits* (one target per sample)
and post-processes it as practitioners expect::

    raw (B, 1, H, W)  ->  |raw|  ->  Gaussian smoothing (sigma px)  ->  per-image min-max to [0, 1]

An all-zero (or constant) map becomes all-zero, never NaN. The classifier's training flags,
``requires_grad`` and ``.grad`` are restored on every exit path, and the caller's ``x`` is never
modified (subclasses receive a detached copy). captum is imported by the subclasses inside the
call, so listing plugins does not import it.
"""

from __future__ import annotations

import abc
import contextlib
import math
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor

from xcf import Classifier, SaliencyMethod
from xcf.errors import ConfigError, InvalidImageError, UnknownLabelError
from xcf.optimize import frozen

__all__ = ["AttributionSaliency", "gaussian_kernel1d", "gaussian_smooth", "minmax_normalize",
           "postprocess", "seeded"]

#: Kernel radius in standard deviations (as ``scipy.ndimage.gaussian_filter``'s ``truncate``).
TRUNCATE = 4.0


def gaussian_kernel1d(sigma: float, radius: int, *, dtype: torch.dtype = torch.float32,
                      device: torch.device | str | None = None) -> Tensor:
    """A normalized 1-D Gaussian kernel.

    Args:
        sigma: Standard deviation in pixels, ``> 0``.
        radius: Half width; the kernel has ``2 * radius + 1`` taps.

    Returns:
        ``(2 * radius + 1,)`` non-negative, summing to 1.
    """
    t = torch.arange(-radius, radius + 1, dtype=torch.float64)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    return (k / k.sum()).to(dtype=dtype, device=device)


def gaussian_smooth(maps: Tensor, sigma: float, truncate: float = TRUNCATE) -> Tensor:
    """Separable Gaussian blur with reflect padding (``torch``'s ``"reflect"``: ``d c b | a b c d``).

    The radius is ``int(truncate * sigma + 0.5)`` taps, capped at ``H - 1`` (``W - 1``) per axis
    because reflect padding cannot exceed the image; a capped kernel is renormalized.

    Args:
        maps: ``(B, C, H, W)``.
        sigma: Standard deviation in pixels; ``0`` returns ``maps`` unchanged.
        truncate: Radius in standard deviations.

    Returns:
        ``(B, C, H, W)``, same dtype; a non-negative input stays non-negative.
    """
    if sigma <= 0:
        return maps
    B, C, H, W = maps.shape
    radius = int(truncate * sigma + 0.5)
    out = maps.reshape(B * C, 1, H, W)
    rx, ry = min(radius, W - 1), min(radius, H - 1)
    if rx > 0:
        k = gaussian_kernel1d(sigma, rx, dtype=out.dtype, device=out.device)
        out = F.conv2d(F.pad(out, (rx, rx, 0, 0), mode="reflect"), k.view(1, 1, 1, -1))
    if ry > 0:
        k = gaussian_kernel1d(sigma, ry, dtype=out.dtype, device=out.device)
        out = F.conv2d(F.pad(out, (0, 0, ry, ry), mode="reflect"), k.view(1, 1, -1, 1))
    return out.reshape(B, C, H, W)


def minmax_normalize(maps: Tensor) -> Tensor:
    """Per-image min-max of ``(B, C, H, W)`` maps to ``[0, 1]``; a constant map becomes all-zero."""
    flat = maps.flatten(1)
    lo = flat.min(dim=1).values.view(-1, 1, 1, 1)
    hi = flat.max(dim=1).values.view(-1, 1, 1, 1)
    span = hi - lo
    safe = span.clamp_min(torch.finfo(maps.dtype).tiny)
    out = torch.where(span > 0, (maps - lo) / safe, torch.zeros_like(maps))
    return out.clamp_(0, 1)


def postprocess(attributions: Tensor, sigma: float) -> Tensor:
    """The family's post-processing: absolute value, Gaussian smoothing, per-image min-max.

    Args:
        attributions: ``(B, 1, H, W)`` raw (signed) attributions.
        sigma: Smoothing standard deviation in pixels (``0``: none).

    Returns:
        ``(B, 1, H, W)`` float32 in ``[0, 1]``.
    """
    maps = attributions.detach().float().abs()
    return minmax_normalize(gaussian_smooth(maps, sigma))


@contextlib.contextmanager
def seeded(seed: int, device: torch.device) -> Iterator[None]:
    """Seed the random generator of ``device`` for the block and restore its state afterwards."""
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        with torch.random.fork_rng(devices=[index], device_type="cuda"), torch.cuda.device(index):
            torch.cuda.manual_seed(seed)
            yield
    elif device.type == "cpu":
        with torch.random.fork_rng(devices=[]):
            torch.random.default_generator.manual_seed(seed)
            yield
    else:
        with torch.random.fork_rng(device_type=device.type):
            torch.manual_seed(seed)
            yield


def check_positive(name: str, value: float, *, allow_zero: bool = False) -> float:
    """``value`` as a float, or a ConfigError naming ``name`` when it is not finite and positive."""
    v = float(value)
    if not math.isfinite(v) or v < 0 or (v == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ConfigError(f"{name} must be a finite number {bound}, got {value!r}")
    return v


def check_count(name: str, value: int | None, *, optional: bool = False) -> int | None:
    """``value`` as an int >= 1 (or ``None`` when ``optional``), else a ConfigError."""
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{name} must be an integer >= 1{' or None' if optional else ''}, got {value!r}")
    return value


class AttributionSaliency(SaliencyMethod):
    """Template of the attribution family: subclasses implement :meth:`attribute` only.

    Args:
        sigma: Standard deviation in pixels (of the classifier's input) of the Gaussian smoothing
            applied to ``|attribution|``; ``0`` disables it. Pixel-level gradients are speckled, and
            the masks drawn from them (``saliency > 0.5``) are then scattered dots; the default 4 px
            (about 2 % of a 224 px image) joins them into regions.
    """

    def __init__(self, sigma: float = 4.0) -> None:
        self.sigma = check_positive("sigma", sigma, allow_zero=True)

    @abc.abstractmethod
    def attribute(self, classifier: Classifier, x: Tensor, targets: Tensor) -> Tensor:
        """The raw captum attribution of each sample's target logit.

        Called with the classifier frozen (eval mode, ``requires_grad=False``) and autograd enabled.

        Args:
            classifier: Returns logits ``(B, K)``; attribute these, not probabilities.
            x: ``(B, 1, H, W)`` a detached copy of the input in ``[0, 1]`` (free to modify, e.g.
                ``requires_grad_()``).
            targets: ``(B,)`` long on ``x``'s device, one logit index per sample.

        Returns:
            ``(B, 1, H, W)`` signed attributions.
        """

    def raw_map(self, classifier: Classifier, x: Tensor, targets: Tensor) -> Tensor:
        """The attribution before post-processing.

        Args:
            classifier: The classifier to explain; left exactly as it was.
            x: ``(B, 1, H, W)`` canonical images in ``[0, 1]``.
            targets: ``(B,)`` long, one finding index per sample.

        Returns:
            ``(B, 1, H, W)`` float32, detached, signed.
        """
        targets = self._check_inputs(classifier, x, targets)
        with frozen(classifier), torch.enable_grad():
            raw = self.attribute(classifier, x.detach().clone(), targets)
        if tuple(raw.shape) != tuple(x.shape):
            raise RuntimeError(f"{type(self).__name__}.attribute returned shape {tuple(raw.shape)}, "
                               f"expected {tuple(x.shape)}")
        return raw.detach().float()

    def __call__(self, classifier: Classifier, x: Tensor, targets: Tensor) -> Tensor:
        """Saliency maps ``(B, 1, H, W)`` float32 in ``[0, 1]`` (see :func:`postprocess`)."""
        return postprocess(self.raw_map(classifier, x, targets), self.sigma)

    @staticmethod
    def _check_inputs(classifier: Classifier, x: Tensor, targets: Tensor) -> Tensor:
        if not isinstance(x, Tensor) or x.ndim != 4 or x.shape[1] != 1:
            shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise InvalidImageError(f"saliency input must be a (B, 1, H, W) tensor, got {shape}")
        targets = torch.as_tensor(targets, device=x.device)
        if targets.ndim != 1 or targets.shape[0] != x.shape[0]:
            raise ConfigError(f"targets must have shape ({x.shape[0]},), one finding index per sample, "
                              f"got {tuple(targets.shape)}")
        if targets.dtype.is_floating_point or targets.dtype == torch.bool:
            raise ConfigError(f"targets must be integer finding indices, got dtype {targets.dtype}")
        targets = targets.long()
        K = len(getattr(classifier, "labels", ()) or ())
        if K and targets.numel() and (int(targets.min()) < 0 or int(targets.max()) >= K):
            raise UnknownLabelError(f"targets {targets.tolist()} out of range; valid: 0..{K - 1} "
                                    f"({', '.join(classifier.labels)})")
        return targets

    def _params(self) -> dict[str, object]:
        return {"sigma": self.sigma}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self._params().items())
        return f"{type(self).__name__}({args})"
