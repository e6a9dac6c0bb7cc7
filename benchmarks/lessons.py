#!/usr/bin/env python3
"""The lessons experiments of notebook 06. The runner lives in the package
(``seglab/lessons.py``, results in ``seglab/results/lessons.jsonl``) so that the notebook
finds it wherever seglab is installed; this script is the same runner:

    python benchmarks/lessons.py list
    python benchmarks/lessons.py run baseline no_skip
    python benchmarks/lessons.py run                        # every row: the shipped results
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from seglab.lessons import *  # noqa: E402,F401,F403  (the tests read the runner's names from here)
from seglab.lessons import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
