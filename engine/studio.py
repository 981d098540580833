"""The engine's one door: ``Studio.generate(request)`` streams progress, previews and results.

The UI, the CLI, the evaluation and the tests all call this. It resolves the model, draws each
sound's noise from its seed (and morphs towards a second seed), samples through
``engine.sampling``, and decodes to audio. Sampling runs in a worker thread that reports through
a queue, so callers iterate over plain events: :class:`Progress` (with a preview of the
current clean estimate every few steps) and finally one :class:`Result`. Closing the iterator
early cancels the sampling at the next step.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Iterator, Sequence

import torch

from . import audio as audio_io
from . import band_shares, dsp, envelopes, pipeline, variants
from .conditions import (CURVE, Conditions, condition_specs, curves_from_sound, recorded_level_floors, spec_names,
                         steered_only, takes_prompts)
from .curves import check_onsets, check_rms
from .data.captions import asked_descriptors
from .embedders.base import text_vector
from .errors import AudioFileError, InvalidRequestError, StudioError
from .models import (DEFAULT_ROOT, LoadedModel, ModelEntry, codec_steers, embedder_location, find_models,
                     load_model, pick_device, read_manifest, resolve_model)
from .request import LIMITS, VARIATION_STRENGTH, GenerationRequest, asks_prompt, parse_version
from .sampling import (default_shape, distilled_from, distilled_grid, distilled_top, holds_one_hit, invert_latent,
                       label_defaults, samplers_for)
from .seeds import SeedNoise, slerp
from .steering import hit_frames, roll_segments, steerable

log = logging.getLogger(__name__)

ENGINE_VERSION = "0.7"
ENGINE_CHANGES = {"0.2": "a latent model's sound no longer carries faint steady tones (344 and 689 Hz, about 60 dB "
                         "under the hit) through its tail; a kick asked as one clean hit that comes out "
                         "near-silent is drawn again from another seed; and a kick on a curve opens without "
                         "its click (its first 5.8 ms held to real kicks' brightness)",
                  "0.4": "a roll drawn at one level (three hits or more that the curve does not rise into) "
                         "comes back as hits that peak on the line and fall between them, and the loudness "
                         "shaper follows a curve's small wiggles more smoothly (over 20 ms, 8 ms around drawn "
                         "hits), so they no longer read as extra hits",
                  "0.5": "a latent model's snares, hats and cymbals no longer carry a rumble under 110 Hz (5-16 dB "
                         "more of their energy there than real ones): their bands under 690 Hz are held to "
                         "the kits' median share",
                  "0.6": "a latent model's sound no longer carries the codec's fill at 690-1380 Hz where the "
                         "sound has little either side of it (a thin, bright hat came back with a mid-range "
                         "click 50 dB louder than it had): that part is held to at most 6 dB over its neighbours",
                  "0.7": "latent-drums' cymbals no longer have their bands under 690 Hz held to the kits' median "
                         "share: a sound of a Sound with band shares (the Real-hit timbre) takes its dealt clip's "
                         "own low end instead"}
"""What each engine version changed in the sounds a recipe makes, so a restored older recipe can say
why its sound now differs (the recipe records ``engine``)."""


def engine_changes_since(version: str | None) -> list[str]:
    """What changed in the sounds since engine ``version`` (a recipe's ``engine``), oldest first;
    nothing for an unknown or unreadable version, or this one."""
    made = parse_version(version)
    if not made:
        return []
    return [change for later, change in sorted(ENGINE_CHANGES.items(), key=lambda item: parse_version(item[0]))
            if parse_version(later) > made]


INVERSION_SAMPLER = {"v_cosine": "ddim", "blend": "iadb"}


@dataclass
class Progress:
    step: int
    total: int
    preview: torch.Tensor | None = None   # (channels, samples) clean estimate of the first sound
    sample_rate: int = 44100


@dataclass
class Sound:
    audio: torch.Tensor                   # (channels, samples) float32 in [-1, 1]
    sample_rate: int
    recipe: dict                          # regenerates exactly this sound (count 1, its own seed)
    score: float | None = None            # cosine of its audio embedding with the prompt's (prompted requests)


@dataclass
class Result:
    sounds: list[Sound]
    seconds: float
    device: str
    request: GenerationRequest = field(repr=False)
    notes: list[str] = field(default_factory=list)  # what the studio changed in the request, said once


class Cancelled(StudioError):
    """The caller stopped listening; sampling stops at the next step."""


class Studio:
    """Holds loaded models (a small cache) and the device choice; one instance serves every user."""

    def __init__(self, roots: list[str | Path] | None = None, device: str = "auto", half: bool = False,
                 cache_size: int = 3, workers: int = 1, threads: int | None = None):
        self.device = pick_device(device)
        self.roots = [Path(r) for r in (roots or [DEFAULT_ROOT])]
        self.half = half and self.device.type == "cuda"
        self._models: OrderedDict[Path, LoadedModel] = OrderedDict()
        self._embedders: dict[Path | str, object] = {}  # by folder, or "laion"
        self._reference_vectors: dict[tuple, torch.Tensor] = {}  # the last reference's audio embedding
        self._text_vectors: dict[tuple, torch.Tensor] = {}  # prompts' text embeddings (a prompted kit hit asks thrice)
        self._cache_size = cache_size
        self._lock = threading.Lock()
        # Sampling runs on long-lived worker threads, not a fresh thread per request: a new thread
        # gets a new OpenMP team beside the idle one of the last, and the same 16-step one-shot then
        # took 0.55 s instead of 0.20-0.27 s on the 2-core CPU (issue 18; docs/design-notes.md).
        # One worker by default: two renders at once on two cores only slow each other down.
        # ``threads``: the worker's intra-op threads (OpenMP keeps them per calling thread). On a CPU
        # the default is 1: measured on the 2-core CPU, a worker thread sampled a one-shot in 0.47 s
        # with one and 0.90 s with two (a 1 s latent sound 0.24 s against 0.63 s; issue 18).
        if threads is None and self.device.type == "cpu":
            threads = 1
        if threads is not None and int(threads) < 1:
            raise InvalidRequestError(f"threads must be 1 or more, got {threads}")
        self.threads = threads
        self._workers = ThreadPoolExecutor(max_workers=max(1, int(workers)), thread_name_prefix="tds-sampler",
                                           initializer=None if threads is None else torch.set_num_threads,
                                           initargs=() if threads is None else (int(threads),))

    # ------------------------------------------------------------------ models
    def models(self) -> dict[str, ModelEntry]:
        return find_models(self.roots)

    def add_root(self, folder: str | Path) -> None:
        """Let the studio see a user's own model folder (or a folder of model folders)."""
        folder = Path(folder)
        if not folder.is_dir():
            raise InvalidRequestError(f"{folder} is not a folder")
        if folder not in self.roots:
            self.roots.append(folder)

    def entry(self, name: str) -> ModelEntry:
        return resolve_model(name, self.roots)

    def is_loaded(self, name: str) -> bool:
        """Whether ``name``'s model is in memory (its next render does not start by loading it)."""
        try:
            key = self.entry(name).folder.resolve()
        except StudioError:
            return False
        with self._lock:
            return key in self._models

    def load(self, entry: ModelEntry) -> LoadedModel:
        with self._lock:
            key = entry.folder.resolve()
            if key in self._models:
                self._models.move_to_end(key)
                return self._models[key]
            model = load_model(entry.folder, self.device, self.half)
            self._models[key] = model
            while len(self._models) > self._cache_size:
                self._models.popitem(last=False)
            return model

    def routed_label(self, name: str, prompt: str, prompt_b: str | None = None) -> str | None:
        """The label a prompt gives a request for model ``name`` when no Sound is chosen
        (:func:`prompt_label`): what the page needs to show that label's default settings."""
        return prompt_label(GenerationRequest(model=name, prompt=prompt, prompt_b=prompt_b), self.entry(name))

    def describe(self, name: str) -> dict:
        """What the UI needs to set its controls for a model: labels, samplers, defaults."""
        entry = self.entry(name)
        manifest = entry.manifest
        grid = distilled_grid(manifest)
        controls = model_controls(manifest)
        steers = codec_steers(manifest, entry.folder)  # reads the codec's manifest: once
        return {"name": entry.name, "kind": entry.kind, "labels": entry.labels, "label": entry.label,
                "takes_guidance": entry.takes_guidance, "samplers": list(samplers_for(manifest)),
                # a guidance-distilled model learned scales up to its own top, not the request limit
                "guidance_max": distilled_top(manifest) or LIMITS["guidance"][1],
                # a step-distilled model makes its sound in exactly this many steps (None: any)
                "steps_fixed": None if grid is None else len(grid) - 1,
                "defaults": dict(manifest.get("defaults", {})), "sample_rate": manifest["sample_rate"],
                "seconds": manifest["length"] / manifest["sample_rate"],
                "variable_length": variable_length(manifest),  # then "seconds" is the longest it makes
                "controls": controls,  # the curves it follows: "rms", "onsets"
                # the sampling steps are moved onto a drawn loudness curve (engine.steering)
                "steers_loudness": "rms" in controls and steers,
                # ...and that is how it follows curves at all: its network takes none (python -m engine steer)
                "steered_only": steered_only(condition_specs(manifest)),
                "steers_onsets": "onsets" in controls and steers,
                # a sound asked as one hit is held from rising again after its peak (engine.steering)
                "holds_one_hit": steers and holds_one_hit(manifest.get("defaults", {})),
                # a drawn curve quieter than its usual hits is lifted for the network (a full hit,
                # turned down), unless the request asks for soft hits (engine.conditions.lift_quiet_curve)
                "lifts_quiet_curves": recorded_level_floors(condition_specs(manifest)) is not None,
                "prompts": takes_prompts(manifest),   # text prompts, prompt morphs, "more like this"
                # a real kit hit's curves for a Sound left unshaped (engine.envelopes, shape "kit")
                "kit_envelopes": envelopes.follows_curves(manifest) and (entry.folder / envelopes.BANK_FILE).is_file(),
                # a Sound with a curve may take its dealt clip's band shares over time (engine.band_shares)
                "band_shares": steers and (entry.folder / band_shares.SHARES_FILE).is_file(),
                "training_steps": manifest.get("training", {}).get("steps", 0),
                # the model it was distilled from (folder name), so a user knows the faster twin's source
                "distilled_from": distilled_from(manifest)}

    def curves_from(self, path: str | Path, model: str, length: float | None = None) -> tuple:
        """(RMS points, onset times) measured on the sound file ``path`` at ``model``'s rate and frame
        hop, cut to the sound's length: what "take the curves from this sound" fills in."""
        entry = self.entry(model)
        manifest = entry.manifest
        sound, _ = audio_io.read_audio(path, sample_rate=manifest["sample_rate"], channels=manifest["channels"],
                                       max_seconds=30.0)
        longest = manifest["length"] / manifest["sample_rate"]
        hop = getattr(self.load(entry).codec, "hop", None) or 128
        return curves_from_sound(sound, manifest["sample_rate"], hop, min(length or longest, longest))

    def embedder(self, name: str):
        """The text–audio embedder a prompted model was trained with (loaded once, kept)."""
        entry = self.entry(name)
        if not entry.manifest.get("embedder"):
            raise InvalidRequestError(f"model {entry.name!r} does not take prompts{self._prompt_hint()}")
        from .embedders.base import load_embedder
        key = embedder_location(entry.manifest, entry.folder, self.roots)
        with self._lock:
            if key not in self._embedders:
                self._embedders[key] = load_embedder(key, "cpu")
            return self._embedders[key]

    def _prompt_hint(self) -> str:
        return _who_does([n for n, e in self.models().items() if takes_prompts(e.manifest) and not e.label])

    def prompt_embedding(self, request: GenerationRequest, model: str | None = None) -> torch.Tensor | None:
        """``(D,)``: what the request asks for in the text–audio space, or None. The prompt's text
        embedding (slerped towards ``prompt_b``'s by ``prompt_morph``); for the semantic variation the
        reference's audio embedding ("more like this"), halfway to the prompt's when there is one
        ("this kick, but darker")."""
        wanted = request.prompt is not None or request.variation == "semantic"
        if not wanted:
            return None
        name = model or request.model
        embedder = self.embedder(name)
        vector = None
        if request.prompt is not None:
            key = (id(embedder), request.prompt, request.prompt_b, request.prompt_morph)  # embedders are kept
            with self._lock:
                vector = self._text_vectors.get(key)
            if vector is None:
                vector = text_vector(embedder, request.prompt, request.prompt_b, request.prompt_morph)
                with self._lock:
                    if len(self._text_vectors) >= 64:  # a session's prompts and kit hits' descriptions
                        self._text_vectors.clear()
                    self._text_vectors[key] = vector
        if request.variation == "semantic":
            heard = self.reference_embedding(self.entry(name), request.reference)
            vector = heard if vector is None else torch.nn.functional.normalize(heard + vector, dim=0)
        return vector

    def reference_embedding(self, entry: ModelEntry, path: str) -> torch.Tensor:
        """``(D,)``: the audio embedding of a reference sound by ``entry``'s embedder (its onset at
        the start, at the model's length); InvalidRequestError for a silent one."""
        stat = Path(path).stat() if Path(path).is_file() else None
        key = (entry.folder.resolve(), str(path), stat and (stat.st_mtime_ns, stat.st_size))
        with self._lock:  # "more like this" on a sample without a recipe asks twice: for the guess and the prompt
            if key in self._reference_vectors:
                return self._reference_vectors[key]
        manifest = entry.manifest
        sound = reference_sound(manifest, path, manifest["length"], "nothing to be like")
        vector = self.embedder(str(entry.folder)).audio(sound[None], manifest["sample_rate"])[0]
        with self._lock:
            self._reference_vectors = {key: vector}  # the last reference only: a new click brings a new one
        return vector

    def _like_reference(self, entry: ModelEntry, request: GenerationRequest) -> GenerationRequest:
        """"More like this" keeps what the user left open from the reference: its instrument (the
        label its recipe names, else the embedder's zero-shot guess when it is sure) and, on a model
        that follows curves, its loudness and onset curves. Why: the embedding alone let half the
        siblings drift to another instrument and shape (``docs/design-notes.md``, "More like this").
        A chosen Sound, a drawn curve or a prompt naming an instrument wins; the filled values are
        in the recipe, so the siblings replay without guessing again."""
        updates = {}
        if request.label is None and not entry.label:
            updates["label"] = self.reference_label(entry, request.reference)
        if request.rms is None and request.onsets is None and model_controls(entry.manifest):
            updates["rms"], updates["onsets"] = self.curves_from(request.reference, str(entry.folder), request.length)
        return request.with_(**updates)

    def reference_label(self, entry: ModelEntry, path: str) -> str | None:
        """The instrument of a reference sound among ``entry``'s labels: the label of the recipe it
        carries (a sound this studio made), else the embedder's zero-shot guess, or None when unsure."""
        try:
            recipe = audio_io.read_recipe(path) or {}
        except AudioFileError:  # not a WAV (a FLAC, an MP3): no recipe, the sound decides
            recipe = {}
        if recipe.get("label") in entry.labels:
            return recipe["label"]
        from .embedders.categories import guess_category
        return guess_category(self.embedder(str(entry.folder)), self.reference_embedding(entry, path), entry.labels)

    # ------------------------------------------------------------------ generation
    def render(self, request: GenerationRequest) -> Result:
        """Generate and return only the final result (CLI, tests, batch jobs): no previews decoded."""
        for event in self.generate(request, preview_every=0):
            if isinstance(event, Result):
                return event
        raise StudioError("generation ended without a result")

    def generate(self, request: GenerationRequest, preview_every: int = 4,
                 preview_after_s: float = 0.0) -> Iterator[Progress | Result]:
        """Stream :class:`Progress` events (with a preview of the first sound every ``preview_every``
        steps, once sampling has run ``preview_after_s``: a render shorter than that decodes no
        preview nobody would see) and finally the :class:`Result`. Closing the iterator cancels."""
        request = request.validated()
        request = request.with_(strength=VARIATION_STRENGTH[request.variation] if request.strength is None
                                else request.strength)
        entry = self.entry(request.model)
        model = self.load(entry)
        manifest = model.manifest
        request = request.with_(label=request.label or entry.label)
        routed = prompt_label(request, entry)
        if routed:  # "short punchy 808 kick": the kick label as well as the prompt's embedding
            request = request.with_(label=routed)
        request = request.with_(length=resolve_length(manifest, request.length))
        if request.variation == "semantic":  # may fill the label from the reference
            request = self._like_reference(entry, request)
        # a Sound's default shape is for a Sound alone; with a prompt, the model's with_prompt shape
        # ("kit": a real hit whose description matches the prompt, else the network's own)
        model_defaults = manifest.get("defaults", {})
        request = request.with_(shape=request.shape or default_shape(
            model_defaults, request.label, prompt=request.prompt is not None, hybrid=request.label_b is not None))
        drawn = self._kit_shapes(entry, request)  # each sound's real envelope, when it takes one
        # the model's defaults for the label the request ends up with (a model may sample kicks
        # differently from snares, engine.sampling.label_defaults); those with curves for curves the
        # user drew or a prompt's kit hit, not for a Sound asked alone that a kit hit only shapes
        prompted = asks_prompt(request.prompt, request.variation)
        defaults = label_defaults(manifest.get("defaults", {}), request.label,
                                  curves=bool(request.rms or (drawn and prompted)), prompt=prompted)
        request = request.with_(sampler=request.sampler or defaults.get("sampler", "dpmpp_2m"),
                                steps=int(request.steps or defaults.get("steps", 16)),
                                guidance=float(defaults.get("guidance", 1.0) if request.guidance is None else request.guidance),
                                variety=defaults["variety"] if request.variety is None else request.variety,
                                width=float(defaults.get("width", 1.0) if request.width is None else request.width))
        request, notes = fixed_steps(entry, request)
        if drawn or request.rms or request.onsets:
            request = request.with_(control_guidance=float(defaults.get("control_guidance", 1.0)
                                                           if request.control_guidance is None
                                                           else request.control_guidance))
        conditions = self._conditions(entry, request)
        jobs, asked = [request], [conditions]
        if drawn:  # one sound per job, each on its own curves (recipes: its seed, count 1, the curves it drew)
            # and, for a label whose defaults say so, the hit's own description as its prompt
            hit_weight = 0.0 if request.prompt is not None else envelopes.hit_weight(manifest, request.label)
            jobs = [request.with_(seed=request.seed + i, seed_b=None if request.seed_b is None else request.seed_b + i,
                                  count=1, rerank=0, rms=hit.rms, onsets=hit.onsets,
                                  **envelopes.hit_prompts(hit, request.label, hit_weight))
                    for i, hit in enumerate(drawn)]
            asked = [replace(conditions, rms=job.rms, onsets=job.onsets, prompt=self.prompt_embedding(job)
                             if job.prompt is not None else conditions.prompt) for job in jobs]
        models = [model] * len(jobs)
        if drawn and request.prompt is None and request.label_b is None:  # a Sound alone: its variant's seeds
            found: dict[str, ModelEntry] = {}  # the model roots are read once a request, not once a sound
            for i, job in enumerate(jobs):
                name = variants.dealt_variant(manifest, request.label, job.seed)
                if name:  # rendered, and recorded, as the variant's
                    if name not in found:
                        found[name] = self._variant_entry(entry, name)
                    jobs[i], models[i] = job.with_(model=found[name].name), self.load(found[name])
        # a Sound alone with a curve: how far its bands are steered onto its dealt clip's, recorded per sound
        jobs = [job.with_(kit_bands=kit_bands(manifest, job, wanted)) for job, wanted in zip(jobs, asked)]
        events: queue.Queue = queue.Queue()
        stop = threading.Event()
        started = time.time()
        self._workers.submit(self._sample_worker, models, jobs, asked, request.count, preview_every, preview_after_s,
                             events, stop)
        try:
            while True:
                event = events.get()
                if isinstance(event, BaseException):
                    raise event
                if isinstance(event, list):  # the finished sounds
                    yield Result(event, time.time() - started, str(self.device), request, notes)
                    return
                yield event
        finally:
            stop.set()

    def _label_index(self, entry: ModelEntry, label: str | None) -> int | None:
        if label is None:
            return None
        if label not in entry.labels:
            raise InvalidRequestError(f"model {entry.name!r} has no label {label!r}; it knows {entry.labels or 'none'}")
        return entry.labels.index(label)

    def _conditions(self, entry: ModelEntry, request: GenerationRequest) -> Conditions:
        """The request's conditions, checked against what this model takes and this sound's length."""
        takes = model_controls(entry.manifest)
        asked = {"rms": request.rms, "onsets": request.onsets}
        words = {"rms": "a loudness curve", "onsets": "onsets"}
        for name, value in asked.items():
            if value and name not in takes:
                hint = _who_does(self.models_following(name))
                raise InvalidRequestError(f"model {entry.name!r} does not take {words[name]}{hint}")
        manifest = entry.manifest
        if request.rms and not request.steer_loudness and steered_only(condition_specs(manifest)):
            raise InvalidRequestError(f"model {entry.name!r} follows a loudness curve only by steering (its network "
                                      "was never trained on curves); leave the steering on")
        if (request.prompt is not None or request.variation == "semantic") and not takes_prompts(manifest):
            what = "prompts" if request.prompt is not None else "the semantic variation (\"more like this\")"
            raise InvalidRequestError(f"model {entry.name!r} does not take {what}{self._prompt_hint()}")
        length_ms = 1000.0 * (request.length or manifest["length"] / manifest["sample_rate"])
        return Conditions(label=self._label_index(entry, request.label),
                          label_b=self._label_index(entry, request.label_b), label_mix=float(request.label_mix),
                          rms=check_rms(request.rms, length_ms),
                          onsets=check_onsets(request.onsets, length_ms),
                          prompt=self.prompt_embedding(request))

    def _reference_latent(self, model: LoadedModel, path: str, count: int, samples: int, frames: int,
                          conditions: Conditions) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The reference's latent for every sound of the request, and its own envelope (None for
        codecs without one)."""
        manifest = model.manifest
        sound = reference_sound(manifest, path, samples, "nothing to vary")
        hop = getattr(model.codec, "hop", None)
        if hop and variable_length(manifest):  # pad to the latent grid in audio, where zeros are silence
            sound = torch.nn.functional.pad(sound, (0, frames * hop - samples))
        envelope = model.codec.envelope_for(conditions.label, audio=sound[None])
        latent = model.codec.encode(sound[None].to(model.device), envelope)
        latent = torch.nn.functional.pad(latent, (0, frames - latent.shape[-1])) if latent.shape[-1] < frames \
            else latent[..., :frames]
        return latent.expand(count, *latent.shape[1:]), None if envelope is None else envelope.expand(count, -1, -1)

    def _sample_worker(self, models: list[LoadedModel], jobs: list[GenerationRequest], conditions: list[Conditions],
                       keep: int, preview_every: int, preview_after_s: float, events: queue.Queue,
                       stop: threading.Event) -> None:
        """Sample the jobs one after another, each on its own model (a request is one job; sounds on
        kit envelopes one job each, a variant's seeds on the variant), the progress counted over all
        of them; with re-ranking across jobs the ``keep`` that scored best. The sounds, or the error,
        go to ``events`` for the consumer."""
        try:
            steps = jobs[0].steps
            sounds: list[Sound] = []
            for i, (model, job, asked) in enumerate(zip(models, jobs, conditions)):
                shifted = _ShiftedProgress(events, i * steps, len(jobs) * steps)
                sounds += self._sample(model, job, asked, preview_every, preview_after_s, shifted, stop)
            if keep < len(sounds):
                sounds = sorted(sounds, key=lambda sound: -(sound.score or 0.0))[:keep]
            events.put(sounds)
        except BaseException as error:  # handed to the consumer, which re-raises it
            events.put(error)

    def models_following(self, control: str) -> list[str]:
        """The models that follow ``control`` ("rms", "onsets"), by name: whom an error or a warning
        points a user to. A Sound's alias and a Sound's variant (made for that Sound) are left out."""
        return sorted(name for name, entry in self.models().items() if control in model_controls(entry.manifest)
                      and not entry.label and not entry.manifest.get("variant_of"))

    def _variant_entry(self, entry: ModelEntry, name: str) -> ModelEntry:
        """The variant ``name`` of ``entry``'s model (:mod:`engine.variants`), beside it; known to the
        studio by its name when its model roots hold that folder, else by its path (a recipe replays it)."""
        folder = variants.variant_folder(entry.folder, name)
        known = self.models().get(name)
        if known is not None and known.folder.resolve() == folder.resolve():
            return known
        return ModelEntry(str(folder), folder, read_manifest(folder))

    def _kit_shapes(self, entry: ModelEntry, request: GenerationRequest) -> list[envelopes.KitHit] | None:
        """Each sound's hit (RMS points, onsets, caption) from the model's kit envelopes (:mod:`engine.envelopes`)
        when the request's shape is "kit" and it leaves the shape open: a label, no curve, no
        reference to vary. None when the network shapes the sound; a clear error when "kit" was
        asked of a model that can't take it."""
        if request.shape != "kit" or request.rms or request.onsets or request.reference:
            return None
        if request.label is None and envelopes.follows_curves(entry.manifest):
            raise InvalidRequestError("a kit's envelope is drawn for an instrument: choose a Sound "
                                      "(or a prompt that names one), or use shape free")
        length_ms = 1000.0 * (request.length or entry.manifest["length"] / entry.manifest["sample_rate"])
        prompt, words = None, ()
        if request.prompt is not None:  # the hit is drawn among those whose description matches the prompt
            prompt = (self.embedder(str(entry.folder)), self.prompt_embedding(request, str(entry.folder)))
            # the words of the prompt the morph lies nearer: "long kick" draws no kit hit captioned short
            words = asked_descriptors(request.prompt_b if request.prompt_b and request.prompt_morph > 0.5
                                      else request.prompt)
        return envelopes.kit_curves(entry.folder, entry.manifest, request.label, request.seed,
                                    max(request.count, request.rerank), length_ms, prompt, words)

    @torch.no_grad()
    def _sample(self, model: LoadedModel, request: GenerationRequest, conditions: Conditions,
                preview_every: int, preview_after_s: float, events: queue.Queue,
                stop: threading.Event) -> list[Sound]:
        began = time.monotonic()
        if stop.is_set():  # the caller gave up while this waited for the worker
            raise Cancelled("generation cancelled")
        manifest, codec = model.manifest, model.codec
        samples, frames, full_frames = latent_plan(model, request.length)
        shape = (codec.latent_channels, full_frames)
        # noise is drawn at the longest length and cut: one seed at a shorter length is the same sound's start
        keep = request.count
        request = request.with_(count=max(request.count, request.rerank))  # the candidates
        seeds_b = None if request.seed_b is None else [request.seed_b + i for i in range(request.count)]
        draws = SeedNoise([request.seed + i for i in range(request.count)], shape, seeds_b, request.morph, frames,
                          model.device)  # the starting noises, then the steps' noises of a stochastic sampler
        noises = draws()
        sampler, steps = request.sampler, request.steps
        reference, strength = None, 1.0
        # the codec's loudness envelope (waveform models): drawn from the starting noise, or the reference's own
        envelope = pipeline.envelope_for(model, conditions, noises, draws)
        detail = pipeline.detail_for(model, conditions, draws, request.count)  # the dealt clips' flutter and tone
        # "more like this" under strength 1 starts from its reference noised, as the noise variation does
        if request.reference and (request.variation != "semantic" or request.strength < 1.0):
            reference, reference_envelope = self._reference_latent(model, request.reference, request.count, samples,
                                                                   frames, conditions)
            if reference_envelope is not None:  # the reference's own envelope: no dealt clip's flutter or tone
                envelope, detail = reference_envelope, None
            elif detail is not None and (detail.spectrum is not None or detail.tail is not None):
                # nor a dealt clip's colour or tail over the reference's
                detail = None
            if request.variation == "invert":
                sampler = INVERSION_SAMPLER[manifest.get("objective", "v_cosine")]
                label_only = pipeline.inputs_for(model, Conditions(label=conditions.label), request.count, frames)
                inverted = invert_latent(model.network, manifest, reference, steps=steps, cond=label_only)
                noises = torch.stack([slerp(inverted[i], noises[i], request.strength) for i in range(request.count)])
                reference = None
            else:
                strength = request.strength

        def callback(info: dict) -> None:
            if stop.is_set():
                raise Cancelled("generation cancelled")
            step = int(info["i"]) + 1
            preview = None
            if preview_every and step % preview_every == 0 and time.monotonic() - began >= preview_after_s:
                first = None if envelope is None else envelope[:1]
                preview = pipeline.decode(model, info["denoised"][:1], first, samples, conditions,
                                          request.soft_hits, request.width,
                                          None if detail is None else detail[:1])[0].clamp(-1, 1)
            events.put(Progress(step, steps, preview, manifest["sample_rate"]))

        # a variation that keeps its reference's shape (noise, invert) keeps its second hits too
        hold = request.one_hit and (not request.reference or request.variation == "semantic")
        settings = dict(sampler=sampler, steps=steps, guidance=request.guidance,
                        control_guidance=request.control_guidance or 1.0, variety=request.variety or 0.0,
                        steer_loudness=request.steer_loudness, soft_hits=request.soft_hits,
                        steer_onsets=request.steer_onsets, one_hit=hold,
                        kit_bands=request.kit_bands or 0.0)
        latent = pipeline.sample(model, noises, conditions, reference=reference, strength=strength, callback=callback,
                                 step_noise=draws, **settings)

        def cancellable(info: dict) -> None:  # a redraw's steps: the bar stays full, Stop still stops it
            if stop.is_set():
                raise Cancelled("generation cancelled")

        # a sound left near-silent is drawn again from another seed, which its recipe records
        floor = pipeline.quiet_floor(model, conditions) if hold else None
        latent, made_seeds, made_seeds_b = pipeline.redraw_quiet(
            model, latent, draws, floor,
            lambda again: pipeline.sample(model, again(), conditions, callback=cancellable, step_noise=again, **settings))
        if detail is not None and made_seeds != list(draws.seeds):  # a sound drawn again is its new seed's
            detail = pipeline.detail_for(model, conditions, draws.with_seeds(made_seeds, made_seeds_b), request.count)
        audio = pipeline.decode(model, latent, envelope, samples, conditions, request.soft_hits, request.width, detail)
        audio = onto_curve(audio, conditions.rms, manifest["sample_rate"], request.match_loudness,
                           request.steer_loudness and steerable(codec),
                           conditions.onsets, request.steer_onsets and steerable(codec))
        audio = finish(audio, manifest["sample_rate"], tail_fade_ms(manifest, request.length))
        base = request.to_recipe()
        base.update(sampler=sampler, checkpoint=model.checkpoint_id, model_folder=model.folder.name,
                    sample_rate=manifest["sample_rate"], engine=ENGINE_VERSION)
        if manifest.get("variant_of"):  # a Sound's variant (engine.variants): whose, for the user's bearings
            base["variant_of"] = manifest["variant_of"].get("model")
        spread = pipeline.guidance_spec(model, conditions)
        if spread:  # the model's own setting for this sound, recorded for whoever replays it
            base["guidance_weights"] = spread
        held = pipeline.one_hit_limit(model, conditions) if hold else None
        if held is not None:  # the same: how far it was let rise again after its peak
            base["one_hit_db"] = held
        if floor is not None:  # and under what level it would have been drawn again
            base["redraw_under_db"] = floor
        scores = [None] * request.count
        if conditions.prompt is not None:  # how close each sound came to what was asked (and the re-ranking)
            embedder = self.embedder(request.model)
            base["embedder"] = embedder.id
            heard = embedder.audio(audio, manifest["sample_rate"])
            scores = [round(float(s), 4) for s in heard @ conditions.prompt.float().cpu()]
        order = list(range(request.count))
        if request.rerank:
            order = sorted(order, key=lambda i: -scores[i])[:keep]
        sounds = []
        for i in order:
            recipe = dict(base, seed=made_seeds[i], count=1, rerank=0,
                          seed_b=None if made_seeds_b is None else made_seeds_b[i])
            if made_seeds[i] != request.seed + i:  # drawn again: the seed asked for, for the user's bearings
                recipe["redrawn_from_seed"] = request.seed + i
            if scores[i] is not None:  # what it scored (not a setting: a recipe replays it without re-ranking)
                recipe["score"] = scores[i]
            sounds.append(Sound(audio[i], manifest["sample_rate"], recipe, scores[i]))
        return sounds


def kit_bands(manifest: dict, request: GenerationRequest, conditions: Conditions) -> float:
    """How far a sound is steered onto the band shares of the clip its seed deals
    (:func:`engine.band_shares.strength_for`); 0 for a variation of a reference, which keeps the
    reference's own spectrum."""
    return 0.0 if request.reference else band_shares.strength_for(manifest, request.label, request.kit_bands,
                                                                  conditions)


class _ShiftedProgress:
    """An event queue's ``put`` for one sound of several: its steps counted after the sounds before."""

    def __init__(self, events: queue.Queue, offset: int, total: int):
        self.events, self.offset, self.total = events, offset, total

    def put(self, event) -> None:
        if isinstance(event, Progress):
            event = Progress(self.offset + event.step, self.total, event.preview, event.sample_rate)
        self.events.put(event)


def reference_sound(manifest: dict, path: str, samples: int, silent_why: str) -> torch.Tensor:
    """A reference sound at the model's rate and channels, its onset at the start, cut or padded to
    ``samples``, turned down to full scale when it goes over it (:func:`engine.audio.within_full_scale`);
    InvalidRequestError when it is silent (``silent_why`` says what that prevents)."""
    sound, _ = audio_io.read_audio(path, sample_rate=manifest["sample_rate"], channels=manifest["channels"],
                                   max_seconds=30.0)
    sound = audio_io.fit_length(audio_io.within_full_scale(audio_io.align_onset(sound, manifest["sample_rate"])),
                                samples)
    if float(sound.abs().max()) < 1e-4:
        raise InvalidRequestError(f"the reference {Path(path).name} is silent: {silent_why}")
    return sound


def _who_does(names) -> str:
    """"; a does" / "; a or b do" / "" for the models that do what another does not."""
    names = sorted(names)
    if not names:
        return ""
    return f"; {names[0]} does" if len(names) == 1 else f"; {', '.join(names[:-1])} or {names[-1]} do"


def prompt_label(request: GenerationRequest, entry: ModelEntry) -> str | None:
    """The label a prompted request gets when none was chosen: the one category its prompt names
    by an instrument word (``engine.data.captions.named_category``; both prompts must name the same
    one when morphing), if the model takes prompts and has that label; else None."""
    if request.label or entry.label or request.prompt is None or not takes_prompts(entry.manifest):
        return None
    from .data.captions import named_category
    named = named_category(request.prompt, entry.labels)
    if request.prompt_b is not None and named_category(request.prompt_b, entry.labels) != named:
        return None
    return named


def model_controls(manifest: dict) -> list[str]:
    """The control curves a model follows ("rms", "onsets"), from its declared conditions."""
    return spec_names(condition_specs(manifest), CURVE)


def variable_length(manifest: dict) -> bool:
    """Latent models are fully convolutional and make any length up to their training clips';
    waveform models make exactly their manifest's ``length``."""
    return manifest.get("kind") == "latent"


LENGTH_SLACK_S = 0.01  # a length this far over the longest is read as the longest (rounded seconds)


def resolve_length(manifest: dict, length: float | None) -> float | None:
    """The length (seconds) a request gets, or an InvalidRequestError saying what is allowed.

    Latent models: ``None`` means ``defaults.length`` or else the longest (the manifest's length);
    anything in (0, longest] is allowed, and up to 10 ms over is read as the longest ("2 s" on a
    model of 1.997 s). Waveform models are fixed-length: ``None`` (or their own
    length, to 1 ms) is accepted and recorded as ``None``; any other length is refused.
    """
    rate = manifest["sample_rate"]
    longest = manifest["length"] / rate
    if not variable_length(manifest):
        if length is not None and abs(length - longest) > 1e-3:
            raise InvalidRequestError(f"this model makes sounds of exactly {longest:.3f} s; "
                                      "leave the length empty (only latent models take a length)")
        return None
    if length is None:
        return float(manifest.get("defaults", {}).get("length", longest))
    if length > longest + LENGTH_SLACK_S:
        raise InvalidRequestError(f"length must be at most {longest:.2f} s for this model, "
                                  f"got {length:g} s")
    length = min(length, longest)  # "2 s" on a model of 88064 samples (1.997 s) is all it makes
    if length * rate < 1:
        raise InvalidRequestError(f"length {length:g} s is shorter than one sample")
    return float(length)


def latent_plan(model: LoadedModel, seconds: float | None) -> tuple[int, int, int]:
    """(audio samples, latent frames, frames at the longest length) for a generation.

    Frames are rounded up to a multiple of the network's hop (its down-sampling); the decoded
    audio is cut back to ``samples``.
    """
    manifest, codec = model.manifest, model.codec
    if seconds is None or not variable_length(manifest):
        frames = codec.latent_length(manifest["length"])
        return manifest["length"], frames, frames
    hop = getattr(model.network, "hop", 1)
    round_up = lambda n: -(-n // hop) * hop  # noqa: E731
    samples = max(1, int(round(seconds * manifest["sample_rate"])))
    return samples, round_up(codec.latent_length(samples)), round_up(codec.latent_length(manifest["length"]))


TAIL_FADE_SHARE = 0.2    # a variable-length sound fades out over its last fifth...
TAIL_FADE_MAX_MS = 250.0  # ...at most this long


def tail_fade_ms(manifest: dict, length: float | None) -> float:
    """How long the end of a sound fades out. A waveform model's sounds have decayed by their
    fixed end, and 5 ms only removes the click. A latent model makes any length, and a cymbal cut
    at 1.5 s still rings at about -38 dB RMS, so it stopped dead where a real crash rings on: its
    last fifth (up to 250 ms) fades out, as a sampler's release would."""
    if not variable_length(manifest) or not length:
        return 5.0
    return max(5.0, min(TAIL_FADE_MAX_MS, TAIL_FADE_SHARE * 1000.0 * float(length)))


def fixed_steps(entry: ModelEntry, request: GenerationRequest) -> tuple[GenerationRequest, list[str]]:
    """A step-distilled model makes its sound on its own grid (``sampling.distilled_grid``): a
    request for other steps or another sampler (a preset or a recipe made when a Sound name meant
    its teacher, a ``--steps`` typed out of habit) gets the model's own, and a note that says so.
    The recipe records what was used; ``sample_latent`` itself still refuses the mismatch."""
    grid = distilled_grid(entry.manifest)
    if grid is None or (request.sampler, request.steps) == ("ddim", len(grid) - 1):
        return request, []
    teacher = distilled_from(entry.manifest) or "its teacher"
    note = (f"{entry.folder.name} makes its sound in {len(grid) - 1} ddim steps (step-distilled), so it used those "
            f"instead of {request.steps} {request.sampler} steps; {teacher} takes any")
    return request.with_(sampler="ddim", steps=len(grid) - 1), [note]


def onto_curve(audio: torch.Tensor, rms, sample_rate: int, match: bool, steered: bool,
               onsets: Sequence[float] | None = None, hits_made: bool = False) -> torch.Tensor:
    """Decoded sounds ``(B, C, N)`` made for a loudness curve ``rms``, as the studio finishes them:
    with ``match`` the envelope shaper puts each on the curve, following it quickly around the
    drawn ``onsets`` (ms) and, when the hit steering made them (``hits_made``), leaving each made
    hit's dip and attack alone and a roll's hits their own decay (``engine.steering.hit_frames``,
    ``roll_segments``); when it was shaped or ``steered`` (:mod:`engine.steering`) onto a loud
    curve, an attack may pass full scale, so the limiter turns down those peaks rather than
    :func:`finish` turning down the whole sound."""
    if not rms or not (match or steered):
        return audio
    if match:
        frames = dsp.frame_count(audio.shape[-1], dsp.SHAPER_HOP)
        made = onsets if hits_made else None
        hold = hit_frames(made, rms, frames, dsp.SHAPER_HOP, sample_rate)
        segments = roll_segments(made, rms, frames, dsp.SHAPER_HOP, sample_rate)
        audio = torch.stack([dsp.match_loudness(sound, rms, sample_rate, hold=hold, segments=segments, onsets=onsets)
                             for sound in audio])
    return torch.stack([audio_io.limit_peaks(sound, sample_rate) for sound in audio])


def finish(audio: torch.Tensor, sample_rate: int, fade_ms: float = 5.0) -> torch.Tensor:
    """Make decoded audio safe to play and export: finite, no clipping, no click at the cut.

    NaN/Inf (a broken checkpoint) become an error rather than a burst of noise; a sound whose
    peak exceeds full scale is scaled down, never clipped.
    """
    if not torch.isfinite(audio).all():
        raise StudioError("the model produced NaN/Inf samples; the checkpoint may be corrupt")
    peak = audio.abs().amax(dim=(-2, -1), keepdim=True)
    audio = audio * torch.where(peak > 0.999, 0.999 / peak, torch.ones_like(peak))
    fade = int(sample_rate * fade_ms / 1000)
    return torch.stack([audio_io.fade_out(sound, fade) for sound in audio])
