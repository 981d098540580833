"""1-D U-Net with AdaGN, read top to bottom like EDM2's networks file.

It runs on a latent sequence (B, channels, frames). For the waveform drum models that latent is
the audio split into 32 normalised PQMF bands (``pqmf.BandCodec``): the tiny-audio-diffusion
recipe (1-D U-Net, attention only at the lowest resolutions, v-objective) runs its first levels
at the full 44.1 kHz rate, which is what makes it cost ~1 s per step on a laptop CPU, while here
the first level sees 1024 frames x 64 channels for a 0.74 s stereo clip, and each level below
divides time by 4: (1024, 256, 64) frames, attention only at 64 frames. Measured on the 2-core
CPU: ~20 ms per forward pass at batch 1 and ~0.45 s per training step at batch 16 (3.6 M
parameters), against 0.25 s / 4+ s for a 16-band, 4-level variant of 9 M parameters.

Time (and optionally a class label) condition every residual block by AdaGN:
``(1 + scale) * GroupNorm(h) + shift``. Time-varying controls (curves at the latent frame rate:
loudness, onsets; ``engine.conditions``) are averaged down to each level's frame rate and added
to its input through a 1x1 projection that starts at zero, so a model that gains them computes
what it did before until training teaches it to read them. Hyperparameters are constructor
arguments, stored as-is in the model's manifest.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


# ----------------------------------------------------------------------------- helpers


def fourier_embedding(t: torch.Tensor, dim: int, max_period: float = 10_000.0) -> torch.Tensor:
    """Sinusoidal embedding of a continuous time in [0, 1] (scaled so 1 spans many periods)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = (t.float() * 1000.0)[:, None] * freqs[None, :]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=1)


