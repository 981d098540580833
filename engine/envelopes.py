"""Kit envelopes: the loudness and onset curves of a model's real training hits, per label.

A latent model that follows curves, asked for a label and nothing else, shapes the sound itself;
classifier-free guidance then narrows it towards one typical envelope (a snare's spread along the
real kits' main directions was 0.50-0.56 of theirs). Given the curves of a real hit instead (the
studio's ``shape="kit"``), its snares read as snares every time, sit twice as close to real
kits and cover three times as many of the held-out kits' snares (``docs/design-notes.md``,
"Variety on the latent models"). This is the latent models' counterpart of the waveform models'
envelope prior: the shape is drawn, the network fills in the sound.

The bank is a JSON file beside the weights (``envelopes.json``), written by ``python -m engine
envelopes --model M --data D`` from the data set's train split (real clips only: no synthesised
or slowed ones). Each sound draws one entry with its own seed, so seed ``s`` gives the same shape
in any batch, and the curves it drew go into its recipe, which then replays them as drawn.

Each entry may also hold the hit's **caption** (the caption builder's fullest description of it:
"soft dark boomy low acoustic tom"). A label whose defaults set ``hit_prompt`` w > 0 then takes the
hit's description as well as its shape: the sound's prompt is the caption, morphed by 1 - w towards
the label's own prompt ("a percussion"), as a user's two prompts morph (:func:`hit_prompts`). A
category as mixed as percussion (toms, claps, shakers, bells) is then drawn instrument by
instrument, as the kits hold them, instead of collapsing onto its most typical hit
(``docs/design-notes.md``, "A kit hit's description").
"""

from __future__ import annotations

import json
import os
import tempfile
import weakref
from pathlib import Path
from typing import NamedTuple, Sequence

import numpy as np
import torch

from .conditions import CURVE, condition_specs, curves_from_sound, spec_names, takes_prompts
from .curves import check_onsets, check_rms, cut_rms
from .dsp import FLOOR_DB
from .data.captions import OPPOSITES, says
from .errors import CheckpointError, InvalidRequestError
from .sampling import label_defaults
from .seeds import deal

BANK_FILE = "envelopes.json"
BANK_FORMAT = 1
HOP = 128  # samples per RMS frame, as the studio measures a reference's curves
SHAPES = ("free", "kit")
"""``free``: the network shapes the sound; ``kit``: the curves of a real hit drawn from the bank."""


class KitHit(NamedTuple):
    """One drawn hit: its loudness points, its onsets, and its caption (None in a bank without)."""

    rms: tuple
    onsets: tuple
    caption: str | None = None


def measure_bank(dataset, hop: int = HOP, captions: Sequence[str] | None = None) -> dict:
    """``{label: [{"rms": [[ms, dB], ...], "onsets": [ms, ...], "caption": str}, ...]}`` of every
    audible clip of ``dataset`` (an ``engine.data.dataset.DrumDataset``), in its order; ``captions``
    (one per clip, in the same order) gives each entry its ``caption``."""
    if captions is not None and len(captions) != len(dataset.records):
        raise ValueError(f"{len(captions)} captions for {len(dataset.records)} clips")
    bank: dict[str, list[dict]] = {}
    for i, record in enumerate(dataset.records):
        rms, onsets = curves_from_sound(dataset.audio[i].float(), dataset.sample_rate, hop)
        if rms is None:  # a silent clip has no shape to give
            continue
        entry = {"rms": [list(p) for p in rms], "onsets": list(onsets or ())}
        if captions is not None:
            entry["caption"] = str(captions[i])
        bank.setdefault(record["category"], []).append(entry)
    return bank


def write_bank(folder: str | Path, bank: dict, sample_rate: int, source: str) -> Path:
    """Write ``bank`` into a model folder atomically (a crash leaves the old file or none)."""
    if not bank:
        raise InvalidRequestError("no audible clips to take envelopes from")
    folder = Path(folder)
    payload = {"format": BANK_FORMAT, "sample_rate": int(sample_rate), "hop": HOP, "source": source,
               "labels": {label: entries for label, entries in sorted(bank.items())}}
    handle, temp = tempfile.mkstemp(dir=folder, prefix=".envelopes-", suffix=".json")
    with os.fdopen(handle, "w") as out:
        json.dump(payload, out)
    os.chmod(temp, 0o644)  # readable like the weights beside it (mkstemp makes it private)
    os.replace(temp, folder / BANK_FILE)
    return folder / BANK_FILE


