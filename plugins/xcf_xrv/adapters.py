"""Adapters that make torchxrayvision models xcf components.

Cohen, Viviano, Bertin, Morrison, Torabian, Guarrera, Lungren, Chaudhari, Brooks, Hashir &
Bertrand, "TorchXRayVision: A library of chest X-ray datasets and models", MIDL 2022.

torchxrayvision is optional (``pip install 'xcf[xrv]'``) and imported only when an adapter is
built. Its models take ``(B, 1, 224, 224)`` images scaled to ``[-1024, 1024]``; the adapters take
canonical images in ``[0, 1]`` and convert inside (``x * 2048 - 1024``), resizing other sizes to
224 (bilinear, antialiased) as torchxrayvision itself does.

Weights: torchxrayvision keeps them in ``~/.torchxrayvision/models_data/`` (or ``cache_dir``).
The adapters refuse pickled weights unless ``trust_pickle=True`` and never download unless
``download=True``; then they look for the file first and, when it is missing, download it with a
timeout (no torchxrayvision download code, no ``print``) into ``<file>.part`` and rename it on
success, or raise :class:`~xcf.errors.WeightsError` saying where to put the file. Note that
torchxrayvision's DenseNet weights are pickled whole models, loaded by torchxrayvision with
``torch.load(weights_only=False)``: only use weight files from its official release page.

Importing torchxrayvision runs ``warnings.filterwarnings("ignore")``; the adapters import it inside
:func:`warnings.catch_warnings`, so the process's warning filters are left as they were.
"""

from __future__ import annotations

import contextlib
import inspect
import io
import logging
import os
import shutil
import urllib.error
import urllib.request
import warnings
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from xcf import Classifier, Latent, LatentModel
from xcf.errors import ComponentError, ConfigError, WeightsError

__all__ = ["XRVDenseNet", "XRVResNetAE", "import_xrv", "MISSING_MESSAGE", "DEFAULT_CLASSIFIER_WEIGHTS",
           "DEFAULT_AE_WEIGHTS"]

logger = logging.getLogger(__name__)

MISSING_MESSAGE = "torchxrayvision is not installed; pip install 'xcf[xrv]'"
DEFAULT_CLASSIFIER_WEIGHTS = "densenet121-res224-all"
DEFAULT_AE_WEIGHTS = "101-elastic"
#: Seconds a download may stall (connect or read) before it is abandoned.
DOWNLOAD_TIMEOUT_S = 30.0
#: torchxrayvision's native input side length.
XRV_SIZE = 224


def import_xrv() -> ModuleType:
    """Import torchxrayvision without letting it change the process's warning filters.

    Raises:
        xcf.errors.ComponentError: It is not installed (one line: how to install it) or fails to
            import.
    """
    try:
        with warnings.catch_warnings():
            import torchxrayvision as xrv
    except ImportError as exc:
        if exc.name == "torchxrayvision":
            raise ComponentError(MISSING_MESSAGE) from None
        raise ComponentError(
            f"torchxrayvision is installed but failed to import ({type(exc).__name__}: {exc}); "
            "reinstall it with pip install 'xcf[xrv]'") from None
    return xrv


def to_xrv_range(x: Tensor) -> Tensor:
    """Canonical ``(B, 1, S, S)`` in ``[0, 1]`` -> ``(B, 1, 224, 224)`` in ``[-1024, 1024]``."""
    if x.shape[-2:] != (XRV_SIZE, XRV_SIZE):
        x = F.interpolate(x, size=(XRV_SIZE, XRV_SIZE), mode="bilinear", align_corners=False,
                          antialias=True)
    return x * 2048.0 - 1024.0


def _cache_folder(xrv: ModuleType, cache_dir: str | os.PathLike | None) -> Path:
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    get = getattr(getattr(xrv, "utils", None), "get_cache_dir", None)
    if callable(get):
        return Path(get()).expanduser()
    return Path("~/.torchxrayvision/models_data").expanduser()


