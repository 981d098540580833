"""Step distillation: a waveform model that makes in a few steps what its teacher makes in many.

After guidance distillation (``distill.py``) a guided step is one network call, and a sound costs
one call per step: 10 steps of ``drums-fast`` take 0.33 s on the 2-core CPU, and the studio's
target for a click is 0.1 s. Fewer steps of the same model lose the detail the solver's later
steps add. Progressive distillation (Salimans & Ho 2022) trains a student whose one DDIM step
over an interval of its own short grid lands where ``substeps`` of the teacher's solver land:
here in one stage, factor ``substeps`` (4) instead of their repeated halving, because the
teacher already runs a second-order solver (DPM-Solver++(2M)) and its guidance costs nothing
extra.

How a batch is made:

- clean latents of training clips (as in ``train wave``), each noised to one level of the
  student's grid ``sigmas`` (VE sigma, highest first, ending at 0);
- the teacher runs ``substeps`` DPM-Solver++(2M) steps from that level to the next (a geometric
  sub-grid; the last interval goes to ``SIGMA_MIN`` and then to 0), at the clip's own guidance
  scale, one network call a substep;
- the target is the clean estimate that makes one DDIM step land on the teacher's result,
  ``x0 = (x_next - r x) / (1 - r)`` with ``r = sigma_next / sigma``, expressed as the velocity
  the student network predicts.

The student keeps the teacher's guidance input (one call a step, any scale of the slider). The
manifest records the grid (``steps_distilled``) and the sampler it must run (DDIM on exactly
that grid: :func:`engine.sampling.distilled_grid`), and the run folder works as every trainer's
(``engine.train.loop``).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from ..conditions import LABEL_SPEC
from ..diffusion.denoisers import v_denoiser
from ..diffusion.guidance import GUIDANCE_INPUT, guidance_features
from ..diffusion.schedules import cosine_sigma_to_t
from ..errors import InvalidRequestError
from ..models import load_weights
from ..sampling import SIGMA_MIN, distilled_grid, distilled_top, is_noise_grid
from . import common, loop
from .distill import begin_from_teacher, draw_scales
from .wave import clip_batch, loss_band_weights

GRID = (80.0, 5.0, 0.5, 0.0)   # three steps; measured before training as the best 3-step grid for
                               # the teacher itself (docs/design-notes.md, "Three steps")


@dataclass
class ProgressiveConfig:
    init: str = "checkpoints/drums-fast"  # the teacher: a guidance-distilled waveform model
    data: str = "data/drums"
    run: str = "runs/drums-steps"
    name: str | None = None
    steps: int = 1000
    max_minutes: float | None = None
    batch: int = 16
    lr: float = 5e-5
    warmup: int = 100
    ema_decay: float = 0.999
    label_dropout: float = 0.1
    time_bias: float = 2.0              # unused here (levels come from the grid); clip_batch reads it
    grid: list[float] = field(default_factory=lambda: list(GRID))  # the student's levels, highest first, ending at 0
    substeps: int = 4                   # teacher solver steps per student step
    top: float | None = None            # guidance scales drawn from [0, top] (default: the teacher's top)
    near_default: float = 0.5
    moments_from: str | None = None     # the teacher's train_state.pt: its Adam moments start this run's
                                        # (a fresh Adam moves every weight by ~lr at first, and its first
                                        # 100 steps raised the loss 12x: docs/design-notes.md, "Three steps")
    augment: bool = True
    categories: list[str] | None = None
    save_every: int = 250
    log_every: int = 25
    render_every: int = 0
    device: str = "auto"
    seed: int = 0


def check_grid(grid: list[float]) -> list[float]:
    """The student's levels: finite, strictly decreasing, positive, then a final 0."""
    levels = [float(v) for v in grid]
    if not is_noise_grid(levels):
        raise InvalidRequestError(f"the student's grid must be decreasing noise levels ending at 0, got {grid}")
    return levels


