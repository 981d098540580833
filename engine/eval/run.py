"""Evaluate a drum model: generate N sounds per category and compare them with real ones.

``python -m engine.eval --model drums --count 16`` (and ``python -m engine eval ...``) prints one
``name: value`` line per figure; :func:`evaluate` returns the same figures as a dict. For each
category the model makes (an alias such as ``kick`` narrows it to one), with seeds
``seed .. seed + count - 1`` at the model's default sampler, steps and guidance unless given:

``<cat>.classified_as_intended``
    share of the generated clips the drum classifier (:mod:`engine.eval.classifier`) puts in
    the intended category; ``<cat>.classified_as_intended_real`` is the same share for the real
    held-out clips of that category, i.e. what a perfect generator would score.
``<cat>.frechet`` / ``.frechet_floor`` / ``.frechet_ratio``
    Fréchet distance of the generated clips' features to the real TRAIN clips of the category;
    the floor is the held-out (never trained on) real clips' distance to the same train clips;
    ratio = frechet / floor (about 1 = as close to the training sounds as new real sounds are).
    Features are standardised with the real train set's statistics and projected on its top
    :data:`FRECHET_DIMS` principal components (the sets are small).
``<cat>.diversity`` / ``.diversity_real`` / ``.diversity_ratio``
    mean pairwise distance of standardised features, generated vs real train clips (ratio < 1:
    the model repeats itself; near 0: collapse).
``<cat>.precision`` / ``.recall`` / ``.density`` / ``.coverage`` (each with ``_floor``; ``recall_ratio``, ``coverage_ratio``)
    the generated set against the held-out kits' clips of the category on k-NN manifolds (k = 3)
    in the same projected space, beside as many training clips against them (the floor, averaged
    over random draws: recall and coverage grow with the set's size); and
    ``pc_diversity`` / ``pc_diversity_heldout``: the spread along the real features' first
    :data:`PC_DIRECTIONS` principal directions over the training clips' (:func:`coverage_figures`).
    With 10-32 held-out clips per category these move in steps of 1/N: use 64+ generated sounds.
``<cat>.nan_share`` / ``.over_full_scale_share``
    on the raw decoded audio: NaN/Inf clips, and clips whose peak exceeds full scale (the studio
    scales those down; a high share says the model's loudness is off).
``<cat>.silent_share`` / ``.clipped_share``
    broken outputs (:mod:`engine.eval.metrics`) in what the studio writes: every other figure
    is measured on the decoded audio after the studio's own :func:`engine.studio.finish`
    (peaks above full scale scaled down, a 5 ms fade at the cut), i.e. on the sounds a user gets.
``<cat>.tail_floor_db`` / ``.tail_floor_real_db`` / ``.tail_floor_excess_db`` (kick, snare)
    median high-frequency residue in the 300-700 ms tail, generated and real train clips, and
    the difference (the "hiss" of an undertrained waveform model; see
    :func:`engine.eval.metrics.tail_floor_db`).

plus ``classifier.holdout_accuracy``, ``model.*`` and ``generate.seconds_per_sound``.

The sounds take the studio's shape for their label (:mod:`engine.envelopes`): a model whose
defaults give a label the shape "kit" makes each of its sounds on the curves of a real training
hit drawn by the sound's seed, as the studio does; ``--shape free`` or ``--shape kit`` asks for
one for every label.
"""

from __future__ import annotations

import argparse
import logging
import math
import statistics
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from .. import band_shares, envelopes, pipeline, variants
from ..conditions import Conditions
from ..data.dataset import DEFAULT_ROOT as DATA_ROOT, DrumDataset
from ..embedders.base import load_embedder, text_vector
from ..errors import InvalidRequestError, StudioError
from ..models import LoadedModel, embedder_location, load_model, resolve_model
from ..studio import finish, resolve_length, tail_fade_ms
from ..sampling import default_shape, label_defaults, prompt_shape
from ..request import check_limit
from ..seeds import SeedNoise
from . import metrics
from .classifier import DEFAULT_CACHE, Classifier, load_or_train, train_classifier
from .features import batched_features

