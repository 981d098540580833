"""Refitting a waveform model's envelope prior: a new prior shape, the same network, a model that renders."""

import pytest
import torch

from engine.errors import InvalidRequestError
from engine.models import load_model, read_manifest, read_weights
from engine.request import GenerationRequest
from engine.studio import Studio
from engine.train.prior import PriorConfig, refit_prior
from tests.helpers import make_tiny_model


def test_a_refitted_prior_keeps_the_network_and_draws_from_its_new_shape(tmp_path, tiny_models, wav_folder):
    from tests.test_cli import run_cli

    done = run_cli("train", "prior", "--init", str(tiny_models / "tiny"), "--data", str(wav_folder), "--run-dir",
                   str(tmp_path / "run"), "--envelope-clusters", "2", "--envelope-components", "3")
    assert done.returncode == 0, done.stderr
    folder = tmp_path / "run" / "model"
    manifest = read_manifest(folder)
    prior = manifest["codec"]["args"]["envelope_prior"]
    assert (prior["clusters"], prior["components"]) == (2, 3)
    assert "envelope prior refitted" in manifest["training"]["sessions"][-1]["note"]
    before, after = read_weights(tiny_models / "tiny"), read_weights(folder)
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    codec = load_model(folder).codec
    assert codec.prior_basis.shape[1:3] == (2, 3) and float(codec.prior_basis.abs().sum()) > 0
    sound = Studio(roots=[tmp_path / "run"]).render(GenerationRequest(model=str(folder), label="kick", steps=2))
    assert sound.sounds[0].audio.shape == (2, 32768)


def test_refitting_refuses_a_model_without_a_prior_and_a_shapeless_one(tmp_path, tiny_models, wav_folder):
    plain = make_tiny_model(tmp_path, "plain", envelope=False)
    with pytest.raises(InvalidRequestError, match="no loudness envelopes"):
        refit_prior(PriorConfig(init=str(plain), data=str(wav_folder), run=str(tmp_path / "a")))
    with pytest.raises(InvalidRequestError, match="at least 1 cluster"):
        refit_prior(PriorConfig(init=str(tiny_models / "tiny"), data=str(wav_folder), run=str(tmp_path / "b"),
                                envelope_clusters=0))


def test_one_category_can_take_its_own_prior_shape_and_the_others_keep_theirs(tmp_path, tiny_models, wav_folder):
    from tests.test_cli import run_cli

    shaped = run_cli("train", "prior", "--init", str(tiny_models / "tiny"), "--data", str(wav_folder), "--run-dir",
                     str(tmp_path / "shaped"), "--envelope-clusters", "2", "--envelope-components", "3",
                     "--envelope-shape", "hat=1x0", "--envelope-shape", "kick=3x4")
    assert shaped.returncode == 0, shaped.stderr
    plain = refit_prior(PriorConfig(init=str(tiny_models / "tiny"), data=str(wav_folder), run=str(tmp_path / "plain"),
                                    envelope_clusters=2, envelope_components=3))
    manifest = read_manifest(tmp_path / "shaped" / "model")
    labels = manifest["labels"]
    prior = manifest["codec"]["args"]["envelope_prior"]
    assert (prior["clusters"], prior["components"]) == (3, 4)  # the tensors hold the largest shape
    assert prior["row_shapes"][labels.index("hat")] == [1, 0] and prior["row_shapes"][labels.index("kick")] == [3, 4]
    assert "hat 1 x 0" in manifest["training"]["sessions"][-1]["note"]
    codec, before = load_model(tmp_path / "shaped" / "model").codec, load_model(plain).codec
    hat, snare = labels.index("hat"), labels.index("snare")
    assert int((codec.prior_weights[hat] > 0).sum()) == 1 and float(codec.prior_basis[hat].abs().sum()) == 0
    # a hat now always draws its one mean envelope, whatever the seed
    noise = torch.randn(6, codec.latent_channels, 64, generator=torch.Generator().manual_seed(0))
    hats = codec.envelope_for(torch.full((6,), hat), noise=noise)
    assert torch.allclose(hats, hats[:1].expand_as(hats))
    # a label left alone is fitted as before (2 x 3), whatever the others take
    assert torch.allclose(codec.prior_weights[snare, :2], before.prior_weights[snare])
    assert float(codec.prior_weights[snare, 2:].abs().sum()) == 0
    assert torch.allclose(codec.prior_mean[snare, :2], before.prior_mean[snare])
    assert torch.allclose(codec.prior_basis[snare, :2, :3], before.prior_basis[snare], atol=1e-6)
    sound = Studio(roots=[tmp_path / "shaped"]).render(GenerationRequest(model=str(tmp_path / "shaped" / "model"),
                                                                         label="hat", steps=2))
    assert sound.sounds[0].audio.shape == (2, 32768)
    for shape, message in (("hat=3", "LABEL=CLUSTERSxCOMPONENTS"), ("tom=2x2", "names \\['tom'\\]"),
                           ("hat=0x2", "at least 1 cluster")):
        refused = run_cli("train", "prior", "--init", str(tiny_models / "tiny"), "--data", str(wav_folder),
                          "--run-dir", str(tmp_path / "bad"), "--envelope-shape", shape)
        assert refused.returncode == 2 and __import__("re").search(message, refused.stderr), refused.stderr


