"""One generation pipeline: conditions -> network inputs -> sample -> envelope -> decode -> finish.

The Studio, the evaluation (``engine.eval.run.generate_clips``), training renders
(``engine.train.loop.render_samples``) and the latent experiments all generate through
:func:`sample` and :func:`decode` (or :func:`render`, both in one), so a condition a model takes
reaches every one of them, and a sound rendered during training or measured by the evaluation
is the sound the studio would make at the same settings.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch

from dataclasses import dataclass, replace

from . import dsp
from .attacks import read_attacks
from .band_shares import on_frames, read_shares
from .conditions import ENVELOPE, Conditions, condition_specs, level_floor, lift_quiet_curve, network_inputs
from .errors import InvalidRequestError
from .lows import hold_lows, read_lows
from .models import LoadedModel
from .nets.tail import cut_tail
from .nets.tone import match_tone
from .sampling import channel_weights, label_defaults, sample_latent, variety_interval
from .seeds import SeedNoise, redrawn_seed
from .steering import (attack_projection, centre_projection, chain, envelope_bands, latent_rms_db,
                       loudness_projection, one_hit_projection, onset_projection, share_projection, steerable)
from .tones import dealt_spectra, read_tails, read_tones, read_widths


def codec_hop(model: LoadedModel, samples: int | None = None) -> int:
    """Audio samples per latent frame: the codec's ``hop``, else measured from its latent length."""
    hop = getattr(model.codec, "hop", None)
    if hop:
        return int(hop)
    samples = samples or model.manifest["length"]
    return max(1, round(samples / model.codec.latent_length(samples)))


def inputs_for(model: LoadedModel, conditions: Conditions, batch: int, frames: int) -> dict:
    """The network's condition mapping for ``batch`` sounds of ``frames`` latent frames."""
    return network_inputs(conditions, condition_specs(model.manifest), batch, frames, codec_hop(model),
                          model.manifest["sample_rate"], model.device, getattr(model.network, "num_labels", 0),
                          getattr(model.network, "embeddings", None))


def envelope_for(model: LoadedModel, conditions: Conditions, noises: torch.Tensor,
                 draws: SeedNoise | None = None) -> torch.Tensor | None:
    """The waveform codec's loudness envelope drawn from the starting noise, moved to follow a drawn
    loudness curve when the model's envelope takes it (None for latent codecs). ``draws``, the
    seeds' noise the starting noise came from: a morph's envelope blends the two seeds' picks
    (:meth:`engine.nets.pqmf.BandCodec.envelope_for`)."""
    seeds = draws.dealing() if isinstance(draws, SeedNoise) else None
    envelope = model.codec.envelope_for(conditions.label, noise=noises, seeds=seeds)
    if envelope is not None and conditions.label_b is not None and conditions.label is not None:
        # a hybrid's envelope: the two labels' envelopes from the same coordinates, mixed in dB
        other = model.codec.envelope_for(conditions.label_b, noise=noises, seeds=seeds)
        envelope = (1.0 - conditions.label_mix) * envelope + conditions.label_mix * other
    takes = any(spec.name == "rms" and spec.enters == ENVELOPE for spec in condition_specs(model.manifest))
    if envelope is not None and conditions.rms and takes:
        envelope = model.codec.follow_loudness(envelope, conditions.rms, model.manifest["sample_rate"])
    return envelope


@dataclass(frozen=True)
class ClipDetail:
    """What a sound takes from the training clip its seed deals, beyond the envelope: the flutter
    between the envelope's knots (``(B, M, points)`` dB, or None) and the tone inside each band
    (``(B, M, points)`` dB, or None), a waveform codec's; or, for a latent model, the clip's whole
    long-term spectrum (``(B, bands, points)`` dB, or None), which the decoded sound is filtered to
    (:func:`engine.nets.tone.match_tone`); and, for either kind, the shape of the clip's tail
    (``(B, TAIL_POINTS)`` dB, or None), which the decoded sound's tail is cut towards
    (:func:`engine.nets.tail.cut_tail`); and, for a latent model, the clip's side over its mid
    (``(B,)`` dB, or None), which the decoded sound is narrowed to (:func:`engine.dsp.match_width`).
    ``detail[:1]`` is the first sound's (the studio's preview)."""

    flutter: torch.Tensor | None = None
    tone: torch.Tensor | None = None
    spectrum: torch.Tensor | None = None
    tail: torch.Tensor | None = None
    side: torch.Tensor | None = None

    def __getitem__(self, index) -> "ClipDetail":
        def part(value):
            return None if value is None else value[index]

        return ClipDetail(part(self.flutter), part(self.tone), part(self.spectrum), part(self.tail), part(self.side))


