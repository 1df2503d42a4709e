"""Tests of the built-in model families: segnet-ae, vae, densenet121, wrap_classifier and the
torchxrayvision adapters (xrv-densenet, xrv-resnet-ae). Small images (64 px) and narrow widths
where the model allows; the 224 px defaults are built once each."""

from __future__ import annotations

import importlib.util
import sys
import warnings

import pytest
import torch
import torchvision
from torch import nn
from xcf_autoencoders import NARROW_WIDTHS, ConvAE, ConvVAE, SegNetAE, kl_divergence
from xcf_classifiers import CHEXPERT5, DenseNet121, imagenet_rgb, wrap_classifier, xrv_range
from xcf_classifiers.wrap import WrappedClassifier

import xcf
from xcf import Latent
from xcf.errors import ComponentError, ConfigError, WeightsError
from xcf.methods import DEFAULT_METHOD_WITHOUT_INPAINTER as DEFAULT_METHOD

HAS_XRV = importlib.util.find_spec("torchxrayvision") is not None
needs_xrv = pytest.mark.skipif(not HAS_XRV, reason="torchxrayvision is not installed (optional: pip install 'xcf[xrv]')")


def _cam_works(clf: xcf.Classifier, x: torch.Tensor, target: int = 0) -> None:
    """Grad-CAM on clf.cam_layer(): activations not modified in place, gradients non-zero, map ok."""
    layer = clf.cam_layer()
    assert layer is not None and any(layer is m for m in clf.modules())
    captured = []
    handle = layer.register_forward_hook(lambda _m, _i, out: captured.append((out, out._version)))
    try:
        xin = x.clone().requires_grad_(True)
        logits = clf(xin)
    finally:
        handle.remove()
    acts, version = captured[-1]
    assert acts._version == version, "cam_layer output was modified in place after the layer"
    (g,) = torch.autograd.grad(logits[:, target].sum(), acts)
    assert torch.isfinite(g).all() and g.abs().sum() > 0
    sal = xcf.create("saliency", "gradcam")(clf, x, torch.full((x.shape[0],), target, dtype=torch.long))
    assert sal.shape == (x.shape[0], 1, *x.shape[-2:])
    assert sal.min() >= 0 and sal.max() <= 1


# --------------------------------------------------------------------------------------------
# segnet-ae


@pytest.fixture(scope="module")
def narrow_segnet():
    torch.manual_seed(0)
    return SegNetAE(input_size=64, widths=NARROW_WIDTHS).eval()


def test_segnet_default_shapes_at_224():
    ae = xcf.create("latent", "segnet-ae").eval()
    assert isinstance(ae, SegNetAE) and ae.input_size == 224 and ae.widths == (64, 128, 256, 512, 512)
    assert sum(p.numel() for p in ae.parameters()) == 29_471_489
    with torch.no_grad():
        lat = ae.encode(torch.rand(1, 1, 224, 224))
        out = ae.decode(lat)
    assert lat.z.shape == (1, 512, 7, 7)
    assert [tuple(i.shape) for i in lat.aux] == [(1, 64, 112, 112), (1, 128, 56, 56), (1, 256, 28, 28),
                                                 (1, 512, 14, 14), (1, 512, 7, 7)]
    assert out.shape == (1, 1, 224, 224) and out.min() >= 0 and out.max() <= 1


def test_segnet_narrow_shapes_and_range(narrow_segnet):
    x = torch.rand(2, 1, 64, 64)
    with torch.no_grad():
        lat = narrow_segnet.encode(x)
        out = narrow_segnet.decode(lat)
    assert lat.z.shape == (2, 128, 2, 2)
    assert isinstance(lat.aux, list) and len(lat.aux) == 5
    sides = [32, 16, 8, 4, 2]
    for idx, w, s in zip(lat.aux, NARROW_WIDTHS, sides):
        assert idx.dtype == torch.int64 and idx.shape == (2, w, s, s)
        assert idx.min() >= 0 and idx.max() < (2 * s) ** 2
    assert out.shape == x.shape and torch.isfinite(out).all()
    assert out.min() >= 0 and out.max() <= 1
    assert sum(p.numel() for p in narrow_segnet.parameters()) == 1_845_185


