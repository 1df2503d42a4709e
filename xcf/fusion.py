"""Cheaper copies of frozen models for the search loop: BatchNorm folded into convolutions,
channels-last memory format.

The search differentiates the decoder and the classifier with respect to the latent tens or
hundreds of times per image, with every parameter frozen and every BatchNorm in eval mode. An
eval-mode BatchNorm is a per-channel affine map, so a convolution followed by one is the same
function as a single convolution with rescaled weights and a bias (up to float rounding): folding
saves the BatchNorm's forward and backward pass at every step. :func:`search_copies` makes such
copies; the originals are never modified.
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

__all__ = ["fold_batchnorm", "search_copies"]

_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_CONV_T = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
#: BatchNorm class -> the spatial dimensions of the convolution it can follow
_BN_DIMS = {nn.BatchNorm1d: 1, nn.BatchNorm2d: 2, nn.BatchNorm3d: 3}


def _foldable(conv: nn.Module, bn: nn.Module) -> bool:
    # exact classes only: a subclass may override forward (weight standardization, a custom
    # normalization), and folding would then change the function
    if type(conv) not in _CONV + _CONV_T or type(bn) not in _BN_DIMS:
        return False
    if bn.running_mean is None or bn.running_var is None:  # batch statistics even in eval mode
        return False
    return conv.weight.dim() - 2 == _BN_DIMS[type(bn)] and bn.num_features == conv.out_channels


def fold_batchnorm(module: nn.Module) -> int:
    """Fold, in place, every BatchNorm that directly follows a convolution inside an
    ``nn.Sequential`` (the only container whose call order is certain) into that convolution; the
    BatchNorm becomes ``nn.Identity``. Puts ``module`` in eval mode (folding uses the running
    statistics, which is what an eval-mode BatchNorm computes). Returns the number folded.

    Only call it on a copy: the folded module no longer trains like the original.
    """
    module.eval()
    n = 0
    for seq in list(module.modules()):
        if not isinstance(seq, nn.Sequential):
            continue
        names = list(seq._modules)
        for a, b in zip(names, names[1:]):
            conv, bn = seq._modules[a], seq._modules[b]
            if not _foldable(conv, bn):
                continue
            with torch.no_grad():
                fused = fuse_conv_bn_eval(conv, bn, transpose=isinstance(conv, _CONV_T))
            fused.requires_grad_(False)
            seq._modules[a] = fused
            seq._modules[b] = nn.Identity()
            n += 1
    return n


def search_copies(*modules: nn.Module, fold: bool, channels_last: bool) -> tuple[list[nn.Module], int]:
    """Copies of ``modules`` for the search loop: BatchNorm folded (``fold``), 4-D weights in
    channels-last memory format (``channels_last``). Returns ``(copies, n_folded)``; with neither
    option the originals themselves are returned (no copy). Raises whatever ``copy.deepcopy``
    raises for a module that cannot be copied."""
    if not (fold or channels_last):
        return list(modules), 0
    out, n = [], 0
    for module in modules:
        m = copy.deepcopy(module)
        if fold:
            n += fold_batchnorm(m)
        if channels_last:
            m.to(memory_format=torch.channels_last)
        out.append(m)
    return out, n