log = logging.getLogger(__name__)

FRECHET_DIMS = 16
TAIL_CATEGORIES = ("kick", "snare")


@dataclass
class ReferenceSet:
    """Real clips to compare with: ``audio`` ``(N, C, L)`` and each clip's category."""

    audio: torch.Tensor
    categories: list[str]
    sample_rate: int = 44100

    def __post_init__(self) -> None:
        if self.audio.dim() != 3 or self.audio.shape[0] != len(self.categories):
            raise InvalidRequestError(f"a reference set needs (N, C, L) audio and N categories, got "
                                      f"{tuple(self.audio.shape)} and {len(self.categories)}")

    @classmethod
    def from_dataset(cls, dataset: DrumDataset) -> "ReferenceSet":
        return cls(dataset.audio, [r["category"] for r in dataset.records], dataset.sample_rate)

    def mask(self, category: str) -> torch.Tensor:
        return torch.tensor([c == category for c in self.categories], dtype=torch.bool)


@dataclass
class _Space:
    """Standardisation and PCA of the real train features, shared by every comparison."""

    mean: torch.Tensor
    std: torch.Tensor
    pca_mean: np.ndarray
    basis: np.ndarray

    @classmethod
    def fit(cls, feats: torch.Tensor, dims: int = FRECHET_DIMS) -> "_Space":
        mean, std = feats.mean(0), feats.std(0)
        std = std.clamp_min(1e-3 * float(std.max().clamp_min(1e-6)))
        pca_mean, basis = metrics.pca_basis((feats - mean) / std, dims)
        return cls(mean, std, pca_mean, basis)

    def standard(self, feats: torch.Tensor) -> np.ndarray:
        return ((feats - self.mean) / self.std).double().numpy()

    def project(self, feats: torch.Tensor) -> np.ndarray:
        return (self.standard(feats) - self.pca_mean) @ self.basis


