"""Hybrid figures (issue 19): ``python bench/bench_hybrids.py [--model latent-prompts] [...]``.

A thin wrapper over ``python -m engine.eval.hybrids`` (see its docstring): where blends of two
labels land between the two categories' classifier scores as the mix moves from 0 to 1.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.eval.hybrids import main  # noqa: E402

if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
