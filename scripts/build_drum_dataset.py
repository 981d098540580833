"""Build the drum one-shot training set from Debian's Hydrogen drum kits.

    python scripts/build_drum_dataset.py [--out data/drums] [--holdout KIT ...] [--limit N]

See engine/data/build.py for what it does and what it writes.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.data.build import main  # noqa: E402

if __name__ == "__main__":
    raise SystemExit(main())