def _refuse_pickle(what: str, weights: str, trust_pickle: bool) -> None:
    if not trust_pickle:
        raise WeightsError(
            f"{what} weights '{weights}' are a pickle that torchxrayvision loads with "
            "torch.load(weights_only=False), which can run code; xcf does not unpickle unless you "
            "pass trust_pickle=True for a file you trust (weights=None builds the architecture)")


def _ensure_weights(what: str, weights: str, url: str, path: Path, download: bool) -> None:
    """Make sure ``path`` exists, downloading ``url`` to it if allowed; else a one-line WeightsError."""
    if path.is_file():
        return
    where = f"download {url} and save it as {path}"
    if not download:
        raise WeightsError(f"{what} weights '{weights}' are not cached at {path} (download=False); {where}")
    part = path.with_name(path.name + ".part")
    logger.info("downloading %s weights '%s' from %s to %s", what, weights, url, path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response, open(part, "wb") as f:
            shutil.copyfileobj(response, f, length=1 << 20)
        os.replace(part, path)
    except (OSError, urllib.error.URLError, ValueError) as exc:
        with contextlib.suppress(OSError):
            part.unlink()
        text = str(getattr(exc, "reason", None) or exc).strip()
        reason = text.splitlines()[0] if text else type(exc).__name__
        raise WeightsError(f"{what} weights '{weights}' are not cached at {path} and could not be "
                           f"downloaded ({reason}); {where}") from None


def _build_quietly(what: str, path: Path | None, url: str | None, build) -> Any:
    """Call torchxrayvision's constructor with its ``print`` output sent to the log."""
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out), warnings.catch_warnings():
            model = build()
    except Exception as exc:
        if path is None:
            raise
        msg = f"{type(exc).__name__}: {exc}".splitlines()[0]
        raise WeightsError(f"{what} weights file {path} could not be loaded ({msg}); delete it and "
                           f"download {url} again") from None
    finally:
        if out.getvalue().strip():
            logger.debug("torchxrayvision: %s", out.getvalue().strip())
    return model


def _cache_kwargs(factory, folder: Path) -> dict[str, Any]:
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return {}
    return {"cache_dir": str(folder)} if "cache_dir" in params else {}


