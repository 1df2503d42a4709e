"""Built-in latent models."""

from __future__ import annotations

from xcf import hookimpl

from .conv_ae import ConvAE

__all__ = ["ConvAE"]


@hookimpl
def xcf_register_latent_models(register) -> None:
    register("conv-ae", ConvAE,
             description="plain convolutional autoencoder, everything in z (latent_channels x S/32 x S/32), no skips")
