"""An inpainter without a network: it fills a hole with the same region of a real film without the
finding, the one whose rest looks most like the film's.

This is the content model of the ``local-exemplar`` method (:mod:`xcf.methods`): the region comes
from the classifier being explained, the content from a bank of real films without the finding
(scene completion from an image collection: Hays & Efros, SIGGRAPH 2007; exemplar-based inpainting:
Criminisi et al., IEEE TIP 2004). A network inpainter trained on a CPU draws a smooth mean of what
could be in a large hole, lung without its markings, which a classifier may read as an opacity; a
bank film's region has real markings, ribs and grain.

Retrieval: the films are compared on what the hole leaves of them, average-pooled by ``pool`` px,
and the ``k`` closest are taken. Each donor's grey levels are matched (mean and spread) to the
film's on a ring of ``ring`` px around the hole, so that the fill has the film's exposure. The
donor is not registered to the film beyond the crop both share: at the hole's edge its ribs may not
continue the film's (a 2 px feather softens the seam, it does not hide it).

As a :class:`xcf.LatentModel`, ``z`` is a whole film: ``encode(x)`` is ``x`` itself,
``encode_masked(x, hole)`` the closest donor, ``decode`` the identity. Searching this ``z`` is a
search on pixels, which paints noise; ``local-exemplar`` does not search (its ``steps`` are 0).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from xcf import Latent, LatentModel

__all__ = ["ExemplarInpainter", "exemplar_bank"]


class ExemplarInpainter(LatentModel):
    """A bank of films without the finding, retrieved by what the hole leaves of a film.

    Args:
        bank: ``(N, 1, S, S)`` films in ``[0, 1]`` (stored as 8-bit grey).
        input_size: ``S``.
        pool: Films are compared average-pooled by this many pixels.
        ring: Width (pixels) of the ring around the hole on which a donor's grey levels are matched
            to the film's.
        names: One name per bank film (its file), for the record of which donor a fill took.
        source: Where the bank came from (a line for provenance).

    Raises:
        ValueError: A bank of the wrong shape or size, or ``pool`` that does not divide ``S``.
    """

    def __init__(self, bank: Tensor, input_size: int = 224, pool: int = 4, ring: int = 12,
                 names: Sequence[str] | None = None, source: str = "") -> None:
        super().__init__()
        self.input_size = int(input_size)
        self.pool = int(pool)
        self.ring = int(ring)
        if bank.dim() != 4 or bank.shape[1] != 1 or tuple(bank.shape[2:]) != (self.input_size,) * 2 or not len(bank):
            raise ValueError(f"exemplar bank must be (N, 1, {self.input_size}, {self.input_size}) films with N >= 1, "
                             f"got {tuple(bank.shape)}")
        if self.pool < 1 or self.input_size % self.pool:
            raise ValueError(f"pool must divide input_size {self.input_size}, got {pool}")
        if self.ring < 1:
            raise ValueError(f"ring must be at least 1 pixel, got {ring}")
        if names is not None and len(names) != len(bank):
            raise ValueError(f"{len(names)} names for {len(bank)} bank films")
        b = bank.float()
        self.register_buffer("bank", (b.clamp(0, 1) * 255).round().to(torch.uint8), persistent=False)
        keys = F.avg_pool2d(b, self.pool).flatten(1)
        self.register_buffer("keys", keys, persistent=False)
        self.register_buffer("keys_sq", keys ** 2, persistent=False)
        self.names = tuple(names) if names is not None else tuple(str(i) for i in range(len(bank)))
        self.source = source

    @classmethod
    def from_folder(cls, root: str | os.PathLike[str], without: str, *, split: str | None = "train",
                    exclude: Sequence[int] = (), limit: int | None = None, input_size: int = 224,
                    **kwargs) -> ExemplarInpainter:
        """The films of a folder with ``labels.csv`` (:class:`xcf.data.FolderDataset`) whose
        ``without`` column is 0, in row order.

        Args:
            root: The folder.
            without: The label the bank's films must not have.
            split: Only rows of this split (``None``: every row).
            exclude: Row indices (of the split) to leave out: e.g. the films an independent judge
                was trained on, so that a fill cannot show the judge a film it has seen.
            limit: At most this many films (the first ones).

        Raises:
            DataError: The folder, CSV or column is missing (the message names them).
            ValueError: No film of the split is without ``without``.
        """
        from xcf.data import FolderDataset

        ds = FolderDataset(root, labels=[without], split=split, size=input_size, check_files=False)
        skip = {int(i) for i in exclude}
        rows = [i for i in range(len(ds)) if float(ds.targets[i, 0]) == 0 and i not in skip]
        if limit is not None:
            rows = rows[:int(limit)]
        if not rows:
            raise ValueError(f"{root}: no film of split {split!r} without {without!r} is left for the exemplar bank")
        bank = torch.stack([ds[i][0] for i in rows])
        paths = [ds.path(i) for i in rows]
        names = [str(p.relative_to(ds.root) if p.is_relative_to(ds.root) else p) for p in paths]
        return cls(bank, input_size=input_size, names=names,
                   source=f"{len(rows)} films of {Path(root).name} split {split!r} without {without!r}", **kwargs)

    @classmethod
    def from_phantoms(cls, n: int, seed: int, *, input_size: int = 224, **kwargs) -> ExemplarInpainter:
        """``n`` phantoms drawn without any finding (:class:`xcf.data.phantoms.PhantomDataset` of
        dataset seed ``seed``, items ``item_seed(seed, i)``): a bank for a phantom pack. Pick a
        seed no training or test set of the pack draws from."""
        from xcf.data.phantoms import PhantomDataset

        ds = PhantomDataset(int(n), seed=int(seed), size=input_size, findings=())
        bank = torch.stack([ds[i][0] for i in range(len(ds))])
        return cls(bank, input_size=input_size, names=[f"phantom seed {seed} item {i}" for i in range(len(ds))],
                   source=f"{len(ds)} phantoms without findings (dataset seed {seed})", **kwargs)

    def __len__(self) -> int:
        return len(self.names)

    # -- retrieval -------------------------------------------------------------------------------
    def nearest(self, x: Tensor, hole: Tensor, k: int = 1) -> Tensor:
        """``(B, k)`` bank indices of the films closest to ``x`` outside ``hole`` (``(B, 1, S, S)``,
        1 = to fill), closest first: mean squared difference of the pooled films, each pooled cell
        weighted by the share of it outside the hole."""
        k = max(1, min(int(k), len(self)))
        w = (1 - F.avg_pool2d(hole.float().clamp(0, 1), self.pool)).flatten(1)  # (B, P)
        q = F.avg_pool2d(x.float(), self.pool).flatten(1)
        d = (w * q * q).sum(1, keepdim=True) - 2 * (w * q) @ self.keys.T + w @ self.keys_sq.T
        return d.topk(k, dim=1, largest=False).indices

    def candidates(self, x: Tensor, hole: Tensor, k: int = 1) -> tuple[Tensor, Tensor]:
        """The ``k`` closest donors of each film, grey-matched to it around the hole: ``(B, k, 1,
        S, S)`` films in ``[0, 1]``, and their bank indices ``(B, k)``."""
        from xcf.metrics import dilate

        idx = self.nearest(x, hole, k)
        donors = self.bank[idx].float() / 255  # (B, k, 1, S, S)
        inside = hole > 0.5
        ring = (dilate(inside, self.ring, "disk") & ~inside).float()
        ring = torch.where(ring.flatten(1).sum(1).view(-1, 1, 1, 1) > 0, ring, (~inside).float())
        r = ring.unsqueeze(1)  # (B, 1, 1, S, S)
        n = r.sum((2, 3, 4), keepdim=True).clamp_min(1)
        xs = x.unsqueeze(1).float()
        mx = (xs * r).sum((2, 3, 4), keepdim=True) / n
        md = (donors * r).sum((2, 3, 4), keepdim=True) / n
        sx = (((xs - mx) ** 2) * r).sum((2, 3, 4), keepdim=True).div(n).sqrt()
        sd = (((donors - md) ** 2) * r).sum((2, 3, 4), keepdim=True).div(n).sqrt()
        matched = ((donors - md) / sd.clamp_min(1e-3) * sx + mx).clamp(0, 1)
        return matched.to(x.dtype), idx

    # -- the inpainting interface ----------------------------------------------------------------
    def encode_masked(self, x: Tensor, hole: Tensor, rank: int = 0) -> Latent:
        """The donor of rank ``rank`` (0: the closest) for ``x`` with ``hole`` blanked, grey-matched
        around the hole; ``aux`` holds its bank index."""
        films, idx = self.candidates(x, hole, rank + 1)
        return Latent(films[:, rank], aux={"donor": idx[:, rank]})

    def encode(self, x: Tensor) -> Latent:
        """``x`` itself: with no hole there is nothing to fill."""
        return Latent(x.clone())

    def decode(self, latent: Latent) -> Tensor:
        return latent.z.clamp(0, 1)

    def inpaint(self, x: Tensor, hole: Tensor) -> Tensor:
        """The closest donor's whole film, grey-matched around ``hole``; the caller keeps ``x``
        outside the hole."""
        return self.decode(self.encode_masked(x, hole))

    def config(self) -> dict:
        return {"input_size": self.input_size, "pool": self.pool, "ring": self.ring, "films": len(self),
                "source": self.source}


def exemplar_bank(root: str | os.PathLike[str] | None = None, without: str | None = None, *,
                  split: str | None = "train", exclude: Sequence[int] = (), limit: int | None = None,
                  input_size: int = 224, pool: int = 4, ring: int = 12) -> ExemplarInpainter:
    """The registered factory of ``exemplar-bank``: :meth:`ExemplarInpainter.from_folder`, or, with
    ``root="phantom:N:SEED"``, :meth:`ExemplarInpainter.from_phantoms` (``without`` not needed).

    Raises:
        ValueError: ``root`` or ``without`` not given, or a malformed ``phantom:N:SEED``.
    """
    if isinstance(root, str) and root.startswith("phantom:"):
        parts = root.split(":")
        if len(parts) != 3 or not all(p.isdigit() for p in parts[1:]):
            raise ValueError(f"exemplar-bank root {root!r}: write phantom:N:SEED, e.g. phantom:1000:11")
        return ExemplarInpainter.from_phantoms(int(parts[1]), int(parts[2]), input_size=input_size, pool=pool,
                                               ring=ring)
    if root is None or not without:
        raise ValueError("exemplar-bank needs root= (a folder of films with labels.csv) and without= (the "
                         "label its films must not have), e.g. root='kermany-pneumonia-224', without='pneumonia'")
    return ExemplarInpainter.from_folder(root, without, split=split, exclude=exclude, limit=limit,
                                         input_size=input_size, pool=pool, ring=ring)
