"""Text–audio embedders: prompts and sounds to unit vectors in one space (DESIGN.md, "Conditioning").

``load_embedder("embedded" | "laion" | FOLDER)`` gives an :class:`Embedder` with ``text(prompts)``
and ``audio(audio, sample_rate)``; :func:`check_prompt` is the one prompt validation every caller
shares. The embedded model is :mod:`.clap_model`; laion-clap (:mod:`.laion`) is imported only
when asked for.
"""

from .base import DEFAULT_FOLDER, EMBEDDER_KIND, Embedder, load_embedder, read_embedder_manifest, unit
from .text_tower import MAX_PROMPT_CHARS, check_prompt

__all__ = ["DEFAULT_FOLDER", "EMBEDDER_KIND", "Embedder", "MAX_PROMPT_CHARS", "check_prompt", "load_embedder",
           "read_embedder_manifest", "unit"]
