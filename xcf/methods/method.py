"""A counterfactual method: a named object built of parts, that runs the search for a batch.

:meth:`Method.run` is the whole search, in order:

1. the search models (:meth:`Method.search_models`: the originals, or copies per
   :class:`~xcf.methods.Execution`; with a latent model that passes the input's detail around
   ``z``, ``z`` gains a gate on that detail, :mod:`xcf.detail_gate`);
2. the region levels (:meth:`Region.schedule <xcf.methods.Region.schedule>`): for each level, the
   films not yet flipped are searched (:meth:`Method.search_level`) in the region
   ``saliency > level``, blended per :class:`~xcf.methods.Blend`, until they meet the
   :class:`~xcf.methods.StopRule` or run out of steps;
3. the films that never flipped are searched again in the fallback saliency method's regions
   (``region.fallback``).

:class:`LatentShift` replaces step 2's search with Latent Shift's line search; :class:`LocalFill`
replaces it with the pack's inpainter's fill of the region (and, with ``steps``, a search of the
inpainter's latent from there).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import torch
from torch import Tensor

from ..errors import ConfigError
from ..interfaces import Latent
from .parts import (
    Blend,
    Execution,
    Fill,
    LineSearch,
    Objective,
    Region,
    StopRule,
    feather_mask,
)

__all__ = ["Method", "LatentShift", "LocalFill", "LocalExemplar", "Runs", "Problem"]


@dataclass
class Problem:
    """One batch to explain, as the :class:`~xcf.Explainer` hands it to a method.

    Attributes:
        classifier: The classifier being explained (frozen).
        latent: The latent model (frozen).
        locality: The locality loss (built with the objective's threshold and outside weight).
        x: ``(B, 1, S, S)`` images in [0, 1] at the latent model's size.
        targets: ``(B,)`` long target indices.
        saliency: ``(B, 1, S, S)`` maps in [0, 1] of the region's saliency method (a method may
            replace rows with the fallback's maps; the results show the map used).
        z0: The start latent ``E(x)``.
        x0: ``D(z0)``, ``(B, 1, S, S)``.
        p0: Probabilities of ``x0``, ``(B, K)``.
        p_in: Probabilities of ``x``, ``(B, K)``.
        fallback: The fallback saliency method (an instance), or ``None``.
        decision_threshold: Below it a finding counts as absent.
        check_images: ``check_images(tensor, shape, what)`` raises a ComponentError naming a
            component whose output is malformed.
        progress: ``progress(level, n_levels, step, budget, p_target)`` after each search step
            (``p_target``: the target probabilities of the films still searching), or ``None``.
    """

    classifier: Any
    latent: Any
    locality: Any
    x: Tensor
    targets: Tensor
    saliency: Tensor
    z0: Any
    x0: Tensor
    p0: Tensor
    p_in: Tensor
    fallback: Any = None
    decision_threshold: float = 0.5
    check_images: Any = None
    progress: Any = None


class Runs:
    """Per-film outputs collected over the region levels (the last level run for each film)."""

    def __init__(self, x: Tensor, p0: Tensor) -> None:
        B = x.shape[0]
        self.reconstruction = torch.empty_like(x)
        self.counterfactual = torch.empty_like(x)
        self.mask = torch.zeros_like(x, dtype=torch.bool)
        self.probs_reconstruction = torch.empty_like(p0)
        self.probs_counterfactual = torch.empty_like(p0)
        self.steps = torch.zeros(B, dtype=torch.long)
        self.level = torch.zeros(B)
        self.fallback = torch.zeros(B, dtype=torch.bool)  # region from the fallback saliency
        self.losses: list[list[float]] = [[] for _ in range(B)]
        self.status = ["ran-all-steps"] * B
        self.content: list[str | None] = [None] * B  # where a fill came from (a bank film's name)

    def record(self, idx: Tensor, res: Any, mask: Tensor, level: float | Tensor) -> None:
        """Store a level's result for the films ``idx`` (``level``: one, or one per film)."""
        self.reconstruction[idx] = res.reconstruction
        self.counterfactual[idx] = res.counterfactual
        self.mask[idx] = mask
        self.probs_reconstruction[idx] = res.probs_reconstruction
        self.probs_counterfactual[idx] = res.probs_counterfactual
        losses = res.losses.cpu()
        for j, b in enumerate(idx.tolist()):
            self.steps[b] += int(res.steps[j])
            self.level[b] = level[j] if isinstance(level, Tensor) else level
            self.losses[b] += [float(v) for v in losses[:, j] if v == v]
            self.status[b] = res.status[j]
            self.content[b] = res.content[j] if getattr(res, "content", None) else None


@dataclass(frozen=True)
class Method:
    """A counterfactual method: latent optimization of the seed's objective in a region.

    Attributes:
        name: The registered name (``xcf.list_methods()``).
        description: One line for listings.
        objective: The loss (:class:`~xcf.methods.Objective`).
        region: Where the change may go and how the region grows (:class:`~xcf.methods.Region`).
        blend: How the decoder's output is put into the film (:class:`~xcf.methods.Blend`).
        stop: When a film stops (:class:`~xcf.methods.StopRule`).
        execution: How the loop runs (:class:`~xcf.methods.Execution`).
        steps: Optimizer updates per region level (the last level's budget; the others'
            is ``region.level_steps`` when set). A film's reported ``steps`` add up over the levels
            it was searched in.
        lr: Adam's learning rate on the latent.
        detail_gate: With a latent model that passes the input's detail around ``z``, also search a
            per-pixel gate in [0, 1] on that detail (:mod:`xcf.detail_gate`): ``"auto"`` where the
            latent model has such detail, ``True`` always (an error without it), ``False`` never.
        reference: Where to read about it (a paper, or a docs page).
    """

    name: str
    description: str = ""
    objective: Objective = field(default_factory=Objective)
    region: Region = field(default_factory=Region)
    blend: Blend = field(default_factory=Blend)
    stop: StopRule = field(default_factory=StopRule)
    execution: Execution = field(default_factory=Execution)
    steps: int = 200
    lr: float = 0.1
    detail_gate: bool | Literal["auto"] = "auto"
    reference: str = ""

    #: Which of a pack's models the method searches with when no latent model is given:
    #: ``"latent"`` (the pack's latent model) or ``"inpainter"`` (the pack's inpainter).
    latent_role: ClassVar[str] = "latent"

    def __post_init__(self) -> None:
        if not self.name or not isinstance(self.name, str):
            raise ConfigError("a method needs a name")
        for key in ("steps", "lr"):
            if isinstance(getattr(self, key), bool) or not isinstance(getattr(self, key), (int, float)):
                raise ConfigError(f"method {self.name!r}: {key} must be a number, got {getattr(self, key)!r}")
        if not 0 <= int(self.steps) <= 100_000:
            raise ConfigError(f"steps must be in 0..100000, got {self.steps}")
        if not self.lr > 0:
            raise ConfigError(f"lr must be > 0, got {self.lr}")
        if self.detail_gate not in (True, False, "auto"):
            raise ConfigError(f"detail_gate must be True, False or 'auto', got {self.detail_gate!r}")

    # -- building ---------------------------------------------------------------------------
    def replace(self, **changes: Any) -> Method:
        """A copy with fields replaced; a part's fields can be given as ``part__field``
        (e.g. ``stop__probability=0.1``, ``region__levels=(0.5, 0.2)``)."""
        nested: dict[str, dict[str, Any]] = {}
        flat: dict[str, Any] = {}
        for key, value in changes.items():
            part, sep, sub = key.partition("__")
            if sep:
                nested.setdefault(part, {})[sub] = value
            else:
                flat[key] = value
        names = {f.name for f in dataclasses.fields(self)}
        for key in list(flat) + list(nested):
            if key not in names:
                raise ConfigError(f"method {self.name!r} has no field {key!r}; fields: {', '.join(sorted(names))}")
        for part, subs in nested.items():
            current = flat.get(part, getattr(self, part))
            try:
                flat[part] = dataclasses.replace(current, **subs)
            except TypeError as exc:
                raise ConfigError(f"method {self.name!r}, {part}: {exc}") from None
        return dataclasses.replace(self, **flat)

    def configured(self, config: Any) -> Method:
        """This method with the settings a user gave in an :class:`xcf.ExplainConfig` (``steps``,
        ``lr``, ``stop_probability``; ``None`` keeps the method's own)."""
        changes: dict[str, Any] = {}
        if config.steps is not None:
            changes["steps"] = config.steps
        if config.lr is not None:
            changes["lr"] = config.lr
        if config.stop_probability is not None:
            changes["stop__probability"] = config.stop_probability
        return self.replace(**changes) if changes else self

    def settings(self) -> dict[str, Any]:
        """Every setting, flat and JSON-friendly (for report.json and the bench's run.json)."""
        out: dict[str, Any] = {"method": self.name, "steps": self.steps, "lr": self.lr,
                               "detail_gate": self.detail_gate}
        for part in ("objective", "region", "blend", "stop", "execution"):
            for k, v in dataclasses.asdict(getattr(self, part)).items():
                out[f"{part}.{k}"] = list(v) if isinstance(v, tuple) else v
        return out

    # -- the search ----------------------------------------------------------------------------
    def run(self, pb: Problem) -> Runs:
        """Search counterfactuals for a batch; see the module docstring for the order of things."""
        models, z0 = self.search_models(pb)
        runs = Runs(pb.x, pb.p0)
        todo = torch.arange(pb.x.shape[0], device=pb.x.device)
        todo = self._levels(pb, runs, todo, pb.saliency, models, z0)
        if pb.fallback is not None and todo.numel():
            # a second search in the fallback method's regions; the results show the map used
            pb.saliency[todo] = self.fallback_saliency(pb, todo)
            runs.fallback[todo.cpu()] = True
            self._levels(pb, runs, todo, pb.saliency, models, z0)
        return runs

    @staticmethod
    def fallback_saliency(pb: Problem, todo: Tensor) -> Tensor:
        """The fallback saliency method's maps of the films ``todo``, at the latent model's size."""
        from ..optimize import resize_to

        xc = resize_to(pb.x[todo], pb.classifier.input_size)
        sal2 = pb.fallback(pb.classifier, xc, pb.targets[todo])
        if pb.check_images is not None:
            from ..registry import component_label

            pb.check_images(sal2, (len(todo), 1, xc.shape[-1], xc.shape[-1]),
                            component_label(pb.fallback, "saliency"))
        return resize_to(sal2.detach().float(), pb.x.shape[-1]).clamp(0, 1)

    def can_use(self, latent: Any) -> bool:
        """Whether ``latent`` has what this method searches with (any latent model here; a fill
        method needs an inpainter, ``local-exemplar`` a bank of films)."""
        return True

    def search_models(self, pb: Problem) -> tuple[tuple[Any, Any], Any]:
        """``((classifier, latent), z0)`` the loop differentiates: copies per ``execution`` (a
        model that cannot be copied is searched as it is, with a warning naming it), and the latent
        lifted by a detail gate per ``detail_gate``."""
        import warnings

        from ..fusion import search_copies
        from ..registry import component_label

        clf, lat = pb.classifier, pb.latent
        if self.execution.copies:
            try:
                (clf, lat), _ = search_copies(pb.classifier, pb.latent, fold=self.execution.fold_batchnorm,
                                              channels_last=self.execution.channels_last)
            except Exception as exc:  # noqa: BLE001 - any plugin's copy failure: search the originals
                warnings.warn(
                    f"fold_batchnorm / channels_last ignored: could not copy "
                    f"{component_label(pb.classifier, 'classifier')} or "
                    f"{component_label(pb.latent, 'latent')} ({type(exc).__name__}: {exc}); "
                    "searching on the models as they are", RuntimeWarning, stacklevel=4)
                clf, lat = pb.classifier, pb.latent
        z0 = pb.z0
        if self.detail_gate:
            from ..detail_gate import DetailGate, has_detail

            if self.detail_gate is True or has_detail(z0, pb.x.shape[-1]):
                gated = DetailGate(lat)
                lat, z0 = gated, gated.lift(z0)
        return (clf, lat), z0

    def uses_bf16(self, device: torch.device) -> bool:
        """Whether the loop asks for bf16 autocast on ``device`` (:func:`xcf.optimize.optimize_latent`
        uses it on CUDA and CPU only)."""
        from ..optimize import bf16_is_fast

        a = self.execution.autocast_bf16
        return bf16_is_fast(device) if a == "auto" else a is True

    def _levels(self, pb: Problem, runs: Runs, todo: Tensor, sal: Tensor, models: tuple[Any, Any],
                z0: Any) -> Tensor:
        """Search the films ``todo`` level by level, each level only for those not yet flipped
        (or, with a stop probability below the decision threshold, not yet below it); returns the
        films that never got there."""
        from ..optimize import classify

        z_cur = z0.z.detach().clone() if self.region.warm_start else None  # where each film ended
        # a film moves on to the next level until it is valid, or below a lower stop probability
        # the user asked for (a stop of 0.1 is a request to go that far)
        goal = min(pb.decision_threshold, self.stop.probability or pb.decision_threshold)
        schedule = self.region.schedule(self.steps, self.lr)
        for i, (level, steps, lr) in enumerate(schedule):
            on_step, sal_l, mask = self._level_inputs(pb, sal[todo], level, i, len(schedule), steps)
            z0_t, x0_t, p0_t = z0.select(todo), pb.x0[todo], pb.p0[todo]
            blend = self.blend.weights(mask, pb.x[todo], x0_t)
            if blend is not None:
                bm, base = blend
                with torch.no_grad():
                    x0_t = bm * x0_t + base
                    # residual: the start x + m (D(z0) - D(z0)) is the input, whose probabilities
                    # are known (one classifier pass per film and level saved)
                    p0_t = pb.p_in[todo] if self.blend.kind == "residual" else classify(pb.classifier, x0_t)
            res = self.search_level(pb, models, todo, sal_l, (z0_t, x0_t, p0_t), blend, steps, lr,
                                    None if z_cur is None else z_cur[todo], on_step)
            if z_cur is not None:
                z_cur[todo] = res.latent.z.detach()
            runs.record(todo, res, mask, level)
            p_t = res.probs_counterfactual[torch.arange(len(todo), device=pb.x.device), pb.targets[todo]]
            todo = todo[p_t >= goal]
            if todo.numel() == 0:
                break
        return todo

    def _level_inputs(self, pb: Problem, sal: Tensor, level: float, i: int, n_levels: int,
                      steps: int) -> tuple[Any, Tensor, Tensor]:
        """For region level ``i`` of ``n_levels``: the progress callback of its search, the
        saliency rescaled to the level and its region."""
        on_step = (None if pb.progress is None else
                   lambda step, p: pb.progress(i, n_levels, step, steps, p))
        sal_l = Region.at_level(sal, level, self.objective.mask_threshold)
        return on_step, sal_l, self.region_mask(pb, sal_l)

    def region_mask(self, pb: Problem, sal: Tensor) -> Tensor:
        """The region of a level, ``(B, 1, S, S)`` bool, from its rescaled saliency: the locality
        loss's mask."""
        return pb.locality.mask(sal).bool()

    def search_level(self, pb: Problem, models: tuple[Any, Any], todo: Tensor, sal: Tensor,
                     initial: tuple[Any, Tensor, Tensor], blend: tuple[Tensor, Tensor] | None,
                     steps: int, lr: float, z_start: Tensor | None, on_step: Any = None) -> Any:
        """One region level's search for the films ``todo``: Adam on the latent
        (:func:`xcf.optimize.optimize_latent`); ``on_step(step, p_target)`` after each step. The
        result's probabilities are the original classifier's (``pb.classifier``), also when the
        search ran on a copy of it: validity, and the decision to grow the region, are its."""
        from ..optimize import optimize_latent

        clf_s, lat_s = models
        res = optimize_latent(clf_s, lat_s, pb.x[todo], pb.targets[todo], sal, pb.locality,
                              objective=self.objective, stop=self.stop, steps=steps, lr=lr,
                              bf16=self.uses_bf16(pb.x.device), initial=initial, blend=blend,
                              z_start=z_start, check_classifier=pb.classifier,
                              on_step=on_step)
        return res


@dataclass(frozen=True)
class LatentShift(Method):
    """The Latent Shift baseline (Cohen et al., "Gifsplanation via Latent Shift", MIDL 2021): one
    gradient of the target probability in the latent, a line search along it, no region.

    Attributes:
        search: The line search (:class:`~xcf.methods.LineSearch`); ``steps`` and ``lr`` do not
            apply (it decodes at most ``search.num`` shifted latents).
    """

    search: LineSearch = field(default_factory=LineSearch)

    def settings(self) -> dict[str, Any]:  # noqa: D102
        out = super().settings()
        for k, v in dataclasses.asdict(self.search).items():
            out[f"search.{k}"] = list(v) if isinstance(v, tuple) else v
        return out

    def search_models(self, pb: Problem) -> tuple[tuple[Any, Any], Any]:  # noqa: D102
        # the latent model's own z, as published (a detail gate only with detail_gate=True)
        if self.detail_gate == "auto":
            return Method.search_models(self.replace(detail_gate=False), pb)
        return super().search_models(pb)

    def search_level(self, pb, models, todo, sal, initial, blend, steps, lr, z_start, on_step=None):  # noqa: D102
        from ..baselines import latent_shift
        from ..optimize import classify

        clf_s, lat_s = models
        res = latent_shift(clf_s, lat_s, pb.x[todo], pb.targets[todo], self.search,
                           decision_threshold=pb.decision_threshold, initial=initial)
        if clf_s is not pb.classifier:  # searched on a copy: report the original's probabilities
            with torch.no_grad():
                res.probs_counterfactual = classify(pb.classifier, res.counterfactual)
        return res


@dataclass(frozen=True)
class LocalFill(Method):
    """The region filled with healthy anatomy: in each region level, the pack's inpainter (a latent
    model with ``inpaint(x, hole)``, trained on films without findings) draws what the region would
    show without a finding, from the rest of the film; the film keeps everything outside the region
    (grown by ``fill.dilate``, feathered by ``fill.feather``). The region grows level by level until
    the classifier no longer sees the finding (:meth:`run` says which level a film keeps). With
    ``steps > 0``, a film that no fill flips, at any level of either map, is searched from the fill
    of the largest region of the region's own map, in the inpainter's latent (Adam on its
    bottleneck, the objective's loss, at most ``steps`` updates at ``lr``): a last resort, for
    findings too diffuse for the inpainter to draw a film without them.

    The region comes from the classifier being explained; the content from a model that never saw
    a finding (Chang et al., ICLR 2019: generative infilling; RadEdit, Pérez-García et al., ECCV
    2024: mask-confined edits of chest X-rays).

    The searches render the fill as drawn (``m * D(z) + (1 - m) * x``): ``fill.shrink``,
    ``fill.one_sign`` and ``fill.detail`` apply to the fills of the levels. Their objective holds
    the other findings to the input's probabilities (the repair's: the lower of the input's and the
    fill's), never to the fill's alone.

    Attributes:
        fill: The filled region's dilation and soft edge, and how a fill becomes the change
            (:class:`~xcf.methods.Fill`).
        repair: With ``steps > 0``: a film whose fill takes the target below the decision
            threshold but misses the rest of the stop rule (another finding raised by more than
            ``stop.off_target``: a smooth fill read as an opacity; or the target above
            ``stop.probability``) is searched from that fill in the region it kept, then, if that
            does not meet the rule, from the fill of the largest region; it keeps a search only
            where the search meets the rule, and otherwise its fill. Its steps count either way.
            The search holds each other finding to the lower of the input's and the fill's
            probability: a reading the finding itself caused (a consolidation also read as a
            nodule) may fall with it, as it does in the true counterfactual, and is not painted
            back; a finding the fill raised is brought down.
    """

    fill: Fill = field(default_factory=Fill)
    repair: bool = True
    latent_role: ClassVar[str] = "inpainter"

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.repair, bool):
            raise ConfigError(f"local-fill repair must be true or false, got {self.repair!r}")

    def settings(self) -> dict[str, Any]:  # noqa: D102
        out = {**super().settings(), "repair": self.repair}
        for k, v in dataclasses.asdict(self.fill).items():
            out[f"fill.{k}"] = v
        return out

    def search_models(self, pb: Problem) -> tuple[tuple[Any, Any], Any]:  # noqa: D102
        from ..registry import component_label

        if not self.can_use(pb.latent):
            raise ConfigError(
                f"method {self.name!r} needs an inpainter as its latent model (inpaint(x, hole) and "
                f"encode_masked(x, hole)), got {component_label(pb.latent, 'latent')}; use a pack with "
                "one (xcf train inpainter ... --pack PACK --role inpainter) or latent='inpaint-unet' weights")
        return Method.search_models(self.replace(detail_gate=False), pb)

    def can_use(self, latent: Any) -> bool:
        """Whether ``latent`` is an inpainter (``inpaint(x, hole)`` and ``encode_masked(x, hole)``)."""
        return callable(getattr(latent, "inpaint", None)) and callable(getattr(latent, "encode_masked", None))

    def region_mask(self, pb: Problem, sal: Tensor) -> Tensor:  # noqa: D102
        from ..metrics import dilate

        return dilate(super().region_mask(pb, sal), self.fill.dilate, "disk")

    @property
    def searches(self) -> bool:
        """Whether films no fill brings to the stop rule are searched (``steps > 0``)."""
        return self.steps > 0

    def run(self, pb: Problem) -> Runs:
        """The region levels, then the fallback's, then the searches. Unlike a gradient search, a
        film whose fill takes the target below the decision threshold but not the whole stop rule
        (a lower stop probability, ``off_target``) goes on to the next region too; a film keeps
        the first result that meets the whole rule, else the first below the decision threshold,
        else the first. Films below none are searched (``steps > 0``); with :attr:`repair`, films
        below the threshold that miss the rest of the rule are searched in the region they kept,
        and take the search only where it meets the rule."""
        models, _ = self.search_models(pb)
        runs = Runs(pb.x, pb.p0)
        B = pb.x.shape[0]
        grade = torch.full((B,), -1, dtype=torch.long, device=pb.x.device)
        kept = torch.zeros_like(pb.saliency)  # the rescaled saliency of the level each film keeps
        todo = self._fill_levels(pb, runs, grade, kept, torch.arange(B, device=pb.x.device),
                                 pb.saliency, models)
        sal0 = pb.saliency.clone()
        if pb.fallback is not None and todo.numel():
            sal = pb.saliency.clone()
            sal[todo] = self.fallback_saliency(pb, todo)
            todo = self._fill_levels(pb, runs, grade, kept, todo, sal, models, fallback=True)
        last = todo[grade[todo] < 1]
        if self.searches and last.numel():
            # no fill flipped these films: search the inpainter's latent from the fill of the
            # largest region of the region's own map, as a last resort
            level = self.region.levels[-1]
            sal_l = Region.at_level(sal0[last], level, self.objective.mask_threshold)
            res = self.search_level(pb, models, last, sal_l, None, None, self.steps, self.lr, None,
                                    self._on_step(pb))
            runs.record(last, res, self.region_mask(pb, sal_l), level)
            runs.fallback[last.cpu()] = False
            pb.saliency[last] = sal0[last]
        fix = todo[grade[todo] == 1]
        if self.repair and self.searches and fix.numel():
            # flipped, but another finding rose more than the rule allows (or the target stayed
            # above the stop probability): search from the fill in the region the film kept, then
            # in the largest region of the region's own map
            hold = torch.minimum(pb.p_in, runs.probs_counterfactual)  # may fall with the target, not rise
            fix = self._repair(pb, models, runs, fix, kept[fix], runs.level[fix.cpu()], hold)
            if fix.numel():
                level = self.region.levels[-1]
                self._repair(pb, models, runs, fix, Region.at_level(sal0[fix], level, self.objective.mask_threshold),
                             level, hold, sal0)
        return runs

    def _repair(self, pb: Problem, models: tuple[Any, Any], runs: Runs, films: Tensor, sal: Tensor,
                level: float | Tensor, hold: Tensor, sal0: Tensor | None = None) -> Tensor:
        """Search ``films`` in the regions of ``sal``, the other findings held to ``hold`` ``(B, K)``,
        and keep each search that meets the stop rule (its region's ``level``; ``sal0``: the map it
        came from, for the films that were on the fallback's). Returns the films it did not keep."""
        res = self.search_level(pb, models, films, sal, None, None, self.steps, self.lr, None, self._on_step(pb),
                                reference=hold[films])
        met = torch.tensor([s == "stopped-early" for s in res.status], device=pb.x.device)
        runs.steps[films[~met].cpu()] += res.steps[(~met).cpu()]  # the steps count where it is not kept too
        j = met.nonzero().flatten()
        if j.numel():
            idx = films[j]
            runs.record(idx, _rows_of(res, j), self.region_mask(pb, sal[j]),
                        level[j.cpu()] if isinstance(level, Tensor) else level)
            if sal0 is not None:
                runs.fallback[idx.cpu()] = False
                pb.saliency[idx] = sal0[idx]
        return films[~met]

    def _on_step(self, pb: Problem) -> Any:
        """The progress callback of a search after the region levels."""
        return None if pb.progress is None else lambda step, p: pb.progress(0, 1, step, self.steps, p)

    def _fill_levels(self, pb: Problem, runs: Runs, grade: Tensor, kept: Tensor, todo: Tensor,
                     sal: Tensor, models: tuple[Any, Any], fallback: bool = False) -> Tensor:
        """Fill the films ``todo`` level by level; ``grade`` (per film: -1 nothing yet, 0 not
        flipped, 1 flipped, 2 met the stop rule) decides which level's result a film keeps, and
        ``kept`` gets that level's rescaled saliency. Returns the films that never met the stop
        rule."""
        schedule = self.region.schedule(self.steps, self.lr)
        for i, (level, steps, lr) in enumerate(schedule):
            on_step, sal_l, mask = self._level_inputs(pb, sal[todo], level, i, len(schedule), steps)
            res = self.search_level(pb, models, todo, sal_l, None, None, 0, lr, None, on_step)
            rows = torch.arange(len(todo), device=pb.x.device)
            p_t = res.probs_counterfactual[rows, pb.targets[todo]]
            met = torch.tensor([s == "stopped-early" for s in res.status], device=pb.x.device)
            g = torch.where(met, 2, torch.where(p_t < pb.decision_threshold, 1, 0))
            better = g > grade[todo]
            if bool(better.any()):
                j = better.nonzero().flatten()
                idx = todo[j]
                runs.record(idx, _rows_of(res, j), mask[j], level)
                grade[idx] = g[j]
                kept[idx] = sal_l[j]
                if fallback:
                    runs.fallback[idx.cpu()] = True
                    pb.saliency[idx] = sal[idx]
            todo = todo[grade[todo] < 2]
            if todo.numel() == 0:
                break
        return todo

    def fills(self, inpainter: Any, x: Tensor, hole: Tensor) -> list[tuple[Latent, Tensor]]:
        """The fills tried for films ``x`` with ``hole`` ``(B, 1, S, S)`` (soft, 1 = to fill), in
        order: ``(latent, whole film)`` pairs; a film takes the first that meets the stop rule
        (with each of :attr:`Fill.detail`). Here one: the inpainter's."""
        z = inpainter.encode_masked(x, hole)
        return [(z, inpainter.decode(z).float())]

    def content_of(self, inpainter: Any, latents: list[Latent], chosen: Tensor) -> list[str | None] | None:
        """Where each film's fill came from, given the fill each took (``chosen``, an index into
        :meth:`fills`), or ``None``: here ``None`` (the inpainter drew it; the components name it)."""
        return None

    def search_level(self, pb, models, todo, sal, initial, blend, steps, lr, z_start, on_step=None,
                     reference=None):
        """Fill the regions of ``sal`` for the films ``todo`` and, with ``steps``, search the films
        the fill did not bring to the stop rule from it; ``reference`` ``(len(todo), K)``: the
        probabilities the other findings are held to (default: the input's)."""
        from ..optimize import OptimizationResult, classify, optimize_latent
        from .parts import Reference

        clf_s, lat_s = models
        x = pb.x[todo]
        targets = pb.targets[todo]
        m = feather_mask(self.region_mask(pb, sal).float(), self.fill.feather)
        with torch.no_grad():
            fills = self.fills(lat_s, x, m)  # the soft edge counts as hole too
            z_fill = fills[0][0]
            if pb.check_images is not None:
                from ..registry import component_label

                for _, fill in fills:
                    pb.check_images(fill, tuple(x.shape), f"{component_label(pb.latent, 'latent')} inpaint()")
            p_ref = pb.p_in[todo] if reference is None else reference
            ref = Reference.of(p_ref, targets)
            rows = torch.arange(len(todo), device=x.device)
            cf = p = reached = None
            tries = [(i, fill, detail) for i, (_, fill) in enumerate(fills) for detail in self.fill.detail]
            chosen = torch.zeros(len(todo), dtype=torch.long, device=x.device)  # which fill each film took
            for i, fill, detail in tries:  # a film keeps the first fill that meets the stop rule
                cf_d = (x + self.fill.change(fill, x, m, detail)).clamp(0, 1)
                p_d = classify(pb.classifier, cf_d)
                ok = self.stop.reached(p_d, ref)
                if cf is None:
                    cf, p, reached = cf_d, p_d, ok
                    continue
                flipped = p[rows, targets] < pb.decision_threshold
                take = (~reached & ok) | (~reached & ~flipped & (p_d[rows, targets] < pb.decision_threshold))
                cf = torch.where(take.view(-1, 1, 1, 1), cf_d, cf)
                p = torch.where(take.view(-1, 1), p_d, p)
                chosen = torch.where(take, i, chosen)
                reached = reached | ok
        B = len(todo)
        res = OptimizationResult(
            # no reconstruction step: the film itself is what the fill changes (as with a residual blend)
            reconstruction=x, counterfactual=cf, probs_reconstruction=pb.p_in[todo],
            probs_counterfactual=p, steps=torch.zeros(B, dtype=torch.long),
            losses=torch.full((0, B), float("nan")),
            status=["stopped-early" if r else "ran-all-steps" for r in reached.tolist()], seconds=0.0,
            latent=z_fill, content=self.content_of(lat_s, [z for z, _ in fills], chosen))
        if steps <= 0 or bool(reached.all()):
            return res
        # search the inpainter's latent from the fill, for the films the fill did not flip
        idx = (~reached).nonzero().flatten()
        sub = idx.tolist()
        z0 = z_fill.select(sub)
        base = (1 - m[idx]) * x[idx]
        more = optimize_latent(clf_s, lat_s, x[idx], targets[idx], sal[idx], pb.locality,
                               objective=self.objective, stop=self.stop, steps=steps, lr=lr,
                               bf16=self.uses_bf16(pb.x.device), initial=(z0, cf[idx], p[idx]),
                               blend=(m[idx], base), check_classifier=pb.classifier, on_step=on_step,
                               reference=p_ref[idx])
        res.counterfactual[idx] = more.counterfactual
        res.probs_counterfactual[idx] = more.probs_counterfactual
        res.steps[idx] = more.steps.cpu()
        res.losses = torch.full((more.losses.shape[0], B), float("nan"), device=more.losses.device)
        res.losses[:, idx] = more.losses
        for j, b in enumerate(sub):
            res.status[b] = more.status[j]
        return res


