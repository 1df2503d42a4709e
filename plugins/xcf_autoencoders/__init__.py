"""Built-in latent models: ``conv-ae``, ``segnet-ae``, ``vae``, the inpainter ``inpaint-unet`` and the
bank of films without a finding ``exemplar-bank``."""

from __future__ import annotations

from xcf import hookimpl

from .conv_ae import ConvAE
from .detail import DetailLatent
from .exemplar import ExemplarInpainter, exemplar_bank
from .inpaint import InpaintNet, random_holes
from .segnet import NARROW_WIDTHS, VGG16_WIDTHS, SegNetAE
from .vae import ConvVAE, kl_divergence

__all__ = ["ConvAE", "DetailLatent", "ExemplarInpainter", "exemplar_bank", "InpaintNet", "random_holes", "SegNetAE", "ConvVAE", "kl_divergence", "VGG16_WIDTHS", "NARROW_WIDTHS"]


@hookimpl
def xcf_register_latent_models(register) -> None:
    register("conv-ae", ConvAE,
             description="plain convolutional autoencoder, everything in z (latent_channels x S/2^n x S/2^n), no skips; "
                         "detail_sigma=s passes the input's detail finer than a Gaussian of s px around z")
    register("segnet-ae", SegNetAE,
             description="the seed's SegNet autoencoder (Badrinarayanan et al. 2017): VGG-16 encoder, z 512 x S/32 x S/32 "
                         "plus fixed max-pool indices; 29.5 M params (widths=(16, 32, 64, 128, 128): 1.8 M); detail_sigma as conv-ae")
    register("vae", ConvVAE,
             description="convolutional VAE (Kingma & Welling 2014), spatial latent 16 x S/16 x S/16, encode() gives the mean")
    register("inpaint-unet", InpaintNet,
             description="inpainter (U-Net, 16-32-64-128, dilated bottleneck): fills a hole with what a film "
                         "without findings would show there; trained with 'xcf train inpainter'; the content "
                         "model of the local-fill method")
    register("exemplar-bank", exemplar_bank,
             description="inpainter without a network: fills a hole with the same region of the closest real film "
                         "without the finding (root=FOLDER with labels.csv, without=LABEL); the content model "
                         "of the local-exemplar method")