@torch.no_grad()  # the codec's decode would otherwise build an autograd graph for every batch
def generate_clips(model: LoadedModel, count: int, *, label: str | None = None, seed: int = 0,
                   steps: int | None = None, guidance: float | None = None, sampler: str | None = None,
                   batch: int = 16, progress: bool = False, conditions: list[Conditions] | None = None,
                   control_guidance: float | None = None, label_b: str | None = None,
                   label_mix: float = 0.0, variety: float | None = None,
                   steer_loudness: bool = True, soft_hits: bool = False, steer_onsets: bool = True,
                   shape: str | None = None, one_hit: bool = True, width: float | None = None,
                   prompt_words: Sequence[str] = (), kit_bands: float | None = None) -> torch.Tensor:
    """``(count, C, length)`` float32 CPU audio for seeds ``seed .. seed + count - 1``.

    Each clip's starting noise depends only on its own seed (drawn alone, as the studio does),
    so clip ``i`` is the sound seed ``seed + i`` gives in the studio at the same settings (through
    the same :mod:`engine.pipeline`). ``conditions`` gives clip ``i`` its own controls (curves
    measured on a real sound, say); the label is ``label``'s either way (blended with ``label_b``
    by ``label_mix``: a hybrid). ``steer_loudness`` as the studio's request (off: the network
    follows a loudness curve on its own; ``soft_hits``: a quiet curve makes a soft hit; ``steer_onsets``:
    the drawn hits the curve does not make are made in the latent, as the request's; ``one_hit``: a
    sound with at most one hit is held from rising again after its peak where no curve is drawn, as
    the request's).
    Settings left at None take the studio's defaults for the label (with a loudness curve the
    caller gives or a prompt's kit hit, its defaults with curves; a Sound alone on a kit hit, its
    own), ``shape`` too: without ``conditions``, a label whose shape is "kit" gives
    clip ``i`` the kit envelope seed ``seed + i`` draws (:func:`engine.envelopes.draw`), and the
    hit's description as its prompt when the label's ``hit_prompt`` says so, as the studio. A clip
    whose ``conditions`` carry a prompt takes the label's defaults with a prompt (``with_prompt``),
    and, without curves, when its shape there (or ``shape``) is "kit", the kit hit seed ``seed + i``
    draws among those whose captions match its prompt and agree with ``prompt_words``, the descriptor
    words its text asks for (:func:`engine.envelopes.prompt_candidates`).
    ``width`` (None: the label's default) is the stereo width the studio gives the decoded sound
    (:func:`engine.dsp.stereo_width`). ``kit_bands`` (None: the label's default) is how far a clip of
    a Sound alone with a loudness curve is steered onto the band shares of the clip its seed deals
    (:mod:`engine.band_shares`), as the studio's request.
    """
    manifest = model.manifest
    asked = dict(steps=steps, guidance=guidance, control_guidance=control_guidance, sampler=sampler, variety=variety)

    def settings(curves: bool, prompt: bool = False) -> tuple[int, float, float, str, float]:
        defaults = label_defaults(manifest.get("defaults", {}), label, curves, prompt)  # the studio's for this label
        return (int(asked["steps"] if asked["steps"] is not None else defaults.get("steps", 16)),
                float(asked["guidance"] if asked["guidance"] is not None else defaults.get("guidance", 1.0)),
                float(asked["control_guidance"] if asked["control_guidance"] is not None
                      else defaults.get("control_guidance", 1.0)),
                asked["sampler"] or defaults.get("sampler", "dpmpp_2m"),
                float(asked["variety"] if asked["variety"] is not None else defaults["variety"]))

    steps, guidance, control_guidance, sampler, variety = settings(False)
    labels = list(manifest.get("labels", []))
    if label is not None and label not in labels:
        raise InvalidRequestError(f"the model knows the labels {labels}, not {label!r}")
    label_index = labels.index(label) if label is not None else None
    if label_b is not None and label_b not in labels:
        raise InvalidRequestError(f"the model knows the labels {labels}, not {label_b!r}")
    blend = {"label_b": labels.index(label_b), "label_mix": float(label_mix)} if label_b is not None else {}
    if conditions is not None and len(conditions) != count:
        raise InvalidRequestError(f"{len(conditions)} conditions for {count} clips")
    if shape not in (None, *envelopes.SHAPES):
        raise InvalidRequestError(f"shape must be one of {envelopes.SHAPES}, got {shape!r}")
    # the caller's prompts take the label's defaults with a prompt; a kit hit's description does not
    prompted = [c.prompt is not None for c in conditions] if conditions is not None else [False] * count
    asked_shape, length_ms = shape, 1000.0 * manifest["length"] / manifest["sample_rate"]
    shape = shape or default_shape(manifest.get("defaults", {}), label, hybrid=label_b is not None)
    alone = shape == "kit" and conditions is None and label is not None  # a Sound alone, shaped by kit hits
    if alone:
        drawn = envelopes.kit_curves(model.folder, manifest, label, seed, count, length_ms)
        weight = envelopes.hit_weight(manifest, label)
        conditions = [Conditions(rms=hit.rms, onsets=hit.onsets, prompt=_hit_vector(model, hit, label, weight))
                      for hit in drawn]
    elif conditions is not None and label is not None and \
            (asked_shape or prompt_shape(manifest.get("defaults", {}), label)) == "kit":
        # a caller's prompt without curves takes a kit hit as the studio gives it: one whose description matches
        shaped = []
        for i, wanted in enumerate(conditions):
            if wanted.prompt is not None and not wanted.rms and not wanted.onsets:
                hit = envelopes.kit_curves(model.folder, manifest, label, seed + i, 1, length_ms,
                                           (model_embedder(model), wanted.prompt), prompt_words)[0]
                wanted = replace(wanted, rms=hit.rms, onsets=hit.onsets)
            shaped.append(wanted)
        conditions = shaped
    width = float(label_defaults(manifest.get("defaults", {}), label).get("width", 1.0) if width is None
                  else check_limit("width", width))
    kit_bands = None if kit_bands is None else check_limit("kit_bands", kit_bands)
    latent_shape = (model.codec.latent_channels, model.codec.latent_length(manifest["length"]))
    out = []
    for start in tqdm(range(0, count, batch), desc=f"generate {label or manifest.get('name', '')}",
                      disable=not progress, unit="batch"):
        seeds = list(range(seed + start, seed + min(start + batch, count)))
        if conditions is None:  # one condition for the whole batch
            draws = SeedNoise(seeds, latent_shape, device=model.device)
            out.append(pipeline.render(model, draws(), Conditions(label=label_index, **blend),
                                       samples=manifest["length"], sampler=sampler, steps=steps, guidance=guidance,
                                       step_noise=draws, variety=variety, one_hit=one_hit, width=width))
            continue
        for offset, clip_seed in enumerate(seeds):  # each clip its own curves
            wanted = replace(conditions[start + offset], label=label_index, **blend)
            draws = SeedNoise([clip_seed], latent_shape, device=model.device)
            clip_steps, clip_guidance, clip_control, clip_sampler, clip_variety = settings(
                bool(wanted.rms) and not alone, prompted[start + offset])
            # a Sound alone goes to its variant for the seeds the model deals it, as in the studio
            variant = variants.dealt_variant(manifest, label, clip_seed) if alone and not blend else None
            renderer = model if variant is None else _variant_model(model, variant)
            out.append(pipeline.render(renderer, draws(), wanted, samples=manifest["length"], sampler=clip_sampler,
                                       steps=clip_steps, guidance=clip_guidance, control_guidance=clip_control,
                                       step_noise=draws, variety=clip_variety, steer_loudness=steer_loudness,
                                       soft_hits=soft_hits, steer_onsets=steer_onsets, one_hit=one_hit,
                                       width=width,
                                       kit_bands=band_shares.strength_for(manifest, label, kit_bands, wanted)))
    return torch.cat(out) if out else torch.zeros(0, manifest["channels"], manifest["length"])


