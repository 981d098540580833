"""Steady tones in the tails (engine.steering.centre_low_bands): a constant the network leaves in a
bypass channel decodes to a tone under the whole sound; it is read from the sound's silence and taken
out before decoding, and a real sound's latent, which has none, is left as it was."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from engine import pipeline
from engine.conditions import Conditions
from engine.nets.autoencoder import AudioAutoencoder
from engine.seeds import SeedNoise
from engine.steering import QUIET_MIN_FRAMES, _from_raw, _raw, centre_low_bands
from engine.studio import ENGINE_VERSION, engine_changes_since
from tests.test_controls import RATE, burst
from tests.test_steering import codec

OFFSET = 1e-3  # raw units: ~5x what `latent-fast` leaves in its kicks' bypass channels


def with_offset(model, latent: torch.Tensor, offset: float = OFFSET) -> torch.Tensor:
    """``latent`` with ``offset`` added to every bypass channel in every frame (as the network leaves it)."""
    raw = _raw(model, latent)
    raw[:, model.channel_groups()["bypass"]] += offset
    return _from_raw(model, raw)


def energy_db(audio: torch.Tensor) -> float:
    return float(10 * torch.log10(audio.double().pow(2).mean() + 1e-30))


def test_an_offset_in_the_low_sub_bands_is_read_from_the_silence_and_taken_out():
    model = codec()
    with torch.no_grad():
        hit = model.encode(burst(0, seconds=0.6, decay_s=0.02)[None])  # silent from ~250 ms on
        toned = with_offset(model, hit)
        centred = centre_low_bands(model, toned)
        groups = model.channel_groups()
        for name in ("learned", "envelope"):  # only the bypass moves
            assert torch.equal(centred[:, groups[name]], toned[:, groups[name]]), name
        assert torch.allclose(centred, hit, atol=1e-5)  # the offset, and nothing else, is gone
        assert torch.allclose(centre_low_bands(model, hit), hit, atol=1e-6)  # a real sound has none
        tail = slice(int(0.35 * RATE), int(0.55 * RATE))  # where the hit has faded
        heard = {name: energy_db(model.decode(latent)[..., tail])
                 for name, latent in (("hit", hit), ("toned", toned), ("centred", centred))}
        assert heard["toned"] > heard["hit"] + 20.0, heard  # the constant is a tone under the tail
        assert abs(heard["centred"] - heard["hit"]) < 1.0, heard


def test_a_sound_without_enough_silence_or_a_codec_without_a_bypass_is_left_as_it_was():
    model = codec()
    with torch.no_grad():
        steady = model.encode(burst(0, seconds=0.6, decay_s=10.0)[None])  # loud to the end: no silence
        toned = with_offset(model, steady)
        assert torch.equal(centre_low_bands(model, toned), toned)
        # a batch: each sound reads its own silence
        hit = model.encode(burst(0, seconds=0.6, decay_s=0.02)[None])
        both = centre_low_bands(model, torch.cat([toned, with_offset(model, hit)]))
        assert torch.equal(both[:1], toned) and torch.allclose(both[1:], hit, atol=1e-5)
        assert QUIET_MIN_FRAMES > 1
    plain = AudioAutoencoder(bands=8, widths=(16, 16), factors=(4,), latent_channels=8, units=1, kernel=5)
    latent = torch.randn(1, plain.latent_channels, 40)
    assert torch.equal(centre_low_bands(plain, latent), latent)


def tone_db(audio: torch.Tensor, hz: tuple[float, ...], rate: int) -> float:
    """The loudest of the spectral bins at ``hz`` in a 300-700 ms tail, in dB under the clip's loudest
    bin (2048-point frames): what a steady tone under a faded sound reads."""
    window = torch.hann_window(2048, dtype=torch.float64)
    spec = torch.stft(audio.reshape(-1, audio.shape[-1]).mean(0).double(), 2048, 512, window=window,
                      return_complex=True).abs().pow(2)
    tail = spec[:, int(0.3 * rate / 512): int(0.7 * rate / 512)].mean(-1)
    bins = [int(round(f * 2048 / rate)) for f in hz]
    return float(10 * torch.log10(max(tail[b - 1: b + 2].max() for b in bins) / spec.max()))


@pytest.mark.numeric
def test_the_shipped_latent_models_kicks_lose_their_steady_tones(monkeypatch):
    """`latent-fast`'s kicks (seeds 1000-1007): sampled as the network leaves them, a narrow tone at
    344 or 689 Hz runs through their tails (about 65 dB under the hit); centred as they form, it is
    gone."""
    from engine.models import load_model, resolve_model

    model = load_model(resolve_model("latent-fast").folder)
    rate, length = model.manifest["sample_rate"], model.manifest["length"]
    shape = (model.codec.latent_channels, model.codec.latent_length(length))

    def kicks() -> list[torch.Tensor]:
        draws = SeedNoise(list(range(1000, 1008)), shape)
        return pipeline.render(model, draws(), Conditions(label=0), samples=length, sampler="dpmpp_2m", steps=12,
                               guidance=6.5, step_noise=draws, one_hit=True)

    centred = kicks()
    with monkeypatch.context() as patch:
        patch.setattr(pipeline, "centre_projection", lambda codec: None)
        left = kicks()
    before = np.array([tone_db(a, (344.5, 689.1), rate) for a in left])
    after = np.array([tone_db(a, (344.5, 689.1), rate) for a in centred])
    assert np.median(before) > -75.0 and np.median(after) < np.median(before) - 8.0, (before, after)


def test_a_recipe_from_an_older_engine_says_what_changed_since():
    assert "tones" in engine_changes_since("0.1")[0] and len(engine_changes_since("0.1")) == 5
    assert [("roll" in change) for change in engine_changes_since("0.3")] == [True, False, False, False]  # session 35
    assert [("rumble" in change) for change in engine_changes_since("0.4")] == [True, False, False]  # session 36
    assert [("690-1380 Hz" in change) for change in engine_changes_since("0.5")] == [True, False]  # session 41
    assert [("cymbals" in change) for change in engine_changes_since("0.6")] == [True]  # their low end, session 52
    assert engine_changes_since(ENGINE_VERSION) == []
    assert engine_changes_since(None) == [] and engine_changes_since("banana") == []