def student_manifest(config: ProgressiveConfig, teacher: dict) -> dict:
    """The teacher's manifest with the student's grid and sampler as its defaults."""
    if teacher.get("kind") != "wave" or teacher.get("objective", "v_cosine") != "v_cosine":
        raise InvalidRequestError("step distillation takes a waveform (v-objective) model as its teacher")
    if distilled_top(teacher) is None:
        raise InvalidRequestError(f"{config.init} is not guidance-distilled; distil its guidance first "
                                  f"(`python -m engine train distill`), so each teacher step is one call")
    if distilled_grid(teacher) is not None:
        raise InvalidRequestError(f"{config.init} is already step-distilled; distil from its teacher "
                                  f"{teacher['steps_distilled'].get('teacher', '')}".rstrip())
    grid = check_grid(config.grid)
    manifest = copy.deepcopy(teacher)
    if config.name:
        manifest["name"] = config.name
    teacher_defaults = dict(teacher.get("defaults", {}))
    manifest["defaults"] = dict(teacher_defaults, sampler="ddim", steps=len(grid) - 1)
    manifest["description"] = (manifest.get("description", "").rstrip() +
                               f" Step-distilled: {len(grid) - 1} steps.").strip()
    manifest["steps_distilled"] = {"sigmas": grid, "teacher": str(config.init),
                                   "teacher_steps": int(teacher["training"]["steps"]),
                                   "teacher_sampler": "dpmpp_2m", "substeps": int(config.substeps),
                                   "teacher_defaults": teacher_defaults,
                                   "note": "one DDIM step on this grid gives the teacher's substeps "
                                           "(engine/train/progressive.py)"}
    return manifest


def sub_grid(sigma: torch.Tensor, sigma_next: torch.Tensor, substeps: int) -> torch.Tensor:
    """``(substeps + 1, B)`` levels from each ``sigma`` to its ``sigma_next``: geometric, and to
    ``SIGMA_MIN`` then 0 where ``sigma_next`` is 0 (as the teacher's own Karras grid ends)."""
    ends = torch.where(sigma_next > 0, sigma_next, torch.full_like(sigma_next, SIGMA_MIN))
    parts = torch.where(sigma_next > 0, float(substeps), float(substeps - 1)).clamp_min(1.0)
    position = torch.arange(substeps + 1, dtype=sigma.dtype, device=sigma.device)[:, None]
    levels = torch.exp(sigma.log() + (ends.log() - sigma.log()) * (position / parts).clamp(max=1.0))
    last = (sigma_next == 0)[None, :] & (position >= substeps)
    return torch.where(last, torch.zeros_like(levels), levels)


@torch.no_grad()
def teacher_segment(denoiser, x: torch.Tensor, levels: torch.Tensor) -> torch.Tensor:
    """DPM-Solver++(2M) over per-sound grids ``levels`` ``(K + 1, B)``: the same update as
    :func:`engine.diffusion.samplers.sample_dpmpp_2m`, with each sound at its own levels."""
    old = None
    view = lambda v: v.reshape(-1, *([1] * (x.ndim - 1)))  # noqa: E731
    for i in range(levels.shape[0] - 1):
        sigma, sigma_next = levels[i], levels[i + 1]
        denoised = denoiser(x, sigma)
        h = sigma.log() - sigma_next.clamp_min(1e-12).log()
        if old is None:
            corrected = denoised
        else:
            r = (levels[i - 1].log() - sigma.log()) / h
            corrected = (1 + 1 / (2 * view(r))) * denoised - (1 / (2 * view(r))) * old
        stepped = view(sigma_next / sigma) * x - view(torch.expm1(-h)) * corrected
        x = torch.where(view(sigma_next) > 0, stepped, denoised)
        old = denoised
    return x


def ddim_target(x: torch.Tensor, x_next: torch.Tensor, sigma: torch.Tensor, sigma_next: torch.Tensor) -> torch.Tensor:
    """The clean estimate whose DDIM step from ``(x, sigma)`` lands on ``x_next`` at ``sigma_next``."""
    r = (sigma_next / sigma).reshape(-1, *([1] * (x.ndim - 1)))
    return (x_next - r * x) / (1 - r)


