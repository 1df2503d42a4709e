"""Figures people look at: the four-panel figure, the signed difference maps, and the two overlays
of the results page (the change, the search region).

Every function draws from an object with a :class:`xcf.Counterfactual`'s fields (:class:`Explained`);
this module imports nothing of :mod:`xcf.result`, which imports it to save its figures.

Figures use matplotlib's object API (no pyplot global state) with the Agg canvas, so they are safe
in threads and on machines without a display. Films are shown without pixel axes.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure
from PIL import Image
from torch import Tensor

__all__ = ["Explained", "four_panel", "difference_figure", "change_overlay", "region_overlay",
           "overlay_scale"]

#: Colour of the search region's outline in the overlays (RGB).
REGION_RGB = (255, 214, 0)


class Explained(Protocol):
    """What the figures read of a counterfactual (:class:`xcf.Counterfactual` has it all).

    Images are ``(1, H, W)`` tensors in [0, 1]; ``mask`` is bool; probabilities are ``(K,)``.
    """

    input: Tensor
    reconstruction: Tensor
    counterfactual: Tensor
    saliency: Tensor
    mask: Tensor
    target: str
    target_index: int
    probs_input: Tensor
    probs_reconstruction: Tensor
    probs_counterfactual: Tensor
    steps: int
    seconds: float
    components: dict[str, str]
    provenance: dict[str, Any]

    @property
    def status_text(self) -> str: ...


def _img(t: Tensor) -> np.ndarray:
    return t.detach().cpu().float().numpy().reshape(t.shape[-2], t.shape[-1])


def _footer(cf: Explained) -> str:
    batch = int(cf.provenance.get("batch_size", 1) or 1)
    # `seconds` is the batch's wall time over its size: say so, or a 2-step case shows a minute
    time = f"{cf.seconds:.1f} s" if batch == 1 else f"{cf.seconds:.1f} s per film (batch of {batch})"
    return (f"{cf.target}: {cf.steps} optimizer updates (summed over the region levels searched), "
            f"{time}; {cf.status_text}")


def four_panel(cf: Explained) -> Figure:
    """The seed's figure: input, initial reconstruction, counterfactual with the search region's
    outline in red, saliency over the image; each titled with p(finding), no pixel axes. The footer
    says the updates, the time per film and how the search ended."""
    name = cf.target
    k = cf.target_index
    fig = Figure(figsize=(16, 4.6), dpi=100)
    axes = fig.subplots(1, 4)
    x, xr, xc = _img(cf.input), _img(cf.reconstruction), _img(cf.counterfactual)
    sal, mask = _img(cf.saliency), _img(cf.mask.float())
    panels = [
        (x, f"Input image\np({name}) = {float(cf.probs_input[k]):.3f}"),
        (xr, f"Initial reconstruction\np({name}) = {float(cf.probs_reconstruction[k]):.3f}"),
        (xc, f"Counterfactual\np({name}) = {float(cf.probs_counterfactual[k]):.3f}"),
        (x, "Saliency map" + (f" ({cf.components.get('saliency', '')})" if cf.components else "")),
    ]
    for i, (ax, (im, title)) in enumerate(zip(axes, panels)):
        ax.imshow(im, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        ax.set_title(title, fontsize=12)
        ax.set_axis_off()
        if i == 2 and mask.any() and not mask.all():
            ax.contour(mask, levels=[0.5], colors="red", linewidths=1.5)
        if i == 3:
            ax.imshow(sal, cmap="jet", alpha=0.45, vmin=0, vmax=1, interpolation="bilinear")
    fig.suptitle(_footer(cf), fontsize=10, y=0.02, va="bottom")
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    return fig


def difference_figure(cf: Explained) -> Figure:
    """Signed difference maps ``counterfactual - reconstruction`` (what the optimizer changed) and
    ``counterfactual - input`` (what a reader sees), blue darker / red brighter, symmetric scale,
    search region's outline in black, no pixel axes."""
    x, xr, xc = _img(cf.input), _img(cf.reconstruction), _img(cf.counterfactual)
    mask = _img(cf.mask.float())
    fig = Figure(figsize=(10, 4.6), dpi=100)
    axes = fig.subplots(1, 2)
    for ax, (d, title) in zip(axes, [(xc - xr, "counterfactual − reconstruction"),
                                     (xc - x, "counterfactual − input")]):
        lim = float(np.abs(d).max()) or 1e-6
        im = ax.imshow(d, cmap="RdBu_r", vmin=-lim, vmax=lim, interpolation="nearest")
        if mask.any() and not mask.all():
            ax.contour(mask, levels=[0.5], colors="black", linewidths=1.0)
        ax.set_title(f"{title}\n|Δ| max {lim:.3f}", fontsize=11)
        ax.set_axis_off()
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    fig.tight_layout()
    return fig


def overlay_scale(size: int, at_least: int = 448) -> int:
    """The integer factor the overlays are drawn at, so that their lines stay sharp when a page
    shows a ``size`` px film at about ``at_least`` px."""
    return max(1, -(-int(at_least) // max(1, int(size))))


def change_overlay(cf: Explained, *, floor: float = 0.05) -> tuple[np.ndarray, float]:
    """The change a reader sees, ``counterfactual - input``, as a see-through colour layer.

    Red where the counterfactual is brighter, blue where it is darker (the ``RdBu_r`` colours of
    :func:`difference_figure`); opacity grows with ``|Δ|`` and is full at ``lim = max(max |Δ|,
    floor)``, so that a film changed by a few grey levels does not light up with noise.

    Returns:
        ``(rgba, lim)``: ``(H, W, 4)`` uint8 at the film's size, and the ``|Δ|`` (in [0, 1] grey
        units) drawn at full colour.
    """
    d = _img(cf.counterfactual) - _img(cf.input)
    lim = max(float(np.abs(d).max()), float(floor))
    rgb = colormaps["RdBu_r"](np.where(d >= 0, 0.9, 0.1))[..., :3]
    alpha = np.clip(np.abs(d) / lim, 0.0, 1.0) ** 0.6 * 0.9
    alpha[np.abs(d) < 1.5 / 255] = 0.0  # below 8-bit quantization: nothing to see
    out = np.concatenate([rgb, alpha[..., None]], axis=-1)
    return (out * 255).round().astype(np.uint8), lim


def region_overlay(cf: Explained, scale: int | None = None) -> np.ndarray:
    """The search region (``cf.mask``) as an outline with a faint fill, ``(H*s, W*s, 4)`` uint8.

    Drawn ``scale`` times larger than the film (default :func:`overlay_scale`) so the line stays
    2 px wide and sharp when the page enlarges it.
    """
    m = _img(cf.mask.float()) > 0.5
    s = overlay_scale(m.shape[-1]) if scale is None else max(1, int(scale))
    h, w = m.shape[0] * s, m.shape[1] * s
    # upsampled smoothly, not as blocks, so the outline follows the region rather than its pixels
    soft = Image.fromarray(m.astype(np.float32), "F").resize((w, h), Image.Resampling.BILINEAR)
    big = np.asarray(soft) > 0.5
    pad = np.pad(big, 2, mode="edge")
    inner = np.ones_like(big)
    for dy in range(-2, 3):  # eroded by 2 px: the outline is the region minus its erosion
        for dx in range(-2, 3):
            inner &= pad[2 + dy:2 + dy + h, 2 + dx:2 + dx + w]
    edge = big & ~inner
    out = np.zeros((h, w, 4), dtype=np.uint8)
    out[big] = (*REGION_RGB, 14)
    out[edge] = (*REGION_RGB, 255)
    return out
