"""A Sound's defaults with a prompt (``defaults.with_prompt``, issue 19): a Sound guided gently for
variety when asked for alone takes its full guidance back under a prompt or "more like this",
in the studio, the evaluation, the command line and the page."""

from __future__ import annotations

import json

import pytest
import torch

from engine import pipeline
from engine.audio import export_wav, read_recipe
from engine.conditions import Conditions
from engine.errors import InvalidRequestError
from engine.request import GenerationRequest
from engine.sampling import label_defaults
from engine.studio import Studio
from engine.train.publish import set_defaults
from tests.test_envelopes import _described_model, _fake_dataset, hits, models  # noqa: F401 (fixtures)
from tests.test_cli import cli_in_process

GENTLE = {"per_label": {"hat": {"guidance": 1.5}}, "with_prompt": {"per_label": {"hat": {"guidance": 3.0, "steps": 3}}}}


def test_the_defaults_with_a_prompt_go_on_top_of_the_others():
    defaults = {"guidance": 4.0, "per_label": {"cymbal": {"guidance": 1.5}},
                "with_curves": {"per_label": {"cymbal": {"variety": 0.3}}},
                "with_prompt": {"per_label": {"cymbal": {"guidance": 3.0}}}}
    assert label_defaults(defaults, "cymbal")["guidance"] == 1.5
    assert label_defaults(defaults, "cymbal", prompt=True)["guidance"] == 3.0
    assert label_defaults(defaults, "cymbal", curves=True, prompt=True) == {"guidance": 3.0, "variety": 0.3}
    assert label_defaults(defaults, "snare", prompt=True) == label_defaults(defaults, "snare") == {
        "guidance": 4.0, "variety": 0.0}
    shipped = json.loads(open("checkpoints/latent-fast/manifest.json").read())["defaults"]
    assert label_defaults(shipped, "cymbal")["guidance"] < label_defaults(shipped, "cymbal", prompt=True)["guidance"]


def test_a_sound_asked_for_with_a_prompt_takes_its_labels_defaults_with_a_prompt(models, tmp_path, monkeypatch):
    from engine.eval.run import generate_clips
    _fake_dataset(tmp_path / "data")
    described = _described_model(models, tmp_path / "data")
    before = (described / "manifest.json").read_text()
    for bad, why in (({"with_prompt": [1]}, "JSON object"),
                     ({"with_prompt": {"per_label": {"hat": {"hit_prompt": 0.5}}}}, "the prompt is its description"),
                     ({"with_prompt": {"per_label": {"hat": {"shape": "round"}}}}, "shape"),
                     ({"with_prompt": {"guidance_weights": {"learned": 0.5}}}, "only these defaults"),
                     ({"with_prompt": {"per_label": {"tuba": {"guidance": 2.0}}}}, "labels the model does not have"),
                     ({"with_prompt": {"guidance": 99.0}}, "guidance"),
                     ({"with_curves": {"with_prompt": {}}}, "only these defaults")):
        with pytest.raises(InvalidRequestError, match=why):
            set_defaults(described, bad)
    with pytest.raises(InvalidRequestError, match="takes none"):
        set_defaults(models / "curvy", {"with_prompt": {"guidance": 2.0}})
    assert (described / "manifest.json").read_text() == before
    set_defaults(described, GENTLE)

    studio = Studio(roots=[models], device="cpu")
    alone = studio.render(GenerationRequest(model="described", label="hat", seed=1, steps=2)).sounds[0]
    assert alone.recipe["guidance"] == 1.5
    prompted = studio.render(GenerationRequest(model="described", label="hat", prompt="a bright hat", seed=1))
    assert (prompted.sounds[0].recipe["guidance"], prompted.sounds[0].recipe["steps"]) == (3.0, 3)
    chosen = studio.render(GenerationRequest(model="described", label="hat", prompt="a bright hat", seed=1,
                                             guidance=2.0, steps=2))
    assert chosen.sounds[0].recipe["guidance"] == 2.0  # the user's setting wins
    kick = studio.render(GenerationRequest(model="described", label="kick", prompt="a kick", seed=1, steps=2))
    assert kick.sounds[0].recipe["guidance"] == label_defaults(studio.describe("described")["defaults"], "kick")[
        "guidance"] != 3.0  # another Sound keeps the model's own
    reference = export_wav(alone.audio, 44100, tmp_path, alone.recipe)  # carries its label, hat
    like = studio.render(GenerationRequest(model="described", reference=str(reference), variation="semantic", seed=1))
    assert (like.sounds[0].recipe["label"], like.sounds[0].recipe["guidance"]) == ("hat", 3.0)

    # the evaluation: the caller's prompt takes the defaults with a prompt, a clip without one does not
    seen = []
    render = pipeline.render
    monkeypatch.setattr(pipeline, "render", lambda *a, **k: seen.append((k["guidance"], k["steps"])) or render(*a, **k))
    model = studio.load(studio.entry("described"))
    vector = studio.embedder(str(described)).text(["a bright hat"])[0]
    generate_clips(model, 1, label="hat", seed=1, conditions=[Conditions(prompt=vector)])
    generate_clips(model, 1, label="hat", seed=1, conditions=[Conditions()])
    alone_steps = label_defaults(studio.describe("described")["defaults"], "hat")["steps"]
    assert seen == [(3.0, 3), (1.5, alone_steps)] and alone_steps != 3


