"""Synthetic frontal chest radiographs ("phantoms") with pixel-exact ground truth.

Every case is drawn from a seeded :class:`numpy.random.Generator`: a thorax whose anatomy (lung
fields, heart, diaphragm domes, ribs, clavicles, spine, soft tissue, vessels), acquisition (exposure,
rotation, magnification, blur, quantum-like noise) and distractors (R/L marker, burned-in text, ECG
electrodes and wires) vary from case to case, plus any of five findings (:data:`FINDINGS`).

The film is rendered the way it is exposed: every structure contributes an *attenuation* map, the
maps add up (Beer-Lambert), and one strictly increasing tone curve turns total attenuation into
brightness in ``(0, 1)`` (bone and soft tissue bright, air dark). Each finding is one more additive
attenuation map with compact support, and the noise is drawn once and added identically, so
removing a finding changes the film exactly where its map is non-zero and nowhere else. That makes
the counterfactuals exact: ``case.image - case.counterfactual(f)`` is non-zero exactly on the mask
of ``f``, also where findings overlap, and ``case.healthy`` is the same film with no finding at all.

Example::

    from xcf.data.phantoms import FINDINGS, PhantomDataset, generate_case

    case = generate_case(7, ["Nodule", "Pleural Effusion"])
    case.image.shape                  # torch.Size([1, 224, 224]), float32 in [0, 1]
    k = FINDINGS.index("Nodule")
    changed = case.image != case.counterfactual("Nodule")
    bool((changed == case.masks[k]).all())   # True

    train = PhantomDataset(20_000, seed=0)   # (image, labels) pairs generated on the fly
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont
from torch import Tensor
from torch.utils.data import Dataset

from xcf.errors import UnknownLabelError

__all__ = ["FINDINGS", "PhantomCase", "PhantomDataset", "generate_case", "item_seed", "render_grid"]

FINDINGS: tuple[str, ...] = (
    "Cardiomegaly",
    "Pleural Effusion",
    "Consolidation",
    "Nodule",
    "Pneumothorax",
)
"""Finding names, in label order (the order of ``PhantomCase.labels`` and ``PhantomCase.masks``)."""

_REF = 224.0  # reference side: lengths written in "px" below are pixels of a 224 x 224 film
_TAU = 4e-3  # least attenuation a finding adds where present; smaller values are set to exactly 0
_MIN_SIZE = 64
_NORMAL_CTR = (0.39, 0.47)  # cardiothoracic ratio drawn for a normal heart
_ENLARGED_CTR = (0.56, 0.68)  # ... and for cardiomegaly
_SS = 2  # supersampling of the vector layers (vessels, text, wires); _downsample assumes 2

_F = np.float32
_Win = tuple[slice, slice]


# --------------------------------------------------------------------------------------------
# The case


@dataclass(eq=False)
class PhantomCase:
    """One synthetic chest film with its ground truth.

    Attributes:
        image: ``(1, H, W)`` float32 in ``[0, 1]``: the film, with every present finding.
        healthy: ``(1, H, W)`` float32 in ``[0, 1]``: the same anatomy, exposure and noise with no
            finding (the true counterfactual of all findings at once).
        labels: ``(K,)`` float32 in ``{0, 1}``, in :data:`FINDINGS` order.
        masks: ``(K, 1, H, W)`` bool: where the film differs because of each finding (exactly where
            ``image != counterfactual(finding)``); all ``False`` for an absent finding.
        seed: The seed the case was generated from.
        anatomy: Plain numbers describing the case: ``ctr`` (cardiothoracic ratio of the film),
            ``ctr_normal`` (of the heart before any enlargement), ``heart_width_px``,
            ``thorax_width_px``, ``heart_box``, ``right_lung_box`` and ``left_lung_box`` (patient
            sides: the patient's right lung is on the image's left; boxes are ``(x0, y0, x1, y1)``
            pixels, end-exclusive), acquisition parameters, distractors, and one entry per present
            finding with its parameters.
        lung_mask: ``(1, H, W)`` bool: the lung fields (wherever there is lung air).
    """

    image: Tensor
    healthy: Tensor
    labels: Tensor
    masks: Tensor
    seed: int
    anatomy: dict[str, Any]
    lung_mask: Tensor | None = None
    _base: np.ndarray | None = field(default=None, repr=False, compare=False)
    _effects: dict[str, np.ndarray] = field(default_factory=dict, repr=False, compare=False)
    _tone: tuple[float, float, float, float] | None = field(default=None, repr=False, compare=False)

    @property
    def findings(self) -> tuple[str, ...]:
        """Names of the findings present, in :data:`FINDINGS` order."""
        return tuple(f for f in FINDINGS if f in self._effects)

    def counterfactual(self, finding: str | int) -> Tensor:
        """The film with every present finding except ``finding``.

        Args:
            finding: A name from :data:`FINDINGS` (case-insensitive) or its index.

        Returns:
            ``(1, H, W)`` float32 in ``[0, 1]``: bit-identical to :attr:`image` outside the
            finding's mask and different from it everywhere inside; equal to :attr:`image` when
            the finding is absent.

        Raises:
            UnknownLabelError: ``finding`` is not a finding name or index.
        """
        name = _finding_name(finding)
        if name not in self._effects:
            return self.image.clone()
        if self._base is None or self._tone is None:  # pragma: no cover - built by generate_case
            raise RuntimeError("this PhantomCase was not built by generate_case")
        film = _expose(_compose(self._base, self._effects, exclude=name), self._tone)
        return torch.from_numpy(film)[None]


def _finding_name(finding: str | int) -> str:
    if isinstance(finding, (int, np.integer)) and not isinstance(finding, bool):
        if -len(FINDINGS) <= int(finding) < len(FINDINGS):
            return FINDINGS[int(finding)]
        raise UnknownLabelError(
            f"finding index {int(finding)} is out of range; valid: 0..{len(FINDINGS) - 1} "
            f"({', '.join(FINDINGS)})"
        )
    if isinstance(finding, str):
        for name in FINDINGS:
            if name.lower() == finding.strip().lower():
                return name
    raise UnknownLabelError(f"unknown finding {finding!r}; valid: {', '.join(FINDINGS)}")


# --------------------------------------------------------------------------------------------
# Array helpers (float32, vectorized)


def _ramp(d: np.ndarray, w: float) -> np.ndarray:
    """Occupancy in [0, 1] from a signed distance ``d`` (px, positive inside), edge ``w`` px wide.

    Linear across the edge; exactly 0 for ``d <= -w/2`` and exactly 1 for ``d >= w/2``.
    """
    out = d * _F(1.0 / w)
    out += _F(0.5)
    return np.clip(out, 0.0, 1.0, out=out)


def _smooth(d: np.ndarray, w: float) -> np.ndarray:
    """Like :func:`_ramp` with a smoothstep (C1) transition, for wide, visible gradients."""
    x = _ramp(d, w)
    t = x * _F(-2.0)
    t += _F(3.0)
    t *= x
    t *= x
    return t


def _blur(a: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur with reflected borders; ``sigma`` in pixels."""
    if sigma < 0.1:
        return a
    r = max(1, int(math.ceil(2.5 * sigma)))
    k = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
    k = (k / k.sum()).astype(_F)
    h, w = a.shape
    p = np.pad(a, ((r, r), (0, 0)), mode="reflect")
    out = k[0] * p[0:h]
    for i in range(1, 2 * r + 1):
        out += k[i] * p[i : i + h]
    p = np.pad(out, ((0, 0), (r, r)), mode="reflect")
    out = k[0] * p[:, 0:w]
    for i in range(1, 2 * r + 1):
        out += k[i] * p[:, i : i + w]
    return out


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], cells: float) -> np.ndarray:
    """A smooth random field of ``shape`` with about unit variance and ``cells`` blobs per 224 px."""
    h, w = shape
    gh, gw = max(2, round(cells * h / _REF)), max(2, round(cells * w / _REF))
    g = rng.standard_normal((gh + 2, gw + 2), dtype=_F)
    img = Image.fromarray(g, mode="F")
    big = img.resize((w, h), Image.Resampling.BICUBIC, box=(1.0, 1.0, gw + 1.0, gh + 1.0))
    return np.asarray(big, dtype=_F) * _F(1.0 / 0.72)  # bicubic lowers the variance to ~0.52


