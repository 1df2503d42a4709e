"""Component registry: pluggy plugin manager, entry-point loading, ``list_components``/``create``.

Nothing here runs at import. :func:`get_registry` builds the default registry the first time it is
asked for: it loads the ``xcf`` entry points one at a time (a plugin that fails to import is named in
a warning and the others still load), skips the names in ``XCF_DISABLE_PLUGINS`` (comma-separated),
calls the four registration hooks and indexes the components by kind and name. Two components of
one kind with one name is a :class:`~xcf.errors.DuplicateComponentError` naming both plugins.

The optimization loop never goes through pluggy: components are created once, then called directly.
"""

from __future__ import annotations

import contextlib
import importlib.metadata as importlib_metadata
import inspect
import logging
import os
import threading
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import pluggy

from . import hookspecs
from .errors import ComponentError, DuplicateComponentError, UnknownComponentError
from .interfaces import Classifier, LatentModel, LocalityLoss, SaliencyMethod
from .methods.method import Method

__all__ = [
    "KINDS",
    "ComponentSpec",
    "Registry",
    "make_plugin_manager",
    "get_registry",
    "reset_registry",
    "register_plugin",
    "list_components",
    "create",
    "resolve",
]

logger = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "xcf"
DISABLE_ENV = "XCF_DISABLE_PLUGINS"

#: kind -> (hook name, interface class, human name)
KINDS: dict[str, tuple[str, type, str]] = {
    "classifier": ("xcf_register_classifiers", Classifier, "classifier"),
    "latent": ("xcf_register_latent_models", LatentModel, "latent model"),
    "saliency": ("xcf_register_saliency_methods", SaliencyMethod, "saliency method"),
    "locality": ("xcf_register_locality_losses", LocalityLoss, "locality loss"),
    "method": ("xcf_register_methods", Method, "counterfactual method"),
}


@dataclass(frozen=True)
class ComponentSpec:
    """One registered component."""

    kind: str
    name: str
    factory: Callable[..., Any]
    description: str
    plugin: str
    distribution: str

    @property
    def origin(self) -> str:
        """``"plugin 'p' from package 'd'"``, for error messages."""
        return f"plugin '{self.plugin}' from package '{self.distribution}'"

    def label(self) -> str:
        """``"saliency method 'gradcam' (plugin 'p' from package 'd')"``."""
        return f"{KINDS[self.kind][2]} '{self.name}' ({self.origin})"


def _disabled_names() -> set[str]:
    raw = os.environ.get(DISABLE_ENV, "")
    return {n.strip() for n in raw.split(",") if n.strip()}


def make_plugin_manager(*, load_entry_points: bool = True) -> pluggy.PluginManager:
    """A fresh plugin manager with xcf's hookspecs, entry points loaded one by one.

    Args:
        load_entry_points: Load the ``xcf`` entry-point group (skipping ``XCF_DISABLE_PLUGINS``).

    Returns:
        The manager; ``pm.xcf_distributions`` maps plugin name -> distribution name and
        ``pm.xcf_failed`` maps plugin name -> the import error message of plugins that failed.
    """
    pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    pm.add_hookspecs(hookspecs)
    pm.xcf_distributions = {}  # type: ignore[attr-defined]
    pm.xcf_failed = {}  # type: ignore[attr-defined]
    disabled = _disabled_names()
    for name in disabled:
        pm.set_blocked(name)
    if load_entry_points:
        for ep in sorted(importlib_metadata.entry_points(group=ENTRY_POINT_GROUP),
                         key=lambda e: e.name):
            if ep.name in disabled or pm.is_blocked(ep.name):
                logger.info("xcf plugin %r disabled by %s", ep.name, DISABLE_ENV)
                continue
            if pm.has_plugin(ep.name):
                continue
            dist = ep.dist.name if ep.dist is not None else "?"
            try:
                plugin = ep.load()
                pm.register(plugin, name=ep.name)
            except Exception as exc:  # a broken plugin must not take down the others
                msg = f"{type(exc).__name__}: {exc}".splitlines()[0]
                pm.xcf_failed[ep.name] = msg  # type: ignore[attr-defined]
                warnings.warn(
                    f"xcf plugin '{ep.name}' from package '{dist}' ({ep.value}) failed to load "
                    f"and was skipped: {msg}",
                    RuntimeWarning,
                    stacklevel=2,
                )
                continue
            pm.xcf_distributions[ep.name] = dist  # type: ignore[attr-defined]
    # the methods xcf ships are part of xcf itself, registered like a plugin's
    from .methods import builtin

    if not pm.has_plugin("xcf.methods"):
        pm.register(builtin, name="xcf.methods")
        pm.xcf_distributions["xcf.methods"] = "xcf"  # type: ignore[attr-defined]
    pm.check_pending()
    return pm


