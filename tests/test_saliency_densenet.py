"""The DenseNet-121 CAM-layer pitfall, shown on torchvision's model (random weights, 64 px).

``DenseNet.forward`` ends with ``F.relu(self.features(x), inplace=True)``, and ``features`` ends with
``norm5``. A CAM hook on ``norm5`` captures a tensor that this ReLU then overwrites in place. There
is no autograd error (BatchNorm's backward does not need its output), but the CAM silently receives
the *post*-ReLU activations and the gradient with respect to them, instead of ``norm5``'s output and
its gradient: Grad-CAM and Grad-CAM++ change (their channel weights average gradients that the ReLU
would have zeroed), HiResCAM does not (``g * 1[A > 0] * A == g * relu(A)``). ``denseblock4``'s output
is only read by ``norm5``, so it is the correct ``cam_layer()``: its maps are the same whether the
forward uses an in-place ReLU or not.

The re-computation "with a non-inplace ReLU" patches ``torch.nn.functional.relu`` (which
``nn.ReLU`` also calls) to ignore ``inplace=True``; the values are identical, only the in-place
write is gone.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import Tensor, nn
from xcf_gradcam.cam import normalize_maps

import xcf
from xcf import registry as xreg
from xcf.errors import ComponentError, WeightsError

SIZE = 64
LABELS = ("Cardiomegaly", "Edema", "Effusion")
CAMS = ("gradcam", "gradcam++", "hirescam")


class TorchvisionDenseNet(xcf.Classifier):
    """torchvision's DenseNet-121 as an xcf classifier, with a chosen CAM layer (test only)."""

    labels = LABELS
    input_size = SIZE

    def __init__(self, net: nn.Module, layer: str) -> None:
        super().__init__()
        self.net = net
        self.layer = layer

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x.expand(-1, 3, -1, -1))  # torchvision's forward, in-place ReLU included

    def cam_layer(self) -> nn.Module:
        return getattr(self.net.features, self.layer)


@pytest.fixture(scope="module")
def densenet() -> nn.Module:
    torch.manual_seed(0)
    net = torchvision.models.densenet121(weights=None, num_classes=len(LABELS))
    with torch.no_grad():  # non-trivial eval-mode statistics, so norm5 is not the identity
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.8, 1.2)
    return net.eval()


@pytest.fixture(scope="module")
def batch() -> tuple[Tensor, Tensor]:
    x = torch.rand(2, 1, SIZE, SIZE, generator=torch.Generator().manual_seed(1))
    return x, torch.tensor([0, 2])


@contextlib.contextmanager
def non_inplace_relu() -> Iterator[None]:
    relu = F.relu

    def relu_not_inplace(input: Tensor, inplace: bool = False) -> Tensor:
        return relu(input, inplace=False)

    F.relu = relu_not_inplace
    try:
        yield
    finally:
        F.relu = relu


def cam_output_modified_in_place(clf: xcf.Classifier, x: Tensor) -> bool:
    """Whether the tensor ``cam_layer()`` returns is written in place later in ``forward``."""
    seen: list[tuple[Tensor, int]] = []
    handle = clf.cam_layer().register_forward_hook(lambda _m, _i, out: seen.append((out, out._version)))
    try:
        with torch.no_grad():
            clf(x)
    finally:
        handle.remove()
    out, version = seen[-1]
    return out._version != version


def cam_maps(clf: xcf.Classifier, x: Tensor, t: Tensor) -> dict[str, tuple[Tensor, Tensor]]:
    """name -> (raw map at the layer's resolution, post-processed map) for the three CAMs.

    One forward/backward serves all three: they share the CAM template's activations and gradients
    and differ only in ``weighted_map`` (the post-processing is the template's, as in ``__call__``).
    """
    methods = {name: xcf.create("saliency", name) for name in CAMS}
    acts, grads = methods["gradcam"].activations_and_gradients(clf, x, t)
    out = {}
    for name, method in methods.items():
        raw = method.weighted_map(acts, grads)
        out[name] = (raw, normalize_maps(raw, tuple(x.shape[-2:])))
    return out


def assert_same_maps(clf: xcf.Classifier, x: Tensor, t: Tensor) -> None:
    """The CAM maps equal a re-computation whose forward uses no in-place ReLU."""
    got = cam_maps(clf, x, t)
    with non_inplace_relu():
        ref = cam_maps(clf, x, t)
    for name in CAMS:
        assert got[name][0].abs().max() > 0, name
        torch.testing.assert_close(got[name][0], ref[name][0], atol=1e-6, rtol=1e-5, msg=name)
        torch.testing.assert_close(got[name][1], ref[name][1], atol=1e-5, rtol=1e-5, msg=name)


def test_denseblock4_is_unaffected_by_the_inplace_relu(densenet, batch):
    clf, (x, t) = TorchvisionDenseNet(densenet, "denseblock4"), batch
    assert not cam_output_modified_in_place(clf, x)
    assert_same_maps(clf, x, t)
    # the template's own call gives the same post-processed map
    full = xcf.create("saliency", "gradcam++")(clf, x, t)
    assert full.shape == (2, 1, SIZE, SIZE)
    torch.testing.assert_close(full, cam_maps(clf, x, t)["gradcam++"][1])


def test_norm5_is_the_pitfall(densenet, batch):
    """norm5's output is overwritten by DenseNet's in-place ReLU: autograd raises no error, so the
    CAM base detects the in-place change (tensor version counter) and refuses with a message that
    names the pitfall, instead of silently returning maps of the wrong tensor."""
    clf, (x, t) = TorchvisionDenseNet(densenet, "norm5"), batch
    assert cam_output_modified_in_place(clf, x)
    for name in CAMS:
        with pytest.raises(ComponentError, match="modified in place"):
            xcf.create("saliency", name)(clf, x, t)
    with non_inplace_relu():  # without the in-place ReLU the same layer is fine
        ref = cam_maps(clf, x, t)
    assert all(torch.isfinite(ref[name][0]).all() for name in CAMS)
    # what the CAM actually received on norm5: the post-ReLU activations (no negative values)
    seen: list[Tensor] = []
    h = clf.cam_layer().register_forward_hook(lambda _m, _i, out: seen.append(out))
    try:
        with torch.no_grad():
            clf(x)
    finally:
        h.remove()
    assert seen[-1].min() >= 0
    with torch.no_grad():
        assert densenet.features(x.expand(-1, 3, -1, -1)).min() < 0


def test_registered_densenet121_cam_layer():
    """The plugin's densenet121 (when present) picks a CAM layer that is not modified in place."""
    reg = xreg.Registry(xreg.make_plugin_manager())
    if "densenet121" not in reg.list("classifier"):
        pytest.skip("no 'densenet121' classifier registered")
    factory = reg.spec("classifier", "densenet121").factory
    kwargs = xreg.accepted_kwargs(factory, {"labels": list(LABELS), "input_size": SIZE})
    try:
        clf = reg.create("classifier", "densenet121", **kwargs)
    except WeightsError as exc:
        pytest.skip(f"densenet121 weights unavailable: {exc}")
    clf.eval()
    S = clf.input_size
    x = torch.rand(1, 1, S, S, generator=torch.Generator().manual_seed(2))
    t = torch.tensor([len(clf.labels) - 1])
    assert clf.cam_layer() is not None
    assert not cam_output_modified_in_place(clf, x)
    assert_same_maps(clf, x, t)
