"""Guidance distillation: a waveform model that answers a guided step in one network call.

Classifier-free guidance costs two network calls a step (with and without the label). A student
that reads the guidance scale as one more input and is trained to give, in one call, what the
teacher's two calls give mixed by that scale (Meng et al. 2023, "On distillation of guided
diffusion models", stage one) halves the work of every step: on the 2-core CPU one call at batch
1 costs 0.59 of the guided call at batch 2 (``docs/design-notes.md``, "Guidance distillation").

The student is the teacher's own network plus a zero-initialised embedding input for the scale
(``UNet1d(embeddings={"guidance": F})``, :func:`engine.diffusion.guidance.guidance_features`), so
it starts as the teacher's conditional model and training only has to learn the guidance offset.
Targets come from the teacher on noised training clips (the teacher's own training picture), with
scales drawn over the studio's range ``[0, top]``, half of them near the model's default; labels
are dropped as in training, and a dropped label's target is the unconditional prediction whatever
the scale. A latent teacher is distilled the same way on its own picture and batches
(:mod:`engine.train.distill_latent`). The run folder works as every trainer's
(``engine.train.loop``): resume, atomic saves, EMA, the CSV log. The teacher is ``--init``; the student keeps counting its steps.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import torch

from ..conditions import LABEL_SPEC
from ..diffusion.guidance import GUIDANCE_INPUT, guidance_features
from ..errors import InvalidRequestError
from ..models import load_codec, load_model, read_manifest, read_weights
from ..nets import build_network
from ..sampling import distilled_top
from . import common, loop
from .wave import clip_batch, loss_band_weights, v_noised

FEATURES = 16          # width of the guidance features the student reads
TOP = 10.0             # the highest guidance scale it learns (the studio's slider goes to 15: beyond
                       # 10 a request says so; no default of a shipped model is above 4)


@dataclass
class DistillConfig:
    init: str = "checkpoints/drums"     # the teacher: a guided waveform or latent model (and the student's start)
    student: str | None = None          # start the student from this distilled model instead (a teacher
                                        # fine-tuned since it was distilled: the student only catches up)
    label_teachers: dict[str, str] | None = None  # latent: clips of these labels take their targets from
                                        # these teachers instead ({"kick": FOLDER}: a teacher fine-tuned for
                                        # one category, without what that fine-tune cost the others)
    data: str = "data/drums"            # the data set the teacher was trained on
    run: str = "runs/drums-distill"     # run folder: model/, train_state.pt, log.csv
    name: str | None = None             # model name in the manifest (default: the teacher's)
    steps: int = 1000
    max_minutes: float | None = None
    batch: int = 16
    lr: float = 1e-4
    warmup: int = 100
    ema_decay: float = 0.999
    label_dropout: float = 0.1          # share of clips with no label (their target: the unconditional call)
    time_bias: float = 2.0              # as the teacher's training: t = u^(1/time_bias)
    top: float = TOP                    # scales are drawn from [0, top]...
    near_default: float = 0.5           # ...this share of them within +-1 of the teacher's default
    guidance_lr_scale: float = 30.0     # the new guidance input learns this much faster: it starts at zero
                                        # beside weights trained for 45k steps (the controls' lesson,
                                        # docs/latent.md session 10)
    augment: bool = True
    augment_copies: int = 4             # latent teacher: clips encoded once as they are and K - 1 times augmented
    balance: float = 0.0                # latent teacher: 1 draws every category equally often
    text_share: float = 0.5             # latent teacher: share of prompts that are a caption's text embedding
    short_crops: float = 0.25           # latent teacher: share of batches on a shorter prefix of the clips
    categories: list[str] | None = None
    save_every: int = 250
    log_every: int = 25
    render_every: int = 0
    device: str = "auto"
    seed: int = 0


def student_manifest(config: DistillConfig, teacher: dict) -> dict:
    """The teacher's manifest with the guidance input added to its network and the record of
    what it was distilled from."""
    if teacher.get("kind") != "wave" or teacher.get("objective", "v_cosine") != "v_cosine":
        raise InvalidRequestError("guidance distillation takes a waveform (v-objective) model as its teacher")
    if not teacher.get("labels"):
        raise InvalidRequestError("the teacher has no labels: there is no guidance to distil")
    return with_guidance_input(config, teacher, "engine/train/distill.py")


def with_guidance_input(config: DistillConfig, teacher: dict, trainer: str) -> dict:
    """A copy of the teacher's manifest whose network reads the guidance scale, with the record of
    what it was distilled from (``guidance_distilled``: what :func:`engine.sampling.distilled_top`
    reads); refused for a teacher that is already distilled. A student started from an earlier
    student (``config.student``) keeps that student's name, training history and step count
    (session 34: it had taken the teacher's, so a re-distilled `latent-fast` counted its teacher's
    77261 steps instead of its own 89948) and its defaults, which were chosen by evaluating it."""
    if distilled_top(teacher) is not None:
        raise InvalidRequestError("the teacher is already guidance-distilled")
    manifest = copy.deepcopy(teacher)
    if config.student:  # the student goes on: its own steps and history, and the defaults chosen for it
        earlier = read_manifest(config.student)
        manifest["training"] = copy.deepcopy(earlier["training"])
        manifest["defaults"] = copy.deepcopy(earlier.get("defaults", manifest.get("defaults", {})))
        manifest["name"] = earlier.get("name", manifest.get("name"))
    if config.name:
        manifest["name"] = config.name
    args = manifest["network"]["args"]
    args["embeddings"] = {**args.get("embeddings", {}), GUIDANCE_INPUT: FEATURES}
    manifest["description"] = (manifest.get("description", "").rstrip() +
                               " Guidance-distilled: a guided step in one network call.").strip()
    manifest["guidance_distilled"] = {"top": float(config.top), "features": FEATURES, "teacher": str(config.init),
                                      "teacher_steps": int(teacher["training"]["steps"]),
                                      "note": f"one network call a step gives the teacher's guided step ({trainer})"}
    return manifest


def draw_scales(count: int, default: float | torch.Tensor, config: DistillConfig,
                generator: torch.Generator) -> torch.Tensor:
    """Guidance scales for one batch: a share near the model's default (where users stay), the
    rest spread over ``[0, top]`` so every position of the studio's slider is learned. ``default``
    is one scale, or one per clip (the studio's default for each clip's label, as the latent
    student's kicks asked alone at 1.5 and percussion at 6.5 need:
    :func:`engine.train.distill_latent.clip_defaults`)."""
    spread = torch.rand(count, generator=generator) * config.top
    near = (torch.as_tensor(default, dtype=torch.float32) + 2.0 * torch.rand(count, generator=generator)
            - 1.0).clamp(0.0, config.top)
    pick = torch.rand(count, generator=generator) < config.near_default
    return torch.where(pick, near, spread)


def guided_targets(teacher: torch.nn.Module, noisy: torch.Tensor, t: torch.Tensor, labels: torch.Tensor,
                   scales: torch.Tensor) -> torch.Tensor:
    """The teacher's classifier-free guided prediction, per clip at its own scale, in one batched
    call: ``uncond + scale * (cond - uncond)`` (equal to uncond where the label was dropped)."""
    null = torch.full_like(labels, teacher.num_labels)
    both = teacher(torch.cat([noisy, noisy]), torch.cat([t, t]), {"label": torch.cat([labels, null])})
    cond, uncond = both.float().chunk(2)
    return uncond + scales.to(cond)[:, None, None] * (cond - uncond)


def begin_from_teacher(config, make_manifest) -> tuple:
    """The start every distillation shares (``train distill``, ``train steps``): the data set, the
    run with its manifest made from the teacher's (``make_manifest(config, teacher_manifest)``),
    the teacher's network frozen, its codec (envelope prior included; a resumed run's own), and the
    student's network, not yet loaded. A resumed run reads the teacher from ``--init`` again."""
    dataset = common.open_dataset(config.data, config.categories, batch=config.batch)
    trainer = loop.begin(config, lambda _: {}, lambda _, teacher: make_manifest(config, teacher))
    manifest = trainer.manifest
    if manifest["length"] != dataset.length or manifest["sample_rate"] != dataset.sample_rate:
        raise InvalidRequestError(f"the model expects {manifest['length']} samples at {manifest['sample_rate']} Hz "
                                  f"but the data set has {dataset.length} at {dataset.sample_rate} Hz")
    teacher_model = load_model(config.init, trainer.device)
    teacher = teacher_model.network.eval().requires_grad_(False)
    trainer.codec = (load_codec(manifest, trainer.model_dir) if trainer.state is not None
                     else teacher_model.codec).to(trainer.device)
    return dataset, trainer, teacher, build_network(manifest["network"])