class Registry:
    """Components of every kind, collected from a plugin manager's registration hooks."""

    def __init__(self, pm: pluggy.PluginManager | None = None) -> None:
        self.pm = pm if pm is not None else make_plugin_manager()
        self._specs: dict[str, dict[str, ComponentSpec]] | None = None

    # -- collection -------------------------------------------------------------------------
    def _distribution_of(self, plugin_name: str) -> str:
        dists = getattr(self.pm, "xcf_distributions", {})
        return dists.get(plugin_name, "(registered in code)")

    def _collect(self) -> dict[str, dict[str, ComponentSpec]]:
        specs: dict[str, dict[str, ComponentSpec]] = {kind: {} for kind in KINDS}
        for kind, (hook_name, _iface, human) in KINDS.items():
            hook = getattr(self.pm.hook, hook_name)
            for impl in hook.get_hookimpls():
                plugin_name = impl.plugin_name
                dist = self._distribution_of(plugin_name)

                def register(name: str, factory: Callable[..., Any], description: str = "",
                             *, _kind=kind, _plugin=plugin_name, _dist=dist) -> None:
                    if not isinstance(name, str) or not name:
                        raise ComponentError(
                            f"plugin '{_plugin}' from package '{_dist}' registered a {KINDS[_kind][2]} "
                            f"with an invalid name {name!r}; names are non-empty strings")
                    if not callable(factory):
                        raise ComponentError(
                            f"plugin '{_plugin}' from package '{_dist}' registered {KINDS[_kind][2]} "
                            f"'{name}' with a factory that is not callable")
                    new = ComponentSpec(_kind, name, factory, description or "", _plugin, _dist)
                    old = specs[_kind].get(name)
                    if old is not None:
                        raise DuplicateComponentError(
                            f"{KINDS[_kind][2]} '{name}' is registered twice: by {old.origin} and by "
                            f"{new.origin}; disable one with {DISABLE_ENV}={old.plugin} or "
                            f"{DISABLE_ENV}={new.plugin}")
                    specs[_kind][name] = new

                try:
                    impl.function(register)
                except (DuplicateComponentError, ComponentError):
                    raise
                except Exception as exc:
                    msg = f"{type(exc).__name__}: {exc}".splitlines()[0]
                    warnings.warn(
                        f"xcf plugin '{plugin_name}' from package '{dist}' failed in {hook_name} "
                        f"and its {human}s were skipped: {msg}",
                        RuntimeWarning,
                        stacklevel=3,
                    )
        return specs

    @property
    def specs(self) -> dict[str, dict[str, ComponentSpec]]:
        if self._specs is None:
            self._specs = self._collect()
        return self._specs

    def invalidate(self) -> None:
        """Forget collected components (call after registering a plugin)."""
        self._specs = None

    # -- queries ----------------------------------------------------------------------------
    def register_plugin(self, plugin: object, name: str | None = None) -> str:
        """Register a plugin object (module, class or instance with ``@hookimpl`` functions)."""
        registered = self.pm.register(plugin, name=name)
        self.invalidate()
        if registered is None:
            raise ComponentError(f"plugin {name or plugin!r} is blocked (see {DISABLE_ENV})")
        return registered

    def unregister_plugin(self, name: str) -> None:
        self.pm.unregister(name=name)
        self.invalidate()

    def list(self, kind: str) -> list[str]:
        """Sorted names of the registered components of ``kind``."""
        return sorted(self.specs[_check_kind(kind)])

    def spec(self, kind: str, name: str) -> ComponentSpec:
        kind = _check_kind(kind)
        try:
            return self.specs[kind][name]
        except KeyError:
            known = ", ".join(sorted(self.specs[kind])) or "(none)"
            raise UnknownComponentError(
                f"unknown {KINDS[kind][2]} '{name}'; registered: {known}") from None

    def all_specs(self) -> Iterable[ComponentSpec]:
        for kind in KINDS:
            yield from (self.specs[kind][n] for n in sorted(self.specs[kind]))

    def create(self, kind: str, name: str, **kwargs: Any) -> Any:
        """Build component ``name`` of ``kind`` with ``factory(**kwargs)`` and check its type."""
        spec = self.spec(kind, name)
        try:
            obj = spec.factory(**kwargs)
        except TypeError as exc:
            raise ComponentError(f"{spec.label()} could not be built with {kwargs}: {exc}") from exc
        except Exception as exc:
            if isinstance(exc, (ComponentError,)) or type(exc).__module__.startswith("xcf"):
                raise
            raise ComponentError(f"{spec.label()} failed to build: {type(exc).__name__}: {exc}") from exc
        iface = KINDS[kind][1]
        if not isinstance(obj, iface):
            raise ComponentError(
                f"{spec.label()} built a {type(obj).__name__}, expected a subclass of xcf.{iface.__name__}")
        _tag(obj, spec)
        return obj

    def create_filtered(self, kind: str, name: str, **kwargs: Any) -> Any:
        """Like :meth:`create`, passing only the keyword arguments the factory accepts."""
        spec = self.spec(kind, name)
        return self.create(kind, name, **accepted_kwargs(spec.factory, kwargs))


