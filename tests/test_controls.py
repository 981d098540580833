"""Time-varying controls: the signals (engine.dsp), drawn curves as text (engine.curves), the
conditions that carry them (engine.conditions), and how a request, a recipe and the CLI hold them."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from engine import dsp
from engine.conditions import (CONTROL_SPECS, LABEL_SPEC, Conditions, condition_specs, controls_from_audio,
                               curves_from_sound, drop_conditions, network_inputs, roughen_controls,
                               rms_points_from_audio)
from engine.curves import check_onsets, check_rms, format_onsets, format_rms, parse_onsets, parse_rms
from engine.eval.controls import loudness_error_db
from engine.errors import InvalidRequestError
from engine.request import GenerationRequest
from tests.helpers import cli_in_process, run_cli

RATE, HOP = 44100, 128


def burst(at_ms: float, seconds: float = 1.0, decay_s: float = 0.01, gain: float = 0.5, seed: int = 0) -> torch.Tensor:
    """(2, N) a noise burst starting at ``at_ms`` and decaying exponentially."""
    n = int(seconds * RATE)
    start = int(at_ms / 1000 * RATE)
    rng = np.random.default_rng(seed)
    t = np.arange(n - start) / RATE
    x = np.zeros(n, dtype=np.float32)
    x[start:] = gain * rng.standard_normal(n - start) * np.exp(-t / decay_s)
    return torch.from_numpy(np.stack([x, x]))


# ----------------------------------------------------------------------------- signals


def test_rms_of_a_sine_is_its_level_minus_3_db_and_silence_reads_the_floor():
    t = torch.arange(RATE) / RATE
    sine = (0.5 * torch.sin(2 * math.pi * 440 * t)).repeat(2, 1)
    level = dsp.rms_db(sine, HOP)
    assert level.shape == (dsp.frame_count(RATE, HOP),)
    expected = 20 * math.log10(0.5 / math.sqrt(2))  # -9.03 dBFS
    assert abs(float(level[10:-10].mean()) - expected) < 0.05
    assert float(dsp.rms_db(torch.zeros(2, RATE), HOP).max()) == dsp.FLOOR_DB


def test_rms_follows_a_step_in_level_at_the_right_frame():
    quiet, loud = 0.01 * torch.ones(2, RATE // 2), 0.5 * torch.ones(2, RATE // 2)
    level = dsp.rms_db(torch.cat([quiet, loud], dim=1), HOP)
    step = RATE // 2 // HOP  # the frame where the level changes
    assert float(level[step - 4]) == pytest.approx(-40.0, abs=0.1)
    assert float(level[step + 4]) == pytest.approx(20 * math.log10(0.5), abs=0.1)


def test_onsets_of_two_bursts_are_found_within_a_frame_or_two():
    sound = burst(0) + burst(180, seed=1)
    times = dsp.onset_times(sound, RATE, HOP)
    assert len(times) == 2
    assert abs(times[0] - 0) <= 6 and abs(times[1] - 180) <= 6
    assert dsp.onset_times(torch.zeros(2, RATE), RATE) == []
    assert len(dsp.onset_times(burst(0, decay_s=0.2), RATE)) == 1  # a long decay is one hit, not many


def test_a_drawn_curve_is_joined_by_lines_in_db_and_open_outside_its_points():
    level, mask = dsp.rms_from_points([(0, -3), (40, -10), (250, -40)], 400, HOP, RATE)
    times = dsp.frame_times_ms(400, HOP, RATE)
    at = lambda ms: int(torch.argmin((times - ms).abs()))  # noqa: E731
    assert float(level[0]) == -3 and float(level[at(40)]) == pytest.approx(-10, abs=0.1)
    assert float(level[at(145)]) == pytest.approx(-25, abs=0.2)  # halfway between 40 and 250 ms
    assert mask[: at(250)].all() and not mask[at(260):].any()  # after the last point: open
    bumps = dsp.onset_curve([0, 180], 400, HOP, RATE)
    assert float(bumps[0]) == 1.0 and float(bumps[at(180)]) > 0.9 and float(bumps[at(90)]) < 1e-3


def test_a_sounds_curves_read_back_as_points_and_onsets():
    sound = 0.5 * (burst(0, decay_s=0.05) + burst(300, decay_s=0.05, seed=2))   # within full scale
    points, onsets = curves_from_sound(sound, RATE, HOP)
    assert 3 <= len(points) <= 64 and points[0][0] == 0.0
    assert all(b[0] > a[0] for a, b in zip(points, points[1:])) and all(-80 <= db <= 0 for _, db in points)
    assert len(onsets) == 2 and abs(onsets[1] - 300) <= 6
    # the points redraw the measured envelope within a couple of dB where it is loud
    measured = dsp.rms_db(sound, HOP)
    drawn, mask = dsp.rms_from_points(points, len(measured), HOP, RATE)
    loud = (measured > -45) & (mask > 0)
    assert float((drawn - measured)[loud].abs().median()) < 1.5
    assert curves_from_sound(torch.zeros(2, RATE), RATE) == (None, None)
    # leading silence (a vocal take) is skipped: the hit reads at 0 ms
    _, late = curves_from_sound(burst(200), RATE, HOP)
    assert late[0] < 5


def test_a_sound_over_full_scale_gives_its_shape_turned_down_to_full_scale():
    """A 32-bit float file may go far over 1 (a bounce without a limiter): its curves are its shape
    at full scale, not levels over 0 dBFS that every curve check refuses."""
    from engine.audio import within_full_scale

    sound = burst(0, decay_s=0.05)
    loud = sound * (40.0 / float(sound.abs().max()))          # peak +32 dBFS
    points, onsets = curves_from_sound(loud, RATE, HOP)
    at_full, _ = curves_from_sound(sound / float(sound.abs().max()), RATE, HOP)
    assert max(db for _, db in points) <= 0.0
    assert points == at_full and onsets == curves_from_sound(sound, RATE, HOP)[1]
    assert GenerationRequest(rms=points).validated().rms == points   # a curve the engine takes
    quiet = sound * 0.5
    assert within_full_scale(quiet) is quiet                        # within full scale: untouched
    assert float(within_full_scale(loud).abs().max()) == pytest.approx(1.0)


# ----------------------------------------------------------------------------- curves as text


def test_curves_parse_format_and_round_trip():
    points = parse_rms("0:-3, 40:-10,250:-40")
    assert points == ((0.0, -3.0), (40.0, -10.0), (250.0, -40.0))
    assert parse_rms(format_rms(points)) == points
    assert parse_onsets("180,0,0") == (0.0, 180.0) and format_onsets((0.0, 180.5)) == "0,180.5"
    assert parse_rms("") is None and parse_onsets("  ") is None


@pytest.mark.parametrize("text, words", [
    ("0:-3,40", "not ms:dB"), ("0:-3,,40:-10", "empty"), ("0:x", "not a number"), ("0:nan", "finite"),
    ("0:-3,0:-10", "must increase"), ("40:-3,20:-10", "must increase"), ("0:-90", "between -80 and 0"),
    ("0:3", "between -80 and 0"), ("-5:-3", "0 ms or later"), (",".join(f"{i}:-3" for i in range(300)), "at most 256"),
])
def test_a_malformed_loudness_curve_is_refused_with_what_is_wrong(text, words):
    with pytest.raises(InvalidRequestError, match=words):
        parse_rms(text)


def test_onsets_and_points_are_checked_against_the_sound():
    with pytest.raises(InvalidRequestError, match="past the end"):
        check_rms([(0, -3), (1500, -40)], length_ms=1000)
    with pytest.raises(InvalidRequestError, match="past the end"):
        check_onsets([0, 1200], length_ms=1000)
    with pytest.raises(InvalidRequestError, match="finite"):
        check_onsets([0, float("inf")])
    with pytest.raises(InvalidRequestError, match="at most 64"):
        check_onsets(list(range(65)))
    with pytest.raises(InvalidRequestError, match="pair"):
        check_rms([(0, -3, 1)])


def test_a_request_carries_its_curves_into_the_recipe_and_back():
    request = GenerationRequest(model="latent-curves", label="snare", rms=[[0, -3], [40, -10]], onsets=[180, 0],
                                control_guidance=2.0).validated()
    assert request.rms == ((0.0, -3.0), (40.0, -10.0)) and request.onsets == (0.0, 180.0)
    recipe = json.loads(json.dumps(request.to_recipe()))  # as written into a WAV
    assert recipe["rms"] == [[0.0, -3.0], [40.0, -10.0]] and recipe["onsets"] == [0.0, 180.0]
    assert GenerationRequest.from_recipe(recipe).validated() == request
    with pytest.raises(InvalidRequestError, match="control_guidance"):
        GenerationRequest(control_guidance=-1).validated()
    old = GenerationRequest.from_recipe({"model": "kick", "seed": 3})  # a recipe from before controls
    assert old.rms is None and old.onsets is None


# ----------------------------------------------------------------------------- conditions


def test_old_manifests_declare_a_label_and_new_ones_their_conditions():
    assert condition_specs({"conditioners": ["label"]}) == (LABEL_SPEC,)
    assert condition_specs({}) == ()
    declared = {"conditions": [s.to_dict() for s in (LABEL_SPEC, *CONTROL_SPECS)]}
    assert [s.name for s in condition_specs(declared)] == ["label", "rms", "onsets"]


def test_network_inputs_give_absent_conditions_their_null():
    specs = (LABEL_SPEC, *CONTROL_SPECS)
    empty = network_inputs(Conditions(), specs, 2, 100, HOP, RATE, num_labels=5)
    assert empty["label"].tolist() == [5, 5] and not empty["rms"].any() and not empty["onsets"].any()
    asked = network_inputs(Conditions(label=1, rms=((0, 0), (100, -80)), onsets=(0,)), specs, 2, 100, HOP, RATE,
                           num_labels=5)
    assert asked["label"].tolist() == [1, 1]
    assert asked["rms"][0, 0, 0] == 1.0 and asked["rms"][0, 1].min() == 0  # 0 dB -> +1; open after 100 ms
    assert asked["onsets"][0, 0, 0] == 1.0 and asked["onsets"][0, 1].all()


def test_dropout_per_condition_and_for_all_at_once():
    batch = 4000
    inputs = {"label": torch.zeros(batch, dtype=torch.long), "rms": torch.ones(batch, 2, 8),
              "onsets": torch.ones(batch, 2, 8)}
    specs = (LABEL_SPEC, *CONTROL_SPECS)  # 0.1, 0.3, 0.3
    dropped = drop_conditions(inputs, specs, torch.Generator().manual_seed(0), num_labels=5, all_dropout=0.2)
    label_gone = dropped["label"] == 5
    rms_gone, onsets_gone = dropped["rms"].sum((1, 2)) == 0, dropped["onsets"].sum((1, 2)) == 0
    assert abs(float(label_gone.float().mean()) - (1 - 0.9 * 0.8)) < 0.03
    assert abs(float(rms_gone.float().mean()) - (1 - 0.7 * 0.8)) < 0.03
    assert abs(float((label_gone & rms_gone & onsets_gone).float().mean()) - (0.2 + 0.8 * 0.1 * 0.09)) < 0.03
    # with no all-at-once dropout, a label-only trainer draws what it always drew
    one = drop_conditions({"label": torch.zeros(8, dtype=torch.long)}, (LABEL_SPEC,), torch.Generator().manual_seed(3), 5)
    generator = torch.Generator().manual_seed(3)
    legacy = torch.where(torch.rand(8, generator=generator) < 0.1, 5, 0)
    assert torch.equal(one["label"], legacy)


def test_training_controls_are_measured_then_roughened_like_a_drawing():
    audio = torch.stack([burst(0, decay_s=0.05), burst(0, decay_s=0.05) + burst(150, decay_s=0.05, seed=3)])
    frames = dsp.frame_count(audio.shape[-1], HOP)
    measured = controls_from_audio(audio, HOP, RATE, frames)
    assert measured["rms"].shape == (2, 2, frames) and measured["rms"][:, 1].all()
    peaks = [int((row[0] > 0.5).sum() > 0) for row in measured["onsets"]]
    at = int(150 / 1000 * RATE / HOP)
    assert peaks == [1, 1] and float(measured["onsets"][1, 0, at - 2: at + 3].max()) > 0.9
    rough = roughen_controls(measured, torch.Generator().manual_seed(0), kernels=(41,), open_end=0.0)
    assert rough["rms"].shape == measured["rms"].shape
    assert float((rough["rms"][:, 0] - measured["rms"][:, 0]).abs().max()) > 0  # smoothed
    opened = roughen_controls(measured, torch.Generator().manual_seed(0), kernels=(1,), open_end=1.0)
    assert (opened["rms"][:, 1] == 0).any() and torch.equal(opened["onsets"], measured["onsets"])


def test_rms_points_stay_within_the_cap():
    noisy = burst(0, decay_s=0.3) * (1 + 0.5 * torch.sin(torch.arange(RATE) / RATE * 2 * math.pi * 30))
    points = rms_points_from_audio(noisy, RATE, HOP, tolerance_db=0.1, max_points=20)
    assert len(points) <= 20


# ----------------------------------------------------------------------------- CLI


@pytest.mark.parametrize("args, words", [
    (["--rms", "0:-3,40"], "not ms:dB"),
    (["--rms", "0:-3,40:-100"], "between -80 and 0"),
    (["--onsets", "0,abc"], "not a number"),
    (["--rms", "0:-3,5000:-40", "--length", "1.0"], "past the end"),
])
def test_cli_refuses_bad_curves_in_one_line_with_status_2(args, words, tmp_path):
    result = cli_in_process("generate", "--model", "latent-curves", "--label", "snare", *args, "--out", str(tmp_path))
    assert result.returncode == 2, result.stderr
    assert words in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not list(tmp_path.iterdir())


def test_cli_refuses_onsets_for_a_model_that_cannot_place_them(tmp_path):
    result = cli_in_process("generate", "--model", "kick", "--rms", "0:-3,40:-10", "--onsets", "0,180",
                            "--out", str(tmp_path))
    assert result.returncode == 2 and "does not take onsets; " in result.stderr
    assert all(name in result.stderr for name in ("latent-curves", "latent-fast", "latent-prompts"))
    assert "latent-thin-hats" not in result.stderr  # a Sound's variant is not offered for another Sound


@pytest.mark.slow
def test_cli_takes_curves_from_a_sound_and_records_them(tmp_path):
    voice = tmp_path / "boom.wav"
    sf.write(voice, (burst(50, decay_s=0.08) + burst(250, decay_s=0.05, seed=4)).T.numpy(), RATE)
    result = run_cli("generate", "--model", "latent-curves", "--label", "kick", "--length", "0.5", "--steps", "4",
                     "--controls-from", str(voice), "--out", str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr
    assert "--rms" in result.stderr and "--onsets" in result.stderr
    from engine.audio import read_recipe
    recipe = read_recipe(result.stdout.strip().splitlines()[-1])
    assert recipe["rms"][0][0] == 0.0 and len(recipe["onsets"]) == 2 and abs(recipe["onsets"][1] - 200) <= 10


def test_the_waveform_codec_envelope_follows_a_drawn_curve(tiny_models):
    """Unit-variance bands (what the waveform network makes) decoded through an envelope moved by
    ``follow_loudness`` come out at the drawn level: the codec's power formula holds."""
    from engine.models import load_model
    model = load_model(tiny_models / "tiny")
    points = ((0, -10), (50, -16), (300, -40), (600, -52))
    noise = torch.randn(4, 64, 1024, generator=torch.Generator().manual_seed(0))
    drawn = model.codec.follow_loudness(model.codec.envelope_for(1, noise=noise), points, 44100)
    audio = model.codec.decode(noise, drawn)
    from engine.eval.controls import loudness_error_db
    errors = [loudness_error_db(clip, points, 44100) for clip in audio]
    free = [loudness_error_db(clip, points, 44100) for clip in model.codec.decode(noise, model.codec.envelope_for(1, noise=noise))]
    assert max(errors) < 1.5 and min(free) > 3.0, (errors, free)
    assert [s.name for s in condition_specs(model.manifest)] == ["label", "rms"]  # declared by its codec


