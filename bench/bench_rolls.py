"""Drawn rolls through the studio: ``name: value`` lines per category.

    .venv/bin/python bench/bench_rolls.py [--model latent-fast] [--hits 8] [--gap-ms 50] [--level-db -14]
                                          [--sets 4] [--seed 3]

A producer's roll: ``--hits`` hits ``--gap-ms`` apart over a loudness curve drawn flat at
``--level-db`` (what the curve editor gives for a line and a row of markers), ``--sets`` batches of
six sounds per category at the model's defaults, rendered by ``Studio.render`` as the page renders
them (steering, envelope shaper, limiter). Per category:

``<cat>.hits_within_10ms``      share of the drawn hits with a detected onset within 10 ms
``<cat>.sounds_short``          sounds missing more than one of their hits
``<cat>.spurious_per_sound``    detected onsets more than 10 ms from every drawn hit, per sound
``<cat>.hit_level_error_db``    median over hits of |the hit's loudest frame - the drawn level|

The figures behind ``docs/design-notes.md``, "Rolls held flat". Run it with training stopped.
"""

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine import dsp  # noqa: E402
from engine.eval.controls import onset_match  # noqa: E402
from engine.models import resolve_model  # noqa: E402
from engine.request import GenerationRequest  # noqa: E402
from engine.studio import Studio  # noqa: E402

PER_SET = 6
HIT_FRAMES = 12   # a hit's level: its loudest frame of the SHAPER_HOP frames from the drawn time (35 ms)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="latent-fast")
    parser.add_argument("--hits", type=int, default=8)
    parser.add_argument("--gap-ms", type=float, default=50.0)
    parser.add_argument("--level-db", type=float, default=-14.0)
    parser.add_argument("--sets", type=int, default=4)
    parser.add_argument("--seed", type=int, default=3)
    args = parser.parse_args(argv)
    hits = tuple(k * args.gap_ms for k in range(args.hits))
    end = hits[-1] + args.gap_ms
    curve = ((0.0, args.level_db), (end + 20.0, args.level_db), (end + 80.0, -40.0))
    length = round((end + 150.0) / 1000.0, 2)
    entry = resolve_model(args.model)
    studio = Studio(device="cpu")
    for label in entry.manifest["labels"]:
        made = asked = spurious = short = 0
        errors = []
        for k in range(args.sets):
            request = GenerationRequest(model=args.model, label=label, length=length, rms=curve, onsets=hits,
                                        count=PER_SET, seed=args.seed + 100 * k)
            for sound in studio.render(request).sounds:
                m, t, s = onset_match(sound.audio, hits, sound.sample_rate)
                made, asked, spurious, short = made + m, asked + t, spurious + s, short + (m < t - 1)
                level = dsp.rms_db(sound.audio, dsp.SHAPER_HOP)
                frame_ms = 1000.0 * dsp.SHAPER_HOP / sound.sample_rate
                errors += [abs(float(level[round(h / frame_ms):][:HIT_FRAMES].max()) - args.level_db) for h in hits]
        sounds = args.sets * PER_SET
        print(f"{label}.hits_within_10ms: {made / asked:.3f}")
        print(f"{label}.sounds_short: {short} of {sounds}")
        print(f"{label}.spurious_per_sound: {spurious / sounds:.3f}")
        print(f"{label}.hit_level_error_db: {statistics.median(errors):.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
