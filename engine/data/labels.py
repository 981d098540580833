"""Drum labels: map a drum-kit instrument name (and its sample's file name) to a category.

The model families condition on five coarse categories (:data:`CATEGORIES`); the subcategory
is kept as metadata (hat articulation, which percussion instrument, which cymbal).

The rules are one ordered table, :data:`RULES`, written against the instrument names that
Debian's ``hydrogen-drumkits`` and ``hydrogen-data`` kits really use ("Kick (Tama Superstar
22")", "c3 - bass drum 1", "Sabian Hat Semi-Open", "Djembe1 Bass", "Stick", "redo super
opaco"...). Add a row rather than a branch.
"""

from __future__ import annotations

import re
from typing import NamedTuple

CATEGORIES: tuple[str, ...] = ("kick", "snare", "hat", "perc", "cymbal")
"""The coarse classes, in label order: ``label = CATEGORIES.index(category)``."""

SUBCATEGORIES: dict[str, tuple[str, ...]] = {
    "kick": ("kick",),
    "snare": ("snare",),
    "hat": ("closed_hat", "open_hat", "pedal_hat"),
    "perc": (
        "tom", "clap", "snap", "shaker", "tambourine", "cowbell", "bell", "conga", "bongo",
        "djembe", "dunun", "cajon", "rim", "woodblock", "clave", "other_perc",
    ),
    "cymbal": ("crash", "ride", "china", "splash"),
}


class Rule(NamedTuple):
    """One row of the table: the first row whose ``pattern`` matches wins."""

    pattern: str
    category: str | None  # None: not a drum one-shot (loops, FX, rolls, melodic...)
    subcategory: str | None
    strong: bool = True  # False: a generic word ("Drum", "Stick", "Bell"): ask the file name


_HAT = r"(?=.*(hi ?-?hat|hh|hat))"

RULES: tuple[Rule, ...] = (
    # 1. Exclusions first: "Snare Roll" must not become a snare, "Zap 1" must not become perc.
    Rule(r"\broll\b|\bloop|\bfx\b|\bsfx\b|\bzap\b|\bwhistle|\bvox\b|\bvoice|\bvocal|\bspeech"
         r"|\bpiano|\bguitar|\bsynth|\bstrings?\b|\bchord|\bbass ?line|\breverse|\bsweep"
         r"|\briser\b|\bscratch|\blaser|empty ?sample|\bsilence", None, None),
    # 2. Hand and world percussion, before kick/snare/hat: "Djembe1 Bass" is not a bass drum,
    #    "Cajon Thump"/"Cajon Slap" are not kicks/snares, "Tambourine Pedal" is not a pedal hat.
    Rule(r"djemb", "perc", "djembe"),
    Rule(r"cajon", "perc", "cajon"),
    Rule(r"conga|tumba|quinto", "perc", "conga"),
    Rule(r"bongo", "perc", "bongo"),
    Rule(r"tamb", "perc", "tambourine"),
    Rule(r"shak|maraca|cabasa|afuche", "perc", "shaker"),
    Rule(r"clap", "perc", "clap"),
    Rule(r"snap|finger", "perc", "snap"),
    Rule(r"clave", "perc", "clave"),
    Rule(r"wood ?block|temple ?block", "perc", "woodblock"),
    # 3. Bells, most specific first: a ride bell ("Ride Bell", "ride-cup", "Paiste Bell") is a
    #    cymbal, a cowbell is a cowbell, other bells (agogo, the dunun drums' bells) are perc.
    Rule(r"ride ?(bell|cup)|(bell|cup).*ride|\bcup\b|(paiste|sabian|zildjian|meinl|ufip).*bell"
         r"|^bell( \d+)?$", "cymbal", "ride"),  # a kit's bare "Bell" is GM note 53, ride bell
    Rule(r"cow ?bell", "perc", "cowbell"),
    Rule(r"agogo|\bbell|bell\b", "perc", "bell", strong=False),
    Rule(r"dunun|dundun|sangban|kenkeni", "perc", "dunun"),
    # 4. Rim sounds that mention the snare: a side stick or rim click is perc/rim, but a
    #    "Snare Rimshot" is a snare (hence: side stick before snare before plain "rim").
    Rule(r"side ?stick|cross ?stick|rim ?click", "perc", "rim"),
    Rule(r"snare|\bsn\b|\bsd\b|\bsnr\b", "snare", "snare"),
    Rule(r"\brim|rim ?shot", "perc", "rim"),
    Rule(r"\bstick", "perc", "rim", strong=False),
    # 5. Kick. "bass drum"/"BassDrum" only here, after djembe/dunun basses were taken.
    Rule(r"kick|bass ?drum|\bbd\b|\bkik\b|\bbassdrum", "kick", "kick"),
    # 6. Hats: articulation from the words around "hat"; pedal before open before closed.
    Rule(_HAT + r"(?=.*(pedal|foot|\bpd\b|phh))", "hat", "pedal_hat"),
    Rule(r"(pedal|foot) ?(hh|hat)|phh", "hat", "pedal_hat"),
    Rule(_HAT + r"(?=.*(open|\bop\b|ohh|free|swish|semi|half|loose))", "hat", "open_hat"),
    Rule(r"ohh|open ?hat", "hat", "open_hat"),
    Rule(r"hi ?-?hat|hh|\bhats?\b|hat\b", "hat", "closed_hat"),
    # 7. Toms (after "Tom" cannot be part of anything above).
    Rule(r"\btom|floor ?tom|\bft\b|timbal|octoban|roto", "perc", "tom"),
    # 8. Cymbals: china/splash before crash before ride ("Crash/Ride" is played as a crash).
    Rule(r"china", "cymbal", "china"),
    Rule(r"splash", "cymbal", "splash"),
    Rule(r"crash|\bcra\b|\bcc\b", "cymbal", "crash"),
    Rule(r"\bride|\brd\b", "cymbal", "ride"),
    Rule(r"cymbal|\bcym", "cymbal", "crash"),
    # 9. Generic leftovers: a drum or click we cannot place; the file name is asked first.
    Rule(r"triangle|guiro|vibraslap|waterglass|glass|chime|gong|cuica|agung", "perc",
         "other_perc"),
    Rule(r"\bdrum|\bclick|\bperc", "perc", "other_perc", strong=False),
)
"""Ordered table of ``(regex, category, subcategory, strong)``.

Why the order matters: names combine words of several instruments, and the first matching row
wins. "Snare Roll" has to hit the exclusion row before the snare row; "Djembe1 Bass" and
"Cajon Thump" the world-percussion rows before the kick row ("bass"); "Tambourine Pedal" the
tambourine row before the pedal-hat row; "Ride Bell"/"Paiste Bell" the ride-bell row before
the cowbell/bell rows, and "Cowbell" the cowbell row before the generic bell row; "Side
Stick"/"Rim Click" the rim row before the snare row, but "Snare Rimshot" the snare row before
the plain rim row; "Hi-Hat Pedal" the pedal row before the open row before the closed row;
"Crash/Ride" the crash row before the ride row. Patterns run on :func:`normalize`-d text.
"""

