"""Kicks the data set builder makes: synthesised 808-style kicks (engine.data.synth), the kits' own
kicks slowed down (build --slowed-kicks) or with their sub tail continued (build --long-kicks), and
their place in a built data set."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from engine.data import build
from engine.data.captions import kit_style
from engine.data.dataset import DrumDataset
from engine.data.synth import PRE_ROLL_MS, SYNTH_KIT, KickVoice, render_kick, synth_kicks

RATE = 44100


def _voice(**changes) -> KickVoice:
    base = dict(rest_hz=50.0, sweep=2.0, glide_ms=10.0, decay_ms=800.0, attack_ms=1.0, click_db=-30.0,
                drive=1.0, peak_db=-3.0)
    return KickVoice(**{**base, **changes})


def _level_db(clip: torch.Tensor, start_s: float, end_s: float) -> float:
    part = clip[0, int(start_s * RATE):int(end_s * RATE)].double()
    return 10.0 * math.log10(float((part ** 2).mean()) + 1e-30)


def test_a_voice_rests_at_its_pitch_decays_as_set_and_starts_after_the_pre_roll():
    clip = render_kick(_voice(), RATE, 2 * RATE, np.random.default_rng(0))
    assert clip.shape == (2, 2 * RATE) and clip.dtype == torch.float32
    assert torch.equal(clip[0], clip[1])
    start = int(round(PRE_ROLL_MS * RATE / 1000))
    assert clip[:, :start].abs().max() == 0 and clip[0, start:start + 200].abs().max() > 0.01
    assert abs(20 * math.log10(float(clip.abs().max())) - -3.0) < 0.01
    # 400 ms in, the glide is long over: the spectrum peaks at the resting 50 Hz
    tail = clip[0, 13230:30870].numpy()   # 0.3 .. 0.7 s
    tail = tail * np.hanning(len(tail))
    spectrum = np.abs(np.fft.rfft(tail, 8 * len(tail)))
    peak_hz = np.argmax(spectrum) * RATE / (8 * len(tail))
    assert abs(peak_hz - 50.0) < 2.0
    # -60 dB in 800 ms is 7.5 dB per 100 ms
    drop = _level_db(clip, 0.2, 0.3) - _level_db(clip, 0.5, 0.6)
    assert abs(drop - 22.5) < 2.0


def test_the_glide_starts_high_and_a_short_decay_is_short():
    clip = render_kick(_voice(sweep=3.0, glide_ms=20.0, decay_ms=150.0), RATE, RATE, np.random.default_rng(0))
    head = clip[0, :int(0.012 * RATE)].numpy()
    crossings = np.count_nonzero(np.diff(np.sign(head)) != 0) / 2 / 0.012   # ~ frequency in Hz
    assert crossings > 100          # near 3 x 50 Hz at the start, not the resting 50
    assert _level_db(clip, 0.3, 0.4) < _level_db(clip, 0.0, 0.05) - 60


def test_synth_kicks_are_reproducible_and_varied():
    first, again = synth_kicks(6, RATE, 8192, seed=3), synth_kicks(6, RATE, 8192, seed=3)
    assert all(a[0] == b[0] and torch.equal(a[1], b[1]) for a, b in zip(first, again))
    assert len({v.rest_hz for v, _ in first}) == 6
    assert synth_kicks(1, RATE, 8192, seed=4)[0][0] != first[0][0]
    assert all(torch.isfinite(c).all() and c.abs().max() <= 1.0 for _, c in first)


def test_the_kit_reads_as_808_for_the_captions():
    assert "808" in kit_style(SYNTH_KIT)


def test_built_set_gets_synthesised_kicks_in_train_only(tmp_path):
    from tests.test_data import LENGTH, _hit, _wav, NEW_XML   # the tiny kit of the builder's tests
    kit = tmp_path / "kits" / "NewKit"
    kit.mkdir(parents=True)
    (kit / "drumkit.xml").write_text(NEW_XML)
    for i, name in enumerate(("kick_soft.wav", "kick_hard.wav", "snare.wav", "hat.wav", "fx.wav")):
        _wav(kit / name, _hit(i + 1))
    out = tmp_path / "drums"
    assert build.main(["--source", str(tmp_path / "kits"), "--out", str(out), "--length", str(LENGTH),
                       "--holdout", "--synth-kicks", "3", "--quiet"]) == 0
    index = json.loads((out / "index.json").read_text())
    synth = [c for c in index["clips"] if c.get("synth")]
    assert len(synth) == 3 and {c["split"] for c in synth} == {"train"} and {c["category"] for c in synth} == {"kick"}
    assert {c["kit"] for c in synth} == {SYNTH_KIT} and SYNTH_KIT in index["kits"]
    assert synth[0]["synth"]["rest_hz"] == pytest.approx(synth_kicks(1, RATE, LENGTH)[0][0].rest_hz, abs=1e-3)
    train = [c for c in index["clips"] if c["split"] == "train"]
    assert [c["row"] for c in train] == list(range(len(train)))
    # training sees them; the evaluation's real references do not
    assert len(DrumDataset(out, "train")) == len(train)
    real = DrumDataset(out, "train", real_only=True)
    assert len(real) == len(train) - 3 and not any(r.get("synth") for r in real.records)
    with pytest.raises(SystemExit) as bad:
        build.main(["--source", str(tmp_path / "kits"), "--out", str(out), "--synth-kicks", "-1", "--quiet"])
    assert bad.value.code == 2


def test_a_longer_click_keeps_its_highs_longer():
    def highs(click_ms: float) -> float:   # energy of the first difference (mostly highs), 4-12 ms in
        clip = render_kick(_voice(click_ms=click_ms, click_db=-12.0), RATE, RATE // 4, np.random.default_rng(1))
        part = np.diff(clip[0].numpy())[int(0.004 * RATE):int(0.012 * RATE)]
        return float((part ** 2).sum())
    assert highs(10.0) > 10 * highs(1.0)


def _energy_centre_s(clip: torch.Tensor) -> float:
    """Energy-weighted mean time after the onset (first sample within 40 dB of the peak)."""
    power = clip.double().pow(2).sum(0)
    start = int((power >= power.max() * 1e-4).nonzero()[0])
    power = power[start:]
    return float((torch.arange(len(power), dtype=torch.float64) * power).sum() / power.sum()) / RATE


def _spectral_centre_hz(clip: torch.Tensor) -> float:
    spectrum = torch.fft.rfft(clip.double().sum(0)).abs().pow(2)
    return float((torch.fft.rfftfreq(clip.shape[-1], 1.0 / RATE) * spectrum).sum() / spectrum.sum())


def _built_with(tmp_path, *options: str):
    """The builder's tiny kit (two kicks among five hits, 1500 samples each) built with ``options``."""
    from tests.test_data import LENGTH, _hit, _wav, NEW_XML
    kit = tmp_path / "kits" / "NewKit"
    kit.mkdir(parents=True)
    (kit / "drumkit.xml").write_text(NEW_XML)
    for i, name in enumerate(("kick_soft.wav", "kick_hard.wav", "snare.wav", "hat.wav", "fx.wav")):
        _wav(kit / name, _hit(i + 1, n=1500, decay=150.0))
    out = tmp_path / "drums"
    assert build.main(["--source", str(tmp_path / "kits"), "--out", str(out), "--length", str(LENGTH),
                       "--holdout", *options, "--quiet"]) == 0
    return out


