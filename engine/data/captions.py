"""Captions for drum clips: what a producer would type, built from labels, kit and measured sound.

The text–audio model (``engine/embedders/clap_model.py``) learns to put a clip next to the text
that describes it, so every training clip needs several descriptions in words. They are built
from what the data set knows and what can be measured:

- the **instrument**: the category and subcategory (``kick``, ``open_hat``, ``tom``, ``cowbell``...),
  each with a few nouns a person would use (:data:`NOUNS`);
- the **kit style**: acoustic, electronic, 808, 909, lo-fi or hand percussion, from an explicit
  table of the Hydrogen kits we build from (:data:`KIT_STYLES`), else keywords in the kit's name
  and ``drumkit.xml`` info text (:data:`STYLE_KEYWORDS`);
- the **velocity layer**: soft / medium / hard from the layer's velocity range in the record
  (a kit with one layer per instrument says nothing);
- **measured descriptors** (:func:`clip_descriptors`): bright / dark (spectral centroid of the
  magnitude spectrum), short / long (time for the RMS to fall 30 dB below its peak), boomy / thin
  (share of the energy below 150 Hz), punchy (fast attack and a high crest factor in the first
  100 ms), and low / high pitch for kicks and toms (the strongest partial of the body). A hat is
  thin by its share under 1.5 kHz instead (:data:`GROUP_MEASURES`): it has nothing under 150 Hz to
  lose, and what sets an 808's hat apart from an acoustic one is how little it holds under 1.5 kHz.

A descriptor word is relative to the instrument: the thresholds are the terciles of each group
(category, with toms apart from the rest of perc) over the training clips
(:func:`descriptor_thresholds`), so "bright" means bright for a snare, and a kick is never
"bright" merely for being compared with hats. The middle third gets no word.

Phrasings come from a small table of templates (:data:`TEMPLATES`), not a grammar: the first
caption of a clip says everything known, the others a random part of it, so a short prompt
("dark snare") and a long one ("soft dark roomy acoustic snare drum") both land near the clip.
Everything is deterministic given the seed.
"""

from __future__ import annotations

import html
import logging
import random
import re
import xml.etree.ElementTree as ET
from pathlib import Path
from types import SimpleNamespace
from typing import Mapping, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from .. import dsp

log = logging.getLogger(__name__)

THRESHOLDS_VERSION = 2              # 2: low_mid_share added (a hat's thinness); thresholds without it give no such word
QUANTILES = (1.0 / 3.0, 2.0 / 3.0)   # terciles: the lower third gets the "low" word, the upper the "high" one
MIN_GROUP = 9                        # a group with fewer clips uses the thresholds of all clips
LOW_HZ = 150.0                       # "boomy": energy below this
LOW_MID_HZ = 1500.0                  # a "thin" hat: little energy below this
LOUD_DB = 30.0                       # spectra are measured over the frames within 30 dB of the loudest
DECAY_DB = 30.0                      # "long": time for the RMS to fall this far below its peak
HIT_MS = 100.0                       # the crest factor is measured over the hit's first 100 ms
PITCH_RANGE_HZ = (30.0, 600.0)       # where a kick's or tom's pitch is looked for
PITCH_BODY_MS = (10.0, 210.0)        # ...in the body: 10-210 ms after the peak (past the click)

# ----------------------------------------------------------------------------- vocabulary

NOUNS: dict[str, tuple[str, ...]] = {
    "kick": ("kick", "kick drum", "bass drum"),
    "snare": ("snare", "snare drum"),
    "closed_hat": ("closed hi-hat", "closed hat", "hi-hat"),
    "open_hat": ("open hi-hat", "open hat"),
    "pedal_hat": ("pedal hi-hat", "foot hi-hat"),
    "tom": ("tom", "tom drum"),
    "clap": ("clap", "hand clap"),
    "snap": ("finger snap", "snap"),
    "shaker": ("shaker",),
    "tambourine": ("tambourine",),
    "cowbell": ("cowbell",),
    "bell": ("bell", "agogo bell"),
    "conga": ("conga",),
    "bongo": ("bongo",),
    "djembe": ("djembe",),
    "dunun": ("dunun", "dundun drum"),
    "cajon": ("cajon",),
    "rim": ("rimshot", "rim click", "side stick"),
    "woodblock": ("woodblock", "wood block"),
    "clave": ("clave", "claves"),
    "other_perc": ("percussion", "percussion hit"),
    "crash": ("crash cymbal", "crash"),
    "ride": ("ride cymbal", "ride"),
    "china": ("china cymbal",),
    "splash": ("splash cymbal",),
    # the categories themselves, for a clip whose subcategory is unknown
    "hat": ("hi-hat", "hat"),
    "perc": ("percussion", "percussion hit"),
    "cymbal": ("cymbal",),
    "unlabeled": ("drum hit", "drum sound"),
}
"""What a person calls each (sub)category. The first noun is the plain one (the full caption's)."""

