"""``xcf.explain`` and ``xcf.Explainer``: images in, :class:`~xcf.Counterfactual` out.

The path from ``explain(image, target)`` to the returned :class:`~xcf.Counterfactual`:

1. :class:`Explainer` resolves its method (:mod:`xcf.methods`, by name) and components once
   (registered names or instances; the saliency method is the method's region's unless given);
2. :meth:`Explainer.explain` loads and resizes the images to the latent model's size and batches them;
3. :meth:`Explainer.explain_tensor` encodes and reconstructs each batch and computes the saliency
   maps, checking each component's output once at the boundary (shape, range, finite values; a
   faulty component is named);
4. the method searches (:meth:`xcf.methods.Method.run`: region levels, each an Adam search,
   :func:`xcf.optimize.optimize_latent`);
5. the metrics are computed and one :class:`~xcf.Counterfactual` per image is returned.
"""

from __future__ import annotations

import contextlib
import importlib.metadata as importlib_metadata
import os
import platform
import time
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from . import __version__
from .config import ExplainConfig, auto_batch_size
from .errors import ComponentError, ConfigError, UnknownLabelError, XcfError
from .interfaces import Classifier, LatentModel, LocalityLoss, SaliencyMethod
from .methods import Method, Problem, Runs, resolve_method
from .methods.parts import blend_base, feather_mask
from .optimize import classify, frozen, resize_to
from .registry import Registry, component_label, component_name, get_registry, resolve
from .result import Counterfactual

__all__ = ["Explainer", "explain", "resolve_device", "DEFAULT_PACK", "blend_base", "feather_mask"]

#: The pack used when neither ``pack`` nor ``classifier``/``latent`` is given.
DEFAULT_PACK = "phantom"
_RANGE_TOL = 1e-4


def resolve_device(device: str) -> torch.device:
    """``"auto"`` picks CUDA, then MPS, then CPU; an unavailable device is a ConfigError."""
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device '{device}' requested but CUDA is not available; use cpu or auto")
    if dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ConfigError(f"device '{device}' requested but MPS is not available; use cpu or auto")
    return dev


def _as_config(config: ExplainConfig | dict | str | None, overrides: dict[str, Any]) -> ExplainConfig:
    if config is None:
        base = ExplainConfig()
    elif isinstance(config, ExplainConfig):
        base = config
    elif isinstance(config, str):
        base = ExplainConfig.preset(config)
    elif isinstance(config, dict):
        base = ExplainConfig.build(**config)
    else:
        raise ConfigError(f"config must be an ExplainConfig, a dict or a method name, got {type(config).__name__}")
    if overrides:
        base = ExplainConfig.build(**{**base.model_dump(exclude_unset=True), **overrides})
    return base


def _check_images(t: Tensor, shape: tuple[int, ...], what: str) -> None:
    if not isinstance(t, Tensor):
        raise ComponentError(f"{what} returned {type(t).__name__}, expected a tensor of shape {shape}")
    if tuple(t.shape) != shape:
        raise ComponentError(f"{what} returned shape {tuple(t.shape)}, expected {shape}")
    if not torch.isfinite(t).all():
        raise ComponentError(f"{what} returned NaN or Inf values")
    lo, hi = float(t.min()), float(t.max())
    if lo < -_RANGE_TOL or hi > 1 + _RANGE_TOL:
        raise ComponentError(f"{what} returned values in [{lo:.4g}, {hi:.4g}], expected [0, 1]")


def _dist_version(dist: str) -> str | None:
    try:
        return importlib_metadata.version(dist)
    except Exception:
        return None


