"""In-house 1-D convolutional audio autoencoder with a continuous latent: the latent models' codec.

Read top to bottom: helpers, the residual unit, the encoder, the decoder, then the codec.
The audio is first split into PQMF sub-bands (``pqmf.PQMF``, 16 bands: 16x fewer frames with
full bandwidth, as in RAVE), then strided convolutions compress time further (default 2 x 4 = 8,
128x in all: 44.1 kHz -> ~345 latent frames per second) into ``latent_channels`` continuous
channels. The decoder mirrors it with transposed convolutions and PQMF synthesis. No attention
and no normalisation layers that look across time, so it is fully convolutional: any length that
is a multiple of ``hop`` goes through, and a longer clip is the same computation as a shorter one.

**Low bypass** (``low_bypass`` = L > 0): band 0 is split again by a second PQMF into
``prod(factors)`` sub-bands that run exactly at the latent frame rate, and the lowest L of them
(per channel; L = 2 is 0-345 Hz at the defaults) are appended to the learned latent as they are,
replacing the decoder's own output there. Why: a conv autoencoder trained on STFT magnitudes
learns noise-like bands long before phase-coherent tones (the first codec rendered a decaying
60 Hz sine 45 dB too quietly, so kicks came back at 4 % of their peak), and a kick's body is
exactly such a tone. The bypass makes the pitched low end exact at a cost of 2L latent channels
and no parameters, and the latent diffusion model generates it like any other channel.

**Band envelope** (``band_envelope`` = True): the RMS of each PQMF band above band 0 over every
latent frame (mono: the channels' mean power) is appended to the latent, and the decoder rescales
its own bands to that envelope (the ratio of the two envelopes, each linearly interpolated to
the band rate). Why: the learned decoder renders a plausible spectral shape but a noise floor
around -64 dBFS where the input was silent and misplaced energy elsewhere, and the drum
features (and ears) hear exactly that: with the true envelope the shipped 4481-step decoder's
reconstructions went from a Fréchet ratio of 1.55 to 0.91 on the held-out kits and the drum
classifier's recall of reconstructed kicks from 20 % to 100 % (session 4,
``python -m engine.eval.codec --classify``). It costs ``bands - 1`` latent channels and no
parameters; the learned channels only have to carry the fine structure.

**The top of band 0 held to its neighbours** (``band0_ceiling_db`` = c): with the bypass and the
band envelope, band 0's upper sub-bands (689-1378 Hz at the defaults) are the one part of the
spectrum whose loudness the latent does not carry, and the learned decoder fills them where the
input had nothing: a TR-808 hat, nearly silent under 2 kHz, came back with its 700-1400 Hz attack at -17 dB
under its peak instead of -70. In real drums that part is seldom louder than the louder of its two
neighbours (the top bypassed sub-band and band 1's envelope, both exact in the latent): 90 % of
real frames sit under +3.4 dB, 99.9 % under +12.3 (session 41). So decode holds it, frame by frame
(one gain for its sub-bands, both channels; a 3-frame minimum then mean, so the gain is smooth and
never above the frame's own), at most ``c`` dB over them. It reads only the latent, costs no
parameters and no latent channels, and a decoder that gets that part right is left untouched.

The codec has the same interface as ``pqmf.BandCodec`` (``encode``, ``decode``,
``latent_channels``, ``latent_length``), so the samplers and the studio use it unchanged.
``encode`` divides the raw latent by ``latent_scale`` (its standard deviation over the training
data, measured by the codec trainer and stored in the codec's manifest) so a diffusion model sees
unit-variance latents, which is what alpha-blending from unit noise assumes.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .pqmf import PQMF

ENVELOPE_EPS = 1e-6
"""Added to the decoder's own band envelope before dividing (raw audio scale, -120 dBFS)."""


# ----------------------------------------------------------------------------- helpers


