"""How well a model follows its time-varying controls: ``name: value`` lines.

``python -m engine.eval.controls --model latent-drums --data data/drums2s`` (or
``bench/bench_controls.py``) generates, through the studio's own pipeline and ``finish``:

- **held-out curves**: for each category, ``--count`` sounds whose loudness curve and onsets are
  measured on the held-out kits' real clips of that category (``engine.conditions.curves_from_sound``,
  the same extraction a user's reference or vocal take goes through), with that category's label;
- **drawn shapes**: fast decay, slow decay, swell, gate and double hit (:data:`SHAPES`), at
  ``--shape-seeds`` seeds each, labels cycling through the categories;
- the same seeds and labels **without** controls: the baseline the controls must beat.

Figures (medians over sounds unless said):

``<set>.loudness_error_db`` / ``<set>.loudness_error_db_network`` / ``<set>.loudness_error_db_without``
    mean absolute difference between the requested and the generated RMS (dBFS, 2.9 ms frames),
    over the frames where the request is above -45 dBFS: the model as the studio samples it
    (loudness steering on, ``engine.steering``; the envelope shaper off), the network alone
    (steering off too), and the same seeds without curves;
``<set>.loudness_error_db_matched``
    the same after the studio's envelope shaper (``dsp.match_loudness``, on by default for a
    drawn curve: at most +12 dB of gain), i.e. what a user gets;
``<set>.onsets_within_10ms`` / ``<set>.spurious_onsets_per_sound``
    share of requested onsets with a generated onset within 10 ms (pooled), and generated onsets
    more than 10 ms from every requested one, per sound (mean); ``..._per_sound`` the share
    per sound, averaged (a held-out roll of 32 hits counts once, not 32 times); ``..._matched``
    the same after the envelope shaper, what a user gets (it once filled the dips of the hits the
    steering made: ``engine.steering.roll_segments``);
``heldout.<cat>.classified_as_intended`` / ``heldout.<cat>.frechet_ratio``
    the usual evaluation (``engine.eval.run.compare``) of the sounds made from held-out curves;
``heldout.<cat>.classified_as_intended_where_real_is`` / ``heldout.<cat>.curves_whose_real_is``
    the same share among the sounds whose curve comes from a real clip that the classifier itself
    puts in the category, and the share of sounds made from such curves. A curve measured on a
    clap the classifier hears as a snare asks for a snare's shape: the first figure tells a
    model that misses its category apart from a curve that asks for another one
    (:func:`classified_where_real_is`);
``speed.seconds_1s_controlled``
    ``Studio.render`` of one 1 s sound with a curve and onsets at the model's defaults (a model
    whose sounds are shorter: ``speed.seconds_controlled`` for one as long as it makes, and
    ``speed.length_s``).
"""

from __future__ import annotations

import argparse
import logging
import math
import statistics
from typing import Sequence

import torch

from .. import dsp
from ..conditions import Conditions, curves_from_sound
from ..curves import cut_rms
from ..data.dataset import DEFAULT_ROOT as DATA_ROOT
from ..envelopes import follows_curves
from ..errors import InvalidRequestError
from ..models import LoadedModel, load_model, resolve_model
from ..request import GenerationRequest
from ..steering import steerable
from ..studio import Studio, onto_curve
from .classifier import DEFAULT_CACHE
from .run import Judge, generate_clips, model_header, report, seconds_per_call, studio_fade_ms, studio_output

HOP = 128
LOUD_DB = -45.0          # frames quieter than this in the request are not scored (the floor is noise)
ONSET_TOLERANCE_MS = 10.0

# drawn shapes, as a producer would draw them (levels of real one-shots: RMS peaks -4 to -30 dBFS)
SHAPES: dict[str, tuple[tuple[tuple[float, float], ...], tuple[float, ...]]] = {
    "fast_decay": (((0, -8), (20, -12), (80, -30), (200, -55)), (0.0,)),
    "slow_decay": (((0, -10), (100, -14), (500, -26), (1200, -42), (1900, -60)), (0.0,)),
    "swell": (((0, -50), (400, -34), (900, -18), (1100, -14), (1400, -30), (1900, -60)), ()),
    "gate": (((0, -10), (150, -14), (160, -60), (1900, -70)), (0.0,)),
    "double_hit": (((0, -8), (60, -18), (170, -36), (180, -10), (260, -20), (600, -45), (1500, -65)), (0.0, 180.0)),
}


def loudness_error_db(audio: torch.Tensor, rms: Sequence[tuple[float, float]], sample_rate: int,
                      hop: int = HOP) -> float:
    """Mean |generated - requested| RMS in dB over the requested frames louder than -45 dBFS."""
    measured = dsp.rms_db(audio, hop)
    asked, mask = dsp.rms_from_points(rms, len(measured), hop, sample_rate)
    scored = (mask > 0) & (asked > LOUD_DB)
    return float((measured - asked)[scored].abs().mean()) if bool(scored.any()) else math.nan


