"""Compute the results tests/data/method_pins.json pins, in a fresh interpreter at two threads.

``python tests/_pins.py`` prints them as JSON (the keys of the pins file); ``--write`` stores them
in the pins file instead (only to pin a new method: the existing pins are the reference).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

PINS_FILE = Path(__file__).parent / "data" / "method_pins.json"
#: status names as pinned -> as reported (the names changed, not the behaviour)
STATUS = {"completed": "ran-all-steps", "stopped": "stopped-early", "nonfinite": "nonfinite"}


def compute(keys: list[str]) -> dict[str, dict]:
    import xcf
    from xcf.data.phantoms import generate_case

    torch.set_num_threads(2)  # as the pins were taken: torch's reductions depend on it
    pack = xcf.load_pack("phantom")
    out, images = {}, {}
    for key in keys:
        method, *stop, seed, finding = key.split("|")
        if (seed, finding) not in images:
            images[seed, finding] = generate_case(int(seed), findings=[finding], size=224).image
        overrides = {"stop_probability": float(stop[0])} if stop else {}
        if method == "local-exemplar":  # the phantom pack has no bank: 32 phantoms drawn without findings
            overrides["latent"] = _phantom_bank()
        cf = xcf.explain(images[seed, finding], finding, pack=pack, method=method, steps=25, **overrides)
        k = cf.labels.index(finding)
        out[key] = {"p_target": float(cf.probs_counterfactual[k]),
                    "probs": [float(p) for p in cf.probs_counterfactual], "steps": int(cf.steps),
                    "status": {v: k for k, v in STATUS.items()}.get(cf.status, cf.status),
                    "abs_change": float((cf.counterfactual - cf.input).abs().sum()),
                    "cf_mean": float(cf.counterfactual.mean()), "mask_px": int(cf.mask.sum())}
    return out


def _phantom_bank():
    from xcf_autoencoders import ExemplarInpainter

    from xcf.data.phantoms import generate_case

    films = torch.stack([generate_case(920000 + i, findings=[], size=224).image for i in range(32)])
    return ExemplarInpainter(films, input_size=224)


if __name__ == "__main__":
    pins = json.loads(PINS_FILE.read_text())
    if "--write" in sys.argv:  # add the keys given after --write (e.g. a new method's)
        new = sys.argv[sys.argv.index("--write") + 1:]
        pins.update(compute(new))
        PINS_FILE.write_text(json.dumps(pins, indent=1) + "\n")
    else:
        print(json.dumps(compute(list(pins))))
