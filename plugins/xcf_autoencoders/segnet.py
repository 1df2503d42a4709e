"""SegNet-style autoencoder: a VGG-16-like encoder whose max-pooling indices drive the decoder.

Badrinarayanan, Kendall & Cipolla, "SegNet: A Deep Convolutional Encoder-Decoder Architecture for
Image Segmentation", IEEE TPAMI 2017. Used as an autoencoder (one output channel, sigmoid) by the
seed method (docs: The method): the latent is the bottleneck ``z`` *plus* the five sets of pooling
indices, which the optimizer keeps fixed.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from xcf import Latent, LatentModel
from xcf.errors import ConfigError

from .detail import attach, check_sigma, detach_detail, finish

__all__ = ["SegNetAE", "VGG16_WIDTHS", "NARROW_WIDTHS", "VGG16_DEPTHS"]

#: Channels of the five blocks of VGG-16 (the seed's SegNet).
VGG16_WIDTHS = (64, 128, 256, 512, 512)
#: A 4x narrower variant for CPU work and tests.
NARROW_WIDTHS = (16, 32, 64, 128, 128)
#: conv-BN-ReLU layers per block in VGG-16.
VGG16_DEPTHS = (2, 2, 3, 3, 3)


def _conv_bn_relu(c_in: int, c_out: int) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]


def _he_init(module: nn.Module) -> None:
    """He (Kaiming) normal init of every conv (fan-out, ReLU gain) as torchvision's VGG: with the
    default init the signal fades over 26 layers and an untrained model outputs a constant."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)


