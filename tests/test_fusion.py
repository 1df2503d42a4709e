"""BatchNorm folding and channels-last copies for the search loop (xcf.fusion,
``Method.execution``: :class:`xcf.methods.Execution`): the same function, the originals untouched, and an
explanation that agrees with the unfolded one."""

from __future__ import annotations

import pytest
import torch
from _analytic import method_with
from torch import nn
from xcf_autoencoders import NARROW_WIDTHS, SegNetAE
from xcf_classifiers import SmallCNN

import xcf
from xcf.fusion import fold_batchnorm, search_copies
from xcf.methods import Execution


def _randomize_bn(module: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial running statistics and affine parameters, so that folding has work to do."""
    g = torch.Generator().manual_seed(seed)
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.running_mean is not None:
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=g) * 0.3)
            m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
            if m.affine:
                m.weight.data.copy_(torch.rand(n, generator=g) + 0.5)
                m.bias.data.copy_(torch.randn(n, generator=g) * 0.2)
    return module.eval()


def _n_bn(module: nn.Module) -> int:
    return sum(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in module.modules())


@pytest.mark.parametrize("conv_cls,bn_cls,shape", [
    (nn.Conv2d, nn.BatchNorm2d, (2, 3, 9, 9)),
    (nn.ConvTranspose2d, nn.BatchNorm2d, (2, 3, 9, 9)),
    (nn.Conv1d, nn.BatchNorm1d, (2, 3, 17)),
])
def test_fold_is_the_same_function(conv_cls, bn_cls, shape):
    torch.manual_seed(0)
    net = _randomize_bn(nn.Sequential(conv_cls(3, 5, 3, padding=1, bias=False), bn_cls(5), nn.ReLU()))
    x = torch.randn(shape)
    ref = net(x)
    assert fold_batchnorm(net) == 1
    assert isinstance(net[1], nn.Identity) and _n_bn(net) == 0
    assert torch.allclose(net(x), ref, atol=1e-5)


def test_fold_leaves_what_it_cannot_prove():
    """Only a BatchNorm right after a convolution in a Sequential, with running statistics."""
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(1, 4, 3), nn.ReLU(), nn.BatchNorm2d(4),          # activation in between
        nn.Conv2d(4, 4, 3), nn.BatchNorm2d(4, track_running_stats=False),  # batch statistics
        nn.Conv2d(4, 4, 3), nn.BatchNorm2d(4))                     # this one folds
    _randomize_bn(net)
    assert fold_batchnorm(net) == 1
    assert [type(m).__name__ for m in net] == [
        "Conv2d", "ReLU", "BatchNorm2d", "Conv2d", "BatchNorm2d", "Conv2d", "Identity"]


class _ScaledBN(nn.BatchNorm2d):
    def forward(self, x):
        return 2 * super().forward(x)


def test_fold_leaves_subclasses_whose_forward_may_differ():
    """A subclass of a convolution or BatchNorm may override forward: not folded, not an error."""
    torch.manual_seed(0)
    net = _randomize_bn(nn.Sequential(nn.Conv2d(1, 4, 3), _ScaledBN(4)))
    x = torch.randn(2, 1, 8, 8)
    ref = net(x)
    assert fold_batchnorm(net) == 0
    assert isinstance(net[1], _ScaledBN) and torch.equal(net(x), ref)


def test_search_copies_fold_the_packs_models_and_leave_the_originals():
    torch.manual_seed(0)
    clf = _randomize_bn(SmallCNN(labels=("a", "b"), input_size=64), 1)
    ae = _randomize_bn(SegNetAE(input_size=64, widths=NARROW_WIDTHS), 2)
    clf.train()  # the caller's mode must survive too
    before = [{k: v.clone() for k, v in m.state_dict().items()} for m in (clf, ae)]
    n_bn = _n_bn(clf) + _n_bn(ae)
    (c2, a2), n = search_copies(clf, ae, fold=True, channels_last=True)
    assert c2 is not clf and a2 is not ae
    assert n == n_bn and _n_bn(c2) == _n_bn(a2) == 0  # every BatchNorm of both follows a conv
    # originals: same modules, same tensors, same mode, contiguous
    assert _n_bn(clf) + _n_bn(ae) == n_bn and clf.training
    for m, sd in zip((clf, ae), before):
        for k, v in m.state_dict().items():
            assert torch.equal(v, sd[k])
    assert all(p.is_contiguous() for p in clf.parameters())
    conv_w = [m.weight for m in c2.modules() if isinstance(m, nn.Conv2d)]
    assert conv_w and all(w.is_contiguous(memory_format=torch.channels_last) for w in conv_w)
    clf.eval()
    x = torch.rand(3, 1, 64, 64)
    with torch.no_grad():
        z = ae.encode(x)
        assert torch.allclose(a2.decode(z), ae.decode(z), atol=1e-5)
        assert torch.allclose(c2(x), clf(x), atol=1e-4)
    same, n0 = search_copies(clf, ae, fold=False, channels_last=False)
    assert same[0] is clf and same[1] is ae and n0 == 0


def _explainer(**cfg):
    torch.manual_seed(0)
    clf = _randomize_bn(SmallCNN(labels=("a", "b"), input_size=64), 3)
    ae = _randomize_bn(SegNetAE(input_size=64, widths=NARROW_WIDTHS), 4)
    method, config = method_with("seed", steps=12, lr=0.5, stop_probability=0.5, blend="residual",
                                 region_thresholds=(0.5, 0.2), level_steps=4, level_warm_start=True,
                                 **cfg)
    return xcf.Explainer(classifier=clf, latent=ae, saliency="gradcam++", method=method, config=config)


def test_folded_search_runs_on_the_copies_and_reports_the_originals(monkeypatch):
    """The loop differentiates folded channels-last copies (its gradient is the same function's:
    tests above); the explainer's own models are left as they were, and every reported
    probability is the original classifier's on the returned counterfactual. (Film-by-film
    equality with the unfolded search is not a property: Adam divides by the gradient's size, so
    float rounding in near-zero gradient components is amplified into visible differences within
    a few steps - the same happens between two batch sizes.)"""
    import xcf.optimize as optimize_mod

    seen = []
    real = optimize_mod.optimize_latent

    def spy(classifier, latent, *args, **kwargs):
        seen.append((classifier, latent))
        return real(classifier, latent, *args, **kwargs)

    monkeypatch.setattr(optimize_mod, "optimize_latent", spy)
    x = torch.rand(3, 1, 64, 64)
    targets = torch.tensor([0, 1, 0])
    ex = _explainer(fold_batchnorm=True, channels_last=True)
    n_bn = _n_bn(ex.classifier) + _n_bn(ex.latent)
    out = ex.explain_tensor(x, targets)
    assert seen and all(c is not ex.classifier and lm is not ex.latent for c, lm in seen)
    assert all(_n_bn(c) == 0 and _n_bn(lm) == 0 for c, lm in seen)
    assert _n_bn(ex.classifier) + _n_bn(ex.latent) == n_bn
    assert all(p.is_contiguous() for p in ex.classifier.parameters())
    with torch.no_grad():
        p = torch.sigmoid(ex.classifier(torch.stack([r.counterfactual for r in out])))
    for r, pr in zip(out, p):
        assert torch.allclose(r.probs_counterfactual, pr, atol=1e-6)
        assert r.metrics["validity"] == float(pr[r.target_index] < 0.5)
    seen.clear()
    _explainer().explain_tensor(x, targets)  # without the options: the originals, no copy
    assert seen and all(type(c).__name__ == "SmallCNN" and _n_bn(c) > 0 for c, _ in seen)


class _Uncopyable(SmallCNN):
    def __deepcopy__(self, memo):
        raise TypeError("holds a handle that cannot be copied")


def test_a_model_that_cannot_be_copied_is_searched_as_it_is():
    torch.manual_seed(0)
    clf = _Uncopyable(labels=("a",), input_size=64).eval()
    ae = SegNetAE(input_size=64, widths=NARROW_WIDTHS).eval()
    method, config = method_with("seed", steps=2, fold_batchnorm=True)
    ex = xcf.Explainer(classifier=clf, latent=ae, saliency="gradcam++", method=method, config=config)
    with pytest.warns(RuntimeWarning, match="could not copy .*_Uncopyable.*cannot be copied"):
        out = ex.explain_tensor(torch.rand(1, 1, 64, 64), torch.tensor([0]))
    assert out[0].steps == 2


@pytest.mark.parametrize("blend", ["none", "input", "reconstruction", "residual"])
def test_reported_probability_is_the_classifiers_on_the_returned_image(blend):
    """Validity is judged on the image the user gets. The residual blend x + m (D(z) - D(z0)) can
    leave [0, 1] where the film is near black or white; the returned counterfactual is a
    canonical image in [0, 1], so the search must classify (and stop on) that clamped image, not
    the unclamped one (which could report p < 0.5 for an image whose p is 0.66)."""
    torch.manual_seed(0)
    clf = _randomize_bn(SmallCNN(labels=("a", "b"), input_size=64), 5)
    ae = _randomize_bn(SegNetAE(input_size=64, widths=NARROW_WIDTHS), 6)
    x = torch.rand(4, 1, 64, 64)
    x[:, :, :32] = (x[:, :, :32] > 0.5).float()  # half the film at exactly 0 or 1
    method, cfg = method_with("seed", steps=15, lr=3.0, stop_probability=0.5, blend=blend, feather=2.0,
                              mask_threshold=0.2)
    ex = xcf.Explainer(classifier=clf, latent=ae, saliency="gradcam++", method=method, config=cfg)
    out = ex.explain_tensor(x, torch.tensor([0, 1, 0, 1]))
    cfs = torch.stack([r.counterfactual for r in out])
    assert cfs.min() >= 0 and cfs.max() <= 1
    with torch.no_grad():
        p = torch.sigmoid(clf(cfs))
    for r, pr in zip(out, p):
        assert torch.allclose(r.probs_counterfactual, pr, atol=1e-5), (r.status, r.probs_counterfactual, pr)


def test_bf16_autocast_runs_the_loop_in_bf16_on_cpu_and_reports_float32():
    """``Execution.autocast_bf16`` works on the CPU too (half the cost of a step on CPUs with bf16
    instructions); the loop's models see bf16, but the probabilities reported - and so validity -
    are the float32 classifier's on the returned image."""
    torch.manual_seed(0)
    clf = SmallCNN(labels=("a", "b"), input_size=64).eval()
    ae = SegNetAE(input_size=64, widths=NARROW_WIDTHS).eval()
    seen: list[torch.dtype] = []
    hook = clf.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    method, cfg = method_with("seed", steps=6, lr=1.0, stop_probability=0.5, blend="residual",
                              feather=2.0, mask_threshold=0.2, autocast_bf16=True)
    ex = xcf.Explainer(classifier=clf, latent=ae, saliency="gradcam++", method=method, config=cfg)
    out = ex.explain_tensor(torch.rand(3, 1, 64, 64), torch.tensor([0, 1, 0]))
    hook.remove()
    assert torch.bfloat16 in seen and torch.float32 in seen
    cfs = torch.stack([r.counterfactual for r in out])
    assert cfs.dtype == torch.float32
    with torch.no_grad():
        p = torch.sigmoid(clf(cfs))
    for r, pr in zip(out, p):
        assert torch.allclose(r.probs_counterfactual, pr, atol=1e-6)


