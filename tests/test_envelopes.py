"""Kit envelopes (engine.envelopes): a real hit's curves shape a label-only sound, drawn by its seed.

On a tiny latent model that follows curves (random weights: these tests check the plumbing, the
design notes measure what it does to a trained model's variety): the bank is measured, stored and
read back; each sound of a request draws its own entry by its seed and records it, so its recipe
replays the same sound; a label's default shape comes from the manifest; the evaluation makes
the sounds the studio makes; every way of asking wrongly is a clear error.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import torch

from engine import envelopes
from engine.conditions import CONTROL_SPECS, LABEL_SPEC, Conditions, curves_from_sound
from engine.data.dataset import DrumDataset
from engine.errors import CheckpointError, InvalidRequestError
from engine.eval.run import ReferenceSet, evaluate
from engine.models import save_model
from engine.nets import build_network
from engine.request import GenerationRequest
from engine.studio import Progress, Result, Studio
from engine.train.publish import set_defaults
from tests.helpers import cli_in_process, perturb_zero_init, synthetic_hit
from tests.test_eval import _fake_dataset
from tests.test_latent import LENGTH, RATE, latent_manifest, make_latent_models


class _Clips:
    """What measure_bank reads of a data set: records with a category, audio, a rate."""

    def __init__(self, audio: torch.Tensor, categories: list[str]):
        self.audio, self.sample_rate = audio, RATE
        self.records = [{"category": c} for c in categories]


@pytest.fixture(scope="module")
def hits() -> tuple[torch.Tensor, list[str]]:
    """Two kicks and two hats of LENGTH samples, and a silent clip (no shape to give)."""
    sounds = [torch.from_numpy(synthetic_hit(kind, seed)[:LENGTH].T.copy()) for kind in ("kick", "hat") for seed in (0, 1)]
    return torch.stack([*sounds, torch.zeros_like(sounds[0])]), ["kick", "kick", "hat", "hat", "hat"]


@pytest.fixture()
def models(tmp_path: Path, hits) -> Path:
    """root/latent (no curves) and root/curvy (label + curves) with its kit envelopes."""
    root = make_latent_models(tmp_path)
    manifest = latent_manifest("curvy")
    manifest["network"]["args"]["controls"] = ["rms", "onsets"]
    manifest["conditioners"] = ["label", "rms", "onsets"]
    manifest["conditions"] = [asdict(spec) for spec in (LABEL_SPEC, *CONTROL_SPECS)]
    torch.manual_seed(0)
    save_model(root / "curvy", perturb_zero_init(build_network(manifest["network"])), manifest)
    envelopes.write_bank(root / "curvy", envelopes.measure_bank(_Clips(*hits)), RATE, "test hits")
    return root


def test_the_bank_holds_each_audible_clips_curves_and_draws_by_seed(models, hits):
    audio, _ = hits
    bank = envelopes.read_bank(models / "curvy")
    assert {label: len(entries) for label, entries in bank.items()} == {"kick": 2, "hat": 2}  # the silent one left out
    measured = [curves_from_sound(audio[i].float(), RATE, envelopes.HOP) for i in (2, 3)]
    length_ms = 1000.0 * LENGTH / RATE
    draws = [envelopes.draw(bank, "hat", seed, length_ms) for seed in range(12)]
    assert draws == [envelopes.draw(bank, "hat", seed, length_ms) for seed in range(12)]  # the same on every call
    assert {(d.rms, d.onsets) for d in draws} == set(measured)  # both hats, each exactly as measured
    assert all(d.caption is None for d in draws)  # a bank measured without captions
    cut_rms, cut_onsets, _ = envelopes.draw(bank, "hat", 0, 50.0)  # a shorter sound: the curve cut at its end
    assert cut_rms[-1][0] <= 50.0 and all(t < 50.0 for t in cut_onsets)
    with pytest.raises(InvalidRequestError, match="no 'snare'"):
        envelopes.draw(bank, "snare", 0, length_ms)
    with pytest.raises(InvalidRequestError, match="no audible clips"):
        envelopes.write_bank(models / "curvy", {}, RATE, "nothing")
    assert envelopes.read_bank(models / "latent") is None
    (models / "latent" / envelopes.BANK_FILE).write_text('{"format": 1, "labels": {"hat": [{"rms": [[5, 9]]}]}}')
    with pytest.raises(CheckpointError, match="damaged"):
        envelopes.read_bank(models / "latent")

    assert envelopes.read_bank(models / "curvy") is bank  # read once per version of the file
    envelopes.write_bank(models / "curvy", {"kick": bank["kick"]}, RATE, "kicks only")
    assert set(envelopes.read_bank(models / "curvy")) == {"kick"}  # a rewritten bank is read again


def test_studio_gives_each_sound_a_kit_envelope_that_its_recipe_replays(models):
    studio = Studio(roots=[models], device="cpu")
    request = GenerationRequest(model="curvy", label="hat", count=3, seed=5, steps=2, shape="kit")
    events = list(studio.generate(request, preview_every=0))
    result = events[-1]
    assert isinstance(result, Result) and len(result.sounds) == 3
    bank, length_ms = envelopes.read_bank(models / "curvy"), 1000.0 * LENGTH / RATE
    for i, sound in enumerate(result.sounds):
        rms, onsets, _ = envelopes.draw(bank, "hat", 5 + i, length_ms)
        assert sound.recipe["seed"] == 5 + i and sound.recipe["shape"] == "kit"
        assert sound.recipe["rms"] == [list(p) for p in rms] and sound.recipe["onsets"] == list(onsets)
    steps = [e for e in events if isinstance(e, Progress)]
    assert steps[-1].step == steps[-1].total == 3 * 2  # one progress bar over the three sounds
    again = studio.render(GenerationRequest.from_recipe(dict(result.sounds[1].recipe, model="curvy")))
    assert torch.allclose(again.sounds[0].audio, result.sounds[1].audio, atol=1e-6)
    free = studio.render(request.with_(shape="free", count=1))
    assert free.sounds[0].recipe["rms"] is None and free.sounds[0].recipe["shape"] == "free"
    assert not torch.allclose(free.sounds[0].audio, result.sounds[0].audio, atol=1e-4)  # the curve reaches the sound
    drawn = studio.render(request.with_(count=1, rms=((0, -6), (60, -40)))).sounds[0].recipe
    assert drawn["rms"] == [[0.0, -6.0], [60.0, -40.0]]  # a drawn curve wins over the kit's
    # a recipe from before shapes existed was made free and replays so
    old = GenerationRequest.from_recipe({k: v for k, v in result.sounds[0].recipe.items() if k not in ("shape", "rms", "onsets")})
    assert old.shape == "free"


def test_a_label_takes_its_default_shape_from_the_manifest_and_the_evaluation_follows(models, hits):
    studio = Studio(roots=[models], device="cpu")
    with pytest.raises(InvalidRequestError, match="kit envelopes"):
        set_defaults(models / "latent", {"per_label": {"hat": {"shape": "kit"}}})
    set_defaults(models / "curvy", {"per_label": {"hat": {"shape": "kit"}}})
    hat = studio.render(GenerationRequest(model="curvy", label="hat", seed=2, steps=2)).sounds[0].recipe
    kick = studio.render(GenerationRequest(model="curvy", label="kick", seed=2, steps=2)).sounds[0].recipe
    assert hat["shape"] == "kit" and hat["rms"] and kick["shape"] == "free" and kick["rms"] is None

    audio, categories = hits
    real = ReferenceSet(audio[:4], categories[:4], RATE)
    common = dict(count=2, steps=2, models_root=models, real=real, holdout=real, progress=False, labels=["hat"])
    shaped, free = evaluate("curvy", **common), evaluate("curvy", shape="free", **common)
    assert shaped["hat.frechet"] != free["hat.frechet"]
    with pytest.raises(InvalidRequestError, match="no kit envelopes"):
        evaluate("latent", shape="kit", **common)


def test_a_sound_alone_on_a_kit_hit_takes_its_own_defaults_and_a_drawn_curve_those_with_curves(models, monkeypatch):
    """A kit hit only shapes a Sound asked alone: it samples at the Sound's own guidance, where the
    same Sound with a curve the user draws takes its defaults with curves (`latent-fast`'s
    percussion: 6.5 alone, 10 with a curve); the evaluation makes its sounds the same way."""
    from engine import pipeline
    from engine.eval.run import generate_clips
    from engine.models import load_model

    set_defaults(models / "curvy", {"per_label": {"hat": {"shape": "kit", "guidance": 2.0}},
                                    "with_curves": {"per_label": {"hat": {"guidance": 3.0}}}})
    studio = Studio(roots=[models], device="cpu")
    alone = studio.render(GenerationRequest(model="curvy", label="hat", seed=2, steps=2)).sounds[0].recipe
    drawn = studio.render(GenerationRequest(model="curvy", label="hat", seed=2, steps=2,
                                            rms=((0.0, -6.0), (150.0, -40.0)))).sounds[0].recipe
    assert alone["shape"] == "kit" and alone["rms"] and alone["guidance"] == 2.0
    assert drawn["guidance"] == 3.0

    asked = []
    render = pipeline.render
    monkeypatch.setattr(pipeline, "render", lambda *a, **k: asked.append(k["guidance"]) or render(*a, **k))
    model = load_model(models / "curvy")
    generate_clips(model, 2, label="hat", seed=2, steps=2)
    generate_clips(model, 1, label="hat", seed=2, steps=2,
                   conditions=[Conditions(rms=((0.0, -6.0), (150.0, -40.0)))])
    assert asked == [2.0, 2.0, 3.0]


def test_a_kit_hit_drawn_wider_moves_each_point_away_from_the_labels_median_shape():
    """Each point of the hit's curve, in dB under its peak, lies ``spread`` times as far from the
    label's median shape as it did; the peak, the point times and the floor hold."""
    entries = [{"rms": [[0.0, -10.0], [100.0, -30.0], [200.0, -50.0]]},   # peak -10: -20, -40 under it
               {"rms": [[0.0, -6.0], [100.0, -16.0], [200.0, -36.0]]},    # -10, -30 under its peak
               {"rms": [[0.0, -20.0], [100.0, -26.0], [300.0, -70.0]]}]   # -6, then -50 at 300 ms
    times, median = envelopes.median_shape(entries)
    assert envelopes.median_shape(entries)[1] is median  # once per bank's list of hits
    assert times[0] == 0.0 and times[-1] >= 300.0 and times[1] - times[0] == envelopes.SHAPE_GRID_MS
    assert median[0] == 0.0 and median[list(times).index(100.0)] == pytest.approx(-10.0)  # of -20, -10, -6
    hit = entries[0]["rms"]
    assert envelopes.widen(hit, (times, median), 1.0) == tuple(tuple(p) for p in hit)
    wide = envelopes.widen(hit, (times, median), 1.5)
    assert [t for t, _ in wide] == [0.0, 100.0, 200.0] and wide[0][1] == -10.0  # the peak stays
    assert wide[1][1] == pytest.approx(-10.0 + -10.0 + 1.5 * (-20.0 + 10.0))  # 10 dB under the median -> 15
    assert all(a[1] <= b[1] for a, b in zip(wide, hit))  # a fast hit falls faster
    typical = envelopes.widen(hit, (times, median), 0.0)
    assert typical[1][1] == pytest.approx(-10.0 + -10.0)  # spread 0: the median shape at the hit's level
    quiet = envelopes.widen([[0.0, -65.0], [100.0, -79.0]], (times, median), 2.0)
    assert quiet == ((0.0, -65.0), (100.0, -80.0))  # 18 dB under its peak: held at the floor
    held = envelopes.widen([[0.0, -20.0], [100.0, -22.0]], (times, median), 2.0)
    assert held == ((0.0, -20.0), (100.0, -20.0))  # 8 dB over the median, twice: held at the peak