CATEGORY_WORDS: dict[str, tuple[str, ...]] = {
    "kick": ("kick", "bass drum"),
    "snare": ("snare",),
    "hat": ("hat",),
    "perc": ("percussion",),
    "cymbal": ("cymbal", "crash", "ride"),
}
"""Words that name a category; every caption of a kick, snare, hat or cymbal contains one (a perc
caption names its instrument, and some of them say "percussion" too)."""

THINGS: dict[str, tuple[str, ...]] = {
    "perc": ("percussion hit", "percussion sound", "hit"),
    "default": ("hit", "sound", "sample", "one-shot"),
}
"""What the sound is, after its noun: "a dark snare hit", "a cowbell percussion hit"."""

KIT_STYLES: dict[str, tuple[str, ...]] = {
    # Written from each kit's drumkit.xml <info> text (Debian packages hydrogen-drumkits and
    # hydrogen-data, /usr/share/hydrogen/data/drumkits), read by hand:
    "Audiophob": ("lo-fi",),                   # "Cheap sounds from freesound.org" (8-bit snare, noise toms)
    "BJA_Pacific": ("acoustic",),              # a Pacific drum set, sampled
    "ColomboAcousticDrumkit": ("acoustic",),   # wooden toms, piccolo snare, Sabian/Paiste cymbals
    "ElectricEmpireKit": ("electronic",),      # "synth drum ... synthesised from noise and sine waves"
    "Forzee Stereo Drumkit": ("acoustic",),    # TAMA Superstar, Pearl snare, Paiste cymbals
    "GMRockKit": ("acoustic",),                # "A Sampled 5pc Pearl DX Series Drumkit"
    "Gimme A Hand 1.0": ("hand percussion",),  # "Hand Percussion Instruments Including Cajon, Bongos..."
    "HardElectro1": ("electronic",),           # "electro, hard house and techno ... synthesized"
    "Millo-Drums_v.1": ("acoustic",),          # a Ludwig set, "sixties" sound
    "Millo_MultiLayered2": ("acoustic",),      # the same Ludwig set, multi-layered
    "Millo_MultiLayered3": ("acoustic",),
    "TR808EmulationKit": ("808", "electronic"),  # "simulates the sounds of the legendary Roland TR-808"
    "The Black Pearl 1.0": ("acoustic",),      # the same Pearl DX set as GMRockKit
    "VariBreaks": ("electronic",),             # "created from scratch using Roland V-Synth"
    "circAfrique v4": ("hand percussion",),    # djembes and dununs
    "rumpf_kit_z01_gm": (),                    # "Drum kit from analog samples": acoustic or machine? unclear
}
"""Style words of the kits we train on; a kit not listed here goes through :data:`STYLE_KEYWORDS`."""

STYLE_KEYWORDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (r"\b(tr-?)?808\b", ("808", "electronic")),
    (r"\b(tr-?)?909\b", ("909", "electronic")),
    (r"lo-?fi|8-?bit|bit-?crush|\bcheap\b|\bvinyl\b|\bcassette\b", ("lo-fi",)),
    (r"electr|\bsynth|techno|\bhouse\b|\bedm\b|drum ?machine", ("electronic",)),
    (r"hand ?perc|afri|latin|\bworld\b|conga|bongo|djemb|cajon|tabla", ("hand percussion",)),
    (r"acoustic|ludwig|pearl|\btama\b|gretsch|sonor|\brock\b|\bjazz\b|sampled .*(set|kit)", ("acoustic",)),
)
"""Ordered keyword rules for kits not in :data:`KIT_STYLES` (a user's folder, another Hydrogen kit):
the first rule that matches the kit's name or info text gives its style."""

