"""A plain convolutional autoencoder: all information passes through ``z`` (unless ``detail_sigma``)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from xcf import Latent, LatentModel

from .detail import attach, check_sigma, detach_detail, finish


class ConvAE(LatentModel):
    """Strided-conv encoder / upsampling decoder with a spatial bottleneck and no skip connections.

    ``z`` is ``(B, latent_channels, S / 2^n, S / 2^n)`` for ``n = len(widths)`` downsamplings
    (7x7 at 224 px with the default five). Input and output are canonical images in [0, 1]
    (the decoder ends with a sigmoid).

    Args:
        input_size: Side length in pixels (divisible by ``2 ** len(widths)``).
        widths: Channels at each resolution, from the input down.
        latent_channels: Channels of ``z``.
        detail_sigma: If > 0, the input's detail finer than this Gaussian (pixels) passes the
            bottleneck unchanged in ``Latent.aux`` and the decoder only supplies the coarse image
            (see :mod:`xcf_autoencoders.detail`; ``aux`` is then ``{"base": None, "detail": d}``);
            0 (default): everything passes through ``z`` and ``aux`` is ``None``.
    """

    def __init__(self, input_size: int = 224, widths: Sequence[int] = (16, 32, 64, 128, 128),
                 latent_channels: int = 64, detail_sigma: float = 0.0) -> None:
        super().__init__()
        self.detail_sigma = check_sigma("ConvAE", detail_sigma)
        self.input_size = int(input_size)
        self.widths = tuple(int(w) for w in widths)
        self.latent_channels = int(latent_channels)
        enc: list[nn.Module] = []
        c = 1
        for w in self.widths:
            enc += [nn.Conv2d(c, w, 4, stride=2, padding=1, bias=False), nn.BatchNorm2d(w), nn.ReLU(),
                    nn.Conv2d(w, w, 3, padding=1, bias=False), nn.BatchNorm2d(w), nn.ReLU()]
            c = w
        enc += [nn.Conv2d(c, self.latent_channels, 1)]
        self.encoder = nn.Sequential(*enc)
        dec: list[nn.Module] = [nn.Conv2d(self.latent_channels, c, 1), nn.ReLU()]
        for w in reversed((*self.widths[:-1], self.widths[0])):
            dec += [nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
                    nn.Conv2d(c, w, 3, padding=1, bias=False), nn.BatchNorm2d(w), nn.ReLU(),
                    nn.Conv2d(w, w, 3, padding=1, bias=False), nn.BatchNorm2d(w), nn.ReLU()]
            c = w
        dec += [nn.Conv2d(c, 1, 3, padding=1)]
        self.decoder = nn.Sequential(*dec)

    def encode(self, x: Tensor) -> Latent:
        return attach(Latent(self.encoder(x * 2 - 1)), x, self.detail_sigma)

    def decode(self, latent: Latent) -> Tensor:
        base, d = detach_detail(latent, self.detail_sigma, "ConvAE")
        return finish(torch.sigmoid(self.decoder(base.z)), d, self.detail_sigma)

    def config(self) -> dict:
        return {"input_size": self.input_size, "widths": list(self.widths),
                "latent_channels": self.latent_channels, "detail_sigma": self.detail_sigma}