def test_the_peak_limiter_turns_down_only_the_peaks_above_full_scale():
    from engine.audio import limit_peaks

    t = torch.arange(RATE // 2) / RATE
    kick = (1.6 * torch.sin(2 * math.pi * 55 * t) * torch.exp(-t / 0.08)).repeat(2, 1)
    kick[1] *= 0.5  # both channels take the same gain: the image does not move
    limited = limit_peaks(kick, RATE)
    assert float(limited.abs().max()) <= 0.999 + 1e-6
    assert torch.allclose(limited[1], 0.5 * limited[0], atol=1e-6)
    # the tail (below full scale) comes back to unity gain after the release...
    over = int(torch.nonzero(kick[0].abs() > 0.999).max())
    late = over + int(0.4 * RATE)
    assert torch.allclose(limited[:, late:], kick[:, late:], atol=1e-4)
    # ...the gain moves smoothly (no step from one sample to the next)...
    gain = limited[0] / torch.where(kick[0].abs() > 1e-3, kick[0], torch.ones_like(kick[0]))
    where = torch.nonzero(kick[0].abs() > 0.05).reshape(-1)
    next_to = where[1:] == where[:-1] + 1  # neighbouring samples (the ratio is meaningless at zero crossings)
    assert float((gain[where[1:]] - gain[where[:-1]])[next_to].abs().max()) < 0.005
    # ...and the attack keeps more of its loudness than the whole sound scaled down by its peak would
    assert float(dsp.rms_db(limited, HOP)[:40].mean()) > float(dsp.rms_db(kick / 1.6, HOP)[:40].mean()) + 1.5
    quiet = 0.25 * kick
    assert torch.equal(limit_peaks(quiet, RATE), quiet)  # nothing over: nothing changes


def test_the_envelope_shaper_puts_a_sound_on_its_curve_within_its_limits():
    sound = burst(0, decay_s=0.08, gain=0.3)
    tight = ((0, -12), (40, -20), (120, -45))
    assert loudness_error_db(sound, tight, RATE) > 3
    shaped = dsp.match_loudness(sound, tight, RATE)
    assert loudness_error_db(shaped, tight, RATE) < 1.0
    # past the drawn span the cut at its end carries on: the tail goes on decaying from the curve's
    # last level, one gain all the way (before: the gain sprang back to 0 dB and the tail with it)
    late = int(0.3 * RATE)
    ratio = shaped[:, late:] / sound[:, late:]
    assert float(ratio.std()) < 1e-4 and float(ratio.mean()) < 10 ** (-6 / 20)
    assert float(dsp.rms_db(shaped, HOP)[int(0.15 * RATE) // HOP:].max()) < -44.0
    # a boost stops at +12 dB (no noise floor pulled up) and is not carried past the curve
    loud = ((0, -3), (300, -3))
    boosted = dsp.match_loudness(sound, loud, RATE)
    gain_db = 20 * torch.log10(boosted[:, 1000:-1000].abs().max() / sound[:, 1000:-1000].abs().max())
    assert float(gain_db) <= 12.01
    after = int(0.35 * RATE)
    assert torch.allclose(boosted[:, after:], sound[:, after:], atol=1e-6)


def test_a_curve_drawn_down_to_silence_keeps_the_sound_silent_after_it():
    """Every curve measured on a real clip ends by falling to the floor where the clip goes quiet (a
    choked cymbal at 400 ms). A sound that rings on past that must stay under the floor, not come
    back at its own level once the curve stops, which reads as a new hit."""
    from engine.eval.controls import onset_match

    n = RATE
    ringing = 0.05 * torch.randn(2, n, generator=torch.Generator().manual_seed(1))   # about -26 dBFS throughout
    choked = ((0, -26), (380, -30), (395, -45), (400, -80))
    shaped = dsp.match_loudness(ringing, choked, RATE)
    level = dsp.rms_db(shaped, HOP)
    assert float(level[int(0.45 * RATE) // HOP:].max()) < -70.0
    assert onset_match(shaped, [0.0], RATE)[2] == 0
    assert float(dsp.rms_db(ringing, HOP)[int(0.45 * RATE) // HOP:].min()) > -30.0   # it does ring on


def test_the_envelope_shaper_keeps_a_roll_drawn_at_a_flat_level_as_hits_on_the_curve():
    """Eight drawn hits under a flat curve: frame by frame the shaper fills each decay back up to
    the curve and the roll reads as one hit; over the roll's segments and held hit frames
    (engine.steering) each hit keeps its decay and peaks on the curve."""
    from engine.eval.controls import onset_match
    from engine.steering import hit_frames, roll_segments

    roll = tuple(float(t) for t in range(0, 400, 50))
    flat = ((0, -14), (420, -14), (480, -40))
    n = int(0.5 * RATE)
    t = torch.arange(n) / RATE
    envelope = torch.zeros(n)
    for hit in roll:
        envelope = torch.maximum(envelope, torch.where(t >= hit / 1000, torch.exp(-(t - hit / 1000) / 0.012), 0.0))
    sound = 0.1 * torch.randn(2, n, generator=torch.Generator().manual_seed(0)) * (envelope + 0.02)
    assert onset_match(sound, roll, RATE)[0] == 8
    assert onset_match(dsp.match_loudness(sound, flat, RATE), roll, RATE)[0] <= 2  # filled flat
    frames = dsp.frame_count(n, dsp.SHAPER_HOP)
    hold = hit_frames(roll, flat, frames, dsp.SHAPER_HOP, RATE)
    segments = roll_segments(roll, flat, frames, dsp.SHAPER_HOP, RATE)
    kept = dsp.match_loudness(sound, flat, RATE, hold=hold, segments=segments)
    assert onset_match(kept, roll, RATE) == (8, 8, 0)
    level = dsp.rms_db(kept, dsp.SHAPER_HOP)
    peaks = [float(level[round(h / 1000 * RATE / dsp.SHAPER_HOP):][:8].max()) for h in roll]
    assert all(abs(p + 14) < 1.0 for p in peaks), peaks
    # the studio's finishing step does the same when the hits were steered, and nothing else when not
    from engine.studio import onto_curve
    assert onset_match(onto_curve(sound[None], flat, RATE, True, True, roll, hits_made=True)[0], roll, RATE)[0] == 8
    assert onset_match(onto_curve(sound[None], flat, RATE, True, True, roll)[0], roll, RATE)[0] <= 2


def test_a_gain_per_segment_puts_each_segments_loudest_frame_on_the_curve():
    asked = torch.tensor([-10.0, -10.0, -10.0, -12.0, -12.0, -12.0])
    measured = torch.tensor([[-20.0, -14.0, -30.0, -16.0, -40.0, -13.0]])
    segments = torch.tensor([0, 1, 1, 2, 2, 2])
    gain = dsp.gain_onto_curve(asked, measured, segments)
    assert gain.tolist() == [[10.0, 4.0, 4.0, 1.0, 1.0, 1.0]]  # frame 0 alone; then one gain per segment
    assert torch.equal(dsp.gain_onto_curve(asked, measured), asked - measured)
    held = dsp.held_across(torch.tensor([0.0, 9.0, 9.0, 6.0, 3.0]), torch.tensor([False, True, True, False, False]))
    assert held.tolist() == [0.0, 2.0, 4.0, 6.0, 3.0]  # a straight line across the held frames
    assert dsp.held_across(torch.tensor([1.0, 2.0]), torch.tensor([True, True])).tolist() == [1.0, 2.0]


def test_the_envelope_shaper_makes_no_hit_of_a_wiggle_but_keeps_a_drawn_hit_sharp():
    """A curve measured on a real sound wiggles; a gain that follows it within 8 ms lifts every bin
    at once and reads as new hits. Smoothed over dsp.SHAPER_SMOOTH_MS it makes none, and around a
    drawn hit it still follows within dsp.SHAPER_HIT_SMOOTH_MS, so a drawn second hit the sound
    barely has is made by the gain."""
    from engine.eval.controls import onset_match

    n = int(0.6 * RATE)
    t = torch.arange(n) / RATE
    noise = torch.randn(2, n, generator=torch.Generator().manual_seed(0))
    decay = 0.3 * noise * torch.exp(-t / 0.15)
    wiggly = [(ms, -10 - ms / 150 * 8.686 + (8.0 if (ms // 30) % 2 else -8.0)) for ms in range(0, 500, 5)]
    assert onset_match(dsp.match_loudness(decay, wiggly, RATE, smooth_ms=8.0), [0.0], RATE)[2] >= 3  # as it was
    assert onset_match(dsp.match_loudness(decay, wiggly, RATE), [0.0], RATE)[2] == 0

    second = 0.3 * noise * (torch.exp(-t / 0.08) + 0.2 * torch.where(t >= 0.18, torch.exp(-(t - 0.18) / 0.08), 0.0))
    double = ((0, -8), (60, -18), (170, -36), (180, -10), (260, -20), (600, -45))
    hits = [0.0, 180.0]
    assert onset_match(second, hits, RATE)[0] == 1  # the sound alone: too soft a second hit to find
    assert onset_match(dsp.match_loudness(second, double, RATE), hits, RATE)[0] == 1  # smoothed everywhere: lost
    assert onset_match(dsp.match_loudness(second, double, RATE, onsets=hits), hits, RATE)[:2] == (2, 2)
