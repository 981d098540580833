"""Train or fine-tune a waveform drum model (v-objective, cosine schedule) on drum one-shots.

One function, :func:`train_wave`, used by ``python -m engine train wave`` and by the tests.
A run folder holds ``model/`` (a loadable model folder with the EMA weights, rewritten
atomically at every save), ``train_state.pt`` (online weights + optimizer + step, for an exact
resume), ``log.csv`` (the loss log) and ``samples/`` (renders every N steps). Started again on
the same run folder it resumes; started with ``--init`` on a shipped model it fine-tunes from
those weights and keeps counting that model's steps, so CPU sessions add up.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
import torch.nn.functional as F

from ..conditions import LABEL_SPEC, drop_conditions
from ..data.augment import augment
from ..errors import InvalidRequestError
from ..models import load_codec
from ..nets import build_codec, build_network
from ..nets.envelope import DETAIL_POINTS, knot_frames
from ..nets.pqmf import MAX_ENVELOPE_SPREAD, MAX_KERNEL_WIDTH, fit_envelope_prior, measure_band_scale
from ..nets.tone import TONE_POINTS
from ..seeds import seeded_init
from . import common, loop

log = logging.getLogger(__name__)

ALIASES = {"kick": "kick", "snare": "snare", "hat": "hat", "perc": "perc", "cymbal": "cymbal"}


@dataclass
class WaveTrainConfig:
    data: str = "data/drums"            # a built data set (index.json) or any folder of WAVs
    run: str = "runs/drums"             # run folder: model/, train_state.pt, log.csv, samples/
    init: str | None = None             # model folder to fine-tune from (ignored when the run resumes)
    name: str = "drums"                 # model name written into the manifest
    steps: int = 1000                   # optimisation steps to run in this call
    max_minutes: float | None = None    # stop (and save) after this wall time
    batch: int = 16                     # clips per step per process
    lr: float = 4e-4
    warmup: int = 200
    ema_decay: float = 0.999
    label_dropout: float = 0.1          # share of labels replaced by "no label": trains CFG
    balance: float = 0.0                # 0: clips drawn uniformly; 1: every category equally often
    time_bias: float = 2.0              # t = u^(1/time_bias): density ~ t^(time_bias-1), 1 = uniform
    envelope: bool = True               # codec divides the bands by a loudness envelope (nets/envelope.py)
    envelope_clusters: int = 3          # the prior: a mixture of this many Gaussians per label...
    envelope_components: int = 4        # ...each with this many principal directions
    envelope_shapes: dict[str, list[int]] | None = None  # {label: [clusters, components]} apart from the rest
    envelope_spreads: dict[str, float] | None = None     # {label: reach along its directions, 1 = as its clips}
    band_weight_power: float = 0.5      # loss weight of each band ~ (its data std)^power, mean 1 (0: equal)
    augment: bool = True
    categories: list[str] | None = None  # None: every category of the data set
    save_every: int = 250
    log_every: int = 25
    render_every: int = 1000            # 0: never
    render_steps: int = 16
    device: str = "auto"
    seed: int = 0
    network: dict = field(default_factory=lambda: {"widths": [64, 128, 256], "blocks": [1, 2, 2],
                                                   "factors": [4, 4], "attention": [False, False, True],
                                                   "heads": 4, "emb_dim": 256, "dropout": 0.0})


def new_manifest(config: WaveTrainConfig, labels: list[str], band_scale: list[float], length: int,
                 sample_rate: int, envelope: dict | None = None) -> dict:
    codec_args = {"channels": 2, "bands": 32, "taps_per_band": 8, "band_scale": band_scale, **(envelope or {})}
    envelope_note = "each clip's own loudness envelope (a prior draws new ones)" if "envelope_prior" in codec_args \
        else "their standard deviation"
    network_args = dict(config.network, in_channels=2 * 32, num_labels=len(labels), pos_dim=32,
                        frame_rate=sample_rate / 32)
    return {
        "format": 1,
        "name": config.name,
        "kind": "wave",
        "objective": "v_cosine",
        "description": f"Waveform drum one-shots: v-diffusion on 32 PQMF bands normalised by {envelope_note}, "
                       "class-conditional.",
        "sample_rate": sample_rate,
        "length": length,
        "channels": 2,
        "labels": labels,
        "aliases": {alias: {"label": label} for alias, label in ALIASES.items() if label in labels},
        "conditioners": ["label"],
        "defaults": {"sampler": "dpmpp_2m", "steps": 16, "guidance": 2.0},
        "codec": {"type": "pqmf", "args": codec_args},
        "network": {"type": "unet1d", "args": network_args},
        "training": {"steps": 0, "examples": 0, "data": "", "sessions": []},
    }


def v_noised(latent: torch.Tensor, eps: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The v-objective on the cosine schedule: the clean ``latent`` noised by ``eps`` to times ``t``
    ``(B,)`` (alpha = cos(t pi/2), sigma = sin(t pi/2)), and the velocity the network predicts."""
    alpha, sigma = torch.cos(t * math.pi / 2)[:, None, None], torch.sin(t * math.pi / 2)[:, None, None]
    return alpha * latent + sigma * eps, alpha * eps - sigma * latent


