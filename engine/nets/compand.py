"""Companding of a codec's latent, so that diffusion sees a space where a small error is a small sound.

Why: the autoencoder's latent spans four orders of magnitude in energy. Measured on the shipped
codec (docs/latent.md, "Companded latent"): per-frame latent energy is ~0.26 at a kick's attack and
~0.001 in its tail, but ~50 at a hat's attack, and a kick's whole body lives in tiny departures from
the latent of silence. Diffusion errors are of a fixed size in the (unit-variance) space it works
in, so a perturbation of 0.05 std in that space (unit variance per channel) left decoded kicks at
2.4 dB SNR and put an error floor 30 dB under the peak into their tails
(``bench/probe_latent_space.py``). ``asinh`` is linear near zero and logarithmic far from
it: ``t = asinh((z - silence) / scale) / std`` (per channel, then unit variance per channel) makes
the same perturbation a 29.5 dB-SNR kick with its error floor 62 dB under the peak, while hats
(the large values) keep their relative precision. The transform is fixed (fitted once on the
training clips when a latent run starts) and exactly invertible; it lives in the latent model's
manifest (``codec.compand``) because it belongs to the diffusion model, not to the codec, and
other latent models on the same codec folder may not use it.
"""

from __future__ import annotations

import math

import torch
from torch import nn

DEFAULT_SCALE = 0.01  # in units of the codec's unit-scale latent; chosen by the measurement above
ENVELOPE_SCALE = 1e-4  # for a codec's band-envelope channels (plain RMS): nearly a log with a floor.
# Why: at 0.01 those channels, mostly silence with rare loud attacks, reached 34 std after unit-variance
# scaling (the learned channels: 11), a heavy tail a diffusion model from unit noise learns slowly;
# at 1e-4 they reach 11 too, and the same 0.05-std error still leaves kick and snare tails 63-68 dB
# under the peak (hats lose 2.6 dB SNR; bench/probe_latent_space.py --envelope-scales, session 4).
LIMIT_MARGIN = 1.25   # decode clamps the companded latent to this times the largest value seen in training
RANGE_MARGIN = 1.25   # with per-channel ranges: each channel may reach this times its loudest training value
# Why per channel: a latent model's rare stray values (0.2 % of frames in the bypass channels of a
# guided snare, up to 8 std beyond anything in the data) come back through sinh as bursts 10-20x
# louder than any real drum; the one global limit (13.7 std) let them through. Clamping each channel
# to its own training range brought 8 generated snares' peaks from 6-18 to 1.3-2.2 (session 5).


