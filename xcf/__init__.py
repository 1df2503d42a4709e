"""xcf: local counterfactual explanations for chest X-ray classifiers.

Show the same X-ray changed just enough, and only where the classifier looked, for a finding to
disappear. Components (classifiers, latent models, saliency methods, locality losses) and
counterfactual methods are pluggy plugins registered through the ``xcf`` entry-point group; nothing
is loaded at import.

Quick start::

    import xcf
    cf = xcf.explain("film.png", "Cardiomegaly", pack="phantom")            # the default method
    cf = xcf.explain("film.png", "Cardiomegaly", pack="phantom", method="seed")  # the seed's
    cf.save("out/")
"""

from __future__ import annotations

from importlib import metadata as _metadata

from .config import ExplainConfig
from .hookspecs import hookimpl
from .interfaces import Classifier, Latent, LatentModel, LocalityLoss, SaliencyMethod
from .registry import create, list_components

try:
    __version__ = _metadata.version("xcf")
except _metadata.PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

__all__ = [
    "__version__",
    "explain",
    "Explainer",
    "ExplainConfig",
    "Counterfactual",
    "list_methods",
    "get_method",
    "load_pack",
    "list_packs",
    "list_components",
    "create",
    "Classifier",
    "LatentModel",
    "SaliencyMethod",
    "LocalityLoss",
    "Latent",
    "hookimpl",
]

_LAZY = {
    "explain": ("xcf.explainer", "explain"),
    "Explainer": ("xcf.explainer", "Explainer"),
    "Counterfactual": ("xcf.result", "Counterfactual"),
    "load_pack": ("xcf.packs", "load_pack"),
    "list_methods": ("xcf.methods", "list_methods"),
    "get_method": ("xcf.methods", "get_method"),
    "list_packs": ("xcf.packs", "list_packs"),
    "explain_dataset": ("xcf.engines.runner", "explain_dataset"),
}


def __getattr__(name: str):
    # explain/result/packs pull in matplotlib and safetensors: import them on first use only.
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        value = getattr(importlib.import_module(module), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'xcf' has no attribute {name!r}")