@torch.no_grad()
def validation_loss(network: torch.nn.Module, codec: torch.nn.Module, audio: torch.Tensor, labels: torch.Tensor | None,
                    points: int = 8, seed: int = 0) -> float:
    """The v-objective loss on fixed clips, fixed noise and a fixed grid of times.

    Training losses jump with every random draw of time and noise; this one only moves when the
    network does, so it is what tests and run comparisons should look at. A fresh network
    (zero output) scores about 1.0, the variance of the unit-scaled target.
    """
    generator = torch.Generator().manual_seed(seed)
    latent = codec.encode(audio, codec.envelope_for(audio=audio))
    total = 0.0
    for t_value in torch.linspace(0.05, 0.95, points):
        eps = torch.randn(latent.shape, generator=generator).to(latent.device)
        t = torch.full((latent.shape[0],), float(t_value), device=latent.device)
        noisy, target = v_noised(latent, eps, t)
        prediction = network(noisy, t, None if labels is None else {"label": labels})
        total += F.mse_loss(prediction.float(), target).item()
    return total / points


def loss_band_weights(codec: torch.nn.Module, power: float) -> torch.Tensor:
    """``(1, C*M, 1)`` loss weights, mean 1, growing with each band's data std (``band_scale``).

    Why: with every band whitened to unit variance, the loss spreads evenly over 64 channels and
    the lowest band, which holds a kick's or a tom's whole pitched body (0-689 Hz), gets 3 % of
    the gradient; weighting by the band's std to the power 0.5 gives it ~10 % while high bands
    (a hat's whole sound) keep about a third of an even share.
    """
    scale = codec.band_scale.reshape(1, -1, 1).float() ** power
    return scale / scale.mean()


def check_named_labels(option: str, named, labels: list[str]) -> None:
    """A clear error when a per-label option (``{label: value}``, or a list of labels) names a label
    the model lacks."""
    unknown = sorted(set(named) - set(labels))
    if unknown:
        raise InvalidRequestError(f"{option} names {unknown}; the model's labels are {labels}")


