"""The optimization path as an animated GIF (input -> counterfactual), the way gifsplanation shows it.

The frames are the images the classifier saw along the search: at every optimizer step the search
decodes the current latent ``D(z_t)`` (blended, when the config blends) and hands it to the locality
loss. :func:`explain_with_paths` wraps the explainer's locality loss for the duration of one call in a
recorder that keeps a copy of that image, so the path costs **one** explanation plus a few
classifier passes to caption the frames, whatever the config (constant or cosine learning rate,
early stopping, adaptive regions). Re-running with increasing step counts would cost about
``frames / 2`` explanations and is exact only for a constant learning rate, so it is not used;
:mod:`xcf.optimize` is left untouched.

Memory stays bounded: each sample keeps at most ``2 * frames`` images (every ``s``-th step; ``s``
doubles whenever the buffer fills), stored as 8-bit at the latent model's size.

The GIF starts with the input, then the decoded path from the initial reconstruction ``D(E(x))``
(step 0) to the counterfactual (the last frame, also the result's ``counterfactual``), each frame
captioned with its step and ``p(target)``. The first and last frames are held longer.

Methods that never call the locality loss (e.g. a latent-shift line search) give a short GIF:
input, reconstruction and counterfactual.
"""

from __future__ import annotations

import io
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont
from torch import Tensor

from .atomic import atomic_file

if TYPE_CHECKING:
    from .explainer import Explainer
    from .result import Counterfactual

__all__ = ["GifFrame", "explain_with_paths", "optimization_gif", "write_gif", "GIF_NAME"]

logger = logging.getLogger(__name__)

#: File name of the GIF inside a result folder.
GIF_NAME = "optimization.gif"


@dataclass
class GifFrame:
    """One frame: an image ``(H, W)`` uint8 and its caption."""

    image: np.ndarray
    caption: str


