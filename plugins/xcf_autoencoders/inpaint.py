"""An inpainting network trained on films without findings: it fills a region of a film with what
healthy anatomy would put there, given the rest of the film.

This is the content model of the ``local-fill`` method (:mod:`xcf.methods`): the region comes from
the classifier being explained, the content from this network, which never saw a finding. The
approach is the one of Chang et al., "Explaining Image Classifiers by Counterfactual Generation"
(ICLR 2019: a generative infiller conditioned on the rest of the image) and of RadEdit
(Pérez-García et al., ECCV 2024: edits of chest X-rays confined to a mask, filled by a generative
model). Trained with ``xcf train inpainter`` (random blob-shaped holes in films without any finding).

As a :class:`xcf.LatentModel` it is a U-Net: ``encode(x)`` is :meth:`InpaintNet.encode_masked`
with an empty hole, ``z`` its 14 x 14 bottleneck, ``aux`` the skip features; ``decode`` draws the
whole film from them. :meth:`InpaintNet.inpaint` is what the method calls.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from xcf import Latent, LatentModel

__all__ = ["InpaintNet", "random_holes"]


def _block(c_in: int, c_out: int, stride: int = 1, dilation: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, stride=stride, padding=dilation, dilation=dilation, bias=False),
        nn.GroupNorm(min(8, c_out), c_out), nn.SiLU(),
        nn.Conv2d(c_out, c_out, 3, padding=1, bias=False), nn.GroupNorm(min(8, c_out), c_out), nn.SiLU())


class InpaintNet(LatentModel):
    """A small U-Net that fills holes: input the film with the hole blanked and the hole itself.

    Args:
        input_size: Side length in pixels (divisible by ``2 ** len(widths)``).
        widths: Channels at each resolution below the input (each halves the side).
        dilations: Dilations of the residual blocks at the bottleneck (their receptive field lets a
            hole draw on anatomy across the film).
        scale: The network works at ``input_size / scale`` and its output is upsampled (bilinear):
            a fill is anatomy at the scale of structures, not of the film's grain, and 2 makes it
            four times cheaper.
    """

    def __init__(self, input_size: int = 224, widths: Sequence[int] = (32, 64, 128),
                 dilations: Sequence[int] = (1, 2, 4), scale: int = 2) -> None:
        super().__init__()
        self.input_size = int(input_size)
        self.widths = tuple(int(w) for w in widths)
        self.dilations = tuple(int(d) for d in dilations)
        self.scale = int(scale)
        if self.scale < 1 or self.input_size % (self.scale * 2 ** len(self.widths)):
            raise ValueError(f"input_size {self.input_size} must be divisible by scale * 2 ** len(widths) "
                             f"= {self.scale * 2 ** len(self.widths)}")
        c = 2  # the film with the hole blanked (grey 0.5), the hole
        self.down = nn.ModuleList()
        for w in self.widths:
            self.down.append(_block(c, w, stride=2))
            c = w
        self.middle = nn.ModuleList(_block(c, c, dilation=d) for d in self.dilations)
        self.up = nn.ModuleList()
        skips = [2, *self.widths[:-1]]
        for w_skip in reversed(skips):
            w = max(w_skip, 16)
            self.up.append(_block(c + w_skip, w))
            c = w
        self.head = nn.Conv2d(c, 1, 3, padding=1)

    # -- the inpainting interface ----------------------------------------------------------------
    def _inputs(self, x: Tensor, hole: Tensor) -> Tensor:
        hole = hole.to(x.dtype)
        h = torch.cat([(x * (1 - hole) + 0.5 * hole) * 2 - 1, hole], dim=1)
        return F.avg_pool2d(h, self.scale) if self.scale > 1 else h

    def encode_masked(self, x: Tensor, hole: Tensor) -> Latent:
        """Encode a film with ``hole`` (``(B, 1, S, S)``, 1 = to fill) blanked: ``z`` is the
        bottleneck, ``aux`` the skip features the decoder needs."""
        h = self._inputs(x, hole)
        skips = [h]
        for blk in self.down:
            h = blk(h)
            skips.append(h)
        skips.pop()  # the bottleneck itself is z
        return Latent(h, aux={"skips": skips})

    def decode(self, latent: Latent) -> Tensor:
        h = latent.z
        for blk in self.middle:
            h = h + blk(h)
        for blk, skip in zip(self.up, reversed(latent.aux["skips"]), strict=True):
            h = F.interpolate(h, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            h = blk(torch.cat([h, skip], dim=1))
        out = self.head(h)
        if self.scale > 1:
            out = F.interpolate(out, scale_factor=self.scale, mode="bilinear", align_corners=False)
        return torch.sigmoid(out)

    def encode(self, x: Tensor) -> Latent:
        return self.encode_masked(x, torch.zeros_like(x[:, :1]))

    def inpaint(self, x: Tensor, hole: Tensor) -> Tensor:
        """The network's whole film for ``x`` with ``hole`` blanked (``(B, 1, S, S)`` in [0, 1]);
        the caller keeps ``x`` outside the hole."""
        return self.decode(self.encode_masked(x, hole))

    def config(self) -> dict:
        return {"input_size": self.input_size, "widths": list(self.widths), "dilations": list(self.dilations),
                "scale": self.scale}


def random_holes(n: int, size: int, generator: torch.Generator, *, max_blobs: int = 3,
                 radius: tuple[float, float] = (0.04, 0.3)) -> Tensor:
    """Training holes ``(n, 1, size, size)`` in {0, 1}: the union of 1..``max_blobs`` random
    ellipses with wobbly edges, radii a fraction ``radius`` of the side, anywhere in the film
    (the shapes of thresholded saliency maps, at every size a region level takes)."""
    yy, xx = torch.meshgrid(torch.linspace(0, 1, size), torch.linspace(0, 1, size), indexing="ij")
    out = torch.zeros(n, 1, size, size)
    for i in range(n):
        k = int(torch.randint(1, max_blobs + 1, (1,), generator=generator))
        for _ in range(k):
            cy, cx = (0.1 + 0.8 * torch.rand(2, generator=generator)).tolist()
            r = radius[0] + (radius[1] - radius[0]) * float(torch.rand((), generator=generator)) ** 1.5
            ax = r * (0.6 + 0.8 * float(torch.rand((), generator=generator)))
            ay = r * (0.6 + 0.8 * float(torch.rand((), generator=generator)))
            rot = float(torch.rand((), generator=generator)) * math.pi
            c, s = math.cos(rot), math.sin(rot)
            u = ((xx - cx) * c + (yy - cy) * s) / ax
            v = (-(xx - cx) * s + (yy - cy) * c) / ay
            wob = 1 + 0.25 * torch.sin(3 * torch.atan2(v, u) + 6 * float(torch.rand((), generator=generator)))
            out[i, 0] = torch.maximum(out[i, 0], ((u**2 + v**2) < wob).float())
    return out