def test_segnet_decode_uses_the_indices(narrow_segnet):
    with torch.no_grad():
        lat = narrow_segnet.encode(torch.rand(1, 1, 64, 64))
        out = narrow_segnet.decode(lat)
        # move the largest bottleneck activation to another position of its 4x4 pre-pool plane
        flat = lat.z.flatten()
        k = int(flat.argmax())
        c, rest = divmod(k, lat.z.shape[2] * lat.z.shape[3])
        i, j = divmod(rest, lat.z.shape[3])
        aux = [t.clone() for t in lat.aux]
        old = int(aux[-1][0, c, i, j])
        aux[-1][0, c, i, j] = (old + 5) % 16
        moved = narrow_segnet.decode(xcf.Latent(lat.z, aux))
    assert not torch.allclose(out, moved)


def test_segnet_gradients_flow_to_z_and_indices_stay(narrow_segnet):
    with torch.no_grad():
        lat = narrow_segnet.encode(torch.rand(2, 1, 64, 64))
    before = [t.clone() for t in lat.aux]
    z = lat.z.clone().requires_grad_(True)
    narrow_segnet.decode(lat.with_z(z)).mean().backward()
    assert z.grad is not None and torch.isfinite(z.grad).all() and z.grad.abs().sum() > 0
    assert all(torch.equal(a, b) for a, b in zip(lat.aux, before))


def test_segnet_select_keeps_aux_aligned(narrow_segnet):
    with torch.no_grad():
        lat = narrow_segnet.encode(torch.rand(3, 1, 64, 64))
        full = narrow_segnet.decode(lat)
        part = narrow_segnet.decode(lat.select(torch.tensor([2, 0])))
    torch.testing.assert_close(part, full[[2, 0]], atol=1e-5, rtol=1e-4)


def test_segnet_config_and_bad_sizes(narrow_segnet):
    again = SegNetAE(**narrow_segnet.config())
    assert again.config() == narrow_segnet.config()
    assert again.state_dict().keys() == narrow_segnet.state_dict().keys()
    with pytest.raises(ConfigError, match="multiple of 32"):
        SegNetAE(input_size=100, widths=NARROW_WIDTHS)
    with pytest.raises(ConfigError, match="five widths"):
        SegNetAE(widths=(8, 16, 32))
    with pytest.raises(ValueError, match="divisible by 32"):
        narrow_segnet.encode(torch.rand(1, 1, 48, 48))


# --------------------------------------------------------------------------------------------
# detail_sigma: the input's fine detail passes the bottleneck in aux (conv-ae, segnet-ae, vae)


def _detail_models(sigma):
    torch.manual_seed(0)
    return [ConvAE(input_size=64, widths=(8, 16), latent_channels=4, detail_sigma=sigma).eval(),
            SegNetAE(input_size=64, widths=NARROW_WIDTHS, detail_sigma=sigma).eval(),
            ConvVAE(input_size=64, widths=(8, 16), latent_channels=4, detail_sigma=sigma).eval()]


def _smooth_input(n=2, size=64):
    """Mid-grey images with a little texture, so that no reconstruction reaches the [0, 1] clip."""
    torch.manual_seed(1)
    return 0.5 + 0.05 * torch.randn(n, 1, size, size)


@pytest.mark.parametrize("sigma", [1.0, 2.5])
def test_detail_passes_fine_structure_and_edits_stay_coarse(sigma):
    from xcf_autoencoders.detail import detail, lowpass

    x = _smooth_input()
    for ae in _detail_models(sigma):
        plain = type(ae)(**{**ae.config(), "detail_sigma": 0.0}).eval()
        plain.load_state_dict(ae.state_dict())
        with torch.no_grad():
            lat = ae.encode(x)
            xr = ae.decode(lat)
            coarse = plain.decode(plain.encode(x))
            # the reconstruction is the plain model's output blurred, plus the input's own detail
            torch.testing.assert_close(xr, lowpass(coarse, sigma) + detail(x, sigma), atol=1e-5, rtol=0)
            # so it differs from the input only by a blurred error: no fine-scale error at all
            assert (xr - x).abs().mean() < (coarse - x).abs().mean()
            # an edit of z changes the image only by a blurred amount
            z2 = lat.z + torch.randn_like(lat.z)
            diff = ae.decode(lat.with_z(z2)) - xr
            plain_diff = plain.decode(plain.encode(x).with_z(z2)) - coarse
            torch.testing.assert_close(diff, lowpass(plain_diff, sigma), atol=1e-5, rtol=0)
            assert diff.abs().sum() > 0


