"""The local-exemplar method and its bank of films without the finding: analytic cases with known
answers, and the pneumonia pack's bank on the real films (skipped without them)."""

from __future__ import annotations

import pytest
import torch
from _analytic import BoxSaliency, RegionClassifier, region_image
from xcf_autoencoders import ExemplarInpainter, exemplar_bank

import xcf
from xcf.errors import ConfigError
from xcf.methods import Fill, LocalExemplar, Region, StopRule


def _bank(n: int = 6, size: int = 32, seed: int = 1) -> torch.Tensor:
    """Films without the finding: dark (0.3-0.4) everywhere, each with its own grain and a grey
    ramp of its own slope, so that each film is told apart by what lies outside a hole."""
    g = torch.Generator().manual_seed(seed)
    ramp = torch.linspace(0, 1, size).view(1, 1, 1, size)
    slopes = torch.linspace(0.0, 0.1, n).view(n, 1, 1, 1)
    return (0.3 + 0.05 * torch.rand(n, 1, size, size, generator=g) + slopes * ramp).clamp(0, 1)


def _hole(size: int = 32) -> torch.Tensor:
    h = torch.zeros(1, 1, size, size)
    h[..., 8:16, 8:16] = 1
    return h


def test_the_closest_film_is_the_one_that_matches_outside_the_hole():
    bank = _bank()
    inp = ExemplarInpainter(bank, input_size=32, pool=4)
    x = bank[3:4].clone()
    x[..., 8:16, 8:16] = 0.95  # a finding in the hole: it must not count
    assert inp.nearest(x, _hole(), k=1).tolist() == [[3]]
    # without the hole the bright box counts, and still film 3 is the closest of these
    order = inp.nearest(x, _hole(), k=6)[0].tolist()
    assert order[0] == 3 and sorted(order) == list(range(6))


def test_a_donor_is_grey_matched_to_the_film_around_the_hole():
    bank = _bank()[2:3]
    inp = ExemplarInpainter(bank, input_size=32, pool=4, ring=4)
    x = (0.5 * bank + 0.2).clamp(0, 1)  # the same film, another exposure
    films, idx = inp.candidates(x, _hole(), k=1)
    assert idx.tolist() == [[0]]
    # an affine grey map of the whole film is undone exactly (up to the bank's 8-bit grey)
    assert torch.allclose(films[0, 0], x, atol=3 / 255)


def test_with_no_hole_the_film_is_its_own_reconstruction():
    inp = ExemplarInpainter(_bank(), input_size=32)
    x = region_image()
    assert torch.equal(inp.decode(inp.encode(x)), x)


def test_the_bank_is_checked_in_one_line():
    with pytest.raises(ValueError, match=r"exemplar bank must be \(N, 1, 32, 32\)"):
        ExemplarInpainter(torch.zeros(3, 32, 32), input_size=32)
    with pytest.raises(ValueError, match="pool must divide input_size 32"):
        ExemplarInpainter(_bank(), input_size=32, pool=5)
    with pytest.raises(ValueError, match="needs root= .* and without="):
        exemplar_bank()


def _method(**changes) -> LocalExemplar:
    m = LocalExemplar("exemplar-test", region=Region("gradcam++", (0.5,)), stop=StopRule(0.5), steps=0,
                      repair=False, fill=Fill(dilate=0, feather=0.0), donors=2)
    return m.replace(**changes) if changes else m


def test_the_region_takes_the_donors_content_and_the_film_keeps_the_rest():
    """Finding 0 reads the mean of its box; the bank's films are dark there, so their region takes
    the finding away. The counterfactual is the donor inside the box (grey-matched), the film
    exactly outside, and the oracle-free classifier is all that chose it."""
    x = region_image()
    bank = _bank(size=32)
    inp = ExemplarInpainter(bank, input_size=32, pool=4, ring=4)
    ex = xcf.Explainer(classifier=RegionClassifier(), latent=inp, saliency=BoxSaliency(), method=_method())
    cf = ex.explain(x, 0)[0]
    box = torch.zeros(1, 32, 32, dtype=torch.bool)
    box[:, 8:16, 8:16] = True
    assert torch.equal(cf.mask, box)
    assert torch.equal(cf.counterfactual[~box], x[0][~box])
    films, _ = inp.candidates(x, box[None].float(), k=1)
    assert torch.allclose(cf.counterfactual[box], films[0, 0][box], atol=1e-6)
    assert cf.p_counterfactual < 0.5 and cf.steps == 0 and cf.config["donors"] == 2


def test_a_film_tries_the_next_donor_when_the_closest_does_not_meet_the_rule():
    """The closest film is bright in the box (it carries the finding's grey, so it would not take
    the finding away); the second closest is dark there: the film takes the second."""
    x = region_image()
    bank = torch.cat([x.clone(), (x.clone() * 0 + 0.35)])  # the film itself, then a flat dark film
    bank[1, :, 8:16, 8:16] = 0.35
    inp = ExemplarInpainter(bank, input_size=32, pool=4, ring=4)
    ex = xcf.Explainer(classifier=RegionClassifier(), latent=inp, saliency=BoxSaliency(), method=_method())
    one = xcf.Explainer(classifier=RegionClassifier(), latent=inp, saliency=BoxSaliency(),
                        method=_method(donors=1)).explain(x, 0)[0]
    two = ex.explain(x, 0)[0]
    assert one.p_counterfactual > 0.5  # the closest alone keeps the finding
    assert two.p_counterfactual < 0.5