class SegNetAE(LatentModel):
    """SegNet autoencoder with a max-unpooling decoder.

    Encoder: five blocks of ``depths[i]`` 3x3 conv-BN-ReLU layers with ``widths[i]`` channels, each
    followed by a 2x2 max-pool that returns its indices. Decoder: the mirror image; each block first
    un-pools (:class:`torch.nn.MaxUnpool2d`) with the indices of its encoder block, then applies
    ``depths[i]`` conv-BN-ReLU layers, the last of which reduces to the previous block's width
    (as in SegNet's decoder); a final 3x3 conv to one channel and a sigmoid give the image.

    Latent at side ``S`` (a multiple of 32): ``z`` is ``(B, widths[-1], S/32, S/32)`` (``512x7x7``
    at 224 px with the default widths) and ``aux`` is the list of the five pooling index tensors,
    shallowest first, of shapes ``(B, widths[i], S/2^(i+1), S/2^(i+1))`` (int64). Un-pooling puts
    each value back where the encoder's maximum was, so the indices carry much of the image's
    fine structure; they stay fixed while ``z`` is optimized. Decoding with another image's indices
    is allowed but mixes the two images.

    Parameters: 29.47 M with :data:`VGG16_WIDTHS` (the seed's size), 1.85 M with
    :data:`NARROW_WIDTHS`.

    Args:
        input_size: Side length in pixels; a multiple of 32.
        widths: Channels of the five blocks (default VGG-16's ``64-128-256-512-512``; use
            :data:`NARROW_WIDTHS` ``16-32-64-128-128`` on a CPU).
        depths: conv-BN-ReLU layers per block (default VGG-16's ``2,2,3,3,3``).
        input_mean: Subtracted from the ``[0, 1]`` input before the encoder.
        input_std: The input is divided by it after subtracting ``input_mean``. The defaults
            (0, 1) feed ``[0, 1]`` unchanged, as the seed did.
        detail_sigma: If > 0, the input's detail finer than this Gaussian (pixels) passes the
            bottleneck unchanged and the decoder only supplies the coarse image (see
            :mod:`xcf_autoencoders.detail`); ``aux`` is then ``{"base": [the indices], "detail": d}``.
            0 (default): the seed's model, ``aux`` the list of indices.
    """

    def __init__(self, input_size: int = 224, widths: Sequence[int] = VGG16_WIDTHS,
                 depths: Sequence[int] = VGG16_DEPTHS, input_mean: float = 0.0,
                 input_std: float = 1.0, detail_sigma: float = 0.0) -> None:
        super().__init__()
        self.detail_sigma = check_sigma("SegNetAE", detail_sigma)
        self.widths = tuple(int(w) for w in widths)
        self.depths = tuple(int(d) for d in depths)
        if len(self.widths) != 5 or len(self.depths) != 5:
            raise ConfigError(f"SegNetAE needs five widths and five depths, got widths={self.widths}, "
                              f"depths={self.depths}")
        if min(self.widths) < 1 or min(self.depths) < 1:
            raise ConfigError(f"SegNetAE widths and depths must be positive, got widths={self.widths}, "
                              f"depths={self.depths}")
        self.input_size = int(input_size)
        if self.input_size < 32 or self.input_size % 32:
            raise ConfigError(f"SegNetAE input_size must be a positive multiple of 32 (five 2x2 "
                              f"poolings), got {self.input_size}")
        if input_std <= 0:
            raise ConfigError(f"SegNetAE input_std must be positive, got {input_std}")
        self.input_mean = float(input_mean)
        self.input_std = float(input_std)

        enc: list[nn.Sequential] = []
        c = 1
        for w, d in zip(self.widths, self.depths):
            layers: list[nn.Module] = []
            for _ in range(d):
                layers += _conv_bn_relu(c, w)
                c = w
            enc.append(nn.Sequential(*layers))
        self.encoder = nn.ModuleList(enc)
        self.pool = nn.MaxPool2d(2, stride=2, return_indices=True)
        self.unpool = nn.MaxUnpool2d(2, stride=2)

        # decoder[i] mirrors encoder[4 - i]: width w -> ... -> width of the block above it.
        dec: list[nn.Sequential] = []
        for i in reversed(range(5)):
            w, d = self.widths[i], self.depths[i]
            w_out = self.widths[i - 1] if i > 0 else self.widths[0]
            layers = []
            for j in range(d):
                layers += _conv_bn_relu(w, w_out if j == d - 1 else w)
            dec.append(nn.Sequential(*layers))
        self.decoder = nn.ModuleList(dec)
        self.head = nn.Conv2d(self.widths[0], 1, 3, padding=1)
        _he_init(self)

    def encode(self, x: Tensor) -> Latent:
        """Encode canonical images.

        Args:
            x: ``(B, 1, S, S)`` in ``[0, 1]``, ``S`` a multiple of 32.

        Returns:
            ``Latent(z=(B, widths[-1], S/32, S/32), aux=[5 index tensors, shallowest first])``.
        """
        h, w = x.shape[-2:]
        if h % 32 or w % 32:
            raise ValueError(f"SegNetAE.encode needs a height and width divisible by 32, got {h}x{w}")
        h = (x - self.input_mean) / self.input_std
        indices: list[Tensor] = []
        for block in self.encoder:
            h, idx = self.pool(block(h))
            indices.append(idx)
        return attach(Latent(h, indices), x, self.detail_sigma)

    def decode(self, latent: Latent) -> Tensor:
        """Decode with the latent's pooling indices.

        Args:
            latent: ``z`` ``(B, widths[-1], s, s)`` and ``aux`` the five index tensors of
                :meth:`encode` (same batch order).

        Returns:
            ``(B, 1, 32 s, 32 s)`` in ``[0, 1]``; differentiable in ``z``.
        """
        base, d = detach_detail(latent, self.detail_sigma, "SegNetAE")
        indices = base.aux
        if not isinstance(indices, (list, tuple)) or len(indices) != 5:
            raise ValueError("SegNetAE.decode needs latent.aux = the five pooling index tensors from encode()")
        h = base.z
        for block, idx in zip(self.decoder, reversed(indices)):
            h = block(self.unpool(h, idx))
        return finish(torch.sigmoid(self.head(h)), d, self.detail_sigma)

    def config(self) -> dict:
        """Constructor arguments (for weight manifests)."""
        return {"input_size": self.input_size, "widths": list(self.widths), "depths": list(self.depths),
                "input_mean": self.input_mean, "input_std": self.input_std, "detail_sigma": self.detail_sigma}
