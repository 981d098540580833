"""Stereo width (engine.dsp.stereo_width): 0 folds a sound to mono, 1 leaves it as the model made
it, and either keeps its loudness frame by frame; the request checks it, the recipe and presets
carry it (a recipe without it replays at full width), each Sound of a latent model has its default
(mono where most of the kits' hits are), and the CLI, ``engine defaults``, the evaluation and the
page all reach it."""

from __future__ import annotations


import pytest
import torch

from engine.audio import read_recipe
from engine.dsp import rms_db, stereo_width
from engine.errors import InvalidRequestError
from engine.request import GenerationRequest
from tests.helpers import assert_defaults_refused, cli_in_process, shipped_latent_fast
from tests.ui_support import controls, handlers, run_generate, settings, studio  # noqa: F401  (fixtures)

QUICK = dict(model="latent-fast", length=0.3, steps=3, seed=5)
RATE = 44100


def side_share_db(audio: torch.Tensor) -> float:
    """Side (L - R) power over mid (L + R) power, dB; -inf for mono."""
    mid, side = audio.sum(-2), audio[..., 0, :] - audio[..., 1, :]
    return float(10.0 * torch.log10(side.pow(2).sum() / mid.pow(2).sum()))


def decaying_noise(correlation: float, seed: int = 0) -> torch.Tensor:
    """(2, N): a 0.3 s noise hit decaying 60 dB, its two channels sharing ``correlation`` of their power."""
    generator = torch.Generator().manual_seed(seed)
    common, own = torch.randn(1, 13230, generator=generator), torch.randn(2, 13230, generator=generator)
    envelope = torch.exp(-torch.arange(13230) / 44100 * 23.0)
    return (correlation ** 0.5 * common + (1 - correlation) ** 0.5 * own) * envelope * 0.5


def test_width_scales_the_side_about_the_mid_and_keeps_the_loudness():
    stereo = torch.stack([decaying_noise(0.3, seed) for seed in range(3)])
    mono = stereo_width(stereo, 0.0, RATE)
    assert torch.equal(mono[:, 0], mono[:, 1])
    assert float(torch.nn.functional.cosine_similarity(mono[:, 0], stereo.sum(1), dim=-1).min()) > 0.999
    # folding decorrelated channels would lose ~2.5 dB here: each frame is lifted back
    loud = rms_db(stereo, 128) > -50.0
    assert float((rms_db(mono, 128) - rms_db(stereo, 128))[loud].abs().median()) < 0.3
    assert float((rms_db(stereo.mean(1, keepdim=True).expand(-1, 2, -1), 128)
                  - rms_db(stereo, 128))[loud].median()) < -1.5  # (what the plain fold would lose)
    half = stereo_width(stereo, 0.5, RATE)  # the side halved relative to the mid, sample by sample
    in_sum, in_diff = stereo.sum(1), stereo[:, 0] - stereo[:, 1]
    out_sum, out_diff = half.sum(1), half[:, 0] - half[:, 1]
    assert torch.allclose(out_diff * in_sum, 0.5 * in_diff * out_sum, atol=1e-5)
    assert torch.equal(stereo_width(stereo, 1.0, RATE), stereo)
    already = stereo[:, :1].expand(-1, 2, -1)
    assert torch.allclose(stereo_width(already, 0.0, RATE), already, atol=1e-5)  # mono stays as it was
    single = torch.randn(2, 1, 100)
    assert torch.equal(stereo_width(single, 0.0, RATE), single)


@pytest.mark.parametrize("bad", [-0.1, 1.5, float("nan"), True, "wide"])
def test_a_request_refuses_a_width_outside_0_to_1(bad):
    with pytest.raises(InvalidRequestError, match="width"):
        GenerationRequest(model="latent-fast", width=bad).validated()


def test_a_recipe_carries_the_width_and_one_without_it_replays_at_full_width():
    request = GenerationRequest(model="latent-fast", label="snare", width=0.25).validated()
    assert GenerationRequest.from_recipe(request.to_recipe()).width == 0.25
    old = {k: v for k, v in request.to_recipe().items() if k != "width"}
    assert GenerationRequest.from_recipe(old).width == 1.0


