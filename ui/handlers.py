"""What every button does: plain methods that check their input, make one engine call, and
return the new values of the controls they change.

Each method's parameter names are the names of the controls it reads (``ui/app.py`` wires the
inputs from those names, so the UI and the handlers can never disagree about the order), and
each returns (or, for generation, yields) a dict ``{control name: new value}`` holding only
what changed. They run without a browser: the unit tests call them directly. A user's mistake
(a bad file, a value out of range, an unknown model) becomes ``gr.Error`` with the engine's
message; anything unexpected is logged with its traceback and shown as a short error, so
nothing a user sends can take the server down.
"""

from __future__ import annotations

import functools
import inspect
import logging
import math
import os
import random
import re
import time
from pathlib import Path
from typing import Any, Iterator

import gradio as gr

from engine import AudioFileError, GenerationRequest, Progress, Result, Studio, StudioError
from engine import audio as audio_io
from engine.curves import format_onsets, format_rms, parse_onsets, parse_rms
from engine.request import MADE_BEFORE, VARIATION_STRENGTH, asks_prompt, recorded_strength
from engine.sampling import LABEL_DEFAULT_KEYS, MODEL_SETTING_KEYS, label_defaults
from engine.studio import engine_changes_since

from . import presets
from .fields import check_number
from .history import Session
from .plots import sound_figure
from .settings import Settings

log = logging.getLogger(__name__)

SLOTS = 8                        # result cards on the page = the most sounds per click
ANY_LABEL = "(any)"              # label choice meaning "unconditional"
NO_BLEND = "(none)"              # "Blend with" choice meaning "no hybrid"
MAX_UI_SEED = 2**53 - 1 - 64     # a browser number holds integers exactly only up to 2**53
ROLL_SEED_MAX = 2**31 - 1        # rolled seeds stay short enough to read and type
PREVIEW_INTERVAL_S = 0.6         # at most this often a preview plot is drawn while sampling
STATUS_INTERVAL_S = 0.25        # at most this often the progress bar moves (each update re-renders the page)
STOP_WAIT_S = 1.5               # Stop's answer waits this long for the generation to say it stopped
STOPPED = "stopped: the sound was not finished, so nothing was kept"
QUIET_START_S = 0.7             # a render of a loaded model sends no update before this: a quick one, none at all
                                # (0.4 until session 13: on a slower 2-core CPU a one-shot took 0.45-0.6 s in the
                                # server, and the update at 0.4 s repainted the page while it finished)
PREVIEW_DPI = 64                 # previews are drawn small: drawing competes with sampling for the CPU
REFERENCE_MAX_S = 30.0
FORMATS = {"PCM_24": "24-bit PCM", "FLOAT": "32-bit float"}
EXAMPLE_PROMPTS = [["short punchy 808 kick"], ["dark roomy snare"], ["bright tight closed hi-hat"],
                   ["long crash cymbal"], ["low boomy tom"], ["electronic clap"]]


LENGTH_STEP_S = 0.01             # the length slider's step


def length_maximum(seconds: float) -> float:
    """The length slider's end: the model's longest rounded up to the slider's step (1.997 s -> 2.00),
    which the engine reads as the longest (``LENGTH_SLACK_S``), so dragging to the end or loading
    a preset saying 2 s is never refused."""
    return math.ceil(round(seconds / LENGTH_STEP_S, 6)) * LENGTH_STEP_S


def fixed_steps_info(fixed: int) -> str:
    """The Steps slider's note for a model that makes its sound in ``fixed`` steps."""
    return f"fixed: this model makes its sound in {fixed} steps"


def steps_update(info: dict, value: int | None = None) -> dict:
    """The Steps slider for a model: fixed (greyed, at the model's count) for a step-distilled
    model, which makes its sound on its own grid of that many steps; free otherwise."""
    fixed = info.get("steps_fixed")
    if fixed is not None:
        return gr.update(value=int(fixed), interactive=False, info=fixed_steps_info(fixed))
    # info "": an update's None is read as "leave it", so the 3-step note would stay on a model
    # whose steps are free (seen on the page, session 18)
    return gr.update(interactive=True, info="") if value is None else \
        gr.update(value=int(value), interactive=True, info="")


def slot_key(index: int, part: str) -> str:
    """Name of one part of a result card: group, audio, plot, file, caption."""
    return f"slot{index}_{part}"


