"""One hit (engine.steering.one_hit_projection): a sound asked as one hit is held, as it forms, from
rising again after its peak by more than its model's limit; a drawn curve's frames, two hits and
variations that keep their reference's shape are left alone; the request, the recipe, the CLI
and ``engine defaults`` carry it; and the evaluation judges sounds with the studio's own fade."""

from __future__ import annotations

import json
import shutil
from types import SimpleNamespace

import pytest
import soundfile
import torch

from engine.conditions import Conditions
from engine.errors import InvalidRequestError
from engine.eval.metrics import second_rises
from engine.nets.autoencoder import AudioAutoencoder
from engine.nets.envelope import reattacks
from engine.pipeline import one_hit_limit
from engine.request import GenerationRequest
from engine.steering import ONE_HIT_RANGE_DB, latent_rms_db, one_hit_projection
from tests.helpers import assert_defaults_refused, cli_in_process, shipped_latent_fast
from tests.test_controls import RATE, burst
from tests.test_steering import codec
from tests.ui_support import controls, handlers, run_generate, settings, studio  # noqa: F401  (fixtures)

SECOND_MS = 300.0


def rise_after_peak(db: torch.Tensor) -> float:
    """How far a level trace (dB per frame) rises again after its peak, read as the projection reads it."""
    floored = torch.maximum(db, db.max() - ONE_HIT_RANGE_DB)
    return float(reattacks(floored[None, None])[0, 0])


def double_hit() -> torch.Tensor:
    """(1, 2, N): a hit that decays ~60 dB, then a second one 26 dB under it at 300 ms."""
    return (burst(0, seconds=0.6, decay_s=0.02) + burst(SECOND_MS, seconds=0.6, decay_s=0.02, gain=0.025, seed=2))[None]


def test_a_second_hit_is_held_to_the_limit_and_the_hit_before_it_is_kept():
    model = codec()
    with torch.no_grad():
        latent = model.encode(double_hit())
        frames = latent.shape[-1]
        project = one_hit_projection(model, 6.0, None, frames, RATE)
        held = project(latent, torch.tensor(10.0))
        before, after = latent_rms_db(model, latent)[0], latent_rms_db(model, held)[0]
        second = int(SECOND_MS / 1000 * RATE / model.hop)
        assert rise_after_peak(before) > 30.0 and rise_after_peak(after) < 10.0, (rise_after_peak(before),
                                                                                 rise_after_peak(after))
        assert torch.allclose(held[..., : second - 4], latent[..., : second - 4], atol=1e-5)  # attack, peak, decay
        learned = model.channel_groups()["learned"]
        assert torch.equal(held[:, learned], latent[:, learned])  # only the channels that say the loudness move
        assert torch.allclose(project(latent, torch.tensor(0.01)), held, atol=1e-5)  # to the last step
        single = model.encode(burst(0, seconds=0.6, decay_s=0.02)[None])
        assert torch.allclose(project(single, torch.tensor(10.0)), single, atol=1e-5)  # a plain decay: as it was
        # a curve drawn over the second hit says its loudness there: the network's own
        over = one_hit_projection(model, 6.0, ((0, -10), (600, -40)), frames, RATE)(latent, torch.tensor(10.0))
        assert torch.allclose(over, latent, atol=1e-5)
        # a curve that ends before it (a real kit hit's) leaves it open: held
        short = one_hit_projection(model, 6.0, ((0, -10), (150, -60)), frames, RATE)(latent, torch.tensor(10.0))
        assert rise_after_peak(latent_rms_db(model, short)[0]) < 10.0
        # decoded, the second hit is gone
        tail = slice(int(0.29 * RATE), int(0.4 * RATE))
        loud = lambda audio: float(audio[..., tail].pow(2).mean().sqrt())  # noqa: E731
        assert loud(model.decode(held)) < 0.1 * loud(model.decode(latent))
    assert one_hit_projection(model, None, None, frames, RATE) is None
    plain = AudioAutoencoder(bands=8, widths=(16, 16), factors=(4,), latent_channels=8, units=1, kernel=5)
    assert one_hit_projection(plain, 6.0, None, frames, RATE) is None  # nothing says its loudness