def read_bank(folder: str | Path) -> dict | None:
    """The bank's ``labels`` mapping (shared: read it, don't change it), or None when the folder has
    none; a damaged file is a CheckpointError that names it. Parsed and checked once per version of
    the file (:func:`engine.label_tables.read_once`; ``write_bank`` replaces it whole), because every
    kit-shaped sound asks for it and reading `latent-fast`'s 300 KB takes ~45 ms, a click's worth of waiting."""
    # imported here: engine.label_tables needs engine.models, which (through engine.request) needs this module
    from .label_tables import read_once

    path = Path(folder) / BANK_FILE
    return read_once(path, _checked_bank) if path.is_file() else None


def _checked_bank(path: Path) -> dict:
    """The ``labels`` of the bank in ``path``, every entry's curves checked (CheckpointError if damaged)."""
    try:
        payload = json.loads(path.read_text())
        labels = payload["labels"]
        if payload.get("format") != BANK_FORMAT or not isinstance(labels, dict):
            raise ValueError(f"format {payload.get('format')!r}")
        for entries in labels.values():
            for entry in entries:
                check_rms(entry["rms"]), check_onsets(entry["onsets"])
                if "caption" in entry and not (isinstance(entry["caption"], str) and entry["caption"].strip()):
                    raise ValueError(f"a caption is {entry['caption']!r}")
    except (OSError, ValueError, KeyError, TypeError, InvalidRequestError) as error:
        raise CheckpointError(f"{path} is damaged ({error}); rebuild it with python -m engine envelopes") from error
    return labels


def draw(bank: dict, label: str, seed: int, length_ms: float, candidates: Sequence[int] | None = None,
         spread: float = 1.0) -> KitHit:
    """The bank entry seed ``seed`` is dealt for ``label`` (:func:`deal`; among the entries at
    ``candidates``, when given): its RMS points (drawn ``spread`` times as far from the label's median shape,
    :func:`widen`) and onset times cut to ``length_ms`` (the curve interpolated at the cut, onsets
    after it dropped), and its caption."""
    entries = bank.get(label)
    if not entries:
        raise InvalidRequestError(f"the model's kit envelopes hold no {label!r}; "
                                  f"it has them for {sorted(bank) or 'no label'}")
    chosen = entries if candidates is None else [entries[i] for i in candidates]
    entry = chosen[deal(seed, len(chosen))]
    onsets = tuple(t for t in entry["onsets"] if t < length_ms)
    rms = entry["rms"] if spread == 1.0 else widen(entry["rms"], median_shape(entries), spread)
    return KitHit(cut_rms(rms, length_ms), onsets, entry.get("caption"))


SHAPE_GRID_MS = 5.0
"""The time step a label's median shape is read on (:func:`median_shape`)."""


def _under_peak(points: Sequence[Sequence[float]], times: np.ndarray) -> np.ndarray:
    """A loudness curve read at ``times`` (ms) in dB under its own loudest point; after its last
    point it stays at that point's level."""
    t, db = np.array([p[0] for p in points], float), np.array([p[1] for p in points], float)
    return np.interp(times, t, db) - db.max()


_MEDIANS: dict[int, tuple[Sequence[dict], tuple[np.ndarray, np.ndarray]]] = {}


def median_shape(entries: Sequence[dict]) -> tuple[np.ndarray, np.ndarray]:
    """``(times ms, dB)``: the median over a label's kit hits of their loudness curves, each in dB
    under its own peak, every :data:`SHAPE_GRID_MS` up to the longest hit's last point. Kept per
    entries list (a bank is read once per version of its file): `latent-fast`'s 219 percussion hits
    take ~7 ms, and every sound of a request draws on it."""
    kept = _MEDIANS.get(id(entries))
    if kept is not None and kept[0] is entries:
        return kept[1]
    end = max(float(entry["rms"][-1][0]) for entry in entries)
    times = np.arange(0.0, end + SHAPE_GRID_MS, SHAPE_GRID_MS)
    shape = times, np.median(np.stack([_under_peak(entry["rms"], times) for entry in entries]), 0)
    if len(_MEDIANS) >= 32:  # a few labels of a few models
        _MEDIANS.clear()
    _MEDIANS[id(entries)] = (entries, shape)
    return shape


