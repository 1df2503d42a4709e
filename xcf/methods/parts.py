"""The parts a counterfactual method is built of, each with one job.

- :class:`Objective`: the loss the search minimizes (the seed's: locality + classification).
- :class:`Region`: where the change may go (which saliency map, which levels of it, how the region
  grows for films that did not flip, and a second saliency method to fall back on).
- :class:`Blend`: how the decoder's output is put into the film.
- :class:`StopRule`: when a film stops.
- :class:`Execution`: how the search loop runs (model copies, precision); never what it computes,
  up to float rounding.
- :class:`LineSearch`: the Latent Shift baseline's search (one gradient, a line search along it).

Every part is a frozen dataclass: a method is changed with :func:`dataclasses.replace` (or
:meth:`xcf.methods.Method.replace`), never by a switch elsewhere.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from ..errors import ConfigError
from ..filters import gaussian_blur

__all__ = ["Objective", "Views", "Region", "Blend", "Fill", "StopRule", "Execution", "LineSearch", "Reference",
           "feather_mask", "blend_base", "stable_sigmoid"]


# --------------------------------------------------------------------------------------------
# objective


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
    """``torch.sigmoid`` with a gradient that does not vanish by rounding (``Objective(stable=True)``)."""
    return _StableSigmoid.apply(logits)


@dataclass(frozen=True)
class Reference:
    """What the classification term pulls toward: ``y`` ``(B, K)``, the start's probabilities with
    each film's target set to 0, and ``targets`` ``(B,)``; ``sign`` ``(B,)``, with
    :attr:`Objective.one_sign`, the direction of brightness (+1 or -1) that raises each film's
    target at the start (``None`` otherwise)."""

    y: Tensor
    targets: Tensor
    sign: Tensor | None = None

    @classmethod
    def of(cls, p_start: Tensor, targets: Tensor) -> Reference:
        """The seed's target vector from the start's probabilities ``(B, K)``."""
        y = p_start.detach().clone()
        y[torch.arange(y.shape[0], device=y.device), targets] = 0.0
        return cls(y, targets)

    def select(self, idx: Tensor) -> Reference:
        """The rows ``idx`` of the batch."""
        return Reference(self.y[idx], self.targets[idx], None if self.sign is None else self.sign[idx])


@dataclass(frozen=True)
class Views:
    """Small changes that do not change a film's diagnosis, under which a counterfactual must stay
    valid (expectation over transformations, Athalye et al., ICML 2018): a texture that flips only
    this classifier at this exact pixel grid does not survive them, a finding taken away does.

    Each step draws ``n`` views of every counterfactual: a Gaussian blur of sigma uniform in
    ``[0, blur]`` pixels, a shift of up to ``shift`` pixels in each direction (edges replicated), and
    additive Gaussian noise of standard deviation ``noise``, clamped to [0, 1]. The draws depend on
    the step only (one generator seeded by ``seed`` and the step; the same view for every film of
    the batch), so a search is reproducible and a film's result does not depend on its batch.

    Attributes:
        n: Views per step (0: none).
        blur: Largest blur sigma, pixels.
        shift: Largest shift, pixels.
        noise: Noise standard deviation (images in [0, 1]).
        seed: Seed of the draws.
    """

    n: int = 4
    blur: float = 1.5
    shift: int = 3
    noise: float = 0.02
    seed: int = 0

    def __post_init__(self) -> None:
        if self.n < 0 or self.blur < 0 or self.shift < 0 or self.noise < 0:
            raise ConfigError("views: n, blur, shift and noise must be >= 0")

    def __call__(self, x: Tensor, step: int) -> Tensor:
        """``(n * B, 1, H, W)``: the ``n`` views of the images ``x`` ``(B, 1, H, W)`` at ``step``,
        view-major (rows ``v * B .. v * B + B - 1`` are view ``v``). Differentiable in ``x``."""
        B, _, H, W = x.shape
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + step)
        sig = torch.rand(self.n, generator=g) * self.blur
        sh = torch.randint(-self.shift, self.shift + 1, (self.n, 2), generator=g)
        noise = torch.randn(self.n, 1, 1, H, W, generator=g) * self.noise
        out = []
        r = self.shift
        for v in range(self.n):
            xv = gaussian_blur(x, float(sig[v]), padding="replicate") if sig[v] > 0.05 else x
            if r:
                dy, dx = int(sh[v, 0]), int(sh[v, 1])
                xv = torch.nn.functional.pad(xv, (r, r, r, r), mode="replicate")
                xv = xv[..., r + dy:r + dy + H, r + dx:r + dx + W]
            out.append((xv + noise[v].to(x.device, x.dtype)).clamp(0, 1))
        return torch.cat(out)


@dataclass(frozen=True)
class Objective:
    """The seed's loss ("Local Counterfactuals for Chest X-Ray Images using Saliency Map Guidance",
    github.com/florianjuengermann/local-counterfactuals;
    docs: The method): per film ``b``,

    ``loss_b(z) = L(D(z)_b, x0_b, S_b) + classification_weight * mean_k (p_bk - y_bk)^2``

    with ``L`` the locality loss (masked L2: change outside ``saliency > mask_threshold`` weighted
    ``outside_weight``, inside 1), ``p = sigmoid(C(D(z)))`` and ``y`` the start's probabilities with
    the target set to 0 (:class:`Reference`).

    Attributes:
        mask_threshold: Saliency level above which a pixel is inside the region (given to the
            locality loss as ``threshold``).
        outside_weight: Weight of change outside the region (given to the locality loss).
        classification_weight: Weight of the classification term.
        stable: Compute the sigmoid's gradient without rounding (:func:`stable_sigmoid`), so a film
            the classifier is certain of (logit above about 17, where float32 rounds ``p`` to
            exactly 1 and the seed's gradient is exactly 0) still moves; elsewhere the seed's loss
            up to float rounding.
        views: With :class:`Views`, the classification term is the mean over the counterfactual and
            its views (the flip must survive them); ``None``: the counterfactual alone (the seed's).
        one_sign: Weight of a term that keeps the change one-signed: a finding that makes the film
            brighter where it is (an opacity: consolidation, effusion, a nodule, a large heart) is
            taken away by darkening, one that makes it darker (a lucency: pneumothorax) by
            brightening. The direction is read per film from the classifier's gradient at the start
            (the sign of the target probability's gradient summed over the region,
            :attr:`Reference.sign`), and change the other way is penalized,
            ``one_sign * mean(relu(sign * (x_cf - x_ref))^2)``, so the search cannot flip the
            classifier with a pattern of bright and dark spots. 0: off (the seed's).
    """

    mask_threshold: float = 0.5
    outside_weight: float = 1e5
    classification_weight: float = 1e3
    stable: bool = False
    views: Views | None = None
    one_sign: float = 0.0

    def __post_init__(self) -> None:
        if not 0 <= self.mask_threshold <= 1:
            raise ConfigError(f"mask_threshold must be in [0, 1], got {self.mask_threshold}")
        if self.outside_weight < 0 or self.classification_weight < 0 or self.one_sign < 0:
            raise ConfigError("outside_weight, classification_weight and one_sign must be >= 0")
        if isinstance(self.views, dict):  # e.g. objective__views={"n": 4} from a variant spec
            object.__setattr__(self, "views", Views(**self.views))
        if self.views is not None and not isinstance(self.views, Views):
            raise ConfigError(f"views must be an xcf.methods.Views, a dict of its fields or None, got {self.views!r}")

    def probabilities(self, logits: Tensor) -> Tensor:
        """``(B, K)`` probabilities from logits, with the stable gradient when asked for."""
        return stable_sigmoid(logits) if self.stable else torch.sigmoid(logits)

    def __call__(self, locality, x_cf: Tensor, x_ref: Tensor, saliency: Tensor, probs: Tensor,
                 ref: Reference, view_probs: Tensor | None = None) -> Tensor:
        """Per-film loss ``(B,)`` of counterfactuals ``x_cf`` ``(B, 1, S, S)`` with probabilities
        ``probs`` ``(B, K)``, against the start ``x_ref`` and the saliency maps ``(B, 1, S, S)``;
        ``view_probs`` ``(V, B, K)``: the probabilities of the views, averaged in with ``probs``."""
        loss_cls = ((probs - ref.y) ** 2).mean(dim=1)
        if view_probs is not None and view_probs.numel():
            loss_cls = (loss_cls + ((view_probs - ref.y) ** 2).mean(dim=2).sum(0)) / (1 + view_probs.shape[0])
        loss = locality(x_cf, x_ref, saliency).float() + self.classification_weight * loss_cls
        if self.one_sign and ref.sign is not None:
            wrong = torch.relu(ref.sign.view(-1, 1, 1, 1) * (x_cf - x_ref))
            loss = loss + self.one_sign * (wrong ** 2).flatten(1).mean(dim=1)
        return loss

    def sign(self, classifier, x_start: Tensor, targets: Tensor, mask: Tensor) -> Tensor:
        """``(B,)`` +1 where brightening the region raises the target's probability at the start
        ``x_start`` ``(B, 1, S, S)`` (the sum of the gradient over ``mask``), else -1."""
        from ..optimize import resize_to

        with torch.enable_grad():
            x = x_start.detach().clone().requires_grad_(True)
            p = torch.sigmoid(classifier(resize_to(x, classifier.input_size)).float())
            p_t = p[torch.arange(x.shape[0], device=x.device), targets]
            (g,) = torch.autograd.grad(p_t.sum(), x)
        total = (g * mask.float()).flatten(1).sum(dim=1)
        return torch.where(total >= 0, 1.0, -1.0).to(x_start.dtype)


# --------------------------------------------------------------------------------------------
# region


@dataclass(frozen=True)
class Region:
    """Where the change may go.

    Attributes:
        saliency: Registered saliency method whose map defines the region (an explicit
            ``saliency=`` given to the :class:`~xcf.Explainer` wins).
        levels: Saliency levels tried in order, decreasing (the region grows); a film moves on to
            the next level only if it did not flip at the current one (or, with a stop probability
            below the decision threshold, did not get below it). ``(0.5,)``: the seed's one region.
        level_steps: Step budget of every level but the last (which gets the method's ``steps``);
            ``None``: every level gets ``steps``.
        warm_start: A larger region starts from the latent the smaller one ended at (Adam's
            moments reset) instead of from the start.
        lr_growth: The learning rate of level ``i`` (0 first) is ``lr * lr_growth ** i``.
        fallback: A second saliency method (registered name): films not flipped at any level are
            searched again, level by level, in its regions (for diffuse findings). ``None``: none.
    """

    saliency: str = "gradcam++"
    levels: tuple[float, ...] = (0.5,)
    level_steps: int | None = None
    warm_start: bool = False
    lr_growth: float = 1.0
    fallback: str | None = None

    def __post_init__(self) -> None:
        lv = tuple(float(t) for t in self.levels)
        if not lv or any(not 0 < t < 1 for t in lv) or list(lv) != sorted(lv, reverse=True):
            raise ConfigError("region levels must be decreasing saliency levels in (0, 1), e.g. (0.5, 0.3, 0.1)")
        object.__setattr__(self, "levels", lv)
        if self.level_steps is not None and self.level_steps < 1:
            raise ConfigError(f"level_steps must be >= 1 or None, got {self.level_steps}")
        if not self.lr_growth > 0:
            raise ConfigError(f"lr_growth must be > 0, got {self.lr_growth}")

    def schedule(self, steps: int, lr: float) -> list[tuple[float, int, float]]:
        """``(level, step budget, learning rate)`` of each level, in order."""
        out = []
        for i, level in enumerate(self.levels):
            last = i == len(self.levels) - 1
            budget = steps if last or self.level_steps is None else self.level_steps
            out.append((level, budget, lr * self.lr_growth ** i if i else lr))
        return out

    @staticmethod
    def at_level(saliency: Tensor, level: float, mask_threshold: float) -> Tensor:
        """The saliency rescaled so that the locality loss's ``mask_threshold`` falls at ``level``."""
        if level == mask_threshold:
            return saliency
        return (saliency * (mask_threshold / level)).clamp(0, 1)


# --------------------------------------------------------------------------------------------
# blend


def feather_mask(mask: Tensor, sigma: float) -> Tensor:
    """Feather a ``(B, 1, H, W)`` mask in [0, 1]: ``max(mask, clamp(2 * gaussian_sigma(mask), 0, 1))``.

    The region keeps weight 1 (its edge, where the blur is 0.5, too) and gains a soft border that
    falls to 0 over about ``2 * sigma`` pixels outside it. ``sigma == 0`` returns the mask unchanged.
    """
    if sigma <= 0:
        return mask
    return torch.maximum(mask, (2 * _smooth(mask, sigma)).clamp(0, 1))


def _smooth(x: Tensor, sigma: float) -> Tensor:
    """A Gaussian blur of ``sigma`` pixels over ``round(3 sigma)`` (at least 1), edges replicated:
    a region's soft edge, and a fill's change without its fine detail."""
    return gaussian_blur(x, sigma, radius=max(1, int(round(3 * sigma))), padding="replicate")


def blend_base(kind: str, mask: Tensor, x: Tensor, x_rec: Tensor) -> Tensor:
    """The fixed part ``base`` of a blended counterfactual ``mask * D(z) + base``.

    ``"input"``: ``(1 - mask) * x`` (the input outside the region, the decoder inside);
    ``"reconstruction"``: ``(1 - mask) * D(z0)``; ``"residual"``: ``x - mask * D(z0)``, i.e. the
    counterfactual is ``x + mask * (D(z) - D(z0))``: the input plus the decoder's *change*, so that
    it starts exactly at the input and the latent model's reconstruction error appears nowhere.
    """
    if kind == "input":
        return (1 - mask) * x
    if kind == "reconstruction":
        return (1 - mask) * x_rec
    if kind == "residual":
        return x - mask * x_rec
    raise ConfigError(f"unknown blend {kind!r}; valid: none, input, reconstruction, residual")


@dataclass(frozen=True)
class Blend:
    """How the decoder's output becomes the counterfactual.

    Attributes:
        kind: ``"none"`` (the seed's: the counterfactual is ``D(z)``); ``"input"`` or
            ``"reconstruction"``: ``m * D(z) + (1 - m) * ref`` with ``m`` the feathered region, so
            nothing outside it changes by construction; ``"residual"``: ``x + m * (D(z) - D(z0))``,
            the input plus the decoder's change inside the region (the search starts at ``x`` and
            the latent model's error appears nowhere).
        feather: Gaussian sigma (pixels) that softens the region's edge.
    """

    kind: Literal["none", "input", "reconstruction", "residual"] = "none"
    feather: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in ("none", "input", "reconstruction", "residual"):
            raise ConfigError(f"unknown blend {self.kind!r}; valid: none, input, reconstruction, residual")
        if not 0 <= self.feather <= 64:
            raise ConfigError(f"feather must be in [0, 64] pixels, got {self.feather}")

    def weights(self, mask: Tensor, x: Tensor, x_rec: Tensor) -> tuple[Tensor, Tensor] | None:
        """``(m, base)`` with the counterfactual ``m * D(z) + base``, or ``None`` for no blend."""
        if self.kind == "none":
            return None
        m = feather_mask(mask.float(), self.feather)
        return m, blend_base(self.kind, m, x, x_rec)


@dataclass(frozen=True)
class Fill:
    """What a fill method puts into the region: what the pack's inpainter, trained on films without
    findings, draws there from the rest of the film (:class:`~xcf.methods.LocalFill`).

    Attributes:
        dilate: Pixels the region grows by before it is filled: the saliency marks where the
            evidence is strongest, the finding's edge lies a little outside it.
        feather: Gaussian sigma (pixels) of the soft edge between the fill and the film.
        shrink: Differences between the fill and the film smaller than this are not a change
            (soft threshold: ``sign(d) * max(|d| - shrink, 0)``): the inpainter redraws healthy
            tissue in the region with an error of its own (grain, fine vessels), which is not the
            finding. 0: the fill as it is.
        one_sign: Keep only the change in the direction of the fill's mean change over the region
            (a finding is an opacity or a lucency, its removal darkens or brightens).
        detail: The fills tried, in order, per film and region level: for each sigma > 0 the film
            keeps its own detail finer than a Gaussian of that sigma (pixels) in the region
            (``blur(fill) + x - blur(x)``: the fill replaces the region's shading, the film keeps
            its ribs, vessels and grain); 0 is the fill as drawn (an inpainter draws the mean of
            what could be there, so lung comes out without its markings). A film takes the first
            that meets the stop rule, else the first the classifier calls absent, else the first.
    """

    dilate: int = 4
    feather: float = 2.0
    shrink: float = 0.0
    one_sign: bool = False
    detail: tuple[float, ...] = (0.0,)

    def __post_init__(self) -> None:
        if isinstance(self.dilate, bool) or not isinstance(self.dilate, int) or not 0 <= self.dilate <= 64:
            raise ConfigError(f"fill dilate must be an integer in 0..64 pixels, got {self.dilate!r}")
        if not 0 <= self.feather <= 64:
            raise ConfigError(f"fill feather must be in [0, 64] pixels, got {self.feather}")
        if not 0 <= self.shrink < 1:
            raise ConfigError(f"fill shrink must be in [0, 1), got {self.shrink}")
        if not isinstance(self.one_sign, bool):
            raise ConfigError(f"fill one_sign must be true or false, got {self.one_sign!r}")
        det = (self.detail,) if isinstance(self.detail, (int, float)) else tuple(self.detail)
        if not det or any(isinstance(v, bool) or not 0 <= v <= 16 for v in det):
            raise ConfigError(f"fill detail must be sigmas in [0, 16] pixels, e.g. (2.0, 0.0), got {self.detail!r}")
        object.__setattr__(self, "detail", tuple(float(v) for v in det))

    def change(self, fill: Tensor, x: Tensor, m: Tensor, detail: float = 0.0) -> Tensor:
        """The change ``m * d`` a fill makes to films ``x`` in the feathered region ``m``, with
        ``d = fill - x`` (blurred by ``detail`` px: the film keeps its finer detail) shrunk and
        kept to one sign per :attr:`shrink` and :attr:`one_sign`."""
        d = fill - x
        if detail > 0:  # only the shading changes: blur(fill) + (x - blur(x)) - x
            d = _smooth(d, detail)
        if self.shrink > 0:
            d = torch.sign(d) * (d.abs() - self.shrink).clamp_min(0)
        if self.one_sign:
            s = torch.sign((d * m).flatten(1).sum(1)).view(-1, *([1] * (d.dim() - 1)))
            d = torch.where(d * s > 0, d, torch.zeros_like(d))
        return m * d


# --------------------------------------------------------------------------------------------
# stop rule


@dataclass(frozen=True)
class StopRule:
    """When a film stops searching.

    Attributes:
        probability: Stop once the target probability is below this (``None``: run every step,
            the seed's behaviour).
        off_target: With ``probability``: stop only once every other finding's probability is also
            within this of its reference (the start's); ``None``: the target alone decides. A film
            that never gets there runs all its steps and is judged valid on its target as usual.
        on_views: With an objective that has :class:`Views`: stop only once every view meets the
            rule too (the flip survives them).
    """

    probability: float | None = None
    off_target: float | None = None
    on_views: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.on_views, bool):
            raise ConfigError(f"stop on_views must be true or false, got {self.on_views!r}")
        for name in ("probability", "off_target"):
            v = getattr(self, name)
            if v is not None and not 0 < v <= 1:
                raise ConfigError(f"stop {name} must be in (0, 1] or None, got {v}")

    def reached(self, probs: Tensor, ref: Reference, view_probs: Tensor | None = None) -> Tensor:
        """``(B,)`` bool: the films whose probabilities ``(B, K)`` meet the rule (all ``False``
        without a ``probability``); with ``on_views``, the probabilities of their views
        ``(V, B, K)`` must meet it too."""
        B = probs.shape[0]
        if self.probability is None:
            return torch.zeros(B, dtype=torch.bool, device=probs.device)
        rows = torch.arange(B, device=probs.device)
        ok = probs[rows, ref.targets] < self.probability
        if self.off_target is not None:
            off = (probs - ref.y).abs()
            off[rows, ref.targets] = 0.0
            ok &= off.amax(dim=1) <= self.off_target
        if self.on_views and view_probs is not None:
            for pv in view_probs:
                ok &= self.reached(pv, ref)
        return ok


# --------------------------------------------------------------------------------------------
# execution


@dataclass(frozen=True)
class Execution:
    """How the search loop runs; the result is the same function up to float rounding.

    Attributes:
        fold_batchnorm: Search on copies of the models with every eval-mode BatchNorm that directly
            follows a convolution folded into it (:mod:`xcf.fusion`); saliency, the start and every
            reported probability use the original models.
        channels_last: Search on copies of the models in channels-last memory format.
        autocast_bf16: Run the loop's classifier and decoder under bf16 autocast; ``"auto"``: only
            where bf16 pays (:func:`xcf.optimize.bf16_is_fast`). A film stops only when its float32
            probability meets the stop rule too; reported probabilities are float32.
    """

    fold_batchnorm: bool = False
    channels_last: bool = False
    autocast_bf16: bool | Literal["auto"] = False

    def __post_init__(self) -> None:
        if self.autocast_bf16 not in (True, False, "auto"):
            raise ConfigError(f"autocast_bf16 must be True, False or 'auto', got {self.autocast_bf16!r}")

    @property
    def copies(self) -> bool:
        """Whether the loop runs on copies of the models."""
        return self.fold_batchnorm or self.channels_last


# --------------------------------------------------------------------------------------------
# latent shift


@dataclass(frozen=True)
class LineSearch:
    """Latent Shift's search (:func:`xcf.baselines.latent_shift`): the shift sizes ``|lambda|``
    tried along the one gradient.

    Attributes:
        schedule: ``"geometric"`` (``num`` values evenly spaced in log scale from ``lambda_min`` to
            ``lambda_max``) or ``"linear"`` (``num`` values from ``lambda_max / num`` to
            ``lambda_max``).
        lambda_min: Smallest ``|lambda|`` of the geometric schedule.
        lambda_max: Bound on ``|lambda|``: the search gives up there.
        num: Number of ``lambda`` values (the most decodes per film).
        lambdas: Explicit values instead of a schedule: negative, each further from 0.
        use_logit: Take the gradient of the target logit instead of its probability.
    """

    schedule: Literal["geometric", "linear"] = "geometric"
    lambda_min: float = 1e-3
    lambda_max: float = 1e5
    num: int = 50
    lambdas: tuple[float, ...] | None = None
    use_logit: bool = False

    def __post_init__(self) -> None:
        if self.schedule not in ("geometric", "linear"):
            raise ConfigError(f"unknown shift schedule {self.schedule!r}; valid: geometric, linear")
        if not (self.lambda_min > 0 and self.lambda_max > 0 and self.num >= 1):
            raise ConfigError("lambda_min and lambda_max must be > 0 and num >= 1")
        if self.lambdas is not None:
            v = tuple(float(t) for t in self.lambdas)
            if not v or any(t >= 0 for t in v) or any(b >= a for a, b in zip(v, v[1:])):
                raise ConfigError("lambdas must be negative and decreasing (growing in size), "
                                  "e.g. (-1, -3, -10, -30)")
            object.__setattr__(self, "lambdas", v)

    def values(self) -> list[float]:
        """The ``lambda`` values tried, in order (all negative, growing in size)."""
        if self.lambdas is not None:
            return list(self.lambdas)
        n, hi = int(self.num), float(self.lambda_max)
        if self.schedule == "linear":
            return [-hi * i / n for i in range(1, n + 1)]
        lo = float(self.lambda_min)
        if lo > hi:
            raise ConfigError(f"lambda_min ({lo:g}) must not exceed lambda_max ({hi:g})")
        if n == 1:
            return [-hi]
        step = (math.log(hi) - math.log(lo)) / (n - 1)
        return [-math.exp(math.log(lo) + i * step) for i in range(n)]
