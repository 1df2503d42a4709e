"""The four component interfaces of xcf.

Canonical image everywhere: a ``torch.float32`` tensor of shape ``(B, 1, H, W)`` with values in
``[0, 1]`` (grey). Every component takes and returns that; any other convention (ImageNet-normalized
RGB, torchxrayvision's ``[-1024, 1024]``) is converted *inside* the component that needs it. The core
resizes images to a component's ``input_size`` before calling it.

Subclasses set ``labels`` and ``input_size`` as class or instance attributes; the base classes'
``__init__`` takes no required arguments, so a third party's component is a plain subclass.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Any

from torch import Tensor, nn

__all__ = ["Classifier", "LatentModel", "Latent", "SaliencyMethod", "LocalityLoss"]


class Classifier(nn.Module, abc.ABC):
    """A multi-label image classifier.

    Attributes:
        labels: Finding names, in logit order.
        input_size: Side length (pixels) of the square canonical images ``forward`` expects.
    """

    labels: tuple[str, ...] = ()
    input_size: int = 224

    @abc.abstractmethod
    def forward(self, x: Tensor) -> Tensor:
        """Classify canonical images.

        Args:
            x: ``(B, 1, input_size, input_size)`` float32 in ``[0, 1]``.

        Returns:
            Logits ``(B, K)`` with ``K == len(labels)``; probabilities are ``sigmoid(logits)``.
        """

    def cam_layer(self) -> nn.Module | None:
        """The feature block that CAM-family saliency methods hook, or ``None`` if there is none.

        It must not be a module whose output is modified in place afterwards (for example
        DenseNet's ``norm5``, which is followed by an in-place ReLU).
        """
        return None


@dataclass
class Latent:
    """A latent code.

    Attributes:
        z: The tensor that the optimizer changes, batch first ``(B, ...)``.
        aux: Anything the decoder also needs that stays fixed (e.g. SegNet pooling indices): a
            tensor, a list/tuple/dict of tensors, or ``None``. Tensors are batch first.
    """

    z: Tensor
    aux: Any = None

    def select(self, index: Tensor | slice | list[int]) -> Latent:
        """The latent of a subset of the batch (``index`` along dimension 0, also in ``aux``)."""
        return Latent(self.z[index], _index_batch(self.aux, index))

    def detach(self) -> Latent:
        """A copy whose tensors are detached from any graph."""
        return Latent(self.z.detach(), _map_tensors(self.aux, lambda t: t.detach()))

    def with_z(self, z: Tensor) -> Latent:
        """The same ``aux`` with another ``z``."""
        return Latent(z, self.aux)


def _map_tensors(obj: Any, fn) -> Any:
    if isinstance(obj, Tensor):
        return fn(obj)
    if isinstance(obj, (list, tuple)):
        return type(obj)(_map_tensors(o, fn) for o in obj)
    if isinstance(obj, dict):
        return {k: _map_tensors(v, fn) for k, v in obj.items()}
    return obj


def _index_batch(obj: Any, index: Tensor | slice | list[int]) -> Any:
    return _map_tensors(obj, lambda t: t[index])


class LatentModel(nn.Module, abc.ABC):
    """An encoder/decoder pair whose latent the optimizer searches.

    Attributes:
        input_size: Side length (pixels) of the square canonical images it encodes and decodes.
    """

    input_size: int = 224

    @abc.abstractmethod
    def encode(self, x: Tensor) -> Latent:
        """Encode ``(B, 1, S, S)`` images in ``[0, 1]`` to a :class:`Latent` (a VAE returns its mean)."""

    @abc.abstractmethod
    def decode(self, latent: Latent) -> Tensor:
        """Decode a :class:`Latent` to ``(B, 1, S, S)`` images in ``[0, 1]``; differentiable in ``z``."""

    def forward(self, x: Tensor) -> Tensor:
        """Reconstruct: ``decode(encode(x))``."""
        return self.decode(self.encode(x))


class SaliencyMethod(abc.ABC):
    """Where a classifier looks for a finding.

    Implementations must leave no hooks registered and no ``requires_grad`` flags changed after the
    call, also when it raises.
    """

    @abc.abstractmethod
    def __call__(self, classifier: Classifier, x: Tensor, targets: Tensor) -> Tensor:
        """Saliency maps.

        Args:
            classifier: The classifier to explain.
            x: ``(B, 1, S, S)`` canonical images, ``S == classifier.input_size``.
            targets: ``(B,)`` long, one finding index per sample.

        Returns:
            ``(B, 1, S, S)`` float32 in ``[0, 1]``.
        """


class LocalityLoss(abc.ABC):
    """A per-sample penalty on changing an image, shaped by a saliency map.

    The loss owns its threshold or weighting of the saliency map.
    """

    @abc.abstractmethod
    def __call__(self, x: Tensor, x_ref: Tensor, saliency: Tensor) -> Tensor:
        """Per-sample loss.

        Args:
            x: ``(B, 1, S, S)`` the current image (differentiable).
            x_ref: ``(B, 1, S, S)`` the reference (the initial reconstruction).
            saliency: ``(B, 1, S, S)`` in ``[0, 1]``.

        Returns:
            ``(B,)`` non-negative, zero when ``x == x_ref``.
        """

    def mask(self, saliency: Tensor) -> Tensor:
        """The region this loss treats as "inside" (bool, same shape as ``saliency``); used for
        figures and metrics. Default: ``saliency > 0.5``."""
        return saliency > 0.5
