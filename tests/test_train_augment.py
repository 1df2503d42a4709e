"""Training augmentation of image quality (``degrade``), the classifier's degradation shift, and
the reconstruction shift split by ground truth."""

from __future__ import annotations

import pytest
import torch
import torchvision.transforms.functional as TF
from torch import nn

from xcf.errors import ConfigError
from xcf.train import (
    TrainData,
    augment,
    degradation_shift,
    gaussian_blur,
    reconstruction_metrics,
    train_classifier,
)


def test_gaussian_blur_per_image_sigma():
    x = torch.rand(3, 1, 40, 40, generator=torch.Generator().manual_seed(0))
    out = gaussian_blur(x, torch.tensor([0.0, 1.0, 1.5]))
    assert torch.allclose(out[0], x[0])  # sigma 0: unchanged
    ref = TF.gaussian_blur(x[1:2], [9, 9], [1.0, 1.0])[0]
    # same Gaussian away from the border (torchvision's kernel is truncated differently)
    assert torch.allclose(out[1, ..., 6:-6, 6:-6], ref[..., 6:-6, 6:-6], atol=5e-3)
    assert out[2].std() < out[1].std() < x[1].std()  # more blur, less variance
    assert out.mean().item() == pytest.approx(x.mean().item(), abs=5e-3)


def test_gaussian_blur_scalar_sigma_radius_and_padding():
    from xcf.explainer import feather_mask
    from xcf.filters import gaussian_blur as blur

    x = torch.rand(2, 1, 24, 24, generator=torch.Generator().manual_seed(2))
    assert torch.equal(blur(x, 1.5), blur(x, torch.tensor([1.5, 1.5])))  # one sigma for all
    flat = torch.ones(1, 1, 16, 16)
    for padding in ("reflect", "replicate"):  # a constant image stays constant up to the border
        torch.testing.assert_close(blur(flat, 2.0, padding=padding), flat)
    m = torch.zeros(1, 1, 16, 16)
    m[..., :, :4] = 1.0  # a region touching the border: replicate padding keeps it whole there
    f = feather_mask(m, 2.0)
    assert torch.equal(f[..., :, :4], m[..., :, :4]) and 0 < f[0, 0, 8, 5] < 1 and f[0, 0, 8, 15] < 0.01
    with pytest.raises(RuntimeError):  # reflect cannot pad by more than the image
        blur(torch.rand(1, 1, 4, 4), 1.0, radius=5)


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


def test_reconstruction_metrics_split_the_shift_by_ground_truth():
    """The shift on films with and without each finding (benchmarks/recon_shift.py), exactly."""
    from xcf import Latent

    class Brighten(nn.Module):  # D(E(x)) = x + 0.1 on every pixel
        def encode(self, x):
            return Latent(x)

        def decode(self, latent):
            return latent.z + 0.1

    class MeanLogit(nn.Module):  # two findings: logit = 10 * (mean - 0.5), and a constant
        def forward(self, x):
            m = x.mean((1, 2, 3))
            return torch.stack([10 * (m - 0.5), torch.zeros_like(m)], 1)

    x = torch.tensor([0.3, 0.5, 0.7])[:, None, None, None].expand(3, 1, 16, 16) * 255
    y = torch.tensor([[1.0, 0.0], [0.0, 0.0], [1.0, float("nan")]])
    out = reconstruction_metrics(Brighten(), x.round().to(torch.uint8), torch.device("cpu"), MeanLogit(),
                                 truth=y)
    xs = x.round().to(torch.uint8)[:, 0, 0, 0].float() / 255
    d = (torch.sigmoid(10 * (xs + 0.1 - 0.5)) - torch.sigmoid(10 * (xs - 0.5))).abs()
    assert out["n_positives"] == [2, 0] and out["n_negatives"] == [1, 2]
    assert out["prob_shift_on_positives"][0] == pytest.approx(float(d[[0, 2]].mean()), abs=1e-4)
    assert out["prob_shift_on_negatives"][0] == pytest.approx(float(d[1]), abs=1e-4)
    assert out["prob_shift_on_positives"][1] is None and out["prob_shift_on_negatives"][1] == 0.0