def detail_for(model: LoadedModel, conditions: Conditions, draws: SeedNoise | None, batch: int) -> ClipDetail | None:
    """The flutter between the envelope's knots and the tone inside the bands of the clips the
    seeds deal (a waveform codec's kernel rows stored with them,
    :meth:`engine.nets.pqmf.BandCodec.detail_for` and ``tone_for``), or None: for a latent codec, a
    noise without seeds and a hybrid (its envelope is two labels' mix, not one clip's). A drawn
    loudness curve takes the tone but no flutter: the user's curve is the shape in time, with no
    clip's bumps on it, and says nothing of the tone.
    A latent model's Sound with clip tones in its folder (:mod:`engine.tones`) takes the spectrum of
    the clip its seed deals, and a Sound of either kind with clip tails there its clip's tail, unless
    a prompt says what it should sound like."""
    codec = model.codec
    if not isinstance(draws, SeedNoise) or conditions.label_b is not None:
        return None
    seeds = draws.dealing()
    label = None if conditions.prompt is not None else _label_name(model, conditions)
    tails = read_tails(model.folder, label)
    tail = None if tails is None else dealt_spectra(tails, *seeds)
    if getattr(codec, "detail_for", None) is None:
        table, sides = read_tones(model.folder, label), read_widths(model.folder, label)
        spectrum = None if table is None else dealt_spectra(table, *seeds)
        side = None if sides is None else dealt_spectra(sides, *seeds)[:, 0]
        return None if spectrum is None and tail is None and side is None else \
            ClipDetail(spectrum=spectrum, tail=tail, side=side)
    flutter = None if conditions.rms else codec.detail_for(conditions.label, seeds=seeds, batch=batch)
    tone = codec.tone_for(conditions.label, seeds=seeds, batch=batch)
    return None if flutter is None and tone is None and tail is None else ClipDetail(flutter, tone, tail=tail)


def level_lift(model: LoadedModel, conditions: Conditions, soft_hits: bool = False) -> tuple[Conditions, float]:
    """(the conditions the network and the steering see, the dB the decoded sound is turned down
    by): a drawn curve quieter than the model's level floor for its label is lifted to it
    (:func:`engine.conditions.lift_quiet_curve`), unless ``soft_hits`` asks for the timbre of a soft
    hit, or the model records no floor (then nothing changes)."""
    if soft_hits or not conditions.rms:
        return conditions, 0.0
    floor = level_floor(condition_specs(model.manifest), conditions, list(model.manifest.get("labels", [])))
    rms, lift = lift_quiet_curve(conditions.rms, floor)
    return (replace(conditions, rms=rms), lift) if lift else (conditions, 0.0)


def _label_name(model: LoadedModel, conditions: Conditions) -> str | None:
    """The name of the conditions' label (None without one), for the model's per-label defaults."""
    labels = list(model.manifest.get("labels", []))
    return labels[conditions.label] if conditions.label is not None and 0 <= conditions.label < len(labels) else None


def guidance_spec(model: LoadedModel, conditions: Conditions) -> dict | None:
    """The per-channel guidance weights (``defaults.guidance_weights``: channel group -> weight) a
    sound takes: its label's with a loudness curve, else its label's, else the model's own
    (:func:`engine.sampling.label_defaults`); None for the full scale on every channel."""
    return label_defaults(model.manifest.get("defaults", {}), _label_name(model, conditions),
                          curves=bool(conditions.rms)).get("guidance_weights")


def one_hit_limit(model: LoadedModel, conditions: Conditions) -> float | None:
    """How far (dB) a sound asked as one hit may rise again after its peak while it forms
    (:func:`engine.steering.one_hit_projection`, in the frames no loudness curve is drawn over):
    its label's ``one_hit_db`` default, for a sound with at most one drawn hit; None for two hits
    or more (two hits are two hits), when the model sets no limit, or when its codec's latent does
    not say its loudness (nothing to hold it by). The studio records what this gives."""
    if len(conditions.onsets or ()) > 1:
        return None
    limit = label_defaults(model.manifest.get("defaults", {}), _label_name(model, conditions)).get("one_hit_db")
    return None if limit is None or not steerable(model.codec) else float(limit)


