"""Pieces every trainer shares: distributed set-up, EMA, the loss log, atomic training state.

Trainers (``wave.py`` and, later, ``codec.py`` / ``latent.py``) are plain functions that use
these; nothing here knows what a model computes.
"""

from __future__ import annotations

import copy
import csv
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist

from ..errors import InvalidRequestError
from ..models import atomic_write, pick_device


UNTIL_TIME = 10 ** 12
"""The step count of a run given ``--max-minutes`` and no ``--steps``: it trains until the time is up
(a user who asks for 60 minutes means 60 minutes, not the 1000-step default)."""

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Dist:
    """Where this process sits: rank 0 of 1 unless started by ``torchrun``."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def setup_distributed(device: torch.device) -> Dist:
    """Join the process group when ``torchrun`` set WORLD_SIZE>1 (NCCL on CUDA, gloo on CPU)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return Dist(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def teardown_distributed() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


class EMA:
    """Exponential moving average of a network's weights, warmed up so early steps count.

    decay_t = min(decay, (1 + t) / (10 + t)): a fresh run is not dominated by its random start,
    and a resumed run (t large) uses the full decay at once.
    """

    def __init__(self, network: torch.nn.Module, decay: float = 0.999):
        self.decay = decay
        self.shadow = copy.deepcopy(network).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, network: torch.nn.Module, step: int) -> None:
        decay = min(self.decay, (1 + step) / (10 + step))
        for ema_param, param in zip(self.shadow.parameters(), network.parameters()):
            ema_param.lerp_(param.detach(), 1 - decay)
        for ema_buffer, buffer in zip(self.shadow.buffers(), network.buffers()):
            ema_buffer.copy_(buffer)


class LossLog:
    """Appends one CSV row per logging step; a resumed run keeps appending to the same file."""

    def __init__(self, path: Path, fields: list[str]):
        self.path, self.fields = path, fields
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "w", newline="") as handle:
                csv.writer(handle, lineterminator="\n").writerow(fields)
            return
        with open(path, newline="") as handle:
            rows = list(csv.reader(handle))
        old = rows[0] if rows else []
        if old != fields:  # a resumed run logs another set of losses: one header for both
            self.fields = fields + [f for f in old if f not in fields]
            table = [dict(zip(old, row)) for row in rows[1:]]
            atomic_write(path, lambda tmp: tmp.write_text(
                "".join(",".join(line) + "\n" for line in
                        [self.fields] + [[row.get(f, "") for f in self.fields] for row in table])))

    def forget_after(self, step: int) -> None:
        """Drop rows logged after ``step``: a run killed between saves resumes from its last save,
        and the steps it redoes must not appear twice in the log."""
        if not self.path.exists():
            return
        with open(self.path, newline="") as handle:
            rows = list(csv.reader(handle))
        kept = [rows[0]] + [row for row in rows[1:] if row and int(row[0]) <= step]
        if len(kept) != len(rows):
            atomic_write(self.path, lambda tmp: tmp.write_text("".join(",".join(r) + "\n" for r in kept)))

    def write(self, **row) -> None:
        with open(self.path, "a", newline="") as handle:
            csv.writer(handle, lineterminator="\n").writerow([row.get(f, "") for f in self.fields])


def save_training_state(path: Path, **state) -> None:
    """Optimizer, online weights and step for a resume, written atomically.

    A ``torch.save`` file because the optimizer state is a nested dict that safetensors cannot
    hold; it never leaves the run folder, and it is read back with ``weights_only=True``. The
    batch generator needs no saved state: it is reseeded from the step. What is shipped is the
    model folder (EMA weights as safetensors).
    """
    atomic_write(path, lambda tmp: torch.save(state, tmp))


def load_training_state(path: Path) -> dict | None:
    if not path.is_file():
        return None
    return torch.load(path, map_location="cpu", weights_only=True)


def label_map(dataset_labels: tuple[str, ...], model_labels: list[str], null: int) -> torch.Tensor:
    """Data-set label index -> model label index; labels the model lacks train the "no label" class."""
    return torch.tensor([model_labels.index(n) if n in model_labels else null for n in dataset_labels])