def _downsample(layer: Image.Image, size: int) -> np.ndarray:
    """A supersampled ``F`` layer averaged down to ``(size, size)`` (anti-aliasing)."""
    a = np.asarray(layer, dtype=_F)
    out = a[0::2, 0::2] + a[1::2, 0::2]
    out += a[0::2, 1::2]
    out += a[1::2, 1::2]
    out *= _F(0.25)
    return out


@lru_cache(maxsize=16)
def _font(px: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=px)
    except (TypeError, OSError, ImportError):  # pragma: no cover - Pillow without FreeType
        return ImageFont.load_default()


# --------------------------------------------------------------------------------------------
# Geometry


class _Frame:
    """The pixel grid and the patient ("anatomical") coordinates of every pixel.

    Anatomical coordinates are normalized to the film side (0..1, x to the image right, y down);
    the patient is rotated, shifted and magnified relative to the film.
    """

    def __init__(self, size: int, angle: float, zoom: float, dx: float, dy: float) -> None:
        self.size = size
        self.px = 1.0 / size  # one pixel in normalized units
        self.s = size / _REF  # multiply a length in 224-px by this to get pixels
        self.cos, self.sin, self.zoom, self.dx, self.dy = (
            math.cos(angle),
            math.sin(angle),
            zoom,
            dx,
            dy,
        )
        c = (np.arange(size, dtype=_F) + 0.5) / size - 0.5
        x, y = c[None, :], c[:, None]
        self.xa = (0.5 + dx + (self.cos * x - self.sin * y) / zoom).astype(_F)
        self.ya = (0.5 + dy + (self.sin * x + self.cos * y) / zoom).astype(_F)
        # columns that can hold each side of the patient (x_a <= 0.5, x_a >= 0.5)
        self.cols = {
            -1: slice(0, int(np.flatnonzero(self.xa.min(axis=0) <= 0.5)[-1]) + 1),
            1: slice(int(np.flatnonzero(self.xa.max(axis=0) >= 0.5)[0]), size),
        }

    def to_pixels(self, xa: Any, ya: Any, scale: float = 1.0) -> tuple[Any, Any]:
        """Anatomical points -> continuous pixel coordinates (PIL convention) at ``scale``."""
        u, v = (xa - 0.5 - self.dx) * self.zoom, (ya - 0.5 - self.dy) * self.zoom
        x = self.cos * u + self.sin * v + 0.5
        y = -self.sin * u + self.cos * v + 0.5
        return x * (self.size * scale), y * (self.size * scale)

    def window(self, x0: float, x1: float, y0: float, y1: float, pad: int = 3) -> _Win:
        """Pixel window (rows, cols) holding the anatomical rectangle ``[x0, x1] x [y0, y1]``."""
        xs, ys = self.to_pixels(np.array([x0, x1, x0, x1]), np.array([y0, y0, y1, y1]))
        c0 = min(max(int(math.floor(xs.min())) - pad, 0), self.size)
        c1 = min(max(int(math.ceil(xs.max())) + pad, c0), self.size)
        r0 = min(max(int(math.floor(ys.min())) - pad, 0), self.size)
        r1 = min(max(int(math.ceil(ys.max())) + pad, r0), self.size)
        return slice(r0, r1), slice(c0, c1)


@dataclass
class _Lung:
    """One lung field, on the columns of its half of the film (``cols``).

    ``side`` is -1 for the image-left (patient right) lung. Arrays are ``(H, len(cols))``.
    """

    side: int
    p: dict[str, float]
    cols: slice
    q: np.ndarray  # lateral coordinate (normalized; 0 at the midline, positive outwards)
    ya: np.ndarray
    occ: np.ndarray  # occupancy 0..1
    d_in: np.ndarray  # ~distance to the lung border (px; > 0 inside)
    d_out: np.ndarray  # ~distance to the lateral/apical border (px)
    tq: np.ndarray  # q / q_L (0 at the midline .. 1 at the lateral border)
    tv: np.ndarray  # 0 at the apex .. 1 at the costophrenic angle
    dome: np.ndarray  # y of this side's hemidiaphragm (normalized)


def _dist2(dh: np.ndarray, dv: np.ndarray) -> np.ndarray:
    """Distance to a border from horizontal and vertical distances (exact for a straight border)."""
    hyp = np.sqrt(dh * dh + dv * dv)
    hyp += _F(1e-6)
    inside = np.minimum(dh, dv)
    both = inside > 0
    return np.where(both, dh * dv / hyp, inside)


def _lung(fr: _Frame, side: int, p: dict[str, float]) -> _Lung:
    cols = fr.cols[side]
    xa, ya = fr.xa[:, cols], fr.ya[:, cols]
    inv_px = _F(fr.size)
    q = (xa - 0.5) * _F(side)
    y_top, y_b, y_cp, q_l, q_m0 = p["y_top"], p["y_b"], p["y_cp"], p["q_L"], p["q_m0"]
    # lateral border: an ellipse arc from the apex to the widest point, then a slight taper
    t_arc = np.clip((y_b - ya) * _F(1.0 / (y_b - y_top)), 0.0, 1.0)
    arc = np.sqrt(1.0 - t_arc * t_arc)
    q_lat = np.where(ya < y_b, q_m0 + (q_l - q_m0) * arc, q_l - p["taper"] * (ya - y_b))
    q_lat[ya < y_top] = q_m0 - 0.05
    d_lat = (q_lat - q) * inv_px
    # the same arc seen vertically (apex)
    tq_arc = np.clip((q - q_m0) * _F(1.0 / (q_l - q_m0)), 0.0, 1.0)
    y_arc = y_b - (y_b - y_top) * np.sqrt(1.0 - tq_arc * tq_arc)
    d_out = _dist2(d_lat, (ya - y_arc) * inv_px)
    # medial (mediastinal) border, with the aortic knob on the patient's left
    tv = (ya - y_top) * _F(1.0 / (y_cp - y_top))
    q_med = q_m0 + p["q_m1"] * np.clip(tv, 0.0, 1.0)
    if p["knob"] > 0:
        q_med += p["knob"] * np.exp(-(((ya - p["y_knob"]) * _F(1.0 / 0.035)) ** 2))
    # hemidiaphragm dome
    qq = q - p["q_dc"]
    lat = np.clip(qq * _F(1.0 / (q_l - p["q_dc"])), 0.0, None)
    med = np.clip(qq * _F(1.0 / p["q_dc"]), None, 0.0)
    dome = p["y_dtop"] + (y_cp - p["y_dtop"]) * lat * lat + p["c_med"] * med * med
    d_in = np.minimum(np.minimum(d_out, (q - q_med) * inv_px), (dome - ya) * inv_px)
    occ = _ramp(d_in, 1.6 * fr.s)
    return _Lung(side, p, cols, q, ya, occ, d_in, d_out, np.clip(q / q_l, 0.0, 1.3), tv, dome)


