"""The counterfactual search: the seed's objective, batched, with per-sample early stopping.

For images ``x`` (already at the latent model's size) with targets ``t_b``, saliency maps ``S`` and a
locality loss ``L``::

    z0 = E(x).z            x0 = D(z0)              p0 = sigmoid(C(x0))
    target vector  y_b = p0_b with y_b[t_b] = 0    (other findings keep their reconstructed value)
    loss_b(z) = L(D(z)_b, x0_b, S_b) + w_cls * mean_k (sigmoid(C(D(z)))_bk - y_bk)^2

minimized by Adam (lr 0.1, betas (0.9, 0.999), eps 1e-8: ``torch.optim.Adam``'s update, written out
so that samples can stop independently) on ``z`` for ``steps`` steps. With the seed's masked-L2 loss
``L = mean((D(z) - x0)^2 * (w_out * (1 - m) + m))`` this is the seed's method exactly (docs: The
method). The loss is the method's :class:`~xcf.methods.Objective`, the stop its
:class:`~xcf.methods.StopRule`; this module only runs the loop: render (:class:`_Render`), loss,
gradient, stop check, Adam step (:class:`_Adam`), shrink the batch.

Each sample has its own target, mask and loss; the batch loss is the *sum* of per-sample losses, so
a sample's gradient (and, Adam being element-wise, its whole trajectory) does not depend on the
other samples in the batch. A sample that is stopped (its target probability stayed below
the method's stop rule, or its loss became non-finite) leaves the batch:
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
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from .interfaces import Classifier, Latent, LatentModel, LocalityLoss
from .methods.parts import Objective, Reference, StopRule, stable_sigmoid

__all__ = ["frozen", "OptimizationResult", "optimize_latent", "stable_sigmoid", "target_vector", "STATUS",
           "bf16_is_fast", "classify", "resize_to"]

#: Per-sample end states, named for what happened.
STATUS = {
    "stopped-early": "met the stop rule (e.g. the target probability fell below the stop "
                     "probability) before the step budget ran out",
    "ran-all-steps": "used every step of its budget (the seed's method always does)",
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
    return Reference.of(p_recon, targets).y


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
        content: Where each sample's fill came from, for a method that fills from named sources
            (``local-exemplar``: the bank film), else ``None``.
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
    content: list[str | None] | None = field(default=None, repr=False)


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


class _Adam:
    """``torch.optim.Adam``'s update (betas (0.9, 0.999), eps 1e-8), written out per sample so that
    samples stop independently: a frozen sample does not move, and its moments do not change."""

    def __init__(self, z: Tensor) -> None:
        self.m = torch.zeros_like(z)
        self.v = torch.zeros_like(z)

    def step(self, active: Tensor, z: Tensor, grad: Tensor, frozen_now: Tensor, t: int, lr: float) -> Tensor:
        """The updated latents of the samples ``active`` (``z`` and ``grad`` are theirs)."""
        beta1, beta2 = ADAM_BETAS
        grad = torch.where(frozen_now, torch.zeros_like(grad), torch.nan_to_num(grad))
        m_a = self.m[active].mul_(beta1).add_(grad, alpha=1 - beta1)
        v_a = self.v[active].mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        denom = (v_a.sqrt() / math.sqrt(1 - beta2**t)).add_(ADAM_EPS)
        self.m[active] = m_a
        self.v[active] = v_a
        return torch.where(frozen_now, z, z.addcdiv(m_a, denom, value=-lr / (1 - beta1**t)))


class _Render:
    """The image the classifier sees, and the counterfactual returned, for latents: ``D(z)``, or
    with a blend ``(m, base)`` ``clamp(m * D(z) + base, 0, 1)`` (straight-through clamp: a blend such
    as the residual one can leave [0, 1], and the stop rule must judge the image that is returned)."""

    def __init__(self, latent_model: LatentModel, blend: tuple[Tensor, Tensor] | None) -> None:
        self.decode = latent_model.decode
        self.mask, self.base = blend if blend is not None else (None, None)

    def __call__(self, lat: Latent, idx: Tensor | None) -> Tensor:
        out = self.decode(lat).float()
        if self.mask is None:
            return out
        mk = self.mask if idx is None else self.mask[idx]
        bs = self.base if idx is None else self.base[idx]
        return clamp01_straight_through(mk * out + bs)


def optimize_latent(
    classifier: Classifier,
    latent_model: LatentModel,
    x: Tensor,
    targets: Tensor,
    saliency: Tensor,
    locality: LocalityLoss,
    *,
    objective: Objective | None = None,
    stop: StopRule | None = None,
    steps: int = 200,
    lr: float = 0.1,
    bf16: bool = False,
    initial: tuple[Latent, Tensor, Tensor] | None = None,
    blend: tuple[Tensor, Tensor] | None = None,
    z_start: Tensor | None = None,
    check_classifier: Classifier | None = None,
    on_step: Callable[[int, Tensor], None] | None = None,
    reference: Tensor | None = None,
) -> OptimizationResult:
    """Search counterfactual latents for a batch, in one region.

    Args:
        classifier: Frozen for the call; gets images resized to its ``input_size``.
        latent_model: Frozen for the call.
        x: ``(B, 1, S, S)`` canonical images, ``S == latent_model.input_size``.
        targets: ``(B,)`` long, the finding to remove from each sample.
        saliency: ``(B, 1, S, S)`` in [0, 1].
        locality: Per-sample locality loss.
        objective: The loss (default: the seed's, :class:`~xcf.methods.Objective`).
        stop: When a sample stops (default: never, the seed's).
        steps: Most optimizer updates per sample.
        lr: Adam's learning rate on ``z``.
        bf16: Run the classifier and decoder under bf16 autocast; a stop is then confirmed in
            float32 and the reported probabilities are float32.
        initial: ``(z0, x0, p0)`` when the caller already encoded the batch (skips that work);
            with ``blend``, ``x0`` and ``p0`` must be those of the blended start.
        blend: ``(mask, base)``, each ``(B, 1, S, S)`` (:meth:`xcf.methods.Blend.weights`): the
            counterfactual is ``clamp(mask * D(z) + base, 0, 1)``; change outside the mask's support
            is exactly zero.
        z_start: The latent tensor the search starts from (default ``z0``'s); the locality loss and
            the reference stay ``x0`` (a search continued in a larger region).
        check_classifier: The classifier whose float32 probabilities are reported and confirm a
            stop (default: ``classifier``): the original when the loop runs on a folded /
            channels-last copy, so that validity is the original's.
        on_step: ``on_step(step, p_target)`` after each step, with the target probabilities of
            the samples still searching (for a progress bar; one host sync per step).
        reference: ``(B, K)`` probabilities the classification term and the stop rule's
            ``off_target`` hold the other findings to (default: the start's, ``p0``, the seed's
            reference); a search that starts from an edit already made (a fill) gives the
            input's, so that what the edit did to the other findings is not taken as their start.

    Returns:
        An :class:`OptimizationResult`.
    """
    objective = objective or Objective()
    stop = stop or StopRule()
    start = time.perf_counter()
    device = x.device
    B = x.shape[0]
    checker = classifier if check_classifier is None else check_classifier
    with frozen(classifier, latent_model, None if checker is classifier else checker):
        use_bf16 = bf16 and device.type in ("cuda", "cpu")
        autocast = (torch.autocast(device.type, dtype=torch.bfloat16)
                    if use_bf16 else contextlib.nullcontext())
        render = _Render(latent_model, blend)
        if initial is None:
            with torch.no_grad(), autocast:
                z0 = latent_model.encode(x).detach()
                x0 = render(z0, None)
            with torch.no_grad():
                p0 = classify(checker, x0)
        else:
            z0, x0, p0 = initial
        ref = Reference.of(p0 if reference is None else reference, targets)
        if objective.one_sign:  # which way of brightness takes the finding away, per film
            region = blend[0] > 0 if blend is not None else saliency > objective.mask_threshold
            ref = Reference(ref.y, ref.targets, objective.sign(checker, x0, targets, region))

        z = (z0.z if z_start is None else z_start).detach().clone()
        adam = _Adam(z)
        last_delta = torch.zeros_like(z)  # to step back to the last finite latent
        n_steps = torch.zeros(B, dtype=torch.long, device=device)
        stopped = torch.zeros(B, dtype=torch.bool, device=device)
        bad = torch.zeros(B, dtype=torch.bool, device=device)
        losses = torch.full((steps, B), float("nan"), device=device)
        cf = x0.detach().clone()
        p_cf = p0.detach().clone()

        active = torch.arange(B, device=device)
        aux_active = z0  # Latent whose aux is indexed like `active`
        zshape = (-1,) + (1,) * (z.dim() - 1)
        ishape = (-1,) + (1,) * (x0.dim() - 1)
        # a stop is confirmed in float32 on `checker` unless the loop's probabilities are already those
        confirm = use_bf16 or checker is not classifier
        for step in range(steps):
            za = z[active].requires_grad_(True)
            ref_a = ref.select(active)
            with autocast:
                xd = render(aux_active.with_z(za), active)
                pa = objective.probabilities(classifier(resize_to(xd, classifier.input_size)).float())
                pv = None
                if objective.views is not None and objective.views.n:  # the flip must survive these
                    xv = objective.views(xd, step)
                    pv = objective.probabilities(classifier(resize_to(xv, classifier.input_size)).float())
                    pv = pv.view(objective.views.n, active.numel(), -1)
            loss = objective(locality, xd, x0[active], saliency[active], pa, ref_a, pv)
            (grad,) = torch.autograd.grad(loss.sum(), za)
            ld = loss.detach()
            finite = torch.isfinite(ld) & torch.isfinite(grad).flatten(1).all(dim=1)
            was_done = stopped[active] | bad[active]
            losses[step, active] = torch.where(finite & ~was_done, ld, float("nan"))

            # --- end conditions, on the current z (before its update) ---
            newly_bad = ~finite & ~was_done
            pa_d = pa.detach()
            cand = stop.reached(pa_d, ref_a, None if pv is None else pv.detach()) & finite
            if confirm and bool(cand.any()):  # confirm in float32, on the returned image (bf16
                ci = torch.nonzero(cand).flatten()  # rounding can put a film at p 0.5001 "below" 0.5)
                with torch.no_grad():
                    p32 = classify(checker, xd.detach()[ci].clamp(0, 1))
                cand[ci] = stop.reached(p32, ref_a.select(ci))
                pa_d = pa_d.clone()
                pa_d[ci] = p32  # a sample that stops now reports these float32 probabilities
            newly_stopped = cand & ~was_done
            if on_step is not None:
                rows = torch.arange(active.numel(), device=device)
                on_step(step + 1, pa_d[rows, ref_a.targets][~was_done].float().cpu())
            # keep the image and probabilities of the step the sample stopped at
            cf[active] = torch.where(newly_stopped.view(ishape), xd.detach(), cf[active])
            p_cf[active] = torch.where(newly_stopped[:, None], pa_d, p_cf[active])
            stopped[active] = stopped[active] | newly_stopped
            bad[active] = bad[active] | newly_bad
            frozen_now = (was_done | newly_stopped | newly_bad).view(zshape)
            za_d = za.detach()
            if step > 0:  # a non-finite latent steps back to the last finite one
                za_d = torch.where(newly_bad.view(zshape), za_d - last_delta[active], za_d)
                n_steps[active] -= newly_bad.long()

            z_new = adam.step(active, za_d, grad, frozen_now, step + 1, lr)
            z[active] = z_new
            last_delta[active] = z_new - za_d
            n_steps[active] += (~frozen_now.flatten()).long()

            leave = stopped[active] | bad[active]
            if step + 1 < steps and bool(leave.any()):  # the only host sync: shrink the batch
                active = active[~leave]
                aux_active = aux_active.select(~leave)
                if active.numel() == 0:
                    break

        status = ["stopped-early" if bool(st) else "nonfinite" if bool(bd) else "ran-all-steps"
                  for st, bd in zip(stopped.tolist(), bad.tolist())]
        # samples that ran out of steps, or went non-finite: decode their final / last finite z
        rest = torch.nonzero(~stopped).flatten()
        if rest.numel():
            with torch.no_grad(), autocast:
                xr = render(z0.select(rest).with_z(z[rest]), rest)
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
