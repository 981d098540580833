"""The training run every model family shares: begin, restore, step, log, save, render, record.

A trainer (``wave.py``, ``codec.py``, ``latent.py``) says only what is its own: how a new
manifest looks, how a batch becomes a loss, and what to render. Everything else—resume from
the run folder or fine-tune from ``--init`` while counting that model's steps, EMA, AdamW,
fp16 autocast on CUDA, DDP, the CSV log, atomic saves, renders every N steps and the session
record in the manifest—happens here once, so the three trainers cannot drift apart.
"""

from __future__ import annotations

import contextlib
import json
import signal
import threading
import time
from dataclasses import asdict, dataclass, field, is_dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from .. import pipeline
from ..conditions import Conditions
from ..models import LoadedModel, load_weights, read_manifest, save_model
from ..sampling import guidance_weights
from ..seeds import noise
from . import common

Losses = dict[str, torch.Tensor]


@dataclass
class Trainer:
    """What a run holds between steps."""

    config: Any
    place: common.Dist
    device: torch.device
    run: Path
    manifest: dict
    state: dict | None = None
    network: torch.nn.Module | None = None
    trainable: torch.nn.Module | None = None
    ema: common.EMA | None = None
    optimizer: torch.optim.Optimizer | None = None
    scaler: torch.amp.GradScaler | None = None
    step: int = 0
    first_step: int = 0
    warmup_from: int = 0               # the step the learning-rate warmup counts from
    examples_before: int = 0
    session: dict = field(default_factory=dict)   # this call's record: device, batch, first step
    sessions_before: list = field(default_factory=list)  # the records of the calls before it
    started: float = field(default_factory=time.time)  # when this call began stepping
    codec: torch.nn.Module | None = None  # saved with the weights when it holds model data (envelope prior)

    @property
    def model_dir(self) -> Path:
        return self.run / "model"

    @property
    def state_path(self) -> Path:
        return self.run / "train_state.pt"

    @property
    def shipped(self) -> torch.nn.Module:
        """The weights a save writes: the EMA when there is one."""
        return self.ema.shadow if self.ema is not None else self.network

    def autocast(self) -> contextlib.AbstractContextManager:
        return torch.autocast("cuda", dtype=torch.float16, enabled=self.device.type == "cuda")

    def examples(self) -> int:
        return self.examples_before + (self.step - self.first_step) * self.config.batch * self.place.world


def begin(config, new_manifest: Callable[[Trainer], dict],
          adapt_init: Callable[[Trainer, dict], dict] | None = None,
          read: Callable[[Path], dict] = read_manifest) -> Trainer:
    """Device, distributed place, and the manifest: the run's own (resume), ``--init``'s, or a new one.

    The callbacks get the trainer so they can see the device and distributed place (a new
    latent model's codec is prepared on rank 0 and broadcast). ``read`` reads a model folder's
    manifest (an embedder's has no codec: ``engine.embedders.read_embedder_manifest``).
    """
    device, place = common.setup_run(config.device)
    trainer = Trainer(config, place, device, Path(config.run), manifest={})
    trainer.state = common.load_training_state(trainer.state_path)
    if trainer.state is not None:
        trainer.manifest = read(trainer.model_dir)
        common.log.info("resuming %s at step %d", trainer.run, trainer.state["step"])
    elif config.init:
        trainer.manifest = read(config.init)
        if adapt_init is not None:
            trainer.manifest = adapt_init(trainer, trainer.manifest)
        common.log.info("fine-tuning from %s (%d steps trained)", config.init, trainer.manifest["training"]["steps"])
    else:
        trainer.manifest = new_manifest(trainer)
    return trainer