def _variant_model(model: LoadedModel, name: str) -> LoadedModel:
    """The variant ``name`` of ``model`` (:mod:`engine.variants`), loaded once on its device."""
    folder = variants.variant_folder(model.folder, name).resolve()
    key = (folder, str(model.device), model.dtype)
    if key not in _VARIANTS:
        _VARIANTS[key] = load_model(folder, model.device, half=model.dtype == torch.float16)
    return _VARIANTS[key]


_VARIANTS: dict = {}


def _hit_vector(model: LoadedModel, hit: envelopes.KitHit, label: str, weight: float) -> torch.Tensor | None:
    """The prompt embedding the studio gives a sound on kit hit ``hit`` (its caption morphed towards
    the label's prompt, :func:`engine.envelopes.hit_prompts`), or None."""
    prompts = envelopes.hit_prompts(hit, label, weight)
    if not prompts:
        return None
    return text_vector(model_embedder(model), prompts["prompt"], prompts.get("prompt_b"), prompts.get("prompt_morph", 0.0))


_EMBEDDERS: dict = {}


def model_embedder(model: LoadedModel):
    """The text–audio embedder a prompted model names (loaded once per folder)."""
    key = embedder_location(model.manifest, model.folder)
    if key not in _EMBEDDERS:
        _EMBEDDERS[key] = load_embedder(key)
    return _EMBEDDERS[key]


def _median(values: torch.Tensor) -> float:
    return float(values.median()) if values.numel() else math.nan


def _ratio(a: float, b: float) -> float:
    return a / b if b and math.isfinite(a) and math.isfinite(b) else math.nan


def studio_fade_ms(manifest: dict) -> float:
    """How long the studio fades out the end of a sound of this model at its default length
    (:func:`engine.studio.tail_fade_ms`: 5 ms for a waveform model, up to 250 ms for a latent one)."""
    return tail_fade_ms(manifest, resolve_length(manifest, None))


