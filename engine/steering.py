"""Loudness steering: each sampling step's clean estimate is moved onto the drawn loudness curve
(all but the last few, :data:`STEER_MIN_SIGMA`).

Why: the latent model follows an RMS curve only as well as its training allows: on `latent-fast`
4.0 dB from held-out curves and 4.8 dB from drawn shapes (``python -m engine.eval.controls``),
where the issue asks for 3; steered, 1.4 and 1.2 dB. The envelope shaper after decoding
(``dsp.match_loudness``) puts the level right but cannot change what was generated: a gate cut
after decoding is a cut, a swell lifted after decoding is a louder attack. Steering acts while the
sound forms, so the steps after it see a latent at the curve's level and fill in its timbre and
transients to match.

How: the latent of our codec says its own loudness. Its bypass channels are band 0's lowest
sub-bands as they are, its envelope channels the RMS of every band above band 0, and the PQMF
keeps power (each of the 16 bands of white noise carries 1/16 of its power, each of band 0's 8
sub-bands 1/8 of band 0's). So a frame's power is the bypass sub-bands' power plus the envelope
channels' squares, with nothing to fit: on the held-out kits this reads the measured RMS (the
studio's 512-sample window) to 0.12 dB in the median, quartiles -0.23 and +0.56 dB. It leaves out
band 0 above the bypass (689-1378 Hz), 1.4 % of a loud frame's power in the median. Steering
multiplies those exact channels, frame by frame, by the gain that puts the estimate on the curve
(never more than +12 dB, as the shaper, so a silent frame is not pulled up into noise) and hands
the sampler that estimate. It is the projection of DPS / Pi-GDM onto a measurement, here exact and
free: no decoding and no gradients (1.3 ms a step for a 2 s latent on one CPU thread).

**Hits** (:func:`onset_projection`, session 21): a drawn hit after the first whose loudness curve
does not already rise into it (a roll at a near-constant level, a flam) is made in the same exact
channels. The band envelopes above band 0 are held :data:`ONSET_DIP_DB` down over the
:data:`ONSET_DIP_MS` before the hit, and the first hit's attack (those bands over its first
:data:`ONSET_ATTACK_FRAMES` frames, :data:`ONSET_ATTACK_LIFT_DB` up, and no louder relative to the
first hit than the sound is there) is laid over the hit. Why: the network takes the hits as a
condition, but a 32-hit cowbell roll from the held-out kits (30 ms apart at -8 dB) came out as one
hit and a ring. The spectral flux that finds a hit is mostly the high bins' rise, which a flat
loudness curve never asks for. Cutting, and copying the model's own attack, asks for no structure
the network has not made, so unlike the loudness gain it runs to the last step. Held-out curves
on `latent-fast`, 32 per category, seeds 0 / 100 / 200: requested onsets within 10 ms (pooled)
.787 / .802 / .797 unsteered, .950 / .960 / .960 steered; spurious onsets, loudness error and
classification unchanged (``docs/design-notes.md``, "Hits in a roll"). In a roll of
:data:`ROLL_HITS` or more, each attack is raised to at least :data:`ROLL_ATTACK_FLOOR_DB` under the
sound's level: a low, tom-like sound's first hit has little above band 0 to copy.

Codecs whose latent does not say its loudness (the waveform models' bands, the plain learned
latent) are not steered: :func:`loudness_projection` gives ``None`` (the waveform models follow a
curve through their envelope instead, ``BandCodec.follow_loudness``).
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

from . import dsp
from .diffusion.denoisers import Project
from .nets.envelope import limit_reattacks

MAX_BOOST_DB = 12.0   # as the envelope shaper: a quiet estimate is lifted at most this much
MAX_CUT_DB = 60.0     # a frame the curve wants silent goes down at most this much per step
STEER_MIN_SIGMA = 0.25
"""The last steps (VE noise level at or under this) are the network's alone. Why: the projection
moves the envelope channels but not the learned ones, and a final estimate whose envelope asks for
more than its fine structure holds decodes as small bursts that the onset detector reads as
hits. Held-out curves on `latent-fast` (16 per category; spurious onsets per sound / loudness
error): steering to the end .275 / 0.92 dB, above 0.1 .16 / 1.07, above 0.25 .11 / 1.43, above
0.5 .075 / 2.0 (the network alone: .075 / 4.0). 0.25 leaves the last 3-4 of 12-16 steps."""


ONSET_DIP_DB = 30.0       # the bands above band 0 are held this far under the hit before it...
ONSET_DIP_MS = 15.0       # ...over this long (or half the gap to the hit before, if shorter)
ONSET_ATTACK_FRAMES = 4   # latent frames (11.6 ms) of the first hit's attack laid over each later hit...
ONSET_ATTACK_LIFT_DB = 6.0  # ...this much louder: it rises out of a ringing sound, where the first rose from silence
ONSET_LEAD_FRAMES = 1     # ...starting this many frames early (the flux of the decoded attack peaks a frame late)
ONSET_RISE_DB = 6.0       # a hit the drawn loudness already rises into by this much is left to the curve
ONSET_HIT_FRAMES = 3      # a hit's level: the loudest of its first this many frames
ROLL_HITS = 3             # in a drawn roll of this many hits or more...
ROLL_ATTACK_FLOOR_DB = 8.0  # ...each attack is at most this far under the sound's level at the hit
"""Chosen on `latent-fast`'s held-out perc curves (the roll), seeds 0 and 100. A linear dip, a dip of
12-20 dB, or an attack at the first hit's own level caught under half the held-out roll at seed
100: the decoded first hit rises from silence in every bin, so its flux is 2.5 times the real
one's, and the detector asks each hit for 0.3 of the strongest. A low, tom-like perc has little
above band 0 in its first hit (30 dB under its body), and three of six drawn 8-hit rolls at a flat
-14 dB rang as one hit: raising the attack to 8 dB under the sound's level made all 48 hits. On
every hit after the first it also put a click on the held-out double kick (hits at 6 and 52 ms),
which then read as a kick .84 / .81 / .72 at seeds 0 / 100 / 200 instead of .94 / .91 / .81 (12-16
dB under: .875 / .81-.84). So the floor is for rolls (:data:`ROLL_HITS`), where each hit is a
strike like the first; a lone second hit may be a bounce, and keeps the model's own attack."""