def prepare(trainer: Trainer, network: torch.nn.Module, *, betas: tuple[float, float] = (0.9, 0.999),
            ema_decay: float | None = None,
            load_init: Callable[[torch.nn.Module], None] | None = None,
            lr_scales: dict[str, float] | None = None) -> Trainer:
    """Load the weights the run continues from, then EMA, optimizer, step counters, DDP and the scaler.

    ``load_init(network)`` replaces the exact load of ``--init``'s weights (a latent model moved
    onto a wider codec latent grows its stem and head); ``lr_scales`` maps parameter-name prefixes
    to a multiple of the learning rate (:func:`common.param_groups`)."""
    config, state = trainer.config, trainer.state
    if state is not None:
        network.load_state_dict(state["online"])
    elif config.init:
        (load_init or (lambda net: load_weights(config.init, net)))(network)
    network.to(trainer.device)
    decay = config.ema_decay if ema_decay is None else ema_decay
    trainer.ema = common.EMA(network, decay) if decay > 0 else None
    if state is not None and trainer.ema is not None:
        load_weights(trainer.model_dir, trainer.ema.shadow)
    groups = common.param_groups(network, lr_scales)
    trainer.optimizer = torch.optim.AdamW(groups, lr=config.lr, betas=betas, weight_decay=0.0)
    if state is not None:
        trainer.optimizer.load_state_dict(state["optimizer"])
        for group, fresh in zip(trainer.optimizer.param_groups, groups):  # the call's scales, not the saved ones
            group["lr_scale"] = fresh["lr_scale"]
    trainer.network = network
    trainer.step = trainer.first_step = int(state["step"]) if state is not None else int(trainer.manifest["training"]["steps"])
    # a fresh optimizer (new model or --init) warms up from where it starts; a resumed one needs none
    trainer.warmup_from = trainer.step if state is None else 0
    trainer.examples_before = int(trainer.manifest["training"].get("examples", 0))
    trainer.trainable = DistributedDataParallel(network) if trainer.place.world > 1 else network
    trainer.scaler = torch.amp.GradScaler("cuda", enabled=trainer.device.type == "cuda")
    trainer.session = {"started_step": trainer.step, "data": str(config.data), "device": str(trainer.device),
                       "world": trainer.place.world, "batch": config.batch}
    trainer.sessions_before = list(trainer.manifest["training"].get("sessions", []))
    return trainer


def session_records(trainer: Trainer) -> list[dict]:
    """The training record as of now: the earlier calls', then this one's so far if it stepped.

    Every save writes it, so a run killed between saves (a session's end, a lost machine) still
    leaves the steps it saved accounted for, and a call that trained nothing adds no line."""
    if trainer.step == trainer.session.get("started_step", trainer.step):
        return list(trainer.sessions_before)
    minutes = round((time.time() - trainer.started) / 60, 2)
    return [*trainer.sessions_before, dict(trainer.session, ended_step=trainer.step, minutes=minutes)]


def save(trainer: Trainer, before_save: Callable[[torch.nn.Module], None] | None = None) -> None:
    """Model folder (EMA weights + manifest) and training state, each written atomically."""
    shipped = trainer.shipped
    if before_save is not None:
        was_training = shipped.training
        shipped.eval()
        before_save(shipped)
        shipped.train(was_training)
    trainer.manifest["training"].update(steps=trainer.step, data=str(trainer.config.data), examples=trainer.examples(),
                                        sessions=session_records(trainer))
    save_model(trainer.model_dir, shipped, trainer.manifest, codec=trainer.codec)
    common.save_training_state(trainer.state_path, online=trainer.network.state_dict(),
                               optimizer=trainer.optimizer.state_dict(), step=trainer.step)


def run_loop(trainer: Trainer, batch_losses: Callable[[torch.Generator], Losses], *,
             before_save: Callable[[torch.nn.Module], None] | None = None,
             render: Callable[[torch.nn.Module, int], None] | None = None) -> Path:
    """Step until ``config.steps`` or ``config.max_minutes``; returns the model folder.

    ``batch_losses(generator)`` draws a batch and returns named losses; ``"loss"`` is optimised
    and every name is averaged into the CSV log. It uses ``trainer.trainable`` (the DDP wrapper
    when distributed) and ``trainer.autocast()``.
    """
    config, place = trainer.config, trainer.place
    started = trainer.started = time.time()
    # counts the model's steps, so a resumed run's bar starts where it stopped
    total = None if config.steps >= common.UNTIL_TIME else trainer.step + config.steps   # until the time is up
    progress = tqdm(initial=trainer.step, total=total, desc=f"train {trainer.manifest['name']}",
                    disable=not place.main, unit="step")
    trainer.network.train()
    with StopOnInterrupt(active=place.world == 1) as stop:
        _steps(trainer, batch_losses, progress, started, before_save, render, stop)
    progress.close()
    if place.main:
        _finish(trainer, before_save)
    if stop.asked:
        common.log.info("stopped on Ctrl-C at step %d and saved; run the same command again to resume", trainer.step)
    common.teardown_distributed()
    return trainer.model_dir


