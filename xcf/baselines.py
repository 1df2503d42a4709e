"""Baseline counterfactual methods that the benchmarks compare xcf's method against.

``latent-shift`` (:func:`latent_shift`): Cohen J. P. et al., "Gifsplanation via Latent Shift: A
Simple Autoencoder Approach to Counterfactual Generation for Chest X-rays", MIDL 2021. Select it
with ``method="latent-shift"`` (:class:`xcf.methods.LatentShift`), which calls :func:`latent_shift`
instead of :func:`xcf.optimize.optimize_latent`. The other two baselines need no code here:
``global`` is the seed's optimizer with the ``global`` locality loss (mask everywhere) and ``pixel``
is the seed's objective with the ``pixel`` latent model (``plugins/xcf_pixel``: ``z = x``).
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Iterator

import torch
from torch import Tensor

from .interfaces import Classifier, Latent, LatentModel
from .methods.parts import LineSearch
from .optimize import OptimizationResult, classify, frozen, resize_to

__all__ = ["latent_shift", "shift_schedule", "RISE_TOLERANCE", "full_fp32"]

#: The target logit must rise by more than this from one decode to the next for the search to
#: count it as "no longer falling" (absorbs float32 noise at tiny shifts, where the decoded image
#: barely changes).
RISE_TOLERANCE = 1e-4


@contextlib.contextmanager
def full_fp32() -> Iterator[None]:
    """Turn TF32 off for CUDA convolutions and matrix products inside the block, then restore it.

    PyTorch runs CUDA convolutions in TF32 by default (10-bit mantissa: relative errors near
    1e-3), which puts noise of about 1e-3 on a classifier's logit. The latent-shift search compares
    logits of images a tiny ``lambda`` apart against :data:`RISE_TOLERANCE` (1e-4), so under TF32
    it stopped on noise after 2-3 decodes (on an H200: pneumonia validity 0.02 against 0.27 on the
    CPU). The flags are process-wide: another thread's CUDA work inside the block also runs in
    full fp32. No effect on the CPU.
    """
    cudnn, matmul = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32 = cudnn
        torch.backends.cuda.matmul.allow_tf32 = matmul


def shift_schedule(search: LineSearch) -> list[float]:
    """The ``lambda`` values :func:`latent_shift` tries, in order (all negative, growing in size):
    :meth:`xcf.methods.LineSearch.values`."""
    return search.values()


def latent_shift(
    classifier: Classifier,
    latent_model: LatentModel,
    x: Tensor,
    targets: Tensor,
    search: LineSearch | None = None,
    *,
    decision_threshold: float = 0.5,
    initial: tuple[Latent, Tensor, Tensor] | None = None,
) -> OptimizationResult:
    """Latent Shift (Cohen et al., MIDL 2021): a line search along one latent gradient.

    For each sample, with ``z0 = E(x)`` and ``f(z)`` the classifier's target probability of
    ``D(z)`` (its logit with ``search.use_logit``)::

        g = df/dz at z0                          (one backward pass, no mask, no locality term)
        x_lambda = D(z0 + lambda * g)            for lambda in search.values()  (lambda < 0)

    The search decodes the ``lambda`` values in order and, per sample, stops at the first of:

    - the target probability of ``x_lambda`` is below ``decision_threshold``: the
      counterfactual is ``x_lambda`` (status ``"stopped-early"``);
    - the target logit rose by more than :data:`RISE_TOLERANCE` since the previous ``lambda``
      (the probability stopped falling): the counterfactual is the decoded image with the lowest
      target probability so far, i.e. the previous one (status ``"ran-all-steps"``);
    - the bound ``lambda_max`` (the last value) is reached: the lowest-probability image
      (status ``"ran-all-steps"``);
    - a decode or the classifier gave NaN/Inf: the lowest-probability finite image so far (status
      ``"nonfinite"``).

    A sample already below the threshold at ``lambda = 0``, or whose gradient is exactly zero, is
    not shifted (its counterfactual is ``D(z0)``, 0 steps). On CUDA the search runs with TF32 off
    (:func:`full_fp32`): the logit differences it compares are smaller than TF32's rounding.
    Each sample has its own ``lambda``; the result of a sample does not depend on the rest of the
    batch (the classifier and latent model are frozen, in eval mode, for the call, and restored
    afterwards). Nothing is random.

    Differences from the authors' code (their captum pull request): there the step size grows
    from a fixed start and the search stops when the probability fell to a fraction of its start
    or the image changed by a pixel budget; here the schedule and stop rule are the ones above so
    that every method in the benchmarks is judged by the same decision threshold.

    Args:
        classifier: Gets images resized to its ``input_size``.
        latent_model: Encoder/decoder; ``D`` must be differentiable in ``z``.
        x: ``(B, 1, S, S)`` canonical images in [0, 1], ``S == latent_model.input_size``.
        targets: ``(B,)`` long, the finding to remove from each sample.
        search: The line search (default :class:`xcf.methods.LineSearch`'s).
        decision_threshold: Below it the target counts as absent (the search's stop).
        initial: ``(z0, x0, p0)`` when the caller already encoded the batch; ``x0``/``p0`` are
            reported as the reconstruction and its probabilities.

    Returns:
        An :class:`~xcf.optimize.OptimizationResult`: ``steps`` is the number of shifted latents
        decoded for each sample, ``losses`` ``(T, B)`` holds the target probability after each
        decode (NaN where the sample had stopped), and ``latent`` the chosen ``z0 + lambda * g``.
    """
    start = time.perf_counter()
    search = search or LineSearch()
    lambdas = search.values()
    device = x.device
    B = x.shape[0]
    threshold = float(decision_threshold)
    with frozen(classifier, latent_model), full_fp32():
        if initial is None:
            with torch.no_grad():
                z0 = latent_model.encode(x).detach()
                x0 = latent_model.decode(z0).float()
                p0 = classify(classifier, x0)
        else:
            z0, x0, p0 = initial
            z0 = z0.detach()
        rows = torch.arange(B, device=device)

        # --- the one gradient, at z0 ---------------------------------------------------------
        with torch.enable_grad():
            zg = z0.z.detach().clone().requires_grad_(True)
            x_start = latent_model.decode(z0.with_z(zg)).float()
            logits = classifier(resize_to(x_start, classifier.input_size)).float()
            logit_t = logits[rows, targets]
            objective = logit_t if search.use_logit else torch.sigmoid(logit_t)
            (grad,) = torch.autograd.grad(objective.sum(), zg)
        grad = grad.detach()
        x_start = x_start.detach()
        logits = logits.detach()

        best_x = x_start.clone()
        best_p = torch.sigmoid(logits)
        best_logit = logits[rows, targets].clone()
        best_lambda = torch.zeros(B, device=device)
        prev_logit = best_logit.clone()
        steps = torch.zeros(B, dtype=torch.long, device=device)
        losses = torch.full((len(lambdas), B), math.nan, device=device)
        status = ["ran-all-steps"] * B

        finite0 = (torch.isfinite(x_start).flatten(1).all(1) & torch.isfinite(logits).all(1)
                   & torch.isfinite(grad).flatten(1).all(1))
        flat = grad.flatten(1).abs().amax(1) if grad.dim() > 1 else grad.abs()
        already = finite0 & (torch.sigmoid(best_logit) < threshold)
        for b in torch.nonzero(~finite0).flatten().tolist():
            status[b] = "nonfinite"
            best_x[b] = x0[b]
            best_p[b] = p0[b]
        for b in torch.nonzero(already).flatten().tolist():
            status[b] = "stopped-early"
        active = torch.nonzero(finite0 & ~already & (flat > 0)).flatten()

        # --- the line search, each sample with its own lambda ---------------------------------
        with torch.no_grad():
            for i, lam in enumerate(lambdas):
                if active.numel() == 0:
                    break
                sub = z0.select(active)
                xa = latent_model.decode(sub.with_z(sub.z + lam * grad[active])).float()
                la_all = classifier(resize_to(xa, classifier.input_size)).float()
                n = active.numel()
                la = la_all[torch.arange(n, device=device), targets[active]]
                steps[active] += 1
                finite = torch.isfinite(xa).flatten(1).all(1) & torch.isfinite(la_all).all(1)
                pa = torch.sigmoid(la)
                losses[i, active] = torch.where(finite, pa, math.nan)
                better = finite & (la < best_logit[active])
                if bool(better.any()):
                    idx = active[better]
                    best_x[idx] = xa[better]
                    best_p[idx] = torch.sigmoid(la_all[better])
                    best_logit[idx] = la[better]
                    best_lambda[idx] = lam
                crossed = finite & (pa < threshold)
                rose = finite & (la > prev_logit[active] + RISE_TOLERANCE)
                prev_logit[active] = torch.where(finite, la, prev_logit[active])
                leave = crossed | rose | ~finite
                if bool(leave.any()):
                    for j in torch.nonzero(leave).flatten().tolist():
                        b = int(active[j])
                        status[b] = ("stopped-early" if bool(crossed[j])
                                     else "nonfinite" if not bool(finite[j]) else "ran-all-steps")
                    active = active[~leave]

    lam_b = best_lambda.view(B, *([1] * (z0.z.dim() - 1)))
    shifted = torch.where(lam_b != 0, z0.z.detach() + lam_b * grad, z0.z.detach())
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return OptimizationResult(
        reconstruction=x0.detach(),
        counterfactual=best_x.clamp_(0, 1),
        probs_reconstruction=p0.detach(),
        probs_counterfactual=best_p,
        steps=steps,
        losses=losses,
        status=status,
        seconds=time.perf_counter() - start,
        latent=z0.with_z(shifted),
    )