def test_built_set_gets_slowed_kicks_in_train_only_longer_and_lower(tmp_path):
    out = _built_with(tmp_path, "--slowed-kicks", "3")
    index = json.loads((out / "index.json").read_text())
    slowed = [c for c in index["clips"] if c.get("slowed")]
    kicks = {c["sha1"]: c for c in index["clips"] if c["category"] == "kick" and not c.get("slowed")}
    assert len(slowed) == 3 and {c["split"] for c in slowed} == {"train"} and {c["category"] for c in slowed} == {"kick"}
    assert {c["slowed"]["from"] for c in slowed} == set(kicks)            # each kick once before any twice
    dataset = DrumDataset(out, "train")
    for record in slowed:
        rate, source = record["slowed"]["rate"], kicks[record["slowed"]["from"]]
        assert build.SLOWED_RATES[0] <= rate <= build.SLOWED_RATES[1]
        assert record["kit"] == source["kit"] and record["file"] == source["file"]
        made, original = dataset[record["row"]]["audio"].float(), dataset[source["row"]]["audio"].float()
        assert float(made.abs().max()) <= 1.0
        assert _energy_centre_s(made) == pytest.approx(_energy_centre_s(original) / rate, rel=0.15)
        assert _spectral_centre_hz(made) == pytest.approx(_spectral_centre_hz(original) * rate, rel=0.15)
    real = DrumDataset(out, "train", real_only=True)
    assert len(real) == len(dataset) - 3 and not any(r.get("slowed") for r in real.records)
    with pytest.raises(SystemExit) as bad:
        build.main(["--source", str(tmp_path / "kits"), "--out", str(out), "--slowed-kicks", "-1", "--quiet"])
    assert bad.value.code == 2



