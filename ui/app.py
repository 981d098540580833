"""The page: where each control sits, and which handler each button calls.

Controls are registered by name in one dict; ``_wire`` feeds a handler the controls named by its
parameters and maps the ``{name: value}`` dict it returns back onto components, so nothing here
depends on the order of arguments. All behaviour lives in ``ui/handlers.py``.
"""

from __future__ import annotations

import functools
import inspect
import logging
import threading

import gradio as gr

from engine import Studio
from engine.sampling import SAMPLERS_BY_OBJECTIVE, label_defaults

from . import gradio_patches
from .curve_editor import CURVE_EDITOR_HEAD, curve_editor
from .fields import KEEP_TYPED_VALUES, FieldNumber, FieldSlider
from .handlers import (ANY_LABEL, AUTO_SHAPE, EXAMPLE_PROMPTS, NO_BLEND, FORMATS, SAMPLING_FIELDS, SHAPE_CHOICES,
                       SLOTS, Handlers, fixed_steps_info, length_maximum, slot_key)
from .history import COLUMNS, sweep
from .presets import list_presets
from .settings import Settings

log = logging.getLogger(__name__)

CSS = """
.tds-header h1 { margin: 0; font-size: 1.4rem; }
.tds-header p { margin: 0; opacity: .75; font-size: .85rem; }
.tds-status { display: flex; align-items: center; gap: .6rem; min-height: 1.6rem; font-size: .9rem; }
.tds-status progress { flex: 1; height: .5rem; -webkit-appearance: none; appearance: none; border: none;
                       border-radius: 4px; background: rgba(128, 128, 128, .25); }
.tds-status progress::-webkit-progress-bar { background: rgba(128, 128, 128, .25); border-radius: 4px; }
.tds-status progress::-webkit-progress-value { background: #f97316; border-radius: 4px; }
.tds-status progress::-moz-progress-bar { background: #f97316; border-radius: 4px; }
.tds-caption p { margin: 0 !important; font-size: .85rem; font-weight: 600; }
.tds-card { gap: .4rem !important; }
.tds-card [data-testid=matplotlib] img { width: 100%; height: auto; }
.tds-card button { min-width: 0 !important; }
.tds-dice { align-self: end; margin-bottom: 6px; font-size: 1.35rem !important; padding: 2px 8px !important; }
.tds-dragout td.download a { font-weight: 600; cursor: grab; }
.tds-inline { align-self: end; margin-bottom: 2px; }
#morph input[type=range] { min-width: 0 !important; }  /* its min width (auto: its own size) pushed the max label past the edge */
.tds-status .tds-error { color: var(--error-text-color, #dc2626); font-weight: 600; }
.tds-hint p { margin: 0 !important; font-size: .8rem; opacity: .8; }
#tds-curve-length { display: none !important; }  /* the grid's length: follows the Length slider, not for typing */
.tds-empty { border: 1px dashed var(--border-color-primary); border-radius: var(--radius-lg);
             padding: 1.5rem 1.8rem; opacity: .85; }
"""

# Chrome lets a page hand a file to the desktop when a link is dragged out of it (a file manager,
# a DAW's arrangement): give the links of the result files that "DownloadURL".
HEAD = """
<script>
document.addEventListener("dragstart", (event) => {
  const link = event.target && event.target.closest ? event.target.closest(".tds-dragout a[href]") : null;
  if (!link || !event.dataTransfer) return;
  const url = new URL(link.getAttribute("href"), window.location.href).href;
  const name = link.getAttribute("download") || decodeURIComponent(url.split("?")[0].split("/").pop());
  event.dataTransfer.setData("DownloadURL", "audio/wav:" + name + ":" + url);
});

// G (outside a text field) or Ctrl/Cmd+Enter anywhere presses Generate: audition like a sampler.
document.addEventListener("keydown", (event) => {
  const field = event.target && event.target.closest ? event.target.closest("input, textarea, select, [contenteditable]") : null;
  const combo = event.key === "Enter" && (event.ctrlKey || event.metaKey);
  const plain = (event.key === "g" || event.key === "G") && !field && !event.ctrlKey && !event.metaKey && !event.altKey;
  if (!combo && !plain) return;
  const button = document.querySelector("#generate");
  if (!button || button.disabled) return;
  event.preventDefault();
  button.click();
});

// An error toast fades; the status line keeps its message until the next button is pressed, so a
// producer who looked away still sees why nothing new came (and not the last success).
// Gradio adds this head to a page that has already loaded, so run now rather than on DOMContentLoaded.
(() => {
  const showError = () => {
    const shown = document.querySelectorAll(".toast-message-text.error:not([data-tds-seen])");
    if (!shown.length) return;
    shown.forEach((toast) => toast.setAttribute("data-tds-seen", "1"));
    const status = document.querySelector("#status .tds-status");
    if (!status) return;
    const text = document.createElement("span");
    text.className = "tds-error";
    text.textContent = "⚠ " + shown[shown.length - 1].innerText.trim();
    status.replaceChildren(text);
    status.classList.add("tds-failed");
  };
  new MutationObserver(showError).observe(document.documentElement, {childList: true, subtree: true});
  document.addEventListener("click", (event) => {
    const failed = document.querySelector("#status .tds-status.tds-failed");
    if (failed && event.target.closest && event.target.closest("button")) {
      failed.classList.remove("tds-failed");
      failed.replaceChildren(Object.assign(document.createElement("span"), {textContent: "ready"}));
    }
  }, true);
})();
</script>
""" + KEEP_TYPED_VALUES

