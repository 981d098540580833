"""A generation request: plain data that the UI, the CLI and the tests fill in the same way.

Serialised, plus the checkpoint id, it is the *recipe* embedded in every exported WAV, and a
recipe read back from a WAV is turned into a request again, so a dropped file regenerates.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, replace

from .curves import check_onsets, check_rms
from .embedders.text_tower import check_prompt
from .envelopes import SHAPES
from .errors import InvalidRequestError
from .seeds import MAX_SEED

LIMITS = {"steps": (1, 200), "guidance": (0.0, 15.0), "count": (1, 64), "morph": (0.0, 1.0),
          "strength": (0.01, 1.0), "control_guidance": (0.0, 15.0), "prompt_morph": (0.0, 1.0),
          "rerank": (0, 64), "label_mix": (0.0, 1.0), "variety": (0.0, 1.0), "width": (0.0, 1.0),
          "kit_bands": (0.0, 1.0)}
VARIATION_MODES = ("noise", "invert", "semantic")
MADE_BEFORE = {"steer_loudness": False, "soft_hits": True, "steer_onsets": False, "shape": "free", "one_hit": False,
               "width": 1.0, "kit_bands": 0.0}
"""What a recipe or preset without these keys was made with (they came later): it replays so."""
VARIATION_STRENGTH = {"noise": 0.5, "invert": 0.5, "semantic": 1.0}
"""The variation strength a mode takes when none is asked for: noise and invert keep about half of the
reference; "more like this" starts from new noises, with only the reference's embedding and curves."""
SEMANTIC_STRENGTH_SINCE = (0, 3)
"""The engine version from which "more like this" takes a strength (before it, always new noises)."""


def check_limit(name: str, value):
    """``value`` if it is a finite number within the request's :data:`LIMITS` for ``name``, else an
    InvalidRequestError saying which and why (what the studio and the evaluation both refuse)."""
    low, high = LIMITS[name]
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
        raise InvalidRequestError(f"{name} must be a number, got {value!r}")
    if not low <= value <= high:
        raise InvalidRequestError(f"{name} must be between {low} and {high}, got {value}")
    return value


