"""A kit hit's spectrum over time (engine.band_shares, engine.steering.share_projection): each
band's share of a real clip's loudness measured from the codec's exact latent channels, kept beside
the weights, dealt by seed, and held while a sound forms; the request field that sets how far, its
recipe, the command that writes the table, and the shipped `latent-drums`."""

from __future__ import annotations

import json
import shutil
from types import SimpleNamespace

import pytest
import torch

from engine import GenerationRequest, band_shares, steering
from engine.conditions import Conditions
from engine.errors import CheckpointError, InvalidRequestError
from engine.models import load_model, resolve_model
from engine.pipeline import kit_shares
from engine.seeds import SeedNoise
from engine.tones import dealt_spectra
from tests.helpers import ROOT, assert_table_command, cli_in_process
from tests.ui_support import controls, handlers, run_generate, settings, studio  # noqa: F401  (fixtures)
from tests.test_eval import _fake_dataset

HOP, RATE = 128, 44100


@pytest.fixture(scope="module")
def codec():
    return load_model(resolve_model("latent-drums").folder).codec


def burst(seed: int, tilt_db: float, decay_s: float, length: int = 44032) -> torch.Tensor:
    """``(1, 2, length)``: noise with a straight spectral tilt (dB from 0 Hz to Nyquist), decaying."""
    audio = torch.randn(1, 2, length, generator=torch.Generator().manual_seed(seed))
    spectrum = torch.fft.rfft(audio)
    spectrum = spectrum * torch.pow(10.0, tilt_db * torch.linspace(0, 1, spectrum.shape[-1]) / 20.0)
    t = torch.arange(length) / RATE
    return 0.05 * torch.fft.irfft(spectrum, n=length) * torch.exp(-t / decay_s)  # within the latent's range


def test_spans_pool_every_frame_once_and_a_point_past_the_end_its_last():
    pooled = band_shares.spans(100, HOP, RATE)  # 290 ms: the points after it read the last frame
    assert pooled.shape == (len(band_shares.SHARE_TIMES_MS), 100)
    assert torch.equal(pooled[:, :99].sum(0), torch.ones(99))  # every frame but the last pooled by its nearest point
    late = [i for i, ms in enumerate(band_shares.SHARE_TIMES_MS) if ms > 300]
    assert all(int(pooled[i].nonzero().flatten()[-1]) == 99 for i in late)


def test_a_clip_is_kept_as_its_level_and_each_bands_share_and_its_silence_steers_nothing():
    frames = 400
    power = torch.full((1, 3, frames), 1e-30)
    power[0, 0, :100], power[0, 1, :100], power[0, 2, :100] = 0.5, 0.25, 0.25  # -3, -6, -6 dB
    power[0, 0, 100:200], power[0, 1, 100:200], power[0, 2, 100:200] = 0.01, 0.001, 0.009  # 17 dB down
    table = band_shares.shares_db(power, HOP, RATE)[0]
    assert table.shape == (4, len(band_shares.SHARE_TIMES_MS))
    times = torch.tensor(band_shares.SHARE_TIMES_MS)
    first, second = (times > 3) & (times < 250), (times > 320) & (times < 540)
    expect = lambda column, n: torch.tensor(column)[:, None].expand(4, n)  # noqa: E731
    torch.testing.assert_close(table[:, first], expect([0.0, -3.01, -6.02, -6.02], int(first.sum())), atol=0.05, rtol=0)
    torch.testing.assert_close(table[:, second], expect([-16.99, -3.01, -13.01, -3.47], int(second.sum())),
                               atol=0.05, rtol=0)
    after = times > 700  # the 1e-30 floor: silence, its level and shares at the floor
    assert bool((table[:, after] == band_shares.SHARE_FLOOR_DB).all())
    read = band_shares.on_frames(table[None], frames, HOP, RATE)[0]
    frame_ms = (torch.arange(frames) + 0.5) * HOP / RATE * 1000.0
    assert bool(torch.isfinite(read[:, frame_ms < 540]).all()) and bool(torch.isnan(read[:, frame_ms > 700]).all())
    torch.testing.assert_close(read[:, int((frame_ms - 100.0).abs().argmin())], torch.tensor([-3.01, -6.02, -6.02]),
                               atol=0.05, rtol=0)


