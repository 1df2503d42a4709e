"""One film explained under several settings, the figures stacked into one PNG.

Each variant is a preset with optional overrides, as in benchmarks/perf.py (``fast``,
``local+saliency=gradcam+++lr=0.1``: a ``+`` starts an override where ``KEY=`` follows it;
values read as JSON where they parse), separated by commas. For example, with DATA the pneumonia
data folder (images with labels.csv):

    python benchmarks/compare_figure.py DATA/test/PNEUMONIA/person100_bacteria_475.png
        --pack pneumonia --target pneumonia --out compare.png --variants
        "fast,local+saliency=gradcam+++lr=0.1+blend=input+region_fallback=null+classification_loss=mse"

Each row is the figure ``Counterfactual.figure()`` draws, headed by its variant; the script
prints the input's and the counterfactual's probability and the steps of each.
"""

from __future__ import annotations

import argparse
import io
import sys
from types import SimpleNamespace


def main(argv: list[str] | None = None) -> int:
    import matplotlib

    matplotlib.use("Agg")
    import torch
    from PIL import Image, ImageDraw

    import xcf
    from xcf.bench.perf import split_variants, variant_config

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("image")
    p.add_argument("--pack", default="phantom")
    p.add_argument("--target", required=True)
    p.add_argument("--variants", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    opts = SimpleNamespace(steps=200, batch_size=1, device="cpu")
    panels = []
    for variant in split_variants(args.variants):
        cfg = variant_config(variant, opts)
        res = xcf.explain(args.image, args.target, pack=args.pack, config=cfg)
        print(f"{variant}: p {res.p_input:.3f} -> {res.p_counterfactual:.3f}, "
              f"{int(res.to_dict().get('steps', 0))} steps")
        fig = res.figure()
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=100)
        buf.seek(0)
        im = Image.open(buf).convert("RGB")
        head = Image.new("RGB", (im.width, 28), "white")
        ImageDraw.Draw(head).text((10, 8), f"settings: {variant}", fill="black")
        panels.append((head, im))
    width = max(im.width for _, im in panels)
    height = sum(h.height + im.height for h, im in panels)
    out = Image.new("RGB", (width, height), "white")
    y = 0
    for head, im in panels:
        out.paste(head, (0, y))
        out.paste(im, (0, y + head.height))
        y += head.height + im.height
    out.save(args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
