"""A small, fast convolutional classifier for CPU use."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from xcf import Classifier

#: The seed's five CheXpert findings, in its logit order.
CHEXPERT5 = ("Cardiomegaly", "Edema", "Consolidation", "Atelectasis", "Pleural Effusion")


def conv_block(c_in: int, c_out: int) -> nn.Sequential:
    """Two 3x3 conv-BN-ReLU layers."""
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(),
        nn.Conv2d(c_out, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(),
    )


class SmallCNN(Classifier):
    """Five conv blocks with max-pooling after the first four, global average pooling, a linear head.

    At 224 px the last block (the CAM layer) is 14x14. Input: canonical ``(B, 1, S, S)`` in [0, 1],
    standardized inside with a fixed mean/std (0.5, 0.25).

    Args:
        labels: Finding names (logit order).
        input_size: Side length in pixels.
        widths: Channels of the five blocks.
        dropout: Dropout before the head.
    """

    def __init__(self, labels: Sequence[str] = CHEXPERT5, input_size: int = 224,
                 widths: Sequence[int] = (16, 32, 64, 96, 128), dropout: float = 0.1) -> None:
        super().__init__()
        self.labels = tuple(labels)
        self.input_size = int(input_size)
        self.widths = tuple(int(w) for w in widths)
        chans = (1, *self.widths)
        blocks = []
        for i in range(len(self.widths)):
            blocks.append(conv_block(chans[i], chans[i + 1]))
        self.blocks = nn.ModuleList(blocks)
        self.pool = nn.MaxPool2d(2)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(self.widths[-1], len(self.labels))

    def features(self, x: Tensor) -> Tensor:
        h = (x - 0.5) / 0.25
        for i, block in enumerate(self.blocks):
            h = block(h)
            if i < len(self.blocks) - 1:
                h = self.pool(h)
        return h

    def forward(self, x: Tensor) -> Tensor:
        h = self.features(x)
        return self.head(self.dropout(torch.flatten(h.mean(dim=(2, 3)), 1)))

    def cam_layer(self) -> nn.Module:
        return self.blocks[-1]

    def config(self) -> dict:
        """Constructor arguments (for manifests)."""
        return {"labels": list(self.labels), "input_size": self.input_size, "widths": list(self.widths)}
