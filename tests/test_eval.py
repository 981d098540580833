"""Evaluation: features, set metrics, broken-output checks, tail hiss, the classifier, evaluate().

Everything runs on synthetic one-shots (decaying sines as kicks, noise bursts as hats, tone +
noise as snares) and on a tiny random model folder; no data set or checkpoint is needed.
"""

from __future__ import annotations

import json
import math
import statistics

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from engine.errors import InvalidRequestError
from engine.eval import metrics
from engine.eval.classifier import Classifier, load_or_train, train_classifier
from engine.eval.features import FEATURE_DIM, feature_names, features, mel_spectrogram
from engine.eval.controls import evaluate_controls
from engine.eval.run import ReferenceSet, broken_outputs, evaluate, format_results, main, studio_output
from tests.helpers import make_tiny_model

RATE = 44100
LENGTH = 32768


def _t() -> torch.Tensor:
    return torch.arange(LENGTH, dtype=torch.float64) / RATE


def kick(seed: int, noise_rms: float = 0.0) -> torch.Tensor:
    """(2, LENGTH): a pitch-swept decaying sine, peak ~0.9, plus optional white noise."""
    g = torch.Generator().manual_seed(seed)
    u = torch.rand(3, generator=g, dtype=torch.float64)
    t = _t()
    freq = 45 + 10 * u[0] + 120 * torch.exp(-t * 30)
    wave = 0.9 * torch.sin(2 * math.pi * torch.cumsum(freq, 0) / RATE) * torch.exp(-t * (6 + 4 * u[1]))
    if noise_rms:
        wave = wave + noise_rms * torch.randn(LENGTH, generator=g, dtype=torch.float64)
    return torch.stack([wave, wave]).float()


def hat(seed: int) -> torch.Tensor:
    """(2, LENGTH): a fast-decaying high-passed noise burst."""
    g = torch.Generator().manual_seed(1000 + seed)
    u = torch.rand(2, generator=g, dtype=torch.float64)
    white = torch.randn(LENGTH, generator=g, dtype=torch.float64)
    bright = torch.cat([white[:1], white[1:] - white[:-1]]) / 2  # first difference: a crude high-pass
    wave = 0.8 * bright * torch.exp(-_t() * (30 + 30 * u[0]))
    return torch.stack([wave, wave.roll(int(3 * u[1]) + 1)]).float()


def snare(seed: int) -> torch.Tensor:
    """(2, LENGTH): a 200 Hz tone plus mid noise, medium decay."""
    g = torch.Generator().manual_seed(2000 + seed)
    u = torch.rand(2, generator=g, dtype=torch.float64)
    t = _t()
    tone = torch.sin(2 * math.pi * (180 + 40 * u[0]) * t) * torch.exp(-t * 25)
    noise = torch.randn(LENGTH, generator=g, dtype=torch.float64) * torch.exp(-t * (12 + 6 * u[1]))
    wave = 0.5 * tone + 0.4 * noise
    return torch.stack([wave, wave]).float()


MAKERS = {"kick": kick, "snare": snare, "hat": hat}


def clips(kind: str, seeds) -> torch.Tensor:
    return torch.stack([MAKERS[kind](s) for s in seeds])


def reference(seeds, kinds=("kick", "hat")) -> ReferenceSet:
    audio = torch.cat([clips(k, seeds) for k in kinds])
    return ReferenceSet(audio, [k for k in kinds for _ in seeds], RATE)


# --------------------------------------------------------------------------- features

def test_features_have_fixed_width_and_stay_finite_on_odd_input():
    batch = torch.stack([kick(0), hat(0), torch.zeros(2, LENGTH), kick(1)])
    batch[3, 0, 100] = float("nan")
    batch[3, 1, 200] = float("inf")
    out = features(batch, RATE)
    assert out.shape == (4, FEATURE_DIM) and len(feature_names()) == FEATURE_DIM
    assert 100 <= FEATURE_DIM <= 200
    assert torch.isfinite(out).all()
    assert features(kick(0), RATE).shape == (1, FEATURE_DIM)  # a single (C, N) clip
    names = feature_names()
    centroid = names.index("centroid_all")
    assert out[1, centroid] > out[0, centroid] + 1.0  # a hat is > 10x brighter than a kick