def _inner(codec: torch.nn.Module) -> torch.nn.Module:
    """The autoencoder under a companding wrapper (or the codec itself)."""
    return getattr(codec, "codec", codec) if hasattr(codec, "expand") else codec


def steerable(codec: torch.nn.Module) -> bool:
    """Whether ``codec``'s latent says its loudness: exact low sub-bands and band envelopes."""
    inner = _inner(codec)
    return codec_args_steer({"band_envelope": getattr(inner, "band_envelope", False),
                             "low_bypass": getattr(inner, "low_bypass", 0)})


def codec_args_steer(args: dict) -> bool:
    """:func:`steerable` from a codec's arguments (its manifest), without building it: what the
    studio tells the page before a model is loaded."""
    return bool(args.get("band_envelope")) and int(args.get("low_bypass", 0) or 0) > 0


def _raw(codec: torch.nn.Module, latent: torch.Tensor) -> torch.Tensor:
    """The codec's raw latent (before ``latent_scale``) of what the diffusion model sees."""
    unit = codec.expand(latent) if hasattr(codec, "expand") else latent
    return unit * _inner(codec).latent_scale


def _from_raw(codec: torch.nn.Module, raw: torch.Tensor) -> torch.Tensor:
    unit = raw / _inner(codec).latent_scale
    return codec.compand(unit) if hasattr(codec, "compand") else unit


def _exact_channels(codec: torch.nn.Module) -> tuple[slice, slice]:
    parts = _inner(codec).channel_groups()
    return parts["bypass"], parts["envelope"]


def frame_power(codec: torch.nn.Module, raw: torch.Tensor) -> torch.Tensor:
    """``(B, frames)``: the mean power per audio sample (channels averaged) in each latent frame,
    from the raw latent's bypass sub-bands and band envelopes (see the module's docstring)."""
    return band_powers(codec, raw).sum(1)