def _finish(trainer: Trainer, before_save) -> None:
    """A last save (with this call's record) and the run's config.json."""
    save(trainer, before_save)
    config = trainer.config
    settings = asdict(config) if is_dataclass(config) else dict(vars(config))
    (trainer.run / "config.json").write_text(json.dumps(settings, indent=2, default=str) + "\n")


class StopOnInterrupt:
    """While active, the first Ctrl-C (SIGINT) only asks the loop to stop after the step it is in,
    so the last save holds every finished step and no half-applied optimizer update; a second
    Ctrl-C interrupts at once (the last periodic save stands). Single-process runs only: torchrun
    stops its workers with its own signals, and a per-step collective to agree on the stopping
    step made the two-process gloo test abort now and then at teardown, so distributed runs keep
    the periodic saves."""

    def __init__(self, active: bool = True):
        self.asked = False
        self.active = active
        self._previous = None

    def __enter__(self) -> "StopOnInterrupt":
        if self.active and threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._ask)
        return self

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)

    def _ask(self, signum, frame) -> None:
        self.asked = True
        signal.signal(signal.SIGINT, self._previous if self._previous is not None else signal.default_int_handler)
        common.log.warning("Ctrl-C: stopping after this step and saving (press again to stop at once)")


def _steps(trainer: Trainer, batch_losses, progress, started: float, before_save, render,
           stop: StopOnInterrupt) -> None:
    """The optimisation steps of :func:`run_loop`, with logging, saves and renders."""
    config, place = trainer.config, trainer.place
    generator = torch.Generator().manual_seed(config.seed * 1000 + place.rank + trainer.step)
    log = None
    sums: dict[str, float] = {}
    summed = 0  # steps in this log window (the first window of a run that starts between log steps is short)
    window_start = time.time()
    for _ in range(config.steps):
        if common.out_of_time(started, config.max_minutes):
            break
        lr = common.set_lr(trainer.optimizer, trainer.step - trainer.warmup_from, config.lr, config.warmup)
        losses = batch_losses(generator)
        common.optimizer_step(losses["loss"], trainer.optimizer, trainer.scaler, trainer.network)
        if trainer.ema is not None:
            trainer.ema.update(trainer.network, trainer.step)
        trainer.step += 1
        for name, value in losses.items():
            sums[name] = sums.get(name, 0.0) + value.item()
        summed += 1
        progress.update(1)
        if place.main and trainer.step % config.log_every == 0:
            if log is None:
                log = common.LossLog(trainer.run / "log.csv", ["step", *sums, "lr", "seconds_per_step", "examples"])
                log.forget_after(trainer.first_step)
            means = {name: total / summed for name, total in sums.items()}
            log.write(step=trainer.step, lr=f"{lr:.2e}", examples=trainer.examples(),
                      seconds_per_step=f"{(time.time() - window_start) / summed:.3f}",
                      **{name: f"{mean:.5f}" for name, mean in means.items()})
            progress.set_postfix(loss=f"{means['loss']:.4f}")
            sums, summed, window_start = {}, 0, time.time()
        if place.main and trainer.step % config.save_every == 0:
            save(trainer, before_save)
        if place.main and render is not None and config.render_every and trainer.step % config.render_every == 0:
            render(trainer.shipped, trainer.step)
        if stop.asked:
            break


def render_samples(network, codec, manifest: dict, folder: Path, step: int, steps: int) -> None:
    """One sound per label at the model's default sampler and guidance, as WAVs named by step,
    through the studio's own pipeline (so a render is what the studio would make)."""
    from ..audio import export_wav
    folder.mkdir(parents=True, exist_ok=True)
    frames = codec.latent_length(manifest["length"])
    shape = (1, codec.latent_channels, -(-frames // network.hop) * network.hop)
    device = next(network.parameters()).device
    model = LoadedModel(network, codec, manifest, f"step{step}", folder, device, next(network.parameters()).dtype,
                        guidance_weights(manifest, codec))
    for index, label in enumerate(manifest["labels"]):
        audio = pipeline.render(model, noise(index, shape, device), Conditions(label=index),
                                samples=manifest["length"], sampler=manifest["defaults"]["sampler"], steps=steps,
                                guidance=manifest["defaults"]["guidance"])
        export_wav(audio[0].clamp(-1, 1), manifest["sample_rate"], folder, {"model": manifest["name"], "label": label,
                                                                            "step": step, "seed": index},
                   stem=f"step{step:07d}_{label}")
