"""How far a method moves the other findings, measured against the input and against where the
true counterfactual leaves them.

    python benchmarks/off_target.py --n 200 --methods local-fill,local-fill+repair=false

On the first ``--n`` test phantoms (the cases of ``xcf bench counterfactuals``), per method (a
registered name or a variant ``METHOD+KEY=VALUE``), the largest change of another finding's
classifier probability, as a mean over the films:

- *from the input*: the bench's ``off_target_max``, what the default rule reports;
- *from the true counterfactual*: how far the other findings are from where the same phantom drawn
  without the finding leaves them. A finding the classifier reads because of the target finding
  (a consolidation also read as a nodule) falls with it in the true counterfactual; holding it to
  the input's reading is then a change away from the truth, not a smaller one.

The first line is the true counterfactual itself (0 from itself by definition). The oracle takes
no part; this is the classifier's own reading of the other findings.
"""

from __future__ import annotations

import argparse
import sys

import torch


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=40, help="test phantoms (the bench's first N cases)")
    p.add_argument("--methods", default="local-fill", help="methods or variants, comma-separated")
    p.add_argument("--batch", type=int, default=20)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)

    import xcf
    from xcf.bench.counterfactuals import phantom_cases
    from xcf.errors import ConfigError
    from xcf.methods import parse_variant
    from xcf.optimize import classify

    try:  # every method named before any work, so a bad one costs nothing
        methods = [(spec, parse_variant(spec)[0]) for spec in (m.strip() for m in args.methods.split(",")) if spec]
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    pack = xcf.load_pack("phantom")
    cases = phantom_cases(args.n, pack.labels, 224)
    films = [case.load() for case in cases]
    ks = torch.tensor([pack.labels.index(case.target) for case in cases])
    with torch.no_grad():
        p_in = classify(pack.classifier, torch.stack([f[0] for f in films]))
        p_true = classify(pack.classifier, torch.stack([f[2] for f in films]))

    def moved(p: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
        d = (p - ref).abs()
        d[torch.arange(len(ks)), ks] = 0.0
        return d.amax(dim=1)

    print(f"{len(cases)} test phantoms, pack 'phantom': largest change of another finding's probability (mean; "
          "share of films above 0.1)")
    print(f"{'method':32s} {'from the input':>20s} {'from the true counterfactual':>30s}")
    rows = [("true counterfactual", p_true)]
    for spec, method in methods:
        ex = xcf.Explainer(pack=pack, method=method)
        probs = []
        for i in range(0, len(films), args.batch):
            chunk = films[i:i + args.batch]
            probs += [cf.probs_counterfactual for cf in ex.explain([f[0] for f in chunk],
                                                                    [c.target for c in cases[i:i + args.batch]])]
        rows.append((spec, torch.stack([torch.as_tensor(q) for q in probs]).float()))
    for name, p_cf in rows:
        a, b = moved(p_cf, p_in), moved(p_cf, p_true)
        print(f"{name:32s} {a.mean():12.3f} ({(a > 0.1).float().mean():.3f}) {b.mean():22.3f} ({(b > 0.1).float().mean():.3f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