def _row_extent(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per row: whether any pixel is set, the first and the last set column."""
    anyr = mask.any(axis=1)
    first = mask.argmax(axis=1)
    last = mask.shape[1] - 1 - mask[:, ::-1].argmax(axis=1)
    return anyr, first, last


def _box(mask: np.ndarray) -> tuple[int, int, int, int]:
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return (0, 0, 0, 0)
    return (int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1)


def _max_width(mask: np.ndarray) -> int:
    anyr, first, last = _row_extent(mask)
    return int((last - first + 1)[anyr].max()) if anyr.any() else 0


class _Heart:
    """Heart silhouette: an asymmetric, sheared ellipse, taller above its widest row, that sits on
    the diaphragm. Only a window around it is ever computed."""

    def __init__(self, fr: _Frame, p: dict[str, float], dia: np.ndarray) -> None:
        self.fr, self.p = fr, p
        top = p["cy"] - p["ay"] * p["top"] * 1.1 - 0.02
        self.win = fr.window(p["cx"] - 0.4, p["cx"] + 0.6, top, float(dia.max()) + 0.03)
        xa, ya = fr.xa[self.win], fr.ya[self.win]
        self.u0 = xa - p["cx"] - p["shear"] * (ya - p["cy"])
        self.v = ya - p["cy"]
        # 1 above the diaphragm, reaching a little below it so no lung shows between the two
        self.below = _ramp((dia[self.win] - ya) * _F(fr.size) + 3.0 * fr.s, 3.0 * fr.s)

    def occ(self, width: float, s_r: float = 1.0, s_l: float = 1.0, s_v: float = 1.0) -> np.ndarray:
        """Full-size occupancy ``(H, W)`` in [0, 1] for a heart ``width`` (normalized) wide,
        its right/left halves scaled by ``s_r``/``s_l`` and its height by ``s_v``."""
        p, fr = self.p, self.fr
        ax_r, ax_l = p["rho"] * width * s_r, (1.0 - p["rho"]) * width * s_l
        neg = self.u0 < 0
        inv_ax = np.where(neg, _F(1.0 / ax_r), _F(1.0 / ax_l))
        inv_ay = np.where(
            self.v < 0, _F(1.0 / (p["ay"] * p["top"] * s_v)), _F(1.0 / (p["ay"] * s_v))
        )
        uu, vv = self.u0 * inv_ax, self.v * inv_ay
        r = np.sqrt(uu * uu + vv * vv)
        scale = _F(min(ax_r, ax_l, p["ay"] * s_v) * fr.size)
        out = np.zeros((fr.size, fr.size), _F)
        out[self.win] = _ramp((1.0 - r) * scale, 2.2 * fr.s) * self.below
        return out


# --------------------------------------------------------------------------------------------
# Anatomy sampling and the healthy film


def _sample_lungs(rng: np.random.Generator) -> tuple[dict[str, float], dict[str, float]]:
    u = rng.uniform
    y_top, y_cp, q_l = u(0.1, 0.15), u(0.74, 0.83), u(0.355, 0.41)
    sides = []
    for side in (-1, 1):
        yc = y_cp + u(-0.012, 0.012)
        sides.append(
            {
                "y_top": y_top + u(-0.008, 0.012),
                "y_cp": yc,
                "y_b": yc - u(0.06, 0.12),
                "q_L": q_l + u(-0.012, 0.012),
                "q_m0": u(0.05, 0.065),
                "q_m1": u(0.025, 0.055),
                "taper": u(0.1, 0.5),
                "q_dc": u(0.15, 0.21),
                "c_med": u(0.03, 0.06),
                "knob": 0.0 if side < 0 else u(0.012, 0.03),
                "y_knob": y_top + u(0.11, 0.16),
                "air": u(0.8, 0.88),
            }
        )
    right, left = sides
    right["y_dtop"] = right["y_cp"] - u(0.09, 0.14)  # the right dome is usually higher
    left["y_dtop"] = min(right["y_dtop"] + u(-0.01, 0.035), left["y_cp"] - 0.06)
    return right, left


def _tree(
    rng: np.random.Generator,
    roots: np.ndarray,
    depth: int,
    spread: float,
    taper: float = 0.72,
    bend: float = 0.12,
) -> np.ndarray:
    """Segments of branching trees (vessels, bronchi), vectorized level by level.

    Args:
        roots: ``(n, 6)``: x, y (anatomical), angle (radians), length (normalized), width (px at
            224) and value of each root segment.

    Returns:
        ``(m, 8)``: x0, y0, xm, ym, x1, y1 (a bent segment through its midpoint), width, value.
    """
    x, y, a, ln, wd, val = (roots[:, i] for i in range(6))
    out = []
    for level in range(depth):
        n = x.size
        xm, ym = x + 0.5 * ln * np.cos(a), y + 0.5 * ln * np.sin(a)
        a2 = a + rng.normal(0.0, bend, n)
        x1, y1 = xm + 0.5 * ln * np.cos(a2), ym + 0.5 * ln * np.sin(a2)
        out.append(np.stack([x, y, xm, ym, x1, y1, wd, val], axis=1))
        if level + 1 < depth:
            sgn = np.tile([-1.0, 1.0], n)
            da = sgn * rng.uniform(0.5, 1.3, 2 * n) * spread + rng.normal(0.0, 0.08, 2 * n)
            x, y, a = np.repeat(x1, 2), np.repeat(y1, 2), np.repeat(a2, 2) + da
            ln = np.repeat(ln, 2) * rng.uniform(0.62, 0.82, 2 * n)
            wd, val = np.repeat(wd, 2) * taper, np.repeat(val, 2) * 0.85
    return np.concatenate(out, axis=0)


def _draw_segments(fr: _Frame, segs: np.ndarray) -> np.ndarray:
    """Rasterize tree segments (anti-aliased) into a full-size ``(H, W)`` layer."""
    size = fr.size
    layer = Image.new("F", (size * _SS, size * _SS), 0.0)
    draw = ImageDraw.Draw(layer)
    xs, ys = fr.to_pixels(segs[:, 0:6:2], segs[:, 1:6:2], _SS)
    widths = np.maximum(1, np.round(segs[:, 6] * fr.s * _SS)).astype(int).tolist()
    values = segs[:, 7].tolist()
    for i, pts in enumerate(np.stack([xs, ys], axis=2).tolist()):
        draw.line([tuple(pt) for pt in pts], fill=values[i], width=widths[i])
    return _downsample(layer, size)


def _add(target: np.ndarray, win: _Win, values: np.ndarray) -> None:
    target[win] += values


def _render_healthy(fr: _Frame, rng: np.random.Generator, anat: dict[str, Any]) -> dict[str, Any]:
    """Attenuation of the healthy thorax, and the fields that findings are built from."""
    u = rng.uniform
    size, s = fr.size, fr.s
    inv_px = _F(size)
    xa, ya = fr.xa, fr.ya
    full = (size, size)
    pr, pl = _sample_lungs(rng)
    lungs = {-1: _lung(fr, -1, pr), 1: _lung(fr, 1, pl)}
    lung_occ = np.zeros(full, _F)
    dia = np.empty(full, _F)
    for side, lg in lungs.items():
        lung_occ[:, lg.cols] += lg.occ
        if side < 0:
            dia[:, lg.cols] = lg.dome
        else:
            dia[:, lg.cols] = np.where(lg.q >= 0, lg.dome, dia[:, lg.cols])

    # --- heart (normal): its width is set from a drawn cardiothoracic ratio
    anyr, first, last = _row_extent(lung_occ > 0.5)
    thorax_w = int((last - first + 1)[anyr].max()) if anyr.any() else int(0.7 * size)
    hp = {
        "cx": 0.5 + u(0.012, 0.045),
        "ay": u(0.11, 0.15),
        "top": u(1.4, 1.9),
        "rho": u(0.30, 0.40),
        "shear": u(0.12, 0.42),
    }
    hp["cy"] = pl["y_dtop"] - u(0.02, 0.05)
    heart = _Heart(fr, hp, dia)
    ctr_target = u(*_NORMAL_CTR)
    width = ctr_target * thorax_w / size
    occ_h = heart.occ(width)
    hw = _max_width(occ_h > 0.5)
    for _ in range(3):  # rasterized widths are whole pixels: correct the drawn width
        if hw == 0 or abs(hw / thorax_w - ctr_target) < 0.008:
            break
        width *= ctr_target * thorax_w / hw
        occ_h = heart.occ(width)
        hw = _max_width(occ_h > 0.5)
    anat.update(thorax_width_px=thorax_w, ctr_normal=hw / thorax_w, heart_width_px=hw)

    # --- body soft tissue: chest wall, axillae, shoulders, neck
    q = np.abs(xa - 0.5)
    q_chest = max(pr["q_L"], pl["q_L"]) + u(0.035, 0.07)
    q_arm = u(0.5, 0.6)
    y_sh = min(pr["y_top"], pl["y_top"])
    shoulder = _smooth((y_sh + u(0.12, 0.2) - 0.11 - ya) * inv_px, 0.22 * size)
    q_body = q_chest + (q_arm - q_chest) * np.sqrt(shoulder)
    neck_w = u(0.1, 0.14)
    y_trap = y_sh - u(0.07, 0.11) + u(0.3, 0.5) * np.clip(q - neck_w, 0.0, None) ** 1.1
    body = _ramp((q_body - q) * inv_px, 3.0 * s) * np.maximum(
        _ramp((ya - y_trap) * inv_px, 4.0 * s), _ramp((neck_w - q) * inv_px, 3.0 * s)
    )
    rel = np.clip(q / (q_body + 0.025), 0.0, 1.0)
    thick = u(1.85, 2.1) * (1.0 - rel * rel) ** 0.45
    a = body * thick
    if rng.random() < 0.5:  # breasts / pectoral soft tissue over the lower lateral lungs
        amp = u(0.05, 0.15)
        for lg in lungs.values():
            cy_b = lg.p["y_cp"] - u(0.1, 0.16)
            xc = 0.5 + lg.side * 0.22
            win = fr.window(xc - 0.18, xc + 0.18, cy_b - 0.13, cy_b + 0.13)
            rr = ((xa[win] - xc) / 0.17) ** 2 + ((ya[win] - cy_b) / 0.12) ** 2
            _add(a, win, amp * _smooth((1.0 - rr) * 16.0, 8.0) * body[win])

    # --- lung air: a share of the body's thickness, less at the lung borders and apices
    air = np.zeros(full, _F)
    vmask = np.zeros(full, _F)  # where lung markings show, fading towards the periphery
    for lg in lungs.values():
        inner = _smooth(lg.d_in, 0.18 * size)  # 0.5 at the border .. 1 inside
        frac = lg.p["air"] * lg.occ * (0.32 + 0.68 * inner) * (0.9 + 0.1 * np.clip(lg.tv, 0, 1))
        air[:, lg.cols] += frac * thick[:, lg.cols]
        vmask[:, lg.cols] += lg.occ * (0.35 + 0.65 * _smooth(lg.d_in, 0.24 * size))
    kappa = u(0.62, 0.8)  # share of the lung air the heart displaces where they overlap
    h_dens = u(0.05, 0.15)
    air_eff = air * (1.0 - kappa * occ_h)
    paren = u(0.1, 0.16) * lung_occ * (1.0 + 0.3 * _smooth_noise(rng, full, 40))
    a -= air_eff
    a += h_dens * occ_h

    # --- trachea (air column), spine (vertebral bodies, end plates, pedicles)
    x_tr = 0.5 + u(-0.01, 0.01)
    y_car = y_sh + u(0.15, 0.2)
    tw = u(0.018, 0.024)
    win = fr.window(x_tr - tw - 0.02, x_tr + tw + 0.02, -0.1, y_car + 0.03)
    tr = _ramp((tw - np.abs(xa[win] - x_tr)) * inv_px, 2.0 * s)
    tr *= _ramp((y_car - ya[win]) * inv_px, 6.0 * s)
    _add(a, win, -u(0.35, 0.55) * tr)
    win = fr.window(0.44, 0.56, -0.1, 1.1)
    q_sp = np.abs(xa[win] - 0.5)
    period = u(0.042, 0.05)
    ph = (ya[win] * _F(1.0 / period) + u(0.0, 1.0)) % 1.0
    spine = _ramp((0.042 - q_sp) * inv_px, 3.0 * s)
    plates = np.exp(-(((ph - 0.5) / 0.09) ** 2))
    pedicle = np.exp(-(((q_sp - 0.032) / 0.007) ** 2) - ((ph - 0.3) / 0.16) ** 2)
    _add(a, win, spine * (u(0.12, 0.2) + 0.08 * plates + 0.14 * pedicle))

    # --- ribs (posterior arcs from the spine; fainter anterior ribs sloping down medially),
    # clavicles, humeral heads, scapular edges
    bones = np.zeros(full, _F)
    for lg in lungs.values():
        p, cols = lg.p, lg.cols
        yl = lg.ya
        tq = lg.q * _F(1.0 / p["q_L"])
        tqc = np.clip(tq, 0.0, None)
        # the rib cage: between the spine and the chest wall, not over the shoulders
        qls = p["q_L"] * size
        reach = np.minimum((1.1 - tq) * _F(qls / (5.0 * s)), (tq - 0.05) * _F(qls / (4.0 * s)))
        np.minimum(reach, (lg.d_out + 0.03 * size) * _F(1.0 / (10.0 * s)), out=reach)
        reach = _ramp(reach, 1.0)
        # behind the abdomen the ribs are faint
        low = _smooth((yl - lg.dome - 0.03) * inv_px, 0.06 * size)
        sp0 = (p["y_cp"] - p["y_top"]) / u(8.6, 9.6)
        amp = u(0.085, 0.11) * (1.0 + 0.4 * np.exp(-np.clip(yl - p["y_top"], 0.0, None) / 0.08))
        shape = amp * tqc * (1.3 * tqc - 1.7) + 0.75 * np.clip(tqc - 0.6, 0.0, None) ** 2
        n = (yl - (p["y_top"] - u(0.01, 0.025)) - shape) * _F(1.0 / sp0)
        phi = n - 0.012 * n * n
        k = np.floor(phi)
        f = np.abs(phi - k - 0.5)
        hw = u(0.2, 0.26)
        rib = _ramp((hw - f) * _F(sp0 * size), 1.6 * s)
        f *= _F(1.0 / hw)
        f *= f
        f *= f
        f *= _F(0.22)
        f += _F(0.78)
        rib *= f  # brighter cortical margins
        rib *= reach
        rib *= (k >= 0) & (k <= 10)
        rib *= 1.0 - 0.65 * low
        bones[:, cols] += u(0.24, 0.34) * rib
        # anterior ribs, on their own window
        aw = fr.window(
            0.5 + lg.side * 0.36 * p["q_L"], 0.5 + lg.side * 1.1 * p["q_L"], p["y_top"], p["y_cp"]
        )
        lw = (aw[0], slice(max(aw[1].start - cols.start, 0), max(aw[1].stop - cols.start, 0)))
        tqa = tq[lw]
        na = yl[lw] - (p["y_top"] + u(0.0, 0.02)) - u(0.1, 0.15) * (1.05 - tqa)
        na *= _F(1.0 / (sp0 * 1.12))
        ka = np.floor(na)
        ant = _ramp((0.17 - np.abs(na - ka - 0.5)) * _F(sp0 * size), 2.5 * s)
        ant *= _ramp(np.minimum((1.08 - tqa) * 40.0 / 6.0, (tqa - 0.38) * 40.0 / 8.0), 1.0)
        ant *= ((ka >= 0) & (ka <= 6)) * (1.0 - low[lw])
        bones[:, cols][lw] += u(0.07, 0.12) * ant
        # clavicle: from the sternal end laterally and upwards, gently S-shaped
        y0c = p["y_top"] + u(0.08, 0.12)
        slope, q_end = u(0.2, 0.28), u(0.36, 0.42)
        win = fr.window(
            0.5 + lg.side * 0.02, 0.5 + lg.side * (q_end + 0.03), y0c - 0.14, y0c + 0.06
        )
        qc, yw = lg.side * (xa[win] - 0.5), ya[win]
        y_cl = y0c - slope * (qc - 0.04) + 0.45 * (qc - 0.16) ** 2
        y_cl += 0.008 * np.sin((qc - 0.04) * _F(2.0 * math.pi / 0.36))
        half = u(0.012, 0.018) * (1.0 + 0.35 * np.clip((0.2 - qc) / 0.16, 0.0, 1.0))
        dcl = np.abs(yw - y_cl) / half
        clav = _ramp((1.0 - dcl) * half * inv_px, 2.0 * s)
        clav *= _ramp((qc - 0.035) * inv_px, 4.0 * s) * _ramp((q_end - qc) * inv_px, 5.0 * s)
        _add(bones, win, u(0.4, 0.55) * clav * (0.75 + 0.25 * dcl * dcl))
        # humeral head
        hq, hy, hr = p["q_L"] + u(0.08, 0.12), p["y_top"] - u(0.0, 0.04), u(0.055, 0.075)
        hx = 0.5 + lg.side * hq
        win = fr.window(hx - hr - 0.01, hx + hr + 0.01, hy - hr - 0.01, hy + hr + 0.01)
        dh = (hr - np.sqrt((xa[win] - hx) ** 2 + (ya[win] - hy) ** 2)) * inv_px
        _add(bones, win, u(0.3, 0.45) * _ramp(dh, 3.0 * s) * (0.8 + 0.2 * _smooth(dh, 0.08 * size)))
        # lateral border of the scapula over the upper lung
        y_s0, y_s1 = p["y_top"] - 0.03, p["y_top"] + u(0.25, 0.33)
        q_s = p["q_L"] - 0.03
        win = fr.window(
            0.5 + lg.side * (q_s - 0.03), 0.5 + lg.side * (q_s + 0.12), y_s0 - 0.02, y_s1 + 0.03
        )
        yw = ya[win]
        sc = _ramp(
            (0.012 - np.abs(lg.side * (xa[win] - 0.5) - (q_s + 0.25 * (yw - p["y_top"])))) * inv_px,
            3 * s,
        )
        sc *= _ramp((y_s1 - yw) * inv_px, 8.0 * s) * _ramp((yw - y_s0) * inv_px, 6.0 * s)
        _add(bones, win, u(0.06, 0.12) * sc)
    bones *= body
    a += bones

    # --- hila and vessels (lung markings): branching trees from the hila
    roots, hila = [], {}
    for lg in lungs.values():
        p = lg.p
        frac_h = u(0.36, 0.42) if lg.side < 0 else u(0.3, 0.37)
        yh = p["y_top"] + (p["y_cp"] - p["y_top"]) * frac_h
        qh = p["q_m0"] + p["q_m1"] * 0.4 + u(0.02, 0.035)
        xh = 0.5 + lg.side * qh
        hila[lg.side] = (xh, yh)
        win = fr.window(xh - 0.08, xh + 0.08, yh - 0.15, yh + 0.15)
        hil = np.exp(-((xa[win] - xh) ** 2) / 0.0007 - (ya[win] - yh) ** 2 / 0.0025)
        _add(a, win, u(0.25, 0.4) * hil)
        for base in (-1.3, -0.85, -0.4, 0.05, 0.5, 0.95, 1.35):
            ang = math.pi / 2 - lg.side * (math.pi / 2 - base) + rng.normal(0.0, 0.1)
            roots.append((xh, yh, ang, u(0.06, 0.085), 2.8, u(0.2, 0.3)))
    segs = _tree(rng, np.array(roots, dtype=np.float64), 4, 0.45, taper=0.7, bend=0.2)
    vessels = _draw_segments(fr, segs) * vmask

    # --- gastric bubble under the left dome, bowel gas below the diaphragm
    if rng.random() < 0.65:
        gx, gy = 0.5 + u(0.12, 0.22), pl["y_dtop"] + u(0.035, 0.06)
        rx, ry = u(0.04, 0.07), u(0.025, 0.04)
        win = fr.window(gx - rx, gx + rx, gy - ry, gy + ry)
        rr = ((xa[win] - gx) / rx) ** 2 + ((ya[win] - gy) / ry) ** 2
        bub = _smooth((1.0 - rr) * 10.0, 4.0) * _ramp((gy + 0.01 - ya[win]) * inv_px, 2.0)
        _add(a, win, -u(0.3, 0.6) * bub * body[win])
    win = fr.window(-0.1, 1.1, float(dia.min()) + 0.03, 1.1)
    gas = np.clip(_smooth_noise(rng, ya[win].shape, 12) - u(0.8, 1.3), 0.0, None)
    gas *= _smooth((ya[win] - dia[win] - 0.075) * inv_px, 0.05 * size) * body[win]
    _add(a, win, -u(0.15, 0.35) * gas)

    lung_r, lung_l = lungs[-1], lungs[1]
    anat.update(
        heart_box=_box(occ_h > 0.5),
        right_lung_box=_shift_box(_box(lung_r.occ > 0.5), lung_r.cols.start),
        left_lung_box=_shift_box(_box(lung_l.occ > 0.5), lung_l.cols.start),
    )
    return {
        "a": a,
        "vessels": vessels,
        "paren": paren,
        "air": air,
        "air_eff": air_eff,
        "lungs": lungs,
        "lung_occ": lung_occ,
        "heart": heart,
        "heart_width": width,
        "occ_h": occ_h,
        "h_dens": h_dens,
        "kappa": kappa,
        "hila": hila,
    }


def _shift_box(b: tuple[int, int, int, int], dx: int) -> tuple[int, int, int, int]:
    return (b[0] + dx, b[1], b[2] + dx, b[3]) if b[2] > b[0] else b


def _draw_distractors(fr: _Frame, rng: np.random.Generator, anat: dict[str, Any]) -> np.ndarray:
    """Radio-opaque things that are not anatomy: side marker, burned-in text, ECG leads.

    Returns:
        ``(H, W)`` float32 layer in [0, 1] (drawn in film coordinates, not rotated).
    """
    size, s = fr.size, fr.s
    big = size * _SS
    layer = Image.new("F", (big, big), 0.0)
    draw = ImageDraw.Draw(layer)
    # side marker: usually "R" on the image left
    letter = "R" if rng.random() < 0.8 else "L"
    on_left = (letter == "R") ^ (rng.random() < 0.1)
    fpx = int(round(rng.uniform(13, 20) * s * _SS))
    mx = rng.uniform(0.03, 0.14) * big if on_left else big - rng.uniform(0.06, 0.16) * big
    my = rng.uniform(0.03, 0.2) * big
    draw.text((mx, my), letter, fill=1.0, font=_font(fpx))
    if rng.random() < 0.3:
        box = (mx - 3 * s, my - 2 * s, mx + fpx * 0.9, my + fpx * 1.15)
        draw.rectangle(box, outline=0.7, width=2)
    anat["marker"] = letter
    # burned-in text
    text = ""
    if rng.random() < 0.6:
        words = ("PORTABLE", "AP", "PA", "ERECT", "SEMI-ERECT", "SUPINE", "UPRIGHT", "ICU", "CHEST")
        text = str(rng.choice(words))
        if rng.random() < 0.5:
            text += f" {int(rng.integers(0, 24)):02d}:{int(rng.integers(0, 60)):02d}"
        tpx = int(round(rng.uniform(8, 11) * s * _SS))
        tx = rng.uniform(0.02, 0.5) * big
        top = rng.random() < 0.6
        ty = rng.uniform(0.01, 0.05) * big if top else big - rng.uniform(0.05, 0.09) * big
        draw.text((tx, ty), text, fill=float(rng.uniform(0.6, 1.0)), font=_font(tpx))
    anat["text"] = text
    # ECG electrodes with their leads
    n_el = int(rng.choice([0, 0, 0, 1, 1, 2, 3]))
    for _ in range(n_el):
        ex, ey = rng.uniform(0.1, 0.9) * big, rng.uniform(0.08, 0.9) * big
        r = rng.uniform(3.0, 5.0) * s * _SS
        ring = max(1, int(s * _SS))
        draw.ellipse((ex - r, ey - r, ex + r, ey + r), outline=0.9, fill=0.25, width=ring)
        draw.ellipse((ex - r / 3, ey - r / 3, ex + r / 3, ey + r / 3), fill=0.9)
        ang = rng.uniform(0, 2 * math.pi)
        ln = rng.uniform(0.15, 0.6) * big
        end = (ex + ln * math.cos(ang), ey + ln * math.sin(ang))
        ctrl = (ex + 0.5 * ln * math.cos(ang + 0.8), ey + 0.5 * ln * math.sin(ang + 0.8))
        t = np.linspace(0.0, 1.0, 24)
        bx = (1 - t) ** 2 * ex + 2 * (1 - t) * t * ctrl[0] + t**2 * end[0]
        by = (1 - t) ** 2 * ey + 2 * (1 - t) * t * ctrl[1] + t**2 * end[1]
        pts = list(zip(bx.tolist(), by.tolist(), strict=True))
        draw.line(pts, fill=0.55, width=max(1, int(1.2 * s * _SS)))
    anat["electrodes"] = n_el
    return _downsample(layer, size)


# --------------------------------------------------------------------------------------------
# Findings: each returns a full-size attenuation map with compact support and records its
# parameters in the anatomy dict. They read the healthy fields; they never read each other.


def _threshold(e: np.ndarray) -> np.ndarray:
    """Zero the map where it is below :data:`_TAU`, so its support is where it is visible."""
    e[np.abs(e) < _TAU] = 0.0
    return e


def _side_name(side: int) -> str:
    return "right" if side < 0 else "left"


def _cardiomegaly(
    fr: _Frame, rng: np.random.Generator, h: dict[str, Any], anat: dict[str, Any]
) -> np.ndarray:
    """An enlarged heart: widened mostly to the patient's left, CTR 0.56-0.68."""
    heart: _Heart = h["heart"]
    width, thorax_w = h["heart_width"], anat["thorax_width_px"]
    target = rng.uniform(*_ENLARGED_CTR)
    beta = rng.uniform(0.3, 0.7)  # the right heart border moves out less than the left one
    s_v = rng.uniform(1.0, 1.08)
    rho = heart.p["rho"]
    ratio = target / max(anat["ctr_normal"], 1e-3)
    occ_e, hw = h["occ_h"], 0
    for _ in range(3):
        s_l = 1.0 + (ratio - 1.0) / (rho * beta + 1.0 - rho)
        occ_e = heart.occ(width, 1.0 + beta * (s_l - 1.0), s_l, s_v)
        hw = _max_width(occ_e > 0.5)
        if abs(hw / thorax_w - target) < 0.008:
            break
        ratio *= target * thorax_w / max(hw, 1)
    diff = np.clip(occ_e - h["occ_h"], 0.0, None)
    e = diff * (h["h_dens"] + h["kappa"] * h["air"])
    anat.update(ctr=hw / thorax_w, heart_width_px=hw, heart_box=_box(occ_e > 0.5))
    anat["cardiomegaly"] = {"ctr": hw / thorax_w, "stretch_left": round(float(s_l), 4)}
    return _threshold(e)


def _effusion(
    fr: _Frame, rng: np.random.Generator, h: dict[str, Any], anat: dict[str, Any]
) -> np.ndarray:
    """Fluid at one or both lung bases, with a meniscus that rises laterally."""
    r = rng.random()
    sides = (-1,) if r < 0.4 else (1,) if r < 0.8 else (-1, 1)
    e = np.zeros((fr.size, fr.size), _F)
    heights = []
    for side in sides:
        lg: _Lung = h["lungs"][side]
        p = lg.p
        span = p["y_cp"] - p["y_top"]
        y_lat = p["y_cp"] - rng.uniform(0.22, 0.5) * span  # meniscus at the lateral chest wall
        y_med = y_lat + rng.uniform(0.03, 0.08)  # ... lower medially: concave upwards
        tq = np.clip(lg.tq, 0.0, 1.0)
        below = (lg.ya - (y_med - (y_med - y_lat) * tq * tq)) * _F(fr.size)
        o = lg.occ * _smooth(below, rng.uniform(3.0, 6.0) * fr.s)
        o *= 0.6 + 0.4 * _smooth(below - 0.035 * fr.size, 0.07 * fr.size)
        fill, extra = rng.uniform(0.85, 0.98), rng.uniform(0.1, 0.18)
        e[:, lg.cols] += o * (fill * h["air_eff"][:, lg.cols] + extra)
        heights.append(round(float((p["y_cp"] - y_lat) * fr.size), 1))
    anat["effusion"] = {"sides": [_side_name(sd) for sd in sides], "height_px": heights}
    return _threshold(e)


def _consolidation(
    fr: _Frame, rng: np.random.Generator, h: dict[str, Any], anat: dict[str, Any]
) -> np.ndarray:
    """Patchy air-space opacity in part of one lobe, sometimes with air bronchograms."""
    side = -1 if rng.random() < 0.55 else 1
    lg: _Lung = h["lungs"][side]
    size, s = fr.size, fr.s
    span = (lg.p["y_cp"] - lg.p["y_top"]) * size
    lobe = str(rng.choice(["upper", "middle", "lower", "lower"]))
    tv, tq = lg.tv, lg.tq
    lat0 = 0.25 if side < 0 else 0.45  # keep the patient's left opacities clear of the heart
    if lobe == "upper":
        tb = rng.uniform(0.38, 0.52)
        win = _smooth((tb - tv) * span, 1.5 * s if side < 0 else 10.0 * s)  # right: minor fissure
        cv, ch = rng.uniform(0.1, tb - 0.05), rng.uniform(0.3, 0.7)
    elif lobe == "middle":
        win = _smooth((tv - 0.42) * span, 14.0 * s) * _smooth((0.86 - tv) * span, 14.0 * s)
        win *= _smooth((0.8 - tq) * lg.p["q_L"] * size, 12.0 * s)
        cv, ch = rng.uniform(0.55, 0.75), rng.uniform(max(lat0, 0.3), 0.6)
    else:
        ta = rng.uniform(0.5, 0.66)
        win = _smooth((tv - ta) * span, 12.0 * s)
        cv, ch = rng.uniform(ta + 0.1, 0.95), rng.uniform(lat0, 0.8)
    rv, rh = rng.uniform(0.18, 0.35), rng.uniform(0.3, 0.55)
    shape = lg.occ.shape
    wob = _smooth_noise(rng, shape, 6)
    dv, dh = (tv - cv) * _F(1.0 / rv), (tq - ch) * _F(1.0 / rh)
    rr = np.sqrt(dv * dv + dh * dh) * (1.0 + 0.3 * wob)
    region = lg.occ * win * _smooth((1.0 - rr) * 0.25 * span, 16.0 * s)
    patch = 0.5 + 0.5 * np.tanh(1.4 * _smooth_noise(rng, shape, 14) + 0.4)
    o = region * (0.5 + 0.5 * patch)
    bronch = rng.random() < 0.6
    if bronch:  # air bronchograms: darker branching tubes inside the opacity
        ys, xs = np.nonzero(region > 0.8)
        if ys.size:
            n = int(rng.integers(2, 4))
            pick = rng.integers(ys.size, size=n)
            cols = xs[pick] + lg.cols.start
            x0, y0 = fr.xa[ys[pick], cols], fr.ya[ys[pick], cols]
            ang = np.arctan2(y0 - 0.42, x0 - 0.5) + rng.normal(0.0, 0.3, n)
            roots = np.stack(
                [x0, y0, ang, rng.uniform(0.04, 0.06, n), np.full(n, 1.3), np.ones(n)], axis=1
            )
            lines = _draw_segments(fr, _tree(rng, roots.astype(np.float64), 3, 0.35))
            o *= 1.0 - 0.35 * np.clip(lines[:, lg.cols], 0.0, 1.0)
    c, extra = rng.uniform(0.75, 0.95), rng.uniform(0.08, 0.14)
    e = np.zeros((size, size), _F)
    e[:, lg.cols] = o * (c * h["air_eff"][:, lg.cols] + extra)
    anat["consolidation"] = {"side": _side_name(side), "lobe": lobe, "air_bronchograms": bronch}
    return _threshold(e)


def _nodule(
    fr: _Frame, rng: np.random.Generator, h: dict[str, Any], anat: dict[str, Any]
) -> np.ndarray:
    """A round, slightly lobulated soft-tissue opacity, 7-18 px (~11-28 mm at 224 px) across."""
    size, s = fr.size, fr.s
    diam = math.exp(rng.uniform(math.log(7.0), math.log(18.0))) * s
    rad = diam / 2.0
    side = -1 if rng.random() < 0.5 else 1
    lg: _Lung = h["lungs"][side]
    occ_h = h["occ_h"][:, lg.cols]
    cand = np.zeros(0, np.intp)
    xh, yh = h["hila"][side]
    dh2 = (fr.xa[:, lg.cols] - xh) ** 2 + (lg.ya - yh) ** 2  # away from the hilar vessels
    for margin, out, hil in ((4.0, 26.0, 0.08), (2.0, 10.0, 0.05), (0.5, 0.0, 0.0)):
        ok = (lg.d_in > rad + margin * s) & (lg.d_out > rad + out * s) & (occ_h < 0.02)
        ok &= dh2 > hil * hil
        ok &= (lg.tv > 0.12) & (lg.tv < 0.9)
        cand = np.flatnonzero(ok)
        if cand.size:
            break
    if cand.size == 0:  # pragma: no cover - every sampled lung is large enough
        cand = np.flatnonzero(lg.occ >= lg.occ.max())
    cy, cx = divmod(int(cand[int(rng.integers(cand.size))]), lg.occ.shape[1])
    cx += lg.cols.start
    lob, phase = rng.uniform(0.0, 0.1), rng.uniform(0.0, 2 * math.pi)
    amp = 0.5 + 0.03 * diam / s
    r0 = int(math.ceil(rad * 1.2 + 3))
    y0, y1, x0, x1 = (
        max(cy - r0, 0),
        min(cy + r0 + 1, size),
        max(cx - r0, 0),
        min(cx + r0 + 1, size),
    )
    yy = (np.arange(y0, y1, dtype=_F) - cy + rng.uniform(-0.5, 0.5))[:, None]
    xx = (np.arange(x0, x1, dtype=_F) - cx + rng.uniform(-0.5, 0.5))[None, :]
    rr = np.sqrt(xx * xx + yy * yy) / (rad * (1.0 + lob * np.cos(3.0 * np.arctan2(yy, xx) + phase)))
    prof = np.sqrt(np.clip(1.0 - rr * rr, 0.0, 1.0)) ** 0.8  # a sphere, seen in projection
    prof = np.minimum(prof, _ramp((1.0 - rr) * rad, 1.2 * s))  # a slightly soft rim
    e = np.zeros((size, size), _F)
    e[y0:y1, x0:x1] = amp * prof
    anat["nodule"] = {
        "center_px": (int(cx), int(cy)),
        "diameter_px": round(float(diam), 2),
        "side": _side_name(side),
    }
    return _threshold(e)


def _pneumothorax(
    fr: _Frame, rng: np.random.Generator, h: dict[str, Any], anat: dict[str, Any]
) -> np.ndarray:
    """Apical-lateral pneumothorax: a thin visceral pleural line, no lung markings beyond it."""
    side = -1 if rng.random() < 0.5 else 1
    lg: _Lung = h["lungs"][side]
    s, cols = fr.s, lg.cols
    gap_max = rng.uniform(8.0, 24.0) * s
    tv_end = rng.uniform(0.5, 0.85)
    gap = gap_max * (1.0 - _smooth((lg.tv - 0.725 * tv_end) * _F(1.0 / tv_end), 0.55))
    region = lg.occ * _ramp(gap - lg.d_out, 1.2 * s)
    line = np.exp(-(((lg.d_out - gap) * _F(1.0 / (0.7 * s))) ** 2))
    line *= _smooth(gap - 1.5 * s, 3.0 * s) * lg.occ
    dark = rng.uniform(0.16, 0.28)
    e = np.zeros((fr.size, fr.size), _F)
    e[:, cols] = rng.uniform(0.16, 0.26) * line - region * (
        h["vessels"][:, cols] + h["paren"][:, cols] + dark * lg.occ
    )
    anat["pneumothorax"] = {"side": _side_name(side), "gap_px": round(float(gap_max), 2)}
    return _threshold(e)


_RENDERERS = {
    "Cardiomegaly": _cardiomegaly,
    "Pleural Effusion": _effusion,
    "Consolidation": _consolidation,
    "Nodule": _nodule,
    "Pneumothorax": _pneumothorax,
}


# --------------------------------------------------------------------------------------------
# Exposure


def _compose(
    base: np.ndarray, effects: dict[str, np.ndarray], exclude: str | None = None
) -> np.ndarray:
    """Total attenuation: ``base`` plus every finding map but ``exclude``, in FINDINGS order."""
    a = base
    for name in FINDINGS:
        if name in effects and name != exclude:
            a = a + effects[name]
    return a


def _expose(a: np.ndarray, tone: tuple[float, float, float, float]) -> np.ndarray:
    """Film brightness in (0, 1) from attenuation: strictly increasing, never saturating."""
    lo, hi, k, gamma = tone
    # a smooth, strictly increasing positive part: (a + sqrt(a^2 + c^2)) / 2
    pos = a * a
    pos += _F(0.04**2)
    np.sqrt(pos, out=pos)
    pos += a
    pos *= _F(-0.5 * k)
    film = -np.expm1(pos)
    np.power(film, _F(gamma), out=film)
    film *= _F(hi - lo)
    film += _F(lo)
    return film


# --------------------------------------------------------------------------------------------
# Public entry points


def _resolve_findings(
    rng: np.random.Generator | None, findings: Iterable[str] | None, p_finding: float
) -> tuple[str, ...]:
    if findings is None:
        assert rng is not None
        draws = rng.random(len(FINDINGS))
        return tuple(f for f, d in zip(FINDINGS, draws, strict=True) if d < p_finding)
    if isinstance(findings, str):
        findings = (findings,)
    wanted = {_finding_name(f) for f in findings}
    return tuple(f for f in FINDINGS if f in wanted)


def _check(seed: int, size: int, p_finding: float) -> None:
    if seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed}")
    if int(size) != size or size < _MIN_SIZE:
        raise ValueError(f"size must be an integer >= {_MIN_SIZE}, got {size!r}")
    if not 0.0 <= p_finding <= 1.0:
        raise ValueError(f"p_finding must be in [0, 1], got {p_finding!r}")