def band_powers(codec: torch.nn.Module, raw: torch.Tensor) -> torch.Tensor:
    """``(B, 1 + envelope bands, frames)``: :func:`frame_power` split by where it is said: the
    bypass sub-bands' together (band 0's exact low end), then each band envelope's."""
    inner = _inner(codec)
    bypass, envelope = _exact_channels(codec)
    low = raw[:, bypass].float().reshape(raw.shape[0], inner.channels, inner.low_bypass, -1)
    return torch.cat([low.pow(2).sum(2).mean(1, keepdim=True), raw[:, envelope].float().clamp_min(0).pow(2)], dim=1)


def latent_rms_db(codec: torch.nn.Module, latent: torch.Tensor) -> torch.Tensor:
    """``(B, frames)`` dBFS: the RMS a latent (as the diffusion model sees it) will have once
    decoded, read as :func:`engine.dsp.rms_db` reads audio (its window, per latent frame)."""
    return _rms_db(codec, _raw(codec, latent))


def _rms_db(codec: torch.nn.Module, raw: torch.Tensor) -> torch.Tensor:
    power = frame_power(codec, raw)
    width = max(1, dsp.RMS_WINDOW // _inner(codec).hop)
    before = (width - 1) // 2
    smooth = F.avg_pool1d(F.pad(power[:, None], (before, width - 1 - before), mode="replicate"), width, 1)[:, 0]
    return (10.0 * torch.log10(smooth + 1e-12)).clamp_min(dsp.FLOOR_DB)


def loudness_projection(codec: torch.nn.Module, rms: Sequence[tuple[float, float]] | None, frames: int,
                        sample_rate: int, onsets: Sequence[float] | None = None) -> Project | None:
    """The steering step for a drawn curve over ``frames`` latent frames: a function from a batch
    of clean estimates and their noise level (VE sigma) to the same estimates on the curve (frames
    the curve leaves open are kept; at :data:`STEER_MIN_SIGMA` and under, unchanged). Under a roll
    of drawn ``onsets`` the curve does not rise into (:func:`roll_segments`) it only turns down, so
    the hits can fall between them. ``None`` without a curve or on a codec that cannot be steered."""
    if not rms or not steerable(codec):
        return None
    asked, mask = dsp.rms_from_points(rms, frames, _inner(codec).hop, sample_rate)
    segments = roll_segments(onsets, rms, frames, _inner(codec).hop, sample_rate)

    def project(estimate: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        if float(torch.as_tensor(sigma).max()) <= STEER_MIN_SIGMA:
            return estimate
        raw = _raw(codec, estimate.float())
        have = _rms_db(codec, raw)
        wanted, open_ = asked.to(have.device)[: have.shape[-1]], mask.to(have.device)[: have.shape[-1]]
        gain_db = (wanted - have[:, : wanted.shape[-1]]).clamp(-MAX_CUT_DB, MAX_BOOST_DB) * open_
        if segments is not None:  # a roll: the curve is its hits' ceiling
            gain_db = torch.where(segments.to(have.device)[: gain_db.shape[-1]] > 0, gain_db.clamp(max=0.0), gain_db)
        gain = torch.ones_like(have)
        gain[:, : gain_db.shape[-1]] = 10.0 ** (gain_db / 20.0)
        steered = _from_raw(codec, raw * gain[:, None]).to(estimate.dtype)
        out = estimate.clone()  # the learned channels as the network made them (not clamped by a round trip)
        for part in _exact_channels(codec):
            out[:, part] = steered[:, part]
        return out

    return project


ONE_HIT_RANGE_DB = 60.0
"""A sound asked as one hit is held only where it is within this far of its loudest frame: lower
frames read at that floor (as :func:`engine.eval.metrics.second_rises` reads them), so the noise
of a faded tail, which rises and falls by 10 dB near -80 dBFS in real clips too, is left alone."""


def one_hit_projection(codec: torch.nn.Module, limit_db: float | None, rms: Sequence[tuple[float, float]] | None,
                       frames: int, sample_rate: int) -> Project | None:
    """The steering step for a sound asked as one hit: a function from a batch of clean estimates
    and their noise level to the same estimates whose loudness, after its peak, never rises more
    than ``limit_db`` over the lowest level it has fallen to (frames more than
    :data:`ONE_HIT_RANGE_DB` under the peak read at that floor), at every noise level. Attack, peak
    and decay are the network's, and so is every frame a loudness curve ``rms`` is drawn over (the
    curve says its loudness); only a rise after the peak in the frames left open is turned down, in
    the channels that say the loudness (as :func:`loudness_projection`). ``None`` without a limit or
    on a codec that cannot be steered.

    Why: `latent-fast`'s kicks asked alone came back with a ghost second hit (a click or a second
    thump 100-700 ms after the tail had faded) two times in three, its cymbals one in five, and no
    real one-shot does. Every latent model makes them: `latent-drums`, trained without the shape
    augmentation that gives a fifth of the curve models' clips a copy of themselves 50-400 ms
    later (:func:`engine.data.augment.shape_augment`), in two kicks of five, the curve models in
    one of two to two of three. A real kit hit's curves (shape kit) end where the hit did, and after
    that end the network is as free: a percussion hit in five came back with a second one there. Held while the sound
    forms, the steps after see a decaying sound and fill in its tail; figures in
    ``docs/design-notes.md``, "Ghost second hits"."""
    if limit_db is None or not steerable(codec):
        return None
    limit = float(limit_db)
    drawn = dsp.rms_from_points(rms, frames, _inner(codec).hop, sample_rate)[1] if rms else torch.zeros(frames)

    def project(estimate: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        raw = _raw(codec, estimate.float())
        level = _rms_db(codec, raw)
        floored = torch.maximum(level, level.amax(-1, keepdim=True) - ONE_HIT_RANGE_DB)
        held = limit_reattacks(floored[:, None], floored.new_full((level.shape[0], 1), limit))[:, 0]
        gain = 10.0 ** ((held - floored).clamp(max=0.0) * (1.0 - drawn.to(level)[: level.shape[-1]]) / 20.0)
        steered = _from_raw(codec, raw * gain[:, None]).to(estimate.dtype)
        out = estimate.clone()  # the learned channels as the network made them
        for part in _exact_channels(codec):
            out[:, part] = steered[:, part]
        return out

    return project


QUIET_DB = 40.0
"""Frames this far under a sound's loudest are its silence: what its low sub-bands read there is
an offset (:func:`centre_low_bands`)."""
QUIET_MIN_FRAMES = 16
"""Fewer quiet frames than this (46 ms at 44.1 kHz) say too little to read an offset from."""


def centre_low_bands(codec: torch.nn.Module, latent: torch.Tensor) -> torch.Tensor:
    """``latent`` with each bypass channel (band 0's lowest sub-bands as they are) moved by the
    constant that puts its median over the sound's quiet frames (:data:`QUIET_DB` under its loudest,
    at least :data:`QUIET_MIN_FRAMES` of them) at 0; every other channel as it was. Unchanged on a
    codec without a bypass, or for a sound without that much silence.

    Why: a latent model's sounds carried faint steady tones through their tails, where real ones
    are silent. Each bypass channel is a sub-band signal at the latent frame rate, and a constant in
    one decodes to a tone at a sub-band edge: 344 Hz (sub-bands 1 and 2) or 689 Hz (sub-band 3). The
    network leaves such a constant there (about 2e-4 in raw units on `latent-fast`'s kicks), so 32
    kicks had a narrow peak at 344 or 689 Hz in their 300-700 ms tails at a median -62 dB under
    their loudest spectral bin; with the offset read from their silence and taken out of every
    step's estimate (:func:`centre_projection`), -79 dB (the other peaks left are the learned
    channels', at 1.4-2.8 kHz). Every step, not only the last: the one-hit hold reads the
    estimate's level, and an offset under the faded tail is a floor it measures rises from. Real
    sounds' sub-band signals oscillate about 0 where they are silent, so a real clip's latent moves
    by nothing audible: over the held-out kits' kicks, snares, hats, percussion and cymbals, the
    decoded difference is 60-140 dB under the clip. Read from the silence only: a running mean or median over all frames
    also takes out a kick's first, one-sided thump (15-20 dB under the clip). Figures in
    ``docs/design-notes.md``, "Steady tones in the tails"."""
    if not steerable(codec):
        return latent
    raw = _raw(codec, latent.float())
    level = _rms_db(codec, raw)
    quiet = level < level.amax(-1, keepdim=True) - QUIET_DB
    bypass, _ = _exact_channels(codec)
    low = raw[:, bypass]
    offset = low.masked_fill(~quiet[:, None], float("nan")).nanmedian(-1, keepdim=True).values
    enough = (quiet.sum(-1) >= QUIET_MIN_FRAMES)[:, None, None]
    raw[:, bypass] = low - torch.where(enough, offset, 0.0).nan_to_num(0.0)
    centred = _from_raw(codec, raw)
    out = latent.clone()
    out[:, bypass] = centred[:, bypass].to(latent.dtype)
    return out


def centre_projection(codec: torch.nn.Module) -> Project | None:
    """:func:`centre_low_bands` as a steering step, at every noise level (``None`` on a codec
    without a bypass)."""
    if not steerable(codec):
        return None
    return lambda estimate, sigma: centre_low_bands(codec, estimate)


def envelope_bands(codec: torch.nn.Module) -> int:
    """How many band envelope channels (bands above band 0) the codec's latent has."""
    _, envelope = _exact_channels(codec)
    return envelope.stop - envelope.start


ATTACK_RISE_DB = 20.0
"""A hit starts at the first frame within this far of its loudest (:func:`band_levels_db`)."""
ATTACK_PASSES = 4
"""Turned down, a bright attack lowers the loudest frame its limits are read against; a few passes
settle it where the body carries the loudness (a kick's low band), and every sampling step holds it
again."""


def band_levels_db(codec: torch.nn.Module, latent: torch.Tensor, width: int) -> torch.Tensor:
    """``(B, bands, width)`` dB: each band envelope channel's level (bands above band 0) under the
    sound's loudest frame (:func:`latent_rms_db`), over the ``width`` frames from where the sound's
    hit starts (its first frame within :data:`ATTACK_RISE_DB` of the loudest), as
    :mod:`engine.attacks` measures a hit's attack; frames past the end read -inf."""
    raw = _raw(codec, latent.float())
    return _band_db(codec, raw, attack_frames(codec, raw, width))


def attack_frames(codec: torch.nn.Module, raw: torch.Tensor, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(frame index (B, width), loudest level (B,))``: the ``width`` frames from each sound's hit."""
    level = _rms_db(codec, raw)
    loudest = level.amax(-1)
    start = (level >= loudest[:, None] - ATTACK_RISE_DB).float().argmax(-1)
    return start[:, None] + torch.arange(width, device=raw.device)[None], loudest


def _band_db(codec: torch.nn.Module, raw: torch.Tensor, frames: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    index, loudest = frames
    _, envelope = _exact_channels(codec)
    bands = raw[:, envelope]
    inside = index < bands.shape[-1]
    picked = bands.gather(-1, index.clamp(max=bands.shape[-1] - 1)[:, None].expand(-1, bands.shape[1], -1))
    db = 20.0 * torch.log10(picked.clamp_min(1e-7)) - loudest[:, None, None]
    return db.masked_fill(~inside[:, None], float("-inf"))


def attack_projection(codec: torch.nn.Module, limits: torch.Tensor | None) -> Project | None:
    """The steering step that holds a hit's attack to a real one's brightness: a function from a
    batch of clean estimates and their noise level to the same estimates whose band envelopes, in
    the first frames of the hit (:func:`attack_frames`), are at most ``limits`` (``(bands, frames)``
    dB under the estimate's loudest frame, :mod:`engine.attacks`), at every noise level; only the
    envelope channels over a limit move. ``None`` without limits or on a codec that cannot be
    steered. Why: see :mod:`engine.attacks`."""
    if limits is None or not steerable(codec):
        return None
    _, envelope = _exact_channels(codec)
    width = limits.shape[1]

    def project(estimate: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        raw, moved = _raw(codec, estimate.float()), False
        for _ in range(ATTACK_PASSES):  # turning the attack down can lower the loudest frame it is read against
            frames = attack_frames(codec, raw, width)
            over = (_band_db(codec, raw, frames) - limits.to(raw.device)[None]).clamp_min(0.0)  # (B, bands, width)
            if not bool((over > 0).any()):
                break
            gain = torch.ones_like(raw[:, envelope])
            index = frames[0].clamp(max=gain.shape[-1] - 1)[:, None].expand(-1, gain.shape[1], -1)
            gain.scatter_(-1, index, 10.0 ** (-over / 20.0))
            raw[:, envelope], moved = raw[:, envelope] * gain, True
        if not moved:
            return estimate
        out = estimate.clone()
        out[:, envelope] = _from_raw(codec, raw)[:, envelope].to(estimate.dtype)
        return out

    return project


SHARE_RANGE_DB = 60.0
"""A frame this far under the estimate's loudest is left as it is by :func:`share_projection`:
its shares are the noise of a faded tail."""
SHARE_GAIN_DB = (-40.0, 24.0)
"""How far one step may move a band's share (a band the network left nearly empty is not lifted
out of its noise floor)."""


def share_projection(codec: torch.nn.Module, shares: torch.Tensor | None, strength: float) -> Project | None:
    """The steering step that gives each sound its kit hit's spectrum over time: a function from a
    batch of clean estimates and their noise level to the same estimates whose bands' shares of
    each frame's power (:func:`band_powers`, in dB) move ``strength`` of the way to ``shares``
    (``(B, bands, frames)`` dB, :mod:`engine.band_shares`; NaN in a frame it leaves open), the
    frame's power kept, in every frame within :data:`SHARE_RANGE_DB` of the loudest; the exact
    channels are scaled, the learned ones kept (as :func:`loudness_projection`), and at
    :data:`STEER_MIN_SIGMA` and under, unchanged.
    ``None`` without shares, at strength 0, or on a codec that cannot be steered. Why: see
    :mod:`engine.band_shares`."""
    if shares is None or not strength or not steerable(codec):
        return None
    inner = _inner(codec)
    bypass, envelope = _exact_channels(codec)

    def project(estimate: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        if float(torch.as_tensor(sigma).max()) <= STEER_MIN_SIGMA:
            return estimate
        raw = _raw(codec, estimate.float())
        power = band_powers(codec, raw)
        frames = min(power.shape[-1], shares.shape[-1])
        power, wanted = power[..., :frames], shares.to(power)[..., :frames]
        total = power.sum(1, keepdim=True)
        level = 10.0 * torch.log10(total.clamp_min(1e-20))
        heard = (level >= level.amax(-1, keepdim=True) - SHARE_RANGE_DB) & torch.isfinite(wanted).all(1, keepdim=True)
        have = 10.0 * torch.log10(power.clamp_min(1e-20) / total.clamp_min(1e-20))
        gain_db = (float(strength) * (wanted.nan_to_num(0.0) - have)).clamp(*SHARE_GAIN_DB) * heard.float()
        moved = power * 10.0 ** (gain_db / 10.0)
        moved = moved * total / moved.sum(1, keepdim=True).clamp_min(1e-20)  # the frame's power as it was
        gain = torch.where(power > 1e-20, (moved / power.clamp_min(1e-20)).sqrt(), torch.ones_like(power))
        low = raw[:, bypass, :frames].reshape(raw.shape[0], inner.channels, inner.low_bypass, frames)
        raw[:, bypass, :frames] = (low * gain[:, None, None, 0]).reshape(raw.shape[0], -1, frames)
        raw[:, envelope, :frames] = raw[:, envelope, :frames] * gain[:, 1:]
        steered = _from_raw(codec, raw).to(estimate.dtype)
        out = estimate.clone()  # the learned channels as the network made them
        for part in (bypass, envelope):
            out[:, part] = steered[:, part]
        return out

    return project


def _frame(ms: float, hop: int, sample_rate: int) -> int:
    """The latent frame a time in ms falls on (frame i starts at hop i)."""
    return int(round(ms / (hop / sample_rate * 1000.0)))


def onset_windows(onsets: Sequence[float], rms: Sequence[tuple[float, float]] | None, frames: int, hop: int,
                  sample_rate: int) -> list[tuple[int, int]]:
    """``(first dipped frame, hit frame)`` of each drawn hit after the first that needs making: not
    one the drawn loudness already rises into by :data:`ONSET_RISE_DB`, not past the end."""
    asked = dsp.rms_from_points(rms, frames, hop, sample_rate)[0] if rms else None
    times = sorted(float(t) for t in onsets)
    windows = []
    for before, time in zip(times, times[1:]):
        hit = _frame(time, hop, sample_rate)
        start = max(0, _frame(time - min(ONSET_DIP_MS, 0.5 * (time - before)), hop, sample_rate))
        if hit - start < 1 or hit >= frames:
            continue
        if asked is not None and float(asked[hit: hit + ONSET_HIT_FRAMES].max()
                                       - asked[start:hit].min()) >= ONSET_RISE_DB:
            continue
        windows.append((start, hit))
    return windows


def roll_segments(onsets: Sequence[float] | None, rms: Sequence[tuple[float, float]] | None, frames: int,
                  hop: int, sample_rate: int) -> torch.Tensor | None:
    """``(frames,)`` int: 0 outside a drawn roll (:data:`ROLL_HITS` hits or more), k = 1, 2, ... over
    its k-th hit (from the hit, or its dip, to the next one's dip; the last one median gap past its
    hit, or on until the drawn line falls :data:`ONSET_RISE_DB` under its level there, whichever is
    later), when the hit steering makes hits there (:func:`onset_windows`), else None. Over a roll
    the drawn level is its hits' level, not the level of every frame: loudness steering only turns
    it down there (:func:`loudness_projection`), and the envelope shaper puts each segment's loudest
    frame on the curve with one gain (``dsp.gain_onto_curve``), so each hit keeps its own decay.
    Why: a flat curve under eight drawn hits says how loud the roll is, not that the sound never
    falls between its hits; held to the curve frame by frame, `latent-fast`'s hat rolls came back as
    steady noise with shallow dips (``bench/bench_rolls.py``: 28 % of the hits found, every roll
    missing more than one; ``docs/design-notes.md``, "Rolls held flat")."""
    if not onsets or len(onsets) < ROLL_HITS:
        return None
    windows = onset_windows(onsets, rms, frames, hop, sample_rate)
    if not windows:
        return None
    hits = [_frame(t, hop, sample_rate) for t in sorted(float(t) for t in onsets)]
    gap = max(1, sorted(b - a for a, b in zip(hits, hits[1:]))[(len(hits) - 2) // 2])
    last = windows[-1][1]
    end = min(frames, last + gap)
    if rms:  # the last hit rings on while the line stays at its level, until the drawn fade
        asked = dsp.rms_from_points(rms, frames, hop, sample_rate)[0]
        fallen = torch.nonzero(asked[last:] < float(asked[last]) - ONSET_RISE_DB).flatten()
        end = max(end, min(frames, last + (int(fallen[0]) if len(fallen) else frames)))
    starts = [max(0, hits[0]), *(start for start, _ in windows)]
    ends = [*starts[1:], end]
    segments = torch.zeros(frames, dtype=torch.long)
    for k, (begin, end) in enumerate(zip(starts, ends), start=1):
        segments[begin:end] = k
    return segments


def hit_frames(onsets: Sequence[float] | None, rms: Sequence[tuple[float, float]] | None, frames: int, hop: int,
               sample_rate: int) -> torch.Tensor | None:
    """``(frames,)`` bool: the frames :func:`onset_projection` shapes (each made hit's dip and the
    attack laid over it), or None when it makes no hit. The envelope shaper holds its gain over
    them (``dsp.match_loudness``'s ``hold``): measured there, the dip reads as a hole under a flat
    drawn curve and the attack as a bump over it, and the shaper filled the one and flattened the
    other, so a hat roll drawn at a flat level came back as steady noise (:func:`roll_segments`)."""
    if not onsets or len(onsets) < 2:
        return None
    windows = onset_windows(onsets, rms, frames, hop, sample_rate)
    if not windows:
        return None
    held = torch.zeros(frames, dtype=torch.bool)
    for start, hit in windows:
        held[start: max(hit, hit - ONSET_LEAD_FRAMES + ONSET_ATTACK_FRAMES)] = True
    return held


def onset_projection(codec: torch.nn.Module, onsets: Sequence[float] | None, rms: Sequence[tuple[float, float]] | None,
                     frames: int, sample_rate: int) -> Project | None:
    """The steering step that makes each drawn hit after the first (see the module's docstring): a
    function from a batch of clean estimates and their noise level to the same estimates with a dip
    and an attack at each hit that needs one, at every noise level. ``None`` when no hit needs
    making or the codec cannot be steered."""
    if not onsets or len(onsets) < 2 or not steerable(codec):
        return None
    hop = _inner(codec).hop
    windows = onset_windows(onsets, rms, frames, hop, sample_rate)
    if not windows:
        return None
    first = _frame(min(onsets), hop, sample_rate)
    attack = ONSET_ATTACK_FRAMES
    roll = len(onsets) >= ROLL_HITS
    _, envelope = _exact_channels(codec)
    dips = []  # each window's gain under its hit: half the dip on its first frame, all of it after
    for start, hit in windows:
        shape = torch.full((hit - start,), -ONSET_DIP_DB)
        shape[0] = -ONSET_DIP_DB / 2
        dips.append(10.0 ** (shape / 20.0))

    def project(estimate: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        raw = _raw(codec, estimate.float())
        bands = raw[:, envelope].clone()
        level = _rms_db(codec, raw)
        for (start, hit), dip in zip(windows, dips):  # the dips first: a later dip never cuts an earlier attack
            cap = bands[:, :, hit: hit + ONSET_HIT_FRAMES].amax(-1, keepdim=True) * dip
            bands[:, :, start:hit] = torch.minimum(bands[:, :, start:hit], cap)
        template = bands[:, :, first: first + attack].clone()
        for _, hit in windows:
            at = hit - ONSET_LEAD_FRAMES
            if hit <= first + attack or hit + attack > bands.shape[-1]:
                continue
            relative = (level[:, hit: hit + attack].amax(-1) - level[:, first: first + attack].amax(-1)).clamp(max=0.0)
            gain = 10.0 ** ((relative + ONSET_ATTACK_LIFT_DB) / 20.0)
            if roll:  # a roll: every hit a strike, even where the first has little to copy
                power = template.pow(2).sum(1).amax(-1) * gain ** 2
                floor = 10.0 ** ((level[:, hit: hit + attack].amax(-1) - ROLL_ATTACK_FLOOR_DB) / 10.0)
                gain = gain * (floor / power.clamp_min(1e-20)).clamp_min(1.0).sqrt()
            bands[:, :, at: at + attack] = torch.maximum(bands[:, :, at: at + attack], template * gain[:, None, None])
        made = raw.clone()
        made[:, envelope] = bands
        steered = _from_raw(codec, made).to(estimate.dtype)
        out = estimate.clone()
        out[:, envelope] = steered[:, envelope]
        return out

    return project


def chain(*projections: Project | None) -> Project | None:
    """One steering step of several, in order (``None`` ones left out; ``None`` if all are)."""
    steps = [p for p in projections if p is not None]
    if not steps:
        return None
    if len(steps) == 1:
        return steps[0]

    def project(estimate: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        for step in steps:
            estimate = step(estimate, sigma)
        return estimate

    return project