def attack_limits(model: LoadedModel, conditions: Conditions) -> torch.Tensor | None:
    """The brightness a sound's attack is held to (:func:`engine.steering.attack_projection`): for a
    sound with a loudness curve (drawn, or a kit hit's), its label's row of the model folder's attack
    limits (:mod:`engine.attacks`); None without one, or on a codec whose latent does not say its
    band levels. Not without a curve: `latent-fast`'s kicks asked alone have no click to hold, and
    held at the training kicks' median their spread narrowed (PC diversity .92 -> .82, seed 1000)."""
    if not conditions.rms or not steerable(model.codec):
        return None
    return read_attacks(getattr(model, "folder", None), _label_name(model, conditions), envelope_bands(model.codec))


def low_ceiling(model: LoadedModel, conditions: Conditions) -> torch.Tensor | None:
    """The shares in dB a sound's bands under 690 Hz are held to after decoding (:mod:`engine.lows`):
    its label's row of the model folder's low-band ceilings; for a hybrid, the two labels' rows
    mixed in dB by ``label_mix``, a label without a row counting as no ceiling (0 dB), so the
    ceiling fades in as the mix moves; None when neither label has one."""
    folder = getattr(model, "folder", None)
    first = read_lows(folder, _label_name(model, conditions))
    if conditions.label_b is None:
        return first
    second = read_lows(folder, _label_name(model, replace(conditions, label=conditions.label_b)))
    if first is None and second is None:
        return None
    mix = float(conditions.label_mix)
    zero = torch.zeros(len(first if first is not None else second))
    return (1.0 - mix) * (first if first is not None else zero) + mix * (second if second is not None else zero)


def quiet_floor(model: LoadedModel, conditions: Conditions) -> float | None:
    """The loudest-frame level (dBFS) under which a sound is drawn again (:func:`redraw_quiet`): its
    label's ``redraw_under_db`` default, for a sound the network gives its level (no loudness curve
    drawn); None when the model sets none, or when its codec's latent does not say its loudness.
    The studio records what this gives."""
    if conditions.rms:
        return None
    floor = label_defaults(model.manifest.get("defaults", {}), _label_name(model, conditions)).get("redraw_under_db")
    return None if floor is None or not steerable(model.codec) else float(floor)


REDRAW_TRIES = 3
"""At most this many draws again; a sound still quiet after them is kept (one of `latent-fast`'s
free kicks in seven to nine is quiet the first time, so three tries leave about one in 3000)."""


def redraw_quiet(model: LoadedModel, latent: torch.Tensor, draws: SeedNoise, floor: float | None,
                 resample: Callable[[SeedNoise], torch.Tensor]) -> tuple[torch.Tensor, list[int], list[int] | None]:
    """``(latents, seeds, second seeds)``: each latent of ``draws``' seeds whose loudest frame is under
    ``floor`` dBFS sampled again (``resample``, the same settings) from :func:`engine.seeds.redrawn_seed`
    (its second seed too, for a morph), up to :data:`REDRAW_TRIES` times, and the seeds each sound
    was made from in the end. Unchanged without a floor.

    Why: one in seven to nine of `latent-fast`'s kicks asked alone came back near-silent (the loudest 11.6 ms
    frame under -30 dBFS, where the quietest of its 46 training kicks is -26): a soft thump under
    the codec's broadband noise, and seed 1010 only the noise, at -44 dBFS. No steering made them
    kicks without narrowing the rest (``docs/design-notes.md``, "Near-silent kicks drawn again").
    The latent says its level exactly (:func:`engine.steering.latent_rms_db`), so the check needs no
    decoding."""
    seeds, seeds_b = list(draws.seeds), None if draws.seeds_b is None else list(draws.seeds_b)
    if floor is None:
        return latent, seeds, seeds_b
    latent, asked, asked_b = latent.clone(), list(seeds), seeds_b and list(seeds_b)
    for attempt in range(1, REDRAW_TRIES + 1):
        rows = [i for i, level in enumerate(latent_rms_db(model.codec, latent).amax(-1).tolist()) if level < floor]
        if not rows:
            break
        for i in rows:
            seeds[i] = redrawn_seed(asked[i], attempt)
            if seeds_b is not None:
                seeds_b[i] = redrawn_seed(asked_b[i], attempt)
        again = draws.with_seeds([seeds[i] for i in rows], None if seeds_b is None else [seeds_b[i] for i in rows])
        latent[rows] = resample(again).to(latent.dtype)
    return latent, seeds, seeds_b


