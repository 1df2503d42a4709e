"""Explain your own classifier without writing a plugin: :func:`wrap_classifier`.

::

    import torchvision
    from xcf_classifiers.wrap import imagenet_rgb, wrap_classifier

    net = torchvision.models.densenet121(num_classes=5)
    net.load_state_dict(torch.load("mine.pt", weights_only=True))
    clf = wrap_classifier(net, labels=["Cardiomegaly", ...], cam_layer="features.denseblock4",
                          transform=imagenet_rgb)
    cf = xcf.explain("film.png", "Cardiomegaly", classifier=clf, latent="segnet-ae")
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from xcf import Classifier
from xcf.errors import ComponentError, ConfigError

__all__ = ["WrappedClassifier", "wrap_classifier", "imagenet_rgb", "xrv_range", "IMAGENET_MEAN", "IMAGENET_STD"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

Transform = Callable[[Tensor], Tensor]


def imagenet_rgb(x: Tensor) -> Tensor:
    """Canonical grey ``(B, 1, S, S)`` in ``[0, 1]`` -> ``(B, 3, S, S)`` ImageNet-normalized RGB
    (the grey channel repeated, then ``(x - mean) / std`` per channel)."""
    mean = torch.tensor(IMAGENET_MEAN, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x.expand(-1, 3, -1, -1) - mean) / std


def xrv_range(x: Tensor) -> Tensor:
    """Canonical ``(B, 1, S, S)`` in ``[0, 1]`` -> torchxrayvision's ``[-1024, 1024]``
    (``x * 2048 - 1024``, same shape; Cohen et al. 2022)."""
    return x * 2048.0 - 1024.0


class WrappedClassifier(Classifier):
    """An :class:`xcf.Classifier` around any module that maps images to logits.

    Built by :func:`wrap_classifier`; the wrapped module is the submodule ``module`` (so
    ``.eval()``, ``.to()`` and ``state_dict`` reach it; its keys gain the prefix ``module.``).
    """

    def __init__(self, module: nn.Module, labels: Sequence[str], input_size: int = 224,
                 cam_layer: nn.Module | str | None = None, transform: Transform | None = None) -> None:
        super().__init__()
        if not isinstance(module, nn.Module):
            raise ConfigError(f"wrap_classifier needs a torch.nn.Module, got {type(module).__name__}")
        if isinstance(labels, str):
            raise ConfigError("wrap_classifier labels must be a sequence of finding names, not one string")
        self.labels = tuple(str(label) for label in labels)
        if not self.labels:
            raise ConfigError("wrap_classifier needs at least one label")
        if len(set(self.labels)) != len(self.labels):
            raise ConfigError(f"wrap_classifier labels must be unique, got {list(self.labels)}")
        self.input_size = int(input_size)
        if self.input_size < 1:
            raise ConfigError(f"wrap_classifier input_size must be positive, got {input_size}")
        if transform is not None and not callable(transform):
            raise ConfigError(f"wrap_classifier transform must be callable, got {type(transform).__name__}")
        self.module = module
        self.transform = transform
        self._cam_path = _resolve_cam_layer(module, cam_layer)

    def forward(self, x: Tensor) -> Tensor:
        """Logits ``(B, K)`` of canonical images ``x`` ``(B, 1, S, S)`` in ``[0, 1]``."""
        h = self.transform(x) if self.transform is not None else x
        out = self.module(h)
        if not isinstance(out, Tensor) or out.ndim != 2 or out.shape != (x.shape[0], len(self.labels)):
            got = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
            raise ComponentError(
                f"wrapped {type(self.module).__name__} returned {got}, expected logits of shape "
                f"({x.shape[0]}, {len(self.labels)}) (batch, labels)")
        return out

    def cam_layer(self) -> nn.Module | None:
        """The module given as ``cam_layer`` (looked up in the wrapped module), or ``None``."""
        if self._cam_path is None:
            return None
        return self.module.get_submodule(self._cam_path) if self._cam_path else self.module

    def extra_repr(self) -> str:
        t = getattr(self.transform, "__name__", None) or type(self.transform).__name__
        return (f"labels={list(self.labels)}, input_size={self.input_size}, "
                f"cam_layer={self._cam_path!r}, transform={t if self.transform is not None else None}")


def _resolve_cam_layer(module: nn.Module, cam_layer: nn.Module | str | None) -> str | None:
    """The dotted path of ``cam_layer`` inside ``module`` ("" for the module itself)."""
    if cam_layer is None:
        return None
    if isinstance(cam_layer, str):
        try:
            module.get_submodule(cam_layer)
        except AttributeError:
            children = ", ".join(n for n, _ in module.named_children()) or "(none)"
            raise ConfigError(
                f"cam_layer '{cam_layer}' is not a submodule of the wrapped {type(module).__name__}; "
                f"its top-level children are: {children}") from None
        return cam_layer
    if isinstance(cam_layer, nn.Module):
        for name, sub in module.named_modules(remove_duplicate=False):
            if sub is cam_layer:
                return name
        raise ConfigError(f"cam_layer {type(cam_layer).__name__} is not a submodule of the wrapped "
                          f"{type(module).__name__}; pass one of its modules or a dotted path")
    raise ConfigError(f"cam_layer must be a module, a dotted path string or None, got {type(cam_layer).__name__}")


def wrap_classifier(module: nn.Module, labels: Sequence[str], input_size: int = 224,
                    cam_layer: nn.Module | str | None = None,
                    transform: Transform | None = None) -> Classifier:
    """Make any image-to-logits module an :class:`xcf.Classifier`.

    Args:
        module: Maps ``transform(x)`` to logits ``(B, K)`` (not probabilities; multi-label, so
            probabilities are ``sigmoid(logits)``).
        labels: The ``K`` finding names, in logit order.
        input_size: Side length in pixels the module expects; xcf resizes images to it.
        cam_layer: The feature block CAM-family saliency hooks: a submodule of ``module`` or its
            dotted path (``"features.denseblock4"``, ``"layer4"``). Its output must not be modified
            in place later in ``module``'s forward (e.g. torchvision DenseNet's ``features.norm5``,
            whose output the forward passes through an in-place ReLU: use
            ``"features.denseblock4"`` there, or ``xcf_classifiers.DenseNet121``). ``None``: only
            gradient-based saliency methods work.
        transform: Converts canonical images ``(B, 1, S, S)`` in ``[0, 1]`` to what ``module``
            expects, differentiably, e.g. :func:`imagenet_rgb` or :func:`xrv_range`. ``None``
            passes the canonical image unchanged.

    Returns:
        A :class:`WrappedClassifier`, in the module's current train/eval mode (call ``.eval()``
        before explaining if the module has batch norm or dropout; xcf's explainer does).

    Raises:
        xcf.errors.ConfigError: ``cam_layer`` is not in ``module``, labels are empty or repeated,
            or ``transform`` is not callable.
    """
    return WrappedClassifier(module, labels, input_size=input_size, cam_layer=cam_layer, transform=transform)
