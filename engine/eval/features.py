"""Audio features of drum one-shots: a fixed-length vector per clip, in torch, over a batch.

:func:`features` turns ``(B, C, N)`` audio (any rate; built for 44.1 kHz, ~0.75 s clips) into a
``(B, FEATURE_DIM)`` float32 matrix; :func:`feature_names` names every column. Everything is
vectorised over the batch and runs on the CPU in milliseconds per clip. The vector is (mostly)
level-invariant: the spectral part is measured relative to the clip's own loudest point, and the
absolute level is three columns of its own (peak, RMS, crest factor), so a soft and a hard hit of
the same drum land close together.

The columns, computed on the mono mix unless said otherwise:

- ``mel``: a 20-band log-mel spectrogram (:func:`mel_spectrogram`, 23 ms window, 5.8 ms hop) in dB
  relative to the clip's loudest bin, floored at -80 dB, summarised by the mean and the standard
  deviation over time of each band in three time segments measured from the start of the clip
  (the data set is onset aligned): attack 0-30 ms, body 30-150 ms, tail 150 ms to the end.
  20 x 3 x 2 = 120 columns.
- ``spectrum``: the whole clip's energy in 24 log-spaced bands from 30 Hz to 18 kHz (93 ms
  window: fine enough at the low end to tell a 55 Hz kick from an 90 Hz tom), dB relative to
  the loudest band. 24 columns.
- ``band decay``: the same bands grouped in 8 (~1.1 octave each); per group the time from its
  loudest frame until it has fallen 10 dB and 30 dB (log10(ms + 1)). 16 columns.
- ``low pitch``: the strongest frequency below 1.2 kHz (log10 Hz) and the share of the energy
  below 1.2 kHz (dB) in the frames at 20, 60, 120, 250 and 450 ms: the pitch glide of a kick,
  the steady pitch of a tom. 10 columns.
- ``spectral``: spectral centroid and 85 % roll-off (log10 Hz) and flatness (dB) per frame,
  averaged over each segment and the whole clip, each frame weighted by its energy (a silent
  segment takes the whole clip's value). 12 columns.
- ``envelope``: from the RMS envelope (11.6 ms frames) in log10(ms + 1): time to the peak, decay
  time from the peak down to -20 dB and to -40 dB below it (the rest of the clip if it never gets
  there), temporal centroid. 4 columns.
- ``zcr``: zero-crossing rate (log10(1 + crossings per second)) per segment and overall. 4 columns.
- ``level``: peak dBFS (over channels), RMS dBFS, crest factor dB; ``stereo``: side/mid energy
  ratio in dB. 4 columns.
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch

FEATURE_VERSION = 1
"""Bump when the vector changes: cached classifiers are keyed by it."""

N_FFT, HOP = 1024, 256
FEATURE_MELS = 20
LONG_FFT, LONG_HOP = 4096, 512
SPECTRUM_BANDS, SPECTRUM_RANGE_HZ = 24, (30.0, 18000.0)
DECAY_GROUPS, DECAY_DROPS_DB = 8, (10.0, 30.0)
PITCH_TIMES_S, PITCH_MAX_HZ = (0.020, 0.060, 0.120, 0.250, 0.450), 1200.0
SEGMENTS_S: tuple[tuple[str, float, float], ...] = (("attack", 0.0, 0.030), ("body", 0.030, 0.150),
                                                    ("tail", 0.150, math.inf))
REL_FLOOR_DB = -80.0
ABS_FLOOR_DB = -120.0
ROLLOFF = 0.85
ENV_FRAME = 512
_EPS = 1e-12


# the spectrogram helpers live in engine.dsp (shared with the UI and the controls)
from ..dsp import (_triangles, hz_to_mel, log_filterbank, mel_filterbank, mel_spectrogram,  # noqa: E402,F401
                   mel_to_hz, power_spectrogram)


# --------------------------------------------------------------------------- helpers

def _segment_masks(frames: int, hop: int, sample_rate: int, device: torch.device) -> torch.Tensor:
    """``(segments, frames)`` 0/1 weights: frame centre time within each of SEGMENTS_S."""
    times = torch.arange(frames, device=device, dtype=torch.float32) * hop / sample_rate
    return torch.stack([((times >= start) & (times < end)).float() for _, start, end in SEGMENTS_S])


def _weighted_mean(values: torch.Tensor, weights: torch.Tensor, fill: torch.Tensor | float) -> torch.Tensor:
    """Mean of ``values`` (..., T) under ``weights`` (..., T) over T; ``fill`` where the weights sum to 0."""
    total = weights.sum(-1)
    mean = (values * weights).sum(-1) / total.clamp_min(_EPS)
    fill = torch.as_tensor(fill, dtype=mean.dtype, device=mean.device).expand_as(mean)
    return torch.where(total > _EPS, mean, fill)


def _first_true(mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Index of the first True along the last dim, and whether there is one."""
    found = mask.any(-1)
    return mask.float().argmax(-1), found


