"""Counterfactual methods: named, registered objects built of parts.

A method (:class:`Method`) is the seed's latent optimization with its parts named:
:class:`Objective` (the loss and its weights), :class:`Region` (which saliency, which levels, how the
region grows, a fallback), :class:`Blend` (how the decoder's output is put into the film),
:class:`StopRule` (when a film stops) and :class:`Execution` (how the loop runs). Pick one by name::

    cf = xcf.explain(image, "Nodule", method="seed")
    xcf.list_methods()     # ['early-stop', 'fast', 'latent-shift', 'local', 'local-in-mask', 'seed']

make a variant with :meth:`Method.replace`::

    m = xcf.get_method("seed").replace(name="seed-stop-0.2", stop__probability=0.2)
    cf = xcf.explain(image, "Nodule", method=m)

and register one for everyone with the ``xcf_register_methods`` hook of a plugin.
"""

from __future__ import annotations

from typing import Any

from .method import LatentShift, Method, Problem, Runs
from .parts import Blend, Execution, LineSearch, Objective, Reference, Region, StopRule

__all__ = ["Method", "LatentShift", "Objective", "Region", "Blend", "StopRule", "Execution",
           "LineSearch", "Reference", "Problem", "Runs", "DEFAULT_METHOD", "list_methods",
           "get_method", "resolve_method"]

#: The method :func:`xcf.explain`, :class:`xcf.Explainer`, ``xcf explain`` and ``xcf demo`` use when
#: none is named: at least as valid and as local as the seed's method on both packs, measured side
#: by side (``python benchmarks/default_rule.py``; docs: Benchmarks and results).
DEFAULT_METHOD = "local-in-mask"


def list_methods(registry: Any = None) -> list[str]:
    """Names of the registered methods."""
    from ..registry import get_registry

    return (registry or get_registry()).list("method")


def get_method(name: str, registry: Any = None) -> Method:
    """The registered method ``name`` (an unknown name is an error that lists the valid ones)."""
    from ..registry import get_registry

    return (registry or get_registry()).create("method", name)


def resolve_method(method: Method | str | None, registry: Any = None) -> Method:
    """A :class:`Method` from a name, an instance, or ``None`` (:data:`DEFAULT_METHOD`)."""
    from ..errors import ConfigError

    if method is None:
        method = DEFAULT_METHOD
    if isinstance(method, Method):
        return method
    if isinstance(method, str):
        return get_method(method, registry)
    raise ConfigError(f"method must be a registered name or an xcf.methods.Method, got {type(method).__name__}")
