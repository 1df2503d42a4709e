"""Speed benchmark (see xcf/bench/perf.py): python benchmarks/perf.py --pack pneumonia --n 8"""

import sys

from xcf.bench.perf import main

if __name__ == "__main__":
    sys.exit(main())