def studio_output(audio: torch.Tensor, sample_rate: int, fade_ms: float = 5.0) -> torch.Tensor:
    """What the studio would write for each decoded clip (:func:`engine.studio.finish`, its end
    faded out over ``fade_ms``: :func:`studio_fade_ms` of the model that made it); a clip with
    NaN/Inf, which the studio refuses with an error, is kept as it is so it is counted.

    Why the fade matters: a latent model's last two latent frames come out of the network several
    times louder than the frames before (its convolutions' edge), which decodes to a click ~15 dB
    over the tail in the clip's last 7 ms. The studio's 250 ms release hides it; judged with a
    5 ms fade it read as a second hit in a third of the hats (``docs/design-notes.md``, "Ghost
    second hits")."""
    return torch.stack([finish(clip[None], sample_rate, fade_ms)[0] if bool(torch.isfinite(clip).all()) else clip
                        for clip in audio]) if len(audio) else audio


def broken_outputs(raw: torch.Tensor, finished: torch.Tensor) -> dict[str, float]:
    """nan / over-full-scale shares of the raw decoded clips; silent / clipped shares of what the studio writes."""
    return {"nan_share": metrics.nan_share(raw), "over_full_scale_share": metrics.over_full_scale_share(raw),
            "silent_share": metrics.silent_share(finished), "clipped_share": metrics.clipped_share(finished)}


def compare(category: str, generated: torch.Tensor, real: ReferenceSet, space: _Space, real_features: torch.Tensor,
            classifier: Classifier | None, holdout: ReferenceSet | None = None,
            holdout_features: torch.Tensor | None = None, fade_ms: float = 5.0) -> dict[str, float]:
    """The figures of one category (keys without the ``<cat>.`` prefix) of raw decoded clips, judged
    as the studio writes them (``fade_ms``: :func:`studio_output`)."""
    rate = real.sample_rate
    finished = studio_output(generated, rate, fade_ms)
    out, generated = broken_outputs(generated, finished), finished
    feats = batched_features(generated, rate)
    in_real = real.mask(category)
    if classifier is not None and category in classifier.label_names:
        target = classifier.label_names.index(category)
        out["classified_as_intended"] = float((classifier.predict(feats) == target).float().mean())
        if holdout is not None and holdout_features is not None and bool(holdout.mask(category).any()):
            predicted = classifier.predict(holdout_features[holdout.mask(category)])
            out["classified_as_intended_real"] = float((predicted == target).float().mean())
    real_cat = real_features[in_real]
    if len(real_cat) >= 2 and len(feats) >= 2:
        out["frechet"] = metrics.frechet_distance(space.project(feats), space.project(real_cat))
        if holdout is not None and holdout_features is not None and int(holdout.mask(category).sum()) >= 2:
            out["frechet_floor"] = metrics.frechet_distance(space.project(holdout_features[holdout.mask(category)]),
                                                            space.project(real_cat))
            out["frechet_ratio"] = _ratio(out["frechet"], out["frechet_floor"])
        out["diversity"] = metrics.diversity(space.standard(feats))
        out["diversity_real"] = metrics.diversity(space.standard(real_cat))
        out["diversity_ratio"] = _ratio(out["diversity"], out["diversity_real"])
        out.update(coverage_figures(space.project(feats), space.project(real_cat), space,
                                    None if holdout is None or holdout_features is None else
                                    space.project(holdout_features[holdout.mask(category)])))
    if category in TAIL_CATEGORIES:
        out["tail_floor_db"] = _median(metrics.tail_floor_db(generated, rate))
        out["tail_floor_real_db"] = _median(metrics.tail_floor_db(real.audio[in_real].float(), rate))
        out["tail_floor_excess_db"] = out["tail_floor_db"] - out["tail_floor_real_db"]
    return out


