"""The counterfactual search: the seed's objective, batched, with per-sample early stopping.

For images ``x`` (already at the latent model's size) with targets ``t_b``, saliency maps ``S`` and a
locality loss ``L``::

    z0 = E(x).z            x0 = D(z0)              p0 = sigmoid(C(x0))
    target vector  y_b = p0_b with y_b[t_b] = 0    (other findings keep their reconstructed value)
    loss_b(z) = L(D(z)_b, x0_b, S_b) + w_cls * mean_k (sigmoid(C(D(z)))_bk - y_bk)^2

minimized by Adam (lr 0.1, betas (0.9, 0.999), eps 1e-8: ``torch.optim.Adam``'s update, written out
so that samples can stop independently) on ``z`` for ``steps`` steps. With the seed's masked-L2 loss
``L = mean((D(z) - x0)^2 * (w_out * (1 - m) + m))`` this is ../seed/METHOD.md exactly.

Each sample has its own target, mask and loss; the batch loss is the *sum* of per-sample losses, so
a sample's gradient (and, Adam being element-wise, its whole trajectory) does not depend on the
other samples in the batch. A sample that is stopped (its target probability stayed below
``stop_probability`` for ``stop_patience`` steps, or its loss became non-finite) leaves the batch:
later steps run the models on the remaining samples only.

The classifier and latent model are frozen for the call (eval mode, ``requires_grad=False``) and
restored exactly afterwards (training flags of every submodule, ``requires_grad``, ``.grad``), also
when the call raises.
"""

from __future__ import annotations

import contextlib
import functools
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from .interfaces import Classifier, Latent, LatentModel, LocalityLoss

__all__ = ["frozen", "OptimizationResult", "optimize_latent", "stable_sigmoid", "target_vector", "STATUS",
           "bf16_is_fast"]

#: Per-sample end states.
STATUS = {
    "completed": "ran all steps",
    "stopped": "target probability crossed stop_probability (early stop)",
    "nonfinite": "loss or gradient became NaN/Inf; the last finite latent was kept",
}

ADAM_BETAS = (0.9, 0.999)
ADAM_EPS = 1e-8


@contextlib.contextmanager
def frozen(*modules: nn.Module) -> Iterator[None]:
    """Put modules in eval mode with ``requires_grad=False`` and restore them exactly afterwards.

    Restores each submodule's ``training`` flag, each parameter's ``requires_grad`` and ``.grad``
    (the same tensor object, untouched), also when the body raises.
    """
    saved = []
    for module in modules:
        if module is None:
            continue
        flags = [(m, m.training) for m in module.modules()]
        params = [(p, p.requires_grad, p.grad) for p in module.parameters()]
        saved.append((flags, params))
    try:
        for module in modules:
            if module is None:
                continue
            module.eval()
            for p in module.parameters():
                p.requires_grad_(False)
        yield
    finally:
        for flags, params in saved:
            for m, training in flags:
                m.training = training
            for p, requires_grad, grad in params:
                p.requires_grad_(requires_grad)
                p.grad = grad


def target_vector(p_recon: Tensor, targets: Tensor) -> Tensor:
    """The seed's target: the reconstruction's probabilities ``(B, K)`` with each sample's target
    finding set to 0."""
    y = p_recon.detach().clone()
    y[torch.arange(y.shape[0], device=y.device), targets] = 0.0
    return y


def resize_to(x: Tensor, size: int) -> Tensor:
    """Differentiable resize of ``(B, 1, H, W)`` to ``(B, 1, size, size)`` (no-op when equal)."""
    if x.shape[-1] == size and x.shape[-2] == size:
        return x
    return torch.nn.functional.interpolate(
        x, size=(size, size), mode="bilinear", align_corners=False,
        antialias=x.shape[-1] > size)


def classify(classifier: Classifier, x: Tensor) -> Tensor:
    """Probabilities ``(B, K)`` of canonical images of any size."""
    return torch.sigmoid(classifier(resize_to(x, classifier.input_size)).float())


