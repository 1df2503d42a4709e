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

import xcf
from xcf import registry as xreg
from xcf.errors import ComponentError, WeightsError


def _names(kind: str) -> list[str]:
    return xreg.Registry(xreg.make_plugin_manager()).list(kind)


@functools.cache
def _build(kind: str, name: str):
    try:
        return xreg.Registry(xreg.make_plugin_manager()).create(kind, name)
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
