"""Dataset readers: a generic folder + ``labels.csv`` reader, CheXpert, NIH ChestX-ray14 boxes.

Every image dataset here is a :class:`torch.utils.data.Dataset` whose items are
``(image, labels)``: ``image`` is a ``torch.float32`` tensor ``(1, H, W)`` in [0, 1] (xcf's canonical
image without the batch dimension; ``H = W = size``) and ``labels`` a ``torch.float32`` tensor
``(K,)`` of 0/1 (NaN for an ignored uncertain CheXpert label). Images are decoded lazily, one per
item, through :func:`xcf.imageio.load_image`, so 8/16-bit PNG, JPEG and DICOM all work. The CSV is
read and checked when the dataset is built: a malformed CSV raises :class:`~xcf.errors.DataError`
whose one-line message starts with ``<csv path>:<line>:`` and says what was expected.
"""

from __future__ import annotations

import csv as _csv
import logging
import math
import os
import re
from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from xcf.errors import ConfigError, DataError, UnknownLabelError
from xcf.imageio import ASPECT_POLICIES, load_image

__all__ = [
    "CHEXPERT_FINDINGS",
    "CHEXPERT_SEED_FINDINGS",
    "UNCERTAINTY_POLICIES",
    "FolderDataset",
    "CheXpertDataset",
    "NIHBoxes",
    "patient_split",
]

logger = logging.getLogger(__name__)

CHEXPERT_FINDINGS: tuple[str, ...] = (
    "No Finding",
    "Enlarged Cardiomediastinum",
    "Cardiomegaly",
    "Lung Opacity",
    "Lung Lesion",
    "Edema",
    "Consolidation",
    "Pneumonia",
    "Atelectasis",
    "Pneumothorax",
    "Pleural Effusion",
    "Pleural Other",
    "Fracture",
    "Support Devices",
)
"""The 14 CheXpert observations, in the column order of ``train.csv``/``valid.csv``."""

CHEXPERT_SEED_FINDINGS: tuple[str, ...] = (
    "Cardiomegaly",
    "Edema",
    "Consolidation",
    "Atelectasis",
    "Pleural Effusion",
)
"""The five competition findings of Irvin et al. (2019), the default labels of :class:`CheXpertDataset`."""

UNCERTAINTY_POLICIES: tuple[str, ...] = ("ones", "zeros", "ignore")
"""How :class:`CheXpertDataset` maps uncertain (-1) labels: to 1 (U-Ones), 0 (U-Zeros) or NaN."""

_RESERVED_COLUMNS = ("split", "patient_id")
_BINARY = {"0": 0.0, "1": 1.0, "0.0": 0.0, "1.0": 1.0}

ImageTransform = Callable[[torch.Tensor], torch.Tensor]


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _data_error(csv_path: Path | str, line: int | None, message: str) -> DataError:
    where = f"{csv_path}:{line}" if line is not None else f"{csv_path}"
    return DataError(_one_line(f"{where}: {message}"))


def _check_image_args(size: int | None, aspect: str) -> None:
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 1):
        raise ConfigError(f"size={size!r} is invalid; accepted: a positive int or None")
    if aspect not in ASPECT_POLICIES:
        raise ConfigError(f"aspect={aspect!r} is invalid; accepted: {', '.join(ASPECT_POLICIES)}")


def _read_csv(csv_path: Path) -> tuple[list[str], list[tuple[int, dict[str, str]]]]:
    """Read a CSV with a header; return its columns and ``(line number, row)`` pairs.

    Raises:
        DataError: Missing/unreadable file, no header, a row with the wrong number of fields.
    """
    if not csv_path.is_file():
        raise _data_error(csv_path, None, "CSV file not found; expected an existing file")
    try:
        with open(csv_path, newline="", encoding="utf-8-sig") as fh:
            reader = _csv.reader(fh)
            header = next(reader, None)
            if header is None or all(not h.strip() for h in header):
                raise _data_error(csv_path, 1, "empty CSV; expected a header line")
            header = [h.strip() for h in header]
            rows: list[tuple[int, dict[str, str]]] = []
            for fields in reader:
                line = reader.line_num
                if not fields or all(not f.strip() for f in fields):
                    continue  # blank line
                if len(fields) != len(header):
                    raise _data_error(
                        csv_path,
                        line,
                        f"{len(fields)} fields; expected {len(header)} as in the header",
                    )
                rows.append((line, dict(zip(header, fields, strict=True))))
    except DataError:
        raise
    except (OSError, UnicodeDecodeError, _csv.Error) as exc:
        raise _data_error(csv_path, None, f"cannot read CSV ({exc}); expected UTF-8 text") from exc
    return header, rows


