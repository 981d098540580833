"""The latent stack: autoencoder codec, STFT loss, codec and latent trainers, codec folders referenced
by latent models, variable-length generation, alpha-blending inversion, CLI, optional EnCodec.

Everything is tiny (a 8-band autoencoder with 8 latent channels, a two-level U-Net) and runs on
one CPU thread in seconds; quality is for the training session, not for these tests.
"""

from __future__ import annotations

import csv
import json
import math
import shutil
import sys
from pathlib import Path

import pytest
import soundfile as sf
import torch

from engine.audio import read_recipe
from engine.data.dataset import DrumDataset
from engine.errors import CheckpointError, InvalidRequestError, StudioError
from engine.models import find_models, load_model, load_weights, read_manifest, save_model
from engine.nets import CODECS, build_codec, build_network
from engine.nets.autoencoder import AudioAutoencoder
from engine.nets.compand import CompandedCodec, fit as fit_compander, wrap as wrap_compander
from engine.request import GenerationRequest
from engine.seeds import seeded_init
from engine.sampling import invert_latent, sample_latent
from engine.studio import Studio
from engine.train.codec import (CodecTrainConfig, low_band_waveform_loss, measure_latent_scale, reconstruction_loss,
                                train_codec)
from engine.train.common import LossLog
from engine.train.latent import LatentTrainConfig, encode_copies, train_latent, validation_loss
from engine.train.losses import MultiResolutionSTFTLoss
from tests.helpers import LABELS, make_wav_folder, perturb_zero_init, run_cli, synthetic_hit

RATE = 44100
LENGTH = 8192  # samples of the tiny latent model's clips (~0.19 s): 256 latent frames
TINY_CODEC = {"bands": 8, "widths": [16, 16], "factors": [4], "latent_channels": 8, "units": 1, "kernel": 5}
TINY_LATENT_NET = {"widths": [16, 32], "blocks": [1, 1], "factors": [2], "attention": [False, False],
                   "heads": 2, "emb_dim": 32, "dropout": 0.0}
TINY_ENCODEC = {"hidden_size": 16, "num_filters": 4, "upsampling_ratios": [4, 4], "codebook_size": 32,
                "codebook_dim": 16, "target_bandwidths": [15.0], "num_lstm_layers": 1}


# ----------------------------------------------------------------------------- builders


def codec_manifest(name: str = "codec", latent_scale: float = 1.0) -> dict:
    return {"format": 1, "name": name, "kind": "codec", "sample_rate": RATE, "channels": 2, "length": LENGTH,
            "codec": {"type": "autoencoder", "args": dict(TINY_CODEC, channels=2, latent_scale=latent_scale)},
            "training": {"steps": 0}}


def latent_manifest(name: str = "latent", codec: str = "codec") -> dict:
    return {"format": 1, "name": name, "kind": "latent", "objective": "blend", "sample_rate": RATE,
            "length": LENGTH, "channels": 2, "labels": LABELS, "aliases": {}, "conditioners": ["label"],
            "defaults": {"sampler": "iadb", "steps": 4, "guidance": 2.0},
            "codec": {"type": "autoencoder", "model": codec},
            "network": {"type": "unet1d", "args": dict(TINY_LATENT_NET, in_channels=8, num_labels=len(LABELS))},
            "training": {"steps": 0}}


def make_latent_models(root: Path) -> Path:
    """root/codec (random autoencoder) + root/latent (random blending U-Net referencing it by name)."""
    torch.manual_seed(0)
    save_model(root / "codec", AudioAutoencoder(**codec_manifest()["codec"]["args"]), codec_manifest())
    manifest = latent_manifest()
    save_model(root / "latent", perturb_zero_init(build_network(manifest["network"])), manifest)
    return root


@pytest.fixture(scope="module")
def latent_models(tmp_path_factory) -> Path:
    return make_latent_models(tmp_path_factory.mktemp("latent_models"))


@pytest.fixture(scope="module")
def clips() -> torch.Tensor:
    """Four synthetic stereo hits of LENGTH samples (two kicks, two hats)."""
    hits = [synthetic_hit(kind, seed)[:LENGTH] for kind in ("kick", "hat") for seed in (0, 1)]
    return torch.stack([torch.from_numpy(h.T.copy()) for h in hits])


# ----------------------------------------------------------------------------- codec


def test_autoencoder_compresses_by_its_hop_and_pads_any_length():
    codec = build_codec({"type": "autoencoder", "args": dict(TINY_CODEC)})
    assert isinstance(codec, AudioAutoencoder) and CODECS["autoencoder"] is AudioAutoencoder
    assert codec.hop == 8 * 4 and codec.latent_channels == 8
    default = AudioAutoencoder()
    assert default.hop == 128 and 64 <= default.hop <= 256 and 16 <= default.latent_channels <= 64
    audio = torch.randn(3, 2, 1000) * 0.1
    latent = codec.encode(audio)
    assert latent.shape == (3, 8, math.ceil(1000 / 32)) == (3, 8, codec.latent_length(1000))
    assert codec.decode(latent).shape == (3, 2, 32 * 32)  # callers cut to the length they asked for
    assert codec.encode(torch.randn(1, 2, 4096)).shape[-1] == 4096 // 32  # fully convolutional
    with pytest.raises(CheckpointError, match="even"):
        build_codec({"type": "autoencoder", "args": dict(TINY_CODEC, factors=[3])})


def test_latent_scale_gives_unit_variance_and_decode_undoes_it(clips):
    torch.manual_seed(0)
    raw = AudioAutoencoder(**TINY_CODEC).eval()
    scale = measure_latent_scale(raw, clips)
    scaled = AudioAutoencoder(**TINY_CODEC, latent_scale=scale).eval()
    scaled.load_state_dict(raw.state_dict())
    with torch.no_grad():
        assert abs(float(scaled.encode(clips).std()) - 1.0) < 1e-4
        assert torch.allclose(scaled.encode(clips) * scale, raw.encode_raw(clips), atol=1e-6)
        assert torch.allclose(scaled.decode(scaled.encode(clips)), raw.decode_raw(raw.encode_raw(clips)), atol=1e-5)
    with pytest.raises(CheckpointError, match="latent_scale"):
        build_codec({"type": "autoencoder", "args": dict(TINY_CODEC, latent_scale=0.0)})


def test_the_companded_latent_is_unit_variance_per_channel_silence_is_zero_and_it_inverts(trained_codec, clips):
    codec = load_model_codec(trained_codec)
    transform = fit_compander(codec, clips, scale=0.01)
    with torch.no_grad():
        companded = transform.encode(clips)
        assert torch.allclose(companded.std(dim=(0, 2)), torch.ones(8), atol=1e-3)
        assert transform.encode(torch.zeros(1, 2, LENGTH))[..., 4:-4].abs().max() < 0.05  # silence -> ~0
        assert torch.allclose(transform.expand(companded), codec.encode(clips), atol=1e-4)  # exact inverse
        assert torch.allclose(transform.decode(companded), codec.decode(codec.encode(clips)), atol=1e-4)
        # a stray huge value is clamped at the training range's margin, not blown up by sinh
        burst = transform.decode(torch.full_like(companded, 1e4))
        assert torch.isfinite(burst).all()
        assert torch.allclose(burst, transform.decode(torch.full_like(companded, transform.limit)))
        # each channel's own range holds every training value, and a little more (RANGE_MARGIN in raw terms)
        low, high = transform.low, transform.high
        assert transform.ranged and (companded >= low).all() and (companded <= high).all()
        assert (high > companded.amax(dim=(0, 2))[None, :, None]).all()
        wild = companded.clone()
        wild[:, :, 10] = 1e3  # one stray frame in every channel decodes as the top of each channel's range
        assert torch.allclose(transform.expand(wild)[:, :, 10], transform.expand(high.expand_as(wild))[:, :, 10])
    # the manifest entry rebuilds the same transform; no entry leaves the codec as it is
    rebuilt = wrap_compander(codec, transform.spec())
    with torch.no_grad():
        assert torch.allclose(rebuilt.encode(clips), companded, atol=1e-3)
        assert rebuilt.ranged and torch.allclose(rebuilt.high, transform.high, atol=1e-4)
    older = {k: v for k, v in transform.spec().items() if k not in ("low", "high")}  # a manifest from before ranges
    assert not wrap_compander(codec, older).ranged
    assert wrap_compander(codec, None) is codec
    with pytest.raises(ValueError, match="channels"):
        wrap_compander(codec, dict(transform.spec(), std=[1.0] * 3))


