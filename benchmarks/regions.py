"""How precise is each saliency method's *region* (the part of the film a counterfactual may change)?

On the phantom test cases (the same cases as ``xcf bench counterfactuals``: case ``i`` shows one
finding, cycling over the five), for each saliency method and each threshold ``t``, the region
``saliency > t`` is compared with the finding's true mask:

- ``area``: the region's share of the film;
- ``near``: the share of the region within 8 px of the finding (the true mask dilated by 8 px, as in
  ``share_in_gt_dilated_l1``). A counterfactual confined to the region can put at most about this
  share of its change near the finding;
- ``covers``: the share of the finding's true mask inside the region;
- and ``near`` for the top 1 / 2 / 4 / 8 % of pixels.

It explains why ``preset("local")`` takes its region from the smoothed input gradient
(``saliency``) and not from Grad-CAM++. The timing column is the saliency
computation for all images (this machine, ``--threads``).

    python benchmarks/regions.py --n 60
    python benchmarks/regions.py --n 20 --methods integrated-gradients,saliency
"""

from __future__ import annotations

import argparse
import sys
import time

import torch


def main(argv: list[str] | None = None) -> int:
    import xcf
    from xcf.bench.counterfactuals import phantom_cases
    from xcf.metrics import dilate
    from xcf.optimize import resize_to
    from xcf.registry import create

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--pack", default="phantom")
    p.add_argument("--n", type=int, default=60, help="phantom test cases (default 60)")
    p.add_argument("--methods", default="gradcam++,gradcam,hirescam,saliency,integrated-gradients",
                   help="comma-separated saliency methods")
    p.add_argument("--thresholds", default="0.9,0.8,0.7,0.6,0.5,0.35,0.2")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--cam-block", type=int,
                   help="CAM-family methods on this block of a small-cnn classifier (default: its "
                        "cam_layer(), the last block, 14x14 at 224 px; -2: 28x28, -3: 56x56)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    pack = xcf.load_pack(args.pack)
    clf = pack.classifier.eval()
    if args.cam_block is not None:
        block = clf.blocks[args.cam_block]
        clf.cam_layer = lambda: block
    size = pack.latent.input_size
    cases = phantom_cases(args.n, pack.labels, size)
    xs, gts, targets = [], [], []
    for c in cases:
        x, gt, _ = c.load()
        xs.append(x)
        gts.append(gt)
        targets.append(list(pack.labels).index(c.target))
    x = torch.stack(xs)
    gt = torch.stack(gts).bool()
    t = torch.tensor(targets)
    near_region = dilate(gt, 8)
    print(f"pack {args.pack}, {args.n} phantom test cases; true region {gt.float().mean():.3f} of the "
          f"film, within 8 px of it {near_region.float().mean():.3f}")
    print()
    print("| saliency | s (all images) | threshold | area | near (mean) | near (median) | covers |")
    print("|---|---|---|---|---|---|---|")
    tops = []
    for name in [m.strip() for m in args.methods.split(",") if m.strip()]:
        method = create("saliency", name)
        t0 = time.perf_counter()
        sal = torch.cat([method(clf, resize_to(x[i:i + args.batch_size], clf.input_size),
                                t[i:i + args.batch_size])
                         for i in range(0, len(x), args.batch_size)])
        seconds = time.perf_counter() - t0
        sal = resize_to(sal.float(), size).clamp(0, 1)
        for level in (float(v) for v in args.thresholds.split(",")):
            m = sal > level
            inside = m.flatten(1).sum(1).clamp_min(1).float()
            near = (m & near_region).flatten(1).sum(1) / inside
            covers = (m & gt).flatten(1).sum(1) / gt.flatten(1).sum(1).clamp_min(1)
            print(f"| {name} | {seconds:.1f} | > {level} | {m.float().mean():.3f} | {near.mean():.2f} | "
                  f"{near.median():.2f} | {covers.float().mean():.2f} |")
        flat = sal.flatten(1)
        row = [name]
        for frac in (0.01, 0.02, 0.04, 0.08):
            k = max(1, int(frac * flat.shape[1]))
            top = (flat >= flat.topk(k, dim=1).values[:, -1:]).view_as(gt)
            row.append(f"{((top & near_region).flatten(1).sum(1) / top.flatten(1).sum(1)).mean():.2f}")
        tops.append(row)
    print()
    print("| saliency | near, top 1 % | top 2 % | top 4 % | top 8 % |")
    print("|---|---|---|---|---|")
    for row in tops:
        print("| " + " | ".join(row) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
