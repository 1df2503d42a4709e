"""Tests of xcf.imageio: decoding, validation, resizing and the one-line error contract."""

from __future__ import annotations

import contextlib
import io
import os
import struct
import sys
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image

from xcf import imageio
from xcf.errors import (
    ConfigError,
    ImageTooLargeError,
    ImageTooSmallError,
    InvalidImageError,
    XcfError,
)
from xcf.imageio import ImageConversionWarning, load_image, resize_canonical, save_png

pydicom = pytest.importorskip("pydicom")

RNG = np.random.default_rng(0)


# --------------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------------


def check_canonical(x: torch.Tensor, h: int | None = None, w: int | None = None) -> None:
    assert isinstance(x, torch.Tensor)
    assert x.dtype == torch.float32
    assert x.ndim == 4 and x.shape[:2] == (1, 1)
    if h is not None:
        assert tuple(x.shape[-2:]) == (h, w)
    assert torch.isfinite(x).all()
    assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0


def check_message(exc: BaseException, *parts: str) -> str:
    msg = str(exc)
    assert "\n" not in msg and "\r" not in msg, msg
    assert "accepted" in msg, msg
    for part in parts:
        assert part in msg, (part, msg)
    return msg


def write_png(path: Path, arr: np.ndarray) -> Path:
    Image.fromarray(arr).save(path, format="PNG")
    return path


def png_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def jpeg_bytes(arr: np.ndarray, quality: int = 95) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def png_header_only(width: int, height: int, bit_depth: int = 8) -> bytes:
    """A PNG whose IHDR claims ``width x height`` (valid CRCs) with almost no pixel data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 16))
        + chunk(b"IEND", b"")
    )


def make_dicom(
    path: Path | None,
    pixels: np.ndarray,
    *,
    photometric: str = "MONOCHROME2",
    slope: float | None = None,
    intercept: float | None = None,
    center: float | None = None,
    width: float | None = None,
    bits_stored: int = 16,
    rows: int | None = None,
    cols: int | None = None,
    frames: int | None = None,
    samples: int = 1,
    preamble: bool = True,
) -> bytes:
    """Build a DICOM file with pydicom (uncompressed, explicit VR little endian)."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "DX"
    ds.Rows = rows if rows is not None else pixels.shape[-2]
    ds.Columns = cols if cols is not None else pixels.shape[-1]
    ds.SamplesPerPixel = samples
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = 16
    ds.BitsStored = bits_stored
    ds.HighBit = bits_stored - 1
    ds.PixelRepresentation = 0
    if samples > 1:
        ds.PlanarConfiguration = 0
    if frames is not None:
        ds.NumberOfFrames = frames
    if slope is not None:
        ds.RescaleSlope = slope
        ds.RescaleIntercept = intercept if intercept is not None else 0
        ds.RescaleType = "US"
    if center is not None:
        ds.WindowCenter = center
        ds.WindowWidth = width
    ds.PixelData = np.ascontiguousarray(pixels.astype("<u2")).tobytes()
    buf = io.BytesIO()
    if preamble:
        ds.preamble = b"\x00" * 128
        try:
            ds.save_as(buf, enforce_file_format=True)
        except TypeError:  # pydicom < 3
            ds.save_as(buf, write_like_original=False)
    else:  # no 128-byte preamble, no "DICM" marker, no file meta: a bare dataset
        del ds.file_meta
        ds.preamble = None
        try:
            pydicom.dcmwrite(
                buf, ds, enforce_file_format=False, implicit_vr=False, little_endian=True
            )
        except TypeError:  # pydicom < 3
            ds.is_little_endian, ds.is_implicit_VR = True, False
            pydicom.dcmwrite(buf, ds, write_like_original=True)
    data = buf.getvalue()
    if path is not None:
        path.write_bytes(data)
    return data


# --------------------------------------------------------------------------------------------------
# PNG / JPEG
# --------------------------------------------------------------------------------------------------


