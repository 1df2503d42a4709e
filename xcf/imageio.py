"""Image decoding, validation and resizing: everything that turns user input into xcf's canonical image.

The canonical image everywhere in xcf is a ``torch.float32`` tensor of shape ``(B, 1, H, W)`` with
values in [0, 1], grey, 0 = black. :func:`load_image` is the single entry point that produces it from

- a path (``str`` or :class:`os.PathLike`) to a PNG (8- or 16-bit grey; colour is converted to grey
  with an :class:`ImageConversionWarning`), a JPEG, or a DICOM file (``.dcm``/``.dicom``, or any file
  with the ``DICM`` marker at byte 128; needs ``pip install xcf[dicom]``);
- a :class:`PIL.Image.Image`;
- a :class:`numpy.ndarray` or :class:`torch.Tensor` of shape ``(H, W)``, ``(1, H, W)`` or
  ``(1, 1, H, W)``.

Value rules for arrays and tensors: unsigned and signed integers are divided by their dtype's maximum
(``uint8`` by 255, ``uint16`` by 65535, ...; negative values are refused), ``bool`` maps to 0/1, floats
are taken as already in [0, 1]: values outside [0, 1] by more than :data:`FLOAT_TOLERANCE` and NaN/Inf
are refused, never clipped silently. Arrays with more than one channel are refused with a message
saying how to convert them.

DICOM: the modality LUT (rescale slope/intercept) is applied, then the VOI LUT or the first window
centre/width when the file has one (the output range of that window maps to [0, 1]), otherwise the
image is min-max normalized; ``MONOCHROME1`` is inverted so that bone is bright. Multi-frame and
colour DICOM files are refused.

Limits (module constants):

- :data:`MIN_SIDE` = 32: images with a side shorter than 32 pixels raise
  :class:`~xcf.errors.ImageTooSmallError`.
- :data:`MAX_PIXELS` = 50,000,000: images with more pixels raise
  :class:`~xcf.errors.ImageTooLargeError`, for files *before* the pixel data is decoded (PIL reads
  the size lazily; DICOM ``Rows``/``Columns`` are read with ``stop_before_pixels=True``). PIL's own
  decompression-bomb warning or error is turned into the same exception.

Every refused input raises an :class:`~xcf.errors.InvalidImageError` (or a subclass) whose message is
one line: ``"<path | array | tensor | PIL image>: <reason>; accepted: <what is accepted>"``. No other
exception type escapes :func:`load_image`, whatever the bytes of the file: decoder exceptions are
re-raised as :class:`~xcf.errors.InvalidImageError` ``from`` the original one. Truncated PNG and JPEG
files are refused, not half-loaded (xcf never sets ``PIL.ImageFile.LOAD_TRUNCATED_IMAGES``).
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path
from typing import Any, Union

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from xcf.errors import (
    ConfigError,
    ImageTooLargeError,
    ImageTooSmallError,
    InvalidImageError,
    XcfError,
)

__all__ = [
    "MIN_SIDE",
    "MAX_PIXELS",
    "FLOAT_TOLERANCE",
    "ASPECT_POLICIES",
    "ImageConversionWarning",
    "ImageSource",
    "load_image",
    "resize_canonical",
    "save_png",
]

logger = logging.getLogger(__name__)

MIN_SIDE: int = 32
"""Shortest accepted image side in pixels (before any resizing)."""

MAX_PIXELS: int = 50_000_000
"""Largest accepted pixel count ``H * W`` (decompression-bomb guard), checked before decoding."""

FLOAT_TOLERANCE: float = 1e-6
"""Float values in ``[-FLOAT_TOLERANCE, 1 + FLOAT_TOLERANCE]`` are accepted and clipped to [0, 1]."""

ASPECT_POLICIES: tuple[str, ...] = ("crop", "pad", "stretch")
"""How :func:`load_image` makes a non-square image square before resizing."""

ImageSource = Union[str, "os.PathLike[str]", Image.Image, np.ndarray, torch.Tensor]
"""What :func:`load_image` accepts (see the module docstring for the rules on each)."""

_PIL_FORMATS = ("PNG", "JPEG")
_DICOM_SUFFIXES = frozenset({".dcm", ".dicom"})

_ACCEPT_FILE = "PNG (8/16-bit grey), JPEG, DICOM"
_ACCEPT_ARRAY = (
    "one grey image of shape (H, W), (1, H, W) or (1, 1, H, W); integer/bool dtypes are scaled by "
    "their range, floats must be finite and in [0, 1]"
)
_ACCEPT_SOURCE = (
    "a path (PNG, JPEG, DICOM), a PIL image, a numpy array or a torch tensor of shape (H, W), "
    "(1, H, W) or (1, 1, H, W)"
)

# What third-party decoders (PIL, pydicom) may raise on hostile or broken bytes: OSError, ValueError,
# SyntaxError, struct.error, EOFError, IndexError, KeyError, TypeError, MemoryError, RuntimeError,
# NotImplementedError, AttributeError, ... The list is open-ended, so ``Exception`` is caught, but
# only around decoder calls; XcfError raised by xcf itself is always re-raised unchanged.
_DecoderErrors = (Exception,)


class ImageConversionWarning(UserWarning):
    """An image was converted on load in a way that may lose information (colour to grey, alpha)."""


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _error(
    cls: type[InvalidImageError], where: str, reason: str, accepted: str
) -> InvalidImageError:
    """Build an image error with the one-line message ``"<where>: <reason>; accepted: <accepted>"``."""
    return cls(_one_line(f"{where}: {reason}; accepted: {accepted}"))


def _exc_text(exc: BaseException) -> str:
    text = _one_line(str(exc))
    name = type(exc).__name__
    return f"{name}: {text}" if text else name


# --------------------------------------------------------------------------------------------------
# public API
# --------------------------------------------------------------------------------------------------


def load_image(
    source: ImageSource, *, size: int | None = None, aspect: str = "crop"
) -> torch.Tensor:
    """Load one grey image as xcf's canonical tensor.

    Args:
        source: A path (``str``/``os.PathLike``) to a PNG, JPEG or DICOM file, a PIL image, or a
            numpy array / torch tensor of shape ``(H, W)``, ``(1, H, W)`` or ``(1, 1, H, W)``
            (integer dtypes scaled by their range, floats in [0, 1]). See the module docstring.
        size: If given, the output is ``size x size`` (after applying ``aspect``); downsizing uses
            antialiased bilinear interpolation. ``None`` keeps the native size and ignores ``aspect``.
        aspect: How a non-square image becomes square when ``size`` is given: ``"crop"`` (centre
            crop to the shorter side, as torchxrayvision does; default), ``"pad"`` (zero-pad to the
            longer side, centred) or ``"stretch"`` (resize each side independently).

    Returns:
        ``torch.float32`` tensor of shape ``(1, 1, H, W)`` with finite values in [0, 1]; a new
        tensor (never a view of ``source``), detached, on the input tensor's device (CPU for every
        other source).

    Raises:
        InvalidImageError: The source cannot be read or breaks an input rule (one-line message with
            the path, or ``array``/``tensor``/``PIL image``, the reason and what is accepted).
        ImageTooSmallError: A side is shorter than :data:`MIN_SIDE`.
        ImageTooLargeError: More than :data:`MAX_PIXELS` pixels.
        ConfigError: ``size`` or ``aspect`` is invalid.
    """
    _check_size_arg(size)
    _check_aspect_arg(aspect)
    notes: list[str] = []
    if isinstance(source, (str, os.PathLike)):
        x = _load_path(source, notes)
    elif isinstance(source, Image.Image):
        x = _from_pil(source, "PIL image", notes)
    elif isinstance(source, torch.Tensor):
        x = _from_tensor(source)
    elif isinstance(source, np.ndarray):
        x = _from_numpy(source, "array")
    else:
        raise _error(
            InvalidImageError,
            type(source).__name__,
            f"unsupported source type {type(source).__module__}.{type(source).__qualname__}",
            _ACCEPT_SOURCE,
        )
    for note in notes:
        warnings.warn(note, ImageConversionWarning, stacklevel=2)
    if size is not None:
        x = _make_square(x, aspect)
        x = resize_canonical(x, size)
    return x.contiguous()


def resize_canonical(x: torch.Tensor, size: int, *, aspect: str = "stretch") -> torch.Tensor:
    """Resize a canonical batch to ``size x size``; differentiable.

    Args:
        x: ``(B, 1, H, W)`` floating tensor, values in [0, 1].
        size: Output side length (>= 1).
        aspect: ``"stretch"`` (default: each side resized independently), ``"crop"`` (centre crop to
            the shorter side first) or ``"pad"`` (zero-pad to the longer side first).

    Returns:
        ``(B, 1, size, size)`` tensor in [0, 1], same dtype and device. ``x`` itself when it already
        has that size. Downsizing uses ``F.interpolate(mode="bilinear", antialias=True,
        align_corners=False)``; the result is clamped to [0, 1] (bilinear weights are non-negative, so
        clamping only removes rounding error).

    Raises:
        InvalidImageError: ``x`` is not ``(B, 1, H, W)`` floating point.
        ConfigError: ``size`` or ``aspect`` is invalid.
    """
    _check_size_arg(size, allow_none=False)
    _check_aspect_arg(aspect)
    if not isinstance(x, torch.Tensor) or x.ndim != 4 or x.shape[1] != 1:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise _error(
            InvalidImageError, "tensor", f"shape {shape} is not (B, 1, H, W)", "(B, 1, H, W)"
        )
    if not x.is_floating_point():
        raise _error(InvalidImageError, "tensor", f"dtype {x.dtype} is not floating point", "float")
    if x.shape[-2] == size and x.shape[-1] == size:
        return x
    x = _make_square(x, aspect)
    if x.shape[-2] == size and x.shape[-1] == size:
        return x
    y = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return y.clamp(0.0, 1.0)


def save_png(path: str | os.PathLike[str], image: torch.Tensor) -> None:
    """Write one grey image as an 8-bit grey PNG.

    Args:
        path: Destination file (its folder must exist). Not written atomically.
        image: ``(H, W)``, ``(1, H, W)`` or ``(1, 1, H, W)`` tensor (or numpy array) with finite
            values in [0, 1]; quantized as ``round(x * 255)``.

    Raises:
        InvalidImageError: ``image`` has another shape, non-finite values or values outside [0, 1].
    """
    if isinstance(image, np.ndarray):
        image = torch.from_numpy(np.asarray(image))
    if not isinstance(image, torch.Tensor):
        raise _error(
            InvalidImageError, str(path), f"cannot save {type(image).__name__}", "a torch tensor"
        )
    t = image.detach()
    while t.ndim > 2 and t.shape[0] == 1:
        t = t[0]
    if t.ndim != 2:
        raise _error(
            InvalidImageError,
            str(path),
            f"image of shape {tuple(image.shape)} is not one grey image",
            "(H, W), (1, H, W) or (1, 1, H, W)",
        )
    t = t.to(device="cpu", dtype=torch.float64)
    if t.numel() and not bool(torch.isfinite(t).all()):
        raise _error(InvalidImageError, str(path), "image has NaN or Inf values", "finite values")
    if t.numel() and (float(t.min()) < -FLOAT_TOLERANCE or float(t.max()) > 1 + FLOAT_TOLERANCE):
        raise _error(
            InvalidImageError,
            str(path),
            f"values in [{float(t.min()):.6g}, {float(t.max()):.6g}] are outside [0, 1]",
            "values in [0, 1]",
        )
    arr = (t.clamp(0, 1) * 255.0).round().to(torch.uint8).numpy()
    Image.fromarray(np.ascontiguousarray(arr)).save(os.fspath(path), format="PNG")


# --------------------------------------------------------------------------------------------------
# argument checks and geometry
# --------------------------------------------------------------------------------------------------


def _check_size_arg(size: Any, *, allow_none: bool = True) -> None:
    if size is None and allow_none:
        return
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
        raise ConfigError(f"size={size!r} is invalid; accepted: a positive int (or None)")


def _check_aspect_arg(aspect: Any) -> None:
    if aspect not in ASPECT_POLICIES:
        raise ConfigError(f"aspect={aspect!r} is invalid; accepted: {', '.join(ASPECT_POLICIES)}")


def _make_square(x: torch.Tensor, aspect: str) -> torch.Tensor:
    """Make ``(B, 1, H, W)`` square by the ``aspect`` policy (``stretch`` leaves it as it is)."""
    h, w = int(x.shape[-2]), int(x.shape[-1])
    if h == w or aspect == "stretch":
        return x
    if aspect == "crop":
        s = min(h, w)
        top, left = (h - s) // 2, (w - s) // 2
        return x[..., top : top + s, left : left + s]
    s = max(h, w)
    top, left = (s - h) // 2, (s - w) // 2
    return F.pad(x, (left, s - w - left, top, s - h - top), mode="constant", value=0.0)


def _check_geometry(where: str, h: int, w: int) -> None:
    if h * w > MAX_PIXELS:
        raise _error(
            ImageTooLargeError,
            where,
            f"image is {h}x{w} = {h * w:,} pixels, more than MAX_PIXELS = {MAX_PIXELS:,}",
            f"at most {MAX_PIXELS:,} pixels",
        )
    if min(h, w) < MIN_SIDE:
        raise _error(
            ImageTooSmallError,
            where,
            f"image is {h}x{w} pixels, a side is shorter than MIN_SIDE = {MIN_SIDE}",
            f"at least {MIN_SIDE} pixels per side",
        )


# --------------------------------------------------------------------------------------------------
# arrays and tensors
# --------------------------------------------------------------------------------------------------


def _squeeze_to_2d(shape: tuple[int, ...], where: str) -> None:
    """Validate an array shape; raise with a conversion hint when it is not one grey image."""
    nd = len(shape)
    if nd == 2 or (nd == 3 and shape[0] == 1) or (nd == 4 and shape[0] == 1 and shape[1] == 1):
        return
    if nd == 3 and shape[0] in (2, 3, 4):
        reason = f"shape {shape} has {shape[0]} channels"
        hint = "convert to grey first, e.g. x.mean(0, keepdim=True) or PIL's .convert('L')"
    elif nd == 3 and shape[-1] in (2, 3, 4):
        reason = f"shape {shape} has {shape[-1]} channels (channels last)"
        hint = "convert to grey first, e.g. x.mean(-1) or PIL's .convert('L')"
    elif nd == 3:
        reason = f"shape {shape} has {shape[0]} channels"
        hint = "one grey channel; pass (H, W) or (1, H, W)"
    elif nd == 4 and shape[0] != 1:
        reason = f"shape {shape} is a batch of {shape[0]} images"
        hint = "one image per call (loop over the batch)"
    elif nd == 4:
        reason = f"shape {shape} has {shape[1]} channels"
        hint = "convert to grey first, e.g. x.mean(1, keepdim=True)"
    else:
        reason = f"{nd} dimensions (shape {shape})"
        hint = "2, 3 or 4 dimensions"
    raise _error(InvalidImageError, where, reason, f"{_ACCEPT_ARRAY}; {hint}")


def _from_numpy(arr: np.ndarray, where: str) -> torch.Tensor:
    """Validate and scale a numpy array to ``(1, 1, H, W)`` float32 in [0, 1]."""
    shape = tuple(int(s) for s in arr.shape)
    _squeeze_to_2d(shape, where)
    h, w = shape[-2], shape[-1]
    _check_geometry(where, h, w)
    arr = arr.reshape(h, w)
    kind = arr.dtype.kind
    if kind == "b":
        out = arr.astype(np.float32)
    elif kind in "ui":
        info = np.iinfo(arr.dtype)
        if kind == "i":
            lo = int(arr.min())
            if lo < 0:
                raise _error(
                    InvalidImageError,
                    where,
                    f"{arr.dtype} values must be >= 0 (minimum is {lo})",
                    _ACCEPT_ARRAY,
                )
        out = (arr.astype(np.float64) / float(info.max)).astype(np.float32)
    elif kind == "f":
        out = _check_float(arr.astype(np.float64, copy=False), where).astype(np.float32)
    else:
        raise _error(
            InvalidImageError,
            where,
            f"unsupported dtype {arr.dtype} (kind {kind!r})",
            _ACCEPT_ARRAY,
        )
    t = torch.from_numpy(np.ascontiguousarray(out)).reshape(1, 1, h, w)
    return t.clamp(0.0, 1.0)


def _check_float(arr: np.ndarray, where: str) -> np.ndarray:
    if not np.isfinite(arr).all():
        n_nan = int(np.isnan(arr).sum())
        n_inf = int(np.isinf(arr).sum())
        raise _error(InvalidImageError, where, f"{n_nan} NaN and {n_inf} Inf values", _ACCEPT_ARRAY)
    lo, hi = float(arr.min()), float(arr.max())
    if lo < -FLOAT_TOLERANCE or hi > 1.0 + FLOAT_TOLERANCE:
        raise _error(
            InvalidImageError,
            where,
            f"float values span [{lo:.6g}, {hi:.6g}], outside [0, 1] (not clipped; scale them "
            "first, e.g. (x - x.min()) / (x.max() - x.min()))",
            _ACCEPT_ARRAY,
        )
    return np.clip(arr, 0.0, 1.0)


def _from_tensor(t: torch.Tensor) -> torch.Tensor:
    """Validate and scale a tensor to ``(1, 1, H, W)`` float32 in [0, 1], keeping its device."""
    where = "tensor"
    shape = tuple(int(s) for s in t.shape)
    _squeeze_to_2d(shape, where)
    h, w = shape[-2], shape[-1]
    _check_geometry(where, h, w)
    if t.layout != torch.strided or t.device.type == "meta":
        raise _error(
            InvalidImageError,
            where,
            f"unsupported tensor layout {t.layout} on {t.device}",
            f"{_ACCEPT_ARRAY}; a dense tensor with data",
        )
    t = t.detach().reshape(1, 1, h, w)
    dtype = t.dtype
    if dtype.is_complex or dtype in (torch.quint8, torch.qint8, torch.qint32, torch.quint4x2):
        raise _error(InvalidImageError, where, f"unsupported dtype {dtype}", _ACCEPT_ARRAY)
    if dtype == torch.bool:
        return t.to(torch.float32)
    if dtype.is_floating_point:
        x = t.to(torch.float64)
        if not bool(torch.isfinite(x).all()):
            n_nan = int(torch.isnan(x).sum())
            n_inf = int(torch.isinf(x).sum())
            raise _error(
                InvalidImageError, where, f"{n_nan} NaN and {n_inf} Inf values", _ACCEPT_ARRAY
            )
        lo, hi = float(x.min()), float(x.max())
        if lo < -FLOAT_TOLERANCE or hi > 1.0 + FLOAT_TOLERANCE:
            raise _error(
                InvalidImageError,
                where,
                f"float values span [{lo:.6g}, {hi:.6g}], outside [0, 1] (not clipped; scale them "
                "first, e.g. (x - x.min()) / (x.max() - x.min()))",
                _ACCEPT_ARRAY,
            )
        return x.clamp(0.0, 1.0).to(torch.float32)
    try:
        info = torch.iinfo(dtype)
    except TypeError as exc:
        raise _error(InvalidImageError, where, f"unsupported dtype {dtype}", _ACCEPT_ARRAY) from exc
    x = t.to(torch.float64)
    if info.min < 0:
        lo = float(x.min())
        if lo < 0:
            raise _error(
                InvalidImageError,
                where,
                f"{dtype} values must be >= 0 (minimum is {lo:g})",
                _ACCEPT_ARRAY,
            )
    return (x / float(info.max)).clamp(0.0, 1.0).to(torch.float32)


# --------------------------------------------------------------------------------------------------
# PIL images
# --------------------------------------------------------------------------------------------------

_RGB_LIKE = frozenset({"RGB", "RGBA", "RGBa", "RGBX", "CMYK", "YCbCr", "LAB", "HSV", "P", "PA"})


def _from_pil(img: Image.Image, where: str, notes: list[str]) -> torch.Tensor:
    """Decode a PIL image (already size-checked or not) to ``(1, 1, H, W)`` float32 in [0, 1].

    Colour conversions append a message to ``notes``; the caller emits them as warnings.
    """
    w, h = img.size
    _check_geometry(where, h, w)
    mode = img.mode
    try:
        img.load()
        if mode == "1":
            arr: np.ndarray = np.asarray(img, dtype=bool)
        elif mode == "L":
            arr = np.asarray(img, dtype=np.uint8)
        elif mode.startswith("I;16"):
            arr = np.asarray(img).astype(np.uint16)
        elif mode == "I":
            arr = np.asarray(img, dtype=np.int64)
            if arr.size and (arr.min() < 0 or arr.max() > 65535):
                raise _error(
                    InvalidImageError,
                    where,
                    f"32-bit integer image with values in [{arr.min()}, {arr.max()}], not 16-bit",
                    "values 0..65535 in PIL mode 'I' (16-bit grey); or pass a float array in [0, 1]",
                )
            arr = arr.astype(np.uint16)
        elif mode == "F":
            arr = np.asarray(img, dtype=np.float32)
        elif mode in ("LA", "La"):
            la = np.asarray(img.convert("LA"))
            if (la[..., 1] != 255).any():
                notes.append(
                    f"{where}: alpha channel ignored (mode {mode}); xcf uses the grey values"
                )
            arr = np.ascontiguousarray(la[..., 0])
        elif mode in _RGB_LIKE:
            arr = _colour_to_grey(img, where, notes)
        else:
            raise _error(
                InvalidImageError,
                where,
                f"unsupported PIL mode {mode!r}",
                "modes 1, L, I;16, I, F, LA, P, RGB, RGBA, CMYK",
            )
    except XcfError:
        raise
    except _DecoderErrors as exc:
        raise _error(
            InvalidImageError,
            where,
            f"corrupt or truncated image data ({_exc_text(exc)})",
            _ACCEPT_FILE,
        ) from exc
    if arr.shape != (h, w):  # defensive: a decoder that lied about its size
        raise _error(
            InvalidImageError,
            where,
            f"decoded shape {arr.shape} differs from header {h}x{w}",
            _ACCEPT_FILE,
        )
    return _from_numpy(arr, where)


def _colour_to_grey(img: Image.Image, where: str, notes: list[str]) -> np.ndarray:
    """Colour (or palette) image to 8-bit grey.

    Lossless (silent) when the three channels are equal and alpha, if any, is opaque; otherwise
    ITU-R 601-2 luma (PIL's ``convert("L")``) with a note for a warning.
    """
    has_alpha = img.mode in ("RGBA", "RGBa", "PA", "LA") or (
        img.mode == "P" and "transparency" in img.info
    )
    rgba = np.asarray(img.convert("RGBA" if has_alpha else "RGB"))
    r, g, b = rgba[..., 0], rgba[..., 1], rgba[..., 2]
    opaque = not has_alpha or bool((rgba[..., 3] == 255).all())
    if opaque and np.array_equal(r, g) and np.array_equal(g, b):
        logger.debug("%s: grey image stored as %s, using one channel", where, img.mode)
        return np.ascontiguousarray(r)
    parts = [f"colour image (mode {img.mode}) converted to grey with ITU-R 601-2 luma"]
    if not opaque:
        parts.append("alpha channel ignored")
    notes.append(f"{where}: {'; '.join(parts)}; xcf works on grey images")
    return np.asarray(img.convert("RGB").convert("L"), dtype=np.uint8)


# --------------------------------------------------------------------------------------------------
# files
# --------------------------------------------------------------------------------------------------


def _load_path(source: str | os.PathLike[str], notes: list[str]) -> torch.Tensor:
    try:
        path = Path(os.fsdecode(os.fspath(source)))
    except (TypeError, ValueError) as exc:
        raise _error(
            InvalidImageError, repr(source), f"not a valid path ({exc})", _ACCEPT_FILE
        ) from exc
    where = str(path)
    try:
        if not path.exists():
            raise _error(InvalidImageError, where, "no such file", _ACCEPT_FILE)
        if path.is_dir():
            raise _error(
                InvalidImageError, where, "is a directory, not an image file", _ACCEPT_FILE
            )
        with open(path, "rb") as fh:
            head = fh.read(132)
    except XcfError:
        raise
    except ValueError as exc:  # e.g. an embedded NUL character
        raise _error(InvalidImageError, where, f"not a valid path ({exc})", _ACCEPT_FILE) from exc
    except PermissionError as exc:
        raise _error(
            InvalidImageError, where, "cannot be read (permission denied)", _ACCEPT_FILE
        ) from exc
    except OSError as exc:
        raise _error(
            InvalidImageError, where, f"cannot be read ({_exc_text(exc)})", _ACCEPT_FILE
        ) from exc
    if not head:
        raise _error(InvalidImageError, where, "empty file (0 bytes)", _ACCEPT_FILE)
    if head[128:132] == b"DICM" or path.suffix.lower() in _DICOM_SUFFIXES:
        return _load_dicom(path, where, has_preamble=head[128:132] == b"DICM")
    return _load_pil_file(path, where, notes)


def _load_pil_file(path: Path, where: str, notes: list[str]) -> torch.Tensor:
    try:
        with open(path, "rb") as fh, warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            try:
                img = Image.open(fh, formats=_PIL_FORMATS)
            except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
                raise _error(
                    ImageTooLargeError,
                    where,
                    f"image is too large to decode safely ({_exc_text(exc)})",
                    f"at most {MAX_PIXELS:,} pixels",
                ) from exc
            except Image.UnidentifiedImageError as exc:
                raise _error(
                    InvalidImageError,
                    where,
                    "not a readable image (cannot identify image file)",
                    _ACCEPT_FILE,
                ) from exc
            except _DecoderErrors as exc:
                raise _error(
                    InvalidImageError,
                    where,
                    f"not a readable image ({_exc_text(exc)})",
                    _ACCEPT_FILE,
                ) from exc
            with img:
                return _from_pil(img, where, notes)
    except XcfError:
        raise
    except _DecoderErrors as exc:
        raise _error(
            InvalidImageError, where, f"cannot be read ({_exc_text(exc)})", _ACCEPT_FILE
        ) from exc


def _import_pydicom(where: str) -> Any:
    try:
        import pydicom
    except ImportError as exc:
        raise _error(
            InvalidImageError,
            where,
            "reading DICOM needs pydicom, which is not installed (pip install xcf[dicom])",
            f"{_ACCEPT_FILE} (DICOM with pydicom installed)",
        ) from exc
    return pydicom


def _dicom_luts() -> tuple[Any, Any]:
    try:
        from pydicom.pixels import apply_modality_lut, apply_voi_lut
    except ImportError:  # pydicom < 3
        from pydicom.pixel_data_handlers.util import apply_modality_lut, apply_voi_lut
    return apply_modality_lut, apply_voi_lut


def _load_dicom(path: Path, where: str, *, has_preamble: bool) -> torch.Tensor:
    """Read a single-frame grey DICOM file; see the module docstring for the display pipeline."""
    pydicom = _import_pydicom(where)
    accept = "single-frame MONOCHROME1/MONOCHROME2 DICOM; " + _ACCEPT_FILE
    force = not has_preamble  # a .dcm file without the 128-byte preamble + DICM marker
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pydicom warns on every odd tag of a broken file
            header = pydicom.dcmread(os.fspath(path), stop_before_pixels=True, force=force)
            rows = int(header.get("Rows", 0) or 0)
            cols = int(header.get("Columns", 0) or 0)
            frames = int(header.get("NumberOfFrames", 1) or 1)
            photometric = str(header.get("PhotometricInterpretation", "MONOCHROME2")).strip()
            samples = int(header.get("SamplesPerPixel", 1) or 1)
    except XcfError:
        raise
    except _DecoderErrors as exc:
        raise _error(
            InvalidImageError, where, f"not a readable DICOM file ({_exc_text(exc)})", accept
        ) from exc
    if rows <= 0 or cols <= 0:
        raise _error(InvalidImageError, where, "DICOM file has no image (no Rows/Columns)", accept)
    if frames > 1:
        raise _error(
            InvalidImageError,
            where,
            f"multi-frame DICOM ({frames} frames) is not supported",
            accept,
        )
    if samples != 1 or photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise _error(
            InvalidImageError,
            where,
            f"DICOM photometric interpretation {photometric!r} with {samples} samples per pixel "
            "is not grey",
            accept,
        )
    _check_geometry(where, rows, cols)
    apply_modality_lut, apply_voi_lut = _dicom_luts()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(os.fspath(path), force=force)
            _set_transfer_syntax_if_missing(ds)
            if not any(k in ds for k in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
                raise _error(InvalidImageError, where, "DICOM file has no pixel data", accept)
            raw = np.asarray(ds.pixel_array)
            if raw.shape != (rows, cols):
                raise _error(
                    InvalidImageError,
                    where,
                    f"DICOM pixel data has shape {raw.shape}, expected ({rows}, {cols})",
                    accept,
                )
            x = np.asarray(apply_modality_lut(raw, ds), dtype=np.float64)
            x, lo, hi = _apply_voi(x, ds, apply_voi_lut)
    except XcfError:
        raise
    except _DecoderErrors as exc:
        raise _error(
            InvalidImageError,
            where,
            f"cannot decode DICOM pixel data ({_exc_text(exc)}; compressed transfer syntaxes may "
            "need pylibjpeg or gdcm)",
            accept,
        ) from exc
    if not np.isfinite(x).all():
        raise _error(InvalidImageError, where, "DICOM pixel data has NaN or Inf values", accept)
    x = (x - lo) / (hi - lo) if hi != lo else np.zeros_like(x)
    x = np.clip(x, 0.0, 1.0)
    if photometric == "MONOCHROME1":
        x = 1.0 - x
    return _from_numpy(x.astype(np.float32), where)


def _set_transfer_syntax_if_missing(ds: Any) -> None:
    """Give a bare dataset (no file meta, e.g. a .dcm without preamble) the syntax it was read in.

    pydicom needs the transfer syntax to decode pixel data; uncompressed data read with
    ``force=True`` was parsed in a known VR/endianness, which fixes the syntax.
    """
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

    meta = getattr(ds, "file_meta", None)
    if meta is not None and "TransferSyntaxUID" in meta:
        return
    encoding = getattr(ds, "original_encoding", None)  # pydicom >= 3: (implicit_vr, little_endian)
    if encoding is None or None in encoding:
        encoding = (getattr(ds, "is_implicit_VR", None), getattr(ds, "is_little_endian", None))
    implicit, little = encoding
    if implicit is None or little is None:
        return
    if meta is None:
        meta = FileMetaDataset()
        ds.file_meta = meta
    if implicit:
        meta.TransferSyntaxUID = ImplicitVRLittleEndian
    else:
        meta.TransferSyntaxUID = ExplicitVRLittleEndian if little else ExplicitVRBigEndian


def _finite_min_max(x: np.ndarray) -> tuple[float, float]:
    finite = x[np.isfinite(x)]
    if finite.size == 0:
        return 0.0, 0.0
    return float(finite.min()), float(finite.max())


def _apply_voi(x: np.ndarray, ds: Any, apply_voi_lut: Any) -> tuple[np.ndarray, float, float]:
    """Apply the VOI LUT or first window if any; return the output and the ends of its range.

    With a VOI LUT sequence (preferred, as in pydicom) the ends are the LUT's smallest and largest
    entries; with a window they are what the window gives to inputs far below and far above it, so
    that the window, not the image content, maps to [0, 1]. Without either, the ends are the image's
    minimum and maximum (min-max normalization).
    """
    seq = ds.get("VOILUTSequence")
    valid_lut = bool(seq) and all(seq[0].get(k) is not None for k in ("LUTDescriptor", "LUTData"))
    valid_window = ds.get("WindowCenter") is not None and ds.get("WindowWidth") is not None
    if not valid_lut and not valid_window:
        lo, hi = _finite_min_max(x)
        return x, lo, hi
    if valid_lut:
        # A VOI LUT indexes stored values after the modality LUT; integer input as pydicom expects.
        xi = np.rint(x).astype(np.int64) if np.issubdtype(x.dtype, np.floating) else x
        out = np.asarray(apply_voi_lut(xi, ds), dtype=np.float64)
        item = ds.VOILUTSequence[0]
        first, n = int(item.LUTDescriptor[1]), int(item.LUTDescriptor[0] or 65536)
        probe = np.asarray(apply_voi_lut(np.arange(first, first + n, dtype=np.int64), ds), float)
        return out, float(probe.min()), float(probe.max())
    out = np.asarray(apply_voi_lut(x, ds), dtype=np.float64)
    probe = np.asarray(apply_voi_lut(np.array([-np.inf, np.inf]), ds), dtype=np.float64)
    return out, float(probe[0]), float(probe[1])
