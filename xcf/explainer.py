"""``xcf.explain`` and ``xcf.Explainer``: images in, :class:`~xcf.Counterfactual` out.

The Explainer resolves its components once (registered names or instances), then for each batch:
loads and resizes the images to the latent model's size, encodes and reconstructs them and computes
the saliency maps under ``torch.no_grad`` (saliency with its own gradients), checks each component's
output once at the boundary (shape, range, finite values; a faulty component is named), and runs
:func:`xcf.optimize.optimize_latent`.
"""

from __future__ import annotations

import contextlib
import importlib.metadata as importlib_metadata
import os
import platform
import time
import warnings
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from . import __version__
from .config import DEFAULT_PRESET, ExplainConfig, auto_batch_size
from .errors import ComponentError, ConfigError, UnknownLabelError, XcfError
from .filters import gaussian_blur
from .fusion import search_copies
from .interfaces import Classifier, LatentModel, LocalityLoss, SaliencyMethod
from .optimize import classify, frozen, optimize_latent, resize_to
from .registry import Registry, component_label, component_name, get_registry, resolve
from .result import Counterfactual

__all__ = ["Explainer", "explain", "resolve_device", "DEFAULT_PACK", "DEFAULT_SALIENCY"]

#: The pack used when neither ``pack`` nor ``classifier``/``latent`` is given.
DEFAULT_PACK = "phantom"
#: The saliency method when neither the caller nor the config names one (the seed's).
DEFAULT_SALIENCY = "gradcam++"

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
        base = ExplainConfig.preset(DEFAULT_PRESET)
    elif isinstance(config, ExplainConfig):
        base = config
    elif isinstance(config, str):
        base = ExplainConfig.preset(config)
    elif isinstance(config, dict):
        base = ExplainConfig.build(**config)
    else:
        raise ConfigError(f"config must be an ExplainConfig, a dict or a preset name, got {type(config).__name__}")
    if overrides:
        base = ExplainConfig.build(**{**base.model_dump(), **overrides})
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
            ``config.saliency`` if the config (e.g. a preset) names one, else ``"gradcam++"``.
        locality: A registered locality-loss name or an :class:`xcf.LocalityLoss`. A name is built
            with ``threshold=config.mask_threshold`` and ``outside_weight=config.outside_weight``
            where its factory takes them.
        config: An :class:`xcf.ExplainConfig`, a dict of its fields, or a preset name.
        registry: The component registry (default: the installed plugins).
        **overrides: :class:`xcf.ExplainConfig` fields that override ``config``.

    The classifier and latent model are moved to ``config.device`` (``"auto"``: CUDA, MPS, CPU).
    """

    def __init__(self, *, pack: Any = None, classifier: Any = None, latent: Any = None,
                 saliency: Any = None, locality: Any = "masked-l2",
                 config: ExplainConfig | dict | str | None = None, registry: Registry | None = None,
                 **overrides: Any) -> None:
        self.config = _as_config(config, overrides)
        reg = registry or get_registry()
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
            if latent is None:
                latent = self.pack.latent
            elif isinstance(latent, str) and latent in self.pack.latent_names:
                latent = self.pack.load_latent(latent)  # one of the pack's trained latent models
        self.classifier: Classifier = resolve("classifier", classifier, reg)
        self.latent: LatentModel = resolve("latent", latent, reg)
        if saliency is None:
            saliency = self.config.saliency or DEFAULT_SALIENCY
        self.saliency: SaliencyMethod = resolve("saliency", saliency, reg)
        self.region_fallback: SaliencyMethod | None = (
            resolve("saliency", self.config.region_fallback, reg) if self.config.region_fallback else None)
        self.locality: LocalityLoss = resolve(
            "locality", locality, reg,
            threshold=self.config.mask_threshold, outside_weight=self.config.outside_weight)
        self.device = resolve_device(self.config.device)
        self.classifier.to(self.device)
        self.latent.to(self.device)
        labels = tuple(self.classifier.labels)
        if not labels:
            raise ComponentError(f"{component_label(self.classifier, 'classifier')} has no labels")
        self.labels = labels

    # -- helpers ---------------------------------------------------------------------------
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
                runs = self._search(x, targets, sal, z0.detach(), x0, p0, p_in)
            seconds = (time.perf_counter() - start) / B
        metrics = self._metrics(x, runs, p_in, targets, gt_masks, true_counterfactuals)
        cfg_dict = cfg.model_dump()
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
                provenance={**prov, "batch_size": B},
                source=sources[b] if sources else None,
            ))
        return results

    def _search_models(self) -> tuple[Classifier, LatentModel]:
        """The classifier and latent model the search loop differentiates: the originals, or
        copies with BatchNorm folded (``config.fold_batchnorm``) and / or in channels-last format
        (``config.channels_last``). A model that cannot be copied is searched as it is, with a
        warning that names it."""
        cfg = self.config
        try:
            (clf, lat), _ = search_copies(self.classifier, self.latent, fold=cfg.fold_batchnorm,
                                          channels_last=cfg.channels_last)
        except Exception as exc:  # noqa: BLE001 - any plugin's copy failure: search the originals
            warnings.warn(
                f"fold_batchnorm / channels_last ignored: could not copy "
                f"{component_label(self.classifier, 'classifier')} or "
                f"{component_label(self.latent, 'latent')} ({type(exc).__name__}: {exc}); "
                "searching on the models as they are", RuntimeWarning, stacklevel=4)
            return self.classifier, self.latent
        return clf, lat

    def _search(self, x: Tensor, targets: Tensor, sal: Tensor, z0, x0: Tensor, p0: Tensor,
                p_in: Tensor) -> _Runs:
        """Run the configured search, growing the region level by level for samples that did not
        flip (``config.region_thresholds``), with optional blending by construction; the loop
        differentiates :meth:`_search_models`."""
        models = self._search_models()
        cfg = self.config
        if cfg.detail_gate:  # z gains a gate on the input's detail (xcf.detail_gate)
            from .detail_gate import DetailGate, has_detail

            # "auto" leaves the Latent Shift baseline as published (the model's own z)
            if cfg.detail_gate is True or (cfg.method != "latent-shift" and has_detail(z0, x.shape[-1])):
                gated = DetailGate(models[1])
                models, z0 = (models[0], gated), gated.lift(z0)
        B = x.shape[0]
        levels = list(cfg.region_thresholds) if cfg.region_thresholds else [cfg.mask_threshold]
        runs = _Runs(x, p0)
        todo = torch.arange(B, device=x.device)
        todo = self._levels(runs, todo, levels, x, targets, sal, z0, x0, p0, p_in, models)
        if self.region_fallback is not None and todo.numel():
            # a second search in the fallback method's regions; the results show the map used
            xc = resize_to(x[todo], self.classifier.input_size)
            sal2 = self.region_fallback(self.classifier, xc, targets[todo])
            _check_images(sal2, (len(todo), 1, xc.shape[-1], xc.shape[-1]),
                          component_label(self.region_fallback, "saliency"))
            sal[todo] = resize_to(sal2.detach().float(), x.shape[-1]).clamp(0, 1)
            runs.fallback[todo.cpu()] = True
            self._levels(runs, todo, levels, x, targets, sal, z0, x0, p0, p_in, models)
        if cfg.prune_shares:
            self._prune(runs, targets)
        return runs

    def _levels(self, runs: _Runs, todo: Tensor, levels: list[float], x: Tensor, targets: Tensor,
                sal: Tensor, z0, x0: Tensor, p0: Tensor, p_in: Tensor,
                models: tuple[Classifier, LatentModel]) -> Tensor:
        """Search the samples ``todo`` in the regions ``sal > level``, level by level, each level
        only for those not yet flipped (or, with a ``stop_probability`` below the decision
        threshold, not yet below it); returns the samples that never got there. The loop runs on
        ``models``; when those are copies, the counterfactual's probabilities (validity, and the
        decision to grow the region) are the original classifier's."""
        cfg = self.config
        clf_s, lat_s = models
        copies = clf_s is not self.classifier
        budget = cfg.model_copy(update={"steps": cfg.level_steps}) if cfg.level_steps else cfg
        z_cur = z0.z.detach().clone() if cfg.level_warm_start else None  # where each sample ended
        # a sample moves on to the next level until it is valid, or below a lower stop probability
        # the user asked for (a stop of 0.1 is a request to go that far)
        goal = min(cfg.decision_threshold, cfg.stop_probability or cfg.decision_threshold)
        for i, level in enumerate(levels):
            cfg_l = budget if i < len(levels) - 1 else cfg  # the last level gets `steps`
            if cfg.level_lr_scale != 1.0 and i:
                cfg_l = cfg_l.model_copy(update={"lr": cfg.lr * cfg.level_lr_scale ** i})
            sal_l = sal[todo]
            if level != cfg.mask_threshold:  # move the loss's threshold to this level
                sal_l = (sal_l * (cfg.mask_threshold / level)).clamp(0, 1)
            mask = self.locality.mask(sal_l).bool()
            z0_t, x0_t, p0_t = z0.select(todo), x0[todo], p0[todo]
            blend = None
            if cfg.blend != "none":
                bm = feather_mask(mask.float(), cfg.feather)
                base = blend_base(cfg.blend, bm, x[todo], x0_t)
                with torch.no_grad():
                    x0_t = bm * x0_t + base
                    # residual: the start x + m (D(z0) - D(z0)) is the input, whose probabilities
                    # are known (one classifier pass per sample and level saved)
                    p0_t = p_in[todo] if cfg.blend == "residual" else classify(self.classifier, x0_t)
                blend = (bm, base)
            if cfg.method == "latent-shift":
                from .baselines import latent_shift

                res = latent_shift(clf_s, lat_s, x[todo], targets[todo], cfg,
                                   initial=(z0_t, x0_t, p0_t))
            else:
                res = optimize_latent(clf_s, lat_s, x[todo], targets[todo], sal_l,
                                      self.locality, cfg_l, initial=(z0_t, x0_t, p0_t), blend=blend,
                                      z_start=None if z_cur is None else z_cur[todo],
                                      check_classifier=self.classifier)
                if z_cur is not None:
                    z_cur[todo] = res.latent.z.detach()
            if copies and cfg.method == "latent-shift":
                # report, and decide on, the original classifier's probabilities (optimize_latent
                # does so itself: check_classifier)
                with torch.no_grad():
                    res.probs_counterfactual = classify(self.classifier, res.counterfactual)
            runs.record(todo, res, mask, level)
            p_t = res.probs_counterfactual[torch.arange(len(todo), device=x.device), targets[todo]]
            todo = todo[p_t >= goal]
            if todo.numel() == 0:
                break
        return todo

    @torch.no_grad()
    def _prune(self, runs: _Runs, targets: Tensor) -> None:
        """Keep only the strongest part of each valid counterfactual's change: for each share ``q``
        of ``config.prune_shares`` (smallest first), the fewest pixels holding ``q`` of the L1
        change ``|cf - start|`` (feathered like the blend), ``cf' = start + keep * (cf - start)``;
        the first ``q`` whose ``cf'`` is still valid replaces the counterfactual, and the region
        becomes those pixels (a smaller, more precise explanation). Samples that stay invalid at
        every share, or were not valid to begin with, are left as they were."""
        cfg = self.config
        B = targets.shape[0]
        ar = torch.arange(B, device=targets.device)
        valid = runs.probs_counterfactual[ar, targets] < cfg.decision_threshold
        done = ~valid
        runs.pruned_share = torch.full((B,), float("nan"))
        delta = runs.counterfactual - runs.reconstruction
        mag = delta.abs().flatten(1)
        order = mag.sort(dim=1, descending=True)
        cum = order.values.cumsum(1) / order.values.sum(1, keepdim=True).clamp_min(1e-12)
        for q in sorted(cfg.prune_shares):
            if bool(done.all()):
                break
            n_keep = (cum < q).sum(1) + 1  # pixels needed to reach share q
            keep = torch.zeros_like(mag)
            rank = torch.arange(mag.shape[1], device=mag.device)[None].expand_as(mag)
            keep.scatter_(1, order.indices, (rank < n_keep[:, None]).float())
            keep = keep.view_as(delta)
            soft = feather_mask(keep, cfg.feather) if cfg.feather > 0 else keep
            cand = runs.reconstruction + soft * delta
            p = classify(self.classifier, cand)
            ok = (p[ar, targets] < cfg.decision_threshold) & ~done
            if bool(ok.any()):
                idx = torch.nonzero(ok).flatten()
                runs.counterfactual[idx] = cand[idx]
                runs.probs_counterfactual[idx] = p[idx]
                runs.mask[idx] = keep[idx].bool()
                runs.pruned_share[idx.cpu()] = q
                done |= ok

    def _metrics(self, x: Tensor, runs: _Runs, p_in: Tensor, targets: Tensor,
                 gt_masks: Tensor | None, true_cf: Tensor | None = None) -> dict[str, Tensor]:
        from .metrics import explanation_metrics

        m = explanation_metrics(
            x, runs.reconstruction, runs.counterfactual, runs.mask, p_in, runs.probs_reconstruction,
            runs.probs_counterfactual, targets,
            gt_mask=None if gt_masks is None else gt_masks.to(x.device).bool(),
            x_true_cf=None if true_cf is None or gt_masks is None else true_cf.to(x.device).float(),
            validity_threshold=self.config.decision_threshold)
        m["region_threshold"] = runs.level
        if getattr(runs, "pruned_share", None) is not None:
            m["pruned_share"] = runs.pruned_share
        if self.region_fallback is not None:
            m["region_fallback"] = runs.fallback.float()
        return {k: v.detach().float().cpu() for k, v in m.items()}


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


