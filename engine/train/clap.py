"""Train the embedded text–audio model: the audio tower and the text head, contrastively, on captions.

One function, :func:`train_clap`, for ``python -m engine train clap`` and the tests. Every training
clip gets ``captions`` phrasings (:mod:`engine.data.captions`); the frozen text tower embeds all
distinct captions once (cached in the run folder as ``text_features.safetensors``, so a resumed
run does not embed them again), and each step pairs every clip of the batch with one of its
captions drawn at random and minimises the symmetric InfoNCE loss (CLIP's) between the audio
tower's and the text head's unit vectors, with a learnable temperature.

**False negatives.** Captions come from a small vocabulary, so two clips of a batch often share
a caption ("snare drum", "short bright acoustic closed hi-hat"). Plain InfoNCE would call the
other clip a negative for that text and push apart two sounds the text rightly describes alike;
the loss could then never approach zero and the gradient would fight the captions. So a pair
(clip i, caption of clip j) is left out of the softmax when that exact caption is also one of
clip i's own captions: what we know is true is never used as a negative. (Captions that are
not in clip i's list but would fit it are not known, and stay negatives.)

The run folder is laid out and behaves like the other trainers' (:mod:`engine.train.loop`):
``model/`` an embedder folder (kind ``embedder``; weights of the trainable parts only,
rewritten atomically at every save, with its model card), ``train_state.pt`` (online weights,
optimizer, step: exact resume), ``log.csv``, ``config.json``, plus ``captions.json`` (every
clip's captions, to read) and the text-feature cache. The caption thresholds (what "bright"
means per instrument) are measured on the training clips when a run starts and kept in the
manifest, so a resumed or fine-tuned model keeps its words' meaning. When the data set has a
held-out split, every save measures :func:`retrieval_figures` on it and records them in the
manifest's ``evaluation``.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import torch
import torch.nn.functional as F
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from ..data.augment import augment, timbre_augment
from ..data.captions import dataset_captions, dataset_descriptors, descriptor_thresholds, read_kit_info
from ..embedders.base import Embedder, read_embedder_manifest
from ..embedders.categories import CATEGORY_PROMPTS, category_prompts, zero_shot  # noqa: F401 (re-exported)
from ..embedders.clap_model import ClapEmbedder, ClapNetwork, build_clap, model_card, new_manifest
from ..embedders.text_tower import MODEL_NAME, text_tower
from ..errors import InvalidRequestError
from ..models import atomic_write, write_json
from ..seeds import seeded_init
from . import common, loop

log = logging.getLogger(__name__)

FEATURES_FILE = "text_features.safetensors"
CAPTIONS_FILE = "captions.json"


@dataclass
class ClapTrainConfig:
    data: str = "data/drums2s"          # a built data set (index.json; its holdout split is measured) or WAVs
    run: str = "runs/clap"              # run folder: model/, train_state.pt, log.csv, captions.json
    init: str | None = None             # embedder folder to fine-tune from (ignored when the run resumes)
    name: str = "clap"                  # model name written into a new manifest
    steps: int = 3000                   # optimisation steps to run in this call
    max_minutes: float | None = None    # stop (and save) after this wall time
    batch: int = 32                     # clips per step per process (each with one of its captions)
    lr: float = 1e-3
    warmup: int = 100
    ema_decay: float = 0.998            # 0: no EMA (the online weights are saved)
    seed: int = 0                       # initial weights and batch draws
    captions: int = 6                   # phrasings per clip
    caption_seed: int = 0               # which phrasings
    augment: bool = True                # gain, pitch, onset delay, polarity, stereo swap
    semitones: float = 1.0              # pitch shift of the augmentation, +-semitones
    timbre: bool = False                # also colour clips as another kit's EQ and room (data.augment.timbre_augment)
    balance: float = 0.5                # 0: clips drawn uniformly; 1: every category equally often
    length: int | None = None           # clip length in samples when data is a folder of WAVs (default 32768)
    categories: list[str] | None = None
    evaluate: bool = True               # held-out retrieval figures at every save (built data sets only)
    device: str = "auto"
    log_every: int = 25
    save_every: int = 250
    network: dict = field(default_factory=dict)   # overrides of clap_model.DEFAULT_ARGS for a new model


# ----------------------------------------------------------------------------- losses


def contrastive_loss(audio: torch.Tensor, text: torch.Tensor, scale: torch.Tensor | float,
                     known_positives: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Symmetric InfoNCE of unit vectors ``audio`` and ``text`` ``(B, D)`` (row i of each a pair):
    ``(loss, audio->text, text->audio)``. ``known_positives`` ``(B, B)``, ``[i, j]`` True when text j
    also describes audio i: those off-diagonal pairs are left out of both softmaxes."""
    logits = scale * audio @ text.T                                   # [audio i, text j]
    target = torch.arange(len(audio), device=audio.device)
    if known_positives is not None:
        drop = known_positives.to(audio.device) & ~torch.eye(len(audio), dtype=torch.bool, device=audio.device)
        logits = logits.masked_fill(drop, float("-inf"))
    audio_to_text = F.cross_entropy(logits, target)
    text_to_audio = F.cross_entropy(logits.T, target)
    return (audio_to_text + text_to_audio) / 2, audio_to_text, text_to_audio


