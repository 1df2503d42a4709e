"""A convolutional variational autoencoder with a spatial latent.

Kingma & Welling, "Auto-Encoding Variational Bayes", ICLR 2014. For counterfactual search the
encoder's mean is the latent (:meth:`ConvVAE.encode`); sampling with the reparameterization trick is
only used in :meth:`ConvVAE.loss`, for training.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from xcf import Latent, LatentModel
from xcf.errors import ConfigError

from .detail import attach, check_sigma, detach_detail, finish

__all__ = ["ConvVAE", "kl_divergence"]

#: ``logvar`` is clamped to this range before use (keeps ``exp`` finite early in training).
LOGVAR_RANGE = (-30.0, 20.0)


def kl_divergence(mu: Tensor, logvar: Tensor) -> Tensor:
    """``KL(N(mu, exp(logvar)) || N(0, I))`` per sample, summed over the latent dimensions.

    Args:
        mu: ``(B, ...)`` posterior means.
        logvar: ``(B, ...)`` posterior log-variances, same shape.

    Returns:
        ``(B,)`` non-negative; zero exactly when ``mu == 0`` and ``logvar == 0``.
    """
    kl = 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar)
    return kl.flatten(1).sum(dim=1)


def _down(c_in: int, c_out: int) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 4, stride=2, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(),
            nn.Conv2d(c_out, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()]


def _up(c_in: int, c_out: int) -> list[nn.Module]:
    return [nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
            nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(),
            nn.Conv2d(c_out, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()]


class ConvVAE(LatentModel):
    """Convolutional VAE whose latent is a small feature map.

    Encoder: ``len(widths)`` stride-2 conv blocks, then a 1x1 conv to ``2 * latent_channels``
    channels split into ``mu`` and ``logvar``. Decoder: a 1x1 conv, ``len(widths)`` bilinear-2x
    upsampling conv blocks, a 3x3 conv to one channel and a sigmoid. The latent is *spatial*:
    ``(B, latent_channels, S / 2^n, S / 2^n)`` with ``n = len(widths)``, i.e. ``16 x 14 x 14`` at
    224 px with the defaults, so that a change of ``z`` stays roughly local in the image, which
    suits masked counterfactuals better than a global vector.

    Training objective (:meth:`loss`), per pixel so that it does not depend on the image size::

        recon = mean_b sum_pixels (D(z_b) - x_b)^2 / N      (or |.| with recon="l1")
        kl    = beta * mean_b KL(q(z|x_b) || N(0, I)) / N    (N = pixels per image)
        total = recon + kl

    ``z_b = mu + exp(logvar / 2) * eps`` with ``eps ~ N(0, I)`` (the reparameterization trick).
    With ``beta = 1`` and ``recon="mse"``, ``total`` is the negative ELBO of a Gaussian decoder with
    variance 1/2, up to a constant, divided by ``N``.

    With ``detail_sigma > 0`` the input's detail finer than that Gaussian passes around ``z`` in
    ``Latent.aux`` (as for ``conv-ae``; :mod:`xcf_autoencoders.detail`) and ``D(z)`` above is the
    coarse image ``clip(G_s(sigmoid(...)) + detail, 0, 1)``; the loss is taken on that image, so
    the VAE only has to model the coarse content.

    Parameters: 1.89 M with the defaults.

    Args:
        input_size: Side length in pixels, a multiple of ``2 ** len(widths)``.
        widths: Channels at each resolution, from the input down.
        latent_channels: Channels of the latent map.
        detail_sigma: Pixels; 0 (default) = everything passes through ``z``.
    """

    def __init__(self, input_size: int = 224, widths: Sequence[int] = (32, 64, 128, 256),
                 latent_channels: int = 16, detail_sigma: float = 0.0) -> None:
        super().__init__()
        self.detail_sigma = check_sigma("ConvVAE", detail_sigma)
        self.widths = tuple(int(w) for w in widths)
        if not self.widths or min(self.widths) < 1:
            raise ConfigError(f"ConvVAE widths must be a non-empty list of positive ints, got {self.widths}")
        self.input_size = int(input_size)
        factor = 2 ** len(self.widths)
        if self.input_size < factor or self.input_size % factor:
            raise ConfigError(f"ConvVAE input_size must be a positive multiple of {factor} "
                              f"(2 ** len(widths)), got {self.input_size}")
        self.latent_channels = int(latent_channels)
        if self.latent_channels < 1:
            raise ConfigError(f"ConvVAE latent_channels must be positive, got {latent_channels}")

        enc: list[nn.Module] = []
        c = 1
        for w in self.widths:
            enc += _down(c, w)
            c = w
        self.encoder = nn.Sequential(*enc)
        self.to_moments = nn.Conv2d(c, 2 * self.latent_channels, 1)
        dec: list[nn.Module] = [nn.Conv2d(self.latent_channels, c, 1), nn.ReLU()]
        for w in reversed((*self.widths[:-1], self.widths[0])):
            dec += _up(c, w)
            c = w
        dec += [nn.Conv2d(c, 1, 3, padding=1)]
        self.decoder = nn.Sequential(*dec)

    def encode_distribution(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """The approximate posterior ``q(z | x)``.

        Args:
            x: ``(B, 1, S, S)`` in ``[0, 1]``.

        Returns:
            ``(mu, logvar)``, each ``(B, latent_channels, S / 2^n, S / 2^n)``; ``logvar`` clamped to
            :data:`LOGVAR_RANGE`.
        """
        moments = self.to_moments(self.encoder(x * 2 - 1))
        mu, logvar = moments.chunk(2, dim=1)
        return mu, logvar.clamp(*LOGVAR_RANGE)

    def encode(self, x: Tensor) -> Latent:
        """``Latent(z=mu)``: the posterior mean, deterministic (with the detail in ``aux`` when
        ``detail_sigma > 0``)."""
        mu, _ = self.encode_distribution(x)
        return attach(Latent(mu), x, self.detail_sigma)

    def sample(self, x: Tensor, generator: torch.Generator | None = None) -> tuple[Latent, Tensor, Tensor]:
        """One reparameterized sample ``z = mu + exp(logvar / 2) * eps`` per image, for training.

        ``eps`` is drawn on ``generator``'s device (the CPU for a default generator) and moved to
        ``x``'s, so a seeded CPU generator gives the same noise on every device.

        Returns:
            ``(latent, mu, logvar)``: ``latent`` holds the sampled ``z`` (and the detail, if any)
            and can be passed to :meth:`decode`.
        """
        mu, logvar = self.encode_distribution(x)
        gen_device = generator.device if generator is not None else torch.device("cpu")
        eps = torch.randn(mu.shape, generator=generator, device=gen_device, dtype=mu.dtype).to(mu.device)
        z = mu + torch.exp(0.5 * logvar) * eps
        return attach(Latent(z), x, self.detail_sigma), mu, logvar

    def decode(self, latent: Latent) -> Tensor:
        """``(B, 1, S, S)`` in ``[0, 1]`` from ``z`` ``(B, latent_channels, S / 2^n, S / 2^n)``."""
        base, d = detach_detail(latent, self.detail_sigma, "ConvVAE")
        return finish(torch.sigmoid(self.decoder(base.z)), d, self.detail_sigma)

    def loss(self, x: Tensor, beta: float = 1.0, recon: str = "mse",
             generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """The training loss terms, with one reparameterized sample per image.

        Args:
            x: ``(B, 1, S, S)`` in ``[0, 1]``.
            beta: Weight of the KL term (Higgins et al. 2017's beta-VAE; 1 is the plain VAE).
            recon: ``"mse"`` (Gaussian decoder) or ``"l1"`` (Laplace decoder).
            generator: Random generator for the noise ``eps`` (reproducible training).

        Returns:
            ``(recon, kl)``: scalar tensors, per pixel as in the class docstring; ``kl`` already
            includes ``beta``, so the objective is ``recon + kl``.
        """
        if recon not in ("mse", "l1"):
            raise ConfigError(f"ConvVAE.loss recon must be 'mse' or 'l1', got {recon!r}")
        latent, mu, logvar = self.sample(x, generator)
        xr = self.decode(latent)
        n_pixels = x[0].numel()
        err = F.mse_loss(xr, x, reduction="none") if recon == "mse" else F.l1_loss(xr, x, reduction="none")
        rec = err.flatten(1).sum(dim=1).mean() / n_pixels
        kl = beta * kl_divergence(mu, logvar).mean() / n_pixels
        return rec, kl

    def config(self) -> dict:
        """Constructor arguments (for weight manifests)."""
        return {"input_size": self.input_size, "widths": list(self.widths),
                "latent_channels": self.latent_channels, "detail_sigma": self.detail_sigma}