def _conv(in_channels: int, out_channels: int, kernel: int, dilation: int = 1) -> nn.Conv1d:
    """'Same' convolution (odd kernel), weight-normalised for stable adversarial-free training."""
    return nn.utils.parametrizations.weight_norm(
        nn.Conv1d(in_channels, out_channels, kernel, padding=dilation * (kernel - 1) // 2, dilation=dilation))


# ----------------------------------------------------------------------------- layers


class ResidualUnit(nn.Module):
    """SEANet-style unit: dilated conv -> 1x1 conv, added to the input."""

    def __init__(self, channels: int, dilation: int, kernel: int = 7):
        super().__init__()
        self.conv1 = _conv(channels, channels, kernel, dilation)
        self.conv2 = _conv(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.elu(self.conv1(F.elu(x))))


def _units(channels: int, count: int, kernel: int) -> list[nn.Module]:
    return [ResidualUnit(channels, 3**i, kernel) for i in range(count)]


class Encoder(nn.Module):
    """(B, C*bands, N/bands) -> (B, latent_channels, N/hop)."""

    def __init__(self, in_channels: int, widths: tuple, factors: tuple, latent_channels: int, units: int,
                 kernel: int):
        super().__init__()
        layers: list[nn.Module] = [_conv(in_channels, widths[0], kernel)]
        for i, factor in enumerate(factors):
            layers += _units(widths[i], units, kernel)
            layers += [nn.ELU(), nn.utils.parametrizations.weight_norm(
                nn.Conv1d(widths[i], widths[i + 1], 2 * factor, stride=factor, padding=factor // 2))]
        layers += _units(widths[-1], units, kernel) + [nn.ELU(), _conv(widths[-1], latent_channels, 3)]
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class Decoder(nn.Module):
    """(B, latent_channels, N/hop) -> (B, C*bands, N/bands): the encoder mirrored."""

    def __init__(self, out_channels: int, widths: tuple, factors: tuple, latent_channels: int, units: int,
                 kernel: int):
        super().__init__()
        layers: list[nn.Module] = [_conv(latent_channels, widths[-1], kernel)]
        for i in reversed(range(len(factors))):
            factor = factors[i]
            layers += _units(widths[i + 1], units, kernel)
            layers += [nn.ELU(), nn.utils.parametrizations.weight_norm(
                nn.ConvTranspose1d(widths[i + 1], widths[i], 2 * factor, stride=factor, padding=factor // 2))]
        layers += _units(widths[0], units, kernel) + [nn.ELU(), _conv(widths[0], out_channels, kernel)]
        self.layers = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.layers(z)


# ----------------------------------------------------------------------------- codec


class ScaledLatentCodec(nn.Module):
    """The codec interface for a learned latent divided by ``latent_scale`` (so diffusion sees unit
    variance): subclasses give ``encode_raw``/``decode_raw``; they have no loudness envelope
    (``BandCodec`` does), so ``envelope_for`` is ``None`` and encode/decode ignore it."""

    latent_scale: float = 1.0

    def envelope_for(self, labels=None, *, noise=None, audio=None, seeds=None) -> None:
        """The codec interface's envelope (``BandCodec`` has one): this codec needs none."""
        return None

    def encode(self, audio: torch.Tensor, envelope_db=None) -> torch.Tensor:
        return self.encode_raw(audio) / self.latent_scale

    def decode(self, latent: torch.Tensor, envelope_db=None) -> torch.Tensor:
        return self.decode_raw(latent * self.latent_scale)


class AudioAutoencoder(ScaledLatentCodec):
    """``encode``: (B, C, N) audio -> (B, latent_channels, ceil(N / hop)) unit-scale latent; ``decode`` inverts.

    ``N`` need not be a multiple of ``hop``: the audio is zero-padded at the end, and ``decode``
    returns ``frames * hop`` samples (callers cut to the length they want).
    """

    def __init__(self,
                 channels: int = 2,               # audio channels
                 bands: int = 16,                 # PQMF sub-bands (the first 16x of compression)
                 taps_per_band: int = 8,          # PQMF prototype length per band
                 widths: tuple = (64, 128, 256),  # conv channels after the PQMF and after each down-sampling
                 factors: tuple = (2, 4),         # time down-sampling after the PQMF (even numbers)
                 latent_channels: int = 32,       # continuous latent channels
                 units: int = 2,                  # residual units (dilations 1, 3, 9...) per level
                 kernel: int = 7,                 # residual unit kernel
                 latent_scale: float = 1.0,       # std of the raw latent over the data (set by the trainer)
                 sample_rate: int = 44100,        # informational: the rate it was trained at
                 low_bypass: int = 0,             # lowest sub-bands of band 0 passed through exactly (see above)
                 band_envelope: bool = False,     # per-band RMS envelope as latent channels (see above)
                 band0_ceiling_db: float | None = None):  # band 0's learned top held to its neighbours (see above)
        super().__init__()
        if len(widths) != len(factors) + 1:
            raise ValueError(f"widths needs {len(factors) + 1} entries for {len(factors)} factors, got {len(widths)}")
        if any(f < 1 or f % 2 for f in factors):
            raise ValueError(f"down-sampling factors must be even, got {list(factors)}")
        if not latent_scale > 0:
            raise ValueError(f"latent_scale must be > 0, got {latent_scale}")
        self.channels, self.bands, self.sample_rate = channels, bands, sample_rate
        self._latent_channels = latent_channels
        self.hop = bands * math.prod(factors)
        self.latent_scale = float(latent_scale)
        self.pqmf = PQMF(bands, taps_per_band)
        self.encoder = Encoder(channels * bands, tuple(widths), tuple(factors), latent_channels, units, kernel)
        self.decoder = Decoder(channels * bands, tuple(widths), tuple(factors), latent_channels, units, kernel)
        # The low bypass: band 0 split again into prod(factors) sub-bands, which run at the latent's
        # frame rate; the lowest `low_bypass` of them (per channel) are latent channels as they are.
        self.sub_bands = math.prod(factors)
        if not 0 <= low_bypass <= self.sub_bands:
            raise ValueError(f"low_bypass must be between 0 and {self.sub_bands}, got {low_bypass}")
        self.low_bypass = int(low_bypass)
        self.sub_pqmf = PQMF(self.sub_bands, taps_per_band) if low_bypass else None
        self.band_envelope = bool(band_envelope)
        if band0_ceiling_db is not None and not (low_bypass and band_envelope and low_bypass < self.sub_bands):
            raise ValueError("band0_ceiling_db needs a low bypass below the top of band 0 and the band envelope")
        if band0_ceiling_db is not None and not math.isfinite(band0_ceiling_db):
            raise ValueError(f"band0_ceiling_db must be a finite number of dB, got {band0_ceiling_db}")
        self.band0_ceiling_db = None if band0_ceiling_db is None else float(band0_ceiling_db)

    @property
    def latent_channels(self) -> int:
        return self._latent_channels + self.channels * self.low_bypass + self.envelope_channels

    @property
    def envelope_channels(self) -> int:
        return self.bands - 1 if self.band_envelope else 0

    def channel_groups(self) -> dict[str, slice]:
        """Which latent channels are learned, bypassed low sub-bands and band envelopes (in that
        order; empty groups left out): a diffusion model's loss read per group shows which kind of
        channel it has not learned yet (``latent_experiments val-loss``)."""
        return {name: part for name, part in self._channel_slices().items() if part.stop > part.start}

    def _channel_slices(self) -> dict[str, slice]:
        """learned, bypass, envelope: the latent's layout, empty slices included (decode splits by it)."""
        exact_end = self._latent_channels + self.channels * self.low_bypass
        return {"learned": slice(0, self._latent_channels), "bypass": slice(self._latent_channels, exact_end),
                "envelope": slice(exact_end, self.latent_channels)}

    def _band_rms(self, bands: torch.Tensor) -> torch.Tensor:
        """(B, C*bands, F) PQMF bands -> (B, bands - 1, F / sub_bands): RMS of bands 1.. per latent frame, mono."""
        grouped = bands.reshape(bands.shape[0], self.channels, self.bands, -1, self.sub_bands)[:, :, 1:]
        return grouped.float().pow(2).mean(dim=(1, 4)).sqrt()

    def _apply_envelope(self, bands: torch.Tensor, envelope: torch.Tensor) -> torch.Tensor:
        """``bands`` with bands 1.. rescaled so their per-frame RMS follows ``envelope`` (negatives are silence)."""
        def at_band_rate(frames: torch.Tensor) -> torch.Tensor:
            return F.interpolate(frames, scale_factor=self.sub_bands, mode="linear", align_corners=False)

        gain = at_band_rate(envelope.float().clamp_min(0)) / (at_band_rate(self._band_rms(bands)) + ENVELOPE_EPS)
        shaped = bands.reshape(bands.shape[0], self.channels, self.bands, -1)
        shaped = torch.cat([shaped[:, :, :1], shaped[:, :, 1:] * gain[:, None].to(bands.dtype)], dim=2)
        return shaped.flatten(1, 2)

    def _split_band0(self, bands: torch.Tensor) -> torch.Tensor:
        """(B, C*bands, F) PQMF bands -> (B, C, sub_bands, F / sub_bands): band 0 of each channel, split again."""
        band0 = bands[:, ::self.bands]  # channel-major layout: band 0 of channel c is row c * bands
        sub = self.sub_pqmf.analysis(band0)
        return sub.reshape(sub.shape[0], self.channels, self.sub_bands, -1)

    def _hold_band0_top(self, sub: torch.Tensor, envelope: torch.Tensor) -> torch.Tensor:
        """``sub`` (B, C, sub_bands, F: band 0 split, the exact sub-bands in place) with the learned
        ones above the bypass turned down where their mono power per frame exceeds the louder of
        their neighbours' (the top exact sub-band, band 1's envelope) by more than ``band0_ceiling_db``."""
        power = sub.float().pow(2).mean(1)                                   # (B, sub_bands, F), mono
        neighbours = torch.maximum(power[:, self.low_bypass - 1], envelope[:, 0].float().clamp_min(0).pow(2))
        ceiling = neighbours * 10.0 ** (self.band0_ceiling_db / 10.0)
        gain = (ceiling / (power[:, self.low_bypass:].mean(1) + ENVELOPE_EPS ** 2)).clamp(max=1.0).sqrt()
        gain = -F.max_pool1d(-gain[:, None], 3, stride=1, padding=1)        # each frame's lowest of three...
        gain = F.avg_pool1d(gain, 3, stride=1, padding=1, count_include_pad=False)[:, 0]  # ...then smoothed
        held = sub[:, :, self.low_bypass:] * gain[:, None, None].to(sub.dtype)
        return torch.cat([sub[:, :, :self.low_bypass], held], dim=2)

    def latent_length(self, samples: int) -> int:
        return -(-int(samples) // self.hop)

    def encode_raw(self, audio: torch.Tensor) -> torch.Tensor:
        """The latent before scaling (what the trainer measures ``latent_scale`` on)."""
        pad = self.latent_length(audio.shape[-1]) * self.hop - audio.shape[-1]
        bands = self.pqmf.analysis(F.pad(audio, (0, pad)))
        parts = [self.encoder(bands)]
        if self.low_bypass:
            parts.append(self._split_band0(bands)[:, :, :self.low_bypass].flatten(1, 2))
        if self.band_envelope:
            parts.append(self._band_rms(bands))
        return torch.cat([part.to(parts[0].dtype) for part in parts], dim=1)

    def decode_raw(self, latent: torch.Tensor) -> torch.Tensor:
        learned, exact, envelope = (latent[:, part] for part in self._channel_slices().values())
        bands = self.decoder(learned)
        if self.band_envelope:
            bands = self._apply_envelope(bands, envelope)
        if self.low_bypass:
            sub = self._split_band0(bands)
            sub = torch.cat([exact.reshape(sub.shape[0], self.channels, self.low_bypass, -1).to(sub.dtype),
                             sub[:, :, self.low_bypass:]], dim=2)
            if self.band0_ceiling_db is not None:
                sub = self._hold_band0_top(sub, envelope)
            bands = bands.clone()
            bands[:, ::self.bands] = self.sub_pqmf.synthesis(sub.flatten(1, 2))
        return self.pqmf.synthesis(bands)

    def forward(self, audio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Round trip for training: (reconstruction cut to the input length, raw latent)."""
        latent = self.encode_raw(audio)
        return self.decode_raw(latent)[..., :audio.shape[-1]], latent
