"""How well a model follows text and sound prompts: ``name: value`` lines.

``python -m engine.eval.prompts --model latent-prompts --data data/drums2s`` (or
``bench/bench_prompts.py``) measures, on the held-out kits the trainers never see:

``embedder.r_at_1`` / ``embedder.r_at_5`` / ``embedder.zero_shot_accuracy`` (and per category)
    the model's text–audio embedder alone (:func:`engine.train.clap.retrieval_figures`): each
    held-out clip's full caption ranks the clips; zero-shot category from per-instrument prompts;
``text.<category>.<phrasing>.classified_as_intended`` / ``...frechet_ratio``
    ``--count`` sounds per category prompt in two phrasings (:data:`CATEGORY_PHRASINGS`), made as
    the studio makes them (the instrument the prompt names sets the label,
    ``engine.studio.prompt_label``, and the embedding joins it), judged like every model
    (``engine.eval.run.compare``); ``text_only.*`` the same seeds from the embedding alone (no
    label: what the prompt path itself has learned); beside them ``label.<category>.*``, the same
    seeds with the label and no prompt: the figure a prompt must match;
``descriptor.<pair>.right_way``
    seed-matched pairs of opposite prompts (:data:`DESCRIPTOR_PAIRS`, e.g. "bright snare" vs
    "dark snare"): the share of pairs whose measured descriptor (spectral centroid, decay time,
    low-band share; ``engine.data.captions.clip_descriptors``) moves the way the words say;
``variation.same_category`` / ``variation.closer_than_random`` (and ``variation_made.*``)
    "more like this" as the studio makes it (:func:`variation_figures`): of held-out clips given
    as plain WAVs (``variation``) and of sounds the model made, with their recipe
    (``variation_made``): the share classified as the reference's category, and the share closer
    to the reference (in the evaluation's standardised feature space) than a sound of the same
    seed made from the reference's category label alone; ``reference.guess_share`` /
    ``reference.guess_right``: how often the studio names a recipe-less clip's instrument, and rightly;
``speed.seconds_1s_prompted`` / ``speed.text_embedding_ms``
    ``Studio.render`` of one 1 s prompted sound at the model's defaults (median of 3), and one
    prompt's text embedding (median over 10 prompts, the tower loaded).
"""

from __future__ import annotations

import argparse
import logging
import math
import statistics
import tempfile
import time
from pathlib import Path
from typing import Sequence

import soundfile
import torch

from ..audio import audio_to_numpy, export_wav, fit_length
from ..conditions import Conditions
from ..data.captions import asked_descriptors, clip_descriptors, named_category
from ..data.dataset import DEFAULT_ROOT as DATA_ROOT
from ..errors import InvalidRequestError
from ..models import resolve_model
from ..request import GenerationRequest
from ..studio import Studio, takes_prompts
from .classifier import DEFAULT_CACHE
from .features import batched_features
from .run import Judge, generate_clips, model_header, report, seconds_per_call, studio_fade_ms, studio_output

CATEGORY_PHRASINGS: dict[str, tuple[str, str]] = {
    "kick": ("kick", "bass drum"),
    "snare": ("snare", "snare drum hit"),
    "hat": ("closed hi-hat", "hihat"),
    "cymbal": ("crash cymbal", "cymbal"),
}
"""The issue's category prompts, two phrasings each."""

DESCRIPTOR_PAIRS: dict[str, tuple[str, str, str]] = {
    "bright_dark_snare": ("bright snare", "dark snare", "centroid_hz"),
    "short_long_kick": ("long kick", "short kick", "decay_ms"),
    "boomy_thin_kick": ("boomy kick", "thin kick", "low_share"),
}
"""(prompt whose descriptor should be higher, prompt whose should be lower, descriptor)."""

TEXT_PROMPTS = ("short punchy 808 kick", "dark roomy snare", "bright tight closed hi-hat", "long crash cymbal",
                "low boomy tom", "electronic clap", "soft ride cymbal", "lo-fi snare", "open hat", "cowbell")


PARTS = ("embedder", "text", "descriptors", "variations", "speed")
"""What :func:`evaluate_prompts` measures (``--parts`` picks some, to iterate on one quickly)."""


def _key(text: str) -> str:
    return text.replace(" ", "_").replace("-", "_")


