"""Publish a training run as a shipped model folder: weights, manifest, training log, model card.

``python -m engine publish --run-dir runs/drums --to checkpoints/drums [--eval eval.txt]`` copies
the run's model folder, its loss log (``training_log.csv``) and writes ``MODEL_CARD.md`` from
the manifest, the log and, when given, the ``name: value`` lines that ``python -m engine eval``
printed. The card is generated so that it never disagrees with the manifest it sits beside.
``--sampler``, ``--steps``, ``--guidance`` and ``--guidance-weights`` set the studio's defaults in
the published manifest: settings chosen by evaluating the trained weights (session 6: ``euler_a``
for the latent drums; session 8: no guidance on its low sub-bands) belong to the shipped model,
not to the run that made it; ``--per-label '{"kick": {...}}'`` sets them for one category
(``engine.sampling.label_defaults``). ``python -m engine defaults --model FOLDER ...`` changes the
defaults of a model already shipped, in place, with the same checks.
"""

from __future__ import annotations

import csv
import json
import math
import re
import shutil
from pathlib import Path

from .. import band_shares, envelopes, variants
from ..errors import CheckpointError, InvalidRequestError
from ..label_tables import read_row
from ..models import (MANIFEST, WEIGHTS, atomic_write, checkpoint_id, codec_steers, copy_folder, load_codec,
                      read_manifest, write_json)
from ..request import GenerationRequest
from ..steering import steerable
from ..conditions import CURVE, NETWORK_ENTRIES, STEERED_CONTROL_SPECS, STEERING, condition_specs, takes_prompts
from ..sampling import (LABEL_DEFAULT_KEYS, LAYERS, MODEL_SETTING_KEYS, channel_weights, every_guidance_weights,
                        holds_one_hit, label_defaults, prompt_shape, samplers_for)
from .variant import VARIANT_FILES


def _log_summary(log_path: Path) -> str:
    if not log_path.is_file():
        return "No loss log was found for this run."
    with open(log_path) as handle:
        rows = list(csv.DictReader(handle))
    if not rows:
        return "The loss log is empty."
    last = rows[-min(10, len(rows)):]
    mean = sum(float(r["loss"]) for r in last) / len(last)
    speed = sum(float(r["seconds_per_step"]) for r in last) / len(last)
    return (f"Training loss (mean of the last {len(last)} log rows): {mean:.4f} at step "
            f"{rows[-1]['step']}; {speed:.2f} s per step at the end of the run. Full log: `training_log.csv`.")


def conditions_line(manifest: dict) -> str:
    """What the model can be asked for, from its declared conditions (engine.conditions)."""
    entries = {"embedding": "joined to the time embedding", "frames": "per frame at every U-Net level",
               "envelope": "through its codec's loudness envelope",
               "steering": "by steering the sampler alone, never trained on"}
    specs = condition_specs(manifest)
    return "; ".join(f"`{s.name}` ({s.kind}, {entries[s.enters]}, trained with {s.dropout:.0%} dropped)"
                     if s.enters in NETWORK_ENTRIES else f"`{s.name}` ({s.kind}, {entries[s.enters]})"
                     for s in specs) or "none (unconditional)"


def _status_section(status: str | None) -> str:
    return f"\n## Status\n{status.strip()}\n" if status else ""