def start_from_teacher(init: str) -> Callable[[torch.nn.Module], None]:
    """Loads the teacher's weights into a student whose only new parameters are its guidance input
    (they keep their zero start); any other mismatch means ``init`` is not the teacher."""
    def load(student: torch.nn.Module) -> None:
        missing, unexpected = student.load_state_dict(read_weights(init), strict=False)
        if unexpected or any(not name.startswith(f"embedding_in.{GUIDANCE_INPUT}.") for name in missing):
            raise InvalidRequestError(f"{init}'s weights do not fit the student (missing {missing[:3]}, "
                                      f"unexpected {unexpected[:3]})")
    return load


def start_student(config: DistillConfig) -> Callable[[torch.nn.Module], None]:
    """The student's first weights: the teacher's (:func:`start_from_teacher`), or with
    ``config.student`` a student distilled before, whose weights must fit exactly (guidance input
    included): distilling a teacher that was fine-tuned after that student then starts from what
    the student already learned instead of from zero guidance."""
    if not config.student:
        return start_from_teacher(config.init)

    def load(student: torch.nn.Module) -> None:
        manifest = read_manifest(config.student)
        if not manifest.get("guidance_distilled"):
            raise InvalidRequestError(f"{config.student} is not a guidance-distilled model (--student)")
        try:
            student.load_state_dict(read_weights(config.student))
        except RuntimeError as error:
            raise InvalidRequestError(f"{config.student}'s weights do not fit the student of {config.init}: "
                                      f"{str(error).splitlines()[0]}") from error
    return load


