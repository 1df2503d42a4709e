"""Settings of the counterfactual search (:class:`ExplainConfig`) and its named presets."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .errors import ConfigError

__all__ = ["DEFAULT_PRESET", "ExplainConfig", "PRESETS", "auto_batch_size"]

#: ``batch_size="auto"`` per device type (see :func:`auto_batch_size`).
AUTO_BATCH_SIZE = {"cpu": 8}


def auto_batch_size(device_type: str) -> int:
    """The batch size ``batch_size="auto"`` means on a device type (``"cpu"``, ``"cuda"``, ``"mps"``):
    8 on a CPU, 16 elsewhere. On this project's 2-core CPU, ``preset("fast")`` on 32 pneumonia
    films, each batch size run twice in turn in one process, took 0.67 and 0.60 s per film at
    batch 8 (4: 0.68, 0.61) and 0.80 and 0.74 s at batch 16 (docs/results/perf-pneumonia-cpu-batch.md;
    a step's activations at batch 16 no longer fit the cache). On a GPU, 16 is a size that fits
    small cards, not the fastest (README Speed)."""
    return AUTO_BATCH_SIZE.get(device_type, 16)


class ExplainConfig(BaseModel):
    """How a counterfactual is searched for.

    The defaults are the seed method's settings exactly (../seed/METHOD.md): Adam on the latent,
    learning rate 0.1, 200 steps, no early stopping, mask = saliency > 0.5, change outside the mask
    weighted 1e5, classification term weighted 1e3, target vector = the reconstruction's
    probabilities with the target finding set to 0. This is the reference (``preset("seed")``); an
    :class:`xcf.Explainer` given no config uses ``preset(DEFAULT_PRESET)`` instead.

    Attributes:
        steps: Maximum number of optimizer steps per image.
        lr: Adam learning rate on the latent ``z``.
        mask_threshold: Saliency level above which a pixel is "inside" (passed to the locality loss
            when its factory takes ``threshold``).
        outside_weight: Weight of change outside the mask (passed as ``outside_weight``).
        classification_weight: Weight of the MSE between the counterfactual's probabilities and the
            target vector.
        stop_probability: Stop a sample once its target probability is below this (``None``: run
            all ``steps``, the seed's behaviour).
        stop_patience: Consecutive steps the probability must stay below ``stop_probability``.
        stop_off_target: With ``stop_probability``: stop a sample only once, besides its target,
            every other finding's probability is also within this of its start (the reference
            the classification term pulls it to); ``None``: the target alone decides. A sample
            that never gets there runs all its steps and is judged valid on its target as usual.
        seed: Seed of torch's RNG for the call (``None``: leave the RNG alone). The optimization
            itself is deterministic; the seed matters for stochastic saliency methods.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:N"``, ``"mps"`` or ``"auto"``.
        batch_size: Images optimized together in :meth:`xcf.Explainer.explain` (results do not
            depend on it). ``"auto"``: :func:`auto_batch_size` of the device, 8 on a CPU (on this
            project's 2-core CPU a search step costs less per image at 8 than at 16), 16 on a GPU
            (raise it where memory allows: on an H200, 64 explained 2.5x as many images per second
            as 16, README Speed).
        lr_schedule: ``"constant"`` (seed) or ``"cosine"`` (decay to 10% of ``lr`` over ``steps``).
        autocast_bf16: Run the search loop's classifier and decoder under bf16 autocast (CUDA and
            CPU; on a CPU with bf16 instructions, AVX512-BF16 or AMX, a step costs about half,
            elsewhere it can cost more). ``"auto"``: only where bf16 is expected to pay
            (:func:`xcf.optimize.bf16_is_fast`: a CUDA device with bf16 support, or such a CPU).
            A sample stops only when its float32 probability is below ``stop_probability`` too
            (checked when the bf16 one is); the probabilities reported, and the decision to grow
            the region, are float32 on the returned image.
        channels_last: Run the search loop on copies of the classifier and latent model in
            channels-last memory format (CPU and CUDA; the originals are not changed).
        fold_batchnorm: Run the search loop on copies of the classifier and latent model with every
            eval-mode BatchNorm that directly follows a convolution in an ``nn.Sequential`` folded
            into it (:mod:`xcf.fusion`): the same function up to float rounding, one operation
            fewer forward and backward per folded pair. Saliency, the start and every reported
            probability (validity, the decision to grow the region) use the original models.
        compile: Wrap the classifier and decoder with ``torch.compile``.
        decision_threshold: Probability below which a finding counts as absent (validity).
        classification_loss: ``"mse"`` (the seed's: squared error between the probabilities and
            the reconstruction's with the target set to 0) or ``"logit"``: per finding, the mean of
            ``relu(l_t + logit_margin)^2`` for the target's logit and ``(l_k - l0_k)^2`` for the
            others (their logits at the start), which keeps pushing when the sigmoid saturates,
            or ``"mse-stable"``: the seed's loss with the sigmoid's gradient computed without
            rounding (``exp(-softplus(l) - softplus(-l))``), so a film the classifier is certain of
            (logit above about 17, where float32 rounds p to exactly 1 and the seed's gradient is
            exactly 0) still moves; elsewhere the same as ``"mse"`` up to float rounding.
        logit_margin: ``classification_loss="logit"`` only: the target's logit is pushed below
            ``-logit_margin`` (probability ``sigmoid(-margin)``, 0.27 for 1.0).
        stop_check_every: Evaluate the stopping rule every this many steps (fewer host syncs on GPU).
        method: ``"seed"`` (the masked latent optimization) or ``"latent-shift"`` (the Gifsplanation
            baseline, Cohen et al. 2021: no mask, one gradient, a line search along it).
        blend: ``"none"`` (seed); ``"input"`` or ``"reconstruction"``: the counterfactual is
            ``m * D(z) + (1 - m) * ref`` with ``m`` the (feathered) mask, so nothing outside the mask
            changes by construction (``"input"`` also removes the autoencoder's error outside it);
            ``"residual"``: ``x + m * (D(z) - D(z0))``, the input plus the decoder's change inside
            the mask, so the autoencoder's error appears nowhere and the search starts at ``x``.
        feather: Gaussian sigma (pixels) that softens the blending mask's edge.
        region_thresholds: Adaptive region: saliency levels tried in order (decreasing, so the
            region grows); a sample moves to the next level only if it did not flip at the current
            one (with a ``stop_probability`` below ``decision_threshold``: if it did not get below
            the stop probability). ``None``: the single level ``mask_threshold``.
        prune_shares: After the search, keep only the pixels holding this share of the L1 change
            (``|cf - start|``, feathered), trying the shares in increasing order and keeping the first
            whose result is still valid; the region shown becomes those pixels. ``None``: no pruning.
        detail_gate: With a latent model that passes the input's detail around ``z``
            (``detail_sigma > 0``): also search a gate in [0, 1] per pixel on that detail (1 at the
            start), so that the change can lower a finding's own sharp edges, which ``z`` cannot
            reach; it removes detail the film has and never draws any (:mod:`xcf.detail_gate`).
            ``"auto"`` (default since session 12) gates when the latent model has such detail and
            searches ``z`` alone when it has not (every latent without ``detail_sigma``: the seed's
            method exactly), and leaves ``method="latent-shift"`` as published; ``True`` refuses a
            latent without detail with a one-line error; ``False`` keeps the detail fixed. It became the default when the benchmark showed it
            at least as good on validity and locality on both packs (README, Results; the seed's
            loop on 200 test phantoms flipped 0.325 of the findings with the detail fixed).
        region_fallback: A second saliency method (registered name): images that have not flipped
            at any of ``region_thresholds`` are searched again, level by level, in *its* regions
            (e.g. ``"gradcam++"`` after the gradient's regions, for diffuse findings). ``None``: no
            second search.
        level_steps: With ``region_thresholds``: the step budget of every level but the last
            (which gets ``steps``), so that a sample that does not flip in a small region moves on
            to a larger one sooner. ``None``: every level gets ``steps``.
        level_warm_start: With ``region_thresholds``: ``False`` (default) restarts every level
            from the start latent; ``True`` starts a larger region from the latent the smaller one
            ended at (Adam's moments reset), so its steps are not thrown away. The decoder's change
            outside the smaller region was never constrained (it was blended away), so the first
            step of the larger region may reveal some of it: an option, measured in README Speed.
        level_lr_scale: With ``region_thresholds``: the learning rate of level ``i`` (0 first) is
            ``lr * level_lr_scale ** i``, so the samples that did not flip in a small region (the
            hard ones) take larger steps in the larger ones. ``1.0``: every level at ``lr``.
        saliency: The saliency method (registered name) whose map defines the editable region, used
            when the :class:`~xcf.Explainer` is built without an explicit ``saliency`` (an explicit
            one always wins). ``None``: Grad-CAM++ (the seed's). Lets a preset name its region
            source: ``preset("local")`` uses ``"saliency"`` (the smoothed input gradient).
        shift_schedule: ``method="latent-shift"`` only (:func:`xcf.baselines.latent_shift`): how the
            shift sizes ``|lambda|`` grow, ``"geometric"`` (``shift_num`` values evenly spaced in
            log scale from ``shift_lambda_min`` to ``shift_lambda_max``) or ``"linear"``
            (``shift_num`` evenly spaced values from ``shift_lambda_max / shift_num`` to
            ``shift_lambda_max``). ``config.steps`` does not apply to latent-shift: it decodes at
            most ``shift_num`` shifted latents.
        shift_lambda_min: Smallest ``|lambda|`` of the geometric schedule.
        shift_lambda_max: Bound on ``|lambda|``: the search gives up there.
        shift_num: Number of ``lambda`` values of the schedule (the most decodes per sample).
        shift_lambdas: Explicit ``lambda`` values instead of a schedule: negative, each further
            from 0 than the one before (e.g. ``(-1, -3, -10, -30)``).
        shift_use_logit: Take the gradient of the target *logit* instead of its probability
            (Latent Shift's default is the probability, whose gradient vanishes when the sigmoid
            saturates).
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    steps: int = Field(200, ge=0, le=100_000)
    lr: float = Field(0.1, gt=0)
    mask_threshold: float = Field(0.5, ge=0, le=1)
    outside_weight: float = Field(1e5, ge=0)
    classification_weight: float = Field(1e3, ge=0)
    stop_probability: float | None = Field(None, gt=0, le=1)
    stop_patience: int = Field(1, ge=1)
    stop_off_target: float | None = Field(None, gt=0, le=1)
    seed: int | None = 0
    device: str = "cpu"
    batch_size: int | Literal["auto"] = "auto"  # checked by _check_batch_size
    lr_schedule: Literal["constant", "cosine"] = "constant"
    classification_loss: Literal["mse", "mse-stable", "logit"] = "mse"
    logit_margin: float = Field(1.0, ge=0)
    autocast_bf16: bool | Literal["auto"] = False
    channels_last: bool = False
    fold_batchnorm: bool = False
    compile: bool = False
    decision_threshold: float = Field(0.5, gt=0, lt=1)
    stop_check_every: int = Field(1, ge=1)
    method: Literal["seed", "latent-shift"] = "seed"
    blend: Literal["none", "reconstruction", "input", "residual"] = "none"
    feather: float = Field(0.0, ge=0, le=64)
    region_thresholds: tuple[float, ...] | None = None
    prune_shares: tuple[float, ...] | None = None
    saliency: str | None = None
    region_fallback: str | None = None
    detail_gate: bool | Literal["auto"] = "auto"
    level_steps: int | None = Field(None, ge=1, le=100_000)
    level_warm_start: bool = False
    level_lr_scale: float = Field(1.0, gt=0, le=100)
    shift_schedule: Literal["geometric", "linear"] = "geometric"
    shift_lambda_min: float = Field(1e-3, gt=0)
    shift_lambda_max: float = Field(1e5, gt=0)
    shift_num: int = Field(50, ge=1, le=100_000)
    shift_lambdas: tuple[float, ...] | None = None
    shift_use_logit: bool = False

    @field_validator("region_thresholds")
    @classmethod
    def _check_levels(cls, v: tuple[float, ...] | None) -> tuple[float, ...] | None:
        if v is None:
            return v
        if not v or any(not 0 < t < 1 for t in v) or list(v) != sorted(v, reverse=True):
            raise ValueError("region_thresholds must be decreasing saliency levels in (0, 1), e.g. (0.5, 0.3, 0.1)")
        return tuple(float(t) for t in v)

    @field_validator("prune_shares")
    @classmethod
    def _check_prune(cls, v: tuple[float, ...] | None) -> tuple[float, ...] | None:
        if v is None:
            return v
        if not v or any(not 0 < q <= 1 for q in v):
            raise ValueError("prune_shares must be shares of the change in (0, 1], e.g. (0.5, 0.7, 0.9)")
        return tuple(sorted(float(q) for q in v))

    @field_validator("shift_lambdas")
    @classmethod
    def _check_lambdas(cls, v: tuple[float, ...] | None) -> tuple[float, ...] | None:
        if v is None:
            return v
        ok = bool(v) and all(t < 0 for t in v) and all(b < a for a, b in zip(v, v[1:]))
        if not ok:
            raise ValueError("shift_lambdas must be negative and decreasing (growing in size), "
                             "e.g. (-1, -3, -10, -30)")
        return tuple(float(t) for t in v)

    @field_validator("batch_size", mode="before")
    @classmethod
    def _check_batch_size(cls, v: object) -> object:
        if isinstance(v, str) and v.strip().isdigit():  # "8" from a text config or a form
            v = int(v)
        if v == "auto" or (isinstance(v, int) and not isinstance(v, bool) and v >= 1):
            return v
        raise ValueError(f"batch_size must be a positive integer or 'auto', got {v!r}")

    @field_validator("device")
    @classmethod
    def _check_device(cls, v: str) -> str:
        ok = v in ("cpu", "cuda", "mps", "auto") or (v.startswith("cuda:") and v[5:].isdigit())
        if not ok:
            raise ValueError(f"device must be cpu, cuda, cuda:N, mps or auto, got {v!r}")
        return v

    @classmethod
    def preset(cls, name: str, **overrides: object) -> ExplainConfig:
        """A named preset (see :data:`PRESETS`), with optional overrides.

        ``"seed"``: the seed's settings exactly (the reference). ``"early-stop"``: the seed's
        settings with early stopping as soon as the target probability is below 0.5 (fast, but the
        change is still spread out when it stops). ``"local"``: the region is the
        smoothed input gradient (``saliency="saliency"``) above 0.5, grown over levels 0.5, 0.35,
        0.2, 0.1 only for samples that did not flip; the counterfactual is the input plus the
        decoder's change inside that region feathered 2 px (``blend="residual"``); Adam at
        ``lr=1.0``, stopped once the target probability is below 0.5; the seed's loss with a
        gradient that does not round to zero on films the classifier is certain of
        (``classification_loss="mse-stable"``), and samples still not flipped are searched again in
        Grad-CAM++'s regions (``region_fallback="gradcam++"``, for diffuse findings).
        ``"local-in-mask"`` (the default of :class:`xcf.Explainer` and the CLI since session 14,
        :data:`DEFAULT_PRESET`): ``"local"`` with its gradient regions confined to the seed's mask
        (``saliency="saliency-in-gradcam++"``: the gradient kept only where Grad-CAM++ > 0.5,
        that region eroded 4 px so the feathered blend stays in it, rescaled), so that every region it searches before the fallback lies inside the region the
        seed's method searches, starting from its most gradient-salient pixels; and a sample stops
        only once the other findings are also back within 0.1 of their start
        (``stop_off_target=0.1``: stopped on the target alone, removing a phantom's cardiomegaly
        or effusion moved another finding's probability by 0.98 / 0.85 on average). ``"fast"``:
        the Grad-CAM++ region, residual blend, ``lr=1.0``, early stop, the seed's loss, 20
        steps for every region level but the last (``level_steps=20``), each larger region
        continuing from where the smaller one ended (``level_warm_start=True``) at 1.5 times the
        smaller one's learning rate (``level_lr_scale=1.5``: lr 1, 1.5, 2.25, 3.4), the loop on
        copies of the models with BatchNorm folded and in channels-last format
        (``fold_batchnorm=True``, ``channels_last=True``: the same function, cheaper steps), the
        loop in bf16 where that pays (``autocast_bf16="auto"``: a CUDA device with bf16, or a CPU
        with AVX512-BF16/AMX; validity is still judged in float32): the fastest setting measured
        that was as valid and at least as local as the seed's method in the seed's own mask on the
        pneumonia pack and session 12's phantom pack (README "Results", Speed); on session 13's
        CPU-trained phantom pack it is slightly behind (valid 0.935 vs 0.940 of 200, 0.90 vs 0.93
        of the change in the seed's mask; docs/results/cpu-pack-s13.md).
        History: until 2026-11-26 ``"fast"`` was ``"early-stop"``; ``"local"`` blended into the
        input (session 1), then used the Grad-CAM++ region at ``lr=0.1`` (session 2): the
        benchmarks on phantoms with ground truth showed the gradient region puts about twice as
        much of the change on the finding (README "Results"); the stable loss and the fallback
        were added in session 4 (bench method ``local-gradient`` is the preset without them), and
        ``"fast"`` got its level budget then (``fast-unbudgeted`` is the one before) and its warm
        start in session 5 (``fast-restart`` is the one before), folded copies in session 6,
        bf16 in session 8 (``fast-fp32`` is the one before), the growing learning rate in
        session 9 (``fast-s8`` is the one before).
        """
        if name not in PRESETS:
            raise ConfigError(f"unknown preset '{name}'; valid presets: {', '.join(PRESETS)}")
        return cls.build(**{**PRESETS[name], **overrides})

    @classmethod
    def build(cls, **values: object) -> ExplainConfig:
        """Like the constructor, but a bad value raises a one-line :class:`~xcf.errors.ConfigError`."""
        try:
            return cls(**values)
        except ValidationError as exc:
            raise ConfigError(_one_line(exc)) from None


def _one_line(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "config"
        parts.append(f"{loc}: {err['msg']}")
    return "invalid explain config: " + "; ".join(parts)


#: Named presets: field overrides on top of the seed's defaults.
PRESETS: dict[str, dict[str, object]] = {
    "seed": {},
    "fast": {"blend": "residual", "feather": 2.0, "region_thresholds": (0.5, 0.35, 0.2, 0.1),
             "stop_probability": 0.5, "lr": 1.0, "level_steps": 20, "level_warm_start": True,
             "fold_batchnorm": True, "channels_last": True, "autocast_bf16": "auto",
             "level_lr_scale": 1.5},
    "early-stop": {"stop_probability": 0.5},
    "local": {"blend": "residual", "feather": 2.0, "region_thresholds": (0.5, 0.35, 0.2, 0.1),
              "stop_probability": 0.5, "saliency": "saliency", "lr": 1.0,
              "region_fallback": "gradcam++", "classification_loss": "mse-stable"},
    "local-in-mask": {"blend": "residual", "feather": 2.0, "region_thresholds": (0.5, 0.35, 0.2, 0.1),
                      "stop_probability": 0.5, "saliency": "saliency-in-gradcam++", "lr": 1.0,
                      "region_fallback": "gradcam++", "classification_loss": "mse-stable",
                      "stop_off_target": 0.1},
}

#: The preset :class:`xcf.Explainer`, :func:`xcf.explain`, ``xcf explain`` and ``xcf demo`` use
#: when no config is given. ``ExplainConfig()`` itself stays the seed's settings (``preset("seed")``,
#: the reference). Chosen by the rule of docs/design.md (at least as valid and as local as the
#: seed's method, measured side by side: ``python benchmarks/default_rule.py``; README "Default
#: method").
DEFAULT_PRESET = "local-in-mask"
