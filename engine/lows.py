"""Low-band ceilings: how much of a real hit's energy lies in each band under 690 Hz, per label,
kept beside a latent model's weights, and the equaliser that holds a decoded sound's low bands
at most there (:func:`hold_lows`, called by :func:`engine.pipeline.decode`).

Why: the codec passes 0-690 Hz through exactly, as the waveform itself, four samples per latent
frame; the network makes that waveform with a little broadband error that follows the sound's
envelope. Where a real hit has energy there (a kick, a snare's 150-450 Hz body, a tom) it is
masked; where it has none it is a rumble. `latent-fast`'s snares at seed 1000 (64 sounds) carry
16 dB more of their energy at 20-60 Hz than the training snares' median (-22 against -38 dB of
the whole sound's), its hats 10 dB and its cymbals 10 dB; the teacher `latent-prompts` and the
older `latent-drums` the same within 3 dB; the codec's own round trip of the real snares within
0.5 dB (``docs/design-notes.md``, "Rumble under 690 Hz").

The table is measured from the data set's train split (real clips only) by ``python -m engine
lows --model M --data D --label snare``: per band of :data:`EDGES_HZ`, the ``quantile`` (the
median) of the clips' share of their energy in that band, in dB. Only the labels named get a
row: a kick's or a tom's low end is its sound, and the network makes it as loud as the kits'.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from .errors import InvalidRequestError
from .label_tables import read_row, write_table

LOWS_FILE = "lows.json"
LOWS_FORMAT = 1
EDGES_HZ = (20.0, 40.0, 60.0, 80.0, 110.0, 150.0, 200.0, 300.0, 450.0, 690.0)
"""The bands measured and held: about half an octave each, up to the codec's exact low band (0-689 Hz)."""
QUANTILE = 0.5      # the training hits' median
FLOOR_DB = -120.0   # a band with no energy at all reads as this, not -inf
QUIET_DB = -20.0
"""A band whose ceiling is over this (the kits' hits hold 1 % of their energy or more there: a snare's
150-690 Hz body) is the sound itself, made as the network makes it; only the bands the kits leave
nearly empty, where the network's error is heard as a rumble, are held. Held in every band, the
snares' body was cut too and they sat further from the kits (Fréchet ratio .28 -> .41, seed 1000)."""
FILTER_TAPS = 16384
"""The cut's filter length (0.37 s at 44.1 kHz): bins 2.7 Hz apart, so the 20-40 Hz band's cut is
drawn over seven of them; a clip is convolved with it once a pass (about 10 ms a sound)."""
HOLD_PASSES = 3     # cutting the low bands raises every share a little: measure again, cut again
HOLD_SLACK_DB = 0.5


def band_shares_db(audio: torch.Tensor, sample_rate: int) -> torch.Tensor:
    """``(B, bands)``: each clip's share of its whole energy (both channels' mean, the clip's length)
    in each band of :data:`EDGES_HZ`, in dB (at least :data:`FLOOR_DB`; a silent clip all floor)."""
    mono = audio.float().mean(1) if audio.dim() == 3 else audio.float()[None]
    power = torch.fft.rfft(mono.double(), dim=-1).abs().square()
    freqs = torch.fft.rfftfreq(mono.shape[-1], 1.0 / sample_rate, dtype=torch.float64)
    total = power.sum(-1, keepdim=True).clamp_min(1e-30)
    bands = torch.stack([power[:, (freqs >= low) & (freqs < high)].sum(-1)
                         for low, high in zip(EDGES_HZ, EDGES_HZ[1:])], dim=1)
    return (10.0 * torch.log10(bands / total + 1e-30)).clamp_min(FLOOR_DB).float()


