"""MobileNetV3-Small as an xcf classifier: a second, different architecture for oracles."""

from __future__ import annotations

from collections.abc import Sequence

import torchvision
from torch import Tensor, nn

from xcf import Classifier

from .small_cnn import CHEXPERT5


class MobileNetV3Small(Classifier):
    """torchvision's MobileNetV3-Small (Howard et al., "Searching for MobileNetV3", ICCV 2019) with a
    1-channel stem, random init (nothing downloaded), any label list.

    Input: canonical ``(B, 1, S, S)`` in [0, 1], standardized inside (mean 0.5, std 0.25). The CAM
    layer is the last feature block (``features[-1]``, 576 channels at S/32), whose output is only
    pooled afterwards. About 1.5 M parameters for a few labels.
    """

    def __init__(self, labels: Sequence[str] = CHEXPERT5, input_size: int = 224, dropout: float = 0.2) -> None:
        super().__init__()
        self.labels = tuple(labels)
        self.input_size = int(input_size)
        net = torchvision.models.mobilenet_v3_small(weights=None, num_classes=len(self.labels), dropout=dropout)
        stem = net.features[0][0]
        net.features[0][0] = nn.Conv2d(1, stem.out_channels, stem.kernel_size, stem.stride, stem.padding,
                                       bias=False)
        # torchvision builds these BatchNorms with momentum 0.01, tuned for ImageNet-length training;
        # on a few thousand radiographs the running statistics would still be near their initial
        # values when training ends and evaluation outputs collapse to a constant. 0.1 (PyTorch's
        # default) lets them settle within a few hundred steps. Buffers only: no parameter changes.
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.momentum = 0.1
        self.net = net

    def forward(self, x: Tensor) -> Tensor:
        return self.net((x - 0.5) / 0.25)

    def cam_layer(self) -> nn.Module:
        return self.net.features[-1]

    def config(self) -> dict:
        return {"labels": list(self.labels), "input_size": self.input_size}
