"""Training writes loadable safetensors + a correct manifest entry; packs verify sha256."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

import xcf
from xcf.cli import main
from xcf.errors import WeightsError
from xcf.packs import list_packs, load_component, load_pack, read_manifest


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    """A labels.csv dataset of 48 images where 'bright' images have a bright disk."""
    root = tmp_path_factory.mktemp("data")
    rng = np.random.default_rng(0)
    rows = ["path,split,patient_id,bright"]
    yy, xx = np.mgrid[:48, :48]
    for i in range(48):
        img = rng.normal(0.3, 0.05, (48, 48))
        label = i % 2
        if label:
            img[(yy - 24) ** 2 + (xx - 20) ** 2 < 64] += 0.5
        Image.fromarray((img.clip(0, 1) * 255).astype(np.uint8)).save(root / f"{i}.png")
        split = "test" if i >= 40 else "train"
        rows.append(f"{i}.png,{split},p{i // 2},{label}")
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    (root / "README.md").write_text("Tiny test set.\n\nLicence: CC0 test data.\n")
    return root


@pytest.fixture(scope="module")
def trained(tiny_folder, tmp_path_factory):
    out = tmp_path_factory.mktemp("weights")
    common = ["--data", str(tiny_folder), "--out", str(out), "--size", "32", "--epochs", "2", "--device", "cpu"]
    assert main(["train", "classifier", "--name", "clf", "--pack", "tiny", "--role", "classifier",
                 "--arch-args", '{"widths": [4, 8, 8, 8, 8]}', "--degrade", "0.5", *common]) == 0
    assert main(["train", "autoencoder", "--arch", "conv-ae", "--name", "ae", "--pack", "tiny", "--role",
                 "latent", "--classifier", "clf", "--arch-args", '{"widths": [4, 8, 8, 8, 8], "latent_channels": 4}',
                 *common]) == 0
    return out


def test_manifest_entry_is_complete(trained):
    _, data = read_manifest(trained)
    entry = data["weights"]["clf"]
    for key in ("file", "sha256", "kind", "component", "args", "labels", "input", "command", "data",
                "licence", "seed", "metrics"):
        assert key in entry, key
    assert entry["labels"] == ["bright"] and entry["kind"] == "classifier"
    assert entry["command"].startswith("xcf train classifier") and "--name clf" in entry["command"]
    assert entry["licence"].startswith("Licence: CC0")
    assert entry["data"]["n_train"] + entry["data"]["n_val"] == 40 and entry["data"]["n_test"] == 8
    assert 0 <= entry["metrics"]["test_auc"]["bright"] <= 1
    assert "--degrade 0.5" in entry["command"]
    assert set(entry["metrics"]["test_degradation_shift"]) == {"blur_1px", "noise_0.02"}
    ae = data["weights"]["ae"]
    assert ae["kind"] == "latent" and "prob_shift_mean" in ae["metrics"]["test"]
    assert data["packs"]["tiny"] == {"classifier": "clf", "labels": ["bright"], "latent": "ae"}


def test_pack_loads_and_explains(trained, monkeypatch):
    monkeypatch.setenv("XCF_WEIGHTS_DIR", str(trained))
    assert list_packs() == ["tiny"]
    pack = load_pack("tiny")
    assert pack.labels == ("bright",)
    assert pack.classifier.input_size == 32 and pack.latent.input_size == 32
    assert pack.classifier.xcf_weights["sha256"] == read_manifest()[1]["weights"]["clf"]["sha256"]
    cf = xcf.explain(torch.rand(1, 1, 32, 32), "Bright", pack="tiny", steps=2)
    assert cf.provenance["components"]["classifier"]["weights"]["name"] == "clf"


def test_corrupted_weights_refused_by_sha256(trained, tmp_path):
    import shutil

    copy = tmp_path / "w"
    shutil.copytree(trained, copy)
    f = copy / "clf.safetensors"
    raw = bytearray(f.read_bytes())
    raw[-1] ^= 0xFF
    f.write_bytes(bytes(raw))
    with pytest.raises(WeightsError, match="sha256 .* does not match"):
        load_component("clf", copy)


def test_manifest_refuses_non_safetensors_and_malformed(trained, tmp_path):
    import shutil

    copy = tmp_path / "w"
    shutil.copytree(trained, copy)
    data = json.loads((copy / "manifest.json").read_text())
    data["weights"]["clf"]["file"] = "clf.pt"
    (copy / "manifest.json").write_text(json.dumps(data, indent=2))
    with pytest.raises(WeightsError, match=r"manifest.json:\d+: .*not a .safetensors file"):
        read_manifest(copy)
    (copy / "manifest.json").write_text('{"weights": {\n  "a": 1,,\n}')
    with pytest.raises(WeightsError, match=r"manifest.json:2: malformed manifest"):
        read_manifest(copy)


def test_missing_pack_and_resume(trained, tiny_folder, capsys):
    with pytest.raises(WeightsError, match="unknown pack 'nope'; available packs: tiny"):
        load_pack("nope", trained)
    # the checkpoint of the last epoch exists and --resume continues from it without retraining
    ckpt = trained / ".checkpoints" / "clf.ckpt.safetensors"
    assert ckpt.is_file()
    assert main(["train", "classifier", "--name", "clf", "--data", str(tiny_folder), "--out", str(trained),
                 "--size", "32", "--epochs", "2", "--device", "cpu", "--resume",
                 "--arch-args", '{"widths": [4, 8, 8, 8, 8]}']) == 0
    out = capsys.readouterr().out
    assert "resumed from" in out and '"epoch": 1' not in out


def test_alternative_latent_model_in_a_pack(trained, tiny_folder, tmp_path, monkeypatch):
    """`--role alt-latent` lists a second trained latent model in the pack without replacing the
    default; `latent=NAME` (API, CLI, bench METHOD@LATENT) picks it, verified like any weights.
    (Trained with --channels-last: the weights are still saved and load as usual.)"""
    import shutil

    from xcf.bench.counterfactuals import _explainer, resolve_methods
    from xcf.errors import ConfigError

    w = tmp_path / "w"
    shutil.copytree(trained, w)
    assert main(["train", "vae", "--name", "vae", "--pack", "tiny", "--role", "alt-latent", "--classifier",
                 "clf", "--arch-args", '{"widths": [4, 8], "latent_channels": 2, "detail_sigma": 1}',
                 "--data", str(tiny_folder), "--out", str(w), "--size", "32", "--epochs", "1",
                 "--device", "cpu", "--channels-last"]) == 0
    _, data = read_manifest(w)
    assert data["packs"]["tiny"]["latent"] == "ae" and data["packs"]["tiny"]["latents"] == ["vae"]
    assert "--role alt-latent" in data["weights"]["vae"]["command"]
    monkeypatch.setenv("XCF_WEIGHTS_DIR", str(w))
    pack = load_pack("tiny")
    assert pack.latent_names == ("ae", "vae")
    assert set(pack.weights()) == {"classifier", "latent", "latent:vae"}
    vae = pack.load_latent("vae")
    assert type(vae).__name__ == "ConvVAE" and vae.detail_sigma == 1.0 and pack.load_latent("vae") is vae
    with pytest.raises(WeightsError, match="no latent model 'nope'; its latent models: ae, vae"):
        pack.load_latent("nope")
    cf = xcf.explain(torch.rand(1, 1, 32, 32), "bright", pack="tiny", latent="vae", steps=2)
    assert cf.provenance["components"]["latent"]["weights"]["name"] == "vae"
    # the benchmark's METHOD@LATENT: the named method with the pack's other latent model
    (m,) = resolve_methods("seed@vae")
    assert m.latent == "vae" and m.method == resolve_methods("seed")[0].method == "seed"
    assert _explainer(m, pack, 32, {"steps": 1}).latent is vae
    (bad,) = resolve_methods("seed@nope")
    with pytest.raises(ConfigError, match="pack 'tiny' has no latent model 'nope'"):
        _explainer(bad, pack, 32, {"steps": 1})
    with pytest.raises(ConfigError, match="METHOD@LATENT"):
        resolve_methods("nosuch@vae")
    # the default can be swapped afterwards; the old default becomes an alternative
    from xcf.train.trainer import _main, set_default_latent

    assert _main(["set-default-latent", str(w), "tiny", "vae", "tiny, VAE first"]) == 0
    swapped = read_manifest(w)[1]["packs"]["tiny"]
    assert swapped["latent"] == "vae" and swapped["latents"] == ["ae"]
    assert swapped["description"] == "tiny, VAE first"
    assert load_pack("tiny", w).latent_names == ("vae", "ae")
    with pytest.raises(WeightsError, match="'clf' is not a latent model"):
        set_default_latent(w, "tiny", "clf")
    assert _main(["set-default-latent", str(w), "nope", "vae"]) == 2
    data = read_manifest(w)[1]
    # a pack that names an unknown alternative is refused when the manifest is read
    data["packs"]["tiny"]["latents"] = ["ghost"]
    (w / "manifest.json").write_text(json.dumps(data, indent=2))
    with pytest.raises(WeightsError, match="latents refers to unknown weights 'ghost'"):
        read_manifest(w)
