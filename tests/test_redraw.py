"""Near-silent sounds drawn again (engine.pipeline.redraw_quiet): a sound asked as one clean hit whose
loudest frame comes out under its Sound's ``redraw_under_db`` is sampled again from another seed
(engine.seeds.redrawn_seed), which its recipe records, so the WAV replays it by itself; the CLI,
the page's card, ``engine defaults`` and the evaluation go the same way."""

from __future__ import annotations

import shutil
from types import SimpleNamespace

import pytest
import soundfile
import torch

from engine import dsp
from engine.conditions import Conditions
from engine.pipeline import REDRAW_TRIES, quiet_floor, redraw_quiet
from engine.request import GenerationRequest
from engine.seeds import REDRAWN_FROM, SeedNoise, redrawn_seed
from engine.steering import latent_rms_db
from tests.helpers import assert_defaults_refused, cli_in_process, shipped_latent_fast
from tests.test_controls import burst
from tests.test_steering import codec
from tests.ui_support import controls, handlers, run_generate, settings, studio  # noqa: F401  (fixtures)


def test_a_redrawn_seed_is_a_ten_digit_seed_of_its_own_the_same_everywhere():
    assert redrawn_seed(1010, 1) == redrawn_seed(1010, 1) == 9197199534  # numpy's SeedSequence: fixed by its spec
    drawn = {redrawn_seed(seed, attempt) for seed in (0, 1, 1010, 2**63 - 1) for attempt in (1, 2, 3)}
    assert len(drawn) == 12 and all(REDRAWN_FROM <= s < 10 * REDRAWN_FROM for s in drawn)
    with pytest.raises(ValueError):
        redrawn_seed(5, 0)
    draws = SeedNoise([3, 4], (2, 8), [7, 8], morph=0.5, frames=6)
    again = draws.with_seeds([9], [10])
    assert torch.equal(again(), SeedNoise([9], (2, 8), [10], morph=0.5, frames=6)())
    assert again.seeds == [9] and again.seeds_b == [10]


def latent_at(model, gain: float) -> torch.Tensor:
    """A hit's latent, ``gain`` its level (0.5: about -9 dBFS at its loudest frame; 0.001: about -63)."""
    with torch.no_grad():
        return model.encode(burst(0, seconds=0.3, decay_s=0.02, gain=gain)[None])


def test_a_quiet_sound_is_drawn_again_and_a_loud_one_kept():
    model = SimpleNamespace(codec=codec())
    loud, quiet = latent_at(model.codec, 0.5), latent_at(model.codec, 0.001)
    assert float(latent_rms_db(model.codec, quiet).max()) < -50 < float(latent_rms_db(model.codec, loud).max())
    draws = SeedNoise([10, 11, 12], tuple(loud.shape[1:]))
    asked: list[list[int]] = []

    def resample(stays_quiet: set[int]):
        def again(noise: SeedNoise) -> torch.Tensor:
            asked.append(list(noise.seeds))
            return torch.cat([quiet if s in stays_quiet else loud for s in noise.seeds])
        return again

    start = torch.cat([loud, quiet, quiet])
    twice = {redrawn_seed(12, 1)}  # seed 12's first redraw is quiet again
    latent, seeds, seeds_b = redraw_quiet(model, start, draws, -30.0, resample(twice))
    assert seeds == [10, redrawn_seed(11, 1), redrawn_seed(12, 2)] and seeds_b is None
    assert asked == [[redrawn_seed(11, 1), redrawn_seed(12, 1)], [redrawn_seed(12, 2)]]
    assert torch.equal(latent[0], loud[0]) and torch.equal(latent[1], loud[0]) and torch.equal(latent[2], loud[0])
    assert torch.equal(start[1], quiet[0])  # the caller's latents are left as they were
    # always quiet: tried REDRAW_TRIES times, then kept; a morph's second seeds are drawn again with it
    asked.clear()
    morph = SeedNoise([10], tuple(loud.shape[1:]), [20], morph=0.3)
    latent, seeds, seeds_b = redraw_quiet(model, quiet, morph, -30.0, lambda noise: quiet)
    assert seeds == [redrawn_seed(10, REDRAW_TRIES)] and seeds_b == [redrawn_seed(20, REDRAW_TRIES)]
    assert torch.equal(latent, quiet)
    # no floor: nothing drawn
    latent, seeds, _ = redraw_quiet(model, quiet, draws.with_seeds([10]), None, resample(set()))
    assert seeds == [10] and torch.equal(latent, quiet) and asked == []


def test_a_sound_takes_its_labels_floor_unless_a_curve_says_its_level():
    defaults = {"per_label": {"kick": {"redraw_under_db": -30.0}}}
    model = SimpleNamespace(manifest={"labels": ["kick", "snare"], "defaults": defaults}, codec=codec())
    assert quiet_floor(model, Conditions(label=0)) == -30.0
    assert quiet_floor(model, Conditions(label=1)) is None
    assert quiet_floor(model, Conditions(label=0, rms=((0, -6), (100, -40)))) is None
    assert quiet_floor(model, Conditions(label=0, onsets=(0.0,))) == -30.0
    from engine.nets.autoencoder import AudioAutoencoder
    plain = AudioAutoencoder(bands=8, widths=(16, 16), factors=(4,), latent_channels=8, units=1, kernel=5)
    assert quiet_floor(SimpleNamespace(manifest=model.manifest, codec=plain), Conditions(label=0)) is None


