#!/usr/bin/env python
"""Localization of the saliency methods: ``python benchmarks/saliency.py --out DIR``.

The same program as ``xcf bench saliency`` (the logic lives in :mod:`xcf.bench.saliency`,
so an installed xcf has it too); ``--help`` for the options.
"""

from __future__ import annotations

import sys

from xcf.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", "saliency", *sys.argv[1:]]))