def test_one_category_can_draw_wider_envelopes_than_its_clips(tmp_path, tiny_models, wav_folder):
    """``--envelope-spread hat=2``: the hat row's directions are twice as long (its draws reach twice
    as far from its cluster means), every other row is the plain refit; a refit reproduces it."""
    from tests.helpers import cli_in_process

    spread = cli_in_process("train", "prior", "--init", str(tiny_models / "tiny"), "--data", str(wav_folder),
                            "--run-dir", str(tmp_path / "wide"), "--envelope-clusters", "2",
                            "--envelope-components", "3", "--envelope-spread", "hat=2")
    assert spread.returncode == 0, spread.stderr
    plain = refit_prior(PriorConfig(init=str(tiny_models / "tiny"), data=str(wav_folder), run=str(tmp_path / "plain"),
                                    envelope_clusters=2, envelope_components=3))
    folder = tmp_path / "wide" / "model"
    manifest = read_manifest(folder)
    labels = manifest["labels"]
    assert manifest["codec"]["args"]["envelope_prior"]["row_spreads"][labels.index("hat")] == 2.0
    assert "hat spread 2" in manifest["training"]["sessions"][-1]["note"]
    wide, before = load_model(folder).codec, load_model(plain).codec
    hat = labels.index("hat")
    assert float(before.prior_basis[hat].abs().sum()) > 0
    torch.testing.assert_close(wide.prior_basis[hat], 2 * before.prior_basis[hat])
    for row in range(len(labels) + 1):
        torch.testing.assert_close(wide.prior_mean[row], before.prior_mean[row])
        if row != hat:
            torch.testing.assert_close(wide.prior_basis[row], before.prior_basis[row])
    again = refit_prior(PriorConfig(init=str(folder), data=str(wav_folder), run=str(tmp_path / "again"),
                                    envelope_clusters=2, envelope_components=3, envelope_spreads={"hat": 2.0}))
    torch.testing.assert_close(load_model(again).codec.prior_basis, wide.prior_basis)
    for bad, message in (("hat=0", "in \\(0, 3"), ("hat=9", "in \\(0, 3"), ("tom=1.2", "names \\['tom'\\]"),
                         ("hat=wide", "LABEL=SPREAD")):
        refused = cli_in_process("train", "prior", "--init", str(tiny_models / "tiny"), "--data", str(wav_folder),
                                 "--run-dir", str(tmp_path / "bad"), "--envelope-spread", bad)
        assert refused.returncode == 2 and __import__("re").search(message, refused.stderr), refused.stderr


def test_second_hits_are_measured_after_the_peak_and_held_to_a_limit():
    """Known envelopes: a decay, a decay with a 20 dB second hit, a swell whose peak is last."""
    from engine.nets.envelope import limit_reattacks, reattack_limits, reattacks

    decay = torch.tensor([0.0, -10.0, -20.0, -30.0, -40.0, -50.0])
    second = torch.tensor([0.0, -10.0, -30.0, -10.0, -25.0, -50.0])    # falls to -30, rises 20 dB again
    swell = torch.tensor([-40.0, -30.0, -20.0, -10.0, -5.0, 0.0])
    envelopes = torch.stack([decay, second, swell])[:, None, :].repeat(1, 2, 1)   # (3 clips, 2 bands, 6 knots)
    torch.testing.assert_close(reattacks(envelopes), torch.tensor([[0.0, 0.0], [20.0, 20.0], [0.0, 0.0]]))

    held = limit_reattacks(envelopes, torch.tensor([[5.0, 5.0], [8.0, 30.0], [1.0, 1.0]]))
    torch.testing.assert_close(held[0], envelopes[0])          # a decay has nothing to hold
    torch.testing.assert_close(held[2], envelopes[2])          # nor has a swell: its rise is its attack
    torch.testing.assert_close(held[1, 0], torch.tensor([0.0, -10.0, -30.0, -22.0, -25.0, -50.0]))
    torch.testing.assert_close(held[1, 1], second)             # a limit above the rise leaves it
    assert float(reattacks(held)[1, 0]) == pytest.approx(8.0)

    labels = torch.tensor([0, 1, 1])
    limits = reattack_limits(envelopes, labels, 2, 1.0)        # rows: label 0, label 1, all clips
    torch.testing.assert_close(limits, torch.tensor([[0.0, 0.0], [20.0, 20.0], [20.0, 20.0]]))
    torch.testing.assert_close(reattack_limits(envelopes, labels, 2, 0.5)[1], torch.tensor([10.0, 10.0]))