STYLE_PHRASES: dict[str, tuple[str, ...]] = {
    "acoustic": ("acoustic",),
    "electronic": ("electronic", "synth"),
    "808": ("808", "TR-808"),
    "909": ("909", "TR-909"),
    "lo-fi": ("lo-fi", "lofi"),
    "hand percussion": ("hand percussion",),
}

VELOCITY_WORDS: dict[str, tuple[str, ...]] = {
    "soft": ("soft", "gentle", "quiet"),
    "medium": ("medium-velocity", "medium"),
    "hard": ("hard", "loud", "hard-hit"),
}
VELOCITY_EDGES = (0.35, 0.65)   # the middle of the layer's velocity range: below soft, above hard

ASPECTS: dict[str, tuple[str, str, str]] = {
    # aspect: (descriptor measured, word for the lower third, word for the upper third)
    "tone": ("centroid_hz", "dark", "bright"),
    "length": ("decay_ms", "short", "long"),
    "body": ("low_share", "thin", "boomy"),
    "pitch": ("pitch_hz", "low", "high"),
}
WORDS: dict[str, tuple[str, ...]] = {
    "dark": ("dark", "mellow"),
    "bright": ("bright", "crisp"),
    "short": ("short", "tight", "dry"),
    "long": ("long", "ringing", "sustained"),
    "thin": ("thin", "light"),
    "boomy": ("boomy", "bassy", "full"),
    "punchy": ("punchy", "snappy"),
    "low": ("low", "low-pitched", "deep"),
    "high": ("high-pitched", "high"),
}
"""Each canonical word (the first, used in the full caption) and its synonyms."""

DRUM_LONG_EXTRA = ("roomy",)   # a long kick, snare or tom usually rings in a room

GROUP_ASPECTS: dict[str, tuple[str, ...]] = {
    "kick": ("tone", "length", "body", "punch", "pitch"),
    "tom": ("tone", "length", "body", "punch", "pitch"),
    "snare": ("tone", "length", "body", "punch"),
    "perc": ("tone", "length", "body", "punch"),
    "hat": ("tone", "length", "body"),
    "cymbal": ("tone", "length"),
}
"""Which aspects are worth saying per group: cymbals have no low end to call boomy, hats only a thin
one (:data:`GROUP_MEASURES`), and only kicks and toms have a pitch a producer asks for."""

GROUP_MEASURES: dict[str, dict[str, tuple[str, str, str | None]]] = {
    "hat": {"body": ("low_mid_share", "thin", None)},
}
"""Aspects a group measures its own way, as ``(descriptor, lower word, upper word or None)``. A hat's
body is its share under 1.5 kHz, and only its lower third gets a word: the real kits' hats hold
-15 to -8 dB of their energy there (quantiles .05 / .5), TR-808 and V-Synth hats -17 to -62 dB,
and "boomy" is no word for any hat (docs/design-notes.md, "A thin hat's word")."""
DEFAULT_ASPECTS = ("tone", "length")

ORDER = ("velocity", "length", "punch", "tone", "body", "pitch")   # adjective order before the noun

TEMPLATES: tuple[str, ...] = (
    "{desc} {style} {noun}",
    "a {desc} {style} {noun} {thing}",
    "{desc} {noun}",
    "{style} {noun}, {desc_list}",
    "{noun} {thing}, {desc_and}",
    "a {desc} {noun} from a {style} kit",
    "{style} {noun} {thing}",
    "{noun}",
    "{desc} {noun} {thing}",
)
"""Phrasings; one whose slot would be empty (no descriptor words, no style) is not used."""


# ----------------------------------------------------------------------------- measurement


