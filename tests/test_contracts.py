"""Contract tests over *every registered component*: a new plugin is covered the moment its entry
point exists. Components are built with their default arguments; optional components whose
optional dependency is missing (e.g. torchxrayvision) are skipped with the reason they give."""

from __future__ import annotations

import functools

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from torch import nn

import xcf
from xcf import registry as xreg
from xcf.errors import ComponentError, WeightsError


def _names(kind: str) -> list[str]:
    return xreg.Registry(xreg.make_plugin_manager()).list(kind)


@functools.cache
def _film_folder() -> str:
    """Three films (two without ``finding``) with a ``labels.csv``: the data a component that is
    built from films (``exemplar-bank``) is built from."""
    import tempfile
    from pathlib import Path

    from PIL import Image

    root = Path(tempfile.mkdtemp(prefix="xcf-contract-films-"))
    rows = ["path,split,finding"]
    for i in range(3):
        Image.fromarray((torch.rand(64, 64, generator=torch.Generator().manual_seed(i)) * 255)
                        .to(torch.uint8).numpy()).save(root / f"f{i}.png")
        rows.append(f"f{i}.png,train,{int(i == 2)}")
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    return str(root)


#: Components that are built from data, with the arguments that point them at some.
_DATA_ARGS = {("latent", "exemplar-bank"): lambda: {"root": _film_folder(), "without": "finding"}}


@functools.cache
def _build(kind: str, name: str):
    try:
        kwargs = _DATA_ARGS[(kind, name)]() if (kind, name) in _DATA_ARGS else {}
        return xreg.Registry(xreg.make_plugin_manager()).create(kind, name, **kwargs)
    except (ComponentError, WeightsError) as exc:
        if "not installed" in str(exc) or "weights" in str(exc).lower():
            pytest.skip(f"{kind} '{name}': {exc}")
        raise


def _no_hooks(module: torch.nn.Module) -> bool:
    return all(not m._forward_hooks and not m._forward_pre_hooks and not m._backward_hooks
               for m in module.modules())


@pytest.mark.parametrize("name", _names("classifier"))
def test_classifier_contract(name):
    clf = _build("classifier", name)
    assert isinstance(clf, xcf.Classifier)
    assert clf.labels and all(isinstance(lab, str) and lab for lab in clf.labels)
    assert len(set(clf.labels)) == len(clf.labels)
    S = clf.input_size
    clf.eval()
    with torch.no_grad():
        logits = clf(torch.rand(2, 1, S, S))
    assert logits.shape == (2, len(clf.labels)) and logits.dtype == torch.float32
    assert torch.isfinite(logits).all()
    layer = clf.cam_layer()
    assert layer is None or any(layer is m for m in clf.modules())


@pytest.mark.parametrize("name", _names("latent"))
def test_latent_contract(name):
    lat = _build("latent", name)
    assert isinstance(lat, xcf.LatentModel)
    S = lat.input_size
    lat.eval()
    x = torch.rand(2, 1, S, S)
    with torch.no_grad():
        z = lat.encode(x)
        assert isinstance(z, xcf.Latent) and z.z.shape[0] == 2
        xr = lat.decode(z)
    assert xr.shape == (2, 1, S, S)
    assert torch.isfinite(xr).all() and xr.min() >= 0 and xr.max() <= 1
    # differentiable in z, and per-sample: sample 1's output does not depend on sample 0's z
    zz = z.z.clone().requires_grad_(True)
    out = lat.decode(z.with_z(zz))
    (g,) = torch.autograd.grad(out[1].sum(), zz)
    assert g[1].abs().sum() > 0 and g[0].abs().sum() == 0
    # select() keeps aux aligned
    with torch.no_grad():
        torch.testing.assert_close(lat.decode(z.select(torch.tensor([1]))), xr[1:], atol=1e-5, rtol=1e-4)


@pytest.fixture(scope="module")
def small_classifier():
    torch.manual_seed(0)
    clf = xreg.Registry(xreg.make_plugin_manager()).create(
        "classifier", "small-cnn", labels=("a", "b", "c"), input_size=64)
    clf.eval()
    return clf