def test_detail_aux_is_fixed_selectable_and_config_round_trips():
    x = _smooth_input(3)
    for ae in _detail_models(1.5):
        assert ae.config()["detail_sigma"] == 1.5
        again = type(ae)(**ae.config())
        assert again.config() == ae.config()
        with torch.no_grad():
            lat = ae.encode(x)
            full = ae.decode(lat)
            part = ae.decode(lat.select(torch.tensor([2, 0])))
        torch.testing.assert_close(part, full[[2, 0]], atol=1e-5, rtol=1e-4)
        z = lat.z.clone().requires_grad_(True)
        ae.decode(lat.with_z(z)).mean().backward()
        assert torch.isfinite(z.grad).all() and z.grad.abs().sum() > 0
        # the decoder needs this image's detail; the plain latent is refused in one line
        bare = lat.aux["base"]
        with pytest.raises(ValueError, match="detail") as info:
            ae.decode(Latent(lat.z, bare))
        assert "\n" not in str(info.value)


def test_detail_latent_wrapper_equals_the_built_in_option():
    from xcf_autoencoders import DetailLatent

    x = _smooth_input(2)
    for ae in _detail_models(2.0):
        plain = type(ae)(**{**ae.config(), "detail_sigma": 0.0}).eval()
        plain.load_state_dict(ae.state_dict())
        wrapped = DetailLatent(plain, 2.0)
        assert wrapped.input_size == ae.input_size
        with torch.no_grad():
            lat, wlat = ae.encode(x), wrapped.encode(x)
            torch.testing.assert_close(wrapped.decode(wlat), ae.decode(lat))
            z2 = lat.z + 0.5
            torch.testing.assert_close(wrapped.decode(wlat.with_z(z2)), ae.decode(lat.with_z(z2)))
        with pytest.raises(ValueError, match="detail"):
            wrapped.decode(Latent(lat.z, None))
    with pytest.raises(ConfigError, match="> 0"):
        DetailLatent(plain, 0)


@pytest.mark.parametrize("bad", [-1.0, float("nan"), float("inf")])
def test_detail_sigma_bad_values_are_one_line_config_errors(bad):
    for cls, kw in [(ConvAE, {"widths": (8, 16)}), (SegNetAE, {"widths": NARROW_WIDTHS}),
                    (ConvVAE, {"widths": (8, 16)})]:
        with pytest.raises(ConfigError, match="detail_sigma must be a finite number >= 0"):
            cls(input_size=64, detail_sigma=bad, **kw)


def test_detail_latent_explains_end_to_end():
    torch.manual_seed(0)
    clf = xcf.create("classifier", "small-cnn", labels=["a"], input_size=32, widths=[4, 8, 8, 8, 8])
    ae = xcf.create("latent", "conv-ae", input_size=32, widths=[4, 8], latent_channels=4, detail_sigma=1.0)
    res = xcf.explain(_smooth_input(1, 32)[0], "a", classifier=clf, latent=ae, steps=3, device="cpu")
    assert res.counterfactual.shape[-2:] == (32, 32) and torch.isfinite(torch.as_tensor(res.counterfactual)).all()


def test_detail_gate_starts_at_the_model_and_can_only_remove_the_input_detail():
    from xcf.detail_gate import DetailGate

    x = _smooth_input(2)
    for ae in _detail_models(2.0):
        gated = DetailGate(ae).eval()
        with torch.no_grad():
            lat, glat = ae.encode(x), gated.encode(x)
            assert glat.z.shape == (2, lat.z[0].numel() + 64 * 64)
            torch.testing.assert_close(gated.decode(glat), ae.decode(lat))  # gate 1: the model
            n = lat.z[0].numel()
            z = glat.z.clone()
            z[:, :n] += 0.3  # an edit of z, and the gate closed on the left half, pushed past 0
            z[:, n:].view(2, 64, 64)[:, :, :32] = -1.0
            out = gated.decode(glat.with_z(z))
            coarse = ae.decode(Latent(lat.z + 0.3, {**lat.aux, "detail": torch.zeros_like(x)}))
            ref = ae.decode(lat.with_z(lat.z + 0.3))
            # left half: the blurred decoder output alone (the detail removed); right: unchanged
            torch.testing.assert_close(out[..., :32], coarse[..., :32])
            assert not torch.allclose(out[..., :32], ref[..., :32])  # and the detail was there
            torch.testing.assert_close(out[..., 32:], ref[..., 32:])
            sel = glat.select([1])  # the gate travels with z, the model's aux is indexed as before
            torch.testing.assert_close(gated.decode(sel), ae.decode(lat.select([1])))


