"""A small, fast convolutional classifier for CPU use."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from xcf import Classifier
from xcf.errors import ConfigError

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

    With ``stem_stride=2`` the first convolution has stride 2 and the pooling after the fourth
    block is dropped: the same depth, widths and 14x14 CAM layer at 224 px, but the first block
    runs at half resolution. Its two full-resolution convolutions are what a CPU spends most of a
    training step on (memory-bound at 16 channels): a step is about 5.5x cheaper on this
    project's 2-core CPU (``python benchmarks/train_step_cost.py``; docs/results/train-phantom-pack-cpu.md).

    Args:
        labels: Finding names (logit order).
        input_size: Side length in pixels.
        widths: Channels of the five blocks.
        dropout: Dropout before the head.
        stem_stride: 1 (default, the original network) or 2 (see above).
    """

    def __init__(self, labels: Sequence[str] = CHEXPERT5, input_size: int = 224,
                 widths: Sequence[int] = (16, 32, 64, 96, 128), dropout: float = 0.1,
                 stem_stride: int = 1) -> None:
        super().__init__()
        if stem_stride not in (1, 2):
            raise ConfigError(f"SmallCNN stem_stride must be 1 or 2, got {stem_stride!r}")
        if not widths:
            raise ConfigError("SmallCNN needs at least one width (channels of each block), got []")
        self.labels = tuple(labels)
        self.input_size = int(input_size)
        self.widths = tuple(int(w) for w in widths)
        self.stem_stride = int(stem_stride)
        chans = (1, *self.widths)
        blocks = []
        for i in range(len(self.widths)):
            blocks.append(conv_block(chans[i], chans[i + 1]))
        if self.stem_stride == 2:
            blocks[0][0] = nn.Conv2d(1, self.widths[0], 3, stride=2, padding=1, bias=False)
        self.blocks = nn.ModuleList(blocks)
        self.pool = nn.MaxPool2d(2)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(self.widths[-1], len(self.labels))

    def features(self, x: Tensor) -> Tensor:
        h = (x - 0.5) / 0.25
        pooled = len(self.blocks) - self.stem_stride  # blocks followed by a 2x max-pool
        for i, block in enumerate(self.blocks):
            h = block(h)
            if i < pooled:
                h = self.pool(h)
        return h

    def forward(self, x: Tensor) -> Tensor:
        h = self.features(x)
        return self.head(self.dropout(torch.flatten(h.mean(dim=(2, 3)), 1)))

    def cam_layer(self) -> nn.Module:
        return self.blocks[-1]

    def config(self) -> dict:
        """Constructor arguments (for manifests)."""
        cfg = {"labels": list(self.labels), "input_size": self.input_size, "widths": list(self.widths)}
        if self.stem_stride != 1:  # manifests of the original network stay as they were
            cfg["stem_stride"] = self.stem_stride
        return cfg