class XRVDenseNet(Classifier):
    """torchxrayvision's DenseNet-121 pathology classifier (``xrv.models.DenseNet``).

    Labels are the model's ``pathologies`` without the empty names (outputs a weight set was not
    trained for), in the model's order; 18 findings for ``densenet121-res224-all``.

    What :meth:`forward` returns: with ``calibrated=True`` (default) and weights that carry
    operating-point thresholds ``t`` (all published DenseNet weights), the logits of
    torchxrayvision's calibrated outputs: ``logit(op_norm(sigmoid(raw)))``, where
    ``op_norm(p) = p / (2t)`` for ``p < t`` and ``1 - (1 - p) / (2 (1 - t))`` otherwise. So
    ``sigmoid(forward(x))`` equals what ``xrv_model(x)`` returns by default (up to a clamp of the
    probabilities to ``[1e-6, 1 - 1e-6]``), and probability 0.5 is the published operating point,
    which makes xcf's "below 0.5" validity meaningful. A finding without a threshold (NaN) keeps
    its raw logit. With ``calibrated=False``, or ``weights=None``, the raw logits of the model's
    final linear layer (``sigmoid`` of them is torchxrayvision's ``apply_sigmoid=True`` output
    without thresholds).

    The forward pass is re-implemented (same layers and weights): ``features`` -> out-of-place
    ReLU -> global average pool -> ``classifier``, so :meth:`cam_layer` can return
    ``features.norm5`` (1024 x 7 x 7), whose output torchxrayvision's own forward would modify with
    an in-place ReLU.

    Args:
        weights: A torchxrayvision DenseNet weight name (``"densenet121-res224-all"``,
            ``"densenet121-res224-chex"``, ``"densenet121-res224-nih"``, ...) or ``None`` for
            the untrained architecture (18 default pathologies, nothing downloaded).
        cache_dir: Folder of the weight files (default torchxrayvision's
            ``~/.torchxrayvision/models_data/``).
        calibrated: Return calibrated logits (see above).
        download: Download missing weights (30 s stall timeout). Off by default: xcf never touches
            the network unless asked; a missing file raises a one-line WeightsError saying where to
            put it.
        trust_pickle: torchxrayvision's published weights are pickled and loaded with
            ``torch.load(weights_only=False)``, which can run code. xcf refuses that unless you pass
            ``trust_pickle=True`` for a file you trust (``weights=None`` needs nothing).

    Raises:
        xcf.errors.ComponentError: torchxrayvision is not installed.
        xcf.errors.ConfigError: Unknown weight name.
        xcf.errors.WeightsError: The weights are not cached and could not be downloaded, or the file
            does not load.
    """

    input_size = XRV_SIZE

    def __init__(self, weights: str | None = DEFAULT_CLASSIFIER_WEIGHTS,
                 cache_dir: str | os.PathLike | None = None, calibrated: bool = True,
                 download: bool = False, trust_pickle: bool = False) -> None:
        super().__init__()
        xrv = import_xrv()
        self.weights = weights
        self.calibrated = bool(calibrated)
        factory = xrv.models.DenseNet
        if weights is None:
            model = _build_quietly("torchxrayvision DenseNet", None, None, lambda: factory(weights=None))
        else:
            urls = xrv.models.model_urls
            valid = sorted(k for k in urls if k.startswith("densenet"))
            if weights not in urls or "resnet" in weights:
                raise ConfigError(f"unknown torchxrayvision DenseNet weights '{weights}'; valid: {', '.join(valid)}")
            url = urls[weights]["weights_url"]
            _refuse_pickle("torchxrayvision DenseNet", weights, trust_pickle)
            folder = _cache_folder(xrv, cache_dir)
            path = folder / os.path.basename(url)
            _ensure_weights("torchxrayvision DenseNet", weights, url, path, download)
            kwargs = _cache_kwargs(factory, folder)
            if not kwargs and cache_dir is not None:
                raise ConfigError("this torchxrayvision version has no cache_dir argument; upgrade it "
                                  "with pip install -U 'xcf[xrv]' or leave cache_dir unset")
            model = _build_quietly("torchxrayvision DenseNet", path, url,
                                   lambda: factory(weights=weights, **kwargs))
        self.model = model
        names = list(getattr(model, "pathologies", None) or model.targets)
        keep = [i for i, name in enumerate(names) if name]
        self.labels = tuple(str(names[i]) for i in keep)
        self.register_buffer("keep", torch.tensor(keep, dtype=torch.long), persistent=False)
        thr = getattr(model, "op_threshs", None)
        if self.calibrated and thr is not None:
            t = torch.as_tensor(thr, dtype=torch.float32)[keep]
            # NaN (no operating point) -> 0.5, for which op_norm is the identity; avoids NaN gradients.
            self.register_buffer("thresholds", torch.nan_to_num(t, nan=0.5), persistent=False)
        else:
            self.thresholds: Tensor | None = None

    def forward(self, x: Tensor) -> Tensor:
        """Logits ``(B, K)`` (see the class docstring) of canonical ``(B, 1, S, S)`` in ``[0, 1]``."""
        feats = self.model.features(to_xrv_range(x))
        pooled = torch.flatten(F.adaptive_avg_pool2d(F.relu(feats), 1), 1)
        logits = self.model.classifier(pooled).index_select(1, self.keep)
        if self.thresholds is None:
            return logits
        p = torch.sigmoid(logits)
        t = self.thresholds
        cal = torch.where(p < t, p / (2 * t), 1 - (1 - p) / (2 * (1 - t)))
        return torch.logit(cal, eps=1e-6)

    def cam_layer(self) -> nn.Module:
        """``model.features.norm5`` ``(B, 1024, 7, 7)``; not modified in place by :meth:`forward`."""
        return self.model.features.norm5

    def config(self) -> dict:
        """Constructor arguments (for manifests)."""
        return {"weights": self.weights, "calibrated": self.calibrated}


