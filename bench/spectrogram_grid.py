"""A grid of spectrograms: generated sounds beside real held-out ones (issue 19, "Band edges").

``python bench/spectrogram_grid.py --model kick --label kick --seed 1000 --out docs/kick_grid.png``
draws ``--count`` sounds made at the model's defaults (seeds ``--seed`` on) in the top rows and as
many real held-out clips of the category in the bottom rows, each as a linear-frequency
spectrogram up to ``--max-hz`` over the first ``--seconds``, with the codec's sub-band edges
marked at the right edge: a flat box of energy that ends at an edge, or a step at one, shows at a
glance. Look at the PNG; the numbers are ``python -m engine.eval.bands``'.
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from engine.data.dataset import DrumDataset  # noqa: E402
from engine.dsp import power_spectrogram  # noqa: E402
from engine.eval.run import generate_clips, studio_fade_ms, studio_output  # noqa: E402
from engine.models import load_model, resolve_model  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="kick")
    parser.add_argument("--label", default="kick")
    parser.add_argument("--seed", type=int, default=1000)
    parser.add_argument("--count", type=int, default=16)
    parser.add_argument("--data", default="data/drums2s")
    parser.add_argument("--max-hz", type=float, default=4000.0)
    parser.add_argument("--seconds", type=float, default=0.6)
    parser.add_argument("--sampler", default=None, help="default: the model's for the label")
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--guidance", type=float, default=None)
    parser.add_argument("--out", type=Path, default=Path("artifacts/spectrogram_grid.png"))
    args = parser.parse_args(argv)

    entry = resolve_model(args.model)
    model = load_model(entry.folder)
    rate, bands = model.manifest["sample_rate"], int(model.codec.bands)
    made = studio_output(generate_clips(model, args.count, label=args.label, seed=args.seed, sampler=args.sampler,
                                       steps=args.steps, guidance=args.guidance), rate, studio_fade_ms(model.manifest))
    held = DrumDataset(args.data, "holdout")
    rows = [i for i, r in enumerate(held.records) if r["category"] == args.label][: args.count]
    real = held.audio[rows].float()
    cols = 8
    n_rows = -(-args.count // cols) * 2
    fig, axes = plt.subplots(n_rows, cols, figsize=(2.0 * cols, 1.6 * n_rows), sharex=True, sharey=True)
    n_fft, hop = 2048, 256
    samples = int(args.seconds * rate)
    top_bin = int(args.max_hz / (rate / n_fft)) + 1
    for k, (kind, audio) in enumerate((("generated", made), ("real", real))):
        for i in range(args.count):
            axis = axes[(k * n_rows // 2) + i // cols, i % cols]
            axis.set_xticks([]), axis.set_yticks([])
            if i >= len(audio):
                axis.axis("off")
                continue
            power = power_spectrogram(audio[i].mean(0)[:samples], n_fft, hop)[:top_bin]
            db = 10 * torch.log10(power + 1e-12)
            axis.imshow(db.numpy(), origin="lower", aspect="auto", vmin=float(db.max()) - 80, vmax=float(db.max()),
                        cmap="magma", extent=(0, args.seconds, 0, args.max_hz))
            for edge in range(1, bands):
                hz = edge * rate / 2 / bands
                if hz < args.max_hz:
                    axis.plot([args.seconds * 0.97, args.seconds], [hz, hz], color="cyan", linewidth=0.8)
            axis.set_title(f"{kind} {args.seed + i if kind == 'generated' else rows[i]}", fontsize=7)
    fig.suptitle(f"{entry.name} {args.label}: generated (top, seeds {args.seed}+) vs real held-out (bottom); "
                 f"0-{args.max_hz / 1000:g} kHz, {args.seconds:g} s; cyan ticks: the codec's {bands} band edges",
                 fontsize=9)
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=90)
    print(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
