"""engine.audio: what users rely on when sounds go in (uploads, datasets) and out (exports).

Every test file is made on the fly in tmp_path; no audio is committed.
"""

from __future__ import annotations

import json
import os
import stat
import struct
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pyloudnorm
import pytest
import soundfile as sf
import torch
import scipy.signal
from scipy.io import wavfile

from engine import audio as A
from engine.errors import AudioFileError, InvalidRequestError

SR = 44_100
RECIPE = {"model": "kick-wave-v1", "label": "kick", "seed": 1234, "steps": 30,
          "guidance": 2.5, "sampler": "dpmpp_2m", "prompt": "punchy ünïcode kick"}


def sine(freq: float, seconds: float, rate: int, channels: int = 1,
         amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    x = (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    return np.repeat(x[:, None], channels, axis=1)


def kick(seconds: float = 0.2, rate: int = SR) -> torch.Tensor:
    """A kick-like one-shot: a pitch-dropping sine with a fast exponential decay."""
    t = torch.arange(int(seconds * rate), dtype=torch.float64) / rate
    phase = 2 * torch.pi * (50 * t + 100 * (1 - torch.exp(-t * 30)) / 30)
    return (0.8 * torch.sin(phase) * torch.exp(-t * 15)).float()[None]


def spectral_peak_hz(x: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.fft.rfftfreq(len(x), 1 / rate)[spectrum.argmax()])


# ------------------------------------------------------------------------------ reading


@pytest.mark.parametrize("ext,fmt,subtype,tol", [
    ("wav", "WAV", "PCM_16", 1e-4),
    ("flac", "FLAC", "PCM_24", 1e-6),
    ("aiff", "AIFF", "PCM_16", 1e-4),
    ("ogg", "OGG", "VORBIS", None),
])
def test_read_round_trip_formats(tmp_path, ext, fmt, subtype, tol):
    data = sine(440, 0.5, SR, channels=2)
    path = tmp_path / f"hit.{ext}"
    sf.write(path, data, SR, format=fmt, subtype=subtype)

    audio, rate = A.read_audio(path)

    assert rate == SR
    assert audio.dtype == torch.float32 and audio.shape == (2, data.shape[0])
    if tol is None:  # lossy: the tone must survive, not the samples
        assert abs(spectral_peak_hz(audio[0].numpy(), rate) - 440) < 5
    else:
        np.testing.assert_allclose(audio.numpy().T, data, atol=tol)


def test_read_converts_int16_upload_like_the_file_path():
    data = (sine(440, 0.1, SR) * 32767).astype(np.int16)[:, 0]  # (N,), as Gradio gives it

    audio, rate = A.audio_from_numpy(data, SR)

    assert audio.shape == (1, data.shape[0]) and audio.dtype == torch.float32
    assert abs(float(audio.abs().max()) - 0.5) < 1e-3


def test_read_int32_stereo_upload_to_mono_at_model_rate():
    data = (sine(1000, 0.5, 48_000, channels=2) * 2**31).astype(np.int32)

    audio, rate = A.audio_from_numpy(data, 48_000, channels=1, target_rate=SR)

    assert rate == SR and audio.shape == (1, SR // 2)
    assert abs(float(audio.abs().max()) - 0.5) < 0.01


def test_resample_48k_to_44k1_keeps_frequency_and_duration():
    x = torch.from_numpy(sine(1000, 1.0, 48_000).T)

    y = A.resample(x, 48_000, SR)

    assert y.shape == (1, SR)
    assert abs(spectral_peak_hz(y[0].numpy(), SR) - 1000) <= 1.0
    assert abs(float(y.abs().max()) - 0.5) < 0.01


def test_read_audio_resamples_on_request(tmp_path):
    path = tmp_path / "hit.wav"
    sf.write(path, sine(1000, 0.5, 48_000), 48_000)

    audio, rate = A.read_audio(path, sample_rate=SR)

    assert rate == SR and audio.shape == (1, SR // 2)


def test_mono_stereo_conversion():
    mono = torch.tensor([[0.1, -0.2, 0.3]])
    stereo = torch.tensor([[1.0, 0.0, 0.5], [0.0, 1.0, 0.5]])
    surround = torch.arange(12, dtype=torch.float32).reshape(4, 3)

    assert torch.equal(A.to_channels(mono, 2), torch.cat([mono, mono]))
    assert torch.allclose(A.to_channels(stereo, 1), torch.tensor([[0.5, 0.5, 0.5]]))
    assert torch.equal(A.to_channels(surround, 2), surround[:2])
    assert torch.allclose(A.to_channels(surround, 1), surround.mean(0, keepdim=True))
    with pytest.raises(InvalidRequestError):
        A.to_channels(stereo, 4)


def test_read_audio_converts_channels(tmp_path):
    path = tmp_path / "mono.wav"
    sf.write(path, sine(440, 0.1, SR), SR)

    audio, _ = A.read_audio(path, channels=2)

    assert audio.shape[0] == 2 and torch.equal(audio[0], audio[1])


# ------------------------------------------------------------------------------ read errors


def _assert_file_error(path: Path, **kwargs) -> str:
    with pytest.raises(AudioFileError) as info:
        A.read_audio(path, **kwargs)
    assert path.name in str(info.value)
    return str(info.value)


def test_missing_file(tmp_path):
    assert "not found" in _assert_file_error(tmp_path / "nope.wav")


def test_empty_file(tmp_path):
    path = tmp_path / "empty.wav"
    path.touch()
    assert "empty" in _assert_file_error(path)


def test_text_file_renamed_wav_names_the_file_once_and_says_why(tmp_path):
    path = tmp_path / "notes.wav"
    path.write_text("these are my drum notes, not audio\n" * 20)

    message = _assert_file_error(path)

    assert message.startswith(f"{path}: not an audio file this studio can read (")
    assert message.count(str(path)) == 1 and "Error opening" not in message
    assert "(format not recognised)" in message


def test_truncated_wav_header(tmp_path):
    good = tmp_path / "good.wav"
    sf.write(good, sine(440, 0.1, SR), SR)
    path = tmp_path / "truncated.wav"
    path.write_bytes(good.read_bytes()[:20])
    _assert_file_error(path)


def test_nan_samples(tmp_path):
    data = sine(440, 0.1, SR)
    data[100] = np.nan
    path = tmp_path / "nan.wav"
    sf.write(path, data, SR, subtype="FLOAT")
    assert "NaN" in _assert_file_error(path)


def test_too_long(tmp_path):
    path = tmp_path / "long.wav"
    sf.write(path, np.zeros((8000 * 3, 1), np.float32), 8000)
    assert "limit" in _assert_file_error(path, max_seconds=2.0)


def test_zero_length(tmp_path):
    path = tmp_path / "zero.wav"
    sf.write(path, np.zeros((0, 1), np.float32), SR)
    assert "empty" in _assert_file_error(path)


@pytest.mark.parametrize("rate", [1, 1000])
def test_absurd_sample_rate(tmp_path, rate):
    path = tmp_path / f"rate{rate}.wav"
    sf.write(path, np.zeros((100, 1), np.float32), rate)
    assert "sample rate" in _assert_file_error(path)


def test_upload_errors_name_the_source():
    bad = np.zeros((10, 1), np.float32)
    bad[3] = np.inf
    for data, rate in [(bad, SR), (np.zeros(0, np.float32), SR),
                       (np.zeros(100, np.float32), 500_000),
                       (np.zeros(100, np.int64), SR)]:
        with pytest.raises(AudioFileError, match="snare.wav"):
            A.audio_from_numpy(data, rate, source="snare.wav")


# ------------------------------------------------------------------------------ editing


def test_align_onset_puts_click_after_pre_roll():
    x = torch.zeros(2, SR // 2)
    click_at = 10_000
    x[:, click_at] = 0.9
    x[:, click_at + 1:click_at + 50] = 0.3
    x[:, :click_at] += 1e-4 * torch.randn(2, click_at)  # hiss far below the -40 dB threshold

    y = A.align_onset(x, SR, pre_roll_ms=1.0)

    pre_roll = round(0.001 * SR)
    assert int(y[0].abs().argmax()) == pre_roll
    assert y.shape[1] == x.shape[1] - (click_at - pre_roll)
    assert float(y[:, 0].abs().max()) == 0.0  # the cut is faded in, so it cannot click


def test_trim_leading_silence():
    x = torch.cat([torch.zeros(1, 500), torch.full((1, 100), 0.5)], dim=1)
    assert A.trim_leading_silence(x).shape[1] == 100
    silent = torch.zeros(1, 50)
    assert A.trim_leading_silence(silent).shape == silent.shape


def test_fit_length_cuts_and_pads_at_the_end():
    x = torch.arange(1, 11, dtype=torch.float32).repeat(2, 1)
    assert torch.equal(A.fit_length(x, 4), x[:, :4])
    padded = A.fit_length(x, 15)
    assert padded.shape == (2, 15)
    assert torch.equal(padded[:, :10], x) and not padded[:, 10:].any()


def test_fades_reach_zero_and_leave_the_rest_alone():
    x = torch.ones(2, 1000)
    fin, fout = A.fade_in(x, 100), A.fade_out(x, 100)
    assert float(fin[:, 0].abs().max()) == 0.0 and float(fout[:, -1].abs().max()) == 0.0
    assert torch.all(fin[:, 1:100].diff() > 0)  # monotonic raised cosine
    assert torch.equal(fin[:, 100:], x[:, 100:]) and torch.equal(fout[:, :900], x[:, :900])
    assert torch.equal(x, torch.ones(2, 1000))  # the input is not modified


# ------------------------------------------------------------------------------ level


def test_peak_normalise_hits_ceiling_and_leaves_silence_alone():
    x = torch.from_numpy(sine(100, 0.1, SR, channels=2, amp=0.1).T.copy())
    y = A.peak_normalise(x, ceiling_db=-1.0)
    assert abs(A.audio_stats(y)["peak_db"] - (-1.0)) < 1e-4
    silent = torch.zeros(1, 100)
    assert torch.equal(A.peak_normalise(silent), silent)


@pytest.mark.parametrize("target", [-14.0, -23.0])
def test_loudness_normalise_noise_burst_hits_target(target):
    rng = np.random.default_rng(0)
    noise = torch.from_numpy(rng.uniform(-0.05, 0.05, (2, 2 * SR)).astype(np.float32))

    y = A.loudness_normalise(noise, SR, target_lufs=target)

    measured = pyloudnorm.Meter(SR).integrated_loudness(y.numpy().T.astype(np.float64))
    assert abs(measured - target) < 0.5
    assert A.audio_stats(y)["peak_db"] <= -1.0 + 1e-4


def test_loudness_normalise_short_kick():
    k = kick(0.2)

    y = A.loudness_normalise(k, SR, target_lufs=-20.0)

    assert torch.isfinite(y).all() and A.audio_stats(y)["peak_db"] <= -1.0 + 1e-4
    # documented measurement: the hit followed by silence up to one 400 ms BS.1770 block
    padded = np.zeros((int(0.4 * SR) + 2, 1))
    padded[: k.shape[1], 0] = y[0].numpy()
    assert abs(pyloudnorm.Meter(SR).integrated_loudness(padded) - (-20.0)) < 0.5


def test_loudness_normalise_ceiling_wins_over_an_unreachable_target():
    k = kick(0.2)

    y = A.loudness_normalise(k, SR, target_lufs=0.0, ceiling_db=-1.0)  # no kick gets there

    assert A.audio_stats(y)["peak_db"] <= -1.0 + 1e-4
    assert true_peak_db(y) <= -1.0 + 0.05
    # limited, it is louder than the best plain scaling could make it
    assert A.loudness(y, SR) > A.loudness(A.peak_normalise(k, -1.0), SR) + 3.0
    silent = torch.zeros(1, 1000)
    assert torch.equal(A.loudness_normalise(silent, SR), silent)


def punchy_kick(freq: float, lufs: float, seconds: float = 0.5, seed: int = 0) -> torch.Tensor:
    """A kick with a drum's crest factor (~18-22 dB peak to LUFS): a pitch-dropping sine
    decaying from its attack, plus a noise click of a millisecond, scaled to ``lufs``."""
    t = np.arange(int(seconds * SR)) / SR
    body = np.sin(2 * np.pi * (freq * t + 60 * (1 - np.exp(-t * 40)) / 40)) * np.exp(-t * 8)
    click = 0.6 * np.random.default_rng(seed).standard_normal(t.size) * np.exp(-t * 900)
    x = torch.from_numpy((body + click)[None].astype(np.float32))
    return x * 10 ** ((lufs - A.loudness(x, SR)) / 20)


def true_peak_db(audio: torch.Tensor) -> float:
    """An independent BS.1770-style true-peak meter: 4x oversampling, with a steeper filter
    than the engine's (a meter's filter decides how it reads clicks near Nyquist)."""
    up = scipy.signal.resample_poly(audio.numpy().astype(np.float64), 4, 1, axis=1,
                                    window=("kaiser", 8.0))
    return 20 * np.log10(max(np.abs(up).max(), np.abs(audio.numpy()).max()))


@pytest.mark.parametrize("freq,lufs", [(50, -30.0), (55, -24.2), (60, -20.0), (52, -18.0)])
def test_normalise_loudness_brings_peaky_kicks_to_the_target_under_the_ceiling(freq, lufs):
    k = punchy_kick(freq, lufs, seed=freq)
    assert 20 * np.log10(float(k.abs().max())) - lufs > 17  # peaks far above the loudness

    y, report = A.normalise_loudness(k, SR, target_lufs=-12.0, ceiling_db=-1.0)

    measured = pyloudnorm.Meter(SR).integrated_loudness(y.numpy().T.astype(np.float64))
    assert true_peak_db(y) <= -1.0 + 0.05
    assert abs(report["lufs"] - measured) < 0.05 and report["peak_db"] <= -1.0 + 1e-3
    assert 3.0 < report["limited_db"] <= 12.0 + 0.01  # limiting got it there, never more than 12 dB of it
    # on the target, or short of it only where the limiter reached its 12 dB; louder than it came in
    assert abs(measured - (-12.0)) < 0.5 or report["limited_db"] > 11.9, (measured, report)
    assert measured > lufs + 3.0
    assert (report["target_lufs"], report["ceiling_db"]) == (-12.0, -1.0)
    assert y.shape == k.shape and y.dtype == torch.float32


def test_normalise_loudness_never_makes_a_sound_asked_to_go_up_quieter():
    # a quiet hit whose click already peaks over the ceiling: plain scaling could only lower it
    k = punchy_kick(55, -24.0)
    k[0, 3] = 0.95  # -0.4 dBFS
    before = A.loudness(k, SR)

    y, report = A.normalise_loudness(k, SR, target_lufs=before + 10.0, ceiling_db=-1.0)

    assert report["lufs"] > before + 5.0
    assert A.loudness(y, SR) > before
    assert true_peak_db(y) <= -1.0 + 0.05


def test_normalise_loudness_only_scales_when_nothing_needs_limiting():
    x = torch.from_numpy(sine(200, 0.5, SR, channels=2, amp=0.01).T.copy())  # crest ~3 dB

    y, report = A.normalise_loudness(x, SR, target_lufs=-16.0, ceiling_db=-1.0)

    assert report["limited_db"] == 0.0
    gain = 10 ** (report["gain_db"] / 20)
    assert float((y - x * gain).abs().max()) < 1e-6 * float(y.abs().max())  # one gain for all
    assert report["gain_db"] > 10.0 and abs(report["lufs"] - (-16.0)) < 0.05


def test_normalise_loudness_silence_and_nan():
    silent = torch.zeros(2, 1000)
    y, report = A.normalise_loudness(silent, SR)
    assert torch.equal(y, silent)
    assert report["lufs"] == float("-inf") and report["limited_db"] == 0.0
    bad = kick(0.1)
    bad[0, 50] = float("nan")
    with pytest.raises(InvalidRequestError, match="NaN"):
        A.normalise_loudness(bad, SR)


def test_limiter_gain_never_exceeds_what_each_sample_needs():
    rng = np.random.default_rng(3)
    for rate in (22_050, 44_100, 48_000):  # odd and even look-ahead windows
        envelope = np.abs(rng.standard_normal(6000)) ** 3
        need = np.minimum(1.0, 0.5 / envelope)

        gain = A._limiter_gain(envelope, rate, 0.5)

        assert np.all(gain <= need + 1e-12)
        look = round(0.0015 * rate)
        spike = np.zeros(3000)
        spike[1000] = 2.0
        ramp = np.flatnonzero(A._limiter_gain(spike, rate, 1.0) < 1.0)
        assert ramp[0] == 1000 - look  # the gain starts to fall one look-ahead before the peak
        assert ramp[-1] > 1000 + 0.04 * rate  # and recovers over tens of milliseconds


# ------------------------------------------------------------------------------ export


def test_export_name_carries_recipe_and_never_overwrites(tmp_path):
    x = kick(0.1)
    first = A.export_wav(x, SR, tmp_path / "exports", RECIPE)
    second = A.export_wav(x, SR, tmp_path / "exports", RECIPE)

    assert first.name == "kick-wave-v1_kick_seed1234_30st_g2.5.wav"
    assert second.name == "kick-wave-v1_kick_seed1234_30st_g2.5_2.wav"
    assert sorted(p.name for p in first.parent.iterdir()) == sorted([first.name, second.name])


def test_export_skips_absent_fields(tmp_path):
    path = A.export_wav(kick(0.1), SR, tmp_path, {"model": "m", "seed": 7})
    assert path.name == "m_seed7.wav"


def test_concurrent_exports_of_same_stem_all_survive(tmp_path):
    audios = [kick(0.05) * (i + 1) / 10 for i in range(6)]
    with ThreadPoolExecutor(6) as pool:
        paths = list(pool.map(lambda a: A.export_wav(a, SR, tmp_path, RECIPE, stem="same"),
                              audios))
    assert len(set(paths)) == 6
    peaks = sorted(round(float(np.abs(sf.read(p)[0]).max()), 3) for p in paths)
    assert peaks == sorted(round(float(a.abs().max()), 3) for a in audios)
    assert all(p.suffix == ".wav" for p in tmp_path.iterdir())  # no temp files left


@pytest.mark.parametrize("subtype", ["PCM_24", "FLOAT"])
def test_export_subtypes_read_back(tmp_path, subtype):
    x = torch.from_numpy(sine(200, 0.1, SR, channels=2, amp=0.7).T.copy())
    x[0, 5] = 1.5  # over full scale: clipped in PCM, kept in float

    path = A.export_wav(x, SR, tmp_path, RECIPE, subtype=subtype)

    info = sf.info(path)
    assert info.subtype == subtype and info.samplerate == SR and info.channels == 2
    data, _ = sf.read(path, dtype="float32")
    assert data.shape == (x.shape[1], 2)
    assert data[5, 0] == pytest.approx(1.5 if subtype == "FLOAT" else 1.0, abs=1e-6)
    np.testing.assert_allclose(data[10:], x.numpy().T[10:], atol=1e-6)


def test_recipe_round_trips_and_file_stays_valid_wav(tmp_path):
    path = A.export_wav(kick(0.1), SR, tmp_path, RECIPE)

    assert A.read_recipe(path) == RECIPE
    # an independent RIFF reader walks every chunk to the end using the RIFF size field
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", wavfile.WavFileWarning)
        rate, data = wavfile.read(path)
    assert rate == SR and data.shape[0] == int(0.1 * SR)
    assert struct.unpack("<I", path.read_bytes()[4:8])[0] == path.stat().st_size - 8


def test_read_recipe_handles_foreign_chunks_and_odd_sizes(tmp_path):
    path = A.export_wav(kick(0.01), SR, tmp_path, {"model": "m", "seed": 1}, subtype="PCM_16")
    riff = path.read_bytes()
    body = riff[12:riff.index(A.RECIPE_CHUNK_ID)]
    odd_list = b"LIST" + struct.pack("<I", 5) + b"INFOx" + b"\0"  # odd chunk + pad byte
    recipe = json.dumps({"seed": 42}).encode()
    unpadded = b"junk" + struct.pack("<I", 3) + b"abc"  # a careless writer: no pad byte
    for extra in (odd_list, unpadded):
        tail = extra + A.RECIPE_CHUNK_ID + struct.pack("<I", len(recipe)) + recipe
        content = b"WAVE" + body + tail
        path.write_bytes(b"RIFF" + struct.pack("<I", len(content)) + content)
        assert A.read_recipe(path) == {"seed": 42}


def test_read_recipe_none_without_chunk_and_error_when_not_wav(tmp_path):
    plain = tmp_path / "plain.wav"
    sf.write(plain, sine(440, 0.1, SR), SR)
    assert A.read_recipe(plain) is None

    flac = tmp_path / "hit.flac"
    sf.write(flac, sine(440, 0.1, SR), SR)
    with pytest.raises(AudioFileError, match="hit.flac"):
        A.read_recipe(flac)


def test_malicious_model_name_cannot_escape_folder(tmp_path):
    out = tmp_path / "exports"
    recipe = {"model": "../../etc/passwd", "label": "a/b\\c:*?<>|", "seed": 1, "steps": 2}

    path = A.export_wav(kick(0.05), SR, out, recipe)
    named = A.export_wav(kick(0.05), SR, out, recipe, stem="../../../tmp/.hidden")

    for p in (path, named):
        assert p.parent == out and set(p.name) <= set(
            "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")
        assert not p.name.startswith(".") and ".." not in p.name
    assert path.name.startswith("passwd_")  # a model path is named by its last folder
    assert A.read_recipe(path)["model"] == "../../etc/passwd"  # the recipe keeps the truth


def test_export_refuses_nan_and_leaves_nothing_behind(tmp_path):
    x = kick(0.05)
    x[0, 10] = float("nan")
    with pytest.raises(AudioFileError, match="NaN"):
        A.export_wav(x, SR, tmp_path, RECIPE)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(InvalidRequestError):
        A.export_wav(kick(0.05), SR, tmp_path, {"model": "m", "bad": object()})
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------------------ export names,
# permissions and float headers


def test_stem_says_what_differs_in_a_fixed_order():
    recipe = dict(RECIPE, seed_b=7, morph=0.5, length=1.5, reference="/takes/a.wav",
                  strength=0.3, variation="noise",
                  loudness={"target_lufs": -14.0, "ceiling_db": -1.0})

    assert A.stem_from_recipe(recipe) == \
        "kick-wave-v1_kick_seed1234_to7-m0.5_1.5s_30st_g2.5_var0.3_-14LUFS"
    assert A.stem_from_recipe(dict(recipe, variation="invert")).endswith("_inv0.3_-14LUFS")
    plain = A.stem_from_recipe(dict(RECIPE, length=None, reference=None, loudness=None))
    assert plain == "kick-wave-v1_kick_seed1234_30st_g2.5"


@pytest.mark.parametrize("subtype,suffix", [("PCM_24", ""), ("PCM_16", "_16bit"),
                                            ("FLOAT", "_f32")])
def test_export_name_carries_the_format_and_the_loudness_sign(tmp_path, subtype, suffix):
    recipe = {"model": "m", "seed": 3, "length": 2, "loudness": {"target_lufs": -12.5}}

    built = A.export_wav(kick(0.05), SR, tmp_path, recipe, subtype=subtype)
    given = A.export_wav(kick(0.05), SR, tmp_path, recipe, subtype=subtype, stem="take")

    assert built.name == f"m_seed3_2s_-12.5LUFS{suffix}.wav"
    assert given.name == f"take{suffix}.wav"


def test_sanitiser_keeps_a_minus_sign_only_inside_the_name(tmp_path):
    cases = {"-14LUFS_kick": "14LUFS_kick.wav",  # the first part never starts with "-"
             "__-3_x": "3_x.wav",  # nor after empty parts are dropped
             "kick_-3_--rm_-.5": "kick_-3_rm_5.wav",  # a sign is "-" and a digit, nothing else
             "kick_-../../x": "kick_x.wav"}
    for stem, name in cases.items():
        path = A.export_wav(kick(0.02), SR, tmp_path, {}, stem=stem)
        assert path.name == name and path.parent == tmp_path


def test_exports_are_readable_by_others_as_the_umask_allows(tmp_path):
    old = os.umask(0o022)
    try:
        path = A.export_wav(kick(0.05), SR, tmp_path, RECIPE)
        assert stat.S_IMODE(path.stat().st_mode) == 0o644
        private = tmp_path / "private.txt"
        private.touch(mode=0o600)
        os.umask(0o002)
        A.make_shareable(private)
        assert stat.S_IMODE(private.stat().st_mode) == 0o664
    finally:
        os.umask(old)


def _chunks(riff: bytes) -> dict[bytes, bytes]:
    chunks, offset = {}, 12
    while offset + 8 <= len(riff):
        chunk_id, size = struct.unpack_from("<4sI", riff, offset)
        chunks[chunk_id] = riff[offset + 8:offset + 8 + size]
        offset += 8 + size + size % 2
    return chunks


def test_float_export_has_the_full_ieee_float_header(tmp_path):
    x = torch.from_numpy(sine(200, 0.1, SR, channels=2, amp=0.7).T.copy())

    path = A.export_wav(x, SR, tmp_path, RECIPE, subtype="FLOAT")

    chunks = _chunks(path.read_bytes())
    fmt = chunks[b"fmt "]
    # WAVE_FORMAT_IEEE_FLOAT, 2 ch, 32 bit, and the cbSize field (0) non-PCM formats must have
    assert len(fmt) == 18 and struct.unpack("<HHIIHHH", fmt) == (3, 2, SR, SR * 8, 8, 32, 0)
    assert struct.unpack("<I", chunks[b"fact"])[0] == x.shape[1]  # frames per channel
    assert A.read_recipe(path) == RECIPE
    data, rate = sf.read(path, dtype="float32")
    assert rate == SR and np.array_equal(data, x.numpy().T)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", wavfile.WavFileWarning)  # it skips our recipe chunk
        assert np.array_equal(wavfile.read(path)[1], x.numpy().T)
    pcm = _chunks(A.export_wav(x, SR, tmp_path, RECIPE).read_bytes())[b"fmt "]
    assert len(pcm) == 16 and struct.unpack_from("<H", pcm)[0] == 1  # PCM stays as it was
