"""Tests of xcf.metrics: hand-made cases with known values, and properties (hypothesis)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from torch import nn

from xcf import metrics as M

PROPS = settings(deadline=None, max_examples=40)


def nan() -> float:
    return float("nan")


def close(actual, expected, **kw) -> None:
    expected = torch.as_tensor(expected, dtype=actual.dtype)
    torch.testing.assert_close(actual, expected, equal_nan=True, **kw)


def rect(shape, rows, cols, b=None) -> torch.Tensor:
    """Bool mask (B, 1, H, W) true on [rows) x [cols) (for sample b only when given)."""
    m = torch.zeros(shape, dtype=torch.bool)
    if b is None:
        m[:, :, rows[0] : rows[1], cols[0] : cols[1]] = True
    else:
        m[b, :, rows[0] : rows[1], cols[0] : cols[1]] = True
    return m


# --------------------------------------------------------------------------------------------
# classifier outputs


def test_validity_threshold_edge():
    p = torch.tensor([[0.5, 0.9], [0.4999, 0.9], [0.9, 0.1], [0.0, 1.0]])
    t = torch.tensor([0, 0, 1, 1])
    assert M.validity(p, t).tolist() == [False, True, True, False]
    assert M.validity(p, t, threshold=0.3).tolist() == [False, False, True, False]
    per_sample = torch.tensor([0.6, 0.4, 0.1, 1.1])
    assert M.validity(p, t, threshold=per_sample).tolist() == [True, False, False, True]
    assert M.validity(p, t).dtype == torch.bool


def test_target_drop_and_reconstruction_shift():
    p_ref = torch.tensor([[0.8, 0.3], [0.2, 0.6]])
    p_cf = torch.tensor([[0.1, 0.35], [0.2, 0.9]])
    t = torch.tensor([0, 1])
    close(M.target_drop(p_ref, p_cf, t), [0.7, -0.3])
    close(M.reconstruction_shift(p_ref, p_cf, t), [0.7, 0.3])
    assert M.target_drop(p_ref, p_cf, t).dtype == torch.float32


def test_off_target_change_known():
    p_ref = torch.tensor([[0.9, 0.5, 0.2], [0.1, 0.1, 0.1]])
    p_cf = torch.tensor([[0.1, 0.6, 0.5], [0.5, 0.1, 0.0]])
    t = torch.tensor([0, 2])
    mean, biggest = M.off_target_change(p_ref, p_cf, t)
    close(mean, [0.2, 0.2])  # (0.1 + 0.3) / 2, (0.4 + 0) / 2
    close(biggest, [0.3, 0.4])


def test_off_target_change_single_finding_is_zero():
    mean, biggest = M.off_target_change(torch.tensor([[0.9], [0.2]]), torch.tensor([[0.1], [0.8]]),
                                        torch.tensor([0, 0]))
    close(mean, [0.0, 0.0])
    close(biggest, [0.0, 0.0])


def test_probability_input_errors():
    p = torch.rand(2, 3)
    with pytest.raises(ValueError, match="targets must be in"):
        M.validity(p, torch.tensor([0, 3]))
    with pytest.raises(ValueError, match="shape"):
        M.validity(p, torch.tensor([0]))
    with pytest.raises(TypeError):
        M.validity(p, torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match="shape"):
        M.target_drop(p, torch.rand(2, 4), torch.tensor([0, 1]))


# --------------------------------------------------------------------------------------------
# proximity and locality


def test_proximity_known():
    x_ref = torch.zeros(2, 1, 4, 4)
    x_cf = x_ref.clone()
    x_cf[0, 0, 0, :] = 1.0  # 4 of 16 pixels change by 1
    close(M.proximity_l1(x_cf, x_ref), [0.25, 0.0])
    close(M.proximity_l2(x_cf, x_ref), [0.5, 0.0])


def test_share_inside_all_inside_and_half():
    shape = (2, 1, 4, 4)
    x_ref = torch.full(shape, 0.5)
    mask = rect(shape, (0, 2), (0, 4))  # 8 pixels
    x_cf = x_ref.clone()
    x_cf[0, 0, 0, :] = 1.0  # 4 changed pixels, all inside
    x_cf[1, 0, 1, 0:2] = 0.0  # 2 inside ...
    x_cf[1, 0, 3, 0:2] = 0.0  # ... and 2 outside
    close(M.share_inside(x_cf, x_ref, mask), [1.0, 0.5])
    close(M.share_inside(x_cf, x_ref, mask, power=2), [1.0, 0.5])


def test_share_l1_vs_squared():
    shape = (1, 1, 2, 2)
    x_ref = torch.zeros(shape)
    x_cf = torch.tensor([[[[0.5, 0.25], [0.25, 0.0]]]])
    mask = rect(shape, (0, 1), (0, 1))  # only the 0.5 change is inside
    close(M.share_inside(x_cf, x_ref, mask, power=1), [0.5])
    close(M.share_inside(x_cf, x_ref, mask, power=2), [0.25 / 0.375])


def test_share_inside_undefined_without_change_and_broadcast_mask():
    x = torch.rand(3, 1, 5, 5)
    x_cf = x.clone()
    x_cf[1] = 1 - x_cf[1]
    mask = torch.ones(1, 1, 5, 5, dtype=torch.bool)  # one mask for the batch
    out = M.share_inside(x_cf, x, mask)
    assert math.isnan(out[0]) and math.isnan(out[2])
    assert out[1] == 1.0


def test_share_inside_rejects_bad_input():
    x = torch.rand(1, 1, 4, 4)
    with pytest.raises(TypeError, match="bool"):
        M.share_inside(x, x, torch.ones(1, 1, 4, 4))
    with pytest.raises(ValueError, match="broadcast"):
        M.share_inside(x, x, torch.ones(1, 1, 3, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="power"):
        M.share_inside(x, x, torch.ones(1, 1, 4, 4, dtype=torch.bool), power=0)
    with pytest.raises(ValueError, match="shape"):
        M.proximity_l1(x, torch.rand(1, 1, 4, 5))
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        M.proximity_l1(x[0], x[0])


def test_mask_area():
    m = rect((2, 1, 4, 4), (0, 2), (0, 2), b=0)
    close(M.mask_area(m), [0.25, 0.0])


def test_dilate_known():
    m = torch.zeros(1, 1, 7, 7, dtype=torch.bool)
    m[0, 0, 3, 3] = True
    assert M.dilate(m, 0).equal(m) and M.dilate(m, 0) is not m
    assert int(M.dilate(m, 1).sum()) == 9
    assert int(M.dilate(m, 2).sum()) == 25
    assert int(M.dilate(m, 1, shape="disk").sum()) == 5
    assert int(M.dilate(m, 2, shape="disk").sum()) == 13
    corner = torch.zeros(1, 1, 5, 5, dtype=torch.bool)
    corner[0, 0, 0, 0] = True
    assert int(M.dilate(corner, 1).sum()) == 4  # the border grows nothing
    assert M.dilate(m, 1).dtype == torch.bool
    with pytest.raises(ValueError):
        M.dilate(m, -1)
    with pytest.raises(ValueError):
        M.dilate(m, 1.5)
    with pytest.raises(ValueError):
        M.dilate(m, 1, shape="diamond")


def test_iou_known_rectangles():
    shape = (3, 1, 8, 8)
    a = rect(shape, (0, 4), (0, 4))
    b = rect(shape, (2, 6), (2, 6))  # overlap 2x2 = 4, union 16 + 16 - 4 = 28
    b[1] = a[1]
    b[2] = False
    b[2, 0, 6:, 6:] = True  # disjoint
    close(M.iou(a, b), [4 / 28, 1.0, 0.0])
    empty = torch.zeros(1, 1, 3, 3, dtype=torch.bool)
    assert math.isnan(M.iou(empty, empty)[0])
    close(M.iou(empty, ~empty), [0.0])


def test_change_iou_rules():
    shape = (1, 1, 4, 4)
    x_ref = torch.zeros(shape)
    x_cf = torch.zeros(shape)
    x_cf[0, 0, 0, 0:2] = 0.9  # a strong change in 2 pixels ...
    x_cf[0, 0, 3, 0:2] = 0.1  # ... and a weak one in 2 more
    gt = rect(shape, (0, 1), (0, 4))  # the first row, 4 pixels
    # area-matched: the 4 largest changes (two strong, two weak) -> 2 of them inside, union 6
    close(M.change_iou(x_cf, x_ref, gt), [2 / 6])
    close(M.change_iou(x_cf, x_ref, gt, threshold=0.5), [2 / 4])
    close(M.change_iou(x_cf, x_ref, gt, threshold=0.05), [2 / 6])
    close(M.change_iou(x_cf, x_ref, gt, quantile=0.8), [2 / 4])  # top 2 of 16 pixels
    gt2 = rect(shape, (0, 1), (0, 2))
    close(M.change_iou(x_cf, x_ref, gt2), [1.0])  # area 2 -> exactly the strong change
    with pytest.raises(ValueError, match="not both"):
        M.change_iou(x_cf, x_ref, gt, quantile=0.5, threshold=0.1)


def test_change_iou_no_change():
    x = torch.rand(2, 1, 4, 4)
    gt = torch.zeros(2, 1, 4, 4, dtype=torch.bool)
    gt[0, 0, 1, 1] = True
    out = M.change_iou(x, x, gt)
    assert out[0] == 0.0 and math.isnan(out[1])
    out_q = M.change_iou(x, x, gt, quantile=0.5)
    assert out_q[0] == 0.0 and math.isnan(out_q[1])


def test_pointing_game_hit_miss_tolerance():
    shape = (4, 1, 6, 6)
    x_ref = torch.zeros(shape)
    x_cf = torch.zeros(shape)
    gt = rect(shape, (0, 2), (0, 2))
    x_cf[0, 0, 1, 1] = 0.8  # max inside: hit
    x_cf[0, 0, 5, 5] = 0.3
    x_cf[1, 0, 1, 1] = 0.3  # max outside: miss
    x_cf[1, 0, 2, 2] = 0.8  # (one pixel diagonally off the gt)
    x_cf[2] = 0.2  # flat change everywhere: ties count against -> miss
    # sample 3: no change at all -> miss
    assert M.pointing_game(x_cf, x_ref, gt).tolist() == [True, False, False, False]
    assert M.pointing_game(x_cf, x_ref, gt, tolerance=1).tolist() == [True, True, False, False]
    full = torch.ones(shape, dtype=torch.bool)
    assert M.pointing_game(x_cf, x_ref, full).tolist() == [True, True, True, False]
    empty = torch.zeros(shape, dtype=torch.bool)
    assert not M.pointing_game(x_cf, x_ref, empty).any()


def test_saliency_localization_known():
    shape = (2, 1, 4, 4)
    gt = rect(shape, (0, 2), (0, 2))
    s = torch.zeros(shape)
    s[0, 0, 0, 0] = 1.0
    s[0, 0, 3, 3] = 0.5
    s[1] = 0.25
    s[1, 0, 3, 3] = 1.0
    assert M.saliency_pointing_game(s, gt).tolist() == [True, False]
    close(M.relevance_mass(s, gt), [1 / 1.5, 1.0 / (0.25 * 15 + 1.0)])
    assert math.isnan(M.relevance_mass(torch.zeros(1, 1, 2, 2), gt[:1, :, :2, :2])[0])
    # sample 0: s > 0.1 is 2 pixels, 1 in the 4-pixel gt -> 1/5; s > 0.6 -> 1 pixel inside -> 1/4
    # sample 1: s > 0.1 is the whole image -> 4/16; s > 0.6 -> 1 pixel outside -> 0
    close(M.saliency_iou(s, gt, 0.1), [1 / 5, 4 / 16])
    table = M.saliency_iou(s, gt, [0.1, 0.6])
    assert table.shape == (2, 2)
    close(table, [[1 / 5, 1 / 4], [4 / 16, 0.0]])
    thresholds = torch.arange(1, 10) / 10
    assert M.saliency_iou(s, gt, thresholds).shape == (2, 9)


def test_mae_inside_outside_known():
    shape = (3, 1, 2, 2)
    x_true = torch.zeros(shape)
    x_cf = torch.tensor([[[[0.4, 0.2], [0.1, 0.3]]]]).repeat(3, 1, 1, 1)
    region = torch.zeros(shape, dtype=torch.bool)
    region[0, 0, 0, :] = True
    region[2] = True
    inside, outside = M.mae_inside_outside(x_cf, x_true, region)
    close(inside, [0.3, nan(), 0.25])
    close(outside, [0.2, 0.25, nan()])


def test_removal_known():
    x_in = torch.ones(4, 1, 2, 2)
    x_true = torch.zeros(4, 1, 2, 2)
    x_cf = torch.stack([x_true[0], x_in[0], torch.full((1, 2, 2), 0.25), torch.full((1, 2, 2), 3.0)])
    region = torch.ones(4, 1, 2, 2, dtype=torch.bool)
    # exactly the truth, untouched, a quarter of the way left, farther than the input
    close(M.removal(x_cf, x_in, x_true, region), [1.0, 0.0, 0.75, -2.0])
    empty = torch.zeros_like(region)
    assert torch.isnan(M.removal(x_cf, x_in, x_true, empty)).all()
    assert torch.isnan(M.removal(x_cf, x_true, x_true, region)).all()  # nothing to remove


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**31 - 1))
def test_removal_at_most_one_and_one_only_at_truth(seed):
    g = torch.Generator().manual_seed(seed)
    x_in, x_true, x_cf = (torch.rand(2, 1, 4, 4, generator=g) for _ in range(3))
    region = torch.rand(2, 1, 4, 4, generator=g) > 0.3
    region[:, :, 0, 0] = True
    r = M.removal(x_cf, x_in, x_true, region)
    assert (r <= 1 + 1e-6).all()
    close(M.removal(x_true, x_in, x_true, region), [1.0, 1.0])
    close(M.removal(x_in, x_in, x_true, region), [0.0, 0.0])


# --------------------------------------------------------------------------------------------
# realism


class BlockModel(nn.Module):
    """Toy latent model: encode = 2x2 average pooling (through a batch norm), decode = upsampling.

    Images constant on 2x2 blocks are on its "manifold" (reconstructed exactly)."""

    input_size = 4

    def __init__(self) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(1, eps=0.0, affine=False)  # identity on running statistics
        self.scale = nn.Parameter(torch.ones(()))
        self.calls = 0

    def encode(self, x):
        self.calls += 1
        assert not torch.is_grad_enabled()
        return {"z": self.bn(nn.functional.avg_pool2d(x, 2)) * self.scale}

    def decode(self, latent):
        return nn.functional.interpolate(latent["z"], scale_factor=2, mode="nearest")


def block_error(x):
    rec = nn.functional.interpolate(nn.functional.avg_pool2d(x, 2), scale_factor=2)
    return ((rec - x) ** 2).mean(dim=(1, 2, 3))


def test_realism_ratio_and_mode_restored():
    torch.manual_seed(0)
    model = BlockModel()
    model.train()
    model.bn.eval()  # a submodule in its own mode must be restored as it was
    x_in = torch.rand(3, 1, 4, 4)
    x_cf = torch.rand(3, 1, 4, 4)
    out = M.realism(model, x_cf, x_in)
    close(out, block_error(x_cf) / block_error(x_in), rtol=1e-5, atol=1e-6)
    assert model.training and not model.bn.training
    assert out.shape == (3,) and out.dtype == torch.float32 and not out.requires_grad
    # batch-norm runs on running statistics: per sample, whatever the batch is
    model.bn.train()
    close(M.realism(model, x_cf[:1], x_in[:1]), out[:1], rtol=1e-5, atol=1e-6)
    assert model.bn.training


def test_realism_manifold_resize_and_duck_typing():
    model = BlockModel()
    on_manifold = nn.functional.interpolate(torch.rand(1, 1, 2, 2), scale_factor=2)
    off = torch.rand(1, 1, 4, 4)
    assert M.realism(model, on_manifold, off)[0] == 0.0
    assert math.isinf(M.realism(model, off, on_manifold)[0])
    assert math.isnan(M.realism(model, on_manifold, on_manifold)[0])
    big = torch.rand(2, 1, 8, 8)  # resized to the model's input_size 4
    assert M.realism(model, big, big.flip(-1)).shape == (2,)

    class Duck:  # not an nn.Module, no input_size
        def encode(self, x):
            return x.round()

        def decode(self, z):
            return z

    x = torch.rand(2, 1, 3, 3)
    close(M.realism(Duck(), x, x), [1.0, 1.0])
    with pytest.raises(TypeError, match="encode"):
        M.realism(object(), x, x)


# --------------------------------------------------------------------------------------------
# summarize


def test_summarize_known():
    rows = [
        {"a": 1.0, "v": True, "s": torch.tensor(0.5)},
        {"a": 3.0, "v": False},
        {"a": nan(), "v": torch.tensor([True, True])},
        {"a": 10.0, "s": None},
    ]
    out = M.summarize(rows, ["a", "v", "s", "missing"])
    assert list(out) == ["a", "v", "s", "missing"]
    assert out["a"] == {"mean": pytest.approx(14 / 3), "median": 3.0, "n": 3, "n_undefined": 1}
    assert out["v"]["mean"] == pytest.approx(0.75) and out["v"]["n"] == 4
    assert out["v"]["median"] == 1.0
    assert out["s"] == {"mean": 0.5, "median": 0.5, "n": 1, "n_undefined": 0}
    assert out["missing"]["n"] == 0 and math.isnan(out["missing"]["mean"])
    even = M.summarize([{"a": v} for v in (4.0, 1.0, 2.0, 3.0)], ["a"])
    assert even["a"]["median"] == 2.5
    assert list(M.summarize(rows)) == ["a", "v", "s"]


# --------------------------------------------------------------------------------------------
# explanation_metrics


def _batch(b=2, k=3, h=6, w=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    x_in = torch.rand(b, 1, h, w, generator=g)
    x_rec = (x_in + 0.05 * torch.rand(b, 1, h, w, generator=g)).clamp(0, 1)
    x_cf = (x_rec + 0.2 * torch.rand(b, 1, h, w, generator=g)).clamp(0, 1)
    mask = torch.rand(b, 1, h, w, generator=g) > 0.5
    gt = torch.rand(b, 1, h, w, generator=g) > 0.7
    x_true = torch.rand(b, 1, h, w, generator=g)
    ps = [torch.rand(b, k, generator=g) for _ in range(3)]
    t = torch.randint(0, k, (b,), generator=g)
    return x_in, x_rec, x_cf, mask, *ps, t, gt, x_true


def test_explanation_metrics_keys_and_reference():
    x_in, x_rec, x_cf, mask, p_in, p_rec, p_cf, t, gt, x_true = _batch()
    base = M.explanation_metrics(x_in, x_rec, x_cf, mask, p_in, p_rec, p_cf, t)
    assert tuple(base) == M.EXPLANATION_KEYS
    full = M.explanation_metrics(
        x_in, x_rec, x_cf, mask, p_in, p_rec, p_cf, t, gt_mask=gt, x_true_cf=x_true,
        latent_model=BlockModel(),
    )
    assert tuple(full) == M.EXPLANATION_KEYS + M.GT_KEYS + M.TRUE_CF_KEYS + ("realism",)
    for key, v in full.items():
        assert v.shape == (2,), key
        assert v.dtype == (torch.bool if key in ("validity", "pointing_game") else torch.float32)
    close(full["l1"], M.proximity_l1(x_cf, x_rec))
    close(full["target_drop"], M.target_drop(p_rec, p_cf, t))
    close(full["share_in_gt_dilated_l1"], M.share_inside(x_cf, x_rec, M.dilate(gt, 8)))
    close(full["iou_gt"], M.change_iou(x_cf, x_rec, gt))
    close(full["mae_true_inside"], M.mae_inside_outside(x_cf, x_true, gt)[0])
    close(full["removal"], M.removal(x_cf, x_in, x_true, gt))
    close(full["mask_area"], mask.float().mean(dim=(1, 2, 3)))
    vs_input = M.explanation_metrics(
        x_in, x_rec, x_cf, mask, p_in, p_rec, p_cf, t, reference="input"
    )
    close(vs_input["l1"], M.proximity_l1(x_cf, x_in))
    close(vs_input["target_drop"], M.target_drop(p_in, p_cf, t))
    close(vs_input["reconstruction_shift"], base["reconstruction_shift"])
    with pytest.raises(ValueError, match="reference"):
        M.explanation_metrics(x_in, x_rec, x_cf, mask, p_in, p_rec, p_cf, t, reference="x0")
    with pytest.raises(ValueError):
        M.explanation_metrics(x_in, x_rec, x_cf, mask, p_in[:1], p_rec[:1], p_cf[:1], t[:1])


def test_explanation_metrics_true_cf_without_gt_uses_saliency_mask():
    x_in, x_rec, x_cf, mask, p_in, p_rec, p_cf, t, _, x_true = _batch()
    out = M.explanation_metrics(x_in, x_rec, x_cf, mask, p_in, p_rec, p_cf, t, x_true_cf=x_true)
    assert "iou_gt" not in out
    close(out["mae_true_outside"], M.mae_inside_outside(x_cf, x_true, mask)[1])


# --------------------------------------------------------------------------------------------
# properties

unit = st.floats(0.0, 1.0, width=32, allow_subnormal=False)


@st.composite
def cases(draw, b=None, h=None, w=None):
    """A batch of (x_ref, x_cf, mask, gt) as tensors, (B, 1, H, W)."""
    b = draw(st.integers(1, 3)) if b is None else b
    h = draw(st.integers(1, 6)) if h is None else h
    w = draw(st.integers(1, 6)) if w is None else w
    shape = (b, 1, h, w)
    x_ref = draw(hnp.arrays(np.float32, shape, elements=unit))
    x_cf = draw(hnp.arrays(np.float32, shape, elements=unit))
    mask = draw(hnp.arrays(np.bool_, shape))
    gt = draw(hnp.arrays(np.bool_, shape))
    return tuple(torch.from_numpy(a) for a in (x_ref, x_cf, mask, gt))


def in_unit_or_nan(v: torch.Tensor) -> bool:
    return bool((v.isnan() | ((v >= 0) & (v <= 1))).all())


@PROPS
@given(cases(), st.sampled_from([1, 2, 0.5]))
def test_prop_shares_in_unit_interval(case, power):
    x_ref, x_cf, mask, gt = case
    share = M.share_inside(x_cf, x_ref, mask, power=power)
    assert in_unit_or_nan(share)
    no_change = (x_cf == x_ref).flatten(1).all(1)
    assert share.isnan().equal(no_change)
    assert in_unit_or_nan(M.relevance_mass(x_cf, gt))
    assert in_unit_or_nan(M.change_iou(x_cf, x_ref, gt))
    assert in_unit_or_nan(M.saliency_iou(x_cf, gt, 0.5))
    l1, l2 = M.proximity_l1(x_cf, x_ref), M.proximity_l2(x_cf, x_ref)
    assert bool((l1 <= l2 + 1e-6).all()) and in_unit_or_nan(l1) and in_unit_or_nan(l2)


positive = st.one_of(st.just(0.0), st.floats(1e-6, 1.0))


@PROPS
@given(
    hnp.arrays(np.float64, hnp.array_shapes(min_dims=4, max_dims=4, max_side=5), elements=positive),
    st.data(),
    st.floats(1e-3, 1e3),
    st.sampled_from([1, 2]),
)
def test_prop_share_scale_invariant(delta, data, scale, power):
    d = torch.from_numpy(delta)
    mask = torch.from_numpy(data.draw(hnp.arrays(np.bool_, delta.shape)))
    zero = torch.zeros_like(d)
    a = M.share_inside(d, zero, mask, power=power)
    b = M.share_inside(d * scale, zero, mask, power=power)
    c = M.share_inside(zero, d, mask, power=power)  # the sign of the change does not matter
    close(b, a, rtol=1e-5, atol=1e-6)
    close(c, a)


def _all_metrics(x_ref, x_cf, mask, gt, p_ref, p_cf, targets):
    out = M.explanation_metrics(
        x_ref, x_ref, x_cf, mask, p_ref, p_ref, p_cf, targets, gt_mask=gt, x_true_cf=x_ref,
        gt_dilation=1,
    )
    out["quantile_iou"] = M.change_iou(x_cf, x_ref, gt, quantile=0.7)
    out["threshold_iou"] = M.change_iou(x_cf, x_ref, gt, threshold=0.3)
    out["sal_pointing"] = M.saliency_pointing_game(x_cf, gt, tolerance=1)
    out["rel_mass"] = M.relevance_mass(x_cf, gt)
    out["sal_iou"] = M.saliency_iou(x_cf, gt, [0.1, 0.5, 0.9])
    out["pointing_tol"] = M.pointing_game(x_cf, x_ref, gt, tolerance=2)
    return out


@st.composite
def prob_cases(draw, b, k):
    p_ref = draw(hnp.arrays(np.float32, (b, k), elements=unit))
    p_cf = draw(hnp.arrays(np.float32, (b, k), elements=unit))
    t = draw(hnp.arrays(np.int64, (b,), elements=st.integers(0, k - 1)))
    return tuple(torch.from_numpy(a) for a in (p_ref, p_cf, t))


@PROPS
@given(st.data())
def test_prop_batch_composition_invariant(data):
    h, w, k = (data.draw(st.integers(1, 6), label=n) for n in ("h", "w", "k"))
    b1, b2 = data.draw(st.integers(1, 3)), data.draw(st.integers(1, 3))
    first = data.draw(cases(b=b1, h=h, w=w)) + data.draw(prob_cases(b1, k))
    second = data.draw(cases(b=b2, h=h, w=w)) + data.draw(prob_cases(b2, k))
    together = _all_metrics(*(torch.cat([u, v]) for u, v in zip(first, second, strict=True)))
    apart = [_all_metrics(*first), _all_metrics(*second)]
    for key, value in together.items():
        expected = torch.cat([apart[0][key], apart[1][key]])
        if value.dtype == torch.bool:
            assert value.equal(expected), key
        else:
            torch.testing.assert_close(value, expected, equal_nan=True, msg=key)


masks = hnp.arrays(np.bool_, hnp.array_shapes(min_dims=4, max_dims=4, max_side=6))


@PROPS
@given(masks, st.data())
def test_prop_iou_symmetric_and_identity(a, data):
    b = data.draw(hnp.arrays(np.bool_, a.shape))
    ta, tb = torch.from_numpy(a), torch.from_numpy(b)
    close(M.iou(ta, tb), M.iou(tb, ta))
    same = M.iou(ta, ta)
    nonempty = ta.flatten(1).any(1)
    assert bool((same[nonempty] == 1).all())
    assert bool(same[~nonempty].isnan().all())


def _reference_dilation(mask: np.ndarray, r: int, disk: bool) -> np.ndarray:
    """Dilation by shifting over the structuring element's offsets (numpy, for comparison)."""
    out = np.zeros_like(mask)
    h, w = mask.shape[-2:]
    for dy in range(-r, r + 1):
        for dx in range(-r, r + 1):
            if (disk and dy * dy + dx * dx > r * r) or abs(dy) >= h or abs(dx) >= w:
                continue
            shifted = np.zeros_like(mask)
            ys, yd = slice(max(0, -dy), min(h, h - dy)), slice(max(0, dy), min(h, h + dy))
            xs, xd = slice(max(0, -dx), min(w, w - dx)), slice(max(0, dx), min(w, w + dx))
            shifted[..., yd, xd] = mask[..., ys, xs]
            out |= shifted
    return out