def _log_ms(seconds: torch.Tensor) -> torch.Tensor:
    return torch.log10(seconds * 1000.0 + 1.0)


# --------------------------------------------------------------------------- features

def feature_names() -> list[str]:
    """Name of every column of :func:`features`, in order."""
    names = []
    for stat in ("mean", "std"):
        for seg, _, _ in SEGMENTS_S:
            names += [f"mel{b:02d}_{seg}_{stat}" for b in range(FEATURE_MELS)]
    names += [f"band{b:02d}" for b in range(SPECTRUM_BANDS)]
    for drop in DECAY_DROPS_DB:
        names += [f"group{g}_decay{drop:.0f}" for g in range(DECAY_GROUPS)]
    for t in PITCH_TIMES_S:
        names += [f"low_pitch_{1000 * t:.0f}ms", f"low_share_{1000 * t:.0f}ms"]
    for quantity in ("centroid", "rolloff", "flatness"):
        names += [f"{quantity}_{seg}" for seg, _, _ in SEGMENTS_S] + [f"{quantity}_all"]
    names += ["attack_time", "decay20", "decay40", "temporal_centroid"]
    names += [f"zcr_{seg}" for seg, _, _ in SEGMENTS_S] + ["zcr_all"]
    names += ["peak_db", "rms_db", "crest_db", "side_mid_db"]
    return names


FEATURE_DIM = len(feature_names())