def caption_table(captions: Sequence[Sequence[str]]) -> tuple[list[str], torch.Tensor]:
    """The distinct captions (sorted) and each clip's caption ids ``(N, K)`` into them."""
    distinct = sorted({c for per_clip in captions for c in per_clip})
    where = {c: i for i, c in enumerate(distinct)}
    return distinct, torch.tensor([[where[c] for c in per_clip] for per_clip in captions], dtype=torch.long)


def known_positives(ids: torch.Tensor, clips: torch.Tensor, chosen: torch.Tensor) -> torch.Tensor:
    """``(B, B)``: ``[i, j]`` True when the caption drawn for batch item j is one of clip ``clips[i]``'s."""
    return (ids[clips][:, :, None] == chosen[None, None, :]).any(dim=1)


@torch.no_grad()
def heldout_loss(network: ClapNetwork, audio: torch.Tensor, text_features: torch.Tensor,
                 captions: Sequence[str] | None = None, temperature: float = 0.07) -> float:
    """The symmetric InfoNCE of clips ``(B, C, N)`` (at the network's rate) and their captions'
    text-tower vectors ``(B, 384)``, at a fixed temperature (so it measures the embeddings, not
    the learnt temperature) and with identical ``captions`` not counted as negatives.
    Deterministic: what a test or a run compares before and after training."""
    was_training = network.training
    network.eval()
    device = next(network.parameters()).device
    audio_vectors = torch.cat([network.embed_audio(audio[i:i + 32].to(device)) for i in range(0, len(audio), 32)])
    text_vectors = network.embed_text_features(text_features.to(device))
    same = None
    if captions is not None:
        same = torch.tensor([[a == b for b in captions] for a in captions], dtype=torch.bool)
    network.train(was_training)
    return float(contrastive_loss(audio_vectors, text_vectors, 1.0 / temperature, same)[0])


# ----------------------------------------------------------------------------- held-out figures


