"""How well the latent model follows drawn loudness curves and onsets: prints ``name: value`` lines.

    .venv/bin/python bench/bench_controls.py --model latent-drums --data data/drums2s [--count 8]

Run it with training stopped (it competes for the CPU). What each figure means is in
``engine/eval/controls.py``; this script is that module's command line.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.eval.controls import main  # noqa: E402

if __name__ == "__main__":
    raise SystemExit(main())