@torch.no_grad()
def features(audio: torch.Tensor, sample_rate: int = 44100) -> torch.Tensor:
    """``(B, C, N)`` (or ``(C, N)``) audio -> ``(B, FEATURE_DIM)`` float32; see the module docstring.

    Non-finite samples are replaced by 0 first (count them with :func:`engine.eval.metrics.nan_share`).
    """
    if audio.dim() == 2:
        audio = audio[None]
    if audio.dim() != 3 or audio.shape[-1] < N_FFT:
        raise ValueError(f"features need (B, C, N) audio with N >= {N_FFT}, got {tuple(audio.shape)}")
    audio = torch.nan_to_num(audio.float(), nan=0.0, posinf=0.0, neginf=0.0)
    mono = audio.mean(1)  # (B, N)
    batch, n = mono.shape
    columns: list[torch.Tensor] = []

    # Log-mel summary relative to the clip's loudest bin.
    power = power_spectrogram(mono)  # (B, F, T)
    frames = power.shape[-1]
    masks = _segment_masks(frames, HOP, sample_rate, mono.device)  # (S, T)
    bank = mel_filterbank(int(sample_rate), N_FFT, FEATURE_MELS).to(mono.device)
    mel_db = 10.0 * torch.log10(torch.matmul(bank, power) + _EPS)  # (B, M, T)
    rel = (mel_db - mel_db.amax(dim=(1, 2), keepdim=True)).clamp_min(REL_FLOOR_DB)
    seg = masks[None, :, None, :]  # (1, S, 1, T)
    means = _weighted_mean(rel[:, None], seg, REL_FLOOR_DB)  # (B, S, M)
    var = _weighted_mean((rel[:, None] - means[..., None]).square(), seg, 0.0)
    columns += [means.reshape(batch, -1), var.clamp_min(0).sqrt().reshape(batch, -1)]

    # Long-window spectrum, per-group decay, low pitch.
    long_power = power_spectrogram(mono, LONG_FFT, LONG_HOP)  # (B, F', T')
    bands = torch.matmul(log_filterbank(int(sample_rate), LONG_FFT, SPECTRUM_BANDS, *SPECTRUM_RANGE_HZ)
                         .to(mono.device), long_power)  # (B, 24, T')
    total_db = 10.0 * torch.log10(bands.sum(-1) + _EPS)
    columns.append((total_db - total_db.amax(1, keepdim=True)).clamp_min(REL_FLOOR_DB))
    groups = bands.reshape(batch, DECAY_GROUPS, SPECTRUM_BANDS // DECAY_GROUPS, -1).sum(2)
    group_db = 10.0 * torch.log10(groups + _EPS)
    long_frames = group_db.shape[-1]
    long_index = torch.arange(long_frames, device=mono.device)
    group_peak = group_db.argmax(-1)
    after_peak = long_index > group_peak[..., None]
    for drop in DECAY_DROPS_DB:
        first, found = _first_true(after_peak & (group_db < group_db.amax(-1, keepdim=True) - drop))
        frames_to = torch.where(found, first - group_peak, long_frames - group_peak)
        columns.append(_log_ms(frames_to.float() * LONG_HOP / sample_rate))
    long_freqs = torch.linspace(0.0, sample_rate / 2.0, long_power.shape[1], device=mono.device)
    low = long_freqs < PITCH_MAX_HZ
    pitch = []
    for t in PITCH_TIMES_S:
        frame = long_power[..., min(int(round(t * sample_rate / LONG_HOP)), long_frames - 1)]  # (B, F')
        strongest = long_freqs[low][frame[:, low].argmax(-1)].clamp_min(10.0)
        share = 10.0 * torch.log10((frame[:, low].sum(-1) + _EPS) / (frame.sum(-1) + _EPS))
        pitch += [torch.log10(strongest), share.clamp_min(REL_FLOOR_DB)]
    columns.append(torch.stack(pitch, dim=1))

    # Spectral shape per frame, energy-weighted per segment.
    freqs = torch.linspace(0.0, sample_rate / 2.0, power.shape[1], device=mono.device)
    energy = power.sum(1)  # (B, T)
    centroid = (freqs[None, :, None] * power).sum(1) / energy.clamp_min(_EPS)
    cumulative = power.cumsum(1)
    rolloff_bin = (cumulative < ROLLOFF * energy[:, None, :]).sum(1).clamp_max(power.shape[1] - 1)
    rolloff = freqs[rolloff_bin]
    floor = 1e-8 * power.mean(1, keepdim=True) + 1e-30  # relative: flatness must not depend on level
    flatness = 10.0 * (torch.log10(power + floor).mean(1) - torch.log10(power.mean(1) + 1e-30))
    weights = energy * (energy > _EPS)
    for value in (torch.log10(centroid.clamp_min(1.0)), torch.log10(rolloff.clamp_min(1.0)), flatness):
        overall = _weighted_mean(value, weights, value.mean(-1))
        per_segment = _weighted_mean(value[:, None, :], weights[:, None, :] * masks[None], overall[:, None])
        columns += [per_segment, overall[:, None]]

    # RMS envelope shape.
    pad = torch.nn.functional.pad(mono, (ENV_FRAME // 2, ENV_FRAME // 2))
    env_power = pad.unfold(-1, ENV_FRAME, HOP).square().mean(-1)  # (B, T')
    env_db = 10.0 * torch.log10(env_power + _EPS)
    hop_s = HOP / sample_rate
    steps = env_db.shape[-1]
    index = torch.arange(steps, device=mono.device)
    peak_index = env_db.argmax(-1)
    peak_db = env_db.gather(-1, peak_index[:, None])
    after = index[None, :] > peak_index[:, None]
    decays = []
    for drop in (20.0, 40.0):
        first, found = _first_true(after & (env_db < peak_db - drop))
        frames_to = torch.where(found, first - peak_index, steps - peak_index)
        decays.append(frames_to.float() * hop_s)
    centroid_t = (index[None].float() * hop_s * env_power).sum(-1) / env_power.sum(-1).clamp_min(_EPS)
    columns.append(_log_ms(torch.stack([peak_index.float() * hop_s, *decays, centroid_t], dim=1)))

    # Zero-crossing rate per segment (sample-level masks) and overall.
    positive = mono > 0
    crossings = (positive[:, 1:] != positive[:, :-1]).float()  # (B, N-1)
    times = torch.arange(1, n, device=mono.device, dtype=torch.float32) / sample_rate
    rates = []
    for _, start, end in SEGMENTS_S + (("all", 0.0, math.inf),):
        inside = ((times >= start) & (times < end)).float()
        seconds = inside.sum() / sample_rate
        rates.append((crossings * inside).sum(-1) / seconds.clamp_min(1.0 / sample_rate)
                     if seconds > 0 else torch.zeros(batch, device=mono.device))
    columns.append(torch.log10(1.0 + torch.stack(rates, dim=1)))

    # Level and stereo width.
    peak = audio.abs().amax(dim=(1, 2))
    rms = mono.square().mean(-1).sqrt()
    peak_dbfs = (20.0 * torch.log10(peak + _EPS)).clamp_min(ABS_FLOOR_DB)
    rms_dbfs = (20.0 * torch.log10(rms + _EPS)).clamp_min(ABS_FLOOR_DB)
    if audio.shape[1] >= 2:
        side = (audio[:, 0] - audio[:, 1]).square().mean(-1) / 4.0
        mid = (audio[:, 0] + audio[:, 1]).square().mean(-1) / 4.0
        width = (10.0 * torch.log10((side + 1e-10) / (mid + 1e-10))).clamp(-60.0, 20.0)
    else:
        width = torch.full((batch,), -60.0, device=mono.device)
    columns.append(torch.stack([peak_dbfs, rms_dbfs, peak_dbfs - rms_dbfs, width], dim=1))

    out = torch.cat(columns, dim=1)
    assert out.shape[1] == FEATURE_DIM, (out.shape, FEATURE_DIM)
    return out.float()


def batched_features(audio: torch.Tensor, sample_rate: int = 44100, batch: int = 64) -> torch.Tensor:
    """:func:`features` over a large set in chunks of ``batch`` clips (bounded memory)."""
    if audio.shape[0] == 0:
        return torch.zeros(0, FEATURE_DIM)
    return torch.cat([features(audio[i:i + batch], sample_rate) for i in range(0, audio.shape[0], batch)])
