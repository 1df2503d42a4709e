"""Saliency methods against independent re-computations, and their contract.

(a) The CAM family (``gradcam``, ``gradcam++``, ``hirescam``) equals the published formulas computed
here with plain autograd on a small CNN, before upsampling (``CAM.raw_map``) and after the full
post-processing; Grad-CAM++'s 1e-6 in alpha's denominator matters when gradients are tiny.
(b) The captum family equals captum's own attribution after the documented post-processing
(absolute value, Gaussian smoothing with reflect padding, per-image min-max), with the smoothing
re-implemented here as a direct 2-D convolution in numpy.
(c) Every registered saliency method: one target per sample (batch invariance, target matters),
shape/range/finiteness, all-zero gradient -> all-zero map, and the classifier left exactly as it
was (hooks, ``requires_grad``, ``.grad``, train/eval flags, buffers), also after an error raised
inside the classifier's forward.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

import xcf
from xcf import registry as xreg

S = 32  # image side used throughout


class TinyCNN(xcf.Classifier):
    """conv-BN-ReLU-pool stem, a conv-ReLU feature block (the CAM layer, 16x16 at 32 px), and a
    head (conv-ReLU, dropout) whose logit 0 reads the left half and logit 1 the right half.

    The head's conv + ReLU makes the gradients at the CAM layer vary in space and be exactly zero
    in places, so the CAM formulas are exercised beyond a global-average-pool special case.
    """

    labels = ("left", "right")

    def __init__(self, input_size: int = S, width: int = 6, head_scale: float = 1.0) -> None:
        super().__init__()
        self.input_size = input_size
        self.stem = nn.Sequential(nn.Conv2d(1, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
                                  nn.MaxPool2d(2))
        self.block = nn.Sequential(nn.Conv2d(width, width, 3, padding=1), nn.ReLU())
        self.head_conv = nn.Conv2d(width, width, 3, padding=1)
        self.dropout = nn.Dropout(0.5)
        self.fc = nn.ModuleList([nn.Linear(width, 1), nn.Linear(width, 1)])
        with torch.no_grad():
            for fc in self.fc:
                fc.weight.mul_(head_scale)
                fc.bias.mul_(head_scale)
            # non-trivial BN statistics (used in eval mode)
            self.stem[1].running_mean.uniform_(-0.2, 0.2)
            self.stem[1].running_var.uniform_(0.5, 1.5)

    def head(self, a: Tensor) -> Tensor:
        h = self.dropout(F.relu(self.head_conv(a)))
        half = h.shape[-1] // 2
        left, right = h[..., :half].mean(dim=(2, 3)), h[..., half:].mean(dim=(2, 3))
        return torch.cat([self.fc[0](left), self.fc[1](right)], dim=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.block(self.stem(x)))

    def cam_layer(self) -> nn.Module:
        return self.block


class ConstantCNN(TinyCNN):
    """Logits that do not depend on the input: every gradient is exactly zero."""

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x) * 0.0 + torch.tensor([1.0, -1.0])


class FailingCNN(TinyCNN):
    """Raises inside forward, after the CAM layer ran (its hook, if any, has fired)."""

    def forward(self, x: Tensor) -> Tensor:
        self.block(self.stem(x))
        raise RuntimeError("boom inside the classifier")


def tiny(cls: type[TinyCNN] = TinyCNN, seed: int = 0, **kwargs) -> TinyCNN:
    torch.manual_seed(seed)
    return cls(**kwargs).eval()


def images(n: int = 3, seed: int = 1) -> Tensor:
    g = torch.Generator().manual_seed(seed)
    x = 0.2 + 0.2 * torch.rand(n, 1, S, S, generator=g)
    x[:, :, 6:14, 4:12] += 0.5  # a bright blob on the left, another on the right
    x[:, :, 18:26, 20:28] += 0.3
    return x.clamp(0, 1)


def _saliency_names() -> list[str]:
    return xreg.Registry(xreg.make_plugin_manager()).list("saliency")


def build(name: str, **kwargs):
    return xreg.Registry(xreg.make_plugin_manager()).create("saliency", name, **kwargs)


#: Cheaper settings for the contract tests, passed only to factories that take them (2 CPU cores).
FAST = {"n_steps": 8, "nt_samples": 4, "window": 8, "perturbations_per_eval": 64}


def build_fast(name: str):
    reg = xreg.Registry(xreg.make_plugin_manager())
    return reg.create("saliency", name, **xreg.accepted_kwargs(reg.spec("saliency", name).factory, FAST))


# -- (a) CAM family against the published formulas ---------------------------------------------------

def reference_acts_grads(model: TinyCNN, x: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
    """``A`` at the CAM layer and ``d logit_t / dA`` with plain autograd (no hooks, no plugin code)."""
    model.eval()
    with torch.enable_grad():
        acts = model.block(model.stem(x)).detach().requires_grad_(True)
        logits = model.head(acts)
        score = logits[torch.arange(x.shape[0]), targets].sum()
        (grads,) = torch.autograd.grad(score, acts)
    return acts.detach(), grads


def ref_gradcam(a: Tensor, g: Tensor) -> Tensor:
    w = g.mean(dim=(2, 3))  # Selvaraju et al. 2017: spatial mean of the gradients
    return (w[:, :, None, None] * a).sum(dim=1)


def ref_gradcampp(a: Tensor, g: Tensor, eps: float = 1e-6) -> Tensor:
    # Chattopadhay et al. 2018 (exponential output): alpha = g^2 / (2 g^2 + sum_ab A g^3 + eps)
    denom = 2 * g**2 + a.sum(dim=(2, 3), keepdim=True) * g**3 + eps
    alpha = torch.where(g != 0, g**2 / denom, torch.zeros_like(g))
    w = (alpha * g.clamp_min(0)).sum(dim=(2, 3))
    return (w[:, :, None, None] * a).sum(dim=1)


def ref_hirescam(a: Tensor, g: Tensor) -> Tensor:
    return (g * a).sum(dim=1)  # Draelos & Carin 2020: element-wise, then sum over channels


def ref_cam_postprocess(m: Tensor, size: int) -> Tensor:
    m = F.interpolate(m.clamp_min(0)[:, None], size=(size, size), mode="bilinear", align_corners=False)
    lo = m.amin(dim=(1, 2, 3), keepdim=True)
    hi = m.amax(dim=(1, 2, 3), keepdim=True)
    return torch.where(hi > lo, (m - lo) / (hi - lo), torch.zeros_like(m))


CAM_REFS = {"gradcam": ref_gradcam, "gradcam++": ref_gradcampp, "hirescam": ref_hirescam}


@pytest.mark.parametrize("name", sorted(CAM_REFS))
def test_cam_equals_published_formula(name):
    model, x, t = tiny(), images(), torch.tensor([0, 1, 1])
    a, g = reference_acts_grads(model, x, t)
    assert (g == 0).any() and (g != 0).any() and g.abs().amax() > 0  # the head makes g sparse
    ref = CAM_REFS[name](a, g)
    method = build(name)
    raw = method.raw_map(model, x, t)
    assert raw.shape == (3, S // 2, S // 2)
    assert (raw - ref).abs().max() < 1e-4
    assert (raw - ref).abs().max() <= 1e-4 * ref.abs().max()
    out = method(model, x, t)
    assert out.shape == (3, 1, S, S)
    assert (out - ref_cam_postprocess(ref, S)).abs().max() < 1e-4


def test_gradcampp_eps_matters_when_gradients_are_tiny():
    from xcf_gradcam import GradCAMPlusPlus

    model, x, t = tiny(head_scale=1e-4), images(), torch.tensor([0, 1, 0])
    a, g = reference_acts_grads(model, x, t)
    nz = g[g != 0].abs()
    assert nz.max() < 1e-4  # g^2 << 1e-6: alpha is dominated by eps
    ref = ref_gradcampp(a, g, eps=1e-6)
    ref0 = ref_gradcampp(a, g, eps=0.0)
    raw = GradCAMPlusPlus().raw_map(model, x, t)  # default eps = 1e-6
    assert (raw - ref).abs().max() <= 1e-4 * ref.abs().max()
    raw0 = GradCAMPlusPlus(eps=0.0).raw_map(model, x, t)
    assert (raw0 - ref0).abs().max() <= 1e-4 * ref0.abs().max()
    out, out0 = GradCAMPlusPlus()(model, x, t), GradCAMPlusPlus(eps=0.0)(model, x, t)
    assert (out - ref_cam_postprocess(ref, S)).abs().max() < 1e-4
    assert (out0 - ref_cam_postprocess(ref0, S)).abs().max() < 1e-4
    # eps=1e-6 vs eps=0 give visibly different maps here
    assert (out - out0).abs().max() > 0.05
    # ... and eps is negligible only once g^2 >> 1e-6. Note that already at head_scale=1 (g ~ 1e-3,
    # typical after global average pooling) the maps differ by ~0.16: the 1e-6 is part of the method.
    big = tiny(head_scale=1e3)
    same = (GradCAMPlusPlus()(big, x, t) - GradCAMPlusPlus(eps=0.0)(big, x, t)).abs().max()
    assert same < 1e-3


# -- (b) captum family against captum's raw attribution -----------------------------------------------

def ref_smooth(maps: np.ndarray, sigma: float) -> np.ndarray:
    """Direct (non-separable) 2-D Gaussian convolution with numpy's 'reflect' padding (d c b | a b c d),
    radius int(4 sigma + 0.5)."""
    if sigma == 0:
        return maps
    r = int(4.0 * sigma + 0.5)
    t = np.arange(-r, r + 1, dtype=np.float64)
    k1 = np.exp(-0.5 * (t / sigma) ** 2)
    k2 = np.outer(k1, k1) / k1.sum() ** 2
    out = np.empty_like(maps, dtype=np.float64)
    H, W = maps.shape[-2:]
    for idx in np.ndindex(*maps.shape[:-2]):
        p = np.pad(maps[idx].astype(np.float64), r, mode="reflect")
        win = np.lib.stride_tricks.sliding_window_view(p, (2 * r + 1, 2 * r + 1))
        out[idx] = np.einsum("ijkl,kl->ij", win, k2)[:H, :W]
    return out


def ref_attribution_postprocess(raw: Tensor, sigma: float) -> Tensor:
    m = ref_smooth(np.abs(raw.detach().double().numpy()), sigma)
    lo = m.min(axis=(1, 2, 3), keepdims=True)
    hi = m.max(axis=(1, 2, 3), keepdims=True)
    out = np.where(hi > lo, (m - lo) / np.where(hi > lo, hi - lo, 1.0), 0.0)
    return torch.from_numpy(out).float()


@pytest.mark.parametrize("sigma", [0.0, 0.7, 1.5, 4.0])
def test_gaussian_smooth_equals_direct_convolution(sigma):
    from xcf_captum import gaussian_smooth

    maps = torch.rand(2, 1, 20, 17, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    out = gaussian_smooth(maps, sigma)
    np.testing.assert_allclose(out.numpy(), ref_smooth(maps.numpy(), sigma), atol=1e-10)


def test_gaussian_smooth_larger_than_image():
    from xcf_captum import gaussian_smooth

    const = torch.full((1, 1, 5, 3), 0.25)
    torch.testing.assert_close(gaussian_smooth(const, 10.0), const)  # radius capped, renormalized
    m = gaussian_smooth(torch.rand(1, 1, 5, 3), 10.0)
    assert m.shape == (1, 1, 5, 3) and (m >= 0).all()


def _captum_raw(name: str, model: nn.Module, x: Tensor, t: Tensor) -> Tensor:
    from captum.attr import IntegratedGradients, NoiseTunnel, Occlusion, Saliency

    xr = x.clone().requires_grad_(True)
    if name == "saliency":
        return Saliency(model).attribute(xr, target=t, abs=True)
    if name == "integrated-gradients":
        return IntegratedGradients(model).attribute(xr, baselines=0.0, target=t, n_steps=16)
    if name == "smoothgrad":  # documented: each sample's noise from a generator seeded with `seed`
        parts = []
        for i in range(x.shape[0]):
            torch.manual_seed(7)
            parts.append(NoiseTunnel(Saliency(model)).attribute(
                x[i:i + 1].clone().requires_grad_(True), nt_type="smoothgrad", nt_samples=6,
                stdevs=0.1, target=t[i:i + 1], abs=True))
        return torch.cat(parts)
    if name == "occlusion":  # default window: 1/8 of the side (4 px at 32 px), stride half of it
        return Occlusion(model).attribute(x, sliding_window_shapes=(1, 4, 4), strides=(1, 2, 2),
                                          baselines=0.0, target=t, perturbations_per_eval=75)
    raise AssertionError(name)


CAPTUM_ARGS = {
    "saliency": {},
    "integrated-gradients": {"n_steps": 16},
    "smoothgrad": {"nt_samples": 6, "stdevs": 0.1, "seed": 7},
    "occlusion": {"perturbations_per_eval": 75},
}


@pytest.mark.parametrize("sigma", [0.0, 1.5])
@pytest.mark.parametrize("name", sorted(CAPTUM_ARGS))
def test_captum_family_equals_captum_after_postprocessing(name, sigma):
    model, x, t = tiny(), images(2), torch.tensor([0, 1])
    expected_raw = _captum_raw(name, model, x, t).detach()
    method = build(name, sigma=sigma, **CAPTUM_ARGS[name])
    torch.testing.assert_close(method.raw_map(model, x, t), expected_raw, atol=1e-6, rtol=1e-5)
    out = method(model, x, t)
    expected = ref_attribution_postprocess(expected_raw, sigma)
    assert out.shape == (2, 1, S, S) and out.dtype == torch.float32
    assert (out - expected).abs().max() < 1e-4


def test_captum_family_attributes_logits_not_probabilities():
    from captum.attr import IntegratedGradients

    model, x, t = tiny(), images(1), torch.tensor([0])
    method = build("integrated-gradients", n_steps=16, sigma=0.0)
    ours = method.raw_map(model, x, t)

    def probs(z: Tensor) -> Tensor:
        return torch.sigmoid(model(z))

    on_probs = IntegratedGradients(probs).attribute(x.clone().requires_grad_(True), baselines=0.0,
                                                    target=t, n_steps=16)
    assert not torch.allclose(ours, on_probs, atol=1e-4)


def test_invalid_parameters_and_inputs_are_reported():
    from xcf.errors import ConfigError, UnknownLabelError

    with pytest.raises(ConfigError, match="sigma"):
        build("saliency", sigma=-1)
    with pytest.raises(ConfigError, match="n_steps"):
        build("integrated-gradients", n_steps=0)
    with pytest.raises(ConfigError, match="window"):
        build("occlusion", window=64)(tiny(), images(1), torch.tensor([0]))
    with pytest.raises(ConfigError, match="one finding index per sample"):
        build("saliency")(tiny(), images(2), torch.tensor([0]))
    with pytest.raises(UnknownLabelError, match="left, right"):
        build("saliency")(tiny(), images(1), torch.tensor([2]))


# -- (c) contract of every registered saliency method -----------------------------------------------

def _hook_dicts(module: nn.Module) -> list[dict]:
    return [module._forward_hooks, module._forward_pre_hooks, module._backward_hooks,
            getattr(module, "_backward_pre_hooks", {})]


def assert_no_hooks(model: nn.Module) -> None:
    for name, m in model.named_modules():
        assert all(len(d) == 0 for d in _hook_dicts(m)), f"hook left on {name or 'root'}"
    from torch.nn.modules import module as mod

    for attr in ("_global_forward_hooks", "_global_forward_pre_hooks", "_global_backward_hooks",
                 "_global_backward_pre_hooks"):
        assert len(getattr(mod, attr, {})) == 0, attr


def snapshot(model: nn.Module) -> dict:
    return {
        "training": [m.training for m in model.modules()],
        "requires_grad": [p.requires_grad for p in model.parameters()],
        "grad": [p.grad for p in model.parameters()],
        "grad_values": [None if p.grad is None else p.grad.clone() for p in model.parameters()],
        "params": [p.detach().clone() for p in model.parameters()],
        "buffers": [b.clone() for b in model.buffers()],
    }


def assert_same_state(model: nn.Module, before: dict) -> None:
    after = snapshot(model)
    assert after["training"] == before["training"]
    assert after["requires_grad"] == before["requires_grad"]
    assert all(a is b for a, b in zip(after["grad"], before["grad"])), ".grad object replaced"
    for a, b in zip(after["grad_values"], before["grad_values"]):
        assert (a is None and b is None) or torch.equal(a, b)
    assert all(torch.equal(a, b) for a, b in zip(after["params"], before["params"]))
    assert all(torch.equal(a, b) for a, b in zip(after["buffers"], before["buffers"]))


def messy_state(model: TinyCNN) -> TinyCNN:
    """Train mode with one submodule in eval, mixed requires_grad, some existing .grad tensors."""
    model.train()
    model.head_conv.eval()
    model.stem[0].weight.requires_grad_(False)
    model.fc[1].weight.grad = torch.full_like(model.fc[1].weight, 3.0)
    model.block[0].bias.grad = torch.zeros_like(model.block[0].bias)
    return model


@pytest.fixture(scope="module")
def trained_like():
    return tiny()


@pytest.mark.parametrize("name", _saliency_names())
def test_one_target_per_sample_and_batch_invariance(name, trained_like):
    model, x, t = trained_like, images(3), torch.tensor([0, 1, 0])
    method = build_fast(name)
    out = method(model, x, t)
    assert out.shape == (3, 1, S, S) and out.dtype == torch.float32
    assert torch.isfinite(out).all() and out.min() >= 0 and out.max() <= 1
    assert out.flatten(1).amax(dim=1).gt(0.99).all()  # non-degenerate: each map reaches 1
    for i in range(3):
        alone = method(model, x[i:i + 1], t[i:i + 1])
        assert (alone - out[i:i + 1]).abs().max() < 1e-4, f"sample {i} depends on the batch"
    # the target matters: the same image, the other finding, another map
    other = method(model, x, 1 - t)
    assert ((other - out).abs().flatten(1).amax(dim=1) > 0.05).all()
    # a batch mixing targets equals the per-target batches row by row
    zeros = method(model, x, torch.zeros(3, dtype=torch.long))
    assert (zeros[[0, 2]] - out[[0, 2]]).abs().max() < 1e-4


@pytest.mark.parametrize("name", _saliency_names())
def test_zero_gradient_gives_zero_map(name):
    model, x = tiny(ConstantCNN), images(2)
    out = build_fast(name)(model, x, torch.tensor([0, 1]))
    assert out.shape == (2, 1, S, S)
    assert torch.isfinite(out).all() and (out == 0).all()


@pytest.mark.parametrize("name", _saliency_names())
def test_classifier_left_exactly_as_before(name):
    model = messy_state(tiny())
    before = snapshot(model)
    x = images(2)
    x_before = x.clone()
    out = build_fast(name)(model, x, torch.tensor([1, 0]))
    assert torch.isfinite(out).all()
    assert_no_hooks(model)
    assert_same_state(model, before)
    assert torch.equal(x, x_before) and not x.requires_grad and x.grad is None


@pytest.mark.parametrize("name", _saliency_names())
def test_classifier_left_exactly_as_before_after_error(name):
    model = messy_state(tiny(FailingCNN))
    before = snapshot(model)
    with pytest.raises(RuntimeError, match="boom inside the classifier"):
        build_fast(name)(model, images(2), torch.tensor([0, 1]))
    assert_no_hooks(model)
    assert_same_state(model, before)


@pytest.mark.parametrize("name", _saliency_names())
def test_works_under_no_grad(name, trained_like):
    x, t = images(1), torch.tensor([1])
    method = build_fast(name)
    with torch.no_grad():
        out = method(trained_like, x, t)
    assert (out - method(trained_like, x, t)).abs().max() < 1e-5


def test_smoothgrad_seed_is_local():
    method = build("smoothgrad", nt_samples=4, seed=3)
    model, x, t = tiny(), images(1), torch.tensor([0])
    torch.manual_seed(123)
    state = torch.random.get_rng_state()
    a = method(model, x, t)
    assert torch.equal(torch.random.get_rng_state(), state)  # global generator untouched
    assert torch.equal(a, method(model, x, t))  # reproducible
    assert not torch.equal(a, build("smoothgrad", nt_samples=4, seed=4)(model, x, t))


def test_gated_saliency_is_the_gradient_inside_the_seed_mask_rescaled():
    from xcf_captum.gated import GatedSaliency

    model, x, t = tiny(), images(3), torch.tensor([0, 1, 0])
    grad, cam = build("saliency")(model, x, t), build("gradcam++")(model, x, t)
    inside = cam > 0.5
    assert inside.flatten(1).any(1).all() and (~inside).flatten(1).any(1).all()  # a real gate
    out = GatedSaliency(margin=0)(model, x, t)
    assert (out[~inside] == 0).all()  # nothing outside the seed's mask
    expect = grad * inside
    expect = expect / expect.flatten(1).amax(1).view(-1, 1, 1, 1)
    assert (out - expect).abs().max() < 1e-6
    assert torch.allclose(out.flatten(1).amax(1), torch.ones(3))
    # every region s > level is a subset of the seed's mask, and smaller for a higher level
    assert ((out > 0.35) & ~inside).sum() == 0 and (out > 0.5).sum() < (out > 0.1).sum()
    # the registered one keeps a margin (4 px by default; 1 here, the test images are 32 px):
    # nonzero only where the whole 3x3 square around the pixel is in the seed's mask
    eroded = GatedSaliency(margin=1)(model, x, t)
    inner = -F.max_pool2d(-inside.float(), 3, stride=1, padding=1) > 0.5
    assert (eroded[~inner] == 0).all() and (eroded[inner] > 0).any() and inner.sum() < inside.sum()
    assert build("saliency-in-gradcam++").margin == 4


def test_gated_saliency_keeps_the_inner_map_where_the_gate_is_empty():
    from xcf_captum.gated import GatedSaliency

    class Empty(xcf.SaliencyMethod):
        def __call__(self, classifier, x, targets):
            return torch.zeros(x.shape[0], 1, x.shape[-2], x.shape[-1])

    model, x, t = tiny(), images(2), torch.tensor([0, 1])
    grad = build("saliency")(model, x, t)
    assert torch.equal(GatedSaliency(gate=Empty())(model, x, t), grad)
    with pytest.raises(ValueError, match="gate_threshold must be in"):
        GatedSaliency(gate_threshold=1.0)
    with pytest.raises(ValueError, match="margin must be a whole number"):
        GatedSaliency(margin=-1)