def test_a_kit_hit_drawn_wider_rises_again_no_further_than_the_kit_played_it():
    """A tail's flicker drawn twice as far from the median was a second hit; a played second hit stays."""
    times = np.arange(0.0, 505.0, 5.0)
    median = (times, -times / 10.0)                                   # a steady decay: 10 dB per 100 ms
    flicker = [[0.0, 0.0], [100.0, -30.0], [120.0, -24.0], [140.0, -34.0], [300.0, -50.0]]  # rises 6 dB
    wide = envelopes.widen(flicker, median, 2.0)
    levels = [db for _, db in wide]
    rises = [later - min(levels[:i + 1]) for i, later in enumerate(levels[1:], 1)]
    assert max(rises) <= 6.0 + 1e-6, wide                            # drawn freely: -50 -> -28, 22 dB
    assert levels[1] == pytest.approx(-50.0) and levels[-1] == pytest.approx(-70.0)  # the decay still wider
    roll = [[0.0, 0.0], [100.0, -30.0], [110.0, -2.0], [300.0, -40.0]]  # a second hit 28 dB up, played
    assert envelopes.widen(roll, median, 2.0)[2][1] == pytest.approx(-50.0 + 28.0)
    assert np.array_equal(envelopes.hold_rises(np.array([-1.0, 0.0, -9.0, -3.0]), np.array([-1.0, 0.0, -9.0, -3.0])),
                          [-1.0, 0.0, -9.0, -3.0])                    # the hit itself, as it was


