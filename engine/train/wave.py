"""Train or fine-tune a waveform drum model (v-objective, cosine schedule) on drum one-shots.

One function, :func:`train_wave`, used by ``python -m engine train wave`` and by the tests.
A run folder holds ``model/`` (a loadable model folder with the EMA weights, rewritten
atomically at every save), ``train_state.pt`` (online weights + optimizer + step, for an exact
resume), ``log.csv`` (the loss log) and ``samples/`` (renders every N steps). Started again on
the same run folder it resumes; started with ``--init`` on a shipped model it fine-tunes from
those weights and keeps counting that model's steps, so CPU sessions add up.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from ..data.augment import augment
from ..data.dataset import DrumDataset
from ..errors import DatasetError, InvalidRequestError
from ..models import read_manifest, load_weights, save_model
from ..nets import build_codec, build_network
from ..nets.pqmf import measure_band_scale
from ..sampling import sample_latent
from ..seeds import noise
from . import common

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


def _dataset(config: WaveTrainConfig) -> DrumDataset:
    path = Path(config.data)
    if (path / "index.json").is_file():
        return DrumDataset(path, "train", categories=config.categories)
    if path.is_dir():
        return DrumDataset.from_folder(path)
    raise DatasetError(f"{path} is neither a built data set nor a folder of WAVs; "
                       "build one with `python scripts/build_drum_dataset.py`")


def new_manifest(config: WaveTrainConfig, labels: list[str], band_scale: list[float], length: int,
                 sample_rate: int) -> dict:
    codec_args = {"channels": 2, "bands": 32, "taps_per_band": 8, "band_scale": band_scale}
    network_args = dict(config.network, in_channels=2 * 32, num_labels=len(labels), pos_dim=32,
                        frame_rate=sample_rate / 32)
    return {
        "format": 1,
        "name": config.name,
        "kind": "wave",
        "objective": "v_cosine",
        "description": "Waveform drum one-shots: v-diffusion on 32 normalised PQMF bands, class-conditional.",
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


def _label_map(dataset_labels: tuple[str, ...], model_labels: list[str], null: int) -> torch.Tensor:
    """Data-set label index -> model label index; labels the model lacks train the "no label" class."""
    return torch.tensor([model_labels.index(n) if n in model_labels else null for n in dataset_labels])


@torch.no_grad()
def validation_loss(network: torch.nn.Module, codec: torch.nn.Module, audio: torch.Tensor, labels: torch.Tensor | None,
                    points: int = 8, seed: int = 0) -> float:
    """The v-objective loss on fixed clips, fixed noise and a fixed grid of times.

    Training losses jump with every random draw of time and noise; this one only moves when the
    network does, so it is what tests and run comparisons should look at. A fresh network
    (zero output) scores about 1.0, the variance of the unit-scaled target.
    """
    generator = torch.Generator().manual_seed(seed)
    latent = codec.encode(audio)
    total = 0.0
    for t_value in torch.linspace(0.05, 0.95, points):
        eps = torch.randn(latent.shape, generator=generator).to(latent.device)
        t = torch.full((latent.shape[0],), float(t_value), device=latent.device)
        alpha, sigma = torch.cos(t * math.pi / 2)[:, None, None], torch.sin(t * math.pi / 2)[:, None, None]
        prediction = network(alpha * latent + sigma * eps, t, labels)
        total += F.mse_loss(prediction.float(), alpha * eps - sigma * latent).item()
    return total / points


def _render(network, codec, manifest: dict, folder: Path, step: int, steps: int) -> None:
    from ..audio import export_wav
    folder.mkdir(parents=True, exist_ok=True)
    shape = (1, codec.latent_channels, codec.latent_length(manifest["length"]))
    device = next(network.parameters()).device
    for index, label in enumerate(manifest["labels"]):
        latent = sample_latent(network, manifest, noise(index, shape, device), steps=steps,
                               guidance=manifest["defaults"]["guidance"], label_index=index)
        audio = codec.decode(latent)[0].float().clamp(-1, 1).cpu()
        export_wav(audio, manifest["sample_rate"], folder, {"model": manifest["name"], "label": label,
                                                            "step": step, "seed": index},
                   stem=f"step{step:07d}_{label}")


def train_wave(config: WaveTrainConfig) -> Path:
    """Run ``config.steps`` steps (or until ``max_minutes``), saving as it goes; returns the model folder."""
    device = common.pick_device(config.device)
    dist = common.setup_distributed(device)
    if dist.world > 1 and device.type == "cuda":
        device = torch.device("cuda", dist.local_rank)
        torch.cuda.set_device(device)
    run = Path(config.run)
    model_dir, state_path = run / "model", run / "train_state.pt"
    dataset = _dataset(config)
    if len(dataset) < config.batch:
        raise DatasetError(f"{config.data} has {len(dataset)} clips, fewer than one batch of {config.batch}")

    state = common.load_training_state(state_path)
    if state is not None:
        manifest = read_manifest(model_dir)
        log.info("resuming %s at step %d", run, state["step"])
    elif config.init:
        manifest = read_manifest(config.init)
        log.info("fine-tuning from %s (%d steps trained)", config.init, manifest["training"]["steps"])
    else:
        sample = torch.stack([dataset[i]["audio"] for i in range(0, len(dataset), max(1, len(dataset) // 256))])
        manifest = new_manifest(config, list(dataset.label_names), measure_band_scale(sample),
                                dataset.length, dataset.sample_rate)
    if manifest["length"] != dataset.length or manifest["sample_rate"] != dataset.sample_rate:
        raise InvalidRequestError(f"the model expects {manifest['length']} samples at {manifest['sample_rate']} Hz "
                                  f"but the data set has {dataset.length} at {dataset.sample_rate} Hz")

    network = build_network(manifest["network"])
    codec = build_codec(manifest["codec"]).to(device)
    if state is not None:
        network.load_state_dict(state["online"])
    elif config.init:
        load_weights(config.init, network)
    network.to(device)
    ema = common.EMA(network, config.ema_decay)
    if state is not None:
        load_weights(model_dir, ema.shadow)
    optimizer = torch.optim.AdamW(network.parameters(), lr=config.lr, weight_decay=0.0)
    if state is not None:
        optimizer.load_state_dict(state["optimizer"])
    step = int(state["step"]) if state is not None else int(manifest["training"]["steps"])
    first_step = step
    trainable = DistributedDataParallel(network) if dist.world > 1 else network
    use_amp = device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)

    null = network.num_labels
    label_map = _label_map(dataset.label_names, manifest["labels"], null)
    generator = torch.Generator().manual_seed(config.seed * 1000 + dist.rank + step)
    loss_log = common.LossLog(run / "log.csv", ["step", "loss", "lr", "seconds_per_step", "examples"]) if dist.main else None
    examples_before = int(manifest["training"].get("examples", 0))
    session = {"started_step": step, "data": str(config.data), "device": str(device), "world": dist.world,
               "batch": config.batch}
    started = time.time()
    running, window_start = 0.0, time.time()

    def save() -> None:
        manifest["training"]["steps"] = step
        manifest["training"]["examples"] = examples_before + (step - first_step) * config.batch * dist.world
        manifest["training"]["data"] = str(config.data)
        save_model(model_dir, ema.shadow, manifest)
        common.save_training_state(state_path, online=network.state_dict(), optimizer=optimizer.state_dict(), step=step)

    progress = tqdm(total=config.steps, desc=f"train {manifest['name']}", disable=not dist.main, unit="step")
    network.train()
    for _ in range(config.steps):
        if config.max_minutes is not None and time.time() - started > 60 * config.max_minutes:
            log.info("time budget of %.1f min reached", config.max_minutes)
            break
        index = torch.randint(len(dataset), (config.batch,), generator=generator)
        items = [dataset[int(i)] for i in index]
        audio = torch.stack([item["audio"] for item in items])
        if config.augment:
            audio = augment(audio, generator)
        labels = label_map[torch.tensor([item["label"] for item in items])]
        drop = torch.rand(config.batch, generator=generator) < config.label_dropout
        labels = torch.where(drop, torch.full_like(labels, null), labels)
        t = (torch.arange(config.batch) + torch.rand(config.batch, generator=generator)) / config.batch  # stratified
        eps = torch.randn(audio.shape[0], codec.latent_channels, codec.latent_length(audio.shape[-1]), generator=generator)
        audio, labels, t, eps = audio.to(device), labels.to(device), t.to(device), eps.to(device)
        with torch.no_grad():
            latent = codec.encode(audio)
        alpha, sigma = torch.cos(t * math.pi / 2)[:, None, None], torch.sin(t * math.pi / 2)[:, None, None]
        noisy, target = alpha * latent + sigma * eps, alpha * eps - sigma * latent

        for group in optimizer.param_groups:
            group["lr"] = common.lr_at(step, config.lr, config.warmup)
        with torch.autocast("cuda", dtype=torch.float16, enabled=use_amp):
            loss = F.mse_loss(trainable(noisy, t, labels).float(), target)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(network.parameters(), 1.0)
        scaler.step(optimizer)
        scaler.update()
        ema.update(network, step)
        step += 1
        running += loss.item()
        progress.update(1)
        if dist.main and step % config.log_every == 0:
            elapsed = time.time() - window_start
            loss_log.write(step=step, loss=f"{running / config.log_every:.5f}", lr=f"{group['lr']:.2e}",
                           seconds_per_step=f"{elapsed / config.log_every:.3f}", examples=examples_before + (step - first_step) * config.batch * dist.world)
            progress.set_postfix(loss=f"{running / config.log_every:.4f}")
            running, window_start = 0.0, time.time()
        if dist.main and step % config.save_every == 0:
            save()
        if dist.main and config.render_every and step % config.render_every == 0:
            _render(ema.shadow, codec, manifest, run / "samples", step, config.render_steps)
    progress.close()
    if dist.main:
        manifest["training"].setdefault("sessions", []).append(
            dict(session, ended_step=step, minutes=round((time.time() - started) / 60, 2)))
        save()
        (run / "config.json").write_text(json.dumps(asdict(config), indent=2) + "\n")
    common.teardown_distributed()
    return model_dir
