"""Which other finding the default method moves, film by film.

    python benchmarks/off_target_probe.py

Explains 8 generated phantoms with cardiomegaly and 8 with a pleural effusion (seeds 30000-30007)
with the shipped phantom pack and the default method, and prints, per film, p(target) before and
after, the steps, and the other finding that moved most, before and after.
"""

from __future__ import annotations

import torch

import xcf
from xcf.data.phantoms import generate_case


def main() -> None:
    ex = xcf.Explainer(pack="phantom")
    labels = list(ex.labels)
    for finding in ("Cardiomegaly", "Pleural Effusion"):
        xs = torch.stack([generate_case(s, [finding]).image for s in range(30000, 30008)])
        for cf in ex.explain(xs, [finding] * len(xs)):
            moved = (cf.probs_counterfactual - cf.probs_input).abs()
            moved[labels.index(finding)] = 0
            k = int(moved.argmax())
            print(f"{finding}: p {cf.p_input:.2f} -> {cf.p_counterfactual:.2f}, {cf.steps} steps; "
                  f"most moved: {labels[k]} {float(cf.probs_input[k]):.2f} -> "
                  f"{float(cf.probs_counterfactual[k]):.2f}")


if __name__ == "__main__":
    main()
