"""Shared fixtures: tiny analytic components and a clean default registry per test."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from _analytic import BoxSaliency, IdentityLatent, RegionClassifier

import xcf
from xcf import registry as xreg

REPO = Path(__file__).resolve().parents[1]
#: The real-data folder: $XCF_DATA_DIR, else the data folder beside the repository's checkout.
DATA_DIR = Path(os.environ.get("XCF_DATA_DIR") or REPO.parent / "shared" / "data")
PNEUMONIA = DATA_DIR / "kermany-pneumonia-224"


@pytest.fixture(autouse=True)
def _fresh_registry(monkeypatch):
    """Each test sees the installed plugins afresh (and XCF_DISABLE_PLUGINS unset)."""
    monkeypatch.delenv("XCF_DISABLE_PLUGINS", raising=False)
    xreg.reset_registry()
    yield
    xreg.reset_registry()


@pytest.fixture
def one_torch_thread():
    """One torch thread for the test: the CI box has 2 shared cores, and torch's default of 2
    threads spins against the other processes that some tests start."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def analytic():
    """(classifier, latent, saliency) with a known answer."""
    return RegionClassifier(), IdentityLatent(), BoxSaliency()


@pytest.fixture
def kermany_dir() -> Path:
    """The pediatric pneumonia films (``$XCF_DATA_DIR/kermany-pneumonia-224``); the test is skipped,
    with the reason, where they are absent."""
    if not (PNEUMONIA / "labels.csv").is_file():
        pytest.skip(f"real data set not found at {PNEUMONIA} (set XCF_DATA_DIR)")
    return PNEUMONIA


def pytest_report_header(config):
    return f"xcf {xcf.__version__}; shared data: {'present' if PNEUMONIA.exists() else 'absent'}; cpus {os.cpu_count()}"