def clip_descriptors(audio: torch.Tensor, sample_rate: int) -> dict[str, float]:
    """Measured descriptors of one clip ``(channels, samples)`` (onset near the start):

    - ``centroid_hz``: centroid of the magnitude spectrum (the power spectrum's centroid is
      dominated by a kick's body and would say "boomy" twice);
    - ``low_share``: share of the energy below 150 Hz (both over the frames within 30 dB of the
      loudest: a quiet tail's hiss is not the sound's tone);
    - ``low_mid_share``: share of the energy below 1.5 kHz (over the same frames), a hat's body;
    - ``decay_ms``: from the RMS peak until it has fallen 30 dB (the rest of the clip if never);
    - ``attack_ms``: from the first RMS frame (2.9 ms windows) within 30 dB of the peak to the peak;
    - ``crest_db``: peak over RMS of the first 100 ms from the onset;
    - ``pitch_hz``: the strongest partial between 30 and 600 Hz, 10-210 ms after the peak.
    """
    if audio.dim() != 2 or audio.shape[-1] < 2048:
        raise ValueError(f"expected one clip (channels, samples >= 2048), got {tuple(audio.shape)}")
    audio = torch.nan_to_num(audio.float())
    mono = audio.mean(0)
    frames = dsp.power_spectrogram(mono, 2048, 512)
    energy = frames.sum(0)
    power = frames[:, energy > energy.max() * 10.0 ** (-LOUD_DB / 10.0)].sum(-1)   # the tail's hiss is not the tone
    freqs = torch.linspace(0.0, sample_rate / 2.0, power.shape[0])
    magnitude = power.sqrt()
    centroid = float((freqs * magnitude).sum() / magnitude.sum().clamp_min(1e-12))
    low_share = float(power[freqs < LOW_HZ].sum() / power.sum().clamp_min(1e-12))
    low_mid_share = float(power[freqs < LOW_MID_HZ].sum() / power.sum().clamp_min(1e-12))

    hop = 128
    db = dsp.rms_db(audio, hop)
    peak = int(db.argmax())
    fallen = (db[peak:] < db[peak] - DECAY_DB).nonzero()
    decay_ms = (int(fallen[0]) if len(fallen) else len(db) - peak) * hop / sample_rate * 1000.0

    fine_hop = 32
    fine = dsp.rms_db(audio, fine_hop, window=128)
    fine_peak = int(fine.argmax())
    start = int((fine > fine[fine_peak] - DECAY_DB).nonzero()[0])
    attack_ms = (fine_peak - start) * fine_hop / sample_rate * 1000.0

    onset = start * fine_hop
    hit = mono[onset: onset + int(HIT_MS / 1000.0 * sample_rate)]
    crest_db = float(20.0 * torch.log10(hit.abs().max().clamp_min(1e-9) / hit.square().mean().sqrt().clamp_min(1e-9)))

    body_start = fine_peak * fine_hop + int(PITCH_BODY_MS[0] / 1000.0 * sample_rate)
    body = mono[body_start: body_start + int((PITCH_BODY_MS[1] - PITCH_BODY_MS[0]) / 1000.0 * sample_rate)]
    pitch_hz = 0.0
    if body.numel() >= 256:
        spectrum = torch.fft.rfft(body * torch.hann_window(body.numel()), n=1 << 15).abs()
        bins = torch.fft.rfftfreq(1 << 15, 1.0 / sample_rate)
        inside = (bins >= PITCH_RANGE_HZ[0]) & (bins <= PITCH_RANGE_HZ[1])
        pitch_hz = float(bins[inside][spectrum[inside].argmax()])
    return {"centroid_hz": centroid, "decay_ms": decay_ms, "low_share": low_share, "attack_ms": attack_ms,
            "crest_db": crest_db, "pitch_hz": pitch_hz, "low_mid_share": low_mid_share}


def dataset_descriptors(dataset, progress: bool = True) -> list[dict[str, float]]:
    """:func:`clip_descriptors` of every clip of a :class:`~engine.data.dataset.DrumDataset` (~4 ms a clip)."""
    return [clip_descriptors(dataset[i]["audio"], dataset.sample_rate)
            for i in tqdm(range(len(dataset)), desc="describing clips", unit="clip", disable=not progress)]


def descriptor_group(record: Mapping) -> str:
    """The group whose clips a clip is compared with: its category, toms apart from the other perc
    (a tom is a pitched drum; a cowbell or a shaker is not what "low" or "boomy" means for it)."""
    return "tom" if record.get("subcategory") == "tom" else str(record.get("category", "unlabeled"))


