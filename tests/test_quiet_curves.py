"""Quiet curves: a drawn loudness curve quieter than a model's usual hits is lifted for the network
and the sound turned down to it (engine.conditions.lift_quiet_curve, engine.pipeline.level_lift),
unless the request asks for soft hits; and a kick with a curve takes the model's defaults with
curves (engine.sampling.label_defaults)."""

from __future__ import annotations

import json

import pytest
import torch

from engine.conditions import Conditions, ConditionSpec, condition_specs, level_floor, level_floors, lift_quiet_curve
from engine.errors import InvalidRequestError
from engine.eval.controls import loudness_error_db
from engine.request import GenerationRequest
from engine.sampling import label_defaults
from tests.helpers import cli_in_process

RATE = 44100
FLOORS = {"": -18.0, "kick": -9.0, "hat": -20.0}
QUIET_HAT = ((0, -40), (10, -36), (60, -42), (200, -62))


def test_a_quiet_curve_is_lifted_to_the_floor_and_a_loud_one_kept():
    lifted, lift = lift_quiet_curve(QUIET_HAT, -20.0)
    assert lift == pytest.approx(16.0)
    assert lifted == ((0, -24.0), (10, -20.0), (60, -26.0), (200, -46.0))  # the shape, 16 dB up
    assert lift_quiet_curve(((0, -6), (100, -40)), -20.0) == (((0, -6), (100, -40)), 0.0)
    assert lift_quiet_curve(None, -20.0) == (None, 0.0) and lift_quiet_curve(QUIET_HAT, None)[1] == 0.0
    # a lift never pushes a point above 0 dBFS
    assert max(db for _, db in lift_quiet_curve(((0, -30), (5, -1)), 10.0)[0]) == 0.0


def test_level_floors_are_a_quantile_of_each_categorys_peaks():
    peaks = torch.tensor([-4.0, -8.0, -12.0, -16.0, -20.0, -30.0, -40.0, -50.0])
    floors = level_floors(peaks, ["kick"] * 4 + ["hat"] * 4)
    assert floors == {"": pytest.approx(-32.5), "kick": pytest.approx(-13.0), "hat": pytest.approx(-42.5)}


def test_the_floor_is_the_labels_a_blends_mix_or_the_models():
    specs = (ConditionSpec("rms", "curve", "frames", "controls", 0.3, FLOORS),)
    labels = ["kick", "snare", "hat"]
    assert level_floor(specs, Conditions(label=0), labels) == -9.0
    assert level_floor(specs, Conditions(label=1), labels) == -18.0   # no floor of its own: the model's
    assert level_floor(specs, Conditions(), labels) == -18.0          # a prompt alone
    assert level_floor(specs, Conditions(label=0, label_b=2, label_mix=0.25), labels) == pytest.approx(-11.75)
    plain = (ConditionSpec("rms", "curve", "frames", "controls", 0.3),)
    assert level_floor(plain, Conditions(label=0), labels) is None
    assert "level_floor_db" not in plain[0].to_dict() and specs[0].to_dict()["level_floor_db"] == FLOORS


def test_a_kick_with_a_curve_takes_the_defaults_with_curves():
    defaults = {"guidance": 4.0, "variety": {"kick": 0.5},
                "with_curves": {"per_label": {"kick": {"variety": 0.0}}}}
    assert label_defaults(defaults, "kick")["variety"] == 0.5
    assert label_defaults(defaults, "kick", curves=True)["variety"] == 0.0
    assert label_defaults(defaults, "hat", curves=True) == label_defaults(defaults, "hat") == {
        "guidance": 4.0, "variety": 0.0}
    shipped = json.loads(open("checkpoints/latent-fast/manifest.json").read())["defaults"]
    assert label_defaults(shipped, "kick", curves=True)["variety"] == 0.0 < label_defaults(shipped, "kick")["variety"]


def test_the_shipped_curve_models_record_their_floors():
    from engine.models import resolve_model, read_manifest
    for name in ("latent-curves", "latent-prompts", "latent-fast"):
        floors = next(s.level_floor_db for s in condition_specs(read_manifest(resolve_model(name).folder))
                      if s.name == "rms")
        assert set(floors) == {"", "kick", "snare", "hat", "perc", "cymbal"}
        assert floors["hat"] < floors["snare"] < floors["kick"] < 0


def test_the_decoded_sound_is_the_lifted_one_turned_down():
    """Sampled from the same noise, the quiet curve's sound is the lifted curve's sound times the
    gain: the network and the steering saw the lifted curve, and decode turned it down."""
    from engine import pipeline
    from engine.models import load_model, resolve_model

    model = load_model(resolve_model("latent-fast").folder)
    samples = 8192
    noise = torch.randn(1, model.codec.latent_channels, model.codec.latent_length(samples),
                        generator=torch.Generator().manual_seed(2))
    quiet = Conditions(label=model.manifest["labels"].index("hat"), rms=QUIET_HAT)
    floor = level_floor(condition_specs(model.manifest), quiet, model.manifest["labels"])
    lifted, lift = lift_quiet_curve(QUIET_HAT, floor)
    assert lift > 10.0
    settings = dict(samples=samples, sampler="ddim", steps=3)
    turned_down = pipeline.render(model, noise, quiet, **settings)
    loud = pipeline.render(model, noise, Conditions(label=quiet.label, rms=lifted), soft_hits=True, **settings)
    soft = pipeline.render(model, noise, quiet, soft_hits=True, **settings)
    assert torch.allclose(turned_down, loud * 10 ** (-lift / 20), rtol=1e-4, atol=1e-7)
    assert not torch.allclose(turned_down, soft, atol=1e-4)  # soft hits: the network heard the quiet curve
    assert pipeline.level_lift(model, quiet)[1] == pytest.approx(lift)
    assert pipeline.level_lift(model, quiet, soft_hits=True) == (quiet, 0.0)


@pytest.mark.numeric
def test_the_shipped_model_puts_a_lifted_hat_on_its_quiet_curve():
    """`latent-fast`'s hat from a curve 20 dB under its usual hats: made as a full hit and turned
    down, it still sits on the drawn level (the envelope shaper off)."""
    from engine.studio import Studio

    studio = Studio(device="cpu")
    request = GenerationRequest(model="latent-fast", label="hat", length=0.5, rms=QUIET_HAT, count=2, seed=5,
                                match_loudness=False)
    sounds = studio.render(request).sounds
    errors = [loudness_error_db(s.audio, QUIET_HAT, RATE) for s in sounds]
    assert max(errors) < 3.0, errors
    assert all(s.recipe["soft_hits"] is False for s in sounds)


def test_the_request_recipe_and_cli_carry_soft_hits(tmp_path):
    request = GenerationRequest(model="latent-fast", rms=QUIET_HAT)
    assert request.soft_hits is False and request.to_recipe()["soft_hits"] is False
    old = {k: v for k, v in request.to_recipe().items() if k != "soft_hits"}
    assert GenerationRequest.from_recipe(old).soft_hits is True  # made before the lift: replays soft
    with pytest.raises(InvalidRequestError, match="soft_hits must be true or false"):
        GenerationRequest(soft_hits=1).validated()
    result = cli_in_process("generate", "--model", "latent-fast", "--label", "hat", "--length", "0.3",
                            "--steps", "4", "--rms", "0:-40,100:-60", "--soft-hits", "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    from engine.audio import read_recipe
    assert read_recipe(result.stdout.strip().splitlines()[-1])["soft_hits"] is True
