"""Stage the part of the pneumonia data folder that a GPU run with ``--limit N`` reads.

For a GPU machine that receives the repository but not the data folder (the whole Kermany set
resized to 224 px is 130 MB): a ``--limit N`` training run reads only ``labels.csv``, the N
training rows and N/5 validation rows that ``xcf.train.load_training_data`` picks, and the test
split. This copies exactly those files (same relative paths) from ``--data`` (a folder of images
with labels.csv) into ``--out`` (default ``.devdata/kermany-pneumonia-224``, which must be
git-ignored, e.g. in .git/info/exclude). Send that folder with the repository and point
``PNEUMONIA`` of benchmarks/gpu_bench.sh at it. Delete it afterwards: the images must not be
committed.

    python benchmarks/device_data.py --data /path/to/kermany-pneumonia-224 --limit 1000
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from xcf.data import FolderDataset
from xcf.train import train_val_indices


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True, help="the data folder: images with labels.csv")
    p.add_argument("--out", default=".devdata/kermany-pneumonia-224")
    p.add_argument("--limit", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--labels", default="pneumonia")
    p.add_argument("--val-fraction", type=float, default=0.1)
    args = p.parse_args(argv)
    src, dst = Path(args.data), Path(args.out)
    ds = FolderDataset(src, labels=args.labels.split(","), split="train", size=224)
    tr, va = train_val_indices(ds, args.val_fraction, args.seed, args.limit)
    if dst.exists():
        shutil.rmtree(dst)
    dst.mkdir(parents=True)
    for name in ("labels.csv", "README.md"):
        shutil.copy(src / name, dst / name)
    for i in sorted(tr + va):
        rel = Path(ds.paths[i]).relative_to(src)
        (dst / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ds.paths[i], dst / rel)
    shutil.copytree(src / "test", dst / "test")
    size = sum(f.stat().st_size for f in dst.rglob("*") if f.is_file())
    print(f"{dst}: {len(tr)} train + {len(va)} validation images and the test split, {size / 2**20:.1f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
