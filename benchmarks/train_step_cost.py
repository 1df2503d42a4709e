"""What one training step costs per image on this machine, for the models the packs train.

Side by side in one run: a training step (forward, backward, Adam) of ``small-cnn`` with
``stem_stride`` 1 and 2, of the phantom pack's latent models (narrow ``segnet-ae`` and ``vae`` with
``detail_sigma`` 2), of the ``mobilenet-v3-small`` oracles, and the classifier-consistency term an autoencoder's training adds (the frozen
classifier's forward and backward to its input). Synthetic inputs at 224 px; the best of
``--repeats`` timed steps after one warm-up step.

    python benchmarks/train_step_cost.py --threads 2
"""

from __future__ import annotations

import argparse
import sys
import time

import torch


def _time(step, repeats: int) -> float:
    step()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        step()
        best = min(best, time.perf_counter() - t0)
    return best


def main(argv: list[str] | None = None) -> int:
    from xcf.registry import create

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--channels-last", action="store_true",
                   help="also time every training step in channels-last format (xcf train --channels-last)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    x = torch.rand(args.batch_size, 1, 224, 224)
    labels = ["a", "b", "c", "d", "e"]

    def train_step(model, loss_fn, fmt=torch.contiguous_format):
        model.to(memory_format=fmt)
        opt = torch.optim.Adam(model.parameters())
        model.train()
        xf = x.contiguous(memory_format=fmt)

        def step():
            loss = loss_fn(model, xf)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
        return step

    def consistency_step(clf):
        clf.eval()
        for q in clf.parameters():
            q.requires_grad_(False)

        def step():
            xi = x.clone().requires_grad_(True)
            torch.sigmoid(clf(xi)).sum().backward()
        return step

    rows = []
    for stem in (1, 2):
        clf = create("classifier", "small-cnn", labels=labels, stem_stride=stem)
        ms = _time(train_step(clf, lambda m, xf: m(xf).sum()), args.repeats) / len(x) * 1e3
        rows.append((f"small-cnn stem_stride {stem}: training step", ms))
    oracle = create("classifier", "mobilenet-v3-small", labels=labels)
    ms = _time(train_step(oracle, lambda m, xf: m(xf).sum()), args.repeats) / len(x) * 1e3
    rows.append(("mobilenet-v3-small (the oracles): training step", ms))
    for stem in (1, 2):
        clf = create("classifier", "small-cnn", labels=labels, stem_stride=stem)
        ms = _time(consistency_step(clf), args.repeats) / len(x) * 1e3
        rows.append((f"small-cnn stem_stride {stem}: consistency term (forward + backward to x)", ms))
    for name, kw in (("segnet-ae", {"widths": [16, 32, 64, 128, 128], "detail_sigma": 2}),
                     ("vae", {"widths": [16, 32, 64, 128], "detail_sigma": 2})):
        ae = create("latent", name, **kw)
        ms = _time(train_step(ae, lambda m, xf: ((m.decode(m.encode(xf)) - xf) ** 2).mean()), args.repeats)
        rows.append((f"{name} {kw}: training step (pixel loss)", ms / len(x) * 1e3))
    if args.channels_last:
        cl = torch.channels_last
        for stem in (1, 2):
            clf = create("classifier", "small-cnn", labels=labels, stem_stride=stem)
            ms = _time(train_step(clf, lambda m, xf: m(xf).sum(), cl), args.repeats) / len(x) * 1e3
            rows.append((f"small-cnn stem_stride {stem}: training step, channels-last", ms))
        for name, kw in (("segnet-ae", {"widths": [16, 32, 64, 128, 128], "detail_sigma": 2}),
                         ("vae", {"widths": [16, 32, 64, 128], "detail_sigma": 2})):
            ae = create("latent", name, **kw)
            ms = _time(train_step(ae, lambda m, xf: ((m.decode(m.encode(xf)) - xf) ** 2).mean(), cl),
                       args.repeats)
            rows.append((f"{name} {kw}: training step (pixel loss), channels-last", ms / len(x) * 1e3))
    print(f"torch {torch.__version__}, {args.threads} threads, batch {args.batch_size}, best of {args.repeats}")
    print()
    print("| model | ms per image |")
    print("|---|---|")
    for name, ms in rows:
        print(f"| {name} | {ms:.1f} |")
    print()
    print(f"small-cnn training step, stem_stride 1 / 2: {rows[0][1] / rows[1][1]:.1f}x; "
          f"consistency term: {rows[3][1] / rows[4][1]:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
