"""``xcf report`` (static index.html), the optimization GIF, and the page in headless Chromium."""

from __future__ import annotations

import re
import shutil
import subprocess
from html.parser import HTMLParser

import numpy as np
import pytest
import torch
from PIL import Image
from test_dataset_run import make_dataset, tiny_models

import xcf
from xcf.cli import main
from xcf.gif import GIF_NAME, explain_with_paths, optimization_gif
from xcf.html_report import build_report

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """A finished run: 4 images (one with a GIF-enabled run), one unreadable file."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("report")
    data = make_dataset(root / "data", n=4)
    clf, ae = tiny_models()
    out = root / "out"
    xcf.explain_dataset(data, out, target="bright", classifier=clf, latent=ae, steps=3, split="test",
                        batch_size=4, gif=True, gif_frames=4, progress=False, device="cpu",
                        report=False)
    return out


class _Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.rows, self.imgs, self.links, self.heads = [], [], [], []
        self._th = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "tr" and "case" in (a.get("class") or "").split():
            self.rows.append(a)
        if tag == "img":
            self.imgs.append(a.get("src") or a.get("data-src"))
        if tag == "a" and a.get("href"):
            self.links.append(a["href"])
        self._th = tag == "th"

    def handle_data(self, data):
        if self._th and data.strip():
            self.heads.append(data.strip())
            self._th = False


def test_report_table_thumbnails_and_figures(results):
    page_path = build_report(results)
    assert page_path == results / "index.html"
    text = page_path.read_text()
    page = _Page()
    page.feed(text)
    assert [r["id"] for r in page.rows] == ["im0", "im1", "im2", "im3", "broken"]
    assert [r["data-valid"] for r in page.rows][-1] == "error"
    for head in ("case", "finding", "drop", "valid", "locality", "time (s)", "status"):
        assert head in page.heads
    for src in page.imgs + page.links:  # relative, and every referenced file exists
        assert not src.startswith(("/", "http")) and (results / src).is_file(), src
    assert sum(s.endswith("thumb.png") for s in page.imgs) == 4
    assert sum(s.endswith("figure.png") for s in page.imgs) == 4
    assert sum(s.endswith(GIF_NAME) for s in page.imgs) == 4
    assert "not a readable image" in text and "function sortBy" in text
    assert re.search(r'data-sort="0\.\d{6}"', text)  # numbers sort numerically
    assert "http://" not in text and "https://" not in text  # nothing loaded from the network


def test_report_cli(results, tmp_path, capsys):
    assert main(["report", str(results), "--title", "My run"]) == 0
    assert "wrote" in capsys.readouterr().out
    assert "<title>My run</title>" in (results / "index.html").read_text()
    (tmp_path / "empty").mkdir()
    assert main(["report", str(tmp_path / "empty")]) == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_report_over_explain_folders(tmp_path):
    """Without results.csv the report scans report.json files (xcf explain with several images)."""
    clf, ae = tiny_models()
    ex = xcf.Explainer(classifier=clf, latent=ae, steps=1)
    for i, cf in enumerate(ex.explain([torch.rand(1, 40, 40), torch.rand(1, 40, 40)], "bright")):
        cf.save(tmp_path / f"img{i}")
    page = _Page()
    page.feed(build_report(tmp_path).read_text())
    assert [r["id"] for r in page.rows] == ["img0", "img1"]


def test_gif_is_the_optimization_path_and_changes_nothing(tmp_path):
    clf, ae = tiny_models()
    # the seed's settings: bit-identical whatever the batch (the region-level presets agree with a
    # batched run to float rounding, ~1e-7, which torch.equal would not accept)
    ex = xcf.Explainer(classifier=clf, latent=ae, config="seed", steps=12)
    img = torch.rand(1, 1, 32, 32)
    cf = optimization_gif(ex, img, "bright", tmp_path / "path.gif", frames=5)
    plain = ex.explain([img], ["bright"])[0]  # after: recording must not touch the models
    assert torch.equal(cf.counterfactual, plain.counterfactual) and cf.steps == plain.steps
    assert cf.components == plain.components  # the recorder is not named in the report
    assert type(ex.locality).__name__ != "_PathRecorder"  # restored
    with Image.open(tmp_path / "path.gif") as gif:
        assert gif.is_animated and gif.n_frames == 1 + 5 + 1  # input, path, counterfactual
        assert gif.size[0] >= 256
    # batched paths: each sample's own path; early-stopped samples end where they stopped
    ex2 = xcf.Explainer(classifier=clf, latent=ae, config="seed", steps=12, stop_probability=0.9999)
    x = torch.rand(3, 1, 32, 32)
    cfs, paths = explain_with_paths(ex2, x, torch.zeros(3, dtype=torch.long), frames=4)
    ref = ex2.explain_tensor(x, torch.zeros(3, dtype=torch.long))  # models left as they were
    for c, r, p in zip(cfs, ref, paths):
        assert torch.equal(c.counterfactual, r.counterfactual)
        assert p[0].caption.startswith("input") and p[-1].caption.startswith("counterfactual")
        assert np.array_equal(p[1].image, (r.reconstruction[0] * 255).round().byte().numpy())


def test_explain_cli_gif(tmp_path):
    rng = np.random.default_rng(0)
    png = tmp_path / "film.png"
    Image.fromarray((rng.random((64, 64)) * 255).astype(np.uint8)).save(png)
    out = tmp_path / "out"
    assert main(["explain", str(png), "--target", "0", "--out", str(out), "--classifier", "small-cnn",
                 "--latent", "conv-ae", "--steps", "2", "--gif", "--gif-frames", "2"]) == 0
    with Image.open(out / GIF_NAME) as gif:
        assert gif.n_frames == 1 + 2 + 1
    assert (out / "report.json").is_file()


def test_page_renders_in_headless_chromium(results, tmp_path):
    browser = next((b for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)), None)
    if browser is None:
        pytest.skip("Chromium is not installed (apt-get install chromium); the page is not rendered")
    build_report(results)
    shot = tmp_path / "shot.png"
    cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
           "--window-size=1280,900", f"--screenshot={shot}", (results / "index.html").as_uri()]
    subprocess.run(cmd, capture_output=True, timeout=60, check=False)
    assert shot.is_file(), "Chromium wrote no screenshot"
    with Image.open(shot) as im:
        assert im.size == (1280, 900)
        arr = np.asarray(im.convert("RGB")).astype(int)
    assert arr.std() > 20  # not blank
    colours = len(np.unique(arr.reshape(-1, 3), axis=0))
    assert colours > 200  # text, thumbnails and the opened case's figure were drawn
