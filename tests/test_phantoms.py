"""Tests of the synthetic chest films (xcf.data.phantoms): determinism, shapes and ranges, labels,
pixel-exact masks and counterfactuals, cardiothoracic ratios, and the dataset wrapper."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from xcf.data.phantoms import (
    FINDINGS,
    PhantomCase,
    PhantomDataset,
    generate_case,
    render_grid,
)
from xcf.errors import UnknownLabelError

SIZE = 224
seeds = st.integers(min_value=0, max_value=2**40)
finding_sets = st.sets(st.sampled_from(FINDINGS))


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and bool(torch.equal(a, b))


def test_findings_order() -> None:
    assert FINDINGS == (
        "Cardiomegaly",
        "Pleural Effusion",
        "Consolidation",
        "Nodule",
        "Pneumothorax",
    )


def test_same_seed_gives_identical_tensors() -> None:
    a, b = generate_case(11, None, p_finding=0.6), generate_case(11, None, p_finding=0.6)
    for name in ("image", "healthy", "labels", "masks"):
        assert _same(getattr(a, name), getattr(b, name)), name
    assert a.anatomy == b.anatomy
    for f in a.findings:
        assert _same(a.counterfactual(f), b.counterfactual(f))


def test_different_seeds_differ() -> None:
    a, b = generate_case(1, []), generate_case(2, [])
    assert not torch.equal(a.image, b.image)
    assert a.anatomy["ctr"] != b.anatomy["ctr"]


def test_anatomy_does_not_depend_on_the_findings_asked() -> None:
    """Separate streams: the healthy film of a seed is the same whatever findings are drawn."""
    a, b = generate_case(5, []), generate_case(5, list(FINDINGS))
    assert _same(a.healthy, b.healthy)
    assert _same(a.image, a.healthy)


@pytest.mark.parametrize("size", [SIZE, 96])
def test_shapes_dtypes_and_ranges(size: int) -> None:
    c = generate_case(3, list(FINDINGS), size=size)
    k = len(FINDINGS)
    assert c.image.shape == c.healthy.shape == (1, size, size)
    assert c.image.dtype == c.healthy.dtype == torch.float32
    assert c.labels.shape == (k,) and c.labels.dtype == torch.float32
    assert c.masks.shape == (k, 1, size, size) and c.masks.dtype == torch.bool
    assert c.lung_mask is not None and c.lung_mask.shape == (1, size, size)
    for t in (c.image, c.healthy, *(c.counterfactual(f) for f in FINDINGS)):
        assert torch.isfinite(t).all()
        assert float(t.min()) >= 0.0 and float(t.max()) <= 1.0
    assert c.seed == 3


def test_film_looks_like_a_chest_film() -> None:
    """Dark lungs, bright mediastinum/heart, dark outside the body corners (coarse sanity)."""
    c = generate_case(21, [])
    img, lungs = c.image[0], c.lung_mask[0]
    x0, y0, x1, y1 = c.anatomy["heart_box"]
    heart = img[y0:y1, x0:x1]
    assert float(img[lungs].median()) < float(heart.mean()) - 0.15
    assert (
        float(img[:6, :6].mean()) < 0.2 and float(img[:6, -6:].mean()) < 0.2
    )  # air above shoulders
    lung_boxes = (c.anatomy["right_lung_box"], c.anatomy["left_lung_box"])
    assert lung_boxes[0][2] <= lung_boxes[1][2]  # patient right lung on the image left
    assert 0.38 < c.anatomy["ctr"] < 0.5


@settings(max_examples=30, deadline=None)
@given(seed=seeds, present=finding_sets)
def test_masks_and_counterfactuals_are_pixel_exact(seed: int, present: set[str]) -> None:
    c = generate_case(seed, present)
    lungs = c.lung_mask[0]
    for k, f in enumerate(FINDINGS):
        m = c.masks[k, 0]
        cf = c.counterfactual(f)
        assert c.labels[k].item() == (1.0 if f in present else 0.0)
        if f not in present:
            assert not m.any()
            assert _same(cf, c.image)
            continue
        assert m.any(), f
        changed = (c.image != cf)[0]
        assert torch.equal(changed, m), f"{f}: image != counterfactual differs from the mask"
        if f in ("Pleural Effusion", "Consolidation", "Pneumothorax", "Nodule"):
            assert not (m & ~lungs).any(), f"{f} mask leaves the lung fields"
    # removing every finding, one after the other, gives the healthy film
    assert _same(c.healthy, generate_case(seed, []).image)
    if not present:
        assert _same(c.image, c.healthy)


@settings(max_examples=10, deadline=None)
@given(seed=seeds)
def test_overlapping_findings_stay_exact(seed: int) -> None:
    """All five at once (effusion, consolidation and pneumothorax often overlap)."""
    c = generate_case(seed, list(FINDINGS))
    assert c.labels.tolist() == [1.0] * len(FINDINGS)
    for k, f in enumerate(FINDINGS):
        assert torch.equal((c.image != c.counterfactual(f))[0], c.masks[k, 0]), f


def test_healthy_equals_counterfactual_of_all_findings() -> None:
    c = generate_case(8, list(FINDINGS))
    assert not _same(c.image, c.healthy)
    assert _same(c.healthy, generate_case(8, []).image)
    # with a single finding, its counterfactual is the healthy film
    for f in FINDINGS:
        single = generate_case(8, [f])
        assert _same(single.counterfactual(f), single.healthy), f


@settings(max_examples=12, deadline=None)
@given(seed=seeds)
def test_cardiothoracic_ratio(seed: int) -> None:
    normal, big = generate_case(seed, []), generate_case(seed, ["Cardiomegaly"])
    assert 0.36 < normal.anatomy["ctr"] < 0.5
    assert 0.5 < big.anatomy["ctr"] < 0.75
    assert big.anatomy["ctr_normal"] == normal.anatomy["ctr"]
    # the mask is the added heart area: outside the normal heart, inside the enlarged one
    k = FINDINGS.index("Cardiomegaly")
    added = big.masks[k, 0]
    assert added.sum() > 50
    assert float((big.image - big.healthy)[0][added].min()) > 0  # brighter where it grew


def test_findings_are_visible() -> None:
    """Each finding changes its region by a clearly visible amount on average."""
    for k, f in enumerate(FINDINGS):
        diffs = []
        for seed in range(4):
            c = generate_case(100 + seed, [f])
            d = (c.image - c.healthy)[0][c.masks[k, 0]].abs()
            diffs.append(float(d.mean()))
        assert np.median(diffs) > 0.03, (f, diffs)


def test_nodule_size_and_pneumothorax_darkens() -> None:
    for seed in range(5):
        n = generate_case(seed, ["Nodule"])
        area = int(n.masks[FINDINGS.index("Nodule")].sum())
        d = n.anatomy["nodule"]["diameter_px"]
        assert 6.5 <= d <= 18.5
        assert 0.3 * np.pi * (d / 2) ** 2 <= area <= 1.6 * np.pi * (d / 2) ** 2
        p = generate_case(seed, ["Pneumothorax"])
        m = p.masks[FINDINGS.index("Pneumothorax"), 0]
        assert float((p.image - p.healthy)[0][m].mean()) < 0  # darker beyond the pleural line


def test_finding_names_and_sampling() -> None:
    c = generate_case(4, ["nodule", "PNEUMOTHORAX"])
    assert c.findings == ("Nodule", "Pneumothorax")
    assert generate_case(4, "Nodule").findings == ("Nodule",)
    assert _same(generate_case(4, "Nodule").image, generate_case(4, [3]).image)
    with pytest.raises(UnknownLabelError, match="valid"):
        generate_case(4, ["Atelectasis"])
    with pytest.raises(UnknownLabelError):
        c.counterfactual("Edema")
    assert generate_case(4, None, p_finding=0.0).labels.sum() == 0
    assert generate_case(4, None, p_finding=1.0).labels.sum() == len(FINDINGS)
    rates = torch.stack([generate_case(s, None, p_finding=0.3).labels for s in range(60)])
    assert 0.15 < float(rates.mean()) < 0.45


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [({"seed": -1}, ValueError), ({"size": 32}, ValueError), ({"p_finding": 1.5}, ValueError)],
)
def test_bad_arguments(kwargs: dict, error: type[Exception]) -> None:
    args = {"seed": 0, **kwargs}
    seed = args.pop("seed")
    with pytest.raises(error):
        generate_case(seed, None, **args)


def test_dataset() -> None:
    ds = PhantomDataset(5, seed=2)
    assert len(ds) == 5
    assert ds.labels == FINDINGS
    img, labels = ds[3]
    assert img.shape == (1, SIZE, SIZE) and img.dtype == torch.float32
    assert labels.shape == (len(FINDINGS),) and labels.dtype == torch.float32
    case = ds.case(3)
    assert isinstance(case, PhantomCase)
    assert case.seed == 2 * 1_000_003 + 3
    assert _same(case.image, img) and _same(case.labels, labels)
    assert _same(ds[-1][0], ds[4][0])
    with pytest.raises(IndexError):
        ds[5]
    fixed = PhantomDataset(3, seed=0, findings=["Cardiomegaly"], size=96)
    assert fixed[0][1].tolist() == [1.0, 0.0, 0.0, 0.0, 0.0]
    assert fixed[0][0].shape == (1, 96, 96)
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=2)))
    assert batch[0].shape == (2, 1, SIZE, SIZE) and batch[1].shape == (2, len(FINDINGS))


def test_dataset_pickles_for_worker_processes() -> None:
    ds = PhantomDataset(4, seed=1, p_finding=0.5)
    clone = pickle.loads(pickle.dumps(ds))
    assert _same(clone[2][0], ds[2][0])


def test_render_grid(tmp_path: Path) -> None:
    cases = [generate_case(s, ["Nodule"], size=96) for s in range(2)]
    out = render_grid(cases, tmp_path / "sheet.png", panels=("image", "difference", "masks"))
    assert out.exists()
    from PIL import Image

    with Image.open(out) as im:
        assert im.size == (96 * 6, 96)
    with pytest.raises(ValueError):
        render_grid(cases, tmp_path / "x.png", panels=("nope",))