def _generate(
    seed: int, findings: Iterable[str] | None, size: int, p_finding: float, full: bool
) -> PhantomCase:
    present = _resolve_findings(np.random.default_rng([seed, 1]), findings, p_finding)
    rng = np.random.default_rng([seed, 0])
    u = rng.uniform
    angle = math.radians(u(-3.5, 3.5))
    zoom, dx, dy = u(0.94, 1.06), u(-0.025, 0.025), u(-0.03, 0.03)
    fr = _Frame(size, angle, zoom, dx, dy)
    anat: dict[str, Any] = {
        "size": size,
        "rotation_deg": round(math.degrees(angle), 3),
        "zoom": round(zoom, 4),
        "shift": (round(dx, 4), round(dy, 4)),
    }
    h = _render_healthy(fr, rng, anat)
    extra = _draw_distractors(fr, rng, anat)
    blur = u(0.3, 0.8) * fr.s
    tone = (u(0.01, 0.08), u(0.9, 0.985), u(0.8, 1.1), u(1.25, 1.7))
    noise_sigma = u(0.015, 0.04)
    fog, heel = u(0.0, 0.06), u(-0.06, 0.06)
    anat.update(
        blur_sigma_px=round(blur, 3),
        noise_sigma=round(noise_sigma, 4),
        exposure={"lo": tone[0], "hi": tone[1], "k": tone[2], "gamma": tone[3]},
        ctr=anat["ctr_normal"],
    )

    # the healthy film: blurred anatomy and distractors, vessels, parenchyma, fog, heel, noise
    a = h["a"]
    a += _F(2.6) * extra
    a = _blur(a, blur)
    a += h["vessels"]
    a += h["paren"]
    a += fog + heel * (fr.ya - 0.5)
    z = np.random.default_rng([seed, 2]).standard_normal((size, size), dtype=_F)
    gain = np.exp(0.45 * (a - 1.0))  # quantum noise: more where fewer photons arrive
    np.clip(gain, 0.5, 2.0, out=gain)
    gain *= _F(noise_sigma)
    gain *= z
    base = a + gain

    effects: dict[str, np.ndarray] = {}
    for k, name in enumerate(FINDINGS):
        if name in present:
            effects[name] = _RENDERERS[name](fr, np.random.default_rng([seed, 10 + k]), h, anat)

    image = torch.from_numpy(_expose(_compose(base, effects), tone))[None]
    healthy = torch.from_numpy(_expose(base, tone))[None] if full else image
    masks = np.zeros((len(FINDINGS), 1, size, size), dtype=bool)
    if full:
        for k, name in enumerate(FINDINGS):
            if name in effects:
                np.not_equal(effects[name], 0.0, out=masks[k, 0])
    labels = torch.tensor([1.0 if f in effects else 0.0 for f in FINDINGS], dtype=torch.float32)
    return PhantomCase(
        image=image,
        healthy=healthy,
        labels=labels,
        masks=torch.from_numpy(masks),
        seed=seed,
        anatomy=anat,
        lung_mask=torch.from_numpy(h["lung_occ"] > 0)[None],
        _base=base,
        _effects=effects,
        _tone=tone,
    )


