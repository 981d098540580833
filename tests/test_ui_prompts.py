"""The studio's prompt controls through the handlers, on the shipped prompted model: a typed prompt
reaches the sound, its recipe and its card (with its match score); candidates are re-ranked;
bad prompts are refused by name; "More like this" sets up a semantic variation; prompts come
back from WAVs and presets (the browser flow is in test_ui_server.py)."""

from __future__ import annotations

from pathlib import Path

import gradio as gr
import pytest

from ui.handlers import slot_key

from .ui_support import controls, handlers, run_generate, settings, studio  # noqa: F401  (fixtures)

PROMPTED = dict(model="latent-prompts", label="(any)", sampler="euler_a", length=0.3, guidance=4.0)


def test_a_typed_prompt_reaches_the_sound_its_recipe_and_its_card(handlers):
    _, final = run_generate(handlers, **PROMPTED, prompt="  dark roomy snare ", count=2, rerank=3)
    takes = final["session"].current()
    assert len(takes) == 2 and takes[0].recipe["prompt"] == "dark roomy snare"
    assert takes[0].recipe["score"] >= takes[1].recipe["score"]            # the best candidate first
    assert takes[0].recipe["rerank"] == 0 and takes[0].recipe["label"] == "snare"  # the prompt names a snare
    caption = final[slot_key(0, "caption")]
    assert "“dark roomy snare”" in caption and "match" in caption
    _, morph = run_generate(handlers, **PROMPTED, prompt="dark snare", prompt_b="bright snare", prompt_morph=0.5)
    recipe = morph["session"].current()[0].recipe
    assert (recipe["prompt_b"], recipe["prompt_morph"]) == ("bright snare", 0.5)
    assert "→ “bright snare” @ 0.50" in morph[slot_key(0, "caption")]


@pytest.mark.parametrize("fields, message", [
    (dict(prompt="", prompt_b="bright snare"), "first box"),
    (dict(prompt="kick", count=3, rerank=2), "at least 3"),
    (dict(prompt="x" * 250), "characters long"),
    (dict(prompt="?!"), "no words"),
    (dict(prompt="kick", prompt_morph="lots", prompt_b="snare"), "prompt morph"),
])
def test_bad_prompts_are_refused_by_name(handlers, fields, message):
    with pytest.raises(gr.Error, match=message):
        run_generate(handlers, **{**PROMPTED, **fields})


def test_the_prompt_box_shows_only_for_models_that_take_prompts(handlers):
    assert handlers.describe_model("latent-prompts")["prompt_box"]["visible"] is True
    assert handlers.describe_model("kick")["prompt_box"]["visible"] is False
    assert "takes text prompts" in handlers.describe_model("latent-prompts")["model_info"]
    # a hidden box's text is not sent: the kick model makes its sound as if nothing were typed
    _, final = run_generate(handlers, prompt="dark snare", steps=3)
    assert final["session"].current()[0].recipe["prompt"] is None


def test_more_like_this_makes_a_semantic_variation_of_a_result(handlers):
    _, final = run_generate(handlers, **PROMPTED, prompt="short punchy 808 kick")
    out = handlers.more_like_slot(0, final["session"], "latent-prompts")
    assert out["variation"] == "semantic" and out["lock_seed"] is False and out["reference"]
    assert out["strength"] == 1.0  # new noises; the slider lowers it for siblings nearer the take
    assert out["label"] == "kick"  # the take's own instrument, not whatever Sound was left chosen
    _, like = run_generate(handlers, **PROMPTED, reference=out["reference"], variation="semantic",
                           strength=out["strength"], session=final["session"])
    recipe = like["session"].current()[0].recipe
    assert recipe["variation"] == "semantic" and recipe["score"] is not None and recipe["strength"] == 1.0
    # the siblings keep the reference's instrument (from its recipe) and its loudness curve (and its
    # onsets, which this faint 3-step sketch of a kick has none of)
    assert recipe["label"] == "kick" and recipe["rms"]
    assert "more like a sound" in like[slot_key(0, "caption")]
    assert "_like." in Path(like[slot_key(0, "audio")]).name and "_var" not in Path(like[slot_key(0, "audio")]).name
    # "Vary this" afterwards varies the take's own sound: the noise variation, at its default strength
    varied = handlers.vary_slot(0, like["session"], "semantic", 1.0)
    assert varied["variation"] == "noise" and varied["strength"] == 0.5
    assert "variation" not in handlers.vary_slot(0, like["session"], "invert", 0.3)  # a mode and strength chosen stay
    assert "strength" not in handlers.vary_slot(0, like["session"], "noise", "lots")  # Generate refuses it by name
    _, kick = run_generate(handlers)
    with pytest.raises(gr.Error, match="does not take prompts"):
        handlers.more_like_slot(0, kick["session"], "kick")