class Explainer:
    """Explains findings of a classifier with local counterfactuals.

    Args:
        pack: A pack name (``xcf.list_packs()``) or a loaded :class:`xcf.packs.Pack`; supplies the
            classifier and latent model unless those are given too.
        classifier: A registered classifier name or an :class:`xcf.Classifier`.
        latent: A registered latent-model name or an :class:`xcf.LatentModel`; with a pack, also one
            of the pack's trained latent models by weights name (``pack.latent_names``, e.g.
            ``"phantom-vae"``), which takes precedence over a registered architecture's name.
        saliency: A registered saliency-method name or an :class:`xcf.SaliencyMethod`; ``None``:
            the method's region's (``method.region.saliency``).
        locality: A registered locality-loss name or an :class:`xcf.LocalityLoss`. A name is built
            with the method objective's ``threshold`` (``mask_threshold``) and ``outside_weight``
            where its factory takes them.
        method: A registered method name (``xcf.list_methods()``) or an :class:`xcf.methods.Method`;
            ``None``: ``config.method``, else :data:`xcf.methods.DEFAULT_METHOD` (``local-fill-in-mask``;
            ``local-in-mask`` where the pack or the latent model given has no inpainter).
        config: An :class:`xcf.ExplainConfig`, a dict of its fields, or a method name.
        registry: The component registry (default: the installed plugins).
        progress: ``progress(level, n_levels, step, budget, p_target)`` called after every search
            step (``p_target``: the target probabilities of the films still searching; the CLI draws
            a progress bar with it), or ``None``.
        **overrides: :class:`xcf.ExplainConfig` fields that override ``config``.

    The classifier and latent model are moved to ``config.device`` (``"auto"``: CUDA, MPS, CPU).
    """

    def __init__(self, *, pack: Any = None, classifier: Any = None, latent: Any = None,
                 saliency: Any = None, locality: Any = "masked-l2", method: Method | str | None = None,
                 config: ExplainConfig | dict | str | None = None, registry: Registry | None = None,
                 progress: Any = None, **overrides: Any) -> None:
        self.config = _as_config(config, overrides)
        reg = registry or get_registry()
        chosen = method if method is not None else self.config.method
        #: The method, with the config's steps / lr / stop probability applied (the default where
        #: none is chosen: :data:`xcf.methods.DEFAULT_METHOD`, or without an inpainter
        #: :data:`xcf.methods.DEFAULT_METHOD_WITHOUT_INPAINTER`).
        self.method: Method = resolve_method(chosen, reg).configured(self.config)
        self.progress = progress
        self.pack = None
        if pack is None and (classifier is None or latent is None):
            from .packs import list_packs

            if DEFAULT_PACK not in list_packs():
                raise ConfigError(
                    "no classifier/latent model given and the default pack "
                    f"'{DEFAULT_PACK}' is not installed; pass pack=..., or classifier= and latent=")
            pack = DEFAULT_PACK
        if pack is not None:
            from .packs import Pack, load_pack

            self.pack = pack if isinstance(pack, Pack) else load_pack(str(pack))
            classifier = classifier if classifier is not None else self.pack.classifier
            if chosen is None and latent is None and not self.pack.has_content_for(self.method):
                self.method = self._plain_default(reg)  # the default, in a pack without an inpainter
            if latent is None:  # the pack's latent model, or its inpainter for local-fill
                latent = self.pack.latent_for(self.method)
            elif isinstance(latent, str) and latent in self.pack.latent_names:
                latent = self.pack.load_latent(latent)  # one of the pack's trained latent models
        self.classifier: Classifier = resolve("classifier", classifier, reg)
        self.latent: LatentModel = resolve("latent", latent, reg)
        if chosen is None and not self.method.can_use(self.latent):
            self.method = self._plain_default(reg)  # the default, with a latent model that cannot fill
        region, objective = self.method.region, self.method.objective
        self.saliency: SaliencyMethod = resolve("saliency", region.saliency if saliency is None else saliency, reg)
        self.region_fallback: SaliencyMethod | None = (
            resolve("saliency", region.fallback, reg) if region.fallback else None)
        self.locality: LocalityLoss = resolve(
            "locality", locality, reg,
            threshold=objective.mask_threshold, outside_weight=objective.outside_weight)
        self.device = resolve_device(self.config.device)
        self.classifier.to(self.device)
        self.latent.to(self.device)
        labels = tuple(self.classifier.labels)
        if not labels:
            raise ComponentError(f"{component_label(self.classifier, 'classifier')} has no labels")
        self.labels = labels

    # -- helpers ---------------------------------------------------------------------------
    def _plain_default(self, reg: Registry) -> Method:
        """The default method where the models include no inpainter
        (:data:`xcf.methods.DEFAULT_METHOD_WITHOUT_INPAINTER`), with the config applied."""
        from .methods import DEFAULT_METHOD_WITHOUT_INPAINTER

        return resolve_method(DEFAULT_METHOD_WITHOUT_INPAINTER, reg).configured(self.config)

    @property
    def batch_size(self) -> int:
        """``config.batch_size``, with ``"auto"`` resolved for this explainer's device
        (:func:`xcf.config.auto_batch_size`: 8 on a CPU, 16 elsewhere)."""
        bs = self.config.batch_size
        return auto_batch_size(self.device.type) if bs == "auto" else bs

    def target_index(self, target: str | int) -> int:
        """Index of a label name (case-insensitive) or a valid integer index."""
        if isinstance(target, bool):
            raise UnknownLabelError(f"target must be a label name or an index, got {target!r}")
        if isinstance(target, (int,)) or (isinstance(target, Tensor) and target.ndim == 0):
            i = int(target)
            if 0 <= i < len(self.labels):
                return i
            raise UnknownLabelError(
                f"target index {i} out of range; valid: 0..{len(self.labels) - 1} ({', '.join(self.labels)})")
        if isinstance(target, str):
            folded = {lab.casefold(): i for i, lab in enumerate(self.labels)}
            key = target.strip().casefold()
            if key in folded:
                return folded[key]
            if key.isdigit():
                return self.target_index(int(key))
        raise UnknownLabelError(
            f"unknown target {target!r}; the classifier's labels are: {', '.join(self.labels)}")

    def components(self) -> dict[str, str]:
        return {
            "method": self.method.name,
            "classifier": component_name(self.classifier),
            "latent": component_name(self.latent),
            "saliency": component_name(self.saliency),
            "locality": component_name(self.locality),
            **({"pack": self.pack.name} if self.pack is not None else {}),
        }

    def provenance(self) -> dict[str, Any]:
        comps = {}
        for kind, obj in (("classifier", self.classifier), ("latent", self.latent),
                          ("saliency", self.saliency), ("locality", self.locality)):
            spec = getattr(obj, "xcf_spec", None)
            info: dict[str, Any] = {"class": f"{type(obj).__module__}.{type(obj).__qualname__}"}
            if spec is not None:
                info.update(name=spec.name, plugin=spec.plugin, package=spec.distribution,
                            version=_dist_version(spec.distribution))
            weights = getattr(obj, "xcf_weights", None)
            if weights:
                info["weights"] = weights
            comps[kind] = info
        return {
            "xcf_version": __version__,
            "torch_version": torch.__version__,
            "python": platform.python_version(),
            "device": str(self.device),
            "seed": self.config.seed,
            "components": comps,
        }

    def load(self, image: Any) -> Tensor:
        """One image source -> ``(1, 1, S, S)`` at the latent model's size."""
        from .imageio import load_image

        return load_image(image, size=self.latent.input_size)

    # -- main ------------------------------------------------------------------------------
    def explain(self, images: Any, targets: Any) -> list[Counterfactual]:
        """Explain several images, each with its own target.

        Args:
            images: A sequence of image sources (paths, PIL images, arrays, tensors) or a tensor
                ``(B, 1, H, W)``; a single source is treated as a batch of one.
            targets: One target (label name or index) for all, or one per image.

        Returns:
            One :class:`~xcf.Counterfactual` per image, in order.
        """
        if isinstance(images, Tensor) and images.ndim == 4:
            sources: list[Any] = list(images.unbind(0))
            sources = [s.unsqueeze(0) for s in sources]
        elif isinstance(images, (list, tuple)):
            sources = list(images)
        else:
            sources = [images]
        if not sources:
            return []
        if isinstance(targets, (list, tuple)) or (isinstance(targets, Tensor) and targets.ndim == 1):
            tlist = list(targets)
            if len(tlist) != len(sources):
                raise ConfigError(f"got {len(sources)} images but {len(tlist)} targets; give one target or one per image")
        else:
            tlist = [targets] * len(sources)
        tidx = [self.target_index(t) for t in tlist]
        xs = [self.load(s) for s in sources]
        names = [os.fspath(s) if isinstance(s, (str, os.PathLike)) else None for s in sources]
        out: list[Counterfactual] = []
        bs = self.batch_size
        for i in range(0, len(xs), bs):
            x = torch.cat(xs[i:i + bs])
            t = torch.tensor(tidx[i:i + bs], dtype=torch.long)
            out.extend(self.explain_tensor(x, t, sources=names[i:i + bs]))
        return out

    def explain_tensor(self, x: Tensor, targets: Tensor, *, sources: Sequence[str | None] | None = None,
                       gt_masks: Tensor | None = None,
                       true_counterfactuals: Tensor | None = None) -> list[Counterfactual]:
        """Explain a batch already in canonical form at the latent model's size.

        Args:
            x: ``(B, 1, S, S)`` float32 in [0, 1], ``S == latent.input_size``.
            targets: ``(B,)`` long label indices.
            sources: Optional file names, stored in the results.
            gt_masks: Optional ``(B, 1, S, S)`` bool ground-truth regions, for the metrics.
            true_counterfactuals: Optional ``(B, 1, S, S)`` ground-truth counterfactual images
                (phantoms), for the metrics.
        """
        cfg = self.config
        S = self.latent.input_size
        B = x.shape[0]
        if tuple(x.shape[1:]) != (1, S, S):
            raise ConfigError(f"images must be (B, 1, {S}, {S}) for this latent model, got {tuple(x.shape)}")
        x = x.to(self.device, torch.float32)
        targets = targets.to(self.device)
        clabel = component_label(self.classifier, "classifier")
        llabel = component_label(self.latent, "latent")
        slabel = component_label(self.saliency, "saliency")
        K = len(self.labels)
        rng = torch.random.fork_rng(devices=[]) if cfg.seed is not None else contextlib.nullcontext()
        with rng:
            if cfg.seed is not None:
                torch.manual_seed(cfg.seed)
            start = time.perf_counter()
            with frozen(self.classifier, self.latent):
                with torch.no_grad():
                    try:
                        z0 = self.latent.encode(x)
                        x0 = self.latent.decode(z0)
                    except XcfError:
                        raise
                    except Exception as exc:
                        raise ComponentError(f"{llabel} failed: {type(exc).__name__}: {exc}") from exc
                    _check_images(x0, (B, 1, S, S), f"{llabel} decode()")
                    x0 = x0.float()
                    try:
                        logits = self.classifier(resize_to(x, self.classifier.input_size))
                    except XcfError:
                        raise
                    except Exception as exc:
                        raise ComponentError(f"{clabel} failed: {type(exc).__name__}: {exc}") from exc
                    if tuple(logits.shape) != (B, K):
                        raise ComponentError(f"{clabel} returned shape {tuple(logits.shape)}, expected ({B}, {K})")
                    if not torch.isfinite(logits).all():
                        raise ComponentError(f"{clabel} returned NaN or Inf logits")
                    p_in = torch.sigmoid(logits.float())
                    p0 = classify(self.classifier, x0)
                xc = resize_to(x, self.classifier.input_size)
                try:
                    sal = self.saliency(self.classifier, xc, targets)
                except XcfError:
                    raise
                except Exception as exc:
                    raise ComponentError(f"{slabel} failed: {type(exc).__name__}: {exc}") from exc
                Sc = self.classifier.input_size
                _check_images(sal, (B, 1, Sc, Sc), slabel)
                sal = resize_to(sal.detach().float(), S).clamp(0, 1)
                runs = self.method.run(Problem(
                    classifier=self.classifier, latent=self.latent, locality=self.locality, x=x,
                    targets=targets, saliency=sal, z0=z0.detach(), x0=x0, p0=p0, p_in=p_in,
                    fallback=self.region_fallback, decision_threshold=cfg.decision_threshold,
                    check_images=_check_images, progress=self.progress))
            seconds = (time.perf_counter() - start) / B
        metrics = self._metrics(x, runs, p_in, targets, gt_masks, true_counterfactuals)
        cfg_dict = {**cfg.model_dump(), **self.method.settings()}
        prov = self.provenance()
        comps = self.components()
        results = []
        for b in range(B):
            k = int(targets[b])
            results.append(Counterfactual(
                input=x[b].detach().cpu(),
                reconstruction=runs.reconstruction[b].cpu(),
                counterfactual=runs.counterfactual[b].cpu(),
                saliency=sal[b].cpu(),
                mask=runs.mask[b].cpu(),
                labels=self.labels,
                target=self.labels[k],
                target_index=k,
                probs_input=p_in[b].cpu(),
                probs_reconstruction=runs.probs_reconstruction[b].cpu(),
                probs_counterfactual=runs.probs_counterfactual[b].cpu(),
                steps=int(runs.steps[b]),
                seconds=seconds,
                losses=runs.losses[b],
                status=runs.status[b],
                config=cfg_dict,
                components=comps,
                metrics={key: float(val[b]) for key, val in metrics.items()},
                provenance={**prov, "batch_size": B,
                            **({"content": runs.content[b]} if runs.content[b] is not None else {})},
                source=sources[b] if sources else None,
            ))
        return results

    def _metrics(self, x: Tensor, runs: Runs, p_in: Tensor, targets: Tensor,
                 gt_masks: Tensor | None, true_cf: Tensor | None = None) -> dict[str, Tensor]:
        from .metrics import explanation_metrics

        m = explanation_metrics(
            x, runs.reconstruction, runs.counterfactual, runs.mask, p_in, runs.probs_reconstruction,
            runs.probs_counterfactual, targets,
            gt_mask=None if gt_masks is None else gt_masks.to(x.device).bool(),
            x_true_cf=None if true_cf is None or gt_masks is None else true_cf.to(x.device).float(),
            validity_threshold=self.config.decision_threshold)
        m["region_threshold"] = runs.level
        if self.region_fallback is not None:
            m["region_fallback"] = runs.fallback.float()
        return {k: v.detach().float().cpu() for k, v in m.items()}


