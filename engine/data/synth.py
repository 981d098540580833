"""Synthesised 808-style kicks: training clips for the long, low booms the Hydrogen kits lack.

Why: the training kits hold 46 kicks, none longer than ~0.5 s to -30 dB, and no 808 (the one
808 kit, TR808EmulationKit, is held out for evaluation). A curve that asks for a 0.6 s boom
is, to a model trained on them, a tom: with held-out kick curves `latent-fast` read as
percussion on the long ones (``docs/design-notes.md``, "Synthesised kicks"). An 808 kick *is*
a synthesiser voice, so we make our own rather than take any sample: a sine whose pitch falls
from a start frequency to its resting one, an exponential decay, a short noise click and soft
saturation, each drawn over the range the instrument's knobs span (tune, decay, tone, drive),
not fitted to any held-out clip. Measured there: fine-tuned with them, `latent-prompts` makes
long kick curves read as kicks more often, but every kick moves away from the kits' own, so the
shipped models are trained without them (``build_drum_dataset.py --synth-kicks`` is off by default).

Plain functions over numpy: one voice is a few array operations, no DSP library needed.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch

SYNTH_KIT = "Synthesised 808"
"""The kit name synthesised clips carry in a data set's index (its "808" gives the captions their style)."""

PRE_ROLL_MS = 1.0       # as the data set's onset alignment (engine.data.build)
FADE_MS = 20.0          # fade-out where a long decay is cut at the clip's end

# The ranges each voice is drawn from (log-uniform unless said): an 808's tune knob spans
# roughly 40-70 Hz at rest; its pitch drop is small and quick, a modern "808" is swept harder;
# its decay knob from a short thump to a boom of over a second.
REST_HZ = (38.0, 75.0)
SWEEP = (1.3, 4.0)            # start frequency / resting frequency
GLIDE_MS = (4.0, 40.0)        # time constant of the pitch fall
DECAY_MS = (150.0, 2500.0)    # time to fall 60 dB
ATTACK_MS = (0.3, 2.0)        # uniform
CLICK_DB = (-36.0, -12.0)     # uniform: the click's peak against the body's
CLICK_MS = (1.0, 12.0)        # the click's decay time constant: a sharp tick .. a beater's slap
DRIVE = (1.0, 4.0)            # tanh saturation gain (1: almost clean)
PEAK_DB = (-6.0, -0.5)        # uniform: the clip's peak, as the kits' velocity layers vary


@dataclass(frozen=True)
class KickVoice:
    """One synthesised kick's settings (recorded in the data set's index)."""

    rest_hz: float
    sweep: float
    glide_ms: float
    decay_ms: float
    attack_ms: float
    click_db: float
    drive: float
    peak_db: float
    click_ms: float = 1.0

    def as_record(self) -> dict[str, float]:
        return {k: round(v, 3) for k, v in asdict(self).items()}


def _log_uniform(rng: np.random.Generator, bounds: tuple[float, float]) -> float:
    return float(math.exp(rng.uniform(math.log(bounds[0]), math.log(bounds[1]))))


def draw_kick(rng: np.random.Generator) -> KickVoice:
    """A voice drawn from the ranges above."""
    return KickVoice(rest_hz=_log_uniform(rng, REST_HZ), sweep=_log_uniform(rng, SWEEP),
                     glide_ms=_log_uniform(rng, GLIDE_MS), decay_ms=_log_uniform(rng, DECAY_MS),
                     attack_ms=float(rng.uniform(*ATTACK_MS)), click_db=float(rng.uniform(*CLICK_DB)),
                     drive=_log_uniform(rng, DRIVE), peak_db=float(rng.uniform(*PEAK_DB)),
                     click_ms=_log_uniform(rng, CLICK_MS))


def render_kick(voice: KickVoice, sample_rate: int, length: int, rng: np.random.Generator) -> torch.Tensor:
    """``(2, length)`` float32: the voice, onset after a 1 ms pre-roll, both channels alike (a
    kick sits in the middle), faded out over 20 ms where the clip ends before the decay does."""
    start = int(round(PRE_ROLL_MS * sample_rate / 1000.0))
    n = max(length - start, 0)
    t = np.arange(n) / sample_rate
    hz = voice.rest_hz * (1.0 + (voice.sweep - 1.0) * np.exp(-t * 1000.0 / voice.glide_ms))
    phase = 2.0 * np.pi * np.cumsum(hz) / sample_rate
    decay = np.exp(-t * 1000.0 * math.log(1000.0) / voice.decay_ms)   # -60 dB at decay_ms
    attack = np.clip(t * 1000.0 / voice.attack_ms, 0.0, 1.0)
    body = np.sin(phase) * decay * (0.5 - 0.5 * np.cos(np.pi * attack))
    # the click: a decaying noise burst, first-differenced (its energy mostly above ~5 kHz)
    burst = rng.standard_normal(n) * np.exp(-t * 1000.0 / voice.click_ms)
    click = np.diff(burst, prepend=0.0)
    click *= 10.0 ** (voice.click_db / 20.0) / max(np.abs(click).max(), 1e-9)
    voiced = np.tanh(voice.drive * (body + click)) / math.tanh(voice.drive)
    fade = int(round(FADE_MS * sample_rate / 1000.0))
    if n > fade and decay[-1] > 1e-3:   # still audible where the clip ends
        voiced[-fade:] *= 0.5 + 0.5 * np.cos(np.linspace(0.0, np.pi, fade))
    voiced *= 10.0 ** (voice.peak_db / 20.0) / max(np.abs(voiced).max(), 1e-9)
    clip = np.zeros(length, dtype=np.float32)
    clip[start:] = voiced
    return torch.from_numpy(np.stack([clip, clip]))