def test_prompts_come_back_from_a_dropped_wav_and_a_preset(handlers):
    _, final = run_generate(handlers, **PROMPTED, prompt="dark snare", prompt_b="bright snare", prompt_morph=0.3)
    restored = handlers.restore_recipe(str(final["session"].current()[0].wav))
    assert (restored["prompt"], restored["prompt_b"], restored["prompt_morph"]) == ("dark snare", "bright snare", 0.3)
    assert restored["prompt_box"]["visible"] is True
    handlers.save_preset("dark to bright", False, "latent-prompts", "(any)", "euler_a", 16, 4.0, 5, None, 0.0, 0.3,
                         prompt="dark snare", prompt_b="bright snare", prompt_morph=0.3, rerank=4)
    loaded = handlers.load_preset("dark-to-bright")
    assert (loaded["prompt"], loaded["prompt_b"], loaded["prompt_morph"], loaded["rerank"]) == \
        ("dark snare", "bright snare", 0.3, 4)


def test_the_sampling_fields_follow_the_models_defaults_for_the_sound_unless_the_user_set_them(handlers):
    """latent-fast samples kicks and percussion with their own sampler, steps and guidance (its
    card says why): picking a Sound moves the fields there, but a value no Sound defaults to is
    the user's and stays."""
    from engine.sampling import label_defaults
    shipped = handlers.studio.describe("latent-fast")["defaults"]
    kick, snare = label_defaults(shipped, "kick"), label_defaults(shipped, "snare")
    assert (kick["sampler"], kick["steps"], kick["guidance"]) != (snare["sampler"], snare["steps"], snare["guidance"])
    fields = ("sampler", "steps", "guidance", "variety")
    picked = handlers.label_defaults("latent-fast", "kick", *(snare[k] for k in fields))
    assert (picked["sampler"], picked["steps"]["value"], picked["guidance"], picked["variety"]) == \
        tuple(kick[k] for k in fields)
    back = handlers.label_defaults("latent-fast", "snare", *(kick[k] for k in fields))
    assert (back["sampler"], back["steps"]["value"], back["guidance"], back["variety"]) == \
        tuple(snare[k] for k in fields)
    # how strictly to follow drawn curves may differ per Sound as well
    assert snare["control_guidance"] != kick["control_guidance"]
    assert handlers.label_defaults("latent-fast", "snare", *(kick[k] for k in fields),
                                   control_guidance=kick["control_guidance"])["control_guidance"] == \
        snare["control_guidance"]
    own = handlers.label_defaults("latent-fast", "kick", "ddim", snare["steps"], 7.3, snare["variety"])
    assert "sampler" not in own and "guidance" not in own and own["steps"]["value"] == kick["steps"]
    _, final = run_generate(handlers, model="latent-fast", label="kick", sampler=kick["sampler"], steps=kick["steps"],
                            guidance=kick["guidance"], length=0.3)
    recipe = final["session"].current()[0].recipe
    assert (recipe["sampler"], recipe["steps"], recipe["guidance"]) == (kick["sampler"], kick["steps"], kick["guidance"])
    # no Sound picked, a prompt that names a kick: the kick's settings with a prompt (guided at 6.5, where
    # a kick asked alone takes 1.5), on the page and in the sound
    plain = label_defaults(shipped, None)
    prompted_kick, prompted_snare = (label_defaults(shipped, label, prompt=True) for label in ("kick", "snare"))
    assert prompted_kick["guidance"] != kick["guidance"]
    typed = handlers.label_defaults("latent-fast", "(any)", *(plain[k] for k in fields), prompt="short punchy 808 kick")
    assert (typed["sampler"], typed["steps"]["value"], typed["guidance"]) == \
        (prompted_kick["sampler"], prompted_kick["steps"], prompted_kick["guidance"])
    cleared = handlers.label_defaults("latent-fast", "(any)", *(kick[k] for k in fields), prompt="")
    assert (cleared["sampler"], cleared["steps"]["value"], cleared["guidance"]) == (plain["sampler"], plain["steps"],
                                                                              plain["guidance"])
    for prompt, wanted in (("short punchy 808 kick", prompted_kick), ("dark roomy snare", prompted_snare)):
        _, final = run_generate(handlers, model="latent-fast", label="(any)", sampler=plain["sampler"],
                                steps=plain["steps"], guidance=plain["guidance"], length=0.3, prompt=prompt)
        recipe = final["session"].current()[0].recipe
        assert (recipe["sampler"], recipe["steps"], recipe["guidance"]) == \
            (wanted["sampler"], wanted["steps"], wanted["guidance"]), prompt