def load_model_codec(folder: Path) -> AudioAutoencoder:
    manifest = read_manifest(folder)
    codec = build_codec(manifest["codec"])
    load_weights(folder, codec)
    return codec.eval()


@pytest.mark.numeric
def test_the_low_bypass_passes_the_pitched_low_end_through_exactly(trained_codec):
    """A kick's body (a decaying low sine) survives even an untrained codec when it is bypassed."""
    t = torch.arange(LENGTH) / RATE
    body = (0.5 * torch.sin(2 * math.pi * 60 * t) * torch.exp(-t / 0.05)).repeat(1, 2, 1)

    def error_db(codec) -> float:
        """Error of the round trip below 400 Hz (an untrained decoder fills the rest with noise)."""
        with torch.no_grad():
            rebuilt = codec.decode(codec.encode(body))[..., :LENGTH]
        low = torch.fft.rfftfreq(LENGTH, 1 / RATE) < 400
        wanted, got = torch.fft.rfft(body)[..., low], torch.fft.rfft(rebuilt)[..., low]
        return float(20 * torch.log10((got - wanted).abs().norm() / wanted.abs().norm()))

    torch.manual_seed(0)
    plain = AudioAutoencoder(**TINY_CODEC).eval()
    torch.manual_seed(0)
    bypassed = AudioAutoencoder(**TINY_CODEC, low_bypass=1).eval()  # 1 of 4 sub-bands of band 0: 0-690 Hz
    assert bypassed.latent_channels == plain.latent_channels + 2  # one sub-band per stereo channel
    assert error_db(plain) > -3 and error_db(bypassed) < -25, (error_db(plain), error_db(bypassed))
    # a codec trained without the bypass takes it on unchanged: no new weights
    manifest = read_manifest(trained_codec)
    upgraded = build_codec({"type": "autoencoder", "args": dict(manifest["codec"]["args"], low_bypass=1)})
    load_weights(trained_codec, upgraded)
    assert error_db(upgraded.eval()) < -25
    with pytest.raises(ValueError, match="low_bypass"):
        AudioAutoencoder(**TINY_CODEC, low_bypass=5)


def test_band_zeros_learned_top_is_held_to_its_neighbours_and_left_alone_under_them():
    """The part of band 0 above the bypass, the one the latent carries no loudness for, is turned
    down to at most ``band0_ceiling_db`` over the louder of the top exact sub-band and band 1's
    envelope, and is untouched where it is under that."""
    codec = AudioAutoencoder(**TINY_CODEC, low_bypass=1, band_envelope=True, band0_ceiling_db=6.0)
    frames = 32
    noise = torch.randn(1, 2, codec.sub_bands, frames, generator=torch.Generator().manual_seed(0))
    sub = noise / noise.pow(2).mean(dim=(1, 3), keepdim=True).sqrt()        # power 1 in every sub-band
    envelope = torch.ones(1, codec.envelope_channels, frames)               # band 1 at power 1 too
    loud = torch.cat([sub[:, :, :1], 10.0 * sub[:, :, 1:]], dim=2)          # the top 20 dB over
    held = codec._hold_band0_top(loud, envelope)
    torch.testing.assert_close(held[:, :, :1], loud[:, :, :1])               # the exact sub-band as it was
    top_db = 10 * math.log10(float(held[:, :, 1:].pow(2).mean()))
    assert 4.0 < top_db < 6.5, top_db
    quiet = torch.cat([sub[:, :, :1], 1.2 * sub[:, :, 1:]], dim=2)          # 1.6 dB over: left alone
    torch.testing.assert_close(codec._hold_band0_top(quiet, envelope), quiet)
    with pytest.raises(ValueError, match="band0_ceiling_db"):
        AudioAutoencoder(**TINY_CODEC, band_envelope=True, band0_ceiling_db=6.0)       # no bypass
    with pytest.raises(ValueError, match="band0_ceiling_db"):
        AudioAutoencoder(**TINY_CODEC, low_bypass=1, band_envelope=True, band0_ceiling_db=math.nan)


def test_a_thin_bright_hit_comes_back_without_the_decoders_fill_under_it():
    """Noise above 6 kHz (a thin hat: nothing under it) through an untrained codec: its decoder
    fills band 0's learned top; held to its silent neighbours, that part stays near silent."""
    t = torch.arange(LENGTH) / RATE
    noise = torch.randn(1, 2, LENGTH, generator=torch.Generator().manual_seed(1))
    spectrum = torch.fft.rfft(noise)
    spectrum[..., torch.fft.rfftfreq(LENGTH, 1 / RATE) < 6000] = 0
    hat = 0.3 * torch.fft.irfft(spectrum, LENGTH) / torch.fft.irfft(spectrum, LENGTH).abs().amax() * torch.exp(-t / 0.03)
    top = (torch.fft.rfftfreq(LENGTH, 1 / RATE) > 800) & (torch.fft.rfftfreq(LENGTH, 1 / RATE) < 2600)

    def top_share_db(ceiling) -> float:
        torch.manual_seed(0)
        codec = AudioAutoencoder(**TINY_CODEC, low_bypass=1, band_envelope=True, band0_ceiling_db=ceiling).eval()
        with torch.no_grad():
            rebuilt = codec.decode(codec.encode(hat))[..., :LENGTH]
        power = torch.fft.rfft(rebuilt).abs().pow(2)
        return float(10 * torch.log10(power[..., top].sum() / power.sum()))

    assert top_share_db(6.0) < top_share_db(None) - 10, (top_share_db(6.0), top_share_db(None))


def test_channel_groups_name_every_latent_channel_once_in_order():
    codec = AudioAutoencoder(**TINY_CODEC, low_bypass=1, band_envelope=True)
    groups = codec.channel_groups()
    assert list(groups) == ["learned", "bypass", "envelope"]
    covered = [i for part in groups.values() for i in range(codec.latent_channels)[part]]
    assert covered == list(range(codec.latent_channels))
    assert len(range(codec.latent_channels)[groups["envelope"]]) == codec.envelope_channels
    assert list(AudioAutoencoder(**TINY_CODEC).channel_groups()) == ["learned"]


@pytest.mark.numeric
def test_the_band_envelope_gives_the_decoder_each_bands_loudness_over_time(trained_codec, clips):
    """Bands above band 0 come back with the input's energy per latent frame, silence stays silent,
    and a codec trained without the envelope takes it on with no new weights."""
    manifest = read_manifest(trained_codec)
    plain = load_model_codec(trained_codec)
    enveloped = build_codec({"type": "autoencoder", "args": dict(manifest["codec"]["args"], band_envelope=True)})
    load_weights(trained_codec, enveloped)
    enveloped.eval()
    assert enveloped.latent_channels == plain.latent_channels + TINY_CODEC["bands"] - 1

    def band_rms_error_db(codec) -> float:
        """Mean |dB| difference of per-band, per-frame RMS (bands 1..) between clips and round trips."""
        with torch.no_grad():
            rebuilt = codec.decode(codec.encode(clips))[..., :LENGTH]
            wanted, got = (enveloped._band_rms(enveloped.pqmf.analysis(x)) for x in (clips, rebuilt))
        loud = wanted > wanted.amax() * 1e-3  # frames within 60 dB of the loudest
        return float((20 * torch.log10((got[loud] + 1e-9) / wanted[loud])).abs().mean())

    assert band_rms_error_db(enveloped) < 0.5 * band_rms_error_db(plain), \
        (band_rms_error_db(enveloped), band_rms_error_db(plain))
    with torch.no_grad():  # an all-silent envelope: nothing above band 0 (whose edge leaks a little)
        latent = enveloped.encode(clips)
        latent[:, -enveloped.envelope_channels:] = 0
        silenced = enveloped.decode(latent)[..., :LENGTH]
    highs = torch.fft.rfftfreq(LENGTH, 1 / RATE) > 2 * RATE / 2 / TINY_CODEC["bands"]
    energy = [float(torch.fft.rfft(x)[..., highs].abs().pow(2).sum()) for x in (silenced, clips)]
    assert energy[0] < 1e-4 * energy[1], energy
    torch.testing.assert_close(enveloped.encode(clips)[:, :plain.latent_channels], plain.encode(clips))


