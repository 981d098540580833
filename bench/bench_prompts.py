"""Prompt figures (issue 17): ``python bench/bench_prompts.py [--model latent-prompts] [...]``.

A thin wrapper over ``python -m engine.eval.prompts`` (see its docstring for every figure): the
embedder's held-out retrieval and zero-shot accuracy, category prompts in two phrasings beside
the label, descriptor pairs, "more like this", and the speed of a prompted sound.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.eval.prompts import main  # noqa: E402

if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
