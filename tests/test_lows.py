"""Low-band ceilings (engine.lows, engine.pipeline.low_ceiling): how much of a Sound's real hits'
energy lies in each band under 690 Hz, measured from the data set, kept beside the weights, and
held after decoding; the command that writes them, and the shipped snares' rumble."""

from __future__ import annotations

import json
import math
import shutil
from types import SimpleNamespace

import pytest
import torch

from engine import lows
from engine.conditions import Conditions
from engine.errors import CheckpointError
from engine.pipeline import low_ceiling
from tests.helpers import cli_in_process, shipped_latent_fast
from tests.test_eval import _fake_dataset

RATE = 44100
BANDS = len(lows.EDGES_HZ) - 1


def tones(*parts: tuple[float, float], seconds: float = 0.5) -> torch.Tensor:
    """(1, 2, N): sines of (Hz, amplitude), each decaying over 0.1 s, the same on both channels."""
    t = torch.arange(int(seconds * RATE), dtype=torch.float64) / RATE
    mono = sum(amp * torch.sin(2 * math.pi * hz * t) for hz, amp in parts) * torch.exp(-t / 0.1)
    return mono.float().repeat(2, 1)[None]


def band_of(hz: float) -> int:
    return next(i for i, (low, high) in enumerate(zip(lows.EDGES_HZ, lows.EDGES_HZ[1:])) if low <= hz < high)


def test_a_tones_share_lands_in_its_band():
    shares = lows.band_shares_db(tones((50.0, 1.0), (1000.0, 1.0)), RATE)[0]
    assert shares.shape == (BANDS,)
    assert abs(float(shares[band_of(50.0)]) + 3.0) < 0.5          # half the energy
    assert float(shares[band_of(250.0)]) < -40.0                    # nothing there
    assert torch.equal(lows.band_shares_db(torch.zeros(1, 2, 4096), RATE)[0], torch.full((BANDS,), lows.FLOOR_DB))


def test_a_rumble_over_its_ceiling_is_held_there_and_the_rest_of_the_sound_is_kept():
    sound = tones((45.0, 0.5), (250.0, 1.0), (3000.0, 1.0))
    ceiling = torch.full((BANDS,), -3.0)
    ceiling[band_of(45.0)] = -30.0
    held = lows.hold_lows(sound, RATE, ceiling)
    before, after = lows.band_shares_db(sound, RATE)[0], lows.band_shares_db(held, RATE)[0]
    assert float(before[band_of(45.0)]) > -12.0
    assert abs(float(after[band_of(45.0)]) + 30.0) < 1.0
    spectrum = lambda x: torch.fft.rfft(x[0, 0].double()).abs()  # noqa: E731
    freqs = torch.fft.rfftfreq(sound.shape[-1], 1.0 / RATE)
    for hz in (250.0, 3000.0):  # the body and the top: their level is unchanged
        near = (freqs - hz).abs() < 3.0
        ratio = float(spectrum(held)[near].max() / spectrum(sound)[near].max())
        assert abs(20 * math.log10(ratio)) < 0.5, (hz, ratio)
    assert held.shape == sound.shape and torch.isfinite(held).all()


