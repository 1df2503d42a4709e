"""``xcf report`` (static index.html: a card per case), the optimization GIF, and the page in
headless Chromium (rendered, and no horizontal scroll at 1400 and 800 px)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from html.parser import HTMLParser

import numpy as np
import pytest
import torch
from _analytic import BoxSaliency, IdentityLatent, RegionClassifier, region_image
from PIL import Image
from test_dataset_run import make_dataset, tiny_models

import xcf
from xcf.cli import main
from xcf.gif import GIF_NAME, explain_with_paths, optimization_gif
from xcf.html_report import build_report
from xcf.report import MEASURES
from xcf.result import PAGE_FILES

pytestmark = pytest.mark.usefixtures("one_torch_thread")

#: Names of results that must never show as text on the page (column keys, status codes).
RAW_NAMES = ("share_in_gt_l1", "share_in_gt_dilated_l1", "share_in_mask_l1", "target_drop", "iou_gt",
             "mask_area", "off_target_max", "p_input", "p_counterfactual", "validity", "ran-all-steps",
             "stopped-early", "completed", "steps max")


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


@pytest.fixture(scope="module")
def cards(tmp_path_factory):
    """Three films of two findings explained in one batch with ground-truth regions (as ``xcf demo``
    does): analytic classifier, identity latent, box saliency; saved as ``cases/<id>``."""
    root = tmp_path_factory.mktemp("cards")
    clf = RegionClassifier()
    ex = xcf.Explainer(classifier=clf, latent=IdentityLatent(), saliency=BoxSaliency(), config="seed",
                       steps=4)
    x = region_image(3)
    targets = torch.tensor([0, 1, 0])
    gt = torch.zeros(3, 1, 32, 32, dtype=torch.bool)
    for b, t in enumerate(targets.tolist()):
        r0, r1, c0, c1 = clf.regions[t]
        gt[b, 0, r0:r1, c0:c1] = True
    for i, cf in enumerate(ex.explain_tensor(x, targets, gt_masks=gt)):
        cf.save(root / "cases" / f"film-{i}")
    return root


class _Page(HTMLParser):
    """Cards (``article.case``), images, links, controls and the visible text of a page."""

    def __init__(self):
        super().__init__()
        self.cards: list[dict] = []
        self.imgs, self.links, self.text = [], [], []
        self._hidden = 0

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        cls = (a.get("class") or "").split()
        if tag in ("script", "style"):
            self._hidden += 1
        if tag == "article" and "case" in cls:
            self.cards.append({**a, "imgs": [], "inputs": [], "buttons": 0})
        if tag == "img":
            src = a.get("src") or a.get("data-src")
            self.imgs.append(src)
            if self.cards:
                self.cards[-1]["imgs"].append(src)
        if tag == "a" and a.get("href"):
            self.links.append(a["href"])
        if tag == "input" and self.cards:
            self.cards[-1]["inputs"].append(a)
        if tag == "button" and self.cards:
            self.cards[-1]["buttons"] += 1

    def handle_endtag(self, tag):
        if tag in ("script", "style"):
            self._hidden -= 1

    def handle_data(self, data):
        if not self._hidden and data.strip():
            self.text.append(" ".join(data.split()))

    @property
    def visible(self) -> str:
        return " ".join(self.text)


def _parse(path) -> _Page:
    page = _Page()
    page.feed(path.read_text())
    return page


def _check_card_controls(card: dict) -> None:
    names = [src.rsplit("/", 1)[-1] for src in card["imgs"]]
    assert names.count(PAGE_FILES["film"]) == 2, names  # left panel, and under the wipe
    assert names.count(PAGE_FILES["counterfactual"]) == 1, names
    assert names.count(PAGE_FILES["change"]) == 2 and names.count(PAGE_FILES["region"]) == 2, names
    kinds = [(i.get("type"), i.get("class"), i.get("data-layer")) for i in card["inputs"]]
    assert ("range", "wipe-range", None) in kinds  # the before/after slider
    assert ("checkbox", "layer", "change") in kinds and ("checkbox", "layer", "region") in kinds
    assert card["buttons"] == 1  # flip


def test_page_has_a_card_per_film_with_slider_layers_and_words(cards):
    page_path = build_report(cards)
    page = _parse(page_path)
    assert [c["id"] for c in page.cards] == ["cases/film-0", "cases/film-1", "cases/film-2"]
    for card in page.cards:
        _check_card_controls(card)
    text = page.visible
    for raw in RAW_NAMES:  # plain language only
        assert raw not in text, raw
    # probabilities in words, for each card's finding
    said = re.findall(r"(finding\d): ([<>] )?\d+ % before, ([<>] )?\d+ % after", text)
    assert [s[0] for s in said].count("finding0") >= 2 and [s[0] for s in said].count("finding1") >= 1
    # the legend: one line per measure present, each plain name with its explanation
    shown = [m for m in MEASURES if m.key != "steps"]
    for m in shown:
        if m.key in ("removal",):  # needs a true counterfactual, not given here
            assert f"{m.name}: " not in text
            continue
        assert f"{m.name}: {m.legend}" in text, m.name
    assert ("inside the finding: share of the change that lies within the true finding's outline"
            in text)
    # what steps count, how the searches ended, and the time said once for the batch
    assert "Optimizer updates: at most 4 (one search region)." in text
    assert "used all steps" in text
    assert text.count("s per film (batch of 3)") == 1
    assert "By finding" in text and "all findings" in text
    for src in page.imgs + page.links:  # relative, and every referenced file exists
        assert not src.startswith(("/", "http")) and (cards / src).is_file(), src
    html = page_path.read_text()
    assert "http://" not in html and "https://" not in html  # nothing loaded from the network


def test_status_words_accept_old_and_new_names(cards, tmp_path):
    """A folder whose reports carry the old status names reads the same as the new ones."""
    shutil.copytree(cards, tmp_path / "run")
    for i, status in enumerate(("stopped", "completed", "stopped-early")):
        rep_path = tmp_path / "run" / "cases" / f"film-{i}" / "report.json"
        rep = json.loads(rep_path.read_text())
        rep["status"] = status
        rep["config"]["stop_probability"] = 0.5
        rep_path.write_text(json.dumps(rep))
    text = _parse(build_report(tmp_path / "run")).visible
    assert text.count("stopped once p < 50 %") == 2 and text.count("used all steps") == 1
    assert "stopped-early" not in text and "completed" not in text


def test_report_over_a_dataset_run(results):
    page_path = build_report(results)
    assert page_path == results / "index.html"
    text = page_path.read_text()
    page = _parse(page_path)
    assert [r["id"] for r in page.cards] == ["im0", "im1", "im2", "im3", "broken"]
    assert [r["data-valid"] for r in page.cards][-1] == "error"
    for card in page.cards[:4]:
        _check_card_controls(card)
    assert page.cards[-1]["imgs"] == []
    assert "Could not be explained: " in page.visible and "not a readable image" in text
    for src in page.imgs + page.links:  # relative, and every referenced file exists
        assert not src.startswith(("/", "http")) and (results / src).is_file(), src
    assert sum(s.endswith(GIF_NAME) for s in page.links) == 4
    assert re.search(r'data-s-p-after="0\.\d{6}"', text)  # numbers sort numerically
    assert re.search(r"\d s per film", page.visible)  # said once, in the summary
    for raw in RAW_NAMES:
        assert raw not in page.visible, raw
    assert "http://" not in text and "https://" not in text


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
    page = _parse(build_report(tmp_path))
    assert [r["id"] for r in page.cards] == ["img0", "img1"]
    assert "s per film (batch of 2)" in page.visible


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


def _browser() -> str:
    browser = next((b for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)), None)
    if browser is None:
        pytest.skip("Chromium is not installed (apt-get install chromium); the page is not rendered")
    return browser


def _chromium(browser, *args):
    cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)


def test_page_renders_in_headless_chromium(cards, tmp_path):
    browser = _browser()
    build_report(cards)
    shot = tmp_path / "shot.png"
    _chromium(browser, "--hide-scrollbars", "--window-size=1280,900", f"--screenshot={shot}",
              (cards / "index.html").as_uri())
    assert shot.is_file(), "Chromium wrote no screenshot"
    with Image.open(shot) as im:
        assert im.size == (1280, 900)
        arr = np.asarray(im.convert("RGB")).astype(int)
    assert arr.std() > 20  # not blank
    colours = len(np.unique(arr.reshape(-1, 3), axis=0))
    assert colours > 200  # text and the films were drawn


_PROBE = """<script>
window.addEventListener('load', () => {
  const frames = Array.from(document.querySelectorAll('article.case .frame'));
  const out = Array.from(document.querySelectorAll('body *'))
    .filter(e => e.getBoundingClientRect().right > window.innerWidth + 0.5).length;
  const m = {scroll: document.documentElement.scrollWidth, inner: window.innerWidth, out: out,
             frame: Math.min(...frames.map(f => f.getBoundingClientRect().width))};
  const card = document.querySelector('article.case');
  card.querySelector('button.flip').click();  // the flip shows the film over the counterfactual
  m.flip = card.querySelector('.compare').style.getPropertyValue('--wipe');
  const q = document.getElementById('q'); q.value = card.id; q.dispatchEvent(new Event('input'));
  m.shown = Array.from(document.querySelectorAll('article.case')).filter(c => c.getClientRects().length).length;
  const p = document.createElement('pre'); p.textContent = 'PROBE ' + JSON.stringify(m);
  document.body.appendChild(p);
});
</script></body>"""


@pytest.mark.parametrize("width", [1400, 800])
def test_page_has_no_horizontal_scroll(cards, width):
    """At 1400 and 800 px the page is no wider than the window (nothing sticks out to the right)
    and each film is shown at least 300 px wide; the flip button and the filter work."""
    browser = _browser()
    build_report(cards)
    probe = cards / f"_probe_{width}.html"
    probe.write_text((cards / "index.html").read_text().replace("</body>", _PROBE))
    try:
        res = _chromium(browser, f"--window-size={width},1000", "--run-all-compositor-stages-before-draw",
                        "--virtual-time-budget=3000", "--dump-dom", probe.as_uri())
    finally:
        probe.unlink()
    found = re.search(r"PROBE (\{[^<]*\})", res.stdout)
    assert found, res.stderr[-2000:]
    m = json.loads(found.group(1).replace("&quot;", '"'))
    assert m["inner"] == width and m["scroll"] <= width and m["out"] == 0, m
    assert m["frame"] >= 300, m
    assert m["flip"] == "100%" and m["shown"] == 1, m