def widen(points: Sequence[Sequence[float]], median: tuple[np.ndarray, np.ndarray],
          spread: float) -> tuple[tuple[float, float], ...]:
    """A kit hit's loudness curve drawn ``spread`` times as far from its label's ``median`` shape
    (:func:`median_shape`) at each of its own points, in dB under its peak (held between
    :data:`engine.dsp.FLOOR_DB` and the peak); its peak level and its point times as they were.

    Why: a latent model follows a kit hit's curve only part of the way. Its hats regress towards
    the typical hat: along the real kits' first principal directions (the body's high bands: how
    fast a hat closes) a generated hat moves .76-.87 of the way its kit hit does, so 64 hats on 64
    kit hits spread .70 of the training hats' (#19 asks .85). Drawn 1.45 times as far (`latent-fast`'s
    hats; its snares and percussion 1.3), the curves ask for that spread back (.91-.97), as the
    waveform models' envelope prior is drawn wider
    (``docs/design-notes.md``, "Kit hits drawn wider"). Each sound then also takes a shape no kit
    holds, not a copy of one.

    After its peak the wider curve rises again over the lowest it has fallen to by no more than the
    hit itself rose there (:func:`hold_rises`): drawn wider, a tail's frame-to-frame flicker (a
    real hit's RMS on 11.6 ms frames moves by several dB) became second hits. `latent-drums`' kicks
    at spread 2 rose again by more than 12 dB in .53 of 64 sounds (the held-out kits' none;
    ``python -m engine.eval.bands``)."""
    times = np.array([p[0] for p in points], float)
    own = _under_peak(points, times)
    typical = np.interp(times, *median)
    peak = max(float(p[1]) for p in points)
    wide = np.clip(typical + float(spread) * (own - typical), FLOOR_DB - peak, 0.0)
    return tuple((float(t), round(float(db), 1)) for t, db in zip(times, hold_rises(wide, own) + peak))


def hold_rises(wide: np.ndarray, own: np.ndarray) -> np.ndarray:
    """``wide`` (dB, a curve drawn from ``own`` point by point) held, after ``own``'s peak, to rise over
    the lowest it has fallen to since by at most what ``own`` rises there over its own lowest since:
    a decay drawn longer or shorter, a roll's hits as loud again as the kit played them, and no
    second hit the kit did not play."""
    held = np.array(wide, float)
    start = int(np.argmax(own))
    own_low = held_low = np.inf
    for i in range(start, len(held)):
        own_low = min(own_low, float(own[i]))
        if np.isfinite(held_low):
            held[i] = min(held[i], held_low + float(own[i]) - own_low)
        held_low = min(held_low, held[i])
    return held


def follows_curves(manifest: dict) -> bool:
    """Whether a model takes both curves a kit envelope gives: loudness and onsets."""
    return {"rms", "onsets"} <= set(spec_names(condition_specs(manifest), CURVE))


def kit_curves(folder: str | Path, manifest: dict, label: str, first_seed: int, count: int,
               length_ms: float, prompt: tuple | None = None, words: Sequence[str] = ()) -> list[KitHit]:
    """Sound ``i``'s hit (RMS points, onsets, caption): the entry seed ``first_seed + i`` draws from the kit
    envelopes in ``folder`` (the studio's and the evaluation's one way to shape a sound by a kit's
    hit), its curve drawn the label's ``kit_spread`` times as far from the typical one (:func:`widen`);
    with ``prompt`` (an embedder and the prompt's unit vector) only among the hits whose captions
    match it best and agree with the descriptor ``words`` it asks for (:func:`prompt_candidates`),
    and as the kit played it (the prompt names its shape).
    A clear error for a model that doesn't follow curves or has no envelopes."""
    name = manifest.get("name") or Path(folder).name
    if not follows_curves(manifest):
        raise InvalidRequestError(f"model {name!r} does not follow curves, so it has no kit envelopes to shape its "
                                  "sounds with; use shape free")
    bank = read_bank(folder)
    if bank is None:
        raise InvalidRequestError(f"model {name!r} has no kit envelopes; build them with "
                                  f"python -m engine envelopes --model {name} --data DATA")
    # a bank written before captions draws as it always did
    candidates = (prompt_candidates(bank, label, *prompt, words=words)
                  if prompt is not None and has_captions(bank, label) else None)
    # a Sound asked alone is drawn wider (its label's kit_spread); a prompt's hit keeps the shape its description names
    spread = kit_spread(manifest, label) if prompt is None else 1.0
    return [draw(bank, label, first_seed + i, length_ms, candidates, spread) for i in range(count)]


def has_captions(bank: dict | None, label: str) -> bool:
    """Whether every kit hit of ``label`` in ``bank`` carries a caption (banks written before
    captions, by ``python -m engine envelopes``, hold only curves)."""
    entries = (bank or {}).get(label) or []
    return bool(entries) and all(entry.get("caption") for entry in entries)


def label_prompt(label: str) -> str:
    """The label's own prompt, the one its zero-shot score starts from ("a kick", "a percussion")."""
    from .embedders.categories import CATEGORY_PROMPTS
    return CATEGORY_PROMPTS.get(label, (f"a {label}",))[0]


