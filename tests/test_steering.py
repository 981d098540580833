"""Loudness steering (engine.steering): a latent reads its own loudness, a projection puts it on a
drawn curve, every sampler hands the projected estimate on, and the studio, the recipe and the
CLI carry the switch."""

from __future__ import annotations

import pytest
import torch

from engine import dsp
from engine.eval.controls import loudness_error_db
from engine.nets.autoencoder import AudioAutoencoder
from engine.request import GenerationRequest
from engine.steering import latent_rms_db, loudness_projection, steerable
from tests.helpers import cli_in_process
from tests.test_controls import RATE, burst

CURVE = ((0, -10), (60, -16), (250, -34), (450, -48))


def codec() -> AudioAutoencoder:
    """An untrained codec: its bypass and envelope channels are exact whatever its weights."""
    torch.manual_seed(0)
    return AudioAutoencoder(bands=8, widths=(16, 16), factors=(4,), latent_channels=8, units=1, kernel=5,
                            low_bypass=4, band_envelope=True).eval()


def asked_frames(audio: torch.Tensor, points) -> tuple[torch.Tensor, torch.Tensor]:
    frames = dsp.frame_count(audio.shape[-1], codec().hop)
    level, mask = dsp.rms_from_points(points, frames, codec().hop, RATE)
    return level, mask > 0


def test_a_latent_says_the_loudness_its_sound_has():
    model = codec()
    sound = (burst(20, seconds=0.5, decay_s=0.06) + burst(200, seconds=0.5, decay_s=0.03, seed=3))[None]
    with torch.no_grad():
        read = latent_rms_db(model, model.encode(sound))[0]
    measured = dsp.rms_db(sound[0], model.hop, frames=len(read))
    loud = measured > -45
    assert float((read - measured)[loud].abs().median()) < 0.5
    assert steerable(model) and not steerable(AudioAutoencoder(bands=8, widths=(16, 16), factors=(4,),
                                                               latent_channels=8, units=1, kernel=5))


def test_steering_puts_a_latent_on_the_curve_and_leaves_the_rest_alone():
    model = codec()
    sound = burst(0, seconds=0.5, decay_s=0.4, gain=0.05)[None]  # quieter and longer than the curve
    with torch.no_grad():
        latent = model.encode(sound)
        project = loudness_projection(model, CURVE, latent.shape[-1], RATE)
        steered = project(latent, torch.tensor(10.0))
        assert torch.equal(project(latent, torch.tensor(0.1)), latent)  # the last steps are the network's
        level, mask = asked_frames(sound, CURVE)
        read = latent_rms_db(model, steered)[0]
        assert float((read - level)[mask].abs().median()) < 0.5
        learned = model.channel_groups()["learned"]
        assert torch.equal(steered[:, learned], latent[:, learned])  # only the exact channels move
        assert torch.equal(steered[..., ~mask], latent[..., ~mask])   # past the curve's last point: untouched
        # decoded, the sound follows the curve (the decoder rescales its bands to the envelope)
        before, after = model.decode(latent)[0], model.decode(steered)[0]
    assert loudness_error_db(after, CURVE, RATE) < 1.5 < 4.0 < loudness_error_db(before, CURVE, RATE)
    assert loudness_projection(model, None, latent.shape[-1], RATE) is None
    plain = AudioAutoencoder(bands=8, widths=(16, 16), factors=(4,), latent_channels=8, units=1, kernel=5)
    assert loudness_projection(plain, CURVE, latent.shape[-1], RATE) is None  # nothing to steer by


@pytest.mark.parametrize("sampler", ["dpmpp_2m", "ddim", "euler_a", "iadb"])
def test_every_sampler_ends_on_the_projected_estimate(tiny_models, sampler):
    """A projection that always answers ``target`` must be where every sampler ends, whatever the
    network says: the hook reaches the last step of each (and the native iadb's update)."""
    from engine.models import load_model
    from engine.sampling import sample_latent

    model = load_model(tiny_models / "tiny_blend")
    noise = torch.randn(1, model.codec.latent_channels, 32, generator=torch.Generator().manual_seed(1))
    target = torch.full_like(noise, 0.25)
    out = sample_latent(model.network, model.manifest, noise, sampler=sampler, steps=6, project=lambda x, sigma: target)
    free = sample_latent(model.network, model.manifest, noise, sampler=sampler, steps=6)
    assert torch.allclose(out, target, atol=1e-4) and not torch.allclose(free, target, atol=1e-2)


@pytest.mark.numeric
def test_the_shipped_latent_model_follows_a_drawn_curve_far_closer_steered():
    """The studio's own path on `latent-fast` (network, sampler, decode, finish), envelope shaper off:
    steered, the snare sits on the curve; left to the network it misses by several dB."""
    from engine.studio import Studio

    studio = Studio(device="cpu")
    curve = ((0, -8), (30, -12), (150, -30), (400, -50))
    base = GenerationRequest(model="latent-fast", label="snare", length=0.5, rms=curve, count=2, seed=3,
                             match_loudness=False)
    steered = studio.render(base).sounds
    free = studio.render(base.with_(steer_loudness=False)).sounds
    steered_db = [loudness_error_db(s.audio, curve, RATE) for s in steered]
    free_db = [loudness_error_db(s.audio, curve, RATE) for s in free]
    assert max(steered_db) < 2.0 and min(free_db) > max(steered_db) + 1.5, (steered_db, free_db)
    assert all(s.recipe["steer_loudness"] is True for s in steered)
    assert all(float(s.audio.abs().max()) <= 0.999 + 1e-6 for s in steered)


def test_the_request_recipe_and_cli_carry_the_switch(tmp_path):
    request = GenerationRequest(model="latent-fast", rms=CURVE)
    assert request.steer_loudness is True and request.to_recipe()["steer_loudness"] is True
    assert GenerationRequest.from_recipe(request.to_recipe()).steer_loudness is True
    old = {k: v for k, v in request.to_recipe().items() if k != "steer_loudness"}
    assert GenerationRequest.from_recipe(old).steer_loudness is False  # made before steering: replays without
    from engine.errors import InvalidRequestError
    with pytest.raises(InvalidRequestError, match="steer_loudness must be true or false"):
        GenerationRequest(steer_loudness="yes").validated()
    result = cli_in_process("generate", "--model", "latent-fast", "--label", "kick", "--length", "0.3",
                            "--steps", "4", "--rms", "0:-10,100:-30", "--no-steer-loudness", "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    from engine.audio import read_recipe
    assert read_recipe(result.stdout.strip().splitlines()[-1])["steer_loudness"] is False
