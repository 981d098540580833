"""Which instrument a sound is, told by a text–audio embedder alone (zero-shot, CLIP's way).

Two users: the embedder's evaluation (its zero-shot accuracy on held-out kits) and the Studio's
"more like this" on a sound that carries no recipe (a user's own sample): the reference's
instrument becomes the label of its siblings when the embedder is sure enough (:func:`guess_category`),
because the label is the latent model's most reliable condition and an embedding alone drifts to
other instruments (measured in ``docs/design-notes.md``, "More like this").
"""

from __future__ import annotations

import functools
from typing import Mapping, Sequence

import torch

from .base import Embedder

GUESS_MARGIN = 0.04
"""How far (in cosine) the best category's prompt must lead the runner-up's before
:func:`guess_category` names it. Measured on the held-out kits with ``checkpoints/clap``
(``bench/bench_prompts.py``'s ``reference.*`` lines): at 0.04 it names 87 % of the clips, right
70 % of the time, as when every clip gets a guess; 0.1 names 65 %, right 78 %. The embedder is
the limit; the margin only keeps a torn guess from overriding the sound's own embedding."""


def category_prompts() -> dict[str, tuple[str, ...]]:
    """The zero-shot classifier's prompts per category: "a kick drum" for the category itself and
    "a {noun}" for each of its instruments ("a tom", "a cowbell", "a ride cymbal"...), in the
    caption builder's own words (``NOUNS``, ``SUBCATEGORIES``). A clip's category is the one
    whose best prompt its audio is closest to (CLIP's prompt ensembling, here as a max over the
    instruments): "a percussion hit" alone is far from a tom, which captions call "a tom"."""
    from ..data.captions import NOUNS, _article
    from ..data.labels import SUBCATEGORIES
    prompts = {}
    for category, subcategories in SUBCATEGORIES.items():
        nouns = [NOUNS[category][0]] + [NOUNS[sub][0] for sub in subcategories if sub in NOUNS]
        prompts[category] = tuple(dict.fromkeys(_article(f"a {noun}") for noun in nouns))
    return prompts


CATEGORY_PROMPTS: dict[str, tuple[str, ...]] = category_prompts()


def _prompt_vectors(embedder: Embedder, prompts: tuple[tuple[str, ...], ...]) -> torch.Tensor:
    """The text embeddings of every prompt (~10 ms a prompt)."""
    return embedder.text([p for group in prompts for p in group])


# the Studio's embedders are frozen, so their prompt vectors are embedded once; a model in
# training (retrieval_figures at every save) changes under the same object and is never cached
_frozen_prompt_vectors = functools.lru_cache(maxsize=8)(_prompt_vectors)


def category_scores(embedder: Embedder, audio: torch.Tensor, prompts: Mapping[str, Sequence[str] | str],
                    frozen: bool = False) -> torch.Tensor:
    """``(N, K)``: each audio embedding's cosine to each category's best-matching prompt
    (``frozen``: the embedder's weights never change, so its prompt vectors may be kept)."""
    lists = tuple(tuple([p] if isinstance(p, str) else p) for p in prompts.values())
    text = (_frozen_prompt_vectors if frozen else _prompt_vectors)(embedder, lists)
    scores, start = [], 0
    for group in lists:
        scores.append((audio @ text[start:start + len(group)].T).amax(dim=1))
        start += len(group)
    return torch.stack(scores, dim=1)


def zero_shot(embedder: Embedder, audio: torch.Tensor, prompts: Mapping[str, Sequence[str] | str]) -> torch.Tensor:
    """``(N,)``: for each audio embedding, the index (in ``prompts``' order) of the category whose
    best-matching prompt is closest."""
    return category_scores(embedder, audio, prompts).argmax(dim=1)


def guess_category(embedder: Embedder, vector: torch.Tensor, labels: Sequence[str],
                   margin: float = GUESS_MARGIN) -> str | None:
    """The one of ``labels`` an audio embedding ``(D,)`` is (by a frozen embedder, the Studio's),
    or None when the embedder is unsure
    (the best category leads the next by less than ``margin``) or knows none of the labels."""
    names = [name for name in labels if name in CATEGORY_PROMPTS]
    if len(names) < 2:
        return names[0] if names else None
    scores = category_scores(embedder, vector[None], {n: CATEGORY_PROMPTS[n] for n in names}, frozen=True)[0]
    best, runner_up = scores.topk(2).values.tolist()
    return names[int(scores.argmax())] if best - runner_up >= margin else None