@dataclass(frozen=True)
class GenerationRequest:
    model: str = "kick"               # model name, alias (kick/snare/hat/perc) or model folder path
    sampler: str | None = None        # None: the model's default
    steps: int | None = None          # None: the model's default
    guidance: float | None = None     # classifier-free guidance scale; None: the model's default
    variety: float | None = None      # 0 = safe (guided at every step) .. 1 = surprising (guided only at low
                                      # noise: engine.sampling.variety_interval); None: the model's default
    seed: int = 0                     # sound i of a batch uses seed + i
    seed_b: int | None = None         # second seed to morph towards (sound i uses seed_b + i)
    morph: float = 0.0                # 0 = seed's noise, 1 = seed_b's noise (slerp between them)
    count: int = 1                    # sounds per request
    label: str | None = None          # class label; None: the alias's label, or unconditional
    label_b: str | None = None        # a second label to blend in (a hybrid: 70 % snare, 30 % perc)
    label_mix: float = 0.0            # 0 = label, 1 = label_b: the two labels' embeddings mixed by weight
    reference: str | None = None      # path of a reference sound for variations
    strength: float | None = None     # variation strength: 1 = ignore the reference's sound, ~0 = keep it;
                                      # None: the mode's (VARIATION_STRENGTH)
    variation: str = "noise"          # "noise": partial noising; "invert": audio -> noise -> audio;
                                      # "semantic": new sounds like the reference ("more like this": its
                                      # audio embedding is the prompt; at strength 1 the noises are new,
                                      # under 1 it starts from the reference noised as "noise" does)
    length: float | None = None       # seconds; latent models only (<= the model's longest); None: default
    rms: tuple | None = None          # loudness curve: ((ms, dBFS), ...) joined by straight lines in dB
    onsets: tuple | None = None       # onset times in ms: where the hits are
    control_guidance: float | None = None  # how strictly to follow the curves; None: the model's default
    match_loudness: bool = True       # with a loudness curve: a gain envelope after sampling puts the sound on it
    steer_loudness: bool = True       # with a loudness curve: the sampling steps are moved onto it (latent models
                                      # whose latent says its loudness: engine.steering); a recipe or preset
                                      # without this key was made before steering existed and replays without it
    soft_hits: bool = False           # with a loudness curve quieter than the model's usual hits: True makes a soft
                                      # hit (a soft velocity layer's timbre); False a full hit turned down onto the
                                      # curve (engine.conditions.lift_quiet_curve). Recipes without it replay soft
    steer_onsets: bool = True         # with two or more hits: each hit after the first that the loudness curve does
                                      # not already rise into is made in the latent as it forms (a dip, then the
                                      # first hit's attack: engine.steering.onset_projection). Recipes without it
                                      # replay without
    one_hit: bool = True              # with at most one hit: where no loudness curve is drawn, the sound is held
                                      # from rising again after its peak by more than its model's limit as it forms
                                      # (no ghost second hit: engine.steering.one_hit_projection). Recipes without
                                      # it replay without
    prompt: str | None = None         # text prompt ("short punchy 808 kick"); models that take prompts
    prompt_b: str | None = None       # second prompt to morph towards (slerp of the two text embeddings)
    prompt_morph: float = 0.0         # 0 = prompt, 1 = prompt_b
    rerank: int = 0                   # N > 0: make N candidates and keep the `count` closest to the prompt
    shape: str | None = None          # with a label and no curves: "free" (the network shapes the sound) or "kit"
                                      # (each sound takes a real training hit's curves, drawn by its seed:
                                      # engine.envelopes); None: the model's default for the label. Recipes
                                      # without it were made free and replay so
    width: float | None = None        # stereo width: 0 = mono (both channels the mid), 1 = as the model makes it
                                      # (engine.dsp.stereo_width); None: the model's default for the label.
                                      # Recipes without it replay at 1, as made
    kit_bands: float | None = None    # a Sound alone with a loudness curve (a kit hit's or a drawn one): 0 = the
                                      # network's own spectrum .. 1 = each band's share of the loudness steered,
                                      # over time, onto the real training clip its seed deals (engine.band_shares);
                                      # None: the model's default for the label. Recipes without it replay at 0

    def validated(self) -> "GenerationRequest":
        """Return self if every value is usable, else raise InvalidRequestError saying which and why."""
        for name in LIMITS:
            if getattr(self, name) is not None:
                check_limit(name, getattr(self, name))
        for name in ("steps", "count", "seed", "rerank"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or int(value) != value):
                raise InvalidRequestError(f"{name} must be a whole number, got {value!r}")
        for name in ("seed", "seed_b"):
            value = getattr(self, name)
            if value is not None and not 0 <= int(value) <= MAX_SEED - LIMITS["count"][1]:
                raise InvalidRequestError(f"{name} must be between 0 and {MAX_SEED - LIMITS['count'][1]}, got {value}")
        if self.length is not None and (not isinstance(self.length, (int, float)) or isinstance(self.length, bool)
                                        or not math.isfinite(self.length) or self.length <= 0):
            raise InvalidRequestError(f"length must be a positive number of seconds, got {self.length!r}")
        for name in ("match_loudness", "steer_loudness", "soft_hits", "steer_onsets", "one_hit"):
            if not isinstance(getattr(self, name), bool):
                raise InvalidRequestError(f"{name} must be true or false, got {getattr(self, name)!r}")
        if self.shape is not None and self.shape not in SHAPES:
            raise InvalidRequestError(f"shape must be one of {SHAPES}, got {self.shape!r}")
        if self.variation not in VARIATION_MODES:
            raise InvalidRequestError(f"variation must be one of {VARIATION_MODES}, got {self.variation!r}")
        if not self.model or not isinstance(self.model, str):
            raise InvalidRequestError("no model chosen")
        if self.rerank and self.rerank < self.count:
            raise InvalidRequestError(f"{self.rerank} candidates can't give {self.count} sounds: ask for at least "
                                      f"{self.count} candidates (rerank), or 0 for no re-ranking")
        if self.rerank and not (self.prompt or self.variation == "semantic" and self.reference):
            raise InvalidRequestError("re-ranking orders candidates by their closeness to a prompt: give a prompt "
                                      "(or a reference with the semantic variation)")
        prompt = None if self.prompt is None else check_prompt(self.prompt)
        prompt_b = None if self.prompt_b is None else check_prompt(self.prompt_b)
        if prompt_b is not None and prompt is None:
            raise InvalidRequestError("a second prompt morphs from a first one: give the first prompt too")
        if self.label_b is not None and self.label is None:
            raise InvalidRequestError("a second label blends into a first one: choose the first label (Sound) too")
        if self.variation == "semantic" and not self.reference:
            raise InvalidRequestError("the semantic variation (\"more like this\") needs a reference sound")
        rms, onsets = check_rms(self.rms), check_onsets(self.onsets)
        if (rms, onsets, prompt, prompt_b) != (self.rms, self.onsets, self.prompt, self.prompt_b):
            return replace(self, rms=rms, onsets=onsets, prompt=prompt, prompt_b=prompt_b)  # tuples; tidy text
        return self

    def to_recipe(self) -> dict:
        """Plain JSON-able data; curves stay as the points that were drawn (not dense arrays)."""
        recipe = asdict(self)
        recipe["rms"] = None if self.rms is None else [list(point) for point in self.rms]
        recipe["onsets"] = None if self.onsets is None else list(self.onsets)
        return recipe

    @classmethod
    def from_recipe(cls, recipe: dict) -> "GenerationRequest":
        """Rebuild a request from a recipe, ignoring keys it does not know (checkpoint id, rate...).
        A recipe from before loudness steering (no ``steer_loudness``) replays without it, and one from
        before quiet curves were lifted (no ``soft_hits``) with soft hits, and one from before hits were
        steered (no ``steer_onsets``) or held to one hit (no ``one_hit``) without it, and one from
        before the stereo width (no ``width``) at full width, as made (:data:`MADE_BEFORE`); "more like
        this" from before it took a strength at strength 1 (:func:`_like_without_strength`)."""
        known = {f.name for f in fields(cls)}
        request = cls(**{**MADE_BEFORE, **{k: v for k, v in recipe.items() if k in known}})
        return request.with_(strength=VARIATION_STRENGTH["semantic"]) if _like_without_strength(recipe) else request

    def with_(self, **changes) -> "GenerationRequest":
        return replace(self, **changes)