def kit_shares(model: LoadedModel, conditions: Conditions, draws, frames: int, strength: float) -> torch.Tensor | None:
    """``(B, bands, frames)`` dB: the band shares (:mod:`engine.band_shares`) of the clip each of
    ``draws``' seeds deals for the conditions' label (a seed morph's two clips mixed in dB), for a
    sound steered onto them at ``strength`` > 0; None at 0. A clear error where they can't be had:
    a prompt or a hybrid (no one clip's label deals them), no loudness curve (the shares ride on
    one), unseeded noise, a codec that cannot be steered, or a model without them for the label."""
    if not strength:
        return None
    if conditions.label is None:
        raise InvalidRequestError("kit_bands deals a clip of a Sound: choose one, or set kit_bands to 0")
    if conditions.prompt is not None or conditions.label_b is not None:
        raise InvalidRequestError("kit_bands steers a Sound alone onto the band shares of the clip its seed deals; "
                                  "a prompt or a hybrid has no one clip: set kit_bands to 0")
    if not conditions.rms:
        raise InvalidRequestError("kit_bands rides on a loudness curve (a kit hit's or a drawn one): "
                                  "give one, or set kit_bands to 0")
    if not isinstance(draws, SeedNoise):
        raise InvalidRequestError("kit_bands deals a clip by seed: it needs seeded noise")
    name = model.manifest.get("name") or Path(model.folder).name
    if not steerable(model.codec):
        raise InvalidRequestError(f"model {name!r} cannot be steered onto a clip's band shares; set kit_bands to 0")
    label = _label_name(model, conditions)
    table = read_shares(model.folder, label, 1 + envelope_bands(model.codec))
    if table is None:
        raise InvalidRequestError(f"model {name!r} has no band shares for {label!r}; build them with python -m engine "
                                  f"bands --model {name} --data DATA --label {label}, or set kit_bands to 0")
    dealt = dealt_spectra(table, *draws.dealing())
    return on_frames(dealt, frames, codec_hop(model), model.manifest["sample_rate"])


@torch.no_grad()
def sample(model: LoadedModel, noises: torch.Tensor, conditions: Conditions, *, sampler: str, steps: int,
           guidance: float = 1.0, control_guidance: float = 1.0, reference: torch.Tensor | None = None,
           strength: float = 1.0, callback: Callable[[dict], None] | None = None,
           step_noise: Callable[[], torch.Tensor] | None = None, variety: float = 0.0,
           steer_loudness: bool = True, soft_hits: bool = False, steer_onsets: bool = True,
           one_hit: bool = False, kit_bands: float = 0.0) -> torch.Tensor:
    """A batch of clean latents from unit ``noises`` under ``conditions`` (the sound's per-channel
    guidance weights applied, :func:`guidance_spec`; ``variety`` > 0 guides only at the lower noise levels,
    :func:`engine.sampling.variety_interval`; with a loudness curve and ``steer_loudness`` the
    steps' estimates, all but the last few, are moved onto the curve where the codec allows,
    :mod:`engine.steering`; with ``steer_onsets`` each drawn hit after the first that the curve does
    not already make is made there too, :func:`engine.steering.onset_projection`; with ``one_hit``, a
    sound without a reference that :func:`one_hit_limit` gives a limit to is held from rising again
    after its peak, :func:`engine.steering.one_hit_projection`; and every estimate's low sub-bands are
    centred on its silence, :func:`engine.steering.centre_projection`: no steady tones; with ``kit_bands``
    > 0, each band's share of the power is moved that far onto the clip its seed deals,
    :func:`kit_shares`, :func:`engine.steering.share_projection`). A quiet curve is
    lifted first (:func:`level_lift`): the latent is then that many dB louder than the curve until
    :func:`decode`, given the same conditions, turns it down."""
    conditions, _ = level_lift(model, conditions, soft_hits)
    cond = inputs_for(model, conditions, noises.shape[0], noises.shape[-1])
    frames, rate = noises.shape[-1], model.manifest["sample_rate"]
    shares = kit_shares(model, conditions, step_noise, frames, kit_bands)
    project = chain(share_projection(model.codec, shares, kit_bands),
                    centre_projection(model.codec),
                    loudness_projection(model.codec, conditions.rms, frames, rate,
                                        conditions.onsets if steer_onsets else None) if steer_loudness else None,
                    onset_projection(model.codec, conditions.onsets, conditions.rms, frames, rate)
                    if steer_onsets else None,
                    one_hit_projection(model.codec, one_hit_limit(model, conditions), conditions.rms, frames, rate)
                    if one_hit and reference is None else None,
                    attack_projection(model.codec, attack_limits(model, conditions)) if reference is None else None)
    return sample_latent(model.network, model.manifest, noises, sampler=sampler, steps=steps, guidance=guidance,
                         cond=cond, control_guidance=control_guidance, reference=reference, strength=strength,
                         callback=callback, step_noise=step_noise,
                         guidance_weights=channel_weights(guidance_spec(model, conditions), model.codec),
                         guidance_interval=variety_interval(variety) if variety else None, project=project)


