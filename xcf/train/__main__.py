"""``python -m xcf.train ...``: the same program as ``xcf train ...``."""

import sys

from .trainer import _main

sys.exit(_main())
