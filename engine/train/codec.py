"""Train the in-house audio autoencoder (the latent models' codec) with a multi-resolution STFT loss.

One function, :func:`train_codec`, used by ``python -m engine train codec`` and by the tests. The
run folder mirrors the waveform trainer's: ``model/`` is a codec model folder (kind ``codec``,
EMA weights, rewritten atomically at every save), ``train_state.pt`` (online weights, optimizer,
step: exact resume), ``log.csv``. At every save the raw latent's standard deviation over a fixed
batch of training clips is measured and stored in the manifest as ``latent_scale``, so
``encode`` gives unit-variance latents to the diffusion model that is trained on top.

The loss is the multi-resolution STFT loss (``losses.py``) on random crops of ``segment`` samples,
optionally a waveform loss on the lowest PQMF bands (:func:`low_band_waveform_loss`, off by default:
it did not move in 1000 CPU steps; the codec's low bypass makes the low end exact instead), and a
small L2 penalty on the raw latent, which keeps its scale from drifting (a cheap stand-in for a
VAE's KL term) so ``latent_scale`` stays meaningful.

``decoder_only`` (``--decoder-only``) trains the decoder of an ``--init`` codec alone: the encoder,
the exact low sub-bands, the band envelope and ``latent_scale`` stay bit for bit, so every latent
model trained on that codec decodes through the new decoder without training again. Why: the
shipped decoder (4481 steps) fills 690-1380 Hz under thin hats that no training kit had
(``docs/design-notes.md``, "Thinned closed hats"); a decoder trained on them learns to leave it empty.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..data.augment import augment
from ..errors import InvalidRequestError
from ..nets import build_codec
from ..seeds import seeded_init
from . import common, loop
from .losses import MultiResolutionSTFTLoss

log = logging.getLogger(__name__)


@dataclass
class CodecTrainConfig:
    data: str = "data/drums"            # a built data set (index.json) or any folder of WAVs
    run: str = "runs/codec"             # run folder: model/, train_state.pt, log.csv
    init: str | None = None             # codec folder to fine-tune from (ignored when the run resumes)
    name: str = "codec"                 # codec name written into the manifest
    steps: int = 1000                   # optimisation steps to run in this call
    max_minutes: float | None = None    # stop (and save) after this wall time
    batch: int = 8                      # crops per step per process
    segment: int = 16384                # crop length in samples (rounded down to a multiple of the hop)
    length: int | None = None           # clip length when data is a folder of WAVs (default 32768)
    lr: float = 3e-4
    warmup: int = 100
    ema_decay: float = 0.999            # 0: no EMA (the online weights are saved)
    latent_penalty: float = 1e-4        # weight of the mean squared raw latent
    waveform_weight: float = 0.0        # weight of the low-band waveform loss (0: STFT magnitudes only)
    waveform_bands: int = 2             # the lowest PQMF bands it compares (2 of 16: 0-2.8 kHz)
    augment: bool = True
    decoder_only: bool = False          # train the decoder alone from --init: the latent stays exactly as it was
    categories: list[str] | None = None
    save_every: int = 250
    log_every: int = 25
    device: str = "auto"
    seed: int = 0
    network: dict = field(default_factory=lambda: {"bands": 16, "widths": [64, 128, 256], "factors": [2, 4],
                                                   "latent_channels": 32, "units": 2, "kernel": 7,
                                                   "low_bypass": 4, "band_envelope": True})


def new_manifest(config: CodecTrainConfig, sample_rate: int, length: int) -> dict:
    return {
        "format": 1,
        "name": config.name,
        "kind": "codec",
        "description": "Audio autoencoder (PQMF + strided convolutions, continuous latent) for latent diffusion.",
        "sample_rate": sample_rate,
        "channels": 2,
        "length": length,
        "codec": {"type": "autoencoder", "args": dict(config.network, channels=2, sample_rate=sample_rate,
                                                      latent_scale=1.0)},
        "training": {"steps": 0, "examples": 0, "data": "", "sessions": []},
    }


@torch.no_grad()
def reconstruction_loss(codec: torch.nn.Module, audio: torch.Tensor, loss: torch.nn.Module | None = None) -> float:
    """The MR-STFT loss of ``decode(encode(audio))`` against ``audio``: what tests and runs compare."""
    loss = loss or MultiResolutionSTFTLoss()
    rebuilt = codec.decode(codec.encode(audio))[..., :audio.shape[-1]]
    return float(loss(rebuilt, audio))


def low_band_waveform_loss(pqmf: torch.nn.Module, prediction: torch.Tensor, target: torch.Tensor,
                           bands: int) -> torch.Tensor:
    """``||low(prediction) - low(target)|| / ||low(target)||`` over the batch, ``low`` = the lowest
    ``bands`` PQMF bands of every channel.

    Why: STFT magnitudes carry no phase, and from a random start a decoder trained on them alone
    learns noise with the right spectral envelope long before it learns a coherent sinusoid: the
    first codec (4481 steps) rendered hats and clicks at about the right level but any decaying
    sine 45 dB too quiet, so kicks came back at 4 % of their peak. A kick's body and a snare's or
    tom's ring are low, pitched and phase-coherent, which a waveform comparison teaches directly;
    the high bands stay magnitude-only, where noise-like content cannot be matched sample by sample.
    """
    def lowest(audio: torch.Tensor) -> torch.Tensor:  # (B, C * pqmf.bands, F), channel-major -> (B, C, bands, F)
        split = pqmf.analysis(audio)
        return split.reshape(split.shape[0], -1, pqmf.bands, split.shape[-1])[:, :, :bands]

    wanted = lowest(target)
    return torch.linalg.norm(lowest(prediction) - wanted) / torch.linalg.norm(wanted).clamp_min(1e-5)


@torch.no_grad()
def measure_latent_scale(codec: torch.nn.Module, audio: torch.Tensor, chunk: int = 8) -> float:
    """Std of the raw latent over ``audio`` (B, C, N), floored so a silent set stays finite."""
    latents = [codec.encode_raw(audio[i:i + chunk]) for i in range(0, audio.shape[0], chunk)]
    return max(float(torch.cat(latents).float().std()), 1e-4)


def _crops(audio: torch.Tensor, segment: int, generator: torch.Generator) -> torch.Tensor:
    """One crop per clip; half of them start at the onset (where a drum hit has its energy)."""
    length = audio.shape[-1]
    if segment >= length:
        return audio
    starts = torch.randint(length - segment + 1, (audio.shape[0],), generator=generator)
    starts = torch.where(torch.rand(audio.shape[0], generator=generator) < 0.5, torch.zeros_like(starts), starts)
    return torch.stack([clip[:, int(s):int(s) + segment] for clip, s in zip(audio, starts)])


def train_codec(config: CodecTrainConfig) -> Path:
    """Run ``config.steps`` steps (or until ``max_minutes``), saving as it goes; returns the codec folder."""
    dataset = common.open_dataset(config.data, config.categories, config.length, batch=config.batch)

    def check_init(_: loop.Trainer, manifest: dict) -> dict:
        if manifest.get("kind") != "codec":
            raise InvalidRequestError(f"{config.init} is not a codec folder")
        return manifest

    trainer = loop.begin(config, lambda _: new_manifest(config, dataset.sample_rate, dataset.length), check_init)
    manifest = trainer.manifest
    if manifest["sample_rate"] != dataset.sample_rate:
        raise InvalidRequestError(f"the codec expects {manifest['sample_rate']} Hz but the data set has "
                                  f"{dataset.sample_rate} Hz")
    if config.decoder_only and trainer.state is None and not config.init:
        raise InvalidRequestError("--decoder-only trains a trained codec's decoder: name it with --init")
    with seeded_init(config.seed):
        network = build_codec(manifest["codec"])
    if config.decoder_only:  # frozen weights get no gradient, so AdamW leaves them exactly as loaded
        network.requires_grad_(False)
        network.decoder.requires_grad_(True)
    # the decoder learns the sound itself; band 0's ceiling (a decoding rule, kept in the manifest)
    # would only hide its fill from the loss, and its gain's square root has no gradient at silence
    network.band0_ceiling_db = None
    segment = max(network.hop, min(config.segment, dataset.length) // network.hop * network.hop)
    loop.prepare(trainer, network, betas=(0.8, 0.99))
    trainer.session["segment"] = segment
    if config.decoder_only:
        trainer.session["decoder_only"] = True
    stft = MultiResolutionSTFTLoss()
    fixed = torch.stack([dataset[i]["audio"] for i in range(0, len(dataset), max(1, len(dataset) // 32))])

    def batch_losses(generator: torch.Generator) -> loop.Losses:
        index = torch.randint(len(dataset), (config.batch,), generator=generator)
        audio = torch.stack([dataset[int(i)]["audio"] for i in index])
        if config.augment:
            audio = augment(audio, generator)
        audio = _crops(audio, segment, generator).to(trainer.device)
        with trainer.autocast():
            rebuilt, latent = trainer.trainable(audio)
        spectral = stft(rebuilt.float(), audio)
        losses = {"loss": spectral + config.latent_penalty * latent.float().pow(2).mean(), "stft": spectral}
        if config.waveform_weight > 0:
            waveform = low_band_waveform_loss(network.pqmf, rebuilt.float(), audio, config.waveform_bands)
            losses["loss"] = losses["loss"] + config.waveform_weight * waveform
            losses["waveform"] = waveform
        return losses

    def measure_scale(shipped: torch.nn.Module) -> None:
        manifest["codec"]["args"]["latent_scale"] = measure_latent_scale(shipped, fixed.to(trainer.device))

    # decoder only: the latent models were trained on the latent as it is scaled now; keep the scale
    return loop.run_loop(trainer, batch_losses, before_save=None if config.decoder_only else measure_scale)
