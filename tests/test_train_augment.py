"""Training augmentation of image quality (``degrade``) and the classifier's degradation shift."""

from __future__ import annotations

import pytest
import torch
import torchvision.transforms.functional as TF
from torch import nn

from xcf.errors import ConfigError
from xcf.train import TrainData, augment, degradation_shift, gaussian_blur, train_classifier


def test_gaussian_blur_per_image_sigma():
    x = torch.rand(3, 1, 40, 40, generator=torch.Generator().manual_seed(0))
    out = gaussian_blur(x, torch.tensor([0.0, 1.0, 1.5]))
    assert torch.allclose(out[0], x[0])  # sigma 0: unchanged
    ref = TF.gaussian_blur(x[1:2], [9, 9], [1.0, 1.0])[0]
    # same Gaussian away from the border (torchvision's kernel is truncated differently)
    assert torch.allclose(out[1, ..., 6:-6, 6:-6], ref[..., 6:-6, 6:-6], atol=5e-3)
    assert out[2].std() < out[1].std() < x[1].std()  # more blur, less variance
    assert out.mean().item() == pytest.approx(x.mean().item(), abs=5e-3)


def test_augment_degrade_blurs_and_adds_noise_only_when_asked():
    x = torch.rand(8, 1, 32, 32, generator=torch.Generator().manual_seed(1))
    still = dict(shift=0.0, rotate=0.0, scale=0.0, exposure=0.0)
    plain = augment(x, torch.Generator().manual_seed(0), **still)
    assert torch.allclose(plain, x, atol=1e-5)
    degraded = augment(x, torch.Generator().manual_seed(0), degrade=1.0, **still)
    changed = (degraded - x).abs().flatten(1).mean(1)
    assert (changed > 1e-3).sum() >= 6  # blur radius and noise are drawn per image (may be ~0)
    # with probability 0 the default output (and random stream) is untouched
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    assert torch.equal(augment(x, g1), augment(x, g2, degrade=0.0))
    assert torch.equal(torch.rand(3, generator=g1), torch.rand(3, generator=g2))


class _MeanReader(nn.Module):
    """Reads mean brightness: blur and zero-mean noise barely move it."""

    def forward(self, x):
        return (x.mean((1, 2, 3)) * 40 - 20)[:, None]


class _TextureReader(nn.Module):
    """Reads pixel-to-pixel texture: blur removes it, noise adds it."""

    def forward(self, x):
        return ((x[..., 1:] - x[..., :-1]).abs().mean((1, 2, 3)) * 40 - 4)[:, None]


def test_degradation_shift_separates_texture_readers():
    x = (torch.rand(16, 1, 32, 32, generator=torch.Generator().manual_seed(2)) * 255).to(torch.uint8)
    robust = degradation_shift(_MeanReader(), x)
    fragile = degradation_shift(_TextureReader(), x)
    assert set(robust) == {"blur_1px", "noise_0.02"}
    assert robust["blur_1px"] < 0.05 and robust["noise_0.02"] < 0.05
    assert fragile["blur_1px"] > 0.3


def test_train_classifier_refuses_bad_degrade():
    data = TrainData(name="t", labels=("a",), train_x=torch.zeros(2, 1, 8, 8, dtype=torch.uint8),
                     train_y=torch.zeros(2, 1), val_x=torch.zeros(2, 1, 8, 8, dtype=torch.uint8),
                     val_y=torch.zeros(2, 1), test_x=None, test_y=None, licence="", description="")
    with pytest.raises(ConfigError, match=r"degrade must be a probability in \[0, 1\]"):
        train_classifier(nn.Linear(1, 1), data, epochs=1, degrade=1.5)


def test_cli_refuses_degrade_for_autoencoders(tmp_path, capsys):
    from xcf.cli import main

    code = main(["train", "autoencoder", "--data", "phantom:4", "--out", str(tmp_path), "--name", "ae",
                 "--degrade", "0.5"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert "--degrade applies to 'xcf train classifier' only (not autoencoder)" in err[0]
    assert not any(tmp_path.iterdir())  # refused before anything is written