@torch.no_grad()
def decode(model: LoadedModel, latent: torch.Tensor, envelope: torch.Tensor | None, samples: int,
           conditions: Conditions | None = None, soft_hits: bool = False, width: float = 1.0,
           detail: ClipDetail | None = None) -> torch.Tensor:
    """``(B, C, samples)`` float32 CPU audio of the latents (not yet finished: see ``studio.finish``),
    with the flutter and tone, or the clip's spectrum, and the clip's tail of ``detail`` (:func:`detail_for`), turned
    down by the dB :func:`sample` lifted a quiet curve by for the same ``conditions``, its low bands
    held to its label's ceilings (:func:`low_ceiling`), at the stereo ``width``
    (:func:`engine.dsp.stereo_width`; 1: as the codec decodes it)."""
    banded = detail is not None and (detail.flutter is not None or detail.tone is not None)
    decoded = model.codec.decode(latent.float(), envelope, detail.flutter, detail.tone) if banded else \
        model.codec.decode(latent.float(), envelope)
    audio = decoded[..., :samples].float().cpu()
    if detail is not None and detail.spectrum is not None:  # before the lows are held: a clip's lows are not held
        audio = match_tone(audio, detail.spectrum)
    if detail is not None and detail.side is not None:  # the clip's stereo width, before the request's
        audio = dsp.match_width(audio, detail.side, model.manifest["sample_rate"])
    if detail is not None and detail.tail is not None:
        audio = cut_tail(audio, detail.tail, model.manifest["sample_rate"])
    lift = level_lift(model, conditions, soft_hits)[1] if conditions is not None else 0.0
    audio = audio * 10.0 ** (-lift / 20.0) if lift else audio
    ceiling = low_ceiling(model, conditions) if conditions is not None else None
    audio = hold_lows(audio, model.manifest["sample_rate"], ceiling) if ceiling is not None else audio
    return dsp.stereo_width(audio, width, model.manifest["sample_rate"])


@torch.no_grad()
def render(model: LoadedModel, noises: torch.Tensor, conditions: Conditions, *, samples: int, sampler: str,
           steps: int, guidance: float = 1.0, control_guidance: float = 1.0,
           step_noise: Callable[[], torch.Tensor] | None = None, variety: float = 0.0,
           steer_loudness: bool = True, soft_hits: bool = False, steer_onsets: bool = True,
           one_hit: bool = False, width: float = 1.0, kit_bands: float = 0.0) -> torch.Tensor:
    """Noise to raw decoded audio in one call: what evaluation and training renders use. With
    ``one_hit`` and seeded noise (``step_noise`` a :class:`engine.seeds.SeedNoise`), a near-silent
    sound is drawn again as the studio draws it (:func:`redraw_quiet`); ``width`` as :func:`decode`."""
    settings = dict(sampler=sampler, steps=steps, guidance=guidance, control_guidance=control_guidance,
                    variety=variety, steer_loudness=steer_loudness, soft_hits=soft_hits, steer_onsets=steer_onsets,
                    one_hit=one_hit, kit_bands=kit_bands)
    latent = sample(model, noises, conditions, step_noise=step_noise, **settings)
    dealt = step_noise
    if one_hit and isinstance(step_noise, SeedNoise):
        latent, seeds, seeds_b = redraw_quiet(model, latent, step_noise, quiet_floor(model, conditions),
                                              lambda again: sample(model, again(), conditions, step_noise=again,
                                                                   **settings))
        if seeds != list(step_noise.seeds):  # a sound drawn again is its new seed's, as in the studio
            dealt = step_noise.with_seeds(seeds, seeds_b)
    return decode(model, latent, envelope_for(model, conditions, noises, step_noise), samples, conditions, soft_hits,
                  width, detail_for(model, conditions, dealt, noises.shape[0]))