def test_shares_on_frames_pass_through_their_points_and_hold_after_the_last():
    points = len(band_shares.SHARE_TIMES_MS)
    table = torch.cat([torch.zeros(2, 1, points), torch.randn(2, 3, points)], dim=1)  # heard throughout
    frames = band_shares.on_frames(table, 800, HOP, RATE)
    assert frames.shape == (2, 3, 800)
    frame_ms = (torch.arange(800) + 0.5) * HOP / RATE * 1000.0
    last = int((frame_ms >= band_shares.SHARE_TIMES_MS[-1]).nonzero()[0])
    torch.testing.assert_close(frames[..., last:], table[:, 1:, -1:].expand(2, 3, 800 - last))
    point = band_shares.SHARE_TIMES_MS.index(30)
    at = int((frame_ms - 30.0).abs().argmin())  # a point: read at its nearest frame, within a frame's slope
    assert float((frames[..., at] - table[:, 1:, point]).abs().max()) < float(
        (table[:, 1:, point + 1] - table[:, 1:, point - 1]).abs().max()) + 1e-6


@torch.no_grad()
def test_the_projection_puts_the_bands_on_the_shares_and_keeps_the_frames_power(codec):
    """A bright decaying burst's latent steered onto a dark one's shares reads those shares back
    (within 0.1 dB where it is heard) at its own frame power; its learned channels are untouched;
    at the last steps' noise levels it is left as it was; strength 0 is no projection."""
    bright, dark = burst(1, 6.0, 0.15), burst(2, -9.0, 0.4)  # apart by less than a step's most (SHARE_GAIN_DB)
    inner = steering._inner(codec)
    latent = codec.encode(bright)
    wanted_power = steering.band_powers(codec, inner.encode_raw(dark))
    total = wanted_power.sum(1, keepdim=True)
    wanted = 10 * torch.log10(wanted_power.clamp_min(1e-20) / total.clamp_min(1e-20))
    project = steering.share_projection(codec, wanted, 1.0)
    moved = project(latent, torch.tensor(10.0))
    power, before = (steering.band_powers(codec, steering._raw(codec, x)) for x in (moved, latent))
    level = 10 * torch.log10(before.sum(1))
    heard = level[0] >= level.max() - 50.0
    have = 10 * torch.log10(power.clamp_min(1e-20) / power.sum(1, keepdim=True))
    assert float((have - wanted)[0][:, heard].abs().max()) < 0.1
    torch.testing.assert_close(power.sum(1)[0, heard], before.sum(1)[0, heard], rtol=1e-3, atol=0)
    learned = codec.codec.channel_groups()["learned"] if hasattr(codec, "codec") else inner.channel_groups()["learned"]
    assert torch.equal(moved[:, learned], latent[:, learned])
    assert torch.equal(project(latent, torch.tensor(steering.STEER_MIN_SIGMA)), latent)
    assert steering.share_projection(codec, wanted, 0.0) is None and steering.share_projection(codec, None, 1.0) is None


def test_a_seeded_sound_is_dealt_its_clips_shares_and_refused_where_there_is_no_one_clip(tmp_path):
    points = len(band_shares.SHARE_TIMES_MS)
    rows = [[0.0] * points + [float(-i)] * (3 * points) for i in range(4)]  # heard throughout, shares -i dB
    band_shares.write_shares(tmp_path, {"hat": rows}, "test clips", bands=3)
    model = SimpleNamespace(folder=tmp_path, manifest={"name": "m", "labels": ["kick", "hat"], "sample_rate": RATE},
                            codec=SimpleNamespace(hop=HOP))
    steerable = lambda codec: True  # noqa: E731
    import engine.pipeline as pipeline

    original, bands = pipeline.steerable, pipeline.envelope_bands
    pipeline.steerable, pipeline.envelope_bands = steerable, lambda codec: 2
    try:
        draws = SeedNoise([20, 21, 22, 23], (4, 8))
        curve = Conditions(label=1, rms=((0.0, -6.0), (100.0, -30.0)))
        shares = kit_shares(model, curve, draws, 50, 1.0)
        assert shares.shape == (4, 3, 50)
        assert sorted(int(row[0, 0]) for row in shares) == [-3, -2, -1, 0]  # four consecutive seeds: each clip once
        assert kit_shares(model, curve, draws, 50, 0.0) is None
        for conditions, why in ((Conditions(label=1), "loudness curve"), (Conditions(rms=curve.rms), "choose one"),
                                (Conditions(label=1, rms=curve.rms, prompt=torch.zeros(4)), "prompt"),
                                (Conditions(label=1, rms=curve.rms, label_b=0, label_mix=0.5), "hybrid"),
                                (Conditions(label=0, rms=curve.rms), "python -m engine bands")):
            with pytest.raises(InvalidRequestError, match=why):
                kit_shares(model, conditions, draws, 50, 1.0)
        with pytest.raises(InvalidRequestError, match="seed"):
            kit_shares(model, curve, torch.zeros(4, 4, 8), 50, 1.0)
    finally:
        pipeline.steerable, pipeline.envelope_bands = original, bands
    payload = json.loads((tmp_path / band_shares.SHARES_FILE).read_text())
    payload["spans"] = [17, len(band_shares.SHARE_TIMES_MS)]
    (tmp_path / band_shares.SHARES_FILE).write_text(json.dumps(payload))
    with pytest.raises(CheckpointError, match="python -m engine bands"):
        band_shares.read_shares(tmp_path, "hat", 3)


