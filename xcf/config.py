"""What a user sets for any counterfactual method (:class:`ExplainConfig`)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .errors import ConfigError

__all__ = ["ExplainConfig", "MOVED_FIELDS", "auto_batch_size"]

#: ``batch_size="auto"`` per device type (see :func:`auto_batch_size`).
AUTO_BATCH_SIZE = {"cpu": 8}


def auto_batch_size(device_type: str) -> int:
    """The batch size ``batch_size="auto"`` means on a device type (``"cpu"``, ``"cuda"``, ``"mps"``):
    8 on a CPU, 16 elsewhere. On a 2-core CPU, method ``fast`` on 32 pneumonia films cost less
    per film at batch 8 than at 16 (a step's activations at batch 16 no longer fit the cache). On a
    GPU, 16 is a size that fits small cards, not the fastest: raise it where memory allows."""
    return AUTO_BATCH_SIZE.get(device_type, 16)


class ExplainConfig(BaseModel):
    """What a user sets for any counterfactual method.

    Everything a method decides for itself (its loss, region, blend, stop rule, how its loop runs)
    lives in the method (:class:`xcf.methods.Method`, picked by name with ``method=``); the docs'
    "Configuration" page maps each former field to where it lives now.

    Attributes:
        method: A registered method name (``xcf.list_methods()``); ``None``: the Explainer's
            ``method=`` argument, else :data:`xcf.methods.DEFAULT_METHOD`.
        steps: Optimizer updates per region level (``None``: the method's own, 200 in every
            shipped method). A film's reported ``steps`` add up over the levels it was searched in.
        lr: Adam's learning rate on the latent (``None``: the method's own; seed 0.1, local 1.0).
        stop_probability: Stop a film once its target probability is below this (``None``: the
            method's own rule; the seed's method runs every step).
        decision_threshold: Probability below which a finding counts as absent (validity).
        seed: Seed of torch's RNG for the call (``None``: leave the RNG alone). The optimization
            itself is deterministic; the seed matters for stochastic saliency methods.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:N"``, ``"mps"`` or ``"auto"``.
        batch_size: Images optimized together in :meth:`xcf.Explainer.explain` (results do not
            depend on it). ``"auto"``: :func:`auto_batch_size` of the device.
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    method: str | None = None
    steps: int | None = Field(None, ge=0, le=100_000)
    lr: float | None = Field(None, gt=0)
    stop_probability: float | None = Field(None, gt=0, le=1)
    decision_threshold: float = Field(0.5, gt=0, lt=1)
    seed: int | None = 0
    device: str = "cpu"
    batch_size: int | Literal["auto"] = "auto"  # checked by _check_batch_size

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
        """``ExplainConfig(method=name, **overrides)``: the method ``name`` by its registered name
        (kept so that ``preset("seed")`` reads as before; an unknown name lists the valid ones)."""
        from .methods import list_methods

        names = list_methods()
        if name not in names:
            raise ConfigError(f"unknown method '{name}'; valid methods: {', '.join(names)}")
        return cls.build(**{**overrides, "method": name})

    @classmethod
    def build(cls, **values: object) -> ExplainConfig:
        """Like the constructor, but a bad value raises a one-line :class:`~xcf.errors.ConfigError`;
        a former field that now belongs to a method says where it lives."""
        moved = sorted(k for k in values if k in MOVED_FIELDS)
        if moved:
            raise ConfigError(
                "; ".join(f"'{k}' is no longer an ExplainConfig field: {MOVED_FIELDS[k]}" for k in moved))
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


#: Former :class:`ExplainConfig` fields -> where each lives now (the docs' Configuration page).
MOVED_FIELDS: dict[str, str] = {
    "mask_threshold": "Method.objective.mask_threshold (e.g. method.replace(objective__mask_threshold=0.4))",
    "outside_weight": "Method.objective.outside_weight",
    "classification_weight": "Method.objective.classification_weight",
    "classification_loss": "Method.objective.stable ('mse-stable' is stable=True; 'logit' was removed)",
    "logit_margin": "removed with the 'logit' classification loss",
    "stop_patience": "removed (every method stops at the first step that meets its stop rule)",
    "stop_off_target": "Method.stop.off_target",
    "stop_check_every": "removed (the loop checks its stop rule every step)",
    "lr_schedule": "removed (every method uses a constant learning rate per region level)",
    "autocast_bf16": "Method.execution.autocast_bf16",
    "channels_last": "Method.execution.channels_last",
    "fold_batchnorm": "Method.execution.fold_batchnorm",
    "compile": "removed",
    "blend": "Method.blend.kind",
    "feather": "Method.blend.feather",
    "region_thresholds": "Method.region.levels",
    "prune_shares": "removed (pruning the change was less local than the region methods)",
    "saliency": "Method.region.saliency (or saliency= on the Explainer)",
    "region_fallback": "Method.region.fallback",
    "detail_gate": "Method.detail_gate",
    "level_steps": "Method.region.level_steps",
    "level_warm_start": "Method.region.warm_start",
    "level_lr_scale": "Method.region.lr_growth",
    "shift_schedule": "LatentShift.search.schedule (method 'latent-shift')",
    "shift_lambda_min": "LatentShift.search.lambda_min",
    "shift_lambda_max": "LatentShift.search.lambda_max",
    "shift_num": "LatentShift.search.num",
    "shift_lambdas": "LatentShift.search.lambdas",
    "shift_use_logit": "LatentShift.search.use_logit",
}
