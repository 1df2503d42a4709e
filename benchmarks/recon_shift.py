"""Reconstruction quality of a pack's latent model, measured against the pack's own classifier.

`xcf train autoencoder` measures the shift |p(x) - p(D(E(x)))| against the classifier given at
training time; when the pack's classifier is retrained later, this re-measures the pair as shipped:
MSE, PSNR, SSIM and the shift (mean, median, max; per finding; per finding on the images that have it
and on those that do not) on the pack's held-out images (the 500 test phantoms, or a labels.csv
folder's test split).

    python benchmarks/recon_shift.py --pack phantom
    python benchmarks/recon_shift.py --pack pneumonia --data DATA   # DATA: images with labels.csv

Any pair from a weights folder (e.g. a candidate trained into a scratch folder) with
`--weights DIR --classifier NAME --latent NAME` (names of manifest entries; either may be left to the
pack's). It also prints the classifier's `degradation_shift`: how far a 1-px Gaussian blur or noise
of standard deviation 0.02 moves it, a floor under what any reconstruction can reach.
`--detail-sigma S` measures the latent model wrapped in `xcf_autoencoders.DetailLatent` (the
input's detail finer than a Gaussian of S px passed around the bottleneck, without retraining):

    python benchmarks/recon_shift.py --pack phantom --detail-sigma 2
"""

from __future__ import annotations

import argparse
import json
import sys

import torch


def main(argv: list[str] | None = None) -> int:
    import xcf
    from xcf.data import FolderDataset
    from xcf.data.phantoms import PhantomDataset
    from xcf.packs import load_component
    from xcf.train.trainer import (
        PHANTOM_TEST_SEED,
        _stack,
        degradation_shift,
        reconstruction_metrics,
    )

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--pack", default="phantom")
    p.add_argument("--data", default="phantom", help="'phantom' (the 500 test phantoms) or a labels.csv folder")
    p.add_argument("--weights", help="weights folder of the pack and of --classifier / --latent (default: the shipped one)")
    p.add_argument("--classifier", help="manifest entry of the classifier (default: the pack's)")
    p.add_argument("--latent", help="manifest entry of the latent model (default: the pack's)")
    p.add_argument("--detail-sigma", type=float, default=0.0,
                   help="wrap the latent model in DetailLatent with this sigma (px; default 0: as it is)")
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    pack = xcf.load_pack(args.pack, args.weights)
    classifier = load_component(args.classifier, args.weights) if args.classifier else pack.classifier
    latent = load_component(args.latent, args.weights) if args.latent else pack.latent
    if args.detail_sigma:
        from xcf_autoencoders import DetailLatent

        latent = DetailLatent(latent, args.detail_sigma)
    size = latent.input_size
    if args.data == "phantom":
        ds = PhantomDataset(500, seed=PHANTOM_TEST_SEED, size=size)
    else:
        ds = FolderDataset(args.data, labels=list(pack.labels), split="test", size=size)
    x, y = _stack(ds, desc="test")
    m = reconstruction_metrics(latent, x, torch.device("cpu"), classifier, truth=y)
    m["classifier_degradation_shift"] = degradation_shift(classifier, x)
    m.update(pack=args.pack, classifier=args.classifier or pack.entry["classifier"],
             latent=args.latent or pack.entry["latent"], weights=args.weights or "shipped",
             detail_sigma=args.detail_sigma, data=args.data, n_test=len(x), labels=list(pack.labels))
    print(json.dumps(m, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