def test_the_command_measures_a_labels_training_clips_and_defaults_need_it(tmp_path, tiny_models):
    _fake_dataset(tmp_path / "data")
    for name in ("latent-drums", "codec"):
        shutil.copytree(ROOT / "checkpoints" / name, tmp_path / "models" / name)
    folder = tmp_path / "models" / "latent-drums"
    (folder / band_shares.SHARES_FILE).unlink(missing_ok=True)
    refused = cli_in_process("defaults", "--model", str(folder), "--per-label", '{"kick": {"kit_bands": 1}}')
    assert refused.returncode == 2 and "python -m engine bands" in refused.stderr, refused.stderr
    assert_table_command("bands", folder, tmp_path / "data", "hat", band_shares.SHARES_FILE, 6)
    stored = json.loads((folder / band_shares.SHARES_FILE).read_text())
    assert stored["spans"] == [17, len(band_shares.SHARE_TIMES_MS)]  # the level, then the 16 bands
    assert all(len(row) == 17 * len(band_shares.SHARE_TIMES_MS) for row in stored["labels"]["hat"])
    made = cli_in_process("defaults", "--model", str(folder), "--per-label", '{"hat": {"kit_bands": 0.5}}')
    assert made.returncode == 0, made.stderr
    assert json.loads((folder / "manifest.json").read_text())["defaults"]["per_label"]["hat"]["kit_bands"] == 0.5
    for bad in ('{"hat": {"kit_bands": 1.5}}', '{"hat": {"kit_bands": "lots"}}'):
        refused = cli_in_process("defaults", "--model", str(folder), "--per-label", bad)
        assert refused.returncode == 2 and "kit_bands" in refused.stderr, refused.stderr
    waveform = shutil.copytree(tiny_models / "tiny", tmp_path / "tiny")
    refused = cli_in_process("bands", "--model", str(waveform), "--data", str(tmp_path / "data"), "--label", "kick")
    assert refused.returncode == 2 and "not a latent model" in refused.stderr, refused.stderr


def test_a_request_checks_its_strength_and_an_old_recipe_replays_without():
    with pytest.raises(InvalidRequestError, match="kit_bands"):
        GenerationRequest(model="latent-drums", kit_bands=2.0).validated()
    with pytest.raises(InvalidRequestError, match="kit_bands"):
        GenerationRequest(model="latent-drums", kit_bands=float("nan")).validated()
    assert GenerationRequest.from_recipe({"model": "latent-drums", "seed": 3}).kit_bands == 0.0


def _shares_of(codec, audio: torch.Tensor) -> torch.Tensor:
    inner = steering._inner(codec)
    return band_shares.shares_db(steering.band_powers(codec, inner.encode_raw(audio)), inner.hop, RATE)