@dataclass
class OptimizationResult:
    """Outputs of :func:`optimize_latent`; images ``(B, 1, S, S)`` at the latent model's size.

    Attributes:
        reconstruction: ``D(E(x))`` in [0, 1].
        counterfactual: ``D(z*)`` in [0, 1].
        probs_reconstruction: ``(B, K)``.
        probs_counterfactual: ``(B, K)``.
        steps: ``(B,)`` optimizer updates applied to each sample.
        losses: ``(T, B)`` total loss of each sample at each step (NaN after the sample stopped).
        status: One of :data:`STATUS` per sample.
        seconds: Wall time of the whole batch.
    """

    reconstruction: Tensor
    counterfactual: Tensor
    probs_reconstruction: Tensor
    probs_counterfactual: Tensor
    steps: Tensor
    losses: Tensor
    status: list[str]
    seconds: float
    latent: Latent | None = field(default=None, repr=False)


class _StraightThroughClamp(torch.autograd.Function):
    """``clamp(t, 0, 1)`` forward, identity backward (a straight-through estimator)."""

    @staticmethod
    def forward(ctx, t: Tensor) -> Tensor:  # noqa: D102
        return t.clamp(0.0, 1.0)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:  # noqa: D102
        return grad


def clamp01_straight_through(t: Tensor) -> Tensor:
    """``clamp(t, 0, 1)``, a valid canonical image, with the identity as its gradient: a pixel
    pushed past 0 or 1 still feels the loss pulling it back (a plain clamp's gradient there is 0)."""
    return _StraightThroughClamp.apply(t)


class _StableSigmoid(torch.autograd.Function):
    """``sigmoid`` whose backward computes ``sigmoid(l) * (1 - sigmoid(l))`` as
    ``exp(-softplus(l) - softplus(-l))``: the same value, but not rounded to 0 when the output rounds
    to 1 (float32 does so above a logit of about 17, where autograd's ``s * (1 - s)`` is exactly 0
    and the seed's probability loss cannot move a film the classifier is certain of)."""

    @staticmethod
    def forward(ctx, logits: Tensor) -> Tensor:  # noqa: D102
        ctx.save_for_backward(logits)
        return torch.sigmoid(logits)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:  # noqa: D102
        (logits,) = ctx.saved_tensors
        nn_f = torch.nn.functional
        return grad * torch.exp(-nn_f.softplus(logits) - nn_f.softplus(-logits))


def stable_sigmoid(logits: Tensor) -> Tensor:
    """``torch.sigmoid`` with a gradient that does not vanish by rounding (see ``mse-stable``)."""
    return _StableSigmoid.apply(logits)


@functools.lru_cache(maxsize=1)
def _cpu_has_bf16() -> bool:
    try:  # Linux; elsewhere "auto" leaves the CPU in float32
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            flags = set(fh.read().split())
    except OSError:
        return False
    return bool(flags & {"avx512_bf16", "amx_bf16"})


def bf16_is_fast(device: torch.device) -> bool:
    """Whether ``autocast_bf16="auto"`` uses bf16 on ``device``: a CUDA device that supports bf16,
    or a CPU with bf16 instructions (AVX512-BF16 or AMX-BF16, from ``/proc/cpuinfo``; on this
    project's 2-core AMD EPYC a search step of the pneumonia pack costs 0.4-0.6x float32's).
    Other devices and CPUs run float32, where bf16 would be emulated."""
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return device.type == "cpu" and _cpu_has_bf16()


def _lr_at(config, step: int) -> float:
    if config.lr_schedule == "cosine" and config.steps > 0:
        return config.lr * (0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * step / config.steps)))
    return config.lr