def _require_columns(csv_path: Path, header: Sequence[str], needed: Sequence[str]) -> None:
    missing = [c for c in needed if c not in header]
    if missing:
        raise _data_error(
            csv_path,
            1,
            f"missing column{'s' if len(missing) > 1 else ''} {', '.join(map(repr, missing))}; "
            f"columns present: {', '.join(header)}",
        )


class _ImageDataset(Dataset):
    """Shared item logic: lazy decoding of ``self._paths`` with ``self._targets`` as labels."""

    labels: tuple[str, ...]
    _paths: tuple[Path, ...]
    _targets: torch.Tensor
    _size: int | None
    _aspect: str
    _transform: ImageTransform | None

    def __len__(self) -> int:
        return len(self._paths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(image (1, H, W) float32 in [0, 1], labels (K,) float32)`` for ``index``.

        Raises:
            IndexError: ``index`` out of range.
            InvalidImageError: The image file cannot be decoded (message names the file).
        """
        index = self._check_index(index)
        image = load_image(self._paths[index], size=self._size, aspect=self._aspect)[0]
        if self._transform is not None:
            image = self._transform(image)
        return image, self._targets[index].clone()

    def _check_index(self, index: int) -> int:
        n = len(self._paths)
        i = int(index)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(f"index {index} out of range for a dataset of {n} images")
        return i

    def path(self, index: int) -> Path:
        """The image file of item ``index``."""
        return self._paths[self._check_index(index)]

    @property
    def paths(self) -> tuple[Path, ...]:
        """Image files, in item order."""
        return self._paths

    @property
    def targets(self) -> torch.Tensor:
        """All labels, ``(N, K)`` float32 (a copy)."""
        return self._targets.clone()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({len(self)} images, labels={list(self.labels)})"


class FolderDataset(_ImageDataset):
    """A folder of images with a ``labels.csv``: one row per image, a path column and 0/1 labels.

    The CSV needs a path column (``path_column``; paths relative to ``root`` or absolute) and one
    column of 0/1 values per label; optional ``split`` and ``patient_id`` columns. Extra columns are
    ignored. This is the layout of ``shared/data/kermany-pneumonia-224`` (``path, split,
    patient_id, normal, pneumonia, pneumonia_bacterial, pneumonia_viral``).

    Args:
        root: The folder; image paths are resolved relative to it.
        csv: The CSV file, relative to ``root`` (or absolute).
        labels: Label columns, in output order. ``None``: every column other than the path,
            ``split`` and ``patient_id`` columns whose values are all 0/1, in CSV order.
        split: Keep only rows whose ``split`` column equals this (needs a ``split`` column).
        path_column: Name of the column with the image paths.
        size: Images are returned as ``(1, size, size)``; ``None`` keeps each file's size.
        aspect: ``"crop"``, ``"pad"`` or ``"stretch"``, see :func:`xcf.imageio.load_image`.
        transform: Applied to each ``(1, H, W)`` image after decoding (e.g. augmentation).
        check_files: Check at construction that every image file exists.

    Raises:
        DataError: Missing folder/CSV, missing column, a label value that is not 0/1, an empty
            path, a referenced file that does not exist, no rows for ``split``. The message names
            the CSV, the line (1 = header) and what is expected.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        csv: str | os.PathLike[str] = "labels.csv",
        *,
        labels: Sequence[str] | None = None,
        split: str | None = None,
        path_column: str = "path",
        size: int | None = 224,
        aspect: str = "crop",
        transform: ImageTransform | None = None,
        check_files: bool = True,
    ) -> None:
        _check_image_args(size, aspect)
        self.root = Path(root)
        if not self.root.is_dir():
            raise _data_error(self.root, None, "dataset folder not found; expected a directory")
        self.csv_path = self.root / csv
        header, rows = _read_csv(self.csv_path)
        _require_columns(self.csv_path, header, [path_column])
        if labels is None:
            labels = self._binary_columns(header, rows, path_column)
            if not labels:
                raise _data_error(
                    self.csv_path,
                    1,
                    "no label column (a column other than path/split/patient_id with only 0/1 "
                    f"values); columns present: {', '.join(header)}",
                )
        elif isinstance(labels, str):
            labels = [labels]
        labels = tuple(labels)
        if not labels:
            raise ConfigError("labels=() is empty; accepted: None or one or more column names")
        _require_columns(self.csv_path, header, labels)
        if split is not None:
            _require_columns(self.csv_path, header, ["split"])
            present = sorted({row["split"].strip() for _, row in rows})
            rows = [(line, row) for line, row in rows if row["split"].strip() == split]
            if not rows:
                raise _data_error(
                    self.csv_path,
                    None,
                    f"no rows with split {split!r}; splits present: {', '.join(present) or 'none'}",
                )

        paths: list[Path] = []
        targets: list[list[float]] = []
        patients: list[str] = []
        for line, row in rows:
            rel = row[path_column].strip()
            if not rel:
                raise _data_error(
                    self.csv_path, line, f"empty {path_column!r}; expected an image path"
                )
            path = self.root / rel
            if check_files and not path.is_file():
                raise _data_error(
                    self.csv_path,
                    line,
                    f"image file {rel!r} not found under {self.root}; expected an existing file "
                    "(paths are relative to the dataset folder)",
                )
            values = []
            for name in labels:
                raw = row[name].strip()
                if raw not in _BINARY:
                    raise _data_error(
                        self.csv_path, line, f"column {name!r} has value {raw!r}; expected 0 or 1"
                    )
                values.append(_BINARY[raw])
            paths.append(path)
            targets.append(values)
            if "patient_id" in header:
                patients.append(row["patient_id"].strip())

        self.labels = labels
        self.split = split
        self._paths = tuple(paths)
        self._targets = torch.tensor(targets, dtype=torch.float32).reshape(len(paths), len(labels))
        self._patient_ids: tuple[str, ...] | None = (
            tuple(patients) if "patient_id" in header else None
        )
        self._size = size
        self._aspect = aspect
        self._transform = transform
        logger.debug("FolderDataset %s: %d images, labels %s", self.csv_path, len(self), labels)

    @staticmethod
    def _binary_columns(
        header: Sequence[str], rows: Sequence[tuple[int, dict[str, str]]], path_column: str
    ) -> list[str]:
        out = []
        for name in header:
            if name in (path_column, *_RESERVED_COLUMNS) or not name:
                continue
            if rows and all(row[name].strip() in _BINARY for _, row in rows):
                out.append(name)
        return out

    @property
    def patient_ids(self) -> tuple[str, ...] | None:
        """Patient id per item, or ``None`` when the CSV has no ``patient_id`` column."""
        return self._patient_ids


