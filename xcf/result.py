"""The result of an explanation: :class:`Counterfactual`, and how its end state reads in words
(:func:`status_words`)."""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from .atomic import atomic_dir

__all__ = ["Counterfactual", "REPORT_FILES", "PAGE_FILES", "status_words", "stop_rule"]

#: Files written by :meth:`Counterfactual.save`.
REPORT_FILES = ("figure.png", "counterfactual.png", "difference.png", "report.json", "input.png",
                "overlay-change.png", "overlay-region.png")

#: The files of :data:`REPORT_FILES` a results page shows: the film, its counterfactual, and the two
#: see-through layers drawn over them (the change, the search region's outline).
PAGE_FILES = {"film": "input.png", "counterfactual": "counterfactual.png",
              "change": "overlay-change.png", "region": "overlay-region.png"}

#: Below this ``max |counterfactual - input|`` the change overlay is not stretched further
#: (:func:`xcf.figures.change_overlay`).
CHANGE_FLOOR = 0.05


def _pct(p: float) -> str:
    return f"{p * 100:g} %"


def status_words(status: str | None, stop_probability: float | None = None,
                 off_target: float | None = None) -> str:
    """How a search ended, in words for people.

    Args:
        status: ``"stopped-early"`` (met the stop rule), ``"ran-all-steps"`` (used every step),
            ``"nonfinite"`` or ``"error"``; ``"stopped"`` and ``"completed"`` are read as the first
            two.
        stop_probability: The stop rule's probability, when known (``"stopped once p < 0.5"``).
        off_target: The stop rule's tolerance on the other findings, when it has one.

    Returns:
        A short phrase, e.g. ``"stopped once p < 50 %"`` or ``"used all steps"``; an unknown status
        is returned as it is.
    """
    s = (status or "").strip()
    if s in ("stopped-early", "stopped"):
        if stop_probability is None:
            return "stopped early (met the stop rule)"
        also = (f" and the other findings were within {off_target * 100:g} points of their start"
                if off_target is not None else "")
        return f"stopped once p < {_pct(stop_probability)}{also}"
    if s in ("ran-all-steps", "completed"):
        return "used all steps"
    if s == "nonfinite":
        return "stopped: the loss became NaN or infinite (the last finite step is kept)"
    if s == "error":
        return "could not be explained"
    return s or "unknown"


def stop_rule(config: dict[str, Any] | None) -> tuple[float | None, float | None]:
    """``(stop probability, off-target tolerance)`` of a result's ``config`` dict (either the
    method's ``stop.probability`` / ``stop.off_target`` or the flat ``stop_probability`` /
    ``stop_off_target``); ``None`` where it has none."""
    cfg = config or {}
    p = cfg.get("stop.probability")
    p = cfg.get("stop_probability") if p is None else p
    off = cfg.get("stop.off_target")
    off = cfg.get("stop_off_target") if off is None else off
    return (None if p is None else float(p)), (None if off is None else float(off))