def model_card(manifest: dict, log_summary: str, evaluation: str | None, weights_id: str,
               status: str | None = None, augmented: bool = True) -> str:
    training = manifest.get("training", {})
    if manifest.get("kind") == "codec":
        return codec_card(manifest, log_summary, evaluation, weights_id, status)
    network = manifest["network"]["args"]
    sessions = session_lines(training)
    aliases = ", ".join(f"`{a}`" for a in manifest.get("aliases", {})) or f"`{manifest['name']}`"
    augmentation = ("with gain, pitch, time, polarity and stereo augmentation" if augmented
                    else "without augmentation (the run's config.json: augment false)")
    return f"""# {manifest['name']}

{manifest.get('description', '')}
{_status_section(status)}
- Kind: `{manifest.get('kind')}`; objective `{manifest.get('objective')}`; weights id `{weights_id}` (EMA weights).
- Audio: {manifest['sample_rate']} Hz, {manifest['channels']} channels, {manifest['length']} samples
  ({manifest['length'] / manifest['sample_rate']:.2f} s).
- Labels: {', '.join(manifest.get('labels', [])) or 'none'}; the studio names it {aliases}.
- Conditions: {conditions_line(manifest)}.
- Defaults: {manifest.get('defaults')}.
- Network: `{manifest['network']['type']}` widths {network.get('widths')}, blocks {network.get('blocks')},
  down-sampling {network.get('factors')}, attention {network.get('attention')}; codec `{manifest['codec']['type']}`.

## Training data
Debian's `hydrogen-drumkits` and `hydrogen-data` drum kits only, rebuilt by
`scripts/build_drum_dataset.py` (whole kits held out for evaluation), {augmentation}.
Data set: `{training.get('data')}`.

## Training
{training.get('steps', 0)} steps, {training.get('examples', 0)} examples seen.

{sessions}

{log_summary}

## Evaluation
{evaluation.strip() if evaluation else 'Not evaluated yet: run `python -m engine eval --model ' + manifest['name'] + '`.'}

## Limits
A small model trained on a small CPU budget and ~570 one-shots from 16 kits. It makes drum
one-shots of its five categories; {_text_limit(manifest)}, and long tails (cymbals) are cut at
{manifest['length'] / manifest['sample_rate']:.2f} s.
"""


def _text_limit(manifest: dict) -> str:
    """What the card's limits say of text: a prompted model follows it only as far as its captions go."""
    if takes_prompts(manifest):
        return ("it follows text only as far as its training captions (kit, instrument and sound "
                "descriptors) reach")
    return "it does not follow text"


def session_lines(training: dict) -> str:
    """One line per training call: its steps, machine, batch, minutes, data when it changed, and
    what it trained when not everything (a codec's decoder alone)."""
    return "\n".join(
        f"- steps {s.get('started_step')} -> {s.get('ended_step')} on {s.get('device')} x{s.get('world', 1)}, "
        f"batch {s.get('batch', '?')}" + (f", {s['minutes']} min" if "minutes" in s else "")
        + (f", on `{s['data']}`" if s.get("data") and s.get("data") != training.get("data") else "")
        + (" (the decoder alone: encoder and latent unchanged)" if s.get("decoder_only") else "")
        + (f": {s['note']}" if s.get("note") else "") for s in training.get("sessions", [])) or "- (none recorded)"


def codec_card(manifest: dict, log_summary: str, evaluation: str | None, weights_id: str,
               status: str | None = None) -> str:
    """The card of a codec folder: what latent models it serves and how well it reconstructs."""
    training = manifest.get("training", {})
    args = manifest["codec"]["args"]
    hop = args.get("bands", 1) * math.prod(args.get("factors", [1]))
    sub_bands, bypass = math.prod(args.get("factors", [1])), args.get("low_bypass", 0)
    bypass_text = (f" + {manifest['channels']} x {bypass} bypassed sub-bands "
                   f"(0-{manifest['sample_rate'] / 2 / args.get('bands', 1) / sub_bands * bypass:.0f} Hz, exact)"
                   if bypass else "")
    if args.get("band_envelope"):
        bypass_text += f" + {args.get('bands', 1) - 1} band-envelope channels (RMS of PQMF bands 1-{args.get('bands', 1) - 1} per frame)"
    if args.get("band0_ceiling_db") is not None:
        bypass_text += (f"; band 0 above the bypass held on decoding to at most {args['band0_ceiling_db']:g} dB "
                        "over its neighbours")
    return f"""# {manifest['name']}

{manifest.get('description', '')}
{_status_section(status)}
- Kind: `codec` (not generated from: latent models reference it by name); weights id `{weights_id}`.
- Audio: {manifest['sample_rate']} Hz, {manifest['channels']} channels; trained on clips of {manifest.get('length')} samples.
- Codec `{manifest['codec']['type']}`: {args.get('bands')} PQMF bands, strides {args.get('factors')}
  (hop {hop}: {manifest['sample_rate'] / hop:.1f} latent frames per second), {args.get('latent_channels')} latent
  channels{bypass_text}, widths {args.get('widths')}; latent scale {args.get('latent_scale', 1.0):.4g} (divides the raw latent to unit variance).

## Training data
Debian's `hydrogen-drumkits` and `hydrogen-data` drum kits only, rebuilt by
`scripts/build_drum_dataset.py` (whole kits held out for evaluation). Data set: `{training.get('data')}`.

## Training
Multi-resolution STFT loss; {training.get('steps', 0)} steps, {training.get('examples', 0)} examples seen.

{session_lines(training)}

{log_summary}

## Evaluation
{evaluation.strip() if evaluation else 'Not evaluated yet: run `python -m engine.eval.codec --codec ' + manifest['name'] + '`.'}
"""