def hit_weight(manifest: dict, label: str | None) -> float:
    """How far a sound of ``label`` on a kit hit moves towards the hit's description: the label's
    ``hit_prompt`` default, 0 for a model that takes no prompts (the studio's and the evaluation's rule)."""
    if not takes_prompts(manifest):
        return 0.0
    return float(label_defaults(manifest.get("defaults", {}), label).get("hit_prompt", 0.0))


def kit_spread(manifest: dict, label: str | None) -> float:
    """How far a Sound of ``label`` asked alone draws its kit hit's loudness curve from the label's
    median shape (:func:`widen`): the label's ``kit_spread`` default, 1 (the hit as it was) where none
    is set."""
    return float(label_defaults(manifest.get("defaults", {}), label).get("kit_spread", 1.0))


def hit_prompts(hit: KitHit, label: str, weight: float) -> dict:
    """The prompt settings a sound on ``hit`` takes for a ``hit_prompt`` of ``weight``: its caption,
    morphed by 1 - weight towards the label's own prompt (the request's ``prompt``, ``prompt_b``
    and ``prompt_morph``, so its recipe replays it as any morph of two prompts); {} for weight 0
    or a hit without a caption."""
    if not weight or not hit.caption:
        return {}
    if weight == 1:
        return {"prompt": hit.caption}
    return {"prompt": hit.caption, "prompt_b": label_prompt(label), "prompt_morph": round(1.0 - float(weight), 6)}


PROMPT_HITS = 16
"""How many kit hits, best-matching first, a prompted sound's shape is drawn from: a third of the
46 training kicks, a fifth of the 72 snares, a seventh of the 109 hats; enough that seeds still
differ. At 8 hits "kick" sat 2.6x as far from real kicks as held-out ones do, 1.9x at 16
(``docs/design-notes.md``, "A prompt picks its kit hit")."""

AGREEING_HITS = 4
"""The fewest kit hits a prompt's descriptor word may narrow the choice to; a word that would leave
fewer is passed over (the seeds would give the same few shapes again and again)."""


def prompt_candidates(bank: dict, label: str, embedder, vector, top: int | None = None,
                      words: Sequence[str] = ()) -> list[int]:
    """Indices of ``label``'s ``top`` (:data:`PROMPT_HITS`) hits whose captions are closest (cosine,
    in ``embedder``'s text space) to a prompt's unit ``vector``, among those whose captions don't
    contradict the descriptor ``words`` the prompt asks for (:func:`engine.data.captions.asked_descriptors`):
    for each word in turn, the hits that say its opposite are left out while :data:`AGREEING_HITS`
    remain. Why: in the text space "long kick" lies nearer "short dark high-pitched kick" than many
    long kicks' captions (antonyms share their context), so ranking alone drew short hits for "long
    kick". Keeping only the hits that say the word as well was measured and not kept: long/short
    pairs all came out right, but boomy/thin ones fell from 41 to 38 of 48 (``docs/design-notes.md``,
    "A prompt's words pick its kit hit").
    A clear error for hits without captions."""
    top = PROMPT_HITS if top is None else int(top)
    entries = bank.get(label) or []
    if not has_captions(bank, label):
        raise InvalidRequestError(f"a prompt picks a kit hit by its description, and the model's kit envelopes "
                                  f"for {label!r} have none; rebuild them with python -m engine envelopes")
    captions = tuple(entry["caption"] for entry in entries)
    agreeing = list(range(len(entries)))
    for opposite in (OPPOSITES[word] for word in words if word in OPPOSITES):
        narrowed = [i for i in agreeing if not says(captions[i], opposite)]
        if len(narrowed) >= AGREEING_HITS:
            agreeing = narrowed
    agreeing = torch.tensor(agreeing, dtype=torch.long)
    similarity = _caption_vectors(embedder, captions)[agreeing] @ vector.float().cpu()
    return agreeing[similarity.argsort(descending=True)[:top]].sort().values.tolist()


_CAPTION_VECTORS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _caption_vectors(embedder, captions: tuple[str, ...]):
    """The text embeddings of a bank's captions, once per embedder object and caption list (a
    studio keeps its embedders, so a prompt costs one text embedding, not a bank's worth)."""
    kept = _CAPTION_VECTORS.setdefault(embedder, {})
    if captions not in kept:
        if len(kept) >= 16:  # a few labels of a few models
            kept.clear()
        kept[captions] = embedder.text(list(captions)).float().cpu()
    return kept[captions]