@dataclass
class Judge:
    """The real sets a model's sounds are judged against, measured once: the training clips, the
    held-out kits, the drum classifier and the feature space (what :func:`compare` needs)."""

    real: ReferenceSet
    holdout: ReferenceSet
    classifier: Classifier
    real_features: torch.Tensor
    holdout_features: torch.Tensor
    space: _Space
    holdout_data: DrumDataset   # the held-out split itself (its records, for captions and retrieval)

    @classmethod
    def from_data(cls, data_root: str | Path, cache_dir: str | Path | None, length: int) -> "Judge":
        """From a built data set whose clips are ``length`` samples (InvalidRequestError otherwise)."""
        held = DrumDataset(data_root, "holdout")
        if held.length != length:
            raise InvalidRequestError(f"{data_root} holds clips of {held.length} samples; the model makes "
                                      f"{length} (build one with --length {length})")
        real = ReferenceSet.from_dataset(DrumDataset(data_root, "train", real_only=True))
        holdout = ReferenceSet.from_dataset(held)
        real_features = batched_features(real.audio.float(), real.sample_rate)
        return cls(real, holdout, load_or_train(data_root, cache_dir), real_features,
                   batched_features(holdout.audio.float(), holdout.sample_rate), _Space.fit(real_features), held)

    def compare(self, category: str, generated: torch.Tensor, fade_ms: float = 5.0) -> dict[str, float]:
        return compare(category, generated, self.real, self.space, self.real_features, self.classifier,
                       self.holdout, self.holdout_features, fade_ms)

    def classify(self, generated: torch.Tensor, fade_ms: float = 5.0) -> list[str]:
        """The classifier's category for each raw decoded clip, judged as :meth:`compare` judges it
        (as the studio writes it)."""
        finished = studio_output(generated, self.real.sample_rate, fade_ms)
        return self.classifier.predict_names(batched_features(finished, self.real.sample_rate))


def model_header(entry, model: LoadedModel) -> dict[str, float | str]:
    """The figures every evaluation starts with: which model, which weights, how trained."""
    return {"model.name": entry.name, "model.checkpoint_id": model.checkpoint_id,
            "model.training_steps": float(model.manifest["training"].get("steps", 0))}


PC_DIRECTIONS = 4   # the real features' main directions of variation whose spread is compared


def coverage_figures(generated: np.ndarray, real: np.ndarray, space: _Space,
                     held: np.ndarray | None = None) -> dict[str, float]:
    """Variety beside accuracy (issue 19), in the projected feature space: precision, recall,
    density and coverage of the generated set against the held-out kits' clips of the category
    (``held``), each beside the same figure for as many real training clips against them (the
    floor: what a perfect generator of the training distribution scores with as many sounds,
    :func:`metrics.manifold_floor`; ``*_ratio`` = generated / floor; ``recall_floor_all`` and
    ``coverage_floor_all``: every training clip's, for reference); and ``pc_diversity``: the
    generated set's spread along the real features' first :data:`PC_DIRECTIONS` principal
    directions over the training clips' own (mean of the per-direction ratios), beside
    ``pc_diversity_heldout``, the held-out kits' same ratio."""
    out: dict[str, float] = {}
    directions = np.eye(generated.shape[1])[:, :PC_DIRECTIONS]   # projected space: its axes are the PCs
    centre = np.zeros(generated.shape[1])
    real_spread = metrics.pc_spread(real, centre, directions)
    out["pc_diversity"] = float(np.mean(metrics.pc_spread(generated, centre, directions) / real_spread))
    if held is None or len(held) < 4:
        return out
    out["pc_diversity_heldout"] = float(np.mean(metrics.pc_spread(held, centre, directions) / real_spread))
    made, floor = metrics.manifold_figures(held, generated), metrics.manifold_floor(held, real, len(generated))
    whole = metrics.manifold_figures(held, real)
    for name in ("precision", "recall", "density", "coverage"):
        out[name], out[f"{name}_floor"] = made[name], floor[name]
    out["recall_floor_all"], out["coverage_floor_all"] = whole["recall"], whole["coverage"]
    out["recall_ratio"] = _ratio(made["recall"], floor["recall"])
    out["coverage_ratio"] = _ratio(made["coverage"], floor["coverage"])
    return out