class XRVResNetAE(LatentModel):
    """torchxrayvision's ResNet-101 autoencoder (``xrv.autoencoders.ResNetAE``).

    ``encode`` converts canonical images to ``[-1024, 1024]`` at 224 px and returns its bottleneck
    ``z`` ``(B, 512, 3, 3)`` (no ``aux``); ``decode`` maps the decoder's output back with
    ``(y + 1024) / 2048`` clamped to ``[0, 1]`` (zero gradient where the decoder overshoots that
    range) at 224 px. Trained weights: ``"101-elastic"`` (Cohen et al., "Gifsplanation via latent
    shift", MIDL 2021). Parameters: 31.1 M.

    Args:
        weights: ``"101-elastic"`` or ``None`` for the untrained architecture (nothing downloaded).
        cache_dir: Folder of the weight files (default ``~/.torchxrayvision/models_data/``).
        download: Download missing weights (30 s stall timeout). Off by default: xcf never touches
            the network unless asked; a missing file raises a one-line WeightsError saying where to
            put it.
        trust_pickle: torchxrayvision's published weights are pickled and loaded with
            ``torch.load(weights_only=False)``, which can run code. xcf refuses that unless you pass
            ``trust_pickle=True`` for a file you trust (``weights=None`` needs nothing).

    Raises:
        xcf.errors.ComponentError: torchxrayvision is not installed.
        xcf.errors.ConfigError: Unknown weight name.
        xcf.errors.WeightsError: The weights are not cached and could not be downloaded, or the file
            does not load.
    """

    input_size = XRV_SIZE

    def __init__(self, weights: str | None = DEFAULT_AE_WEIGHTS, cache_dir: str | os.PathLike | None = None,
                 download: bool = False, trust_pickle: bool = False) -> None:
        super().__init__()
        xrv = import_xrv()
        self.weights = weights
        factory = xrv.autoencoders.ResNetAE
        if weights is None:
            model = _build_quietly("torchxrayvision ResNetAE", None, None, lambda: factory(weights=None))
        else:
            urls = xrv.autoencoders.model_urls
            if weights not in urls:
                raise ConfigError(f"unknown torchxrayvision autoencoder weights '{weights}'; valid: "
                                  f"{', '.join(sorted(urls))}")
            url = urls[weights]["weights_url"]
            _refuse_pickle("torchxrayvision ResNetAE", weights, trust_pickle)
            folder = _cache_folder(xrv, cache_dir)
            path = folder / os.path.basename(url)
            _ensure_weights("torchxrayvision ResNetAE", weights, url, path, download)
            kwargs = _cache_kwargs(factory, folder)
            if not kwargs and cache_dir is not None:
                raise ConfigError("this torchxrayvision version has no cache_dir argument; upgrade it "
                                  "with pip install -U 'xcf[xrv]' or leave cache_dir unset")
            model = _build_quietly("torchxrayvision ResNetAE", path, url,
                                   lambda: factory(weights=weights, **kwargs))
        self.model = model

    def encode(self, x: Tensor) -> Latent:
        """``Latent(z=(B, 512, 3, 3))`` of canonical ``(B, 1, S, S)`` in ``[0, 1]``."""
        return Latent(self.model.encode(to_xrv_range(x)))

    def decode(self, latent: Latent) -> Tensor:
        """``(B, 1, 224, 224)`` in ``[0, 1]``; differentiable in ``z`` (except where clamped)."""
        z = latent.z
        y = self.model.decode(z, [z.shape[0], 1, XRV_SIZE, XRV_SIZE])
        return ((y + 1024.0) / 2048.0).clamp(0.0, 1.0)

    def config(self) -> dict:
        """Constructor arguments (for manifests)."""
        return {"weights": self.weights}
