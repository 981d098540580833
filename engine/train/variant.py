"""A Sound's variant: a latent model fine-tuned on the few clips of one kind it does not render.

Why: `latent-fast` makes no thin hats. Eight of the 19 held-out hats (TR-808, VariBreaks) hold
almost nothing under 1.5 kHz, two of the 109 training hats do, and the model renders every hat full
(the third of the real kits' main directions: its hats -6.5 at the lowest, the thin held-out hats
-9 to -20). Teaching the whole model the thin hats (a caption word, a fine-tuned teacher, a student
distilled from it: sessions 42 and 44) moved hats by about one unit in half an hour of training and
moved the other Sounds' figures as much as the hats'. The network's global conditioning alone
(the hat's label embedding fitted to the thinned hats, its weights frozen) moved them by two.

A variant is the other way round: a copy of the model fine-tuned, weights and all, on those clips
only (``--only thinned``: the data set's thinned closed hats), every clip asked as the Sound
(``--label hat``) on its own loudness and onset curves and with one of its captions as its prompt,
as the studio asks a Sound on a kit hit. It is shipped beside the model and the model's manifest
deals it a share of that Sound's seeds (``variants``, :mod:`engine.variants`); every other Sound
and every other seed stays bit for bit what it was.

A guidance-distilled model reads its guidance scale as an input; a variant learns the data at
scale 1 (its conditional answer, what the data says) and is sampled at the model's own scale.
No augmentation and no condition dropout: the variant is never asked without its label, and its
unconditional answer is the model's own. A folder of WAVs works too (``--data my_hats/``, all its
clips): a user's own hits as a variant of a Sound.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import torch

from .. import envelopes, variants
from ..attacks import ATTACKS_FILE
from ..diffusion.guidance import GUIDANCE_INPUT, guidance_features
from ..errors import InvalidRequestError
from ..lows import LOWS_FILE
from ..models import load_model, read_manifest
from ..nets import build_network
from . import common, loop
from .latent import blend_batch, clip_controls, copy_codec_and_embedder, load_run_embedder, prompt_tables

VARIANT_FILES = (envelopes.BANK_FILE, LOWS_FILE, ATTACKS_FILE)
"""What the variant takes from its model's folder: the kit hits it is dealt and the holds the studio
puts on its decoded sound, so it is asked and finished as the model is (``publish`` ships them with it)."""


@dataclass
class VariantConfig:
    init: str = "checkpoints/latent-fast"  # the model the variant is a copy of
    data: str = "data/drums2s-thin"        # built data set or folder of WAVs
    only: str | None = None                # the clips whose record holds this key ("thinned"; None: all)
    label: str | None = None               # the Sound every clip is asked as (required)
    run: str = "runs/variant"
    name: str | None = None                # model name in the manifest (default: the folder's)
    steps: int = 700
    max_minutes: float | None = None
    batch: int = 16
    lr: float = 5e-5
    warmup: int = 0
    ema_decay: float = 0.0                 # a few hundred steps: an EMA would lag behind them all
    augment: bool = False                  # never augmented (the clips as they are): what the model card says
    save_every: int = 250
    log_every: int = 25
    render_every: int = 0
    device: str = "auto"
    seed: int = 0


def variant_clips(dataset, only: str | None, label: str) -> list[int]:
    """The clips a variant learns: those whose record holds ``only`` (all with None), of ``label``'s
    category where the data set names categories. A clear error when none are left."""
    chosen = [i for i, record in enumerate(dataset.records) if only is None or record.get(only)]
    if label in dataset.label_names:
        index = dataset.label_names.index(label)
        chosen = [i for i in chosen if int(dataset.labels[i]) == index]
    if not chosen:
        raise InvalidRequestError(f"{len(dataset.records)} clips, none of them "
                                  f"{label!r}{'' if only is None else f' marked {only!r}'}: nothing to learn")
    return chosen


def variant_manifest(config: VariantConfig, base: dict, clips: int) -> dict:
    """The model's manifest, named and recorded as its variant (what it learned and from what)."""
    if base.get("kind") != "latent":
        raise InvalidRequestError("a variant is fine-tuned from a latent model")
    manifest = copy.deepcopy(base)
    manifest["name"] = config.name or Path(config.run).name
    manifest["variant_of"] = {"model": Path(config.init).name, "label": config.label, "only": config.only,
                              "clips": clips, "steps_before": int(base["training"]["steps"])}
    manifest["description"] = (f"{base.get('name', Path(config.init).name)}'s {config.label}s fine-tuned on "
                               f"{clips} clips{'' if config.only is None else f' marked {config.only}'}")
    for settings in manifest.get("defaults", {}).get("per_label", {}).values():
        settings.pop(variants.DEFAULTS_KEY, None)  # a variant deals no variants of its own
    return manifest