def test_consecutive_seeds_deal_every_kit_hit_once_before_any_comes_again():
    """Any run of as many consecutive seeds as the label has hits (or as the prompt left
    candidates) draws each hit once, whatever seed it starts at; neighbouring seeds are not the
    bank's neighbouring hits; and the same seed draws the same hit on every call."""
    entries = [{"rms": [[0.0, -6.0], [100.0, -20.0 - i]], "onsets": [0.0], "caption": f"hat {i}"} for i in range(23)]
    bank = {"hat": entries}
    for first in (-5, 0, 17, 1000, 2047):
        drawn = [envelopes.draw(bank, "hat", first + i, 1000.0).caption for i in range(len(entries))]
        assert sorted(drawn) == sorted(e["caption"] for e in entries), first
    places = [envelopes.deal(seed, len(entries)) for seed in range(len(entries))]
    assert places != sorted(places) and places == [envelopes.deal(s, len(entries)) for s in range(len(entries))]
    assert envelopes.deal(5, 23) == envelopes.deal(5 + 23, 23)  # the deck comes round again
    with pytest.raises(ValueError, match="deals nothing"):
        envelopes.deal(5, 0)
    chosen = [3, 8, 9, 15, 22]
    dealt = {envelopes.draw(bank, "hat", 40 + i, 1000.0, chosen).caption for i in range(len(chosen))}
    assert dealt == {f"hat {i}" for i in chosen}


