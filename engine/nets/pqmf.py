"""Pseudo-QMF filter bank: split audio into M critically sampled bands and back, near-perfectly.

Why: a waveform U-Net at 44.1 kHz spends most of its compute on the first levels. RAVE showed
that running the network on M sub-bands (M times fewer frames, M times more channels) keeps
full bandwidth without the aliasing that plain patching/reshaping causes, because the cosine
modulated filters cancel each other's aliasing on synthesis. Written by hand (about 60 lines)
because no well-kept package provides a torch PQMF; the prototype is designed with scipy.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from scipy.optimize import minimize_scalar
from scipy.signal import firwin

from . import envelope


def _prototype(bands: int, taps: int, beta: float) -> np.ndarray:
    """Kaiser lowpass whose cutoff minimises the power-complementarity error (Lin & Vaidyanathan 1998).

    The search stays near the ideal cutoff 1/(2M): far above it the error also vanishes (the
    filter tends to an impulse) but the bands then overlap and the gain is wrong.
    """

    def error(cutoff: float) -> float:
        h = firwin(taps + 1, cutoff, window=("kaiser", beta), pass_zero=True)
        g = np.convolve(h, h[::-1])
        center = len(g) // 2
        lags = g[center % (2 * bands)::2 * bands]
        lags = np.delete(lags, center // (2 * bands))
        return float(np.sum(lags**2))

    best = minimize_scalar(error, bounds=(0.8 / (2 * bands), 1.4 / (2 * bands)), method="bounded",
                           options={"xatol": 1e-7})
    return firwin(taps + 1, best.x, window=("kaiser", beta), pass_zero=True)


class PQMF(torch.nn.Module):
    """``analysis``: (B, C, N) -> (B, C*M, N/M); ``synthesis`` inverts it (up to ~-60 dB error)."""

    def __init__(self,
                 bands: int = 16,      # number of sub-bands M; N must be a multiple of M
                 taps_per_band: int = 16,  # prototype length = taps_per_band * M (+1)
                 beta: float = 9.0):   # Kaiser window shape: stop-band attenuation vs transition
        super().__init__()
        self.bands = bands
        taps = taps_per_band * bands
        h = _prototype(bands, taps, beta)
        n = np.arange(taps + 1) - taps / 2
        k = np.arange(bands)[:, None]
        phase = (-1.0) ** k * math.pi / 4
        arg = (2 * k + 1) * math.pi / (2 * bands) * n[None, :]
        analysis = 2 * h[None, :] * np.cos(arg + phase)
        synthesis = 2 * h[None, :] * np.cos(arg - phase)
        self.register_buffer("analysis_filters", torch.tensor(analysis, dtype=torch.float32)[:, None, :], persistent=False)
        # synthesis as a transposed convolution (no zero-stuffed signal): flipped filters, gain M
        flipped = synthesis[:, ::-1] * bands
        self.register_buffer("synthesis_filters", torch.tensor(flipped.copy(), dtype=torch.float32)[:, None, :], persistent=False)
        self.pad = taps // 2

    def analysis(self, audio: torch.Tensor) -> torch.Tensor:
        batch, channels, length = audio.shape
        x = audio.reshape(batch * channels, 1, length)
        x = F.conv1d(F.pad(x, (self.pad, self.pad)), self.analysis_filters.to(x.dtype), stride=self.bands)
        return x.reshape(batch, channels * self.bands, -1)

    def synthesis(self, bands: torch.Tensor) -> torch.Tensor:
        batch, channels_bands, frames = bands.shape
        channels = channels_bands // self.bands
        x = bands.reshape(batch * channels, self.bands, frames)
        y = F.conv_transpose1d(x, self.synthesis_filters.to(x.dtype), stride=self.bands)
        return y[..., self.pad: self.pad + frames * self.bands].reshape(batch, channels, -1)


class BandCodec(torch.nn.Module):
    """Audio <-> normalised PQMF bands: the fixed, invertible "latent" of the waveform models.

    ``encode``: (B, C, N) audio -> (B, C*M, N/M), each band divided by its standard deviation
    over the training data, so the diffusion state has unit variance per band (what the cosine
    schedule assumes) and every band is noised on the same schedule. ``decode`` multiplies back
    and synthesises, which also scales the model's errors in quiet high bands down: less hiss.

    With an envelope (``envelope_knots`` + ``envelope_db``, see :mod:`.envelope`) each band is
    further divided by the training data's rms for the sound's label at every moment, so the
    average attack and decay of a kick or a hat is the codec's, not the network's, to know;
    ``encode``/``decode`` then take the label indices of the batch (``None`` or the "no label"
    index = number of labels: the envelope over every clip).
    """

    def __init__(self,
                 channels: int = 2,         # audio channels
                 bands: int = 32,           # PQMF sub-bands
                 taps_per_band: int = 8,    # PQMF prototype length per band (8: ~44 dB reconstruction)
                 band_scale: list | None = None,     # per-band data std, length channels*bands
                 envelope_knots: list | None = None,  # frames of the envelope's knots
                 envelope_db: list | None = None):   # (labels + 1, bands, knots) envelope in dB
        super().__init__()
        self.channels, self.bands = channels, bands
        self.pqmf = PQMF(bands, taps_per_band)
        scale = torch.ones(channels * bands) if band_scale is None else torch.tensor(band_scale, dtype=torch.float32)
        if scale.numel() != channels * bands:
            raise ValueError(f"band_scale has {scale.numel()} values, expected {channels * bands}")
        self.register_buffer("band_scale", scale.reshape(1, -1, 1), persistent=False)
        self.envelope_knots = None
        if (envelope_knots is None) != (envelope_db is None):
            raise ValueError("envelope_knots and envelope_db come together")
        if envelope_db is not None:
            table = torch.tensor(envelope_db, dtype=torch.float32)
            if table.dim() != 3 or table.shape[1:] != (bands, len(envelope_knots)):
                raise ValueError(f"envelope_db has shape {tuple(table.shape)}, expected (labels + 1, {bands}, "
                                 f"{len(envelope_knots)})")
            if not torch.isfinite(table).all():
                raise ValueError("envelope_db holds a NaN or an infinity")
            self.envelope_knots = [int(k) for k in envelope_knots]
            self.register_buffer("envelope_db", table, persistent=False)
        self._weights: dict[int, torch.Tensor] = {}

    @property
    def latent_channels(self) -> int:
        return self.channels * self.bands

    def latent_length(self, samples: int) -> int:
        return samples // self.bands

    def _gain(self, labels, batch: int, frames: int, like: torch.Tensor) -> torch.Tensor:
        """Per-channel gains ``(B, C*M, frames)`` (or ``(1, C*M, 1)`` without an envelope)."""
        scale = self.band_scale.to(like.device)
        if self.envelope_knots is None:
            return scale
        rows_available = self.envelope_db.shape[0]
        if labels is None:
            rows = torch.full((batch,), rows_available - 1, dtype=torch.long)
        else:
            rows = torch.as_tensor(labels, dtype=torch.long).reshape(-1).cpu()
            rows = rows.expand(batch) if rows.numel() == 1 else rows
            if rows.numel() != batch or int(rows.min()) < 0 or int(rows.max()) >= rows_available:
                raise ValueError(f"labels {rows.tolist()} do not fit a batch of {batch} with {rows_available - 1} labels")
        if frames not in self._weights:
            self._weights[frames] = envelope.interpolation_matrix(self.envelope_knots, frames)
        gain = envelope.envelope_gain(self.envelope_db.cpu(), rows, self._weights[frames])  # (B, M, frames)
        return scale * gain.repeat(1, self.channels, 1).to(like.device)

    def encode(self, audio: torch.Tensor, labels=None) -> torch.Tensor:
        bands = self.pqmf.analysis(audio)
        return bands / self._gain(labels, bands.shape[0], bands.shape[-1], bands).to(bands.dtype)

    def decode(self, latent: torch.Tensor, labels=None) -> torch.Tensor:
        return self.pqmf.synthesis(latent * self._gain(labels, latent.shape[0], latent.shape[-1], latent).to(latent.dtype))


def measure_band_scale(audio: torch.Tensor, channels: int = 2, bands: int = 32, taps_per_band: int = 8,
                       floor: float = 1e-4) -> list[float]:
    """Per-band std of a batch of training clips (B, C, N), floored so empty bands stay finite."""
    with torch.no_grad():
        banded = PQMF(bands, taps_per_band).analysis(audio.float())
    return banded.std(dim=(0, 2)).clamp_min(floor).tolist()


@torch.no_grad()
def measure_band_envelope(audio: torch.Tensor, labels: torch.Tensor, num_labels: int, band_scale: list[float],
                          channels: int = 2, bands: int = 32, taps_per_band: int = 8,
                          chunk: int = 64) -> dict:
    """``{"envelope_knots", "envelope_db"}`` codec arguments measured on labelled clips (B, C, N).

    Measured on the band-scaled bands, so the envelope is relative to ``band_scale``; stereo
    channels share one envelope (a drum's left and right decay alike).
    """
    pqmf = PQMF(bands, taps_per_band)
    scale = torch.tensor(band_scale, dtype=torch.float32).reshape(1, -1, 1)
    power = torch.cat([(pqmf.analysis(audio[i:i + chunk].float()) / scale).pow(2)
                       .reshape(-1, channels, bands, audio.shape[-1] // bands).mean(dim=1)
                       for i in range(0, audio.shape[0], chunk)])
    knots = envelope.knot_frames(power.shape[-1])
    table = envelope.measure_envelope(power, labels, num_labels, knots)
    return {"envelope_knots": knots, "envelope_db": [[[round(float(v), 2) for v in band] for band in row]
                                                     for row in table]}
