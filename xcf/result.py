"""The result of an explanation: :class:`Counterfactual`."""

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

__all__ = ["Counterfactual", "REPORT_FILES"]

#: Files written by :meth:`Counterfactual.save`.
REPORT_FILES = ("figure.png", "counterfactual.png", "difference.png", "report.json")


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
        steps: Optimizer steps taken; ``seconds`` wall time per explanation (batch time / batch size).
        losses: Total loss per step.
        status: ``completed``, ``stopped`` (early stop) or ``nonfinite``.
        config: The :class:`~xcf.ExplainConfig` as a dict; ``components`` names what was used.
        metrics: Per-explanation metrics (:mod:`xcf.metrics`).
        provenance: xcf version, component packages and versions, weight hashes, seed, device.
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
    status: str = "completed"
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
            "metrics": {k: _f(v) for k, v in self.metrics.items()},
            "config": self.config,
            "components": self.components,
            "provenance": self.provenance,
            "source": self.source,
            "losses": [_f(v) for v in self.losses],
        }

    def figure(self):
        """The seed's four-panel :class:`matplotlib.figure.Figure`."""
        from .figures import four_panel

        return four_panel(self)

    def save(self, directory: str | os.PathLike) -> Path:
        """Write :data:`REPORT_FILES` into ``directory``, atomically (all or nothing).

        ``figure.png``: the seed's 4-panel figure; ``counterfactual.png``: the counterfactual alone
        (8-bit grey, the latent model's size); ``difference.png``: signed difference maps;
        ``report.json``: :meth:`to_dict`.

        Returns:
            The folder.
        """
        from .figures import difference_figure, four_panel
        from .imageio import save_png

        directory = Path(directory)
        with atomic_dir(directory) as tmp:
            fig = four_panel(self)
            fig.savefig(tmp / "figure.png", dpi=100)
            save_png(tmp / "counterfactual.png", self.counterfactual)
            difference_figure(self).savefig(tmp / "difference.png", dpi=100)
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
