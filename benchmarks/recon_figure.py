"""Reconstructions of a few films by several latent models, side by side, with a zoomed crop.

Each row is one film: the input, then each latent model's ``D(E(x))`` titled with its PSNR and the
classifier's probability for the pack's first finding (input's p in the first title); under each
row, the same columns zoomed into a square crop (``--crop X Y SIDE`` in pixels of the 224-px
image), where grain, blur or lost rib edges show. With DATA the pneumonia data folder (images with
labels.csv):

    python benchmarks/recon_figure.py
        DATA/test/PNEUMONIA/person100_bacteria_475.png DATA/test/NORMAL/IM-0005-0001.png
        --pack pneumonia --out pneumonia-recon.png
        --latents "conv-ae, detail_sigma 2=pneumonia-conv-ae"

An image is a file, or ``phantom:SEED:FINDING`` for the generated phantom of that seed with that
finding alone (``xcf.data.phantoms.generate_case``; titles then give p of that finding), e.g. the
phantom pack's two latent models (docs/figures/phantom-reconstructions.png):

    python benchmarks/recon_figure.py phantom:1003:"Pleural Effusion" phantom:1001:Nodule
        --pack phantom --crop 30 70 64 --out docs/figures/phantom-reconstructions.png
        --latents "segnet-ae=phantom-segnet-ae" "vae (default)=phantom-vae"

A latent is ``TITLE=NAME`` (a manifest entry of ``--weights``, default the shipped folder);
the classifier is the pack's.
"""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch

    import xcf
    from xcf.data.phantoms import generate_case
    from xcf.imageio import load_image
    from xcf.packs import load_component

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("images", nargs="+")
    p.add_argument("--pack", default="pneumonia")
    p.add_argument("--weights", help="weights folder of the pack and the latents (default: the shipped one)")
    p.add_argument("--latents", nargs="+", required=True, metavar="TITLE=NAME")
    p.add_argument("--crop", nargs=3, type=int, default=(120, 60, 64), metavar=("X", "Y", "SIDE"))
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    pack = xcf.load_pack(args.pack, args.weights)
    clf = pack.classifier.eval()
    models = []
    for spec in args.latents:
        title, sep, name = spec.rpartition("=")
        if not sep or not title or not name:
            p.error(f"--latents takes TITLE=NAME, got {spec!r}")
        models.append((title, load_component(name, args.weights).eval()))
    size = clf.input_size
    cx, cy, side = args.crop
    if not (cx >= 0 and cy >= 0 and side > 0 and cx + side <= size and cy + side <= size):
        p.error(f"--crop {cx} {cy} {side} does not fit a {size}-px image")
    lower = [lab.lower() for lab in pack.labels]
    ncol = 1 + len(models)
    fig, axes = plt.subplots(2 * len(args.images), ncol, figsize=(2.6 * ncol, 5.4 * len(args.images)), squeeze=False)
    with torch.no_grad():
        for r, path in enumerate(args.images):
            k = 0  # the probability shown: the pack's first finding, or the phantom's
            if path.startswith("phantom:"):
                _, seed, finding = (path.split(":", 2) + [""])[:3]
                if not seed.isdigit() or finding.lower() not in lower:
                    p.error(f"{path!r}: a phantom is phantom:SEED:FINDING with FINDING one of {', '.join(pack.labels)}")
                k = lower.index(finding.lower())
                x = generate_case(int(seed), [pack.labels[k]], size=size).image.reshape(1, 1, size, size)
            else:
                x = load_image(path, size=size).reshape(1, 1, size, size)
            p_in = torch.sigmoid(clf(x))[0, k].item()
            cols = [("input", x, f"p {p_in:.3f}")]
            for title, lat in models:
                xr = lat.decode(lat.encode(x)).clamp(0, 1)
                psnr = -10 * torch.log10(((xr - x) ** 2).mean()).item()
                p_r = torch.sigmoid(clf(xr))[0, k].item()
                cols.append((title, xr, f"{psnr:.1f} dB, p {p_r:.3f}"))
            for c, (title, img, note) in enumerate(cols):
                a = img[0, 0].numpy()
                top, zoom = axes[2 * r, c], axes[2 * r + 1, c]
                top.imshow(a, cmap="gray", vmin=0, vmax=1)
                top.add_patch(matplotlib.patches.Rectangle((cx, cy), side, side, fill=False, ec="#e8a317", lw=1))
                top.set_title(f"{title}\n{note}", fontsize=8)
                zoom.imshow(a[cy:cy + side, cx:cx + side], cmap="gray", vmin=0, vmax=1, interpolation="nearest")
                zoom.set_title("crop", fontsize=7)
                for ax in (top, zoom):
                    ax.set_xticks([])
                    ax.set_yticks([])
            axes[2 * r, 0].set_ylabel("/".join(path.rsplit("/", 2)[-2:]), fontsize=7)
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
