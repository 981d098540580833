"""The one small interface every text–audio embedder has, and how to pick one by name.

The latent model is conditioned on an embedding of a prompt or of a reference sound, and the
Studio re-ranks candidates by how close their audio embedding is to the prompt's. None of that
needs to know which model made the embeddings, so every embedder offers the same four things
(DESIGN.md, "Conditioning"):

- ``text(prompts) -> (N, D)`` float32 unit vectors (prompts are checked with
  :func:`~engine.embedders.text_tower.check_prompt` first);
- ``audio(audio, sample_rate) -> (B, D)`` float32 unit vectors of ``(B, C, samples)`` audio at
  any rate (each embedder resamples to its own);
- ``dim`` and ``name`` (and ``id``, which a recipe records so a prompt means the same later).

Two implementations: the embedded model trained here (a checkpoint folder, default
``checkpoints/clap``: :mod:`.clap_model`) and laion-clap (:mod:`.laion`, optional, downloads its
weights on first use).
"""

from __future__ import annotations

import abc
import json
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F

from ..errors import CheckpointError, InvalidRequestError, ModelNotFoundError

EMBEDDER_KIND = "embedder"
MANIFEST = "manifest.json"   # engine.models.MANIFEST; not imported from there, see below
DEFAULT_FOLDER = Path(__file__).resolve().parent.parent.parent / "checkpoints" / "clap"
"""Where the embedded text–audio model ships (``load_embedder("embedded")``): engine.models.DEFAULT_ROOT / "clap".

This module and :mod:`.text_tower` import nothing of the engine but its errors, so that the
request, the conditions and the Studio can import :func:`check_prompt` and this interface
without an import cycle (engine.models imports the sampling and conditions modules)."""


class Embedder(abc.ABC):
    """Text and audio to unit vectors in one shared space of ``dim`` dimensions."""

    name: str = "embedder"
    dim: int = 0
    id: str = ""           # the weights' id (recorded in recipes)
    sample_rate: int = 0   # the rate its audio tower works at

    @abc.abstractmethod
    def text(self, prompts: Sequence[str]) -> torch.Tensor:
        """``(N, dim)`` float32 unit vectors on the CPU, one per prompt."""

    @abc.abstractmethod
    def audio(self, audio: torch.Tensor, sample_rate: int) -> torch.Tensor:
        """``(B, dim)`` float32 unit vectors on the CPU of ``(B, C, samples)`` (or one ``(C, samples)``) audio."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, dim={self.dim}, id={self.id!r})"


def text_vector(embedder: Embedder, prompt: str, prompt_b: str | None = None, morph: float = 0.0) -> torch.Tensor:
    """``(D,)``: a prompt's text embedding, slerped towards ``prompt_b``'s by ``morph`` (the studio's
    prompt morph, and a kit hit's description morphed towards its label's prompt, both ways the
    same)."""
    vector = embedder.text([prompt])[0]
    if prompt_b is None:
        return vector
    from ..seeds import slerp  # engine.seeds imports only torch: no cycle
    return slerp(vector, embedder.text([prompt_b])[0], morph).float()


def unit(vectors: torch.Tensor) -> torch.Tensor:
    """float32 rows of length 1 (a zero row stays zero rather than becoming NaN)."""
    return F.normalize(vectors.detach().float(), dim=-1, eps=1e-8).cpu()


def check_audio(audio: torch.Tensor, sample_rate: int) -> torch.Tensor:
    """``audio`` as a float32 ``(B, C, samples)`` batch; InvalidRequestError for what cannot be embedded."""
    if not torch.is_tensor(audio):
        raise InvalidRequestError(f"audio must be a torch tensor, got {type(audio).__name__}")
    if audio.dim() == 2:
        audio = audio[None]
    if audio.dim() != 3 or audio.shape[0] == 0 or audio.shape[1] == 0:
        raise InvalidRequestError(f"audio must be shaped (batch, channels, samples), got {tuple(audio.shape)}")
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, int) or sample_rate <= 0:
        raise InvalidRequestError(f"sample_rate must be a positive integer, got {sample_rate!r}")
    if audio.shape[-1] < sample_rate // 100:
        raise InvalidRequestError(f"audio of {audio.shape[-1]} samples is too short to embed (at least 10 ms)")
    if not torch.isfinite(audio).all():
        raise InvalidRequestError("audio holds NaN or infinite samples")
    return audio.float()


def read_embedder_manifest(folder: str | Path) -> dict:
    """The manifest of an embedder folder (kind ``embedder``); CheckpointError naming what is wrong."""
    path = Path(folder) / MANIFEST
    if not path.is_file():
        raise CheckpointError(f"{folder} is not an embedder folder: {MANIFEST} is missing")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise CheckpointError(f"{path} is not valid JSON: {error}") from error
    if manifest.get("kind") != EMBEDDER_KIND:
        raise CheckpointError(f"{folder} is a {manifest.get('kind', 'wave')!r} model folder, not a text–audio "
                              "embedder (kind 'embedder')")
    for key in ("network", "sample_rate", "length", "dim"):
        if key not in manifest:
            raise CheckpointError(f"{path} lacks the required key {key!r}")
    return manifest


def load_embedder(name_or_folder: str | Path = "embedded", device: str | torch.device = "cpu", **options) -> Embedder:
    """An embedder by name: ``"embedded"`` (the model shipped in ``checkpoints/clap``), ``"laion"``
    (laion-clap; ``options`` go to :class:`~engine.embedders.laion.LaionEmbedder`: ``checkpoint``,
    ``amodel``, ``enable_fusion``), or the path of an embedder folder."""
    key = str(name_or_folder)
    if key == "laion":
        from .laion import LaionEmbedder
        return LaionEmbedder(device=device, **options)
    if options:
        raise InvalidRequestError(f"options {sorted(options)} are for the laion embedder only")
    from .clap_model import load_clap
    if key == "embedded":
        if not (DEFAULT_FOLDER / MANIFEST).is_file():
            raise CheckpointError(f"the embedded text–audio model is missing ({DEFAULT_FOLDER}); train one with "
                                  "`python -m engine train clap` and publish it there, or use --embedder laion")
        return load_clap(DEFAULT_FOLDER, device)
    if (Path(key) / MANIFEST).is_file():
        return load_clap(Path(key), device)
    raise ModelNotFoundError(f"no embedder called {key!r}: use 'embedded', 'laion' or the path of an embedder folder")