@torch.no_grad()
def retrieval_figures(model: Embedder, dataset, captions: Sequence[Sequence[str]],
                      prompts: Mapping[str, Sequence[str]] = CATEGORY_PROMPTS, chunk: int = 32) -> dict:
    """Text -> audio retrieval and zero-shot classification over the clips of ``dataset``:

    - ``r_at_1`` / ``r_at_5``: each clip's full caption (its first) ranks every clip by cosine; a
      hit when a clip with that same full caption is among the top 1 / 5 (two clips with identical
      descriptions cannot be told apart by text, so either counts);
    - ``zero_shot_accuracy``: share of clips whose audio is closest to one of their own category's
      prompts (:func:`category_prompts`, among the categories the data set has), and per category.
    """
    if len(captions) != len(dataset):
        raise InvalidRequestError(f"{len(captions)} caption lists for {len(dataset)} clips")
    audio = torch.cat([model.audio(dataset.audio[i:i + chunk].float(), dataset.sample_rate)
                       for i in range(0, len(dataset), chunk)])
    queries = [c[0] for c in captions]
    similarity = model.text(queries) @ audio.T                               # [query, clip]
    order = similarity.argsort(dim=1, descending=True)
    relevant = torch.tensor([[q == other for other in queries] for q in queries])
    ranked = relevant.gather(1, order)
    figures = {"clips": len(dataset),
               "r_at_1": round(float(ranked[:, :1].any(1).float().mean()), 4),
               "r_at_5": round(float(ranked[:, :5].any(1).float().mean()), 4)}
    names = [n for n in dataset.label_names if n in prompts]
    keep = [i for i, r in enumerate(dataset.records) if r["category"] in names]
    if len(names) >= 2 and keep:
        guesses = zero_shot(model, audio[keep], {n: prompts[n] for n in names})
        truth = torch.tensor([names.index(dataset.records[i]["category"]) for i in keep])
        figures["zero_shot_accuracy"] = round(float((guesses == truth).float().mean()), 4)
        for k, name in enumerate(names):
            if (truth == k).any():
                figures[f"zero_shot_{name}"] = round(float((guesses[truth == k] == k).float().mean()), 4)
    return figures


# ----------------------------------------------------------------------------- text features


def _captions_digest(distinct: Sequence[str]) -> str:
    return hashlib.sha256("\n".join([MODEL_NAME, *distinct]).encode("utf-8")).hexdigest()


def text_features(distinct: Sequence[str], device: torch.device | str, cache: Path | None = None) -> torch.Tensor:
    """The frozen tower's ``(U, 384)`` vectors of ``distinct`` captions, read from ``cache`` when it
    holds exactly these captions, else embedded (~2 ms a caption) and written there atomically."""
    digest = _captions_digest(distinct)
    if cache is not None and cache.is_file():
        try:
            with safe_open(str(cache), framework="pt") as handle:
                if (handle.metadata() or {}).get("digest") == digest:
                    log.info("text features of %d captions read from %s", len(distinct), cache)
                    return handle.get_tensor("features")
        except (SafetensorError, OSError) as error:
            log.warning("ignoring the damaged text-feature cache %s: %s", cache, error)
    log.info("embedding %d distinct captions with the frozen text tower", len(distinct))
    features = text_tower(device).embed(list(distinct)).contiguous()
    if cache is not None:
        atomic_write(cache, lambda tmp: save_file({"features": features}, str(tmp),
                                                  metadata={"digest": digest, "tower": MODEL_NAME}))
    return features


# ----------------------------------------------------------------------------- training


def _kit_info(data: Path, dataset) -> dict[str, str]:
    """Info texts of the built data set's kits, for those the caption builder's table lacks."""
    if not (data / "index.json").is_file():
        return {}
    from ..data.captions import KIT_STYLES
    from ..data.dataset import load_index
    if not {r.get("kit") for r in dataset.records} - set(KIT_STYLES):
        return {}
    return read_kit_info([s for s in load_index(data).get("sources", []) if Path(s).is_dir()])


def _holdout(config: ClapTrainConfig, thresholds: dict, kit_info: dict):
    """The built data set's held-out clips and their captions, or (None, None)."""
    from ..data.dataset import DrumDataset, load_index
    data = Path(config.data)
    if not config.evaluate or not (data / "index.json").is_file():
        return None, None
    if not load_index(data)["splits"].get("holdout", {}).get("count"):
        return None, None
    held = DrumDataset(data, "holdout", categories=config.categories)
    return held, dataset_captions(held, thresholds, config.captions, config.caption_seed, kit_info=kit_info,
                                  progress=False)