def batch_index(labels: torch.Tensor, batch: int, balance: float, generator: torch.Generator) -> torch.Tensor:
    """One batch's clip indices: uniform over the clips (``balance`` 0), or each clip weighted by
    its category's clip count to the power ``-balance`` (1: every category equally often).

    Why: the drum set holds 219 perc clips and 46 kicks, so uniform batches spend 39 % of the
    model on perc and 13 % on snares, and the unconditional model that guidance pushes away from
    is mostly perc. Balance 0 draws exactly what the trainers drew before it existed, so a run
    resumed without it goes on as it was.
    """
    if balance < 0:
        raise InvalidRequestError(f"balance must be >= 0, got {balance}")
    if balance == 0:
        return torch.randint(len(labels), (batch,), generator=generator)
    counts = torch.bincount(labels).double()
    return torch.multinomial(counts[labels] ** -balance, batch, replacement=True, generator=generator)


def lr_at(step: int, base_lr: float, warmup: int) -> float:
    """Linear warm-up then constant: diffusion training is long and gains little from decay here."""
    return base_lr * min(1.0, (step + 1) / max(1, warmup))


# ----------------------------------------------------------------------------- run setup shared by every trainer


def setup_run(device_name: str | None) -> tuple[torch.device, Dist]:
    """The device and distributed place of this process; under ``torchrun`` on CUDA, its local GPU."""
    device = pick_device(device_name)
    place = setup_distributed(device)
    if place.world > 1 and device.type == "cuda":
        device = torch.device("cuda", place.local_rank)
        torch.cuda.set_device(device)
    return device, place


def open_dataset(data: str | Path, categories: list[str] | None = None, length: int | None = None,
                 batch: int | None = None):
    """A built data set (``index.json``) or any folder of WAVs (cut to ``length`` samples, default 32768).

    A set smaller than one ``batch`` is fine: every trainer draws its batches with replacement
    (:func:`batch_index`), so ten kicks train with batches of 16 that repeat clips. That is the
    usual fine-tuning case (a user's folder of a few hits), so it is said once, not refused.
    """
    from ..data.dataset import DrumDataset
    from ..errors import DatasetError

    path = Path(data)
    if (path / "index.json").is_file():
        dataset = DrumDataset(path, "train", categories=categories)
    elif path.is_dir():
        dataset = DrumDataset.from_folder(path, categories=categories, **({"length": length} if length else {}))
    else:
        raise DatasetError(f"{path} is neither a built data set nor a folder of WAVs; "
                           "build one with `python scripts/build_drum_dataset.py`")
    if batch and len(dataset) < batch:
        log.info("%s has %d clips, fewer than one batch of %d: batches repeat clips", path, len(dataset), batch)
    return dataset


def optimizer_step(loss: torch.Tensor, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler,
                   network: torch.nn.Module, clip: float = 1.0) -> None:
    """Backward (scaled under fp16 autocast), clip the gradient norm, step."""
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.unscale_(optimizer)
    torch.nn.utils.clip_grad_norm_(network.parameters(), clip)
    scaler.step(optimizer)
    scaler.update()


def set_lr(optimizer: torch.optim.Optimizer, step: int, base_lr: float, warmup: int) -> float:
    """Set every group's learning rate for ``step``: the schedule times the group's ``lr_scale``."""
    lr = lr_at(step, base_lr, warmup)
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)
    return lr


def param_groups(network: torch.nn.Module, lr_scales: dict[str, float] | None) -> list[dict]:
    """The optimizer's parameter groups: parameters whose name starts with a prefix in
    ``lr_scales`` learn at that multiple of the rate (new zero-initialised inputs of a fine-tuned
    model catch up with weights trained for tens of thousands of steps), the rest at 1."""
    scales = lr_scales or {}
    groups: dict[str | None, list] = {}  # one group per prefix (whatever its scale), so a resumed
    for name, param in network.named_parameters():  # optimizer state always matches the groups
        prefix = next((p for p in scales if name.startswith(p)), None)
        groups.setdefault(prefix, []).append(param)
    return [{"params": params, "lr_scale": scales.get(prefix, 1.0) if prefix else 1.0}
            for prefix, params in groups.items()]


def out_of_time(started: float, max_minutes: float | None) -> bool:
    import time

    if max_minutes is not None and time.time() - started > 60 * max_minutes:
        log.info("time budget of %.1f min reached", max_minutes)
        return True
    return False