@dataclass
class Counterfactual:
    """A local counterfactual of one image.

    Images are ``(1, H, W)`` float32 CPU tensors in [0, 1] at the latent model's size; ``mask`` is
    bool. Probabilities are ``(K,)`` in label order.

    Attributes:
        input: The image as the models saw it (resized).
        reconstruction: ``D(E(input))``, the optimizer's starting point and reference.
        counterfactual: The explanation: ``D(z*)``.
        saliency: The saliency map of the target finding.
        mask: The locality loss's region (``saliency > threshold`` for the masked losses).
        labels: The classifier's finding names.
        target: The removed finding's name; ``target_index`` its position in ``labels``.
        probs_input, probs_reconstruction, probs_counterfactual: Sigmoid outputs.
        steps: Optimizer updates, summed over every region level the film was searched in (each
            level has its own budget, so this can exceed ``config["steps"]``); ``seconds`` wall
            time per explanation (its batch's time / batch size, ``provenance["batch_size"]``).
        losses: Total loss per step.
        status: ``"stopped-early"`` (met the stop rule before its budget ran out),
            ``"ran-all-steps"`` (used every step) or ``"nonfinite"``; :attr:`status_text` says it
            in words.
        config: The :class:`~xcf.ExplainConfig` as a dict; ``components`` names what was used.
        metrics: Per-explanation metrics (:mod:`xcf.metrics`).
        provenance: xcf version, component packages and versions, weight hashes, seed, device;
            ``"content"``: where the region's content came from, for a method that takes it from
            named films (``local-exemplar``: the bank film's name, its path in the bank's folder).
        source: Path of the input file, when there was one.
    """

    input: Tensor
    reconstruction: Tensor
    counterfactual: Tensor
    saliency: Tensor
    mask: Tensor
    labels: tuple[str, ...]
    target: str
    target_index: int
    probs_input: Tensor
    probs_reconstruction: Tensor
    probs_counterfactual: Tensor
    steps: int
    seconds: float
    losses: list[float]
    status: str = "ran-all-steps"
    config: dict[str, Any] = field(default_factory=dict)
    components: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)
    source: str | None = None

    # -- derived ---------------------------------------------------------------------------
    @property
    def p_input(self) -> float:
        return float(self.probs_input[self.target_index])

    @property
    def p_reconstruction(self) -> float:
        return float(self.probs_reconstruction[self.target_index])

    @property
    def p_counterfactual(self) -> float:
        return float(self.probs_counterfactual[self.target_index])

    @property
    def status_text(self) -> str:
        """:attr:`status` in words (:func:`status_words`), e.g. ``"stopped once p < 50 %"``."""
        return status_words(self.status, *stop_rule(self.config))

    @property
    def max_change(self) -> float:
        """``max |counterfactual - input|`` over the film, in grey units [0, 1]."""
        return float((self.counterfactual - self.input).abs().max()) if self.input.numel() else 0.0

    @property
    def difference(self) -> Tensor:
        """``counterfactual - reconstruction``, ``(1, H, W)`` in [-1, 1]."""
        return self.counterfactual - self.reconstruction

    def __repr__(self) -> str:
        return (f"Counterfactual(target={self.target!r}, p {self.p_input:.3f} -> recon "
                f"{self.p_reconstruction:.3f} -> cf {self.p_counterfactual:.3f}, steps={self.steps}, "
                f"status={self.status!r}, {self.seconds:.2f} s)")

    # -- export ----------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Everything but the images, JSON-serializable (non-finite floats become ``None``)."""
        probs = {
            lab: {"input": _f(self.probs_input[i]), "reconstruction": _f(self.probs_reconstruction[i]),
                  "counterfactual": _f(self.probs_counterfactual[i])}
            for i, lab in enumerate(self.labels)
        }
        return {
            "target": self.target,
            "target_index": self.target_index,
            "labels": list(self.labels),
            "p_input": _f(self.p_input),
            "p_reconstruction": _f(self.p_reconstruction),
            "p_counterfactual": _f(self.p_counterfactual),
            "probabilities": probs,
            "status": self.status,
            "steps": int(self.steps),
            "seconds": _f(self.seconds),
            "mask_fraction": _f(self.mask.float().mean()),
            "max_change": _f(self.max_change),
            "metrics": {k: _f(v) for k, v in self.metrics.items()},
            "config": self.config,
            "components": self.components,
            "provenance": self.provenance,
            "source": self.source,
            "losses": [_f(v) for v in self.losses],
        }

    def figure(self):
        """The seed's four-panel :class:`matplotlib.figure.Figure`."""
        from . import figures  # matplotlib only when drawing

        return figures.four_panel(self)

    def save(self, directory: str | os.PathLike) -> Path:
        """Write :data:`REPORT_FILES` into ``directory``, atomically (all or nothing).

        ``figure.png``: the seed's 4-panel figure; ``counterfactual.png`` and ``input.png``: the
        counterfactual and the film as the models saw it (8-bit grey, the latent model's size);
        ``difference.png``: signed difference maps; ``overlay-change.png`` and
        ``overlay-region.png``: see-through RGBA layers of the change and of the search region's
        outline, drawn over the film on a results page (:mod:`xcf.figures`); ``report.json``:
        :meth:`to_dict`.

        Returns:
            The folder.
        """
        from PIL import Image

        from . import figures  # matplotlib only when drawing
        from .imageio import save_png

        directory = Path(directory)
        with atomic_dir(directory) as tmp:
            figures.four_panel(self).savefig(tmp / "figure.png", dpi=100)
            save_png(tmp / "counterfactual.png", self.counterfactual)
            save_png(tmp / "input.png", self.input.clamp(0, 1))
            figures.difference_figure(self).savefig(tmp / "difference.png", dpi=100)
            change, _ = figures.change_overlay(self, floor=CHANGE_FLOOR)
            Image.fromarray(change, "RGBA").save(tmp / "overlay-change.png")
            Image.fromarray(figures.region_overlay(self), "RGBA").save(tmp / "overlay-region.png")
            with open(tmp / "report.json", "w", encoding="utf-8") as fh:
                json.dump(self.to_dict(), fh, indent=2, allow_nan=False)
                fh.write("\n")
        return directory


def _f(v: Any) -> float | None:
    if isinstance(v, Tensor):
        v = v.item()
    v = float(v)
    return v if math.isfinite(v) else None


def stack_field(cfs: list[Counterfactual], name: str) -> Tensor:
    """Stack one tensor field of several counterfactuals along a new batch dimension."""
    return torch.stack([getattr(c, name) for c in cfs])
