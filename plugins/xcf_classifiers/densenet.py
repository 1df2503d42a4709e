"""DenseNet-121, the seed's classifier architecture, for canonical grey images.

Huang, Liu, van der Maaten & Weinberger, "Densely Connected Convolutional Networks", CVPR 2017.
The layers are torchvision's ``densenet121`` (built with ``weights=None``: nothing is downloaded),
so a torchvision-format state dict loads as is.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
import torchvision
from torch import Tensor, nn

from xcf import Classifier
from xcf.errors import ConfigError

from .small_cnn import CHEXPERT5
from .wrap import IMAGENET_MEAN, IMAGENET_STD

__all__ = ["DenseNet121", "INPUT_MODES"]

#: ``in_channels`` modes of :class:`DenseNet121`.
INPUT_MODES = ("imagenet-rgb", "grey")


class DenseNet121(Classifier):
    """DenseNet-121 multi-label classifier taking canonical ``(B, 1, S, S)`` images in ``[0, 1]``.

    Input conversion happens inside :meth:`forward`:

    - ``in_channels="imagenet-rgb"`` (default, as the seed): the grey image is repeated to three
      channels and normalized with the ImageNet mean/std, so ImageNet-pretrained or seed-style
      checkpoints (torchvision layout) load unchanged.
    - ``in_channels="grey"``: the first convolution takes one channel; the input is standardized
      with mean 0.5 and std 0.25.

    The layers are those of :func:`torchvision.models.densenet121` (attributes ``features`` and
    ``classifier``, so ``load_state_dict`` accepts a torchvision-format state dict). Unlike
    torchvision's ``DenseNet.forward``, which applies ``F.relu(..., inplace=True)`` to the output
    of ``features.norm5``, this forward uses an out-of-place ReLU. ``norm5``'s output therefore stays
    what ``norm5`` computed, and :meth:`cam_layer` returns ``features.norm5``: the last
    feature map (1024 channels, ``S/32 x S/32``, 7x7 at 224 px), the seed's "last feature block"
    and what pytorch-grad-cam users hook on a DenseNet (``model.features[-1]``). With torchvision's
    own forward, a hook on ``norm5`` would silently see the post-ReLU values instead.

    Parameters: 6.96 M (``imagenet-rgb``, 5 labels); ``grey`` has 6.27 k fewer.

    Args:
        labels: Finding names in logit order (default the seed's five CheXpert findings).
        input_size: Side length in pixels the classifier expects (224 as the seed; any size >= 32
            runs).
        in_channels: ``"imagenet-rgb"`` or ``"grey"``, see above.
        drop_rate: Dropout after each dense layer (torchvision's ``drop_rate``).
    """

    def __init__(self, labels: Sequence[str] = CHEXPERT5, input_size: int = 224,
                 in_channels: str = "imagenet-rgb", drop_rate: float = 0.0) -> None:
        super().__init__()
        self.labels = tuple(str(label) for label in labels)
        if not self.labels:
            raise ConfigError("DenseNet121 needs at least one label")
        self.input_size = int(input_size)
        if self.input_size < 32:
            raise ConfigError(f"DenseNet121 input_size must be at least 32, got {self.input_size}")
        if in_channels not in INPUT_MODES:
            raise ConfigError(f"DenseNet121 in_channels must be one of {', '.join(INPUT_MODES)}, "
                              f"got {in_channels!r}")
        self.in_channels = in_channels
        self.drop_rate = float(drop_rate)
        net = torchvision.models.densenet121(weights=None, num_classes=len(self.labels),
                                             drop_rate=self.drop_rate)
        if in_channels == "grey":
            old = net.features.conv0
            net.features.conv0 = nn.Conv2d(1, old.out_channels, kernel_size=old.kernel_size,
                                           stride=old.stride, padding=old.padding, bias=False)
            nn.init.kaiming_normal_(net.features.conv0.weight)
        self.features = net.features
        self.classifier = net.classifier
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def prepare(self, x: Tensor) -> Tensor:
        """Canonical ``(B, 1, S, S)`` in [0, 1] -> the network's input: ``(B, 3, S, S)``
        ImageNet-normalized or ``(B, 1, S, S)`` standardized."""
        if self.in_channels == "grey":
            return (x - 0.5) / 0.25
        return (x.expand(-1, 3, -1, -1) - self.mean) / self.std

    def forward(self, x: Tensor) -> Tensor:
        """Logits ``(B, K)`` for canonical images ``x`` ``(B, 1, S, S)`` in ``[0, 1]``."""
        feats = self.features(self.prepare(x))
        out = F.relu(feats)  # not in place: norm5's output is the CAM layer's
        out = torch.flatten(F.adaptive_avg_pool2d(out, 1), 1)
        return self.classifier(out)

    def cam_layer(self) -> nn.Module:
        """``features.norm5``: ``(B, 1024, S/32, S/32)``, not modified in place afterwards."""
        return self.features.norm5

    def config(self) -> dict:
        """Constructor arguments (for weight manifests)."""
        return {"labels": list(self.labels), "input_size": self.input_size,
                "in_channels": self.in_channels, "drop_rate": self.drop_rate}