PUBLISHED_DEFAULTS = ("sampler", "steps", "guidance", "guidance_weights", "control_guidance", "variety", "shape",
                      "hit_prompt", "kit_spread", "one_hit_db", "redraw_under_db", "width", "kit_bands",
                      "per_label", "with_curves", "with_prompt")
PROMPT_DEFAULTS = ("sampler", "steps", "guidance", "variety", "control_guidance", "shape")
"""What a sound asked for with a prompt may default to otherwise (``with_prompt``): the sampling
settings, and its shape ("kit": a real hit among those whose description matches the prompt,
:func:`engine.sampling.prompt_shape`). Not the kit hit's description (the prompt is the sound's
description), nor the guidance weights (the pipeline cannot tell a user's prompt from a kit hit's
description)."""
NOT_WITH_CURVES = {
    "one_hit_db": "one_hit_db is a Sound's own limit, with a curve or without; it belongs in its defaults "
                  "(--one-hit-db, or per label), not in --with-curves",
    "redraw_under_db": "redraw_under_db is for a sound the network gives its level; with a curve the curve says it, "
                       "so it belongs in the Sound's defaults (--redraw-under-db, or per label), not in --with-curves",
    **{key: f"{key} belongs with a Sound's shape, in its defaults without curves (e.g. --per-label "
            f"'{{\"{label}\": {{\"shape\": \"kit\", \"{key}\": {value}}}}}'), not in --with-curves"
       for key, label, value in (("hit_prompt", "perc", 0.5), ("kit_spread", "hat", 1.3))},
    "kit_bands": "kit_bands is a Sound's own, on a kit hit's curve or a drawn one; it belongs in its defaults "
                 "(--per-label '{\"hat\": {\"kit_bands\": 1}}'), not in --with-curves",
    "variant": "a variant is dealt to a Sound asked alone on a kit hit; it belongs in the Sound's defaults "
               "(--per-label '{\"hat\": {\"shape\": \"kit\", \"variant\": {\"model\": \"latent-thin-hats\", "
               "\"every\": 5}}}'), not in --with-curves",
}
"""The model settings a sound with a drawn curve never reads, each with why: the one-hit limit is read
from the Sound's own defaults, curve or not; a curve says the level, so nothing is drawn again; a kit
hit's description and spread are read where the Sound's shape is drawn, without curves."""


def with_defaults(manifest: dict, defaults: dict | None) -> dict:
    """``manifest`` with some of its generation defaults (sampler, steps, guidance, guidance weights, variety,
    and any of those per label, ``with_curves``: the same again for a sound with a
    loudness curve, and ``with_prompt``: the sampling settings for a sound asked for with a prompt,
    ``engine.sampling.label_defaults``) replaced, checked as the studio checks a request, so a
    shipped model never defaults to settings it refuses (the guidance weights' group names are checked
    against the codec by :func:`publish`)."""
    if not defaults:
        return manifest
    _check_defaults(manifest, defaults, PUBLISHED_DEFAULTS)
    curves = defaults.get("with_curves")
    if curves is not None:
        if not isinstance(curves, dict):
            raise InvalidRequestError('the defaults with curves are a JSON object of settings, e.g. '
                                      '{"per_label": {"kick": {"variety": 0}}}')
        _check_defaults(manifest, curves, tuple(k for k in PUBLISHED_DEFAULTS if k not in ("with_curves", "with_prompt")))
        layers = [curves, *(v for v in (curves.get("per_label") or {}).values() if isinstance(v, dict))]
        for key, why in NOT_WITH_CURVES.items():
            if any(key in layer for layer in layers):
                raise InvalidRequestError(why)
    _check_prompt_defaults(manifest, defaults.get("with_prompt"))
    return dict(manifest, defaults=dict(manifest.get("defaults", {}), **defaults))