def feather_mask(mask: Tensor, sigma: float) -> Tensor:
    """Feather a ``(B, 1, H, W)`` mask in [0, 1]: ``max(mask, clamp(2 * gaussian_sigma(mask), 0, 1))``.

    The region keeps weight 1 (its edge, where the blur is 0.5, too) and gains a soft border that
    falls to 0 over about ``2 * sigma`` pixels outside it. ``sigma == 0`` returns the mask unchanged.
    """
    if sigma <= 0:
        return mask
    out = gaussian_blur(mask, sigma, radius=max(1, int(round(3 * sigma))), padding="replicate")
    return torch.maximum(mask, (2 * out).clamp(0, 1))


class _Runs:
    """Per-sample outputs collected over the region levels (the last level run for each sample)."""

    def __init__(self, x: Tensor, p0: Tensor) -> None:
        B = x.shape[0]
        self.reconstruction = torch.empty_like(x)
        self.counterfactual = torch.empty_like(x)
        self.mask = torch.zeros_like(x, dtype=torch.bool)
        self.probs_reconstruction = torch.empty_like(p0)
        self.probs_counterfactual = torch.empty_like(p0)
        self.steps = torch.zeros(B, dtype=torch.long)
        self.level = torch.zeros(B)
        self.pruned_share: Tensor | None = None  # set by Explainer._prune
        self.fallback = torch.zeros(B, dtype=torch.bool)  # region from config.region_fallback
        self.losses: list[list[float]] = [[] for _ in range(B)]
        self.status = ["completed"] * B

    def record(self, idx: Tensor, res, mask: Tensor, level: float) -> None:
        self.reconstruction[idx] = res.reconstruction
        self.counterfactual[idx] = res.counterfactual
        self.mask[idx] = mask
        self.probs_reconstruction[idx] = res.probs_reconstruction
        self.probs_counterfactual[idx] = res.probs_counterfactual
        losses = res.losses.cpu()
        for j, b in enumerate(idx.tolist()):
            self.steps[b] += int(res.steps[j])
            self.level[b] = level
            self.losses[b] += [float(v) for v in losses[:, j] if v == v]
            self.status[b] = res.status[j]


def explain(image: Any, target: str | int, *, pack: Any = None, classifier: Any = None,
            latent: Any = None, saliency: Any = None, locality: Any = "masked-l2",
            config: ExplainConfig | dict | str | None = None, **overrides: Any) -> Counterfactual:
    """Explain one finding of one image with a local counterfactual.

    Args:
        image: A path (PNG, JPEG, DICOM), PIL image, numpy array or tensor ((H, W), (1, H, W) or
            (1, 1, H, W); uint8/uint16 scaled by their range, float taken as [0, 1]).
        target: A label name (case-insensitive) or index.
        pack: A pack name; default ``"phantom"`` when no classifier/latent model is given.
        classifier, latent, saliency, locality: Registered names or instances (``saliency=None``:
            the config's, else Grad-CAM++; see :class:`Explainer`).
        config: :class:`xcf.ExplainConfig`, dict or preset name; ``**overrides`` set single fields.

    Returns:
        The :class:`xcf.Counterfactual`.
    """
    explainer = Explainer(pack=pack, classifier=classifier, latent=latent, saliency=saliency,
                          locality=locality, config=config, **overrides)
    return explainer.explain([image], [target])[0]

