"""Reconstruction quality of a pack's latent model, measured against the pack's own classifier.

`xcf train autoencoder` measures the shift |p(x) - p(D(E(x)))| against the classifier given at
training time; when the pack's classifier is retrained later, this re-measures the pair as shipped:
MSE, PSNR, SSIM and the shift (mean, median, max; per finding) on the pack's held-out images (the
500 test phantoms, or a labels.csv folder's test split).

    python benchmarks/recon_shift.py --pack phantom
    python benchmarks/recon_shift.py --pack pneumonia --data ../shared/data/kermany-pneumonia-224
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
    from xcf.train import PHANTOM_TEST_SEED, _stack, reconstruction_metrics

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--pack", default="phantom")
    p.add_argument("--data", default="phantom", help="'phantom' (the 500 test phantoms) or a labels.csv folder")
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    pack = xcf.load_pack(args.pack)
    size = pack.latent.input_size
    if args.data == "phantom":
        ds = PhantomDataset(500, seed=PHANTOM_TEST_SEED, size=size)
    else:
        ds = FolderDataset(args.data, labels=list(pack.labels), split="test", size=size)
    x, _ = _stack(ds, desc="test")
    m = reconstruction_metrics(pack.latent, x, torch.device("cpu"), pack.classifier)
    m.update(pack=args.pack, data=args.data, n_test=len(x), labels=list(pack.labels))
    print(json.dumps(m, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