@PROPS
@given(masks, st.integers(0, 3))
def test_prop_dilate_monotone(mask, r):
    m = torch.from_numpy(mask)
    square, disk = M.dilate(m, r), M.dilate(m, r, shape="disk")
    assert bool((m <= disk).all()) and bool((disk <= square).all())
    assert bool((square <= M.dilate(m, r + 1)).all())
    assert bool((disk <= M.dilate(m, r + 1, shape="disk")).all())
    assert np.array_equal(square.numpy(), _reference_dilation(mask, r, disk=False))
    assert np.array_equal(disk.numpy(), _reference_dilation(mask, r, disk=True))


@PROPS
@given(cases())
def test_prop_pointing_game_matches_argmax(case):
    x_ref, x_cf, _, gt = case
    d = (x_cf.double() - x_ref.double()).abs().flatten(1)
    hit = M.pointing_game(x_cf, x_ref, gt)
    top = d.amax(1, keepdim=True)
    unique = ((d == top).sum(1) == 1) & (top[:, 0] > 0)
    at_argmax = gt.flatten(1).gather(1, d.argmax(1, keepdim=True))[:, 0]
    assert hit[unique].equal(at_argmax[unique])
    assert not hit[top[:, 0] == 0].any()


@PROPS
@given(st.integers(1, 3), st.integers(2, 36), st.data())
def test_prop_area_matched_iou_area(b, n, data):
    # all |Δx| distinct and non-zero -> the predicted region has exactly the gt's area
    g = torch.Generator().manual_seed(data.draw(st.integers(0, 2**31 - 1)))
    perm = torch.stack([torch.randperm(n, generator=g) for _ in range(b)])
    x_cf = ((perm + 1).double() / n).reshape(b, 1, 1, n)
    gt = torch.from_numpy(data.draw(hnp.arrays(np.bool_, (b, 1, 1, n))))
    k = gt.flatten(1).sum(1)
    pred = M._change_mask(x_cf.flatten(1), gt.flatten(1), None, None)
    assert pred.sum(1).equal(k)
    # the prediction is the top-k changes
    close(M.change_iou(x_cf, torch.zeros_like(x_cf), gt), M.iou(pred.reshape(gt.shape), gt))