def time_position_features(frames: int, frame_rate: float, dim: int, device=None) -> torch.Tensor:
    """(1, dim, frames) sinusoids of each frame's absolute time in seconds.

    Convolutions and attention are blind to where a frame sits in the clip, but drum one-shots
    are onset-aligned: loudness is a function of absolute time. Without these features a model
    sampling from pure noise cannot tell the attack from the tail and renders stationary noise.
    Periods run log-spaced from 8 s down to 4 frames; seconds (not frame indices) keep the
    meaning fixed when a variable-length model renders a shorter or longer sound.
    """
    seconds = torch.arange(frames, device=device, dtype=torch.float32) / frame_rate
    periods = torch.logspace(math.log10(8.0), math.log10(4.0 / frame_rate), dim // 2, device=device)
    args = 2 * math.pi * seconds[None, :] / periods[:, None]
    return torch.cat([torch.sin(args), torch.cos(args)], dim=0)[None]


def _zero_conv(in_channels: int, out_channels: int) -> nn.Conv1d:
    """A 1x1 projection that starts at zero: a new input changes nothing until training uses it."""
    conv = nn.Conv1d(in_channels, out_channels, 1)
    nn.init.zeros_(conv.weight)
    nn.init.zeros_(conv.bias)
    return conv


def _zero_mlp(in_features: int, out_features: int) -> nn.Sequential:
    mlp = nn.Sequential(nn.Linear(in_features, out_features), nn.SiLU(), nn.Linear(out_features, out_features))
    nn.init.zeros_(mlp[-1].weight)
    nn.init.zeros_(mlp[-1].bias)
    return mlp


def group_norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(num_groups=min(32, channels // 4), num_channels=channels)


# ----------------------------------------------------------------------------- layers


class ResBlock(nn.Module):
    """Pre-norm residual block with AdaGN: the embedding sets a scale and shift of the second norm."""

    def __init__(self, in_channels: int, out_channels: int, emb_dim: int, dropout: float = 0.0, kernel: int = 3):
        super().__init__()
        self.norm1 = group_norm(in_channels)
        self.conv1 = nn.Conv1d(in_channels, out_channels, kernel, padding=kernel // 2)
        self.emb = nn.Linear(emb_dim, 2 * out_channels)
        self.norm2 = group_norm(out_channels)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv1d(out_channels, out_channels, kernel, padding=kernel // 2)
        nn.init.zeros_(self.conv2.weight)  # every block starts as the identity: stable early training
        nn.init.zeros_(self.conv2.bias)
        self.skip = nn.Conv1d(in_channels, out_channels, 1) if in_channels != out_channels else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = self.emb(emb)[:, :, None].chunk(2, dim=1)
        h = self.norm2(h) * (1 + scale) + shift
        h = self.conv2(self.dropout(F.silu(h)))
        return self.skip(x) + h


class SelfAttention(nn.Module):
    """Multi-head self-attention over time, residual; only used where there are few frames."""

    def __init__(self, channels: int, heads: int = 4):
        super().__init__()
        self.heads = heads
        self.norm = group_norm(channels)
        self.qkv = nn.Conv1d(channels, 3 * channels, 1)
        self.out = nn.Conv1d(channels, channels, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, channels, frames = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(batch, 3, self.heads, channels // self.heads, frames).unbind(1)
        h = F.scaled_dot_product_attention(q.transpose(-1, -2), k.transpose(-1, -2), v.transpose(-1, -2))
        return x + self.out(h.transpose(-1, -2).reshape(batch, channels, frames))


class Level(nn.Module):
    """Residual blocks at one resolution, each optionally followed by attention."""

    def __init__(self, in_channels: int, out_channels: int, blocks: int, emb_dim: int, attention: bool,
                 dropout: float, heads: int):
        super().__init__()
        self.blocks = nn.ModuleList(
            ResBlock(in_channels if i == 0 else out_channels, out_channels, emb_dim, dropout) for i in range(blocks))
        self.attention = nn.ModuleList(
            SelfAttention(out_channels, heads) if attention else nn.Identity() for _ in range(blocks))

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        for block, attention in zip(self.blocks, self.attention):
            x = attention(block(x, emb))
        return x


# ----------------------------------------------------------------------------- network


class UNet1d(nn.Module):
    """``forward(x, t, cond=None) -> prediction`` with the same shape as ``x``.

    ``t`` is the picture's time in [0, 1] (cosine time for the v-objective, alpha for blending).
    ``cond`` maps condition names to tensors (``engine.conditions.network_inputs``): ``label``
    ``(B,)`` indexes ``num_labels`` classes, index ``num_labels`` being the "no label" class that
    classifier-free guidance uses (a missing ``label`` means it for the whole batch), or is
    ``(B, num_labels + 1)`` float weights that mix the label embeddings (a hybrid); each name in
    ``controls`` is a ``(B, 2, frames)`` curve (value, mask), all zeros when absent; each name in
    ``embeddings`` a ``(B, dim)`` vector (a prompt's unit embedding), all zeros when absent.
    """

    def __init__(self,
                 in_channels: int = 64,           # latent channels (stereo x 32 PQMF bands)
                 widths: tuple = (64, 128, 256),  # channels at each level
                 blocks: tuple = (1, 2, 2),       # residual blocks per level (encoder; decoder +1)
                 factors: tuple = (4, 4),         # time down-sampling between levels
                 attention: tuple = (False, False, True),  # self-attention per level
                 heads: int = 4,                  # attention heads
                 emb_dim: int = 256,              # time/label embedding width
                 num_labels: int = 0,             # 0 = unconditional
                 dropout: float = 0.0,            # dropout inside residual blocks
                 pos_dim: int = 0,                # sinusoidal channels of absolute time (0: none)
                 frame_rate: float = 1.0,         # latent frames per second (positions are in seconds)
                 input_skip: bool = False,        # per-channel gain on the input added to the output
                 controls: tuple = (),            # names of per-frame control curves (2 channels each)
                 embeddings: dict | None = None): # name -> width of global embedding conditions (a prompt)
        super().__init__()
        assert len(widths) == len(blocks) == len(attention) == len(factors) + 1
        self.num_labels, self.emb_dim = num_labels, emb_dim
        self.hop = math.prod(factors)
        self.time_mlp = nn.Sequential(nn.Linear(emb_dim, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        self.label_emb = nn.Embedding(num_labels + 1, emb_dim) if num_labels else None
        # an embedding condition (a text or audio prompt's unit vector; all zeros = absent) joins the
        # time embedding through a small MLP whose last layer starts at zero: a model that gains it
        # computes what it did before until training teaches it to read it
        self.embeddings = dict(embeddings or {})
        self.embedding_in = nn.ModuleDict({name: _zero_mlp(dim, emb_dim) for name, dim in self.embeddings.items()})

        self.stem = nn.Conv1d(in_channels, widths[0], 3, padding=1)
        self.pos_dim, self.frame_rate = pos_dim, frame_rate
        self.pos_proj = nn.Conv1d(pos_dim, widths[0], 1) if pos_dim else None
        if self.pos_proj is not None:  # starts silent: a warm start from a model without it is unchanged
            nn.init.zeros_(self.pos_proj.weight)
            nn.init.zeros_(self.pos_proj.bias)
        self.down_levels, self.downsamplers = nn.ModuleList(), nn.ModuleList()
        for i, width in enumerate(widths):
            self.down_levels.append(Level(widths[max(i - 1, 0)], width, blocks[i], emb_dim, attention[i], dropout, heads))
            if i < len(factors):
                self.downsamplers.append(nn.Conv1d(width, width, 2 * factors[i], stride=factors[i],
                                                   padding=factors[i] // 2))
        self.controls = tuple(controls)
        self.factors = tuple(factors)
        control_channels = 2 * len(self.controls)
        # one projection per level on the way down (into its input width) and up (into h before the skip joins)
        self.control_down = nn.ModuleList(_zero_conv(control_channels, widths[max(i - 1, 0)])
                                          for i in range(len(widths))) if self.controls else None
        self.control_up = nn.ModuleList(_zero_conv(control_channels, widths[i])
                                        for i in reversed(range(len(widths)))) if self.controls else None
        self.up_levels, self.upsamplers = nn.ModuleList(), nn.ModuleList()
        for i in reversed(range(len(widths))):
            out_width = widths[max(i - 1, 0)]
            self.up_levels.append(Level(2 * widths[i], out_width, blocks[i] + 1, emb_dim, attention[i], dropout, heads))
            if i > 0:
                self.upsamplers.append(nn.ConvTranspose1d(out_width, out_width, 2 * factors[i - 1],
                                                          stride=factors[i - 1], padding=factors[i - 1] // 2))
        self.head = nn.Sequential(group_norm(widths[0]), nn.SiLU(), nn.Conv1d(widths[0], in_channels, 3, padding=1))
        nn.init.zeros_(self.head[-1].weight)
        nn.init.zeros_(self.head[-1].bias)
        # The input skip: out += g(emb) * x, one gain per channel from the time/label embedding.
        # Why: where a channel is silent the blending target is -x / (1 - alpha), a pure pass-through
        # of the input that the U-Net must otherwise build through all its levels; a latent model
        # failed to build it for a codec's 15 band-envelope channels (after 9700 steps it followed
        # the noise there with a slope of 0.2 instead of 1, and sampled those channels as noise:
        # 5x too loud, hiss in the tails; docs/design-notes.md, session 5). Zero at the start, so
        # adding it to a trained model changes nothing until training uses it.
        self.input_skip = nn.Linear(emb_dim, in_channels) if input_skip else None
        if self.input_skip is not None:
            nn.init.zeros_(self.input_skip.weight)
            nn.init.zeros_(self.input_skip.bias)

    def embed(self, t: torch.Tensor, label: torch.Tensor | None, cond: dict | None = None) -> torch.Tensor:
        emb = self.time_mlp(fourier_embedding(t, self.emb_dim))
        if self.label_emb is not None:
            if label is None:
                label = torch.full((t.shape[0],), self.num_labels, device=t.device, dtype=torch.long)
            # an index, or (B, num_labels + 1) weights: a blend of label embeddings (a hybrid)
            emb = emb + (label.to(self.label_emb.weight.dtype) @ self.label_emb.weight if label.is_floating_point()
                         else self.label_emb(label))
        for name, dim in self.embeddings.items():
            vector = (cond or {}).get(name)
            if vector is None:
                vector = emb.new_zeros(t.shape[0], dim)
            if vector.shape[-1] != dim:
                raise ValueError(f"the {name} embedding has {vector.shape[-1]} values, the network reads {dim}")
            emb = emb + self.embedding_in[name](vector.to(emb.dtype).expand(t.shape[0], -1))
        return F.silu(emb)

    def control_pyramid(self, cond: dict, x: torch.Tensor) -> list[torch.Tensor] | None:
        """The control curves at each level's frame rate (finest first), or None without controls."""
        if not self.controls:
            return None
        batch, frames = x.shape[0], x.shape[-1]
        curves = [cond[name].to(x.dtype) if name in cond else x.new_zeros(batch, 2, frames) for name in self.controls]
        for name, curve in zip(self.controls, curves):
            if curve.shape[-1] != frames:
                raise ValueError(f"the {name} control has {curve.shape[-1]} frames, the latent {frames}")
        curves = torch.cat([c.expand(batch, -1, -1) for c in curves], dim=1)
        levels = [curves]
        for factor in self.factors:
            levels.append(F.avg_pool1d(levels[-1], factor))
        return levels

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: dict | None = None) -> torch.Tensor:
        if x.shape[-1] % self.hop:
            raise ValueError(f"{x.shape[-1]} frames is not a multiple of the network's hop {self.hop}")
        cond = cond or {}
        emb = self.embed(t.expand(x.shape[0]), cond.get("label"), cond).to(x.dtype)
        controls = self.control_pyramid(cond, x)
        h = self.stem(x)
        if self.pos_proj is not None:
            position = time_position_features(x.shape[-1], self.frame_rate, self.pos_dim, x.device).to(x.dtype)
            h = h + self.pos_proj(position)
        skips = []
        for i, level in enumerate(self.down_levels):
            if controls is not None:
                h = h + self.control_down[i](controls[i])
            h = level(h, emb)
            skips.append(h)
            if i < len(self.downsamplers):
                h = self.downsamplers[i](h)
        depth = len(self.up_levels) - 1
        for i, level in enumerate(self.up_levels):
            if controls is not None:
                h = h + self.control_up[i](controls[depth - i])
            h = level(torch.cat([h, skips.pop()], dim=1), emb)
            if i < len(self.upsamplers):
                h = self.upsamplers[i](h)
        out = self.head(h)
        if self.input_skip is not None:
            out = out + self.input_skip(emb)[:, :, None] * x
        return out
