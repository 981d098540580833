"""Optional codec backend: Meta's EnCodec (``transformers.EncodecModel``) as a latent models' codec.

Chosen with ``python -m engine train latent --codec encodec``; ``transformers`` is imported only
when this codec is built, and a clear StudioError says how to install it when it is missing. The
24 kHz model is mono, so each audio channel is encoded on its own and the channels' latents are
stacked (stereo: 2 x 128 channels). Audio is resampled 44.1 kHz -> 24 kHz (soxr) on the way in and
back on the way out; neither direction is differentiable, which is fine as the codec is frozen.

``latent``: ``"continuous"`` is the encoder's pre-quantisation embedding (smooth, best for
diffusion); ``"quantized"`` is the sum of the residual-VQ codebook vectors at ``bandwidth`` kbps.
Both are divided by ``latent_scale`` (measured by the latent trainer) to have unit variance.
The frame count is rounded up to a multiple of ``frame_multiple`` (zero padding at the end), so
the diffusion U-Net's down-sampling always fits; ``decode`` returns at least the asked length and
callers cut it.

Weights come from ``pretrained`` (a Hugging Face name, downloaded once into its cache, or a local
folder); tests pass ``config`` instead: a randomly initialised model from an ``EncodecConfig`` dict
(seeded by ``seed``), with no download.
"""

from __future__ import annotations

import math

import torch

from ..errors import CheckpointError, StudioError
from ..seeds import seeded_init
from .autoencoder import ScaledLatentCodec

INSTALL_HINT = ("the EnCodec codec needs the transformers package: `.venv/bin/pip install transformers` "
                "(it does not change torch), or train the in-house codec with `python -m engine train codec`")


def _transformers():
    try:
        from transformers import EncodecConfig, EncodecModel
    except ImportError as error:
        raise StudioError(INSTALL_HINT) from error
    return EncodecConfig, EncodecModel


class EncodecCodec(ScaledLatentCodec):
    """``encode``: (B, C, N) audio -> (B, C*D, frames) unit-scale latent; ``decode`` inverts (lossy)."""

    def __init__(self,
                 pretrained: str | None = "facebook/encodec_24khz",  # HF name or local folder
                 config: dict | None = None,       # EncodecConfig arguments: random weights (tests)
                 latent: str = "continuous",       # "continuous" (pre-quantisation) or "quantized"
                 bandwidth: float = 6.0,           # kbps of the quantised latent
                 channels: int = 2,                # audio channels of the model using it
                 sample_rate: int = 44100,         # audio rate of the model using it
                 latent_scale: float = 1.0,        # std of the raw latent over the data
                 frame_multiple: int = 16,         # frames are padded to a multiple of this
                 seed: int = 0):                   # seed of the random weights when ``config`` is given
        super().__init__()
        if latent not in ("continuous", "quantized"):
            raise ValueError(f"latent must be 'continuous' or 'quantized', got {latent!r}")
        config_class, model_class = _transformers()
        if config is not None:
            with seeded_init(seed):
                model = model_class(config_class(**config))
        elif pretrained:
            try:
                model = model_class.from_pretrained(pretrained)
            except OSError as error:
                raise CheckpointError(f"cannot load EnCodec weights {pretrained!r} (offline and not cached?): "
                                      f"{str(error).splitlines()[0]}") from error
        else:
            raise ValueError("give either pretrained or config")
        self.model = model.eval().requires_grad_(False)
        self.kind, self.bandwidth = latent, float(bandwidth)
        self.channels, self.sample_rate = channels, sample_rate
        self.latent_scale, self.frame_multiple = float(latent_scale), int(frame_multiple)
        cfg = model.config
        self.rate = int(cfg.sampling_rate)
        self.frame_hop = math.prod(cfg.upsampling_ratios)
        self.fold = cfg.audio_channels == 1  # mono model: channels become batch items
        if not self.fold and cfg.audio_channels != channels:
            raise ValueError(f"the EnCodec model takes {cfg.audio_channels} channels, the model {channels}")
        self.hidden = cfg.hidden_size

    @property
    def latent_channels(self) -> int:
        return self.hidden * (self.channels if self.fold else 1)

    def latent_length(self, samples: int) -> int:
        frames = -(-math.ceil(int(samples) * self.rate / self.sample_rate) // self.frame_hop)
        return -(-frames // self.frame_multiple) * self.frame_multiple

    def _resample(self, audio: torch.Tensor, from_rate: int, to_rate: int) -> torch.Tensor:
        from ..audio import resample
        return torch.stack([resample(item.float(), from_rate, to_rate) for item in audio])

    @torch.no_grad()
    def encode_raw(self, audio: torch.Tensor) -> torch.Tensor:
        batch, channels, samples = audio.shape
        frames = self.latent_length(samples)
        x = self._resample(audio, self.sample_rate, self.rate)
        x = torch.nn.functional.pad(x, (0, frames * self.frame_hop - x.shape[-1]))
        x = x.reshape(batch * channels, 1, -1) if self.fold else x
        embeddings = self.model.encoder(x)
        if self.kind == "quantized":
            embeddings = self.model.quantizer.decode(self.model.quantizer.encode(embeddings, self.bandwidth))
        return embeddings[..., :frames].reshape(batch, -1, frames)

    @torch.no_grad()
    def decode_raw(self, latent: torch.Tensor) -> torch.Tensor:
        batch, _, frames = latent.shape
        z = latent.reshape(batch * self.channels, self.hidden, frames) if self.fold else latent
        audio = self.model.decoder(z.float()).reshape(batch, self.channels, -1)
        return self._resample(audio, self.rate, self.sample_rate)