def envelope_arguments(config, length: int, labels: list[str], counts: dict[str, int] | None = None) -> dict:
    """The codec's envelope prior for the model's ``labels``: its shape (the tensors are fitted by
    :func:`fit_codec_prior` and saved with the weights). ``config.envelope_shapes`` (``{label:
    (clusters, components)}``, optional) shapes a label's row apart from the rest;
    ``config.envelope_spreads`` (``{label: s}``) draws that label's envelopes ``s`` times as far along
    its fitted directions (``docs/design-notes.md``, "A wider prior for narrow categories");
    ``config.envelope_kernels`` (``{label: w}``, ``train prior`` only: ``counts`` gives each label's
    clips in the data set) draws that label from its clips' own envelopes, moved ``w`` times along
    its directions (:func:`engine.nets.envelope.draw_from_kernel`); ``config.envelope_details``
    (labels, each with a kernel) stores those clips' flutter between the knots as well, which the
    codec plays on a dealt sound (:func:`engine.nets.envelope.clip_details`), and
    ``config.envelope_tones`` their tone inside each band (:func:`engine.nets.tone.clip_tones`)."""
    prior = {"knots": knot_frames(length // 32), "rows": len(labels) + 1,
             "clusters": config.envelope_clusters, "components": config.envelope_components}
    shapes = config.envelope_shapes
    if shapes:
        check_named_labels("--envelope-shape", shapes, labels)
        default = [config.envelope_clusters, config.envelope_components]
        rows = [[int(v) for v in shapes.get(label, default)] for label in labels] + [default]
        if any(c < 1 or m < 0 for c, m in rows):
            raise InvalidRequestError(f"each shape needs at least 1 cluster and 0 or more components, got {shapes}")
        prior.update(clusters=max(c for c, _ in rows), components=max(m for _, m in rows), row_shapes=rows)
    spreads = getattr(config, "envelope_spreads", None)
    if spreads:
        check_named_labels("--envelope-spread", spreads, labels)
        if any(not 0.0 < float(v) <= MAX_ENVELOPE_SPREAD for v in spreads.values()):
            raise InvalidRequestError(f"each envelope spread is a number in (0, {MAX_ENVELOPE_SPREAD}], got {spreads}")
        prior["row_spreads"] = [float(spreads.get(label, 1.0)) for label in labels] + [1.0]
    kernels = getattr(config, "envelope_kernels", None)
    detailed = list(getattr(config, "envelope_details", None) or [])
    toned = list(getattr(config, "envelope_tones", None) or [])
    for option, named, what in (("--envelope-detail", detailed, "flutter"), ("--envelope-tone", toned, "tone")):
        if named:
            check_named_labels(option, named, labels)
            loose = sorted(set(named) - set(kernels or {}))
            if loose:
                raise InvalidRequestError(f"{option} takes the {what} of the clips a label is dealt: give "
                                          f"{loose} an --envelope-kernel too")
    if kernels:
        check_named_labels("--envelope-kernel", kernels, labels)
        if any(isinstance(v, bool) or not 0.0 <= float(v) <= MAX_KERNEL_WIDTH for v in kernels.values()):
            raise InvalidRequestError(f"each envelope kernel width is a number in [0, {MAX_KERNEL_WIDTH:g}], got {kernels}")
        empty = sorted(label for label in kernels if not (counts or {}).get(label))
        if empty:
            raise InvalidRequestError(f"the data set holds no clips of {empty} to draw their envelopes from")
        prior["kernel"] = [{"width": float(kernels[label]), "clips": int(counts[label]),
                            **({"detail": True} if label in detailed else {}),
                            **({"tone": True} if label in toned else {})} if label in kernels else None
                           for label in labels] + [None]
        if detailed:
            prior["detail_points"] = DETAIL_POINTS
        if toned:
            prior["tone_points"] = TONE_POINTS
    return {"envelope_prior": prior}


def fit_codec_prior(codec: torch.nn.Module, dataset, labels: list[str]) -> None:
    """Fit the codec's envelope prior (if it has one) on every clip of ``dataset``, unaugmented."""
    if getattr(codec, "stored_with_model", False):
        model_labels = common.label_map(dataset.label_names, labels, len(labels))[dataset.labels]
        fit_envelope_prior(codec, dataset.audio, model_labels)


def clip_batch(dataset, model_labels: torch.Tensor, label_specs, null: int, codec: torch.nn.Module, config,
               balance: float, generator: torch.Generator, device: torch.device) -> tuple[torch.Tensor, ...]:
    """One batch of the waveform picture, shared by ``train wave`` and ``train distill``: clips
    (augmented when ``config.augment``), their model labels ``model_labels[clip]`` with some
    dropped to "no label", times and noise; returns the clean latent (each clip divided by its own
    envelope, measured on the augmented audio), the labels, the times and the noise."""
    index = common.batch_index(model_labels, config.batch, balance, generator)
    audio = torch.stack([dataset[int(i)]["audio"] for i in index])
    if config.augment:
        audio = augment(audio, generator)
    labels = drop_conditions({"label": model_labels[index]}, label_specs, generator, null)["label"]
    # stratified, then biased towards high noise: the class and envelope of a sound are decided
    # there (sigma 1-20), and uniform times spend a third of each batch on the easy low-noise end
    u = (torch.arange(config.batch) + torch.rand(config.batch, generator=generator)) / config.batch
    t = u ** (1.0 / config.time_bias)
    eps = torch.randn(audio.shape[0], codec.latent_channels, codec.latent_length(audio.shape[-1]), generator=generator)
    audio, labels, t, eps = audio.to(device), labels.to(device), t.to(device), eps.to(device)
    with torch.no_grad():
        latent = codec.encode(audio, codec.envelope_for(audio=audio))
    return latent, labels, t, eps


def train_wave(config: WaveTrainConfig) -> Path:
    """Run ``config.steps`` steps (or until ``max_minutes``), saving as it goes; returns the model folder."""
    dataset = common.open_dataset(config.data, config.categories, batch=config.batch)

    def fresh_manifest(_: loop.Trainer) -> dict:
        probe = torch.stack([dataset[i]["audio"] for i in range(0, len(dataset), max(1, len(dataset) // 256))])
        band_scale = measure_band_scale(probe)
        labels = list(dataset.label_names)
        envelope = envelope_arguments(config, dataset.length, labels) if config.envelope else None
        return new_manifest(config, labels, band_scale, dataset.length, dataset.sample_rate, envelope)

    def add_envelope(_: loop.Trainer, manifest: dict) -> dict:
        """Fine-tuning: the envelope (and its prior) is measured on the data the model is tuned to."""
        if manifest.get("guidance_distilled"):
            teacher = manifest["guidance_distilled"].get("teacher", "its teacher")
            raise InvalidRequestError(f"{config.init} is guidance-distilled (it answers a guided step in one call); "
                                      f"fine-tune {teacher} instead, then distil that with `train distill`")
        args = manifest["codec"]["args"]
        if config.envelope and manifest["codec"]["type"] == "pqmf":
            if "envelope_prior" not in args:
                log.warning("%s had no envelope: the network must adapt to its new input", config.init)
            args.update(envelope_arguments(config, manifest["length"], manifest["labels"]))
        return manifest

    trainer = loop.begin(config, fresh_manifest, add_envelope)
    manifest = trainer.manifest
    if manifest["length"] != dataset.length or manifest["sample_rate"] != dataset.sample_rate:
        raise InvalidRequestError(f"the model expects {manifest['length']} samples at {manifest['sample_rate']} Hz "
                                  f"but the data set has {dataset.length} at {dataset.sample_rate} Hz")
    if trainer.state is not None:  # resuming: the run's own codec, prior included
        codec = load_codec(manifest, trainer.model_dir)
    else:  # new or fine-tuned: the prior is fitted on this data
        codec = build_codec(manifest["codec"])
        fit_codec_prior(codec, dataset, manifest["labels"])
    codec = trainer.codec = codec.to(trainer.device)
    with seeded_init(config.seed):
        network = build_network(manifest["network"])
    loop.prepare(trainer, network)
    band_weights = loss_band_weights(codec, config.band_weight_power).to(trainer.device)
    null = trainer.network.num_labels
    model_labels = common.label_map(dataset.label_names, manifest["labels"], null)[dataset.labels]  # per clip
    device = trainer.device

    label_specs = [replace(LABEL_SPEC, dropout=config.label_dropout)]

    def batch_losses(generator: torch.Generator) -> loop.Losses:
        latent, labels, t, eps = clip_batch(dataset, model_labels, label_specs, null, codec, config, config.balance,
                                            generator, device)
        noisy, target = v_noised(latent, eps, t)
        with trainer.autocast():
            prediction = trainer.trainable(noisy, t, {"label": labels})
        return {"loss": ((prediction.float() - target).pow(2) * band_weights).mean()}

    def render(network: torch.nn.Module, step: int) -> None:
        loop.render_samples(network, codec, manifest, trainer.run / "samples", step, config.render_steps)

    return loop.run_loop(trainer, batch_losses, render=render)