def test_multi_resolution_stft_loss():
    loss = MultiResolutionSTFTLoss()
    torch.manual_seed(0)
    audio = torch.randn(2, 2, 4096) * 0.1
    assert float(loss(audio, audio)) == pytest.approx(0.0, abs=1e-6)
    quieter, noisy = float(loss(audio * 0.5, audio)), float(loss(audio + 0.05 * torch.randn_like(audio), audio))
    assert quieter > 0.5 and 0 < noisy < quieter
    assert float(loss(torch.zeros(1, 2, 300), torch.randn(1, 2, 300))) > 0  # FFTs longer than the clip skipped
    with pytest.raises(ValueError):
        loss(audio, audio[..., :100])


def clip_batch(folder: Path) -> torch.Tensor:
    """Every clip of a WAV folder at the tiny models' length: the fixed set that trained codecs are judged on."""
    data = DrumDataset.from_folder(folder, length=LENGTH, progress=False)
    return torch.stack([data[i]["audio"] for i in range(len(data))])


def untrained_codec(manifest: dict) -> AudioAutoencoder:
    """The codec a run with ``manifest`` started from: the trainer's own seeded initial weights."""
    with seeded_init(CodecTrainConfig.seed):
        return build_codec(manifest["codec"]).eval()


def low_band_error(codec: AudioAutoencoder, audio: torch.Tensor) -> float:
    with torch.no_grad():
        rebuilt = codec.decode(codec.encode(audio))[..., :audio.shape[-1]]
        return float(low_band_waveform_loss(codec.pqmf, rebuilt, audio, 2))