def test_features_are_level_invariant_except_level_columns():
    a, b = features(kick(3)[None], RATE), features(0.1 * kick(3)[None], RATE)
    level = [feature_names().index(n) for n in ("peak_db", "rms_db")]
    assert torch.allclose(a[0, level] - 20.0, b[0, level], atol=0.05)
    others = [i for i in range(FEATURE_DIM) if i not in level]
    assert torch.allclose(a[0, others], b[0, others], atol=0.2)


def test_mel_spectrogram_shapes_and_peak_band():
    assert mel_spectrogram(torch.zeros(3, 2, 4096), RATE).shape == (3, 2, 64, 17)
    t = torch.arange(LENGTH) / RATE
    sine = torch.sin(2 * math.pi * 1000.0 * t)
    mel = mel_spectrogram(sine, RATE, n_mels=64)
    assert mel.shape == (64, LENGTH // 256 + 1)
    assert -6.0 < float(mel.max()) <= 3.0  # ~0 dB: a full-scale sine (its window lobe spans a few bins)
    # the loudest band is the one whose centre is nearest 1 kHz
    from engine.eval.features import hz_to_mel, mel_to_hz
    centres = mel_to_hz(torch.linspace(float(hz_to_mel(20.0)), float(hz_to_mel(RATE / 2)), 66)[1:-1])
    assert int(mel[:, 40].argmax()) == int((centres - 1000.0).abs().argmin())
    power = mel_spectrogram(sine, RATE, log=False)
    assert (power >= 0).all()


# --------------------------------------------------------------------------- set metrics

def test_frechet_distance_is_zero_for_identical_sets_grows_with_shift_and_is_symmetric():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((40, 8))
    b = rng.standard_normal((30, 8)) * 1.5 + 0.3
    assert metrics.frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    assert metrics.frechet_distance(a, b) == pytest.approx(metrics.frechet_distance(b, a), rel=1e-6)
    shifts = [metrics.frechet_distance(a, a + s) for s in (0.5, 1.0, 2.0)]
    assert shifts == pytest.approx([8 * 0.25, 8 * 1.0, 8 * 4.0], rel=1e-6)  # pure mean shift: |d|^2
    # fewer clips than dimensions still gives a finite value (shrunk covariances)
    small = metrics.frechet_distance(rng.standard_normal((5, 50)), rng.standard_normal((6, 50)))
    assert math.isfinite(small) and small > 0
    assert metrics.frechet_distance(torch.tensor(a), torch.tensor(a + 1.0)) == pytest.approx(8.0, rel=1e-6)


def test_diversity_is_zero_for_identical_clips():
    same = np.tile(np.arange(6.0), (5, 1))
    assert metrics.diversity(same) == pytest.approx(0.0, abs=1e-9)
    rng = np.random.default_rng(1)
    assert metrics.diversity(rng.standard_normal((10, 6))) > 1.0
    assert math.isnan(metrics.diversity(same[:1]))


def test_manifold_figures_tell_a_collapsed_set_from_a_varied_one():
    rng = np.random.default_rng(0)
    real = rng.standard_normal((40, 4))
    same = metrics.manifold_figures(real, real)
    assert same["precision"] == same["recall"] == same["coverage"] == 1.0 and same["density"] >= 1.0
    varied = metrics.manifold_figures(real, rng.standard_normal((40, 4)))
    collapsed = metrics.manifold_figures(real, real[:1] + 0.01 * rng.standard_normal((40, 4)))
    assert collapsed["precision"] == 1.0                   # every sound is plausible...
    assert collapsed["recall"] < 0.2 and collapsed["coverage"] < 0.2 < varied["coverage"]   # ...but one sound
    far = metrics.manifold_figures(real, rng.standard_normal((40, 4)) + 20)
    assert far["precision"] == far["coverage"] == 0.0
    spread = metrics.pc_spread(real * np.array([1, 2, 3, 4]), np.zeros(4), np.eye(4)[:, :2])
    assert spread.shape == (2,) and spread[1] > 1.5 * spread[0]


def test_a_floor_is_measured_with_as_many_real_sounds_as_were_generated():
    rng = np.random.default_rng(2)
    held, train = rng.standard_normal((20, 4)), rng.standard_normal((120, 4))
    whole = metrics.manifold_figures(held, train)
    assert metrics.manifold_floor(held, train, 120) == whole == metrics.manifold_floor(held, train, 500)
    few = metrics.manifold_floor(held, train, 16)
    assert few["coverage"] < whole["coverage"] - 0.1          # fewer sounds reach fewer held-out ones
    assert few == metrics.manifold_floor(held, train, 16)      # the same floor every run
    assert 0.0 < few["coverage"] < 1.0 and set(few) == set(whole)


def test_silent_clipped_and_nan_detection():
    good = kick(0)
    quiet = kick(0) * 10 ** (-70 / 20)
    flat_top = kick(0).clone()
    flat_top[:, 1000:1020] = 1.0
    one_peak = kick(0).clone()
    one_peak[:, 500:505] = 1.0  # a few full-scale samples are not clipping
    broken = kick(0).clone()
    broken[0, 10] = float("nan")
    batch = torch.stack([good, quiet, flat_top, one_peak, broken])
    assert metrics.silent(batch).tolist() == [False, True, False, False, False]
    assert metrics.clipped(batch).tolist() == [False, False, True, False, False]
    assert metrics.nonfinite(batch).tolist() == [False, False, False, False, True]
    assert metrics.silent_share(batch) == pytest.approx(0.2)
    assert metrics.clipped_share(-batch) == pytest.approx(0.2)  # negative flat tops count too
    assert metrics.nan_share(batch) == pytest.approx(0.2)
    assert metrics.silent(torch.zeros(1, 2, 64)).item()
    assert metrics.over_full_scale(torch.stack([good, 1.5 * flat_top, one_peak])).tolist() == [False, True, False]


def test_broken_outputs_are_counted_in_what_the_studio_writes():
    """A decoded sound above full scale is scaled down by the studio, not clipped: it counts as
    over full scale (the model's loudness is off) but not as clipped; a real flat top still counts."""
    loud = 1.6 * kick(0)
    flat_top = kick(0).clone()
    flat_top[:, 1000:1020] = 0.999  # at the ceiling finish() scales to: left as it is
    broken = kick(0).clone()
    broken[0, 10] = float("nan")
    raw = torch.stack([loud, flat_top, broken])
    finished = studio_output(raw, RATE)
    assert finished[0].abs().max() < 1.0 and torch.isnan(finished[2]).any()
    figures = broken_outputs(raw, finished)
    assert figures["over_full_scale_share"] == pytest.approx(1 / 3)
    assert figures["clipped_share"] == pytest.approx(1 / 3)  # the flat top only
    assert figures["nan_share"] == pytest.approx(1 / 3)


def test_tail_floor_measures_the_added_hiss():
    clean = metrics.tail_floor_db(torch.stack([kick(s) for s in range(3)]), RATE)
    hissy = metrics.tail_floor_db(torch.stack([kick(s, noise_rms=10 ** (-50 / 20)) for s in range(3)]), RATE)
    assert (clean < -90).all()
    # white noise at -50 dB RMS: ~64% of its power lies above 8 kHz -> about -52 dB re the ~0.9 peak
    expected = -50 + 10 * math.log10((RATE / 2 - 8000) / (RATE / 2)) - 20 * math.log10(0.9)
    assert hissy.tolist() == pytest.approx([expected] * 3, abs=1.5)
    assert metrics.tail_floor_db(torch.zeros(1, 2, LENGTH), RATE).item() == metrics.TAIL_FLOOR_DB
    assert metrics.tail_floor_db(torch.ones(1, 2, 4000), RATE).item() == metrics.TAIL_FLOOR_DB  # too short


# --------------------------------------------------------------------------- classifier

@pytest.mark.numeric
def test_band_edge_steps_find_a_cliff_at_a_sub_band_edge_and_only_there():
    """Decaying noise reads a step of a few dB at every edge (the spectrum's own wobble); the same
    noise with everything above the second edge of 32 bands (1378 Hz) 19 dB down reads ~19 dB at
    the edges but not at the bands' middles; a silent tail is not judged (NaN)."""
    rate = 44100
    t = torch.arange(int(rate * 0.8)) / rate
    noise = torch.randn(1, 2, len(t), generator=torch.Generator().manual_seed(0)) * torch.exp(-t * 3)
    spectrum = torch.fft.rfft(noise)
    spectrum[..., torch.fft.rfftfreq(len(t), 1 / rate) > 2 * rate / 2 / 32] *= 10 ** (-19 / 20)
    cliff = torch.fft.irfft(spectrum, n=len(t))
    plain = float(metrics.band_edge_steps(noise, rate, 32)[0])
    assert plain < 4.0
    assert 16.0 < float(metrics.band_edge_steps(cliff, rate, 32)[0]) < 22.0
    assert float(metrics.band_edge_steps(cliff, rate, 32, at_edges=False)[0]) < 4.0
    assert math.isnan(float(metrics.band_edge_steps(torch.zeros(1, 2, len(t)), rate, 32)[0]))


def test_second_rises_read_a_second_hit_and_nothing_in_a_plain_decay():
    """A decaying noise burst rises again by ~0 dB; the same with a second burst 20 dB under the
    first at 300 ms reads a rise near the second burst's height over the first's tail there; silence 0."""
    rate = 44100
    t = torch.arange(int(rate * 0.74)) / rate
    noise = torch.randn(1, 2, len(t), generator=torch.Generator().manual_seed(1))
    decay = noise * torch.exp(-t * 12)                                          # ~-31 dB by 300 ms
    late = (t >= 0.3).float() * torch.exp(-(t - 0.3).clamp_min(0) * 12) * 0.1    # -20 dB, at 300 ms
    two = decay + noise.roll(4000, dims=-1) * late
    rises = metrics.second_rises(torch.cat([decay, two, torch.zeros(1, 2, len(t))]))
    assert float(rises[0]) < 2.0
    assert 8.0 < float(rises[1]) < 14.0
    assert float(rises[2]) == 0.0


def test_classifier_separates_synthetic_classes_and_round_trips(tmp_path):
    names = ("kick", "snare", "hat")
    train = torch.cat([clips(k, range(8)) for k in names])
    labels = torch.arange(3).repeat_interleave(8)
    test = torch.cat([clips(k, range(100, 106)) for k in names])
    test_labels = torch.arange(3).repeat_interleave(6)
    train_x, test_x = features(train, RATE), features(test, RATE)
    model = train_classifier(train_x, labels, names)
    assert model.accuracy(test_x, test_labels) >= 0.9
    again = train_classifier(train_x, labels, names)
    assert torch.equal(model.logits(test_x), again.logits(test_x))  # deterministic
    model.save(tmp_path / "c.safetensors")
    loaded = Classifier.load(tmp_path / "c.safetensors")
    assert loaded.label_names == names
    assert torch.allclose(loaded.logits(test_x), model.logits(test_x))


def _fake_dataset(root, train_seeds=range(6), holdout_seeds=range(50, 53)) -> None:
    """A built-data-set folder (index.json + split tensors) of synthetic kicks, snares and hats."""
    root.mkdir(parents=True, exist_ok=True)
    records, splits = [], {}
    for split, seeds in (("train", train_seeds), ("holdout", holdout_seeds)):
        audio = []
        for kind in ("kick", "snare", "hat"):
            for s in seeds:
                records.append({"split": split, "row": len(audio), "category": kind, "subcategory": kind,
                                "kit": f"fake_{split}", "file": f"{kind}{s}.wav"})
                audio.append(MAKERS[kind](s))
        save_file({"audio": torch.stack(audio).half()}, str(root / f"{split}.safetensors"))
        splits[split] = {"file": f"{split}.safetensors", "count": len(audio)}
    index = {"sample_rate": RATE, "length": LENGTH, "channels": 2, "categories": ["kick", "snare", "hat"],
             "splits": splits, "clips": records}
    (root / "index.json").write_text(json.dumps(index))


@pytest.mark.numeric
def test_load_or_train_caches_by_data_set(tmp_path):
    _fake_dataset(tmp_path / "data")
    first = load_or_train(tmp_path / "data", tmp_path / "cache")
    assert first.info["holdout_accuracy"] >= 0.9
    cached = list((tmp_path / "cache").glob("classifier-*.safetensors"))
    assert len(cached) == 1 and cached[0].with_suffix(".json").is_file()
    second = load_or_train(tmp_path / "data", tmp_path / "cache")
    assert second.info["key"] == first.info["key"]
    assert torch.equal(second.mean, first.mean)
    _fake_dataset(tmp_path / "data", train_seeds=range(7))  # a rebuilt data set gets its own entry
    load_or_train(tmp_path / "data", tmp_path / "cache")
    assert len(list((tmp_path / "cache").glob("classifier-*.safetensors"))) == 2


# --------------------------------------------------------------------------- evaluate

def test_evaluate_end_to_end_on_a_tiny_model(tmp_path):
    make_tiny_model(tmp_path / "models", "tiny")
    real, holdout = reference(range(6)), reference(range(50, 53))
    results = evaluate("tiny-kick", count=2, steps=2, models_root=tmp_path / "models", real=real,
                       holdout=holdout, progress=False)
    for key in ("classified_as_intended", "classified_as_intended_real", "frechet", "frechet_floor",
                "frechet_ratio", "diversity", "diversity_real", "diversity_ratio", "silent_share",
                "clipped_share", "nan_share", "over_full_scale_share", "tail_floor_db", "tail_floor_real_db", "tail_floor_excess_db"):
        assert f"kick.{key}" in results, key
    assert not any(k.startswith("hat.") for k in results)  # an alias evaluates its own label only
    assert 0.0 <= results["classifier.holdout_accuracy"] <= 1.0
    assert results["model.name"] == "tiny-kick"
    for key, value in results.items():
        if isinstance(value, float) and not key.startswith("model."):
            assert math.isfinite(value), key
    text = format_results(results)
    assert "kick.frechet: " in text and all(": " in line for line in text.splitlines())

    # the model name itself evaluates every label; categories without real clips keep their audio checks
    everything = evaluate("tiny", count=2, steps=2, models_root=tmp_path / "models", real=real,
                          holdout=holdout, progress=False)
    assert {"kick.frechet", "hat.frechet", "snare.nan_share", "cymbal.silent_share"} <= set(everything)
    assert "hat.tail_floor_db" not in everything
    some = evaluate("tiny", count=2, steps=2, models_root=tmp_path / "models", real=real, holdout=holdout,
                    progress=False, labels=["snare", "kick"])
    assert {k.split(".")[0] for k in some} == {"model", "classifier", "kick", "snare", "generate"}
    for bad in (["tuba"], ["hat"]):  # not a label of the model; not the label an alias makes
        with pytest.raises(InvalidRequestError):
            evaluate("tiny" if bad == ["tuba"] else "tiny-kick", count=2, steps=2, models_root=tmp_path / "models",
                     real=real, holdout=holdout, progress=False, labels=bad)


def test_cli_prints_name_value_lines_and_reports_errors(tmp_path, capsys):
    make_tiny_model(tmp_path / "models", "tiny")
    _fake_dataset(tmp_path / "data")
    code = main(["--model", "tiny-hat", "--count", "2", "--steps", "1", "--models-root", str(tmp_path / "models"),
                 "--data", str(tmp_path / "data"), "--cache", str(tmp_path / "cache"), "--quiet"])
    out = capsys.readouterr().out
    assert code == 0
    values = dict(line.split(": ", 1) for line in out.strip().splitlines())
    assert {"hat.classified_as_intended", "hat.frechet_ratio", "classifier.holdout_accuracy"} <= set(values)
    assert main(["--model", "nope", "--models-root", str(tmp_path / "models"), "--quiet"]) == 2
    assert "no model called 'nope'" in capsys.readouterr().err


def test_a_category_share_among_sounds_whose_curves_real_clip_reads_as_it():
    from engine.eval.controls import classified_where_real_is

    made = ["perc", "snare", "perc", "hat", "perc"]
    real = ["perc", "perc", "snare", "kick", "perc"]   # the clips the curves were measured on
    share, kept = classified_where_real_is(made, real, "perc")
    assert share == pytest.approx(2 / 3)   # sounds 0, 1, 4: sound 1 missed; sounds 2, 3 asked for another shape
    assert kept == pytest.approx(3 / 5)
    assert math.isnan(classified_where_real_is(["kick"], ["snare"], "perc")[0])
    with pytest.raises(ValueError, match="2 verdicts"):
        classified_where_real_is(["perc", "perc"], ["perc"], "perc")



@pytest.mark.slow
def test_the_controls_evaluation_runs_end_to_end_on_a_tiny_model(tmp_path):
    """`python -m engine.eval.controls` (the figures issue 16's notes quote) on a random tiny latent
    model with curves and a tiny built data set: every figure is there and in its range, and a model
    shorter than 1 s is timed at its own length instead of being refused."""
    from engine.conditions import CONTROL_SPECS, LABEL_SPEC
    from engine.eval.controls import main as controls_main
    from engine.models import save_model
    from engine.nets import build_network
    from engine.nets.autoencoder import AudioAutoencoder
    from tests.helpers import make_drum_dataset, perturb_zero_init
    from tests.test_latent import LENGTH, codec_manifest, latent_manifest

    data = make_drum_dataset(tmp_path / "data", LENGTH)
    torch.manual_seed(0)
    save_model(tmp_path / "models" / "codec", AudioAutoencoder(**codec_manifest()["codec"]["args"]), codec_manifest())
    manifest = latent_manifest()
    manifest["network"]["args"]["controls"] = [spec.name for spec in CONTROL_SPECS]
    manifest["conditions"] = [spec.to_dict() for spec in (LABEL_SPEC, *CONTROL_SPECS)]
    manifest["conditioners"] = [spec["name"] for spec in manifest["conditions"]]
    save_model(tmp_path / "models" / "latent", perturb_zero_init(build_network(manifest["network"])), manifest)

    results = evaluate_controls(str(tmp_path / "models" / "latent"), str(data), count=3, shape_seeds=1,
                                cache_dir=str(tmp_path / "cache"), progress=False)
    for category in ("kick", "snare", "hat", "perc", "cymbal"):
        for key in ("classified_as_intended", "classified_as_intended_real", "frechet_ratio",
                    "classified_as_intended_where_real_is", "curves_whose_real_is"):
            value = results[f"heldout.{category}.{key}"]
            assert math.isnan(value) or value >= 0.0, (category, key, value)
        share = results[f"heldout.{category}.curves_whose_real_is"]
        assert 0.0 <= share <= 1.0 and share * 3 == pytest.approx(round(share * 3))   # of the 3 sounds
    for key in ("heldout.loudness_error_db", "heldout.loudness_error_db_without", "drawn.loudness_error_db",
                "drawn.loudness_error_db_matched", "heldout.onsets_within_10ms", "drawn.spurious_onsets_per_sound"):
        assert math.isfinite(results[key]) and results[key] >= 0.0, key
    assert results["heldout.sounds"] == 15 and results["drawn.sounds"] == 5
    assert results["speed.length_s"] == pytest.approx(LENGTH / 44100) and results["speed.seconds_controlled"] > 0
    assert "speed.seconds_1s_controlled" not in results
    # a model without curves is refused in one line
    plain = latent_manifest("plain")
    save_model(tmp_path / "models" / "plain", build_network(plain["network"]), plain)
    assert controls_main(["--model", str(tmp_path / "models" / "plain"), "--data", str(data)]) == 2



@pytest.mark.slow
def test_the_hybrid_and_band_evaluations_run_end_to_end_on_a_tiny_model(tmp_path):
    """`python -m engine.eval.hybrids` and `python -m engine.eval.bands` (issue 19's hybrid and band
    figures) on the tiny random waveform model and a tiny built data set."""
    from engine.eval.bands import evaluate_bands
    from engine.eval.hybrids import evaluate_hybrids
    from tests.helpers import make_drum_dataset

    make_tiny_model(tmp_path / "models", "tiny")
    data = make_drum_dataset(tmp_path / "data", 32768, train=3, holdout=2)
    model = str(tmp_path / "models" / "tiny")
    hybrids = evaluate_hybrids(model, str(data), pairs=[("snare", "perc")], mixes=(0.0, 0.5, 1.0), count=2,
                               cache_dir=str(tmp_path / "cache"))
    for mix in ("0", "0.5", "1"):
        p_a, p_b = hybrids[f"snare_perc.mix{mix}.p_a"], hybrids[f"snare_perc.mix{mix}.p_b"]
        assert 0.0 <= p_a <= 1.0 and 0.0 <= p_b <= 1.0 and p_a + p_b <= 1.0 + 1e-6
    assert hybrids["snare_perc.monotonic"] in (0.0, 1.0) and 0.0 <= hybrids["snare_perc.middle_balance"] <= 1.0
    with pytest.raises(InvalidRequestError, match="needs labels"):
        evaluate_hybrids(model, str(data), pairs=[("snare", "gong")], count=1, cache_dir=str(tmp_path / "cache"))
    bands = evaluate_bands(model, str(data), count=2)
    assert bands["bands"] == 32.0
    for key in ("kick.edge_step_db", "kick.edge_step_db_real", "all.cliff_share", "all.cliff_share_real"):
        assert math.isnan(bands[key]) or bands[key] >= 0.0, key
    assert bands["kick.judged_real"] >= 0 and 0.0 <= bands["kick.second_hit_share_real"] <= 1.0
    assert math.isfinite(bands["snare.rumble_db"]) and math.isfinite(bands["snare.rumble_db_real"])
    assert 0 <= bands["kick.judged_train"] <= 3 and 0.0 <= bands["kick.cliff_share_train"] <= 1.0  # the 3 training kicks
    assert "kick.middle_step_db_train" not in bands  # the training clips give the edge figures only


def test_a_set_misses_exactly_the_targets_its_figures_fall_short_of():
    """Issue 19's targets as :func:`engine.eval.seed_sets.misses` reads them: recall or coverage
    reaches, the Fréchet ratio's bound is the model kind's, an unmeasured figure misses."""
    from engine.eval.seed_sets import misses, seed_sets

    good = {"classified_as_intended": 0.9, "frechet_ratio": 1.3, "pc_diversity": 0.86, "recall_ratio": 0.5,
            "coverage_ratio": 0.81}
    assert misses(good, "latent") == [] and misses(good, "wave") == ["frechet"]
    assert misses(dict(good, classified_as_intended=0.84, coverage_ratio=0.79), "latent") == ["classified", "reach"]
    assert misses(dict(good, pc_diversity=math.nan), "latent") == ["spread"]
    assert misses({}, "wave") == ["classified", "frechet", "spread", "reach"]
    assert seed_sets(1000, 3, 1000, 64) == [1000, 2000, 3000]
    for bad in ((1000, 0, 1000, 64), (1000, 2, 32, 64), (1000, 2, 1000, 1)):
        with pytest.raises(InvalidRequestError):
            seed_sets(*bad)


def test_the_sets_mean_comes_with_its_interval_and_the_targets_its_far_side_misses():
    """The 95 % interval of a mean over sets is Student's t (a textbook case: four sets, t = 3.182);
    one set or an unmeasured figure has none; the far side is the Fréchet ratio's high end and every
    other figure's low end, and the targets are judged there."""
    from engine.eval.seed_sets import far_side, interval, misses

    low, high = interval([0.84, 0.86, 0.88, 0.90])
    half = 3.1824 * statistics.stdev([0.84, 0.86, 0.88, 0.90]) / 2
    assert low == pytest.approx(0.87 - half, abs=1e-4) and high == pytest.approx(0.87 + half, abs=1e-4)
    assert interval([0.8, 0.8, 0.8]) == pytest.approx((0.8, 0.8))
    assert all(math.isnan(end) for end in interval([0.9]) + interval([0.9, math.nan, 0.8]))
    bounds = {"classified_as_intended": (0.83, 0.91), "frechet_ratio": (1.0, 1.6), "pc_diversity": (0.9, 1.0),
              "recall_ratio": (0.7, 0.9), "coverage_ratio": (0.85, 0.95)}
    side = far_side(bounds)
    assert side == {"classified_as_intended": 0.83, "frechet_ratio": 1.6, "pc_diversity": 0.9,
                    "recall_ratio": 0.7, "coverage_ratio": 0.85}
    assert misses(side, "latent") == ["classified", "frechet"]


def test_the_seed_sets_evaluation_counts_the_sets_that_meet_every_target(tmp_path, capsys):
    """`python -m engine.eval.seed_sets` on the tiny random model and a tiny built data set: a line
    per set, its count of sets met agrees with those lines, means and worst figures; bad input is refused."""
    from engine.eval.seed_sets import FIGURES, interval, misses
    from engine.eval.seed_sets import main as seed_sets_main
    from tests.helpers import make_drum_dataset

    make_tiny_model(tmp_path / "models", "tiny")
    data = make_drum_dataset(tmp_path / "data", LENGTH, train=6, holdout=4)
    model = str(tmp_path / "models" / "tiny")
    common = ["--model", model, "--data", str(data), "--cache", str(tmp_path / "cache")]
    assert seed_sets_main(common + ["--labels", "hat", "--sets", "2", "--count", "5", "--stride", "10", "--guidance", "2",
                                    "--first-seed", "7"]) == 0
    lines = dict(line.split(": ", 1) for line in capsys.readouterr().out.strip().splitlines())
    sets = [lines["hat.set7"], lines["hat.set17"]]
    assert all(len(line.split()[0].split("/")) == 5 for line in sets)
    assert float(lines["hat.sets_met"]) == sum(line.endswith("met") and "misses" not in line for line in sets)
    made = [float(line.split()[0].split("/")[0]) for line in sets]
    assert float(lines["hat.classified_as_intended.mean"]) == pytest.approx(sum(made) / 2, abs=1e-3)
    assert float(lines["hat.classified_as_intended.worst"]) == pytest.approx(min(made), abs=1e-3)
    low, high = float(lines["hat.classified_as_intended.low"]), float(lines["hat.classified_as_intended.high"])
    assert (low, high) == pytest.approx(interval(made), abs=2e-3)
    means = {name: float(lines[f"hat.{name}.mean"]) for name in FIGURES}
    assert lines["hat.means_miss"] == (",".join(misses(means, "wave")) or "none")
    assert lines["hat.bounds_miss"] != "none" or lines["hat.means_miss"] == "none"
    assert seed_sets_main(common + ["--labels", "gong", "--sets", "1", "--count", "4"]) == 2
    assert "not ['gong']" in capsys.readouterr().err
    assert seed_sets_main(common + ["--sets", "2", "--count", "64", "--stride", "10"]) == 2
    assert "share seeds" in capsys.readouterr().err