@PROPS
@given(st.integers(1, 3), st.integers(1, 5), st.data())
def test_prop_off_target_bounds(b, k, data):
    p_ref, p_cf, t = data.draw(prob_cases(b, k))
    mean, biggest = M.off_target_change(p_ref, p_cf, t)
    assert bool((mean <= biggest + 1e-6).all() & (mean >= 0).all() & (biggest <= 1).all())
    drop = M.target_drop(p_ref, p_cf, t)
    assert M.validity(p_cf, t, threshold=1.0 + 1e-6).all()
    assert bool(((drop >= -1) & (drop <= 1)).all())


def test_roc_auc_known_values():
    from xcf.metrics import roc_auc

    y = torch.tensor([0, 0, 1, 1])
    assert roc_auc(torch.tensor([0.1, 0.2, 0.3, 0.4]), y) == 1.0
    assert roc_auc(torch.tensor([0.4, 0.3, 0.2, 0.1]), y) == 0.0
    assert roc_auc(torch.tensor([0.5, 0.5, 0.5, 0.5]), y) == 0.5
    assert roc_auc(torch.tensor([0.1, 0.35, 0.3, 0.4]), y) == 0.75
    assert math.isnan(roc_auc(torch.tensor([0.1, 0.2]), torch.tensor([1, 1])))
    # unknown labels (NaN) are ignored
    assert (
        roc_auc(torch.tensor([0.1, 0.9, 0.2, 0.4]), torch.tensor([0.0, float("nan"), 1.0, 1.0]))
        == 1.0
    )


def test_ssim_identity_and_degradation():
    from xcf.metrics import ssim

    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 1, 32, 32, generator=g)
    torch.testing.assert_close(ssim(x, x), torch.ones(2))
    noisy = (x + 0.2 * torch.randn(2, 1, 32, 32, generator=g)).clamp(0, 1)
    assert torch.all(ssim(x, noisy) < 0.9)
    # per sample
    torch.testing.assert_close(ssim(x[:1], noisy[:1]), ssim(x, noisy)[:1])
