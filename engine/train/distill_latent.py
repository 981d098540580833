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
- a category may take its targets from a teacher of its own (``label_teachers``, session 34): a
  teacher fine-tuned for one category (kicks with long tails) cost the others accuracy; its
  student learns that category from it and the rest from the teacher it was fine-tuned from;
- the curves are a second guidance group (``control_guidance``). They stay outside the distilled
  scale: a target has the same curves in its two calls, and the studio still guides the curves
  with an extra call (:func:`engine.sampling.conditioned`), so the control guidance slider keeps
  its meaning.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import NamedTuple

import torch

from ..conditions import LABEL_GROUP, condition_specs, without
from ..diffusion.guidance import GUIDANCE_INPUT, guidance_features
from ..errors import InvalidRequestError
from ..models import LoadedModel, load_model, read_manifest
from ..nets import build_network
from ..sampling import distilled_top, label_defaults
from . import common, loop
from .latent import DEFAULT_LENGTH, batch_source, blend_batch, copy_codec_and_embedder, load_run_embedder
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
    manifest["defaults"].pop("guidance_weights", None)
    manifest["guidance_distilled"]["guidance_weights"] = teacher.get("defaults", {}).get("guidance_weights")
    if config.label_teachers:
        manifest["guidance_distilled"]["label_teachers"] = {label: str(folder) for label, folder
                                                            in sorted(config.label_teachers.items())}
    copy_codec_and_embedder(manifest, config.init, Path(config.run))
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


def pick(cond: dict, rows: torch.Tensor) -> dict:
    """The condition mapping of the batch's ``rows`` only."""
    return {name: value[rows] for name, value in cond.items()}


def _what_it_reads(manifest: dict, key: str):
    """The part of a manifest that decides what a network is asked: its conditions without the
    levels measured on the data they were trained on (``level_floor_db``, read when generating)."""
    if key != "conditions":
        return manifest.get(key)
    return [{k: v for k, v in spec.items() if k != "level_floor_db"} for spec in manifest.get(key, [])]


class Teacher(NamedTuple):
    """A network that gives a clip its target: a guided teacher (two calls, classifier-free guidance
    spread by its per-channel ``weights``), or, with ``top``, a student of the same teacher that reads
    the scale as an input over ``[0, top]`` (one call)."""
    network: torch.nn.Module
    weights: torch.Tensor | None
    top: float | None = None


def _what_it_reads_as_student(manifest: dict, key: str):
    """:func:`_what_it_reads` of the student the teacher ``manifest`` would get (its network reads
    the guidance scale too), to compare with a guidance-distilled label teacher's."""
    if key != "network":
        return _what_it_reads(manifest, key)
    network = copy.deepcopy(manifest["network"])
    network["args"]["embeddings"] = {**network["args"].get("embeddings", {}), GUIDANCE_INPUT: FEATURES}
    return network


def label_teachers(config: DistillConfig, teacher: LoadedModel, device) -> dict[int, Teacher]:
    """``{label index: teacher}`` for the categories that take their targets from a teacher of their
    own. Each must be the teacher's network and conditions with other weights (a fine-tune of it), or
    its targets would not be the same question asked of another model; or a student distilled from
    such a teacher (session 44): a category whose student is already what the studio should keep then
    stays near it while the others learn from a new teacher (28 minutes of distillation on the same
    teachers had moved `latent-fast`'s kicks and cymbals, docs/design-notes.md)."""
    labels = list(teacher.manifest["labels"])
    chosen = {}
    for label, folder in sorted((config.label_teachers or {}).items()):
        if label not in labels:
            raise InvalidRequestError(f"--label-teacher {label}: the teacher has no label {label!r} "
                                      f"(it has {', '.join(labels)})")
        other = load_model(folder, device)
        top = distilled_top(other.manifest)
        reads = _what_it_reads_as_student if top is not None else _what_it_reads
        for key in ("network", "conditions", "labels", "codec"):
            if _what_it_reads(other.manifest, key) != reads(teacher.manifest, key):
                raise InvalidRequestError(f"--label-teacher {label}={folder}: its {key} differs from the "
                                          f"teacher's {config.init}; it must be a fine-tune of it or a student of one")
        if top is not None and int(other.manifest["guidance_distilled"].get("features", FEATURES)) != FEATURES:
            raise InvalidRequestError(f"--label-teacher {label}={folder}: it reads the scale in another width")
        chosen[labels.index(label)] = Teacher(other.network.eval().requires_grad_(False),
                                              None if top is not None else other.guidance_weights, top)
    return chosen