def evaluate_prompts(model_name: str, data_root: str = str(DATA_ROOT), count: int = 16, pairs: int = 16,
                     references: int = 8, seed: int = 0, guidance: float | None = None, device: str = "cpu",
                     cache_dir: str = str(DEFAULT_CACHE), parts: Sequence[str] = PARTS) -> dict[str, float | str]:
    log = logging.getLogger(__name__)
    studio = Studio(device=device)
    entry = resolve_model(model_name)
    if not takes_prompts(entry.manifest):
        raise InvalidRequestError(f"model {entry.name!r} takes no prompts")
    model = studio.load(entry)
    embedder = studio.embedder(str(entry.folder))
    rate, fade_ms = model.manifest["sample_rate"], studio_fade_ms(model.manifest)
    judge = Judge.from_data(data_root, cache_dir, model.manifest["length"])
    holdout_set = judge.holdout_data
    results: dict[str, float | str] = {**model_header(entry, model), "embedder.id": embedder.id}

    # the embedder alone, on the held-out clips and their captions (in its own words)
    if "embedder" in parts:
        from ..train.clap import retrieval_figures
        from ..data.captions import dataset_captions
        thresholds = getattr(embedder, "manifest", {}).get("captions", {}).get("thresholds")
        captions = dataset_captions(holdout_set, thresholds, 6, 0, progress=False)
        results.update({f"embedder.{k}": float(v)
                        for k, v in retrieval_figures(embedder, holdout_set, captions).items()})

    labels = list(model.manifest["labels"])

    def prompted(text_or_vector, n: int, first_seed: int, route: bool = True) -> torch.Tensor:
        """Sounds for a text prompt as the studio makes them (its named instrument's label too,
        unless ``route`` is off), or for an embedding (no label)."""
        text = text_or_vector if isinstance(text_or_vector, str) else None
        vector = embedder.text([text])[0] if text is not None else text_or_vector
        label = named_category(text, labels) if text is not None and route else None
        return generate_clips(model, n, label=label, seed=first_seed, guidance=guidance,
                              conditions=[Conditions(prompt=vector)] * n, prompt_words=asked_descriptors(text))

    # text -> sound: category prompts in two phrasings, beside the label
    worst = 1.0
    for category, phrasings in CATEGORY_PHRASINGS.items():
        if category not in model.manifest["labels"] or "text" not in parts:
            continue
        labelled = generate_clips(model, count, label=category, seed=seed, guidance=guidance)
        figures = judge.compare(category, labelled, fade_ms)
        for key in ("classified_as_intended", "frechet_ratio"):
            results[f"label.{category}.{key}"] = figures.get(key, math.nan)
        for text in phrasings:
            log.info("text prompt %r: %d sounds, with and without its label", text, count)
            for prefix, route in (("text", True), ("text_only", False)):
                figures = judge.compare(category, prompted(text, count, seed, route), fade_ms)
                for key in ("classified_as_intended", "frechet_ratio"):
                    results[f"{prefix}.{category}.{_key(text)}.{key}"] = figures.get(key, math.nan)
                if route:
                    worst = min(worst, figures.get("classified_as_intended", 0.0))
    if "text" in parts:
        results["text.worst_classified_as_intended"] = worst

    # descriptors: seed-matched pairs of opposite prompts
    for name, (high, low, descriptor) in DESCRIPTOR_PAIRS.items() if "descriptors" in parts else ():
        log.info("descriptor pair %s: %d pairs", name, pairs)
        up = studio_output(prompted(high, pairs, seed + 500), rate, fade_ms)
        down = studio_output(prompted(low, pairs, seed + 500), rate, fade_ms)
        moved = [clip_descriptors(a, rate)[descriptor] > clip_descriptors(b, rate)[descriptor] for a, b in zip(up, down)]
        results[f"descriptor.{name}.right_way"] = sum(moved) / len(moved)

    if "variations" in parts:
        results.update(variation_figures(studio, entry, judge, references, seed, guidance))
        results.update(guess_figures(embedder, judge.holdout_data, labels))

    if "speed" in parts:
        results.update(speed_figures(studio, entry, embedder))
    return results


def speed_figures(studio: Studio, entry, embedder) -> dict[str, float]:
    """One 1 s prompted sound through the studio at the model's defaults, and one prompt's embedding."""
    results = {}
    request = GenerationRequest(model=str(entry.folder), prompt="short punchy 808 kick", length=1.0)
    results["speed.seconds_1s_prompted"] = seconds_per_call(lambda: studio.render(request))
    embed_times = []
    for text in TEXT_PROMPTS:
        started = time.perf_counter()
        embedder.text([text])
        embed_times.append(1000.0 * (time.perf_counter() - started))
    results["speed.text_embedding_ms"] = statistics.median(embed_times)
    return results


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m engine.eval.prompts", description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="latent-prompts")
    parser.add_argument("--data", default="data/drums2s", help="built data set whose clips are the model's length")
    parser.add_argument("--count", type=int, default=16, help="sounds per category prompt")
    parser.add_argument("--pairs", type=int, default=16, help="seed-matched pairs per descriptor")
    parser.add_argument("--references", type=int, default=8, help="held-out references per category")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--guidance", type=float, default=None)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--cache", default=str(DEFAULT_CACHE))
    parser.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated, of {', '.join(PARTS)}")
    args = parser.parse_args(argv)
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        parser.error(f"unknown parts {unknown}; choose from {', '.join(PARTS)}")
    return report(lambda: evaluate_prompts(args.model, args.data, args.count, args.pairs, args.references,
                                           args.seed, args.guidance, args.device, args.cache, parts))


