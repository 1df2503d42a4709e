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

from .method import LatentShift, LocalExemplar, LocalFill, Method, Problem, Runs
from .parts import Blend, Execution, Fill, LineSearch, Objective, Reference, Region, StopRule, Views

__all__ = ["Method", "LatentShift", "LocalFill", "LocalExemplar", "Objective", "Views", "Region", "Blend", "Fill", "StopRule", "Execution",
           "LineSearch", "Reference", "Problem", "Runs", "DEFAULT_METHOD",
           "DEFAULT_METHOD_WITHOUT_INPAINTER", "list_methods",
           "get_method", "resolve_method", "parse_variant"]

#: The method :func:`xcf.explain`, :class:`xcf.Explainer`, ``xcf explain`` and ``xcf demo`` use when
#: none is named: at least as valid, as local and as often confirmed by the independent oracle as
#: ``local-in-mask`` on both packs, measured side by side (``python benchmarks/default_rule.py``;
#: docs: Benchmarks and results). It fills with the pack's inpainter; where the models have none
#: (a pack without one, or a latent model given that cannot fill), the default is
#: :data:`DEFAULT_METHOD_WITHOUT_INPAINTER`.
DEFAULT_METHOD = "local-fill-in-mask"

#: The default where there is no inpainter to fill with: a gradient search in the same regions of
#: the seed's mask.
DEFAULT_METHOD_WITHOUT_INPAINTER = "local-in-mask"


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


def parse_variant(spec: str, registry: Any = None, *, keep: frozenset[str] = frozenset()) -> tuple[Method, dict[str, Any]]:
    """A method variant from ``NAME+KEY=VALUE+...``: the registered method ``NAME`` with
    :meth:`Method.replace` fields (``stop__probability=0.05``, ``region__levels=[0.5,0.2]``),
    named ``spec``. Values are read as JSON where they parse (lists become tuples), else as strings;
    a ``+`` starts a field only where ``KEY=`` follows it, so values may hold ``+``.

    Args:
        spec: The variant.
        registry: Component registry (default: the installed plugins).
        keep: Keys that are not method fields (e.g. :class:`xcf.ExplainConfig` fields); they are
            returned separately.

    Returns:
        ``(method, other)``: the method and the ``keep`` keys' values.

    Raises:
        ConfigError: Not ``NAME[+KEY=VALUE...]``, an unknown method or an unknown field.
    """
    import json
    import re

    from ..errors import ConfigError

    name, *pairs = re.split(r"\+(?=[A-Za-z_]\w*=)", spec.strip())
    names = list_methods(registry)
    if name not in names:
        raise ConfigError(f"variant {spec!r}: unknown method {name!r}; write METHOD[+KEY=VALUE...] "
                          f"with METHOD one of {', '.join(names)}")
    fields: dict[str, Any] = {}
    other: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep:
            raise ConfigError(f"variant {spec!r}: {pair!r} is not KEY=VALUE")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        value = tuple(value) if isinstance(value, list) else value
        (other if key in keep else fields)[key] = value
    method = get_method(name, registry)
    if fields:
        method = method.replace(name=spec.strip(), **fields)
    return method, other