def test_the_sampling_fields_answers_land_in_the_order_they_were_asked(studio, settings):
    """A Sound picked, a prompt typed or a curve drawn each move the sampling fields. Answered side
    by side, a late answer to "(any)" picked just before a kick prompt put (any)'s 16 steps back
    over the kick's 12 (a CI run, session 47). So every such event, and a model picked, waits in one
    queue group, one at a time in the order asked, and the last trigger of a burst is always answered."""
    from dataclasses import replace

    from ui.app import SAMPLING_GROUP, build_app

    demo = build_app(studio, replace(settings, warm_up=False))
    following = [f for f in demo.fns.values() if getattr(f.fn, "__name__", "") == "label_defaults"]
    names = {"label": "label", "prompt": "prompt", "prompt-b": "prompt_b", "tds-curve-rms": "rms"}
    ids = {block._id: names[block.elem_id] for block in demo.blocks.values()
           if getattr(block, "elem_id", None) in names}
    triggers = {(ids.get(target), event) for f in following for target, event in f.targets}
    assert {("label", "input"), ("prompt", "blur"), ("prompt", "submit"), ("prompt_b", "blur"),
            ("rms", "input")} <= triggers, triggers
    assert len(following) >= 6  # and after the curves a button or the voice set (their .success)
    for f in following:
        assert f.queue and f.concurrency_id == SAMPLING_GROUP and f.concurrency_limit == 1, f.targets
        assert f.trigger_mode == "always_last", f.targets
    picked = [f for f in demo.fns.values() if getattr(f.fn, "__name__", "") == "describe_model"]
    assert picked and all(f.queue and f.concurrency_id == SAMPLING_GROUP and f.trigger_mode == "always_last"
                          for f in picked)  # a model, then a Sound; a second model picked is not dropped


def test_the_variety_slider_follows_the_models_default_for_the_sound(handlers):
    """latent-prompts keeps kicks at variety 0.5 and the rest at 0 (its card says why)."""
    assert handlers.label_defaults("latent-prompts", "kick")["variety"] == 0.5
    assert handlers.label_defaults("latent-prompts", "snare")["variety"] == 0.0
    assert handlers.label_defaults("latent-prompts", "(any)")["variety"] == 0.0
    _, final = run_generate(handlers, **{**PROMPTED, "label": "kick", "variety": None})
    assert final["session"].current()[0].recipe["variety"] == 0.5


def test_a_prompt_gives_latent_fasts_cymbal_its_guidance_with_a_prompt(handlers):
    """latent-fast guides a cymbal asked for alone gently (1.875: more varied) and one asked for with a
    prompt at 3 (its defaults with a prompt: a prompt pulls more loosely). Typing a prompt moves a
    guidance left at a default, clearing it moves it back, and Generate takes the same rule."""
    from engine.sampling import label_defaults
    shipped = handlers.studio.describe("latent-fast")["defaults"]
    alone, prompted = label_defaults(shipped, "cymbal")["guidance"], label_defaults(shipped, "cymbal", prompt=True)["guidance"]
    assert alone < prompted
    assert handlers.label_defaults("latent-fast", "cymbal", guidance=alone, prompt="crash cymbal")["guidance"] == prompted
    assert handlers.label_defaults("latent-fast", "cymbal", guidance=prompted, prompt="")["guidance"] == alone
    assert "guidance" not in handlers.label_defaults("latent-fast", "cymbal", guidance=2.2, prompt="crash cymbal")
    _, final = run_generate(handlers, model="latent-fast", label="cymbal", sampler="dpmpp_2m", steps=4, guidance=alone,
                            prompt="crash cymbal", length=0.3)
    assert final["session"].current()[0].recipe["guidance"] == prompted  # the slider was not moved: Generate follows
    _, final = run_generate(handlers, model="latent-fast", label="cymbal", sampler="dpmpp_2m", steps=4, guidance=alone,
                            length=0.3)
    assert final["session"].current()[0].recipe["guidance"] == alone
