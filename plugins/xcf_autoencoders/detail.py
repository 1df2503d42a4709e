"""Fine detail carried past the bottleneck (``detail_sigma``), for sharp reconstructions.

An autoencoder small enough to train on a CPU reproduces a chest film's coarse content (lung
fields, heart, diaphragm, opacities) well and its fine texture (rib edges, lung markings, noise)
badly: the shipped narrow models reach 19-26 dB, and their classifiers read the lost texture as a
finding (README, Shipped packs). With ``detail_sigma = s > 0`` the image is split as a Laplacian
pyramid's first level splits it:

    x = G_s(x) + d,      d = x - G_s(x)     (G_s: Gaussian blur, standard deviation s pixels)

The encoder still sees all of ``x`` and ``z`` is unchanged, but the decoder's output is blurred by
the same ``G_s`` and the input's detail ``d`` is added back: ``x_hat = clip(G_s(D(z)) + d, 0, 1)``.
``d`` travels in ``Latent.aux``, which the optimizer keeps fixed (as SegNet's pooling indices), so:

- a reconstruction has exactly the input's fine detail, and only its coarse content can be wrong;
- an edit of ``z`` changes only structure coarser than about ``2 s`` pixels. Opacities,
  effusions, heart size are; a finding's sharp edge is partly detail and stays. A counterfactual
  that removes a small sharp finding (a nodule of a few pixels) leaves its rim: pick ``s`` below
  the scale of the smallest finding to be explained (``s = 1`` keeps 2-px structure editable).

The training loss (pixel and classifier terms on ``x_hat``) then only asks the autoencoder for the
coarse image. ``s = 0`` (the default) is the plain model. :class:`DetailLatent` wraps any other
latent model the same way, without retraining it.
"""

from __future__ import annotations

from torch import Tensor

from xcf import Latent, LatentModel
from xcf.errors import ConfigError
from xcf.filters import gaussian_blur


def check_sigma(name: str, sigma: float) -> float:
    """``sigma`` as a float, or a one-line :class:`ConfigError` if it is negative or not finite."""
    s = float(sigma)
    if not s >= 0 or s == float("inf"):
        raise ConfigError(f"{name} detail_sigma must be a finite number >= 0 (pixels; 0 = off), got {sigma!r}")
    return s


def lowpass(x: Tensor, sigma: float) -> Tensor:
    """``G_sigma(x)``: each image of ``(B, 1, H, W)`` blurred by a Gaussian of ``sigma`` pixels."""
    return gaussian_blur(x, sigma)


def detail(x: Tensor, sigma: float) -> Tensor:
    """The input's fine detail ``x - G_sigma(x)`` (what :func:`merge` adds back)."""
    return x - lowpass(x, sigma)


def merge(coarse: Tensor, d: Tensor, sigma: float) -> Tensor:
    """``clip(G_sigma(coarse) + d, 0, 1)``: the decoder's coarse image with the input's detail."""
    return (lowpass(coarse, sigma) + d).clamp(0, 1)


def attach(latent: Latent, x: Tensor, sigma: float) -> Latent:
    """``latent`` with the detail of ``x`` beside its own aux: ``aux = {"base": aux, "detail": d}``
    (``latent`` itself when ``sigma`` is 0). The one aux layout of every model here with a detail path."""
    return Latent(latent.z, {"base": latent.aux, "detail": detail(x, sigma)}) if sigma else latent


def detach_detail(latent: Latent, sigma: float, owner: str) -> tuple[Latent, Tensor | None]:
    """Undo :func:`attach`: the base model's latent and the detail (``None`` when ``sigma`` is 0).
    A latent without the detail is refused with a one-line ``ValueError`` naming ``owner``."""
    if not sigma:
        return latent, None
    aux = latent.aux
    if not isinstance(aux, dict) or not isinstance(aux.get("detail"), Tensor):
        raise ValueError(f"{owner}(detail_sigma={sigma}).decode needs latent.aux = {{'base': ..., 'detail': "
                         f"(B, 1, S, S) tensor}} from its encode(), got {type(aux).__name__}")
    return Latent(latent.z, aux.get("base")), aux["detail"]


def finish(xr: Tensor, d: Tensor | None, sigma: float) -> Tensor:
    """The decoder's output ``xr`` merged with the detail ``d`` (``xr`` itself when there is none);
    a detail of another shape (another image's, another batch's) is a one-line ``ValueError``."""
    if d is None:
        return xr
    if d.shape != xr.shape:
        raise ValueError(f"the latent's detail has shape {tuple(d.shape)}, the decoded batch {tuple(xr.shape)}: "
                         "decode a latent with the detail its own encode() gave")
    return merge(xr, d, sigma)


class DetailLatent(LatentModel):
    """Any latent model with the input's fine detail passed around its bottleneck.

    ``DetailLatent(model, sigma)`` encodes as ``model`` does and keeps ``x - G_sigma(x)`` beside
    the model's own ``aux``; it decodes to ``clip(G_sigma(model.decode(z)) + detail, 0, 1)``. For
    a third-party or already-trained model (``xrv-resnet-ae``, a shipped pack's latent); the
    built-in ``conv-ae`` and ``segnet-ae`` take ``detail_sigma=`` directly, so that a model can be
    *trained* for it. ``aux`` is ``{"base": model's aux, "detail": (B, 1, S, S)}``.
    """

    def __init__(self, model: LatentModel, sigma: float) -> None:
        super().__init__()
        self.sigma = check_sigma(type(model).__name__, sigma)
        if not self.sigma:
            raise ConfigError("DetailLatent needs detail_sigma > 0 (0 would be the model itself)")
        self.model = model
        self.input_size = model.input_size

    def encode(self, x: Tensor) -> Latent:
        return attach(self.model.encode(x), x, self.sigma)

    def decode(self, latent: Latent) -> Tensor:
        base, d = detach_detail(latent, self.sigma, "DetailLatent")
        return finish(self.model.decode(base), d, self.sigma)
