"""Metrics of counterfactual explanations and of saliency localization.

Everything here is pure torch and batched: each function takes a batch and returns one value per
sample, a tensor of shape ``(B,)``. No value ever depends on another sample of the batch, so a
metric computed on a concatenated batch equals the metrics computed on its parts.

Conventions (the canonical ones of xcf):

- images ``x``: float ``(B, C, H, W)`` in ``[0, 1]`` (``C == 1`` in xcf; any ``C`` works and is
  reduced over together with ``H`` and ``W``);
- masks: ``torch.bool`` of the images' shape, or broadcastable to it (e.g. ``(B, 1, H, W)`` masks
  for ``(B, C, H, W)`` images, or one ``(1, 1, H, W)`` mask for the whole batch);
- probabilities ``p``: float ``(B, K)`` in ``[0, 1]`` (sigmoid outputs, multi-label);
- targets: ``torch.long`` ``(B,)``, the index of the finding explained in each sample.

Notation: ``Δx = x_cf - x_ref`` per pixel, ``Δp = p_cf - p_ref`` per finding, ``t = targets[b]``.

Real-valued results are ``torch.float32`` on the inputs' device (sums are accumulated in float64,
except on MPS, which has no float64); yes/no results are ``torch.bool``. A value that is undefined
for a sample (a share of no change at all, an IoU of two empty masks, a mean over an empty region)
is ``NaN``; :func:`summarize` leaves NaNs out and reports how many there were.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "validity",
    "target_drop",
    "off_target_change",
    "reconstruction_shift",
    "proximity_l1",
    "proximity_l2",
    "share_inside",
    "mask_area",
    "dilate",
    "iou",
    "change_iou",
    "pointing_game",
    "saliency_pointing_game",
    "relevance_mass",
    "saliency_iou",
    "mae_inside_outside",
    "removal",
    "realism",
    "summarize",
    "explanation_metrics",
    "EXPLANATION_KEYS",
    "GT_KEYS",
    "TRUE_CF_KEYS",
]

#: Keys :func:`explanation_metrics` always returns, in this order.
EXPLANATION_KEYS: tuple[str, ...] = (
    "validity",
    "target_drop",
    "off_target_mean",
    "off_target_max",
    "reconstruction_shift",
    "l1",
    "l2",
    "share_in_mask_l1",
    "share_in_mask_l2",
    "mask_area",
)
#: Keys :func:`explanation_metrics` adds when it gets a ground-truth mask.
GT_KEYS: tuple[str, ...] = (
    "share_in_gt_l1",
    "share_in_gt_l2",
    "share_in_gt_dilated_l1",
    "iou_gt",
    "pointing_game",
)
#: Keys :func:`explanation_metrics` adds when it gets a ground-truth counterfactual.
TRUE_CF_KEYS: tuple[str, ...] = ("mae_true_inside", "mae_true_outside", "removal")

_OUT_DTYPE = torch.float32


# --------------------------------------------------------------------------------------------
# helpers


def _acc_dtype(device: torch.device) -> torch.dtype:
    """The dtype sums are accumulated in: float64, except on MPS (no float64 there)."""
    return torch.float32 if device.type == "mps" else torch.float64


def _check_images(*xs: Tensor, names: Sequence[str]) -> None:
    first = xs[0]
    for x, name in zip(xs, names, strict=True):
        if not isinstance(x, Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
        if x.dim() != 4:
            raise ValueError(f"{name} must have shape (B, C, H, W), got {tuple(x.shape)}")
        if not x.is_floating_point():
            raise TypeError(f"{name} must be a floating-point tensor, got {x.dtype}")
        if x.shape != first.shape:
            raise ValueError(
                f"{name} has shape {tuple(x.shape)}, expected {tuple(first.shape)} "
                f"(the shape of {names[0]})"
            )


def _as_mask(mask: Tensor, shape: torch.Size, name: str) -> Tensor:
    """``mask`` (bool) broadcast to ``shape`` (read-only view)."""
    if not isinstance(mask, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(mask).__name__}")
    if mask.dtype != torch.bool:
        raise TypeError(
            f"{name} must be a bool tensor, got {mask.dtype} (threshold a map first, e.g. s > 0.5)"
        )
    try:
        return mask.expand(shape)
    except RuntimeError:
        raise ValueError(
            f"{name} of shape {tuple(mask.shape)} does not broadcast to {tuple(shape)}"
        ) from None


def _check_mask4(mask: Tensor, name: str) -> None:
    if not isinstance(mask, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(mask).__name__}")
    if mask.dtype != torch.bool:
        raise TypeError(f"{name} must be a bool tensor, got {mask.dtype}")
    if mask.dim() != 4:
        raise ValueError(f"{name} must have shape (B, C, H, W), got {tuple(mask.shape)}")


def _check_probs(*ps: Tensor, targets: Tensor, names: Sequence[str]) -> Tensor:
    """Validate probabilities ``(B, K)`` and targets ``(B,)``; return targets as long."""
    first = ps[0]
    for p, name in zip(ps, names, strict=True):
        if not isinstance(p, Tensor) or p.dim() != 2:
            shape = tuple(p.shape) if isinstance(p, Tensor) else type(p).__name__
            raise ValueError(f"{name} must be a (B, K) tensor, got {shape}")
        if p.shape != first.shape:
            raise ValueError(
                f"{name} has shape {tuple(p.shape)}, expected {tuple(first.shape)} "
                f"(the shape of {names[0]})"
            )
    targets = torch.as_tensor(targets, device=first.device)
    if targets.dtype in (torch.bool,) or targets.is_floating_point() or targets.is_complex():
        raise TypeError(f"targets must be integer indices, got {targets.dtype}")
    if targets.shape != (first.shape[0],):
        raise ValueError(
            f"targets must have shape ({first.shape[0]},), got {tuple(targets.shape)}"
        )
    targets = targets.long()
    if targets.numel() and (int(targets.min()) < 0 or int(targets.max()) >= first.shape[1]):
        raise ValueError(f"targets must be in [0, {first.shape[1] - 1}], got {targets.tolist()}")
    return targets


def _at_target(p: Tensor, targets: Tensor) -> Tensor:
    return p.gather(1, targets[:, None])[:, 0]


def _abs_diff(x_cf: Tensor, x_ref: Tensor) -> Tensor:
    """``|x_cf - x_ref|`` in the accumulation dtype."""
    acc = _acc_dtype(x_cf.device)
    return (x_cf.to(acc) - x_ref.to(acc)).abs()


def _flat(x: Tensor) -> Tensor:
    return x.reshape(x.shape[0], -1)


def _ratio(num: Tensor, den: Tensor) -> Tensor:
    """``num / den`` with ``NaN`` where ``den == 0``."""
    return torch.where(den > 0, num / den.clamp_min(torch.finfo(den.dtype).tiny), math.nan)


def _masked_mean(values: Tensor, region: Tensor) -> Tensor:
    """Per-sample mean of ``values`` over ``region`` (same shape); ``NaN`` where it is empty."""
    v = _flat(values)
    r = _flat(region)
    return _ratio((v * r).sum(1), r.sum(1).to(v.dtype))


def _check_reference(reference: str) -> None:
    if reference not in ("reconstruction", "input"):
        raise ValueError(f"reference must be 'reconstruction' or 'input', got {reference!r}")


# --------------------------------------------------------------------------------------------
# classifier outputs


def validity(p_cf: Tensor, targets: Tensor, threshold: float | Tensor = 0.5) -> Tensor:
    """Whether each counterfactual no longer shows its target finding.

    ``valid[b] = p_cf[b, t] < threshold`` (strict: a probability exactly at the threshold is
    *not* valid).

    Args:
        p_cf: Probabilities of the counterfactuals, ``(B, K)`` in ``[0, 1]``.
        targets: Target finding per sample, ``(B,)`` long in ``[0, K)``.
        threshold: Decision threshold in ``[0, 1]``: 0.5 (the seed's criterion), or the
            explainer's stop probability. A float, or a ``(B,)`` tensor of per-sample thresholds.

    Returns:
        ``(B,)`` bool.
    """
    targets = _check_probs(p_cf, targets=targets, names=["p_cf"])
    return _at_target(p_cf, targets) < threshold


def target_drop(p_ref: Tensor, p_cf: Tensor, targets: Tensor) -> Tensor:
    """How much the target finding's probability fell.

    ``drop[b] = p_ref[b, t] - p_cf[b, t]``, in ``[-1, 1]``; positive when the counterfactual
    lowered the probability.

    Args:
        p_ref: Reference probabilities (of the reconstruction or of the input), ``(B, K)``.
        p_cf: Probabilities of the counterfactuals, ``(B, K)``.
        targets: ``(B,)`` long.

    Returns:
        ``(B,)`` float32.
    """
    targets = _check_probs(p_ref, p_cf, targets=targets, names=["p_ref", "p_cf"])
    return (_at_target(p_ref, targets) - _at_target(p_cf, targets)).to(_OUT_DTYPE)


def off_target_change(p_ref: Tensor, p_cf: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
    """How much the *other* findings moved (they should stay put).

    With ``O_b = {k : k != t}`` (``K - 1`` findings)::

        mean[b] = (1 / (K - 1)) * sum_{k in O_b} |p_cf[b, k] - p_ref[b, k]|
        max[b]  = max_{k in O_b} |p_cf[b, k] - p_ref[b, k]|

    both in ``[0, 1]``. With a single finding (``K == 1``) there is nothing else to move and both
    are 0.

    Args:
        p_ref: Reference probabilities, ``(B, K)``.
        p_cf: Probabilities of the counterfactuals, ``(B, K)``.
        targets: ``(B,)`` long.

    Returns:
        ``(mean, max)``, each ``(B,)`` float32.
    """
    targets = _check_probs(p_ref, p_cf, targets=targets, names=["p_ref", "p_cf"])
    k = p_ref.shape[1]
    delta = (p_cf - p_ref).abs()
    delta = delta.masked_fill(F.one_hot(targets, k).bool(), 0.0)
    mean = delta.sum(1) / max(k - 1, 1)
    biggest = delta.amax(1) if delta.numel() else delta.sum(1)
    return mean.to(_OUT_DTYPE), biggest.to(_OUT_DTYPE)


def reconstruction_shift(p_input: Tensor, p_recon: Tensor, targets: Tensor) -> Tensor:
    """How much the latent model's reconstruction alone moved the target finding.

    ``shift[b] = |p_input[b, t] - p_recon[b, t]|`` in ``[0, 1]``: the part of an "explanation"
    that is autoencoder error rather than counterfactual change (0.07 on average in the seed).

    Args:
        p_input: Probabilities of the inputs, ``(B, K)``.
        p_recon: Probabilities of the initial reconstructions ``x0 = D(E(x))``, ``(B, K)``.
        targets: ``(B,)`` long.

    Returns:
        ``(B,)`` float32.
    """
    targets = _check_probs(p_input, p_recon, targets=targets, names=["p_input", "p_recon"])
    return (_at_target(p_input, targets) - _at_target(p_recon, targets)).abs().to(_OUT_DTYPE)


# --------------------------------------------------------------------------------------------
# proximity and locality of the change


def proximity_l1(x_cf: Tensor, x_ref: Tensor) -> Tensor:
    """Mean absolute change per pixel.

    ``l1[b] = (1 / N) * sum_i |x_cf[b, i] - x_ref[b, i]|`` over the ``N = C * H * W`` pixels; in
    ``[0, 1]`` for images in ``[0, 1]``.

    Args:
        x_cf: Counterfactuals, ``(B, C, H, W)``.
        x_ref: Reference images (usually the reconstructions ``x0``), same shape.

    Returns:
        ``(B,)`` float32.
    """
    _check_images(x_cf, x_ref, names=["x_cf", "x_ref"])
    return _flat(_abs_diff(x_cf, x_ref)).mean(1).to(_OUT_DTYPE)


def proximity_l2(x_cf: Tensor, x_ref: Tensor) -> Tensor:
    """Root mean square change per pixel.

    ``l2[b] = sqrt((1 / N) * sum_i (x_cf[b, i] - x_ref[b, i])^2)`` over the ``N = C * H * W``
    pixels; in ``[0, 1]`` for images in ``[0, 1]``, and ``>= l1`` (a few large changes weigh more
    than many small ones).

    Args:
        x_cf: Counterfactuals, ``(B, C, H, W)``.
        x_ref: Reference images, same shape.

    Returns:
        ``(B,)`` float32.
    """
    _check_images(x_cf, x_ref, names=["x_cf", "x_ref"])
    return _flat(_abs_diff(x_cf, x_ref)).square().mean(1).sqrt().to(_OUT_DTYPE)


def share_inside(x_cf: Tensor, x_ref: Tensor, mask: Tensor, power: float = 1) -> Tensor:
    """Share of the change that lies inside a mask.

    ``share[b] = sum_{i in mask_b} |Δx_i|^power / sum_i |Δx_i|^power`` in ``[0, 1]``.

    ``power=1`` is the "L1 share" (every changed grey level counts the same), ``power=2`` the
    "squared share" (the share of the squared change, which the seed's loss penalizes; it weighs
    large changes more and lets many tiny changes outside the mask look smaller). Report both. The
    share is invariant to scaling ``Δx`` by a positive constant. It is undefined, ``NaN``, for a
    sample whose images are identical (no change at all).

    Args:
        x_cf: Counterfactuals, ``(B, C, H, W)``.
        x_ref: Reference images, same shape.
        mask: bool, the images' shape or broadcastable to it (``(B, 1, H, W)``, ``(1, 1, H, W)``).
        power: Exponent ``> 0`` applied to ``|Δx|``.

    Returns:
        ``(B,)`` float32 in ``[0, 1]``, ``NaN`` where there is no change.
    """
    _check_images(x_cf, x_ref, names=["x_cf", "x_ref"])
    if not power > 0:
        raise ValueError(f"power must be > 0, got {power}")
    m = _as_mask(mask, x_cf.shape, "mask")
    w = _flat(_abs_diff(x_cf, x_ref).pow(power))
    inside = (w * _flat(m)).sum(1)
    return _ratio(inside, w.sum(1)).clamp(0.0, 1.0).to(_OUT_DTYPE)


def mask_area(mask: Tensor) -> Tensor:
    """Fraction of the image a mask covers.

    ``area[b] = |mask_b| / N`` with ``N = C * H * W``, in ``[0, 1]``.

    Args:
        mask: bool ``(B, C, H, W)``.

    Returns:
        ``(B,)`` float32.
    """
    _check_mask4(mask, "mask")
    return _flat(mask).to(_acc_dtype(mask.device)).mean(1).to(_OUT_DTYPE)


def dilate(mask: Tensor, radius: int, shape: Literal["square", "disk"] = "square") -> Tensor:
    """Grow a mask by ``radius`` pixels (morphological dilation).

    ``out[i] = any_{j : |j - i| <= radius} mask[j]``, where the distance is

    - ``"square"`` (default): the Chebyshev distance ``max(|dy|, |dx|)``, i.e. a
      ``(2r+1) x (2r+1)`` square structuring element, computed with ``max_pool2d``
      (stride 1, padding ``r``, so the image border does not grow anything);
    - ``"disk"``: the Euclidean distance ``sqrt(dy^2 + dx^2)``, a digital disk, computed as a
      convolution with the disk.

    Each sample and channel is dilated on its own. ``radius=0`` returns a copy. The result always
    contains the mask (``mask ⊆ dilate(mask, r)``) and grows with ``r``.

    Args:
        mask: bool ``(B, C, H, W)``.
        radius: Non-negative integer, in pixels at the mask's resolution.
        shape: Structuring element, ``"square"`` or ``"disk"``.

    Returns:
        bool, the mask's shape.
    """
    _check_mask4(mask, "mask")
    if isinstance(radius, bool) or int(radius) != radius or radius < 0:
        raise ValueError(f"radius must be a non-negative integer, got {radius!r}")
    radius = int(radius)
    if shape not in ("square", "disk"):
        raise ValueError(f"shape must be 'square' or 'disk', got {shape!r}")
    if radius == 0 or mask.numel() == 0:
        return mask.clone()
    b, c, h, w = mask.shape
    m = mask.reshape(b * c, 1, h, w).to(torch.float32)
    if shape == "square":
        out = F.max_pool2d(m, kernel_size=2 * radius + 1, stride=1, padding=radius) > 0.5
    else:
        r = torch.arange(-radius, radius + 1, device=mask.device, dtype=torch.float32)
        disk = (r[:, None] ** 2 + r[None, :] ** 2) <= radius**2
        out = F.conv2d(m, disk.to(torch.float32)[None, None], padding=radius) > 0.5
    return out.reshape(b, c, h, w)


def iou(pred_mask: Tensor, gt_mask: Tensor) -> Tensor:
    """Intersection over union of two masks.

    ``iou[b] = |pred_b ∩ gt_b| / |pred_b ∪ gt_b|`` in ``[0, 1]``; symmetric, 1 for identical
    non-empty masks, 0 for disjoint ones. ``NaN`` when both masks are empty (undefined).

    Args:
        pred_mask: bool ``(B, C, H, W)``.
        gt_mask: bool, broadcastable to ``pred_mask``'s shape.

    Returns:
        ``(B,)`` float32.
    """
    _check_mask4(pred_mask, "pred_mask")
    gt = _flat(_as_mask(gt_mask, pred_mask.shape, "gt_mask"))
    pred = _flat(pred_mask)
    acc = _acc_dtype(pred.device)
    inter = (pred & gt).sum(1).to(acc)
    union = (pred | gt).sum(1).to(acc)
    return _ratio(inter, union).to(_OUT_DTYPE)


def _change_mask(
    d: Tensor, gt: Tensor, quantile: float | None, threshold: float | None
) -> Tensor:
    """Thresholded ``|Δx|`` (``d``, ``(B, N)``) by the rule of :func:`change_iou`."""
    if quantile is not None and threshold is not None:
        raise ValueError("give quantile or threshold, not both")
    if threshold is not None:
        return d > threshold
    if quantile is not None:
        if not 0.0 <= quantile <= 1.0:
            raise ValueError(f"quantile must be in [0, 1], got {quantile}")
        if d.shape[1] == 0:
            return d > 0
        q = torch.quantile(d, quantile, dim=1, keepdim=True)
        return d > q
    # area-matched: the k_b = |gt_b| largest changes (ties at the k-th value all included).
    k = gt.sum(1)
    if d.shape[1] == 0:
        return d > 0
    ordered = d.sort(dim=1, descending=True).values
    kth = ordered.gather(1, (k - 1).clamp_min(0)[:, None])
    return (d >= kth) & (d > 0) & (k > 0)[:, None]


def change_iou(
    x_cf: Tensor,
    x_ref: Tensor,
    gt_mask: Tensor,
    quantile: float | None = None,
    threshold: float | None = None,
) -> Tensor:
    """IoU of the changed region (thresholded ``|Δx|``) with a ground-truth mask.

    The changed region ``P_b`` is, by the first rule that applies:

    - ``threshold`` given: ``P_b = {i : |Δx_i| > threshold}`` (absolute, in grey levels);
    - ``quantile`` given: ``P_b = {i : |Δx_i| > q_b}`` where ``q_b`` is the ``quantile``-quantile
      of the sample's own ``|Δx|`` (``quantile=0.9`` keeps about the 10 % largest changes);
    - neither (default), *area-matched*: the ``k_b = |gt_b|`` pixels with the largest ``|Δx|``,
      i.e. ``P_b = {i : |Δx_i| >= v_b and |Δx_i| > 0}`` with ``v_b`` the ``k_b``-th largest
      ``|Δx|``. The area equals the ground truth's up to ties at ``v_b`` (which are all included)
      and pixels that did not change at all (never included). This needs no threshold and is
      fair across images whose changes differ in size.

    In every rule an unchanged pixel is never in ``P_b``, so identical images with an empty
    ground truth give ``NaN`` (:func:`iou` of two empty masks) and with a non-empty one give 0.

    Args:
        x_cf: Counterfactuals, ``(B, C, H, W)``.
        x_ref: Reference images, same shape.
        gt_mask: bool, broadcastable to the images' shape.
        quantile: Per-image quantile in ``[0, 1]``, or ``None``.
        threshold: Absolute threshold on ``|Δx|``, or ``None``. Not both.

    Returns:
        ``(B,)`` float32 in ``[0, 1]`` (``NaN`` as in :func:`iou`).
    """
    _check_images(x_cf, x_ref, names=["x_cf", "x_ref"])
    gt = _as_mask(gt_mask, x_cf.shape, "gt_mask")
    d = _flat(_abs_diff(x_cf, x_ref))
    pred = _change_mask(d, _flat(gt), quantile, threshold).reshape(x_cf.shape)
    return iou(pred, gt)


def _points_inside(values: Tensor, region: Tensor) -> Tensor:
    """True where the maximum of ``values`` (``(B, N)``) is attained only inside ``region``."""
    if values.shape[1] == 0:
        return torch.zeros(values.shape[0], dtype=torch.bool, device=values.device)
    top = values.amax(1)
    outside = values.masked_fill(region, -math.inf).amax(1)
    return outside < top


def pointing_game(
    x_cf: Tensor, x_ref: Tensor, gt_mask: Tensor, tolerance: int = 0
) -> Tensor:
    """Whether the largest change lies inside the ground truth.

    ``hit[b] = argmax_i |Δx_i| ∈ dilate(gt_b, tolerance)`` (square structuring element, see
    :func:`dilate`). Ties count against: it is a hit only if *every* pixel attaining the maximum
    is inside, so a flat change (e.g. a global brightness shift) is a miss unless the region
    covers the image. A sample without any change, or with an empty ground truth, is a miss.

    Args:
        x_cf: Counterfactuals, ``(B, C, H, W)``.
        x_ref: Reference images, same shape.
        gt_mask: bool ``(B, C, H, W)`` (or broadcastable to the images' shape with a batch
            dimension).
        tolerance: Pixels by which the ground truth is grown before the test.

    Returns:
        ``(B,)`` bool.
    """
    _check_images(x_cf, x_ref, names=["x_cf", "x_ref"])
    _check_mask4(gt_mask, "gt_mask")
    gt = _as_mask(dilate(gt_mask, tolerance), x_cf.shape, "gt_mask")
    d = _flat(_abs_diff(x_cf, x_ref))
    changed = d.amax(1) > 0 if d.shape[1] else torch.zeros_like(d[:, 0], dtype=torch.bool)
    return _points_inside(d, _flat(gt)) & changed


def saliency_pointing_game(saliency: Tensor, gt_mask: Tensor, tolerance: int = 0) -> Tensor:
    """Whether a saliency map's maximum lies inside the ground truth.

    ``hit[b] = argmax_i S_b[i] ∈ dilate(gt_b, tolerance)``, with ties counting against as in
    :func:`pointing_game` (a constant map is a miss unless the region covers the image).

    Args:
        saliency: float ``(B, C, H, W)`` (in ``[0, 1]`` for xcf's saliency methods).
        gt_mask: bool, ``(B, C, H, W)`` or broadcastable to the saliency's shape.
        tolerance: Pixels by which the ground truth is grown before the test.

    Returns:
        ``(B,)`` bool.
    """
    _check_images(saliency, names=["saliency"])
    _check_mask4(gt_mask, "gt_mask")
    gt = _as_mask(dilate(gt_mask, tolerance), saliency.shape, "gt_mask")
    return _points_inside(_flat(saliency.to(_acc_dtype(saliency.device))), _flat(gt))


def relevance_mass(saliency: Tensor, gt_mask: Tensor) -> Tensor:
    """Share of a saliency map's mass inside the ground truth (relevance mass accuracy).

    ``mass[b] = sum_{i in gt_b} S_b[i]^+ / sum_i S_b[i]^+`` in ``[0, 1]``, where ``S^+ =
    max(S, 0)`` (negative values are ignored). ``NaN`` for an all-zero map.

    Args:
        saliency: float ``(B, C, H, W)``.
        gt_mask: bool, broadcastable to the saliency's shape.

    Returns:
        ``(B,)`` float32.
    """
    _check_images(saliency, names=["saliency"])
    gt = _flat(_as_mask(gt_mask, saliency.shape, "gt_mask"))
    s = _flat(saliency.to(_acc_dtype(saliency.device)).clamp_min(0.0))
    return _ratio((s * gt).sum(1), s.sum(1)).clamp(0.0, 1.0).to(_OUT_DTYPE)


def saliency_iou(
    saliency: Tensor, gt_mask: Tensor, threshold: float | Sequence[float] | Tensor
) -> Tensor:
    """IoU of a thresholded saliency map with the ground truth.

    ``iou[b] = IoU({i : S_b[i] > threshold}, gt_b)`` (see :func:`iou`), the seed's saliency
    localization benchmark (thresholds 0.1, 0.2, ..., 0.9 on min-max normalized maps, NIH
    ChestX-ray14 boxes).

    Args:
        saliency: float ``(B, C, H, W)`` in ``[0, 1]``.
        gt_mask: bool, broadcastable to the saliency's shape.
        threshold: One threshold, or a sequence / 1-D tensor of ``T`` thresholds.

    Returns:
        ``(B,)`` float32 for one threshold, ``(B, T)`` for a sequence (column ``j`` for
        ``threshold[j]``); ``NaN`` where both masks are empty.
    """
    _check_images(saliency, names=["saliency"])
    gt = _as_mask(gt_mask, saliency.shape, "gt_mask")
    th = torch.as_tensor(threshold, dtype=saliency.dtype, device=saliency.device)
    if th.dim() == 0:
        return iou(saliency > th, gt)
    if th.dim() != 1:
        raise ValueError(f"threshold must be a number or 1-D, got shape {tuple(th.shape)}")
    cols = [iou(saliency > t, gt) for t in th]  # loop over thresholds, not pixels
    if not cols:
        return torch.empty(saliency.shape[0], 0, dtype=_OUT_DTYPE, device=saliency.device)
    return torch.stack(cols, dim=1)


def mae_inside_outside(
    x_cf: Tensor, x_true_cf: Tensor, region: Tensor
) -> tuple[Tensor, Tensor]:
    """Mean absolute error to a ground-truth counterfactual, inside and outside a region.

    With ``e_i = |x_cf[b, i] - x_true_cf[b, i]|`` and ``R_b`` the region::

        inside[b]  = mean_{i in R_b} e_i       (NaN if R_b is empty)
        outside[b] = mean_{i not in R_b} e_i   (NaN if R_b covers the image)

    Inside: did the counterfactual remove the finding the way the truth does; outside: did it
    leave the rest alone. Both in ``[0, 1]``.

    Args:
        x_cf: Counterfactuals, ``(B, C, H, W)``.
        x_true_cf: Ground-truth counterfactuals (e.g. a phantom rendered without the finding),
            same shape.
        region: bool, broadcastable to the images' shape (usually the ground-truth mask).

    Returns:
        ``(inside, outside)``, each ``(B,)`` float32.
    """
    _check_images(x_cf, x_true_cf, names=["x_cf", "x_true_cf"])
    r = _as_mask(region, x_cf.shape, "region")
    e = _abs_diff(x_cf, x_true_cf)
    return _masked_mean(e, r).to(_OUT_DTYPE), _masked_mean(e, ~r).to(_OUT_DTYPE)


def removal(x_cf: Tensor, x_input: Tensor, x_true_cf: Tensor, region: Tensor) -> Tensor:
    """How much of the finding a counterfactual removed, measured against the true counterfactual.

    With ``R_b`` the region (the finding's ground-truth mask)::

        removal[b] = 1 - mean_{i in R_b} |x_cf - x_true_cf| / mean_{i in R_b} |x_input - x_true_cf|

    1: inside the region the counterfactual is the true counterfactual; 0: it is as far from it as
    the input (nothing removed, e.g. a change too faint to see that still flips the classifier);
    negative: farther than the input (e.g. the finding painted over with something else). NaN where
    the region is empty or the input already equals the true counterfactual there.

    Args:
        x_cf, x_input, x_true_cf: ``(B, C, H, W)`` images.
        region: bool, broadcastable to the images' shape.

    Returns:
        ``(B,)`` float32.
    """
    _check_images(x_cf, x_input, x_true_cf, names=["x_cf", "x_input", "x_true_cf"])
    r = _as_mask(region, x_cf.shape, "region")
    err_cf = _masked_mean(_abs_diff(x_cf, x_true_cf), r)
    err_in = _masked_mean(_abs_diff(x_input, x_true_cf), r)
    return (1 - _ratio(err_cf, err_in)).to(_OUT_DTYPE)


# --------------------------------------------------------------------------------------------
# realism


@contextlib.contextmanager
def _eval_mode(model: Any) -> Iterator[None]:
    """Eval mode for an ``nn.Module`` (per-submodule flags restored after); no-op otherwise."""
    if not isinstance(model, torch.nn.Module):
        yield
        return
    flags = [(m, m.training) for m in model.modules()]
    try:
        model.eval()
        yield
    finally:
        for m, training in flags:
            m.training = training


def _model_device(model: Any) -> torch.device | None:
    if isinstance(model, torch.nn.Module):
        for t in (*model.parameters(), *model.buffers()):
            return t.device
    return None


def _reconstruction_error(latent_model: Any, x: Tensor) -> Tensor:
    """Per-sample ``mean((D(E(x)) - x)^2)`` at the model's ``input_size``."""
    size = getattr(latent_model, "input_size", None)
    if isinstance(size, int) and (x.shape[-2], x.shape[-1]) != (size, size):
        x = F.interpolate(
            x, size=(size, size), mode="bilinear", align_corners=False,
            antialias=x.shape[-1] > size,
        )
    device = _model_device(latent_model)
    if device is not None:
        x = x.to(device)
    x_hat = latent_model.decode(latent_model.encode(x))
    if not isinstance(x_hat, Tensor) or x_hat.shape != x.shape:
        got = tuple(x_hat.shape) if isinstance(x_hat, Tensor) else type(x_hat).__name__
        raise ValueError(f"latent model decoded {got}, expected {tuple(x.shape)}")
    acc = _acc_dtype(x.device)
    return _flat((x_hat.to(acc) - x.to(acc)).square()).mean(1)


def realism(latent_model: Any, x_cf: Tensor, x_input: Tensor) -> Tensor:
    """How far the counterfactual is from the latent model's image manifold, relative to the input.

    ``realism[b] = MSE(D(E(x_cf_b)), x_cf_b) / MSE(D(E(x_b)), x_b)``, in ``[0, inf)``: 1 means the
    latent model reconstructs the counterfactual as well as the real input; ``> 1`` means the
    counterfactual is further from what the model considers a plausible image (less realistic).
    ``inf`` if the input is reconstructed exactly and the counterfactual is not, ``NaN`` if both are.

    It measures plausibility *to this latent model*, which reproduces its own artifacts easily: a
    counterfactual that pastes the decoder's image into a region (``blend="input"``) scores near 1
    even where that image is visibly grainy. Look at the images before reading it as "natural".

    Runs under ``torch.no_grad()`` with the model (if an ``nn.Module``) temporarily in eval mode,
    so that batch-norm uses its running statistics and samples stay independent; each
    submodule's mode is restored afterwards. Images are resized to the model's ``input_size`` (if it
    has one and the size differs) the way the core does, and moved to the model's device.

    Args:
        latent_model: Anything with ``encode(x) -> latent`` and ``decode(latent) -> x`` (an
            :class:`xcf.LatentModel`; duck typed).
        x_cf: Counterfactuals, ``(B, 1, H, W)`` in ``[0, 1]``.
        x_input: The inputs they were made from, same shape.

    Returns:
        ``(B,)`` float32 on ``x_cf``'s device.
    """
    _check_images(x_cf, x_input, names=["x_cf", "x_input"])
    for attr in ("encode", "decode"):
        if not callable(getattr(latent_model, attr, None)):
            raise TypeError(f"latent_model has no callable {attr}()")
    with torch.no_grad(), _eval_mode(latent_model):
        e_cf = _reconstruction_error(latent_model, x_cf)
        e_in = _reconstruction_error(latent_model, x_input)
    return (e_cf / e_in).to(device=x_cf.device, dtype=_OUT_DTYPE)


# --------------------------------------------------------------------------------------------
# aggregation


def _values(v: Any) -> Tensor:
    if isinstance(v, Tensor):
        return v.detach().to("cpu", torch.float64).reshape(-1)
    return torch.as_tensor(v, dtype=torch.float64).reshape(-1)


def summarize(
    rows: Iterable[Mapping[str, Any]], keys: Iterable[str] | None = None
) -> dict[str, dict[str, float | int]]:
    """Mean, median and count of metrics over images, ignoring undefined values.

    For each key, the values of all rows are pooled (a value may be a number, a bool, or a tensor
    of any shape, e.g. one ``(B,)`` tensor per batch from :func:`explanation_metrics`, which is
    flattened); bools count as 0/1, so the mean of ``validity`` is the flip rate. ``NaN`` values
    are left out; a row without the key (or with ``None``) contributes nothing. With the ``n``
    remaining values ``v``::

        mean = sum(v) / n,   median = the middle value (the mean of the two middle ones for even n)

    Args:
        rows: Per-image (or per-batch) dicts of metric values.
        keys: Keys to summarize, in output order; ``None`` for every key seen, in order of first
            appearance.

    Returns:
        ``{key: {"mean": float, "median": float, "n": int, "n_undefined": int}}`` where ``n`` is
        the number of values used and ``n_undefined`` the number of ``NaN`` values left out; mean
        and median are ``NaN`` when ``n == 0``.
    """
    rows = list(rows)
    if keys is None:
        keys = list(dict.fromkeys(k for row in rows for k in row))
    out: dict[str, dict[str, float | int]] = {}
    for key in keys:
        parts = [_values(row[key]) for row in rows if key in row and row[key] is not None]
        v = torch.cat(parts) if parts else torch.empty(0, dtype=torch.float64)
        nan = torch.isnan(v)
        v = v[~nan]
        n = int(v.numel())
        out[key] = {
            "mean": float(v.mean()) if n else math.nan,
            "median": float(torch.quantile(v, 0.5)) if n else math.nan,
            "n": n,
            "n_undefined": int(nan.sum()),
        }
    return out


# --------------------------------------------------------------------------------------------
# everything about one batch of explanations


def explanation_metrics(
    x_input: Tensor,
    x_recon: Tensor,
    x_cf: Tensor,
    mask: Tensor,
    p_input: Tensor,
    p_recon: Tensor,
    p_cf: Tensor,
    targets: Tensor,
    *,
    gt_mask: Tensor | None = None,
    x_true_cf: Tensor | None = None,
    gt_dilation: int = 8,
    reference: Literal["reconstruction", "input"] = "reconstruction",
    validity_threshold: float | Tensor = 0.5,
    pointing_tolerance: int = 0,
    latent_model: Any | None = None,
) -> dict[str, Tensor]:
    """All per-sample metrics of a batch of counterfactual explanations.

    ``reference`` picks what the counterfactual is compared to:

    - ``"reconstruction"`` (default): the initial reconstruction ``x0 = D(E(x))`` and its
      probabilities, which is what the optimizer starts from and compares to; changes then
      measure the optimization alone, not the autoencoder's error (reported separately as
      ``reconstruction_shift``);
    - ``"input"``: the input ``x`` and its probabilities: the total change a user sees between the
      image they gave and the counterfactual, autoencoder error included.

    It applies to ``target_drop``, ``off_target_*``, ``l1``, ``l2``, every ``share_*``, ``iou_gt``
    and ``pointing_game``. ``mae_true_*`` compare to the ground-truth counterfactual and
    ``realism`` to the input, whatever ``reference`` is.

    Keys (each a ``(B,)`` tensor, float32 unless noted), always (:data:`EXPLANATION_KEYS`):

    - ``validity`` (bool): ``p_cf[t] < validity_threshold`` (:func:`validity`);
    - ``target_drop``: ``p_ref[t] - p_cf[t]`` (:func:`target_drop`);
    - ``off_target_mean``, ``off_target_max``: ``|Δp|`` over the other findings
      (:func:`off_target_change`);
    - ``reconstruction_shift``: ``|p_input[t] - p_recon[t]|`` (:func:`reconstruction_shift`);
    - ``l1``, ``l2``: :func:`proximity_l1`, :func:`proximity_l2`;
    - ``share_in_mask_l1``, ``share_in_mask_l2``: :func:`share_inside` of the saliency mask with
      power 1 and 2;
    - ``mask_area``: fraction of the image inside the saliency mask (:func:`mask_area`);

    with ``gt_mask`` (:data:`GT_KEYS`):

    - ``share_in_gt_l1``, ``share_in_gt_l2``: :func:`share_inside` of the ground truth;
    - ``share_in_gt_dilated_l1``: the same (power 1) for the ground truth grown by
      ``gt_dilation`` pixels (:func:`dilate`, square), which forgives changes at its edge;
    - ``iou_gt``: :func:`change_iou`, area-matched rule;
    - ``pointing_game`` (bool): :func:`pointing_game` with ``pointing_tolerance``;

    with ``x_true_cf`` (:data:`TRUE_CF_KEYS`):

    - ``mae_true_inside``, ``mae_true_outside``: :func:`mae_inside_outside` over ``gt_mask``, or
      over the saliency mask when no ``gt_mask`` is given;
    - ``removal``: :func:`removal` over the same region (1: the finding removed as the truth
      removes it; 0: nothing removed);

    with ``latent_model``:

    - ``realism``: :func:`realism` of ``x_cf`` relative to ``x_input``.

    Args:
        x_input: Inputs ``x``, ``(B, 1, H, W)`` in ``[0, 1]``.
        x_recon: Initial reconstructions ``x0``, same shape.
        x_cf: Counterfactuals, same shape.
        mask: The saliency mask the optimizer used, bool, broadcastable to the images' shape.
        p_input: Probabilities ``(B, K)`` of the inputs.
        p_recon: Probabilities ``(B, K)`` of the reconstructions.
        p_cf: Probabilities ``(B, K)`` of the counterfactuals.
        targets: ``(B,)`` long, the explained finding of each sample.
        gt_mask: Optional ground-truth region of the finding, bool ``(B, 1, H, W)``.
        x_true_cf: Optional ground-truth counterfactual, ``(B, 1, H, W)``.
        gt_dilation: Radius in pixels for ``share_in_gt_dilated_l1``.
        reference: ``"reconstruction"`` or ``"input"``, see above.
        validity_threshold: Threshold of ``validity`` (0.5, or the stop probability).
        pointing_tolerance: Tolerance in pixels of ``pointing_game``.
        latent_model: Optional latent model for ``realism``.

    Returns:
        ``{key: (B,) tensor}`` with the keys above, in that order.
    """
    _check_reference(reference)
    _check_images(x_input, x_recon, x_cf, names=["x_input", "x_recon", "x_cf"])
    targets = _check_probs(
        p_input, p_recon, p_cf, targets=targets, names=["p_input", "p_recon", "p_cf"]
    )
    if p_input.shape[0] != x_input.shape[0]:
        raise ValueError(
            f"{p_input.shape[0]} probability rows for a batch of {x_input.shape[0]} images"
        )
    x_ref, p_ref = (x_recon, p_recon) if reference == "reconstruction" else (x_input, p_input)
    sal = _as_mask(mask, x_cf.shape, "mask")

    off_mean, off_max = off_target_change(p_ref, p_cf, targets)
    out: dict[str, Tensor] = {
        "validity": validity(p_cf, targets, validity_threshold),
        "target_drop": target_drop(p_ref, p_cf, targets),
        "off_target_mean": off_mean,
        "off_target_max": off_max,
        "reconstruction_shift": reconstruction_shift(p_input, p_recon, targets),
        "l1": proximity_l1(x_cf, x_ref),
        "l2": proximity_l2(x_cf, x_ref),
        "share_in_mask_l1": share_inside(x_cf, x_ref, sal, power=1),
        "share_in_mask_l2": share_inside(x_cf, x_ref, sal, power=2),
        "mask_area": mask_area(sal),
    }
    if gt_mask is not None:
        _check_mask4(gt_mask, "gt_mask")
        gt = _as_mask(gt_mask, x_cf.shape, "gt_mask")
        out["share_in_gt_l1"] = share_inside(x_cf, x_ref, gt, power=1)
        out["share_in_gt_l2"] = share_inside(x_cf, x_ref, gt, power=2)
        out["share_in_gt_dilated_l1"] = share_inside(
            x_cf, x_ref, dilate(gt, gt_dilation), power=1
        )
        out["iou_gt"] = change_iou(x_cf, x_ref, gt)
        out["pointing_game"] = pointing_game(x_cf, x_ref, gt, tolerance=pointing_tolerance)
    if x_true_cf is not None:
        region = gt if gt_mask is not None else sal
        inside, outside = mae_inside_outside(x_cf, x_true_cf, region)
        out["mae_true_inside"] = inside
        out["mae_true_outside"] = outside
        out["removal"] = removal(x_cf, x_input, x_true_cf, region)
    if latent_model is not None:
        out["realism"] = realism(latent_model, x_cf, x_input)
    return out


# ---------------------------------------------------------------------------------------------
# Model-quality metrics (training and manifests)
# ---------------------------------------------------------------------------------------------


def roc_auc(scores: Tensor, labels: Tensor) -> float:
    """Area under the ROC curve of one finding (Mann-Whitney U with average ranks for ties).

    ``AUC = (sum of positive ranks - n_pos (n_pos + 1) / 2) / (n_pos n_neg)``.

    Args:
        scores: ``(N,)`` any real scores (probabilities or logits).
        labels: ``(N,)`` 0/1; NaN entries (unknown labels) are ignored.

    Returns:
        The AUC in [0, 1], or NaN when only one class is present.
    """
    s = scores.detach().double().flatten().cpu()
    y = labels.detach().double().flatten().cpu()
    keep = ~torch.isnan(y)
    s, y = s[keep], y[keep]
    n_pos = int((y == 1).sum())
    n_neg = int((y == 0).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = torch.argsort(s)
    sorted_s = s[order]
    ranks = torch.empty_like(s)
    # average ranks of ties
    uniq, inverse, counts = torch.unique_consecutive(sorted_s, return_inverse=True, return_counts=True)
    ends = torch.cumsum(counts, 0).double()
    starts = ends - counts.double() + 1
    avg = (starts + ends) / 2
    ranks[order] = avg[inverse]
    u = ranks[y == 1].sum() - n_pos * (n_pos + 1) / 2
    return float(u / (n_pos * n_neg))


def _gaussian_window(size: int, sigma: float, device, dtype) -> Tensor:
    ax = torch.arange(size, device=device, dtype=dtype) - (size - 1) / 2
    g = torch.exp(-(ax**2) / (2 * sigma**2))
    g = g / g.sum()
    return (g[:, None] * g[None, :])[None, None]


def ssim(x: Tensor, y: Tensor, *, window: int = 11, sigma: float = 1.5, data_range: float = 1.0) -> Tensor:
    """Structural similarity (Wang et al. 2004) with a Gaussian window, per sample.

    ``SSIM = mean_pixels[(2 mu_x mu_y + C1)(2 s_xy + C2) / ((mu_x^2 + mu_y^2 + C1)(s_x^2 + s_y^2 + C2))]``
    with ``C1 = (0.01 L)^2``, ``C2 = (0.03 L)^2``, local statistics under an 11x11 Gaussian
    (sigma 1.5), valid region only.

    Args:
        x, y: ``(B, 1, H, W)`` in [0, ``data_range``].

    Returns:
        ``(B,)`` in [-1, 1]; 1 for identical images.
    """
    w = _gaussian_window(window, sigma, x.device, torch.float32)
    x, y = x.float(), y.float()
    mu_x = torch.nn.functional.conv2d(x, w)
    mu_y = torch.nn.functional.conv2d(y, w)
    sxx = torch.nn.functional.conv2d(x * x, w) - mu_x**2
    syy = torch.nn.functional.conv2d(y * y, w) - mu_y**2
    sxy = torch.nn.functional.conv2d(x * y, w) - mu_x * mu_y
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    val = ((2 * mu_x * mu_y + c1) * (2 * sxy + c2)) / ((mu_x**2 + mu_y**2 + c1) * (sxx + syy + c2))
    return val.flatten(1).mean(dim=1)
