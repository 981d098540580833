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

from . import envelope, tone
from ..seeds import deal


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


MAX_ENVELOPE_SPREAD = 3.0  # a row spread beyond this draws envelopes no clip resembles


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

    With ``envelope_prior`` (``{"knots", "rows", "clusters", "components"}``, see :mod:`.envelope`)
    each band is further divided by the clip's own loudness envelope over time (dB at knots),
    measured from the audio when encoding real clips and drawn from a per-label
    mixture-of-Gaussians prior when generating (or, for a row with a ``kernel`` entry, from its
    training clips' own envelopes, dealt by seed: :meth:`envelope_for`). The prior's tensors are persistent buffers saved
    in the model's weights file (``stored_with_model``), filled by :meth:`set_prior` when a model
    is trained.
    :meth:`envelope_for` gives the ``(B, M, K)`` envelope a batch needs; ``encode`` and
    ``decode`` take it (``None``: bands scaled only).
    """

    def __init__(self,
                 channels: int = 2,         # audio channels
                 bands: int = 32,           # PQMF sub-bands
                 taps_per_band: int = 8,    # PQMF prototype length per band (8: ~44 dB reconstruction)
                 band_scale: list | None = None,     # per-band data std, length channels*bands
                 envelope_prior: dict | None = None):  # per-clip envelopes: knots, rows, clusters, components
        super().__init__()
        self.channels, self.bands = channels, bands
        self.pqmf = PQMF(bands, taps_per_band)
        scale = torch.ones(channels * bands) if band_scale is None else torch.tensor(band_scale, dtype=torch.float32)
        if scale.numel() != channels * bands:
            raise ValueError(f"band_scale has {scale.numel()} values, expected {channels * bands}")
        self.register_buffer("band_scale", scale.reshape(1, -1, 1), persistent=False)
        self.envelope_knots, self.components, self.stored_with_model = None, 0, False
        self.reattack_db, self.row_kernels = None, None
        if envelope_prior is not None:
            self.envelope_knots = [int(k) for k in envelope_prior["knots"]]
            rows, clusters = int(envelope_prior["rows"]), int(envelope_prior["clusters"])
            self.components = int(envelope_prior["components"])
            # per row (label, then all clips): its own (clusters, components), at most the buffers'
            self.row_shapes = envelope_prior.get("row_shapes")
            if self.row_shapes is not None and (len(self.row_shapes) != rows or any(
                    not 1 <= c <= clusters or not 0 <= m <= self.components for c, m in self.row_shapes)):
                raise ValueError(f"envelope_prior.row_shapes must give {rows} (clusters, components) pairs within "
                                 f"({clusters}, {self.components}), got {self.row_shapes}")
            # per row: how far its draws reach along the fitted directions (1: as far as its clips
            # spread; more: wider, for a category whose sounds come out narrower than real ones)
            self.row_spreads = envelope_prior.get("row_spreads")
            if self.row_spreads is not None and (len(self.row_spreads) != rows or any(
                    not 0.0 < float(v) <= MAX_ENVELOPE_SPREAD for v in self.row_spreads)):
                raise ValueError(f"envelope_prior.row_spreads must give {rows} numbers in (0, {MAX_ENVELOPE_SPREAD}], "
                                 f"got {self.row_spreads}")
            self.prior_rows = rows
            if envelope_prior.get("reattack_db") is not None:
                self.set_reattack_limits(envelope_prior["reattack_db"])
            knots = len(self.envelope_knots)
            self.register_buffer("prior_mean", torch.zeros(rows, clusters, bands, knots))
            self.register_buffer("prior_basis", torch.zeros(rows, clusters, self.components, bands, knots))
            self.register_buffer("prior_weights", torch.full((rows, clusters), 1.0 / clusters))
            # per row: null (the mixture draws it) or {"width", "clips"}: it draws from its clips' own
            # envelopes, stored one row after another in prior_clips (envelope.draw_from_kernel)
            self.row_kernels = envelope_prior.get("kernel")
            if self.row_kernels is not None:
                self.kernel_slices = kernel_slices(self.row_kernels, rows)
                total = sum(piece.stop - piece.start for piece in self.kernel_slices if piece is not None)
                self.register_buffer("prior_clips", torch.zeros(total, bands, knots))
                for flag, buffer, size, default in KERNEL_EXTRAS:  # what the flagged rows' clips store besides
                    if any(entry is not None and entry.get(flag) for entry in self.row_kernels):
                        points = int(envelope_prior.get(size, default))
                        self.register_buffer(buffer, torch.zeros(total, bands, points))
            self.stored_with_model = True
        self._weights: dict[int, torch.Tensor] = {}

    @property
    def latent_channels(self) -> int:
        return self.channels * self.bands

    def set_reattack_limits(self, rows: list) -> None:
        """Per prior row, ``None`` or one dB value per band: how far a drawn envelope's band may rise
        again after its peak (measured on the row's clips by ``train prior --reattack-quantile``)."""
        if not isinstance(rows, list) or len(rows) != self.prior_rows or any(
                row is not None and (not isinstance(row, list) or len(row) != self.bands or any(
                    isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v < float("inf") for v in row))
                for row in rows):
            raise ValueError(f"envelope_prior.reattack_db must give {self.prior_rows} rows, each null or "
                             f"{self.bands} dB values >= 0")
        self.reattack_db = torch.tensor([[float("inf")] * self.bands if row is None else row for row in rows],
                                        dtype=torch.float32)

    @torch.no_grad()
    def set_prior(self, mean: torch.Tensor, basis: torch.Tensor, weights: torch.Tensor) -> None:
        """Fill the envelope prior (``envelope.fit_prior``'s tensors, shaped as the manifest says)."""
        for name, value in (("prior_mean", mean), ("prior_basis", basis), ("prior_weights", weights)):
            target = getattr(self, name)
            if tuple(value.shape) != tuple(target.shape) or not bool(torch.isfinite(value).all()):
                raise ValueError(f"{name} must be finite and shaped {tuple(target.shape)}, got {tuple(value.shape)}")
            target.copy_(value)

    @torch.no_grad()
    def set_kernel_clips(self, row_clips: dict[int, torch.Tensor],
                         row_details: dict[int, torch.Tensor] | None = None,
                         row_tones: dict[int, torch.Tensor] | None = None) -> None:
        """Store each kernel row's clip envelopes ``{row: (N, bands, K)}``, N as the manifest says,
        in :func:`envelope.kernel_order`; for a row with detail its clips' details ``{row: (N,
        bands, points)}`` (:func:`envelope.clip_details`), and for a row with tone their tones
        (:func:`tone.clip_tones`), in the same order."""
        if self.row_kernels is None or sorted(row_clips) != [r for r, p in enumerate(self.kernel_slices) if p is not None]:
            raise ValueError("clip envelopes are stored for the prior's kernel rows, each once")
        extras = []   # (flag, buffer, {row: values}) for each kind of per-clip extra the rows ask for
        for (flag, name, _, _), given in zip(KERNEL_EXTRAS, (row_details, row_tones)):
            flagged = sorted(r for r, entry in enumerate(self.row_kernels) if entry is not None and entry.get(flag))
            if sorted(given or {}) != flagged:
                raise ValueError(f"clip {flag}s are stored for the kernel rows with {flag} ({flagged}), each once")
            if flagged:
                extras.append((flag, getattr(self, name), given))
        for row, clips in row_clips.items():
            piece = self.kernel_slices[row]
            if tuple(clips.shape) != (piece.stop - piece.start, *self.prior_clips.shape[1:]) or \
                    not bool(torch.isfinite(clips).all()):
                raise ValueError(f"row {row} stores {piece.stop - piece.start} finite clip envelopes shaped "
                                 f"{tuple(self.prior_clips.shape[1:])}, got {tuple(clips.shape)}")
            order = envelope.kernel_order(clips)
            self.prior_clips[piece] = clips[order].to(self.prior_clips)
            for flag, buffer, given in extras:
                if row not in given:
                    continue
                values = given[row]
                if tuple(values.shape) != (clips.shape[0], *buffer.shape[1:]) or not bool(torch.isfinite(values).all()):
                    raise ValueError(f"row {row} stores {clips.shape[0]} finite clip {flag}s shaped "
                                     f"{tuple(buffer.shape[1:])}, got {tuple(values.shape)}")
                buffer[piece] = values[order].to(buffer)

    def _band_power(self, audio: torch.Tensor) -> torch.Tensor:
        """``(B, M, frames)`` power of each band of ``audio`` (B, C, N) over its channels, relative to the band scale."""
        bands = self.pqmf.analysis(audio.float()) / self.band_scale.to(audio.device)
        return bands.pow(2).reshape(audio.shape[0], self.channels, self.bands, -1).mean(dim=1).cpu()

    @torch.no_grad()
    def measure_envelopes(self, audio: torch.Tensor) -> torch.Tensor:
        """``(B, M, K)`` dB envelope of each clip of ``audio`` (B, C, N), relative to the band scale."""
        return envelope.clip_envelopes(self._band_power(audio), self.envelope_knots)

    @torch.no_grad()
    def measure_details(self, audio: torch.Tensor) -> torch.Tensor:
        """``(B, M, points)`` dB flutter of each clip between its envelope's knots (:func:`envelope.clip_details`)."""
        return envelope.clip_details(self._band_power(audio), self.envelope_knots, self.prior_details.shape[-1])

    @torch.no_grad()
    def measure_tones(self, audio: torch.Tensor) -> torch.Tensor:
        """``(B, M, points)`` dB tone of each clip inside each band (:func:`tone.clip_tones`)."""
        return tone.clip_tones(audio, self.bands, self.prior_tones.shape[-1])

    def latent_length(self, samples: int) -> int:
        return samples // self.bands

    @staticmethod
    def _rows(labels, batch: int, available: int) -> torch.Tensor:
        if labels is None:
            return torch.full((batch,), available - 1, dtype=torch.long)
        rows = torch.as_tensor(labels, dtype=torch.long).reshape(-1).cpu()
        rows = rows.expand(batch) if rows.numel() == 1 else rows
        if rows.numel() != batch or int(rows.min()) < 0 or int(rows.max()) >= available:
            raise ValueError(f"labels {rows.tolist()} do not fit a batch of {batch} with {available - 1} labels")
        return rows

    @torch.no_grad()
    def envelope_for(self, labels=None, *, noise: torch.Tensor | None = None,
                     audio: torch.Tensor | None = None, seeds: tuple | None = None) -> torch.Tensor | None:
        """The ``(B, M, K)`` dB envelope of a batch: measured from ``audio``, or drawn from the prior
        for label indices ``labels`` (``None`` or the "no label" index: the all-clips row) with
        coordinates read from the starting ``noise`` (no noise: the likeliest cluster's mean).
        ``None`` for a codec without an envelope.

        A row drawn from its clips' own envelopes deals sound ``i`` the clip of its seed
        (``seeds``: ``(seeds, seeds_b or None, morph)`` as :class:`engine.seeds.SeedNoise` holds
        them; :func:`engine.seeds.deal`, so consecutive seeds take different clips), blended
        towards ``seeds_b``'s clip by ``morph``; without seeds the noise picks it."""
        if self.envelope_knots is None:
            return None
        if audio is not None:
            return self.measure_envelopes(audio)
        batch = noise.shape[0] if noise is not None else 1 if labels is None else torch.as_tensor(labels).numel()
        rows = self._rows(labels, batch, self.prior_mean.shape[0])
        coordinates = None if noise is None else envelope.prior_coordinates(noise.cpu(), self.components + 1)
        means, bases, weights = self.prior_mean.cpu(), self.prior_basis.cpu(), self.prior_weights.cpu()
        drawn = envelope.draw_from_prior(means, bases, weights, rows, coordinates)
        if self.row_kernels is not None and coordinates is not None:
            for row, piece in enumerate(self.kernel_slices):
                chosen = torch.nonzero(rows == row).flatten()
                if piece is None or len(chosen) == 0:
                    continue
                drawn[chosen] = envelope.draw_from_kernel(
                    self.prior_clips[piece].cpu(), means[row], bases[row], weights[row],
                    float(self.row_kernels[row]["width"]), coordinates[chosen],
                    *dealt_clips(seeds, chosen.tolist(), piece.stop - piece.start))
        return drawn if self.reattack_db is None else envelope.limit_reattacks(drawn, self.reattack_db[rows])

    @torch.no_grad()
    def detail_for(self, labels=None, *, seeds: tuple | None = None, batch: int = 1) -> torch.Tensor | None:
        """``(B, M, points)`` dB: for the sounds of a kernel row with detail, the flutter between
        the knots of the clip each sound's seed deals (``seeds`` as :meth:`envelope_for` takes
        them; a morph blends the two seeds' clips' details), 0 for the other sounds; ``None`` when
        no sound of the batch has any (no seeds, or no such row). :meth:`decode` applies it."""
        return self._dealt(getattr(self, "prior_details", None), "detail", labels, seeds, batch)

    @torch.no_grad()
    def tone_for(self, labels=None, *, seeds: tuple | None = None, batch: int = 1) -> torch.Tensor | None:
        """``(B, M, points)`` dB: for the sounds of a kernel row with tone, the tone inside each
        band of the clip each sound's seed deals, as :meth:`detail_for` deals the flutter.
        :meth:`decode` applies it."""
        return self._dealt(getattr(self, "prior_tones", None), "tone", labels, seeds, batch)

    def _dealt(self, stored: torch.Tensor | None, flag: str, labels, seeds: tuple | None,
               batch: int) -> torch.Tensor | None:
        """What ``stored`` (a per-clip buffer in the kernel's order) holds for the clips the seeds
        deal, for the sounds of the kernel rows marked ``flag``; 0 elsewhere; ``None`` when none."""
        if seeds is None or stored is None:
            return None
        rows = self._rows(labels, batch, self.prior_mean.shape[0])
        dealt = torch.zeros(batch, *stored.shape[1:])
        found = False
        for row, piece in enumerate(self.kernel_slices):
            chosen = torch.nonzero(rows == row).flatten()
            if piece is None or len(chosen) == 0 or not self.row_kernels[row].get(flag):
                continue
            picks, picks_b, share = dealt_clips(seeds, chosen.tolist(), piece.stop - piece.start)
            kept = stored[piece].cpu()
            dealt[chosen] = kept[picks] if picks_b is None else (1.0 - share) * kept[picks] + share * kept[picks_b]
            found = True
        return dealt if found else None

    def follow_loudness(self, envelope_db: torch.Tensor, points, sample_rate: int) -> torch.Tensor:
        """``envelope_db`` ``(B, M, K)`` moved so that the sound's RMS follows a drawn loudness
        curve (``(ms, dBFS)`` points) between its first and last point: every band of a knot is
        shifted by the difference between the drawn level and the level the envelope implies.

        The implied level: the network's bands have unit variance, so band m plays at
        ``scale_m * 10^(env_m / 20)``, and the filter bank's synthesis adds the bands' power:
        power = sum over bands of ``scale_m^2 10^(env_m / 10)`` (checked on unit-variance noise, and
        on the trained drums model, whose sounds sit within 0.3-1.4 dB of it after the attack;
        docs/design-notes.md). The spectral balance (the prior's) stays; only the level moves.
        """
        if self.envelope_knots is None:
            raise ValueError("this codec has no loudness envelope to follow a curve with")
        knots = np.asarray(self.envelope_knots, dtype=np.float64)
        times = knots * self.bands / sample_rate * 1000.0
        xs = np.array([p[0] for p in points], dtype=np.float64)
        ys = np.array([p[1] for p in points], dtype=np.float64)
        level = torch.from_numpy(np.interp(times, xs, ys)).float()
        frame_ms = self.bands / sample_rate * 1000.0
        mask = torch.from_numpy((times >= xs[0] - frame_ms) & (times <= xs[-1] + frame_ms)).float()
        scale = self.band_scale.reshape(self.channels, self.bands).pow(2).mean(dim=0).cpu()  # (M,)
        power = (scale[None, :, None] * torch.pow(10.0, envelope_db.float().cpu() / 10.0)).sum(dim=1)  # (B, K)
        implied = 10.0 * torch.log10(power.clamp_min(1e-12))
        shift = (level[None] - implied) * mask[None]
        return envelope_db + shift[:, None, :].to(envelope_db)

    def _gain(self, envelope_db: torch.Tensor | None, frames: int, like: torch.Tensor) -> torch.Tensor:
        """Per-channel gains ``(B, C*M, frames)`` (``(1, C*M, 1)`` without an envelope)."""
        scale = self.band_scale.to(like.device)
        if envelope_db is None:
            return scale
        if self.envelope_knots is None or envelope_db.shape[1:] != (self.bands, len(self.envelope_knots)):
            raise ValueError(f"an envelope of shape {tuple(envelope_db.shape)} does not fit this codec")
        if frames not in self._weights:
            self._weights[frames] = envelope.interpolation_matrix(self.envelope_knots, frames)
        gain = envelope.envelope_gain(envelope_db.float().cpu(), self._weights[frames])
        return scale * gain.repeat(1, self.channels, 1).to(like.device)

    def encode(self, audio: torch.Tensor, envelope_db: torch.Tensor | None = None) -> torch.Tensor:
        bands = self.pqmf.analysis(audio)
        return bands / self._gain(envelope_db, bands.shape[-1], bands).to(bands.dtype)

    def decode(self, latent: torch.Tensor, envelope_db: torch.Tensor | None = None,
               detail_db: torch.Tensor | None = None, tone_db: torch.Tensor | None = None) -> torch.Tensor:
        """Audio of ``latent`` at the band gains of ``envelope_db``, fluttering by ``detail_db``
        (:meth:`detail_for`; ``None``: the envelope alone), and filtered to the tone ``tone_db``
        (:meth:`tone_for`; ``None``: the network's own)."""
        gain = self._gain(envelope_db, latent.shape[-1], latent)
        if detail_db is not None:
            flutter = envelope.detail_gain(detail_db.float().cpu(), latent.shape[-1])
            gain = gain * flutter.repeat(1, self.channels, 1).to(gain)
        audio = self.pqmf.synthesis(latent * gain.to(latent.dtype))
        return audio if tone_db is None else tone.apply_tone(audio, tone_db, self.bands)


MAX_KERNEL_WIDTH = 3.0  # as MAX_ENVELOPE_SPREAD: a clip moved further than this is no longer its kind
KERNEL_EXTRAS = (("detail", "prior_details", "detail_points", envelope.DETAIL_POINTS),   # envelope.clip_details
                 ("tone", "prior_tones", "tone_points", tone.TONE_POINTS))             # tone.clip_tones
"""What a kernel row's clips may store besides their envelopes: (its flag in the row's manifest
entry, the weights buffer, the manifest key of its points per band, their default)."""


def kernel_slices(kernels: list, rows: int) -> list[slice | None]:
    """Where each prior row's clip envelopes lie in ``prior_clips`` (None: a row the mixture draws),
    from the manifest's ``envelope_prior.kernel`` (one entry per row: null or ``{"width", "clips"}``);
    a clear error for a malformed one."""
    def valid(entry) -> bool:
        if entry is None:
            return True
        width, clips = (entry.get("width"), entry.get("clips")) if isinstance(entry, dict) else (None, None)
        return (isinstance(width, (int, float)) and not isinstance(width, bool) and 0.0 <= width <= MAX_KERNEL_WIDTH
                and isinstance(clips, int) and not isinstance(clips, bool) and clips >= 1
                and all(isinstance(entry.get(flag, False), bool) for flag, *_ in KERNEL_EXTRAS)
                and not set(entry) - {"width", "clips", *(flag for flag, *_ in KERNEL_EXTRAS)})
    if not isinstance(kernels, list) or len(kernels) != rows or not all(valid(entry) for entry in kernels):
        raise ValueError(f"envelope_prior.kernel must give {rows} rows, each null or {{\"width\": 0-"
                         f"{MAX_KERNEL_WIDTH:g}, \"clips\": a count of 1 or more, \"detail\" and \"tone\": true or "
                         f"false (optional)}}, got {kernels}")
    slices, start = [], 0
    for entry in kernels:
        slices.append(None if entry is None else slice(start, start + entry["clips"]))
        start += 0 if entry is None else entry["clips"]
    return slices


def dealt_clips(seeds: tuple | None, sounds: list[int], count: int) -> tuple:
    """``(picks, picks_b, share)`` for :func:`envelope.draw_from_kernel`: the clips of ``count`` that
    the seeds of sounds ``sounds`` deal (``seeds``: ``(seeds, seeds_b or None, morph)``), or
    ``(None, None, 0.0)`` to let the noise pick."""
    if seeds is None:
        return None, None, 0.0
    first, second, share = seeds
    if len(first) <= max(sounds) or (second is not None and len(second) != len(first)):
        raise ValueError(f"{len(first)} seeds do not fit a batch of {max(sounds) + 1} sounds")
    picks = torch.tensor([deal(first[i], count) for i in sounds], dtype=torch.long)
    if second is None or not share:
        return picks, None, 0.0
    return picks, torch.tensor([deal(second[i], count) for i in sounds], dtype=torch.long), float(share)


def measure_band_scale(audio: torch.Tensor, channels: int = 2, bands: int = 32, taps_per_band: int = 8,
                       floor: float = 1e-4) -> list[float]:
    """Per-band std of a batch of training clips (B, C, N), floored so empty bands stay finite."""
    with torch.no_grad():
        banded = PQMF(bands, taps_per_band).analysis(audio.float())
    return banded.std(dim=(0, 2)).clamp_min(floor).tolist()


@torch.no_grad()
def fit_envelope_prior(codec: BandCodec, audio: torch.Tensor, labels: torch.Tensor, chunk: int = 64) -> None:
    """Fill ``codec``'s per-clip envelope prior from labelled clips (B, C, N) (labels: the model's indices)."""
    # each chunk's band power once: the envelopes and, for kernel rows with detail, the flutter from it
    flutters = getattr(codec, "prior_details", None) is not None
    tones = getattr(codec, "prior_tones", None) is not None
    envelopes, details, clip_tones = [], [], []
    for i in range(0, audio.shape[0], chunk):
        power = codec._band_power(audio[i:i + chunk])
        envelopes.append(envelope.clip_envelopes(power, codec.envelope_knots))
        if flutters:
            details.append(envelope.clip_details(power, codec.envelope_knots, codec.prior_details.shape[-1]))
        if tones:
            clip_tones.append(codec.measure_tones(audio[i:i + chunk]))
    envelopes = torch.cat(envelopes)
    rows, clusters = codec.prior_weights.shape
    means, bases, weights = envelope.fit_prior(envelopes, labels.cpu(), rows - 1, clusters, codec.components,
                                               getattr(codec, "row_shapes", None))
    spreads = getattr(codec, "row_spreads", None)
    if spreads is not None:
        bases = bases * torch.tensor([float(v) for v in spreads]).reshape(-1, 1, 1, 1, 1)
    codec.set_prior(means, bases, weights)
    if getattr(codec, "row_kernels", None) is not None:
        def per_row(values: list, flag: str) -> dict[int, torch.Tensor] | None:
            if not values:
                return None
            values = torch.cat(values)
            return {row: values[labels.cpu() == row] for row, entry in enumerate(codec.row_kernels)
                    if entry is not None and entry.get(flag)}
        codec.set_kernel_clips({row: envelopes[labels.cpu() == row] for row, piece in enumerate(codec.kernel_slices)
                                if piece is not None}, per_row(details, "detail"), per_row(clip_tones, "tone"))