def test_a_labels_kit_spread_widens_a_sound_alone_and_its_recipe_replays_it(models, monkeypatch):
    """The label's ``kit_spread`` default draws a Sound asked alone on a wider curve; the studio and
    the evaluation draw the same, the recipe holds what was drawn, and a bad value is refused."""
    from engine.eval.run import generate_clips
    from engine.models import load_model

    set_defaults(models / "curvy", {"per_label": {"hat": {"shape": "kit", "kit_spread": 1.5}}})
    studio = Studio(roots=[models], device="cpu")
    bank, length_ms = envelopes.read_bank(models / "curvy"), 1000.0 * LENGTH / RATE
    sound = studio.render(GenerationRequest(model="curvy", label="hat", seed=3, steps=2)).sounds[0]
    plain = envelopes.draw(bank, "hat", 3, length_ms)
    wide = envelopes.draw(bank, "hat", 3, length_ms, spread=1.5)
    assert wide.rms != plain.rms and [t for t, _ in wide.rms] == [t for t, _ in plain.rms]
    assert sound.recipe["rms"] == [list(p) for p in wide.rms]
    manifest = load_model(models / "curvy").manifest
    assert envelopes.kit_spread(manifest, "hat") == 1.5 and envelopes.kit_spread(manifest, "kick") == 1.0
    assert envelopes.kit_curves(models / "curvy", manifest, "hat", 3, 1, length_ms)[0] == wide
    again = studio.render(GenerationRequest.from_recipe(dict(sound.recipe, model="curvy")))
    assert torch.allclose(again.sounds[0].audio, sound.audio, atol=1e-6)

    asked, drawn = [], envelopes.draw
    monkeypatch.setattr(envelopes, "draw", lambda *a: asked.append(a[5]) or drawn(*a))
    generate_clips(load_model(models / "curvy"), 1, label="hat", seed=3, steps=2)
    assert asked == [1.5]  # the evaluation draws as the studio
    for bad in (-0.5, 3.5, True, "wide"):
        with pytest.raises(InvalidRequestError, match="kit_spread"):
            set_defaults(models / "curvy", {"per_label": {"hat": {"kit_spread": bad}}})
    with pytest.raises(InvalidRequestError, match="not in --with-curves"):
        set_defaults(models / "curvy", {"with_curves": {"per_label": {"hat": {"kit_spread": 1.2}}}})