def generate_case(
    seed: int,
    findings: Iterable[str] | None = None,
    *,
    size: int = 224,
    p_finding: float = 0.3,
) -> PhantomCase:
    """Generate one synthetic frontal chest film with its ground truth.

    Args:
        seed: Non-negative integer; the same seed and arguments give bit-identical tensors. The
            anatomy, the noise, which findings are drawn, and each finding's geometry come from
            separate streams, so a seed's anatomy and, say, its nodule are the same whichever other
            findings are present.
        findings: Names from :data:`FINDINGS` (case-insensitive) to draw, exactly those; ``None``
            draws each finding independently with probability ``p_finding``.
        size: Side length in pixels (at least 64); the anatomy scales with it.
        p_finding: Probability of each finding when ``findings`` is ``None``, in ``[0, 1]``.

    Returns:
        A :class:`PhantomCase`: ``(1, size, size)`` float32 films in ``[0, 1]``, ``(5,)`` labels
        and ``(5, 1, size, size)`` bool masks.

    Raises:
        UnknownLabelError: A finding is not in :data:`FINDINGS`.
        ValueError: ``seed`` is negative, ``size`` below 64 or ``p_finding`` outside ``[0, 1]``.
    """
    seed = int(seed)
    _check(seed, size, p_finding)
    return _generate(seed, findings, int(size), float(p_finding), full=True)


