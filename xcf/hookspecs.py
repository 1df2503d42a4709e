"""pluggy hook specifications of xcf (project name ``"xcf"``).

A plugin is a module or object with functions marked ``@xcf.hookimpl`` and named like the specs
below; it is found through the ``xcf`` entry-point group::

    [project.entry-points.xcf]
    my_plugin = "my_package.xcf_plugin"

Each hook receives a ``register(name, factory, description="")`` callable. ``factory(**kwargs)``
must return an instance of the kind's interface (:mod:`xcf.interfaces`).
"""

from __future__ import annotations

from collections.abc import Callable

import pluggy

PROJECT_NAME = "xcf"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)

Register = Callable[..., None]


@hookspec
def xcf_register_classifiers(register: Register) -> None:
    """Register :class:`xcf.Classifier` factories: ``register("name", factory, description=...)``."""


@hookspec
def xcf_register_latent_models(register: Register) -> None:
    """Register :class:`xcf.LatentModel` factories."""


@hookspec
def xcf_register_saliency_methods(register: Register) -> None:
    """Register :class:`xcf.SaliencyMethod` factories."""


@hookspec
def xcf_register_locality_losses(register: Register) -> None:
    """Register :class:`xcf.LocalityLoss` factories."""


@hookspec
def xcf_register_methods(register: Register) -> None:
    """Register counterfactual methods (:class:`xcf.methods.Method`): ``factory()`` returns the
    method object, e.g. ``register("my-method", lambda: xcf.get_method("seed").replace(name="my-method",
    stop__probability=0.3))``."""