@pytest.mark.parametrize("cpu_bf16", [False, True])
def test_bf16_auto_follows_the_cpu(monkeypatch, cpu_bf16):
    """``Execution(autocast_bf16="auto")`` (method "fast") uses bf16 on a CPU with bf16 instructions only."""
    import xcf.optimize

    monkeypatch.setattr(xcf.optimize, "_cpu_has_bf16", lambda: cpu_bf16)
    assert xcf.optimize.bf16_is_fast(torch.device("cpu")) is cpu_bf16
    assert xcf.get_method("fast").execution.autocast_bf16 == "auto"
    torch.manual_seed(0)
    clf = SmallCNN(labels=("a",), input_size=64).eval()
    ae = SegNetAE(input_size=64, widths=NARROW_WIDTHS).eval()
    seen: list[torch.dtype] = []
    hook = clf.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    method, cfg = method_with("seed", steps=2, autocast_bf16="auto")
    xcf.Explainer(classifier=clf, latent=ae, saliency="gradcam++", method=method,
                  config=cfg).explain_tensor(torch.rand(1, 1, 64, 64), torch.tensor([0]))
    hook.remove()
    assert (torch.bfloat16 in seen) is cpu_bf16


def test_bf16_setting_is_validated():
    from xcf.errors import ConfigError

    with pytest.raises(ConfigError, match="autocast_bf16"):
        Execution(autocast_bf16="sometimes")
    with pytest.raises(ConfigError, match="Method.execution.autocast_bf16"):
        xcf.ExplainConfig.build(autocast_bf16=True)


class _RoundsDown(SmallCNN):
    """A classifier whose bf16 logits are 20 lower than its float32 ones: under bf16 every film
    looks flipped at once, in float32 none is."""

    def forward(self, x):
        out = super().forward(x)
        return out - 20.0 if out.dtype == torch.bfloat16 else out


def test_bf16_stop_is_confirmed_in_float32():
    torch.manual_seed(0)
    clf = _RoundsDown(labels=("a", "b"), input_size=64).eval()
    ae = SegNetAE(input_size=64, widths=NARROW_WIDTHS).eval()
    method, cfg = method_with("seed", steps=3, lr=0.01, stop_probability=0.01, autocast_bf16=True)
    ex = xcf.Explainer(classifier=clf, latent=ae, saliency="gradcam++", method=method, config=cfg)
    out = ex.explain_tensor(torch.rand(2, 1, 64, 64), torch.tensor([0, 1]))
    for r, t in zip(out, (0, 1)):
        assert r.status == "ran-all-steps" and r.steps == 3
        assert r.probs_counterfactual[t] > 0.01
