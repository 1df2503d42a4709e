"""torchxrayvision adapters (Cohen et al. 2022): ``xrv-densenet`` and ``xrv-resnet-ae``.

torchxrayvision is optional (``pip install 'xcf[xrv]'``); this plugin registers its components
whether or not it is installed, imports it only when one is built, and building one without it
raises :class:`xcf.errors.ComponentError` saying how to install it.
"""

from __future__ import annotations

from xcf import hookimpl

from .adapters import XRVDenseNet, XRVResNetAE

__all__ = ["XRVDenseNet", "XRVResNetAE"]


@hookimpl
def xcf_register_classifiers(register) -> None:
    register("xrv-densenet", XRVDenseNet,
             description="torchxrayvision DenseNet-121 (needs xcf[xrv]), weights densenet121-res224-all, 18 findings, "
                         "calibrated logits (0.5 = published operating point), [0,1] -> [-1024,1024] inside")


@hookimpl
def xcf_register_latent_models(register) -> None:
    register("xrv-resnet-ae", XRVResNetAE,
             description="torchxrayvision ResNet-101 autoencoder (needs xcf[xrv]), weights 101-elastic, z 512x3x3 at 224 px")
