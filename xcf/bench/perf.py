"""Speed benchmark: the seed's loop vs xcf's defaults vs xcf's fastest settings, side by side.

In one run, on the same models and images:

- ``seed-loop``: an independent re-implementation of the seed notebook's loop: one image at a time,
  ``torch.optim.Adam`` on the latent, 200 steps, no early stopping, saliency Grad-CAM++ and the
  seed's loss (nothing shared with :mod:`xcf.optimize` except the models);
- ``xcf-default``: :class:`xcf.Explainer` with method ``seed`` (the seed's method), batched;
- ``xcf-fast``: method ``fast``, batched;
- any other registered method given with ``--variants``, with overrides after ``+``
  (``fast+lr=0.3+region__level_steps=10``: :class:`xcf.ExplainConfig` fields, or a method's
  fields as :meth:`xcf.methods.Method.replace` takes them): the way to try a setting before it
  becomes a method.

Each variant runs in its own subprocess so that its peak resident memory (``ru_maxrss``) is its
own; on CUDA the peak allocated GPU memory is reported too, and images per second at batch sizes
1, 16 and 64 (``--gpu-batches``). Printed per variant: median seconds per explanation, median steps,
validity (p < 0.5), L1 and squared share of the change inside the saliency mask (Grad-CAM++ > 0.5,
the seed's region, for every variant, whatever region the variant used itself), and the ratio of
the seed loop's median seconds to the variant's.

Usage::

    python benchmarks/perf.py --pack pneumonia --data DATA --n 8
    python benchmarks/perf.py --seed-sizes --data random --n 2   # DenseNet-121 + full segnet-ae, 224 px
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import resource
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

__all__ = ["machine", "main", "seed_loop", "split_variants"]


def _seed_masks(classifier: Any, x: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The seed's region: Grad-CAM++ of the classifier on ``x`` > 0.5, bool, at ``x``'s size."""
    import torch.nn.functional as F

    from xcf.registry import create

    size = classifier.input_size
    xc = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True) \
        if x.shape[-1] != size else x
    sal = create("saliency", "gradcam++")(classifier, xc, torch.as_tensor(targets))
    if sal.shape[-1] != x.shape[-1]:
        sal = F.interpolate(sal, size=x.shape[-2:], mode="bilinear", align_corners=False)
    return sal > 0.5