def onset_match(audio: torch.Tensor, onsets: Sequence[float], sample_rate: int,
                hop: int = HOP) -> tuple[int, int, int]:
    """(requested onsets matched within 10 ms, requested onsets, spurious generated onsets)."""
    found = dsp.onset_times(audio, sample_rate, hop)
    matched = sum(any(abs(f - o) <= ONSET_TOLERANCE_MS for f in found) for o in onsets)
    spurious = sum(all(abs(f - o) > ONSET_TOLERANCE_MS for o in onsets) for f in found)
    return matched, len(onsets), spurious


def classified_where_real_is(made: Sequence[str], real: Sequence[str], category: str) -> tuple[float, float]:
    """(share of ``made`` read as ``category`` among the sounds whose curve's real clip is read so,
    share of sounds whose curve's real clip is read so): ``made[i]`` and ``real[i]`` are the
    classifier's verdicts on sound ``i`` and on the real clip its curve was measured on. NaN for
    the first when no curve's clip is read as ``category``."""
    if len(made) != len(real):
        raise ValueError(f"{len(made)} verdicts on made sounds, {len(real)} on their curves' clips")
    kept = [m for m, r in zip(made, real) if r == category]
    return (sum(m == category for m in kept) / len(kept) if kept else math.nan,
            len(kept) / len(real) if real else math.nan)


def _median(values: list[float]) -> float:
    values = [v for v in values if math.isfinite(v)]
    return statistics.median(values) if values else math.nan


def score(prefix: str, with_controls: torch.Tensor, without: torch.Tensor, asked: list[Conditions],
          sample_rate: int, matched: torch.Tensor | None = None, network: torch.Tensor | None = None) -> dict[str, float]:
    """The loudness and onset figures of one set of sounds, with and without their controls
    (and after the envelope shaper, ``matched``; by the network alone, unsteered, ``network``)."""
    out: dict[str, float] = {}

    def error(audio: torch.Tensor) -> float:
        return _median([loudness_error_db(a, c.rms, sample_rate) for a, c in zip(audio, asked) if c.rms])

    out[f"{prefix}.sounds"] = float(len(asked))
    out[f"{prefix}.loudness_error_db"] = error(with_controls)
    if network is not None:
        out[f"{prefix}.loudness_error_db_network"] = error(network)
    out[f"{prefix}.loudness_error_db_without"] = error(without)
    if matched is not None:
        out[f"{prefix}.loudness_error_db_matched"] = error(matched)
    for name, audio in (("", with_controls), ("_without", without), ("_matched", matched)):
        if audio is None:
            continue
        made = total = spurious = 0
        shares = []
        for clip, c in zip(audio, asked):
            if c.onsets:
                m, t, s = onset_match(clip, c.onsets, sample_rate)
                made, total, spurious = made + m, total + t, spurious + s
                shares.append(m / t)
        with_onsets = sum(1 for c in asked if c.onsets)
        out[f"{prefix}.onsets_within_10ms{name}"] = made / total if total else math.nan
        # the same share per sound, then averaged: one 32-hit roll weighs as one sound, not as 32 onsets
        out[f"{prefix}.onsets_within_10ms_per_sound{name}"] = statistics.fmean(shares) if shares else math.nan
        out[f"{prefix}.spurious_onsets_per_sound{name}"] = spurious / with_onsets if with_onsets else math.nan
    return out


