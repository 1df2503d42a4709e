"""The counterfactual benchmark: every method on the same images, the same metrics, one table.

``xcf bench counterfactuals --out DIR [--data phantom|FOLDER] [--methods a,b | --all] [--quick]``
(also ``python benchmarks/counterfactuals.py ...``).

A *method* (:class:`BenchMethod`, the registry :data:`METHODS`) is a registered counterfactual
method (:mod:`xcf.methods`) with its components: a saliency method, a latent model (the pack's, or
a registered one such as ``pixel``) and a locality loss. The defaults are every registered method
(``xcf.list_methods()``: the shipped ones, among them the seed's and the Latent Shift baseline, and
any a plugin adds) and the baselines ``global`` and ``pixel``. Ad-hoc combinations
are written ``SALIENCY/LOCALITY`` or ``SALIENCY/LOCALITY/LATENT`` (e.g. ``occlusion/masked-l1``),
or ``METHOD@LATENT`` for a named method with another of the pack's trained latent models (e.g.
``seed@phantom-vae``);
``--all`` runs the defaults plus every registered saliency x locality pair.

Data:

- ``--data phantom`` (default): the phantom test set, case ``i`` is
  ``generate_case(phantom_test_seed(i), findings=[f])`` with ``f`` cycling over the pack's
  phantom findings, at the latent model's size; each case has its finding's ground-truth mask and
  the true counterfactual (the same film without the finding).
- ``--data FOLDER``: a folder with ``labels.csv`` (``xcf.data.FolderDataset``), rows of ``--split``
  whose ``--target`` column is 1 (only images that show the finding are explained), in CSV order.

Outputs in ``--out`` (rows are appended as each batch completes, so an interrupted run keeps them
and a rerun skips the (method, case) pairs already in ``rows.csv``; a rerun with other settings
(pack, data, steps, ...) into the same folder is refused):

- ``rows.csv``: one row per (method, case): probabilities, every metric of
  :func:`xcf.metrics.explanation_metrics` (validity, target drop, off-target change,
  reconstruction shift, L1/L2, shares of the change inside the method's mask, and with ground
  truth: shares inside the true region and the region grown by 8 px, IoU, pointing game, error to
  the true counterfactual inside/outside), ``share_in_ref_mask_*`` (the share inside one
  reference mask for every method: Grad-CAM++ > 0.5 of the pack's classifier on the input),
  oracle probabilities and ``oracle_validity`` (the pack's independently trained oracle
  classifier also puts the finding below 0.5), ``realism`` (:func:`xcf.metrics.realism` with the
  pack's latent model), region threshold, steps, seconds per image, status;
- ``summary.md`` / ``summary.csv``: per method, mean (median) and n of each metric;
- ``validity_vs_locality.png`` (one point per method) and ``time_per_method.png``;
- ``run.json`` (settings), ``errors.csv`` (images that failed, if any).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import logging
import math
import os
import platform
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..atomic import atomic_file
from ..errors import ConfigError, DataError, UnknownLabelError, XcfError

__all__ = [
    "BenchMethod",
    "METHODS",
    "default_methods",
    "Case",
    "phantom_cases",
    "folder_cases",
    "select_cases",
    "resolve_methods",
    "run",
    "write_summary",
    "read_rows",
    "COLUMNS",
    "main",
]

logger = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------------
# methods


@dataclass(frozen=True)
class BenchMethod:
    """One row label of the benchmark: a counterfactual method with its components.

    Attributes:
        name: Row label in every output.
        description: One line for ``--list`` and summary.md.
        method: A registered method name (``xcf.list_methods()``) or an :class:`xcf.methods.Method`.
        saliency: Registered saliency method; ``None``: the method's region's.
        locality: Registered locality loss.
        latent: Registered latent model built at the pack's image size, or one of the pack's
            trained latent models, or ``None`` for the pack's own latent model.
    """

    name: str
    description: str
    method: Any = "seed"
    saliency: str | None = None
    locality: str = "masked-l2"
    latent: str | None = None

    def resolved(self) -> Any:
        """The :class:`xcf.methods.Method` object."""
        from ..methods import resolve_method

        return resolve_method(self.method)

    @property
    def saliency_name(self) -> str:
        """The saliency method the explainer will use."""
        return self.saliency or self.resolved().region.saliency

    def components(self) -> str:
        m = self.resolved()
        return (f"method {m.name}, saliency {self.saliency_name}, latent {self.latent or 'pack'}, "
                f"locality {self.locality}")


def _methods() -> dict[str, BenchMethod]:
    from ..methods import get_method, list_methods

    out = {name: BenchMethod(name, get_method(name).description, name) for name in list_methods()}
    out["global"] = BenchMethod("global", "baseline: the seed's optimizer without locality (global "
                                          "L2, mask = everything)", "seed", locality="global")
    out["pixel"] = BenchMethod("pixel", "baseline: the seed's objective optimized on the pixels (no "
                                        "latent model)", "seed", latent="pixel")
    return out


class _Methods(Mapping):
    """Every named benchmark method, in table order: each registered method (``xcf.list_methods()``,
    so a third party's method is benchmarked with no new code) and the baselines ``global`` and
    ``pixel``. Read from the registry on each access."""

    def __getitem__(self, key: str) -> BenchMethod:
        return _methods()[key]

    def __iter__(self):
        return iter(_methods())

    def __len__(self) -> int:
        return len(_methods())


#: Every named method (a live view of the registry).
METHODS: Mapping[str, BenchMethod] = _Methods()
#: ``--quick``: every named method, few cases, few steps.
QUICK_N = 5
QUICK_STEPS = 10
BASELINES = ("latent-shift", "global", "pixel")


def default_methods(pack: Any = None) -> tuple[str, ...]:
    """The methods run when ``--methods`` is not given, and by ``--quick``: all of :data:`METHODS`,
    less, with a ``pack``, those whose content the pack lacks (``local-fill`` without an
    inpainter, ``local-exemplar`` without a bank of films without the finding)."""
    if pack is None:
        return tuple(METHODS)
    out = tuple(name for name, m in METHODS.items() if pack.has_content_for(m.resolved()))
    if len(out) < len(METHODS):
        logger.info("leaving out %s: pack '%s' lacks their content",
                    ", ".join(n for n in METHODS if n not in out), pack.name)
    return out


def resolve_methods(spec: str | None, *, all_combinations: bool = False,
                    registry: Any = None) -> list[BenchMethod]:
    """Methods from a ``--methods`` string (comma-separated names, ``SAL/LOC[/LATENT]``,
    ``METHOD@LATENT``, a named method with one of the pack's trained latent models, or
    ``METHOD+KEY=VALUE...``, a variant of a registered method (:func:`xcf.methods.parse_variant`,
    e.g. ``local-in-mask+stop__probability=0.05``): the way to measure a setting before it becomes
    a method).

    Args:
        spec: ``None`` for :func:`default_methods`.
        all_combinations: Add every registered saliency x locality pair with the pack's latent.
        registry: Component registry used to validate names (default: the installed plugins).

    Raises:
        ConfigError: An unknown method or component name (the message lists the valid ones).
    """
    from ..registry import get_registry

    reg = registry or get_registry()
    from .perf import split_variants

    names = split_variants(spec) if spec else list(default_methods())
    out: dict[str, BenchMethod] = {}
    for name in names:
        # [METHOD | METHOD+KEY=VALUE...][@LATENT]: a named method or a variant of a registered one,
        # with one of the pack's trained latent models or a registered one after @
        base, at, lat = name.partition("@")
        m = None
        if base in METHODS:
            m = METHODS[base]
        elif "+" in base and "=" in base:
            from ..methods import parse_variant

            method, _ = parse_variant(base, reg)
            m = BenchMethod(base, f"{method.name.split('+')[0]} with "
                                  f"{base.split('+', 1)[1].replace('+', ', ')}", method)
        if at:
            if m is None or not lat:
                raise ConfigError(f"method {name!r}: write METHOD@LATENT with METHOD one of "
                                  f"{', '.join(METHODS)} and LATENT a latent model of the pack "
                                  "(`xcf packs`)")
            m = replace(m, name=name, latent=lat, description=f"{m.description}; with the latent model {lat}")
        if m is not None:
            out[name] = m
            continue
        parts = name.split("/")
        if len(parts) not in (2, 3):
            raise ConfigError(f"unknown method {name!r}; known: {', '.join(METHODS)}, or "
                              "SALIENCY/LOCALITY[/LATENT] (see --list)")
        kinds = ("saliency", "locality", "latent")
        for kind, part in zip(kinds, parts):
            if part not in reg.list(kind):
                raise ConfigError(f"method {name!r}: unknown {kind} {part!r}; registered: "
                                  f"{', '.join(reg.list(kind))}")
        out[name] = BenchMethod(name, f"{parts[0]} saliency, {parts[1]} locality"
                           + (f", {parts[2]} latent" if len(parts) == 3 else ""),
                           saliency=parts[0], locality=parts[1],
                           latent=parts[2] if len(parts) == 3 else None)
    if all_combinations:
        for sal in reg.list("saliency"):
            for loc in reg.list("locality"):
                name = f"{sal}/{loc}"
                if not any(m.saliency_name == sal and m.locality == loc and m.latent is None
                           and m.method == "seed" for m in out.values()):
                    out[name] = BenchMethod(name, f"{sal} saliency, {loc} locality", saliency=sal,
                                            locality=loc)
    return list(out.values())


# --------------------------------------------------------------------------------------------
# data


@dataclass
class Case:
    """One image to explain.

    Attributes:
        case_id: Unique within the dataset (the resume key, with the method name).
        target: The classifier label to remove.
        info: Extra columns for rows.csv (``finding``, ``phantom_seed``, ``source``).
        load: Returns ``(image (1, S, S), gt_mask (1, S, S) bool or None, true_cf or None)``; may
            raise for a bad image (the case is then reported and skipped).
    """

    case_id: str
    target: str
    info: dict[str, Any]
    load: Callable[[], tuple[Tensor, Tensor | None, Tensor | None]]


def phantom_cases(n: int, labels: Sequence[str], size: int) -> list[Case]:
    """The phantom test set: case ``i`` is ``generate_case(phantom_test_seed(i), [f_i])``, the
    anatomy of the held-out test set's item ``i`` (:func:`xcf.train.phantom_test_seed`: no pack's
    training set holds it) with exactly the finding ``f_i``.

    Args:
        n: Number of cases.
        labels: The classifier's labels; the findings cycle over the phantom findings among them,
            in :data:`xcf.data.phantoms.FINDINGS` order.
        size: Image side (the latent model's ``input_size``; at least 64).

    Raises:
        ConfigError: The classifier has none of the phantom findings.
    """
    from ..data.phantoms import FINDINGS, generate_case
    from ..train import phantom_test_seed

    folded = {lab.casefold(): lab for lab in labels}
    findings = [f for f in FINDINGS if f.casefold() in folded]
    if not findings:
        raise ConfigError(f"the pack's classifier has none of the phantom findings "
                          f"({', '.join(FINDINGS)}); its labels: {', '.join(labels)}")
    cases = []
    for i in range(n):
        finding = findings[i % len(findings)]
        seed = phantom_test_seed(i)

        def load(seed: int = seed, finding: str = finding) -> tuple[Tensor, Tensor, Tensor]:
            case = generate_case(seed, findings=[finding], size=size)
            return case.image, case.masks[FINDINGS.index(finding)], case.counterfactual(finding)

        slug = finding.lower().replace(" ", "-")
        cases.append(Case(f"phantom-{i:04d}-{slug}", folded[finding.casefold()],
                          {"finding": finding, "phantom_seed": seed}, load))
    return cases


def select_cases(cases: Sequence[Case], spec: str) -> list[Case]:
    """The cases named in ``spec`` (comma-separated ids), in dataset order.

    Raises:
        ConfigError: An id that is not among ``cases`` (the message shows the first valid ones).
    """
    wanted = dict.fromkeys(s.strip() for s in spec.split(",") if s.strip())  # ordered set
    known = {c.case_id for c in cases}
    unknown = [w for w in wanted if w not in known]
    if unknown or not wanted:
        first = ", ".join(c.case_id for c in list(cases)[:3])
        raise ConfigError(f"--cases: unknown case id(s) {', '.join(unknown) or '(none given)'}; valid ids "
                          f"are rows.csv's `case` values among the first --n cases, e.g. {first}")
    return [c for c in cases if c.case_id in wanted]


def folder_cases(root: str | os.PathLike, target: str, labels: Sequence[str], size: int, *,
                 split: str | None = "test", n: int | None = None) -> list[Case]:
    """Images of a ``labels.csv`` folder whose ``target`` column is 1, in CSV order.

    Args:
        root: The folder.
        target: A label of the classifier and a column of the CSV (both case-insensitive).
        labels: The classifier's labels.
        size: Image side.
        split: Only rows of this split (``None``: all rows).
        n: At most this many images.

    Raises:
        UnknownLabelError: ``target`` is not one of the classifier's labels.
        DataError: Missing folder/CSV/column (from :class:`xcf.data.FolderDataset`).
    """
    from ..data import FolderDataset
    from ..imageio import load_image

    folded = {lab.casefold(): lab for lab in labels}
    if target.casefold() not in folded:
        raise UnknownLabelError(f"--target {target!r} is not a label of the pack's classifier; "
                                f"its labels: {', '.join(labels)}")
    column = target
    with contextlib.suppress(OSError, UnicodeDecodeError, csv.Error, StopIteration):
        with open(Path(root) / "labels.csv", newline="", encoding="utf-8-sig") as fh:
            header = [h.strip() for h in next(csv.reader(fh))]
        column = next((h for h in header if h.casefold() == target.casefold()), target)
    ds = FolderDataset(root, labels=[column], split=split, size=size, check_files=False)
    positive = torch.nonzero(ds.targets[:, 0] == 1).flatten().tolist()
    if n is not None:
        positive = positive[:n]
    root = Path(root)
    cases = []
    for i in positive:
        path = ds.path(i)
        try:
            rel = path.relative_to(root).as_posix()
        except ValueError:
            rel = str(path)

        def load(path: Path = path) -> tuple[Tensor, None, None]:
            return load_image(path, size=size)[0], None, None

        cases.append(Case(rel, folded[target.casefold()], {"finding": target, "source": rel}, load))
    return cases


# --------------------------------------------------------------------------------------------
# rows.csv


#: rows.csv columns, in order.
COLUMNS: tuple[str, ...] = (
    "method", "case", "target", "finding", "phantom_seed", "source", "status",
    "p_input", "p_reconstruction", "p_counterfactual",
    "validity", "oracle_validity", "oracle_p_input", "oracle_p_counterfactual",
    "target_drop", "off_target_mean", "off_target_max", "reconstruction_shift",
    "l1", "l2", "share_in_mask_l1", "share_in_mask_l2", "mask_area", "region_threshold",
    "region_fallback", "share_in_ref_mask_l1", "share_in_ref_mask_l2",
    "share_in_gt_l1", "share_in_gt_l2", "share_in_gt_dilated_l1", "iou_gt", "pointing_game",
    "mae_true_inside", "mae_true_outside", "removal", "realism", "steps", "seconds",
)
_TEXT = ("method", "case", "target", "finding", "source", "status")

#: Metrics of summary.md, in two tables.
TABLE_LOCALITY = ("validity", "oracle_validity", "target_drop", "share_in_gt_l1", "share_in_gt_l2",
                  "share_in_gt_dilated_l1", "iou_gt", "pointing_game", "share_in_ref_mask_l1",
                  "share_in_ref_mask_l2", "share_in_mask_l1")
TABLE_COST = ("removal", "mae_true_inside", "mae_true_outside", "off_target_mean", "off_target_max",
              "reconstruction_shift", "realism", "l1", "l2", "mask_area", "region_threshold",
              "region_fallback", "steps", "seconds")
LABELS = {
    "validity": "valid", "oracle_validity": "oracle valid", "target_drop": "p drop",
    "share_in_gt_l1": "L1 in GT", "share_in_gt_l2": "L2² in GT", "share_in_gt_dilated_l1": "L1 in GT+8px",
    "iou_gt": "IoU GT", "pointing_game": "pointing", "share_in_ref_mask_l1": "L1 in ref mask",
    "share_in_ref_mask_l2": "L2² in ref mask", "share_in_mask_l1": "L1 in own mask",
    "removal": "removal", "mae_true_inside": "MAE true cf in", "mae_true_outside": "MAE true cf out",
    "off_target_mean": "off-target mean", "off_target_max": "off-target max",
    "reconstruction_shift": "recon shift", "mask_area": "mask area", "region_threshold": "region level",
    "region_fallback": "fallback region",
    "seconds": "s / image",
}


def _cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "1" if v else "0"
    if isinstance(v, float):
        return "nan" if math.isnan(v) else f"{v:.6g}"
    return str(v)


def _parse(key: str, v: str | None) -> Any:
    if key in _TEXT:
        return v or ""
    if v is None or v == "":
        return None
    try:
        return float(v)
    except ValueError:
        return v


def read_rows(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Rows of a ``rows.csv`` with numbers parsed (empty cells ``None``, ``nan`` NaN)."""
    path = Path(path)
    if not path.is_file():
        return []
    with open(path, newline="", encoding="utf-8") as fh:
        return [{k: _parse(k, v) for k, v in row.items() if k is not None}
                for row in csv.DictReader(fh) if row.get("method") and row.get("case")]


def _repair_tail(path: Path) -> None:
    """Drop a half-written last line (a run killed mid-write) so appends stay well-formed."""
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        keep = data[: data.rfind(b"\n") + 1]
        with atomic_file(path, "wb") as fh:
            fh.write(keep)
        logger.warning("%s: dropped a half-written last line", path)


class _RowWriter:
    """Appends rows to rows.csv, one flushed write per batch."""

    def __init__(self, path: Path) -> None:
        self.path = path
        if path.is_file() and path.stat().st_size:
            _repair_tail(path)
            with open(path, newline="", encoding="utf-8") as fh:
                header = next(csv.reader(fh), [])
            missing = [c for c in COLUMNS if c not in header]
            if missing:  # written by an older xcf: add the new columns (empty in its rows)
                with open(path, newline="", encoding="utf-8") as fh:
                    old = list(csv.reader(fh))[1:]
                header = header + missing
                with atomic_file(path, "w", encoding="utf-8", newline="") as fh:
                    w = csv.writer(fh)
                    w.writerow(header)
                    w.writerows(r + [""] * (len(header) - len(r)) for r in old)
                logger.info("%s: added column(s) %s", path, ", ".join(missing))
            self.columns = header
        else:
            self.columns = list(COLUMNS)
            with atomic_file(path, "w", encoding="utf-8", newline="") as fh:
                csv.writer(fh).writerow(self.columns)

    def append(self, rows: Iterable[Mapping[str, Any]]) -> None:
        buf = io.StringIO()
        w = csv.writer(buf)
        for r in rows:
            w.writerow([_cell(r.get(c)) for c in self.columns])
        with open(self.path, "a", encoding="utf-8", newline="") as fh:
            fh.write(buf.getvalue())
            fh.flush()


# --------------------------------------------------------------------------------------------
# running


def _settings(args: argparse.Namespace, pack_name: str) -> dict[str, Any]:
    """What must be equal for rows of two runs to be comparable (checked on resume)."""
    data = args.data if args.data == "phantom" else str(Path(args.data).resolve())
    return {"pack": pack_name, "data": data,
            # the phantom test set's seeds (rows of phantoms drawn from other seeds are not these cases)
            "phantom_seeds": "phantom_test_seed" if args.data == "phantom" else None,
            "split": None if args.data == "phantom" else args.split,
            "target": None if args.data == "phantom" else args.target,
            "steps": args.steps, "stop_probability": args.stop_probability}


def _check_settings(out: Path, settings: dict[str, Any]) -> None:
    path = out / "run.json"
    if not path.is_file():
        return
    try:
        old = json.loads(path.read_text(encoding="utf-8")).get("settings", {})
    except (OSError, json.JSONDecodeError):
        return
    diff = [f"{k}={old.get(k)!r} (now {v!r})" for k, v in settings.items() if old.get(k) != v]
    if diff and (out / "rows.csv").is_file():
        raise ConfigError(f"{out} holds rows made with other settings: {', '.join(diff)}; "
                          "use another --out, or delete its rows.csv")


def _explainer(method: BenchMethod, pack: Any, size: int, overrides: dict[str, Any]):
    from ..config import ExplainConfig
    from ..explainer import Explainer
    from ..registry import create, get_registry

    # None (the pack's default) and the pack's trained latent models go to the Explainer by name,
    # which loads them from the pack; anything else is a registered architecture built at `size`
    # (METHOD@LATENT: one of the pack's, or a registered latent model without weights, e.g. smooth)
    latent = method.latent
    if latent and latent not in pack.latent_names:
        if "@" in method.name and latent not in get_registry().list("latent"):
            raise ConfigError(f"method {method.name!r}: pack '{pack.name}' has no latent model "
                              f"'{latent}'; its latent models: {', '.join(pack.latent_names)}")
        latent = create("latent", latent, input_size=size)
    config = ExplainConfig.build(**overrides)
    return Explainer(pack=pack, latent=latent, saliency=method.saliency, locality=method.locality,
                     method=method.method, config=config)


class _RefMasks:
    """The reference mask of each case (Grad-CAM++ > 0.5 of the classifier on the input), cached."""

    def __init__(self, classifier: Any, size: int) -> None:
        from ..registry import create

        self.classifier = classifier
        self.size = size
        self.method = create("saliency", "gradcam++")
        self.cache: dict[str, Tensor] = {}

    def get(self, ids: Sequence[str], x: Tensor, targets: Tensor) -> Tensor:
        from ..optimize import frozen, resize_to

        todo = [i for i, cid in enumerate(ids) if cid not in self.cache]
        if todo:
            dev = next(iter(self.classifier.parameters()), torch.empty(0)).device
            xs = resize_to(x[todo].to(dev), self.classifier.input_size)
            with frozen(self.classifier):
                sal = self.method(self.classifier, xs, targets[todo].to(dev))
            masks = resize_to(sal.detach().float(), self.size).cpu() > 0.5
            for j, i in enumerate(todo):
                self.cache[ids[i]] = masks[j]
        return torch.stack([self.cache[cid] for cid in ids])


def _oracle_probs(oracle: Any, x: Tensor, targets: Sequence[str]) -> Tensor | None:
    """``(B,)`` oracle probability of each sample's target (NaN where the oracle lacks it)."""
    from ..optimize import classify

    if oracle is None:
        return None
    folded = {lab.casefold(): i for i, lab in enumerate(oracle.labels)}
    dev = next(iter(oracle.parameters()), torch.empty(0)).device
    with torch.no_grad():
        p = classify(oracle, x.to(dev)).cpu()
    out = torch.full((x.shape[0],), math.nan)
    for b, t in enumerate(targets):
        if t.casefold() in folded:
            out[b] = p[b, folded[t.casefold()]]
    return out


def _explain_batch(ex: Any, method: BenchMethod, cases: Sequence[Case],
                   loaded: Sequence[tuple[Tensor, Tensor | None, Tensor | None]], *, pack: Any,
                   refs: _RefMasks) -> list[dict[str, Any]]:
    from ..metrics import realism, share_inside

    x = torch.stack([item[0] for item in loaded])
    targets = torch.tensor([ex.target_index(c.target) for c in cases])
    gts = [item[1] for item in loaded]
    trues = [item[2] for item in loaded]
    gt = torch.stack(gts) if all(g is not None for g in gts) else None
    true = torch.stack(trues) if gt is not None and all(t is not None for t in trues) else None
    results = ex.explain_tensor(x, targets, sources=[c.case_id for c in cases], gt_masks=gt,
                                true_counterfactuals=true)
    x_in = torch.stack([r.input for r in results])
    x_rec = torch.stack([r.reconstruction for r in results])
    x_cf = torch.stack([r.counterfactual for r in results])
    ref = refs.get([c.case_id for c in cases], x_in, targets)
    ref_l1 = share_inside(x_cf, x_rec, ref, power=1)
    ref_l2 = share_inside(x_cf, x_rec, ref, power=2)
    names = [r.target for r in results]
    o_in = _oracle_probs(pack.oracle, x_in, names)
    o_cf = _oracle_probs(pack.oracle, x_cf, names)
    real = realism(pack.latent, x_cf, x_in).cpu()  # one judge for every method: the pack's default
    rows = []
    for b, (case, r) in enumerate(zip(cases, results)):
        row: dict[str, Any] = {
            "method": method.name, "case": case.case_id, "target": r.target, **case.info,
            "status": r.status, "p_input": r.p_input, "p_reconstruction": r.p_reconstruction,
            "p_counterfactual": r.p_counterfactual, **r.metrics,
            "share_in_ref_mask_l1": float(ref_l1[b]), "share_in_ref_mask_l2": float(ref_l2[b]),
            "realism": float(real[b]), "steps": r.steps, "seconds": r.seconds,
        }
        if o_cf is not None:
            row["oracle_p_input"] = float(o_in[b])
            row["oracle_p_counterfactual"] = float(o_cf[b])
            row["oracle_validity"] = (float(o_cf[b] < 0.5) if not math.isnan(float(o_cf[b]))
                                      else math.nan)
        rows.append(row)
    return rows


def run(out: str | os.PathLike, methods: Sequence[BenchMethod], cases: Sequence[Case], *, pack: Any,
        overrides: dict[str, Any], batch_size: int = 8, settings: dict[str, Any] | None = None,
        command: str | None = None, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run ``methods`` over ``cases``, appending to ``out/rows.csv`` and skipping done pairs.

    Args:
        out: Output folder (created).
        methods: The methods, in order.
        cases: The cases, in order.
        pack: A loaded :class:`xcf.packs.Pack` (classifier, latent model, optional oracle).
        overrides: :class:`~xcf.ExplainConfig` fields applied to every method (``steps``,
            ``device``, ...).
        batch_size: Images explained together (and written together).
        settings: Written to ``run.json``.
        command: The command line, for ``run.json`` (default: ``sys.argv``).
        log: Progress messages.

    Returns:
        ``{"new_rows": int, "skipped": int, "errors": [(method, case, message)], "seconds": float}``.

    Ctrl-C stops the run; the rows of completed batches stay in rows.csv.
    """
    from tqdm import tqdm

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows_path = out / "rows.csv"
    writer = _RowWriter(rows_path)  # first: it drops a half-written last row
    _backfill_removal(rows_path, cases)
    done = {(r["method"], r["case"]) for r in read_rows(rows_path)}
    with atomic_file(out / "run.json", "w", encoding="utf-8") as fh:
        json.dump({"settings": settings or {}, "methods": {m.name: m.components() for m in methods},
                   "n_cases": len(cases), "batch_size": batch_size, "overrides": overrides,
                   "python": platform.python_version(), "torch": torch.__version__,
                   "command": command or " ".join(sys.argv)}, fh, indent=2, default=str)
        fh.write("\n")
    size = pack.latent.input_size
    plan = [(m, [c for c in cases if (m.name, c.case_id) not in done]) for m in methods]
    total = sum(len(todo) for _, todo in plan)
    skipped = len(methods) * len(cases) - total
    if skipped:
        log(f"resuming: {skipped} (method, case) pairs already in {rows_path}, {total} to do")
    cache: dict[str, tuple[Tensor, Tensor | None, Tensor | None]] = {}
    bad: dict[str, str] = {}
    errors: list[tuple[str, str, str]] = []
    refs = _RefMasks(pack.classifier, size)
    new_rows = 0
    start = time.perf_counter()
    bar = tqdm(total=total, unit="img", disable=None, file=sys.stderr, dynamic_ncols=True)
    try:
        for method, todo in plan:
            if not todo:
                continue
            bar.set_description(method.name)
            ex = _explainer(method, pack, size, overrides)
            if pack.oracle is not None:
                pack.oracle.to(ex.device)
            for i in range(0, len(todo), batch_size):
                batch, loaded = [], []
                for case in todo[i:i + batch_size]:
                    if case.case_id in bad:
                        errors.append((method.name, case.case_id, bad[case.case_id]))
                        continue
                    try:
                        if case.case_id not in cache:
                            cache[case.case_id] = case.load()
                        loaded.append(cache[case.case_id])
                        batch.append(case)
                    except (XcfError, OSError, ValueError) as exc:
                        bad[case.case_id] = f"{type(exc).__name__}: {exc}"
                        errors.append((method.name, case.case_id, bad[case.case_id]))
                        bar.write(f"skipped {case.case_id}: {bad[case.case_id]}")
                rows = _explain_safely(ex, method, batch, loaded, pack, refs, errors, bar)
                writer.append(rows)
                new_rows += len(rows)
                bar.update(len(todo[i:i + batch_size]))
    finally:
        bar.close()
    return {"new_rows": new_rows, "skipped": skipped, "errors": errors,
            "seconds": time.perf_counter() - start}


def _backfill_removal(path: Path, cases: Sequence[Case]) -> None:
    """Fill ``removal`` in rows written before it existed, exactly, from their
    ``mae_true_inside`` and the case's own input error inside its true region
    (:func:`xcf.metrics.removal` is ``1 - mae_true_inside / that``)."""
    from ..metrics import mae_inside_outside

    if not path.is_file():
        return
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        header = list(reader.fieldnames or [])
        raw = list(reader)
    todo = [r for r in raw if not r.get("removal") and r.get("mae_true_inside") not in (None, "", "nan")]
    by_id = {c.case_id: c for c in cases}
    base: dict[str, float] = {}
    for cid in {r["case"] for r in todo} & by_id.keys():
        x, gt, true = by_id[cid].load()
        if gt is not None and true is not None:
            base[cid] = float(mae_inside_outside(x[None], true[None], gt[None])[0][0])
    filled = [r for r in todo if r["case"] in base]
    if not filled:
        return
    for r in filled:
        den = base[r["case"]]
        r["removal"] = _cell(1 - float(r["mae_true_inside"]) / den if den > 0 else math.nan)
    with atomic_file(path, "w", encoding="utf-8", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=header, extrasaction="ignore")
        w.writeheader()
        w.writerows(raw)
    logger.info("%s: filled removal for %d row(s) of an older xcf", path, len(filled))


def _explain_safely(ex: Any, method: BenchMethod, batch: list[Case], loaded: list, pack: Any,
                    refs: _RefMasks, errors: list, bar: Any) -> list[dict[str, Any]]:
    """Explain a batch; if it fails, one image at a time, reporting and skipping the bad ones."""
    if not batch:
        return []
    try:
        return _explain_batch(ex, method, batch, loaded, pack=pack, refs=refs)
    except Exception as exc:  # a bad image must not stop the benchmark
        if len(batch) == 1:
            msg = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            errors.append((method.name, batch[0].case_id, msg))
            bar.write(f"skipped {method.name} / {batch[0].case_id}: {msg}")
            logger.debug("failure", exc_info=True)
            return []
    rows = []
    for case, item in zip(batch, loaded):
        rows += _explain_safely(ex, method, [case], [item], pack, refs, errors, bar)
    return rows


# --------------------------------------------------------------------------------------------
# summary and plots


def _order(rows: Sequence[Mapping[str, Any]], methods: Sequence[str] = ()) -> list[str]:
    seen = list(dict.fromkeys(r["method"] for r in rows))
    known = [m for m in (*methods, *METHODS) if m in seen]
    return list(dict.fromkeys([*known, *seen]))


def _present(rows: Sequence[Mapping[str, Any]], keys: Sequence[str]) -> list[str]:
    return [k for k in keys if any(isinstance(r.get(k), float) for r in rows)]


def _table(rows: Sequence[Mapping[str, Any]], order: Sequence[str], keys: Sequence[str]) -> str:
    from ..report import markdown_table

    by = {m: [r for r in rows if r["method"] == m] for m in order}
    ordered = [r for m in order for r in by[m]]
    return markdown_table(ordered, "method", keys, LABELS)


def summary_rows(rows: Sequence[Mapping[str, Any]], order: Sequence[str]) -> list[dict[str, Any]]:
    """Per method: ``n`` and ``{metric}_mean``, ``{metric}_median``, ``{metric}_n``."""
    from ..metrics import summarize

    keys = _present(rows, [c for c in COLUMNS if c not in _TEXT and c != "phantom_seed"])
    out = []
    for m in order:
        rs = [r for r in rows if r["method"] == m]
        s = summarize(rs, keys)
        row: dict[str, Any] = {"method": m, "n": len(rs)}
        for k in keys:
            row[f"{k}_mean"] = s[k]["mean"]
            row[f"{k}_median"] = s[k]["median"]
            row[f"{k}_n"] = s[k]["n"]
        out.append(row)
    return out


def write_summary(out: str | os.PathLike, *, methods: Sequence[str] = (), title: str = "",
                  notes: str = "") -> dict[str, Any]:
    """(Re)write summary.md, summary.csv and the plots from ``out/rows.csv``.

    Returns:
        The per-method summary rows (see :func:`summary_rows`).
    """
    from ..report import write_csv

    out = Path(out)
    rows = read_rows(out / "rows.csv")
    order = _order(rows, methods)
    summ = summary_rows(rows, order)
    write_csv([{k: _cell(v) if isinstance(v, float) else v for k, v in r.items()} for r in summ],
              out / "summary.csv")
    described = {m.name: m for m in METHODS.values()}
    info = {}
    with contextlib.suppress(OSError, json.JSONDecodeError):
        info = json.loads((out / "run.json").read_text(encoding="utf-8"))
    comps = info.get("methods", {})
    lines = [f"# {title or 'xcf counterfactual benchmark'}", ""]
    if notes:
        lines += [notes, ""]
    lines += ["Cells: mean (median) over the images; `n` = images. Validity: p(target) < 0.5 on "
              "the classifier (`valid`) and on the pack's independent oracle (`oracle valid`). "
              "`L1 in GT`: share of the absolute change (counterfactual - reconstruction) inside "
              "the true region of the finding; `L2²`: share of the squared change; `ref mask`: "
              "Grad-CAM++ > 0.5 of the classifier on the input, the same region for every method; "
              "`realism`: the latent model's reconstruction error of the counterfactual over the "
              "input's (1 = as plausible as the input).", ""]
    loc = _present(rows, TABLE_LOCALITY)
    cost = _present(rows, TABLE_COST)
    if rows:
        lines += ["## Validity and locality", "", _table(rows, order, loc), "",
                  "## Fidelity, realism and cost", "", _table(rows, order, cost), ""]
    else:
        lines += ["No rows yet.", ""]
    lines += ["## Methods", "", "| method | what | components |", "|---|---|---|"]
    for m in order:
        desc = described[m].description if m in described else ""
        lines.append(f"| {m} | {desc} | {comps.get(m, described[m].components() if m in described else '')} |")
    lines.append("")
    with atomic_file(out / "summary.md", "w", encoding="utf-8") as fh:
        fh.write("\n".join(lines))
    if rows:
        _plots(out, summ)
    return {"rows": summ, "markdown": "\n".join(lines)}


def _label_points(fig: Any, ax: Any, points: Sequence[tuple[str, float, float, str]]) -> None:
    """Name each point, moving labels apart (greedy, in display space) so that none overlap."""
    fig.canvas.draw()  # fixes the axes' transform
    scale = 72.0 / fig.dpi  # display pixels -> points
    placed: list[tuple[float, float, float, float]] = []  # label boxes in points
    step, height = 10.0, 9.0
    for name, xv, yv, color in sorted(points, key=lambda p: (-p[2], p[1])):
        px, py = (v * scale for v in ax.transData.transform((xv, yv)))
        width = 5.0 * len(name)
        for k in range(60):
            dy = 4.0 + (k + 1) // 2 * step * (1 if k % 2 else -1)
            box = (px + 6, py + dy, px + 6 + width, py + dy + height)
            if not any(box[0] < b[2] and b[0] < box[2] and box[1] < b[3] and b[1] < box[3]
                       for b in placed):
                break
        placed.append(box)
        arrow = {"arrowstyle": "-", "color": color, "lw": 0.5, "alpha": 0.6} if abs(dy - 4.0) > 1 else None
        ax.annotate(name, (xv, yv), textcoords="offset points", xytext=(6, dy), fontsize=7.5,
                    color="black", arrowprops=arrow, va="bottom")


def _plots(out: Path, summ: Sequence[Mapping[str, Any]]) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    def get(r: Mapping[str, Any], k: str) -> float:
        v = r.get(k)
        return float(v) if isinstance(v, (int, float)) else math.nan

    ykey = next((k for k in ("share_in_gt_l1", "share_in_ref_mask_l1", "share_in_mask_l1")
                 if any(not math.isnan(get(r, f"{k}_mean")) for r in summ)), "share_in_mask_l1")
    ylabel = {"share_in_gt_l1": "share of |change| inside the true region (mean)",
              "share_in_ref_mask_l1": "share of |change| inside Grad-CAM++ > 0.5 (mean)",
              "share_in_mask_l1": "share of |change| inside the method's mask (mean)"}[ykey]
    fig = Figure(figsize=(8, 6), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    points = []
    for r in summ:
        name = r["method"]
        xv, yv = get(r, "validity_mean"), get(r, f"{ykey}_mean")
        if math.isnan(xv) or math.isnan(yv):
            continue
        color = "black" if name == "seed" else "tab:red" if name in BASELINES else "tab:blue"
        marker = "s" if name in BASELINES else "o"
        ax.scatter([xv], [yv], color=color, marker=marker, s=40, zorder=3)
        ov = get(r, "oracle_validity_mean")
        if not math.isnan(ov):
            ax.scatter([ov], [yv], facecolors="none", edgecolors=color, marker=marker, s=30,
                       alpha=0.6, zorder=2)
            ax.plot([ov, xv], [yv, yv], color=color, lw=0.6, alpha=0.35, zorder=1)
        points.append((name, xv, yv, color))
    ys = [p[2] for p in points] or [0.0, 1.0]
    lo, hi = min(ys), max(ys)
    pad = max(0.05, 0.15 * (hi - lo))
    ax.set_xlim(-0.05, 1.12)
    ax.set_ylim(max(-0.02, lo - pad), min(1.02, hi + pad))
    _label_points(fig, ax, points)
    ax.set_xlabel("validity: share of images where p(target) < 0.5 "
                  "(filled: classifier, hollow: oracle)")
    ax.set_ylabel(ylabel)
    ax.set_title("Validity vs locality, one point per method\n"
                 "(black: seed, red squares: baselines; up and right is better)", fontsize=10)
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "validity_vs_locality.png")

    names = [r["method"] for r in summ]
    secs = [get(r, "seconds_mean") for r in summ]
    fig = Figure(figsize=(7.5, 0.9 + 0.35 * len(names)), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    colors = ["black" if n == "seed" else "tab:red" if n in BASELINES else "tab:blue" for n in names]
    ypos = list(range(len(names)))[::-1]
    ax.barh(ypos, [0 if math.isnan(s) else s for s in secs], color=colors)
    ax.set_yticks(ypos, names, fontsize=8)
    for y, s in zip(ypos, secs):
        if not math.isnan(s):
            ax.annotate(f"{s:.2f} s", (s, y), textcoords="offset points", xytext=(3, -3), fontsize=7)
    ax.set_xlabel("seconds per image (mean, batch time / batch size)")
    ax.set_title("Time per method", fontsize=10)
    ax.margins(x=0.15)
    fig.tight_layout()
    fig.savefig(out / "time_per_method.png")


# --------------------------------------------------------------------------------------------
# command line


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="xcf bench counterfactuals",
        description="Run counterfactual methods over a dataset and compare them (rows.csv, "
                    "summary.md, summary.csv, plots). Resumable: rerun the same command to finish.",
        epilog="examples:\n"
               "  xcf bench counterfactuals --quick --out bench-quick\n"
               "  xcf bench counterfactuals --n 200 --out bench-phantom\n"
               "  xcf bench counterfactuals --data DATA --split test "
               "--target pneumonia --pack pneumonia --out bench-pneumonia\n"
               "  xcf bench counterfactuals --list",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", help="output folder (required unless --list)")
    p.add_argument("--data", default="phantom", help="'phantom' (default) or a folder with labels.csv")
    p.add_argument("--split", default="test", help="split of a labels.csv folder (default test)")
    p.add_argument("--target", help="finding to explain in a labels.csv folder (a CSV column and a "
                                     "classifier label); only images where it is 1 are explained")
    p.add_argument("--pack", help="pack (default: phantom for --data phantom)")
    p.add_argument("--methods", help="comma-separated methods (see --list) or SALIENCY/LOCALITY[/LATENT]")
    p.add_argument("--all", action="store_true", help="also every registered saliency x locality pair")
    p.add_argument("--list", action="store_true", help="print the named methods and exit")
    p.add_argument("--n", type=int, help="number of images (default: 200 phantoms / every positive image)")
    p.add_argument("--cases", help="comma-separated case ids (rows.csv's `case`) among the --n: run only "
                                    "these, e.g. to re-run the failures of another run")
    p.add_argument("--batch-size", type=int, default=8, help="images explained together (default 8)")
    p.add_argument("--steps", type=int, help="optimizer steps for every method (default: the seed's 200)")
    p.add_argument("--stop-probability", type=float, help="early stop below this probability (default: none)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N, mps or auto (default cpu)")
    p.add_argument("--threads", type=int,
                   help="torch CPU threads (default: torch's choice; 1 is much faster on a CPU that "
                        "other processes keep busy)")
    p.add_argument("--quick", action="store_true",
                   help=f"{QUICK_N} phantom cases, every named method, {QUICK_STEPS} steps, "
                        "1 thread (each overridable)")
    p.add_argument("--summary-only", action="store_true", help="rewrite summary and plots from rows.csv")
    return p


def _list_methods() -> str:
    w = max(len(n) for n in METHODS)
    lines = [f"{m.name.ljust(w)}  {m.description}\n{' ' * w}  ({m.components()})" for m in METHODS.values()]
    lines.append("\ndefault: all of the above that the pack has the content for (local-fill: an inpainter, "
                 "local-exemplar: a bank of films without the finding); --quick: the same; ad hoc: "
                 "SALIENCY/LOCALITY[/LATENT], e.g. occlusion/masked-l1; --all adds every registered "
                 "saliency x locality pair")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """``xcf bench counterfactuals`` (see the module docstring); returns the exit status."""
    from . import keep_threads

    return keep_threads(_main, argv)


def _main(argv: Sequence[str] | None) -> int:
    from ..packs import load_pack

    args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    if args.list:
        print(_list_methods())
        return 0
    if not args.out:
        raise ConfigError("--out DIR is required (the folder for rows.csv, summary.md and plots)")
    out = Path(args.out)
    if args.summary_only:
        res = write_summary(out, title=f"xcf counterfactual benchmark ({out.name})")
        print(res["markdown"])
        return 0
    if args.quick:
        if args.data != "phantom":
            raise ConfigError("--quick runs on the phantom test set; leave out --data")
        args.n = args.n or QUICK_N
        args.steps = args.steps if args.steps is not None else QUICK_STEPS
        args.batch_size = min(args.batch_size, args.n)
        args.threads = args.threads or 1
    if args.n is not None and args.n < 1:
        raise ConfigError(f"--n must be at least 1, got {args.n}")
    if args.batch_size < 1:
        raise ConfigError(f"--batch-size must be at least 1, got {args.batch_size}")
    if args.threads is not None:
        if args.threads < 1:
            raise ConfigError(f"--threads must be at least 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    pack_name = args.pack or ("phantom" if args.data == "phantom" else None)
    if pack_name is None:
        raise ConfigError("--pack is required with --data FOLDER (see `xcf packs`)")
    pack = load_pack(pack_name)
    methods = resolve_methods(args.methods or ",".join(default_methods(pack)), all_combinations=args.all)
    size = pack.latent.input_size
    labels = tuple(pack.labels)
    if args.data == "phantom":
        cases = phantom_cases(args.n or 200, labels, size)
        what = f"phantom test set, {len(cases)} cases"
    else:
        if not args.target:
            if len(labels) != 1:
                raise ConfigError(f"--target is required with --data FOLDER; labels: {', '.join(labels)}")
            args.target = labels[0]
        if not Path(args.data).is_dir():
            raise DataError(f"{args.data}: not a folder; --data takes 'phantom' or a folder with labels.csv")
        cases = folder_cases(args.data, args.target, labels, size, split=args.split or None, n=args.n)
        what = f"{Path(args.data).name} split {args.split!r}, {len(cases)} images with {args.target} = 1"
        if not cases:
            raise DataError(f"{args.data}: no image of split {args.split!r} has {args.target} = 1")
    if args.cases:
        cases = select_cases(cases, args.cases)
        what = f"{what}, {len(cases)} chosen"
    overrides: dict[str, Any] = {"device": args.device}
    if args.steps is not None:
        overrides["steps"] = args.steps
    if args.stop_probability is not None:
        overrides["stop_probability"] = args.stop_probability
    settings = _settings(args, pack_name)
    _check_settings(out, settings)
    print(f"{len(methods)} methods x {what}, pack '{pack_name}' ({size} px), "
          f"steps {args.steps or 'per method (200)'}, device {args.device} -> {out}", file=sys.stderr)
    title = f"xcf counterfactual benchmark: {what}, pack `{pack_name}`"
    command = "xcf bench counterfactuals " + " ".join(argv if argv is not None else sys.argv[1:])
    interrupted = False
    try:
        res = run(out, methods, cases, pack=pack, overrides=overrides, batch_size=args.batch_size,
                  settings=settings, command=command, log=lambda s: print(s, file=sys.stderr))
    except KeyboardInterrupt:
        interrupted = True
        res = {"errors": [], "seconds": math.nan, "new_rows": 0}
    if res["errors"]:
        from ..report import write_csv

        write_csv([{"method": m, "case": c, "error": e} for m, c, e in res["errors"]], out / "errors.csv")
    notes = (f"Pack `{pack_name}` ({size} px), {what}; steps: {args.steps or 'per method (200)'}, "
             f"stop probability: {args.stop_probability}, device {args.device}, batch {args.batch_size}. "
             f"Command: `{command}`.")
    summary = write_summary(out, methods=[m.name for m in methods], title=title, notes=notes)
    if interrupted:
        raise KeyboardInterrupt
    print(summary["markdown"])
    n_err = len(res["errors"])
    print(f"wrote {out}/rows.csv ({res['new_rows']} new rows in {res['seconds']:.0f} s), summary.md, "
          f"summary.csv, validity_vs_locality.png, time_per_method.png"
          + (f"; {n_err} images skipped (errors.csv)" if n_err else ""), file=sys.stderr)
    return 0
