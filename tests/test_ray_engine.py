"""The ``ray`` engine against a local Ray instance started here (2 CPUs); skipped without Ray."""

from __future__ import annotations

import csv
import json

import pytest
from test_dataset_run import make_dataset, tiny_models

import xcf
from xcf.result import REPORT_FILES

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # Ray Data internals

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'xcf[ray]')")
pytest.importorskip("ray.data", reason="Ray Data is not installed (pip install 'xcf[ray]')")


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR")
    yield
    ray.shutdown()


def test_ray_engine_same_layout_and_resumable_by_local(local_ray, tmp_path):
    data = make_dataset(tmp_path / "data", n=4, bad=True)
    clf, ae = tiny_models()
    out = tmp_path / "out"
    common = dict(target="bright", classifier=clf, latent=ae, steps=2, split="test", progress=False,
                  config="seed")
    res = xcf.explain_dataset(data, out, engine="ray", workers=2, batch_size=2, **common)
    assert ray.is_initialized()  # a Ray the caller started is left running
    assert res.engine == "ray" and res.n_explained == 5 and res.n_errors == 1
    with open(out / "results.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["id"] for r in rows] == ["im0", "im1", "im2", "im3", "broken"]  # job order
    assert rows[-1]["status"] == "error" and "broken.png" in rows[-1]["error"]
    for r in rows[:4]:
        folder = out / "cases" / r["id"]
        assert all((folder / f).is_file() for f in (*REPORT_FILES, "thumb.png"))
        rep = json.loads((folder / "report.json").read_text())
        assert rep["steps"] == 2 and rep["target"] == "bright"
    assert (out / "index.html").is_file()
    # the same folder continued by the local engine: nothing is redone (same layout, same hash)
    again = xcf.explain_dataset(data, out, engine="local", device="cpu", **common)
    assert again.n_resumed == 4 and again.n_explained == 1