def train_variant(config: VariantConfig) -> Path:
    """Fine-tune ``config.init`` on the chosen clips; the run's ``model`` folder loads as a model
    (its codec and embedder copied beside it, its kit hits and holds copied into it)."""
    if not config.label:
        raise InvalidRequestError("a variant is of one Sound: give its --label (hat)")
    base = read_manifest(config.init)
    if config.label not in base.get("labels", []):
        raise InvalidRequestError(f"the model knows the labels {base.get('labels')}, not {config.label!r}")
    dataset = common.open_dataset(config.data, None, int(base["length"]), batch=config.batch)
    if base["length"] != dataset.length or base["sample_rate"] != dataset.sample_rate:
        raise InvalidRequestError(f"the model expects {base['length']} samples at {base['sample_rate']} Hz "
                                  f"but the data set has {dataset.length} at {dataset.sample_rate} Hz")
    chosen = variant_clips(dataset, config.only, config.label)
    run = Path(config.run)
    trainer = loop.begin(config, lambda _: {}, lambda _, manifest: variant_manifest(config, manifest, len(chosen)))
    manifest, device = trainer.manifest, trainer.device
    copy_codec_and_embedder(manifest, config.init, run)
    model = load_model(config.init, device)
    network = build_network(manifest["network"])
    loop.prepare(trainer, network)
    trainer.session["note"] = f"variant of {Path(config.init).name}: {len(chosen)} {config.label} clips"
    for name in VARIANT_FILES:
        if (Path(config.init) / name).is_file():
            trainer.model_dir.mkdir(parents=True, exist_ok=True)
            (trainer.model_dir / name).write_bytes((Path(config.init) / name).read_bytes())

    audio = torch.stack([dataset[i]["audio"] for i in chosen]).float()
    with torch.no_grad():
        latents = model.codec.encode(audio.to(device))
        curves = clip_controls(audio, model.codec, dataset.sample_rate, latents.shape[-1]).to(device)
    prompts = _caption_vectors(manifest, run, dataset, chosen, config.data, device)
    label = torch.full((config.batch,), manifest["labels"].index(config.label), device=device)
    scale = None
    if GUIDANCE_INPUT in network.embeddings:  # the data is the conditional answer: scale 1
        top = float(manifest["guidance_distilled"]["top"])
        scale = guidance_features(1.0, network.embeddings[GUIDANCE_INPUT], top).to(device).expand(config.batch, -1)

    def batch_losses(generator: torch.Generator) -> loop.Losses:
        index = torch.randint(len(chosen), (config.batch,), generator=generator)
        noisy, alpha, target = blend_batch(latents[index.to(device)], generator)
        cond = {"label": label, "rms": curves[index, :2], "onsets": curves[index, 2:]}
        if prompts is not None:
            cond["prompt"] = prompts[index, torch.randint(prompts.shape[1], (config.batch,), generator=generator)]
        if scale is not None:
            cond[GUIDANCE_INPUT] = scale
        with trainer.autocast():
            prediction = trainer.trainable(noisy, alpha, cond)
        return {"loss": (prediction.float() - target).pow(2).mean()}

    return loop.run_loop(trainer, batch_losses)


def _caption_vectors(manifest: dict, run: Path, dataset, chosen: list[int], data: str,
                     device: torch.device) -> torch.Tensor | None:
    """``(clips, K, D)``: the text embeddings of each chosen clip's captions, worded as the model's
    kit hits are (its recorded thresholds, else its embedder's as they are: no descriptor completed,
    since the model's bank was captioned without it): the prompt it is asked with on a kit hit.
    None for a model without prompts."""
    if not manifest.get("embedder"):
        return None
    embedder = load_run_embedder(manifest, run, device)
    settings = getattr(embedder, "manifest", {})
    thresholds = manifest.get("captions", {}).get("thresholds") or settings.get("captions", {}).get("thresholds")
    worded = {"captions": {"thresholds": thresholds}} if thresholds else None  # None: measured on the data
    return prompt_tables(embedder, settings, dataset, data, worded)[chosen].to(device)
