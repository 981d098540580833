"""Signals measured on audio, in one place for training, the UI and the evaluation alike.

A loudness curve drawn in the studio, the one measured on a training clip and the one the
evaluation compares against must mean the same thing, so each signal has exactly one
implementation here:

- the mel spectrogram (result plots, evaluation features);
- **loudness**: the RMS envelope in dBFS (mean power over channels, 11.6 ms window), floored at
  -80 dB, one value per latent frame (``hop`` samples);
- **onsets**: an onset-strength curve (spectral flux of the log magnitude, half-wave rectified)
  and the onset times in ms picked from it (``scipy.signal.find_peaks``);
- the same two controls built from what a person draws: RMS points ``(ms, dB)`` joined by
  straight lines in dB, and a list of onset times, rendered at the latent frame rate.

Everything takes ``(..., channels, samples)`` audio as torch tensors and returns torch tensors
(or plain lists of ms); nothing here knows about models.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from scipy.signal import find_peaks

N_FFT, HOP = 1024, 256
_EPS = 1e-12
FLOOR_DB = -80.0          # loudness floor: silence reads -80 dBFS
RMS_WINDOW = 512          # samples (11.6 ms at 44.1 kHz) per loudness value
ONSET_FFT = 1024          # STFT size of the onset-strength curve
ONSET_MIN_GAP_MS = 30.0   # two onsets closer than this are one hit (a flam reads as one)
ONSET_THRESHOLD = 0.3     # an onset's flux must reach this share of the clip's strongest onset...
ONSET_PROMINENCE = 0.2    # ...and stand this far (share of the strongest) above its surroundings
ONSET_FLOOR_DB = -50.0    # ...where the sound is louder than this (no onsets in a decaying tail's noise)
ONSET_WIDTH_MS = 3.0      # standard deviation of the bump an onset time becomes in a control curve


# --------------------------------------------------------------------------- mel spectrogram

def hz_to_mel(hz: torch.Tensor | float) -> torch.Tensor:
    """HTK mel scale: ``2595 log10(1 + f / 700)``."""
    return 2595.0 * torch.log10(1.0 + torch.as_tensor(hz, dtype=torch.float64) / 700.0)


def mel_to_hz(mel: torch.Tensor | float) -> torch.Tensor:
    return 700.0 * (10.0 ** (torch.as_tensor(mel, dtype=torch.float64) / 2595.0) - 1.0)


def _triangles(edges: torch.Tensor, sample_rate: int, n_fft: int) -> torch.Tensor:
    """Triangular filters between consecutive ``edges`` (Hz, float64) over the FFT bins, peak 1.

    A filter narrower than one FFT bin gets weight 1 on the bin nearest its centre, so no band
    is empty."""
    bins = torch.linspace(0.0, sample_rate / 2.0, n_fft // 2 + 1, dtype=torch.float64)
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (bins - lower) / (centre - lower)
    falling = (upper - bins) / (upper - centre)
    bank = torch.clamp(torch.minimum(rising, falling), min=0.0)
    empty = bank.sum(dim=1) == 0
    if empty.any():
        nearest = (bins[None, :] - centre[empty]).abs().argmin(dim=1)
        bank[empty.nonzero().squeeze(1), nearest] = 1.0
    return bank.float()


@lru_cache(maxsize=16)
def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int, f_min: float = 20.0,
                   f_max: float | None = None) -> torch.Tensor:
    """``(n_mels, n_fft // 2 + 1)`` triangular filters, evenly spaced on the HTK mel scale.

    Peak 1 per filter (no area normalisation); no band is empty (see :func:`_triangles`).
    """
    f_max = sample_rate / 2.0 if f_max is None else float(f_max)
    if not 0.0 <= f_min < f_max <= sample_rate / 2.0:
        raise ValueError(f"need 0 <= f_min < f_max <= {sample_rate / 2}, got {f_min}, {f_max}")
    mels = torch.linspace(float(hz_to_mel(f_min)), float(hz_to_mel(f_max)), n_mels + 2, dtype=torch.float64)
    return _triangles(mel_to_hz(mels), sample_rate, n_fft)


@lru_cache(maxsize=16)
def log_filterbank(sample_rate: int, n_fft: int, bands: int, f_min: float, f_max: float) -> torch.Tensor:
    """``(bands, n_fft // 2 + 1)`` triangular filters evenly spaced in log frequency."""
    f_max = min(f_max, sample_rate / 2.0)
    edges = torch.logspace(math.log10(f_min), math.log10(f_max), bands + 2, dtype=torch.float64)
    return _triangles(edges, sample_rate, n_fft)


def power_spectrogram(audio: torch.Tensor, n_fft: int = N_FFT, hop_length: int = HOP) -> torch.Tensor:
    """``(..., n_fft // 2 + 1, frames)`` power of a Hann STFT, scaled so a full-scale sine's peak
    bin is 1 (0 dB). Zero padding at the edges (no energy is invented before the onset)."""
    shape = audio.shape
    flat = audio.reshape(-1, shape[-1]).float()
    window = torch.hann_window(n_fft, dtype=flat.dtype, device=flat.device)
    spec = torch.stft(flat, n_fft, hop_length, window=window, center=True, pad_mode="constant",
                      return_complex=True)
    power = spec.real.square() + spec.imag.square()
    power = power / (window.sum() / 2.0) ** 2
    return power.reshape(*shape[:-1], *power.shape[-2:])


def mel_spectrogram(audio: torch.Tensor, sample_rate: int, n_mels: int = 64, n_fft: int = N_FFT,
                    hop_length: int = HOP, f_min: float = 20.0, f_max: float | None = None,
                    log: bool = True, floor_db: float = -100.0) -> torch.Tensor:
    """Mel spectrogram of ``audio`` shaped ``(..., N)`` -> ``(..., n_mels, N // hop_length + 1)``.

    ``log=True`` gives dB (10 log10 of power; 0 dB = a full-scale sine filling a band's peak bin)
    floored at ``floor_db``; ``log=False`` gives linear power. Frame ``i`` is centred on sample
    ``i * hop_length``. Works on any leading shape (a clip ``(C, N)``, a batch ``(B, C, N)``).
    """
    if audio.shape[-1] < 2:
        raise ValueError(f"audio needs at least 2 samples, got shape {tuple(audio.shape)}")
    power = power_spectrogram(audio, n_fft, hop_length)
    bank = mel_filterbank(int(sample_rate), n_fft, n_mels, float(f_min), None if f_max is None else float(f_max))
    mel = torch.matmul(bank.to(power.device), power)
    if not log:
        return mel
    return (10.0 * torch.log10(mel + _EPS)).clamp_min(floor_db)


# --------------------------------------------------------------------------- loudness


def frame_count(samples: int, hop: int) -> int:
    """Frames of a signal measured every ``hop`` samples: one per started hop (as the codec's latent)."""
    return max(1, -(-int(samples) // int(hop)))


def rms_db(audio: torch.Tensor, hop: int, window: int = RMS_WINDOW, frames: int | None = None) -> torch.Tensor:
    """``(..., frames)`` RMS in dBFS of ``(..., channels, samples)`` audio, floored at -80 dB.

    Frame ``i`` covers the ``window`` samples centred on the middle of hop ``i`` (samples
    ``i*hop .. (i+1)*hop``), so it lines up with latent frame ``i``. Power is averaged over the
    channels (a full-scale sine reads -3 dBFS in mono and stereo alike). ``frames`` pads with
    silence or cuts to that many frames.
    """
    power = audio.float().square().mean(dim=-2)  # (..., samples)
    shape = power.shape[:-1]
    flat = power.reshape(-1, 1, power.shape[-1])
    frames = frame_count(power.shape[-1], hop) if frames is None else int(frames)
    left = (window - hop) // 2
    right = frames * hop + (window - hop) - left - power.shape[-1]
    flat = F.pad(flat, (left, max(right, 0)))
    mean = F.avg_pool1d(flat, window, stride=hop)[..., :frames]
    db = (10.0 * torch.log10(mean + _EPS)).clamp_min(FLOOR_DB)
    return db.reshape(*shape, frames)


# --------------------------------------------------------------------------- onsets


def onset_strength(audio: torch.Tensor, hop: int, frames: int | None = None, n_fft: int = ONSET_FFT) -> torch.Tensor:
    """``(..., frames)`` spectral flux of the mono mix: the summed rise of log magnitude per bin
    from the frame before (silence before the first), one value per ``hop``, unnormalised.

    Frame ``i`` is the STFT frame whose window starts at sample ``i*hop - n_fft/2 + hop``: its
    flux peaks on the hop where the energy arrives, so an onset at sample s reads at frame
    ``s // hop``.
    """
    mono = audio.float().mean(dim=-2)
    shape = mono.shape[:-1]
    flat = mono.reshape(-1, mono.shape[-1])
    frames = frame_count(flat.shape[-1], hop) if frames is None else int(frames)
    # window for frame i ends at the end of hop i: it sees the hop where the energy arrives
    flat = F.pad(flat, (n_fft - hop, frames * hop - flat.shape[-1] + hop))
    window = torch.hann_window(n_fft, device=flat.device)
    spec = torch.stft(flat, n_fft, hop, window=window, center=False, return_complex=True).abs()
    logmag = torch.log1p(100.0 * spec)
    rise = torch.diff(logmag, dim=-1, prepend=torch.zeros_like(logmag[..., :1])).clamp_min(0.0).sum(dim=-2)
    return rise[..., :frames].reshape(*shape, frames)


def onset_times(audio: torch.Tensor, sample_rate: int, hop: int = 128) -> list[float]:
    """Onset times in ms of one sound ``(channels, samples)``: peaks of :func:`onset_strength`
    that reach a share of the strongest, stand out from their surroundings, are at least 30 ms
    apart and lie where the sound is above -50 dBFS."""
    if audio.dim() != 2:
        raise ValueError(f"expected one sound (channels, samples), got shape {tuple(audio.shape)}")
    flux = onset_strength(audio, hop).numpy().astype(np.float64)
    loud = rms_db(audio, hop, frames=len(flux)).numpy()
    top = float(flux.max()) if flux.size else 0.0
    if top <= 1e-6:
        return []
    distance = max(1, int(round(ONSET_MIN_GAP_MS * sample_rate / 1000.0 / hop)))
    peaks, _ = find_peaks(np.concatenate([[0.0], flux]), height=ONSET_THRESHOLD * top,
                          prominence=ONSET_PROMINENCE * top, distance=distance)
    peaks = peaks - 1  # the leading zero lets a hit in frame 0 count as a peak
    ahead = min(len(loud) - 1, 4)
    keep = [p for p in peaks if loud[p: p + ahead + 1].max() > ONSET_FLOOR_DB]
    return [round(float(p) * hop / sample_rate * 1000.0, 2) for p in keep]


# --------------------------------------------------------------------------- controls from drawings


def frame_times_ms(frames: int, hop: int, sample_rate: int) -> torch.Tensor:
    """The time (ms) of each frame's start: frame i is hop i."""
    return torch.arange(frames, dtype=torch.float64) * hop / sample_rate * 1000.0


def rms_from_points(points: Sequence[tuple[float, float]], frames: int, hop: int,
                    sample_rate: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(level dB, mask)``, each ``(frames,)``: the points joined by straight lines in dB.

    Frames before the first point or after the last are left open (mask 0): a curve drawn over
    the first 300 ms of a 1 s sound says nothing about the rest. One point holds its level over
    one frame.
    """
    times = frame_times_ms(frames, hop, sample_rate).numpy()
    xs = np.array([p[0] for p in points], dtype=np.float64)
    ys = np.array([p[1] for p in points], dtype=np.float64)
    level = np.interp(times, xs, ys)
    frame_ms = hop / sample_rate * 1000.0
    mask = (times >= xs[0] - frame_ms / 2) & (times <= xs[-1] + frame_ms / 2)
    if not mask.any():  # a single point between two frame starts: its nearest frame
        mask[int(np.abs(times - xs[0]).argmin())] = True
    return torch.from_numpy(level).float(), torch.from_numpy(mask).float()


def onset_curve(times_ms: Sequence[float], frames: int, hop: int, sample_rate: int,
                width_ms: float = ONSET_WIDTH_MS) -> torch.Tensor:
    """``(frames,)`` in [0, 1]: a Gaussian bump (1 at its centre) at each onset time."""
    times = frame_times_ms(frames, hop, sample_rate)
    curve = torch.zeros(frames, dtype=torch.float64)
    for onset in times_ms:
        curve = torch.maximum(curve, torch.exp(-0.5 * ((times - float(onset)) / width_ms) ** 2))
    return curve.float()


# --------------------------------------------------------------------------- a sound onto a drawn curve

SHAPER_HOP = 128
"""Samples per gain value of the envelope shaper (:func:`match_loudness`; the latent frame rate)."""
SHAPER_SMOOTH_MS = 20.0
"""The envelope shaper's gain is smoothed over this long. Why not shorter: a curve measured on a
real sound (a reference, a vocal take) wiggles by a few dB from frame to frame, and a gain that
follows within 8 ms lifts every bin at once, which the onset detector (and the ear) takes for a
new hit: on `latent-fast`'s held-out curves, spurious onsets per sound .069 before the shaper,
.225 after it at 8 ms, .14 at 20 ms and .09 at 30 ms, for a loudness error of 0.40, 0.59 and
0.78 dB (``docs/design-notes.md``, "Rolls held flat"). Around a drawn hit it follows within
:data:`SHAPER_HIT_SMOOTH_MS`, so a hit the curve rises into keeps its attack."""
SHAPER_HIT_SMOOTH_MS = 8.0
SHAPER_HIT_SPAN_MS = (10.0, 15.0)
"""From this long before a drawn hit to this long after, the shaper's gain is smoothed over
:data:`SHAPER_HIT_SMOOTH_MS` only."""


def match_loudness(audio: torch.Tensor, points, sample_rate: int, hop: int = SHAPER_HOP, max_boost_db: float = 12.0,
                   max_cut_db: float = 60.0, smooth_ms: float = SHAPER_SMOOTH_MS, passes: int = 2,
                   hold: torch.Tensor | None = None, segments: torch.Tensor | None = None,
                   onsets: Sequence[float] | None = None) -> torch.Tensor:
    """``audio`` ``(C, N)`` under a gain envelope that brings its RMS onto the drawn curve.

    Where the curve is drawn, the gain is the drawn level minus the measured one, at most
    ``max_boost_db`` up (a quiet tail is not pulled out of the noise) and ``max_cut_db`` down,
    smoothed over ``smooth_ms`` (around each drawn hit in ``onsets``, ms, over
    :data:`SHAPER_HIT_SMOOTH_MS`) and interpolated between frame centres so it never clicks;
    before the curve it is 0 dB, and after it a cut holds (:func:`held_past_curve`). Two passes,
    because the RMS window (11.6 ms) spreads a gain change over its neighbours. This is the
    studio's envelope shaper, applied after sampling: the model's own following is measured
    without it (engine/eval/controls.py).

    Drawn hits the curve does not rise into (a roll at a flat level, made by the hit steering) are
    shaped as hits: over ``segments`` (``(frames,)`` int, ``engine.steering.roll_segments``) each
    hit takes one gain (:func:`gain_onto_curve`), and ``hold`` (``(frames,)`` bool,
    ``engine.steering.hit_frames``) marks the dip and attack before each, whose gain is carried
    straight across from the frames on either side; otherwise the shaper fills the dip and flattens
    the attack, and the roll comes back as steady noise.
    """
    out = audio.float()
    frames = frame_count(out.shape[-1], hop)
    asked, mask = rms_from_points(points, frames, hop, sample_rate)
    near = None  # the frames around the drawn hits, where the gain follows quickly
    if onsets:
        times = frame_times_ms(frames, hop, sample_rate)
        before, after = SHAPER_HIT_SPAN_MS
        near = torch.zeros(frames, dtype=torch.bool)
        for onset in onsets:
            near |= (times >= float(onset) - before) & (times <= float(onset) + after)
    drawn = torch.nonzero(mask > 0).flatten()
    last = int(drawn[-1]) if drawn.numel() else None  # the curve's last drawn frame: the same every pass
    for _ in range(passes):
        measured = rms_db(out, hop, frames=frames)
        gain = held_past_curve(gain_onto_curve(asked, measured, segments).clamp(-max_cut_db, max_boost_db) * mask,
                               last)
        gain = gain if hold is None else held_across(gain, hold)
        smooth = smoothed(gain, smooth_ms, hop, sample_rate)
        if near is not None:
            smooth = torch.where(near, smoothed(gain, SHAPER_HIT_SMOOTH_MS, hop, sample_rate), smooth)
        out = apply_gain_db(out, smooth, hop, sample_rate, smooth_ms=0.0)
    return out


def held_past_curve(gain: torch.Tensor, last: int | None) -> torch.Tensor:
    """``gain`` (``(..., frames)`` dB, 0 where the curve is not drawn) with the cut of the curve's
    last drawn frame ``last`` carried on to the end of the sound; a boost there is not (``last``
    None: no frame is drawn, the gain is returned as it is).

    Why: a curve says nothing about what comes after its last point, but a gain that springs back
    to 0 dB there does: it brings the sound back up. Every curve measured on a real clip ends by
    falling to the -80 dB floor where the clip goes quiet, and a sound the network made longer
    (a cymbal still ringing at -45 dBFS past a choked one's cut) came back 35 dB louder a few
    frames after the curve stopped, which the ear and the onset detector hear as a second hit
    (``docs/design-notes.md``, "A cut held past the curve's end"). A boost is dropped instead of
    held: it would lift the rest of a quiet tail out of its noise, and a level falling back
    makes no hit."""
    if last is None:
        return gain
    tail = gain[..., last:last + 1].clamp(max=0.0).expand(*gain.shape[:-1], gain.shape[-1] - last - 1)
    return torch.cat([gain[..., :last + 1], tail], dim=-1)


def smoothed(values: torch.Tensor, smooth_ms: float, hop: int, sample_rate: int) -> torch.Tensor:
    """``(frames,)`` ``values`` averaged over ``smooth_ms`` (an odd number of frames, edges held)."""
    width = max(1, int(round(smooth_ms / 1000.0 * sample_rate / hop)) | 1)
    if width == 1:
        return values.float()
    return F.avg_pool1d(F.pad(values.float()[None, None], (width // 2, width // 2), mode="replicate"), width,
                        stride=1)[0, 0]


def gain_onto_curve(asked: torch.Tensor, measured: torch.Tensor, segments: torch.Tensor | None = None) -> torch.Tensor:
    """The dB that put ``measured`` (``(..., frames)``) on ``asked`` (``(frames,)``): frame by frame,
    except over each segment ``k > 0`` of ``segments`` (``(frames,)`` int, or None for none), which
    takes the one gain that puts its loudest measured frame on the curve there, so what it holds
    (a hit and its decay) keeps its shape."""
    gain = asked - measured
    if segments is None:
        return gain
    segments = segments[: gain.shape[-1]].to(gain.device)
    for k in segments.unique().tolist():
        if k <= 0:
            continue
        where = torch.nonzero(segments == k).flatten()
        peak = measured[..., where].argmax(-1, keepdim=True)
        at = where[peak]
        chosen = asked[at] - torch.gather(measured, -1, at)
        gain[..., where] = chosen.expand(*gain.shape[:-1], len(where))
    return gain


def held_across(values: torch.Tensor, hold: torch.Tensor) -> torch.Tensor:
    """``(frames,)`` ``values`` with the frames ``hold`` marks replaced by the straight line between
    the nearest frames it leaves on either side (the nearest one's value at an end); unchanged
    where it marks nothing or everything."""
    hold = hold[: values.shape[-1]].to(torch.bool)
    kept = torch.nonzero(~hold).flatten()
    if len(kept) in (0, values.shape[-1]):
        return values
    every = torch.arange(values.shape[-1], dtype=torch.float64).numpy()
    line = np.interp(every, kept.double().numpy(), values[kept].double().numpy())
    return torch.where(hold, torch.from_numpy(line).to(values), values)


def apply_gain_db(audio: torch.Tensor, gain_db: torch.Tensor, hop: int, sample_rate: int,
                  smooth_ms: float = 8.0) -> torch.Tensor:
    """``audio`` ``(C, N)`` under a gain of ``gain_db`` per frame (one per ``hop`` samples), smoothed over
    ``smooth_ms`` and interpolated between frame centres, so it never clicks."""
    frames = gain_db.shape[-1]
    gain = smoothed(gain_db, smooth_ms, hop, sample_rate)
    centres = (torch.arange(frames, dtype=torch.float64) + 0.5) * hop
    positions = torch.arange(audio.shape[-1], dtype=torch.float64)
    per_sample = np.interp(positions.numpy(), centres.numpy(), gain.double().numpy())
    return audio * torch.from_numpy(10.0 ** (per_sample / 20.0)).to(audio)


WIDTH_MAX_LIFT_DB = 6.0
"""A narrowed frame is lifted back to its loudness by at most this much (folding two decorrelated
channels loses 3 dB; only channels near opposite phase lose more, and those are not lifted out of
the silence they fold into)."""


def stereo_width(audio: torch.Tensor, width: float, sample_rate: int, hop: int = 128) -> torch.Tensor:
    """``(..., 2, N)`` audio with its side (L - R) scaled by ``width`` about its mid (L + R), 0 mono,
    1 unchanged, then lifted frame by frame back to the loudness it had (:func:`rms_db`, at most
    :data:`WIDTH_MAX_LIFT_DB`); other channel counts unchanged.

    Why: the latent models' codec decodes the bands above 690 Hz of each channel on its own, so a
    mono hit comes back as two decorrelated channels: round-tripped, the held-out kits' mono snares
    have their side 2-19 dB under their mid and their hats 0-6 dB, and the generated snares and hats
    sit at a median -3 and -1.5 dB, where 56-76 % of the training kits' kicks, snares, hats and
    percussion are mono (``docs/design-notes.md``, "Stereo width"). Why the lift: folded, such a
    snare loses up to 3 dB where its side was strong (its highs), and a drawn loudness curve the
    sound was steered onto would be missed by that much."""
    if audio.shape[-2] != 2 or width == 1.0:
        return audio
    source = audio.float()
    mid = source.mean(dim=-2, keepdim=True)
    side = (source[..., :1, :] - source[..., 1:, :]) * (0.5 * float(width))
    narrowed = torch.cat([mid + side, mid - side], dim=-2)
    flat, shaped = source.reshape(-1, 2, source.shape[-1]), narrowed.reshape(-1, 2, source.shape[-1])
    lift = (rms_db(flat, hop) - rms_db(shaped, hop)).clamp(0.0, WIDTH_MAX_LIFT_DB)
    out = torch.stack([apply_gain_db(sound, gain, hop, sample_rate) for sound, gain in zip(shaped, lift)])
    return out.reshape(audio.shape).to(audio.dtype)


def side_mid_db(audio: torch.Tensor) -> torch.Tensor:
    """``(B,)`` dB: each stereo sound's (``(B, 2, N)``) side (L - R) energy over its mid's (L + R),
    over its whole length, as the drum features read it (``engine.eval.features``)."""
    source = audio.float()
    side = (source[:, 0] - source[:, 1]).square().mean(-1)
    mid = (source[:, 0] + source[:, 1]).square().mean(-1)
    return 10.0 * torch.log10((side + 1e-10) / (mid + 1e-10))


def match_width(audio: torch.Tensor, wanted_db: torch.Tensor, sample_rate: int) -> torch.Tensor:
    """``(B, 2, N)`` audio with each sound's side narrowed (:func:`stereo_width`) until its side/mid
    ratio (:func:`side_mid_db`) is ``wanted_db`` (``(B,)``, a dealt clip's), never widened: the
    codec's decorrelated channels are no stereo image to lift further. Other channel counts unchanged.

    Why: the latent models' codec decodes each channel's bands above 690 Hz on its own, so every
    `latent-drums` cymbal (at width 1, as made) came back about one standard deviation of the kits'
    wider than the training cymbals on average, and all at nearly the same width (their spread in
    that feature 0.13 of the training cymbals'), where a kit's cymbals run from mono to wide.
    Narrowed to their dealt clips', 64 cymbals a seed set reached the held-out kits' with coverage
    .84 of the real floor instead of .67 (``docs/design-notes.md``, "A kit hit's spectrum over time")."""
    if audio.shape[-2] != 2:
        return audio
    widths = (10.0 ** ((wanted_db.float().cpu() - side_mid_db(audio).cpu()) / 20.0)).clamp(0.0, 1.0)
    return torch.cat([stereo_width(audio[i:i + 1], float(w), sample_rate) for i, w in enumerate(widths)])