def _check_prompt_defaults(manifest: dict, prompt) -> None:
    """The defaults with a prompt: a model that takes prompts, only :data:`PROMPT_DEFAULTS`, model-wide
    or per label, each checked as a request's."""
    if prompt is None:
        return
    if not isinstance(prompt, dict):
        raise InvalidRequestError('the defaults with a prompt are a JSON object of settings, e.g. '
                                  '{"per_label": {"cymbal": {"guidance": 3.0}}}')
    if not takes_prompts(manifest):
        raise InvalidRequestError("defaults with a prompt (--with-prompt) are for a model that takes prompts; "
                                  f"{manifest.get('name', 'this model')!r} takes none")
    _check_defaults(manifest, prompt, (*PROMPT_DEFAULTS, "per_label"), PROMPT_DEFAULTS,
                    "a label's defaults with a prompt (the prompt is its description)")


def _check_defaults(manifest: dict, defaults: dict, allowed: tuple[str, ...],
                    label_keys: tuple[str, ...] = LABEL_DEFAULT_KEYS, what: str = "a label's defaults") -> None:
    """One layer of defaults (the model's, or its defaults with curves or with a prompt): only
    ``allowed`` keys, each setting as a request would be checked, per-label settings (only
    ``label_keys``, named ``what`` in the error) for labels the model has."""
    unknown = set(defaults) - set(allowed)
    if unknown:
        raise InvalidRequestError(f"publish sets only these defaults: {', '.join(allowed)}; not {sorted(unknown)}")
    _check_weights(manifest, defaults.get("guidance_weights"))
    _check_hit_prompt(defaults.get("hit_prompt"))
    _check_kit_spread(defaults.get("kit_spread"))
    _check_one_hit(manifest, defaults.get("one_hit_db"))
    _check_redraw(manifest, defaults.get("redraw_under_db"))
    labels = set(manifest.get("labels", []))
    variety = defaults.get("variety")
    if isinstance(variety, dict):  # per label: each a variety, each a label of the model
        _check_labels(variety, labels, "variety")
        for value in variety.values():
            _check_settings(manifest, {"variety": value})
    flat = {k: v for k, v in defaults.items() if k not in (*MODEL_SETTING_KEYS, *LAYERS)
            and not (k == "variety" and isinstance(v, dict))}
    _check_settings(manifest, flat)
    per_label = defaults.get("per_label")
    if per_label is not None:
        if not isinstance(per_label, dict) or not all(isinstance(v, dict) for v in per_label.values()):
            raise InvalidRequestError('per-label defaults are a JSON object of labels, each an object of settings, '
                                      'e.g. {"kick": {"sampler": "dpmpp_2m", "steps": 12, "guidance": 6.5}}')
        _check_labels(per_label, labels, "defaults")
        for label, settings in per_label.items():
            unknown = set(settings) - set(label_keys)
            if unknown:
                raise InvalidRequestError(f"{what} are {list(label_keys)}, not {sorted(unknown)} ({label})")
            _check_weights(manifest, settings.get("guidance_weights"))
            _check_hit_prompt(settings.get("hit_prompt"))
            _check_kit_spread(settings.get("kit_spread"))
            _check_one_hit(manifest, settings.get("one_hit_db"))
            _check_redraw(manifest, settings.get("redraw_under_db"))
            if "variant" in settings:
                variants.label_variant({"defaults": {"per_label": {label: settings}}}, label)  # its form
            _check_settings(manifest, {k: v for k, v in settings.items() if k not in MODEL_SETTING_KEYS})