def test_png_8bit_exact(tmp_path: Path) -> None:
    arr = RNG.integers(0, 256, size=(40, 50), dtype=np.uint8)
    x = load_image(write_png(tmp_path / "a.png", arr))
    check_canonical(x, 40, 50)
    assert torch.equal(x[0, 0], torch.from_numpy(arr.astype(np.float32) / 255.0))


def test_png_16bit_keeps_precision(tmp_path: Path) -> None:
    ramp = np.arange(64 * 64, dtype=np.uint16).reshape(64, 64) * 3  # 4096 distinct 16-bit values
    x = load_image(write_png(tmp_path / "ramp16.png", ramp))
    check_canonical(x, 64, 64)
    assert torch.unique(x).numel() == 64 * 64  # 8-bit would keep at most 256 values
    expected = torch.from_numpy(ramp.astype(np.float64) / 65535.0).float()
    assert torch.equal(x[0, 0], expected)


def test_path_types_str_and_pathlike(tmp_path: Path) -> None:
    arr = np.full((32, 32), 128, dtype=np.uint8)
    p = write_png(tmp_path / "g.png", arr)
    assert torch.equal(load_image(p), load_image(str(p)))


@pytest.mark.parametrize("mode", ["RGB", "RGBA"])
def test_colour_png_converted_with_warning(tmp_path: Path, mode: str) -> None:
    arr = RNG.integers(0, 256, size=(36, 36, len(mode)), dtype=np.uint8)
    path = tmp_path / f"colour_{mode}.png"
    Image.fromarray(arr, mode=mode).save(path)
    with pytest.warns(ImageConversionWarning, match="colour_") as record:
        x = load_image(path)
    assert str(path) in str(record[0].message)
    check_canonical(x, 36, 36)
    luma = np.asarray(Image.fromarray(arr[..., :3], mode="RGB").convert("L"), dtype=np.float32)
    assert torch.allclose(x[0, 0], torch.from_numpy(luma / 255.0))


def test_grey_stored_as_rgb_is_lossless_and_silent(tmp_path: Path) -> None:
    grey = RNG.integers(0, 256, size=(33, 34), dtype=np.uint8)
    path = tmp_path / "grey_rgb.png"
    Image.fromarray(np.stack([grey] * 3, -1), mode="RGB").save(path)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ImageConversionWarning)
        x = load_image(path)
    assert torch.equal(x[0, 0], torch.from_numpy(grey.astype(np.float32) / 255.0))


def test_jpeg(tmp_path: Path) -> None:
    yy, xx = np.mgrid[0:64, 0:80]
    arr = ((xx + yy) * 255 / (63 + 79)).astype(np.uint8)
    path = tmp_path / "smooth.jpg"
    path.write_bytes(jpeg_bytes(arr))
    x = load_image(path)
    check_canonical(x, 64, 80)
    assert float((x[0, 0] - torch.from_numpy(arr / 255.0).float()).abs().mean()) < 0.02


def test_pil_image_inputs() -> None:
    arr8 = RNG.integers(0, 256, size=(40, 40), dtype=np.uint8)
    x = load_image(Image.fromarray(arr8))
    assert torch.equal(x[0, 0], torch.from_numpy(arr8.astype(np.float32) / 255))
    arr16 = RNG.integers(0, 65536, size=(40, 40), dtype=np.uint16)
    x = load_image(Image.fromarray(arr16))
    assert torch.allclose(x[0, 0], torch.from_numpy(arr16 / 65535.0).float())
    arrf = RNG.random((40, 40), dtype=np.float32)
    x = load_image(Image.fromarray(arrf, mode="F"))
    assert torch.allclose(x[0, 0], torch.from_numpy(arrf))
    with pytest.raises(InvalidImageError) as info:
        load_image(Image.fromarray(arrf * 3, mode="F"))
    check_message(info.value, "PIL image", "outside [0, 1]")