GENERATE_OUTPUTS = ["seed", "session", "status", "history", "take", "empty_note",
                    *[f"row{r}" for r in range(SLOTS // 2)],
                    *[slot_key(i, part) for i in range(SLOTS)
                      for part in ("group", "audio", "plot", "file", "caption")]]
SAMPLING_GROUP = "sampling-fields"
"""The concurrency group of every event that moves the sampling fields to a Sound's defaults: one
at a time, so they land in the order they were asked."""
CONTROL_OUTPUTS = ["model", "label", "sampler", "steps", "guidance", "seed", "lock_seed", "seed_b", "morph", "count",
                   "length", "rms", "onsets", "control_guidance", "match_loudness", "steer_loudness",
                   "soft_hits", "steer_onsets", "one_hit", "controls_box",
                   "prompt", "prompt_b", "prompt_morph", "rerank", "prompt_box",
                   "strength", "variation", "reference", "variation_box", "model_info", "recipe_note",
                   "label_b", "label_mix", "blend_row", "variety", "shape", "width", "kit_bands"]


def _wire(C: dict, trigger, fn, outputs: list[str], **options):
    """``trigger(fn)`` with inputs = the controls named by fn's parameters, outputs = ``outputs``."""
    names = [p for p in inspect.signature(fn).parameters if p not in ("evt", "request")]
    inputs = [C[name] for name in names]
    targets = {name: C[name] for name in outputs}

    def to_components(values: dict) -> dict:
        unknown = set(values) - set(targets)
        if unknown:  # a wiring bug, not a user error: say exactly which
            raise RuntimeError(f"{getattr(fn, '__name__', fn)} returned {sorted(unknown)}, not among its outputs")
        return {targets[name]: value for name, value in values.items()}

    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            for values in fn(*args, **kwargs):
                yield to_components(values)
    else:
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            return to_components(fn(*args, **kwargs))
    options.setdefault("show_progress", "hidden")  # quick actions: no spinners, errors show as a toast
    # The page keeps a loading state for every output an event ever had, and on every state change
    # of any event it updates them all; for a row or a column that means reading back every
    # component inside it. So the state goes on one output that is not a layout block (issue 18).
    named = options.get("show_progress_on")
    if named is None:
        named = [name for name in outputs if not isinstance(C[name], gr.blocks.BlockContext)][:1] or None
    if named is not None:
        options["show_progress_on"] = [C[name] for name in named]
    if "api_name" not in options:
        options["api_visibility"] = "private"
    return trigger(wrapper, inputs=inputs, outputs=list(targets.values()), **options)


def _controls(C: dict, h: Handlers, settings: Settings) -> None:
    """The left column: model, sampling, seeds, variation, Generate, presets, recipe drop."""
    model = h.default_model()
    info = h.studio.describe(model) if model else {"labels": [], "label": None, "samplers": [], "defaults": {},
                                                   "takes_guidance": False}
    defaults = label_defaults(info["defaults"], info["label"])
    with gr.Group():
        with gr.Row():
            C["model"] = gr.Dropdown(h.model_choices(), value=model, label="Model", scale=3, min_width=140,
                                     allow_custom_value=True, elem_id="model")
            C["label"] = gr.Dropdown([ANY_LABEL, *info["labels"]], value=info["label"] or ANY_LABEL,
                                     label="Sound", visible=bool(info["labels"]), scale=2, min_width=110,
                                     elem_id="label")
        with gr.Row(visible=bool(info["labels"]), elem_id="blend-row") as C["blend_row"]:
            C["label_b"] = gr.Dropdown([NO_BLEND, *info["labels"]], value=NO_BLEND, label="Blend with", scale=2,
                                       min_width=110, elem_id="label-b",
                                       info="a hybrid: a second Sound mixed into the first")
            C["label_mix"] = FieldSlider(0.0, 1.0, value=0.3, step=0.05, label="Blend", scale=3, min_width=150,
                                         info="0: the Sound alone · 1: the second one", elem_id="label-mix",
                                         field="blend")
        C["model_info"] = gr.Markdown(h._model_controls(model)["model_info"] if model else "no models found",
                                      elem_classes="tds-model-info", padding=True, elem_id="model-info")
    with gr.Accordion("Prompt", open=True, visible=bool(info.get("prompts")), elem_id="prompt-box") as C["prompt_box"]:
        C["prompt"] = gr.Textbox("", label="Describe the sound", placeholder="short punchy 808 kick", max_lines=2,
                                 max_length=200, elem_id="prompt")
        gr.Examples(EXAMPLE_PROMPTS, inputs=[C["prompt"]], label="Try", examples_per_page=len(EXAMPLE_PROMPTS))
        with gr.Row(equal_height=False):
            C["prompt_b"] = gr.Textbox("", label="Morph towards (second prompt)", placeholder="bright tight snare",
                                       max_lines=2, max_length=200, scale=3, min_width=160, elem_id="prompt-b")
            C["prompt_morph"] = FieldSlider(0.0, 1.0, value=0.0, step=0.01, label="Prompt morph", scale=2,
                                            min_width=150, elem_id="prompt-morph", field="prompt morph")
        C["rerank"] = FieldSlider(0, 32, value=0, step=1, label="Candidates to choose from",
                                  info="0: off; N: make N sounds and keep the ones closest to the prompt",
                                  elem_id="rerank", field="candidates")
    with gr.Row():
        # every sampler of any model: the choices an API call is checked against are these, while
        # the page narrows them to the chosen model's (a step-distilled default takes only ddim)
        every = sorted({name for names in SAMPLERS_BY_OBJECTIVE.values() for name in names})
        C["sampler"] = gr.Dropdown(every, value=defaults.get("sampler"), label="Sampler",
                                   min_width=110, elem_id="sampler")
        fixed = info.get("steps_fixed")
        C["steps"] = FieldSlider(1, 200, value=int(fixed or defaults.get("steps", 16)), step=1, label="Steps",
                                 min_width=160, elem_id="steps", field="steps", interactive=fixed is None,
                                 info=None if fixed is None else fixed_steps_info(fixed))
    C["guidance"] = FieldSlider(0.0, info.get("guidance_max", 15.0), value=float(defaults.get("guidance", 1.0)), step=0.1,
                                label="Guidance", info="how strongly the sound follows its label and prompt",
                                visible=bool(info["takes_guidance"]), elem_id="guidance", field="guidance")
    C["variety"] = FieldSlider(0.0, 1.0, value=defaults["variety"], step=0.05, label="Variety",
                               info="0: safe, the typical sound of its kind · 1: surprising, further from it",
                               visible=bool(info["takes_guidance"]), elem_id="variety", field="variety")
    C["width"] = FieldSlider(0.0, 1.0, value=float(defaults.get("width", 1.0)), step=0.05, label="Stereo width",
                             info="0: mono, both channels alike (most kits' hits are) · 1: as the model makes it",
                             elem_id="width", field="width")
    C["kit_bands"] = FieldSlider(0.0, 1.0, value=float(defaults.get("kit_bands", 0.0)), step=0.05,
                                 label="Real-hit timbre",
                                 info="on a kit hit or a drawn curve: 0 the model's own brightness over time · "
                                      "1 the real hit's its seed deals",
                                 visible=bool(info.get("band_shares")), elem_id="kit-bands", field="real-hit timbre")
    C["shape"] = gr.Radio(SHAPE_CHOICES, value=AUTO_SHAPE, label="Shape",
                          info="with no curve drawn: the Sound's default, the model's own envelope, or a real kit "
                               "hit's loudness and hits (a new one every seed; for some Sounds its description too, "
                               "shown as the prompt; with a prompt, a hit the prompt describes)",
                          visible=bool(info.get("kit_envelopes")), elem_id="shape")
    C["one_hit"] = gr.Checkbox(True, label="One clean hit",
                               info="with at most one hit: once the sound has faded it does not come back (no "
                                    "ghost second hit), and a near-silent one is drawn again from another seed "
                                    "(its card and WAV say which); off: as the model makes it",
                               visible=bool(info.get("holds_one_hit")), elem_id="one-hit")
    with gr.Row(equal_height=False, elem_classes="tds-seeds"):
        C["seed"] = FieldNumber(value=0, label="Seed", scale=3, min_width=110, elem_id="seed")
        C["roll_seed"] = gr.Button("⚄", size="sm", elem_classes="tds-dice", scale=0, min_width=44,
                                   elem_id="roll-seed")
        C["lock_seed"] = gr.Checkbox(False, label="Lock seed", info="unlocked: a new seed every click",
                                     scale=2, min_width=120, elem_id="lock-seed")
    with gr.Row(equal_height=False, elem_classes="tds-seeds"):
        C["seed_b"] = gr.Textbox("", label="Seed B (morph target)", placeholder="none", scale=3,
                                 min_width=110, elem_id="seed-b")
        C["roll_seed_b"] = gr.Button("⚄", size="sm", elem_classes="tds-dice", scale=0, min_width=44,
                                     elem_id="roll-seed-b")
        C["morph"] = FieldSlider(0.0, 1.0, value=0.0, step=0.01, label="Morph A → B", scale=2, min_width=150,
                                 elem_id="morph", field="morph")
    C["count"] = FieldSlider(1, SLOTS, value=1, step=1, label="Sounds per click", elem_id="count", field="count")
    seconds = length_maximum(float(info.get("seconds", 1.0)))
    C["length"] = FieldSlider(0.05, seconds, value=min(seconds, round(float(defaults.get("length", seconds)), 3)),
                              step=0.01, label="Length (s)", info="this model makes any length up to its longest",
                              visible=bool(info.get("variable_length")), elem_id="length", field="length")
    with gr.Accordion("Loudness curve and hits", open=True, visible=bool(info.get("controls")),
                      elem_id="controls-box") as C["controls_box"]:
        gr.Markdown("**Draw** how loud the sound is over time; switch to **Onsets** and click where the hits "
                    "are. Leave both empty for a free sound.", elem_classes="tds-hint")
        editor = curve_editor(float(C["length"].value or seconds))
        C["rms"], C["onsets"], C["curve_length"] = editor.rms, editor.onsets, editor.length
        editor.follow(C["length"])
        with gr.Row(equal_height=True):
            C["control_guidance"] = FieldSlider(0.0, 8.0, value=float(defaults.get("control_guidance", 1.0)),
                                                step=0.1, label="Follow the curves", scale=3, min_width=180,
                                                info="how strictly: 1 as trained, higher follows them harder",
                                                elem_id="control-guidance", field="curve guidance")
            C["curves_from_reference"] = gr.Button("Curves from the reference", size="sm", scale=1, min_width=100,
                                                   elem_id="curves-from-reference", elem_classes="tds-inline")
        C["steer_loudness"] = gr.Checkbox(True, label="Steer the sound onto the curve as it forms",
                                          info="latent models: the sampling steps are moved onto the drawn "
                                               "loudness, and the model shapes the sound around it; off: it "
                                               "follows the curve on its own", elem_id="steer-loudness")
        C["steer_onsets"] = gr.Checkbox(True, label="Make every drawn hit",
                                        info="latent models: a hit the loudness curve does not rise into (a "
                                             "roll, a flam) gets a dip and the first hit's attack as the sound "
                                             "forms; off: the model places the hits on its own",
                                        visible=bool(info.get("steers_onsets")), elem_id="steer-onsets")
        C["soft_hits"] = gr.Checkbox(False, label="Quiet curves make soft hits",
                                     info="a curve quieter than the model's usual hits gets a softly played "
                                          "drum's timbre; off: a full hit, turned down onto the curve",
                                     visible=bool(info.get("lifts_quiet_curves")), elem_id="soft-hits")
        C["match_loudness"] = gr.Checkbox(True, label="Match the drawn loudness exactly",
                                          info="after sampling, a gain envelope (at most +12 dB) puts the sound on "
                                               "the curve; off: as the model made it", elem_id="match-loudness")
        C["voice"] = gr.Audio(sources=["microphone", "upload"], type="filepath", buttons=[], elem_id="voice",
                              label="Vocal imitation: say 'ts' or 'boom'")
    with gr.Accordion("Variation of a reference sound", open=False) as C["variation_box"]:
        C["reference"] = gr.Audio(sources=["upload"], type="filepath", label="Reference (drop a one-shot)",
                                  buttons=[], elem_id="reference")
        C["reference_info"] = gr.Markdown()
        with gr.Row():
            C["strength"] = FieldSlider(0.01, 1.0, value=0.5, step=0.01, label="Variation strength",
                                        info="small: close to the reference; 1: new noises", min_width=150,
                                        elem_id="strength", field="variation strength")
            C["variation"] = gr.Radio(["noise", "invert", "semantic"], value="noise", label="Mode", min_width=110,
                                      info="noise: re-noise it; invert: trace it back to its noise; semantic: new "
                                           "sounds like it (models with prompts)",
                                      elem_id="variation")
    with gr.Row():
        C["generate"] = gr.Button("Generate", variant="primary", size="lg", scale=3, elem_id="generate")
        C["stop"] = gr.Button("Stop", variant="secondary", size="lg", scale=1, min_width=70, elem_id="stop")
    C["audition"] = gr.Checkbox(False, label="Audition on change", elem_id="audition",
                                info="a new sound as soon as you roll a dice, release the morph or press Enter in a "
                                     "seed box · G (or Ctrl+Enter) is Generate")
    C["status"] = gr.HTML('<div class="tds-status"><span>ready</span></div>', elem_id="status")
    C["recipe_note"] = gr.Markdown(elem_id="recipe-note")
    with gr.Tabs():
        with gr.Tab("Presets", elem_id="tab-presets"):
            with gr.Row(equal_height=True):
                C["preset"] = gr.Dropdown(list_presets(settings.presets_dir), value=None, label="Preset", scale=3,
                                          allow_custom_value=True, elem_id="preset")
                C["load_preset"] = gr.Button("Load", size="md", scale=1, min_width=70, elem_id="load-preset",
                                             elem_classes="tds-inline")
            with gr.Row(equal_height=True):
                C["preset_name"] = gr.Textbox(label="Save current settings as", placeholder="my-kick", scale=3,
                                              elem_id="preset-name")
                C["save_preset"] = gr.Button("Save", size="md", scale=1, min_width=70, elem_id="save-preset",
                                             elem_classes="tds-inline")
            C["preset_overwrite"] = gr.Checkbox(False, label="overwrite a preset with the same name",
                                                elem_id="preset-overwrite", container=False)
        with gr.Tab("Restore from a WAV", elem_id="tab-restore"):
            C["recipe_file"] = gr.File(label="Drop a WAV exported by the studio: its settings come back",
                                       file_types=["audio", ".wav"], height=120, elem_id="recipe-drop")
            C["use_reference"] = gr.Button("Use it as the reference instead", size="sm", visible=False,
                                           elem_id="use-reference")
        with gr.Tab("Model folders", elem_id="tab-models"):
            with gr.Row(equal_height=True):
                C["model_folder"] = gr.Textbox(label="Add a model folder (or a folder of model folders)",
                                               placeholder="/path/to/my-model (has manifest.json)", scale=4,
                                               interactive=not settings.remote, elem_id="model-folder")
                C["add_model"] = gr.Button("Add", scale=1, min_width=60, interactive=not settings.remote,
                                           elem_id="add-model", elem_classes="tds-inline")


def _results(C: dict, settings: Settings) -> None:
    """The right column: result cards, export, history."""
    C["empty_note"] = gr.Markdown(
        "### No sounds yet\nPick a model (or a preset) on the left and press **Generate**. Each sound gets a "
        "player, a waveform + spectrogram, and a WAV you can drag straight into your DAW. With the seed unlocked "
        "every click rolls a new seed; lock it and move **Morph** towards a seed B to explore around a hit.",
        elem_classes="tds-empty", elem_id="empty-note")
    for row in range(SLOTS // 2):
        with gr.Row(equal_height=False, visible=False) as C[f"row{row}"]:
            for col in range(2):
                i = row * 2 + col
                with gr.Column(visible=False, variant="panel", min_width=300, elem_classes="tds-card",
                               elem_id=f"slot{i}") as C[slot_key(i, "group")]:
                    C[slot_key(i, "caption")] = gr.Markdown(elem_classes="tds-caption")
                    C[slot_key(i, "plot")] = gr.Plot(show_label=False, format="png")
                    C[slot_key(i, "audio")] = gr.Audio(type="filepath", interactive=False, show_label=False,
                                                       buttons=["download"], elem_classes="tds-player")
                    C[slot_key(i, "file")] = gr.File(label="WAV: drag the ⇣ link into your DAW",
                                                     interactive=False, height=60, elem_classes="tds-dragout")
                    with gr.Row(equal_height=True):
                        C[slot_key(i, "export")] = gr.Button("Export", size="sm", variant="primary", min_width=60,
                                                             elem_classes="tds-export")
                        C[slot_key(i, "vary")] = gr.Button("Vary this", size="sm", min_width=60,
                                                           elem_classes="tds-vary")
                        C[slot_key(i, "favourite")] = gr.Button("★ Favourite", size="sm", min_width=60,
                                                                elem_classes="tds-fav")
                        C[slot_key(i, "curves")] = gr.Button("Use its curves", size="sm", min_width=60,
                                                             elem_classes="tds-use-curves")
                        C[slot_key(i, "like")] = gr.Button("More like this", size="sm", min_width=60,
                                                           elem_classes="tds-more-like")
    with gr.Accordion("Export", open=True):
        with gr.Row(equal_height=True):
            C["export_dir"] = gr.Textbox(str(settings.export_dir), label="Export folder", scale=4,
                                         info="inside the --export-dir while shared" if settings.remote else None,
                                         elem_id="export-dir")
            C["wav_format"] = gr.Radio([(label, key) for key, label in FORMATS.items()], value="PCM_24",
                                       label="WAV format", scale=2, min_width=220, elem_id="wav-format")
        with gr.Row(equal_height=True):
            C["normalise"] = gr.Checkbox(False, label="Normalise loudness", info="to the target, never above "
                                         "the ceiling", scale=2, min_width=150, elem_id="normalise")
            C["target_lufs"] = FieldSlider(-40, -3, value=-12, step=0.5, label="Target LUFS", scale=2,
                                           min_width=150, elem_id="target-lufs", field="target loudness")
            C["ceiling_db"] = FieldSlider(-24, 0, value=-1, step=0.1, label="Ceiling dBFS", scale=2, min_width=150,
                                          elem_id="ceiling-db", field="peak ceiling")
        with gr.Row(equal_height=True):
            C["export_all"] = gr.Button("Export all", variant="primary", scale=1, min_width=110,
                                        elem_id="export-all", elem_classes="tds-inline")
            C["saved"] = gr.Textbox(label="Saved files", lines=1, max_lines=8, interactive=False,
                                    buttons=["copy"], scale=5, elem_id="saved")
    with gr.Accordion("History (this session)", open=True):
        C["history"] = gr.Dataframe(headers=COLUMNS, value=[], interactive=False, max_height=260, wrap=False,
                                    column_widths=["6%", "5%", "13%", "10%", "14%", "11%", "8%", "8%", "12%", "13%"],
                                    elem_id="history")
        with gr.Row(equal_height=True):
            C["take"] = gr.Dropdown([], value=None, label="Take (click a row)", scale=3, allow_custom_value=True,
                                    elem_id="take")
            C["favourites_only"] = gr.Checkbox(False, label="favourites only", scale=1, min_width=130,
                                               elem_id="favourites-only")
        with gr.Row():
            C["history_play"] = gr.Button("▶ Play", size="sm", elem_id="history-play")
            C["history_load"] = gr.Button("Load into controls", size="sm", elem_id="history-load")
            C["history_export"] = gr.Button("Export", size="sm", elem_id="history-export")
            C["history_favourite"] = gr.Button("★ Favourite", size="sm", elem_id="history-favourite")
        with gr.Row(equal_height=True, visible=False) as C["history_player"]:
            C["history_audio"] = gr.Audio(type="filepath", interactive=False, show_label=False, scale=3,
                                          buttons=["download"], autoplay=True, elem_id="history-audio")
            C["history_file"] = gr.File(label="Drag into your DAW", interactive=False, height=60, scale=2,
                                        elem_classes="tds-dragout")


def build_app(studio: Studio, settings: Settings) -> gr.Blocks:
    """The whole studio page over ``studio``; launch it with ``demo.launch(**launch_kwargs(settings))``."""
    gradio_patches.install()  # empty updates without building a component each (issue 18)
    h = Handlers(studio, settings)
    if settings.warm_up:
        threading.Thread(target=h.warm_up, name="tds-warm-up", daemon=True).start()
    swept = sweep(settings.sounds_dir)
    if swept:
        log.info("removed %d stale session folder(s) from %s", swept, settings.sounds_dir)
    C: dict = {}
    with gr.Blocks(title="Tiny Diffusion Studio", delete_cache=(3600, 24 * 3600)) as demo:
        # the session's takes outlive the tab: its folder key is kept in the browser, so a reload or a
        # restart resumes it (ui/history.py); unused folders are swept after history.KEEP_DAYS
        C["session"] = gr.State(None)
        C["session_key"] = gr.BrowserState(None, storage_key="tds-session")
        gr.Markdown("# Tiny Diffusion Studio\nDrum one-shots from small diffusion models · generating on "
                    f"**{settings.device}** · exports go to `{settings.export_dir}`", elem_classes="tds-header")
        with gr.Row(equal_height=False):
            with gr.Column(scale=4, min_width=340):
                _controls(C, h, settings)
            with gr.Column(scale=7, min_width=340):
                _results(C, settings)

        wire = functools.partial(_wire, C)
        model_outputs = ["label", "sampler", "steps", "guidance", "length", "model_info", "controls_box",
                         "steer_loudness", "soft_hits", "steer_onsets", "one_hit", "control_guidance", "prompt_box",
                         "label_b",
                         "blend_row", "variety", "shape", "width", "kit_bands"]
        # in the sampling fields' group: its answer lands before that of any pick made after the page loaded
        wire(demo.load, h.refresh, ["model", "preset", "label", "sampler", "steps", "guidance", "length", "model_info",
                                    "controls_box", "steer_loudness", "soft_hits", "steer_onsets", "one_hit",
                                    "control_guidance", "prompt_box", "label_b", "blend_row", "variety", "shape"],
             concurrency_id=SAMPLING_GROUP, concurrency_limit=1)
        wire(demo.load, h.resume_session, ["session", "session_key", "history", "take"])
        # a model picked sets the fields too: in the same group, so a Sound picked right after it is
        # answered after it (else the model's answer, landing late, put back its own default Sound),
        # and a second model picked while the first is answered is answered next, not dropped
        wire(C["model"].input, h.describe_model, model_outputs, api_name="describe_model",
             concurrency_id=SAMPLING_GROUP, concurrency_limit=1, trigger_mode="always_last")
        # a Sound picked, or named by a prompt, or a curve drawn or cleared (a stroke, a shape button,
        # typing; a kick guides differently with one): the sampling fields show that Sound's defaults.
        # The answers come one at a time, in the order asked (one concurrency group), and the last
        # trigger is always answered: answered side by side, a late answer to "(any)" picked just
        # before a kick prompt was typed put back (any)'s 16 steps over the kick's 12 (CI, session 47)
        def follow_sampling(trigger, **options):
            return wire(trigger, h.label_defaults, list(SAMPLING_FIELDS), concurrency_id=SAMPLING_GROUP,
                        concurrency_limit=1, trigger_mode="always_last", **options)

        for typed in (C["label"].input, C["prompt"].blur, C["prompt"].submit, C["prompt_b"].blur, C["rms"].input):
            follow_sampling(typed)
        wire(C["add_model"].click, h.add_model_folder, ["model", "model_folder"], api_name="add_model_folder")
        wire(C["reference"].upload, h.check_reference, ["reference", "reference_info"], api_name="check_reference")
        # "once": a second click while a generation runs is ignored (a double click made two takes)
        # its loading state goes on the status line (_wire: one output, never a layout block)
        generating = wire(C["generate"].click, h.generate, GENERATE_OUTPUTS, api_name="generate",
                          show_progress="hidden", trigger_mode="once", show_progress_on=["status"])
        # audition on change: each trigger renders at once, cancelling an audition still rendering. Not
        # a Generate click's render: Gradio's cancels fire whether or not the box is ticked, so Enter in
        # the seed box (its own trigger) cancelled a generation the user had started, with nothing after it
        auditions = []
        for trigger in (wire(C["roll_seed"].click, h.roll_seed, ["seed"], api_name="roll_seed").then,
                        wire(C["roll_seed_b"].click, h.roll_seed_b, ["seed_b"], api_name="roll_seed_b").then,
                        C["morph"].release, C["prompt_morph"].release, C["seed"].submit, C["seed_b"].submit):
            auditions.append(wire(trigger, h.audition, GENERATE_OUTPUTS, trigger_mode="always_last",
                                  show_progress_on=["status"],
                                  cancels=list(auditions)))
        # Stop asks the running generation to stop (its own last update says so); it must not wait in
        # the queue behind the generation it stops, hence no concurrency limit
        wire(C["stop"].click, h.stop, ["status"], concurrency_limit=None)
        wire(C["export_all"].click, h.export_all, ["saved"], api_name="export_all")
        # curves set by a handler fire no input event: the sampling fields follow them afterwards
        taken = [wire(C["curves_from_reference"].click, h.curves_from_reference, ["rms", "onsets"],
                      api_name="curves_from_reference"),
                 wire(C["voice"].change, h.curves_from_voice, ["rms", "onsets"], api_name="curves_from_voice")]
        for i in range(SLOTS):
            wire(C[slot_key(i, "export")].click, functools.partial(h.export_slot, i), ["saved"])
            wire(C[slot_key(i, "vary")].click, functools.partial(h.vary_slot, i),
                 ["reference", "variation_box", "reference_info", "lock_seed", "variation", "strength"])
            wire(C[slot_key(i, "favourite")].click, functools.partial(h.favourite_slot, i),
                 ["history", "session", "take", slot_key(i, "caption")])
            taken.append(wire(C[slot_key(i, "curves")].click, functools.partial(h.curves_from_slot, i),
                              ["rms", "onsets"]))
            wire(C[slot_key(i, "like")].click, functools.partial(h.more_like_slot, i),
                 ["reference", "variation", "strength", "variation_box", "label", "reference_info", "lock_seed"])
        for event in taken:
            follow_sampling(event.success)
        wire(C["recipe_file"].upload, h.restore_recipe, [*CONTROL_OUTPUTS, "use_reference"],
             api_name="restore_recipe")
        wire(C["use_reference"].click, h.use_dropped_as_reference,
             ["reference", "reference_info", "variation_box", "use_reference"])
        wire(C["load_preset"].click, h.load_preset, CONTROL_OUTPUTS, api_name="load_preset")
        wire(C["save_preset"].click, h.save_preset, ["preset", "preset_overwrite", "recipe_note"],
             api_name="save_preset")
        wire(C["history"].select, h.select_take, ["take"])
        wire(C["history_play"].click, h.history_play, ["history_audio", "history_file", "history_player"],
             api_name="history_play")
        wire(C["history_load"].click, h.history_load, CONTROL_OUTPUTS, api_name="history_load")
        wire(C["history_export"].click, h.export_take, ["saved"], api_name="export_take")
        wire(C["history_favourite"].click, h.history_favourite,
             ["history", "session", "take", *[slot_key(i, "caption") for i in range(SLOTS)]],
             api_name="history_favourite")
        wire(C["favourites_only"].change, h.filter_history, ["history", "take"])
    demo.queue(default_concurrency_limit=settings.concurrency, max_size=64)
    return demo


def theme() -> gr.themes.Base:
    """Gradio's default look in the app's orange, with system fonts (no font downloads: it runs offline)."""
    return gr.themes.Default(primary_hue="orange", secondary_hue="slate", neutral_hue="slate",
                             font=["system-ui", "-apple-system", "Segoe UI", "sans-serif"],
                             font_mono=["ui-monospace", "SFMono-Regular", "monospace"])


def launch_kwargs(settings: Settings) -> dict:
    """Everything demo.launch needs: where to listen and which folders may be served (only ours)."""
    return {"server_name": settings.host, "server_port": settings.port, "share": settings.share,
            "inbrowser": settings.open_browser, "allowed_paths": [str(settings.export_dir), str(settings.cache_dir)],
            "max_file_size": "64mb", "show_error": True, "theme": theme(), "css": CSS, "head": HEAD + CURVE_EDITOR_HEAD,
            "footer_links": ["api", "settings"]}
