"""Record a latent model's level floors: its rms condition's quietest usual peak, per category.

``python scripts/measure_level_floors.py --data data/drums2s checkpoints/latent-fast ...`` measures
the loudest-frame RMS of the data set's training clips (the clips the models learned from; the
trainer records the same figures itself since session 20, ``engine.train.latent``) and writes its
quarter-quantile per category into each model's ``manifest.json``. Weights are not touched. A drawn
loudness curve quieter than its label's floor is lifted for the network and the sound turned down
afterwards (``engine.conditions.lift_quiet_curve``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.data.dataset import DrumDataset  # noqa: E402
from engine.models import MANIFEST, read_manifest, write_json  # noqa: E402
from engine.train.latent import dataset_level_floors, set_level_floors  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("models", nargs="+", help="model folders (checkpoints/latent-fast ...)")
    parser.add_argument("--data", default="data/drums2s", help="the built data set the models trained on")
    args = parser.parse_args(argv)
    floors = dataset_level_floors(DrumDataset(args.data, "train"))
    print("level floors (dBFS):", json.dumps(floors))
    for folder in map(Path, args.models):
        manifest = read_manifest(folder)
        if not set_level_floors(manifest, floors):
            print(f"{folder}: takes no loudness curve; left as it is", file=sys.stderr)
            continue
        write_json(folder / MANIFEST, manifest)  # atomically, as publish writes a manifest
        print(f"{folder}: written")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
