"""The detail gate: let a search lower the input's own fine detail, pixel by pixel.

A latent model that passes the input's detail ``d = x - G_s(x)`` around its bottleneck (``conv-ae``
/ ``segnet-ae`` with ``detail_sigma > 0``, ``xcf_autoencoders.DetailLatent``) decodes to
``clip(G_s(D(z)) + d, 0, 1)`` with ``d`` fixed in ``Latent.aux["detail"]``: an edit of ``z`` can
change only the blurred image, so a finding's sharp edges (an effusion's meniscus, a nodule's rim, a
pneumothorax line) stay whatever ``z`` does, and a classifier that reads them does not flip
(with the detail fixed, the seed's method flipped about a third of the phantom findings).

``method.replace(detail_gate=True)`` searches, beside ``z``, a gate ``a`` in [0, 1] per pixel
(1 at the start) that scales the detail: ``clip(G_s(D(z)) + a * d, 0, 1)``. The gate can only
*remove* detail the film has (each pixel's change is at most ``|d|``, the film's own fine
structure), never draw new detail; the locality loss holds it at 1 outside the region as it holds
``z``. The search is unchanged: :class:`DetailGate` appends the gate to ``z`` (flattened), so the
optimizer's Adam steps, stopping rule and region growth see one tensor.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .errors import ConfigError
from .interfaces import Latent, LatentModel
from .optimize import clamp01_straight_through
from .registry import component_label


def has_detail(latent: Latent, size: int) -> bool:
    """Whether ``latent.aux`` carries the input's detail as :class:`DetailGate` needs it."""
    d = latent.aux.get("detail") if isinstance(latent.aux, dict) else None
    return isinstance(d, Tensor) and d.dim() == 4 and tuple(d.shape[1:]) == (1, size, size)


class DetailGate(LatentModel):
    """``model`` with a per-pixel gate on its detail appended to ``z`` (see the module docstring).

    ``z`` becomes ``(B, n + S * S)``: the model's ``z`` flattened, then the gate, whose values are
    used clamped to [0, 1] with the identity as gradient (a gate pushed past 1 is still pulled
    back). ``aux`` is ``{"inner": model's aux, "zshape": model's z shape without the batch}``.
    """

    def __init__(self, model: LatentModel) -> None:
        super().__init__()
        self.model = model
        self.input_size = model.input_size

    def lift(self, latent: Latent) -> Latent:
        """The model's latent with a gate of ones appended (decodes to the same image)."""
        aux = latent.aux
        S = self.input_size
        if not has_detail(latent, S):
            raise ConfigError(
                f"detail_gate=True needs a latent model that passes the input's detail around z "
                f"(conv-ae / segnet-ae with detail_sigma > 0, or xcf_autoencoders.DetailLatent); "
                f"{component_label(self.model, 'latent')} does not")
        z = latent.z
        gate = torch.ones(z.shape[0], S * S, dtype=z.dtype, device=z.device)
        return Latent(torch.cat([z.flatten(1), gate], dim=1), {"inner": aux, "zshape": tuple(z.shape[1:])})

    def encode(self, x: Tensor) -> Latent:
        return self.lift(self.model.encode(x))

    def split(self, latent: Latent) -> tuple[Latent, Tensor]:
        """The model's latent and the gate ``(B, 1, S, S)`` in [0, 1]."""
        shape = tuple(latent.aux["zshape"])
        n = math.prod(shape)
        S = self.input_size
        z = latent.z[:, :n].reshape((-1, *shape))
        gate = clamp01_straight_through(latent.z[:, n:]).reshape(-1, 1, S, S)
        return Latent(z, latent.aux["inner"]), gate

    def decode(self, latent: Latent) -> Tensor:
        inner, gate = self.split(latent)
        aux = dict(inner.aux)
        aux["detail"] = aux["detail"] * gate.to(aux["detail"].dtype)
        return self.model.decode(Latent(inner.z, aux))
