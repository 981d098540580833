"""Networks and the PQMF codec: reconstruction, shapes, conditioning, manifest-driven building."""

import math

import pytest
import torch

from engine.errors import CheckpointError
from engine.nets import build_codec, build_network
from engine.nets.envelope import interpolation_matrix, knot_frames
from engine.nets.pqmf import PQMF, BandCodec, fit_envelope_prior, measure_band_scale
from engine.nets.unet1d import UNet1d
from tests.helpers import perturb_zero_init

pytestmark = pytest.mark.numeric  # figures that CI checks again under another kernel set


def snr_db(reference: torch.Tensor, estimate: torch.Tensor, margin: int = 1024) -> float:
    error = (estimate - reference)[..., margin:-margin]
    return float(10 * torch.log10(reference[..., margin:-margin].pow(2).mean() / error.pow(2).mean()))


@pytest.mark.parametrize("bands,taps,floor_db", [(32, 8, 40.0), (16, 16, 60.0)])
def test_pqmf_reconstructs_noise_and_a_sweep(bands, taps, floor_db):
    pqmf = PQMF(bands, taps)
    noise = torch.randn(2, 2, 32768, generator=torch.Generator().manual_seed(0)) * 0.3
    t = torch.arange(32768) / 44100
    sweep = torch.sin(2 * math.pi * (50 * t + 0.5 * 20000 / 0.74 * t**2))[None, None].repeat(1, 2, 1) * 0.5
    for signal in (noise, sweep):
        banded = pqmf.analysis(signal)
        assert banded.shape == (signal.shape[0], 2 * bands, 32768 // bands)
        assert snr_db(signal, pqmf.synthesis(banded)) > floor_db


def test_pqmf_separates_frequencies_into_bands():
    pqmf = PQMF(32, 8)
    t = torch.arange(32768) / 44100
    tone = torch.sin(2 * math.pi * 11025 * t)[None, None]  # the middle of the spectrum
    energy = pqmf.analysis(tone).pow(2).mean(dim=-1)[0]
    assert int(energy.argmax()) in (15, 16)  # band k covers [k, k+1] * 22050 / 32 Hz
    assert energy[:8].sum() < 1e-3 * energy.sum()


def test_band_codec_normalises_and_round_trips():
    clips = torch.randn(8, 2, 32768) * torch.linspace(1, 0.01, 32768)
    scale = measure_band_scale(clips)
    codec = BandCodec(band_scale=scale)
    latent = codec.encode(clips)
    assert latent.shape == (8, 64, 1024)
    assert torch.allclose(latent.std(dim=(0, 2)), torch.ones(64), atol=0.05)
    assert snr_db(clips, codec.decode(latent)) > 40
    with pytest.raises(ValueError):
        BandCodec(band_scale=[1.0] * 10)


def test_envelope_knots_are_dense_at_the_attack_and_interpolate_exactly():
    knots = knot_frames(1024)
    assert knots[:8] == list(range(8)) and knots[-1] == 1023 and len(knots) < 40
    assert all(b > a for a, b in zip(knots, knots[1:]))
    weights = interpolation_matrix(knots, 1100)  # longer than the knots: held at the last value
    assert torch.allclose(weights.sum(dim=0), torch.ones(1100))
    values = torch.randn(len(knots))
    assert torch.allclose((values @ weights)[knots], values, atol=1e-6)
    assert torch.allclose((values @ weights)[1023:], values[-1].expand(77))


def _decaying_clips(count: int, decay_s: float, seed: int) -> torch.Tensor:
    """Noise bursts with exponential decays around ``decay_s``: a category with a typical envelope."""
    generator = torch.Generator().manual_seed(seed)
    t = torch.arange(32768) / 44100
    decays = decay_s * (0.7 + 0.6 * torch.rand(count, 1, 1, generator=generator))
    return 0.5 * torch.randn(count, 2, 32768, generator=generator) * torch.exp(-t / decays)


def tail_drop_db(audio: torch.Tensor) -> float:
    """First 10 ms against 300-700 ms, in dB."""
    return float(10 * torch.log10(audio[..., :441].pow(2).mean() / audio[..., 13230:30870].pow(2).mean()))


def test_per_clip_envelopes_whiten_every_clip_and_a_prior_draws_new_ones_from_the_noise():
    short, long = _decaying_clips(12, 0.08, 0), _decaying_clips(12, 0.3, 1)
    clips, labels = torch.cat([short, long]), torch.tensor([0] * 12 + [1] * 12)
    scale = measure_band_scale(clips)
    prior = {"knots": knot_frames(1024), "rows": 3, "clusters": 2, "components": 3}
    codec = BandCodec(band_scale=scale, envelope_prior=prior)
    assert codec.stored_with_model
    fit_envelope_prior(codec, clips, labels)
    own = codec.envelope_for(audio=clips)  # measured: each clip by its own envelope
    latent = codec.encode(clips, own)
    per_clip_power = latent.pow(2).mean(dim=(1, 2))
    assert float(per_clip_power.min()) > 0.3 and float(per_clip_power.max()) < 2.0  # homogeneous, unlike per label
    assert snr_db(clips, codec.decode(latent, own)) > 40
    noise = torch.randn(6, 64, 1024, generator=torch.Generator().manual_seed(3))
    drawn = codec.envelope_for(torch.tensor([0, 0, 0, 1, 1, 1]), noise=noise)
    assert drawn.shape == (6, 32, len(prior["knots"]))
    assert not torch.allclose(drawn[0], drawn[1])  # another noise, another envelope
    assert torch.equal(drawn[:1], codec.envelope_for(0, noise=noise[:1]))  # each sound's own noise decides it
    sounds = codec.decode(noise, drawn)
    assert min(tail_drop_db(s) for s in sounds[:3]) > 30 and max(tail_drop_db(s) for s in sounds[3:]) < 20
    assert codec.envelope_for(torch.tensor([0])).shape == (1, 32, len(prior["knots"]))  # no noise: a cluster's mean
    assert torch.allclose(codec.prior_weights.sum(dim=1), torch.ones(3))
    assert torch.equal(codec.envelope_for(None, noise=noise), codec.envelope_for(2, noise=noise))  # None = "no label"
    with pytest.raises(ValueError, match="labels"):
        codec.envelope_for(torch.tensor([0, 3]), noise=noise[:2])
    with pytest.raises(ValueError, match="prior_mean"):
        codec.set_prior(torch.zeros(1), codec.prior_basis, codec.prior_weights)


def test_the_envelope_prior_is_saved_in_the_weights_file_and_loaded_with_the_model(tmp_path):
    from engine.models import load_model, save_model
    clips, labels = torch.cat([_decaying_clips(4, 0.08, 0), _decaying_clips(4, 0.3, 1)]), torch.tensor([0] * 4 + [1] * 4)
    scale = measure_band_scale(clips)
    spec = {"type": "pqmf", "args": {"band_scale": scale, "envelope_prior": {"knots": knot_frames(1024), "rows": 3,
                                                                             "clusters": 2, "components": 2}}}
    codec = build_codec(spec)
    fit_envelope_prior(codec, clips, labels)
    network = UNet1d(in_channels=64, widths=(8, 8), blocks=(1, 1), factors=(4,), attention=(False, False),
                     heads=1, emb_dim=16, num_labels=2)
    manifest = {"format": 1, "name": "m", "kind": "wave", "objective": "v_cosine", "sample_rate": 44100,
                "length": 32768, "channels": 2, "labels": ["a", "b"], "codec": spec,
                "network": {"type": "unet1d", "args": {"in_channels": 64, "widths": [8, 8], "blocks": [1, 1],
                                                       "factors": [4], "attention": [False, False], "heads": 1,
                                                       "emb_dim": 16, "num_labels": 2}}}
    save_model(tmp_path / "m", network, manifest, codec=codec)
    loaded = load_model(tmp_path / "m")
    assert torch.equal(loaded.codec.prior_mean, codec.prior_mean) and torch.equal(loaded.codec.prior_basis, codec.prior_basis)
    with pytest.raises(CheckpointError):  # the prior is part of the model: a weights file without it is refused
        save_model(tmp_path / "bare", network, manifest)
        load_model(tmp_path / "bare")


def test_unet_shapes_labels_and_identity_start():
    net = UNet1d(in_channels=64, widths=(16, 32, 32), blocks=(1, 1, 1), factors=(4, 4), heads=2, emb_dim=32,
                 num_labels=3)
    x, t = torch.randn(2, 64, 256), torch.rand(2)
    out = net(x, t, {"label": torch.tensor([0, 3])})
    assert out.shape == x.shape
    assert torch.count_nonzero(out) == 0  # zero-initialised head: a fresh network predicts 0
    perturb_zero_init(net, std=0.1)
    with torch.no_grad():
        assert not torch.allclose(net(x, t, {"label": torch.tensor([0, 0])}), net(x, t, {"label": torch.tensor([1, 1])}))
        assert torch.allclose(net(x, t, None), net(x, t, {"label": torch.tensor([3, 3])}))  # none = "no label"
    with pytest.raises(ValueError, match="multiple"):
        net(torch.randn(1, 64, 250), torch.rand(1))


def test_unet_control_curves_start_silent_then_steer_every_level():
    """Controls enter through zero-initialised projections: a model that gains them predicts
    exactly what it did until trained; once their weights move, a curve changes the output, and
    an absent curve is the same as an all-zero one (value and mask 0)."""
    args = dict(in_channels=8, widths=(16, 32, 32), blocks=(1, 1, 1), factors=(2, 2), attention=(False,) * 3,
                heads=2, emb_dim=32, num_labels=3)
    torch.manual_seed(0)
    plain = UNet1d(**args)
    perturb_zero_init(plain, std=0.1)
    controlled = UNet1d(**args, controls=("rms", "onsets"))
    missing, unexpected = controlled.load_state_dict(plain.state_dict(), strict=False)
    assert not unexpected and all(name.startswith(("control_down.", "control_up.")) for name in missing)
    x, t, label = torch.randn(2, 8, 64), torch.rand(2), {"label": torch.tensor([0, 1])}
    curve = torch.stack([torch.linspace(1, -1, 64), torch.ones(64)])[None].expand(2, -1, -1)
    with torch.no_grad():
        before = plain(x, t, label)
        assert torch.equal(controlled(x, t, {**label, "rms": curve}), before)
        perturb_zero_init(controlled, std=0.1)
        steered = controlled(x, t, {**label, "rms": curve})
        assert not torch.allclose(steered, controlled(x, t, label), atol=1e-4)
        assert torch.equal(controlled(x, t, label), controlled(x, t, {**label, "rms": torch.zeros(2, 2, 64)}))
        with pytest.raises(ValueError, match="frames"):
            controlled(x, t, {"rms": curve[..., :32]})


def test_networks_are_built_from_manifest_entries_alone():
    net = build_network({"type": "unet1d", "args": {"widths": [8, 16], "blocks": [1, 1], "factors": [2],
                                                    "attention": [False, True], "heads": 2, "emb_dim": 16}})
    assert isinstance(net, UNet1d)
    assert isinstance(build_codec({"type": "pqmf", "args": {"bands": 16}}), BandCodec)
    with pytest.raises(CheckpointError, match="unknown type"):
        build_network({"type": "transformer"})
    with pytest.raises(CheckpointError, match="arguments do not fit"):
        build_network({"type": "unet1d", "args": {"no_such_argument": 1}})


def test_time_position_features_let_the_network_tell_the_attack_from_the_tail():
    from engine.nets.unet1d import time_position_features

    features = time_position_features(1024, 44100 / 32, 32)
    assert features.shape == (1, 32, 1024) and torch.isfinite(features).all()
    # the same second maps to the same features whatever the clip length (variable-length models)
    assert torch.allclose(time_position_features(512, 44100 / 32, 32), features[..., :512])
    blind = UNet1d(in_channels=64, widths=(16, 32), blocks=(1, 1), factors=(4,), attention=(False, True), heads=2,
                   emb_dim=32)
    seeing = UNet1d(in_channels=64, widths=(16, 32), blocks=(1, 1), factors=(4,), attention=(False, True), heads=2,
                    emb_dim=32, pos_dim=16, frame_rate=44100 / 32)
    for net in (blind, seeing):
        perturb_zero_init(net, std=0.1)
    constant = torch.ones(1, 64, 256)  # no cue in the input about where a frame sits
    with torch.no_grad():
        blind_out, seeing_out = blind(constant, torch.tensor([0.5])), seeing(constant, torch.tensor([0.5]))
    # away from the zero-padding at the edges (the only position cue without features), a blind
    # network is shift-invariant by its hop (4 frames): it cannot tell frame 100 from frame 104
    shift = lambda out: (out[..., 64:-68] - out[..., 68:-64]).abs().max()  # noqa: E731
    assert shift(blind_out) < 1e-4
    assert shift(seeing_out) > 1e-3