def evaluate(model_name: str, count: int = 16, steps: int | None = None, guidance: float | None = None,
             sampler: str | None = None, seed: int = 0, device: str = "cpu", *,
             models_root: str | Path | None = None, data_root: str | Path = DATA_ROOT,
             real: ReferenceSet | None = None, holdout: ReferenceSet | None = None,
             classifier: Classifier | None = None, cache_dir: str | Path | None = DEFAULT_CACHE,
             batch: int = 16, half: bool = False, progress: bool = True,
             variety: float | None = None, labels: Sequence[str] | None = None,
             shape: str | None = None, width: float | None = None) -> dict[str, float | str]:
    """Generate ``count`` sounds per category of ``model_name`` and measure them (module docstring).

    The real sounds are the built data set in ``data_root`` (train split to compare with,
    holdout split for the floors and the classifier's accuracy; the classifier is cached in
    ``cache_dir``), or explicit ``real`` / ``holdout`` reference sets (the classifier is then
    trained on ``real`` unless one is given, and nothing is cached). ``labels`` measures only those
    categories (a sweep of one category's settings costs a fifth). ``shape`` ("free" or "kit")
    replaces each label's default shape, ``width`` its stereo width (:func:`generate_clips`).
    """
    if count < 1:
        raise InvalidRequestError(f"count must be at least 1, got {count}")
    entry = resolve_model(model_name, [models_root] if models_root is not None else None)
    model = load_model(entry.folder, device=device, half=half)
    model_labels = list(model.manifest.get("labels", []))
    categories: list[str | None] = [entry.label] if entry.label else (model_labels or [None])
    if labels:
        unknown = [name for name in labels if name not in model_labels]
        if unknown:
            raise InvalidRequestError(f"the model knows the labels {model_labels}, not {unknown}")
        categories = [name for name in categories if name in labels]
        if not categories:
            raise InvalidRequestError(f"{entry.name} makes only {entry.label}, not {list(labels)}")

    if real is None:
        real = ReferenceSet.from_dataset(DrumDataset(data_root, "train"))
        if holdout is None:
            holdout = ReferenceSet.from_dataset(DrumDataset(data_root, "holdout"))
        if classifier is None:
            classifier = load_or_train(data_root, cache_dir)
    if real.sample_rate != model.manifest["sample_rate"]:
        raise InvalidRequestError(f"the model makes {model.manifest['sample_rate']} Hz audio but the real clips "
                                  f"are {real.sample_rate} Hz")
    real_features = batched_features(real.audio.float(), real.sample_rate)
    holdout_features = batched_features(holdout.audio.float(), holdout.sample_rate) if holdout is not None else None
    if classifier is None:
        names = tuple(dict.fromkeys(real.categories))
        classifier = train_classifier(real_features, torch.tensor([names.index(c) for c in real.categories]), names)
        if holdout is not None:
            known = [i for i, c in enumerate(holdout.categories) if c in names]
            classifier.info["holdout_accuracy"] = classifier.accuracy(
                holdout_features[known], torch.tensor([names.index(holdout.categories[i]) for i in known]))
    space = _Space.fit(real_features)

    results: dict[str, float | str] = {
        "model.name": entry.name,
        "model.checkpoint_id": model.checkpoint_id,
        "model.training_steps": float(model.manifest.get("training", {}).get("steps", math.nan)),
        "classifier.holdout_accuracy": float(classifier.info.get("holdout_accuracy", math.nan)),
    }
    generated_total, seconds = 0, 0.0
    fade_ms = studio_fade_ms(model.manifest)
    for category in categories:
        started = time.perf_counter()
        audio = generate_clips(model, count, label=category, seed=seed, steps=steps, guidance=guidance,
                               sampler=sampler, batch=batch, progress=progress, variety=variety, shape=shape,
                               width=width)
        seconds += time.perf_counter() - started
        generated_total += len(audio)
        name = category or "all"
        figures = compare(category, audio, real, space, real_features, classifier, holdout, holdout_features,
                          fade_ms) if category is not None else compare_all(audio, real, space, real_features, fade_ms)
        results.update({f"{name}.{key}": value for key, value in figures.items()})
    results["generate.seconds_per_sound"] = seconds / max(generated_total, 1)
    return results