def train_clap(config: ClapTrainConfig) -> Path:
    """Run ``config.steps`` steps (or until ``max_minutes``), saving as it goes; returns the embedder folder."""
    if config.captions < 1:
        raise InvalidRequestError(f"captions per clip must be >= 1, got {config.captions}")
    dataset = common.open_dataset(config.data, config.categories, config.length, batch=config.batch)
    descriptors = dataset_descriptors(dataset)

    def new() -> dict:
        unknown = sorted(set(config.network) - set(new_manifest("x", 1, 1)["network"]["args"]))
        if unknown:
            raise InvalidRequestError(f"unknown network arguments {unknown} for the text–audio model")
        return new_manifest(config.name, dataset.sample_rate, dataset.length, config.network,
                            descriptor_thresholds(dataset, descriptors),
                            {"count": config.captions, "seed": config.caption_seed})

    trainer = loop.begin(config, lambda _: new(), read=read_embedder_manifest)
    manifest = trainer.manifest
    if manifest["sample_rate"] != dataset.sample_rate:
        raise InvalidRequestError(f"the model expects {manifest['sample_rate']} Hz but the data set has "
                                  f"{dataset.sample_rate} Hz")
    thresholds = manifest["captions"]["thresholds"]
    kit_info = _kit_info(Path(config.data), dataset)
    captions = dataset_captions(dataset, thresholds, config.captions, config.caption_seed, descriptors, kit_info,
                                progress=False)
    distinct, ids = caption_table(captions)
    trainer.run.mkdir(parents=True, exist_ok=True)
    if trainer.place.main:
        write_json(trainer.run / CAPTIONS_FILE, {"data": str(config.data), "captions": captions})
    features = text_features(distinct, trainer.device, trainer.run / FEATURES_FILE).to(trainer.device)
    log.info("%d clips, %d captions each, %d distinct", len(dataset), config.captions, len(distinct))

    with seeded_init(config.seed):
        network = build_clap(manifest["network"], manifest["sample_rate"])
    loop.prepare(trainer, network)
    trainer.session["captions"] = config.captions
    held, held_captions = _holdout(config, thresholds, kit_info)
    labels = dataset.labels

    def batch_losses(generator: torch.Generator) -> loop.Losses:
        clips = common.batch_index(labels, config.batch, config.balance, generator)
        chosen = ids[clips, torch.randint(ids.shape[1], (len(clips),), generator=generator)]
        audio = torch.stack([dataset[int(i)]["audio"] for i in clips])
        if config.augment:
            audio = augment(audio, generator, sample_rate=dataset.sample_rate, semitones=config.semitones)
            if config.timbre:
                audio = timbre_augment(audio, generator, sample_rate=dataset.sample_rate)
        with trainer.autocast():
            audio_vectors, text_vectors, scale = trainer.trainable(audio.to(trainer.device), features[chosen])
        loss, audio_to_text, text_to_audio = contrastive_loss(audio_vectors.float(), text_vectors.float(), scale,
                                                              known_positives(ids, clips, chosen))
        return {"loss": loss, "audio_to_text": audio_to_text, "text_to_audio": text_to_audio,
                "temperature": 1.0 / scale.detach()}

    def before_save(shipped: torch.nn.Module) -> None:
        if held is not None:
            figures = retrieval_figures(ClapEmbedder(shipped, manifest, device=trainer.device), held, held_captions)
            manifest["evaluation"] = {"step": trainer.step, "split": "holdout", **figures}
            log.info("step %d held-out: %s", trainer.step, ", ".join(f"{k} {v}" for k, v in figures.items()))
        card = dict(manifest, training=dict(manifest["training"], steps=trainer.step, data=str(config.data)))
        atomic_write(trainer.model_dir / "MODEL_CARD.md", lambda tmp: tmp.write_text(model_card(card), encoding="utf-8"))

    return loop.run_loop(trainer, batch_losses, before_save=before_save)
