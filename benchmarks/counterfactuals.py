#!/usr/bin/env python
"""Compare counterfactual methods on a dataset: ``python benchmarks/counterfactuals.py --quick --out DIR``.

The same program as ``xcf bench counterfactuals`` (the logic lives in
:mod:`xcf.bench.counterfactuals`, so an installed xcf has it too); ``--help`` for the options.
"""

from __future__ import annotations

import sys

from xcf.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", "counterfactuals", *sys.argv[1:]]))