def test_detail_gate_is_searched_and_refused_for_a_latent_without_detail():
    from xcf.detail_gate import DetailGate

    torch.manual_seed(0)
    clf = xcf.create("classifier", "small-cnn", labels=["a"], input_size=32, widths=[4, 8, 8, 8, 8])
    ae = xcf.create("latent", "conv-ae", input_size=32, widths=[4, 8], latent_channels=4, detail_sigma=1.0)
    x = _smooth_input(1, 32)[0]

    def gate(g):  # the default method with its detail gate set
        return xcf.get_method(DEFAULT_METHOD).replace(detail_gate=g)

    a = xcf.explain(x, "a", classifier=clf, latent=ae, steps=5, device="cpu", lr=0.5, method=gate(False))
    b = xcf.explain(x, "a", classifier=clf, latent=ae, steps=5, device="cpu", lr=0.5, method=gate(True))
    torch.testing.assert_close(b.reconstruction, a.reconstruction)  # the same start
    assert not torch.equal(b.counterfactual, a.counterfactual)  # the gate moved too
    assert b.config["detail_gate"] is True and a.config["detail_gate"] is False
    assert xcf.get_method(DEFAULT_METHOD).detail_gate == "auto"  # the default
    plain = xcf.create("latent", "conv-ae", input_size=32, widths=[4, 8], latent_channels=4)
    with pytest.raises(ConfigError, match=r"detail_gate=True needs a latent model that passes the input's detail"):
        xcf.explain(x, "a", classifier=clf, latent=plain, steps=2, device="cpu", method=gate(True))
    with pytest.raises(ConfigError, match="detail_gate"):
        DetailGate(plain).encode(x[None])
    # "auto" (the default): gates a latent with detail, searches z alone otherwise, and leaves
    # the Latent Shift baseline as published
    c = xcf.explain(x, "a", classifier=clf, latent=ae, steps=5, device="cpu", lr=0.5)
    torch.testing.assert_close(c.counterfactual, b.counterfactual)
    d = xcf.explain(x, "a", classifier=clf, latent=plain, steps=5, device="cpu", lr=0.5)
    e = xcf.explain(x, "a", classifier=clf, latent=plain, steps=5, device="cpu", lr=0.5, method=gate(False))
    torch.testing.assert_close(d.counterfactual, e.counterfactual)
    shift = xcf.get_method("latent-shift")
    ls = [xcf.explain(x, "a", classifier=clf, latent=ae, device="cpu",
                      method=shift.replace(search__num=5, detail_gate=g)).counterfactual for g in ("auto", False)]
    torch.testing.assert_close(ls[0], ls[1])
    with pytest.raises(ConfigError, match="detail_gate"):
        xcf.get_method("seed").replace(detail_gate="sometimes")
    with pytest.raises(ConfigError, match="Method.detail_gate"):
        xcf.ExplainConfig.build(detail_gate=True)


# --------------------------------------------------------------------------------------------
# vae


@pytest.fixture(scope="module")
def vae():
    torch.manual_seed(0)
    return ConvVAE(input_size=64, widths=(8, 16, 32, 32), latent_channels=4)


def test_vae_encode_is_the_deterministic_mean(vae):
    vae.eval()
    x = torch.rand(2, 1, 64, 64)
    with torch.no_grad():
        a, b = vae.encode(x), vae.encode(x)
        mu, logvar = vae.encode_distribution(x)
        out = vae.decode(a)
    assert a.aux is None and a.z.shape == (2, 4, 4, 4) and logvar.shape == mu.shape
    torch.testing.assert_close(a.z, b.z, rtol=0, atol=0)
    torch.testing.assert_close(a.z, mu, rtol=0, atol=0)
    assert out.shape == x.shape and out.min() >= 0 and out.max() <= 1


