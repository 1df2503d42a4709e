"""Explaining whole datasets: ``xcf explain-dataset`` and :func:`explain_dataset`.

A run reads a dataset (a folder with a ``labels.csv``, e.g. the Kermany pneumonia films at 224 px, a
CheXpert ``valid.csv``/``train.csv``, or a plain folder of images), makes one *job* per image (or,
with ``all_positive``, one per positive finding per image), and writes::

    OUT/
      cases/<id>/  the files of Counterfactual.save (xcf.result.REPORT_FILES), thumb.png [optimization.gif]
      results.csv      one row per job: id, path, target, p_input, p_reconstruction, p_counterfactual,
                       validity, target_drop, share_in_mask_l1, steps, seconds, status, error, label
      run.json         what was run (data, engine, config, config hash, timings; ``history``: one
                       entry per invocation, so interrupted and resumed runs keep their timings)
      index.html       the report (:mod:`xcf.html_report`)

Every case folder is written atomically (all files or none), so an interrupted run (Ctrl-C, a killed
node) leaves only complete cases. Running the same command again **resumes**: a job is skipped when
its folder holds all the files and a parseable ``report.json`` with the same target and the same
*config hash* (search settings, component names and weight sha256s; not the device or batch size, so
a run can move between a laptop and a cluster). An image that cannot be read (any
:class:`~xcf.errors.XcfError` while loading) becomes a row with ``status`` ``error`` and its one-line
message; the other images complete. Error rows are retried on the next run.

Engines (:mod:`xcf.engines`): ``local`` (in-process, batched, the GPU when there is one) and ``ray``
(Ray Data ``map_batches`` over a pool of actors that hold the models once; ``pip install xcf[ray]``).
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import json
import logging
import math
import os
import re
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ..atomic import atomic_dir, atomic_file
from ..errors import ConfigError, DataError, XcfError

if TYPE_CHECKING:
    from ..explainer import Explainer
    from ..result import Counterfactual

__all__ = [
    "RESULT_COLUMNS",
    "Job",
    "ExplainerSpec",
    "DatasetRun",
    "explain_dataset",
    "read_jobs",
    "config_hash",
    "process_batch",
    "compute_batch",
    "save_batch",
    "IMAGE_SUFFIXES",
]

logger = logging.getLogger(__name__)

#: Columns of ``results.csv``, in order.
RESULT_COLUMNS = ("id", "path", "target", "p_input", "p_reconstruction", "p_counterfactual",
                  "validity", "target_drop", "share_in_mask_l1", "steps", "seconds", "status",
                  "error", "label")

#: Files a plain folder of images is searched for (recursively).
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".dcm", ".dicom"})

#: Config fields that do not change the result and are left out of the config hash.
_HASH_EXCLUDED = frozenset({"device", "batch_size", "execution.channels_last", "execution.fold_batchnorm"})

THUMB_NAME = "thumb.png"


# --------------------------------------------------------------------------------------------------
# jobs
# --------------------------------------------------------------------------------------------------


@dataclass
class Job:
    """One explanation to compute.

    Attributes:
        index: Position in the run (the order of ``results.csv``).
        id: The case folder's name under ``cases/``.
        path: The image file.
        target: The finding, as the classifier names it.
        label: Ground truth of ``target`` for this image (1/0), ``None`` when unknown.
    """

    index: int
    id: str
    path: str
    target: str
    label: float | None = None

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Job:
        return cls(**json.loads(text))


def _slug(text: str) -> str:
    s = re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._")
    return s or "x"


def _image_ids(paths: Sequence[Path], root: Path) -> list[str]:
    """The file stem when stems are unique in the dataset, else the path below ``root``."""
    stems = [p.stem for p in paths]
    if len(set(stems)) == len(stems):
        return [_slug(s) for s in stems]
    out = []
    for p in paths:
        try:
            rel = p.relative_to(root)
        except ValueError:
            rel = Path(*p.parts[-3:])
        out.append(_slug("__".join(rel.with_suffix("").parts)))
    return out


def _match_labels(names: Sequence[str], columns: Sequence[str]) -> dict[str, str]:
    """Classifier label -> dataset column, matched case-insensitively."""
    folded = {c.strip().casefold(): c for c in columns}
    return {n: folded[n.casefold()] for n in names if n.casefold() in folded}


def _csv_header(path: Path) -> list[str]:
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            return [h.strip() for h in next(csv.reader(fh), [])]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{path}: cannot read CSV ({exc})") from None


def _plain_rows(csv_path: Path, split: str | None, path_column: str = "path") -> list[str]:
    with open(csv_path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        fields = [f.strip() for f in reader.fieldnames or []]
        if path_column not in fields:
            raise DataError(f"{csv_path}:1: missing column '{path_column}'; columns present: {', '.join(fields)}")
        if split is not None and "split" not in fields:
            raise DataError(f"{csv_path}:1: --split given but the CSV has no 'split' column")
        rows = [{k.strip(): (v or "").strip() for k, v in r.items() if k} for r in reader]
    return [r[path_column] for r in rows if r.get(path_column) and (split is None or r.get("split") == split)]


def read_jobs(data: str | os.PathLike, labels: Sequence[str], *, target: str | None = None,
              all_positive: bool = False, split: str | None = None, limit: int | None = None,
              exclude: str | os.PathLike | None = None) -> tuple[list[Job], str]:
    """The jobs of a dataset.

    Args:
        data: A ``labels.csv`` (path column + 0/1 label columns, optional ``split``), a folder holding
            one, a CheXpert CSV (``Path`` column and finding columns; frontal views only) or a
            folder holding ``valid.csv``, or a plain folder of images (searched recursively).
        labels: The classifier's labels; dataset columns are matched to them case-insensitively.
        target: The finding to explain in every image (a classifier label).
        all_positive: Instead of ``target``: one job per finding labelled 1 (certain positives only)
            per image; needs label columns.
        split: Keep rows of this ``split`` (``labels.csv`` datasets).
        limit: Keep the first ``limit`` jobs.
        exclude: A folder to skip when scanning a plain folder (the output folder).

    Returns:
        ``(jobs, kind)`` with ``kind`` one of ``"labels.csv"``, ``"chexpert"``, ``"folder"``.

    Raises:
        DataError: The dataset is missing or malformed, or has no label column for ``all_positive``.
        ConfigError: Neither or both of ``target`` and ``all_positive``.
    """
    from ..data.readers import CHEXPERT_FINDINGS, CheXpertDataset, FolderDataset

    if (target is None) == (not all_positive):
        raise ConfigError("give either a target (--target NAME) or all_positive (--all-positive)")
    data = Path(data)
    if not data.exists():
        raise DataError(f"{data}: dataset not found; expected a labels.csv, a CheXpert CSV or a folder of images")
    csv_path: Path | None = None
    if data.is_file():
        csv_path = data
    elif (data / "labels.csv").is_file():
        csv_path = data / "labels.csv"
    elif (data / "valid.csv").is_file() and "Path" in _csv_header(data / "valid.csv"):
        csv_path = data / "valid.csv"

    paths: list[Path]
    values: list[dict[str, float]] = []  # classifier label -> 0/1/nan, per image
    if csv_path is None:
        kind = "folder"
        if all_positive:
            raise DataError(f"{data}: a plain folder of images has no labels; --all-positive needs a "
                            "labels.csv or a CheXpert CSV (use --target NAME)")
        ex = Path(exclude).resolve() if exclude is not None else None
        paths = sorted(p for p in data.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
                       and not any(part.startswith(".") for part in p.relative_to(data).parts)
                       and (ex is None or ex not in p.resolve().parents))
        if not paths:
            raise DataError(f"{data}: no images found (looked for {', '.join(sorted(IMAGE_SUFFIXES))})")
        root = data
    else:
        header = _csv_header(csv_path)
        root = csv_path.parent
        if "Path" in header and any(f in header for f in CHEXPERT_FINDINGS):
            kind = "chexpert"
            matched = _match_labels(labels, [f for f in CHEXPERT_FINDINGS if f in header])
            ds = CheXpertDataset(root, csv_path.name, labels=list(matched.values()) or None,
                                 uncertainty="zeros", size=None, check_files=False)
        else:
            kind = "labels.csv"
            cols = [c for c in header if c not in ("path", "split", "patient_id")]
            matched = _match_labels(labels, cols)
            if matched:
                ds = FolderDataset(root, csv_path.name, labels=list(matched.values()), split=split,
                                   size=None, check_files=False)
            else:
                ds = None
        if all_positive and not matched:
            raise DataError(f"{csv_path}: no column matches the classifier's labels "
                            f"({', '.join(labels)}); --all-positive needs them (use --target NAME)")
        if ds is None:
            paths = [root / p for p in _plain_rows(csv_path, split)]
            if not paths:
                raise DataError(f"{csv_path}: no rows" + (f" with split {split!r}" if split else ""))
        else:
            paths = list(ds.paths)
            col_index = {c: i for i, c in enumerate(ds.labels)}
            tg = ds.targets
            values = [{lab: float(tg[i, col_index[col]]) for lab, col in matched.items()}
                      for i in range(len(paths))]
    ids = _image_ids(paths, root)
    paths = [Path(os.path.abspath(p)) for p in paths]  # workers may run in another folder
    jobs: list[Job] = []
    for i, (p, base) in enumerate(zip(paths, ids)):
        vals = values[i] if values else {}
        if all_positive:
            for lab in labels:
                if vals.get(lab) == 1.0:
                    jobs.append(Job(len(jobs), f"{base}__{_slug(lab)}", str(p), lab, 1.0))
        else:
            v = vals.get(target)
            jobs.append(Job(len(jobs), base, str(p), str(target),
                            None if v is None or math.isnan(v) else v))
        if limit is not None and len(jobs) >= limit:
            break
    return jobs[:limit] if limit is not None else jobs, kind


# --------------------------------------------------------------------------------------------------
# explainer spec and config hash
# --------------------------------------------------------------------------------------------------


@dataclass
class ExplainerSpec:
    """What an engine needs to build the same :class:`~xcf.Explainer` in another process.

    Components and the method are registered names (or picklable instances); ``config`` is an
    :class:`~xcf.ExplainConfig` as a dict.
    """

    method: Any = None
    pack: Any = None
    classifier: Any = None
    latent: Any = None
    saliency: Any = None
    locality: Any = "masked-l2"
    config: dict[str, Any] = field(default_factory=dict)

    def build(self, **overrides: Any) -> Explainer:
        """The explainer, with optional config overrides (e.g. ``device``)."""
        from ..explainer import Explainer

        return Explainer(pack=self.pack, classifier=self.classifier, latent=self.latent,
                         saliency=self.saliency, locality=self.locality, method=self.method,
                         config={**self.config, **overrides})


def _weights(components: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for kind, info in sorted((components or {}).items()):
        w = info.get("weights") if isinstance(info, dict) else None
        out[kind] = (w.get("sha256") if isinstance(w, dict) else None) or (
            info.get("class") if isinstance(info, dict) else None)
    return out


def config_hash(config: dict[str, Any], components: dict[str, Any],
                provenance_components: dict[str, Any] | None = None) -> str:
    """A short hash of what determines an explanation: the search config (minus device, batch
    size and other speed-only settings), the component names and the weights' sha256.

    Args:
        config: :meth:`xcf.ExplainConfig.model_dump` with the method's
            :meth:`~xcf.methods.Method.settings` (or a report's ``config``).
        components: ``Explainer.components()`` (or a report's ``components``).
        provenance_components: ``Explainer.provenance()["components"]`` (or the report's).
    """
    cfg = {k: v for k, v in (config or {}).items() if k not in _HASH_EXCLUDED}
    payload = {"config": cfg, "components": components or {},
               "weights": _weights(provenance_components or {})}
    text = json.dumps(json.loads(json.dumps(payload, default=str)), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _explainer_hash(explainer: Explainer) -> str:
    return config_hash({**explainer.config.model_dump(), **explainer.method.settings()},
                       explainer.components(),
                       explainer.provenance()["components"])


def _report_hash(report: dict[str, Any]) -> str:
    return config_hash(report.get("config") or {}, report.get("components") or {},
                       (report.get("provenance") or {}).get("components") or {})


# --------------------------------------------------------------------------------------------------
# rows
# --------------------------------------------------------------------------------------------------


def _num(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _row(job: Job, **values: Any) -> dict[str, Any]:
    row: dict[str, Any] = dict.fromkeys(RESULT_COLUMNS)
    row.update(id=job.id, path=job.path, target=job.target, label=job.label, error="")
    row.update(values)
    row["_index"] = job.index
    return row


def _row_from_report(job: Job, rep: dict[str, Any]) -> dict[str, Any]:
    m = rep.get("metrics") or {}
    return _row(job, p_input=_num(rep.get("p_input")),
                p_reconstruction=_num(rep.get("p_reconstruction")),
                p_counterfactual=_num(rep.get("p_counterfactual")),
                validity=_num(m.get("validity")), target_drop=_num(m.get("target_drop")),
                share_in_mask_l1=_num(m.get("share_in_mask_l1")), steps=rep.get("steps"),
                seconds=_num(rep.get("seconds")), status=rep.get("status") or "ran-all-steps")


def _row_from_cf(job: Job, cf: Counterfactual) -> dict[str, Any]:
    return _row_from_report(job, cf.to_dict())


def _error_row(job: Job, exc: BaseException) -> dict[str, Any]:
    msg = " ".join(str(exc).split()) or type(exc).__name__
    return _row(job, status="error", error=msg)


def _completed_row(job: Job, folder: Path, chash: str, need_gif: bool) -> dict[str, Any] | None:
    from ..gif import GIF_NAME
    from ..result import REPORT_FILES

    if not all((folder / f).is_file() for f in REPORT_FILES):
        return None
    if need_gif and not (folder / GIF_NAME).is_file():
        return None
    try:
        rep = json.loads((folder / "report.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(rep, dict) or rep.get("target") != job.target:
        return None
    try:
        if _report_hash(rep) != chash:
            return None
    except (TypeError, ValueError, AttributeError):
        return None
    return _row_from_report(job, rep)


# --------------------------------------------------------------------------------------------------
# one batch (shared by the engines)
# --------------------------------------------------------------------------------------------------


def load_batch(explainer: Explainer, jobs: Sequence[Job]
               ) -> tuple[list[Job], torch.Tensor | None, list[dict[str, Any]]]:
    """Load a batch's images; unreadable ones become error rows.

    Returns:
        ``(loaded jobs, images (B, 1, S, S) or None, error rows)``.
    """
    good, xs, errors = [], [], []
    for job in jobs:
        try:
            xs.append(explainer.load(job.path))
            explainer.target_index(job.target)
            good.append(job)
        except XcfError as exc:
            logger.warning("%s: skipped: %s", job.path, exc)
            errors.append(_error_row(job, exc))
    return good, (torch.cat(xs) if xs else None), errors


def _thumb(cf: Counterfactual, path: Path, side: int = 112) -> None:
    """Input | counterfactual | the optimizer's change ``counterfactual - reconstruction`` (red
    brighter, blue darker, symmetric scale), side by side."""
    import numpy as np
    from matplotlib import colormaps
    from PIL import Image

    def grey(t: torch.Tensor) -> Image.Image:
        a = (t.detach().float().clamp(0, 1)[0].numpy() * 255).round().astype(np.uint8)
        return Image.fromarray(a, "L").convert("RGB").resize((side, side), Image.Resampling.BILINEAR)

    d = (cf.counterfactual - cf.reconstruction).float()[0].numpy()
    lim = float(np.abs(d).max()) or 1e-6
    rgb = (colormaps["RdBu_r"]((d / lim + 1) / 2)[..., :3] * 255).round().astype(np.uint8)
    diff = Image.fromarray(rgb, "RGB").resize((side, side), Image.Resampling.BILINEAR)
    canvas = Image.new("RGB", (3 * side + 4, side), (255, 255, 255))
    for i, im in enumerate((grey(cf.input), grey(cf.counterfactual), diff)):
        canvas.paste(im, (i * (side + 2), 0))
    canvas.save(path, format="PNG")


def save_case(cf: Counterfactual, folder: Path, frames: Sequence[Any] | None = None) -> None:
    """Write a case folder atomically: :meth:`~xcf.Counterfactual.save`'s files, ``thumb.png`` and
    (with ``frames``) ``optimization.gif``."""
    from ..gif import GIF_NAME, write_gif

    with atomic_dir(folder) as tmp:
        cf.save(tmp)
        _thumb(cf, tmp / THUMB_NAME)
        if frames:
            write_gif(frames, tmp / GIF_NAME)


def compute_batch(explainer: Explainer, jobs: Sequence[Job], x: torch.Tensor, *,
                  gif_frames: int | None = None
                  ) -> tuple[list[tuple[Job, Counterfactual, list[Any] | None]], list[dict[str, Any]]]:
    """Explain loaded images (no writing).

    A batch that fails with an :class:`~xcf.errors.XcfError` is retried one image at a time so that
    only the failing images become error rows.

    Returns:
        ``([(job, counterfactual, gif frames or None)], error rows)``.
    """
    t = torch.tensor([explainer.target_index(j.target) for j in jobs], dtype=torch.long)
    try:
        if gif_frames:
            from ..gif import explain_with_paths

            cfs, paths = explain_with_paths(explainer, x, t, sources=[j.path for j in jobs],
                                            frames=gif_frames)
        else:
            cfs = explainer.explain_tensor(x, t, sources=[j.path for j in jobs])
            paths = [None] * len(cfs)
    except XcfError as exc:
        if len(jobs) == 1:
            logger.warning("%s: failed: %s", jobs[0].path, exc)
            return [], [_error_row(jobs[0], exc)]
        items, errors = [], []
        for i, job in enumerate(jobs):
            it, er = compute_batch(explainer, [job], x[i:i + 1], gif_frames=gif_frames)
            items += it
            errors += er
        return items, errors
    return list(zip(jobs, cfs, paths)), []


def save_batch(out: str | os.PathLike, items: Sequence[tuple[Job, Counterfactual, list[Any] | None]]
               ) -> list[dict[str, Any]]:
    """Write the case folders of :func:`compute_batch`'s results; return their rows."""
    rows = []
    for job, cf, frames in items:
        save_case(cf, Path(out) / "cases" / job.id, frames)
        rows.append(_row_from_cf(job, cf))
    return rows


def explain_loaded(explainer: Explainer, jobs: Sequence[Job], x: torch.Tensor, out: Path, *,
                   gif_frames: int | None = None) -> list[dict[str, Any]]:
    """Explain loaded images, write their case folders, return their rows (errors included)."""
    items, errors = compute_batch(explainer, jobs, x, gif_frames=gif_frames)
    return errors + save_batch(out, items)


def process_batch(explainer: Explainer, jobs: Sequence[Job], out: str | os.PathLike, *,
                  gif_frames: int | None = None) -> list[dict[str, Any]]:
    """Load, explain and write one batch of jobs; one row per job (errors included)."""
    good, x, errors = load_batch(explainer, jobs)
    rows = errors
    if good and x is not None:
        rows += explain_loaded(explainer, good, x, Path(out), gif_frames=gif_frames)
    return rows


# --------------------------------------------------------------------------------------------------
# the run
# --------------------------------------------------------------------------------------------------


@dataclass
class DatasetRun:
    """What :func:`explain_dataset` did.

    Attributes:
        out: The output folder.
        rows: ``results.csv``'s rows, in job order.
        n_jobs: Jobs in the run; ``n_resumed`` were complete already, ``n_explained`` were computed
            now, ``n_errors`` failed (now).
        seconds: Wall time of the engine (startup included).
        images_per_second: ``n_explained / seconds``.
        engine: ``local`` or ``ray``.
        first_batch_seconds: Time until the first rows came back (engine startup, model loading,
            first batch).
    """

    out: Path
    rows: list[dict[str, Any]]
    n_jobs: int
    n_resumed: int
    n_explained: int
    n_errors: int
    seconds: float
    images_per_second: float
    engine: str
    first_batch_seconds: float | None = None


def _clean_stale(cases: Path) -> None:
    """Remove temporary folders a killed run left behind (never complete cases)."""
    if not cases.is_dir():
        return
    for p in cases.iterdir():
        if p.name.startswith(".") and (p.name.endswith(".tmp") or ".old-" in p.name) and p.is_dir():
            shutil.rmtree(p, ignore_errors=True)


def _write_results(out: Path, rows_by_index: dict[int, dict[str, Any]]) -> list[dict[str, Any]]:
    from ..report import write_csv

    rows = [{k: v for k, v in rows_by_index[i].items() if k != "_index"} for i in sorted(rows_by_index)]
    write_csv(rows, out / "results.csv", RESULT_COLUMNS)
    return rows


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _write_json(path: Path, data: dict[str, Any]) -> None:
    with atomic_file(path, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=2, default=str)
        fh.write("\n")


def explain_dataset(data: str | os.PathLike, out: str | os.PathLike, *, target: str | None = None,
                    all_positive: bool = False, pack: Any = None, classifier: Any = None,
                    latent: Any = None, saliency: Any = None, locality: Any = "masked-l2",
                    method: Any = None, config: Any = None, engine: str = "local", address: str | None = None,
                    workers: int | None = None, limit: int | None = None, split: str | None = None,
                    gif: bool = False, gif_frames: int = 20, report: bool = True,
                    progress: bool = True, device: str | None = None,
                    on_batch: Callable[[list[dict[str, Any]]], None] | None = None,
                    **overrides: Any) -> DatasetRun:
    """Explain every image of a dataset; resumable, with bad images isolated.

    Args:
        data: A ``labels.csv`` (or a folder holding one), a CheXpert CSV, or a folder of images
            (see :func:`read_jobs`).
        out: Output folder (see the module docstring for the layout).
        target: Finding to explain in every image (label name, case-insensitive, or index).
        all_positive: Instead of ``target``: one explanation per positive finding per image.
        pack, classifier, latent, saliency, locality: As for :class:`xcf.Explainer` (names, or
            picklable instances for the ray engine).
        method: A registered method name or an :class:`xcf.methods.Method` (default: the
            default method).
        config: An :class:`xcf.ExplainConfig`, dict or method name; ``**overrides`` set fields
            (e.g. ``steps=50``, ``batch_size=8``).
        engine: ``"local"`` or ``"ray"``.
        address: Ray cluster address (``"auto"``, ``"ray://head:10001"``); ``None`` starts a local
            Ray instance.
        workers: Ray actors (default: one per GPU, else 2); ignored by ``local``.
        limit: Explain only the first ``limit`` jobs.
        split: Keep rows of this ``split`` (``labels.csv`` datasets).
        gif: Also write each case's optimization path as ``optimization.gif``.
        gif_frames: Path frames per GIF.
        report: Write ``index.html`` at the end.
        progress: Show a progress bar (tqdm, stderr) with rate and ETA.
        device: ``cpu``, ``cuda``, ``mps`` or ``auto``; default ``auto`` (the GPU when present)
            unless ``config`` is an :class:`~xcf.ExplainConfig` that sets one.
        on_batch: Called with each batch's new rows (after they are recorded).

    Returns:
        A :class:`DatasetRun`.

    Raises:
        XcfError: Bad dataset, unknown target, missing weights, unknown engine ... (before any work).
        KeyboardInterrupt: Re-raised after ``results.csv`` is written; completed cases are kept.
    """
    from ..config import ExplainConfig
    from ..engines import get_engine
    from ..explainer import _as_config

    run_engine = get_engine(engine)
    out = Path(out)
    if device is not None:
        overrides["device"] = device
    elif not isinstance(config, ExplainConfig):
        overrides.setdefault("device", "auto")
    cfg = _as_config(config, overrides)
    spec = ExplainerSpec(method=method, pack=pack, classifier=classifier, latent=latent,
                         saliency=saliency, locality=locality, config=cfg.model_dump(exclude_unset=True))
    # the driver's explainer: labels and config hash; it runs the work for the local engine
    explainer = spec.build() if engine == "local" else spec.build(device="cpu")
    if target is not None:
        target = explainer.labels[explainer.target_index(target)]
    jobs, kind = read_jobs(data, explainer.labels, target=target, all_positive=all_positive,
                           split=split, limit=limit, exclude=out)
    chash = _explainer_hash(explainer)
    cases = out / "cases"
    _clean_stale(cases)
    rows_by_index: dict[int, dict[str, Any]] = {}
    todo: list[Job] = []
    for job in jobs:
        row = _completed_row(job, cases / job.id, chash, gif)
        if row is None:
            todo.append(job)
        else:
            rows_by_index[job.index] = row
    n_resumed = len(rows_by_index)
    logger.info("%d jobs from %s (%s): %d already complete, %d to explain", len(jobs), data, kind,
                n_resumed, len(todo))
    out.mkdir(parents=True, exist_ok=True)
    previous = _read_json(out / "run.json")
    history = previous.get("history", []) if isinstance(previous, dict) else []
    meta = {"data": str(data), "data_kind": kind, "split": split, "target": target,
            "all_positive": all_positive, "engine": engine, "address": address, "workers": workers,
            "limit": limit, "config": cfg.model_dump(), "config_hash": chash,
            "components": explainer.components(), "provenance": explainer.provenance(),
            "n_jobs": len(jobs), "n_resumed": n_resumed, "gif": gif, "history": history}
    _write_json(out / "run.json", meta)
    _write_results(out, rows_by_index)

    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(jobs), initial=n_resumed, unit="img", desc=f"explain ({engine})",
                   dynamic_ncols=True, smoothing=0.1)
    state: dict[str, Any] = {"new": 0, "errors": 0, "last_write": time.monotonic(), "first": None}
    t0 = time.perf_counter()

    def on_rows(rows: list[dict[str, Any]]) -> None:
        if state["first"] is None:
            state["first"] = (time.perf_counter() - t0, len(rows))
        for r in rows:
            rows_by_index[r["_index"]] = r
            state["new"] += 1
            state["errors"] += r.get("status") == "error"
        if bar is not None:
            bar.update(len(rows))
            if state["errors"]:
                bar.set_postfix(errors=state["errors"], refresh=False)
        if time.monotonic() - state["last_write"] > 5:
            _write_results(out, rows_by_index)
            state["last_write"] = time.monotonic()
        if on_batch is not None:
            on_batch(rows)

    interrupted = False
    try:
        if todo:
            # "auto" follows the device that explains: this process's, or (ray) the actors', whose
            # device this driver-side explainer (built on the CPU) does not know: 16 there
            bs = explainer.batch_size if engine == "local" or cfg.batch_size != "auto" else 16
            run_engine(todo, out, spec=spec, explainer=explainer, batch_size=bs,
                       workers=workers, address=address, gif_frames=gif_frames if gif else None,
                       on_rows=on_rows)
    except KeyboardInterrupt:
        interrupted = True
        raise
    finally:
        seconds = time.perf_counter() - t0
        if bar is not None:
            bar.close()
        rows = _write_results(out, rows_by_index)
        rate = state["new"] / seconds if seconds > 0 and state["new"] else 0.0
        meta.update(seconds=round(seconds, 3), n_explained=state["new"], n_errors=state["errors"],
                    images_per_second=round(rate, 4),
                    first_batch_seconds=None if state["first"] is None else round(state["first"][0], 3),
                    interrupted=interrupted,
                    finished=time.strftime("%Y-%m-%dT%H:%M:%S"))
        meta["history"] = history + [{k: meta[k] for k in (
            "engine", "workers", "n_resumed", "n_explained", "n_errors", "seconds", "images_per_second",
            "first_batch_seconds", "interrupted", "finished")}]
        with contextlib.suppress(OSError):
            _write_json(out / "run.json", meta)
    if report:
        from ..html_report import build_report

        build_report(out)
    return DatasetRun(out=out, rows=rows, n_jobs=len(jobs), n_resumed=n_resumed,
                      n_explained=state["new"], n_errors=state["errors"], seconds=seconds,
                      images_per_second=rate, engine=engine,
                      first_batch_seconds=meta["first_batch_seconds"])


# --------------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------------


def _add_parser(sub) -> None:
    from ..commands import add_component_options as _add_component_options

    p = sub.add_parser(
        "explain-dataset", help="explain every image of a dataset (resumable; local or Ray)",
        description="Explain every image of a dataset: one result folder per image under OUT/cases, "
                    "results.csv, run.json and index.html. Run the same command again to resume.")
    p.add_argument("--data", required=True,
                   help="labels.csv (or its folder), a CheXpert CSV, or a folder of images")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--target", help="finding to explain in every image (label name or index)")
    g.add_argument("--all-positive", action="store_true",
                   help="one explanation per positive finding per image (needs labels)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--split", help="keep rows of this split (labels.csv with a split column)")
    p.add_argument("--limit", type=int, help="explain only the first N jobs")
    p.add_argument("--engine", choices=["local", "ray"], default="local",
                   help="local (default; in-process, GPU if present) or ray (pip install 'xcf[ray]')")
    p.add_argument("--address", help="Ray cluster address (default: start a local Ray instance)")
    p.add_argument("--workers", type=int, help="Ray actors (default: one per GPU, else 2)")
    p.add_argument("--gif", action="store_true", help="also write each case's optimization.gif")
    p.add_argument("--gif-frames", type=int, default=20, help="frames per GIF (default 20)")
    p.add_argument("--no-report", action="store_true", help="do not write index.html")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    _add_component_options(p)
    for action in p._actions:  # this command's device default differs from `xcf explain`'s
        if "--device" in action.option_strings:
            action.help = "cpu, cuda, cuda:N, mps or auto (default auto: the GPU when present)"
    p.set_defaults(func=_run_cli)


def _run_cli(args) -> int:
    from ..commands import config_overrides as _config_overrides

    if args.limit is not None and args.limit < 1:
        raise ConfigError(f"--limit must be at least 1, got {args.limit}")
    if args.workers is not None and args.workers < 1:
        raise ConfigError(f"--workers must be at least 1, got {args.workers}")
    overrides = _config_overrides(args)
    device = overrides.pop("device", None)
    res = explain_dataset(args.data, args.out, target=args.target, all_positive=args.all_positive,
                          pack=args.pack, classifier=args.classifier, latent=args.latent,
                          saliency=args.saliency, locality=args.locality, method=args.method,
                          engine=args.engine, address=args.address, workers=args.workers,
                          limit=args.limit, split=args.split, gif=args.gif,
                          gif_frames=args.gif_frames, report=not args.no_report,
                          progress=not args.no_progress, device=device, **overrides)
    valid = sum(1 for r in res.rows if r.get("validity") == 1.0)
    done = sum(1 for r in res.rows if r.get("status") != "error")
    first = ("" if res.first_batch_seconds is None else
             f"; first results after {res.first_batch_seconds:.1f} s")
    print(f"{res.n_jobs} jobs: {res.n_resumed} already complete, {res.n_explained} explained now "
          f"({res.n_errors} errors) in {res.seconds:.1f} s = {res.images_per_second:.2f} images/s "
          f"[{res.engine}]{first}")
    print(f"valid counterfactuals: {valid}/{done}; results: {res.out / 'results.csv'}"
          + ("" if args.no_report else f"; report: {res.out / 'index.html'}"))
    return 0


def _register_cli() -> None:
    from ..commands import COMMANDS

    COMMANDS["explain-dataset"] = _add_parser


_register_cli()