def test_the_command_line_sets_and_uses_the_defaults_with_a_prompt(models, tmp_path):
    _fake_dataset(tmp_path / "data")
    described = _described_model(models, tmp_path / "data")
    result = cli_in_process("defaults", "--model", str(described), "--per-label", json.dumps(GENTLE["per_label"]),
                            "--with-prompt", json.dumps(GENTLE["with_prompt"]))
    assert result.returncode == 0, result.stderr
    refused = cli_in_process("defaults", "--model", str(models / "curvy"), "--with-prompt", '{"guidance": 2}')
    assert refused.returncode == 2 and "takes none" in refused.stderr
    made = cli_in_process("generate", "--model", str(described), "--label", "hat", "--prompt", "a bright hat",
                          "--out", str(tmp_path / "out"))
    assert made.returncode == 0, made.stderr
    recipe = read_recipe(made.stdout.strip().split("\t")[0])
    assert (recipe["guidance"], recipe["steps"]) == (3.0, 3)


def test_a_prompt_picks_its_kit_hit_among_those_its_words_describe(models, hits, tmp_path, monkeypatch):
    """``with_prompt`` shape "kit": a prompted sound takes a real hit drawn among the ones whose
    captions are closest to the prompt (``PROMPT_HITS`` of them), in the studio and the evaluation
    alike; its recipe holds the curves and replays; a bank without captions is refused."""
    from engine import envelopes
    from engine.eval.run import generate_clips
    from tests.test_envelopes import LENGTH, RATE, _Clips

    _fake_dataset(tmp_path / "data")
    described = _described_model(models, tmp_path / "data")
    matched = {"with_prompt": {"per_label": {"hat": {"shape": "kit"}}}}
    envelopes.write_bank(described, envelopes.measure_bank(_Clips(*hits)), RATE, "test hits")  # curves only
    with pytest.raises(InvalidRequestError, match="captions"):
        set_defaults(described, matched)
    made = cli_in_process("envelopes", "--model", str(described), "--data", str(tmp_path / "data"))
    assert made.returncode == 0, made.stderr
    set_defaults(described, matched)
    bank = envelopes.read_bank(described)
    monkeypatch.setattr(envelopes, "PROMPT_HITS", 1)   # the best match only: which one is known

    studio = Studio(roots=[models], device="cpu")
    embedder = studio.embedder(str(described))
    captions = embedder.text([entry["caption"] for entry in bank["hat"]])
    length_ms = 1000.0 * LENGTH / RATE
    best = {}
    for text in ("a bright hat", "a dark closed hi-hat", "soft open hat", "hard short hat", "long hat", "thin hat",
                 "a light mellow hat"):
        request = GenerationRequest(model="described", label="hat", prompt=text, seed=3, steps=2)
        best[text] = int((captions @ studio.prompt_embedding(request)).argmax())
    asked = GenerationRequest(model="described", label="hat", prompt="a bright hat", seed=3)
    assert studio.prompt_embedding(asked) is studio.prompt_embedding(asked.with_(seed=4))  # embedded once
    first = "a bright hat"
    second = next(text for text in best if best[text] != best[first])   # a prompt whose best hit differs

    for text in (first, second):
        request = GenerationRequest(model="described", label="hat", prompt=text, seed=3, count=2, steps=2)
        result = studio.render(request)
        hit = envelopes.draw(bank, "hat", 0, length_ms, [best[text]])
        for sound in result.sounds:
            recipe = sound.recipe
            assert recipe["shape"] == "kit" and recipe["prompt"] == text and recipe["prompt_b"] is None
            assert recipe["rms"] == [list(p) for p in hit.rms]   # every seed: the one best-matching hit
        again = studio.render(GenerationRequest.from_recipe(dict(result.sounds[1].recipe, model="described")))
        assert torch.allclose(again.sounds[0].audio, result.sounds[1].audio, atol=1e-6)

        seen = []
        render = pipeline.render
        monkeypatch.setattr(pipeline, "render", lambda *a, **k: seen.append(a[2].rms) or render(*a, **k))
        vector = studio.prompt_embedding(request)
        generate_clips(studio.load(studio.entry("described")), 1, label="hat", seed=3,
                       conditions=[Conditions(prompt=vector)])
        monkeypatch.setattr(pipeline, "render", render)
        assert seen == [hit.rms]   # the evaluation draws the hit the studio does

    alone = studio.render(GenerationRequest(model="described", label="kick", prompt="a kick", seed=3, steps=2))
    assert alone.sounds[0].recipe["shape"] == "free" and not alone.sounds[0].recipe["rms"]   # another Sound: free
