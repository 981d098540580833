"""The embedded text–audio model: a frozen text tower, a trained text head, an audio tower trained here.

LiT-style ("locked-image tuning", Zhai et al. 2022, with text locked instead): the pretrained
text tower (all-MiniLM-L6-v2, :mod:`.text_tower`) stays frozen, because 600 drum clips cannot
teach language, and it already puts paraphrases near each other. What is trained:

- a **text head**, an MLP 384 -> ``dim`` over the tower's sentence vector, which bends the
  tower's general-purpose space into a drummer's ("kick" and "bass drum" close, "bright" and
  "dark" apart);
- an **audio tower** from scratch: the log-mel spectrogram of the mono mix
  (:func:`engine.dsp.mel_spectrogram`), four stages of two 3x3 convolutions (the first one
  strided), GroupNorm and GELU, then the mean and the maximum over time and frequency, and a
  linear map to ``dim``. ~0.5 M parameters: it trains on a CPU;
- a **temperature** (CLIP's learnable logit scale).

Both outputs are L2-normalised. The model is a folder like the others: ``manifest.json``
(kind ``embedder``, the hyperparameters, the caption thresholds it was trained with),
``model.safetensors`` with the trainable parts only (the text tower comes from its package) and
``MODEL_CARD.md``. :class:`ClapEmbedder` puts it behind the :class:`~.base.Embedder` interface.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from .. import dsp
from ..audio import fit_length, resample
from ..errors import CheckpointError
from ..models import checkpoint_id, load_weights, save_model
from .base import EMBEDDER_KIND, Embedder, check_audio, read_embedder_manifest, unit
from .text_tower import MODEL_NAME, PACKAGE, TEXT_DIM, text_tower

log = logging.getLogger(__name__)

NETWORK_TYPE = "clap"
DEFAULT_ARGS: dict = {
    "dim": 128,                   # the shared embedding's size
    "text_dim": TEXT_DIM,         # the frozen tower's output (all-MiniLM-L6-v2: 384)
    "text_hidden": 256,           # the text head's hidden layer
    "n_mels": 64,                 # mel bands of the audio tower's input
    "n_fft": 1024,
    "hop": 512,                   # 11.6 ms frames at 44.1 kHz: a 2 s clip is 173 frames
    "f_min": 20.0,
    "widths": [16, 32, 64, 128],  # channels of the audio tower's stages (each halves time and frequency)
    "db_centre": -40.0,           # log-mel input scaled as (dB - centre) / span: ~[-3, 2]
    "db_span": 20.0,
    "temperature": 0.07,          # initial softmax temperature (CLIP's)
}
MAX_LOGIT_SCALE = math.log(100.0)   # CLIP's clamp: the temperature never drops below 0.01


class ConvStage(nn.Module):
    """Two 3x3 convolutions, the first halving time and frequency, each followed by GroupNorm (up to 8
    groups, any width) + GELU. GroupNorm, not BatchNorm: a clip embeds the same alone or in a batch."""

    def __init__(self, channels_in: int, channels_out: int):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Conv2d(channels_in, channels_out, 3, stride=2, padding=1),
            nn.GroupNorm(math.gcd(8, channels_out), channels_out),
            nn.GELU(),
            nn.Conv2d(channels_out, channels_out, 3, padding=1),
            nn.GroupNorm(math.gcd(8, channels_out), channels_out),
            nn.GELU(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class AudioTower(nn.Module):
    """``(B, C, samples)`` at ``sample_rate`` -> ``(B, dim)`` (not normalised)."""

    def __init__(self, dim: int, sample_rate: int, n_mels: int = 64, n_fft: int = 1024, hop: int = 512,
                 f_min: float = 20.0, widths: Sequence[int] = (16, 32, 64, 128), db_centre: float = -40.0,
                 db_span: float = 20.0):
        super().__init__()
        self.sample_rate, self.n_mels, self.n_fft, self.hop, self.f_min = sample_rate, n_mels, n_fft, hop, f_min
        self.db_centre, self.db_span = db_centre, db_span
        stages, channels = [], 1
        for width in widths:
            stages.append(ConvStage(channels, width))
            channels = width
        self.stages = nn.Sequential(*stages)
        self.out = nn.Linear(2 * channels, dim)

    def features(self, audio: torch.Tensor) -> torch.Tensor:
        """``(B, 1, n_mels, frames)``: log-mel of the mono mix (power averaged over channels), scaled."""
        power = dsp.mel_spectrogram(audio.float(), self.sample_rate, self.n_mels, self.n_fft, self.hop, self.f_min,
                                    log=False).mean(dim=1)
        db = (10.0 * torch.log10(power + 1e-10)).clamp_min(-100.0)
        return ((db - self.db_centre) / self.db_span)[:, None]

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        x = self.stages(self.features(audio))
        pooled = torch.cat([x.mean(dim=(2, 3)), x.amax(dim=(2, 3))], dim=1)
        return self.out(pooled)


class TextHead(nn.Module):
    """The frozen tower's sentence vector ``(N, text_dim)`` -> ``(N, dim)``: an MLP with a linear skip
    (the skip keeps the tower's paraphrase structure reachable from the first step)."""

    def __init__(self, text_dim: int, hidden: int, dim: int):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(text_dim, hidden), nn.GELU(), nn.Linear(hidden, dim))
        self.skip = nn.Linear(text_dim, dim, bias=False)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.mlp(features) + self.skip(features)


