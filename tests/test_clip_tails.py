"""A Sound's tail cut towards the tail of a real training clip its seed deals (engine.nets.tail,
engine.tones' tails table, engine.pipeline.detail_for and decode): the filter on a kick whose band 0
is a flat box of noise, the table beside the weights, the deal, the command, and the shipped
`drums-3step` kicks."""

from __future__ import annotations

import json
import shutil
from types import SimpleNamespace

import pytest
import torch

from engine import tones
from engine.conditions import Conditions
from engine.errors import CheckpointError
from engine.nets import tail
from engine.pipeline import detail_for
from engine.seeds import SeedNoise
from tests.helpers import assert_filter_spares_a_reference, assert_table_command
from tests.test_eval import _fake_dataset

RATE = 44100


def kick(box_db: float | None, seed: int = 0, length: int = 32768) -> torch.Tensor:
    """``(1, 2, length)``: a 55 Hz tone decaying over 0.4 s after a 5 ms click, plus, with ``box_db``,
    noise flat from 0 to 689 Hz that holds ``box_db`` under the tone's start for the whole tail: the
    box `drums-3step` drew."""
    t = torch.arange(length) / RATE
    hit = torch.sin(2 * torch.pi * 55.0 * t) * torch.exp(-t / 0.4)
    generator = torch.Generator().manual_seed(seed)
    click = torch.randn(length, generator=generator) * (t < 0.005) * 0.5
    sound = hit + click
    if box_db is not None:
        spectrum = torch.fft.rfft(torch.randn(length, generator=generator))
        spectrum[torch.fft.rfftfreq(length, 1 / RATE) > 689.0] = 0
        noise = torch.fft.irfft(spectrum, n=length)
        sound = sound + noise / noise.std() * 10 ** (box_db / 20) * torch.exp(-t / 1.5) * (t > 0.01)
    return torch.stack([sound, sound])[None]


def box_db(audio: torch.Tensor) -> torch.Tensor:
    """Per sound: the tail's (200-600 ms) level at 250-680 Hz over its level at 20-150 Hz (dB)."""
    mono = audio.float().mean(1)[:, int(0.2 * RATE):int(0.6 * RATE)]
    power = torch.fft.rfft(mono * torch.hann_window(mono.shape[-1])).abs().square()
    freqs = torch.fft.rfftfreq(mono.shape[-1], 1 / RATE)
    high = power[:, (freqs >= 250) & (freqs < 680)].mean(-1)
    low = power[:, (freqs >= 20) & (freqs < 150)].mean(-1)
    return 10 * torch.log10(high / low)


def test_a_boxed_tail_is_cut_to_its_clips_shape_and_its_attack_is_left():
    """A kick with a box is cut towards a clean kick's tail (its noise 35 dB lower) by more than 15 dB
    at 250-680 Hz, to within 6 dB of it; the samples before the cut fades in are left; a clip with a
    louder box of its own cuts next to nothing (the filter never raises); at strength 0 the sound is
    left bit for bit."""
    boxed, clean = kick(-20.0, seed=1), kick(-55.0, seed=2)
    clip = tail.tail_shapes_db(clean, RATE)[0]
    cut = tail.cut_tail(boxed, clip, RATE)
    assert float(box_db(boxed) - box_db(cut)) > 15.0, (box_db(boxed), box_db(cut))
    assert abs(float(box_db(cut) - box_db(clean))) < 6.0
    untouched = int(tail.CUT_START_S * RATE) - tail.TAIL_FFT // 2  # the peak is in the click, at most 5 ms in
    torch.testing.assert_close(cut[..., :untouched], boxed[..., :untouched], atol=1e-5, rtol=0)
    assert torch.equal(cut[:, 0], cut[:, 1])  # the same cut on every channel
    louder = tail.tail_shapes_db(kick(-10.0, seed=3), RATE)[0]  # its box 10 dB up, ending at the same edge
    assert abs(float(box_db(tail.cut_tail(boxed, louder, RATE)) - box_db(boxed))) < 1.5
    assert torch.equal(tail.cut_tail(boxed, clip, RATE, strength=0.0), boxed)
    silent = torch.zeros(1, 2, 32768)
    assert torch.equal(tail.cut_tail(silent, clip, RATE), silent)