class CompandedCodec(nn.Module):
    """A latent codec seen through ``t = asinh((z - offset) / scale) / std``: same interface
    (``encode``, ``decode``, ``envelope_for``, ``latent_channels``, ``latent_length``...) as the
    codec it wraps, so samplers, the studio, renders and evaluation need not know about it.

    ``decode`` clamps ``t`` first, each channel to its own training range (``low``, ``high``, with
    :data:`RANGE_MARGIN`) when the transform has one, else to ``+-limit``: a stray large value from
    an untrained or guided model would otherwise come back through ``sinh`` as a burst."""

    def __init__(self, codec: nn.Module, scale: float | list[float], offset, std, limit: float,
                 low=None, high=None):
        super().__init__()
        scales = torch.as_tensor(scale, dtype=torch.float32).reshape(1, -1, 1)
        if not bool((scales > 0).all()) or not limit > 0:
            raise ValueError(f"compand scale and limit must be > 0, got {scale}, {limit}")
        self.codec = codec
        self.scale = float(scale) if scales.numel() == 1 else [float(v) for v in scales.flatten()]
        self.limit = float(limit)
        offset = torch.as_tensor(offset, dtype=torch.float32).reshape(1, -1, 1)
        std = torch.as_tensor(std, dtype=torch.float32).reshape(1, -1, 1)
        channels = codec.latent_channels
        if offset.shape[1] != channels or std.shape[1] != channels or scales.shape[1] not in (1, channels):
            raise ValueError(f"compand offset/std/scale have {offset.shape[1]}/{std.shape[1]}/{scales.shape[1]} "
                             f"channels, the codec makes {channels}")
        if not (std > 0).all():
            raise ValueError("compand std must be > 0 in every channel")
        self.register_buffer("offset", offset)
        self.register_buffer("std", std)
        self.register_buffer("scales", scales.expand(1, channels, 1).clone())
        self.ranged = low is not None and high is not None
        low = torch.as_tensor(low if self.ranged else [-limit] * channels, dtype=torch.float32).reshape(1, -1, 1)
        high = torch.as_tensor(high if self.ranged else [limit] * channels, dtype=torch.float32).reshape(1, -1, 1)
        if low.shape[1] != channels or high.shape[1] != channels or not bool((low <= high).all()):
            raise ValueError(f"compand low/high need {channels} channels with low <= high")
        self.register_buffer("low", low)
        self.register_buffer("high", high)

    def __getattr__(self, name: str):
        """Everything else (``hop``, ``sample_rate``, ``latent_scale``, ``stored_with_model``...) is the codec's."""
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(super().__getattr__("codec"), name)

    @property
    def latent_channels(self) -> int:
        return self.codec.latent_channels

    def latent_length(self, samples: int) -> int:
        return self.codec.latent_length(samples)

    def envelope_for(self, labels=None, *, noise=None, audio=None, seeds=None):
        return self.codec.envelope_for(labels, noise=noise, audio=audio, seeds=seeds)

    def compand(self, latent: torch.Tensor) -> torch.Tensor:
        scales, offset, std = (b.to(latent.dtype) for b in (self.scales, self.offset, self.std))
        return torch.asinh((latent - offset) / scales) / std

    def expand(self, companded: torch.Tensor) -> torch.Tensor:
        scales, offset, std = (b.to(companded.dtype) for b in (self.scales, self.offset, self.std))
        low, high = self.low.to(companded.dtype), self.high.to(companded.dtype)
        return scales * torch.sinh(torch.maximum(torch.minimum(companded, high), low) * std) + offset

    def encode(self, audio: torch.Tensor, envelope_db=None) -> torch.Tensor:
        return self.compand(self.codec.encode(audio, envelope_db))

    def decode(self, latent: torch.Tensor, envelope_db=None) -> torch.Tensor:
        return self.codec.decode(self.expand(latent), envelope_db)

    def spec(self) -> dict:
        """The manifest entry (``codec.compand``) that rebuilds this transform."""
        spec = {"scale": self.scale if isinstance(self.scale, float) else [float(f"{v:.6g}") for v in self.scale],
                "limit": round(self.limit, 4),
                "offset": [round(float(v), 7) for v in self.offset.flatten()],
                "std": [round(float(v), 7) for v in self.std.flatten()]}
        if self.ranged:  # rounded outwards: the stored range never cuts what was measured
            spec.update(low=[math.floor(float(v) * 1e4) / 1e4 for v in self.low.flatten()],
                        high=[math.ceil(float(v) * 1e4) / 1e4 for v in self.high.flatten()])
        return spec

    @torch.no_grad()
    def with_ranges(self, audio: torch.Tensor, batch: int = 16) -> "CompandedCodec":
        """This transform plus each channel's range over clips ``audio`` (B, C, N), widened so that
        the expanded latent may reach :data:`RANGE_MARGIN` times its largest training magnitude."""
        return self._ranged_by(self.compand(_encode_in_batches(self.codec, audio, batch)))

    def _ranged_by(self, companded: torch.Tensor) -> "CompandedCodec":
        """This transform plus the widened per-channel range of ``companded`` (B, C, F), its own output."""
        std = self.std.flatten().to(companded.dtype)

        def widen(t: torch.Tensor) -> torch.Tensor:  # t * std = asinh(u): scale u, the raw deviation
            return torch.asinh(RANGE_MARGIN * torch.sinh(t * std)) / std

        low, high = widen(companded.amin(dim=(0, 2))), widen(companded.amax(dim=(0, 2)))
        return CompandedCodec(self.codec, self.scale, self.offset, self.std, self.limit,
                              low.tolist(), high.tolist()).to(self.offset.device)


def _encode_in_batches(codec: nn.Module, audio: torch.Tensor, batch: int) -> torch.Tensor:
    return torch.cat([codec.encode(audio[i:i + batch]) for i in range(0, len(audio), batch)])


def wrap(codec: nn.Module, spec: dict | None) -> nn.Module:
    """``codec`` seen through the manifest's ``compand`` entry (unchanged when there is none)."""
    if not spec:
        return codec
    return CompandedCodec(codec, spec["scale"], spec["offset"], spec["std"], spec["limit"],
                          spec.get("low"), spec.get("high"))


@torch.no_grad()
def fit(codec: nn.Module, audio: torch.Tensor, scale: float | list[float] = DEFAULT_SCALE,
        batch: int = 16) -> CompandedCodec:
    """The transform for ``codec`` fitted on training clips ``audio`` (B, C, N): the offset is the
    latent of silence (per channel, the median over frames of ``encode(zeros)``), ``std`` makes
    every channel unit-variance over the clips, ``limit`` is a margin over the largest value seen,
    and each channel's range (:meth:`CompandedCodec.with_ranges`) is measured on the same clips."""
    silence = codec.encode(torch.zeros(1, *audio.shape[1:], device=audio.device))
    offset = silence.median(dim=-1).values.reshape(-1)
    ones = torch.ones_like(offset)
    probe = CompandedCodec(codec, scale, offset, ones, limit=1.0)
    companded = probe.compand(_encode_in_batches(codec, audio, batch))
    std = companded.float().std(dim=(0, 2)).clamp_min(1e-6)  # a dead channel must not divide by zero
    normalised = companded / std[None, :, None]
    limit = float(normalised.abs().max()) * LIMIT_MARGIN
    return CompandedCodec(codec, scale, offset, std, max(limit, 1.0))._ranged_by(normalised)
