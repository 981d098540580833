"""Train the in-house audio autoencoder (the latent models' codec) with a multi-resolution STFT loss.

One function, :func:`train_codec`, used by ``python -m engine train codec`` and by the tests. The
run folder mirrors the waveform trainer's: ``model/`` is a codec model folder (kind ``codec``,
EMA weights, rewritten atomically at every save), ``train_state.pt`` (online weights, optimizer,
step: exact resume), ``log.csv``. At every save the raw latent's standard deviation over a fixed
batch of training clips is measured and stored in the manifest as ``latent_scale``, so
``encode`` gives unit-variance latents to the diffusion model that is trained on top.

The loss is the multi-resolution STFT loss (``losses.py``) on random crops of ``segment`` samples
plus a small L2 penalty on the raw latent, which keeps its scale from drifting (a cheap stand-in
for a VAE's KL term) so ``latent_scale`` stays meaningful.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from ..data.augment import augment
from ..errors import DatasetError, InvalidRequestError
from ..models import load_weights, read_manifest, save_model
from ..nets import build_codec
from . import common
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
    augment: bool = True
    categories: list[str] | None = None
    save_every: int = 250
    log_every: int = 25
    device: str = "auto"
    seed: int = 0
    network: dict = field(default_factory=lambda: {"bands": 16, "widths": [64, 128, 256], "factors": [2, 4],
                                                   "latent_channels": 32, "units": 2, "kernel": 7})


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
    device, place = common.setup_run(config.device)
    run = Path(config.run)
    model_dir, state_path = run / "model", run / "train_state.pt"
    dataset = common.open_dataset(config.data, config.categories, config.length)
    if len(dataset) < config.batch:
        raise DatasetError(f"{config.data} has {len(dataset)} clips, fewer than one batch of {config.batch}")

    state = common.load_training_state(state_path)
    if state is not None:
        manifest = read_manifest(model_dir)
        log.info("resuming %s at step %d", run, state["step"])
    elif config.init:
        manifest = read_manifest(config.init)
        if manifest.get("kind") != "codec":
            raise InvalidRequestError(f"{config.init} is not a codec folder")
    else:
        manifest = new_manifest(config, dataset.sample_rate, dataset.length)
    if manifest["sample_rate"] != dataset.sample_rate:
        raise InvalidRequestError(f"the codec expects {manifest['sample_rate']} Hz but the data set has "
                                  f"{dataset.sample_rate} Hz")

    network = build_codec(manifest["codec"])
    segment = max(network.hop, min(config.segment, dataset.length) // network.hop * network.hop)
    if state is not None:
        network.load_state_dict(state["online"])
    elif config.init:
        load_weights(config.init, network)
    network.to(device)
    ema = common.EMA(network, config.ema_decay) if config.ema_decay > 0 else None
    if state is not None and ema is not None:
        load_weights(model_dir, ema.shadow)
    optimizer = torch.optim.AdamW(network.parameters(), lr=config.lr, betas=(0.8, 0.99), weight_decay=0.0)
    if state is not None:
        optimizer.load_state_dict(state["optimizer"])
    step = int(state["step"]) if state is not None else int(manifest["training"]["steps"])
    first_step = step
    trainable = DistributedDataParallel(network) if place.world > 1 else network
    use_amp = device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    stft = MultiResolutionSTFTLoss()

    generator = torch.Generator().manual_seed(config.seed * 1000 + place.rank + step)
    fixed = torch.stack([dataset[i]["audio"] for i in range(0, len(dataset), max(1, len(dataset) // 32))])
    fields = ["step", "loss", "stft", "lr", "seconds_per_step", "examples"]
    loss_log = common.LossLog(run / "log.csv", fields) if place.main else None
    examples_before = int(manifest["training"].get("examples", 0))
    session = {"started_step": step, "data": str(config.data), "device": str(device), "world": place.world,
               "batch": config.batch, "segment": segment}
    started = time.time()
    running, running_stft, window_start = 0.0, 0.0, time.time()

    def saved_network() -> torch.nn.Module:
        return ema.shadow if ema is not None else network

    def save() -> None:
        shipped = saved_network()
        was_training = shipped.training
        shipped.eval()
        manifest["codec"]["args"]["latent_scale"] = measure_latent_scale(shipped, fixed.to(device))
        shipped.train(was_training)
        manifest["training"].update(steps=step, data=str(config.data),
                                    examples=examples_before + (step - first_step) * config.batch * place.world)
        save_model(model_dir, shipped, manifest)
        common.save_training_state(state_path, online=network.state_dict(), optimizer=optimizer.state_dict(), step=step)

    progress = tqdm(total=config.steps, desc=f"train {manifest['name']}", disable=not place.main, unit="step")
    network.train()
    for _ in range(config.steps):
        if common.out_of_time(started, config.max_minutes):
            break
        index = torch.randint(len(dataset), (config.batch,), generator=generator)
        audio = torch.stack([dataset[int(i)]["audio"] for i in index])
        if config.augment:
            audio = augment(audio, generator)
        audio = _crops(audio, segment, generator).to(device)
        lr = common.set_lr(optimizer, step, config.lr, config.warmup)
        with torch.autocast("cuda", dtype=torch.float16, enabled=use_amp):
            rebuilt, latent = trainable(audio)
        spectral = stft(rebuilt.float(), audio)
        loss = spectral + config.latent_penalty * latent.float().pow(2).mean()
        common.optimizer_step(loss, optimizer, scaler, network)
        if ema is not None:
            ema.update(network, step)
        step += 1
        running += loss.item()
        running_stft += spectral.item()
        progress.update(1)
        if place.main and step % config.log_every == 0:
            elapsed = time.time() - window_start
            loss_log.write(step=step, loss=f"{running / config.log_every:.5f}",
                           stft=f"{running_stft / config.log_every:.5f}", lr=f"{lr:.2e}",
                           seconds_per_step=f"{elapsed / config.log_every:.3f}",
                           examples=examples_before + (step - first_step) * config.batch * place.world)
            progress.set_postfix(loss=f"{running / config.log_every:.4f}")
            running, running_stft, window_start = 0.0, 0.0, time.time()
        if place.main and step % config.save_every == 0:
            save()
    progress.close()
    if place.main:
        manifest["training"].setdefault("sessions", []).append(
            dict(session, ended_step=step, minutes=round((time.time() - started) / 60, 2)))
        save()
        (run / "config.json").write_text(json.dumps(asdict(config), indent=2) + "\n")
    common.teardown_distributed()
    return model_dir