def loudest_db(audio: torch.Tensor) -> float:
    return float(dsp.rms_db(audio, 512).max())


@pytest.mark.numeric
def test_the_shipped_latent_models_near_silent_kick_is_drawn_again_and_its_recipe_replays_it():
    """`latent-fast`'s kick of seed 1004 (session 34's weights) is the codec's noise at -47 dBFS as the
    network makes it; asked as one clean hit (the default), it comes back a kick from another seed,
    which its recipe names. Its neighbours keep their own seeds."""
    from engine.studio import Studio

    studio = Studio(device="cpu")
    request = GenerationRequest(model="latent-fast", label="kick", count=3, seed=1003, length=1.0)
    sounds = studio.render(request).sounds
    raw = studio.render(request.with_(one_hit=False)).sounds
    assert loudest_db(raw[1].audio) < -40.0  # seed 1004 as the network makes it
    assert [s.recipe["seed"] for s in sounds][::2] == [1003, 1005] and "redrawn_from_seed" not in sounds[0].recipe
    redrawn = sounds[1].recipe
    assert redrawn["redrawn_from_seed"] == 1004 and redrawn["seed"] == redrawn_seed(1004, 1)
    assert redrawn["redraw_under_db"] == -30.0 and loudest_db(sounds[1].audio) > -30.0
    assert all("redraw_under_db" not in s.recipe and s.recipe["seed"] == 1003 + i for i, s in enumerate(raw))
    again = studio.render(GenerationRequest.from_recipe(redrawn)).sounds[0]
    assert again.recipe["seed"] == redrawn["seed"] and "redrawn_from_seed" not in again.recipe
    assert torch.allclose(again.audio, sounds[1].audio, atol=1e-4)  # alone, not in a batch of three
    # the evaluation draws it again as the studio does
    from engine.eval.run import generate_clips
    from engine.models import load_model, resolve_model
    clips = generate_clips(load_model(resolve_model("latent-fast").folder), 2, label="kick", seed=1004)
    assert loudest_db(clips[0]) > -30.0


def test_the_cli_says_which_seed_a_sound_was_drawn_again_from(tmp_path):
    from engine.audio import read_recipe

    common = ("generate", "--model", "latent-fast", "--label", "kick", "--seed", "1004", "--length", "1.0")
    result = cli_in_process(*common, "--out", str(tmp_path / "clean"))
    assert result.returncode == 0, result.stderr
    path, said = result.stdout.strip().split("\t")
    assert said == f"seed 1004 came out near-silent: drawn again as seed {redrawn_seed(1004, 1)}"
    assert read_recipe(path)["redrawn_from_seed"] == 1004 and f"seed{redrawn_seed(1004, 1)}" in path
    raw = cli_in_process(*common, "--allow-second-hits", "--out", str(tmp_path / "raw"))
    assert raw.returncode == 0 and "\t" not in raw.stdout.strip(), raw.stdout
    assert read_recipe(raw.stdout.strip())["seed"] == 1004


def test_only_a_latent_model_whose_codec_says_its_loudness_takes_a_redraw_level(tmp_path, tiny_models):
    from engine.models import read_manifest

    folder = shipped_latent_fast(tmp_path / "models")
    result = cli_in_process("defaults", "--model", str(folder), "--redraw-under-db", "-40")
    assert result.returncode == 0, result.stderr
    assert read_manifest(folder)["defaults"]["redraw_under_db"] == -40
    assert_defaults_refused(folder, (["--redraw-under-db", "0"], ["--redraw-under-db", "-81"],
                                     ["--redraw-under-db", "nan"],
                                     ["--per-label", '{"kick": {"redraw_under_db": "x"}}'],
                                     ["--per-label", '{"kick": {"redraw_under_db": true}}'],
                                     ["--with-curves", '{"per_label": {"kick": {"redraw_under_db": -30}}}'],
                                     ["--with-prompt", '{"per_label": {"kick": {"redraw_under_db": -30}}}']),
                            "redraw_under_db")
    waveform = shutil.copytree(tiny_models / "tiny", tmp_path / "tiny")
    refused = cli_in_process("defaults", "--model", str(waveform), "--redraw-under-db", "-30")
    assert refused.returncode == 2 and "not latent" in refused.stderr, refused.stderr


def test_the_pages_card_says_a_sound_was_drawn_again(handlers):
    """On the page: the card of a kick drawn again names the seed asked for and the one it came from,
    and its WAV, dropped back, regenerates that sound (the seed field takes the seed it was made from)."""
    kick = dict(model="latent-fast", label="kick", sampler="dpmpp_2m", steps=12, guidance=6.5, length=1.0, seed=1004)
    _, final = run_generate(handlers, **kick)
    take = final["session"].current()[0]
    made = redrawn_seed(1004, 1)
    assert take.recipe["seed"] == made and f"seed 1004 (near-silent: drawn again as {made})" in take.caption()
    restored = handlers.restore_recipe(str(take.wav))
    assert restored["seed"] == made
    _, again = run_generate(handlers, **dict(kick, seed=made))
    first, _ = soundfile.read(take.wav)
    second, _ = soundfile.read(again["session"].current()[0].wav)
    assert abs(first - second).max() < 1e-4
    _, raw = run_generate(handlers, **kick, one_hit=False)
    assert raw["session"].current()[0].recipe["seed"] == 1004