def recorded_strength(recipe: Mapping) -> float:
    """The variation strength a recipe (or the page's restored values) was made with, as a number:
    "more like this" from before it took one at 1 (:func:`_like_without_strength`), a recipe
    without one at its mode's default."""
    variation = recipe.get("variation") or "noise"
    if _like_without_strength(recipe):
        return VARIATION_STRENGTH["semantic"]
    strength = recipe.get("strength")
    return VARIATION_STRENGTH.get(variation, 0.5) if strength is None else strength


def _like_without_strength(recipe: Mapping) -> bool:
    """Whether a recipe is "more like this" from before engine 0.3, which took no strength: its
    recipes say 0.5 (the request's default then), but it started from new noises (strength 1)."""
    return recipe.get("variation") == "semantic" and parse_version(recipe.get("engine")) < SEMANTIC_STRENGTH_SINCE


def parse_version(text) -> tuple[int, ...]:
    """An engine version as numbers, ``"0.3"`` -> ``(0, 3)``; ``()``, older than any, for a recipe
    without one (made before 0.2) or an unreadable one."""
    try:
        return tuple(int(part) for part in str(text).split(".")) if text is not None else ()
    except ValueError:
        return ()


def asks_prompt(prompt: str | None, variation: str | None) -> bool:
    """Whether a request is prompted, for the defaults it takes (``with_prompt``,
    :func:`engine.sampling.label_defaults`): a typed prompt, or "more like this" (a reference's
    embedding as the prompt). A kit hit's description is not asked for by the user and does not count."""
    return prompt is not None or variation == "semantic"