def descriptor_thresholds(dataset, descriptors: Sequence[Mapping[str, float]] | None = None,
                          min_count: int = MIN_GROUP) -> dict:
    """The terciles of every descriptor per group (and over all clips), measured on ``dataset``
    (its ``records`` and audio; pass ``descriptors`` when already measured). JSON-ready:
    ``{"version", "quantiles", "groups": {group: {"count": n, descriptor: [low, high], ...}}}``;
    a group of fewer than ``min_count`` clips is left out and uses ``"all"``."""
    records = dataset.records
    descriptors = list(descriptors) if descriptors is not None else dataset_descriptors(dataset)
    if len(descriptors) != len(records):
        raise ValueError(f"{len(descriptors)} descriptors for {len(records)} clips")
    members: dict[str, list[int]] = {"all": list(range(len(records)))}
    for index, record in enumerate(records):
        members.setdefault(descriptor_group(record), []).append(index)
    groups = {}
    for group, indices in sorted(members.items()):
        if len(indices) < min_count and group != "all":
            continue
        entry: dict = {"count": len(indices)}
        for name in descriptors[0] if descriptors else ():
            values = np.array([descriptors[i][name] for i in indices], dtype=np.float64)
            entry[name] = [float(q) for q in np.quantile(values, QUANTILES)]
        groups[group] = entry
    return {"version": THRESHOLDS_VERSION, "quantiles": list(QUANTILES), "groups": groups}


def completed_thresholds(recorded: Mapping, dataset, descriptors: Sequence[Mapping[str, float]] | None = None) -> dict:
    """``recorded`` thresholds (an embedder's, maybe of an older :data:`THRESHOLDS_VERSION`) with every
    descriptor they lack measured on ``dataset``'s real clips (clips the builder made, such as
    thinned hats, are left out, as the recorded ones were measured on real kits); pass
    ``descriptors`` (of every clip of ``dataset``) when already measured. The recorded values stay
    as they are, so every word they gave is given again; a newer descriptor (a hat's
    ``low_mid_share``) adds its words. ``completed`` lists what was measured here."""
    from .build import made_by_builder
    described = list(descriptors) if descriptors is not None else dataset_descriptors(dataset, progress=False)
    real = [i for i, record in enumerate(dataset.records) if not made_by_builder(record)]
    if not real:
        raise ValueError("the data set has no real clips to measure thresholds on")
    clips = SimpleNamespace(records=[dataset.records[i] for i in real])
    measured = descriptor_thresholds(clips, [described[i] for i in real])["groups"]
    groups = {group: dict(entry) for group, entry in recorded.get("groups", {}).items()}
    added = set()
    for group, entry in groups.items():
        for name, limits in measured.get(group, measured["all"]).items():
            if name not in entry:
                entry[name] = limits
                added.add(name)
    return {**recorded, "version": THRESHOLDS_VERSION, "groups": groups, "completed": sorted(added)}


# ----------------------------------------------------------------------------- words


def kit_style(kit: str | None, info: str = "") -> tuple[str, ...]:
    """Style words of a kit: :data:`KIT_STYLES` when listed, else the first :data:`STYLE_KEYWORDS`
    rule matching its name, then its info text; () when nothing says."""
    if not kit:
        return ()
    if kit in KIT_STYLES:
        return KIT_STYLES[kit]
    for text in (kit, info):
        lowered = text.lower()
        for pattern, styles in STYLE_KEYWORDS:
            if re.search(pattern, lowered):
                return styles
    return ()


def read_kit_info(sources: Sequence[str | Path]) -> dict[str, str]:
    """``{kit name: info text}`` from the ``drumkit.xml`` files directly inside ``sources``' kit
    folders (HTML stripped), for the kits :data:`KIT_STYLES` does not list; {} when none is there."""
    infos: dict[str, str] = {}
    for source in sources:
        for path in sorted(Path(source).glob("*/drumkit.xml")):
            try:
                root = ET.parse(path).getroot()
            except (ET.ParseError, OSError) as error:
                log.warning("cannot read %s: %s", path, error)
                continue
            fields = {child.tag.rsplit("}", 1)[-1]: (child.text or "") for child in root}
            text = re.sub(r"<[^>]+>|\{[^}]*\}", " ", html.unescape(fields.get("info", "")))
            infos[fields.get("name") or path.parent.name] = " ".join(text.split())
    return infos


