"""Each shipped method's result on fixed phantoms is pinned (tests/data/method_pins.json).

The pinned values were computed by the method implementations that the shipped numbers (the
results page, README) were measured with; a change to how a shipped method is built or searched
must give the same counterfactuals, or change the pins deliberately and re-measure the results.
Four test phantoms (one per finding kind the pack sees well), 25 steps per region level, each
method as shipped and, for the region methods, with a stop probability of 0.05 (which runs them
through their larger regions, the warm start and the Grad-CAM++ fallback).

The results are computed by ``tests/_pins.py`` in a fresh interpreter at two threads, as the pins
were taken: torch's float reductions depend on the number of threads, and a film that crosses its
stop probability a step earlier or later ends elsewhere, so the same code at another thread count,
or in a process whose thread pool another test set up, does not reproduce the last digits.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import xcf

HERE = Path(__file__).parent
PINS = json.loads((HERE / "data" / "method_pins.json").read_text())
STATUS = {"completed": "ran-all-steps", "stopped": "stopped-early", "nonfinite": "nonfinite"}


@pytest.fixture(scope="module")
def computed():
    if "phantom" not in xcf.list_packs():
        pytest.skip("the phantom pack's weights are not installed")
    res = subprocess.run([sys.executable, str(HERE / "_pins.py")], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-3000:]
    return json.loads(res.stdout)


def test_every_shipped_method_is_pinned():
    from xcf.methods.builtin import BUILTIN

    pinned = {k.split("|")[0] for k in PINS}
    assert {m.name for m in BUILTIN} == pinned, "a shipped method without a pinned result"


@pytest.mark.parametrize("key", sorted(PINS))
def test_shipped_methods_give_the_pinned_results(key, computed):
    want, got = PINS[key], computed[key]
    assert got["status"] == want["status"] and got["steps"] == want["steps"]
    assert got["mask_px"] == want["mask_px"]
    assert got["p_target"] == pytest.approx(want["p_target"], abs=1e-6)
    assert got["probs"] == pytest.approx(want["probs"], abs=1e-6)
    assert got["abs_change"] == pytest.approx(want["abs_change"], rel=1e-5)
    assert got["cf_mean"] == pytest.approx(want["cf_mean"], abs=1e-6)