@pytest.mark.numeric
def test_a_few_codec_training_steps_reduce_the_stft_loss_and_the_run_resumes(trained_codec, wav_folder):
    """Judged on every clip with the deterministic reconstruction loss, trained weights against the
    run's own initial ones (a training log's random crops move by tens of percent per step)."""
    manifest = read_manifest(trained_codec)
    assert manifest["kind"] == "codec" and manifest["training"]["steps"] == 30
    scale = manifest["codec"]["args"]["latent_scale"]
    assert 0 < scale != 1.0
    audio = clip_batch(wav_folder)
    fresh, trained = untrained_codec(manifest), load_model_codec(trained_codec)
    before, after = reconstruction_loss(fresh, audio), reconstruction_loss(trained, audio)
    assert after < 0.8 * before, (before, after)  # 0.58x with either kernel set (default, avx2)
    # the low bands' waveform is being learned: 0.79x (default and avx2)
    assert low_band_error(trained, audio) < 0.9 * low_band_error(fresh, audio)
    with torch.no_grad():
        assert 0.5 < float(trained.encode(audio).std()) < 2.0  # the stored scale normalises the latent
    run = trained_codec.parent
    with open(run / "log.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 30 and {"loss", "stft", "waveform"} <= set(rows[0])
    assert not [p for p in trained_codec.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.numeric
def test_a_codec_with_bypass_and_band_envelope_trains_and_its_card_names_them(tmp_path, wav_folder):
    """The shipped codec's network (bypass, envelope, band 0's top held): the decoder learns through
    the envelope's gain (the hold, a decoding rule, is off while training and kept in the manifest)."""
    from engine.train.publish import publish
    network = dict(TINY_CODEC, low_bypass=1, band_envelope=True, band0_ceiling_db=6.0)
    audio = clip_batch(wav_folder)
    # the property itself: the loss of the rebuilt audio reaches every decoder weight, through the
    # gain that rescales the decoder's bands to the latent's envelope, as finite non-zero gradients
    codec = untrained_codec({"codec": {"type": "autoencoder", "args": network}}).train()
    MultiResolutionSTFTLoss()(codec(audio)[0], audio).backward()
    for name, parameter in codec.decoder.named_parameters():
        assert parameter.grad is not None and torch.isfinite(parameter.grad).all(), name
        assert float(parameter.grad.abs().sum()) > 0, name
    # and its effect: 20 steps lower the deterministic reconstruction loss of every clip by far
    # more than any kernel set's rounding (1.99 -> 1.45 with avx2 kernels, 1.99 -> 1.42 with default ones)
    run = tmp_path / "run"
    folder = train_codec(CodecTrainConfig(data=str(wav_folder), run=str(run), length=LENGTH, steps=20, batch=4,
                                          segment=4096, lr=3e-3, warmup=1, ema_decay=0.0, log_every=1,
                                          save_every=10, device="cpu", network=network))
    trained = load_model_codec(folder)
    before, after = reconstruction_loss(untrained_codec(read_manifest(folder)), audio), reconstruction_loss(trained, audio)
    assert after < 0.85 * before, (before, after)
    assert trained.latent_channels == TINY_CODEC["latent_channels"] + 2 + TINY_CODEC["bands"] - 1
    card = (publish(run, tmp_path / "published") / "MODEL_CARD.md").read_text()
    assert "2 x 1 bypassed sub-bands" in card and "7 band-envelope channels" in card
    assert "held on decoding to at most 6 dB over its neighbours" in card


def test_a_decoder_trained_alone_leaves_the_latent_bit_for_bit(tmp_path, wav_folder, trained_codec):
    """``--decoder-only``: every latent model trained on a codec keeps working on its new decoder,
    because encoding gives exactly the same latent, at the same stored scale."""
    audio = clip_batch(wav_folder)
    before = load_model_codec(trained_codec)
    config = dict(data=str(wav_folder), length=LENGTH, steps=12, batch=4, segment=4096, lr=3e-3, warmup=1,
                  log_every=1, save_every=6, device="cpu", decoder_only=True)
    folder = train_codec(CodecTrainConfig(run=str(tmp_path / "run"), init=str(trained_codec), **config))
    after = load_model_codec(folder)
    with torch.no_grad():
        assert torch.equal(before.encode(audio), after.encode(audio))
    assert read_manifest(folder)["codec"]["args"]["latent_scale"] == read_manifest(trained_codec)["codec"]["args"]["latent_scale"]
    assert all(torch.equal(a, b) for a, b in zip(before.encoder.parameters(), after.encoder.parameters()))
    assert not all(torch.equal(a, b) for a, b in zip(before.decoder.parameters(), after.decoder.parameters()))
    assert read_manifest(folder)["training"]["sessions"][-1]["decoder_only"] is True
    from engine.train.publish import publish
    card = (publish(tmp_path / "run", tmp_path / "published") / "MODEL_CARD.md").read_text()
    assert "(the decoder alone: encoder and latent unchanged)" in card
    with pytest.raises(InvalidRequestError, match="--init"):  # a random encoder is not worth keeping
        train_codec(CodecTrainConfig(run=str(tmp_path / "fresh"), network=dict(TINY_CODEC), **config))


def test_the_low_band_waveform_loss_hears_phase_that_magnitudes_do_not():
    pqmf = AudioAutoencoder(**TINY_CODEC).pqmf
    t = torch.arange(4096) / RATE
    body = (0.5 * torch.sin(2 * math.pi * 60 * t) * torch.exp(-t / 0.05)).repeat(2, 2, 1)  # a kick's body
    stft = MultiResolutionSTFTLoss()
    assert float(low_band_waveform_loss(pqmf, body, body, 2)) == pytest.approx(0.0, abs=1e-6)
    assert float(low_band_waveform_loss(pqmf, torch.zeros_like(body), body, 2)) == pytest.approx(1.0)
    flipped = -body  # the same magnitudes everywhere, the opposite phase
    assert float(stft(flipped, body)) == pytest.approx(0.0, abs=1e-4)
    assert float(low_band_waveform_loss(pqmf, flipped, body, 2)) == pytest.approx(2.0, rel=1e-3)


def test_a_resumed_run_that_logs_new_losses_keeps_one_consistent_log(tmp_path):
    path = tmp_path / "log.csv"
    LossLog(path, ["step", "loss", "lr"]).write(step=1, loss=0.5, lr=1e-4)
    LossLog(path, ["step", "loss", "waveform", "lr"]).write(step=2, loss=0.4, waveform=0.3, lr=1e-4)
    with open(path) as handle:
        rows = list(csv.DictReader(handle))
    assert rows == [{"step": "1", "loss": "0.5", "waveform": "", "lr": "0.0001"},
                    {"step": "2", "loss": "0.4", "waveform": "0.3", "lr": "0.0001"}]


# ----------------------------------------------------------------------------- codec folders and Studio


def test_a_latent_model_loads_its_codec_from_the_folder_beside_it(latent_models):
    model = load_model(latent_models / "latent")
    assert isinstance(model.codec, AudioAutoencoder) and not model.codec.training
    reference = AudioAutoencoder(**TINY_CODEC)
    load_weights(latent_models / "codec", reference)
    assert all(torch.equal(a, b) for a, b in zip(model.codec.state_dict().values(), reference.state_dict().values()))
    names = find_models([latent_models])
    assert "latent" in names and "codec" not in names  # a codec is not something to generate from
    with pytest.raises(CheckpointError, match="codec folder"):
        load_model(latent_models / "codec")


def test_missing_or_mismatched_codec_folders_are_clear_errors(tmp_path, latent_models):
    manifest = latent_manifest(codec="no_such_codec")
    save_model(tmp_path / "orphan", build_network(manifest["network"]), manifest)
    with pytest.raises(CheckpointError, match="codec folder 'no_such_codec' not found"):
        load_model(tmp_path / "orphan")
    wide = codec_manifest()
    wide["codec"]["args"]["latent_channels"] = 16
    save_model(tmp_path / "codec", AudioAutoencoder(**wide["codec"]["args"]), wide)
    save_model(tmp_path / "latent", build_network(latent_manifest()["network"]), latent_manifest())
    with pytest.raises(CheckpointError, match="16 latent channels"):
        load_model(tmp_path / "latent")


def test_a_variable_length_sound_fades_out_over_its_last_fifth(latent_models):
    """A latent sound cut at the length asked for must not stop dead (a 1.5 s cymbal still rang
    at -38 dB RMS): its last fifth fades out; a waveform model's fixed end keeps its 5 ms."""
    from engine.studio import tail_fade_ms
    studio = Studio(roots=[latent_models], device="cpu")
    sound = studio.render(GenerationRequest(model="latent", steps=2, seed=3, length=0.18)).sounds[0].audio
    rms = lambda part: float(part.pow(2).mean().sqrt())  # noqa: E731
    body, end = sound[:, int(0.08 * RATE):int(0.12 * RATE)], sound[:, -int(0.01 * RATE):]
    assert rms(end) < 0.3 * rms(body), (rms(end), rms(body))  # a 5 ms fade left the last 10 ms at ~0.8
    assert tail_fade_ms({"kind": "latent"}, 1.5) == 250.0 and tail_fade_ms({"kind": "wave"}, None) == 5.0


def test_studio_generates_latent_sounds_of_the_requested_length_with_label_and_guidance(latent_models):
    studio = Studio(roots=[latent_models], device="cpu")
    assert studio.describe("latent")["variable_length"] is True
    request = GenerationRequest(model="latent", label="snare", guidance=3.0, steps=4, seed=5, count=2, length=0.1)
    events = list(studio.generate(request, preview_every=2))
    result = events[-1]
    assert [e.step for e in events[:-1]] == [1, 2, 3, 4] and events[1].preview.shape == (2, 4410)
    assert [s.audio.shape for s in result.sounds] == [(2, 4410), (2, 4410)]
    assert all(torch.isfinite(s.audio).all() for s in result.sounds)
    recipe = result.sounds[1].recipe
    assert recipe["length"] == 0.1 and recipe["seed"] == 6 and recipe["label"] == "snare" and recipe["guidance"] == 3.0
    again = studio.render(GenerationRequest.from_recipe(recipe))
    assert torch.allclose(again.sounds[0].audio, result.sounds[1].audio, atol=1e-5)  # the recipe regenerates it (batch of 1 vs 2)
    full = studio.render(GenerationRequest(model="latent", label="snare", steps=4, seed=5))
    assert full.sounds[0].audio.shape == (2, LENGTH) and full.sounds[0].recipe["length"] == pytest.approx(LENGTH / RATE)
    unguided = studio.render(request.with_(guidance=1.0, count=1))
    assert not torch.equal(unguided.sounds[0].audio, result.sounds[0].audio)
    with pytest.raises(InvalidRequestError, match="at most 0.19 s"):
        studio.render(request.with_(length=1.0))
    rounded = studio.render(request.with_(length=round(LENGTH / RATE, 2) + 0.005, count=1)).sounds[0]  # just over
    assert rounded.audio.shape == (2, LENGTH) and rounded.recipe["length"] == pytest.approx(LENGTH / RATE)
    with pytest.raises(InvalidRequestError, match="positive number of seconds"):
        GenerationRequest(model="latent", length=-1.0).validated()


def test_waveform_models_stay_fixed_length(tiny_models):
    studio = Studio(roots=[tiny_models], device="cpu")
    assert studio.describe("tiny")["variable_length"] is False
    result = studio.render(GenerationRequest(model="tiny-kick", steps=2, length=32768 / 44100))
    assert result.sounds[0].audio.shape == (2, 32768) and result.sounds[0].recipe["length"] is None
    with pytest.raises(InvalidRequestError, match="exactly 0.743 s"):
        studio.render(GenerationRequest(model="tiny-kick", steps=2, length=0.5))


def test_latent_variations_by_noise_and_by_inversion(latent_models, tmp_path):
    path = tmp_path / "hit.wav"
    sf.write(path, synthetic_hit("kick", 3), RATE)
    studio = Studio(roots=[latent_models], device="cpu")
    for variation, sampler in (("noise", "dpmpp_2m"), ("invert", "iadb"), ("noise", "iadb")):
        result = studio.render(GenerationRequest(model="latent", label="kick", steps=4, length=0.15, sampler=sampler,
                                                 reference=str(path), strength=0.3, variation=variation))
        sound = result.sounds[0]
        assert sound.audio.shape == (2, round(0.15 * RATE)) and torch.isfinite(sound.audio).all()
        assert sound.recipe["variation"] == variation


# ----------------------------------------------------------------------------- inversion


class GaussianBlend(torch.nn.Module):
    """The exact alpha-blending direction E[z - n | x_a] for data z ~ N(mean, std^2) per element."""

    def __init__(self, mean: float, std: float):
        super().__init__()
        self.mean, self.var = mean, std**2
        self.dummy = torch.nn.Parameter(torch.zeros(()))  # the samplers read the dtype from a parameter

    def forward(self, x: torch.Tensor, alpha: torch.Tensor, label=None) -> torch.Tensor:
        a = alpha.reshape(-1, *([1] * (x.ndim - 1)))
        gain = (a * self.var - (1 - a)) / ((1 - a) ** 2 + a**2 * self.var)
        return self.mean + gain * (x - a * self.mean)


@pytest.mark.numeric
@pytest.mark.parametrize("kind", ["analytic", "tiny_unet"])
def test_inversion_then_iadb_sampling_reconstructs_the_latent(kind):
    manifest = {"objective": "blend"}
    torch.manual_seed(0)
    if kind == "analytic":
        network = GaussianBlend(mean=0.3, std=0.5)
        latent = 0.3 + 0.5 * torch.randn(2, 8, 64)
    else:
        network = perturb_zero_init(build_network({"type": "unet1d", "args": dict(
            TINY_LATENT_NET, in_channels=8, num_labels=0)})).eval()
        latent = torch.randn(2, 8, 64)
    errors = {}
    for steps in (10, 100):
        for refine in (0, 2):
            noise = invert_latent(network, manifest, latent, steps=steps, refine=refine)
            rebuilt = sample_latent(network, manifest, noise, sampler="iadb", steps=steps)
            errors[steps, refine] = float((rebuilt - latent).norm() / latent.norm())
    # plain inversion is first order: ~10x smaller per 10x steps
    assert errors[100, 0] < 0.05 and errors[100, 0] < errors[10, 0] / 5, errors
    # fixed-point refinement solves each step's equation: far below first order at the same steps
    assert errors[100, 2] < errors[100, 0] / 10 and errors[10, 2] < errors[10, 0] / 3, errors
    if kind == "analytic":  # the inverted latent is a unit-noise draw again
        assert abs(float(noise.std()) - 1.0) < 0.1


# ----------------------------------------------------------------------------- latent training


@pytest.mark.numeric
def test_latent_training_lowers_the_blend_loss_and_resumes(tmp_path, wav_folder, trained_codec):
    run = tmp_path / "run"
    settings = dict(data=str(wav_folder), run=str(run), codec=str(trained_codec), length=LENGTH, batch=4, lr=3e-3,
                    warmup=1, ema_decay=0.5, log_every=1, save_every=10, render_every=0, augment=False,
                    device="cpu", network=dict(TINY_LATENT_NET, attention=[False, True]))
    folder = train_latent(LatentTrainConfig(steps=40, **settings))
    manifest = read_manifest(folder)
    assert manifest["objective"] == "blend" and manifest["kind"] == "latent"
    compand_spec = manifest["codec"].pop("compand")  # the default: a companded latent, fitted on the clips
    assert compand_spec["scale"] == LatentTrainConfig.compand and len(compand_spec["std"]) == 8
    assert manifest["codec"] == {"type": "autoencoder", "model": "codec"} and (run / "codec" / "manifest.json").is_file()
    assert manifest["network"]["args"]["attention"] == [False, False]  # always fully convolutional
    assert manifest["network"]["args"]["in_channels"] == 8 and {"kick", "hat"} <= set(manifest["labels"])
    assert manifest["network"]["args"]["input_skip"] is True  # a new model gets the input skip
    assert "guidance_weights" not in manifest["defaults"]  # its codec has no low bypass to spare
    model = load_model(folder)  # finds run/codec beside run/model
    assert isinstance(model.codec, CompandedCodec) and model.codec.hop == model.codec.codec.hop
    data = DrumDataset.from_folder(wav_folder, length=LENGTH, progress=False)
    with torch.no_grad():
        latent = model.codec.encode(torch.stack([data[i]["audio"] for i in range(len(data))]))
    fresh = build_network(manifest["network"]).eval()
    before, after = validation_loss(fresh, latent, data.labels), validation_loss(model.network, latent, data.labels)
    assert after < 0.9 * before, (before, after)
    train_latent(LatentTrainConfig(steps=2, **settings))
    assert read_manifest(folder)["training"]["steps"] == 42 and len(read_manifest(folder)["training"]["sessions"]) == 2
    result = Studio(roots=[run], device="cpu").render(GenerationRequest(model=str(folder), label="hat", steps=3,
                                                                        length=0.1))
    assert result.sounds[0].audio.shape == (2, 4410)
    tuned = train_latent(LatentTrainConfig(**dict(settings, run=str(tmp_path / "tune"), init=str(folder), steps=1)))
    assert read_manifest(tuned)["training"]["steps"] == 43 and (tmp_path / "tune" / "codec").is_dir()
    assert read_manifest(tuned)["codec"]["compand"] == compand_spec  # fine-tuning keeps the model's transform
    load_model(tuned)


def test_augmented_copies_are_encoded_once_copy_zero_plain_and_fixed_by_the_seed(wav_folder, trained_codec):
    codec = load_model_codec(trained_codec)
    data = DrumDataset.from_folder(wav_folder, length=LENGTH, progress=False)
    clips = len(data)
    cached, _, _ = encode_copies(codec, data, 3, seed=5, device=torch.device("cpu"), batch=3, progress=False)
    with torch.no_grad():
        plain = codec.encode(torch.stack([data[i]["audio"] for i in range(clips)]))
    assert cached.shape == (3 * clips, *plain.shape[1:])
    assert torch.allclose(cached[:clips], plain, atol=1e-5)  # copy 0 is the clip as it is
    for copy in (1, 2):  # every other copy is augmented: no clip of it equals the plain one
        rows = cached[copy * clips:(copy + 1) * clips]
        assert all(not torch.allclose(rows[i], plain[i], atol=1e-3) for i in range(clips))
    assert not torch.allclose(cached[clips:2 * clips], cached[2 * clips:], atol=1e-3)
    again, _, _ = encode_copies(codec, data, 3, seed=5, device=torch.device("cpu"), progress=False)
    assert torch.equal(again, cached)  # a resumed run trains on the same copies
    other, _, _ = encode_copies(codec, data, 2, seed=6, device=torch.device("cpu"), progress=False)
    assert not torch.allclose(other[clips:], cached[clips:2 * clips], atol=1e-3)


@pytest.mark.numeric
def test_latent_training_on_augmented_copies_lowers_the_loss_and_checks_its_setting(tmp_path, wav_folder,
                                                                                   trained_codec):
    settings = dict(data=str(wav_folder), codec=str(trained_codec), length=LENGTH, batch=4, lr=3e-3, warmup=1,
                    ema_decay=0.0, log_every=1, save_every=100, render_every=0, device="cpu",
                    network=dict(TINY_LATENT_NET))
    folder = train_latent(LatentTrainConfig(run=str(tmp_path / "run"), steps=40, augment_copies=3, **settings))
    model, data = load_model(folder), DrumDataset.from_folder(wav_folder, length=LENGTH, progress=False)
    with torch.no_grad():
        latent = model.codec.encode(torch.stack([data[i]["audio"] for i in range(len(data))]))
    fresh = build_network(read_manifest(folder)["network"]).eval()
    before, after = validation_loss(fresh, latent, data.labels), validation_loss(model.network, latent, data.labels)
    assert after < 0.9 * before, (before, after)  # it learned the clips through their augmented copies
    assert json.loads((folder.parent / "config.json").read_text())["augment_copies"] == 3
    for bad in (dict(augment_copies=2, augment=False), dict(augment_copies=-1)):
        with pytest.raises(InvalidRequestError, match="augment_copies"):
            train_latent(LatentTrainConfig(run=str(tmp_path / "bad"), steps=1, **dict(settings, **bad)))
        assert not (tmp_path / "bad").exists()  # refused before anything was written


def test_fine_tuning_moves_a_latent_model_onto_a_codec_with_more_channels(tmp_path, wav_folder, trained_codec):
    """--init with --codec: the stem and head grow, the old channels keep their weights and latent
    transform, the new ones are read from zero and fitted; the moved model trains and generates."""
    settings = dict(data=str(wav_folder), codec=str(trained_codec), length=LENGTH, batch=4, warmup=1,
                    log_every=1, save_every=10, render_every=0, augment=False, device="cpu",
                    network=dict(TINY_LATENT_NET))
    old = train_latent(LatentTrainConfig(run=str(tmp_path / "old"), steps=2, **settings))
    wider = tmp_path / "wider" / "codec"
    shutil.copytree(trained_codec, wider)
    manifest = read_manifest(wider)
    manifest["codec"]["args"]["band_envelope"] = True
    (wider / "manifest.json").write_text(json.dumps(manifest))
    moved = train_latent(LatentTrainConfig(**dict(settings, run=str(tmp_path / "moved"), init=str(old),
                                                  codec=str(wider), steps=0)))
    before, after = read_manifest(old), read_manifest(moved)
    extra = TINY_CODEC["bands"] - 1
    assert after["network"]["args"]["in_channels"] == before["network"]["args"]["in_channels"] + extra
    kept = len(before["codec"]["compand"]["offset"])
    assert after["codec"]["compand"]["offset"][:kept] == before["codec"]["compand"]["offset"]
    assert after["codec"]["compand"]["std"][:kept] == before["codec"]["compand"]["std"]
    assert len(after["codec"]["compand"]["std"]) == kept + extra == len(after["codec"]["compand"]["high"])
    assert after["codec"]["compand"]["scale"] == [before["codec"]["compand"]["scale"]] * kept + [1e-4] * extra
    old_model, new_model = load_model(old), load_model(moved)
    assert new_model.codec.latent_channels == kept + extra
    x = torch.randn(2, kept + extra, 16)
    alpha, labels = torch.tensor([0.3, 0.7]), torch.tensor([0, 1])
    with torch.no_grad():  # the zeroed new inputs: the old channels' prediction is unchanged
        torch.testing.assert_close(new_model.network(x, alpha, {"label": labels})[:, :kept],
                                   old_model.network(x[:, :kept], alpha, {"label": labels}))
    tuned = train_latent(LatentTrainConfig(**dict(settings, run=str(tmp_path / "moved"), steps=2)))
    assert read_manifest(tuned)["training"]["steps"] == before["training"]["steps"] + 2
    result = Studio(roots=[tmp_path / "moved"], device="cpu").render(
        GenerationRequest(model=str(tuned), label="kick", steps=2, length=0.1))
    assert torch.isfinite(torch.as_tensor(result.sounds[0].audio)).all()
    with pytest.raises(InvalidRequestError, match="wider latent only"):  # never onto a narrower one
        train_latent(LatentTrainConfig(**dict(settings, run=str(tmp_path / "back"), init=str(moved),
                                          codec=str(trained_codec), steps=0)))


@pytest.mark.numeric
def test_fine_tuning_adds_an_input_skip_that_starts_as_nothing_and_then_trains(tmp_path, wav_folder, trained_codec):
    """--input-skip with --init: the model gains a per-channel skip from its input to its output,
    predicted from the embedding; it starts at zero (same predictions) and training moves it."""
    settings = dict(data=str(wav_folder), codec=str(trained_codec), length=LENGTH, batch=4, warmup=1,
                    log_every=1, save_every=10, render_every=0, augment=False, device="cpu",
                    network=dict(TINY_LATENT_NET))
    old = train_latent(LatentTrainConfig(run=str(tmp_path / "old"), steps=2, input_skip=False, **settings))
    assert load_model(old).network.input_skip is None
    manifest = read_manifest(old)  # as saved before per-channel ranges: fine-tuning measures them
    manifest["codec"]["compand"] = {k: v for k, v in manifest["codec"]["compand"].items() if k not in ("low", "high")}
    (old / "manifest.json").write_text(json.dumps(manifest))
    added = train_latent(LatentTrainConfig(**dict(settings, codec=None, run=str(tmp_path / "skip"), init=str(old),
                                                  input_skip=True, steps=0)))
    assert read_manifest(added)["network"]["args"]["input_skip"] is True
    ranges = read_manifest(added)["codec"]["compand"]
    assert len(ranges["low"]) == len(ranges["high"]) == len(ranges["std"])
    old_model, new_model = load_model(old), load_model(added)
    x = torch.randn(2, old_model.codec.latent_channels, 16)
    alpha, labels = torch.tensor([0.2, 0.9]), torch.tensor([0, 1])
    with torch.no_grad():
        torch.testing.assert_close(new_model.network(x, alpha, {"label": labels}), old_model.network(x, alpha, {"label": labels}))
    trained = train_latent(LatentTrainConfig(**dict(settings, codec=None, run=str(tmp_path / "skip"), steps=3,
                                                     balance=1.0)))
    from engine.train.publish import publish
    card = (publish(tmp_path / "skip", tmp_path / "published") / "MODEL_CARD.md").read_text()
    assert "without augmentation" in card and "the studio names it `published`" in card  # augment=False run
    assert read_manifest(tmp_path / "published")["name"] == "published"  # a published model is its folder's name
    assert read_manifest(tmp_path / "published")["defaults"]["sampler"] == "euler_a"  # new latent models' default
    published = publish(tmp_path / "skip", tmp_path / "published", defaults={"sampler": "iadb", "guidance": 1.5,
                                                                              "variety": 0.25})
    assert read_manifest(published)["defaults"] == {"sampler": "iadb", "steps": 16, "guidance": 1.5, "variety": 0.25}
    assert "'sampler': 'iadb'" in (published / "MODEL_CARD.md").read_text()
    assert read_manifest(tmp_path / "skip" / "model")["defaults"]["sampler"] == "euler_a"  # the run is untouched
    per_label = publish(tmp_path / "skip", tmp_path / "published", defaults={"variety": {"kick": 0.5}})
    assert read_manifest(per_label)["defaults"]["variety"] == {"kick": 0.5}
    kick = {"kick": {"sampler": "dpmpp_2m", "steps": 12, "guidance": 6.5}}
    per_label = publish(tmp_path / "skip", tmp_path / "published", defaults={"per_label": kick})
    assert read_manifest(per_label)["defaults"]["per_label"] == kick
    curves = {"per_label": {"kick": {"variety": 0.0}}}  # a kick with a drawn curve guided at every noise level
    with_curves = publish(tmp_path / "skip", tmp_path / "published", defaults={"with_curves": curves})
    assert read_manifest(with_curves)["defaults"]["with_curves"] == curves
    for bad in ({"with_curves": 3}, {"with_curves": {"variety": 2.0}}, {"with_curves": {"per_label": {"tuba": {}}}},
                {"with_curves": {"with_curves": {}}}, {"with_curves": {"guidance_weights": [0, 1]}},
                {"with_curves": {"per_label": {"kick": {"sampler": "nope"}}}}, {"sampler": "nope"}, {"steps": 0}, {"guidance": 99.0}, {"seed": 1}, {"variety": 3.0},
                {"variety": {"tuba": 0.5}}, {"variety": {"kick": 2.0}}, {"per_label": {"tuba": {"steps": 8}}},
                {"per_label": {"kick": {"seed": 1}}}, {"per_label": {"kick": {"sampler": "nope"}}},
                {"per_label": {"kick": {"guidance": -1.0}}}, {"per_label": {"kick": 3}}, {"per_label": [1]}):
        with pytest.raises(InvalidRequestError):
            publish(tmp_path / "skip", tmp_path / "refused", defaults=bad)
    assert not (tmp_path / "refused").exists()
    skip = load_model(trained).network.input_skip
    assert float(skip.weight.detach().abs().sum() + skip.bias.detach().abs().sum()) > 0
    fresh = build_network({"type": "unet1d", "args": dict(TINY_LATENT_NET, in_channels=8, num_labels=2)})
    assert fresh.input_skip is None  # off unless asked for: older manifests build the network they were saved with


@pytest.mark.slow
def test_cli_trains_a_codec_and_a_latent_model_then_generates_a_length(tmp_path):
    wavs = make_wav_folder(tmp_path / "wavs", per_class=2)
    codec = run_cli("train", "codec", "--data", str(wavs), "--run-dir", str(tmp_path / "codec"), "--steps", "2",
                    "--batch", "2", "--length", str(LENGTH), "--segment", "2048", "--save-every", "1",
                    "--device", "cpu", "--network", '{"bands": 8, "widths": [16, 16], "factors": [4], '
                    '"latent_channels": 8, "units": 1, "kernel": 5}')
    assert codec.returncode == 0, codec.stderr[-2000:]
    codec_folder = Path(codec.stdout.strip().splitlines()[-1])
    assert read_manifest(codec_folder)["training"]["steps"] == 2
    latent = run_cli("train", "latent", "--data", str(wavs), "--run-dir", str(tmp_path / "latent"), "--codec",
                     str(codec_folder), "--steps", "2", "--batch", "2", "--length", str(LENGTH), "--render-every", "0",
                     "--no-augment", "--compand", "0", "--device", "cpu", "--network", '{"widths": [16, 32], "blocks": [1, 1], "factors": [2], '
                     '"attention": [false, false], "heads": 2, "emb_dim": 32}')
    assert latent.returncode == 0, latent.stderr[-2000:]
    model = Path(latent.stdout.strip().splitlines()[-1])
    assert json.loads((tmp_path / "latent" / "config.json").read_text())["augment"] is False  # --no-augment reached it
    assert "compand" not in read_manifest(model)["codec"]  # --compand 0: the plain latent
    generate = run_cli("generate", "--model", str(model), "--label", "kick", "--guidance", "2", "--steps", "3",
                       "--length", "0.12", "--sampler", "iadb", "--out", str(tmp_path / "out"))
    assert generate.returncode == 0, generate.stderr[-2000:]
    wav = Path(generate.stdout.strip())
    assert sf.info(wav).frames == round(0.12 * RATE) and read_recipe(wav)["length"] == 0.12
    too_long = run_cli("generate", "--model", str(model), "--length", "5", "--out", str(tmp_path / "out"))
    assert too_long.returncode == 2 and "length must be at most" in too_long.stderr


# ----------------------------------------------------------------------------- optional EnCodec


def test_encodec_needs_transformers_and_says_so(monkeypatch):
    monkeypatch.setitem(sys.modules, "transformers", None)  # as if it were not installed
    with pytest.raises(StudioError, match="pip install transformers"):
        build_codec({"type": "encodec", "args": {"config": TINY_ENCODEC}})


@pytest.mark.slow
def test_encodec_backend_plumbing_with_a_tiny_random_model(tmp_path, wav_folder):
    pytest.importorskip("transformers", reason="transformers is optional (pip install transformers)")
    spec = {"type": "encodec", "args": {"config": TINY_ENCODEC, "pretrained": None}}
    codec = build_codec(spec)
    audio = torch.randn(2, 2, 4410) * 0.1
    latent = codec.encode(audio)
    assert latent.shape == (2, 2 * 16, codec.latent_length(4410)) and latent.shape[-1] % 16 == 0
    assert codec.decode(latent).shape[:2] == (2, 2) and codec.decode(latent).shape[-1] >= 4410
    assert torch.equal(build_codec(spec).encode(audio), latent)  # seeded random weights: same codec every load
    quantized = build_codec({"type": "encodec", "args": dict(spec["args"], latent="quantized", bandwidth=15.0)})
    assert quantized.encode(audio).shape == latent.shape
    folder = train_latent(LatentTrainConfig(
        data=str(wav_folder), run=str(tmp_path / "run"), codec="encodec", codec_args=spec["args"], length=LENGTH,
        steps=2, batch=2, log_every=1, render_every=0, augment=False, device="cpu",
        network=dict(TINY_LATENT_NET)))
    manifest = read_manifest(folder)
    assert manifest["codec"]["type"] == "encodec" and manifest["codec"]["args"]["latent_scale"] != 1.0
    result = Studio(roots=[tmp_path], device="cpu").render(GenerationRequest(model=str(folder), label="kick",
                                                                             steps=2, length=0.1))
    assert result.sounds[0].audio.shape == (2, 4410)


# ----------------------------------------------------------------------------- experiment scripts


@pytest.mark.numeric
def test_the_experiment_commands_of_docs_latent_run_on_a_tiny_model(latent_models, wav_folder, capsys):
    from engine.eval.latent_experiments import main

    def rows(*argv: str) -> list[list[str]]:
        assert main(list(argv)) == 0
        return list(csv.reader(capsys.readouterr().out.splitlines()))

    model = str(latent_models / "latent")
    loss = rows("val-loss", "--models", model, "--data", str(wav_folder), "--clips", "4")
    assert loss[0] == ["model", "parameters", "steps_trained", "val_loss",
                       "val_loss_learned", "val_loss_bypass", "val_loss_envelope"]
    assert float(loss[1][3]) > 0 and float(loss[1][4]) > 0  # the tiny codec has learned channels at least
    quality = rows("steps", "--model", model, "--steps", "2", "4", "--samplers", "iadb", "--count", "4",
                   "--length", "0.1", "--data", str(wav_folder), "--label", "kick")
    assert [r[:2] for r in quality[1:]] == [["iadb", "2"], ["iadb", "4"]] and float(quality[1][3]) >= 0
    smooth = rows("interpolation", "--model", model, "--pairs", "1", "--points", "3", "--steps", "2")
    assert len(smooth) == 2 and float(smooth[1][3]) >= 1.0
    inverted = rows("inversion", "--model", model, "--data", str(wav_folder), "--clips", "2", "--steps", "5", "50",
                    "--refine", "0", "2")
    assert inverted[0][:3] == ["steps", "refine", "evaluations"]
    errors = {(int(r[0]), int(r[1])): float(r[3]) for r in inverted[1:]}
    assert len(errors) == 4 and errors[50, 0] < errors[5, 0] and errors[50, 2] < errors[50, 0]


# ----------------------------------------------------------------------------- codec evaluation, publishing, ids


def test_codec_evaluation_compares_reconstructions_with_the_real_floor(trained_codec, tmp_path, monkeypatch):
    from engine.eval import codec as codec_eval
    from tests.test_eval import _fake_dataset
    data = tmp_path / "data"
    _fake_dataset(data)
    results = codec_eval.evaluate_codec(trained_codec, data)
    assert results["clips_train"] == 18 and results["clips_holdout"] == 9
    assert all(math.isfinite(v) for v in results.values())
    assert results["mrstft_holdout"] > 0 and results["frechet_ratio_train"] > 0
    # a perfect codec scores the floor exactly: ratio 1, no spectral distance
    monkeypatch.setattr(codec_eval, "reconstruct", lambda codec, audio: audio.float())
    perfect = codec_eval.evaluate_codec(trained_codec, data)
    assert perfect["frechet_ratio_train"] == pytest.approx(1.0) and perfect["frechet_ratio_holdout"] == pytest.approx(1.0)
    assert perfect["mrstft_holdout"] == pytest.approx(0.0, abs=1e-6)
    assert perfect["feature_distance_holdout"] == pytest.approx(0.0, abs=1e-6)
    assert results["feature_distance_holdout"] > 0.1
    assert results["kick.feature_distance_holdout"] > 0 and "hat.feature_distance_holdout" in results
    assert codec_eval.main(["--codec", str(trained_codec), "--data", str(tmp_path / "missing")]) == 2
    # the classifier's recall per category: a perfect codec's reconstructions score as the originals
    classified = codec_eval.evaluate_codec(trained_codec, data, classify=True, cache_dir=None)
    recalls = [key for key in classified if key.endswith(".recall_holdout")]
    assert {key.split(".")[0] for key in recalls} >= {"kick", "hat"}
    assert all(classified[key + "_rebuilt"] == pytest.approx(classified[key], nan_ok=True) for key in recalls)


def make_bypass_models(root: Path, weights: dict | None) -> Path:
    """root/codec with a low bypass (8 learned + 2 bypass channels) + root/model using it, whose
    defaults carry ``weights`` as its guidance weights."""
    torch.manual_seed(0)
    codec = codec_manifest()
    codec["codec"]["args"]["low_bypass"] = 1
    save_model(root / "codec", AudioAutoencoder(**codec["codec"]["args"]), codec)
    manifest = latent_manifest()
    manifest["network"]["args"]["in_channels"] = 10
    if weights is not None:
        manifest["defaults"]["guidance_weights"] = weights
    save_model(root / "model", perturb_zero_init(build_network(manifest["network"])), manifest)
    return root / "model"


def test_guidance_weights_spare_the_low_bypass_and_reach_the_recipe(tmp_path):
    """Per channel group: a weight of 0 keeps the bypassed low sub-bands at the plain conditional
    prediction while the learned channels take the whole guidance (docs/latent.md, session 8)."""
    model = load_model(make_bypass_models(tmp_path, {"bypass": 0.0}))
    assert model.guidance_weights.tolist() == [1.0] * 8 + [0.0] * 2
    noise = torch.randn(2, 10, 16, generator=torch.Generator().manual_seed(0))

    def one_step(guidance: float, weights=None) -> torch.Tensor:  # one iadb step: channels stay apart
        return sample_latent(model.network, model.manifest, noise, sampler="iadb", steps=1, guidance=guidance,
                             cond={"label": torch.ones(2, dtype=torch.long)}, guidance_weights=weights)

    spared, guided, plain = one_step(4.0, model.guidance_weights), one_step(4.0), one_step(1.0)
    assert not torch.allclose(guided, plain, atol=1e-4)
    assert torch.allclose(spared[:, :8], guided[:, :8], atol=1e-5) and torch.allclose(spared[:, 8:], plain[:, 8:], atol=1e-5)
    assert torch.allclose(one_step(4.0, torch.ones(10)), guided, atol=1e-5)
    sound = Studio(roots=[tmp_path], device="cpu").render(
        GenerationRequest(model=str(tmp_path / "model"), label="snare", guidance=4.0, steps=3, length=0.05)).sounds[0]
    assert sound.recipe["guidance_weights"] == {"bypass": 0.0} and torch.isfinite(sound.audio).all()
    for bad, message in (({"treble": 0.0}, "channel groups"), ({"bypass": 2.0}, r"in \[0, 1\]")):
        make_bypass_models(tmp_path / str(len(message)), bad)
        with pytest.raises(CheckpointError, match=message):
            load_model(tmp_path / str(len(message)) / "model")


def test_publish_sets_guidance_weights_only_where_the_codec_has_those_groups(tmp_path, wav_folder):
    from engine.train.publish import publish
    run = tmp_path / "run"
    make_bypass_models(run, None)
    fresh = train_latent(LatentTrainConfig(data=str(wav_folder), run=str(tmp_path / "fresh"), codec=str(run / "codec"),
                                           length=LENGTH, steps=1, batch=2, augment=False, render_every=0,
                                           device="cpu", network=dict(TINY_LATENT_NET)))
    assert read_manifest(fresh)["defaults"]["guidance_weights"] == {"bypass": 0.0}  # a new model on a bypass codec
    folder = publish(run, tmp_path / "shipped", defaults={"guidance": 3.0, "guidance_weights": {"bypass": 0}})
    assert read_manifest(folder)["defaults"]["guidance_weights"] == {"bypass": 0}
    assert "'guidance_weights': {'bypass': 0}" in (folder / "MODEL_CARD.md").read_text()
    with pytest.raises(CheckpointError, match="channel groups"):
        publish(run, tmp_path / "refused", defaults={"guidance_weights": {"envelope": 0}})  # no envelope channels
    with pytest.raises(InvalidRequestError, match="JSON object"):
        publish(run, tmp_path / "refused", defaults={"guidance_weights": [0, 1]})
    assert not (tmp_path / "refused").exists()


def test_a_codec_run_is_published_with_a_codec_card(trained_codec, tmp_path):
    from engine.train.publish import publish
    figures = tmp_path / "eval.txt"
    figures.write_text("frechet_ratio_holdout: 1.1\n")
    folder = publish(trained_codec.parent, tmp_path / "codec", figures)
    card = (folder / "MODEL_CARD.md").read_text()
    assert "Kind: `codec`" in card and "latent frames per second" in card
    assert "Measured with `python -m engine.eval.codec`" in card and "frechet_ratio_holdout: 1.1" in card
    assert (folder / "training_log.csv").is_file()
    assert read_manifest(folder) == read_manifest(trained_codec)


def test_a_latent_models_recipe_id_names_its_codec_weights_too(latent_models):
    from engine.models import checkpoint_id
    model = load_model(latent_models / "latent")
    assert model.checkpoint_id == f"{checkpoint_id(latent_models / 'latent')}+{checkpoint_id(latent_models / 'codec')}"


@pytest.mark.slow
@pytest.mark.numeric
def test_a_latent_model_trained_with_controls_follows_a_gate_and_the_studio_takes_curves(tmp_path, wav_folder,
                                                                                        trained_codec):
    """Controls end to end on a tiny model: declared in the manifest, trained (their projections
    start at zero), and followed. Asked for the loudness and onsets of gated clips (cut at 40 ms,
    a shape neither the label nor the time can tell), the sampled latents are quieter after the
    gate than the same seeds sampled without curves. The Studio takes a drawn curve, records it,
    and the control guidance changes the sound."""
    from engine import pipeline
    from engine.conditions import Conditions, curves_from_sound
    settings = dict(data=str(wav_folder), run=str(tmp_path / "run"), codec=str(trained_codec), length=LENGTH,
                    batch=8, lr=3e-3, warmup=1, ema_decay=0.5, log_every=50, save_every=500, render_every=0,
                    augment_copies=4, device="cpu", network=dict(TINY_LATENT_NET), controls=True, short_crops=0.0)
    folder = train_latent(LatentTrainConfig(steps=400, **settings))
    manifest = read_manifest(folder)
    assert [c["name"] for c in manifest["conditions"]] == ["label", "rms", "onsets"]
    assert manifest["network"]["args"]["controls"] == ["rms", "onsets"]
    # the quiet peaks of its own clips, per category: a curve under them is lifted for the network
    floors = manifest["conditions"][1]["level_floor_db"]
    assert set(floors) == {"", "kick", "hat"} and all(-40.0 < db < 0.0 for db in floors.values())
    model = load_model(folder)
    data = DrumDataset.from_folder(wav_folder, length=LENGTH, progress=False)
    gated = torch.stack([data[i]["audio"] for i in range(len(data))]) * (torch.arange(LENGTH) < int(0.04 * RATE))
    frames, hop = model.codec.latent_length(LENGTH), model.codec.hop
    cut = int(0.04 * RATE / hop) + 4
    after = {True: [], False: []}  # latent energy after the gate / before it, per clip
    for i in range(len(data)):
        rms, onsets = curves_from_sound(gated[i], RATE, hop)
        noise = torch.randn(1, model.codec.latent_channels, frames, generator=torch.Generator().manual_seed(i))
        for use in (True, False):
            asked = Conditions(label=int(data.labels[i]), rms=rms if use else None, onsets=onsets if use else None)
            energy = pipeline.sample(model, noise, asked, sampler="iadb", steps=8).pow(2).mean(1)[0]
            after[use].append(float(energy[cut:].mean() / energy[:cut - 4].mean()))
    followed, free = torch.tensor(after[True]).median(), torch.tensor(after[False]).median()
    assert followed < 0.8 * free, (after[True], after[False])
    studio = Studio(roots=[tmp_path / "run"], device="cpu")
    assert studio.describe(str(folder))["controls"] == ["rms", "onsets"]
    request = GenerationRequest(model=str(folder), label="hat", steps=3, length=0.15, rms=((0, -6), (100, -40)),
                                onsets=(0,))
    loose, strict = studio.render(request.with_(control_guidance=1.0)), studio.render(request.with_(control_guidance=3.0))
    assert loose.sounds[0].recipe["rms"] == [[0.0, -6.0], [100.0, -40.0]] and loose.sounds[0].recipe["onsets"] == [0.0]
    assert strict.sounds[0].recipe["control_guidance"] == 3.0
    assert not torch.allclose(loose.sounds[0].audio, strict.sounds[0].audio, atol=1e-5)
    with pytest.raises(InvalidRequestError, match="past the end"):
        studio.render(request.with_(onsets=(0, 400)))



def test_a_model_card_says_whether_the_model_follows_text():
    """The card's limits were written for the first models and said "it does not follow text" of
    the prompted ones too (session 34)."""
    from engine.train.publish import model_card
    prompted, plain = read_manifest("checkpoints/latent-fast"), read_manifest("checkpoints/latent-drums")
    assert "does not follow text" not in model_card(prompted, "", None, "x")
    assert "follows text only as far as its training captions" in model_card(prompted, "", None, "x")
    assert "it does not follow text" in model_card(plain, "", None, "x")