class CheXpertDataset(_ImageDataset):
    """CheXpert (v1.0, "small" copy) from its ``train.csv`` or ``valid.csv``.

    Irvin J. et al., "CheXpert: A Large Chest Radiograph Dataset with Uncertainty Labels and Expert
    Comparison", AAAI 2019. The CSV columns are ``Path, Sex, Age, Frontal/Lateral, AP/PA`` and the
    14 findings (:data:`CHEXPERT_FINDINGS`) with values ``1.0`` (positive), ``0.0`` (negative),
    ``-1.0`` (uncertain) or blank (not mentioned, read as 0).

    ``Path`` values start with ``CheXpert-v1.0-small/``: they are resolved relative to the parent
    of ``root`` when ``root`` is named ``CheXpert-v1.0-small``, otherwise relative to ``root``.

    Args:
        root: The dataset folder holding the CSV.
        csv: ``"valid.csv"`` (default) or ``"train.csv"`` (or another file of that format).
        labels: Findings to return, in order; any of :data:`CHEXPERT_FINDINGS`. ``None`` (default):
            the five :data:`CHEXPERT_SEED_FINDINGS`.
        uncertainty: Uncertain (-1) labels become 1 (``"ones"``, U-Ones; default), 0 (``"zeros"``)
            or NaN (``"ignore"``, so a masked loss can skip them).
        frontal_only: Keep only rows whose ``Frontal/Lateral`` is ``Frontal``.
        size: Images are returned as ``(1, size, size)``; ``None`` keeps each file's size.
        aspect: ``"crop"``, ``"pad"`` or ``"stretch"``, see :func:`xcf.imageio.load_image`.
        transform: Applied to each ``(1, H, W)`` image after decoding.
        check_files: Check at construction that every image file exists (one ``stat`` per row).

    Raises:
        DataError: Missing CSV or column, a value other than 1/0/-1/blank, a path without
            ``patientNNNNN``, a missing image file (with ``check_files``).
        ConfigError: An unknown finding or uncertainty policy.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        csv: str | os.PathLike[str] = "valid.csv",
        *,
        labels: Sequence[str] | None = None,
        uncertainty: str = "ones",
        frontal_only: bool = True,
        size: int | None = 224,
        aspect: str = "crop",
        transform: ImageTransform | None = None,
        check_files: bool = True,
    ) -> None:
        _check_image_args(size, aspect)
        if uncertainty not in UNCERTAINTY_POLICIES:
            raise ConfigError(
                f"uncertainty={uncertainty!r} is invalid; accepted: {', '.join(UNCERTAINTY_POLICIES)}"
            )
        if labels is None:
            labels = CHEXPERT_SEED_FINDINGS
        elif isinstance(labels, str):
            labels = [labels]
        labels = tuple(labels)
        unknown = [name for name in labels if name not in CHEXPERT_FINDINGS]
        if unknown or not labels:
            raise ConfigError(
                f"unknown CheXpert finding(s) {', '.join(map(repr, unknown)) or '(none given)'}; "
                f"accepted: {', '.join(CHEXPERT_FINDINGS)}"
            )
        self.root = Path(root)
        self.csv_path = self.root / csv
        base = self.root.parent if self.root.name == "CheXpert-v1.0-small" else self.root
        header, rows = _read_csv(self.csv_path)
        needed = ["Path", *labels] + (["Frontal/Lateral"] if frontal_only else [])
        _require_columns(self.csv_path, header, needed)
        uncertain_value = {"ones": 1.0, "zeros": 0.0, "ignore": math.nan}[uncertainty]
        values_map = {"1": 1.0, "1.0": 1.0, "0": 0.0, "0.0": 0.0, "": 0.0}
        uncertain = {"-1", "-1.0"}

        paths: list[Path] = []
        targets: list[list[float]] = []
        patients: list[str] = []
        for line, row in rows:
            if frontal_only and row["Frontal/Lateral"].strip().lower() != "frontal":
                continue
            rel = row["Path"].strip()
            match = re.search(r"patient\d+", rel)
            if not rel or match is None:
                raise _data_error(
                    self.csv_path,
                    line,
                    f"Path {rel!r} has no patient id; expected "
                    "'CheXpert-v1.0-small/<split>/patientNNNNN/studyN/viewN_<view>.jpg'",
                )
            path = base / rel
            if check_files and not path.is_file():
                raise _data_error(
                    self.csv_path,
                    line,
                    f"image file {rel!r} not found under {base}; expected an existing file",
                )
            values = []
            for name in labels:
                raw = row[name].strip()
                if raw in values_map:
                    values.append(values_map[raw])
                elif raw in uncertain:
                    values.append(uncertain_value)
                else:
                    raise _data_error(
                        self.csv_path,
                        line,
                        f"column {name!r} has value {raw!r}; expected 1.0, 0.0, -1.0 or blank",
                    )
            paths.append(path)
            targets.append(values)
            patients.append(match.group(0))

        self.labels = labels
        self.uncertainty = uncertainty
        self.frontal_only = frontal_only
        self._paths = tuple(paths)
        self._targets = torch.tensor(targets, dtype=torch.float32).reshape(len(paths), len(labels))
        self._patient_ids = tuple(patients)
        self._size = size
        self._aspect = aspect
        self._transform = transform
        logger.debug("CheXpertDataset %s: %d images, labels %s", self.csv_path, len(self), labels)

    @property
    def patient_ids(self) -> tuple[str, ...]:
        """Patient id per item (``"patientNNNNN"``, parsed from ``Path``)."""
        return self._patient_ids


Box = tuple[float, float, float, float]


class NIHBoxes(Mapping[str, list[tuple[str, Box]]]):
    """Bounding boxes of NIH ChestX-ray14 (``BBox_List_2017.csv``), as a mapping and as masks.

    Wang X. et al., "ChestX-ray8: Hospital-scale Chest X-ray Database and Benchmarks on
    Weakly-Supervised Classification and Localization of Common Thorax Diseases", CVPR 2017.

    The CSV's header is ``Image Index,Finding Label,Bbox [x,y,w,h],,,``: the box's ``x, y, w, h``
    (pixels of the original ``image_size x image_size`` image, origin top-left) are columns 3-6 and
    the trailing columns are empty. ``boxes["00013118_008.png"]`` is the list of
    ``(finding, (x, y, w, h))`` of that image.

    Args:
        csv_path: Path to ``BBox_List_2017.csv``.
        image_size: Side of the original images the boxes refer to (1024 for ChestX-ray14).
        size: Default side of :meth:`mask`.

    Raises:
        DataError: Missing file, unexpected header, a row without four finite numbers or with a
            non-positive width/height (message names the line).
    """

    def __init__(
        self, csv_path: str | os.PathLike[str], *, image_size: int = 1024, size: int = 224
    ) -> None:
        _check_image_args(size, "crop")
        if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1:
            raise ConfigError(f"image_size={image_size!r} is invalid; accepted: a positive int")
        self.csv_path = Path(csv_path)
        self.image_size = int(image_size)
        self.size = int(size)
        if not self.csv_path.is_file():
            raise _data_error(
                self.csv_path, None, "CSV file not found; expected BBox_List_2017.csv"
            )
        boxes: dict[str, list[tuple[str, Box]]] = {}
        try:
            with open(self.csv_path, newline="", encoding="utf-8-sig") as fh:
                reader = _csv.reader(fh)
                header = next(reader, None)
                if (
                    header is None
                    or len(header) < 6
                    or header[0].strip() != "Image Index"
                    or header[1].strip() != "Finding Label"
                ):
                    raise _data_error(
                        self.csv_path,
                        1,
                        f"header {','.join(header or [])!r}; expected "
                        "'Image Index,Finding Label,Bbox [x,y,w,h],,,'",
                    )
                for fields in reader:
                    line = reader.line_num
                    if not fields or all(not f.strip() for f in fields):
                        continue
                    boxes.setdefault(fields[0].strip(), []).append(self._parse(fields, line))
        except DataError:
            raise
        except (OSError, UnicodeDecodeError, _csv.Error) as exc:
            raise _data_error(self.csv_path, None, f"cannot read CSV ({exc})") from exc
        self._boxes = boxes

    def _parse(self, fields: list[str], line: int) -> tuple[str, Box]:
        expected = "image index, finding, then x, y, w, h in columns 3-6 (w, h > 0)"
        if len(fields) < 6 or not fields[0].strip() or not fields[1].strip():
            raise _data_error(self.csv_path, line, f"{len(fields)} fields; expected {expected}")
        try:
            x, y, w, h = (float(v) for v in fields[2:6])
        except ValueError as exc:
            raise _data_error(
                self.csv_path, line, f"box {fields[2:6]} is not numeric; expected {expected}"
            ) from exc
        if not all(math.isfinite(v) for v in (x, y, w, h)) or w <= 0 or h <= 0:
            raise _data_error(
                self.csv_path, line, f"box {[x, y, w, h]} is invalid; expected {expected}"
            )
        return fields[1].strip(), (x, y, w, h)

    def __getitem__(self, image_index: str) -> list[tuple[str, Box]]:
        return list(self._boxes[image_index])

    def __iter__(self) -> Iterator[str]:
        return iter(self._boxes)

    def __len__(self) -> int:
        return len(self._boxes)

    @property
    def findings(self) -> tuple[str, ...]:
        """All finding names that have a box, sorted."""
        return tuple(sorted({f for items in self._boxes.values() for f, _ in items}))

    def mask(
        self, image_index: str, finding: str | None = None, size: int | None = None
    ) -> torch.Tensor:
        """Boolean mask of the boxes of one image, scaled to ``size x size``.

        A pixel is inside when its centre lies in a box (scaled by ``size / image_size``); a box
        smaller than one output pixel still marks the pixel holding its centre.

        Args:
            image_index: File name as in the CSV, e.g. ``"00013118_008.png"``.
            finding: Only boxes of this finding (case-insensitive); ``None``: the union of all.
                A finding that has boxes elsewhere but not on this image gives an all-False mask.
            size: Output side; default the ``size`` given at construction.

        Returns:
            ``torch.bool`` tensor ``(1, size, size)``.

        Raises:
            KeyError: ``image_index`` has no box.
            UnknownLabelError: ``finding`` has no box anywhere in the CSV.
        """
        size = self.size if size is None else size
        _check_image_args(size, "crop")
        items = self._boxes[image_index]
        if finding is not None:
            known = {f.lower(): f for f in self.findings}
            if finding.lower() not in known:
                raise UnknownLabelError(
                    f"finding {finding!r} has no box in {self.csv_path}; "
                    f"accepted: {', '.join(self.findings)}"
                )
            items = [it for it in items if it[0].lower() == finding.lower()]
        out = torch.zeros(1, size, size, dtype=torch.bool)
        scale = size / self.image_size
        for _, (x, y, w, h) in items:
            c0, c1 = self._span(x * scale, (x + w) * scale, size)
            r0, r1 = self._span(y * scale, (y + h) * scale, size)
            out[0, r0:r1, c0:c1] = True
        return out

    @staticmethod
    def _span(a: float, b: float, size: int) -> tuple[int, int]:
        """Output pixels ``[i0, i1)`` whose centres ``i + 0.5`` lie in ``[a, b)``; at least one."""
        i0 = math.ceil(a - 0.5)
        i1 = math.ceil(b - 0.5)
        if i1 <= i0:
            i0 = math.floor((a + b) / 2)
            i1 = i0 + 1
        return max(0, min(size, i0)), max(0, min(size, i1))


def patient_split(
    patient_ids: Sequence[Hashable], val_fraction: float, seed: int
) -> tuple[list[int], list[int]]:
    """Split item indices into train and validation so that no patient is in both.

    The patients (not the items) are shuffled with ``numpy.random.default_rng(seed)`` after sorting
    them, and ``round(val_fraction * n_patients)`` of them go to validation (at least one when
    ``val_fraction > 0`` and there are two or more patients; never all of them). Which patients go
    to validation depends only on the set of ids and the seed, not on the item order.

    Args:
        patient_ids: One id per item (e.g. ``dataset.patient_ids``); equal ids are one patient.
        val_fraction: Share of patients for validation, in [0, 1).
        seed: Random seed; the same ids and seed always give the same split.

    Returns:
        ``(train_indices, val_indices)``: sorted lists of item indices, disjoint, covering all.

    Raises:
        ConfigError: ``patient_ids`` is None or has a None entry, or ``val_fraction`` is outside
            [0, 1).
    """
    if patient_ids is None:
        raise ConfigError(
            "patient_ids is None (the dataset has no patient_id column); "
            "accepted: one patient id per item"
        )
    if isinstance(val_fraction, bool) or not 0.0 <= float(val_fraction) < 1.0:
        raise ConfigError(f"val_fraction={val_fraction!r} is invalid; accepted: a number in [0, 1)")
    ids = list(patient_ids)
    if any(pid is None for pid in ids):
        raise ConfigError("patient_ids has a None entry; accepted: one patient id per item")
    unique = sorted(set(ids), key=lambda p: (type(p).__name__, str(p)))
    n = len(unique)
    n_val = round(float(val_fraction) * n)
    if val_fraction > 0 and n >= 2:
        n_val = max(1, n_val)
    n_val = min(n_val, max(n - 1, 0))
    order = np.random.default_rng(seed).permutation(n)
    val_patients = {unique[i] for i in order[:n_val]}
    train_idx = [i for i, pid in enumerate(ids) if pid not in val_patients]
    val_idx = [i for i, pid in enumerate(ids) if pid in val_patients]
    return train_idx, val_idx
