"""Figures people look at: the seed's four-panel figure and a signed difference map.

Uses matplotlib's object API (no pyplot global state) with the Agg canvas, so it is safe in threads
and on machines without a display.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from matplotlib.figure import Figure

if TYPE_CHECKING:
    from .result import Counterfactual

__all__ = ["four_panel", "difference_figure"]


def _img(t) -> np.ndarray:
    return t.detach().cpu().float().numpy().reshape(t.shape[-2], t.shape[-1])


def four_panel(cf: Counterfactual) -> Figure:
    """The seed's figure: input, initial reconstruction, counterfactual with the mask contour in red,
    saliency over the image; each titled with p(finding)."""
    name = cf.target
    k = cf.target_index
    fig = Figure(figsize=(16, 4.6), dpi=100)
    axes = fig.subplots(1, 4)
    x, xr, xc = _img(cf.input), _img(cf.reconstruction), _img(cf.counterfactual)
    sal, mask = _img(cf.saliency), _img(cf.mask.float())
    panels = [
        (x, f"Input image\np({name})={float(cf.probs_input[k]):.3f}"),
        (xr, f"Initial reconstruction\np({name})={float(cf.probs_reconstruction[k]):.3f}"),
        (xc, f"Counterfactual\np({name})={float(cf.probs_counterfactual[k]):.3f}"),
        (x, "Saliency map" + (f" ({cf.components.get('saliency', '')})" if cf.components else "")),
    ]
    for i, (ax, (im, title)) in enumerate(zip(axes, panels)):
        ax.imshow(im, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        ax.set_title(title, fontsize=12)
        if i == 2 and mask.any() and not mask.all():
            ax.contour(mask, levels=[0.5], colors="red", linewidths=1.5)
        if i == 3:
            ax.imshow(sal, cmap="jet", alpha=0.45, vmin=0, vmax=1, interpolation="bilinear")
    status = "" if cf.status == "completed" else f", {cf.status}"
    batch = int(cf.provenance.get("batch_size", 1) or 1)
    # `seconds` is the batch's wall time over its size: say so, or a 2-step case shows a minute
    share = f"{cf.seconds:.1f} s" if batch == 1 else f"{cf.seconds:.1f} s (batch of {batch}: wall / {batch})"
    fig.suptitle(f"{name}: {cf.steps} steps, {share}{status}", fontsize=10, y=0.02, va="bottom")
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    return fig


def difference_figure(cf: Counterfactual) -> Figure:
    """Signed difference maps ``counterfactual - reconstruction`` (what the optimizer changed) and
    ``counterfactual - input`` (what a reader sees), blue darker / red brighter, symmetric scale,
    mask contour in black."""
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
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    fig.tight_layout()
    return fig