def test_local_exemplar_never_searches_whatever_its_steps():
    x = region_image()
    bank = x.clone()  # a bank whose only film has the finding: no fill can flip
    inp = ExemplarInpainter(bank, input_size=32, pool=4)
    m = _method(steps=50, repair=True, donors=1)
    assert m.searches is False
    cf = xcf.Explainer(classifier=RegionClassifier(), latent=inp, saliency=BoxSaliency(), method=m).explain(x, 0)[0]
    assert cf.steps == 0 and cf.p_counterfactual > 0.5 and cf.status == "ran-all-steps"


def test_local_exemplar_is_registered_and_refuses_what_it_cannot_use():
    from _analytic import IdentityLatent

    m = xcf.get_method("local-exemplar")
    assert isinstance(m, LocalExemplar) and m.latent_role == "exemplar" and m.donors == 8
    assert m.region.fallback == "gradcam++" and m.stop.probability == 0.05 and not m.searches
    with pytest.raises(ConfigError, match="donors must be an integer in 1..32, got 0"):
        m.replace(donors=0)
    with pytest.raises(ConfigError, match=r"needs a bank of films without the finding .* got .*IdentityLatent") as e:
        xcf.Explainer(classifier=RegionClassifier(), latent=IdentityLatent(), saliency=BoxSaliency(),
                      method=_method()).explain(region_image(), 0)
    assert "\n" not in str(e.value)


def test_a_pack_without_a_bank_says_so(monkeypatch):
    from xcf.packs import load_pack

    pack = load_pack("phantom")
    monkeypatch.delitem(pack.entry, "exemplars")
    with pytest.raises(ConfigError, match="needs a bank of films without the finding and pack 'phantom' has none"):
        xcf.Explainer(pack=pack, method="local-exemplar")


def test_a_pack_whose_bank_folder_is_missing_says_where_it_looked(monkeypatch, tmp_path):
    from xcf.packs import load_pack

    monkeypatch.setenv("XCF_DATA_DIR", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    pack = load_pack("pneumonia")
    monkeypatch.setitem(pack.entry, "exemplars", {**pack.entry["exemplars"], "data": "no-such-folder"})
    with pytest.raises(ConfigError, match="reads its films without 'pneumonia' from no-such-folder .* set XCF_DATA_DIR") as e:
        xcf.Explainer(pack=pack, method="local-exemplar")
    assert "\n" not in str(e.value)


def test_the_pneumonia_bank_leaves_out_every_film_the_oracle_was_trained_on(kermany_dir, monkeypatch):
    """The judge must not be shown a film it has seen: the bank holds the training split's normal
    films less the oracle's training and validation rows (its recorded --limit and seed)."""
    from xcf.data import FolderDataset
    from xcf.packs import load_pack
    from xcf.train.trainer import train_val_indices

    monkeypatch.setenv("XCF_DATA_DIR", str(kermany_dir.parent))
    pack = load_pack("pneumonia")
    bank = pack.exemplars
    ds = FolderDataset(kermany_dir, labels=["pneumonia"], split="train", check_files=False)
    tr, va = train_val_indices(ds, 0.1, 0, 1000)
    seen = {str(ds.path(i).relative_to(ds.root)) for i in (*tr, *va)}
    normal = {str(ds.path(i).relative_to(ds.root)) for i in range(len(ds)) if float(ds.targets[i, 0]) == 0}
    assert set(bank.names) == normal - seen and len(bank) == len(normal - seen) > 500


def test_a_phantom_bank_is_drawn_without_findings_from_its_own_seed():
    bank = exemplar_bank("phantom:3:11", input_size=64)
    from xcf.data.phantoms import PhantomDataset

    want = torch.stack([PhantomDataset(3, seed=11, size=64, findings=())[i][0] for i in range(3)])
    assert len(bank) == 3 and torch.allclose(bank.bank.float() / 255, want, atol=0.5 / 255)
    assert "dataset seed 11" in bank.source
    with pytest.raises(ValueError, match="write phantom:N:SEED"):
        exemplar_bank("phantom:3")


def test_the_counterfactual_names_the_bank_film_its_region_came_from(tmp_path):
    """``provenance["content"]``: the name of the donor each film took (here the second closest,
    the first does not take the finding away), in report.json too; a fill method that draws its
    content records none."""
    import json

    x = region_image()
    bank = torch.cat([x.clone(), (x.clone() * 0 + 0.35)])
    bank[1, :, 8:16, 8:16] = 0.35
    inp = ExemplarInpainter(bank, input_size=32, pool=4, ring=4, names=["normal/a.png", "normal/b.png"])
    one, two = (xcf.Explainer(classifier=RegionClassifier(), latent=inp, saliency=BoxSaliency(),
                              method=_method(donors=d)).explain(torch.cat([x, x]), [0, 0])[0] for d in (1, 2))
    assert one.provenance["content"] == "normal/a.png" and one.p_counterfactual > 0.5  # kept its best: the first
    assert two.provenance["content"] == "normal/b.png" and two.p_counterfactual < 0.5
    two.save(tmp_path / "cf")
    assert json.loads((tmp_path / "cf" / "report.json").read_text())["provenance"]["content"] == "normal/b.png"
    from test_fill import ConstantInpainter

    from xcf.methods import LocalFill

    fill = LocalFill("fill", region=Region("gradcam++", (0.5,)), stop=StopRule(0.5), steps=0,
                     fill=Fill(dilate=0, feather=0.0))
    cf = xcf.Explainer(classifier=RegionClassifier(), latent=ConstantInpainter(0.3), saliency=BoxSaliency(),
                       method=fill).explain(x, 0)[0]
    assert "content" not in cf.provenance