def _check_weights(manifest: dict, weights) -> None:
    """Guidance weights' form (their group names are checked against the codec by :func:`_check_codec_weights`)."""
    if weights is not None and (manifest.get("kind") != "latent" or not isinstance(weights, dict)):
        raise InvalidRequestError("guidance weights are a JSON object of codec channel groups, for latent models only")


def _check_hit_prompt(weight) -> None:
    """A kit hit's description weight is a number in [0, 1] (0: the label alone, 1: the caption alone)."""
    if weight is not None and (isinstance(weight, bool) or not isinstance(weight, (int, float))
                               or not 0.0 <= float(weight) <= 1.0):
        raise InvalidRequestError(f"hit_prompt is how far a kit hit's description moves a sound from its label, "
                                  f"a number from 0 to 1; got {weight!r}")


KIT_SPREAD_RANGE = (0.0, 3.0)


def _check_kit_spread(spread) -> None:
    """A kit spread is a number from 0 (every hit on the label's median shape) to 3 (three times as far
    from it as the hit; past that a curve is mostly its floor or its peak). Why up to 3, not 2: a model
    that follows curves by steering alone (``latent-drums``) regresses further towards its typical
    sound in the unsteered last steps; its percussion, sampled at guidance 8 to read as percussion,
    spread .85 of the kits' only at 3 (.82 at 2.5; ``docs/design-notes.md``, "Kit hits steered into a
    label-only model")."""
    low, high = KIT_SPREAD_RANGE
    if spread is not None and (isinstance(spread, bool) or not isinstance(spread, (int, float))
                               or not low <= float(spread) <= high):
        raise InvalidRequestError(f"kit_spread is how far a Sound's kit hit is drawn from its label's typical "
                                  f"loudness curve, a number from {low:g} (the typical curve) to {high:g}, "
                                  f"1 the hit as it was; got {spread!r}")


ONE_HIT_RANGE = (0.0, 60.0)


def _check_one_hit(manifest: dict, limit) -> None:
    """A one-hit limit is a number of dB in (0, 60], for a latent model (whether its codec can be
    steered is checked against the codec by :func:`_check_codec_weights`)."""
    if limit is None:
        return
    low, high = ONE_HIT_RANGE
    if isinstance(limit, bool) or not isinstance(limit, (int, float)) or not low < float(limit) <= high:
        raise InvalidRequestError(f"one_hit_db is how far (dB) a sound asked as one hit may rise again after its "
                                  f"peak, a number over {low:g} and at most {high:g}; got {limit!r}")
    if manifest.get("kind") != "latent":
        raise InvalidRequestError("one_hit_db holds a latent model's sound as it forms; this model is not latent")


REDRAW_RANGE = (-80.0, 0.0)


def _check_redraw(manifest: dict, floor) -> None:
    """A redraw floor is a level in dBFS in [-80, 0), for a latent model (whether its codec says its
    loudness is checked against the codec by :func:`_check_codec_weights`)."""
    if floor is None:
        return
    low, high = REDRAW_RANGE
    if isinstance(floor, bool) or not isinstance(floor, (int, float)) or not low <= float(floor) < high:
        raise InvalidRequestError(f"redraw_under_db is the loudest-frame level (dBFS) under which a sound is drawn "
                                  f"again, a number from {low:g} up to (not) {high:g}; got {floor!r}")
    if manifest.get("kind") != "latent":
        raise InvalidRequestError("redraw_under_db reads a latent model's level from its latent; this model is not "
                                  "latent")


def _check_codec_weights(manifest: dict, folder: Path) -> None:
    """Every guidance-weights setting of ``manifest`` (its own, per label, with curves) names its
    codec's channel groups with weights in [0, 1] (a CheckpointError otherwise), and a one-hit
    limit is set only on a model whose codec can be steered (an InvalidRequestError otherwise)."""
    defaults = manifest.get("defaults", {})
    specs, held = every_guidance_weights(defaults), holds_one_hit(defaults)
    codec = load_codec(manifest, folder) if specs or held else None  # read once, only when something needs it
    for spec in specs:
        channel_weights(spec, codec)
    if held and not steerable(codec):
        raise InvalidRequestError("one_hit_db and redraw_under_db read a sound's loudness from its codec's latent, "
                                  "and this model's codec does not say its loudness (band envelopes and low "
                                  "sub-bands)")