def item_seed(dataset_seed: int, i: int) -> int:
    """The :func:`generate_case` seed of item ``i`` of the :class:`PhantomDataset` of seed
    ``dataset_seed``: ``dataset_seed * 1_000_003 + i`` (datasets of different seeds hold different
    films up to a million items each)."""
    return int(dataset_seed) * 1_000_003 + int(i)


class PhantomDataset(Dataset):
    """Phantom films generated on the fly: item ``i`` is ``generate_case(item_seed(seed, i))``.

    Args:
        n: Number of items.
        seed: Non-negative dataset seed.
        size: Side length in pixels.
        p_finding: Probability of each finding (when ``findings`` is ``None``).
        findings: If given, every item has exactly these findings.

    Items are ``(image, labels)``: ``(1, size, size)`` float32 in ``[0, 1]`` and ``(5,)`` float32
    in ``{0, 1}`` in :data:`FINDINGS` order (the order of :attr:`labels`).
    """

    labels: tuple[str, ...] = FINDINGS

    def __init__(
        self,
        n: int,
        *,
        seed: int = 0,
        size: int = 224,
        p_finding: float = 0.3,
        findings: Iterable[str] | None = None,
    ) -> None:
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        _check(int(seed), size, p_finding)
        self.n, self.seed, self.size, self.p_finding = (
            int(n),
            int(seed),
            int(size),
            float(p_finding),
        )
        self.findings = None if findings is None else _resolve_findings(None, findings, p_finding)

    def __len__(self) -> int:
        return self.n

    def _seed(self, i: int) -> int:
        i = int(i)
        if not -self.n <= i < self.n:
            raise IndexError(f"index {i} out of range for a PhantomDataset of {self.n} items")
        return item_seed(self.seed, i % self.n)

    def case(self, i: int) -> PhantomCase:
        """The full :class:`PhantomCase` of item ``i`` (masks, healthy film, anatomy)."""
        return _generate(self._seed(i), self.findings, self.size, self.p_finding, full=True)

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        c = _generate(self._seed(i), self.findings, self.size, self.p_finding, full=False)
        return c.image, c.labels