def _kit_kick(pitch_hz: float = 55.0, seconds: float = 1.5, decay_s: float = 0.08, seed: int = 0) -> torch.Tensor:
    """A short kit-like kick (2, N): a pitch-dropping sine with a fast decay, a noise click and a
    mid-band body that decays faster still."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * RATE)) / RATE
    freq = pitch_hz * (1 + 2.5 * np.exp(-t * 60))
    body = np.sin(2 * math.pi * np.cumsum(freq) / RATE) * np.exp(-t / decay_s)
    click = rng.standard_normal(t.size) * np.exp(-t / 0.002) * 0.3
    mids = np.sin(2 * math.pi * 400 * t) * np.exp(-t / 0.03) * 0.2
    mono = 0.8 * (body + click + mids)
    return torch.from_numpy(np.stack([mono, mono]).astype(np.float32))


def _fall_s(clip: torch.Tensor, drop_db: float = 30.0) -> float:
    from engine import dsp
    level = dsp.rms_db(clip, 128)
    peak = int(level.argmax())
    under = torch.nonzero(level[peak:] < level[peak] - drop_db)
    return float(under[0]) * 128 / RATE if len(under) else math.inf


def test_a_kicks_sub_tail_is_continued_at_its_own_pitch_and_falls_as_asked():
    from engine.data.synth import continue_sub_tail

    kick = _kit_kick()
    assert _fall_s(kick) < 0.35
    for fall in (0.5, 1.0):
        longer, pitch = continue_sub_tail(kick, RATE, fall)
        assert pitch == pytest.approx(55.0, abs=4.0)                 # the tail's own pitch, not the drop's start
        assert longer.shape == kick.shape and float(longer.abs().max()) <= 1.0
        # the sine falls 30 dB in `fall` from the takeover, 12 dB under the peak: the kick 30 dB in ~0.6 x fall more
        assert 0.5 * fall < _fall_s(longer) < fall + 0.15
        # the attack is the kick's own: the first 20 ms are untouched
        head = int(0.02 * RATE)
        assert torch.allclose(longer[:, :head], kick[:, :head] / max(1.0, float(kick.abs().max())), atol=2e-3)
        # the tail is low: over 0.3-0.6 s almost all energy sits under 150 Hz
        tail = longer[0, int(0.3 * RATE):int(0.6 * RATE)].double().numpy()
        power = np.abs(np.fft.rfft(tail)) ** 2
        freqs = np.fft.rfftfreq(tail.size, 1 / RATE)
        assert power[freqs < 150].sum() / power.sum() > 0.95
    # longer asked, longer made; the end is faded out, so the clip ends silent
    assert _fall_s(continue_sub_tail(kick, RATE, 1.0)[0]) > _fall_s(continue_sub_tail(kick, RATE, 0.5)[0])
    assert float(continue_sub_tail(kick, RATE, 1.2)[0][:, -10:].abs().max()) < 1e-3


def test_built_set_gets_long_tailed_kicks_in_train_only(tmp_path):
    out = _built_with(tmp_path, "--long-kicks", "3")
    index = json.loads((out / "index.json").read_text())
    long = [c for c in index["clips"] if c.get("long_tail")]
    kicks = {c["sha1"] for c in index["clips"] if c["category"] == "kick" and not c.get("long_tail")}
    assert len(long) == 3 and {c["split"] for c in long} == {"train"} and {c["category"] for c in long} == {"kick"}
    assert {c["long_tail"]["from"] for c in long} == kicks                 # each kick once before any twice
    assert all(build.LONG_FALLS_S[0] <= c["long_tail"]["fall_s"] <= build.LONG_FALLS_S[1] for c in long)
    dataset = DrumDataset(out, "train")
    real = DrumDataset(out, "train", real_only=True)
    assert len(real) == len(dataset) - 3 and not any(r.get("long_tail") for r in real.records)
    with pytest.raises(SystemExit) as bad:
        build.main(["--source", str(tmp_path / "kits"), "--out", str(out), "--long-kicks", "-1", "--quiet"])
    assert bad.value.code == 2


def _share_under_hz(clip: torch.Tensor, hz: float) -> float:
    power = np.abs(np.fft.rfft(clip.double().numpy(), axis=-1)) ** 2
    freqs = np.fft.rfftfreq(clip.shape[-1], 1 / RATE)
    return float(power[..., freqs < hz].sum() / power.sum())


def test_built_set_gets_thinned_closed_hats_in_train_only_with_their_lows_gone(tmp_path):
    out = _built_with(tmp_path, "--thin-hats", "2")
    index = json.loads((out / "index.json").read_text())
    thinned = [c for c in index["clips"] if c.get("thinned")]
    hats = {c["sha1"]: c for c in index["clips"] if c["subcategory"] == "closed_hat" and not c.get("thinned")}
    assert len(thinned) == 2 and {c["split"] for c in thinned} == {"train"}
    assert {c["category"] for c in thinned} == {"hat"} and {c["thinned"]["from"] for c in thinned} == set(hats)
    dataset = DrumDataset(out, "train")
    for record in thinned:
        corner, source = record["thinned"]["cutoff_hz"], hats[record["thinned"]["from"]]
        assert build.THIN_CUTOFFS_HZ[0] <= corner <= build.THIN_CUTOFFS_HZ[1]
        made, original = dataset[record["row"]]["audio"].float(), dataset[source["row"]]["audio"].float()
        # white noise holds ~2-7 % of its energy under 1-3 kHz; the thinned hat a twentieth of that
        assert _share_under_hz(made, corner / 2) < 0.05 * _share_under_hz(original, corner / 2)
        assert _share_under_hz(made, corner / 2) < 1e-3
        assert float(made.abs().max()) == pytest.approx(float(original.abs().max()), rel=2e-3)   # as loud
        assert _energy_centre_s(made) == pytest.approx(_energy_centre_s(original), rel=0.2)   # the same decay
    real = DrumDataset(out, "train", real_only=True)
    assert len(real) == len(dataset) - 2 and not any(r.get("thinned") for r in real.records)
    with pytest.raises(SystemExit) as bad:
        build.main(["--source", str(tmp_path / "kits"), "--out", str(out), "--thin-hats", "-1", "--quiet"])
    assert bad.value.code == 2
