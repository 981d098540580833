"""How much does a small error in the diffusion model's latent space damage the sound? Prints ``name: value`` lines.

A latent diffusion model's errors are of a roughly fixed size in the space it is trained in
(unit variance per channel). This probe encodes real training clips of kick, snare and hat,
adds Gaussian noise of ``--sigma`` (in that unit-variance space) and decodes, for the codec's
plain latent and for the asinh-companded latent (engine/nets/compand.py) at several scales.
For each it prints, per category, the SNR of the decoded clip against the clean decode (dB)
and the error floor in the 0.5-1.5 s tail relative to the clip's peak (dB). The space where the
same sigma costs the least is the one to train the diffusion model in.

    python bench/probe_latent_space.py --codec checkpoints/codec --data data/drums2s

For a codec with band-envelope channels, ``--envelope-scales`` adds spaces where only those
channels take another scale (the rest stay at ``compand.DEFAULT_SCALE``), and every space prints
its ``limit``: the largest companded value in std units (times the clamp margin), a measure of how
heavy-tailed the space is for a diffusion model that starts from unit noise.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.data.dataset import DrumDataset  # noqa: E402
from engine.models import load_codec, read_manifest  # noqa: E402
from engine.nets import compand  # noqa: E402

CATEGORIES = ("kick", "snare", "hat")


def db(x: torch.Tensor) -> torch.Tensor:
    return 10 * torch.log10(x + 1e-20)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--codec", default="checkpoints/codec", help="codec folder")
    parser.add_argument("--data", default="data/drums2s", help="built data set (train split)")
    parser.add_argument("--clips", type=int, default=8, help="clips per category")
    parser.add_argument("--sigma", type=float, nargs="+", default=[0.05, 0.2])
    parser.add_argument("--scales", type=float, nargs="+", default=[0.002, 0.01, 0.05])
    parser.add_argument("--envelope-scales", type=float, nargs="*", default=[],
                        help="scales for the band-envelope channels only (codecs with band_envelope)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    manifest = read_manifest(args.codec)
    codec = load_codec({"codec": {"type": manifest["codec"]["type"], "model": str(Path(args.codec).resolve())},
                        "sample_rate": manifest["sample_rate"], "channels": manifest["channels"], "network": {}})
    data = DrumDataset(args.data, "train")
    generator = torch.Generator().manual_seed(0)
    labels = torch.as_tensor(data.labels)
    picks = []
    for name in CATEGORIES:
        members = torch.nonzero(labels == data.label_names.index(name))[:, 0]
        picks.append(members[torch.randperm(len(members), generator=generator)[:args.clips]])
    audio = data.audio[torch.cat(picks)].float()
    every = data.audio[torch.randperm(len(data.audio), generator=generator)[:64]].float()
    sizes = [len(p) for p in picks]
    tail = slice(int(0.5 * data.sample_rate), int(1.5 * data.sample_rate))

    # asinh(z / s) with a huge s is z / s: the plain latent, made unit-variance per channel the same way
    spaces = {"plain": 1e3}
    spaces.update({f"asinh_{scale:g}": scale for scale in args.scales})
    envelope = getattr(codec, "envelope_channels", 0)
    spaces.update({f"envelope_{scale:g}": [compand.DEFAULT_SCALE] * (codec.latent_channels - envelope) + [scale] * envelope
                   for scale in args.envelope_scales if envelope})
    with torch.no_grad():
        for name, scale in spaces.items():
            space = compand.fit(codec, every, scale)
            print(f"{name}.limit: {space.limit:.1f}")
            latent = space.encode(audio)
            clean = space.decode(latent)
            for sigma in args.sigma:
                noisy = space.decode(latent + sigma * torch.randn(latent.shape, generator=generator))
                err = (noisy - clean).pow(2).mean(dim=(1, 2))
                snr = db(clean.pow(2).mean(dim=(1, 2))) - db(err)
                floor = db((noisy - clean)[..., tail].pow(2).mean(dim=(1, 2))) - db(clean.abs().amax(dim=(1, 2)) ** 2)
                start = 0
                for category, size in zip(CATEGORIES, sizes):
                    part = slice(start, start + size)
                    print(f"{name}.sigma_{sigma:g}.{category}.snr_db: {float(snr[part].mean()):.1f}")
                    print(f"{name}.sigma_{sigma:g}.{category}.tail_error_db: {float(floor[part].mean()):.1f}")
                    start += size
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