class ClapNetwork(nn.Module):
    """The trainable parts: audio tower, text head, logit scale. ``forward(audio, text_features)``
    gives both unit embeddings and the scale; the frozen text tower is not part of it (training reads its
    vectors from a cache)."""

    def __init__(self, sample_rate: int, dim: int = 128, text_dim: int = TEXT_DIM, text_hidden: int = 256,
                 n_mels: int = 64, n_fft: int = 1024, hop: int = 512, f_min: float = 20.0,
                 widths: Sequence[int] = (16, 32, 64, 128), db_centre: float = -40.0, db_span: float = 20.0,
                 temperature: float = 0.07):
        super().__init__()
        self.sample_rate, self.dim, self.text_dim = int(sample_rate), int(dim), int(text_dim)
        self.audio_tower = AudioTower(dim, sample_rate, n_mels, n_fft, hop, f_min, widths, db_centre, db_span)
        self.text_head = TextHead(text_dim, text_hidden, dim)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1.0 / temperature)))

    def embed_audio(self, audio: torch.Tensor) -> torch.Tensor:
        """``(B, C, samples)`` at the network's rate -> ``(B, dim)`` unit vectors (differentiable)."""
        return F.normalize(self.audio_tower(audio), dim=-1)

    def embed_text_features(self, features: torch.Tensor) -> torch.Tensor:
        """The tower's ``(N, text_dim)`` vectors -> ``(N, dim)`` unit vectors (differentiable)."""
        return F.normalize(self.text_head(features), dim=-1)

    def scale(self) -> torch.Tensor:
        """exp(logit scale), clamped so the temperature stays above 0.01."""
        return self.logit_scale.clamp(max=MAX_LOGIT_SCALE).exp()

    def forward(self, audio: torch.Tensor, text_features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Both unit embeddings and the logit scale (returned, so DDP sees every parameter used)."""
        return self.embed_audio(audio), self.embed_text_features(text_features), self.scale()


def build_clap(network: dict, sample_rate: int) -> ClapNetwork:
    """A network from a manifest's ``network`` entry (``{"type": "clap", "args": {...}}``)."""
    if network.get("type") != NETWORK_TYPE:
        raise CheckpointError(f"unknown embedder network type {network.get('type')!r} (expected {NETWORK_TYPE!r})")
    args = dict(DEFAULT_ARGS, **network.get("args", {}))
    try:
        return ClapNetwork(sample_rate=sample_rate, **args)
    except TypeError as error:
        raise CheckpointError(f"the manifest's network arguments are damaged: {error}") from error


def new_manifest(name: str, sample_rate: int, length: int, args: dict | None = None,
                 thresholds: dict | None = None, captions: dict | None = None) -> dict:
    """The manifest of a new embedder folder (training fills in ``training`` and ``evaluation``)."""
    args = dict(DEFAULT_ARGS, **(args or {}))
    return {
        "format": 1,
        "name": name,
        "kind": EMBEDDER_KIND,
        "description": "Text–audio embedder (CLAP-style, LiT): frozen all-MiniLM-L6-v2 + trained text head, "
                       "log-mel conv audio tower trained on drum clips and their captions.",
        "sample_rate": int(sample_rate),
        "length": int(length),          # audio is cut or padded to this many samples before embedding
        "channels": 2,
        "dim": int(args["dim"]),
        "text_tower": {"model": MODEL_NAME, "package": PACKAGE, "dim": TEXT_DIM},
        "network": {"type": NETWORK_TYPE, "args": args},
        "captions": dict(captions or {}, thresholds=thresholds or {}),
        "training": {"steps": 0, "examples": 0, "data": "", "sessions": []},
    }


def model_card(manifest: dict) -> str:
    """MODEL_CARD.md of an embedder folder: what it is, what it needs, how it was trained and measured."""
    training, evaluation = manifest.get("training", {}), manifest.get("evaluation", {})
    figures = "\n".join(f"- {k}: {v}" for k, v in evaluation.items()) or "- not measured yet"
    return (f"# {manifest['name']}: text–audio embedder\n\n{manifest['description']}\n\n"
            f"- shared embedding: {manifest['dim']} dimensions, unit vectors\n"
            f"- text tower: {manifest['text_tower']['model']}, frozen, from the PyPI package "
            f"`{manifest['text_tower']['package']}` (not stored here)\n"
            f"- audio: {manifest['sample_rate']} Hz, cut or padded to {manifest['length']} samples, mono mix\n"
            f"- trained {training.get('steps', 0)} steps on {training.get('data') or '?'}\n\n"
            f"## Held-out figures\n{figures}\n\n"
            "Captions name the instrument, the kit style, the velocity layer and measured descriptors "
            "(bright/dark, short/long, boomy/thin, punchy, low/high pitch), relative to the instrument "
            "(see `captions.thresholds` in the manifest and engine/data/captions.py).\n")


def save_clap(folder: str | Path, network: ClapNetwork, manifest: dict) -> None:
    """Weights (trainable parts only), manifest and card, each written atomically."""
    save_model(folder, network, manifest, card=model_card(manifest))


class ClapEmbedder(Embedder):
    """A trained :class:`ClapNetwork` with the frozen text tower, behind the :class:`Embedder` interface."""

    def __init__(self, network: ClapNetwork, manifest: dict, folder: Path | None = None,
                 device: str | torch.device = "cpu"):
        self.network = network.to(device).eval()   # gradients are off in text() and audio(), not on the weights
        self.manifest, self.folder, self.device = manifest, folder, torch.device(device)
        self.name = str(manifest.get("name", "clap"))
        self.dim = int(manifest["dim"])
        self.sample_rate = int(manifest["sample_rate"])
        self.length = int(manifest["length"])
        self.id = checkpoint_id(folder) if folder is not None else "unsaved"

    @torch.no_grad()
    def text(self, prompts: Sequence[str]) -> torch.Tensor:
        features = text_tower(self.device).embed(prompts).to(self.device)
        return unit(self.network.embed_text_features(features))

    @torch.no_grad()
    def audio(self, audio: torch.Tensor, sample_rate: int, chunk: int = 32) -> torch.Tensor:
        """Resampled to the model's rate and cut or padded to its length (the audio tower pools over
        time, so a clip must have the length it was trained on to mean the same)."""
        audio = check_audio(audio, sample_rate)
        if sample_rate != self.sample_rate:
            audio = torch.stack([resample(clip, sample_rate, self.sample_rate) for clip in audio])
        audio = torch.stack([fit_length(clip, self.length) for clip in audio])
        out = [self.network.embed_audio(audio[i:i + chunk].to(self.device)) for i in range(0, len(audio), chunk)]
        return unit(torch.cat(out))


def load_clap(folder: str | Path, device: str | torch.device = "cpu") -> ClapEmbedder:
    """An embedder folder built from its manifest alone, its weights loaded, in eval mode."""
    folder = Path(folder)
    manifest = read_embedder_manifest(folder)
    network = build_clap(manifest["network"], manifest["sample_rate"])
    load_weights(folder, network)
    log.info("loaded embedder %s from %s", manifest.get("name"), folder)
    return ClapEmbedder(network, manifest, folder, device)