def variation_figures(studio: Studio, entry, judge: Judge, references: int, seed: int,
                      guidance: float | None) -> dict[str, float]:
    """"More like this" as the studio makes it (``Studio.render``, ``variation="semantic"``) of two
    kinds of reference per category: ``variation.*`` held-out clips written as plain WAVs (a
    user's own samples: no recipe, so the studio guesses the instrument), and ``variation_made.*``
    sounds the model made from the category's label (WAVs with their recipe, as a card's "More
    like this" hands over). Each sibling is judged by the classifier (its reference's category?
    the category the classifier hears in the reference? real held-out clips are themselves heard
    as their own category only ~80 % of the time) and by distance in the standardised feature
    space: closer to the reference than the sound the category's label alone makes at the same
    seed?"""
    model = studio.load(entry)
    rate, length, fade_ms = model.manifest["sample_rate"], model.manifest["length"], studio_fade_ms(model.manifest)
    classifier, space, holdout = judge.classifier, judge.space, judge.holdout
    folder = str(entry.folder)
    tallies = {"variation": [0, 0, 0, 0], "variation_made": [0, 0, 0, 0]}   # same category, closer, agrees, total
    with tempfile.TemporaryDirectory(prefix="more-like-") as tmp:
        for category in model.manifest["labels"]:
            target = classifier.label_names.index(category) if category in classifier.label_names else -1
            rows = [i for i, c in enumerate(holdout.categories) if c == category][:references]
            for k, row in enumerate(rows):
                own = seed + 900 + k
                real = holdout.audio[row].float()
                plain_path = Path(tmp) / f"{category}-{k}.wav"
                soundfile.write(plain_path, audio_to_numpy(real), rate, subtype="FLOAT")
                made = studio.render(GenerationRequest(model=folder, label=category, seed=seed + 700 + k,
                                                       guidance=guidance)).sounds[0]
                made_path = export_wav(made.audio, rate, tmp, made.recipe, stem=f"made-{category}-{k}")
                plain = studio_output(generate_clips(model, 1, label=category, seed=own, guidance=guidance), rate,
                                      fade_ms)[0]
                for key, path, sound in (("variation", plain_path, real), ("variation_made", made_path, made.audio)):
                    like = studio.render(GenerationRequest(model=folder, reference=str(path), variation="semantic",
                                                           seed=own, guidance=guidance)).sounds[0].audio
                    sound = fit_length(sound, length)
                    feats = batched_features(torch.stack([fit_length(like, length), fit_length(plain, length),
                                                          sound]), rate)
                    standard = torch.as_tensor(space.standard(feats))
                    verdicts = classifier.predict(feats)
                    tally = tallies[key]
                    tally[0] += int(verdicts[0] == target)
                    tally[1] += int((standard[0] - standard[2]).norm() < (standard[1] - standard[2]).norm())
                    tally[2] += int(verdicts[0] == verdicts[2])
                    tally[3] += 1
    results = {}
    for key, (same, closer, agrees, total) in tallies.items():
        results[f"{key}.references"] = float(total)
        results[f"{key}.same_category"] = same / total if total else math.nan
        results[f"{key}.agrees_with_reference"] = agrees / total if total else math.nan
        results[f"{key}.closer_than_random"] = closer / total if total else math.nan
    return results


def guess_figures(embedder, holdout_set, labels: Sequence[str]) -> dict[str, float]:
    """How often the studio can name a recipe-less reference's instrument
    (``engine.embedders.categories.guess_category``) and how often it is right, on held-out clips."""
    from ..embedders.categories import guess_category
    vectors = torch.cat([embedder.audio(holdout_set.audio[i:i + 32].float(), holdout_set.sample_rate)
                         for i in range(0, len(holdout_set), 32)])
    truth = [record["category"] for record in holdout_set.records]
    guesses = [guess_category(embedder, vector, labels) for vector in vectors]
    named = [(g, t) for g, t in zip(guesses, truth) if g is not None]
    return {"reference.guess_share": len(named) / len(truth) if truth else math.nan,
            "reference.guess_right": sum(g == t for g, t in named) / len(named) if named else math.nan}


if __name__ == "__main__":
    raise SystemExit(main())