def _rows_of(res: Any, j: Tensor) -> Any:
    """The rows ``j`` of an :class:`~xcf.optimize.OptimizationResult` (its images, probabilities,
    steps, losses, status and content)."""
    sub = dataclasses.replace(res)
    for name in ("reconstruction", "counterfactual", "probs_reconstruction", "probs_counterfactual"):
        setattr(sub, name, getattr(res, name)[j])
    sub.steps = res.steps[j.cpu()]
    sub.losses = res.losses[:, j.to(res.losses.device)]
    sub.status = [res.status[k] for k in j.tolist()]
    if res.content is not None:
        sub.content = [res.content[k] for k in j.tolist()]
    return sub


@dataclass(frozen=True)
class LocalExemplar(LocalFill):
    """The region filled from real films without the finding: :class:`LocalFill`'s regions and
    levels, the content the same region of the closest films of a bank of films without the
    finding (an ``exemplar-bank`` latent model, :class:`xcf_autoencoders.ExemplarInpainter`),
    grey-matched to the film around the region. Each level tries the ``donors`` closest films in
    turn; a film keeps the first fill that meets the stop rule. No search: the bank's films are
    the only content (a search of a donor's pixels paints noise), so ``steps`` and ``repair`` have
    no effect, and a film no fill flips keeps its best fill, reported as not flipped.

    Attributes:
        donors: How many of the closest bank films each region level tries.
    """

    donors: int = 8
    latent_role: ClassVar[str] = "exemplar"

    def __post_init__(self) -> None:
        super().__post_init__()
        if isinstance(self.donors, bool) or not isinstance(self.donors, int) or not 1 <= self.donors <= 32:
            raise ConfigError(f"local-exemplar donors must be an integer in 1..32, got {self.donors!r}")

    @property
    def searches(self) -> bool:
        """Never: ``steps`` and ``repair`` have no effect (a search of a donor's pixels paints noise)."""
        return False

    def settings(self) -> dict[str, Any]:  # noqa: D102
        return {**super().settings(), "donors": self.donors}

    def search_models(self, pb: Problem) -> tuple[tuple[Any, Any], Any]:  # noqa: D102
        from ..registry import component_label

        if not self.can_use(pb.latent):
            raise ConfigError(
                f"method {self.name!r} needs a bank of films without the finding as its latent model "
                f"(candidates(x, hole, k)), got {component_label(pb.latent, 'latent')}; use a pack with "
                "one (its manifest's 'exemplars') or latent=create('latent', 'exemplar-bank', root=..., without=...)")
        return Method.search_models(self.replace(detail_gate=False), pb)

    def can_use(self, latent: Any) -> bool:
        """Whether ``latent`` is a bank of films (``candidates(x, hole, k)``)."""
        return callable(getattr(latent, "candidates", None))

    def fills(self, inpainter: Any, x: Tensor, hole: Tensor) -> list[tuple[Latent, Tensor]]:
        """The ``donors`` closest bank films, grey-matched around ``hole``, closest first."""
        films, idx = inpainter.candidates(x, hole, self.donors)
        return [(Latent(films[:, r], aux={"donor": idx[:, r]}), films[:, r].float()) for r in range(films.shape[1])]

    def content_of(self, inpainter: Any, latents: list[Latent], chosen: Tensor) -> list[str | None] | None:
        """The name of the bank film each film's region came from (``ExemplarInpainter.names``:
        the film's path in its folder, or ``phantom:SEED:INDEX``)."""
        names = getattr(inpainter, "names", None)
        out = []
        for b, i in enumerate(chosen.tolist()):
            donor = int(latents[i].aux["donor"][b])
            out.append(str(names[donor]) if names is not None else str(donor))
        return out