def compare_all(generated: torch.Tensor, real: ReferenceSet, space: _Space, real_features: torch.Tensor,
                fade_ms: float = 5.0) -> dict[str, float]:
    """Figures for a model without labels: against every real clip."""
    finished = studio_output(generated, real.sample_rate, fade_ms)
    out, generated = broken_outputs(generated, finished), finished
    feats = batched_features(generated, real.sample_rate)
    if len(feats) >= 2:
        out["frechet"] = metrics.frechet_distance(space.project(feats), space.project(real_features))
        out["diversity"] = metrics.diversity(space.standard(feats))
        out["diversity_real"] = metrics.diversity(space.standard(real_features))
        out["diversity_ratio"] = _ratio(out["diversity"], out["diversity_real"])
    return out


def seconds_per_call(call: Callable[[], object], repeats: int = 3) -> float:
    """Median wall time of ``call`` over ``repeats`` runs, after one warm-up run (loading, first kernels)."""
    call()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def report(evaluate: Callable[[], dict]) -> int:
    """An evaluation's command line: run it with INFO logging, print its ``name: value`` lines;
    a StudioError is one line on stderr and exit status 2."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        results = evaluate()
    except StudioError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(format_results(results), flush=True)
    return 0


def format_results(results: dict[str, float | str]) -> str:
    """``name: value`` lines (floats with 4 significant digits)."""
    lines = []
    for key, value in results.items():
        lines.append(f"{key}: {value:.4g}" if isinstance(value, float) else f"{key}: {value}")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m engine eval",
                                     description="Generate sounds with a model and compare them with real drum clips.")
    parser.add_argument("--model", required=True, help="model name, alias (kick, snare, ...) or model folder")
    parser.add_argument("--count", type=int, default=16, help="sounds per category (default 16)")
    parser.add_argument("--steps", type=int, default=None, help="sampling steps (default: the model's)")
    parser.add_argument("--guidance", type=float, default=None, help="guidance scale (default: the model's)")
    parser.add_argument("--sampler", default=None, help="sampler (default: the model's)")
    parser.add_argument("--variety", type=float, default=None,
                        help="0 (safe) .. 1 (surprising): where guidance acts (default: the model's)")
    parser.add_argument("--labels", type=lambda text: [t.strip() for t in text.split(",") if t.strip()], default=None,
                        help="measure only these categories, e.g. kick,perc (default: all)")
    parser.add_argument("--seed", type=int, default=0, help="first seed (default 0)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    parser.add_argument("--half", action="store_true", help="fp16 weights (CUDA only)")
    parser.add_argument("--batch", type=int, default=16, help="sounds per sampling batch (default 16)")
    parser.add_argument("--models-root", default=None, help="folder of model folders (default checkpoints/)")
    parser.add_argument("--data", default=str(DATA_ROOT), help="built drum data set (default data/drums)")
    parser.add_argument("--cache", default=str(DEFAULT_CACHE), help="classifier cache folder (default cache/eval)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.add_argument("--shape", choices=envelopes.SHAPES, default=None,
                        help="free: the model shapes each sound; kit: each takes a real training hit's curves "
                             "(models with kit envelopes; default: each label's, as the studio)")
    parser.add_argument("--width", type=float, default=None,
                        help="stereo width, 0 (mono) .. 1 (as the model makes it); default: each label's own")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry: prints ``name: value`` lines; a StudioError is printed and returns 2 (as the
    other ``python -m engine`` commands do)."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        results = evaluate(args.model, count=args.count, steps=args.steps, guidance=args.guidance,
                           sampler=args.sampler, seed=args.seed, device=args.device, models_root=args.models_root,
                           data_root=args.data, cache_dir=args.cache, batch=args.batch, half=args.half,
                           progress=not args.quiet, variety=args.variety, labels=args.labels,
                           shape=args.shape, width=args.width)
    except StudioError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(format_results(results), flush=True)
    return 0
