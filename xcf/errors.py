"""Exception classes of xcf.

Every error a user can cause (a bad file, an unknown label, missing weights, a faulty plugin) is an
:class:`XcfError` subclass whose message is one line saying what was wrong and what is valid. The CLI
prints that line to stderr and exits with status 2; anything else is a bug and shows a traceback.
"""

from __future__ import annotations

__all__ = [
    "XcfError",
    "InvalidImageError",
    "ImageTooSmallError",
    "ImageTooLargeError",
    "UnknownLabelError",
    "UnknownComponentError",
    "DuplicateComponentError",
    "PluginLoadError",
    "ComponentError",
    "WeightsError",
    "ConfigError",
    "DataError",
]


class XcfError(Exception):
    """Base class of every error xcf raises on purpose (user errors, not bugs)."""


class InvalidImageError(XcfError, ValueError):
    """An image (file, array or tensor) cannot be read or does not meet xcf's input rules."""


class ImageTooSmallError(InvalidImageError):
    """An image is below the minimum side length xcf accepts."""


class ImageTooLargeError(InvalidImageError):
    """An image is above the pixel count xcf accepts (decompression-bomb guard)."""


class UnknownLabelError(XcfError, KeyError):
    """A target finding is not among the classifier's labels."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it one plain line.
        return str(self.args[0]) if self.args else ""


class UnknownComponentError(XcfError, KeyError):
    """No component of the asked kind is registered under the asked name."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class DuplicateComponentError(XcfError):
    """Two plugins registered a component of the same kind under the same name."""


class PluginLoadError(XcfError):
    """A plugin could not be imported or registered."""


class ComponentError(XcfError):
    """A component (classifier, latent model, saliency method, locality loss) misbehaved: it raised,
    or returned the wrong shape, range or non-finite values. The message names the component and the
    distribution that registered it."""


class WeightsError(XcfError):
    """Weights or their manifest are missing, corrupt, unsafe or do not match."""


class ConfigError(XcfError, ValueError):
    """A configuration value is invalid."""


class DataError(XcfError):
    """A dataset (CSV, folder) is malformed or missing."""
