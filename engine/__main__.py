"""``python -m engine {generate,models,train,eval,data}``: the command line over the engine API.

Every subcommand is a thin shell: it parses arguments, makes one engine call, prints what a
user needs, and turns a StudioError into a one-line message and exit status 2.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import fields
from pathlib import Path

from .errors import StudioError


def _generate(args: argparse.Namespace) -> int:
    from . import audio
    from .request import GenerationRequest
    from .studio import Studio

    from .curves import format_onsets, format_rms, parse_onsets, parse_rms

    studio = Studio(roots=args.models_root, device=args.device, half=args.half)
    rms, onsets = parse_rms(args.rms), parse_onsets(args.onsets)
    if args.controls_from:  # a vocal imitation or any sound: its loudness and hits, unless given as well
        taken_rms, taken_onsets = studio.curves_from(args.controls_from, args.model, args.length)
        if taken_rms is None:
            raise StudioError(f"{args.controls_from} is silent: no curves to take")
        takes = studio.describe(args.model)["controls"]
        rms = rms or (taken_rms if "rms" in takes else None)
        onsets = onsets or (taken_onsets if "onsets" in takes else None)  # the waveform models: loudness only
        print(f"curves from {Path(args.controls_from).name}: --rms \"{format_rms(rms)}\" "
              f"--onsets \"{format_onsets(onsets)}\"", file=sys.stderr)
    request = GenerationRequest(model=args.model, sampler=args.sampler, steps=args.steps, guidance=args.guidance,
                                variety=args.variety,
                                seed=args.seed, seed_b=args.seed_b, morph=args.morph, count=args.count,
                                label=args.label, label_b=args.label_b, label_mix=args.label_mix,
                                reference=args.reference, strength=args.strength,
                                variation=args.variation, length=args.length, rms=rms, onsets=onsets,
                                control_guidance=args.control_guidance, match_loudness=args.match_loudness,
                                steer_loudness=args.steer_loudness, soft_hits=args.soft_hits,
                                steer_onsets=args.steer_onsets, one_hit=args.one_hit,
                                prompt=args.prompt, prompt_b=args.prompt_b, prompt_morph=args.prompt_morph,
                                rerank=args.rerank, shape=args.shape, width=args.width, kit_bands=args.kit_bands)
    result = studio.render(request)
    for note in result.notes:
        print(f"note: {note}", file=sys.stderr)
    for sound in result.sounds:
        # the model as asked (a name or a folder), unless a Sound's variant made it: that one replays it
        recipe = sound.recipe if sound.recipe.get("variant_of") else dict(sound.recipe, model=args.model)
        path = audio.export_wav(sound.audio, sound.sample_rate, args.out, recipe,
                                subtype="FLOAT" if args.float else "PCM_24")
        line = str(path) if sound.score is None else f"{path}\tscore {sound.score:.3f}"
        if args.prompt is None and recipe.get("prompt"):  # a kit hit's description (hit_prompt): say which
            line += f"\t{recipe['prompt']}"
        if recipe.get("variant_of"):
            line += f"\tmade by {recipe['variant_of']}'s {recipe.get('label')} variant {Path(recipe['model']).name}"
        if recipe.get("redrawn_from_seed") is not None:
            line += f"\tseed {recipe['redrawn_from_seed']} came out near-silent: drawn again as seed {recipe['seed']}"
        print(line)
    logging.info("%d sound(s) in %.2f s on %s", len(result.sounds), result.seconds, result.device)
    return 0


def _models(args: argparse.Namespace) -> int:
    from .models import find_models
    from .sampling import distilled_from

    for name, entry in sorted(find_models(args.models_root).items()):
        target = f" -> {entry.folder.name} label={entry.label}" if entry.label else ""
        steps = entry.manifest.get("training", {}).get("steps", "?")
        teacher = distilled_from(entry.manifest)
        source = f" distilled_from={teacher}" if teacher else ""
        variant = entry.manifest.get("variant_of")  # a Sound's variant (engine.variants)
        if variant:
            source += f" variant_of={variant.get('model')} for={variant.get('label')}"
        print(f"{name}: kind={entry.kind} labels={','.join(entry.labels) or '-'} steps={steps}{source}{target}")
    return 0


def _envelope_shape(text: str) -> tuple[str, list[int]]:
    """``hat=3x8`` -> ("hat", [3, 8]): one label's envelope prior shape (clusters x components)."""
    label, _, shape = text.partition("=")
    clusters, _, components = shape.lower().partition("x")
    if not label or not clusters.isdigit() or not components.isdigit():
        raise argparse.ArgumentTypeError(f"expected LABEL=CLUSTERSxCOMPONENTS such as hat=3x8, got {text!r}")
    return label.strip(), [int(clusters), int(components)]


