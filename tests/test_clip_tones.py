"""A latent model's Sound in the colour of a real training clip its seed deals (engine.tones,
engine.nets.tone.match_tone, engine.pipeline.detail_for): measured from the data set, kept beside
the weights, dealt as a deck, filtered onto the decoded sound; the command that writes them, and
the shipped cymbals."""

from __future__ import annotations

import json
import shutil
from types import SimpleNamespace

import pytest
import torch

from engine import tones
from engine.conditions import Conditions
from engine.errors import CheckpointError
from engine.nets import tone
from engine.pipeline import detail_for
from engine.seeds import SeedNoise
from tests.helpers import assert_filter_spares_a_reference, assert_table_command, cli_in_process, shipped_latent_fast
from tests.test_eval import _fake_dataset

SPANS = tone.MATCH_BANDS * tone.TONE_POINTS


def noise(count: int, seed: int = 0, length: int = 32768) -> torch.Tensor:
    return torch.randn(count, 2, length, generator=torch.Generator().manual_seed(seed))


def coloured(audio: torch.Tensor, tilt_db: float) -> torch.Tensor:
    """``audio`` with a straight tilt of ``tilt_db`` from 0 Hz to Nyquist (dB, linear in frequency)."""
    spectrum = torch.fft.rfft(audio)
    gain = torch.pow(10.0, tilt_db * torch.linspace(0, 1, spectrum.shape[-1]) / 20.0)
    return torch.fft.irfft(spectrum * gain, n=audio.shape[-1])


def relative(spectra: torch.Tensor) -> torch.Tensor:
    """Each clip's spectrum less its mean: its colour, not its level."""
    flat = spectra.flatten(1)
    return flat - flat.mean(dim=1, keepdim=True)