def test_a_refit_holds_one_labels_drawn_second_hits_to_its_clips_own_and_changes_nothing_else(tmp_path, tiny_models,
                                                                                       wav_folder):
    """``--reattack-quantile kick=0.5``: the manifest keeps the kick row's limits (the others null),
    the prior's tensors and the network are the plain refit's, every drawn kick rises again no more
    than its row allows, and every other label draws exactly what the plain refit draws."""
    from engine.nets.envelope import reattacks
    from engine.nets.pqmf import BandCodec
    from engine.seeds import SeedNoise
    from tests.helpers import cli_in_process

    common = ["--envelope-clusters", "2", "--envelope-components", "3", "--envelope-spread", "kick=3"]
    held = cli_in_process("train", "prior", "--init", str(tiny_models / "tiny"), "--data", str(wav_folder),
                          "--run-dir", str(tmp_path / "held"), *common, "--reattack-quantile", "kick=0.5")
    assert held.returncode == 0, held.stderr
    plain = refit_prior(PriorConfig(init=str(tiny_models / "tiny"), data=str(wav_folder), run=str(tmp_path / "plain"),
                                    envelope_clusters=2, envelope_components=3, envelope_spreads={"kick": 3.0}))
    folder = tmp_path / "held" / "model"
    manifest = read_manifest(folder)
    labels = manifest["labels"]
    kick = labels.index("kick")
    assert "kick second hits held to its clips' 0.5 quantile" in manifest["training"]["sessions"][-1]["note"]
    rows = manifest["codec"]["args"]["envelope_prior"]["reattack_db"]
    assert len(rows) == len(labels) + 1 and all(row is None for i, row in enumerate(rows) if i != kick)
    limits = torch.tensor(rows[kick])
    codec, free = load_model(folder).codec, load_model(plain).codec
    assert limits.shape == (codec.bands,) and bool((limits >= 0).all())
    assert "reattack_db" not in read_manifest(plain)["codec"]["args"]["envelope_prior"]
    before, after = read_weights(plain), read_weights(folder)
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)

    noise = SeedNoise(list(range(48)), (codec.latent_channels, codec.latent_length(manifest["length"])))()
    drawn, unheld = codec.envelope_for(torch.tensor([kick]), noise=noise), free.envelope_for(torch.tensor([kick]), noise=noise)
    assert bool((reattacks(drawn) <= limits + 1e-4).all())
    assert bool((reattacks(unheld) > limits + 1e-4).any())     # spread 3 draws second hits the clips lack
    assert torch.equal(drawn.argmax(dim=2), unheld.argmax(dim=2)) and bool((drawn <= unheld + 1e-6).all())
    for other in range(len(labels)):
        if other != kick:
            assert torch.equal(codec.envelope_for(torch.tensor([other]), noise=noise),
                               free.envelope_for(torch.tensor([other]), noise=noise))
    sound = Studio(roots=[tmp_path / "held"]).render(GenerationRequest(model=str(folder), label="kick", steps=2))
    assert bool(torch.isfinite(torch.as_tensor(sound.sounds[0].audio)).all())

    for bad, message in (("kick=1.5", "in \\(0, 1\\]"), ("tom=0.5", "names \\['tom'\\]"),
                         ("kick=most", "LABEL=QUANTILE")):
        refused = cli_in_process("train", "prior", "--init", str(tiny_models / "tiny"), "--data", str(wav_folder),
                                 "--run-dir", str(tmp_path / "bad"), "--reattack-quantile", bad)
        assert refused.returncode == 2 and __import__("re").search(message, refused.stderr), refused.stderr
    prior = manifest["codec"]["args"]["envelope_prior"]
    one_short, not_a_number = [None] * len(labels), [[float("nan")] * codec.bands] + [None] * len(labels)
    for damaged in ([[1.0]], one_short, not_a_number):
        with pytest.raises(ValueError, match="reattack_db"):
            BandCodec(bands=codec.bands, envelope_prior=dict(prior, reattack_db=damaged))