def _label_number(form: str):
    """A parser of ``LABEL=NUMBER`` arguments (``hat=1.3`` -> ("hat", 1.3)); ``form`` (e.g.
    "LABEL=SPREAD such as hat=1.3") is what its error says to write instead."""
    def parse(text: str) -> tuple[str, float]:
        label, _, value = text.partition("=")
        try:
            return label.strip(), float(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {form}, got {text!r}") from None
    return parse


def _train(args: argparse.Namespace) -> int:
    if getattr(args, "steps", None) is None and getattr(args, "max_minutes", None) is not None:
        from .train.common import UNTIL_TIME

        args.steps = UNTIL_TIME
    if getattr(args, "envelope_shapes", None):
        args.envelope_shapes = dict(args.envelope_shapes)
    if getattr(args, "envelope_spreads", None):
        args.envelope_spreads = dict(args.envelope_spreads)
    if getattr(args, "reattack_quantiles", None):
        args.reattack_quantiles = dict(args.reattack_quantiles)
    if getattr(args, "envelope_kernels", None):
        if args.family != "prior":
            raise StudioError("--envelope-kernel is for train prior")
        args.envelope_kernels = dict(args.envelope_kernels)
    for option, given in (("--envelope-detail", "envelope_details"), ("--envelope-tone", "envelope_tones")):
        if getattr(args, given, None) and args.family != "prior":
            raise StudioError(f"{option} is for train prior")
    if getattr(args, "label_teachers", None):
        if args.family != "distill":
            raise StudioError("--label-teacher is for train distill")
        args.label_teachers = dict(args.label_teachers)
    if args.family == "wave":
        from .train.wave import WaveTrainConfig, train_wave

        known = {f.name for f in fields(WaveTrainConfig)}
        config = WaveTrainConfig(**{k: v for k, v in vars(args).items() if k in known and v is not None})
        folder = train_wave(config)
        print(folder)
        return 0
    if args.family == "prior":
        from .train.prior import PriorConfig, refit_prior

        known = {f.name for f in fields(PriorConfig)}
        print(refit_prior(PriorConfig(**{k: v for k, v in vars(args).items() if k in known and v is not None})))
        return 0
    if args.family in ("codec", "latent", "clap", "distill", "steps", "variant"):
        if args.family == "codec":
            from .train.codec import CodecTrainConfig as Config, train_codec as train
        elif args.family == "distill":
            from .train.distill import DistillConfig as Config, train_distill as train
        elif args.family == "steps":
            from .train.progressive import ProgressiveConfig as Config, train_progressive as train
        elif args.family == "clap":
            from .train.clap import ClapTrainConfig as Config, train_clap as train
        elif args.family == "variant":
            from .train.variant import VariantConfig as Config, train_variant as train
        else:
            from .train.latent import LatentTrainConfig as Config, train_latent as train
        known = {f.name for f in fields(Config)}
        print(train(Config(**{k: v for k, v in vars(args).items() if k in known and v is not None})))
        return 0
    raise StudioError(f"training family {args.family!r} is not available yet")


def _label_folder(text: str) -> tuple[str, str]:
    """``LABEL=FOLDER`` of ``--label-teacher``."""
    label, sep, folder = text.partition("=")
    if not sep or not label.strip() or not folder.strip():
        raise argparse.ArgumentTypeError(f"expected LABEL=FOLDER, got {text!r}")
    return label.strip(), folder.strip()


def _embed(args: argparse.Namespace) -> int:
    """The captions nearest to a text or a sound in the embedder's space: a debugging aid."""
    import torch

    from . import audio
    from .data.captions import build_captions
    from .embedders import load_embedder

    if bool(args.text) == bool(args.audio):
        raise StudioError("give either --text \"...\" or --audio FILE")
    embedder = load_embedder(args.embedder)
    if args.text:
        query = embedder.text([args.text])
    else:
        sound, rate = audio.read_audio(args.audio, max_seconds=30.0)
        query = embedder.audio(audio.within_full_scale(sound)[None], rate)
    thresholds = getattr(embedder, "manifest", {}).get("captions", {}).get("thresholds") or None
    bank = sorted({c for clip in build_captions(args.data, "train", thresholds=thresholds, progress=False) for c in clip})
    scores = (embedder.text(bank) @ query[0]).tolist()
    for score, caption in sorted(zip(scores, bank), reverse=True)[:args.top]:
        print(f"{score:.3f}  {caption}")
    return 0


def _given_defaults(args: argparse.Namespace) -> dict:
    """The generation defaults named on the command line (:func:`_default_arguments`)."""
    from .train.publish import PUBLISHED_DEFAULTS

    return {key: getattr(args, key) for key in PUBLISHED_DEFAULTS if getattr(args, key) is not None}


def _publish(args: argparse.Namespace) -> int:
    from .train.publish import publish

    print(publish(args.run, args.to, args.eval, args.status, _given_defaults(args), args.eval_command))
    return 0


def _defaults(args: argparse.Namespace) -> int:
    from .errors import InvalidRequestError
    from .models import read_manifest, resolve_model
    from .train.publish import set_defaults

    defaults = _given_defaults(args)
    if not defaults:
        raise InvalidRequestError("name at least one default to set, e.g. --per-label "
                                  '\'{"kick": {"sampler": "dpmpp_2m", "steps": 12, "guidance": 6.5}}\'')
    folder = set_defaults(resolve_model(args.model).folder, defaults)
    print(f"{folder}: defaults {read_manifest(folder)['defaults']}")
    return 0


def _steer(args: argparse.Namespace) -> int:
    from .models import read_manifest, resolve_model
    from .train.publish import conditions_line, steer_curves

    folder = steer_curves(resolve_model(args.model).folder)
    print(f"{folder}: conditions {conditions_line(read_manifest(folder))}")
    return 0


def _envelopes(args: argparse.Namespace) -> int:
    from .data.dataset import DrumDataset
    from .envelopes import follows_curves, measure_bank, write_bank
    from .errors import InvalidRequestError
    from .models import resolve_model

    entry = resolve_model(args.model)
    if not follows_curves(entry.manifest):
        raise InvalidRequestError(f"model {entry.name!r} does not follow loudness and onset curves")
    data = DrumDataset(args.data, "train", real_only=True)
    if data.sample_rate != entry.manifest["sample_rate"]:
        raise InvalidRequestError(f"{args.data} is {data.sample_rate} Hz, the model {entry.manifest['sample_rate']} Hz")
    bank = measure_bank(data, captions=_hit_captions(entry, args.data, data))
    path = write_bank(entry.folder, bank, data.sample_rate, f"{Path(args.data).name} train split, real clips")
    print(f"{path}: " + ", ".join(f"{label} {len(entries)}" for label, entries in sorted(bank.items())))
    return 0


def _labels_training_clips(entry, data_root: str, labels: list[str]) -> tuple[dict, int]:
    """``({label: (N, C, samples) real training clips}, sample rate)`` of ``data_root``'s train split
    for the model ``entry``'s ``labels``: what ``attacks`` and ``lows`` measure. A label the model
    does not know, or a data set at another sample rate, is a clear error."""
    from .data.dataset import DrumDataset
    from .errors import InvalidRequestError

    unknown = sorted(set(labels) - set(entry.manifest.get("labels", [])))
    if unknown:
        raise InvalidRequestError(f"model {entry.name!r} has no label {unknown}; it knows {entry.manifest.get('labels')}")
    data = DrumDataset(data_root, "train", real_only=True)
    if data.sample_rate != entry.manifest["sample_rate"]:
        raise InvalidRequestError(f"{data_root} is {data.sample_rate} Hz, the model {entry.manifest['sample_rate']} Hz")
    return ({label: data.audio[[i for i, record in enumerate(data.records) if record["category"] == label]]
             for label in labels}, data.sample_rate)


def _lows(args: argparse.Namespace) -> int:
    from . import lows
    from .errors import InvalidRequestError
    from .models import resolve_model

    entry = resolve_model(args.model)
    if entry.manifest.get("kind") != "latent":
        raise InvalidRequestError(f"model {entry.name!r} is not a latent model (its low band is not the codec's exact one)")
    clips, rate = _labels_training_clips(entry, args.data, args.label)
    quantile = lows.QUANTILE if args.quantile is None else args.quantile
    table = {label: lows.measure(audio, rate, quantile) for label, audio in clips.items()}
    path = lows.write_lows(entry.folder, table, f"{Path(args.data).name} train split, real clips", quantile)
    print(f"{path}: " + ", ".join(f"{label} ({', '.join(f'{v:g}' for v in row)} dB)" for label, row in table.items()))
    return 0


def _clip_table(args: argparse.Namespace, measure, write, latent_only: str | None = None) -> int:
    """One row per training clip of each ``--label`` (``measure(entry, audio, rate)``), written into the
    model's folder (``write(entry, table, source)``) and said in one line: what ``tones``, ``tails``,
    ``widths`` and ``bands`` each do with their own measure. ``latent_only``: why a model of another
    kind is refused (None: any kind)."""
    from .errors import InvalidRequestError
    from .models import resolve_model

    entry = resolve_model(args.model)
    if latent_only and entry.manifest.get("kind") != "latent":
        raise InvalidRequestError(f"model {entry.name!r} is not a latent model ({latent_only})")
    clips, rate = _labels_training_clips(entry, args.data, args.label)
    table = {label: measure(entry, audio, rate) for label, audio in clips.items()}
    path = write(entry, table, f"{Path(args.data).name} train split, real clips")
    print(f"{path}: " + ", ".join(f"{label} ({len(rows)} clips)" for label, rows in table.items()))
    return 0


def _tones(args: argparse.Namespace) -> int:
    from . import tones

    return _clip_table(args, lambda entry, audio, rate: tones.measure(audio),
                       lambda entry, table, source: tones.write_tones(entry.folder, table, source),
                       "a waveform model's Sounds take their clips' tone with train prior --envelope-tone")


def _bands(args: argparse.Namespace) -> int:
    from . import band_shares
    from .models import load_model
    from .steering import envelope_bands

    codecs: dict = {}

    def codec(entry):
        if entry.folder not in codecs:
            codecs[entry.folder] = load_model(entry.folder).codec
        return codecs[entry.folder]

    return _clip_table(args, lambda entry, audio, rate: band_shares.measure(codec(entry), audio),
                       lambda entry, table, source: band_shares.write_shares(entry.folder, table, source,
                                                                             1 + envelope_bands(codec(entry))),
                       "its bands are not a codec latent's")


def _widths(args: argparse.Namespace) -> int:
    from . import tones

    return _clip_table(args, lambda entry, audio, rate: tones.measure_widths(audio),
                       lambda entry, table, source: tones.write_widths(entry.folder, table, source),
                       "a waveform model's channels are not decoded apart")


def _tails(args: argparse.Namespace) -> int:
    from . import tones

    return _clip_table(args, lambda entry, audio, rate: tones.measure_tails(audio, rate),
                       lambda entry, table, source: tones.write_tails(entry.folder, table, source))


def _attacks(args: argparse.Namespace) -> int:
    from . import attacks
    from .errors import InvalidRequestError
    from .models import load_codec, resolve_model
    from .steering import steerable

    entry = resolve_model(args.model)
    codec = load_codec(entry.manifest, entry.folder)  # the codec alone: the network is not needed to measure
    if entry.manifest.get("kind") != "latent" or not steerable(codec):
        raise InvalidRequestError(f"model {entry.name!r} is not a latent model whose codec says its loudness")
    clips, _ = _labels_training_clips(entry, args.data, args.label)
    quantile = attacks.QUANTILE if args.quantile is None else args.quantile
    frames = attacks.FRAMES if args.frames is None else args.frames
    table = {label: attacks.measure(codec, audio, frames, quantile) for label, audio in clips.items()}
    path = attacks.write_attacks(entry.folder, table, f"{Path(args.data).name} train split, real clips", quantile)
    print(f"{path}: " + ", ".join(f"{label} ({len(rows)} bands x {len(rows[0])} frames)" for label, rows in table.items()))
    return 0


def _hit_captions(entry, data_root: str, data) -> list[str] | None:
    """Each clip of ``data`` (the train split's real clips) its fullest caption, for a model that
    takes prompts (None otherwise): by the descriptor thresholds the model was trained with when it
    records them (``captions.thresholds``), else its embedder's."""
    from .conditions import takes_prompts
    from .data.captions import build_captions
    from .embedders.base import read_embedder_manifest
    from .models import embedder_location

    if not takes_prompts(entry.manifest):
        return None
    where = embedder_location(entry.manifest, entry.folder)
    thresholds = entry.manifest.get("captions", {}).get("thresholds") or (
        None if where == "laion" else read_embedder_manifest(where).get("captions", {}).get("thresholds"))
    return [captions[0] for captions in build_captions(data_root, "train", thresholds=thresholds, dataset=data)]


def _eval(args: argparse.Namespace, rest: list[str]) -> int:
    from .eval.run import main as eval_main

    return eval_main(rest)


def _data(args: argparse.Namespace, rest: list[str]) -> int:
    from .data.build import main as build_main

    return build_main(rest)


def _default_arguments(parser: argparse.ArgumentParser, otherwise: str) -> None:
    """The generation defaults that ``publish`` and ``defaults`` set (``otherwise``: when not given)."""
    parser.add_argument("--sampler", default=None, help=f"the studio's default sampler for this model (default: {otherwise})")
    parser.add_argument("--steps", type=int, default=None, help=f"the default number of steps (default: {otherwise})")
    parser.add_argument("--guidance", type=float, default=None, help=f"the default guidance (default: {otherwise})")
    parser.add_argument("--variety", type=json.loads, default=None,
                        help="the default variety, 0 (guided at every step) .. 1 (guided only near the end), or per "
                             "label as JSON, e.g. '{\"kick\": 0.5, \"cymbal\": 0.5}' (others 0)")
    parser.add_argument("--control-guidance", type=float, default=None,
                        help="the default guidance towards drawn curves of a model with controls")
    parser.add_argument("--guidance-weights", type=json.loads, default=None,
                        help='latent: how much of the guidance acts on each channel group of the codec, as JSON, '
                             f'e.g. \'{{"bypass": 0}}\' (no guidance on the low sub-bands; default: {otherwise})')
    parser.add_argument("--shape", choices=["free", "kit"], default=None,
                        help="who shapes a Sound asked for alone: free (the network) or kit (a real training hit's "
                             "curves; needs python -m engine envelopes first)")
    parser.add_argument("--hit-prompt", type=float, default=None,
                        help="latent models with prompts: with shape kit, how far the drawn hit's own description "
                             "(\"soft dark boomy low acoustic tom\") moves a sound from its label, 0 (the label alone) "
                             "to 1 (the caption alone); needs kit envelopes with captions")
    parser.add_argument("--kit-spread", type=float, default=None,
                        help="latent models, with shape kit: how far a Sound asked alone draws its kit hit's loudness "
                             "curve from the label's typical one, 0 (the typical curve) .. 2; 1 the hit as it was, "
                             "1.3 a third further (more varied sounds; no kit holds that exact shape)")
    parser.add_argument("--per-label", type=json.loads, default=None,
                        help="defaults for some labels in place of the model's, as JSON, e.g. "
                             '\'{"kick": {"sampler": "dpmpp_2m", "steps": 12, "guidance": 6.5}}\' '
                             "(sampler, steps, guidance, variety, control_guidance, shape, guidance_weights, "
                             "hit_prompt, kit_spread, one_hit_db, redraw_under_db, width, kit_bands)")
    parser.add_argument("--width", type=float, default=None,
                        help="the default stereo width, 0 (mono) .. 1 (as the model makes it); per label with "
                             "--per-label (default: unchanged)")
    parser.add_argument("--kit-bands", type=float, default=None,
                        help="latent models with band shares (python -m engine bands): how far a Sound alone with a "
                             "loudness curve is steered onto the band shares of the clip its seed deals, 0 .. 1; "
                             "per label with --per-label (default: unchanged)")
    parser.add_argument("--one-hit-db", type=float, default=None,
                        help="latent models whose latent says its loudness: how far (dB) a sound asked as one hit "
                             "(at most one onset) may rise again after its peak as it forms, where no loudness curve "
                             "is drawn, e.g. 10 (default: unchanged)")
    parser.add_argument("--redraw-under-db", type=float, default=None,
                        help="latent models whose latent says its loudness: a sound asked as one clean hit whose "
                             "loudest frame comes out under this level (dBFS) is drawn again from another seed, "
                             "where no loudness curve is drawn, e.g. -30 (default: unchanged)")
    parser.add_argument("--with-curves", type=json.loads, default=None,
                        help="defaults for a sound with a drawn loudness curve, on top of the others, as JSON of the "
                             "same form, e.g. '{\"per_label\": {\"kick\": {\"variety\": 0}}}'")
    parser.add_argument("--with-prompt", type=json.loads, default=None,
                        help="models with prompts: defaults for a sound asked for with a prompt (or \"more like "
                             "this\"), on top of the others, as JSON of sampler, steps, guidance, variety and "
                             "control_guidance, model-wide or per label, e.g. "
                             "'{\"per_label\": {\"cymbal\": {\"guidance\": 3.0}}}'")


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="python -m engine", description="Tiny Diffusion Studio engine")
    top.add_argument("-v", "--verbose", action="store_true")
    sub = top.add_subparsers(dest="command", required=True)

    gen = sub.add_parser("generate", help="generate sounds and write them as WAVs")
    gen.add_argument("--model", default="kick", help="model name or alias (kick, snare, hat, perc) or a model folder")
    gen.add_argument("--count", type=int, default=1)
    gen.add_argument("--steps", type=int, default=None, help="default: the model's")
    gen.add_argument("--seed", type=int, default=0, help="sound i uses seed + i")
    gen.add_argument("--seed-b", type=int, default=None, help="second seed to morph towards")
    gen.add_argument("--morph", type=float, default=0.0, help="0..1 along the slerp from seed to seed-b")
    gen.add_argument("--sampler", default=None,
                     help="dpmpp_2m, ddim, euler_a (stochastic), iadb (blending models only)")
    gen.add_argument("--guidance", type=float, default=None)
    gen.add_argument("--variety", type=float, default=None,
                     help="0 (safe: guided at every step) .. 1 (surprising: guided only near the end); default: "
                          "the model's")
    gen.add_argument("--label", default=None, help="class label for conditional models")
    gen.add_argument("--label-b", default=None, help="a second label to blend in: a hybrid (e.g. --label snare "
                                                     "--label-b perc --label-mix 0.3)")
    gen.add_argument("--label-mix", type=float, default=0.0, help="0..1: how much of --label-b (0 = --label alone)")
    gen.add_argument("--reference", default=None, help="a sound to vary")
    gen.add_argument("--strength", type=float, default=None,
                     help="variation strength: 1 = a new sound, ~0 = the reference (default 0.5; with --variation "
                          "semantic 1: new noises, and under 1 it starts from the reference)")
    gen.add_argument("--variation", choices=["noise", "invert", "semantic"], default="noise",
                     help="noise: partial noising of the reference; invert: its inverted noise; semantic: new sounds "
                          "like it (\"more like this\": its audio embedding is the prompt)")
    gen.add_argument("--prompt", default=None, help='text prompt, e.g. "short punchy 808 kick" (models with prompts)')
    gen.add_argument("--prompt-b", default=None, help="a second prompt to morph towards")
    gen.add_argument("--prompt-morph", type=float, default=0.0, help="0..1 from --prompt to --prompt-b")
    gen.add_argument("--rerank", type=int, default=0, metavar="N",
                     help="make N candidates and keep the --count closest to the prompt (printed with their score)")
    gen.add_argument("--length", type=float, default=None,
                     help="seconds, latent models only (at most the model's longest); default: the model's")
    gen.add_argument("--rms", default=None, metavar="MS:DB,...",
                     help='loudness curve, e.g. "0:-3,40:-10,250:-40" (ms:dBFS points joined by lines; models '
                          'with controls only)')
    gen.add_argument("--onsets", default=None, metavar="MS,...", help='where the hits are, e.g. "0,180" (ms)')
    gen.add_argument("--controls-from", default=None, metavar="FILE",
                     help="take the loudness curve and onsets from a sound (a vocal imitation: say 'ts' or 'boom')")
    gen.add_argument("--control-guidance", type=float, default=None,
                     help="how strictly to follow the curves (1 = as conditioned; default: the model's)")
    gen.add_argument("--no-match-loudness", dest="match_loudness", action="store_false",
                     help="leave the sound as the model made it (default: a gain envelope after sampling, at most "
                          "+12 dB, puts its loudness on the --rms curve)")
    gen.add_argument("--no-steer-loudness", dest="steer_loudness", action="store_false",
                     help="let the latent model follow the --rms curve on its own (default: the sampling steps "
                          "but the last few are moved onto the curve, on models whose latent says its loudness)")
    gen.add_argument("--no-steer-onsets", dest="steer_onsets", action="store_false",
                     help="let the latent model place the --onsets hits on its own (default: each hit after the "
                          "first that the --rms curve does not already rise into is made as the sound forms, on "
                          "models whose latent says its loudness)")
    gen.add_argument("--allow-second-hits", dest="one_hit", action="store_false",
                     help="let a sound with at most one onset rise again after its peak, and keep a near-silent "
                          "one, as the model makes them (default, on models that set a limit: held to one hit as it "
                          "forms where no --rms curve is drawn, no ghost second hit; and one that comes out "
                          "near-silent drawn again from another seed, which the WAV's recipe records)")
    gen.add_argument("--width", type=float, default=None,
                     help="stereo width, 0 (mono: both channels the mid) .. 1 (as the model makes it); default: the "
                          "model's for the Sound (the latent models: mono, as most of the kits' hits are, cymbals "
                          "as made)")
    gen.add_argument("--kit-bands", type=float, default=None,
                     help="a Sound alone with a loudness curve (its kit hit's or --rms): how far each band's share of "
                          "the loudness is steered, over time, onto the real training clip its seed deals, 0 (the "
                          "network's own spectrum) .. 1 (the clip's); default: the model's for the Sound (needs "
                          "python -m engine bands first)")
    gen.add_argument("--soft-hits", action="store_true",
                     help="an --rms curve quieter than the model's usual hits makes a soft hit, with a soft velocity "
                          "layer's timbre (default: a full hit, turned down onto the curve)")
    gen.add_argument("--shape", choices=["free", "kit"], default=None,
                     help="with a --label and no curves: free (the model shapes the sound) or kit (each sound takes "
                          "the loudness and onsets of a real training hit, drawn by its seed); default: the model's")
    gen.add_argument("--out", type=Path, default=Path("exports"))
    gen.add_argument("--float", action="store_true", help="32-bit float WAV instead of 24-bit PCM")
    gen.add_argument("--device", default="auto", help="cpu, cuda or auto")
    gen.add_argument("--half", action="store_true", help="fp16 on CUDA")
    gen.add_argument("--models-root", action="append", default=None, help="extra folder of model folders")

    mod = sub.add_parser("models", help="list models, their kind and labels")
    mod.add_argument("--models-root", action="append", default=None)

    tr = sub.add_parser("train", help="train or fine-tune a model")
    tr.add_argument("family", choices=["wave", "codec", "latent", "clap", "distill", "steps", "prior", "variant"],
                    help="wave: waveform drum model; codec: audio autoencoder; latent: latent drum model on a codec; "
                         "clap: the text-audio embedder (audio tower + text head over the frozen MiniLM); "
                         "distill: a waveform or latent model (--init, the teacher) taught to take a guided step in one call; "
                         "steps: a guidance-distilled waveform model (--init) taught to make its sound in a few "
                         "steps (--grid); "
                         "prior: a waveform model (--init) with its envelope prior refitted (no network training); "
                         "variant: a latent model (--init) fine-tuned on the clips of one Sound it does not render "
                         "(--label hat --only thinned), dealt a share of that Sound's seeds beside it")
    tr.add_argument("--data", help="built data set (data/drums) or any folder of WAVs")
    tr.add_argument("--run-dir", dest="run", help="run folder (resumes if it holds a run); not --run, which torchrun would take as its own --run-path")
    tr.add_argument("--init", help="model folder to fine-tune from, e.g. checkpoints/drums")
    tr.add_argument("--student", help="distill: start the student from this distilled model (e.g. checkpoints/"
                                      "latent-fast) instead of the teacher's weights")
    tr.add_argument("--label-teacher", dest="label_teachers", action="append", type=_label_folder,
                    metavar="LABEL=FOLDER", help="distill (latent): clips of LABEL take their targets from this "
                                                 "teacher, a fine-tune of --init or a student of one (which then keeps "
                                                 "its LABEL where it is; repeat for more labels)")
    tr.add_argument("--name")
    tr.add_argument("--label", help="variant: the Sound every clip is asked as (hat)")
    tr.add_argument("--only", help="variant: only the clips whose data-set record holds this key (thinned: the "
                                   "thinned closed hats; default: every clip of --label)")
    tr.add_argument("--steps", type=int, help="steps to run in this call (default: until --max-minutes when that is "
                                              "given, else 1000; clap 3000)")
    tr.add_argument("--max-minutes", type=float, help="stop (and save) after this many minutes")
    tr.add_argument("--time-bias", type=float, help="wave: bias training times towards high noise (1 = uniform)")
    tr.add_argument("--no-envelope", dest="envelope", action="store_const", const=False,
                    help="wave: a new model's codec does not divide the bands by a loudness envelope")
    tr.add_argument("--no-augment", dest="augment", action="store_const", const=False,
                    help="no gain/pitch/time/polarity augmentation (latent: the data set is encoded once and cached)")
    tr.add_argument("--augment-copies", type=int,
                    help="latent: encode each clip once as it is and K-1 times augmented, and train on those "
                         "(augmentation at the speed of cached latents; default 0: augment every batch afresh; "
                         "distill with a latent teacher: 4)")
    tr.add_argument("--band-weight-power", type=float,
                    help="wave: loss weight of each band ~ its data std to this power (0: equal weights)")
    tr.add_argument("--envelope-clusters", type=int,
                    help="wave/prior: clusters of the per-clip envelope prior, per label (3)")
    tr.add_argument("--envelope-components", type=int,
                    help="wave: principal components of the per-clip envelope prior (0: one average envelope per label)")
    tr.add_argument("--envelope-shape", dest="envelope_shapes", action="append", type=_envelope_shape,
                    help="wave/prior: one label's prior shape apart from the rest, LABEL=CLUSTERSxCOMPONENTS "
                         "(e.g. hat=3x8; repeat for more labels)")
    tr.add_argument("--envelope-spread", dest="envelope_spreads", action="append",
                    type=_label_number("LABEL=SPREAD such as hat=1.3"),
                    help="wave/prior: draw one label's envelopes this many times as far along its prior's "
                         "directions, LABEL=SPREAD (e.g. hat=1.3: wider than its clips; repeat for more labels)")
    tr.add_argument("--reattack-quantile", dest="reattack_quantiles", action="append",
                    type=_label_number("LABEL=QUANTILE such as kick=0.75"),
                    help="prior: hold one label's drawn second hits to this quantile of how far its clips rise "
                         "again after their peak, LABEL=Q (e.g. kick=0.75; repeat for more labels; default: not held)")
    tr.add_argument("--envelope-kernel", dest="envelope_kernels", action="append",
                    type=_label_number("LABEL=WIDTH such as snare=0.5"),
                    help="prior: draw one label's envelopes from its clips' own, each moved WIDTH times along the "
                         "label's directions, LABEL=WIDTH (e.g. snare=0.5; 0: the clips' envelopes exactly; "
                         "repeat for more labels)")
    tr.add_argument("--envelope-detail", dest="envelope_details", action="append", metavar="LABEL",
                    help="prior: a label drawn from its clips (--envelope-kernel) also takes its dealt clip's flutter "
                         "between the envelope's knots, about 23 ms fine (e.g. hat; repeat for more labels)")
    tr.add_argument("--envelope-tone", dest="envelope_tones", action="append", metavar="LABEL",
                    help="prior: a label drawn from its clips (--envelope-kernel) also takes its dealt clip's tone "
                         "inside each band, 4 points a band (e.g. hat; repeat for more labels)")
    tr.add_argument("--compand", type=float,
                    help="latent: scale of a new model's asinh latent transform (default 0.01; 0: the plain latent)")
    tr.add_argument("--compand-envelope", type=float,
                    help="latent: the same scale for the codec's band-envelope channels (default 1e-4)")
    tr.add_argument("--decoder-only", dest="decoder_only", action="store_const", const=True,
                    help="codec: train the decoder alone from --init (the encoder and latent scale stay exactly as "
                         "they are, so every latent model trained on the codec keeps working unchanged)")
    tr.add_argument("--input-skip", dest="input_skip", action="store_const", const=True,
                    help="latent: give the U-Net a per-channel input skip (a new model, or added to --init's)")
    tr.add_argument("--controls", action="store_const", const=True,
                    help="latent: condition on loudness (RMS) and onset curves measured on each clip (added to "
                         "--init's model with zero weights, so it starts as it was)")
    tr.add_argument("--control-dropout", type=float, help="latent: share of clips trained without each control (0.3)")
    tr.add_argument("--control-lr-scale", type=float,
                    help="latent: the control projections learn this many times faster than the rest (10)")
    tr.add_argument("--label-dropout", type=float, help="wave/latent: share of clips trained without their label (0.1)")
    tr.add_argument("--prompts", help="latent: an embedder folder (checkpoints/clap) or laion: condition on prompt embeddings, "
                                      "each clip's audio embedding or a caption's text embedding (added to --init's "
                                      "model with zero weights)")
    tr.add_argument("--prompt-dropout", type=float, help="latent with --prompts: share of clips trained without a prompt (0.2)")
    tr.add_argument("--text-share", type=float,
                    help="latent with --prompts: share of prompts that are a caption's text embedding, the rest the "
                         "clip's audio embedding (0.5)")
    tr.add_argument("--captions", type=int, help="clap: phrasings per clip (6)")
    tr.add_argument("--caption-seed", type=int, help="clap: which phrasings (0)")
    tr.add_argument("--semitones", type=float, help="clap: pitch shift of the augmentation, +-semitones (1)")
    tr.add_argument("--timbre-augment", dest="timbre", action="store_const", const=True,
                    help="clap: also colour training clips with a random EQ and a short room, as another kit's "
                         "recording would (a tower that recognises instruments rather than kits)")
    tr.add_argument("--no-evaluate", dest="evaluate", action="store_const", const=False,
                    help="clap: skip the held-out retrieval figures at each save")
    tr.add_argument("--balance", type=float,
                    help="wave/latent: 0 draws clips uniformly (default), 1 draws every category equally often")
    tr.add_argument("--grid", type=lambda text: [float(v) for v in text.split(",")],
                    help="steps: the student's noise levels, highest first, ending at 0 (default 80,5,0.5,0: 3 steps)")
    tr.add_argument("--substeps", type=int, help="steps: teacher solver steps per student step (4)")
    tr.add_argument("--moments-from", help="steps: the teacher's run's train_state.pt, whose Adam moments start "
                                           "the student's optimizer (smaller first steps)")
    tr.add_argument("--batch", type=int)
    tr.add_argument("--lr", type=float)
    tr.add_argument("--save-every", type=int)
    tr.add_argument("--log-every", type=int)
    tr.add_argument("--render-every", type=int)
    tr.add_argument("--device")
    tr.add_argument("--seed", type=int)
    tr.add_argument("--categories", nargs="+")
    tr.add_argument("--network", type=json.loads, help='JSON of network (codec: autoencoder) arguments for a new model')
    tr.add_argument("--codec", help="latent: codec folder or 'encodec' (default: checkpoints/codec for a new model, "
                         "the --init model's codec when fine-tuning; a codec given with --init moves the model onto "
                         "it, growing its input and output for new latent channels)")
    tr.add_argument("--codec-args", type=json.loads, help="latent with --codec encodec: JSON of EncodecCodec arguments")
    tr.add_argument("--length", type=int, help="codec/latent: clip length in samples when --data is a folder of WAVs")
    tr.add_argument("--segment", type=int, help="codec: training crop length in samples")
    tr.add_argument("--ema-decay", type=float, help="EMA decay (codec: 0 turns EMA off)")

    emb = sub.add_parser("embed", help="the captions nearest to a text or a sound in the text-audio space")
    emb.add_argument("--text", default=None)
    emb.add_argument("--audio", default=None, help="a sound file")
    emb.add_argument("--embedder", default="embedded", help="embedded (checkpoints/clap), laion, or a folder")
    emb.add_argument("--data", default="data/drums2s", help="built data set whose captions are searched")
    emb.add_argument("--top", type=int, default=5)

    pub = sub.add_parser("publish", help="copy a training run into a shipped model folder with its model card")
    pub.add_argument("--run-dir", dest="run", required=True)
    pub.add_argument("--to", required=True, help="model folder to write, e.g. checkpoints/drums")
    pub.add_argument("--eval", default=None, help="a file holding the output of python -m engine eval")
    pub.add_argument("--eval-command", default=None,
                     help="the command that printed --eval, for the card (default: python -m engine eval)")
    pub.add_argument("--status", default=None, help="a file with a short statement of the model's state for the card")
    _default_arguments(pub, "the run's")
    dft = sub.add_parser("defaults", help="change the generation defaults of a shipped model in place")
    dft.add_argument("--model", required=True, help="model name or folder, e.g. latent-fast")
    _default_arguments(dft, "unchanged")

    ste = sub.add_parser("steer", help="make a label-only latent model follow drawn loudness curves and onsets "
                                       "by steering its sampler alone (no training; its weights unchanged)")
    ste.add_argument("--model", required=True, help="latent model name or folder, e.g. latent-drums")

    env = sub.add_parser("envelopes", help="store a model's kit envelopes: the curves of the data set's real "
                                           "training hits, per label (for shape kit)")
    env.add_argument("--model", required=True, help="model name or folder that follows curves, e.g. latent-fast")
    env.add_argument("--data", required=True, help="the built data set the model was trained on, e.g. data/drums2s")

    att = sub.add_parser("attacks", help="store how bright a Sound's real training hits are in their first "
                                         "frames, per band: its sounds' attacks are held to it as they form")
    att.add_argument("--model", required=True, help="latent model name or folder whose codec says its loudness, "
                                                    "e.g. latent-fast")
    att.add_argument("--data", required=True, help="the built data set the model was trained on, e.g. data/drums2s")
    att.add_argument("--label", action="append", required=True, help="a Sound to hold (repeat for more), e.g. kick")
    att.add_argument("--quantile", type=float, default=None, help="of the training hits' levels (default 0.5)")
    att.add_argument("--frames", type=int, default=None, help="latent frames from the hit (default 2: 5.8 ms)")

    low = sub.add_parser("lows", help="store how much of a Sound's real training hits' energy lies in each band "
                                      "under 690 Hz: its sounds' low bands are held at most there")
    low.add_argument("--model", required=True, help="latent model name or folder, e.g. latent-fast")
    low.add_argument("--data", required=True, help="the built data set the model was trained on, e.g. data/drums2s")
    low.add_argument("--label", action="append", required=True, help="a Sound to hold (repeat for more), e.g. snare")
    low.add_argument("--quantile", type=float, default=None, help="of the training hits' shares (default 0.5)")

    ton = sub.add_parser("tones", help="store a Sound's real training clips' long-term spectra: each of its sounds "
                                       "takes the colour of the clip its seed deals")
    ton.add_argument("--model", required=True, help="latent model name or folder, e.g. latent-fast")
    ton.add_argument("--data", required=True, help="the built data set the model was trained on, e.g. data/drums2s")
    ton.add_argument("--label", action="append", required=True, help="a Sound to colour (repeat for more), e.g. cymbal")

    ban = sub.add_parser("bands", help="store how a Sound's real training clips shared their loudness between the "
                                       "codec's bands over time: each of its sounds with a loudness curve is steered "
                                       "onto the clip its seed deals (the label's kit_bands default sets how far)")
    ban.add_argument("--model", required=True, help="latent model name or folder, e.g. latent-drums")
    ban.add_argument("--data", required=True, help="the built data set the model was trained on, e.g. data/drums2s")
    ban.add_argument("--label", action="append", required=True, help="a Sound to measure (repeat for more), e.g. hat")

    wid = sub.add_parser("widths", help="store a Sound's real training clips' stereo widths (side over mid): each of "
                                        "its sounds is narrowed to the width of the clip its seed deals")
    wid.add_argument("--model", required=True, help="latent model name or folder, e.g. latent-drums")
    wid.add_argument("--data", required=True, help="the built data set the model was trained on, e.g. data/drums2s")
    wid.add_argument("--label", action="append", required=True, help="a Sound to narrow (repeat for more), e.g. cymbal")

    tai = sub.add_parser("tails", help="store a Sound's real training clips' tail shapes: each of its sounds' tail "
                                       "is cut, after the attack, where it stands above the tail of the clip its seed deals")
    tai.add_argument("--model", required=True, help="model name or folder, e.g. drums-3step")
    tai.add_argument("--data", required=True, help="the built data set the model was trained on, e.g. data/drums")
    tai.add_argument("--label", action="append", required=True, help="a Sound to cut (repeat for more), e.g. kick")

    sub.add_parser("eval", help="evaluate a model (see python -m engine eval --help)", add_help=False)
    sub.add_parser("data", help="build the drum data set (see python -m engine data --help)", add_help=False)
    return top


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args, rest = parser().parse_known_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose or args.command == "train" else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        if args.command == "eval":
            return _eval(args, rest)
        if args.command == "data":
            return _data(args, rest[1:] if rest[:1] == ["build"] else rest)
        if rest:
            parser().error(f"unrecognised arguments: {' '.join(rest)}")
        return {"generate": _generate, "models": _models, "train": _train, "publish": _publish, "defaults": _defaults,
                "steer": _steer, "embed": _embed, "envelopes": _envelopes, "attacks": _attacks,
                "lows": _lows, "tones": _tones, "tails": _tails, "bands": _bands,
                "widths": _widths}[args.command](args)
    except StudioError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
