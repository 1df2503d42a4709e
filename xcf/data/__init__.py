"""Datasets for training and evaluating xcf components.

Readers of real data live in :mod:`xcf.data.readers` and are re-exported here. Synthetic phantoms
live in :mod:`xcf.data.phantoms`, imported on first use (``xcf.data.phantoms`` or any name it
exports, e.g. ``xcf.data.<name>``), so importing :mod:`xcf.data` stays cheap.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

from .readers import (
    CHEXPERT_FINDINGS,
    CHEXPERT_SEED_FINDINGS,
    UNCERTAINTY_POLICIES,
    CheXpertDataset,
    FolderDataset,
    NIHBoxes,
    patient_split,
)

__all__ = [
    "CHEXPERT_FINDINGS",
    "CHEXPERT_SEED_FINDINGS",
    "UNCERTAINTY_POLICIES",
    "CheXpertDataset",
    "FolderDataset",
    "NIHBoxes",
    "patient_split",
]


def _phantoms() -> ModuleType | None:
    try:
        return importlib.import_module(f"{__name__}.phantoms")
    except ModuleNotFoundError as exc:
        if exc.name == f"{__name__}.phantoms":
            return None
        raise


def __getattr__(name: str) -> Any:
    """Lazy access to :mod:`xcf.data.phantoms` and the names it exports."""
    if name.startswith("__"):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module = _phantoms()
    if module is not None:
        if name == "phantoms":
            return module
        exported = getattr(module, "__all__", ())
        if name in exported:
            return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), "phantoms"})