@pytest.mark.parametrize("name", _names("saliency"))
def test_saliency_contract(name, small_classifier):
    method = _build("saliency", name)
    assert isinstance(method, xcf.SaliencyMethod)
    clf = small_classifier
    flags = [p.requires_grad for p in clf.parameters()]
    x = torch.rand(2, 1, 64, 64, generator=torch.Generator().manual_seed(1))
    out = method(clf, x, torch.tensor([0, 2]))
    assert out.shape == (2, 1, 64, 64)
    assert torch.isfinite(out).all() and out.min() >= 0 and out.max() <= 1
    assert _no_hooks(clf)
    assert [p.requires_grad for p in clf.parameters()] == flags
    assert all(p.grad is None for p in clf.parameters())
    assert not x.requires_grad


@pytest.mark.parametrize("name", _names("saliency"))
def test_saliency_leaves_no_hooks_on_error(name, small_classifier):
    method = _build("saliency", name)

    class Failing(type(small_classifier)):
        def forward(self, x):
            super().forward(x)
            raise RuntimeError("classifier failed")

    clf = Failing(labels=("a",), input_size=32)
    flags = [p.requires_grad for p in clf.parameters()]
    with pytest.raises(Exception, match="classifier failed"):
        method(clf, torch.rand(1, 1, 32, 32), torch.tensor([0]))
    assert _no_hooks(clf)
    assert [p.requires_grad for p in clf.parameters()] == flags


# -- saliency: the map follows the target and the image ------------------------------------------

SIDE = 64  # image side of the analytic saliency checks
SPOT = 16  # side of a bright square spot, in pixels
NEAR = 8  # pixels around a spot still counted as "at the spot" (smoothing, occlusion windows)