def teacher_targets(teacher: Teacher, noisy: torch.Tensor, alpha: torch.Tensor, cond: dict, scales: torch.Tensor,
                    label_names: list[str]) -> torch.Tensor:
    """What ``teacher`` answers at each clip's scale: :func:`guided_blend_targets`, or a student's one call."""
    if teacher.top is None:
        return guided_blend_targets(teacher.network, noisy, alpha, cond, scales, teacher.weights, label_names)
    features = guidance_features(scales, FEATURES, teacher.top).to(noisy.device)
    return teacher.network(noisy, alpha, {**cond, GUIDANCE_INPUT: features}).float()


def routed_targets(teacher: tuple, by_label: dict, labels: torch.Tensor, noisy: torch.Tensor, alpha: torch.Tensor,
                   cond: dict, scales: torch.Tensor, label_names: list[str]) -> torch.Tensor:
    """:func:`teacher_targets` for a batch, each clip asked of its label's own teacher where
    ``by_label`` names one (``{label index: Teacher}``), of ``teacher`` (network, guidance weights)
    otherwise; ``labels`` are the clips' labels before dropout, so a clip keeps its teacher when its
    label is dropped (its unconditional answer then comes from the same model as its conditional one)."""
    teacher = Teacher(*teacher)
    if not by_label:  # one teacher: the whole batch in one call, no rows copied out
        return teacher_targets(teacher, noisy, alpha, cond, scales, label_names)
    groups = [(labels == index, chosen) for index, chosen in by_label.items()]
    rest = ~torch.stack([rows for rows, _ in groups]).any(0)
    target = torch.empty_like(noisy, dtype=torch.float32)
    for rows, chosen in groups + [(rest, teacher)]:
        if rows.any():
            target[rows] = teacher_targets(chosen, noisy[rows], alpha[rows], pick(cond, rows), scales[rows],
                                           label_names)
    return target


def label_scales(manifest: dict) -> list[tuple[float, ...]]:
    """Per label (in the manifest's order), then for a clip without one (the "no label" index, where
    a data set's categories the model lacks train): the distinct guidance scales the studio samples
    it at by default: a Sound alone, with curves, with a prompt, with both
    (:func:`engine.sampling.label_defaults`). The student learns best near them; one global default
    left `latent-fast`'s kicks, sampled alone at 1 (where its teacher's read as kicks .89-.91 and
    spread as the kits do) far from the scales it was taught most (session 40, ``docs/design-notes.md``)."""
    defaults = manifest.get("defaults", {})
    table = []
    for label in [*manifest.get("labels", []), None]:
        scales = [float(label_defaults(defaults, label, curves, prompt).get("guidance", 1.0))
                  for curves in (False, True) for prompt in (False, True)]
        table.append(tuple(dict.fromkeys(scales)))
    return table


def clip_defaults(labels: torch.Tensor, table: list[tuple[float, ...]], generator: torch.Generator) -> torch.Tensor:
    """One default scale per clip: one of its label's :func:`label_scales`, drawn evenly."""
    picks = torch.rand(len(labels), generator=generator)
    return torch.tensor([table[int(label)][int(pick * len(table[int(label)]))] for label, pick
                         in zip(labels.tolist(), picks.tolist())], dtype=torch.float32)


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
    by_label = label_teachers(config, teacher_model, device)

    loop.prepare(trainer, network, load_init=start_student(config),
                 lr_scales={f"embedding_in.{GUIDANCE_INPUT}.": config.guidance_lr_scale})
    trainer.session["note"] = session_note(config, "latent ")
    draw = batch_source(config, manifest, dataset, codec, network, device, embedder, progress=trainer.place.main)
    label_names = [spec.name for spec in condition_specs(manifest) if spec.group == LABEL_GROUP]
    weights = teacher_model.guidance_weights
    table = label_scales(manifest)

    def batch_losses(generator: torch.Generator) -> loop.Losses:
        latent, cond, labels = draw(generator)
        noisy, alpha, _ = blend_batch(latent, generator)
        scales = draw_scales(latent.shape[0], clip_defaults(labels, table, generator), config, generator)
        with torch.no_grad():
            target = routed_targets((teacher, weights), by_label, labels, noisy, alpha, cond, scales, label_names)
        features = guidance_features(scales, FEATURES, config.top).to(device)
        with trainer.autocast():
            prediction = trainer.trainable(noisy, alpha, {**cond, GUIDANCE_INPUT: features})
        return {"loss": (prediction.float() - target).pow(2).mean()}

    return loop.run_loop(trainer, batch_losses)
