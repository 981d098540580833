"""A guidance-distilled model against its teacher: seconds per one-shot through the studio, interleaved.

    .venv/bin/python bench/bench_distilled.py [--student drums-fast] [--teacher drums] [--runs 15]

Both models render the same requests (default label, steps and guidance; seeds 0..runs-1) through
``Studio.render`` (one sampling thread, as the studio runs), alternating teacher and student so
that a noisy machine (a shared VM's neighbours) slows both alike; medians are printed as
``name: value`` lines. Then the same for 8 sounds per request, and how far apart the two models'
sounds of one seed are (relative RMS difference of the waveforms; for reference, two seeds of
the teacher). Run it with nothing else on the CPU. Quality is measured by ``python -m engine
eval`` on each model, not here.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--student", default="drums-fast")
    parser.add_argument("--teacher", default="drums")
    parser.add_argument("--label", default="kick")
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args(argv)
    import torch

    from engine import GenerationRequest, Studio

    studio = Studio(device="cpu")
    names = {"teacher": args.teacher, "student": args.student}
    for count in (1, 8):
        times: dict[str, list[float]] = {role: [] for role in names}
        for role, model in names.items():  # warm-up: load and run once
            studio.render(GenerationRequest(model=model, label=args.label, count=count, seed=0))
        for run in range(args.runs if count == 1 else max(3, args.runs // 4)):
            for role, model in names.items():
                started = time.perf_counter()
                studio.render(GenerationRequest(model=model, label=args.label, count=count, seed=run))
                times[role].append(time.perf_counter() - started)
        for role in names:
            print(f"sounds_{count}.{role}_s: {statistics.median(times[role]):.3f}")
        print(f"sounds_{count}.speedup: {statistics.median(times['teacher']) / statistics.median(times['student']):.2f}")

    def sound(model: str, seed: int) -> torch.Tensor:
        return studio.render(GenerationRequest(model=model, label=args.label, seed=seed)).sounds[0].audio

    def apart(a: torch.Tensor, b: torch.Tensor) -> float:
        return float((a - b).pow(2).mean().sqrt() / b.pow(2).mean().sqrt())

    same_seed = [apart(sound(args.student, s), sound(args.teacher, s)) for s in range(8)]
    other_seed = [apart(sound(args.teacher, s + 100), sound(args.teacher, s)) for s in range(8)]
    print(f"same_seed_difference: {statistics.median(same_seed):.3f}")
    print(f"teacher_other_seed_difference: {statistics.median(other_seed):.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
