"""Presets: small JSON files in ``presets/`` holding the controls of a sound worth starting from.

A preset holds the request fields that describe a sound (model, label, sampler, steps,
guidance, seed, seed_b, morph, length for models that make any length, and the loudness curve
``rms`` ([[ms, dB], ...]), ``onsets`` (ms) and ``control_guidance`` for models that follow curves, and the text ``prompt``,
``prompt_b``, ``prompt_morph`` and ``rerank`` for models that take prompts) plus a name and a description. It never holds a reference file path (that would not travel between machines). Every preset is checked with
``GenerationRequest.validated`` on load and on save; saving never replaces an existing preset
unless ``overwrite`` is asked for explicitly.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path

from engine import GenerationRequest, InvalidRequestError
from engine.audio import make_shareable

FORMAT = 1
SOUND_KEYS = ("model", "label", "label_b", "label_mix", "sampler", "steps", "guidance", "variety", "seed", "seed_b",
              "morph", "length", "rms", "onsets", "control_guidance", "match_loudness", "steer_loudness",
              "soft_hits", "steer_onsets", "prompt", "prompt_b", "prompt_morph", "rerank", "shape", "one_hit", "width",
              "kit_bands")
META_KEYS = ("format", "name", "description")
OPTIONAL_KEYS = ("label_b", "label_mix", "variety", "length", "rms", "onsets", "control_guidance", "match_loudness",
                 "steer_loudness", "soft_hits", "steer_onsets",
                 "prompt", "prompt_b", "prompt_morph", "rerank", "shape", "one_hit", "width",
                 "kit_bands")  # written only when set
FUTURE_KEYS: tuple[str, ...] = ()   # keys accepted and kept for features still to come
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 _-]{0,47}$")


class PresetError(InvalidRequestError):
    """A preset file is missing, unreadable, malformed, or would overwrite another."""


def slug(name: str) -> str:
    """The file stem for a preset name: ``Punchy Kick`` -> ``punchy-kick``."""
    name = (name or "").strip()
    if not NAME.match(name):
        raise PresetError("a preset name is 1-48 letters, digits, spaces, '-' or '_' (and starts with a "
                          f"letter or digit); got {name!r}")
    return re.sub(r"[\s_]+", "-", name.lower())


def validate(data: dict, source: str = "preset") -> dict:
    """Return the preset's known fields, checked; raise PresetError saying what is wrong."""
    if not isinstance(data, dict):
        raise PresetError(f"{source}: a preset is a JSON object, got {type(data).__name__}")
    unknown = sorted(set(data) - set(SOUND_KEYS) - set(META_KEYS) - set(FUTURE_KEYS))
    if unknown:
        raise PresetError(f"{source}: unknown keys {unknown}; a preset may hold {list(SOUND_KEYS)}")
    if not isinstance(data.get("model"), str) or not data["model"]:
        raise PresetError(f"{source}: 'model' (a model name such as 'kick') is required")
    if data.get("format", FORMAT) != FORMAT:
        raise PresetError(f"{source}: preset format {data.get('format')!r} is not supported (expected {FORMAT})")
    for key in ("label", "sampler"):
        if data.get(key) is not None and not isinstance(data[key], str):
            raise PresetError(f"{source}: {key!r} must be text or null, got {data[key]!r}")
    sound = {k: data[k] for k in SOUND_KEYS if k in data}
    try:
        GenerationRequest.from_recipe(sound).validated()
    except (InvalidRequestError, TypeError) as error:
        raise PresetError(f"{source}: {error}") from error
    return {**{k: data.get(k) for k in META_KEYS if k in data}, **sound,
            **{k: data[k] for k in FUTURE_KEYS if k in data}}


def list_presets(folder: Path) -> list[str]:
    """Preset file stems in ``folder``, sorted."""
    return sorted(p.stem for p in Path(folder).glob("*.json")) if Path(folder).is_dir() else []


def load(folder: Path, name: str) -> dict:
    if not name:
        raise PresetError("choose a preset first")
    path = Path(folder) / f"{slug(name)}.json"
    if not path.is_file():
        raise PresetError(f"no preset called {name!r} in {folder}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise PresetError(f"{path.name} is not readable JSON: {error}") from error
    return validate(data, path.name)


def save(folder: Path, name: str, values: dict, description: str = "", overwrite: bool = False) -> Path:
    """Write ``values`` (request fields) as preset ``name``; refuse to replace one unless ``overwrite``."""
    stem = slug(name)
    sound = {k: values.get(k) for k in SOUND_KEYS if k not in OPTIONAL_KEYS or values.get(k) is not None}
    data = validate({"format": FORMAT, "name": name.strip(), "description": description or "", **sound},
                    f"preset {name!r}")
    folder = Path(folder)
    path = folder / f"{stem}.json"
    if path.exists() and not overwrite:
        raise PresetError(f"a preset called {stem!r} already exists; choose another name or tick "
                          "'overwrite' to replace it")
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{stem}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(json.dumps(data, indent=2) + "\n")
        make_shareable(Path(tmp))  # mkstemp makes it 0600; presets are shared like exports (0644)
        if overwrite:
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)   # fails if someone saved the same name in the meantime
            except FileExistsError:
                raise PresetError(f"a preset called {stem!r} already exists; choose another name") from None
    finally:
        Path(tmp).unlink(missing_ok=True)
    return path
