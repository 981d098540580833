"""Conditions: what a generation asks of a model, declared once and carried as one dataclass.

A model's manifest declares the conditions it takes as :class:`ConditionSpec` entries (name;
kind: ``class``, ``curve`` or ``embedding``; how it enters: joined to the network's time
embedding, added per frame at every U-Net level, or not the network's at all: the waveform codec's
envelope follows it, or the sampler's steering alone does; its guidance group; its training dropout).
A request's conditions travel as one :class:`Conditions` in the user's own units (a label index,
RMS points in (ms, dB), onset times in ms), and :func:`network_inputs` turns them into the one
mapping the network's ``forward(x, t, cond)`` reads. Training builds the same mapping from a
clip (:func:`controls_from_audio`, through :mod:`engine.dsp`) and drops conditions with
:func:`drop_conditions`, so a curve drawn in the studio and one measured on a training clip
reach the network the same way (audiocraft's conditioners and attribute dropout, in small).

Curves enter as two channels per frame: the value and a mask (1 where the user asked for
something). A dropped or absent curve is all zeros, so "no curve" is never confused with
"silence" (a curve at -80 dB with mask 1).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from . import dsp
from .errors import CheckpointError

CLASS, CURVE, EMBEDDING = "class", "curve", "embedding"
JOINS_EMBEDDING, PER_FRAME, ENVELOPE = "embedding", "frames", "envelope"  # envelope: the waveform codec's
                                                                          # loudness envelope follows it
STEERING = "steering"  # not the network's: the sampler's steps are moved onto it (engine.steering)
NETWORK_ENTRIES = (JOINS_EMBEDDING, PER_FRAME)
LABEL_GROUP, CONTROL_GROUP = "label", "controls"
CURVE_CHANNELS = 2                  # value, mask
RMS_CENTRE_DB, RMS_SPAN_DB = -40.0, 40.0   # -80 dB -> -1, 0 dB -> +1
CONTROL_NAMES = ("rms", "onsets")


@dataclass(frozen=True)
class ConditionSpec:
    name: str            # "label", "rms", "onsets" (and "prompt" next)
    kind: str            # class | curve | embedding
    enters: str          # embedding: joined to the time embedding (AdaGN); frames: added per frame at each
                         # level; envelope: not the network's, the waveform codec's envelope follows it;
                         # steering: not the network's, the sampler steers each step's estimate onto it
    group: str           # guidance group: "label" (label, prompt) or "controls"
    dropout: float       # share of training examples that see it as absent
    level_floor_db: dict | None = None  # rms only: per label ("" for none) the loudest-frame level under which a
                                        # drawn curve is lifted for the network (:func:`lift_quiet_curve`)

    def __post_init__(self) -> None:
        if self.kind not in (CLASS, CURVE, EMBEDDING) or self.enters not in (*NETWORK_ENTRIES, ENVELOPE, STEERING):
            raise CheckpointError(f"condition {self.name!r}: unknown kind {self.kind!r} or entry {self.enters!r}")
        if not 0.0 <= float(self.dropout) <= 1.0:
            raise CheckpointError(f"condition {self.name!r}: dropout must be in [0, 1], got {self.dropout!r}")

    def to_dict(self) -> dict:
        out = asdict(self)
        if out["level_floor_db"] is None:  # only the rms condition of a model that measured its clips has one
            del out["level_floor_db"]
        return out


LABEL_SPEC = ConditionSpec("label", CLASS, JOINS_EMBEDDING, LABEL_GROUP, 0.1)
CONTROL_SPECS = (ConditionSpec("rms", CURVE, PER_FRAME, CONTROL_GROUP, 0.3),
                 ConditionSpec("onsets", CURVE, PER_FRAME, CONTROL_GROUP, 0.3))
ENVELOPE_RMS_SPEC = ConditionSpec("rms", CURVE, ENVELOPE, CONTROL_GROUP, 0.0)
STEERED_CONTROL_SPECS = tuple(ConditionSpec(name, CURVE, STEERING, CONTROL_GROUP, 0.0) for name in CONTROL_NAMES)
"""A label-only latent model's curves: never trained on, followed by steering alone (``python -m engine
steer``). Why: `latent-drums` learned no curves, yet its codec's latent says its loudness exactly, so
the sampler can hold each step on a drawn (or a kit hit's) loudness curve and make its later hits
(:mod:`engine.steering`) without training. Dealt real kits' curves, its Sounds spread like the kits'
(``docs/design-notes.md``, "Kit hits steered into a label-only model")."""
PROMPT_SPEC = ConditionSpec("prompt", EMBEDDING, JOINS_EMBEDDING, LABEL_GROUP, 0.2)


def condition_specs(manifest: Mapping) -> tuple[ConditionSpec, ...]:
    """The conditions a model takes: its manifest's ``conditions``, or for a manifest from before
    they were declared, a class label when ``conditioners`` names one (dropout 0.1, as trained),
    and a loudness curve when its codec divides by a loudness envelope (the waveform models: a
    drawn curve takes the drawn envelope's place, no training needed)."""
    if "conditions" in manifest:
        try:
            return tuple(ConditionSpec(**spec) for spec in manifest["conditions"])
        except TypeError as error:
            raise CheckpointError(f"the manifest's conditions are damaged: {error}") from error
    specs = (LABEL_SPEC,) if "label" in manifest.get("conditioners", []) else ()
    if (manifest.get("codec") or {}).get("args", {}).get("envelope_prior"):
        specs += (ENVELOPE_RMS_SPEC,)
    return specs


def spec_names(specs: Sequence[ConditionSpec], kind: str | None = None) -> list[str]:
    return [s.name for s in specs if kind is None or s.kind == kind]


def steered_only(specs: Sequence[ConditionSpec]) -> bool:
    """Whether a model follows curves, all of them by steering alone (its network takes none): then
    there is no curve guidance to set and no following without the steering."""
    curves = [spec for spec in specs if spec.kind == CURVE]
    return bool(curves) and all(spec.enters == STEERING for spec in curves)


def takes_prompts(manifest: Mapping) -> bool:
    """Whether a model is conditioned on prompt embeddings (text, a morph of two, a sound's)."""
    return "prompt" in spec_names(condition_specs(manifest)) and bool(manifest.get("embedder"))


@dataclass(frozen=True)
class Conditions:
    """What one generation asks for, in the user's units; ``None`` = not asked (the model's null)."""

    label: int | None = None                                # index into the model's labels
    label_b: int | None = None                              # a second label blended in by ``label_mix``
    label_mix: float = 0.0                                  # 0 = label, 1 = label_b (a hybrid between)
    rms: tuple[tuple[float, float], ...] | None = None      # (ms, dBFS) points, joined by lines in dB
    onsets: tuple[float, ...] | None = None                 # onset times in ms
    prompt: torch.Tensor | None = None                      # a prompt's unit embedding (D,) or one per sound
                                                            # (B, D): text, a morph of two, or a sound's

    def controls(self) -> dict:
        return {name: getattr(self, name) for name in CONTROL_NAMES if getattr(self, name) is not None}


# --------------------------------------------------------------------------- quiet curves


LEVEL_FLOOR_SHARE = 0.25
"""A label's level floor is this quantile of its training clips' loudest-frame RMS (a quarter of the
clips the network learned from peak quieter than it)."""


def level_floors(peaks_db: torch.Tensor, categories: Sequence[str], share: float = LEVEL_FLOOR_SHARE) -> dict:
    """Per category (and ``""`` for all clips) the ``share`` quantile of the clips' loudest-frame
    RMS in dBFS (:func:`engine.dsp.rms_db`), rounded to 0.1 dB: what a model trained on them
    records as its rms condition's ``level_floor_db``."""
    peaks = peaks_db.double()
    out = {"": round(float(peaks.quantile(share)), 1)}
    for name in sorted(set(categories)):
        rows = [i for i, c in enumerate(categories) if c == name]
        out[name] = round(float(peaks[rows].quantile(share)), 1)
    return out


def lift_quiet_curve(rms: Sequence[tuple[float, float]] | None, floor_db: float | None
                     ) -> tuple[tuple[tuple[float, float], ...] | None, float]:
    """(the curve raised so its loudest point reaches ``floor_db``, the dB it was raised by; 0 when
    it is as loud already, or there is no curve or floor).

    Why: the network learned loudness and timbre together: in the training kits a quiet hit is a
    soft velocity layer, darker and duller, and a hat drawn at -40 dB came out as a soft hat that
    the classifier reads as a cymbal (21 of 64 sounds from held-out hat curves; 5 with the lift). Lifted, the
    network makes a full hit of the drawn shape, and the pipeline turns the decoded sound down by
    the same dB (:func:`engine.pipeline.decode`), so the sound still sits on the drawn curve. The
    request's ``soft_hits`` keeps the old way: a quiet curve makes a soft hit."""
    if not rms or floor_db is None:
        return (tuple(rms) if rms else None), 0.0
    lift = max(0.0, float(floor_db) - max(db for _, db in rms))
    if lift <= 0.0:
        return tuple(rms), 0.0
    return tuple((ms, min(0.0, db + lift)) for ms, db in rms), lift


def recorded_level_floors(specs: Sequence[ConditionSpec]) -> dict | None:
    """The level floors a model's rms condition records (None: it records none, so quiet curves
    reach its network as drawn)."""
    return next((spec.level_floor_db for spec in specs if spec.name == "rms" and spec.level_floor_db), None)


def level_floor(specs: Sequence[ConditionSpec], conditions: Conditions, labels: Sequence[str]) -> float | None:
    """The level floor for these conditions: their label's (a hybrid's two mixed by weight), else
    the model's over all labels; None when the model's rms condition records none."""
    floors = recorded_level_floors(specs)
    if not floors:
        return None

    def of(index: int | None) -> float | None:
        name = labels[index] if index is not None and 0 <= index < len(labels) else ""
        return floors.get(name, floors.get(""))

    floor = of(conditions.label)
    if conditions.label_b is not None and floor is not None and of(conditions.label_b) is not None:
        floor = (1.0 - conditions.label_mix) * floor + conditions.label_mix * of(conditions.label_b)
    return floor


# --------------------------------------------------------------------------- curves as network input


def rms_channels(db: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``(..., 2, F)`` from RMS ``db`` and ``mask`` ``(..., F)``: value scaled to [-1, 1] where asked, 0 elsewhere."""
    value = ((db.clamp(dsp.FLOOR_DB, 0.0) - RMS_CENTRE_DB) / RMS_SPAN_DB) * mask
    return torch.stack([value, mask], dim=-2)


def onset_channels(curve: torch.Tensor, given: torch.Tensor | float = 1.0) -> torch.Tensor:
    """``(..., 2, F)``: the onset bumps and a mask that is 1 everywhere when onsets were given."""
    mask = torch.ones_like(curve) * (given if not torch.is_tensor(given) else given[..., None])
    return torch.stack([curve * mask, mask], dim=-2)


def network_inputs(conditions: Conditions, specs: Sequence[ConditionSpec], batch: int, frames: int, hop: int,
                   sample_rate: int, device: torch.device | str = "cpu", num_labels: int = 0,
                   embedding_dims: Mapping[str, int] | None = None) -> dict:
    """The mapping ``forward(x, t, cond)`` reads, for ``batch`` sounds of ``frames`` latent frames
    (conditions that the codec's envelope or the steering takes are not the network's);
    ``embedding_dims``: the width of each embedding condition (the network's ``embeddings``)."""
    names = [spec.name for spec in specs if spec.enters in NETWORK_ENTRIES]
    inputs: dict[str, torch.Tensor] = {}
    if "label" in names:
        index = num_labels if conditions.label is None else int(conditions.label)
        if conditions.label_b is not None and conditions.label is not None:
            inputs["label"] = label_weights(index, int(conditions.label_b), conditions.label_mix, num_labels) \
                .expand(batch, -1).to(device)
        else:
            inputs["label"] = torch.full((batch,), index, dtype=torch.long, device=device)
    if "rms" in names:
        if conditions.rms:
            db, mask = dsp.rms_from_points(conditions.rms, frames, hop, sample_rate)
            inputs["rms"] = rms_channels(db, mask).expand(batch, -1, -1).to(device)
        else:
            inputs["rms"] = torch.zeros(batch, CURVE_CHANNELS, frames, device=device)
    if "onsets" in names:
        if conditions.onsets:
            curve = dsp.onset_curve(conditions.onsets, frames, hop, sample_rate)
            inputs["onsets"] = onset_channels(curve).expand(batch, -1, -1).to(device)
        else:
            inputs["onsets"] = torch.zeros(batch, CURVE_CHANNELS, frames, device=device)
    if "prompt" in names:
        dim = (embedding_dims or {}).get("prompt")
        if dim is None:
            raise CheckpointError("the model declares a prompt condition but its network reads no prompt embedding")
        if conditions.prompt is None:
            inputs["prompt"] = torch.zeros(batch, dim, device=device)
        else:
            vector = conditions.prompt.float().reshape(-1, conditions.prompt.shape[-1])
            if vector.shape[-1] != dim or vector.shape[0] not in (1, batch):
                raise CheckpointError(f"a prompt embedding of shape {tuple(conditions.prompt.shape)} does not fit "
                                      f"this model ({batch} sounds, {dim} values each): another embedder's?")
            inputs["prompt"] = vector.expand(batch, -1).to(device)
    return inputs


def label_weights(label: int, label_b: int, mix: float, num_labels: int) -> torch.Tensor:
    """``(1, num_labels + 1)`` weights of a hybrid of two labels: the network mixes the two
    label embeddings by them (DualDiffusion's class blends), ``mix`` of ``label_b``."""
    weights = torch.zeros(1, num_labels + 1)
    weights[0, label] += 1.0 - float(mix)
    weights[0, label_b] += float(mix)
    return weights


def _null_label(value: torch.Tensor, num_labels: int) -> torch.Tensor:
    """"No label" in the form of ``value``: the null index, or one-hot weights on it for a blend."""
    if value.is_floating_point():
        return torch.nn.functional.one_hot(torch.full(value.shape[:-1], num_labels, dtype=torch.long,
                                                      device=value.device), value.shape[-1]).to(value)
    return torch.full_like(value, num_labels)


def null_inputs(inputs: Mapping[str, torch.Tensor], num_labels: int) -> dict:
    """The same mapping with every condition absent (the unconditional call of guidance)."""
    return {name: _null_label(value, num_labels) if name == "label" else torch.zeros_like(value)
            for name, value in inputs.items()}


def without(inputs: Mapping[str, torch.Tensor], names: Sequence[str], num_labels: int) -> dict:
    """``inputs`` with the conditions ``names`` made absent."""
    nulls = null_inputs({k: v for k, v in inputs.items() if k in names}, num_labels)
    return {**inputs, **nulls}


def drop_conditions(inputs: Mapping[str, torch.Tensor], specs: Sequence[ConditionSpec], generator: torch.Generator,
                    num_labels: int, all_dropout: float = 0.0) -> dict:
    """Training: each condition absent for its spec's share of the batch, and all of them at once
    for ``all_dropout`` of it, so every condition is optional and guidance has its null to push from."""
    batch = next(iter(inputs.values())).shape[0] if inputs else 0
    # no draw when unused: a label-only trainer's random stream stays what it was
    every = torch.rand(batch, generator=generator) < all_dropout if all_dropout > 0 else torch.zeros(batch, dtype=torch.bool)
    out = {}
    for spec in specs:
        if spec.name not in inputs:
            continue
        value = inputs[spec.name]
        drop = (torch.rand(batch, generator=generator) < spec.dropout) | every
        drop = drop.to(value.device).view(-1, *([1] * (value.dim() - 1)))
        null = torch.full_like(value, num_labels) if spec.name == "label" else torch.zeros_like(value)
        out[spec.name] = torch.where(drop, null, value)
    return {**inputs, **out}


# --------------------------------------------------------------------------- controls measured on audio


def controls_from_audio(audio: torch.Tensor, hop: int, sample_rate: int, frames: int) -> dict:
    """``{"rms": (B, 2, F), "onsets": (B, 2, F)}`` measured on ``(B, C, N)`` audio: what a clip
    "asks for" when it is the training target (every frame masked in)."""
    db = dsp.rms_db(audio, hop, frames=frames)
    rms = rms_channels(db, torch.ones_like(db))
    curves = torch.stack([dsp.onset_curve(dsp.onset_times(clip, sample_rate, hop), frames, hop, sample_rate)
                          for clip in audio])
    return {"rms": rms, "onsets": onset_channels(curves)}


def roughen_controls(controls: Mapping[str, torch.Tensor], generator: torch.Generator,
                     kernels: Sequence[int] = (1, 3, 5, 9, 15, 25, 41), open_end: float = 0.2) -> dict:
    """Training: each clip's RMS curve through a median filter of a random width (so a rough,
    hand-drawn curve reads as a measured one; Sketch2Sound), and for ``open_end`` of the clips the
    curve's end left open (mask 0 after a random frame: a drawn curve may stop early)."""
    rms = controls["rms"]
    batch, _, frames = rms.shape
    value, mask = rms[:, 0], rms[:, 1]
    picks = torch.randint(0, len(kernels), (batch,), generator=generator)
    rows = []
    for i in range(batch):
        k = min(kernels[int(picks[i])], frames - (1 - frames % 2))
        if k > 1:
            padded = F.pad(value[i][None, None], (k // 2, k // 2), mode="replicate")[0, 0]
            rows.append(padded.unfold(0, k, 1).median(dim=-1).values)
        else:
            rows.append(value[i])
    value = torch.stack(rows)
    ends = torch.rand(batch, generator=generator) < open_end
    cut = torch.randint(1, max(2, frames), (batch,), generator=generator)
    keep = torch.arange(frames)[None, :] < torch.where(ends, cut, torch.full_like(cut, frames))[:, None]
    mask = mask * keep.to(mask)
    return {**controls, "rms": torch.stack([value * mask, mask], dim=1)}


# --------------------------------------------------------------------------- points measured on audio


def simplify(times: np.ndarray, values: np.ndarray, tolerance: float) -> list[int]:
    """Indices of the points a polyline keeps within ``tolerance`` (Ramer-Douglas-Peucker on the
    value axis: the vertical distance to the chord, which is what a loudness error is)."""
    keep = {0, len(times) - 1}
    stack = [(0, len(times) - 1)]
    while stack:
        first, last = stack.pop()
        if last - first < 2:
            continue
        span = slice(first + 1, last)
        chord = np.interp(times[span], [times[first], times[last]], [values[first], values[last]])
        errors = np.abs(values[span] - chord)
        worst = int(errors.argmax())
        if errors[worst] > tolerance:
            middle = first + 1 + worst
            keep.add(middle)
            stack += [(first, middle), (middle, last)]
    return sorted(keep)


def rms_points_from_audio(audio: torch.Tensor, sample_rate: int, hop: int = 128, tolerance_db: float = 1.5,
                          max_points: int = 64) -> list[tuple[float, float]]:
    """A sound's loudness curve as (ms, dB) points a person could have drawn: the RMS envelope
    simplified to within ``tolerance_db`` (looser until it fits ``max_points``), trailing silence dropped."""
    db = dsp.rms_db(audio, hop).double().numpy()
    times = dsp.frame_times_ms(len(db), hop, sample_rate).numpy()
    loud = np.nonzero(db > dsp.FLOOR_DB + 1.0)[0]
    end = int(loud[-1]) + 1 if len(loud) else 1
    times, db = times[: end + 1], db[: end + 1]
    while True:
        keep = simplify(times, db, tolerance_db)
        if len(keep) <= max_points:
            return [(round(float(times[i]), 1), round(float(db[i]), 1)) for i in keep]
        tolerance_db *= 1.5


def onsets_from_audio(audio: torch.Tensor, sample_rate: int, hop: int = 128) -> list[float]:
    return [round(t, 1) for t in dsp.onset_times(audio, sample_rate, hop)]


def curves_from_sound(sound: torch.Tensor, sample_rate: int, hop: int = 128,
                      length_s: float | None = None) -> tuple[tuple[tuple[float, float], ...] | None, tuple[float, ...] | None]:
    """(RMS points, onset times) of a sound ``(channels, samples)``: a reference, a result or a
    vocal imitation ("ts", "boom"). Leading silence is skipped (a take starts when the voice
    does), the sound is cut to ``length_s`` and, when it goes over full scale (a float file), is
    measured turned down to it (:func:`engine.audio.within_full_scale`); a silent sound gives
    (None, None)."""
    from .audio import align_onset, within_full_scale
    sound = within_full_scale(align_onset(sound.float(), sample_rate))
    if length_s is not None:
        sound = sound[..., : max(1, int(round(length_s * sample_rate)))]
    if float(sound.abs().max()) < 1e-4:
        return None, None
    points = rms_points_from_audio(sound, sample_rate, hop)
    points = [(ms, max(db, dsp.FLOOR_DB)) for ms, db in points]
    return tuple(points), tuple(onsets_from_audio(sound, sample_rate, hop)) or None


def finite(value: float) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