# --------------------------------------------------------------------------------------------------
# DICOM
# --------------------------------------------------------------------------------------------------


def test_dicom_minmax_and_monochrome1_inverted(tmp_path: Path) -> None:
    pixels = np.linspace(100, 4000, 48 * 40).reshape(48, 40).astype(np.uint16)
    make_dicom(tmp_path / "m2.dcm", pixels, photometric="MONOCHROME2")
    m2 = load_image(tmp_path / "m2.dcm")
    make_dicom(tmp_path / "m1.dcm", pixels, photometric="MONOCHROME1")
    m1 = load_image(tmp_path / "m1.dcm")
    check_canonical(m2, 48, 40)
    check_canonical(m1, 48, 40)
    assert float(m2.min()) == 0.0 and float(m2.max()) == 1.0  # min-max without a window
    expected = torch.from_numpy((pixels - 100.0) / (4000.0 - 100.0)).float()
    assert torch.allclose(m2[0, 0], expected, atol=1e-6)
    assert torch.allclose(m1, 1.0 - m2, atol=1e-6)  # bone bright in both


def test_dicom_rescale_applied_before_window(tmp_path: Path) -> None:
    # stored 0..1000 -> HU = 2 * stored - 1000 in [-1000, 1000]; window centre 0, width 1001 (LINEAR)
    pixels = np.tile(np.linspace(0, 1000, 40), (40, 1)).round().astype(np.uint16)
    pixels[0, :3] = [100, 500, 900]
    make_dicom(
        tmp_path / "ct.dcm",
        pixels,
        slope=2.0,
        intercept=-1000.0,
        center=0.0,
        width=1001.0,
        bits_stored=12,
    )
    x = load_image(tmp_path / "ct.dcm")[0, 0]
    # HU -800 -> below the window -> 0; HU 0 -> mid-window; HU 800 -> above -> 1
    assert float(x[0, 0]) == 0.0
    assert abs(float(x[0, 1]) - 0.5) < 0.01
    assert float(x[0, 2]) == 1.0
    # Without the rescale the window (centred at 0) would put every stored value >= 1 at 1.


def test_dicom_window_center_width_formula(tmp_path: Path) -> None:
    pixels = np.tile(np.arange(0, 4000, 100, dtype=np.uint16), (40, 1))
    c, w = 2000.0, 1001.0
    make_dicom(tmp_path / "w.dcm", pixels, center=c, width=w, bits_stored=12)
    x = load_image(tmp_path / "w.dcm")[0, 0].double()
    v = pixels.astype(np.float64)
    expected = np.clip((v - (c - 0.5)) / (w - 1) + 0.5, 0, 1)  # DICOM PS3.3 C.11.2.1.2.1
    expected[v <= c - 0.5 - (w - 1) / 2] = 0.0
    expected[v > c - 0.5 + (w - 1) / 2] = 1.0
    assert np.allclose(x.numpy(), expected, atol=1e-6)
    # MONOCHROME1 with the same window is the inverse
    make_dicom(
        tmp_path / "w1.dcm", pixels, center=c, width=w, bits_stored=12, photometric="MONOCHROME1"
    )
    assert np.allclose(
        load_image(tmp_path / "w1.dcm")[0, 0].double().numpy(), 1 - expected, atol=1e-6
    )


def test_dicom_detected_by_preamble_not_suffix(tmp_path: Path) -> None:
    pixels = np.arange(40 * 40, dtype=np.uint16).reshape(40, 40)
    make_dicom(tmp_path / "image.bin", pixels)
    check_canonical(load_image(tmp_path / "image.bin"), 40, 40)


def test_dicom_without_preamble_read_by_suffix(tmp_path: Path) -> None:
    pixels = np.arange(40 * 40, dtype=np.uint16).reshape(40, 40)
    data = make_dicom(tmp_path / "bare.dcm", pixels, preamble=False)
    assert data[128:132] != b"DICM"
    x = load_image(tmp_path / "bare.dcm")
    assert torch.allclose(x[0, 0], torch.from_numpy(pixels / 1599.0).float(), atol=1e-6)