def user_facing(fn):
    """Turn engine errors into gr.Error with their message, and bugs into a short logged error."""

    def translate(error: Exception) -> Exception:
        if isinstance(error, gr.Error):
            return error
        if isinstance(error, StudioError):
            return gr.Error(_short_paths(str(error)), print_exception=False)
        log.exception("unexpected error in %s", fn.__name__)
        return gr.Error(f"Something went wrong in {fn.__name__}: {type(error).__name__}: {error}. "
                        "The server is still running; the details are in its log.")

    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def stream(*args, **kwargs):
            try:
                yield from fn(*args, **kwargs)
            except GeneratorExit:
                raise
            except Exception as error:  # noqa: BLE001 - every failure must reach the user as a message
                raise translate(error) from error
        return stream

    @functools.wraps(fn)
    def call(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except Exception as error:  # noqa: BLE001
            raise translate(error) from error
    return call


def _short_paths(message: str) -> str:
    """Upload paths (gradio's temp folder + a hash folder) mean nothing to a user: keep the file name."""
    upload_dir = os.environ.get("GRADIO_TEMP_DIR")
    if upload_dir:
        message = re.sub(re.escape(str(Path(upload_dir).resolve())) + r"/[^/\s'\"]+/", "", message)
        message = re.sub(re.escape(upload_dir) + r"/[^/\s'\"]+/", "", message)
    return message


# ------------------------------------------------------------------ small checks

def _number(value: Any, name: str, integer: bool = False, optional: bool = False) -> float | int | None:
    """``value`` as a number, refused with a message naming ``name``; an empty optional one is None."""
    if optional and (value is None or (isinstance(value, str) and not value.strip())):
        return None
    return check_number(value, name, integer=integer)


def _seed(value: Any, name: str, optional: bool = False) -> int | None:
    seed = _number(value, name, integer=True, optional=optional)
    if seed is not None and not 0 <= seed <= MAX_UI_SEED:
        raise gr.Error(f"{name} must be between 0 and {MAX_UI_SEED}, got {seed}")
    return seed


def roll() -> int:
    return random.SystemRandom().randint(0, ROLL_SEED_MAX)


def _blend(label: str | None, label_b, label_mix) -> dict:
    """``label_b`` / ``label_mix`` of a request from the "Blend with" controls: none unless a
    second Sound is chosen and mixed in; a blend needs a first Sound to blend into."""
    label_b = None if label_b in (None, "", NO_BLEND) else str(label_b)
    if label_b is None or label_b == label:
        return {"label_b": None, "label_mix": 0.0}
    if label is None:
        raise gr.Error(f"a blend mixes {label_b} into a first Sound: choose the Sound too (not {ANY_LABEL})")
    mix = check_number(label_mix, "blend", 0.0, 1.0) if label_mix is not None else 0.0
    return {"label_b": label_b, "label_mix": mix} if mix else {"label_b": None, "label_mix": 0.0}


def _label_value(label: str | None) -> str | None:
    return None if label in (None, "", ANY_LABEL) else label


SAMPLING_FIELDS = tuple(key for key in LABEL_DEFAULT_KEYS if key not in ("shape", *MODEL_SETTING_KEYS))
"""The fields a model may default differently per Sound (named as the manifest's defaults). The
Shape field is not one: its "Sound's default" choice leaves the shape to each Sound; nor are the
model's own settings (:data:`engine.sampling.MODEL_SETTING_KEYS`: the guidance weights, the kit hit's
description and spread, the one-hit limit and the redraw level), which it applies to each sound itself."""
AUTO_SHAPE = "auto"
SHAPE_CHOICES = [("Sound's default", AUTO_SHAPE), ("The model's own", "free"), ("A real kit's hit", "kit")]


def _shape_value(shape: str | None) -> str | None:
    """The request's shape for the Shape field: None (the Sound's default) for its first choice."""
    return None if shape in (None, "", AUTO_SHAPE) else shape


def _follow_label(info: dict, label: str | None, fields: dict, rms=None, prompt: bool = False) -> dict:
    """Of the sampling ``fields`` (:data:`SAMPLING_FIELDS`), those the user left at a
    default of the model (for any of its Sounds, or none, with a loudness curve or without, with a
    prompt or without), with ``label``'s default (its default with a curve when the editor's ``rms``
    box holds one, on a model that takes curves; with a prompt when ``prompt``, on a model that
    takes prompts) in their place."""
    curves = bool(info.get("controls")) and bool(str(rms or "").strip())
    prompt = bool(info.get("prompts")) and prompt
    chosen = label_defaults(info["defaults"], label, curves, prompt)
    every = [label_defaults(info["defaults"], name, drawn, asked) for name in (None, *info["labels"])
             for drawn in (False, True) for asked in (False, True)]
    return {key: chosen[key] for key, value in fields.items()
            if key in chosen and (value is None or any(_same_setting(value, d.get(key)) for d in every))}


def _same_setting(value, default) -> bool:
    """Whether a field's value is ``default`` (numbers as the sliders round them)."""
    if isinstance(value, (int, float)) and isinstance(default, (int, float)):
        return abs(float(value) - float(default)) < 1e-6
    return value == default


def card_visibility(shown: int | None, count: int) -> dict:
    """The row and card updates that take the page from ``shown`` visible result cards (None: not
    known, as on a page just loaded) to ``count``, for those whose visibility changes only. A
    container's visibility update makes Gradio's page read back every component inside it (their
    props cloned, plot images included): re-sending unchanged ones cost a click of 8 sounds
    ~0.3 s of the browser's time on the 2-core CPU (issue 18)."""
    out = {}
    for i in range(SLOTS):
        if shown is None or (i < shown) != (i < count):
            out[slot_key(i, "group")] = gr.update(visible=i < count)
    for row in range(SLOTS // 2):
        if shown is None or (2 * row < shown) != (2 * row < count):
            out[f"row{row}"] = gr.update(visible=2 * row < count)
    return out


def status_html(text: str, step: int | None = None, total: int | None = None) -> str:
    bar = f'<progress value="{step}" max="{total}"></progress>' if total else ""
    return f'<div class="tds-status">{bar}<span>{text}</span></div>'


def _loudness_note(name: str, report: dict) -> str:
    """What a normalised export reached, per file: a ceiling or a silent take can keep it off target."""
    if not math.isfinite(report["lufs"]):
        return f"{name}: silent, left as it was"
    limited = f", peaks limited by {report['limited_db']:.1f} dB" if report["limited_db"] >= 0.1 else ""
    return f"{name}: {report['lufs']:.1f} LUFS, true peak {report['peak_db']:.1f} dBFS{limited}"


def _is_alias(entry) -> bool:
    """``kick``: another name for one model (``drums``) with its Sound preset."""
    return entry.label is not None and entry.name != entry.folder.name


def _model_display(entry) -> str:
    if _is_alias(entry):
        return f"{entry.name} (= {entry.folder.name}, Sound {entry.label})"
    variant = entry.manifest.get("variant_of")  # a Sound's variant (engine.variants): made for that Sound
    return f"{entry.name} ({variant.get('model')}'s {variant.get('label')} variant)" if variant else entry.name


def _card_caption(take) -> str:
    return ("★ " if take.favourite else "") + take.caption()


def _path_of(upload: Any) -> str | None:
    """A gr.File / gr.Audio(type="filepath") value, or a client's FileData dict, as a path."""
    if upload is None:
        return None
    if isinstance(upload, dict):
        upload = upload.get("path") or upload.get("name")
    if hasattr(upload, "path"):
        upload = upload.path
    return str(upload) if upload else None


def _curve_guidance_update(info: dict, value: float | None = None) -> dict:
    """The "Follow the curves" slider for a model (``Studio.describe``): hidden for one that follows
    curves by steering alone (there is no curve guidance to set); ``value`` set when given."""
    return gr.update(visible=not info.get("steered_only"), **({} if value is None else {"value": value}))


def _timbre_update(info: dict, value: float | None = None) -> dict:
    """The "Real-hit timbre" slider for a model: shown where it has band shares (``python -m engine
    bands``); ``value`` set when given."""
    return gr.update(visible=bool(info.get("band_shares")), **({} if value is None else {"value": value}))


def _steer_update(info: dict, value: bool | None = None) -> dict:
    """The "steer onto the curve" switch for a model: shown where steering is a choice; for a model
    that follows curves by steering alone, hidden and on (off, it would not follow them at all: a
    hidden switch left off by another model would silently drop the curve); ``value`` set when given."""
    if info.get("steered_only"):
        return gr.update(visible=False, value=True)
    return gr.update(visible=bool(info.get("steers_loudness")), **({} if value is None else {"value": value}))


class Handlers:
    """The UI's actions over one shared :class:`Studio`; all per-user data lives in the Session state."""

    def __init__(self, studio: Studio, settings: Settings):
        self.studio = studio
        self.settings = settings

    def warm_up(self) -> None:
        """Server start: load the default model and render one short sound nobody hears, so the
        first click pays neither the loading nor the first-call costs of the kernels (issue 18).
        Runs in the background; a failure is logged, never raised (the first click says it).
        Then the text tower of every model that takes prompts (about 3 s to load on a laptop CPU,
        once for all the models that share it): a first prompt, or a percussion hit that takes its
        kit hit's description (``hit_prompt``), would otherwise wait for it."""
        model = self.default_model()
        if not model:
            return
        try:
            started = time.perf_counter()
            self.studio.render(GenerationRequest(model=model, steps=2, seed=0))
            log.info("warmed up %s in %.2f s", model, time.perf_counter() - started)
        except Exception:  # noqa: BLE001 - a broken model must not stop the server
            log.exception("warming up %s failed", model)
        for name in self.model_names():
            try:
                if self.studio.describe(name).get("prompts"):
                    self.studio.embedder(name).text(["a kick"])
            except Exception:  # noqa: BLE001 - the model's own first use reports it
                log.exception("warming up the text tower of %s failed", name)

    # ------------------------------------------------------------------ session
    def new_session(self) -> Session:
        return Session.create(self.settings.sounds_dir, self.settings.max_history)

    def resume_session(self, session_key) -> dict:
        """Page load: the takes and favourites this browser made before (a reload, a restart)."""
        session = Session.resume(self.settings.sounds_dir, session_key, self.settings.max_history)
        return {"session": session, "session_key": session.key, "history": session.table(),
                "take": gr.update(choices=session.choices())}

    def _session(self, session: Session | None) -> Session:
        if not isinstance(session, Session) or not session.folder.is_dir():
            session = self.new_session()
        return session

    # ------------------------------------------------------------------ models
    def model_names(self) -> list[str]:
        return sorted(self.studio.models(), key=lambda n: (n != "drums" and "/" in n, n))

    def model_choices(self) -> list[tuple[str, str]]:
        """(what the list shows, the model name): an alias says what it is, one model with a preset Sound."""
        entries = self.studio.models()
        return [(_model_display(entries[name]), name) for name in self.model_names()]

    def default_model(self) -> str | None:
        names = self.model_names()
        return "kick" if "kick" in names else (names[0] if names else None)

    def _model_controls(self, model: str, label: str | None = None, sampler: str | None = None,
                        label_b: str | None = None) -> dict:
        """Label, sampler and guidance controls that fit ``model`` (values kept when they fit)."""
        info = self.studio.describe(model)
        labels = info["labels"]
        label_value = label if label in labels else (info["label"] or ANY_LABEL)
        defaults = label_defaults(info["defaults"], _label_value(label_value))
        samplers = info["samplers"]
        sampler_value = sampler if sampler in samplers else defaults.get("sampler", samplers[0])
        trained = f" · trained {info['training_steps']:,} steps" if info.get("training_steps") else ""
        entry = self.studio.entry(model)
        alias = (f"the **{entry.folder.name}** model with Sound {entry.label} · " if _is_alias(entry) else "")
        follows = {("rms",): " · follows a loudness curve", ("rms", "onsets"): " · follows a loudness curve and onsets"}
        text = (f"**{info['name']}** · {alias}{info['kind']} · {info['seconds']:.2f} s at {info['sample_rate'] / 1000:g} kHz"
                f"{trained}" + (f" · labels: {', '.join(labels)}" if labels else "")
                + follows.get(tuple(info.get("controls") or ()), "")
                + (" by steering (never trained on them)" if info.get("steered_only") else "")
                + (" · takes text prompts" if info.get("prompts") else "")
                # the faster twin says whose sound it learned, so a user knows what it trades
                + (f" · distilled from {info['distilled_from']} (fewer network calls)" if info.get("distilled_from") else ""))
        return {
            "label": gr.update(choices=[ANY_LABEL, *labels], value=label_value if labels else ANY_LABEL,
                               visible=bool(labels)),
            "label_b": gr.update(choices=[NO_BLEND, *labels], value=label_b if label_b in labels else NO_BLEND),
            "blend_row": gr.update(visible=bool(labels)),
            "sampler": gr.update(choices=samplers, value=sampler_value),
            "steps": steps_update(info),
            "guidance": gr.update(visible=bool(info["takes_guidance"]), maximum=info["guidance_max"]),
            "variety": gr.update(visible=bool(info["takes_guidance"])),
            "length": gr.update(visible=bool(info.get("variable_length")), maximum=length_maximum(info["seconds"])),
            "controls_box": gr.update(visible=bool(info.get("controls"))),
            "control_guidance": _curve_guidance_update(info),
            "steer_loudness": _steer_update(info),
            "soft_hits": gr.update(visible=bool(info.get("lifts_quiet_curves"))),
            "steer_onsets": gr.update(visible=bool(info.get("steers_onsets"))),
            "one_hit": gr.update(visible=bool(info.get("holds_one_hit"))),
            "prompt_box": gr.update(visible=bool(info.get("prompts"))),
            "shape": gr.update(visible=bool(info.get("kit_envelopes"))),
            "kit_bands": _timbre_update(info),
            "model_info": text,
        }

    def label_defaults(self, model, label, sampler=None, steps=None, guidance=None, variety=None,
                       control_guidance=None, prompt=None, prompt_b=None, rms=None, width=None,
                       kit_bands=None) -> dict:
        """The user picked a Sound (or typed a prompt that names one, with no Sound picked), or drew
        or cleared a loudness curve: the :data:`SAMPLING_FIELDS` move to the model's defaults for it
        (a model may sample kicks differently from snares, and a kick with a curve differently from
        one without, ``engine.sampling.label_defaults``). A field the user set to something no
        Sound of the model defaults to keeps its value: their choice."""
        if not model:
            return {}
        info = self.studio.describe(str(model))
        label = _label_value(label) or self._routed_label(str(model), prompt, prompt_b)
        out = _follow_label(info, label, dict(zip(SAMPLING_FIELDS, (sampler, steps, guidance, variety,
                                                                    control_guidance, width, kit_bands))), rms,
                            prompt=bool(str(prompt or "").strip()))
        # one line a change: which answer landed when (a browser test's failure report shows it)
        log.info("sampling fields for %s %s: %s", model, label or ANY_LABEL,
                 ", ".join(f"{key} {value}" for key, value in out.items()) or "unchanged")
        if "steps" in out:
            out["steps"] = steps_update(info, int(out["steps"]))
        return out

    def _routed_label(self, model: str, prompt, prompt_b) -> str | None:
        """The Sound a prompt names on ``model`` (``engine.studio.prompt_label``), or None."""
        if not prompt or not str(prompt).strip() or not self.studio.describe(model).get("prompts"):
            return None
        return self.studio.routed_label(model, str(prompt).strip(), (prompt_b or "").strip() or None)

    @user_facing
    def describe_model(self, model: str) -> dict:
        """The user picked a model: its labels, samplers and default steps/guidance."""
        if not model:
            raise gr.Error("choose a model")
        info = self.studio.describe(model)
        defaults = label_defaults(info["defaults"], info["label"])
        out = self._model_controls(model)
        out["steps"] = steps_update(info, int(defaults.get("steps", 16)))
        out["guidance"] = gr.update(visible=bool(info["takes_guidance"]), maximum=info["guidance_max"],
                                    value=float(defaults.get("guidance", 1.0)))
        out["variety"] = gr.update(visible=bool(info["takes_guidance"]), value=defaults["variety"])
        out["length"] = gr.update(visible=bool(info.get("variable_length")), maximum=length_maximum(info["seconds"]),
                                  value=round(float(defaults.get("length", info["seconds"])), 3))
        out["control_guidance"] = _curve_guidance_update(info, float(defaults.get("control_guidance", 1.0)))
        out["width"] = float(defaults.get("width", 1.0))
        out["kit_bands"] = _timbre_update(info, float(defaults.get("kit_bands", 0.0)))
        return out

    @user_facing
    def add_model_folder(self, model_folder: str, model: str) -> dict:
        if self.settings.remote:
            raise gr.Error("adding model folders is switched off while the studio is shared; restart it "
                           "with --models-root FOLDER instead")
        folder = Path(str(model_folder or "").strip()).expanduser()
        if not str(model_folder or "").strip():
            raise gr.Error("type the path of a model folder (or of a folder of model folders) first")
        before = set(self.studio.models())
        self.studio.add_root(folder)
        added = sorted(set(self.studio.models()) - before)
        if not added:
            gr.Warning(f"{folder} holds no new model folder (a model folder has a manifest.json)")
        else:
            gr.Info(f"added {', '.join(added)}")
        return {"model": gr.update(choices=self.model_choices(), value=added[0] if added else model),
                "model_folder": ""}

    @user_facing
    def refresh(self, model: str) -> dict:
        """Page load: fresh model and preset lists (training or another tab may have added some).
        The fields are left as the page built them unless the model they show is gone: a model
        picked while this answer was on its way must not be put back (CI, session 49: the page's
        default model came back over a pick of latent-fast, whose hats were then made by another)."""
        choices = self.model_choices()
        fallback = None if model in [name for _, name in choices] else self.default_model()
        out = {"model": gr.update(choices=choices, **({"value": fallback} if fallback else {})),
               "preset": gr.update(choices=presets.list_presets(self.settings.presets_dir))}
        if fallback:
            out.update(self._model_controls(fallback))
        return out

    # ------------------------------------------------------------------ seeds
    def roll_seed(self) -> dict:
        return {"seed": roll()}

    def roll_seed_b(self) -> dict:
        return {"seed_b": str(roll())}

    # ------------------------------------------------------------------ generation
    def _length(self, model: str, length) -> float | None:
        """The length slider counts only for models that make any length (latent ones)."""
        if not self.studio.describe(model).get("variable_length"):
            return None
        return _number(length, "length", optional=True)

    def _curves(self, model: str, rms, onsets, control_guidance, match_loudness=True,
                steer_loudness=True, soft_hits=False, steer_onsets=True) -> dict:
        """The drawn curves as request fields, for a model that follows curves (else none: the
        editor is hidden and its text may belong to another model)."""
        takes = self.studio.describe(model).get("controls") or []
        if not takes:
            return {}
        curves = {"rms": parse_rms(rms), "onsets": parse_onsets(onsets)}
        if curves["onsets"] and "onsets" not in takes:  # the waveform model follows loudness, not hits
            placing = self.studio.models_following("onsets")
            gr.Warning(f"{model} follows the loudness curve but not onsets; the onsets were left out"
                       + (f" ({', '.join(placing)} {'places' if len(placing) == 1 else 'place'} hits)" if placing else ""))
            curves["onsets"] = None
        if curves["rms"] or curves["onsets"]:
            curves["control_guidance"] = _number(control_guidance, "curve guidance", optional=True)
            curves["match_loudness"] = bool(match_loudness)
            curves["steer_loudness"] = bool(steer_loudness)
            curves["soft_hits"] = bool(soft_hits)
            curves["steer_onsets"] = bool(steer_onsets)
        return curves

    def _prompts(self, model: str, prompt, prompt_b, prompt_morph, rerank) -> dict:
        """The prompt boxes as request fields, for a model that takes prompts (else none: the box
        is hidden and its text may belong to another model). Empty boxes are no prompt."""
        if not self.studio.describe(model).get("prompts"):
            return {}
        prompt = str(prompt or "").strip() or None
        prompt_b = str(prompt_b or "").strip() or None
        if prompt_b and not prompt:
            raise gr.Error("the second prompt morphs from the first one: describe the sound in the first box too")
        out = {"prompt": prompt, "prompt_b": prompt_b,
               "prompt_morph": _number(prompt_morph, "prompt morph") if prompt_morph is not None and prompt_b else 0.0}
        candidates = _number(rerank, "candidates", integer=True, optional=True) or 0
        if candidates and prompt:
            out["rerank"] = candidates
        return out

    def _request(self, model, label, sampler, steps, guidance, seed, seed_b, morph, count, length, reference,
                 strength, variation, rms=None, onsets=None, control_guidance=None,
                 match_loudness=True, prompt=None, prompt_b=None, prompt_morph=0.0,
                 rerank=0, label_b=None, label_mix=0.0, variety=None, steer_loudness=True,
                 soft_hits=False, steer_onsets=True, shape=None, one_hit=True, width=None,
                 kit_bands=None) -> GenerationRequest:
        if not model:
            raise gr.Error("choose a model")
        count = _number(count, "count", integer=True)
        if not 1 <= count <= SLOTS:
            raise gr.Error(f"count must be between 1 and {SLOTS} sounds per click, got {count}")
        seed_b = _seed(seed_b, "seed B", optional=True)
        morph = _number(morph, "morph") if morph is not None else 0.0
        if seed_b is None and morph:
            gr.Warning("morph only has an effect with a seed B; set one (or press the dice next to it)")
        reference = _path_of(reference)
        if reference:
            self._check_reference_file(reference)
        model, label = self._model_for_label(str(model), _label_value(label))
        # "short punchy 808 kick" with no Sound picked: the engine gives it the kick label; and a
        # Sound asked for with a prompt (or "more like this") may default otherwise than alone. So
        # fields left at the model's defaults take that Sound's, as the command line does
        prompted = asks_prompt(str(prompt or "").strip() or None, variation)
        follow = label or self._routed_label(str(model), prompt, prompt_b)
        if follow and (label is None or prompted):
            fields = dict(zip(SAMPLING_FIELDS, (sampler, steps, guidance, variety, control_guidance, width, kit_bands)))
            fields.update(_follow_label(self.studio.describe(str(model)), follow, fields, rms, prompted))
            sampler, steps, guidance, variety, control_guidance, width, kit_bands = (fields[k] for k in SAMPLING_FIELDS)
        request = GenerationRequest(
            model=model, label=label, **_blend(label, label_b, label_mix), sampler=sampler or None,
            steps=_number(steps, "steps", integer=True, optional=True),
            guidance=_number(guidance, "guidance", optional=True), variety=_number(variety, "variety", optional=True),
            seed=_seed(seed, "seed"), seed_b=seed_b,
            morph=morph, count=count, length=self._length(str(model), length), reference=reference,
            strength=_number(strength, "variation strength", optional=True),  # None: the mode's
            variation=variation or "noise",
            **self._curves(str(model), rms, onsets, control_guidance, match_loudness, steer_loudness, soft_hits,
                           steer_onsets),
            **self._prompts(str(model), prompt, prompt_b, prompt_morph, rerank),
            shape=_shape_value(shape), one_hit=bool(one_hit), width=_number(width, "stereo width", optional=True),
            kit_bands=_number(kit_bands, "real-hit timbre", optional=True))
        return request.validated()

    def _model_for_label(self, model: str, label: str | None) -> tuple[str, str | None]:
        """An alias (``kick`` = the drums model with Sound kick) whose Sound the user changed is the
        model itself with that Sound: ``drums`` + ``snare``, named ``drums_snare_…``, not ``kick_snare_…``."""
        entry = self.studio.entry(model)
        if _is_alias(entry) and label != entry.label:
            return entry.folder.name, label
        return model, label

    def _check_reference_file(self, path: str, model: str | None = None) -> str:
        audio, rate = audio_io.read_audio(path, max_seconds=REFERENCE_MAX_S)
        if float(audio.abs().max()) < 1e-4:
            raise AudioFileError(f"the reference {Path(path).name} is silent: nothing to vary")
        seconds = audio.shape[1] / rate
        info = f"reference: {Path(path).name}, {seconds:.2f} s, {audio.shape[0]} ch, {rate} Hz"
        longest = self.studio.describe(model)["seconds"] if model and model in self.studio.models() else None
        if longest and seconds > longest + 1e-3:
            info += f" · longer than this model's {longest:.2f} s: its first {longest:.2f} s are varied"
        return info

    @user_facing
    def check_reference(self, reference, model=None) -> dict:
        """A reference was uploaded: refuse non-audio, overlong and silent files right away, and say
        when it is longer than the model makes (only its start is varied)."""
        path = _path_of(reference)
        if not path:
            return {"reference_info": ""}
        try:
            return {"reference_info": self._check_reference_file(path, model)}
        except StudioError as error:
            message = _short_paths(str(error))
            gr.Warning(message)
            return {"reference": None, "reference_info": f"⚠ {message}"}

    @user_facing
    def generate(self, model, label, sampler, steps, guidance, seed, lock_seed, seed_b, morph, count, length,
                 reference, strength, variation, session, rms=None, onsets=None,
                 control_guidance=None, match_loudness=True, prompt=None, prompt_b=None, prompt_morph=0.0,
                 rerank=0, label_b=None, label_mix=0.0, variety=None, steer_loudness=True,
                 soft_hits=False, steer_onsets=True, shape=None, one_hit=True, width=None,
                 kit_bands=None) -> Iterator[dict]:
        """Sample: stream status and a preview plot, then each sound's player, drag-out file and plot."""
        entered = time.time()  # wall clock, so the browser bench can split its wait around the handler
        session = self._session(session)
        if not lock_seed:
            seed = roll()
        request = self._request(model, label, sampler, steps, guidance, seed, seed_b, morph, count, length,
                                reference, strength, variation, rms, onsets, control_guidance, match_loudness,
                                prompt, prompt_b, prompt_morph, rerank, label_b, label_mix, variety, steer_loudness,
                                soft_hits, steer_onsets, shape, one_hit, width, kit_bands)
        steps_total = request.steps or 0
        session.batch = []  # until this one finishes no card holds a result, so Export can't save an old sound
        session.generating, session.stop_requested = True, False
        start = {"seed": request.seed, "session": session, slot_key(0, "plot"): None,
                 "status": status_html(f"loading {request.model}…", 0, steps_total or 1),
                 slot_key(0, "audio"): None, slot_key(0, "file"): None,
                 slot_key(0, "caption"): f"sampling seed {request.seed}…",
                 **card_visibility(session.cards_shown, 1)}
        if not session.cards_shown:
            start["empty_note"] = gr.update(visible=False)
        # a quick render of a loaded model says nothing until its sound is ready: every page update
        # makes the browser lay out and paint on the cores that sample (docs/design-notes.md)
        shown = not (QUIET_START_S > 0 and self.studio.is_loaded(request.model))
        if shown:
            yield start
            session.cards_shown = 1

        preview_every = max(1, round((steps_total or 16) / 4))
        clicked = time.perf_counter()
        quiet_until = time.monotonic() + QUIET_START_S
        events = self.studio.generate(request, preview_every=preview_every, preview_after_s=PREVIEW_INTERVAL_S)
        preview_s = 0.0
        result: Result | None = None
        last_preview = last_status = 0.0
        try:
            for event in events:
                if session.stop_requested:
                    yield self._stopped(session)
                    return
                if isinstance(event, Result):
                    result = event
                    break
                assert isinstance(event, Progress)
                now = time.monotonic()
                if not shown:
                    if now < quiet_until:
                        continue
                    shown = True  # not so quick after all: show that it is sampling
                    yield {**start, "status": status_html(f"step {event.step}/{event.total}", event.step,
                                                          event.total)}
                    session.cards_shown = 1
                    last_status = now
                    continue
                if now - last_status < STATUS_INTERVAL_S and event.preview is None:
                    continue  # every page update costs the browser a re-render, on the CPU that samples
                last_status = now
                out = {"status": status_html(f"step {event.step}/{event.total}", event.step, event.total)}
                if (event.preview is not None and now - last_preview >= PREVIEW_INTERVAL_S
                        and event.step <= event.total - 2):  # the finished sound is about to replace it
                    drawing = time.perf_counter()
                    out[slot_key(0, "plot")] = sound_figure(event.preview, event.sample_rate,
                                                            f"preview · step {event.step}/{event.total}",
                                                            dpi=PREVIEW_DPI)
                    preview_s += time.perf_counter() - drawing
                    last_preview = time.monotonic()
                yield out
        finally:
            events.close()  # stops the sampler if the user pressed Stop or closed the tab
            session.generating = session.stop_requested = False
        if result is None:
            raise gr.Error("generation ended without a result")
        for note in result.notes:  # e.g. a preset's steps that a step-distilled model does not take
            gr.Info(note)

        engine_s = time.perf_counter() - clicked
        writing = time.perf_counter()
        takes = []  # the WAVs the page plays now; their float masters right after the sounds are sent
        stems = [audio_io.stem_from_recipe(sound.recipe) for sound in result.sounds]
        for sound, stem in zip(result.sounds, stems):
            wav = audio_io.export_wav(sound.audio, sound.sample_rate, session.folder, sound.recipe, stem=stem)
            takes.append(session.add(sound.recipe, wav, save=False))
        session.batch = [t.id for t in takes]
        done = {"seed": request.seed, "session": session,
                "status": status_html(f"{len(takes)} sound{'s' if len(takes) > 1 else ''} in {result.seconds:.1f} s "
                                      f"on {result.device}", 1, 1),
                **card_visibility(session.cards_shown, len(takes))}
        if not session.cards_shown:
            done["empty_note"] = gr.update(visible=False)
        for i, take in enumerate(takes[:SLOTS]):
            done[slot_key(i, "audio")] = take.wav
            done[slot_key(i, "file")] = take.wav
            done[slot_key(i, "caption")] = take.caption()
        session.cards_shown = min(SLOTS, len(takes))
        writes_s = time.perf_counter() - writing
        sounds_out = time.time()
        try:
            yield done  # the sounds first, alone: playable before the masters, the history and the plots
        finally:  # also when the next audition cancels this one here: every take gets its master
            for take, sound, stem in zip(takes, result.sounds, stems):
                take.master = str(audio_io.export_wav(sound.audio, sound.sample_rate, session.folder / "masters",
                                                      sound.recipe, subtype="FLOAT", stem=stem))
            session.save()
        # the last update is the whole result (it is what an API client's predict() returns)
        drawing = time.perf_counter()
        plots = {slot_key(i, "plot"): sound_figure(s.audio, s.sample_rate, rms=request.rms, onsets=request.onsets)
                 for i, s in enumerate(result.sounds)}
        plots_s = time.perf_counter() - drawing
        # one line per click, read by bench/bench_ui.py to split the wait into stages
        log.info("timings: sounds %d, engine %.3f s (sampling %.3f s, preview plots %.3f s), wav writes %.3f s, "
                 "plots %.3f s, entered %.3f, sounds out %.3f", len(takes), engine_s, result.seconds, preview_s,
                 writes_s, plots_s, entered, sounds_out)
        yield {**done, **plots, "history": session.table(), "take": gr.update(choices=session.choices()),
               "status": done["status"].replace('"tds-status"', '"tds-status done"')}

    def audition(self, audition, model, label, sampler, steps, guidance, seed, seed_b, morph, count, length,
                 reference, strength, variation, session, rms=None, onsets=None, control_guidance=None,
                 match_loudness=True, prompt=None, prompt_b=None, prompt_morph=0.0, rerank=0,
                 label_b=None, label_mix=0.0, variety=None, steer_loudness=True,
                 soft_hits=False, steer_onsets=True, shape=None, one_hit=True, width=None,
                 kit_bands=None) -> Iterator[dict]:
        """A seed, seed B or morph was moved (or a dice rolled) with "Audition on change" ticked:
        render at once with the seed as it now is (never a new roll). Off, it changes nothing."""
        if not audition:
            yield {"status": gr.update()}  # nothing changes (an empty update would read as one value)
            return
        yield from self.generate(model, label, sampler, steps, guidance, seed, True, seed_b, morph, count, length,
                                 reference, strength, variation, session, rms, onsets, control_guidance,
                                 match_loudness, prompt, prompt_b, prompt_morph, rerank, label_b, label_mix,
                                 variety, steer_loudness, soft_hits, steer_onsets, shape, one_hit, width, kit_bands)

    def stop(self, session) -> dict:
        """Stop was pressed: ask the running generation to stop. It stops at its next step and its
        own last update says so, so no late progress update from it can overwrite "stopped" (as it
        did when Gradio cancelled the stream from outside). This answer waits up to
        :data:`STOP_WAIT_S` for that and then says "stopped" too: the two updates travel separately,
        and a "stopping…" that reached the page after the stream's "stopped" left the page saying
        "stopping…" for good. A sound already finished stays."""
        session = self._session(session)
        if not session.generating:
            return {}
        session.stop_requested = True
        waited = time.monotonic() + STOP_WAIT_S
        while session.generating and time.monotonic() < waited:
            time.sleep(0.02)
        return {"status": status_html(STOPPED if not session.generating else "stopping…")}

    def _stopped(self, session: Session) -> dict:
        """The last update of a stopped generation: it says so, and no card looks like a result."""
        out = {"status": status_html(STOPPED),
               "session": session, "empty_note": gr.update(visible=not session.takes),
               **card_visibility(session.cards_shown, 0)}
        session.cards_shown = 0
        return out

    # ------------------------------------------------------------------ results
    def _slot_take(self, session: Session | None, slot: int):
        session = self._session(session)
        batch = session.current()
        if not 0 <= slot < len(batch):
            raise gr.Error("there is no sound in that slot yet; press Generate first")
        return session, batch[slot]

    @user_facing
    def vary_slot(self, slot: int, session, variation=None, strength=None) -> dict:
        """"Vary this": the take becomes the reference of a variation that keeps its sound. The mode
        and strength the user set stay, unless they would ignore the take's sound: "more like this"
        left behind becomes the noise variation, and a strength of 1 its default."""
        session, take = self._slot_take(session, int(slot))
        gr.Info(f"take #{take.id} is now the reference: Generate makes variations of it, each with a new seed")
        # the take's own seed would re-noise the reference with the noise it came from, so even a strong
        # variation stays close to it: vary with new seeds (lock the seed again to keep one)
        out = {"reference": take.wav, "variation_box": gr.update(open=True), "lock_seed": False,
               "reference_info": f"reference: take #{take.id} ({take.caption()})"}
        if variation == "semantic":
            out["variation"] = variation = "noise"
        try:
            ignores_take = strength is not None and float(strength) >= 1.0
        except (TypeError, ValueError):  # a mistyped strength is Generate's to refuse, by name
            ignores_take = False
        if ignores_take:
            out["strength"] = VARIATION_STRENGTH.get(variation or "noise", VARIATION_STRENGTH["noise"])
        return out

    @user_facing
    def more_like_slot(self, slot: int, session, model) -> dict:
        """"More like this": the take becomes the reference of a semantic variation (its audio
        embedding is the prompt; at the strength of 1 it sets, the noises are new), so Generate makes
        siblings of it. The Sound is set to the take's own instrument (a Sound left at another would
        win over the reference's, see ``Studio._like_reference``)."""
        session, take = self._slot_take(session, int(slot))
        if not self.studio.describe(str(take.recipe.get("model"))).get("prompts"):
            raise gr.Error(f"{take.recipe.get('model')} does not take prompts, so it can't make more like a "
                           "sound; pick a model that takes prompts (its info line says so)")
        gr.Info(f"take #{take.id} is the reference: Generate makes new sounds like it")
        labels = self.studio.describe(str(model))["labels"] if model else []
        label = take.recipe.get("label")
        return {"reference": take.wav, "variation": "semantic", "variation_box": gr.update(open=True),
                "strength": VARIATION_STRENGTH["semantic"],  # new noises; lower it for closer siblings
                "label": label if label in labels else ANY_LABEL,
                "lock_seed": False, "reference_info": f"more like take #{take.id} ({take.caption()})"}

    @user_facing
    def favourite_slot(self, slot: int, session, favourites_only) -> dict:
        session, take = self._slot_take(session, int(slot))
        session.toggle_favourite(take.id)
        return {"history": session.table(bool(favourites_only)), "session": session,
                "take": gr.update(choices=session.choices(bool(favourites_only))),
                slot_key(int(slot), "caption"): _card_caption(take)}

    # ------------------------------------------------------------------ curves
    def _curves_from_file(self, path: str, model, length, what: str) -> dict:
        if not model:
            raise gr.Error("choose a model first")
        rms, onsets = self.studio.curves_from(path, str(model), self._length(str(model), length))
        if rms is None:
            raise gr.Error(f"{what} is silent: no curves to take")
        gr.Info(f"curves taken from {what}: {len(rms)} points, {len(onsets or ())} hit(s)")
        return {"rms": format_rms(rms), "onsets": format_onsets(onsets)}

    @user_facing
    def curves_from_reference(self, reference, model, length) -> dict:
        """"Take the curves from the reference": its loudness and hits, cut to the sound's length."""
        path = _path_of(reference)
        if not path:
            raise gr.Error("drop a reference sound first (under 'Variation of a reference sound')")
        return self._curves_from_file(path, model, length, f"the reference {Path(path).name}")

    @user_facing
    def curves_from_voice(self, voice, model, length) -> dict:
        """A vocal imitation was recorded (or a sound dropped on the microphone box): say "ts" or
        "boom" and the drum gets that shape. Leading silence is skipped."""
        path = _path_of(voice)
        if not path:
            return {}
        return self._curves_from_file(path, model, length, "the recording")

    @user_facing
    def curves_from_slot(self, slot: int, session, model, length) -> dict:
        """"Use its curves": a result's own loudness and hits, to draw from or generate more like it."""
        _, take = self._slot_take(session, int(slot))
        return self._curves_from_file(str(take.master_path()), model, length, f"take #{take.id}")

    # ------------------------------------------------------------------ export
    def _export_folder(self, export_dir: str | None) -> Path:
        text = str(export_dir or "").strip()
        folder = Path(text).expanduser() if text else self.settings.export_dir
        if not folder.is_absolute():  # "kicks" is a folder in the export root, not in wherever the server started
            folder = self.settings.export_dir / folder
        folder = folder.resolve()
        if self.settings.remote and not folder.is_relative_to(self.settings.export_dir):
            raise gr.Error(f"while the studio is shared, exports go inside {self.settings.export_dir}")
        if folder.exists() and not folder.is_dir():
            raise gr.Error(f"{folder} is a file, not a folder")
        return folder

    def _export(self, takes, export_dir, wav_format, normalise, target_lufs, ceiling_db) -> dict:
        if wav_format not in FORMATS:
            raise gr.Error(f"format must be one of {list(FORMATS)}, got {wav_format!r}")
        folder = self._export_folder(export_dir)
        loudness = None
        if normalise:
            target = _number(target_lufs, "target loudness")
            ceiling = _number(ceiling_db, "peak ceiling")
            if not -40.0 <= target <= -3.0:
                raise gr.Error(f"target loudness must be between -40 and -3 LUFS, got {target}")
            if not -24.0 <= ceiling <= 0.0:
                raise gr.Error(f"peak ceiling must be between -24 and 0 dBFS, got {ceiling}")
            loudness = {"target_lufs": target, "ceiling_db": ceiling}
        paths, reached = [], []
        for take in takes:
            audio, rate = audio_io.read_audio(take.master_path())
            report = None
            if loudness:
                audio, report = audio_io.normalise_loudness(audio, rate, loudness["target_lufs"],
                                                            loudness["ceiling_db"])
            recipe = dict(take.recipe, **({"loudness": loudness} if loudness else {}))
            path = audio_io.export_wav(audio, rate, folder, recipe, subtype=wav_format)
            paths.append(path)
            if report:
                reached.append(_loudness_note(path.name, report))
        gr.Info(f"saved {len(paths)} WAV{'s' if len(paths) > 1 else ''} to {folder}"
                + ("".join(f"\n{line}" for line in reached)))
        return {"saved": "\n".join(str(p) for p in paths)}

    @user_facing
    def export_slot(self, slot: int, export_dir, wav_format, normalise, target_lufs, ceiling_db, session) -> dict:
        _, take = self._slot_take(session, int(slot))
        return self._export([take], export_dir, wav_format, normalise, target_lufs, ceiling_db)

    @user_facing
    def export_all(self, export_dir, wav_format, normalise, target_lufs, ceiling_db, session) -> dict:
        takes = self._session(session).current()
        if not takes:
            raise gr.Error("nothing to export yet; press Generate first")
        return self._export(takes, export_dir, wav_format, normalise, target_lufs, ceiling_db)

    @user_facing
    def export_take(self, take, export_dir, wav_format, normalise, target_lufs, ceiling_db, session) -> dict:
        found = self._session(session).get(take)
        if found is None:
            raise gr.Error("pick a take in the history first")
        return self._export([found], export_dir, wav_format, normalise, target_lufs, ceiling_db)

    # ------------------------------------------------------------------ recipes, presets, history
    def _controls(self, values: dict, note: str = "") -> dict:
        """Set every control from request fields (a recipe, a preset, a take) and lock the seed."""
        model = values.get("model")
        models = self.studio.models()
        if model not in models and values.get("model_folder") in models:
            model = values["model_folder"]
        if model not in models and not (isinstance(model, str) and (Path(model) / "manifest.json").is_file()):
            raise gr.Error(f"this sound was made with the model {values.get('model')!r}, which is not here; "
                           "add its folder with 'Add model folder' first")
        info = self.studio.describe(model)
        out = self._model_controls(model, _label_value(values.get("label")), values.get("sampler"),
                                   values.get("label_b"))
        defaults = label_defaults(info["defaults"], _label_value(values.get("label")))
        guidance = values.get("guidance")
        out.update({
            "model": gr.update(choices=self.model_choices(), value=model),
            "steps": steps_update(info, int(values.get("steps") or defaults.get("steps", 16))),
            "guidance": gr.update(visible=bool(info["takes_guidance"]), maximum=info["guidance_max"],
                                  value=float(defaults.get("guidance", 1.0) if guidance is None else guidance)),
            "variety": gr.update(visible=bool(info["takes_guidance"]),
                                 value=float(defaults["variety"] if values.get("variety") is None
                                             else values["variety"])),
            # a recipe or preset from before shapes was made free (and replays so)
            "shape": gr.update(visible=bool(info.get("kit_envelopes")),
                               value=values.get("shape") or MADE_BEFORE["shape"]),
            "seed": int(values.get("seed") or 0), "lock_seed": True,
            "seed_b": "" if values.get("seed_b") is None else str(values["seed_b"]),
            "morph": float(values.get("morph") or 0.0), "count": 1,
            "length": gr.update(visible=bool(info.get("variable_length")), maximum=length_maximum(info["seconds"]),
                                value=min(length_maximum(info["seconds"]),
                                          round(float(values.get("length") or defaults.get("length", info["seconds"])),
                                                3))),
            "strength": float(recorded_strength(values)), "variation": values.get("variation") or "noise",
            "rms": format_rms(values.get("rms")), "onsets": format_onsets(values.get("onsets")),
            "control_guidance": _curve_guidance_update(info, float(values.get("control_guidance")
                                                                   or defaults.get("control_guidance", 1.0))),
            "match_loudness": bool(values.get("match_loudness", True)),
            # a recipe or preset from before steering has no key: it was made (and replays) without it
            "steer_loudness": _steer_update(info, bool(values.get("steer_loudness", MADE_BEFORE["steer_loudness"]))),
            # one from before quiet curves were lifted made soft hits of them (and replays so)
            "soft_hits": gr.update(visible=bool(info.get("lifts_quiet_curves")),
                                   value=bool(values.get("soft_hits", MADE_BEFORE["soft_hits"]))),
            # and one from before hits were steered left them to the model
            "steer_onsets": gr.update(visible=bool(info.get("steers_onsets")),
                                      value=bool(values.get("steer_onsets", MADE_BEFORE["steer_onsets"]))),
            # and one from before sounds were held to one hit let them rise again
            "one_hit": gr.update(visible=bool(info.get("holds_one_hit")),
                                 value=bool(values.get("one_hit", MADE_BEFORE["one_hit"]))),
            "prompt": values.get("prompt") or "", "prompt_b": values.get("prompt_b") or "",
            "prompt_morph": float(values.get("prompt_morph") or 0.0), "rerank": int(values.get("rerank") or 0),
            # a recipe from before the width was made at full width (and replays so); a preset without
            # one leaves it to the Sound, as a Sound's other defaults
            "width": float(values["width"] if values.get("width") is not None
                           else MADE_BEFORE["width"] if "checkpoint" in values else defaults.get("width", 1.0)),
            # the same for the real hit's timbre: a recipe from before it was made without (and replays so)
            "kit_bands": _timbre_update(info, float(values["kit_bands"] if values.get("kit_bands") is not None
                                                    else MADE_BEFORE["kit_bands"] if "checkpoint" in values
                                                    else defaults.get("kit_bands", 0.0))),
        })
        if values.get("label_b"):
            out["label_mix"] = float(values.get("label_mix") or 0.0)
        if values.get("label") and values["label"] not in info["labels"]:
            raise gr.Error(f"model {model!r} has no label {values['label']!r}")
        if note:
            out["recipe_note"] = note
        return out

    @user_facing
    def restore_recipe(self, recipe_file) -> dict:
        """A WAV was dropped: put its recipe back into the controls so it can be regenerated."""
        path = _path_of(recipe_file)
        if not path:
            return {"recipe_note": "", "use_reference": gr.update(visible=False)}
        name = Path(path).name
        try:
            recipe = audio_io.read_recipe(path)
        except AudioFileError:
            recipe = None  # not a WAV at all: maybe still usable audio (AIFF, FLAC...)
        if recipe is None:
            try:
                audio_io.read_audio(path, max_seconds=REFERENCE_MAX_S)
            except AudioFileError as error:
                reason = _short_paths(str(error)).replace(path, name)
                raise gr.Error(f"{name} is neither a studio WAV nor usable audio ({reason})",
                               print_exception=False) from None
            note = (f"**{name}** carries no recipe (it was not exported by this studio), so its settings "
                    "can't be restored. You can use it as the reference for variations instead.")
            gr.Warning(f"{name} has no recipe")
            return {"recipe_note": note, "use_reference": gr.update(visible=True)}
        try:
            GenerationRequest.from_recipe(recipe).validated()
        except (StudioError, TypeError) as error:
            raise gr.Error(f"{name} has a recipe this studio can't use: {error}") from None
        notes = [f"Restored **{name}**: model {recipe.get('model')}, seed {recipe.get('seed')}, "
                 f"{recipe.get('steps')} steps. Press Generate to make it again."]
        reference = recipe.get("reference")
        out = self._controls(recipe)
        out["reference"] = self._servable(reference)
        if out["reference"]:
            out["variation_box"] = gr.update(open=True)
        elif reference:
            notes.append(f"It was a variation of **{Path(reference).name}**, which is no longer here: load that "
                         "sound as the reference to regenerate it exactly.")
        checkpoint = recipe.get("checkpoint")
        if checkpoint:
            current = self.studio.load(self.studio.entry(out["model"]["value"])).checkpoint_id
            if current != checkpoint:
                notes.append(f"It was made with weights {checkpoint}; this model now has {current} "
                             "(it has trained since), so the new sound will differ.")
                gr.Warning("the model's weights changed since this sound was made")
        changes = engine_changes_since(recipe.get("engine"))
        if changes:
            notes.append(f"It was made by engine {recipe['engine']}; since then, " + "; ".join(changes) + ".")
        out["recipe_note"] = "\n\n".join(notes)
        out["use_reference"] = gr.update(visible=False)
        return out

    def _servable(self, path: str | None) -> str | None:
        """``path`` if the page may show it (a file in our cache folder), else None."""
        if not path or not Path(path).is_file():
            return None
        return str(path) if Path(path).resolve().is_relative_to(self.settings.cache_dir) else None

    @user_facing
    def use_dropped_as_reference(self, recipe_file) -> dict:
        path = _path_of(recipe_file)
        if not path:
            raise gr.Error("drop a sound file first")
        info = self._check_reference_file(path)
        return {"reference": path, "reference_info": info, "variation_box": gr.update(open=True),
                "use_reference": gr.update(visible=False)}

    @user_facing
    def load_preset(self, preset) -> dict:
        data = presets.load(self.settings.presets_dir, preset)
        out = self._controls(data, f"Preset **{data.get('name', preset)}**: {data.get('description', '')}")
        out["reference"] = None
        return out

    @user_facing
    def save_preset(self, preset_name, preset_overwrite, model, label, sampler, steps, guidance, seed, seed_b,
                    morph, length, rms=None, onsets=None, control_guidance=None, match_loudness=True,
                    prompt=None, prompt_b=None, prompt_morph=0.0, rerank=0, label_b=None, label_mix=0.0,
                    variety=None, steer_loudness=True, soft_hits=False, steer_onsets=True, shape=None,
                    one_hit=True, width=None, kit_bands=None) -> dict:
        values = {"model": model, "label": _label_value(label), **_blend(_label_value(label), label_b, label_mix),
                  "sampler": sampler or None,
                  "steps": _number(steps, "steps", integer=True, optional=True),
                  "guidance": _number(guidance, "guidance", optional=True),
                  "variety": _number(variety, "variety", optional=True), "seed": _seed(seed, "seed"),
                  "seed_b": _seed(seed_b, "seed B", optional=True), "morph": _number(morph, "morph"),
                  "length": self._length(model, length) if model else None}
        if model:
            curves = self._curves(str(model), rms, onsets, control_guidance, match_loudness, steer_loudness,
                                  soft_hits, steer_onsets)
            values.update({k: ([list(p) for p in v] if k == "rms" else list(v)) if isinstance(v, tuple) else v
                           for k, v in curves.items() if v is not None})
            values.update({k: v for k, v in self._prompts(str(model), prompt, prompt_b, prompt_morph, rerank).items()
                           if v})
        if _shape_value(shape):
            values["shape"] = shape
        if model and self.studio.describe(str(model)).get("holds_one_hit"):
            values["one_hit"] = bool(one_hit)
        if width is not None:
            values["width"] = _number(width, "stereo width")
        if kit_bands is not None and self.studio.describe(str(model)).get("band_shares"):
            values["kit_bands"] = _number(kit_bands, "real-hit timbre")
        path = presets.save(self.settings.presets_dir, preset_name, values, overwrite=bool(preset_overwrite))
        gr.Info(f"saved preset {path.stem}")
        return {"preset": gr.update(choices=presets.list_presets(self.settings.presets_dir), value=path.stem),
                "preset_overwrite": False, "recipe_note": f"Saved preset **{path.stem}** ({path})."}

    def select_take(self, session, favourites_only, evt: gr.SelectData) -> dict:
        """A history row was clicked: make its take the one the history buttons act on."""
        session = self._session(session)
        rows = session.table(bool(favourites_only))
        row = evt.index[0] if isinstance(evt.index, (list, tuple)) else evt.index
        if not isinstance(row, int) or not 0 <= row < len(rows):
            return {}
        return {"take": rows[row][0]}

    def _take(self, session, take):
        found = self._session(session).get(take)
        if found is None:
            raise gr.Error("pick a take in the history first")
        return found

    @user_facing
    def history_play(self, take, session) -> dict:
        found = self._take(session, take)
        return {"history_audio": found.wav, "history_file": found.wav,
                "history_player": gr.update(visible=True)}

    @user_facing
    def history_load(self, take, session) -> dict:
        found = self._take(session, take)
        out = self._controls(found.recipe, f"Loaded take **#{found.id}** into the controls.")
        out["reference"] = self._servable(found.recipe.get("reference"))
        return out

    @user_facing
    def history_favourite(self, take, session, favourites_only) -> dict:
        session = self._session(session)
        found = self._take(session, take)
        session.toggle_favourite(found.id)
        out = {"history": session.table(bool(favourites_only)), "session": session,
               "take": gr.update(choices=session.choices(bool(favourites_only)), value=found.id)}
        if found.id in session.batch:  # its card on the page shows the star too
            out[slot_key(session.batch.index(found.id), "caption")] = _card_caption(found)
        return out

    @user_facing
    def filter_history(self, session, favourites_only) -> dict:
        session = self._session(session)
        return {"history": session.table(bool(favourites_only)),
                "take": gr.update(choices=session.choices(bool(favourites_only)))}
