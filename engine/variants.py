"""Which model renders a Sound asked alone: the model itself, or the variant it deals a share of seeds.

A variant (:mod:`engine.train.variant`) is a copy of a latent model fine-tuned on clips of one Sound
that the model does not render: `latent-thin-hats`, `latent-fast` fine-tuned on the data set's thinned
closed hats, makes the thin, 808-like hats that `latent-fast` never does. The model's defaults name it
for the Sound (``defaults.per_label.hat.variant = {"model": "latent-thin-hats", "every": 5}``) and a
hat asked alone on a kit hit is rendered by it for one seed in ``every``: seed ``s`` goes to the
variant when place ``s mod every`` of a fixed shuffle is the first (:func:`engine.seeds.deal`),
so any ``every`` consecutive seeds hold exactly one variant sound, and the rest are exactly what the
model alone made before.

Why dealt and not a blend of weights: the thin hats are a different sound, not a middle one, and
every other Sound and seed keeps its sound bit for bit. A prompt, a drawn curve or a reference
asks for something of its own, so the variant is dealt only to a Sound asked alone on a kit hit,
which is how it was measured (``docs/design-notes.md``, "Thin hats as a variant"). A sound's recipe
names the model that rendered it, so a WAV made by the variant replays on the variant.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

from .errors import CheckpointError
from .sampling import label_defaults
from .seeds import deal

DEFAULTS_KEY = "variant"


class Variant(NamedTuple):
    """A Sound's variant as the model's defaults name it."""

    model: str   # the variant's model folder, beside the model's own (a name in the model roots)
    every: int   # one seed in this many goes to the variant


def label_variant(manifest: dict, label: str | None) -> Variant | None:
    """The variant the model's defaults deal ``label``'s Sound asked alone, or None; a damaged entry
    is a clear :class:`CheckpointError`."""
    if label is None:
        return None
    entry = label_defaults(manifest.get("defaults", {}), label).get(DEFAULTS_KEY)
    if entry is None:
        return None
    try:
        variant = Variant(str(entry["model"]), int(entry["every"]))
    except (KeyError, TypeError, ValueError) as error:
        raise CheckpointError(f"the {label} variant in the model's defaults is damaged: {entry!r}") from error
    if variant.every < 2 or not variant.model or Path(variant.model).name != variant.model:
        raise CheckpointError(f"the {label} variant in the model's defaults is damaged: {entry!r} "
                              "(a folder name beside the model, dealt one seed in 2 or more)")
    return variant


def dealt_variant(manifest: dict, label: str | None, seed: int) -> str | None:
    """The variant's folder name when seed ``seed`` of ``label`` asked alone goes to it, else None."""
    variant = label_variant(manifest, label)
    if variant is None or deal(seed, variant.every) != 0:
        return None
    return variant.model


def variant_folder(model_folder: str | Path, name: str) -> Path:
    """Where the variant ``name`` of the model in ``model_folder`` lives: beside it."""
    folder = Path(model_folder).parent / name
    if not folder.is_dir():
        raise CheckpointError(f"the model in {model_folder} deals some seeds to its variant {name!r}, "
                              f"but {folder} is missing")
    return folder