_COMPILED = tuple((re.compile(rule.pattern), rule) for rule in RULES)
_NOTE_PREFIX = re.compile(r"^\s*[a-g]#?-?\d\s*-\s*", re.IGNORECASE)  # "c#3 - stick"
_BRACKETS = re.compile(r"\([^)]*\)|\[[^\]]*\]")  # "Kick (Tama Superstar 22")"
_EXTENSION = re.compile(r"\.(wav|flac|aiff?|ogg|mp3)$", re.IGNORECASE)


def normalize(text: str) -> str:
    """Lower-case words: split camelCase and letters/digits, drop brackets and note prefixes.

    ``"SabianHatSemiOpen-Soft.wav"`` -> ``"sabian hat semi open soft"``,
    ``"c#3 - hi-hat closed"`` -> ``"hi hat closed"``, ``"Tom Low (Tama 16\\")"`` -> ``"tom low"``.
    """
    text = _EXTENSION.sub("", text.strip())
    text = _NOTE_PREFIX.sub("", text)
    text = _BRACKETS.sub(" ", text)
    text = re.sub(r"(?<=[a-z])(?=[A-Z])", " ", text)  # camelCase
    text = re.sub(r"(?<=[A-Za-z])(?=\d)|(?<=\d)(?=[A-Za-z])", " ", text)
    text = re.sub(r"[^a-z0-9]+", " ", text.lower())
    return " ".join(text.split())


def _match(text: str) -> Rule | None:
    words = normalize(text)
    if not words:
        return None
    for pattern, rule in _COMPILED:
        if pattern.search(words):
            return rule
    return None


def categorize(instrument_name: str | None, file_name: str | None = "") -> tuple[str, str] | None:
    """Return ``(category, subcategory)`` for a drum sample, or None if it is no drum one-shot.

    The instrument name decides when a strong row matches it (or an exclusion). When it matches
    nothing or only a generic word ("Drum 1", "Stick", "Bell", "redo super opaco", "17"), the
    sample's file name is asked (``"SideStick-Soft.wav"``, ``"snare-opaque-shot1.flac"``); a
    generic match on the name is the fallback.
    """
    by_name = _match(instrument_name or "")
    if by_name is not None and (by_name.strong or by_name.category is None):
        return None if by_name.category is None else (by_name.category, by_name.subcategory)
    file_stem = (file_name or "").replace("\\", "/").rsplit("/", 1)[-1]
    by_file = _match(file_stem)
    if by_file is not None and by_file.strong:
        return None if by_file.category is None else (by_file.category, by_file.subcategory)
    for rule in (by_name, by_file):
        if rule is not None and rule.category is not None:
            return rule.category, rule.subcategory
    return None
