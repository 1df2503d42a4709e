"""What the pack's inpainter can do when it is given the right region: on test phantoms, the
finding's true mask (grown by ``--dilate`` px, feathered 2 px) is filled, and the classifier, the
independent oracle and the removal score judge the result. This separates the two things a fill
method can get wrong: the region (found from the classifier) and the content (the inpainter).

    python benchmarks/fill_ceiling.py --n 40

Prints one line per finding and one for all: mean classifier p before/after, the share the
classifier calls absent, the share the oracle calls absent (of the films it sees positive; it has
no Nodule), the mean removal (1: the true counterfactual inside the finding), and the largest
change of another finding's classifier probability made by the fill and by the true
counterfactual itself (what a perfect removal moves the other findings by).

On a folder of real films (no true masks) it asks two other questions: does a large fill itself
look like the finding (the first ``--n`` test films *without* it), and can a large fill take it away
(the first ``--n`` *with* it)? Each film gets a central box (the lung fields: rows 30-200, columns
25-200 at 224 px) filled, as drawn, only where the fill is darker than the film, and only where
it is brighter; the classifier and the oracle say how many they call positive.

    python benchmarks/fill_ceiling.py --pack pneumonia --data $PNEUMONIA --n 16
"""

from __future__ import annotations

import argparse
import sys

import torch


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=40, help="test phantoms (the bench's first N cases)")
    p.add_argument("--dilate", type=int, default=4, help="pixels the true mask grows by before the fill")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--pack", default="phantom")
    p.add_argument("--data", help="a folder with labels.csv (real films): the box test")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.data:
        return _box(args)

    import xcf
    from xcf.bench.counterfactuals import _oracle_probs, phantom_cases
    from xcf.methods.parts import feather_mask
    from xcf.metrics import dilate, removal
    from xcf.optimize import classify

    pack = xcf.load_pack(args.pack)
    inp = pack.inpainter
    if inp is None:
        print(f"pack '{args.pack}' has no inpainter (xcf train inpainter ... --role inpainter)", file=sys.stderr)
        return 2
    clf, oracle = pack.classifier, pack.oracle
    per: dict[str, list[tuple[float, ...]]] = {}
    for case in phantom_cases(args.n, pack.labels, inp.input_size):
        x, gt, true_cf = case.load()
        x, gt, true_cf = x[None], gt[None].bool(), true_cf[None]
        m = feather_mask(dilate(gt, args.dilate, "disk").float(), 2.0)
        with torch.no_grad():
            cf = (m * inp.inpaint(x, m) + (1 - m) * x).clamp(0, 1)
            k = pack.labels.index(case.target)
            probs = classify(clf, torch.cat([x, cf, true_cf]))
            moved = (probs[1:] - probs[:1]).abs()
            moved[:, k] = 0
            p_in, p_cf = float(probs[0, k]), float(probs[1, k])
        o_in = float(_oracle_probs(oracle, x, [case.target])[0])
        o_cf = float(_oracle_probs(oracle, cf, [case.target])[0])
        rem = float(removal(cf, x, true_cf, gt)[0])
        per.setdefault(case.target, []).append((p_in, p_cf, o_in, o_cf, rem, float(moved[0].max()),
                                                float(moved[1].max())))
    print(f"true mask + {args.dilate} px, filled by {pack.entry['inpainter']}, {args.n} test phantoms")
    print(f"{'finding':18s} {'n':>3s} {'p in':>6s} {'p fill':>7s} {'absent':>7s} {'oracle absent (seen)':>21s} {'removal':>8s} {'off-target fill / true':>22s}")
    rows = [(k, v) for k, v in per.items()] + [("all", [r for v in per.values() for r in v])]
    for name, rs in rows:
        t = torch.tensor(rs)
        seen = t[:, 2] >= 0.5
        oracle_abs = float((t[seen, 3] < 0.5).float().mean()) if bool(seen.any()) else float("nan")
        print(f"{name:18s} {len(rs):3d} {t[:, 0].mean():6.3f} {t[:, 1].mean():7.3f} "
              f"{(t[:, 1] < 0.5).float().mean():7.3f} {oracle_abs:14.3f} ({int(seen.sum()):2d}) "
              f"{t[:, 4].nanmean():8.3f} {t[:, 5].mean():14.3f} / {t[:, 6].mean():.3f}")
    return 0


def _box(args) -> int:
    import xcf
    from xcf.data import FolderDataset
    from xcf.optimize import classify

    pack = xcf.load_pack(args.pack)
    inp, clf, oracle = pack.inpainter, pack.classifier, pack.oracle
    if inp is None:
        print(f"pack '{args.pack}' has no inpainter (xcf train inpainter ... --role inpainter)", file=sys.stderr)
        return 2
    target = pack.labels[0]
    ds = FolderDataset(args.data, split="test", labels=[target], size=inp.input_size)
    s = inp.input_size / 224
    print(f"the first {args.n} {args.pack} test films without and with {target}, a central box filled by "
          f"{pack.entry['inpainter']}: share called {target} (classifier / oracle)")
    for label in (0, 1):
        x = torch.stack([ds[i][0] for i in range(len(ds)) if ds.targets[i, 0] == label][:args.n])
        box = torch.zeros_like(x)
        box[..., round(30 * s):round(200 * s), round(25 * s):round(200 * s)] = 1
        with torch.no_grad():
            d = box * (inp.inpaint(x, box) - x)
            variants = {"input": x, "box filled": x + d, "darker only": x + d.clamp(max=0),
                        "brighter only": x + d.clamp(min=0)}
            print(f"{'with' if label else 'without'} {target} ({len(x)} films; box {float(box[0].mean()):.2f} of the film)")
            for name, cf in variants.items():
                shares = [float((classify(model, cf)[:, 0] >= 0.5).float().mean()) for model in (clf, oracle)]
                print(f"  {name:14s} {shares[0]:.3f} / {shares[1]:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