def explain(image: Any, target: str | int, *, pack: Any = None, classifier: Any = None,
            latent: Any = None, saliency: Any = None, locality: Any = "masked-l2",
            method: Method | str | None = None, config: ExplainConfig | dict | str | None = None,
            **overrides: Any) -> Counterfactual:
    """Explain one finding of one image with a local counterfactual.

    Args:
        image: A path (PNG, JPEG, DICOM), PIL image, numpy array or tensor ((H, W), (1, H, W) or
            (1, 1, H, W); uint8/uint16 scaled by their range, float taken as [0, 1]).
        target: A label name (case-insensitive) or index.
        pack: A pack name; default ``"phantom"`` when no classifier/latent model is given.
        classifier, latent, saliency, locality: Registered names or instances (``saliency=None``:
            the method's; see :class:`Explainer`).
        method: A registered method name (``xcf.list_methods()``: ``"seed"`` is the seed's method
            exactly) or an :class:`xcf.methods.Method`; ``None``: the default, ``"local-fill-in-mask"``
            (``"local-in-mask"`` where there is no inpainter).
        config: :class:`xcf.ExplainConfig`, dict or method name; ``**overrides`` set single fields
            (``steps``, ``lr``, ``stop_probability``, ``seed``, ``device``, ...).

    Returns:
        The :class:`xcf.Counterfactual`.
    """
    explainer = Explainer(pack=pack, classifier=classifier, latent=latent, saliency=saliency,
                          locality=locality, method=method, config=config, **overrides)
    return explainer.explain([image], [target])[0]