class _PathRecorder:
    """Stands in for a locality loss; records the images it is called with, then delegates.

    Within one :func:`xcf.optimize.optimize_latent` call the active samples are an order-preserving
    subset of the batch and ``x_ref``/``saliency`` rows are exact copies of the first call's rows,
    which identifies each row's sample. Used only for single-level searches (or batches of one).
    """

    def __init__(self, inner: Any, batch: int, frames: int) -> None:
        self._inner = inner
        self._batch = batch
        self._cap = max(2, 2 * int(frames))
        self._ref: tuple[Tensor, Tensor] | None = None
        self.count = [0] * batch
        self.stride = [1] * batch
        self.kept: list[list[tuple[int, np.ndarray]]] = [[] for _ in range(batch)]

    def __getattr__(self, name: str) -> Any:  # mask(), threshold, xcf_spec, ...
        return getattr(self._inner, name)

    def __call__(self, x: Tensor, x_ref: Tensor, saliency: Tensor) -> Tensor:
        try:
            self._record(x.detach(), x_ref.detach(), saliency.detach())
        except Exception as exc:  # recording must never break the explanation
            logger.warning("optimization path not recorded: %s", exc)
        return self._inner(x, x_ref, saliency)

    def _rows(self, x_ref: Tensor, sal: Tensor) -> list[int]:
        n = x_ref.shape[0]
        if self._ref is None or self._batch == 1:
            if self._ref is None:
                self._ref = (x_ref.clone(), sal.clone())
            return list(range(n)) if n == self._batch or self._batch == 1 else []
        ref_x, ref_s = self._ref
        out, start = [], 0
        for j in range(n):
            for b in range(start, self._batch):
                if torch.equal(ref_x[b], x_ref[j]) and torch.equal(ref_s[b], sal[j]):
                    out.append(b)
                    start = b + 1
                    break
            else:
                return []  # not this run's rows: do not guess
        return out

    def _record(self, x: Tensor, x_ref: Tensor, sal: Tensor) -> None:
        rows = self._rows(x_ref, sal)
        if not rows:
            return
        imgs = None
        for j, b in enumerate(rows):
            step = self.count[b]
            self.count[b] += 1
            if step % self.stride[b]:
                continue
            if imgs is None:
                imgs = (x.float().clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()
            self.kept[b].append((step, imgs[j, 0].copy()))
            if len(self.kept[b]) > self._cap:
                self.kept[b] = self.kept[b][::2]
                self.stride[b] *= 2


def _to_u8(t: Tensor) -> np.ndarray:
    return (t.detach().float().clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy().reshape(
        t.shape[-2], t.shape[-1])


def _pick(kept: Sequence[tuple[int, np.ndarray]], n: int) -> list[tuple[int, np.ndarray]]:
    if len(kept) <= n:
        return list(kept)
    idx = np.unique(np.round(np.linspace(0, len(kept) - 1, n)).astype(int))
    return [kept[i] for i in idx]


def _several_searches(explainer: Explainer) -> bool:
    """Whether a film may be searched more than once (several region levels, or a fallback map)."""
    region = getattr(getattr(explainer, "method", None), "region", None)
    if region is not None:
        return len(region.levels) > 1 or bool(region.fallback)
    return bool(getattr(explainer.config, "region_thresholds", None))


def explain_with_paths(explainer: Explainer, x: Tensor, targets: Tensor, *,
                       sources: Sequence[str | None] | None = None,
                       frames: int = 20) -> tuple[list[Counterfactual], list[list[GifFrame]]]:
    """Explain a batch (as :meth:`xcf.Explainer.explain_tensor`) and keep each optimization path.

    Args:
        explainer: The explainer; its locality loss is wrapped for the call and restored after.
        x: ``(B, 1, S, S)`` canonical images at the latent model's size.
        targets: ``(B,)`` long label indices.
        sources: Optional file names stored in the results.
        frames: Path frames per GIF (between the input and the counterfactual), at least 2.

    Returns:
        The counterfactuals (identical to a run without recording) and, for each, its frames:
        input, the path from the reconstruction, the counterfactual.
    """
    frames = max(2, int(frames))
    B = x.shape[0]
    if B > 1 and _several_searches(explainer):
        # several region levels (or a fallback map): rows cannot be matched across searches, so
        # record one film at a time
        cfs: list[Counterfactual] = []
        paths: list[list[GifFrame]] = []
        for b in range(B):
            c, p = explain_with_paths(explainer, x[b:b + 1], targets[b:b + 1],
                                      sources=None if sources is None else [sources[b]], frames=frames)
            cfs += c
            paths += p
        return cfs, paths
    inner = explainer.locality
    recorder = _PathRecorder(inner, B, frames)
    explainer.locality = recorder  # type: ignore[assignment]
    try:
        cfs = explainer.explain_tensor(x, targets, sources=sources)
    finally:
        explainer.locality = inner
    comps, prov = explainer.components(), explainer.provenance()
    for cf in cfs:  # name the real locality loss, not the recorder
        cf.components = dict(comps)
        cf.provenance = {**prov, "batch_size": cf.provenance.get("batch_size", B)}
    paths = []
    for b, cf in enumerate(cfs):
        chosen = _pick(recorder.kept[b], frames)
        imgs = [img for _, img in chosen]
        probs: list[float] = []
        if imgs:
            from .optimize import classify, frozen

            t = torch.from_numpy(np.stack(imgs)).float().div(255).unsqueeze(1).to(explainer.device)
            with frozen(explainer.classifier), torch.no_grad():  # eval mode: no BN statistics update
                probs = classify(explainer.classifier, t)[:, cf.target_index].float().cpu().tolist()
        name = cf.target
        seq = [GifFrame(_to_u8(cf.input), f"input  p({name})={cf.p_input:.2f}")]
        if not imgs:
            seq.append(GifFrame(_to_u8(cf.reconstruction),
                                f"reconstruction  p({name})={cf.p_reconstruction:.2f}"))
        for (step, img), p in zip(chosen, probs):
            seq.append(GifFrame(img, f"step {step}/{cf.steps}  p({name})={p:.2f}"))
        seq.append(GifFrame(_to_u8(cf.counterfactual),
                            f"counterfactual ({cf.steps} steps)  p({name})={cf.p_counterfactual:.2f}"))
        paths.append(seq)
    return cfs, paths


def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1
        return ImageFont.load_default()


def _render(frame: GifFrame, side: int) -> Image.Image:
    img = Image.fromarray(frame.image, mode="L")
    if img.size != (side, side):
        img = img.resize((side, side), Image.Resampling.BILINEAR)
    bar = max(18, side // 11)
    canvas = Image.new("L", (side, side + bar), 0)
    canvas.paste(img, (0, 0))
    draw = ImageDraw.Draw(canvas)
    draw.text((4, side + (bar - int(bar * 0.7)) // 2), frame.caption, fill=255,
              font=_font(int(bar * 0.7)))
    return canvas


def write_gif(frames: Sequence[GifFrame], path: str | os.PathLike, *, size: int = 256,
              frame_ms: int = 120, hold_ms: int = 900) -> Path:
    """Write frames as a looping animated GIF, atomically.

    Args:
        frames: From :func:`explain_with_paths`.
        path: Destination ``.gif``.
        size: Side of the image part in pixels (upscaled with bilinear interpolation); a caption
            bar is added below.
        frame_ms: Duration of each frame; the first and last are held ``hold_ms``.

    Returns:
        The path.
    """
    if not frames:
        raise ValueError("no frames to write")
    side = max(int(size), max(f.image.shape[0] for f in frames))
    imgs = [_render(f, side) for f in frames]
    durations = [frame_ms] * len(imgs)
    durations[0] = durations[-1] = hold_ms
    buf = io.BytesIO()
    imgs[0].save(buf, format="GIF", save_all=True, append_images=imgs[1:], duration=durations,
                 loop=0, optimize=False, disposal=1)
    path = Path(path)
    with atomic_file(path, "wb") as fh:
        fh.write(buf.getvalue())
    return path


def optimization_gif(explainer: Explainer, image: Any, target: str | int, path: str | os.PathLike,
                     frames: int = 20, **gif_options: Any) -> Counterfactual:
    """Explain one image and write its optimization path as an animated GIF.

    Args:
        explainer: An :class:`xcf.Explainer`.
        image: Any image source :meth:`xcf.Explainer.load` accepts (path, PIL, array, tensor).
        target: Label name (case-insensitive) or index.
        path: The ``.gif`` to write.
        frames: Path frames between the input and the counterfactual.
        **gif_options: Passed to :func:`write_gif` (``size``, ``frame_ms``, ``hold_ms``).

    Returns:
        The :class:`~xcf.Counterfactual` (the same as ``explainer.explain([image], [target])[0]``).
    """
    x = explainer.load(image)
    t = torch.tensor([explainer.target_index(target)], dtype=torch.long)
    src = os.fspath(image) if isinstance(image, (str, os.PathLike)) else None
    cfs, paths = explain_with_paths(explainer, x, t, sources=[src], frames=frames)
    write_gif(paths[0], path, **gif_options)
    return cfs[0]