def test_a_sound_is_held_by_its_labels_limit_and_two_hits_are_two_hits():
    defaults = {"one_hit_db": 10.0, "per_label": {"perc": {"one_hit_db": 20.0}}}
    model = SimpleNamespace(manifest={"labels": ["kick", "perc"], "defaults": defaults}, codec=codec())
    assert one_hit_limit(model, Conditions(label=0)) == 10.0
    assert one_hit_limit(model, Conditions(label=1, onsets=(0.0,))) == 20.0
    assert one_hit_limit(model, Conditions(label=0, rms=((0, -6), (100, -40)), onsets=(0.0,))) == 10.0
    assert one_hit_limit(model, Conditions(label=0, onsets=(0.0, 250.0))) is None
    assert one_hit_limit(SimpleNamespace(manifest={"labels": ["kick"], "defaults": {}}, codec=codec()),
                         Conditions(label=0)) is None
    plain = AudioAutoencoder(bands=8, widths=(16, 16), factors=(4,), latent_channels=8, units=1, kernel=5)
    assert one_hit_limit(SimpleNamespace(manifest=model.manifest, codec=plain), Conditions(label=0)) is None


@pytest.mark.numeric
def test_the_shipped_latent_models_kicks_come_back_with_one_hit():
    """`latent-fast`'s kicks asked alone (seeds 1000-1007): let rise as the network makes them, most
    hit again after their tail (up to ~45 dB); held, none rises more than its limit allows."""
    from engine.studio import Studio

    studio = Studio(device="cpu")
    request = GenerationRequest(model="latent-fast", label="kick", count=8, seed=1000)
    held = studio.render(request).sounds
    free = studio.render(request.with_(one_hit=False)).sounds
    held_db = second_rises(torch.stack([s.audio for s in held]))
    free_db = second_rises(torch.stack([s.audio for s in free]))
    assert int((free_db > 20.0).sum()) >= 3 and float(held_db.max()) < 14.0, (free_db, held_db)
    assert all(s.recipe["one_hit"] is True and s.recipe["one_hit_db"] == 10.0 for s in held)
    assert all(s.recipe["one_hit"] is False and "one_hit_db" not in s.recipe for s in free)


def test_the_request_recipe_and_cli_carry_the_switch(tmp_path):
    from engine.audio import read_recipe

    request = GenerationRequest(model="latent-fast", label="kick")
    assert request.one_hit is True and GenerationRequest.from_recipe(request.to_recipe()).one_hit is True
    old = {k: v for k, v in request.to_recipe().items() if k != "one_hit"}
    assert GenerationRequest.from_recipe(old).one_hit is False  # made before: replays without
    with pytest.raises(InvalidRequestError, match="one_hit must be true or false"):
        GenerationRequest(one_hit="yes").validated()
    common = ("generate", "--model", "latent-fast", "--label", "kick", "--length", "0.3", "--out", str(tmp_path))
    recipes, made_at = {}, {}
    for name, extra in (("held", ()), ("free", ("--allow-second-hits",)), ("two", ("--onsets", "0,150"))):
        result = cli_in_process(*common, *extra)
        assert result.returncode == 0, result.stderr
        made_at[name] = result.stdout.strip().splitlines()[-1]
        recipes[name] = read_recipe(made_at[name])
    assert recipes["held"]["one_hit"] is True and recipes["held"]["one_hit_db"] == 10.0
    assert recipes["free"]["one_hit"] is False and "one_hit_db" not in recipes["free"]
    assert "one_hit_db" not in recipes["two"]  # two hits are two hits
    # a variation that keeps its reference's shape keeps its second hits too; "more like this" is held
    wav = made_at["held"]  # one hit (not the first file a glob finds: the two-hit one may come first)
    for variation, held in (("noise", False), ("semantic", True)):
        result = cli_in_process("generate", "--model", "latent-fast", "--reference", str(wav), "--variation",
                                variation, "--length", "0.3", "--out", str(tmp_path / variation))
        assert result.returncode == 0, result.stderr
        made = result.stdout.strip().splitlines()[-1].split("\t")[0]  # "more like this" prints its score too
        assert ("one_hit_db" in read_recipe(made)) is held, variation