def hold_lows(audio: torch.Tensor, sample_rate: int, ceiling_db: torch.Tensor) -> torch.Tensor:
    """``audio`` (``(B, C, N)``) with each clip's bands of :data:`EDGES_HZ` turned down to at most
    ``ceiling_db`` (``(bands,)`` shares in dB, :func:`band_shares_db`; a ceiling over
    :data:`QUIET_DB` holds nothing), one static gain per clip and frequency: the bands' cuts joined
    in log frequency between their centres, held below the first, rising to 0 dB at the top edge,
    applied as a causal minimum-phase filter of :data:`FILTER_TAPS` taps (:func:`_minimum_phase`)
    by linear convolution, so its response to the attack neither wraps round onto the clip's end
    nor rings before its start (a zero-phase filter over the clip put a low copy of the cut at the
    end, which the studio's tail fade then took away again: a snare's share under 110 Hz came back
    6 dB over its ceiling in the exported WAV). Cutting a band lowers the whole, so every share
    rises a little: up to :data:`HOLD_PASSES` passes, until no band is over by
    :data:`HOLD_SLACK_DB`. A clip whose bands are all at or under their ceilings comes back
    unchanged."""
    ceiling = torch.as_tensor(ceiling_db, dtype=torch.float32)
    ceiling = torch.where(ceiling > QUIET_DB, torch.zeros_like(ceiling), ceiling)  # the sound's own bands: free
    samples = audio.shape[-1]
    n_fft = 1 << (samples + FILTER_TAPS - 1).bit_length()  # linear, not circular, convolution
    freqs = np.fft.rfftfreq(FILTER_TAPS, 1.0 / sample_rate)
    centres = [math.sqrt(low * high) for low, high in zip(EDGES_HZ, EDGES_HZ[1:])]
    anchors = np.log(np.array(centres + [EDGES_HZ[-1]]))
    where = np.log(np.maximum(freqs, 1.0))
    spectrum, current, held = None, audio, False
    total = np.zeros((audio.shape[0], len(freqs)))  # dB of cut per clip and frequency so far
    for _ in range(HOLD_PASSES):
        cut = (ceiling[None] - band_shares_db(current, sample_rate)).clamp_max(0.0)  # (B, bands) dB, <= 0
        if not bool((cut < (-HOLD_SLACK_DB if held else 0.0)).any()):
            break
        for i in range(audio.shape[0]):
            total[i] += np.interp(where, anchors, np.append(cut[i].double().numpy(), 0.0))
        if spectrum is None:  # most decodes of a held label need it; a clip already under needs none
            spectrum = torch.fft.rfft(audio.double(), n=n_fft, dim=-1)
        taps = _minimum_phase(total * (math.log(10.0) / 20.0), FILTER_TAPS)
        response = torch.fft.rfft(torch.from_numpy(taps), n=n_fft, dim=-1)[:, None]
        current, held = torch.fft.irfft(spectrum * response, n=n_fft, dim=-1)[..., :samples], True
    return current.to(audio.dtype) if held else audio


def _minimum_phase(log_gain: np.ndarray, n: int) -> np.ndarray:
    """``(B, n)`` taps of the minimum-phase (causal) filter whose magnitude on the ``rfft`` bins of
    length ``n`` is ``exp(log_gain)`` (``(B, n // 2 + 1)`` natural-log gains): the real cepstrum
    folded onto positive times (the homomorphic method)."""
    cepstrum = np.fft.irfft(log_gain, n=n, axis=-1)
    fold = np.zeros(n)
    fold[0], fold[1:n // 2], fold[n // 2] = 1.0, 2.0, 1.0
    return np.fft.irfft(np.exp(np.fft.rfft(cepstrum * fold, n=n, axis=-1)), n=n, axis=-1)


def measure(audio: torch.Tensor, sample_rate: int, quantile: float = QUANTILE) -> list[float]:
    """``[band]`` dB: over the clips ``audio`` (``(N, C, samples)``), the ``quantile`` of each clip's
    share of its energy in each band of :data:`EDGES_HZ`."""
    if not 0.0 < quantile < 1.0:
        raise InvalidRequestError(f"the quantile must be in (0, 1), got {quantile}")
    if audio.shape[0] == 0:
        raise InvalidRequestError("no clips to measure low bands from")
    shares = band_shares_db(audio, sample_rate)
    return [round(float(v), 2) for v in shares.quantile(quantile, dim=0)]


def write_lows(folder: str | Path, table: dict, source: str, quantile: float) -> Path:
    """Write ``{label: [band] dB}`` into a model folder atomically."""
    return write_table(folder, LOWS_FILE, LOWS_FORMAT, "low-band ceilings", table, source, quantile,
                       edges_hz=list(EDGES_HZ))


def read_lows(folder: str | Path | None, label: str | None) -> torch.Tensor | None:
    """``(bands,)`` dB for ``label`` from a model folder's low-band ceilings, or None (no folder,
    file or label); a damaged file, or one measured on other bands, is a CheckpointError that names it."""
    def same_bands(payload: dict) -> None:
        if [float(v) for v in payload.get("edges_hz", ())] != list(EDGES_HZ):
            raise ValueError(f"bands {payload.get('edges_hz')!r}, not {list(EDGES_HZ)}")

    def parse(row: list) -> torch.Tensor:
        table = torch.tensor(row, dtype=torch.float32)
        if table.shape != (len(EDGES_HZ) - 1,) or not torch.isfinite(table).all() or bool((table > 0).any()):
            raise ValueError(f"{label} is not {len(EDGES_HZ) - 1} finite shares in dB")
        return table

    return read_row(folder, LOWS_FILE, LOWS_FORMAT, label, "lows", parse, same_bands)