def test_clip_tails_are_measured_written_read_back_and_dealt(tmp_path):
    clips = torch.cat([kick(None, seed=4), kick(-20.0, seed=5), kick(-35.0, seed=6)])
    rows = tones.measure_tails(clips, RATE)
    assert len(rows) == 3 and all(len(row) == tail.TAIL_POINTS for row in rows)
    tones.write_tails(tmp_path, {"kick": rows}, "test clips")
    table = tones.read_tails(tmp_path, "kick")
    assert table.shape == (3, tail.TAIL_POINTS)
    assert float((table - tail.tail_shapes_db(clips, RATE)[0]).abs().max()) <= 0.05 + 1e-4
    assert float(table[:, :tail.REFERENCE_BINS].amax(dim=1).abs().max()) <= 0.05  # relative to the tail's tone
    assert tones.read_tails(tmp_path, "snare") is None and tones.read_tails(None, "kick") is None
    dealt = tones.dealt_spectra(table, [20, 21, 22])  # three consecutive seeds: every clip once
    assert sorted(int((table == row).all(dim=1).nonzero()) for row in dealt) == [0, 1, 2]
    payload = json.loads((tmp_path / tones.TAILS_FILE).read_text())
    payload["spans"] = [1024, 64]
    (tmp_path / tones.TAILS_FILE).write_text(json.dumps(payload))
    with pytest.raises(CheckpointError, match="python -m engine tails"):
        tones.read_tails(tmp_path, "kick")


def test_a_seeded_waveform_kick_is_dealt_its_clips_tail_unless_a_blend_or_no_seed(tmp_path):
    tones.write_tails(tmp_path, {"kick": tones.measure_tails(torch.cat([kick(None, seed=7), kick(-30.0, seed=8)]),
                                                             RATE)}, "test clips")
    codec = SimpleNamespace(detail_for=lambda label, seeds, batch: None, tone_for=lambda label, seeds, batch: None)
    model = SimpleNamespace(folder=tmp_path, manifest={"labels": ["kick", "snare"]}, codec=codec)
    draws = SeedNoise([5, 6, 7], (4, 8))
    detail = detail_for(model, Conditions(label=0), draws, 3)
    assert detail.flutter is None and detail.tone is None and detail.spectrum is None
    torch.testing.assert_close(detail.tail, tones.dealt_spectra(tones.read_tails(tmp_path, "kick"), [5, 6, 7]))
    assert detail[:1].tail.shape == (1, tail.TAIL_POINTS)  # the preview's
    assert detail_for(model, Conditions(label=1), draws, 3) is None                          # a Sound without tails
    assert detail_for(model, Conditions(label=0, label_b=1, label_mix=0.3), draws, 3) is None  # a hybrid
    assert detail_for(model, Conditions(label=0), torch.zeros(3, 4, 8), 3) is None           # no seeds to deal by


def test_the_tails_command_measures_a_labels_training_clips(tmp_path, tiny_models):
    _fake_dataset(tmp_path / "data")
    folder = shutil.copytree(tiny_models / "tiny", tmp_path / "tiny")  # a waveform model: any kind takes tails
    assert_table_command("tails", folder, tmp_path / "data", "kick", tones.TAILS_FILE, 6)  # the fake set's six kicks


@pytest.mark.numeric
def test_the_shipped_waveform_kicks_tails_are_cut_nearer_real_kicks():
    """`drums-3step`'s kicks as the studio makes them: over 16 seeds their tails' 250-680 Hz stand
    lower against their tone than the network's own do (the box), and a seed made alone is cut as
    in a batch."""
    from engine import pipeline
    from engine.eval.run import generate_clips
    from engine.models import load_model, resolve_model

    model = load_model(resolve_model("drums-3step").folder)
    table = tones.read_tails(model.folder, "kick")
    assert table is not None and table.shape[0] >= 40
    made = generate_clips(model, 16, label="kick", seed=1000)
    original = pipeline.read_tails
    try:
        pipeline.read_tails = lambda folder, label: None
        own = generate_clips(model, 16, label="kick", seed=1000)
    finally:
        pipeline.read_tails = original
    assert float(box_db(made).median()) < float(box_db(own).median()) - 2.0, (box_db(made), box_db(own))
    assert bool((box_db(made) <= box_db(own) + 0.5).all())  # cut, never raised
    alone = generate_clips(model, 1, label="kick", seed=1003)  # dealt by its seed, not its place
    assert abs(float(box_db(alone) - box_db(made[3:4]))) < 0.5


def test_the_studio_cuts_a_kick_asked_for_but_not_a_variation_of_a_reference(tmp_path, monkeypatch):
    from engine import GenerationRequest

    assert_filter_spares_a_reference(monkeypatch, tmp_path, "cut_tail",
                                     GenerationRequest(model="drums-3step", label="kick", seed=1000, count=2))