def test_only_a_latent_model_whose_codec_says_its_loudness_takes_a_limit(tmp_path, tiny_models):
    from engine.models import read_manifest

    folder = shipped_latent_fast(tmp_path / "models")
    result = cli_in_process("defaults", "--model", str(folder), "--per-label", json.dumps({"cymbal": {"one_hit_db": 6}}))
    assert result.returncode == 0, result.stderr
    assert read_manifest(folder)["defaults"]["per_label"]["cymbal"]["one_hit_db"] == 6
    assert_defaults_refused(folder, (["--one-hit-db", "0"], ["--one-hit-db", "61"],
                                     ["--per-label", '{"kick": {"one_hit_db": "x"}}'],
                                     ["--per-label", '{"kick": {"one_hit_db": true}}'],
                                     ["--with-curves", '{"per_label": {"kick": {"one_hit_db": 6}}}']), "one_hit_db")
    waveform = shutil.copytree(tiny_models / "tiny", tmp_path / "tiny")
    refused = cli_in_process("defaults", "--model", str(waveform), "--one-hit-db", "10")
    assert refused.returncode == 2 and "not latent" in refused.stderr, refused.stderr


def test_the_evaluation_judges_a_sound_with_the_studios_fade():
    from engine.eval.run import studio_fade_ms, studio_output
    from engine.models import read_manifest

    assert studio_fade_ms(read_manifest("checkpoints/latent-fast")) == 250.0  # a latent model's release
    assert studio_fade_ms(read_manifest("checkpoints/drums")) == 5.0         # a waveform model's click guard
    steady = torch.full((1, 2, RATE), 0.1)
    end = slice(RATE - int(0.007 * RATE), RATE)  # where a latent model's edge click sits
    short, long = (studio_output(steady, RATE, fade_ms)[..., end] for fade_ms in (5.0, 250.0))
    assert float(short.pow(2).mean().sqrt()) > 0.03 and float(long.abs().max()) < 0.001  # 5 ms leaves it; 250 hides it


def test_the_pages_one_hit_box_reaches_the_sound_and_comes_back_with_it(handlers):
    """The *One clean hit* box: shown for a model that holds sounds to one hit, ticked by default;
    unticked, the sound is made as the network makes it; a dropped WAV and a preset bring it back, and
    a recipe from before it existed comes back unticked (it was made so)."""
    assert handlers.describe_model("latent-fast")["one_hit"]["visible"] is True
    assert handlers.describe_model("kick")["one_hit"]["visible"] is False  # a waveform model: nothing to hold
    kick = dict(model="latent-fast", label="kick", sampler="dpmpp_2m", steps=12, guidance=6.5, length=1.0, seed=1012)
    _, held = run_generate(handlers, **kick)
    _, free = run_generate(handlers, **kick, one_hit=False)
    held_take, free_take = held["session"].current()[0], free["session"].current()[0]
    assert held_take.recipe["one_hit"] is True and held_take.recipe["one_hit_db"] == 10.0
    assert free_take.recipe["one_hit"] is False and "one_hit_db" not in free_take.recipe
    held_audio, free_audio = (soundfile.read(take.wav)[0] for take in (held_take, free_take))
    assert second_rises(torch.from_numpy(free_audio.T).float()) > 20.0  # a ghost second hit...
    assert second_rises(torch.from_numpy(held_audio.T).float()) < 14.0  # ...held
    assert handlers.restore_recipe(str(free_take.wav))["one_hit"]["value"] is False
    assert handlers.restore_recipe(str(held_take.wav))["one_hit"]["value"] is True
    old = {k: v for k, v in held_take.recipe.items() if k != "one_hit"}
    assert handlers._controls(old)["one_hit"]["value"] is False
    handlers.save_preset("loose kick", False, "latent-fast", "kick", "dpmpp_2m", 12, 6.5, 5, None, 0.0, 1.0,
                         one_hit=False)
    assert handlers.load_preset("loose-kick")["one_hit"]["value"] is False