def test_vae_default_latent_shape():
    v = xcf.create("latent", "vae").eval()
    with torch.no_grad():
        z = v.encode(torch.rand(1, 1, 224, 224)).z
    assert z.shape == (1, 16, 14, 14)
    assert ConvVAE(**v.config()).config() == v.config()


def test_vae_loss_finite_and_trainable(vae):
    vae.train()
    x = torch.rand(4, 1, 64, 64)
    rec, kl = vae.loss(x, beta=1.0, generator=torch.Generator().manual_seed(0))
    assert rec.ndim == 0 and kl.ndim == 0 and torch.isfinite(rec) and torch.isfinite(kl)
    assert rec >= 0 and kl >= 0
    (rec + kl).backward()
    grads = [p.grad for p in vae.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    vae.zero_grad()
    vae.eval()  # fixed batch-norm statistics: the two calls see the same posterior
    with torch.no_grad():
        r1, k1 = vae.loss(x, beta=1.0, generator=torch.Generator().manual_seed(1))
        r2, k2 = vae.loss(x, beta=2.5, recon="l1", generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(k2, 2.5 * k1)
    assert torch.isfinite(r2) and r2 >= 0
    with pytest.raises(ConfigError):
        vae.loss(x, recon="huber")


def test_vae_with_detail_trains_on_the_merged_image():
    """``sample`` carries the detail, so the loss is taken on ``clip(G_s(D(z)) + d)``: a VAE whose
    decoder outputs a constant still scores the input's detail as reconstructed."""
    from xcf_autoencoders.detail import detail, lowpass

    torch.manual_seed(0)
    vae = ConvVAE(input_size=64, widths=(8, 16), latent_channels=4, detail_sigma=1.5).eval()
    x = _smooth_input(2)
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        lat, mu, logvar = vae.sample(x, g)
        assert lat.aux["detail"].shape == x.shape and mu.shape == lat.z.shape
        out = vae.decode(lat)
        coarse = torch.sigmoid(vae.decoder(lat.z))
        torch.testing.assert_close(out, (lowpass(coarse, 1.5) + detail(x, 1.5)).clamp(0, 1))
        # the same seed gives the same sample; the posterior mean is what encode() returns
        lat2, _, _ = vae.sample(x, torch.Generator().manual_seed(3))
        torch.testing.assert_close(lat.z, lat2.z, rtol=0, atol=0)
        torch.testing.assert_close(vae.encode(x).z, mu, rtol=0, atol=0)
        rec, kl = vae.loss(x, generator=torch.Generator().manual_seed(3))
        torch.testing.assert_close(rec, ((out - x) ** 2).mean(), rtol=1e-5, atol=1e-7)
        assert kl >= 0


def test_kl_divergence_zero_at_standard_normal():
    mu = torch.zeros(3, 4, 2, 2)
    logvar = torch.zeros(3, 4, 2, 2)
    assert torch.equal(kl_divergence(mu, logvar), torch.zeros(3))
    kl = kl_divergence(mu + 0.5, logvar - 1.0)
    assert kl.shape == (3,) and (kl > 0).all()
    # closed form for one dimension: 0.5 * (mu^2 + e^lv - 1 - lv)
    one = kl_divergence(torch.tensor([[2.0]]), torch.tensor([[0.0]]))
    torch.testing.assert_close(one, torch.tensor([2.0]))


# --------------------------------------------------------------------------------------------
# densenet121


@pytest.mark.parametrize("mode", ["imagenet-rgb", "grey"])
def test_densenet121_modes_at_224(mode):
    torch.manual_seed(0)
    clf = xcf.create("classifier", "densenet121", in_channels=mode).eval()
    assert clf.labels == CHEXPERT5 and clf.input_size == 224
    assert clf.features.conv0.in_channels == (3 if mode == "imagenet-rgb" else 1)
    x = torch.rand(2, 1, 224, 224)
    with torch.no_grad():
        logits = clf(x)
    assert logits.shape == (2, 5) and torch.isfinite(logits).all()
    assert clf.cam_layer() is clf.features.norm5
    _cam_works(clf, x[:1], target=1)


def test_densenet121_matches_torchvision_layout():
    clf = DenseNet121(labels=["a", "b"], input_size=64).eval()
    tv = torchvision.models.densenet121(weights=None, num_classes=2).eval()
    clf.load_state_dict(tv.state_dict())  # same keys and shapes
    x = torch.rand(1, 1, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(clf(x), tv(imagenet_rgb(x)), atol=1e-5, rtol=1e-4)
    assert DenseNet121(**clf.config()).config() == clf.config()
    with pytest.raises(ConfigError, match="in_channels"):
        DenseNet121(in_channels="rgb")


# --------------------------------------------------------------------------------------------
# wrap_classifier


def test_transforms():
    x = torch.rand(2, 1, 8, 8)
    assert torch.equal(xrv_range(torch.zeros(1, 1, 2, 2)), torch.full((1, 1, 2, 2), -1024.0))
    assert torch.equal(xrv_range(torch.ones(1, 1, 2, 2)), torch.full((1, 1, 2, 2), 1024.0))
    rgb = imagenet_rgb(x)
    assert rgb.shape == (2, 3, 8, 8)
    torch.testing.assert_close(rgb[:, 0:1] * 0.229 + 0.485, x)
    torch.testing.assert_close(rgb[:, 2:3] * 0.225 + 0.406, x)


def test_wrap_classifier_dotted_cam_layer_and_transform():
    import xcf_classifiers

    assert xcf_classifiers.wrap_classifier is wrap_classifier
    torch.manual_seed(0)
    net = torchvision.models.densenet121(weights=None, num_classes=3)
    clf = wrap_classifier(net, ["x", "y", "z"], input_size=64, cam_layer="features.denseblock4",
                          transform=imagenet_rgb).eval()
    assert isinstance(clf, xcf.Classifier) and isinstance(clf, WrappedClassifier)
    assert clf.labels == ("x", "y", "z") and clf.input_size == 64
    assert clf.cam_layer() is net.features.denseblock4
    x = torch.rand(2, 1, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(clf(x), net(imagenet_rgb(x)))
    _cam_works(clf, x, target=2)
    # a module instance works too
    assert wrap_classifier(net, ["x", "y", "z"], cam_layer=net.features.denseblock4).cam_layer() is \
        net.features.denseblock4


def test_wrap_classifier_errors():
    net = nn.Sequential(nn.Flatten(), nn.Linear(16, 2))
    with pytest.raises(ConfigError, match="not a submodule"):
        wrap_classifier(net, ["a", "b"], cam_layer="features.norm5")
    with pytest.raises(ConfigError, match="not a submodule"):
        wrap_classifier(net, ["a", "b"], cam_layer=nn.Linear(2, 2))
    with pytest.raises(ConfigError, match="unique"):
        wrap_classifier(net, ["a", "a"])
    clf = wrap_classifier(net, ["a", "b", "c"], input_size=4)
    assert clf.cam_layer() is None
    with pytest.raises(ComponentError, match="expected logits of shape"):
        clf(torch.rand(1, 1, 4, 4))
    ok = wrap_classifier(net, ["a", "b"], input_size=4, transform=xrv_range)
    assert ok(torch.rand(3, 1, 4, 4)).shape == (3, 2)


# --------------------------------------------------------------------------------------------
# torchxrayvision adapters


def test_xrv_components_are_registered():
    assert "xrv-densenet" in xcf.list_components("classifier")
    assert "xrv-resnet-ae" in xcf.list_components("latent")


@pytest.mark.parametrize(("kind", "name"), [("classifier", "xrv-densenet"), ("latent", "xrv-resnet-ae")])
def test_xrv_missing_is_one_line_component_error(monkeypatch, kind, name):
    monkeypatch.setitem(sys.modules, "torchxrayvision", None)  # hide it even where it is installed
    with pytest.raises(ComponentError) as info:
        xcf.create(kind, name)
    assert str(info.value) == "torchxrayvision is not installed; pip install 'xcf[xrv]'"


@needs_xrv
def test_xrv_densenet_untrained(tmp_path):
    filters = list(warnings.filters)
    clf = xcf.create("classifier", "xrv-densenet", weights=None).eval()
    assert warnings.filters == filters, "importing torchxrayvision changed the warning filters"
    assert len(clf.labels) == 18 and all(clf.labels) and clf.input_size == 224
    x = torch.rand(1, 1, 224, 224)
    with torch.no_grad():
        logits = clf(x)
    assert logits.shape == (1, 18) and torch.isfinite(logits).all()
    assert clf.cam_layer() is clf.model.features.norm5
    _cam_works(clf, x, target=10)


@needs_xrv
def test_xrv_densenet_calibrated_matches_torchxrayvision(tmp_path, monkeypatch):
    """A locally written weight file (no network): labels drop the empty names, and sigmoid of the
    adapter's output equals torchxrayvision's own op_norm-calibrated output."""
    import torchxrayvision as xrv

    name = "densenet121-res224-nih"
    url = xrv.models.model_urls[name]["weights_url"]
    torch.manual_seed(0)
    torch.save(xrv.models.DenseNet(weights=None).eval(), tmp_path / url.rsplit("/", 1)[-1])
    clf = xcf.create("classifier", "xrv-densenet", weights=name, cache_dir=str(tmp_path), download=False).eval()
    ref = xrv.models.DenseNet(weights=name, cache_dir=str(tmp_path)).eval()
    names = ref.pathologies
    keep = [i for i, n in enumerate(names) if n]
    assert clf.labels == tuple(names[i] for i in keep) and len(clf.labels) < len(names)
    x = torch.rand(2, 1, 224, 224)
    with torch.no_grad():
        ours = torch.sigmoid(clf(x))
        theirs = ref(x * 2048 - 1024)[:, keep]
    torch.testing.assert_close(ours, theirs, atol=2e-6, rtol=1e-4)


@needs_xrv
def test_xrv_missing_weights_is_one_line_weights_error(tmp_path):
    for kind, name in [("classifier", "xrv-densenet"), ("latent", "xrv-resnet-ae")]:
        with pytest.raises(WeightsError) as info:
            xcf.create(kind, name, cache_dir=str(tmp_path), download=False)
        msg = str(info.value)
        assert "\n" not in msg and str(tmp_path) in msg and "https://" in msg
    with pytest.raises(ConfigError, match="valid"):
        xcf.create("classifier", "xrv-densenet", weights="nope")


@needs_xrv
def test_xrv_resnet_ae_untrained():
    ae = xcf.create("latent", "xrv-resnet-ae", weights=None).eval()
    x = torch.rand(1, 1, 224, 224)
    with torch.no_grad():
        lat = ae.encode(x)
        out = ae.decode(lat)
    assert lat.z.shape == (1, 512, 3, 3) and lat.aux is None
    assert out.shape == (1, 1, 224, 224) and out.min() >= 0 and out.max() <= 1
    z = lat.z.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(ae.decode(lat.with_z(z)).sum(), z)
    assert torch.isfinite(g).all() and g.abs().sum() > 0


def test_small_cnn_stem_stride_keeps_the_cam_grid_and_round_trips():
    """stem_stride=2: the first conv strides, one pool fewer; same 14x14 CAM grid at 224 px."""
    from xcf_classifiers import SmallCNN

    torch.manual_seed(0)
    x = torch.rand(2, 1, 224, 224)
    plain = SmallCNN(labels=["a", "b"]).eval()
    fast = SmallCNN(labels=["a", "b"], stem_stride=2).eval()
    with torch.no_grad():
        assert plain.features(x).shape == fast.features(x).shape == (2, 128, 14, 14)
        assert fast(x).shape == (2, 2)
    assert fast.blocks[0][0].stride == (2, 2) and plain.blocks[0][0].stride == (1, 1)
    # the original network's config (and so its manifest entries) has no stem_stride key
    assert "stem_stride" not in plain.config() and fast.config()["stem_stride"] == 2
    again = SmallCNN(**fast.config())
    again.load_state_dict(fast.state_dict())  # same parameter shapes: weights load strictly
    with pytest.raises(ConfigError, match="stem_stride must be 1 or 2"):
        SmallCNN(stem_stride=4)