def velocity(x: torch.Tensor, x0: torch.Tensor, sigma: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The network's input (variance-preserving) and the velocity that decodes to ``x0`` there
    (the inverse of :func:`engine.diffusion.denoisers.v_denoiser`)."""
    s = sigma.reshape(-1, *([1] * (x.ndim - 1)))
    alpha, sigma_vp = 1 / torch.sqrt(1 + s ** 2), s / torch.sqrt(1 + s ** 2)
    x_vp = x * alpha
    return x_vp, (alpha * x_vp - x0) / sigma_vp


def start_moments(optimizer: torch.optim.Optimizer, state_path: str) -> None:
    """Seed ``optimizer`` with the Adam moments of the run that trained the teacher, so the
    student's first steps are as small as the teacher's last ones were."""
    state = common.load_training_state(Path(state_path))
    if state is None or "optimizer" not in state:
        raise InvalidRequestError(f"{state_path} holds no training state (a run folder's train_state.pt)")
    scales = [group["lr_scale"] for group in optimizer.param_groups]
    try:
        optimizer.load_state_dict(state["optimizer"])
    except ValueError as error:
        raise InvalidRequestError(f"{state_path}'s optimizer does not fit this network: {error}") from None
    for group, scale in zip(optimizer.param_groups, scales):
        group["lr_scale"] = scale


def train_progressive(config: ProgressiveConfig) -> Path:
    """Run ``config.steps`` steps (or until ``max_minutes``), saving as it goes; returns the model folder."""
    if not config.init:
        raise InvalidRequestError("step distillation needs its teacher: --init MODEL_FOLDER")
    if config.substeps < 2:
        raise InvalidRequestError(f"--substeps must be at least 2 (teacher steps per student step), got {config.substeps}")
    dataset, trainer, teacher, network = begin_from_teacher(config, student_manifest)
    manifest, device, codec = trainer.manifest, trainer.device, trainer.codec
    # one group for the guidance input, as in the teacher's run, so its optimizer state fits
    loop.prepare(trainer, network, load_init=lambda student: load_weights(config.init, student),
                 lr_scales={f"embedding_in.{GUIDANCE_INPUT}.": 1.0})
    if trainer.state is None and config.moments_from:
        start_moments(trainer.optimizer, config.moments_from)
    grid = torch.tensor(distilled_grid(manifest), dtype=torch.float32, device=device)
    top = float(config.top if config.top is not None else distilled_top(manifest))
    trainer.session["note"] = (f"step distillation from {config.init}: {len(grid) - 1} steps, "
                               f"{config.substeps} teacher substeps each")
    band_weights = loss_band_weights(codec, 0.5).to(device)
    null = trainer.network.num_labels
    model_labels = common.label_map(dataset.label_names, manifest["labels"], null)[dataset.labels]
    label_specs = [replace(LABEL_SPEC, dropout=config.label_dropout)]
    default = float(manifest["steps_distilled"]["teacher_defaults"].get("guidance", 3.0))
    features_dim = teacher.embeddings[GUIDANCE_INPUT]
    scale_config = replace(config, top=top)

    def batch_losses(generator: torch.Generator) -> loop.Losses:
        latent, labels, _, eps = clip_batch(dataset, model_labels, label_specs, null, codec, config, 0.0, generator,
                                            device)
        # every interval of the grid equally often, in a random order
        step = torch.randperm(config.batch, generator=generator) % (len(grid) - 1)
        sigma, sigma_next = grid[step.to(device)], grid[(step + 1).to(device)]
        scales = draw_scales(config.batch, default, scale_config, generator).to(device)
        scales = torch.where(labels == null, torch.ones_like(scales), scales)  # no label: the plain step
        cond = {"label": labels, GUIDANCE_INPUT: guidance_features(scales, features_dim, top).to(device)}
        x = latent + sigma[:, None, None] * eps
        with torch.no_grad():
            denoiser = v_denoiser(lambda x_vp, t: teacher(x_vp, t, cond).float())
            x_next = teacher_segment(denoiser, x, sub_grid(sigma, sigma_next, config.substeps))
            x0 = ddim_target(x, x_next, sigma, sigma_next)
        x_vp, target = velocity(x, x0, sigma)
        with trainer.autocast():
            prediction = trainer.trainable(x_vp, cosine_sigma_to_t(sigma), cond)
        return {"loss": ((prediction.float() - target).pow(2) * band_weights).mean()}

    return loop.run_loop(trainer, batch_losses)