def test_dicom_multiframe_and_colour_refused(tmp_path: Path) -> None:
    pixels = np.zeros((2, 40, 40), dtype=np.uint16)
    make_dicom(tmp_path / "mf.dcm", pixels, rows=40, cols=40, frames=2)
    with pytest.raises(InvalidImageError) as info:
        load_image(tmp_path / "mf.dcm")
    check_message(info.value, str(tmp_path / "mf.dcm"), "multi-frame")
    make_dicom(
        tmp_path / "rgb.dcm",
        np.zeros((40, 40, 3), np.uint16),
        rows=40,
        cols=40,
        samples=3,
        photometric="RGB",
    )
    with pytest.raises(InvalidImageError) as info:
        load_image(tmp_path / "rgb.dcm")
    check_message(info.value, "rgb.dcm", "RGB")


def test_dicom_too_large_refused_before_decoding(tmp_path: Path) -> None:
    # header claims 10000 x 10000 but holds 40 x 40 pixels: refusal must come from the header
    make_dicom(tmp_path / "big.dcm", np.zeros((40, 40), np.uint16), rows=10000, cols=10000)
    with pytest.raises(ImageTooLargeError) as info:
        load_image(tmp_path / "big.dcm")
    check_message(info.value, "big.dcm", "MAX_PIXELS")


def test_dicom_pixel_data_mismatch_refused(tmp_path: Path) -> None:
    make_dicom(tmp_path / "short.dcm", np.zeros((10, 10), np.uint16), rows=64, cols=64)
    with pytest.raises(InvalidImageError) as info:
        load_image(tmp_path / "short.dcm")
    check_message(info.value, "short.dcm")