def _check_labels(per_label: dict, labels: set, what: str) -> None:
    unknown_labels = set(per_label) - labels
    if unknown_labels:
        raise InvalidRequestError(f"{what} for labels the model does not have: {sorted(unknown_labels)}")


def _check_settings(manifest: dict, settings: dict) -> None:
    """Sampler, steps, guidance, control guidance, variety: each as a request would be checked."""
    GenerationRequest(model=manifest.get("name", "model"), **settings).validated()
    if "sampler" in settings and settings["sampler"] not in samplers_for(manifest):
        raise InvalidRequestError(f"sampler {settings['sampler']!r} does not fit this model; "
                                  f"choose one of {list(samplers_for(manifest))}")


def set_defaults(folder: str | Path, defaults: dict) -> Path:
    """A shipped model's generation defaults changed in place (its weights untouched, so recipes
    made with it still name the same weights): the manifest checked and rewritten as
    :func:`publish` would, and the model card's "Defaults" line with it."""
    folder = Path(folder)
    manifest = with_defaults(read_manifest(folder), defaults)
    _check_kit_shapes(folder, manifest)
    _check_band_shares(folder, manifest)
    _check_variants(folder, manifest)
    _check_codec_weights(manifest, folder)
    write_json(folder / MANIFEST, manifest)
    _set_card_line(folder, "Defaults", str(manifest.get("defaults")))
    return folder


