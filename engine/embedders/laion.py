"""laion-clap behind the :class:`~.base.Embedder` interface: the optional backend for users with internet.

laion-clap (Wu, Chen et al. 2023, LAION-Audio-630K) is a real text–audio model trained on far
more sound than ours, but it is not the default because it cannot work offline: building
``CLAP_Module`` fetches ``roberta-base``'s tokenizer from the Hugging Face hub, and
``load_ckpt()`` without a path downloads a 600 MB-2 GB checkpoint (``630k-audioset-best.pt`` for
the default non-fusion HTSAT-tiny model) into the package's folder; offline both hang or fail.
It also pins ``numpy<2`` and imports ``torchvision`` without declaring it, so it lives in its own
``requirements-clap.txt``. It is imported only when asked for (``load_embedder("laion")``).

Audio goes in as laion-clap expects it: mono, 48 kHz, float32 in [-1, 1] (it quantises to 16 bits
itself and repeat-pads a short clip to its 10 s window, as it was trained).
"""

from __future__ import annotations

import importlib
import logging
import pickle
from typing import Sequence

import numpy as np
import torch

from ..audio import resample
from ..errors import CheckpointError, InvalidRequestError
from .base import Embedder, check_audio, unit
from .text_tower import check_prompt

log = logging.getLogger(__name__)

LAION_RATE = 48000
LAION_DIM = 512
INSTALL_HINT = ("laion-clap is not installed: pip install -r requirements-clap.txt; it downloads its checkpoint "
                "(~600 MB) and roberta-base on first use, so the first run needs internet")


def _import_laion():
    try:
        return importlib.import_module("laion_clap")
    except ImportError as error:
        raise CheckpointError(f"{INSTALL_HINT} ({error})") from error


class LaionEmbedder(Embedder):
    """laion-clap's ``CLAP_Module``: ``checkpoint`` a local ``.pt`` file, or None to let laion-clap
    download its best non-fusion checkpoint; ``amodel`` its audio tower (HTSAT-tiny for the
    general checkpoints, HTSAT-base for the music ones)."""

    name = "laion"
    dim = LAION_DIM
    sample_rate = LAION_RATE

    def __init__(self, checkpoint: str | None = None, amodel: str = "HTSAT-tiny", enable_fusion: bool = False,
                 device: str | torch.device = "cpu"):
        laion_clap = _import_laion()
        self.device = torch.device(device)
        try:
            self.module = laion_clap.CLAP_Module(enable_fusion=enable_fusion, amodel=amodel, device=str(self.device))
            if checkpoint is None:
                self.module.load_ckpt()
            else:
                self.module.load_ckpt(str(checkpoint))
        except (OSError, RuntimeError, KeyError, pickle.UnpicklingError) as error:
            raise CheckpointError(f"laion-clap could not load its model ({type(error).__name__}: {error}); without "
                                  "internet give a downloaded checkpoint (checkpoint=PATH), and roberta-base must be "
                                  "in the Hugging Face cache") from error
        self.id = f"laion-{amodel}-{'fusion' if enable_fusion else 'plain'}:{checkpoint or 'default'}"
        log.info("laion-clap %s loaded (%s)", amodel, checkpoint or "its default checkpoint")

    def _vectors(self, output, rows: int) -> torch.Tensor:
        vectors = torch.as_tensor(np.asarray(output.detach().cpu() if torch.is_tensor(output) else output),
                                  dtype=torch.float32)
        if vectors.shape != (rows, self.dim):
            raise CheckpointError(f"laion-clap returned embeddings shaped {tuple(vectors.shape)}, "
                                  f"expected ({rows}, {self.dim}): a checkpoint of another model?")
        return unit(vectors)

    @torch.no_grad()
    def text(self, prompts: Sequence[str]) -> torch.Tensor:
        if isinstance(prompts, str):
            raise InvalidRequestError("give a list of prompts, not one string")
        texts = [check_prompt(p) for p in prompts]
        if not texts:
            return torch.zeros(0, self.dim)
        # laion-clap's tokenizer pads every batch to 77 tokens, so a batch of one is fine
        return self._vectors(self.module.get_text_embedding(texts), len(texts))

    @torch.no_grad()
    def audio(self, audio: torch.Tensor, sample_rate: int) -> torch.Tensor:
        audio = check_audio(audio, sample_rate)
        mono = audio.mean(dim=1, keepdim=True)                                  # (B, 1, N)
        mono = torch.stack([resample(clip, sample_rate, LAION_RATE) for clip in mono])[:, 0]
        data = mono.clamp(-1.0, 1.0).numpy().astype(np.float32)                 # (B, N') at 48 kHz
        return self._vectors(self.module.get_audio_embedding_from_data(x=data, use_tensor=False), len(data))