def session_note(config: DistillConfig, kind: str) -> str:
    """The training history's line for this run."""
    note = f"{kind}guidance distillation from {config.init} (scales 0-{config.top:g})"
    for label, folder in sorted((config.label_teachers or {}).items()):
        note += f", its {label} clips from {folder}"
    return note + (f", the student started from {config.student}" if config.student else "")


def train_distill(config: DistillConfig) -> Path:
    """Run ``config.steps`` steps (or until ``max_minutes``), saving as it goes; returns the model folder."""
    if not config.init:
        raise InvalidRequestError("guidance distillation needs its teacher: --init MODEL_FOLDER")
    if read_manifest(config.init).get("kind") == "latent":
        from .distill_latent import train_distill_latent
        return train_distill_latent(config)
    if config.label_teachers:
        raise InvalidRequestError("a teacher per label is for latent models only")
    dataset, trainer, teacher, network = begin_from_teacher(config, student_manifest)
    manifest, device, codec = trainer.manifest, trainer.device, trainer.codec

    loop.prepare(trainer, network, load_init=start_student(config),
                 lr_scales={f"embedding_in.{GUIDANCE_INPUT}.": config.guidance_lr_scale})
    trainer.session["note"] = session_note(config, "")
    band_weights = loss_band_weights(codec, 0.5).to(device)
    null = trainer.network.num_labels
    model_labels = common.label_map(dataset.label_names, manifest["labels"], null)[dataset.labels]  # per clip
    label_specs = [replace(LABEL_SPEC, dropout=config.label_dropout)]
    default = float(manifest.get("defaults", {}).get("guidance", 3.0))

    def batch_losses(generator: torch.Generator) -> loop.Losses:
        latent, labels, t, eps = clip_batch(dataset, model_labels, label_specs, null, codec, config, 0.0, generator,
                                            device)
        scales = draw_scales(config.batch, default, config, generator)
        noisy, _ = v_noised(latent, eps, t)
        with torch.no_grad():
            target = guided_targets(teacher, noisy, t, labels, scales)
        features = guidance_features(scales, FEATURES, config.top).to(device)
        with trainer.autocast():
            prediction = trainer.trainable(noisy, t, {"label": labels, GUIDANCE_INPUT: features})
        return {"loss": ((prediction.float() - target).pow(2) * band_weights).mean()}

    return loop.run_loop(trainer, batch_losses)