def velocity_word(record: Mapping) -> str | None:
    """soft / medium / hard from the middle of the layer's velocity range; None for a layer that
    covers every velocity (a kit with one sample per instrument) or no range at all."""
    velocity = record.get("velocity")
    if not velocity or len(velocity) != 2:
        return None
    low, high = float(velocity[0]), float(velocity[1])
    if low <= 0.0 and high >= 1.0:
        return None
    middle = (low + high) / 2.0
    return "soft" if middle < VELOCITY_EDGES[0] else "hard" if middle > VELOCITY_EDGES[1] else "medium"


def _group_thresholds(thresholds: Mapping, group: str) -> Mapping:
    groups = thresholds.get("groups", {})
    if group in groups:
        return groups[group]
    if "all" in groups:
        return groups["all"]
    raise ValueError("the thresholds have no 'all' group; build them with descriptor_thresholds")


def descriptor_words(record: Mapping, descriptors: Mapping[str, float], thresholds: Mapping) -> dict[str, str]:
    """``{aspect: canonical word}`` for the aspects of the clip's group whose value lies in the
    group's lower or upper third (``{"tone": "bright", "length": "short", "punch": "punchy"}``).

    Punchy: an attack no slower than the group's median and a crest factor in its upper third."""
    group = descriptor_group(record)
    limits = _group_thresholds(thresholds, group)
    words: dict[str, str] = {}
    for aspect in GROUP_ASPECTS.get(group, DEFAULT_ASPECTS):
        if aspect == "punch":
            attack, crest = limits.get("attack_ms"), limits.get("crest_db")
            if attack and crest and descriptors["attack_ms"] <= (attack[0] + attack[1]) / 2.0 \
                    and descriptors["crest_db"] >= crest[1]:
                words["punch"] = "punchy"
            continue
        name, low_word, high_word = GROUP_MEASURES.get(group, {}).get(aspect, ASPECTS[aspect])
        if name not in limits:  # thresholds of version 1 have no hat body
            continue
        low, high = limits[name]
        value = descriptors[name]
        if value < low:
            words[aspect] = low_word
        elif value > high and high_word:
            words[aspect] = high_word
    return words


OPPOSITES: dict[str, str] = {**{low: high for _, low, high in ASPECTS.values()},
                              **{high: low for _, low, high in ASPECTS.values()}, "soft": "hard", "hard": "soft"}
"""Each canonical descriptor word a caption may carry and the word at the other end of its scale."""

ASKABLE_WORDS: dict[str, tuple[str, ...]] = {**WORDS, "long": WORDS["long"] + DRUM_LONG_EXTRA,
                                             "soft": VELOCITY_WORDS["soft"], "hard": VELOCITY_WORDS["hard"]}
"""Each canonical word a prompt can ask for and the ways a person writes it ("tight" asks for short,
"roomy" for long), in the order a prompted sound's kit hits are narrowed by them."""


def _has_word(lowered: str, word: str, plural: bool = False) -> bool:
    """Whether ``word`` (or, with ``plural``, ``word`` + "s") stands in the lower-cased ``lowered`` as a
    whole word, a hyphen joining words: "hat" is in "open hat" but not in "hi-hat-ish", "high" not in
    "high-pitched" (which is a word of its own)."""
    return re.search(r"(?<![\w-])" + re.escape(word) + ("s?" if plural else "") + r"(?![\w-])", lowered) is not None


def says(text: str, word: str) -> bool:
    """Whether ``text`` holds the canonical descriptor ``word`` or one of its synonyms as a whole word
    ("high" is not in "hi-hat"; "low-pitched" says low, as one of its synonyms)."""
    lowered = str(text).lower()
    return any(_has_word(lowered, w) for w in ASKABLE_WORDS[word])


