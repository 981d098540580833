"""The latent-model experiments of docs/latent.md, one subcommand each, printing CSV to stdout.

``python -m engine.eval.latent_experiments {val-loss,steps,interpolation,inversion} --help``

- ``val-loss``: held-out alpha-blending loss (fixed noise, fixed alpha grid) of several models,
  with their parameter counts: validation loss vs model size; also per channel group of an
  in-house codec's latent (learned, bypass, envelope), which shows a kind of channel not learned.
- ``steps``: for each sampler and step count, seconds per sound and (with ``--data``) the
  Fréchet distance of generated sounds' features to the held-out clips: quality vs steps.
- ``interpolation``: slerp between two seeds' noises in ``--points`` steps; the MR-STFT distance
  between neighbouring sounds, reported as mean and max/mean (1.0 = perfectly even morph).
- ``inversion``: invert held-out clips' latents with ``steps`` alpha-blending steps and sample
  them back; relative latent error and MR-STFT of the decoded audio against the codec's own
  reconstruction: inversion error vs steps, with and without fixed-point refinement.

Nothing here trains; every number comes from a model folder and a data set you name.
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

import torch

from ..data.dataset import DrumDataset
from ..models import load_model
from .. import pipeline
from ..conditions import Conditions
from ..sampling import invert_latent, samplers_for
from ..seeds import SeedNoise, noise
from ..studio import latent_plan
from ..train.latent import channel_losses
from ..train.losses import MultiResolutionSTFTLoss


def held_out(data: str, length: int) -> DrumDataset:
    path = Path(data)
    dataset = DrumDataset(path, "holdout") if (path / "index.json").is_file() else \
        DrumDataset.from_folder(path, length=length, progress=False)
    return dataset


def _audio(dataset: DrumDataset, clips: int, length: int) -> tuple[torch.Tensor, torch.Tensor]:
    index = torch.linspace(0, len(dataset) - 1, min(clips, len(dataset))).long()
    audio = torch.stack([dataset[int(i)]["audio"][:, :length] for i in index])
    return audio, dataset.labels[index]


def _latents(model, audio: torch.Tensor) -> torch.Tensor:
    _, frames, _ = latent_plan(model, audio.shape[-1] / model.manifest["sample_rate"])
    with torch.no_grad():
        latent = model.codec.encode(audio.to(model.device))
    return torch.nn.functional.pad(latent, (0, frames - latent.shape[-1]))


def _model_labels(model, dataset: DrumDataset, labels: torch.Tensor) -> torch.Tensor:
    names = model.manifest["labels"]
    null = len(names)
    return torch.tensor([names.index(dataset.label_names[i]) if dataset.label_names[i] in names else null
                         for i in labels]).to(model.device)


CHANNEL_GROUPS = ("learned", "bypass", "envelope")  # an in-house codec's latent, in order (channel_groups)


def val_loss(args, out) -> None:
    out.writerow(["model", "parameters", "steps_trained", "val_loss", *(f"val_loss_{g}" for g in CHANNEL_GROUPS)])
    for folder in args.models:
        model = load_model(folder, args.device)
        dataset = held_out(args.data, model.manifest["length"])
        audio, labels = _audio(dataset, args.clips, model.manifest["length"])
        losses = channel_losses(model.network, _latents(model, audio), _model_labels(model, dataset, labels))
        groups = model.codec.channel_groups() if hasattr(model.codec, "channel_groups") else {}
        per_group = [f"{float(losses[groups[g]].mean()):.5f}" if g in groups else "" for g in CHANNEL_GROUPS]
        params = sum(p.numel() for p in model.network.parameters())
        out.writerow([folder, params, model.manifest.get("training", {}).get("steps", 0),
                      f"{float(losses.mean()):.5f}", *per_group])


def steps(args, out) -> None:
    from .features import batched_features
    from .metrics import frechet_distance

    model = load_model(args.model, args.device)
    rate = model.manifest["sample_rate"]
    samples, frames, _ = latent_plan(model, args.length)
    real = None
    if args.data:
        real_audio, _ = _audio(held_out(args.data, samples), 10**9, samples)
        real = batched_features(real_audio, rate)
    out.writerow(["sampler", "steps", "seconds_per_sound", "frechet_distance"])
    label = Conditions(label=model.manifest["labels"].index(args.label) if args.label else None)
    shape = (args.count, model.codec.latent_channels, frames)
    for sampler in args.samplers or samplers_for(model.manifest):
        for count in args.steps:
            started = time.time()
            start = noise(0, shape, model.device)
            audio = pipeline.render(model, start, label, samples=samples, sampler=sampler, steps=count,
                                    guidance=args.guidance)
            seconds = (time.time() - started) / args.count
            fd = "" if real is None else f"{frechet_distance(batched_features(audio, rate), real):.4f}"
            out.writerow([sampler, count, f"{seconds:.4f}", fd])


def interpolation(args, out) -> None:
    model = load_model(args.model, args.device)
    samples, frames, _ = latent_plan(model, args.length)
    stft = MultiResolutionSTFTLoss()
    label = Conditions(label=model.manifest["labels"].index(args.label) if args.label else None)
    shape = (model.codec.latent_channels, frames)
    out.writerow(["seed_a", "seed_b", "mean_step", "max_over_mean"])
    for pair in range(args.pairs):
        # as the studio morphs: every draw (the start, and a stochastic sampler's step noises) slerped
        streams = [SeedNoise([2 * pair], shape, [2 * pair + 1], float(t)) for t in torch.linspace(0, 1, args.points)]
        draw = lambda streams=streams: torch.cat([s() for s in streams]).to(model.device)  # noqa: E731
        start = draw()
        audio = pipeline.render(model, start, label, samples=samples, sampler=args.sampler, steps=args.steps,
                                guidance=args.guidance, step_noise=draw)
        distances = torch.tensor([float(stft(audio[i + 1:i + 2], audio[i:i + 1])) for i in range(len(audio) - 1)])
        out.writerow([2 * pair, 2 * pair + 1, f"{distances.mean():.4f}", f"{distances.max() / distances.mean():.3f}"])


def inversion(args, out) -> None:
    model = load_model(args.model, args.device)
    dataset = held_out(args.data, model.manifest["length"])
    audio, labels = _audio(dataset, args.clips, model.manifest["length"])
    latent = _latents(model, audio)
    stft = MultiResolutionSTFTLoss()
    with torch.no_grad():
        target_audio = model.codec.decode(latent)
    out.writerow(["steps", "refine", "evaluations", "latent_relative_error", "audio_stft_loss"])
    for refine in args.refine:
        for count in args.steps:
            inverted = invert_latent(model.network, model.manifest, latent, steps=count, refine=refine)
            rebuilt = pipeline.sample(model, inverted, Conditions(), sampler="iadb", steps=count)
            error = float((rebuilt - latent).norm() / latent.norm())
            with torch.no_grad():
                audio_error = float(stft(model.codec.decode(rebuilt), target_audio))
            out.writerow([count, refine, count * (1 + refine), f"{error:.5f}", f"{audio_error:.4f}"])


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="python -m engine.eval.latent_experiments", description=__doc__.split("\n")[0])
    sub = top.add_subparsers(dest="command", required=True)

    def common(p, model=True):
        if model:
            p.add_argument("--model", required=True, help="latent model folder")
        p.add_argument("--device", default="cpu")
        return p

    v = common(sub.add_parser("val-loss"), model=False)
    v.add_argument("--models", nargs="+", required=True)
    v.add_argument("--data", required=True, help="built data set (its holdout split) or a folder of WAVs")
    v.add_argument("--clips", type=int, default=256)
    s = common(sub.add_parser("steps"))
    s.add_argument("--steps", type=int, nargs="+", default=[4, 8, 16, 32, 64])
    s.add_argument("--samplers", nargs="+", default=None)
    s.add_argument("--count", type=int, default=64)
    s.add_argument("--label", default=None)
    s.add_argument("--guidance", type=float, default=2.0)
    s.add_argument("--length", type=float, default=None, help="seconds (default: the model's longest)")
    s.add_argument("--data", default=None, help="held-out clips for the Fréchet distance")
    i = common(sub.add_parser("interpolation"))
    i.add_argument("--pairs", type=int, default=8)
    i.add_argument("--points", type=int, default=17)
    i.add_argument("--sampler", default="iadb")
    i.add_argument("--steps", type=int, default=32)
    i.add_argument("--label", default=None)
    i.add_argument("--guidance", type=float, default=2.0)
    i.add_argument("--length", type=float, default=None)
    n = common(sub.add_parser("inversion"))
    n.add_argument("--data", required=True)
    n.add_argument("--clips", type=int, default=32)
    n.add_argument("--steps", type=int, nargs="+", default=[10, 25, 50, 100, 200])
    n.add_argument("--refine", type=int, nargs="+", default=[0, 1, 2],
                   help="fixed-point iterations per inversion step (0: plain Euler inversion)")
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    out = csv.writer(sys.stdout)
    with torch.no_grad():  # scoped: callers in the same process (tests, notebooks) keep autograd
        {"val-loss": val_loss, "steps": steps, "interpolation": interpolation, "inversion": inversion}[args.command](args, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