def test_asking_for_a_kit_shape_wrongly_is_a_clear_error(models):
    studio = Studio(roots=[models], device="cpu")
    with pytest.raises(InvalidRequestError, match="shape must be one of"):
        GenerationRequest(model="curvy", shape="wobbly").validated()
    with pytest.raises(InvalidRequestError, match="does not follow curves"):
        studio.render(GenerationRequest(model="latent", label="hat", steps=2, shape="kit"))
    with pytest.raises(InvalidRequestError, match="choose a Sound"):
        studio.render(GenerationRequest(model="curvy", steps=2, shape="kit"))
    (models / "curvy" / envelopes.BANK_FILE).unlink()
    with pytest.raises(InvalidRequestError, match="python -m engine envelopes"):
        studio.render(GenerationRequest(model="curvy", label="hat", steps=2, shape="kit"))


def test_cli_stores_the_envelopes_and_generates_with_them(models, tmp_path):
    _fake_dataset(tmp_path / "data")
    (models / "curvy" / envelopes.BANK_FILE).unlink()
    made = cli_in_process("envelopes", "--model", str(models / "curvy"), "--data", str(tmp_path / "data"))
    assert made.returncode == 0, made.stderr
    assert "hat 6, kick 6, snare 6" in made.stdout  # the train split only
    assert set(json.loads((models / "curvy" / envelopes.BANK_FILE).read_text())["labels"]) == {"hat", "kick", "snare"}
    out = tmp_path / "out"
    done = cli_in_process("generate", "--model", str(models / "curvy"), "--label", "snare", "--shape", "kit",
                          "--steps", "2", "--count", "2", "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert len(list(out.glob("*.wav"))) == 2
    refused = cli_in_process("envelopes", "--model", str(models / "latent"), "--data", str(tmp_path / "data"))
    assert refused.returncode == 2 and "does not follow" in refused.stderr


def _described_model(root: Path, data_root: Path) -> Path:
    """root/described: curvy's conditions plus a prompt, beside a random tiny text–audio model."""
    from engine.conditions import PROMPT_SPEC
    from tests.test_prompts import TINY_CLAP, make_tiny_embedder
    make_tiny_embedder(root / "tiny-clap", DrumDataset(data_root, "train"))
    manifest = latent_manifest("described")
    manifest["network"]["args"].update(controls=["rms", "onsets"], embeddings={"prompt": TINY_CLAP["dim"]})
    manifest["conditioners"] = ["label", "rms", "onsets", "prompt"]
    manifest["conditions"] = [asdict(spec) for spec in (LABEL_SPEC, *CONTROL_SPECS, PROMPT_SPEC)]
    manifest["embedder"] = {"model": "tiny-clap", "dim": TINY_CLAP["dim"]}
    torch.manual_seed(0)
    save_model(root / "described", perturb_zero_init(build_network(manifest["network"])), manifest)
    return root / "described"


def test_a_label_with_a_hit_prompt_takes_its_kit_hits_description_as_well_as_its_shape(models, hits, tmp_path):
    """hit_prompt w: a sound on a kit hit is prompted with the hit's caption morphed by 1 - w towards
    the label's own prompt; the recipe holds the three prompt fields and replays the sound; a user's
    prompt wins; the evaluation makes the same sounds; every wrong setting is refused."""
    from engine.data.captions import named_category
    from engine.eval.run import generate_clips
    from engine.models import load_model
    _fake_dataset(tmp_path / "data")
    described = _described_model(models, tmp_path / "data")
    envelopes.write_bank(described, envelopes.measure_bank(_Clips(*hits)), RATE, "test hits")  # curves only
    hat = {"per_label": {"hat": {"shape": "kit", "hit_prompt": 0.5}}}
    with pytest.raises(InvalidRequestError, match="captions"):
        set_defaults(described, hat)
    with pytest.raises(InvalidRequestError, match="does not take prompts"):
        set_defaults(models / "curvy", hat)
    for bad in (2, -0.1, "half", True, [0.5]):
        with pytest.raises(InvalidRequestError, match="from 0 to 1"):
            set_defaults(described, {"per_label": {"hat": {"hit_prompt": bad}}})
    with pytest.raises(InvalidRequestError, match="not in --with-curves"):  # it would have no effect there
        set_defaults(described, {"with_curves": {"per_label": {"hat": {"hit_prompt": 0.5}}}})

    made = cli_in_process("envelopes", "--model", str(described), "--data", str(tmp_path / "data"))
    assert made.returncode == 0, made.stderr
    bank = envelopes.read_bank(described)
    assert all(named_category(e["caption"]) == label for label, entries in bank.items() for e in entries)
    set_defaults(described, hat)
    studio = Studio(roots=[models], device="cpu")
    request = GenerationRequest(model="described", label="hat", seed=3, count=2, steps=2)
    result = studio.render(request)
    length_ms = 1000.0 * LENGTH / RATE
    for i, sound in enumerate(result.sounds):
        hit = envelopes.draw(bank, "hat", 3 + i, length_ms)
        recipe = sound.recipe
        assert (recipe["prompt"], recipe["prompt_b"], recipe["prompt_morph"]) == (hit.caption, "a hi-hat", 0.5)
        assert recipe["rms"] == [list(p) for p in hit.rms] and recipe["label"] == "hat" and recipe["shape"] == "kit"
        again = studio.render(GenerationRequest.from_recipe(dict(recipe, model="described")))
        assert torch.allclose(again.sounds[0].audio, sound.audio, atol=1e-6)

    mine = studio.render(request.with_(prompt="dark hi-hat", shape="kit")).sounds[0].recipe
    assert mine["prompt"] == "dark hi-hat" and mine["prompt_b"] is None and mine["rms"]  # the user's prompt wins
    kick = studio.render(request.with_(label="kick", count=1)).sounds[0].recipe
    assert kick["prompt"] is None and kick["shape"] == "free"  # only the label that asks for it

    model = load_model(described)
    with_prompt = generate_clips(model, 2, label="hat", seed=3)
    set_defaults(described, {"per_label": {"hat": {"shape": "kit", "hit_prompt": 0}}})
    bare = Studio(roots=[models], device="cpu").render(request)  # a studio reads the defaults when it loads the model
    assert bare.sounds[0].recipe["prompt"] is None
    assert not torch.allclose(bare.sounds[0].audio, result.sounds[0].audio, atol=1e-4)  # the description reaches the sound
    without = generate_clips(load_model(described), 2, label="hat", seed=3)
    assert not torch.allclose(with_prompt, without, atol=1e-4)  # and the evaluation's sound


def test_a_model_captions_its_kit_hits_by_the_thresholds_it_was_trained_with(models, tmp_path):
    """A model trained since session 44 records its caption thresholds (its embedder's, completed with a
    hat's thinness): its kit hits are captioned by them, so a hat it learned as "thin" is dealt as one.
    A model without that record captions by its embedder's, as it always did."""
    from engine.data.captions import says
    _fake_dataset(tmp_path / "data")
    described = _described_model(models, tmp_path / "data")
    recorded = json.loads((models / "tiny-clap" / "manifest.json").read_text())["captions"]["thresholds"]

    def hat_captions(groups_low_mid):
        manifest = json.loads((described / "manifest.json").read_text())
        groups = {group: {**{k: v for k, v in entry.items() if k != "low_mid_share"},
                          **({"low_mid_share": groups_low_mid} if groups_low_mid else {})}
                  for group, entry in recorded["groups"].items()}
        manifest["captions"] = {"thresholds": {**recorded, "groups": groups}}
        (described / "manifest.json").write_text(json.dumps(manifest))
        made = cli_in_process("envelopes", "--model", str(described), "--data", str(tmp_path / "data"))
        assert made.returncode == 0, made.stderr
        return [entry["caption"] for entry in envelopes.read_bank(described)["hat"]]

    assert all(says(caption, "thin") for caption in hat_captions([2.0, 3.0]))   # every share is under 2
    assert not any(says(caption, "thin") for caption in hat_captions(None))    # thresholds without the measure


def test_the_shipped_fast_model_describes_a_percussion_hit_by_its_kit_hit():
    """`latent-fast`'s percussion takes a kit hit's shape and, 60 % of the way, its caption (a tom,
    a clap, a shaker...); its snares and hats take the shape and the caption whole, the hats' shape
    drawn wider than the hit's own; a recipe replays the described hit."""
    root = Path(__file__).resolve().parents[1] / "checkpoints"
    studio = Studio(roots=[root], device="cpu")
    bank = envelopes.read_bank(root / "latent-fast")
    assert envelopes.has_captions(bank, "perc")
    perc = studio.render(GenerationRequest(model="latent-fast", label="perc", seed=7, length=0.5))
    manifest = studio.entry("latent-fast").manifest
    hit = envelopes.kit_curves(root / "latent-fast", manifest, "perc", 7, 1, 500.0)[0]
    recipe = perc.sounds[0].recipe
    assert (recipe["prompt"], recipe["prompt_b"], recipe["prompt_morph"]) == (hit.caption, "a percussion", 0.4)
    assert recipe["rms"] == [list(p) for p in hit.rms] and perc.sounds[0].score is not None
    snare = studio.render(GenerationRequest(model="latent-fast", label="snare", seed=7, length=0.5)).sounds[0].recipe
    assert snare["shape"] == "kit" and snare["prompt"] == envelopes.draw(bank, "snare", 7, 500.0).caption
    assert snare["prompt_b"] is None
    hat = studio.render(GenerationRequest(model="latent-fast", label="hat", seed=7, length=0.5)).sounds[0].recipe
    wide = envelopes.draw(bank, "hat", 7, 500.0, spread=envelopes.kit_spread(manifest, "hat"))
    assert hat["shape"] == "kit" and (hat["prompt"], hat["prompt_b"]) == (wide.caption, None) and wide.caption
    assert hat["rms"] == [list(p) for p in wide.rms] != [list(p) for p in envelopes.draw(bank, "hat", 7, 500.0).rms]
    again = studio.render(GenerationRequest.from_recipe(recipe))
    assert torch.allclose(again.sounds[0].audio, perc.sounds[0].audio, atol=1e-5)


def test_the_command_line_says_which_kit_hit_described_a_sound(tmp_path):
    done = cli_in_process("generate", "--model", "latent-fast", "--label", "perc", "--seed", "7", "--length", "0.5",
                          "--out", str(tmp_path))
    assert done.returncode == 0, done.stderr
    bank = envelopes.read_bank(Path(__file__).resolve().parents[1] / "checkpoints" / "latent-fast")
    path, score, caption = done.stdout.strip().split("\t")
    assert caption == envelopes.draw(bank, "perc", 7, 500.0).caption and score.startswith("score ")
    assert Path(path).is_file()


class _WordCounter:
    """A text embedder that ranks captions by one word's count (a stand-in for the text tower that
    puts "short" kits near "long kick", as the real one does)."""

    def __init__(self, word: str):
        self.word = word

    def text(self, texts):
        return torch.tensor([[float(t.split().count(self.word)), 1.0] for t in texts])


def test_a_prompts_descriptor_words_keep_its_kit_hits_on_their_side_of_the_scale():
    """"long kick": the hits that say short are left out before the ranking picks the top; a word
    whose opposite would leave fewer than AGREEING_HITS hits is passed over; no words ranks as before."""
    captions = [*("short dark kick kick" for _ in range(5)), *("long kick" for _ in range(5)),
                *("boomy kick" for _ in range(3)), "soft long kick"]
    bank = {"kick": [{"rms": [[0, -6], [100, -40]], "onsets": [0], "caption": c} for c in captions]}
    near_short = _WordCounter("kick")  # ranks the short kicks' captions first
    vector = torch.tensor([1.0, 0.0])
    assert envelopes.prompt_candidates(bank, "kick", near_short, vector, top=5) == [0, 1, 2, 3, 4]
    long_ones = envelopes.prompt_candidates(bank, "kick", near_short, vector, top=9, words=("long",))
    assert long_ones == list(range(5, 14))  # every hit but the short ones
    # "hard": leaving out the one soft hit keeps 13; "punchy" has no opposite
    assert envelopes.prompt_candidates(bank, "kick", near_short, vector, top=14, words=("hard", "punchy")) == \
        list(range(13))
    few = {"kick": bank["kick"][:6]}  # five dark kicks and a long one: leaving out "dark" would leave one
    assert envelopes.prompt_candidates(few, "kick", near_short, vector, top=6, words=("bright",)) == list(range(6))


def test_the_studio_draws_no_short_kit_hit_for_a_long_kick():
    """On the shipped `latent-fast`, "long kick" takes no kit hit captioned short, whatever the seed
    (its text tower alone ranks some short kicks' captions among the top 16); the recipe names the hit's curves."""
    from engine.data.captions import says
    root = Path(__file__).resolve().parents[1] / "checkpoints"
    studio = Studio(roots=[root], device="cpu")
    bank = envelopes.read_bank(root / "latent-fast")
    request = GenerationRequest(model="latent-fast", prompt="long kick", seed=510, count=1, length=0.5, steps=12)
    vector = studio.prompt_embedding(request)
    ranked = envelopes.prompt_candidates(bank, "kick", studio.embedder("latent-fast"), vector)
    assert any(says(bank["kick"][i]["caption"], "short") for i in ranked)  # what the words are there for
    agreeing = envelopes.prompt_candidates(bank, "kick", studio.embedder("latent-fast"), vector, words=("long",))
    assert not any(says(bank["kick"][i]["caption"], "short") for i in agreeing)
    for i, sound in enumerate(studio.render(request).sounds):
        # the one short kick among the 16 is this seed's draw (its place in the deck, envelopes.deal)
        assert says(envelopes.draw(bank, "kick", 510 + i, 500.0, ranked).caption, "short")
        hit = envelopes.draw(bank, "kick", 510 + i, 500.0, agreeing)
        assert sound.recipe["rms"] == [list(p) for p in hit.rms] and not says(hit.caption, "short")
    # a morph takes the words of the prompt it lies nearer: most of the way to "long kick", long
    morph = request.with_(prompt="short kick", prompt_b="long kick", prompt_morph=0.8, count=1)
    nearer_long = envelopes.prompt_candidates(bank, "kick", studio.embedder("latent-fast"),
                                              studio.prompt_embedding(morph), words=("long",))
    hit = envelopes.draw(bank, "kick", 510, 500.0, nearer_long)
    assert studio.render(morph).sounds[0].recipe["rms"] == [list(p) for p in hit.rms]


def test_a_hybrid_is_made_on_its_own_shape_not_its_first_labels_kit_hit():
    """A blend of two labels takes no kit hit unless asked: the hit is one label's real hit and its
    caption that label's words (`latent-fast`'s hats take both), so a hat->cymbal blend came back as
    a hat. The same Sound alone still takes its hit, and a user who asks for a kit shape gets it."""
    from engine.sampling import default_shape

    root = Path(__file__).resolve().parents[1] / "checkpoints"
    studio = Studio(roots=[root], device="cpu")
    defaults = studio.entry("latent-fast").manifest["defaults"]
    assert default_shape(defaults, "hat") == "kit" and default_shape(defaults, "hat", hybrid=True) == "free"
    assert default_shape(defaults, "hat", prompt=True, hybrid=True) == default_shape(defaults, "hat", prompt=True)
    asked = GenerationRequest(model="latent-fast", label="hat", label_b="cymbal", label_mix=0.7, seed=7, length=0.5,
                              steps=4)
    hybrid = studio.render(asked).sounds[0].recipe
    assert hybrid["shape"] == "free" and hybrid["rms"] is None and hybrid["prompt"] is None
    assert (hybrid["label_b"], hybrid["label_mix"]) == ("cymbal", 0.7)
    alone = studio.render(asked.with_(label_b=None, label_mix=0.0)).sounds[0].recipe
    assert alone["shape"] == "kit" and alone["prompt"]
    shaped = studio.render(asked.with_(shape="kit")).sounds[0].recipe
    assert shaped["shape"] == "kit" and shaped["rms"]
