"""The studio's curve controls through the handlers: drawn text reaches the engine and the recipe,
bad curves are refused by name, curves come back from WAVs, presets and sounds (the browser
flow is in test_ui_server.py; the widget itself in test_curve_editor.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf

from engine import audio as audio_io
from ui.handlers import slot_key

from .ui_support import controls, handlers, run_generate, settings, studio  # noqa: F401  (fixtures)

LATENT = dict(model="latent-curves", label="snare", sampler="euler_a", length=0.3, guidance=4.0)


def curve_controls(**overrides) -> dict:
    values = dict(LATENT, rms="0:-8,40:-14,200:-45", onsets="0,120", control_guidance=1.5)
    values.update(overrides)
    return values


def test_a_drawn_curve_reaches_the_sound_its_recipe_and_its_plot(handlers):
    updates, final = run_generate(handlers, **curve_controls())
    take = final["session"].current()[0]
    assert take.recipe["rms"] == [[0.0, -8.0], [40.0, -14.0], [200.0, -45.0]]
    assert take.recipe["onsets"] == [0.0, 120.0] and take.recipe["control_guidance"] == 1.5
    assert "3-point curve + 2 hits" in final[slot_key(0, "caption")]
    assert take.recipe["match_loudness"] is True  # the envelope shaper is on unless unticked
    assert take.recipe["steer_loudness"] is True  # and so is steering
    assert take.recipe["soft_hits"] is False  # a quiet curve makes a full hit, turned down
    assert take.recipe["steer_onsets"] is True  # and every drawn hit is made
    _, plain = run_generate(handlers, **curve_controls(match_loudness=False, steer_loudness=False, soft_hits=True,
                                                       steer_onsets=False))
    assert plain["session"].current()[0].recipe["match_loudness"] is False
    assert plain["session"].current()[0].recipe["steer_loudness"] is False
    assert plain["session"].current()[0].recipe["soft_hits"] is True
    assert plain["session"].current()[0].recipe["steer_onsets"] is False
    figure = updates[-1][slot_key(0, "plot")]
    assert len(figure.axes) == 4  # waveform, its loudness axis (asked vs measured), spectrogram, colour bar


def test_without_curves_the_model_makes_a_free_sound(handlers):
    _, final = run_generate(handlers, **dict(LATENT, rms="", onsets="", control_guidance=1.0))
    recipe = final["session"].current()[0].recipe
    assert recipe["rms"] is None and recipe["onsets"] is None


@pytest.mark.parametrize("rms, onsets, message", [
    ("0:-3,40", "", "not ms:dB"),
    ("0:-3,40:-100", "", "between -80 and 0"),
    ("0:-3,400:-20", "", "past the end"),   # the sound is 300 ms
    ("", "0,x", "not a number"),
    ("40:-3,20:-9", "", "must increase"),
])
def test_a_malformed_curve_is_refused_with_what_is_wrong(handlers, rms, onsets, message):
    import gradio as gr
    with pytest.raises(gr.Error, match=message):
        run_generate(handlers, **curve_controls(rms=rms, onsets=onsets))


def test_the_waveform_model_follows_a_loudness_curve_but_leaves_onsets_out(handlers):
    # a loud curve: at -6 dB RMS a kick's attack passes full scale, and only those peaks are turned
    # down (before session 14 the whole sound was, leaving it 3-7 dB under the curve; now 0.6-1.0 dB
    # over seeds 0-7)
    _, final = run_generate(handlers, model="kick", label="kick", rms="0:-6,40:-12,200:-40", onsets="0,180",
                            control_guidance=1.0)
    take = final["session"].current()[0]
    assert take.recipe["rms"] == [[0.0, -6.0], [40.0, -12.0], [200.0, -40.0]] and take.recipe["onsets"] is None
    from engine.eval.controls import loudness_error_db
    sound, rate = audio_io.read_audio(take.master)
    assert loudness_error_db(sound, [tuple(p) for p in take.recipe["rms"]], rate) < 1.5
    assert float(sound.abs().max()) <= 0.9995


def test_describe_model_shows_the_curve_editor_for_models_that_follow_curves(handlers):
    assert handlers.describe_model("latent-curves")["controls_box"]["visible"] is True
    # latent-drums learned no curves: it follows them by steering alone, so no curve guidance, no unsteered way
    drums = handlers.describe_model("latent-drums")
    assert drums["controls_box"]["visible"] is True and "onsets by steering" in drums["model_info"]
    assert drums["control_guidance"]["visible"] is False and drums["steer_loudness"] == {
        "__type__": "update", "visible": False, "value": True}
    assert handlers.describe_model("latent-fast")["control_guidance"]["visible"] is True
    assert handlers.describe_model("kick")["controls_box"]["visible"] is True
    assert "loudness curve and onsets" in handlers.describe_model("latent-curves")["model_info"]
    assert "follows a loudness curve" in handlers.describe_model("kick")["model_info"]
    # steering needs a latent that says its loudness: the latent models' codec, not the waveform bands
    assert handlers.describe_model("latent-curves")["steer_loudness"]["visible"] is True
    assert handlers.describe_model("kick")["steer_loudness"]["visible"] is False
    # soft hits are a choice only where quiet curves are lifted: models that recorded their level floors
    assert handlers.describe_model("latent-curves")["soft_hits"]["visible"] is True
    assert handlers.describe_model("kick")["soft_hits"]["visible"] is False
    # hits are steered where the model places hits and its latent says its loudness
    assert handlers.describe_model("latent-fast")["steer_onsets"]["visible"] is True
    assert handlers.describe_model("kick")["steer_onsets"]["visible"] is False


def test_drawing_a_curve_moves_a_kicks_variety_to_its_default_with_curves(handlers):
    """latent-fast guides a kick with a curve at every noise level (variety 0, its defaults with
    curves); drawing or clearing a curve moves a variety left at a default, never a chosen one."""
    fields = dict(sampler="dpmpp_2m", steps=12, guidance=6.5, control_guidance=2.0)
    drawn = handlers.label_defaults("latent-fast", "kick", variety=0.5, rms="0:-6,200:-40", **fields)
    assert drawn["variety"] == 0.0
    cleared = handlers.label_defaults("latent-fast", "kick", variety=0.0, rms="", **fields)
    assert cleared["variety"] == 0.5
    assert "variety" not in handlers.label_defaults("latent-fast", "kick", variety=0.35, rms="0:-6,200:-40", **fields)
    assert handlers.label_defaults("latent-fast", "hat", variety=0.0, rms="0:-6,200:-40", **fields)["variety"] == 0.0


def test_curves_come_back_from_a_dropped_wav_and_a_preset(handlers, settings):
    _, final = run_generate(handlers, **curve_controls())
    take = final["session"].current()[0]
    restored = handlers.restore_recipe(str(take.wav))
    assert restored["rms"] == "0:-8,40:-14,200:-45" and restored["onsets"] == "0,120"
    assert restored["control_guidance"]["value"] == 1.5 and restored["controls_box"]["visible"] is True
    assert restored["steer_loudness"]["value"] is True and restored["steer_loudness"]["visible"] is True
    assert restored["soft_hits"]["value"] is False
    assert restored["steer_onsets"]["value"] is True
    saved = handlers.save_preset("my curve", False, "latent-curves", "snare", "euler_a", 16, 4.0, 5, None, 0.0, 0.3,
                                 rms="0:-8,40:-14,200:-45", onsets="0,120", control_guidance=2.0,
                                 steer_loudness=False, steer_onsets=False)
    assert saved["preset"]["value"] == "my-curve"
    loaded = handlers.load_preset("my-curve")
    assert loaded["rms"] == "0:-8,40:-14,200:-45" and loaded["onsets"] == "0,120" and loaded["control_guidance"]["value"] == 2.0
    assert loaded["steer_loudness"]["value"] is False and loaded["steer_onsets"]["value"] is False
    # a recipe from before steering (no key) was made without it, and comes back so
    old = handlers._controls({k: v for k, v in take.recipe.items() if k != "steer_loudness"})
    assert old["steer_loudness"]["value"] is False
    # and one from before quiet curves were lifted made soft hits of them
    assert handlers._controls({k: v for k, v in take.recipe.items() if k != "soft_hits"})["soft_hits"]["value"] is True
    # and one from before hits were steered left them to the model
    assert handlers._controls({k: v for k, v in take.recipe.items()
                               if k != "steer_onsets"})["steer_onsets"]["value"] is False
    from pathlib import Path

    from ui import presets
    shipped = presets.validate(json.loads((Path(__file__).parent.parent / "presets" / "curve-swell.json").read_text()))
    assert handlers._controls(shipped)["steer_loudness"]["value"] is True  # the shipped curve presets steer
    assert handlers._controls(shipped)["soft_hits"]["value"] is False      # and lift a quiet curve
    assert handlers._controls(shipped)["steer_onsets"]["value"] is True     # and make every hit


def test_curves_are_taken_from_the_reference_a_voice_and_a_result(handlers, tmp_path):
    rate = 44100
    t = np.arange(int(0.4 * rate)) / rate
    noise = np.random.default_rng(0).standard_normal(t.size)
    voice = 0.4 * noise * (np.exp(-t / 0.03) + (t > 0.15) * np.exp(-np.maximum(t - 0.15, 0) / 0.03))
    path = tmp_path / "ts-ts.wav"
    sf.write(path, np.concatenate([np.zeros(int(0.1 * rate)), voice]), rate)  # 100 ms of silence first
    from_voice = handlers.curves_from_voice(str(path), "latent-curves", 0.3)
    onsets = [float(x) for x in from_voice["onsets"].split(",")]
    assert len(onsets) == 2 and onsets[0] < 5 and abs(onsets[1] - 150) <= 10  # the take starts when the voice does
    assert from_voice["rms"].startswith("0:") and float(from_voice["rms"].split(",")[-1].split(":")[0]) <= 300
    assert handlers.curves_from_reference(str(path), "latent-curves", 0.3) == from_voice
    assert handlers.curves_from_voice(None, "latent-curves", 0.3) == {}
    silent = tmp_path / "silent.wav"
    sf.write(silent, np.zeros(rate // 4), rate)
    import gradio as gr
    with pytest.raises(gr.Error, match="silent"):
        handlers.curves_from_voice(str(silent), "latent-curves", 0.3)
    _, final = run_generate(handlers, **curve_controls())
    from_result = handlers.curves_from_slot(0, final["session"], "latent-curves", 0.3)
    assert from_result["rms"].startswith("0:") and from_result["onsets"]
    sound, _ = audio_io.read_audio(final["session"].current()[0].master)
    assert sound.shape[-1] == int(0.3 * rate)