def _set_card_line(folder: Path, name: str, value: str, after: str | None = None) -> None:
    """The model card's ``- name: value.`` line rewritten in place (the card beside a manifest changed
    in place must not disagree with it); a card without one gets it after its ``- after:`` line, when
    ``after`` is given. No card, nothing to do."""
    card = folder / "MODEL_CARD.md"
    if not card.is_file():
        return
    line, text = f"- {name}: {value}.", card.read_text(encoding="utf-8")
    if re.search(rf"^- {name}: ", text, flags=re.M) or after is None:
        text = re.sub(rf"^- {name}: .*$", lambda _: line, text, count=1, flags=re.M)
    else:
        text = re.sub(rf"^(- {after}: .*)$", lambda found: f"{found.group(1)}\n{line}", text, count=1, flags=re.M)
    atomic_write(card, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def steer_curves(folder: str | Path) -> Path:
    """A shipped label-only latent model made to follow drawn loudness curves and onsets by steering
    alone (:data:`engine.conditions.STEERED_CONTROL_SPECS`), in place: its manifest's conditions and
    its card's "Conditions" line; weights untouched, so its recipes still name the same weights. A
    clear error for a model whose codec's latent does not say its loudness (nothing to steer by) or
    that already follows curves another way; a model already steered is left as it is."""
    folder = Path(folder)
    manifest = read_manifest(folder)
    name = manifest.get("name") or folder.name
    specs = condition_specs(manifest)
    curves = [spec for spec in specs if spec.kind == CURVE]
    if curves and all(spec.enters == STEERING for spec in curves):
        return folder
    if curves:
        raise InvalidRequestError(f"model {name!r} already follows curves through its "
                                  f"{'network' if curves[0].enters in NETWORK_ENTRIES else 'codec'}")
    if not codec_steers(manifest, folder):
        raise InvalidRequestError(f"model {name!r} cannot be steered: only a latent model whose codec's latent says "
                                  "its loudness (the band-envelope autoencoder) can follow curves without training")
    manifest["conditions"] = [spec.to_dict() for spec in (*specs, *STEERED_CONTROL_SPECS)]
    write_json(folder / MANIFEST, manifest)
    _set_card_line(folder, "Conditions", conditions_line(manifest), after="Kind")
    return folder


def _check_kit_shapes(folder: Path, manifest: dict) -> None:
    """A default shape "kit" needs kit envelopes in the model's folder, for every label that takes it
    (``publish`` first, then ``envelopes``, then ``defaults``: the envelopes come from the data set);
    a ``hit_prompt`` needs a model that takes prompts and envelopes with captions for its labels."""
    defaults = manifest.get("defaults", {})
    labels = [label for label, settings in defaults.get("per_label", {}).items() if settings.get("shape") == "kit"]
    if defaults.get("shape") == "kit":
        labels = list(manifest.get("labels", []))
    bank = envelopes.read_bank(folder) or {}
    missing = [label for label in labels if not bank.get(label)]
    if missing:
        raise InvalidRequestError(f"shape kit needs kit envelopes for {missing} in {folder}; build them first with "
                                  f"python -m engine envelopes --model {folder} --data DATA")
    described = [label for label in manifest.get("labels", [])
                 if label_defaults(defaults, label).get("hit_prompt")]
    if described and not takes_prompts(manifest):
        raise InvalidRequestError(f"hit_prompt gives a sound its kit hit's description as a prompt; "
                                  f"{folder} does not take prompts")
    uncaptioned = [label for label in described if not envelopes.has_captions(bank, label)]
    if uncaptioned:
        raise InvalidRequestError(f"hit_prompt needs kit envelopes with captions for {uncaptioned} in {folder}; "
                                  f"rebuild them with python -m engine envelopes --model {folder} --data DATA")
    matched = [label for label in manifest.get("labels", []) if prompt_shape(defaults, label) == "kit"]
    unmatched = [label for label in matched if not envelopes.has_captions(bank, label)]
    if unmatched:
        raise InvalidRequestError(f"shape kit with a prompt draws the kit hit whose description matches the prompt, "
                                  f"so it needs kit envelopes with captions for {unmatched} in {folder}; rebuild "
                                  f"them with python -m engine envelopes --model {folder} --data DATA")


def _check_band_shares(folder: Path, manifest: dict) -> None:
    """A ``kit_bands`` default needs band shares for its label in the model's folder (``publish``
    first, then ``bands``, then ``defaults``: the shares come from the data set)."""
    defaults = manifest.get("defaults", {})
    labels = [label for label in manifest.get("labels", []) if label_defaults(defaults, label).get("kit_bands")]
    if not labels:
        return
    missing = [label for label in labels  # the rows as stored: their shape is read against the codec when used
               if not read_row(folder, band_shares.SHARES_FILE, band_shares.SHARES_FORMAT, label, "bands", list)]
    if missing:
        raise InvalidRequestError(f"kit_bands steers a Sound onto its dealt clip's band shares; {folder} has none for "
                                  f"{missing}: build them first with python -m engine bands --model {folder} "
                                  f"--data DATA " + " ".join(f"--label {label}" for label in missing))


def _check_variants(folder: Path, manifest: dict) -> None:
    """A Sound's variant (:mod:`engine.variants`) is dealt on kit hits, so its Sound's shape is "kit";
    its folder sits beside the model and holds a latent model of the same labels, rate and length
    that deals no variant itself."""
    for label in manifest.get("labels", []):
        variant = variants.label_variant(manifest, label)
        if variant is None:
            continue
        if label_defaults(manifest.get("defaults", {}), label).get("shape") != "kit":
            raise InvalidRequestError(f"a variant is dealt to a Sound asked alone on a kit hit; give {label} "
                                      f"the shape kit as well")
        other = read_manifest(variants.variant_folder(folder, variant.model))
        same = ("kind", "labels", "sample_rate", "length", "channels")
        differ = [key for key in same if other.get(key) != manifest.get(key)]
        if differ:
            raise InvalidRequestError(f"the variant {variant.model!r} differs from the model in {differ}; "
                                      f"train it from this model with python -m engine train variant --init {folder}")
        if variants.label_variant(other, label) is not None:
            raise InvalidRequestError(f"the variant {variant.model!r} deals a variant of its own")


def publish_beside(source: Path, target: Path, what: str) -> None:
    """Put the codec or embedder a latent model was trained with beside it (the studio looks there
    first): copied when missing; refused when a different one already sits there under that name,
    since the model's latents or prompt embeddings mean nothing in another one's space."""
    if (target / MANIFEST).is_file():
        if checkpoint_id(target) != checkpoint_id(source):
            raise CheckpointError(f"{target} holds another {what} than the one this model was trained with "
                                  f"({source}); publish beside it elsewhere or retrain on {target}")
        return
    copy_folder(source, target)


def publish_embedder_run(run_dir: Path, destination: Path) -> Path:
    """An embedder run (``train clap``) as a shipped folder: its weights, manifest and card as the
    trainer wrote them (the card holds the held-out retrieval figures of its last save) and its
    training log. Refused over an embedder with other weights that a prompted model beside it was
    trained with: that model's prompts would mean something else."""
    source = run_dir / "model"
    users = [folder.name for folder in destination.parent.glob("*/") if (folder / MANIFEST).is_file()
             and (read_manifest(folder).get("embedder") or {}).get("model") == destination.name]
    if users and (destination / WEIGHTS).is_file() and checkpoint_id(destination) != checkpoint_id(source):
        raise CheckpointError(f"{', '.join(sorted(users))} beside {destination} was trained with the embedder there; "
                              "publish the new one under another name (and train a model on it)")
    destination.mkdir(parents=True, exist_ok=True)
    for name in (WEIGHTS, MANIFEST, "MODEL_CARD.md"):
        atomic_write(destination / name, lambda tmp, name=name: shutil.copyfile(source / name, tmp))
    if (run_dir / "log.csv").is_file():
        atomic_write(destination / "training_log.csv", lambda tmp: shutil.copyfile(run_dir / "log.csv", tmp))
    return destination


def publish(run_dir: str | Path, destination: str | Path, evaluation_file: str | Path | None = None,
            status_file: str | Path | None = None, defaults: dict | None = None,
            eval_command: str | None = None) -> Path:
    run_dir, destination = Path(run_dir), Path(destination)
    source = run_dir / "model"
    if read_manifest(source).get("kind") == "embedder":
        if defaults:
            raise InvalidRequestError("a text–audio embedder has no generation defaults to set")
        return publish_embedder_run(run_dir, destination)
    manifest = with_defaults(read_manifest(source), defaults)
    if manifest.get("kind") in ("latent", "wave", None):  # a generator is called by its folder's name
        manifest["name"] = destination.name
    if not (source / WEIGHTS).is_file():
        raise CheckpointError(f"{source} has no {WEIGHTS}")
    _check_codec_weights(manifest, source)  # names the codec's channel groups, in [0, 1]
    # a variant's run holds its model's kit hits and holds (VARIANT_FILES): they ship with it
    _check_kit_shapes(source if (source / envelopes.BANK_FILE).is_file() else destination, manifest)
    destination.mkdir(parents=True, exist_ok=True)
    for name in VARIANT_FILES:
        if (source / name).is_file():
            atomic_write(destination / name, lambda tmp: shutil.copyfile(source / name, tmp))
    _check_variants(destination, manifest)
    for what, spec in (("codec", manifest.get("codec") or {}), ("embedder", manifest.get("embedder") or {})):
        if "model" in spec and (run_dir / spec["model"] / MANIFEST).is_file():
            publish_beside(run_dir / spec["model"], destination.parent / spec["model"], what)
    atomic_write(destination / WEIGHTS, lambda tmp: shutil.copyfile(source / WEIGHTS, tmp))
    write_json(destination / MANIFEST, manifest)
    if (run_dir / "log.csv").is_file():
        atomic_write(destination / "training_log.csv", lambda tmp: shutil.copyfile(run_dir / "log.csv", tmp))
    evaluation = Path(evaluation_file).read_text() if evaluation_file else None
    if evaluation:
        command = eval_command or ("python -m engine.eval.codec" if manifest.get("kind") == "codec"
                                   else "python -m engine eval")
        evaluation = f"Measured with `{command}`:\n\n```\n" + evaluation.strip() + "\n```"
    status = Path(status_file).read_text() if status_file else None
    config = run_dir / "config.json"  # the run's last settings: was it trained with augmentation?
    augmented = bool(json.loads(config.read_text()).get("augment", True)) if config.is_file() else True
    card = model_card(manifest, _log_summary(run_dir / "log.csv"), evaluation, checkpoint_id(destination), status,
                      augmented)
    atomic_write(destination / "MODEL_CARD.md", lambda tmp: tmp.write_text(card, encoding="utf-8"))
    return destination
