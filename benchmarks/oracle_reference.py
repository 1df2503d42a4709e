"""What the independent oracle says of films that really are without the finding: the reference
for the benchmark's *oracle agrees* column. A counterfactual cannot be expected to convince the
oracle more often than a real film without the finding does.

On phantoms (default): the true counterfactual of each of the first ``--n`` test phantoms (the same
phantom drawn without its finding), among those whose input the oracle sees (p >= 0.5; it has no
Nodule), per finding and for all.

On a folder of real films (``--data``): the films of ``--split`` without the pack's finding, and,
where the pack has one, the films of its exemplar bank (films of the training split without the
finding that the oracle was not trained on: the content of ``local-exemplar``), the first ``--n``.

Prints a markdown table: how many films, and the share the classifier and the oracle call
without the finding (p < 0.5). With ``--explain N`` (a folder and a pack with a bank) it also runs
``local-exemplar`` on the first N films of ``--split`` *with* the finding twice, with the pack's bank
and with a bank of ``--split``'s own films without it: whether the oracle agrees because the
content is without the finding, or because it comes from the training split.

    python benchmarks/oracle_reference.py --n 200
    python benchmarks/oracle_reference.py --pack pneumonia --data $PNEUMONIA --n 1000 --explain 202
"""

from __future__ import annotations

import argparse
import sys

import torch


def _absent(model, x: torch.Tensor, k: int) -> torch.Tensor:
    from xcf.optimize import classify

    with torch.no_grad():
        return torch.cat([classify(model, x[i:i + 32])[:, k] for i in range(0, len(x), 32)]) < 0.5


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=200, help="test phantoms, or at most this many films per row")
    p.add_argument("--pack", default="phantom")
    p.add_argument("--data", help="a folder with labels.csv (real films)")
    p.add_argument("--split", default="test", help="the split of --data whose films without the finding are judged")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--explain", type=int, default=0, metavar="N",
                   help="with --data: local-exemplar on the first N films with the finding, with either bank")
    args = p.parse_args(argv)
    if args.n < 1:
        print(f"--n must be at least 1, got {args.n}", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    import xcf

    pack = xcf.load_pack(args.pack)
    if pack.oracle is None:
        print(f"pack '{args.pack}' has no oracle; nothing to measure", file=sys.stderr)
        return 2
    print(f"pack `{args.pack}`, oracle `{pack.entry['oracle']}`: films without the finding, and the share each "
          "model calls without it (p < 0.5)\n")
    print("| films | n | classifier: absent | oracle: absent |")
    print("|---|---|---|---|")
    return _folder(args, pack) if args.data else _phantoms(args, pack)


def _phantoms(args, pack) -> int:
    from xcf.bench.counterfactuals import phantom_cases

    size = pack.latent.input_size
    per: dict[str, list[tuple[bool, bool, bool]]] = {}
    for case in phantom_cases(args.n, pack.labels, size):
        x, _, true_cf = case.load()
        k = pack.labels.index(case.target)
        o_labels = [lab.casefold() for lab in pack.oracle.labels]
        if case.target.casefold() not in o_labels:
            continue
        ko = o_labels.index(case.target.casefold())
        both = torch.stack([x, true_cf])
        seen = not bool(_absent(pack.oracle, both[:1], ko)[0])
        per.setdefault(case.target, []).append(
            (seen, bool(_absent(pack.classifier, both[1:], k)[0]), bool(_absent(pack.oracle, both[1:], ko)[0])))
    rows = [*per.items(), ("all", [r for v in per.values() for r in v])]
    for name, rs in rows:
        seen = [r for r in rs if r[0]]
        if not seen:
            continue
        clf = sum(r[1] for r in seen) / len(seen)
        orc = sum(r[2] for r in seen) / len(seen)
        print(f"| true counterfactuals, {name} (oracle sees the input) | {len(seen)} | {clf:.3f} | {orc:.3f} |")
    return 0


def _folder(args, pack) -> int:
    from xcf.data import FolderDataset

    target = pack.labels[0]
    size = pack.latent.input_size
    ds = FolderDataset(args.data, split=args.split, labels=[target], size=size, check_files=False)
    rows = [i for i in range(len(ds)) if float(ds.targets[i, 0]) == 0][:args.n]
    if not rows:
        print(f"{args.data}: no film of split {args.split!r} without {target!r}", file=sys.stderr)
        return 2
    x = torch.stack([ds[i][0] for i in rows])
    sets = [(f"{args.split} split, without {target}", x)]
    if pack.entry.get("exemplars"):
        bank = pack.exemplars
        sets.append((f"exemplar bank ({bank.source}; the oracle was trained on none)",
                     bank.bank[:args.n].float() / 255))
    ko = [lab.casefold() for lab in pack.oracle.labels].index(target.casefold())
    for name, films in sets:
        clf = float(_absent(pack.classifier, films, 0).float().mean())
        orc = float(_absent(pack.oracle, films, ko).float().mean())
        print(f"| {name} | {len(films)} | {clf:.3f} | {orc:.3f} |")
    if args.explain > 0:
        _explain_both(args, pack, ds, ko)
    return 0


def _explain_both(args, pack, ds, ko: int) -> None:
    from xcf.explainer import Explainer
    from xcf.registry import create

    if not pack.entry.get("exemplars"):
        print(f"\npack '{pack.name}' has no exemplar bank: --explain skipped")
        return
    target = pack.labels[0]
    rows = [i for i in range(len(ds)) if float(ds.targets[i, 0]) == 1][:args.explain]
    x = torch.stack([ds[i][0] for i in rows])
    own = create("latent", "exemplar-bank", root=str(args.data), without=target, split=args.split,
                 input_size=pack.latent.input_size)
    print(f"\n`local-exemplar` on the first {len(x)} {args.split} films with {target}: share each model "
          "calls without it\n")
    print("| bank | films in the bank | classifier: absent | oracle: absent | mean area of the region |")
    print("|---|---|---|---|---|")
    for name, bank in ((f"the pack's ({pack.exemplars.source})", pack.exemplars),
                       (f"{args.split} split's own films without {target}", own)):
        ex = Explainer(pack=pack, latent=bank, method="local-exemplar")
        cfs = ex.explain(list(x), [target] * len(x))
        cf = torch.stack([c.counterfactual for c in cfs]).view_as(x)
        clf = float(_absent(pack.classifier, cf, 0).float().mean())
        orc = float(_absent(pack.oracle, cf, ko).float().mean())
        area = sum(float(c.mask.float().mean()) for c in cfs) / len(cfs)
        print(f"| {name} | {len(bank)} | {clf:.3f} | {orc:.3f} | {area:.3f} |")


if __name__ == "__main__":
    sys.exit(main())