def optimize_latent(
    classifier: Classifier,
    latent_model: LatentModel,
    x: Tensor,
    targets: Tensor,
    saliency: Tensor,
    locality: LocalityLoss,
    config,
    *,
    initial: tuple[Latent, Tensor, Tensor] | None = None,
    blend: tuple[Tensor, Tensor] | None = None,
    z_start: Tensor | None = None,
    check_classifier: Classifier | None = None,
) -> OptimizationResult:
    """Search counterfactual latents for a batch.

    Args:
        classifier: Frozen for the call; gets images resized to its ``input_size``.
        latent_model: Frozen for the call.
        x: ``(B, 1, S, S)`` canonical images, ``S == latent_model.input_size``.
        targets: ``(B,)`` long, the finding to remove from each sample.
        saliency: ``(B, 1, S, S)`` in [0, 1].
        locality: Per-sample locality loss.
        config: An :class:`xcf.ExplainConfig`.
        initial: ``(z0, x0, p0)`` when the caller already encoded the batch (skips that work);
            with ``blend``, ``x0`` and ``p0`` must be those of the blended start.
        blend: ``(mask, base)``, each ``(B, 1, S, S)``: the image the classifier sees, and the
            counterfactual returned, is ``clamp(mask * D(z) + base, 0, 1)`` (blending by
            construction; the clamp is straight-through: its gradient is the identity; ``mask`` in
            [0, 1], e.g. a feathered saliency region; ``base`` is ``(1 - mask) * x`` to blend into the input,
            ``(1 - mask) * D(z0)`` into the reconstruction, or ``x - mask * D(z0)`` to add the
            decoder's change ``mask * (D(z) - D(z0))`` to the input). Change outside the mask's
            support is then exactly zero.
        z_start: The latent tensor the search starts from (default ``z0``'s); the locality loss and
            the counterfactual's reference stay ``x0`` (used to continue a search in a larger
            region, ``config.level_warm_start``).
        check_classifier: The classifier whose float32 probabilities are reported and confirm a
            stop (default: ``classifier``). The :class:`~xcf.Explainer` passes the original
            classifier when the loop runs on a folded / channels-last copy, so that validity is the
            original's. A stop is confirmed on it whenever the loop's probability is not already
            its float32 one (bf16, or a different model): only the samples whose loop probability
            crossed ``stop_probability`` are classified again.

    Returns:
        An :class:`OptimizationResult`.
    """
    start = time.perf_counter()
    device = x.device
    B = x.shape[0]
    checker = classifier if check_classifier is None else check_classifier
    with frozen(classifier, latent_model, None if checker is classifier else checker):
        use_bf16 = (bf16_is_fast(device) if config.autocast_bf16 == "auto"
                    else config.autocast_bf16 is True and device.type in ("cuda", "cpu"))
        autocast = (torch.autocast(device.type, dtype=torch.bfloat16)
                    if use_bf16 else contextlib.nullcontext())
        bmask, bbase = blend if blend is not None else (None, None)
        decode, clf_call = latent_model.decode, classifier
        if config.compile:  # dynamic shapes: the batch shrinks as samples stop
            decode = torch.compile(latent_model.decode, dynamic=True)
            clf_call = torch.compile(classifier, dynamic=True)

        def render(lat: Latent, idx: Tensor | None) -> Tensor:
            out = decode(lat).float()
            if bmask is None:
                return out
            mk = bmask if idx is None else bmask[idx]
            bs = bbase if idx is None else bbase[idx]
            # a blend (residual: x + m (D(z) - D(z0))) can leave [0, 1]; the classifier must see,
            # and the stopping rule judge, the image that is returned: clamped
            return clamp01_straight_through(mk * out + bs)

        if initial is None:
            with torch.no_grad(), autocast:
                z0 = latent_model.encode(x).detach()
                x0 = render(z0, None)
            with torch.no_grad():
                p0 = classify(checker, x0)
        else:
            z0, x0, p0 = initial
        y = target_vector(p0, targets)
        w_cls = config.classification_weight
        logit_loss = config.classification_loss == "logit"
        stable = config.classification_loss == "mse-stable"
        if logit_loss:  # hinge on the target's logit, squared drift of the others' logits
            l0 = torch.logit(p0.detach().float().clamp(1e-6, 1 - 1e-6))
            onehot = torch.zeros_like(l0)
            onehot[torch.arange(B, device=device), targets] = 1.0
            margin = config.logit_margin
        steps_max = config.steps

        z = (z0.z if z_start is None else z_start).detach().clone()
        m = torch.zeros_like(z)
        v = torch.zeros_like(z)
        last_delta = torch.zeros_like(z)  # to step back to the last finite latent
        n_steps = torch.zeros(B, dtype=torch.long, device=device)
        below = torch.zeros(B, dtype=torch.long, device=device)
        stopped = torch.zeros(B, dtype=torch.bool, device=device)
        bad = torch.zeros(B, dtype=torch.bool, device=device)
        losses = torch.full((steps_max, B), float("nan"), device=device)
        cf = x0.detach().clone()
        p_cf = p0.detach().clone()

        active = torch.arange(B, device=device)
        aux_active = z0  # Latent whose aux is indexed like `active`
        beta1, beta2 = ADAM_BETAS
        stop_p = config.stop_probability
        off_tol = config.stop_off_target
        check_every = config.stop_check_every
        zshape = (-1,) + (1,) * (z.dim() - 1)
        ishape = (-1,) + (1,) * (x0.dim() - 1)

        # a stop is confirmed in float32 on `checker` unless the loop's probabilities are already those
        confirm = use_bf16 or checker is not classifier
        # No host-device sync inside a step (with confirmation: one, to confirm a stop): finished
        # samples are frozen on the device (their update is zeroed) and leave the batch at the next
        # check, every `stop_check_every` steps.
        for step in range(steps_max):
            za = z[active].requires_grad_(True)
            with autocast:
                xd = render(aux_active.with_z(za), active)
                la = clf_call(resize_to(xd, classifier.input_size)).float()
                pa = stable_sigmoid(la) if stable else torch.sigmoid(la)
            if logit_loss:
                oh = onehot[active]
                loss_cls = (oh * torch.relu(la + margin) ** 2 + (1 - oh) * (la - l0[active]) ** 2).mean(dim=1)
            else:
                loss_cls = ((pa - y[active]) ** 2).mean(dim=1)
            loss_loc = locality(xd, x0[active], saliency[active]).float()
            loss = loss_loc + w_cls * loss_cls
            (grad,) = torch.autograd.grad(loss.sum(), za)
            ld = loss.detach()
            finite = torch.isfinite(ld) & torch.isfinite(grad).flatten(1).all(dim=1)
            was_done = stopped[active] | bad[active]
            losses[step, active] = torch.where(finite & ~was_done, ld, float("nan"))

            # --- end conditions, on the current z (before its update) ---
            newly_bad = ~finite & ~was_done
            if stop_p is not None:
                pa_d = pa.detach()
                p_t = pa_d[torch.arange(active.numel(), device=device), targets[active]]
                cand = (p_t < stop_p) & finite
                if off_tol is not None:  # the other findings must be back near their start too
                    cand &= _off_target_ok(pa_d, y[active], targets[active], off_tol)
                if confirm and bool(cand.any()):  # confirm in float32, on the returned image: bf16
                    ci = torch.nonzero(cand).flatten()  # rounding put films at p 0.5001-0.5055
                    with torch.no_grad():               # "below" 0.5 (session 8, pneumonia)
                        p32 = classify(checker, xd.detach()[ci].clamp(0, 1))
                    cand[ci] = p32[torch.arange(ci.numel(), device=device), targets[active][ci]] < stop_p
                    if off_tol is not None:
                        cand[ci] &= _off_target_ok(p32, y[active][ci], targets[active][ci], off_tol)
                    pa_d = pa_d.clone()
                    pa_d[ci] = p32  # a sample that stops now reports these float32 probabilities
                below_a = torch.where(cand, below[active] + 1, 0)
                below[active] = below_a
                newly_stopped = (below_a >= config.stop_patience) & finite & ~was_done
                # keep the image and probabilities of the step the sample stopped at
                keep_now = newly_stopped.view(ishape)
                cf[active] = torch.where(keep_now, xd.detach(), cf[active])
                p_cf[active] = torch.where(newly_stopped[:, None], pa_d, p_cf[active])
                stopped[active] = stopped[active] | newly_stopped
            else:
                newly_stopped = torch.zeros_like(finite)
            bad[active] = bad[active] | newly_bad
            frozen_now = (was_done | newly_stopped | newly_bad).view(zshape)
            za_d = za.detach()
            if step > 0:  # a non-finite latent steps back to the last finite one
                za_d = torch.where(newly_bad.view(zshape), za_d - last_delta[active], za_d)
                n_steps[active] -= newly_bad.long()
            grad = torch.where(frozen_now, torch.zeros_like(grad), torch.nan_to_num(grad))

            # --- Adam update (torch.optim.Adam's arithmetic); frozen samples do not move ---
            t = step + 1
            lr = _lr_at(config, step)
            m_a = m[active].mul_(beta1).add_(grad, alpha=1 - beta1)
            v_a = v[active].mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
            bias1 = 1 - beta1**t
            bias2_sqrt = math.sqrt(1 - beta2**t)
            denom = (v_a.sqrt() / bias2_sqrt).add_(ADAM_EPS)
            z_new = torch.where(frozen_now, za_d, za_d.addcdiv(m_a, denom, value=-lr / bias1))
            z[active] = z_new
            last_delta[active] = z_new - za_d
            m[active] = m_a
            v[active] = v_a
            n_steps[active] += (~frozen_now.flatten()).long()

            if (step + 1) % check_every == 0 and step + 1 < steps_max:
                leave = stopped[active] | bad[active]
                if bool(leave.any()):  # the only host sync: shrink the batch
                    keep = ~leave
                    active = active[keep]
                    aux_active = aux_active.select(keep)
                    if active.numel() == 0:
                        break

        status = ["stopped" if bool(st) else "nonfinite" if bool(bd) else "completed"
                  for st, bd in zip(stopped.tolist(), bad.tolist())]
        # samples that ran out of steps, or went non-finite: decode their final / last finite z
        rest = torch.nonzero(~stopped).flatten()
        if rest.numel():
            with torch.no_grad(), autocast:
                sub = z0.select(rest).with_z(z[rest])
                xr = render(sub, rest)
                cf[rest] = xr
                if not confirm:  # else: on `checker`, in float32, below
                    p_cf[rest] = classify(classifier, xr)
        nonfinite_cf = ~torch.isfinite(cf).flatten(1).all(dim=1)
        if bool(nonfinite_cf.any()):  # nothing finite to show: fall back to the reconstruction, say so
            cf[nonfinite_cf] = x0[nonfinite_cf]
            p_cf[nonfinite_cf] = p0[nonfinite_cf]
            for b in torch.nonzero(nonfinite_cf).flatten().tolist():
                status[b] = "nonfinite"
        redo = torch.nonzero(~stopped | nonfinite_cf).flatten()
        if confirm and redo.numel():  # float32 probabilities of the images not stopped (a stopped
            with torch.no_grad():     # one has those of the float32 check that confirmed its stop)
                p_cf[redo] = classify(checker, cf[redo].clamp(0, 1))

    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return OptimizationResult(
        reconstruction=x0.detach(),
        counterfactual=cf.detach().clamp_(0, 1),
        probs_reconstruction=p0.detach(),
        probs_counterfactual=p_cf.detach(),
        steps=n_steps,
        losses=losses,
        status=status,
        seconds=time.perf_counter() - start,
        latent=z0.with_z(z.detach()),
    )


def _off_target_ok(p: Tensor, y: Tensor, targets: Tensor, tol: float) -> Tensor:
    """``(B,)`` bool: every finding but the target is within ``tol`` of its reference ``y``."""
    off = (p - y).abs()
    off[torch.arange(p.shape[0], device=p.device), targets] = 0.0
    return off.amax(dim=1) <= tol