def asked_descriptors(text: str | None) -> tuple[str, ...]:
    """The canonical descriptor words a prompt asks for, in :data:`ASKABLE_WORDS`' order: "tight punchy
    808 kick" -> ("short", "punchy"). A scale named at both ends ("short or long") asks for neither. The studio
    draws a prompted sound's kit hit among the hits whose captions don't say their opposites."""
    if not text:
        return ()
    named = [word for word in ASKABLE_WORDS if says(text, word)]
    return tuple(word for word in named if OPPOSITES.get(word) not in named)


SPELLINGS: tuple[tuple[str, str], ...] = ((r"\bhi[\s_]?hats?\b", "hi-hat"), (r"\bhh\b", "hi-hat"),
                                          (r"\bbassdrums?\b", "bass drum"), (r"\bkickdrums?\b", "kick drum"))
"""Other ways people write an instrument, mapped to the caption builder's word first."""


def named_category(text: str, categories: Sequence[str] | None = None) -> str | None:
    """The one category ``text`` names with an instrument word of the caption builder's
    vocabulary (:data:`NOUNS` of the category and its subcategories, :data:`CATEGORY_WORDS`):
    "short punchy 808 kick" -> kick, "low boomy tom" -> perc, "hihat" -> hat; None when it names
    none ("something metallic") or several ("kick and snare"), or one not in ``categories``.
    The studio conditions a prompted sound on that category's label as well as on the prompt's
    embedding (the label path is the model's most reliable one; the embedding adds the rest:
    docs/design-notes.md)."""
    from .labels import SUBCATEGORIES
    lowered = str(text).lower()
    for pattern, word in SPELLINGS:
        lowered = re.sub(pattern, word, lowered)
    found = set()
    for category, subcategories in SUBCATEGORIES.items():
        words = {*CATEGORY_WORDS.get(category, ()), *NOUNS.get(category, ())}
        for sub in subcategories:
            words.update(NOUNS.get(sub, ()))
        if any(_has_word(lowered, w, plural=True) for w in words):
            found.add(category)
    named = found.pop() if len(found) == 1 else None
    return named if categories is None or named in categories else None


def category_names(record: Mapping) -> tuple[str, ...]:
    """The words that name this clip's instrument: its category's and its subcategory's nouns."""
    category = str(record.get("category", "unlabeled"))
    subcategory = str(record.get("subcategory") or category)
    return CATEGORY_WORDS.get(category, ()) + NOUNS.get(subcategory, NOUNS.get(category, NOUNS["unlabeled"]))


# ----------------------------------------------------------------------------- captions


def _article(text: str) -> str:
    """'a' -> 'an' before a vowel sound ("an open hat", "an 808 kick"; "a one-shot" stays)."""
    return re.sub(r"\ba (?=(?!one\b|one-)[aeiou8])", "an ", text)


def _join_and(words: Sequence[str]) -> str:
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def _fill(template: str, noun: str, thing: str, desc: list[str], style: str) -> str | None:
    if ("{desc" in template and not desc) or ("{style}" in template and not style):
        return None
    text = template.format(noun=noun, thing=thing, style=style, desc=" ".join(desc),
                           desc_list=", ".join(desc), desc_and=_join_and(desc) if desc else "")
    return _article(" ".join(text.split()))