class HalvesClassifier(xcf.Classifier):
    """An analytic classifier with fixed weights (nothing trained): label 0 sees bright pixels in
    the left half of the image, label 1 in the right half.

    The CAM layer (``features``) outputs ``A`` ``(B, 2, 32, 32)``: the 2x2 mean of the image
    (a stride-2 convolution with weights 1/4) minus 0.5, a ReLU, and a positional mask per channel,
    so ``A_0 = relu(mean2x2(x) - 0.5)`` on the left half of the grid and 0 on the right, ``A_1``
    the same on the right half. The head is global average pooling and a diagonal linear layer
    (the original CAM architecture): ``logit_k = 4 * mean(A_k) - 1``.

    Hence logit ``k`` depends only on the pixels of half ``k`` whose 2x2 block is brighter than 0.5:
    every other pixel has zero gradient, and blacking it out (occlusion) leaves logit ``k`` exactly
    as it was. On images with a grey background (0.1-0.3) and bright spots (0.9), the evidence for
    label ``k`` is exactly the spots in half ``k``.
    """

    labels = ("left", "right")
    input_size = SIDE

    def __init__(self) -> None:
        super().__init__()
        self.pool = nn.Conv2d(1, 2, 2, stride=2)
        self.features = nn.Identity()  # the CAM layer: its output is A
        self.head = nn.Linear(2, 2)
        with torch.no_grad():
            self.pool.weight.fill_(0.25)
            self.pool.bias.fill_(-0.5)
            self.head.weight.copy_(4.0 * torch.eye(2))
            self.head.bias.fill_(-1.0)
        mask = torch.zeros(1, 2, SIDE // 2, SIDE // 2)
        mask[:, 0, :, : SIDE // 4] = 1.0
        mask[:, 1, :, SIDE // 4:] = 1.0
        self.register_buffer("mask", mask)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        acts = self.features(torch.relu(self.pool(x)) * self.mask)
        return self.head(acts.mean(dim=(2, 3)))

    def cam_layer(self) -> nn.Module:
        return self.features


def spot_images(*spots: list[tuple[int, int]]) -> torch.Tensor:
    """One ``(1, SIDE, SIDE)`` image per list of spot corners ``(row, col)``: a grey background in
    [0.1, 0.3] (fixed noise) and a 0.9 square of ``SPOT`` px at each corner. Returns ``(B, 1, SIDE, SIDE)``."""
    x = 0.1 + 0.2 * torch.rand(len(spots), 1, SIDE, SIDE, generator=torch.Generator().manual_seed(0))
    for i, corners in enumerate(spots):
        for r, c in corners:
            x[i, 0, r:r + SPOT, c:c + SPOT] = 0.9
    return x


def spot_box(r: int, c: int, near: int = 0) -> torch.Tensor:
    """Bool ``(SIDE, SIDE)``: the spot with corner ``(r, c)``, grown by ``near`` pixels."""
    box = torch.zeros(SIDE, SIDE, dtype=torch.bool)
    box[max(0, r - near):r + SPOT + near, max(0, c - near):c + SPOT + near] = True
    return box


#: One spot per half (for the target check), corners (row, col).
LEFT_SPOT, RIGHT_SPOT = (8, 8), (40, 40)
#: Single-spot images and their targets (for the image checks): two places in each half.
MOVING = [((8, 8), 0), ((40, 12), 0), ((8, 40), 1), ((40, 36), 1)]


def saliency_violations(method: xcf.SaliencyMethod) -> list[str]:
    """What ``method`` gets wrong on :class:`HalvesClassifier`; ``[]`` when nothing.

    Each entry starts with the property it breaks:

    - ``"target: ..."``: on one image with a spot in each half, the map of target 0 must put at
      least 90 % of its mass in the left half and the map of target 1 at most 10 %. A map that
      ignores the target (or is zero) fails.
    - ``"image: ..."``: the same target on two images whose only spot is in different places gives
      maps that differ by at least 0.5 somewhere, each with at least 80 % of its mass within
      ``NEAR`` px of its spot: the map moves with the spot. A map that ignores the image fails.
    - ``"localized: ..."``: each single-spot map is not all zero, and its mean farther than
      ``NEAR`` px from the spot is at most a tenth of its peak on the spot. A constant map fails.

    Maps must also have the contract's shape, be finite and lie in [0, 1] (``"contract: ..."``).
    """
    clf = HalvesClassifier().eval()
    out: list[str] = []

    def run(x: torch.Tensor, targets: list[int]) -> torch.Tensor | None:
        maps = method(clf, x, torch.tensor(targets))
        if tuple(maps.shape) != tuple(x.shape) or not torch.isfinite(maps).all() \
                or maps.min() < 0 or maps.max() > 1:
            out.append(f"contract: maps of shape {tuple(maps.shape)} (expected {tuple(x.shape)}), "
                       "finite and in [0, 1]")
            return None
        return maps[:, 0].detach().float()

    def fraction(m: torch.Tensor, where: torch.Tensor) -> float:
        total = float(m.sum())
        return float(m[where].sum()) / total if total > 0 else float("nan")  # nan fails every test

    left = torch.zeros(SIDE, SIDE, dtype=torch.bool)
    left[:, : SIDE // 2] = True
    both = spot_images([LEFT_SPOT, RIGHT_SPOT])
    maps = run(both.repeat(2, 1, 1, 1), [0, 1])
    if maps is not None:
        f0, f1 = fraction(maps[0], left), fraction(maps[1], left)
        if not (f0 >= 0.9 and f1 <= 0.1):
            out.append(f"target: left-half mass fraction {f0:.3f} for target 0 (left), {f1:.3f} for "
                       "target 1 (right); expected >= 0.9 and <= 0.1")

    maps = run(spot_images(*[[corner] for corner, _ in MOVING]), [t for _, t in MOVING])
    if maps is None:
        return out
    for i, (corner, target) in enumerate(MOVING):
        at = fraction(maps[i], spot_box(*corner, NEAR))
        if not at >= 0.8:
            out.append(f"image: spot at {corner}, target {target}: mass fraction {at:.3f} within "
                       f"{NEAR} px of the spot; expected >= 0.8")
        peak = float(maps[i][spot_box(*corner)].max())
        far = float(maps[i][~spot_box(*corner, NEAR)].mean())
        if not (peak > 0 and far <= 0.1 * peak):
            out.append(f"localized: spot at {corner}, target {target}: peak {peak:.3f} on the spot, "
                       f"mean {far:.3f} away from it; expected a peak > 0 and a mean <= 0.1 x peak")
    for a, b in ((0, 1), (2, 3)):
        diff = float((maps[a] - maps[b]).abs().max())
        if not diff >= 0.5:
            out.append(f"image: spots at {MOVING[a][0]} and {MOVING[b][0]} (target {MOVING[a][1]}) give "
                       f"maps that differ by at most {diff:.3f}; expected >= 0.5")
    return out


def test_halves_classifier_reads_only_bright_pixels_of_its_half():
    """The premise of :func:`saliency_violations`, checked: logit k does not move when anything
    but the bright pixels of half k changes, and drops when they are darkened."""
    clf = HalvesClassifier().eval()
    x = spot_images([LEFT_SPOT, RIGHT_SPOT])
    with torch.no_grad():
        base = clf(x)[0]
        y = x.clone()
        y[..., SIDE // 2:] = torch.rand(1, 1, SIDE, SIDE // 2) * 0.4  # new right half, all dim
        assert torch.equal(clf(y)[0, 0], base[0]) and clf(y)[0, 1] < base[1]
        y = x.clone()
        y[x < 0.5] = 0.45 - y[x < 0.5]  # every dim pixel changed, still dim
        torch.testing.assert_close(clf(y)[0], base)
        r, c = LEFT_SPOT
        y = x.clone()
        y[..., r:r + SPOT, c:c + SPOT] = 0.6
        assert clf(y)[0, 0] < base[0] and clf(y)[0, 1] == base[1]


@pytest.mark.parametrize("name", _names("saliency"))
def test_saliency_follows_target_and_image(name):
    """Every registered saliency method, with its default arguments, on
    :class:`HalvesClassifier`: the map of label k lies on the bright spot of half k, moves with it,
    and is neither zero nor constant (:func:`saliency_violations`).

    Why each method must: logit k has zero gradient at every pixel but the bright ones of half k,
    and occluding any other pixel leaves it unchanged. So the attribution of the target logit is
    zero there for the gradient family (``saliency``; ``smoothgrad``, whose 0.15 noise almost
    never lifts the 0.1-0.3 background over 0.5; ``integrated-gradients``, whose path from black
    crosses 0.5 only at bright pixels) and for ``occlusion`` (windows of 8 px reach at most 7 px
    beyond the spot); only their Gaussian smoothing (4 px) spreads it, within ``NEAR`` px. In the
    CAM family (``gradcam``, ``gradcam++``, ``hirescam``) the gradient with respect to the other
    channel is zero, so the map is a positive multiple of ``A_target``: the bright cells of the
    target's half. ``saliency-in-gradcam++`` keeps the gradient inside Grad-CAM++ > 0.5 shrunk by
    4 px, which here is the inner 8 px of the 16 px spot: non-empty
    (:func:`test_gated_saliency_gate_is_not_empty_on_the_halves_classifier`), on the spot.
    """
    method = _build("saliency", name)
    assert saliency_violations(method) == []


def test_gated_saliency_gate_is_not_empty_on_the_halves_classifier():
    """``saliency-in-gradcam++`` passes the check above by gating, not by its fallback (an empty
    gate returns the plain gradient map): its map is zero on part of the spot that the plain
    gradient covers."""
    reg = xreg.Registry(xreg.make_plugin_manager())
    x = spot_images([LEFT_SPOT])
    gated = reg.create("saliency", "saliency-in-gradcam++")(HalvesClassifier().eval(), x, torch.tensor([0]))
    plain = reg.create("saliency", "saliency")(HalvesClassifier().eval(), x, torch.tensor([0]))
    on_spot = spot_box(*LEFT_SPOT)[None, None]
    assert (gated[on_spot] > 0).any() and ((gated[on_spot] == 0) & (plain[on_spot] > 0.5)).any()


class _Broken(xcf.SaliencyMethod):
    """Saliency methods that must fail :func:`saliency_violations`."""

    def __init__(self, kind: str) -> None:
        self.kind = kind

    def __call__(self, classifier, x, targets):
        B, _, H, W = x.shape
        if self.kind == "zeros":
            return torch.zeros(B, 1, H, W)
        if self.kind == "constant":
            return torch.full((B, 1, H, W), 0.5)
        if self.kind == "target-blind":  # |d (sum of all logits) / dx|: right place, any target
            xin = x.detach().clone().requires_grad_(True)
            with torch.enable_grad():
                (g,) = torch.autograd.grad(classifier(xin).sum(), xin)
            g = g.abs()
            return g / g.flatten(1).amax(1).clamp_min(1e-12).view(-1, 1, 1, 1)
        if self.kind == "image-blind":  # a fixed square in the target's half, whatever the image
            out = torch.zeros(B, 1, H, W)
            for b, t in enumerate(targets.tolist()):
                out[b, 0, 24:40, 8 + 32 * t:24 + 32 * t] = 1.0
            return out
        raise AssertionError(self.kind)


class _BrokenPlugin:
    @xcf.hookimpl
    def xcf_register_saliency_methods(self, register):
        for kind in ("zeros", "constant", "target-blind", "image-blind"):
            register(f"broken-{kind}", functools.partial(_Broken, kind))


@pytest.mark.parametrize(("kind", "broken", "kept"), [
    ("zeros", {"target", "image", "localized"}, set()),
    ("constant", {"target", "image", "localized"}, set()),
    ("target-blind", {"target"}, {"image", "localized"}),
    ("image-blind", {"image"}, {"target"}),
])
def test_saliency_check_rejects_broken_methods(kind, broken, kept):
    """:func:`saliency_violations` can fail: a method that returns zeros, a constant, the same map
    for every target, or the same map for every image, registered by a plugin in a fresh registry,
    is rejected for exactly the properties it breaks."""
    reg = xreg.Registry(xreg.make_plugin_manager(load_entry_points=False))
    reg.register_plugin(_BrokenPlugin(), name="broken")
    method = reg.create("saliency", f"broken-{kind}")
    found = {v.split(":")[0] for v in saliency_violations(method)}
    assert broken <= found and not (kept & found), found


# -- locality losses: laws -----------------------------------------------------------------------

SIZE = 8
images = arrays("float32", (2, 1, SIZE, SIZE), elements=st.floats(0, 1, width=32))


@pytest.mark.parametrize("name", _names("locality"))
@settings(deadline=None, max_examples=40)
@given(x=images, s=images)
def test_locality_zero_when_unchanged_and_nonnegative(name, x, s):
    loss = _build("locality", name)
    assert isinstance(loss, xcf.LocalityLoss)
    x, s = torch.from_numpy(x), torch.from_numpy(s)
    zero = loss(x, x.clone(), s)
    assert zero.shape == (2,) and torch.all(zero == 0)
    y = (x + 0.1 * torch.sin(7 * x)).clamp(0, 1)
    val = loss(y, x, s)
    assert torch.all(val >= 0) and torch.isfinite(val).all()


@pytest.mark.parametrize("name", _names("locality"))
@settings(deadline=None, max_examples=40)
@given(a=images, b=images, s=images)
def test_locality_is_per_sample(name, a, b, s):
    loss = _build("locality", name)
    a, b, s = torch.from_numpy(a), torch.from_numpy(b), torch.from_numpy(s)
    full = loss(a, b, s)
    for i in range(2):
        torch.testing.assert_close(loss(a[i:i + 1], b[i:i + 1], s[i:i + 1]), full[i:i + 1])


@pytest.mark.parametrize("name", _names("locality"))
@settings(deadline=None, max_examples=40)
@given(x=images, delta=st.floats(0.01, 0.5), hi=st.floats(0.75, 1.0), lo=st.floats(0.0, 0.25),
       pos=st.tuples(st.integers(0, SIZE - 1), st.integers(0, SIZE - 1)))
def test_locality_grows_when_change_moves_outside(name, x, delta, hi, lo, pos):
    loss = _build("locality", name)
    x = torch.from_numpy(x)[:1]
    sal = torch.full_like(x, lo)
    r, c = pos
    sal[0, 0, r, c] = hi  # one salient pixel; its neighbour is not
    r2, c2 = r, (c + 1) % SIZE
    inside, outside = x.clone(), x.clone()
    inside[0, 0, r, c] = (x[0, 0, r, c] + delta) % 1
    outside[0, 0, r2, c2] = (x[0, 0, r2, c2] + delta) % 1
    # same size of change, moved from the salient pixel to a non-salient one
    d_in = (inside - x).abs().sum()
    outside[0, 0, r2, c2] = x[0, 0, r2, c2] + (d_in if x[0, 0, r2, c2] + d_in <= 1 else -d_in)
    l_in, l_out = loss(inside, x, sal), loss(outside, x, sal)
    mask = loss.mask(sal)
    if bool(mask[0, 0, r, c]) != bool(mask[0, 0, r2, c2]) or name == "soft-mask":
        assert l_out > l_in
    else:
        torch.testing.assert_close(l_out, l_in)
