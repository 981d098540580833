"""Guidance distillation of the latent model: a guided step of ``latent-prompts`` in one call.

The latent model is guided on its label group (the class label and the prompt) with classifier-
free guidance: two U-Net calls a step, stacked as one batch of two. On the 2-core CPU a 1 s sound's
step costs 21 ms that way against 15 ms for one call (``docs/design-notes.md``, "Guidance
distillation of the latent model"), so one call a step is what brings a 1 s sound under 0.3 s.

As for the waveform models (:mod:`engine.train.distill`, Meng et al. 2023, stage one) the student
is the teacher's own U-Net plus a zero-started embedding input for the scale, so it starts as the
teacher's conditional model and learns only the guidance offset. What differs here:

- the picture is alpha-blending (:func:`engine.train.latent.blend_batch`): the teacher and the
  student predict the blending direction ``z - n`` at the blend level ``alpha``;
- the batches are the latent trainer's own (:func:`engine.train.latent.batch_source`): cached
  augmented latents, the loudness and onset curves measured and roughened, the prompt as a
  caption's text embedding or the clip's audio embedding, every condition dropped as its spec says;
- the teacher spreads its guidance per latent channel (``defaults.guidance_weights``: the bypassed
  low sub-bands at scale 1). The student learns that spread as part of its answer, so its manifest
  keeps the weights only as a record (``guidance_distilled.guidance_weights``), not as a default;
- the curves are a second guidance group (``control_guidance``). They stay outside the distilled
  scale: a target has the same curves in its two calls, and the studio still guides the curves
  with an extra call (:func:`engine.sampling.conditioned`), so the control guidance slider keeps
  its meaning.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..conditions import LABEL_GROUP, condition_specs, without
from ..diffusion.guidance import GUIDANCE_INPUT, guidance_features
from ..errors import InvalidRequestError
from ..models import copy_folder, find_codec_folder, load_model, read_manifest
from ..nets import build_network
from . import common, loop
from .latent import DEFAULT_LENGTH, batch_source, blend_batch, load_run_embedder
from .distill import FEATURES, DistillConfig, draw_scales, session_note, start_student, with_guidance_input


def latent_student_manifest(config: DistillConfig, teacher: dict) -> dict:
    """The teacher's manifest with the guidance input added to its network, its per-channel
    guidance weights moved into the record of what it was distilled from, and its codec and
    embedder folders copied into the run (so ``run/model`` loads beside them, as a trained one does)."""
    if teacher.get("kind") != "latent" or teacher.get("objective") != "blend":
        raise InvalidRequestError("latent guidance distillation takes an alpha-blending latent model as its teacher")
    if not any(spec.group == LABEL_GROUP for spec in condition_specs(teacher)):
        raise InvalidRequestError("the teacher takes no label or prompt: there is no guidance to distil")
    manifest = with_guidance_input(config, teacher, "engine/train/distill_latent.py")
    # the student learns the teacher's per-channel spread as part of its answer: a record, not a default
    manifest["guidance_distilled"]["guidance_weights"] = manifest["defaults"].pop("guidance_weights", None)
    run = Path(config.run)
    for what, spec in (("codec", manifest.get("codec") or {}), ("embedder", manifest.get("embedder") or {})):
        name = spec.get("model")
        if name and name != "laion":
            copy_folder(find_codec_folder(name, config.init, what=what), run / name)
    return manifest


def guided_blend_targets(teacher: torch.nn.Module, noisy: torch.Tensor, alpha: torch.Tensor, cond: dict,
                         scales: torch.Tensor, weights: torch.Tensor | None, label_names: list[str]) -> torch.Tensor:
    """The teacher's guided blending direction for each clip at its own scale, in one batched call:
    ``uncond + s_c (cond - uncond)`` with the channel's scale ``s_c = 1 + w_c (scale - 1)`` (all
    channels the scale without ``weights``). "Uncond" lacks the label group only; the curves stay,
    as the studio's distilled sampling keeps them in both calls. A clip whose label and prompt
    were dropped gets its unconditional answer whatever the scale."""
    uncond = without(cond, label_names, teacher.num_labels)
    both = {name: torch.cat([cond[name], uncond[name]]) for name in cond}
    conditional, unconditional = teacher(torch.cat([noisy, noisy]), torch.cat([alpha, alpha]), both).float().chunk(2)
    scale = scales.to(conditional)[:, None, None]
    if weights is not None:
        scale = 1.0 + weights.to(conditional)[None, :, None] * (scale - 1.0)
    return unconditional + scale * (conditional - unconditional)


def train_distill_latent(config: DistillConfig) -> Path:
    """Run ``config.steps`` steps (or until ``max_minutes``) of latent guidance distillation."""
    # a folder of WAVs is cut to the teacher's clip length (a built data set has its own)
    length = int(read_manifest(config.init).get("length", DEFAULT_LENGTH))
    dataset = common.open_dataset(config.data, config.categories, length, batch=config.batch)
    trainer = loop.begin(config, lambda _: {}, lambda _, teacher: latent_student_manifest(config, teacher))
    manifest, device = trainer.manifest, trainer.device
    if manifest["length"] != dataset.length or manifest["sample_rate"] != dataset.sample_rate:
        raise InvalidRequestError(f"the model expects {manifest['length']} samples at {manifest['sample_rate']} Hz "
                                  f"but the data set has {dataset.length} at {dataset.sample_rate} Hz")
    teacher_model = load_model(config.init, device)
    teacher = teacher_model.network.eval().requires_grad_(False)
    codec = teacher_model.codec.to(device)
    # the embedder folder was copied into the run with the student's manifest
    embedder = load_run_embedder(manifest, Path(config.run), device) if manifest.get("embedder") else None
    network = build_network(manifest["network"])

    loop.prepare(trainer, network, load_init=start_student(config),
                 lr_scales={f"embedding_in.{GUIDANCE_INPUT}.": config.guidance_lr_scale})
    trainer.session["note"] = session_note(config, "latent ")
    draw = batch_source(config, manifest, dataset, codec, network, device, embedder, progress=trainer.place.main)
    label_names = [spec.name for spec in condition_specs(manifest) if spec.group == LABEL_GROUP]
    weights = teacher_model.guidance_weights
    default = float(manifest.get("defaults", {}).get("guidance", 3.0))

    def batch_losses(generator: torch.Generator) -> loop.Losses:
        latent, cond = draw(generator)
        noisy, alpha, _ = blend_batch(latent, generator)
        scales = draw_scales(latent.shape[0], default, config, generator)
        with torch.no_grad():
            target = guided_blend_targets(teacher, noisy, alpha, cond, scales, weights, label_names)
        features = guidance_features(scales, FEATURES, config.top).to(device)
        with trainer.autocast():
            prediction = trainer.trainable(noisy, alpha, {**cond, GUIDANCE_INPUT: features})
        return {"loss": (prediction.float() - target).pow(2).mean()}

    return loop.run_loop(trainer, batch_losses)