def captions_for(record: Mapping, descriptors: Mapping[str, float], thresholds: Mapping, count: int = 6,
                 seed: int = 0, *, kit_info: str = "") -> list[str]:
    """``count`` captions of one clip: the first says everything known (velocity, descriptor words,
    style, plain noun), the others a random share of it in other phrasings and synonyms.

    Deterministic given ``seed`` and the clip (its sha1, else kit and file, seed the draw). When the
    clip allows fewer distinct phrasings than ``count`` (a bare "hi-hat" of an unknown kit), the
    distinct ones repeat in order, so the list always has ``count`` entries. ``kit_info``: the kit's
    ``drumkit.xml`` info text, for a kit :data:`KIT_STYLES` does not list."""
    if count < 1:
        raise ValueError(f"count must be >= 1, got {count}")
    category = str(record.get("category", "unlabeled"))
    subcategory = str(record.get("subcategory") or category)
    nouns = NOUNS.get(subcategory) or NOUNS.get(category) or NOUNS["unlabeled"]
    things = THINGS.get(category, THINGS["default"])
    words = descriptor_words(record, descriptors, thresholds)
    velocity = velocity_word(record)
    if velocity:
        words["velocity"] = velocity
    styles = kit_style(record.get("kit"), kit_info)
    key = record.get("sha1") or f"{record.get('kit')}/{record.get('file')}"
    rng = random.Random(f"{seed}|{key}")

    def synonyms(aspect: str, word: str) -> tuple[str, ...]:
        if aspect == "velocity":
            return VELOCITY_WORDS[word]
        extra = DRUM_LONG_EXTRA if word == "long" and descriptor_group(record) in ("kick", "snare", "tom") else ()
        return WORDS[word] + extra

    ordered = [a for a in ORDER if a in words]
    full = [synonyms(a, words[a])[0] for a in ordered] + [STYLE_PHRASES[s][0] for s in styles[:1]] + [nouns[0]]
    captions = [" ".join(full)]
    for _ in range(40 * count):
        if len(captions) >= count:
            break
        chosen = [a for a in ordered if rng.random() < 0.6]
        desc = [rng.choice(synonyms(a, words[a])) for a in chosen]
        style = rng.choice(STYLE_PHRASES[rng.choice(styles)]) if styles and rng.random() < 0.6 else ""
        noun = rng.choice(nouns)
        # "a low tom percussion hit": perc captions name the category too, but not twice
        fits = [t for t in things if "percussion" not in t or "percussion" not in f"{noun} {style}"]
        thing = rng.choice(fits[:2]) if category == "perc" and rng.random() < 0.4 else rng.choice(fits)
        text = _fill(rng.choice(TEMPLATES), noun, thing, desc, style)
        if text and text not in captions:
            captions.append(text)
    return [captions[i % len(captions)] for i in range(count)]


def dataset_captions(dataset, thresholds: Mapping | None = None, count: int = 6, seed: int = 0,
                     descriptors: Sequence[Mapping[str, float]] | None = None,
                     kit_info: Mapping[str, str] | None = None, progress: bool = True) -> list[list[str]]:
    """``count`` captions for every clip of an open data set; thresholds measured on it unless given
    (give the training split's when captioning held-out clips)."""
    descriptors = list(descriptors) if descriptors is not None else dataset_descriptors(dataset, progress)
    thresholds = thresholds if thresholds is not None else descriptor_thresholds(dataset, descriptors)
    infos = kit_info or {}
    return [captions_for(record, described, thresholds, count, seed, kit_info=infos.get(record.get("kit"), ""))
            for record, described in zip(dataset.records, descriptors)]


def build_captions(dataset_root: str | Path, split: str = "train", count: int = 6, seed: int = 0,
                   thresholds: Mapping | None = None, sources: Sequence[str | Path] | None = None,
                   progress: bool = True, dataset=None) -> list[list[str]]:
    """Captions of every clip of ``split`` of the built data set at ``dataset_root`` (in the order of
    ``DrumDataset(dataset_root, split)``, or of ``dataset``, that split already open, e.g. its real
    clips only). The thresholds are the whole training split's unless given, so a held-out clip
    is "bright" by the same measure as a training one. ``sources``: kit folders
    whose ``drumkit.xml`` info text names the style of kits :data:`KIT_STYLES` does not list
    (default: the data set's own sources, when still installed)."""
    from .dataset import DrumDataset, load_index

    whole = dataset is None  # thresholds come from the whole training split, not from a part of it
    dataset = DrumDataset(dataset_root, split) if whole else dataset
    if thresholds is None:
        train = dataset if split == "train" and whole else DrumDataset(dataset_root, "train")
        thresholds = descriptor_thresholds(train, dataset_descriptors(train, progress))
    if sources is None:
        sources = [s for s in load_index(dataset_root).get("sources", []) if Path(s).is_dir()]
    unknown = {r.get("kit") for r in dataset.records} - set(KIT_STYLES)
    infos = read_kit_info(sources) if unknown and sources else {}
    return dataset_captions(dataset, thresholds, count, seed, kit_info=infos, progress=progress)