def test_dicom_without_pydicom(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_dicom(tmp_path / "a.dcm", np.zeros((40, 40), np.uint16))
    monkeypatch.setitem(sys.modules, "pydicom", None)  # makes `import pydicom` raise ImportError
    with pytest.raises(InvalidImageError) as info:
        load_image(tmp_path / "a.dcm")
    check_message(info.value, "a.dcm", "pip install xcf[dicom]")


# --------------------------------------------------------------------------------------------------
# geometry: aspect policies, resizing, limits
# --------------------------------------------------------------------------------------------------


def test_aspect_policies_on_non_square() -> None:
    arr = RNG.random((40, 80)).astype(np.float32)
    ref = torch.from_numpy(arr)
    native = load_image(arr)
    check_canonical(native, 40, 80)  # no size: native shape, aspect ignored
    crop = load_image(arr, size=40, aspect="crop")
    assert torch.equal(crop[0, 0], ref[:, 20:60])
    pad = load_image(arr, size=80, aspect="pad")
    assert torch.equal(pad[0, 0, 20:60], ref)
    assert float(pad[0, 0, :20].abs().max()) == 0 and float(pad[0, 0, 60:].abs().max()) == 0
    stretch = load_image(arr, size=40, aspect="stretch")
    expected = F.interpolate(
        ref[None, None], size=(40, 40), mode="bilinear", antialias=True, align_corners=False
    ).clamp(0, 1)
    assert torch.allclose(stretch, expected)
    tall = load_image(arr.T.copy(), size=40)  # crop is the default
    assert torch.equal(tall[0, 0], ref.T[20:60, :])


def test_downsizing_is_antialiased() -> None:
    checker = (np.indices((64, 64)).sum(0) % 2).astype(np.float32)
    x = load_image(checker, size=32)
    check_canonical(x, 32, 32)
    inner = x[..., 1:-1, 1:-1]
    assert torch.allclose(inner, torch.full_like(inner, 0.5), atol=1e-5)  # no aliasing into 0/1
    assert float((x - 0.5).abs().max()) < 0.05  # the border only sees part of the filter


def test_resize_canonical() -> None:
    x = torch.rand(3, 1, 50, 70, requires_grad=True)
    y = resize_canonical(x, 32)
    assert y.shape == (3, 1, 32, 32)
    assert float(y.detach().min()) >= 0 and float(y.detach().max()) <= 1
    y.sum().backward()
    assert x.grad is not None and x.grad.shape == x.shape and float(x.grad.abs().sum()) > 0
    same = torch.rand(2, 1, 32, 32)
    assert resize_canonical(same, 32) is same
    up = resize_canonical(torch.rand(1, 1, 40, 40), 64)
    assert up.shape == (1, 1, 64, 64)
    with pytest.raises(InvalidImageError):
        resize_canonical(torch.rand(1, 3, 32, 32), 16)
    with pytest.raises(ConfigError):
        resize_canonical(torch.rand(1, 1, 32, 32), 0)


@pytest.mark.parametrize("shape", [(31, 100), (100, 31), (0, 0), (1, 1, 8, 8)])
def test_too_small_array(shape: tuple[int, ...]) -> None:
    with pytest.raises(ImageTooSmallError) as info:
        load_image(np.zeros(shape, np.uint8))
    check_message(info.value, "array", "MIN_SIDE")


def test_too_small_png(tmp_path: Path) -> None:
    path = write_png(tmp_path / "tiny.png", np.zeros((20, 20), np.uint8))
    with pytest.raises(ImageTooSmallError) as info:
        load_image(path)
    check_message(info.value, str(path), "20x20")


@pytest.mark.parametrize("side", [8000, 10000, 20000])  # ours only; PIL's warning; PIL's error
def test_too_large_png_header_refused_before_decoding(tmp_path: Path, side: int) -> None:
    path = tmp_path / f"bomb{side}.png"
    path.write_bytes(png_header_only(side, side))
    with pytest.raises(ImageTooLargeError) as info:
        load_image(path)
    check_message(info.value, str(path))


def test_too_large_array_with_patched_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(imageio, "MAX_PIXELS", 40 * 40)
    load_image(np.zeros((40, 40), np.uint8))
    with pytest.raises(ImageTooLargeError) as info:
        load_image(torch.zeros(40, 41))
    check_message(info.value, "tensor", "1,640")


def test_bad_size_and_aspect_arguments() -> None:
    arr = np.zeros((40, 40), np.uint8)
    for kwargs in ({"size": 0}, {"size": -3}, {"size": 2.5}, {"size": True}, {"aspect": "fit"}):
        with pytest.raises(ConfigError):
            load_image(arr, **kwargs)


# --------------------------------------------------------------------------------------------------
# refused files
# --------------------------------------------------------------------------------------------------


def _assert_refused(path: Path, *parts: str, cls: type[Exception] = InvalidImageError) -> str:
    with pytest.raises(cls) as info:
        load_image(path)
    assert isinstance(info.value, XcfError)
    return check_message(info.value, str(path), *parts)


def test_missing_path(tmp_path: Path) -> None:
    _assert_refused(tmp_path / "nope.png", "no such file", "PNG")


def test_directory(tmp_path: Path) -> None:
    (tmp_path / "dir.png").mkdir()
    _assert_refused(tmp_path / "dir.png", "directory")


def test_empty_file(tmp_path: Path) -> None:
    (tmp_path / "empty.png").write_bytes(b"")
    _assert_refused(tmp_path / "empty.png", "empty")


def test_text_file_with_image_extension(tmp_path: Path) -> None:
    for name in ("notes.png", "notes.jpg"):
        (tmp_path / name).write_text("this is not an image\n" * 20)
        _assert_refused(tmp_path / name, "not a readable image", "cannot identify image file")


def test_text_file_with_dicom_extension(tmp_path: Path) -> None:
    (tmp_path / "notes.dcm").write_text("this is not a DICOM file\n" * 20)
    _assert_refused(tmp_path / "notes.dcm", "DICOM")


def test_unsupported_format(tmp_path: Path) -> None:
    Image.fromarray(np.zeros((40, 40), np.uint8)).save(tmp_path / "a.bmp")
    _assert_refused(tmp_path / "a.bmp", "not a readable image")


def test_truncated_png(tmp_path: Path) -> None:
    data = png_bytes(RNG.integers(0, 256, size=(128, 128), dtype=np.uint8))
    path = tmp_path / "trunc.png"
    path.write_bytes(data[: len(data) // 2])
    with Image.open(path) as img:  # the header is intact: only decoding can find the damage
        assert img.size == (128, 128)
    _assert_refused(path)


def test_truncated_jpeg(tmp_path: Path) -> None:
    data = jpeg_bytes(RNG.integers(0, 256, size=(128, 128), dtype=np.uint8))
    path = tmp_path / "trunc.jpg"
    path.write_bytes(data[: len(data) // 2])
    _assert_refused(path)


def test_corrupt_png_crc(tmp_path: Path) -> None:
    data = bytearray(png_bytes(RNG.integers(0, 256, size=(64, 64), dtype=np.uint8)))
    data[40] ^= 0xFF  # inside the IDAT chunk
    path = tmp_path / "crc.png"
    path.write_bytes(bytes(data))
    _assert_refused(path)


@pytest.mark.skipif(not hasattr(os, "geteuid"), reason="POSIX permissions only")
def test_unreadable_file(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("running as root: root can read a chmod 000 file")
    path = write_png(tmp_path / "locked.png", np.zeros((40, 40), np.uint8))
    path.chmod(0)
    try:
        _assert_refused(path, "permission denied")
    finally:
        path.chmod(0o644)


def test_permission_error_refused_even_as_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The chmod test is skipped as root; simulate the PermissionError the OS would raise."""
    path = write_png(tmp_path / "locked.png", np.zeros((40, 40), np.uint8))

    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(imageio, "open", denied, raising=False)
    _assert_refused(path, "permission denied")


# --------------------------------------------------------------------------------------------------
# arrays and tensors
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("make", [np.zeros, torch.zeros], ids=["array", "tensor"])
@pytest.mark.parametrize("shape", [(40, 40), (1, 40, 40), (1, 1, 40, 40)])
def test_accepted_shapes(make, shape) -> None:
    check_canonical(load_image(make(shape)), 40, 40)


@pytest.mark.parametrize(
    ("shape", "part"),
    [
        ((40,), "1 dimensions"),
        ((1, 1, 1, 40, 40), "5 dimensions"),
        ((3, 40, 40), "3 channels"),
        ((40, 40, 3), "channels last"),
        ((40, 40, 4), "4 channels"),
        ((1, 3, 40, 40), "3 channels"),
        ((2, 1, 40, 40), "batch"),
        ((), "0 dimensions"),
    ],
)
@pytest.mark.parametrize("kind", ["array", "tensor"])
def test_refused_shapes(shape: tuple[int, ...], part: str, kind: str) -> None:
    src = np.zeros(shape, np.float32)
    src = torch.from_numpy(src) if kind == "tensor" else src
    with pytest.raises(InvalidImageError) as info:
        load_image(src)
    msg = check_message(info.value, kind, part)
    if "channels" in part:
        assert "convert to grey" in msg


@pytest.mark.parametrize("kind", ["array", "tensor"])
@pytest.mark.parametrize(
    ("bad", "part"),
    [
        (np.nan, "NaN"),
        (np.inf, "Inf"),
        (-np.inf, "Inf"),
        (1.5, "outside [0, 1]"),
        (-0.1, "outside [0, 1]"),
    ],
)
def test_refused_float_values(kind: str, bad: float, part: str) -> None:
    arr = np.full((40, 40), 0.5, np.float32)
    arr[3, 4] = bad
    src = torch.from_numpy(arr) if kind == "tensor" else arr
    with pytest.raises(InvalidImageError) as info:
        load_image(src)
    check_message(info.value, kind, part)


def test_float_tolerance_clipped_not_refused() -> None:
    arr = np.full((40, 40), 0.5, np.float64)
    arr[0, 0], arr[0, 1] = 1 + 5e-7, -5e-7
    x = load_image(arr)
    assert float(x[0, 0, 0, 0]) == 1.0 and float(x[0, 0, 0, 1]) == 0.0


@pytest.mark.parametrize(
    ("dtype", "top"),
    [
        (np.uint8, 255),
        (np.uint16, 65535),
        (np.int16, 32767),
        (np.int32, 2**31 - 1),
        (np.uint32, 2**32 - 1),
        (np.int8, 127),
    ],
)
def test_integer_dtypes_scaled_by_range(dtype, top: int) -> None:
    arr = np.zeros((40, 40), dtype)
    arr[0, 0] = top
    arr[0, 1] = top // 2
    for src in (arr, torch.from_numpy(arr)):
        x = load_image(src)
        check_canonical(x, 40, 40)
        assert float(x[0, 0, 0, 0]) == 1.0
        assert abs(float(x[0, 0, 0, 1]) - (top // 2) / top) < 1e-6


def test_bool_and_float_dtypes() -> None:
    mask = np.zeros((40, 40), bool)
    mask[5:10, 5:10] = True
    assert float(load_image(mask).sum()) == 25.0
    assert float(load_image(torch.from_numpy(mask)).sum()) == 25.0
    for dtype in (torch.float16, torch.bfloat16, torch.float64):
        x = load_image(torch.full((40, 40), 0.25, dtype=dtype))
        check_canonical(x, 40, 40)
        assert torch.allclose(x, torch.full_like(x, 0.25))


def test_negative_signed_integers_refused() -> None:
    arr = np.zeros((40, 40), np.int16)
    arr[1, 1] = -5
    with pytest.raises(InvalidImageError) as info:
        load_image(arr)
    check_message(info.value, "array", ">= 0")


@pytest.mark.parametrize(
    "arr",
    [
        np.zeros((40, 40), np.complex64),
        np.zeros((40, 40), object),
        np.zeros((40, 40), "U3"),
        np.zeros((40, 40), "S2"),
        np.zeros((40, 40), "datetime64[s]"),
    ],
    ids=["complex", "object", "unicode", "bytes", "datetime"],
)
def test_unsupported_dtypes(arr: np.ndarray) -> None:
    with pytest.raises(InvalidImageError) as info:
        load_image(arr)
    check_message(info.value, "array", "dtype")


def test_complex_tensor_refused() -> None:
    with pytest.raises(InvalidImageError) as info:
        load_image(torch.zeros(40, 40, dtype=torch.complex64))
    check_message(info.value, "tensor", "dtype")


@pytest.mark.parametrize("source", [[[0.0] * 40] * 40, b"\x89PNG", 3.0, None])
def test_unsupported_source_types(source) -> None:
    with pytest.raises(InvalidImageError) as info:
        load_image(source)
    check_message(info.value, "unsupported source type")


def test_tensor_is_detached_and_copied() -> None:
    t = torch.full((1, 1, 40, 40), 0.5, requires_grad=True)
    x = load_image(t)
    assert not x.requires_grad
    x.zero_()
    assert float(t.detach().min()) == 0.5  # the input is never aliased


# --------------------------------------------------------------------------------------------------
# save_png
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(40, 48), (1, 40, 48)])
def test_save_png_roundtrip(tmp_path: Path, shape: tuple[int, ...]) -> None:
    img = torch.rand(shape)
    save_png(tmp_path / "out.png", img)
    with Image.open(tmp_path / "out.png") as pil:
        assert pil.mode == "L" and pil.size == (48, 40)
    back = load_image(tmp_path / "out.png")[0, 0]
    assert torch.equal(back, (img.reshape(40, 48) * 255).round() / 255)


@pytest.mark.parametrize(
    "bad", [torch.full((40, 40), 1.5), torch.full((40, 40), float("nan")), torch.zeros(3, 40, 40)]
)
def test_save_png_refuses_bad_images(tmp_path: Path, bad: torch.Tensor) -> None:
    with pytest.raises(InvalidImageError) as info:
        save_png(tmp_path / "bad.png", bad)
    check_message(info.value, "bad.png")
    assert not (tmp_path / "bad.png").exists()


# --------------------------------------------------------------------------------------------------
# fuzz: nothing but a canonical tensor or an XcfError, whatever the input
# --------------------------------------------------------------------------------------------------

_SEED_FILES = {
    ".png": png_bytes(RNG.integers(0, 256, size=(40, 40), dtype=np.uint8)),
    ".jpg": jpeg_bytes(RNG.integers(0, 256, size=(40, 40), dtype=np.uint8)),
    ".dcm": make_dicom(
        None,
        RNG.integers(0, 4096, size=(40, 40)).astype(np.uint16),
        center=2000.0,
        width=1000.0,
        bits_stored=12,
    ),
}


def _check_outcome(source) -> None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            x = load_image(source)
    except XcfError as exc:
        assert "\n" not in str(exc)
        return
    check_canonical(x)


@st.composite
def _file_bytes(draw) -> tuple[str, bytes]:
    suffix = draw(st.sampled_from(sorted(_SEED_FILES)))
    how = draw(st.sampled_from(["random", "truncate", "flip", "splice"]))
    seed = bytearray(_SEED_FILES[suffix])
    if how == "random":
        return suffix, draw(st.binary(max_size=1024))
    if how == "truncate":
        return suffix, bytes(seed[: draw(st.integers(0, len(seed)))])
    if how == "flip":
        for _ in range(draw(st.integers(1, 8))):
            i = draw(st.integers(0, len(seed) - 1))
            seed[i] = draw(st.integers(0, 255))
        return suffix, bytes(seed)
    i = draw(st.integers(0, len(seed)))
    return suffix, bytes(seed[:i]) + draw(st.binary(max_size=64)) + bytes(seed[i:])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=_file_bytes())
def test_fuzz_file_bytes(tmp_path_factory: pytest.TempPathFactory, case: tuple[str, bytes]) -> None:
    suffix, data = case
    path = tmp_path_factory.getbasetemp() / f"fuzz{suffix}"
    path.write_bytes(data)
    _check_outcome(path)


_shapes = st.one_of(
    hnp.array_shapes(min_dims=0, max_dims=5, min_side=0, max_side=4),
    st.tuples(st.integers(30, 40), st.integers(30, 40)),
    st.tuples(st.just(1), st.integers(32, 36), st.integers(32, 36)),
    st.tuples(st.just(1), st.just(1), st.integers(32, 36), st.integers(32, 36)),
    st.tuples(st.integers(2, 4), st.integers(32, 34), st.integers(32, 34)),
)
_dtypes = st.one_of(
    hnp.scalar_dtypes(),
    hnp.byte_string_dtypes(max_len=3),
    hnp.unicode_string_dtypes(max_len=3),
    st.sampled_from([np.dtype(np.float32), np.dtype(np.uint16), np.dtype(np.uint8)]),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(arr=hnp.arrays(dtype=_dtypes, shape=_shapes), as_tensor=st.booleans())
def test_fuzz_arrays(arr: np.ndarray, as_tensor: bool) -> None:
    source = arr
    if as_tensor:
        # dtypes torch has no equivalent of, or non-native byte order: stay a numpy array
        with contextlib.suppress(TypeError, ValueError):
            source = torch.from_numpy(arr)
    _check_outcome(source)