def test_the_studio_gives_a_sound_alone_its_clips_shares_records_them_and_replays_them():
    """`latent-drums`' hats asked alone take their label's default, which the recipe records and
    replays bit for bit; each sound's bands then sit nearer its dealt clip's shares than the same seed
    made at 0 (the network's own); a hybrid takes none."""
    from engine import Studio
    from engine.models import resolve_model as resolve

    studio = Studio(device="cpu")
    asked = GenerationRequest(model="latent-drums", label="hat", seed=1000, count=2, steps=6)
    default = band_shares.strength(resolve("latent-drums").manifest, "hat")
    assert default > 0
    made = studio.render(asked).sounds
    assert [sound.recipe["kit_bands"] for sound in made] == [default, default]
    replayed = studio.render(GenerationRequest.from_recipe(made[1].recipe)).sounds[0]
    assert torch.equal(replayed.audio, made[1].audio)
    own = studio.render(asked.with_(kit_bands=0.0)).sounds
    assert [sound.recipe["kit_bands"] for sound in own] == [0.0, 0.0]
    codec = studio.load(studio.entry("latent-drums")).codec
    table = band_shares.read_shares(resolve("latent-drums").folder, "hat", 1 + steering.envelope_bands(codec))
    wanted = dealt_spectra(table, [1000, 1001])
    early = torch.tensor(band_shares.SHARE_TIMES_MS) <= 200  # the hit, where a hat is heard
    distance = lambda sounds: (_shares_of(codec, torch.stack([s.audio for s in sounds])) - wanted)[..., early].abs() \
        .mean(dim=(1, 2))  # noqa: E731
    assert bool((distance(made) < distance(own) - 1.0).all()), (distance(made), distance(own))
    hybrid = studio.render(asked.with_(label_b="cymbal", label_mix=0.3, count=1)).sounds[0]
    assert hybrid.recipe["kit_bands"] == 0.0


def test_the_command_line_sets_the_strength_and_the_wav_records_it(tmp_path):
    from engine.audio import read_recipe

    made = cli_in_process("generate", "--model", "latent-drums", "--label", "hat", "--seed", "7", "--steps", "3",
                          "--length", "0.3", "--kit-bands", "0.25", "--out", str(tmp_path))
    assert made.returncode == 0, made.stderr
    (wav,) = tmp_path.glob("*.wav")
    assert read_recipe(wav)["kit_bands"] == 0.25
    refused = cli_in_process("generate", "--model", "latent-drums", "--label", "hat", "--kit-bands", "3",
                             "--out", str(tmp_path))
    assert refused.returncode == 2 and "kit_bands must be between" in refused.stderr, refused.stderr


def test_the_page_moves_the_timbre_with_the_sound_and_keeps_it_in_recipes_and_presets(handlers):
    """The page's "Real-hit timbre" shows only for a model with band shares, moves to each Sound's
    default there, goes into the recipe, comes back from it (a recipe from before it: 0, as made)
    and is kept in a preset."""
    hat = band_shares.strength(resolve_model("latent-drums").manifest, "hat")
    assert handlers.label_defaults("latent-drums", "hat", kit_bands=0.0)["kit_bands"] == hat
    assert "kit_bands" not in handlers.label_defaults("latent-drums", "hat", kit_bands=0.35)  # the user's own value
    assert handlers.describe_model("latent-drums")["kit_bands"]["value"] == band_shares.strength(
        resolve_model("latent-drums").manifest, None)
    assert handlers._model_controls("latent-drums")["kit_bands"]["visible"] is True
    assert handlers._model_controls("latent-fast")["kit_bands"]["visible"] is False
    assert handlers.describe_model("latent-fast")["kit_bands"] == {"__type__": "update", "visible": False, "value": 0.0}
    _, final = run_generate(handlers, model="latent-drums", label="hat", sampler="euler_a", steps=3, length=0.3,
                            kit_bands=0.35)
    take = final["session"].current()[0]
    assert take.recipe["kit_bands"] == 0.35 and take.recipe["shape"] == "kit"
    assert handlers._controls(dict(take.recipe), "")["kit_bands"]["value"] == 0.35
    old = {k: v for k, v in take.recipe.items() if k != "kit_bands"}
    assert handlers._controls(old, "")["kit_bands"]["value"] == 0.0  # made before it: without
    saved = handlers.save_preset("Dark hat", False, "latent-drums", "hat", "euler_a", 3, 4.0, 5, None, 0.0, 0.3,
                                 kit_bands=0.6)
    assert "dark-hat" in saved["recipe_note"]
    assert handlers.load_preset("dark-hat")["kit_bands"]["value"] == 0.6