def seed_loop(classifier, latent, x: torch.Tensor, target: int, steps: int = 200) -> dict[str, Any]:
    """The seed's loop for one image ``(1, 1, S, S)``; returns the counterfactual and timings."""
    import torch.nn.functional as F

    t0 = time.perf_counter()
    classifier.eval()
    latent.eval()
    for p in list(classifier.parameters()) + list(latent.parameters()):
        p.requires_grad_(False)
    size = classifier.input_size

    def probs(img):
        if img.shape[-1] != size:
            img = F.interpolate(img, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
        return torch.sigmoid(classifier(img))

    mask = _seed_masks(classifier, x, torch.tensor([target])).float()
    with torch.no_grad():
        lat = latent.encode(x)
        x0 = latent.decode(lat)
        t = probs(x0).clone()
    p_in = float(probs(x).detach()[0, target])
    t[0, target] = 0.0
    z = lat.z.clone().requires_grad_(True)
    opt = torch.optim.Adam([z], lr=0.1)
    w = 1e5 * (1 - mask) + mask
    for _ in range(steps):
        opt.zero_grad()
        xd = latent.decode(type(lat)(z, lat.aux))
        loss = ((xd - x0) ** 2 * w).mean() + 1e3 * F.mse_loss(probs(xd), t)
        loss.backward()
        opt.step()
    with torch.no_grad():
        xcf_ = latent.decode(type(lat)(z, lat.aux))
        p_cf = float(probs(xcf_)[0, target])
    return {"counterfactual": xcf_, "reconstruction": x0, "mask": mask.bool(), "p_input": p_in,
            "p_cf": p_cf, "steps": steps, "seconds": time.perf_counter() - t0}


def _models(args, method: Any = None) -> tuple[Any, Any, str]:
    """``(classifier, latent model, description)``; with a pack, the model ``method`` searches
    with (:meth:`xcf.packs.Pack.latent_for`: the inpainter for ``local-fill``)."""
    import xcf
    from xcf.registry import create

    if args.seed_sizes:
        torch.manual_seed(0)
        clf = create("classifier", "densenet121", labels=["Cardiomegaly", "Edema", "Consolidation",
                                                          "Atelectasis", "Pleural Effusion"])
        lat = create("latent", "segnet-ae")
        return clf, lat, "DenseNet-121 (7.0 M) + segnet-ae 64-512 (29.5 M), 224 px, UNTRAINED (random init, seed 0)"
    pack = xcf.load_pack(args.pack)
    n_c = sum(p.numel() for p in pack.classifier.parameters()) / 1e6
    n_l = sum(p.numel() for p in pack.latent.parameters()) / 1e6
    lat = pack.latent if method is None else pack.latent_for(method)
    return pack.classifier, lat, f"pack '{args.pack}' (classifier {n_c:.2f} M + latent {n_l:.2f} M params)"


def _images(args, S: int) -> tuple[torch.Tensor, list[int]]:
    """Images the classifier calls positive (p > 0.5) for the target, from the pack's data."""
    if args.seed_sizes or args.data == "random":
        g = torch.Generator().manual_seed(0)
        return torch.rand(args.n, 1, S, S, generator=g), [0] * args.n
    if args.data == "phantom":
        from xcf.data.phantoms import FINDINGS, generate_case
        from xcf.train import phantom_test_seed

        xs, ts = [], []
        for i in range(args.n):
            f = FINDINGS[i % len(FINDINGS)]
            xs.append(generate_case(phantom_test_seed(i), findings=[f], size=S).image)
            ts.append(FINDINGS.index(f))
        return torch.stack(xs), ts
    from xcf.data import FolderDataset

    ds = FolderDataset(args.data, split="test", labels=[args.target], size=S)
    idx = [i for i in range(len(ds)) if ds.targets[i, 0] == 1][: args.n]
    return torch.stack([ds[i][0] for i in idx]), [0] * len(idx)


def _run_variant(args, variant: str, queue) -> None:
    torch.set_num_threads(args.threads)
    import xcf
    from xcf.metrics import share_inside

    method, config = (None, None) if variant == "seed-loop" else variant_config(variant, args)
    clf, lat, desc = _models(args, method)
    x, targets = _images(args, lat.input_size)
    rows = []
    if variant == "seed-loop":
        for i in range(len(x)):
            r = seed_loop(clf, lat, x[i:i + 1], targets[i], steps=args.steps)
            d = {"seconds": r["seconds"], "steps": r["steps"], "valid": r["p_cf"] < 0.5,
                 "share_l1": float(share_inside(r["counterfactual"], r["reconstruction"], r["mask"], 1)[0]),
                 "share_l2": float(share_inside(r["counterfactual"], r["reconstruction"], r["mask"], 2)[0]),
                 "p_cf": r["p_cf"]}
            rows.append(d)
    else:
        ex = xcf.Explainer(classifier=clf, latent=lat, method=method, config=config)
        tgt = [clf.labels[t] for t in targets]
        t0 = time.perf_counter()
        res = ex.explain(x, tgt)
        wall = time.perf_counter() - t0
        # locality in the seed loop's own region (Grad-CAM++ of the input > 0.5) for every variant,
        # not the variant's region, which its saliency method, region growth or pruning may change
        ref = _seed_masks(clf, torch.stack([cf.input for cf in res]), targets)
        for cf, mask in zip(res, ref):
            rows.append({"seconds": wall / len(res), "steps": cf.steps, "valid": cf.p_counterfactual < 0.5,
                         "share_l1": float(share_inside(cf.counterfactual[None], cf.reconstruction[None],
                                                        mask[None], 1)[0]),
                         "share_l2": float(share_inside(cf.counterfactual[None], cf.reconstruction[None],
                                                        mask[None], 2)[0]),
                         "p_cf": cf.p_counterfactual})
    out = {"variant": variant, "models": desc, "n": len(rows), "rows": rows,
           "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    if args.device != "cpu" and torch.cuda.is_available():
        out["gpu_peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
    queue.put(out)


def variant_config(variant: str, args):
    """``(method, config)`` of a variant: ``xcf-default`` (method seed, ``--steps``), ``xcf-fast``
    (method fast) or any registered method, with optional overrides after ``+``:
    ``fast+lr=0.3+region__level_steps=10`` (values read as JSON where they parse, else as strings;
    :class:`xcf.ExplainConfig` fields go to the config, the others to
    :meth:`xcf.methods.Method.replace`). A ``+`` starts an override only where ``KEY=`` follows it,
    so values may hold ``+``: ``local+region__saliency=gradcam+++lr=0.1``."""
    import xcf
    from xcf.methods import parse_variant

    name = variant.split("+", 1)[0]
    spec = {"xcf-default": "seed", "xcf-fast": "fast"}.get(name, name) + variant[len(name):]
    shared = frozenset(xcf.ExplainConfig.model_fields)
    method, over = parse_variant(spec, keep=shared)
    if method.name == spec and spec != variant:
        method = method.replace(name=variant)
    name = spec.split("+", 1)[0]
    steps = args.steps if name == "seed" else method.steps
    cfg = {"steps": steps, "device": args.device,
           **({} if args.batch_size is None else {"batch_size": args.batch_size}),
           **over}
    return method, xcf.ExplainConfig.build(**cfg)


def _gpu_throughput(args) -> list[dict[str, Any]]:
    """Explanations per second on CUDA at each ``--gpu-batches`` size, ``--steps`` fixed steps (no
    early stopping, so the number measures the work, not how soon images flip), in fp32 and with
    bf16 autocast + channels_last."""
    import xcf

    clf, lat, _ = _models(args)
    out = []
    seed = xcf.get_method("seed")
    for opts in ({}, {"execution__autocast_bf16": True, "execution__channels_last": True}):
        for bs in args.gpu_batches:
            x = torch.rand(bs, 1, lat.input_size, lat.input_size)
            ex = xcf.Explainer(classifier=clf, latent=lat, method=seed.replace(**opts),
                               config=xcf.ExplainConfig(batch_size=bs, device="cuda", steps=args.gpu_steps))
            ex.explain(x[:1], [0])  # warm-up
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            t0 = time.perf_counter()
            ex.explain(x, [0] * bs)
            torch.cuda.synchronize()
            dt = time.perf_counter() - t0
            out.append({"batch": bs, "precision": "bf16+channels_last" if opts else "fp32",
                        "images_per_s": bs / dt, "ms_per_step": 1000 * dt / max(args.gpu_steps, 1),
                        "gpu_peak_mb": torch.cuda.max_memory_allocated() / 2**20})
    return out


def split_variants(spec: str) -> list[str]:
    """``--variants`` split at the commas outside brackets, so that a list value stays whole:
    ``"seed-loop,fast+region__levels=[0.35,0.2]"`` is two variants."""
    out, depth, cur = [], 0, ""
    for ch in spec:
        depth += {"[": 1, "(": 1, "{": 1, "]": -1, ")": -1, "}": -1}.get(ch, 0)
        if ch == "," and depth == 0:
            out.append(cur)
            cur = ""
        else:
            cur += ch
    out.append(cur)
    return [v.strip() for v in out if v.strip()]


def _in_subprocess(ctx, args, variant: str) -> dict[str, Any]:
    """Run one variant in its own process (so that its peak RSS is its own) and return its result."""
    q = ctx.Queue()
    proc = ctx.Process(target=_run_variant, args=(args, variant, q))
    proc.start()
    res = None
    while res is None:
        try:
            res = q.get(timeout=5)
        except Exception:  # queue.Empty: a child that died must not hang the benchmark
            if not proc.is_alive():
                raise RuntimeError(f"exited with code {proc.exitcode} without a result") from None
    proc.join()
    return res


def machine() -> str:
    """One line naming what the numbers were measured on: CPU model, cores, whether it has bf16
    instructions (what ``autocast_bf16="auto"`` follows), the GPU if any, torch's version."""
    import os
    import platform

    from xcf.optimize import bf16_is_fast

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            names = [ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    gpu = f"; GPU {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ""
    return (f"Machine: {cpu}, {os.cpu_count()} cores, bf16 instructions {'yes' if bf16_is_fast(torch.device('cpu')) else 'no'}"
            f"{gpu}; torch {torch.__version__}")


def _med(vals):
    vals = [v for v in vals if v is not None]
    return statistics.median(vals) if vals else float("nan")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="benchmarks/perf.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--pack", default="pneumonia")
    p.add_argument("--seed-sizes", action="store_true", help="DenseNet-121 + full-width segnet-ae (untrained)")
    p.add_argument("--data", required=True,
                   help="folder with labels.csv (test split, e.g. the Kermany pneumonia films at "
                        "224 px), 'phantom' or 'random'")
    p.add_argument("--target", default="pneumonia")
    p.add_argument("--n", type=int, default=8, help="images")
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--batch-size", type=int, default=None,
                   help="batch size of every xcf variant (default: each config's own, 'auto': 8 on "
                        "a CPU, 16 on a GPU); a variant's own batch_size=... wins")
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--device", default="cpu")
    p.add_argument("--variants", default="seed-loop,xcf-default,xcf-fast")
    p.add_argument("--gpu-batches", type=int, nargs="*", default=[1, 16, 64])
    p.add_argument("--gpu-steps", type=int, default=200, help="fixed steps for the GPU throughput table")
    p.add_argument("--out", help="write the table (Markdown) and raw rows (JSON) here")
    p.add_argument("--in-process", action="store_true",
                   help="run the variants one after another in this process (quicker sweeps; the "
                        "peak RSS column is then cumulative)")
    args = p.parse_args(argv)
    ctx = mp.get_context("spawn")
    variants = split_variants(args.variants)
    for variant in variants:  # every variant's settings checked before anything runs
        if variant != "seed-loop":
            variant_config(variant, args)
    results, failed = [], []
    for variant in variants:
        t0 = time.perf_counter()
        try:
            if args.in_process:
                import queue as _queue

                q = _queue.Queue()
                _run_variant(args, variant, q)
                res = q.get()
            else:
                res = _in_subprocess(ctx, args, variant)
        except Exception as exc:  # one variant failing must not lose the others' measurements
            failed.append(f"{variant}: {type(exc).__name__}: {exc}".splitlines()[0])
            print(f"{variant}: FAILED ({failed[-1]})", file=sys.stderr, flush=True)
            continue
        res["wall"] = time.perf_counter() - t0
        results.append(res)
        print(f"{variant}: done in {res['wall']:.0f} s", file=sys.stderr, flush=True)
    if not results:
        raise SystemExit("every variant failed: " + "; ".join(failed))
    base = _med([r["seconds"] for r in results[0]["rows"]])
    lines = [f"Models: {results[0]['models']}; {results[0]['n']} images; device {args.device}; "
             f"torch threads {args.threads}; command: python benchmarks/perf.py {' '.join(argv or sys.argv[1:])}",
             "", machine(), "",
             "| variant | median s / explanation | speed-up vs seed loop | median steps | validity | L1 share in mask (median) | squared share in mask (median) | peak RSS MB |",
             "|---|---|---|---|---|---|---|---|"]
    for r in results:
        med = _med([x["seconds"] for x in r["rows"]])
        val = sum(bool(x["valid"]) for x in r["rows"]) / max(len(r["rows"]), 1)
        lines.append(f"| {r['variant']} | {med:.2f} | {base / med:.1f}x | {_med([x['steps'] for x in r['rows']]):.0f} | "
                     f"{val:.2f} | {_med([x['share_l1'] for x in r['rows']]):.3f} | "
                     f"{_med([x['share_l2'] for x in r['rows']]):.3f} | {r['maxrss_mb']:.0f} |")
    if failed:
        lines += ["", "Failed variants (no measurement): " + "; ".join(failed)]
    if args.device != "cpu" and torch.cuda.is_available() and args.gpu_batches:
        lines += ["", f"GPU ({torch.cuda.get_device_name()}), {args.gpu_steps} fixed steps per explanation "
                  "(no early stopping), explanation time including saliency and encoding:", "",
                  "| batch | precision | explanations/s | ms per step (whole batch) | GPU peak MB |",
                  "|---|---|---|---|---|"]
        for g in _gpu_throughput(args):
            lines.append(f"| {g['batch']} | {g['precision']} | {g['images_per_s']:.1f} | "
                         f"{g['ms_per_step']:.1f} | {g['gpu_peak_mb']:.0f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
        out.with_suffix(".json").write_text(json.dumps(results, indent=1, default=float))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