def accepted_kwargs(factory: Callable[..., Any], kwargs: dict[str, Any]) -> dict[str, Any]:
    """The subset of ``kwargs`` that ``factory``'s signature accepts."""
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return {}
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return dict(kwargs)
    return {k: v for k, v in kwargs.items() if k in params}


def _tag(obj: Any, spec: ComponentSpec) -> None:
    with contextlib.suppress(AttributeError, TypeError):
        obj.xcf_spec = spec


def _check_kind(kind: str) -> str:
    if kind not in KINDS:
        raise UnknownComponentError(f"unknown component kind '{kind}'; valid kinds: {', '.join(KINDS)}")
    return kind


def component_label(obj: Any, kind: str) -> str:
    """A human label for a component instance: its registered name and package when known."""
    spec = getattr(obj, "xcf_spec", None)
    if isinstance(spec, ComponentSpec):
        return spec.label()
    return f"{KINDS[kind][2]} {type(obj).__module__}.{type(obj).__qualname__}"


def component_name(obj: Any) -> str:
    spec = getattr(obj, "xcf_spec", None)
    return spec.name if isinstance(spec, ComponentSpec) else type(obj).__qualname__


_default: Registry | None = None
_lock = threading.Lock()


def get_registry() -> Registry:
    """The default registry, built on first use from the installed entry points."""
    global _default
    with _lock:
        if _default is None:
            _default = Registry(make_plugin_manager())
        return _default


def reset_registry() -> None:
    """Drop the default registry; the next :func:`get_registry` rebuilds it (re-reads entry points
    and ``XCF_DISABLE_PLUGINS``)."""
    global _default
    with _lock:
        _default = None


def register_plugin(plugin: object, name: str | None = None) -> str:
    """Register a plugin object with the default registry (e.g. one defined in a notebook)."""
    return get_registry().register_plugin(plugin, name=name)


def list_components(kind: str) -> list[str]:
    """Names of the registered components of ``kind`` (``classifier``, ``latent``, ``saliency``,
    ``locality``, ``method``)."""
    return get_registry().list(kind)


def create(kind: str, name: str, **kwargs: Any) -> Any:
    """Build the registered component ``name`` of ``kind`` with ``kwargs``."""
    return get_registry().create(kind, name, **kwargs)


def resolve(kind: str, component: Any, registry: Registry | None = None, **kwargs: Any) -> Any:
    """A component instance from a registered name or an instance (returned as is).

    Keyword arguments are passed to the factory when they appear in its signature.
    """
    iface = KINDS[_check_kind(kind)][1]
    if isinstance(component, str):
        return (registry or get_registry()).create_filtered(kind, component, **kwargs)
    if isinstance(component, iface):
        return component
    raise ComponentError(
        f"{KINDS[kind][2]} must be a registered name or an xcf.{iface.__name__} instance, "
        f"got {type(component).__name__}")