# --------------------------------------------------------------------------------------------
# Contact sheets


def render_grid(
    cases: Sequence[PhantomCase],
    path: str | Path,
    *,
    panels: Sequence[str] = ("image",),
    columns: int | None = None,
) -> Path:
    """Save a contact sheet PNG of phantom cases, for looking at them.

    Args:
        cases: The cases; each contributes one tile per panel.
        path: Where to write the PNG (parent folders are created).
        panels: Per case, any of ``"image"``, ``"healthy"``, ``"difference"`` (``|image -
            healthy|`` stretched to its maximum) and ``"masks"`` (the image with the outline of the
            union of its masks in red).
        columns: Tiles per row (default: the number of panels times up to 4 cases).

    Returns:
        The path written.
    """
    valid = ("image", "healthy", "difference", "masks")
    bad = [p for p in panels if p not in valid]
    if bad or not panels:
        raise ValueError(f"unknown panels {bad}; valid: {', '.join(valid)}")
    tiles: list[Image.Image] = []
    for c in cases:
        img = c.image[0].numpy()
        for p in panels:
            if p == "healthy":
                arr = c.healthy[0].numpy()
            elif p == "difference":
                d = np.abs(img - c.healthy[0].numpy())
                arr = d / max(float(d.max()), 1e-6)
            else:
                arr = img
            tile = Image.fromarray((np.clip(arr, 0, 1) * 255).round().astype(np.uint8)).convert(
                "RGB"
            )
            if p == "masks":
                m = c.masks.any(dim=0)[0].numpy()
                inner = np.roll(m, 1, 0) & np.roll(m, -1, 0) & np.roll(m, 1, 1) & np.roll(m, -1, 1)
                rgb = np.asarray(tile).copy()
                rgb[m & ~inner] = (255, 40, 40)
                tile = Image.fromarray(rgb)
            if p in ("image", "masks"):
                names = [f[:5] for f, lab in zip(FINDINGS, c.labels.tolist(), strict=True) if lab]
                ImageDraw.Draw(tile).text(
                    (3, tile.height - 12), ",".join(names) or "normal", fill=(255, 220, 0)
                )
            tiles.append(tile)
    if not tiles:
        raise ValueError("render_grid needs at least one case")
    cols = columns or len(panels) * min(4, len(cases))
    w, h = tiles[0].size
    sheet = Image.new("RGB", (cols * w, math.ceil(len(tiles) / cols) * h), (0, 0, 0))
    for i, t in enumerate(tiles):
        sheet.paste(t, ((i % cols) * w, (i // cols) * h))
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out)
    return out