def _generate(model: LoadedModel, asked: list[Conditions], labels: list[str], seed: int,
              control_guidance: float | None, steer: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """(what the studio writes without and with its envelope shaper) for each asked sound."""
    rate = model.manifest["sample_rate"]
    clips = []
    for i, (conditions, label) in enumerate(zip(asked, labels)):
        clips.append(generate_clips(model, 1, label=label, seed=seed + i, conditions=[conditions],
                                    control_guidance=control_guidance, steer_loudness=steer, steer_onsets=steer))
    raw = torch.cat(clips)
    steered = steer and steerable(model.codec)
    made = torch.cat([onto_curve(clip[None], c.rms, rate, False, steered) for clip, c in zip(raw, asked)])
    shaped = torch.cat([onto_curve(clip[None], c.rms, rate, True, steered, c.onsets, steered)
                        for clip, c in zip(raw, asked)])
    fade_ms = studio_fade_ms(model.manifest)
    return studio_output(made, rate, fade_ms), studio_output(shaped, rate, fade_ms)


def evaluate_controls(model_name: str, data_root: str = str(DATA_ROOT), count: int = 8, shape_seeds: int = 8,
                      seed: int = 0, control_guidance: float | None = None, device: str = "cpu",
                      cache_dir: str = str(DEFAULT_CACHE), progress: bool = True) -> dict[str, float | str]:
    entry = resolve_model(model_name)
    model = load_model(entry.folder, device=device)
    if not follows_curves(model.manifest):  # through its network, or by steering alone (latent-drums)
        raise InvalidRequestError(f"model {entry.name!r} takes no loudness and onset curves")
    rate, length = model.manifest["sample_rate"], model.manifest["length"]
    categories = list(model.manifest["labels"])
    judge = Judge.from_data(data_root, cache_dir, length)
    holdout = judge.holdout
    results: dict[str, float | str] = {**model_header(entry, model),
                                       "control_guidance": float(control_guidance if control_guidance is not None
                                                                 else model.manifest["defaults"].get(
                                                                     "control_guidance", 1.0))}
    log = logging.getLogger(__name__)

    # held-out curves, per category
    all_with, all_network, all_matched, all_without, all_asked = [], [], [], [], []
    for category in categories:
        rows = [i for i, c in enumerate(holdout.categories) if c == category]
        if not rows:
            continue
        measured = [(i, curves_from_sound(holdout.audio[i].float(), rate, HOP)) for i in rows]
        measured = [(i, c) for i, c in measured if c[0] is not None]
        sources = [measured[k % len(measured)][0] for k in range(count)]   # the real clip of each sound's curve
        curves = [measured[k % len(measured)][1] for k in range(count)]
        asked = [Conditions(rms=rms, onsets=onsets) for rms, onsets in curves]
        log.info("held-out curves: %d %s sounds", count, category)
        with_controls, matched = _generate(model, asked, [category] * count, seed, control_guidance)
        network, _ = _generate(model, asked, [category] * count, seed, control_guidance, steer=False)
        without, _ = _generate(model, [Conditions()] * count, [category] * count, seed, control_guidance)
        figures = judge.compare(category, with_controls)
        for key in ("classified_as_intended", "classified_as_intended_real", "frechet_ratio"):
            if key in figures:
                results[f"heldout.{category}.{key}"] = figures[key]
        if category in judge.classifier.label_names:
            made_reads = judge.classify(with_controls)  # as judge.compare read them above
            real_reads = judge.classifier.predict_names(judge.holdout_features[sources])
            (results[f"heldout.{category}.classified_as_intended_where_real_is"],
             results[f"heldout.{category}.curves_whose_real_is"]) = classified_where_real_is(made_reads, real_reads,
                                                                                               category)
        plain = judge.compare(category, without)
        for key in ("classified_as_intended", "frechet_ratio"):
            if key in plain:
                results[f"heldout.{category}.{key}_without"] = plain[key]
        all_with.append(with_controls)
        all_network.append(network)
        all_matched.append(matched)
        all_without.append(without)
        all_asked += asked
    results.update(score("heldout", torch.cat(all_with), torch.cat(all_without), all_asked, rate,
                         torch.cat(all_matched), torch.cat(all_network)))

    # drawn shapes
    asked, labels = [], []
    for s, (points, onsets) in enumerate(SHAPES.values()):
        for k in range(shape_seeds):
            asked.append(Conditions(rms=points, onsets=onsets or None))
            labels.append(categories[(s + k) % len(categories)])
    log.info("drawn shapes: %d sounds", len(asked))
    with_controls, matched = _generate(model, asked, labels, seed + 1000, control_guidance)
    network, _ = _generate(model, asked, labels, seed + 1000, control_guidance, steer=False)
    without, _ = _generate(model, [Conditions()] * len(asked), labels, seed + 1000, control_guidance)
    results.update(score("drawn", with_controls, without, asked, rate, matched, network))
    for s, name in enumerate(SHAPES):
        part = slice(s * shape_seeds, (s + 1) * shape_seeds)
        results.update({k.replace("drawn.", f"drawn.{name}."): v for k, v in
                        score("drawn", with_controls[part], without[part], asked[part], rate, matched[part],
                              network[part]).items()
                        if "loudness_error_db" in k})

    # speed: one 1 s controlled sound at the model's defaults, through the studio (a model that makes
    # shorter sounds: one as long as it makes, under its own key, with the length beside it)
    studio = Studio(device=device)
    seconds = min(1.0, length / rate)
    request = GenerationRequest(model=str(entry.folder), label=categories[0], length=seconds,
                                rms=cut_rms(SHAPES["fast_decay"][0], 1000.0 * seconds), onsets=(0.0,))
    key = "speed.seconds_1s_controlled" if seconds == 1.0 else "speed.seconds_controlled"
    results[key] = seconds_per_call(lambda: studio.render(request))
    if seconds != 1.0:
        results["speed.length_s"] = seconds
    return results


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m engine.eval.controls", description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="latent-drums")
    parser.add_argument("--data", default="data/drums2s", help="built data set whose clips are the model's length")
    parser.add_argument("--count", type=int, default=8, help="sounds per category from held-out curves")
    parser.add_argument("--shape-seeds", type=int, default=8, help="sounds per drawn shape")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--control-guidance", type=float, default=None)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--cache", default=str(DEFAULT_CACHE))
    args = parser.parse_args(argv)
    return report(lambda: evaluate_controls(args.model, args.data, args.count, args.shape_seeds, args.seed,
                                            args.control_guidance, args.device, args.cache))


if __name__ == "__main__":
    raise SystemExit(main())