def test_latent_fast_makes_snares_mono_and_cymbals_as_made_and_the_recipe_replays_either(studio):
    snare = studio.render(GenerationRequest(label="snare", **QUICK)).sounds[0]
    assert snare.recipe["width"] == 0.0 and torch.equal(snare.audio[0], snare.audio[1])
    wide = studio.render(GenerationRequest(label="snare", width=1.0, **QUICK)).sounds[0]
    assert wide.recipe["width"] == 1.0 and side_share_db(wide.audio) > -30.0  # the codec's own stereo
    # the same sound folded (then put on its kit hit's loudness curve by the envelope shaper: a gain envelope)
    folded = stereo_width(wide.audio, 0.0, RATE)[0]
    assert float(torch.nn.functional.cosine_similarity(folded, snare.audio[0], dim=0)) > 0.95
    cymbal = studio.render(GenerationRequest(label="cymbal", **QUICK)).sounds[0]
    assert cymbal.recipe["width"] == 1.0 and side_share_db(cymbal.audio) > -30.0
    again = studio.render(GenerationRequest.from_recipe(wide.recipe)).sounds[0]
    assert torch.allclose(again.audio, wide.audio, atol=1e-4)


def test_the_evaluation_gives_each_sound_its_labels_width():
    from engine.eval.run import generate_clips
    from engine.models import load_model, resolve_model

    model = load_model(resolve_model("latent-fast").folder)
    snares = generate_clips(model, 1, label="snare", seed=5, steps=3)
    assert torch.equal(snares[:, 0], snares[:, 1])
    assert side_share_db(generate_clips(model, 1, label="snare", seed=5, steps=3, width=1.0)) > -30.0
    with pytest.raises(InvalidRequestError, match="width"):
        generate_clips(model, 1, label="snare", seed=5, steps=3, width=2.0)


def test_the_cli_takes_a_width_and_refuses_a_bad_one(tmp_path):
    made = cli_in_process("generate", "--model", "latent-fast", "--label", "cymbal", "--length", "0.3", "--steps",
                          "3", "--width", "0", "--out", str(tmp_path))
    assert made.returncode == 0, made.stderr
    assert read_recipe(made.stdout.strip())["width"] == 0.0
    refused = cli_in_process("generate", "--model", "latent-fast", "--width", "2", "--out", str(tmp_path / "bad"))
    assert refused.returncode == 2 and "width must be between 0.0 and 1.0" in refused.stderr, refused.stderr
    assert not (tmp_path / "bad").exists()


def test_engine_defaults_sets_a_width_per_model_or_per_label_and_refuses_a_bad_one(tmp_path):
    from engine.models import read_manifest
    from engine.sampling import label_defaults

    folder = shipped_latent_fast(tmp_path / "models")
    result = cli_in_process("defaults", "--model", str(folder), "--width", "0.5")
    assert result.returncode == 0, result.stderr
    defaults = read_manifest(folder)["defaults"]
    assert label_defaults(defaults, "snare")["width"] == 0.5 and label_defaults(defaults, "cymbal")["width"] == 1.0
    assert_defaults_refused(folder, (["--width", "1.5"], ["--width", "nan"],
                                     ["--per-label", '{"hat": {"width": -1}}'],
                                     ["--with-prompt", '{"per_label": {"hat": {"width": 0}}}']), "width")


def test_the_page_moves_the_width_with_the_sound_and_keeps_it_in_recipes_and_presets(handlers):
    moved = handlers.label_defaults("latent-fast", "cymbal", width=0.0)
    assert moved["width"] == 1.0
    assert handlers.label_defaults("latent-fast", "snare", width=1.0)["width"] == 0.0
    assert "width" not in handlers.label_defaults("latent-fast", "cymbal", width=0.6)  # the user's own value
    assert handlers.describe_model("latent-fast")["width"] == 0.0
    _, final = run_generate(handlers, model="latent-fast", label="snare", sampler="euler_a", steps=3, length=0.3,
                            width=0.4)
    take = final["session"].current()[0]
    assert take.recipe["width"] == 0.4
    restored = handlers._controls(dict(take.recipe), "")
    assert restored["width"] == 0.4
    old = {k: v for k, v in take.recipe.items() if k != "width"}
    assert handlers._controls(old, "")["width"] == 1.0  # made before the width: as made
    saved = handlers.save_preset("Wide snare", False, "latent-fast", "snare", "euler_a", 3, 3.0, 5, None, 0.0, 0.3,
                                 width=0.8)
    assert "wide-snare" in saved["recipe_note"]
    assert handlers.load_preset("wide-snare")["width"] == 0.8
