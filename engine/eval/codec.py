"""Evaluate an audio codec (autoencoder) on real drum clips: does its round trip keep the sound?

``python -m engine.eval.codec --codec checkpoints/codec --data data/drums2s`` prints ``name: value``
lines:

``frechet_ratio_train``
    Fréchet distance (eval features, :mod:`engine.eval.run`'s standardised PCA space) of the
    *reconstructed* training clips to the held-out clips, divided by the same distance for the
    original training clips: 1.0 = the codec changes nothing the features see (target <= 1.2).
``frechet_ratio_holdout``
    the same with the roles swapped: reconstructed held-out clips (kits the codec never heard)
    against the training clips, over original held-out vs training.
``mrstft_holdout`` / ``mrstft_train``
    mean multi-resolution STFT distance (the codec's training loss: spectral convergence + log
    magnitude) between held-out / training clips and their reconstructions.
``snr_db_holdout``
    waveform signal-to-error ratio of held-out reconstructions (low for any codec trained on
    spectra only, which is free to change phase; reported for comparison between codecs).
``feature_distance_holdout`` / ``<category>.feature_distance_holdout``
    the mean distance in the same projected space between each held-out clip and its own
    reconstruction (0 = the features hear no change), over all clips and per category: where
    the Fréchet ratio compares sets, this follows each clip (a codec that gives every thin hat the
    typical hat's low mids moves those hats towards the training set and can lower the set
    distance while every one of them sounds less like itself).
``<category>.recall_holdout`` / ``<category>.recall_holdout_rebuilt``
    the share of held-out clips of each category that the eval's drum classifier assigns to it,
    for the originals and for their reconstructions: the second is the ceiling a latent model
    on this codec can reach on ``classified_as_intended`` (with ``--classify``; the classifier
    is trained on the data set's train split, or read from the eval cache).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

import torch

from ..data.dataset import DrumDataset
from ..errors import StudioError
from ..models import load_codec, read_manifest
from ..train.losses import MultiResolutionSTFTLoss
from . import metrics
from .classifier import DEFAULT_CACHE, load_or_train
from .features import batched_features
from .run import _Space, format_results


@torch.no_grad()
def reconstruct(codec: torch.nn.Module, audio: torch.Tensor, batch: int = 8) -> torch.Tensor:
    """``decode(encode(audio))`` cut to the input length, in batches, on the CPU."""
    out = [codec.decode(codec.encode(audio[i:i + batch].float()))[..., :audio.shape[-1]]
           for i in range(0, audio.shape[0], batch)]
    return torch.cat(out).float()


@torch.no_grad()
def evaluate_codec(codec_folder: str | Path, data_root: str | Path, clips: int | None = None,
                   classify: bool = False, cache_dir: str | Path | None = DEFAULT_CACHE) -> dict[str, float]:
    """The figures of the module docstring for the codec folder on a built data set's two splits."""
    manifest = read_manifest(codec_folder)
    codec = load_codec({"codec": {"type": manifest["codec"]["type"], "model": str(codec_folder)},
                        "sample_rate": manifest["sample_rate"], "channels": manifest["channels"]})
    train, holdout = DrumDataset(data_root, "train"), DrumDataset(data_root, "holdout")
    if train.sample_rate != manifest["sample_rate"]:
        raise StudioError(f"the codec works at {manifest['sample_rate']} Hz but {data_root} is {train.sample_rate} Hz")

    def pick(dataset: DrumDataset) -> torch.Tensor:
        count = len(dataset) if clips is None else min(clips, len(dataset))
        index = torch.linspace(0, len(dataset) - 1, count).long()
        return dataset.audio[index].float(), dataset.labels[index]

    (train_audio, _), (holdout_audio, holdout_labels) = pick(train), pick(holdout)
    train_rebuilt, holdout_rebuilt = reconstruct(codec, train_audio), reconstruct(codec, holdout_audio)
    rate = manifest["sample_rate"]
    feats = {name: batched_features(audio, rate) for name, audio in
             (("train", train_audio), ("holdout", holdout_audio), ("train_rebuilt", train_rebuilt),
              ("holdout_rebuilt", holdout_rebuilt))}
    space = _Space.fit(feats["train"])

    def frechet(a: str, b: str) -> float:
        return metrics.frechet_distance(space.project(feats[a]), space.project(feats[b]))

    stft = MultiResolutionSTFTLoss()
    error = (holdout_rebuilt - holdout_audio).pow(2).sum()
    results = {
        "frechet_train_vs_holdout": frechet("train", "holdout"),
        "frechet_train_rebuilt_vs_holdout": frechet("train_rebuilt", "holdout"),
        "frechet_holdout_rebuilt_vs_train": frechet("holdout_rebuilt", "train"),
        "mrstft_train": float(stft(train_rebuilt, train_audio)),
        "mrstft_holdout": float(stft(holdout_rebuilt, holdout_audio)),
        "snr_db_holdout": float(10 * torch.log10(holdout_audio.pow(2).sum() / error.clamp_min(1e-20))),
        "clips_train": float(len(train_audio)),
        "clips_holdout": float(len(holdout_audio)),
        "codec.training_steps": float(manifest.get("training", {}).get("steps", 0)),
    }
    moved = torch.from_numpy(space.project(feats["holdout_rebuilt"]) - space.project(feats["holdout"])).norm(dim=1)
    results["feature_distance_holdout"] = float(moved.mean())
    for index, category in enumerate(holdout.label_names):
        mine = holdout_labels == index
        if bool(mine.any()):
            results[f"{category}.feature_distance_holdout"] = float(moved[mine].mean())
    floor = max(results["frechet_train_vs_holdout"], 1e-12)
    results["frechet_ratio_train"] = results["frechet_train_rebuilt_vs_holdout"] / floor
    results["frechet_ratio_holdout"] = results["frechet_holdout_rebuilt_vs_train"] / floor
    if classify:
        with torch.enable_grad():  # a classifier that is not cached yet is trained here
            classifier = load_or_train(data_root, cache_dir)
        labels = classifier.own_labels(holdout.label_names, holdout_labels)
        for name, audio in (("recall_holdout", "holdout"), ("recall_holdout_rebuilt", "holdout_rebuilt")):
            for category, share in classifier.recall(feats[audio], labels).items():
                results[f"{category}.{name}"] = share
    return results


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m engine.eval.codec", description=__doc__.splitlines()[0])
    parser.add_argument("--codec", default="checkpoints/codec", help="codec folder (kind codec)")
    parser.add_argument("--data", default="data/drums2s", help="built data set with train and holdout splits")
    parser.add_argument("--clips", type=int, default=None, help="at most this many clips per split (default all)")
    parser.add_argument("--classify", action="store_true",
                        help="also report the drum classifier's recall per category on held-out originals and "
                             "reconstructions")
    args = parser.parse_args(argv)
    try:
        print(format_results(evaluate_codec(args.codec, args.data, args.clips, classify=args.classify)))
    except StudioError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