def synth_kicks(count: int, sample_rate: int, length: int, seed: int = 0) -> list[tuple[KickVoice, torch.Tensor]]:
    """``count`` voices and their clips; clip ``i`` depends only on ``seed`` and ``i``."""
    out = []
    for i in range(count):
        rng = np.random.default_rng([seed, i])
        voice = draw_kick(rng)
        out.append((voice, render_kick(voice, sample_rate, length, rng)))
    return out


# ----------------------------------------------------------------------------- kits' kicks, longer

SUB_CUTOFF_HZ = 150.0   # the band a kick's tail is continued in: its fundamental (35-115 Hz in the kits)
SUB_FROM_DB = 12.0      # the tail is taken over where the kick has fallen this far under its peak
SUB_SEARCH_HZ = (30.0, 130.0)


def continue_sub_tail(clip: torch.Tensor, sample_rate: int, fall_s: float) -> tuple[torch.Tensor, float]:
    """``(clip with its sub tail continued, the tail's pitch in Hz)``: a real kick ``(C, N)`` whose
    band under :data:`SUB_CUTOFF_HZ` is taken over, where it has fallen :data:`SUB_FROM_DB` under
    its peak, by a sine at its own pitch and phase that falls 30 dB in ``fall_s`` seconds from there
    (so the kick as a whole reaches 30 dB under its peak about 0.6 x ``fall_s`` after the takeover).
    Above the band the kick keeps its own decay; its click, body and room stay its own.

    Why: the synthesised 808s moved every kick away from the kits' textures and the slowed kits'
    kicks kept their mid-heavy tails (``docs/design-notes.md``, "Synthesised kicks"); a long kick
    the classifier hears as a kick has a long, low, pure tail under a kit's attack. The pitch is the
    strongest partial in 30-130 Hz over the 100 ms from the takeover; amplitude and phase are
    fitted per channel over the 20 ms around it, and the sine fades in over 10 ms, so nothing clicks."""
    from scipy.signal import butter, sosfiltfilt

    from .. import dsp

    x = clip.double().numpy()
    low = sosfiltfilt(butter(4, SUB_CUTOFF_HZ, "low", fs=sample_rate, output="sos"), x, axis=-1)
    level = dsp.rms_db(clip.float(), 128).numpy()
    peak = int(level.argmax())
    under = np.nonzero(level[peak:] < level[peak] - SUB_FROM_DB)[0]
    start = min(x.shape[-1] - 1, (peak + (int(under[0]) if len(under) else 10)) * 128)
    window = int(0.1 * sample_rate)
    segment = low.mean(0)[start:start + window]
    spectrum = np.abs(np.fft.rfft(segment * np.hanning(len(segment)), 1 << 16))
    freqs = np.fft.rfftfreq(1 << 16, 1.0 / sample_rate)
    band = (freqs > SUB_SEARCH_HZ[0]) & (freqs < SUB_SEARCH_HZ[1])
    pitch = float(freqs[band][spectrum[band].argmax()])
    n = np.arange(x.shape[-1]) - start
    phase = 2.0 * math.pi * pitch * n / sample_rate
    basis = np.stack([np.sin(phase), np.cos(phase)], axis=1)
    fit = slice(max(0, start - int(0.01 * sample_rate)), start + int(0.01 * sample_rate))
    decay = np.exp(-np.maximum(n, 0) / sample_rate * math.log(10 ** 1.5) / fall_s)   # -30 dB at fall_s
    fade = np.clip(n / (0.01 * sample_rate), 0.0, 1.0)
    out = x.copy()
    for c in range(x.shape[0]):
        coef, *_ = np.linalg.lstsq(basis[fit], low[c][fit], rcond=None)
        out[c] = (x[c] - low[c]) + low[c] * (1.0 - fade) + (basis @ coef) * decay * fade
    end_fade = np.clip((x.shape[-1] - np.arange(x.shape[-1])) / (FADE_MS * 1e-3 * sample_rate), 0.0, 1.0)
    out = out * end_fade
    return torch.from_numpy(out / max(1.0, float(np.abs(out).max()))).float(), pitch