def test_a_sound_takes_its_clips_colour_and_keeps_its_loudness():
    """White noise matched to a darker and a brighter clip reads back as their colour within 1 dB a
    span, at its own loudness; at strength 0 it is left bit for bit; a clip's silent spans (its top
    half cut away) leave the sound's own there."""
    sound = noise(2, seed=1)
    clips = torch.cat([coloured(noise(1, seed=2), -10.0), coloured(noise(1, seed=3), 8.0)])
    wanted = tone.spectra_db(clips)
    matched = tone.match_tone(sound, wanted)
    assert float((relative(tone.spectra_db(matched)) - relative(wanted)).abs().mean()) < 1.0
    assert float((relative(tone.spectra_db(sound)) - relative(wanted)).abs().mean()) > 2.0
    level = lambda audio: 10 * torch.log10(audio.pow(2).mean(dim=(1, 2)))  # noqa: E731
    assert float((level(matched) - level(sound)).abs().max()) < 1.0
    assert torch.equal(tone.match_tone(sound, wanted, strength=0.0), sound)
    halved = torch.fft.rfft(clips[:1])
    halved[..., halved.shape[-1] // 2:] = 0
    faded = torch.ones(clips.shape[-1])  # faded in and out: no click at the ends to fill the top
    faded[:4096], faded[-4096:] = torch.hann_window(8192)[:4096], torch.hann_window(8192)[4096:]
    cut = tone.spectra_db(torch.fft.irfft(halved, n=clips.shape[-1]) * faded)
    top = slice(tone.MATCH_BANDS // 2 + 1, None)
    assert float(cut[:, top].max()) < float(cut.max()) - tone.TONE_FLOOR_DB
    lowered = tone.match_tone(sound[:1], cut)
    kept = tone.spectra_db(lowered)[:, top] - tone.spectra_db(sound[:1])[:, top]
    assert float(kept.std()) < 0.5 and float(kept.abs().max()) < 6.0  # one level shift there, no -18 dB cut
    assert abs(float(level(lowered) - level(sound[:1]))) < 0.5  # a strong colour still keeps the loudness


def test_clip_tones_are_measured_written_read_back_and_dealt_as_a_deck(tmp_path):
    clips = torch.cat([coloured(noise(1, seed=s), tilt) for s, tilt in enumerate((-6.0, 0.0, 6.0))])
    rows = tones.measure(clips)
    assert len(rows) == 3 and all(len(row) == SPANS for row in rows)
    tones.write_tones(tmp_path, {"cymbal": rows}, "test clips")
    table = tones.read_tones(tmp_path, "cymbal")
    assert table.shape == (3, tone.MATCH_BANDS, tone.TONE_POINTS)
    assert float((table - tone.spectra_db(clips)).abs().max()) <= 0.05 + 1e-4  # kept to 0.1 dB
    assert tones.read_tones(tmp_path, "kick") is None and tones.read_tones(None, "cymbal") is None
    dealt = tones.dealt_spectra(table, [10, 11, 12])  # three consecutive seeds: every clip once
    assert sorted(int((table.flatten(1) == row.flatten()).all(dim=1).nonzero()) for row in dealt) == [0, 1, 2]
    halfway = tones.dealt_spectra(table, [10], [11], morph=0.5)
    torch.testing.assert_close(halfway[0], (dealt[0] + dealt[1]) / 2)
    payload = json.loads((tmp_path / tones.TONES_FILE).read_text())
    payload["spans"] = [32, 4]
    (tmp_path / tones.TONES_FILE).write_text(json.dumps(payload))
    with pytest.raises(CheckpointError, match="python -m engine tones"):
        tones.read_tones(tmp_path, "cymbal")
    payload["spans"], payload["labels"]["cymbal"][1] = [tone.MATCH_BANDS, tone.TONE_POINTS], [0.0] * 5
    (tmp_path / tones.TONES_FILE).write_text(json.dumps(payload))
    with pytest.raises(CheckpointError, match="damaged"):
        tones.read_tones(tmp_path, "cymbal")


def test_a_seeded_sound_is_dealt_its_clip_unless_a_prompt_or_a_blend_says_otherwise(tmp_path):
    rows = tones.measure(torch.cat([coloured(noise(1, seed=s), tilt) for s, tilt in enumerate((-6.0, 6.0))]))
    tones.write_tones(tmp_path, {"cymbal": rows}, "test clips")
    model = SimpleNamespace(folder=tmp_path, manifest={"labels": ["kick", "cymbal"]},
                            codec=SimpleNamespace(latent_channels=4))
    draws = SeedNoise([5, 6, 7], (4, 8))
    detail = detail_for(model, Conditions(label=1), draws, 3)
    assert detail.flutter is None and detail.tone is None and detail.spectrum.shape == (3, tone.MATCH_BANDS,
                                                                                        tone.TONE_POINTS)
    torch.testing.assert_close(detail.spectrum, tones.dealt_spectra(tones.read_tones(tmp_path, "cymbal"), [5, 6, 7]))
    assert detail[:1].spectrum.shape[0] == 1  # the preview's
    assert detail_for(model, Conditions(label=0), draws, 3) is None                       # a Sound without clips
    assert detail_for(model, Conditions(label=1, prompt=torch.zeros(8)), draws, 3) is None  # a prompt's colour
    assert detail_for(model, Conditions(label=1, label_b=0, label_mix=0.3), draws, 3) is None  # a hybrid
    assert detail_for(model, Conditions(label=1), torch.zeros(3, 4, 8), 3) is None        # no seeds to deal by


def test_the_command_measures_a_labels_training_clips_and_refuses_what_it_cannot(tmp_path, tiny_models):
    _fake_dataset(tmp_path / "data")
    folder = shipped_latent_fast(tmp_path / "models")
    assert_table_command("tones", folder, tmp_path / "data", "hat", tones.TONES_FILE, 6)  # the fake set's six hats
    waveform = shutil.copytree(tiny_models / "tiny", tmp_path / "tiny")
    refused = cli_in_process("tones", "--model", str(waveform), "--data", str(tmp_path / "data"), "--label", "kick")
    assert refused.returncode == 2 and "--envelope-tone" in refused.stderr, refused.stderr


@pytest.mark.numeric
def test_the_shipped_cymbals_are_dealt_a_kit_cymbals_colour():
    """`latent-fast`'s cymbals as the studio makes them: each nearer its dealt clip's colour than the
    network's own sound is (which is darker than the kits' and alike from seed to seed), and a seed
    made alone takes the same colour as in a batch."""
    from engine import pipeline
    from engine.eval.run import generate_clips
    from engine.models import load_model, resolve_model

    model = load_model(resolve_model("latent-fast").folder)
    table = tones.read_tones(model.folder, "cymbal")
    assert table is not None and table.shape[0] >= 100
    seeds = range(1000, 1003)
    made = generate_clips(model, 3, label="cymbal", seed=1000, steps=4)
    original = pipeline.read_tones
    try:
        pipeline.read_tones = lambda folder, label: None
        own = generate_clips(model, 3, label="cymbal", seed=1000, steps=4)
    finally:
        pipeline.read_tones = original
    wanted = relative(tones.dealt_spectra(table, list(seeds)))
    distance = lambda audio: (relative(tone.spectra_db(audio)) - wanted).abs().mean(dim=1)  # noqa: E731
    assert bool((distance(made) < distance(own) - 1.0).all()), (distance(made), distance(own))
    alone = generate_clips(model, 1, label="cymbal", seed=1001, steps=4)  # dealt by its seed, not its place
    assert float((tone.spectra_db(alone) - tone.spectra_db(made[1:2])).abs().max()) < 0.2


def test_the_studio_colours_a_cymbal_asked_for_but_not_a_variation_of_a_reference(tmp_path, monkeypatch):
    """In the studio a cymbal takes its dealt clip's colour; "more like this" of a sound keeps the
    reference's colour (no clip's laid over it)."""
    from engine import GenerationRequest

    assert_filter_spares_a_reference(monkeypatch, tmp_path, "match_tone",
                                     GenerationRequest(model="latent-fast", label="cymbal", seed=1000, steps=4,
                                                       length=0.5, count=2))


def test_a_table_is_parsed_once_per_version_of_its_file_and_each_reader_gets_its_own_rows(tmp_path, monkeypatch):
    """Every seeded sound asks for its Sound's row; the file is parsed again only when it changes."""
    from engine import label_tables

    rows = tones.measure(torch.cat([noise(1, seed=s) for s in range(2)]))
    tones.write_tones(tmp_path, {"cymbal": rows}, "test clips")
    parsed = []
    monkeypatch.setattr(label_tables.json, "loads", lambda text: parsed.append(1) or json.JSONDecoder().decode(text))
    first = tones.read_tones(tmp_path, "cymbal")
    first += 100.0  # a caller's own copy
    again = tones.read_tones(tmp_path, "cymbal")
    assert len(parsed) == 1 and float(again.abs().max()) < 100.0
    tones.write_tones(tmp_path, {"cymbal": rows[:1]}, "test clips")  # rewritten: read anew
    assert tones.read_tones(tmp_path, "cymbal").shape[0] == 1 and len(parsed) == 2


def test_a_sound_is_narrowed_to_its_dealt_clips_width_never_widened(tmp_path):
    """Clip widths (side over mid) are measured, kept, read back and dealt as tones are; a decoded
    sound is narrowed to its clip's width (a mono clip: mono), one already narrower is left as it is,
    and a sound without a width row is decoded as before."""
    from engine import dsp

    base = noise(3, seed=4)
    clips = torch.stack([torch.stack([c[0], c[0] * 0.9 + c[1] * m]) for c, m in zip(base, (0.0, 0.3, 1.0))])
    rows = tones.measure_widths(clips)
    assert [len(row) for row in rows] == [1, 1, 1] and rows[0][0] < -20 < rows[1][0] < rows[2][0]
    tones.write_widths(tmp_path, {"cymbal": rows}, "test clips")
    table = tones.read_widths(tmp_path, "cymbal")
    assert table.shape == (3, 1) and tones.read_widths(tmp_path, "kick") is None
    wide = noise(3, seed=9)  # two unrelated channels: side as loud as mid
    wanted = torch.tensor([rows[0][0], rows[1][0], 10.0])
    narrowed = dsp.match_width(wide, wanted, 44100)
    got = dsp.side_mid_db(narrowed)
    assert abs(float(got[1] - wanted[1])) < 0.5 and float(got[0]) < -20  # the mono clip's: mono
    torch.testing.assert_close(narrowed[2], wide[2])  # asked wider than it is: left as made
    assert torch.equal(dsp.match_width(wide[:, :1], wanted, 44100), wide[:, :1])  # one channel: nothing to narrow
    model = SimpleNamespace(folder=tmp_path, manifest={"labels": ["kick", "cymbal"]},
                            codec=SimpleNamespace(latent_channels=4))
    detail = detail_for(model, Conditions(label=1), SeedNoise([5, 6, 7], (4, 8)), 3)
    assert detail.spectrum is None and detail.side.shape == (3,)
    torch.testing.assert_close(detail.side, tones.dealt_spectra(table, [5, 6, 7])[:, 0])
    assert detail_for(model, Conditions(label=0), SeedNoise([5], (4, 8)), 1) is None


def test_the_widths_command_measures_a_labels_training_clips(tmp_path, tiny_models):
    _fake_dataset(tmp_path / "data")
    folder = shipped_latent_fast(tmp_path / "models")
    assert_table_command("widths", folder, tmp_path / "data", "hat", tones.WIDTHS_FILE, 6)
    waveform = shutil.copytree(tiny_models / "tiny", tmp_path / "tiny")
    refused = cli_in_process("widths", "--model", str(waveform), "--data", str(tmp_path / "data"), "--label", "kick")
    assert refused.returncode == 2 and "not a latent model" in refused.stderr, refused.stderr
