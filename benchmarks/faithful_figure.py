"""Side by side, per film: the film, the true counterfactual (phantoms), and the counterfactuals of
several methods, with the classifier's and the independent oracle's probability of the finding.

Each film takes two rows: the images, then the change of each (counterfactual minus film; blue
darker, red brighter, the same scale for every panel). The oracle only judges, after the search.

    python benchmarks/faithful_figure.py --pack phantom --out docs/figures/faithful-phantoms.png
    python benchmarks/faithful_figure.py --pack pneumonia --data DATA --out docs/figures/faithful-pneumonia.png
"""

from __future__ import annotations

import argparse
import sys

import torch


def _films(args, pack, size):
    if args.pack == "phantom":
        from xcf.data.phantoms import generate_case
        from xcf.train import phantom_test_seed

        # the first test phantom of each of four findings the oracle sees (it does not see nodules)
        for i, finding in enumerate(("Cardiomegaly", "Pleural Effusion", "Consolidation", "Pneumothorax")):
            seed = phantom_test_seed((0, 1, 2, 4)[i])
            case = generate_case(seed, findings=[finding], size=size)
            yield f"phantom {seed}", finding, case.image[None], case.counterfactual(finding)[None]
        return
    from xcf.bench.counterfactuals import folder_cases

    # the first N test films that show the finding, in the data set's order (as the bench takes them)
    for case in folder_cases(args.data, pack.labels[0], pack.labels, size, split="test")[:args.n]:
        x, _, _ = case.load()
        yield case.case_id, pack.labels[0], x[None], None


def main(argv: list[str] | None = None) -> int:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    import xcf
    from xcf.errors import ConfigError
    from xcf.methods import parse_variant

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--pack", default="phantom")
    p.add_argument("--data", help="folder with labels.csv (pneumonia)")
    p.add_argument("--n", type=int, default=4, help="films (pneumonia: the first N of the test split)")
    p.add_argument("--methods", default="seed,local-in-mask,local-fill",
                   help="registered methods or variants METHOD+KEY=VALUE, comma-separated")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    if args.pack != "phantom" and not args.data:
        p.error("--data is required for a pack other than phantom")
    if args.threads:
        torch.set_num_threads(args.threads)
    pack = xcf.load_pack(args.pack)
    size = pack.latent.input_size
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    try:  # every method named before any work, so a bad one costs nothing
        built = {m: parse_variant(m)[0] for m in methods}
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    films = list(_films(args, pack, size))
    cols = 2 + len(methods)
    fig, axes = plt.subplots(2 * len(films), cols, figsize=(2.4 * cols, 2.5 * 2 * len(films)))
    oracle = pack.oracle

    def p_oracle(x, k):
        with torch.no_grad():
            return float(torch.sigmoid(oracle(x.float()))[0, k])

    for i, (name, finding, x, true) in enumerate(films):
        k = pack.labels.index(finding)
        top, bottom = axes[2 * i], axes[2 * i + 1]
        top[0].imshow(x[0, 0], cmap="gray", vmin=0, vmax=1)
        top[0].set_title(f"{finding}\n{name}\noracle {p_oracle(x, k):.2f}", fontsize=7)
        if true is not None:
            top[1].imshow(true[0, 0], cmap="gray", vmin=0, vmax=1)
            top[1].set_title(f"true counterfactual\noracle {p_oracle(true, k):.2f}", fontsize=7)
            bottom[1].imshow((true - x)[0, 0], cmap="bwr", vmin=-0.3, vmax=0.3)
        else:
            top[1].text(0.5, 0.5, "no true\ncounterfactual", ha="center", va="center", fontsize=7)
        for j, m in enumerate(methods):
            cf = xcf.explain(x, finding, pack=pack, method=built[m])
            c = cf.counterfactual[None]
            top[2 + j].imshow(c[0, 0], cmap="gray", vmin=0, vmax=1)
            top[2 + j].set_title(f"{m}\nclassifier {cf.p_counterfactual:.2f}, oracle {p_oracle(c, k):.2f}",
                                 fontsize=7)
            bottom[2 + j].imshow((c - x)[0, 0], cmap="bwr", vmin=-0.3, vmax=0.3)
            print(f"{name} {finding} {m}: p {cf.p_input:.3f} -> {cf.p_counterfactual:.3f}, "
                  f"oracle {p_oracle(x, k):.3f} -> {p_oracle(c, k):.3f}, {cf.steps} steps", flush=True)
        bottom[0].text(0.5, 0.5, "change:\nblue darker,\nred brighter\n(±0.3)", ha="center", va="center",
                       fontsize=7)
    for ax in axes.flat:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(args.out, dpi=90)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