def test_the_cut_rings_neither_before_the_attack_nor_round_onto_the_clips_end():
    """A hit at the clip's first sample over a rumble, in a clip silent after 0.5 s: held, the end
    stays silent (a filter over the unpadded clip wrapped the cut's response round onto it), and the
    studio's tail fade leaves the held share on its ceiling (it had taken that copy away again)."""
    from engine.audio import fade_out

    sound = torch.cat([tones((45.0, 0.5), (250.0, 1.0), (3000.0, 1.0)), torch.zeros(1, 2, RATE)], dim=-1)
    ceiling = torch.zeros(BANDS)
    ceiling[band_of(45.0)] = -30.0
    held = lows.hold_lows(sound, RATE, ceiling)
    end = held[..., -RATE // 4:]
    assert float(end.abs().max()) < 1e-3 * float(held.abs().max())
    faded = fade_out(held[0], RATE // 4)[None]
    assert abs(float(lows.band_shares_db(faded, RATE)[0, band_of(45.0)]) + 30.0) < 1.0


def test_a_sound_under_every_ceiling_and_a_band_the_kits_fill_come_back_unchanged():
    sound = tones((250.0, 1.0), (3000.0, 1.0))
    assert torch.equal(lows.hold_lows(sound, RATE, torch.full((BANDS,), -1.0)), sound)
    body = torch.zeros(BANDS)
    body[band_of(250.0)] = lows.QUIET_DB + 5.0  # the kits' own body: the 250 Hz tone at -3 dB stays
    assert float(lows.band_shares_db(sound, RATE)[0, band_of(250.0)]) > lows.QUIET_DB + 10.0
    assert torch.equal(lows.hold_lows(sound, RATE, body), sound)


def test_the_ceilings_are_measured_written_and_read_back_and_a_damaged_file_says_so(tmp_path):
    clips = torch.cat([tones((45.0, 0.1 * k), (250.0, 1.0)) for k in range(1, 6)])
    row = lows.measure(clips, RATE)
    middle = lows.band_shares_db(clips[2:3], RATE)[0]  # the median clip in the rumble's band and the body's
    for hz in (45.0, 250.0):
        assert row[band_of(hz)] == pytest.approx(float(middle[band_of(hz)]), abs=0.02)
    assert len(row) == BANDS
    lows.write_lows(tmp_path, {"snare": row}, "test clips", 0.5)
    assert torch.equal(lows.read_lows(tmp_path, "snare"), torch.tensor(row))
    assert lows.read_lows(tmp_path, "kick") is None and lows.read_lows(None, "snare") is None
    payload = json.loads((tmp_path / lows.LOWS_FILE).read_text())
    payload["edges_hz"] = payload["edges_hz"][:-1]
    (tmp_path / lows.LOWS_FILE).write_text(json.dumps(payload))
    with pytest.raises(CheckpointError, match="python -m engine lows"):
        lows.read_lows(tmp_path, "snare")
    (tmp_path / lows.LOWS_FILE).write_text("{not json")
    with pytest.raises(CheckpointError, match="damaged"):
        lows.read_lows(tmp_path, "snare")
    with pytest.raises(Exception, match="quantile"):
        lows.measure(clips, RATE, 1.5)


def test_a_hybrid_fades_the_ceiling_in_with_its_mix(tmp_path):
    row = [-30.0] * BANDS
    lows.write_lows(tmp_path, {"snare": row}, "test", 0.5)
    model = SimpleNamespace(folder=tmp_path, manifest={"labels": ["kick", "snare", "perc"]})
    assert torch.equal(low_ceiling(model, Conditions(label=1)), torch.tensor(row))
    assert low_ceiling(model, Conditions(label=2)) is None
    assert low_ceiling(model, Conditions(label=0, label_b=2, label_mix=0.5)) is None
    mixed = low_ceiling(model, Conditions(label=2, label_b=1, label_mix=0.25))
    assert torch.allclose(mixed, torch.full((BANDS,), -7.5))


def test_the_command_measures_a_labels_training_hits_and_refuses_what_it_cannot(tmp_path, tiny_models):
    _fake_dataset(tmp_path / "data")
    folder = shipped_latent_fast(tmp_path / "models")
    (folder / lows.LOWS_FILE).unlink()
    made = cli_in_process("lows", "--model", str(folder), "--data", str(tmp_path / "data"),
                          "--label", "snare", "--label", "hat")
    assert made.returncode == 0, made.stderr
    stored = json.loads((folder / lows.LOWS_FILE).read_text())
    assert set(stored["labels"]) == {"snare", "hat"} and stored["quantile"] == lows.QUANTILE
    assert len(stored["labels"]["snare"]) == BANDS
    for bad, says in ((["--label", "tuba"], "no label"), (["--label", "snare", "--quantile", "0"], "quantile")):
        refused = cli_in_process("lows", "--model", str(folder), "--data", str(tmp_path / "data"), *bad)
        assert refused.returncode == 2 and says in refused.stderr, refused.stderr
    waveform = shutil.copytree(tiny_models / "tiny", tmp_path / "tiny")
    refused = cli_in_process("lows", "--model", str(waveform), "--data", str(tmp_path / "data"), "--label", "kick")
    assert refused.returncode == 2 and "not a latent model" in refused.stderr, refused.stderr


@pytest.mark.numeric
def test_the_shipped_latent_models_snares_carry_no_more_rumble_than_the_kits():
    """`latent-fast`'s snares as the studio makes them: under 110 Hz at most 1.5 dB over the training
    snares' median share; without the ceilings 8 dB or more over it."""
    from engine import pipeline
    from engine.eval.run import generate_clips
    from engine.models import load_model, resolve_model

    model = load_model(resolve_model("latent-fast").folder)
    ceiling = lows.read_lows(model.folder, "snare")
    assert ceiling is not None
    rumble = slice(0, band_of(110.0))
    held = lows.band_shares_db(generate_clips(model, 3, label="snare", seed=1000), RATE)
    assert float((held[:, rumble] - ceiling[rumble]).max()) < 1.5
    original = pipeline.low_ceiling
    try:
        pipeline.low_ceiling = lambda m, c: None
        loose = lows.band_shares_db(generate_clips(model, 3, label="snare", seed=1000), RATE)
    finally:
        pipeline.low_ceiling = original
    assert float((loose[:, rumble] - ceiling[rumble]).mean()) > 8.0
