"""Refitting a waveform model's envelope prior: a new prior shape, the same network, a model that renders."""

import pytest
import torch

from engine.errors import InvalidRequestError
from engine.models import load_model, read_manifest, read_weights
from engine.request import GenerationRequest
from engine.studio import Studio
from engine.train.prior import PriorConfig, refit_prior
from tests.helpers import cli_in_process, make_tiny_model


def refit_beside_plain(tmp_path, tiny_models, wav_folder, name: str, *options: str, **plain_options):
    """The tiny model's prior refitted (2 clusters x 3 directions) through the CLI with ``options``
    into ``tmp_path/name``, and the same refit without them (``plain_options`` kept): (folder, plain)."""
    done = cli_in_process("train", "prior", "--init", str(tiny_models / "tiny"), "--data", str(wav_folder),
                          "--run-dir", str(tmp_path / name), "--envelope-clusters", "2", "--envelope-components", "3",
                          *options)
    assert done.returncode == 0, done.stderr
    plain = refit_prior(PriorConfig(init=str(tiny_models / "tiny"), data=str(wav_folder), run=str(tmp_path / "plain"),
                                    envelope_clusters=2, envelope_components=3, **plain_options))
    return tmp_path / name / "model", plain


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
    folder, plain = refit_beside_plain(tmp_path, tiny_models, wav_folder, "wide", "--envelope-spread", "hat=2")
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
    folder, plain = refit_beside_plain(tmp_path, tiny_models, wav_folder, "held", "--envelope-spread", "kick=3",
                                       "--reattack-quantile", "kick=0.5", envelope_spreads={"kick": 3.0})
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


def test_a_category_can_draw_from_its_clips_own_envelopes_dealt_by_seed(tmp_path, tiny_models, wav_folder):
    """``--envelope-kernel hat=0 --envelope-kernel kick=0.5``: the refit stores every hat's and kick's
    own envelope; at width 0 consecutive seeds deal each hat's envelope exactly once (a noise without
    seeds picks one of them), at 0.5 a kick is its dealt clip moved along its cluster's directions; a
    morph blends the two seeds' clips and is each seed's own at its ends; every other label, the
    mixture's tensors and the network are the plain refit's; bad widths are refused."""
    from engine.nets.pqmf import BandCodec
    from engine.seeds import SeedNoise, deal
    from engine.train import common
    folder, plain = refit_beside_plain(tmp_path, tiny_models, wav_folder, "kernel", "--envelope-kernel", "hat=0",
                                       "--envelope-kernel", "kick=0.5")
    manifest = read_manifest(folder)
    labels = manifest["labels"]
    hat, kick = labels.index("hat"), labels.index("kick")
    kernel = manifest["codec"]["args"]["envelope_prior"]["kernel"]
    assert kernel[hat] == {"width": 0.0, "clips": 6} and kernel[kick] == {"width": 0.5, "clips": 6}
    assert all(entry is None for row, entry in enumerate(kernel) if row not in (hat, kick))
    assert "hat drawn from its 6 clips' envelopes moved 0" in manifest["training"]["sessions"][-1]["note"]
    before, after = read_weights(plain), read_weights(folder)
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    codec, free = load_model(folder).codec, load_model(plain).codec
    for name in ("prior_mean", "prior_basis", "prior_weights"):
        assert torch.equal(getattr(codec, name), getattr(free, name))

    # the stored hats are the data set's hats, measured as the trainer measures them
    dataset = common.open_dataset(str(wav_folder), None)
    model_labels = common.label_map(dataset.label_names, labels, len(labels))[dataset.labels]
    measured = codec.measure_envelopes(dataset.audio[model_labels == hat].float())
    stored = codec.prior_clips[codec.kernel_slices[hat]]
    nearest = torch.cdist(measured.flatten(1), stored.flatten(1)).min(dim=1)
    assert sorted(nearest.indices.tolist()) == list(range(6)) and float(nearest.values.max()) < 1e-2

    frames = codec.latent_length(manifest["length"])
    draws = SeedNoise(list(range(100, 106)), (codec.latent_channels, frames))
    noise = draws()
    hats = codec.envelope_for(torch.tensor([hat]), noise=noise, seeds=draws.dealing())
    dealt = [deal(seed, 6) for seed in range(100, 106)]
    assert sorted(dealt) == list(range(6)) and torch.equal(hats, stored[dealt])  # six seeds, six hats
    picked = codec.envelope_for(torch.tensor([hat]), noise=noise)               # no seeds: the noise picks
    assert all(any(torch.equal(one, clip) for clip in stored) for one in picked)
    kicks = codec.envelope_for(torch.tensor([kick]), noise=noise, seeds=draws.dealing())
    clips = codec.prior_clips[codec.kernel_slices[kick]][[deal(seed, 6) for seed in range(100, 106)]]
    moved = (kicks - clips).flatten(1).norm(dim=1)
    assert bool((moved > 0).all())
    assert float((kicks - clips).abs().max()) < 0.5 * float(codec.prior_basis[kick].abs().sum(dim=0).max()) * 4
    for other in range(len(labels) + 1):
        if other not in (hat, kick):
            assert torch.equal(codec.envelope_for(torch.tensor([other]), noise=noise, seeds=draws.dealing()),
                               free.envelope_for(torch.tensor([other]), noise=noise))

    # a morph: the two seeds' clips blended, each seed's own envelope at its end
    seeds_b = list(range(200, 206))
    ends = {}
    for share in (0.0, 0.5, 1.0):
        morphing = SeedNoise(list(range(100, 106)), (codec.latent_channels, frames), seeds_b, share)
        ends[share] = codec.envelope_for(torch.tensor([kick]), noise=morphing(), seeds=morphing.dealing())
    alone_b = SeedNoise(seeds_b, (codec.latent_channels, frames))
    torch.testing.assert_close(ends[0.0], kicks)
    torch.testing.assert_close(ends[1.0], codec.envelope_for(torch.tensor([kick]), noise=alone_b(),
                                                             seeds=alone_b.dealing()))
    middle = SeedNoise(list(range(100, 106)), (codec.latent_channels, frames), seeds_b, 0.5)
    at_a = codec.envelope_for(torch.tensor([hat]), noise=middle(), seeds=(list(range(100, 106)), None, 0.0))
    at_b = codec.envelope_for(torch.tensor([hat]), noise=middle(), seeds=(seeds_b, None, 0.0))
    torch.testing.assert_close(codec.envelope_for(torch.tensor([hat]), noise=middle(), seeds=middle.dealing()),
                               0.5 * (at_a + at_b))  # width 0: halfway between the two seeds' hats
    sound = Studio(roots=[tmp_path / "kernel"]).render(GenerationRequest(model=str(folder), label="hat", steps=2,
                                                                         seed=3, seed_b=9, morph=0.5))
    assert bool(torch.isfinite(torch.as_tensor(sound.sounds[0].audio)).all())

    for bad, message in (("hat=-1", "in \\[0, 3\\]"), ("hat=4", "in \\[0, 3\\]"), ("tom=0.5", "names \\['tom'\\]"),
                         ("hat=wide", "LABEL=WIDTH"), ("snare=0.5", "no clips of \\['snare'\\]")):
        refused = cli_in_process("train", "prior", "--init", str(tiny_models / "tiny"), "--data", str(wav_folder),
                                 "--run-dir", str(tmp_path / "bad"), "--envelope-kernel", bad)
        assert refused.returncode == 2 and __import__("re").search(message, refused.stderr), refused.stderr
    refused = cli_in_process("train", "wave", "--data", str(wav_folder), "--run-dir", str(tmp_path / "wave"),
                             "--envelope-kernel", "hat=0.5")
    assert refused.returncode == 2 and "for train prior" in refused.stderr
    prior = manifest["codec"]["args"]["envelope_prior"]
    for damaged in ([None], [{"width": 0.5}] * len(kernel), [{"width": -1, "clips": 2}] * len(kernel),
                    [{"width": 0.5, "clips": True}] * len(kernel)):
        with pytest.raises(ValueError, match="envelope_prior.kernel"):
            BandCodec(bands=codec.bands, envelope_prior=dict(prior, kernel=damaged))


def refuses_a_kernel_extra(tmp_path, tiny_models, wav_folder, option: str, bands: int, prior: dict,
                           **damaged) -> None:
    """Checks that ``train prior OPTION`` is refused without a kernel for its label and for a label
    the model lacks, that ``train wave`` refuses it, and that a codec refuses a manifest whose
    kernel rows carry ``damaged``."""
    from engine.nets.pqmf import BandCodec
    for options, message in (((option, "hat"), "an --envelope-kernel too"),
                             (("--envelope-kernel", "hat=0", option, "tom"), "names \\['tom'\\]")):
        refused = cli_in_process("train", "prior", "--init", str(tiny_models / "tiny"), "--data", str(wav_folder),
                                 "--run-dir", str(tmp_path / "bad"), *options)
        assert refused.returncode == 2 and __import__("re").search(message, refused.stderr), refused.stderr
    refused = cli_in_process("train", "wave", "--data", str(wav_folder), "--run-dir", str(tmp_path / "wave"),
                             option, "hat")
    assert refused.returncode == 2 and "for train prior" in refused.stderr
    with pytest.raises(ValueError, match="envelope_prior.kernel"):
        BandCodec(bands=bands, envelope_prior=dict(prior, kernel=[dict(e, **damaged) if e else e
                                                                  for e in prior["kernel"]]))


def adds_only(plain, folder, buffer: str) -> None:
    """Checks that ``folder``'s weights are ``plain``'s, the network's and the codec's, with the
    codec's ``buffer`` added."""
    for prefix in ("", "codec."):
        before, after = read_weights(plain, prefix), read_weights(folder, prefix)
        assert set(after) - set(before) == ({buffer} if prefix else set())
        assert all(torch.equal(before[k], after[k]) for k in before)


def kernel_clips_in_order(codec, wav_folder, labels: list[str], label: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The data set's clips of ``label`` and, for each stored kernel row, which of them it is (the
    clip whose envelope sits there): ``(audio, order)``."""
    from engine.train import common
    dataset = common.open_dataset(str(wav_folder), None)
    model_labels = common.label_map(dataset.label_names, labels, len(labels))[dataset.labels]
    audio = dataset.audio[model_labels == label].float()
    stored = codec.prior_clips[codec.kernel_slices[label]]
    return audio, torch.cdist(stored.flatten(1), codec.measure_envelopes(audio).flatten(1)).argmin(dim=1)


def dealt_like_the_envelope(codec, deal_for, stored: torch.Tensor, label: int, other: int, length: int):
    """Checks that ``deal_for`` (the codec's ``detail_for`` or ``tone_for``) gives six seeds'
    sounds of ``label`` the rows of ``stored`` of the clips those seeds deal, none without seeds or
    for ``other`` (a label without them), and a morph the two seeds' rows blended; returns
    ``(the seeds' noise, what they were dealt)``."""
    from engine.seeds import SeedNoise, deal
    frames = codec.latent_length(length)
    draws = SeedNoise(list(range(100, 106)), (codec.latent_channels, frames))
    dealt = [deal(seed, 6) for seed in range(100, 106)]
    given = deal_for(torch.tensor([label]), seeds=draws.dealing(), batch=6)
    assert torch.equal(given, stored[dealt])
    assert deal_for(torch.tensor([label]), seeds=None, batch=6) is None
    assert deal_for(torch.tensor([other]), seeds=draws.dealing(), batch=6) is None
    morphing = SeedNoise(list(range(100, 106)), (codec.latent_channels, frames), list(range(200, 206)), 0.25)
    torch.testing.assert_close(deal_for(torch.tensor([label]), seeds=morphing.dealing(), batch=6),
                               0.75 * stored[dealt] + 0.25 * stored[[deal(seed, 6) for seed in range(200, 206)]])
    return draws, given


def test_a_dealt_clip_brings_its_flutter_between_the_knots(tmp_path, tiny_models, wav_folder):
    """``--envelope-detail hat`` (with its kernel): the refit stores each hat's flutter between the
    envelope's knots, in the kernel's order; a seed deals the same clip's flutter as its envelope
    (a morph blends the two seeds'), and decoding plays it as one more band gain; a drawn loudness
    curve, a hybrid and a noise without seeds take none; every other label, the stored envelopes
    and the network are the kernel-only refit's; a detail without a kernel is refused."""
    from engine import pipeline
    from engine.conditions import Conditions
    from engine.nets import envelope
    folder, plain = refit_beside_plain(tmp_path, tiny_models, wav_folder, "detail", "--envelope-kernel", "hat=0",
                                       "--envelope-detail", "hat", envelope_kernels={"hat": 0.0})
    manifest = read_manifest(folder)
    labels = manifest["labels"]
    hat = labels.index("hat")
    prior = manifest["codec"]["args"]["envelope_prior"]
    assert prior["kernel"][hat] == {"width": 0.0, "clips": 6, "detail": True}
    assert prior["detail_points"] == envelope.DETAIL_POINTS
    assert "with their flutter between the knots" in manifest["training"]["sessions"][-1]["note"]
    adds_only(plain, folder, "prior_details")  # the network, and the kernel refit's envelopes, unchanged
    model = load_model(folder)
    codec = model.codec

    # stored in the kernel's order: the flutter of the clip whose envelope sits at the same place
    audio, order = kernel_clips_in_order(codec, wav_folder, labels, hat)
    details = codec.prior_details[codec.kernel_slices[hat]]
    torch.testing.assert_close(details, codec.measure_details(audio)[order])
    assert float(details.abs().max()) > 0.5 and float(details.min()) >= -12 and float(details.max()) <= 6

    draws, hats = dealt_like_the_envelope(codec, codec.detail_for, details, hat, labels.index("kick"),
                                          manifest["length"])
    frames = codec.latent_length(manifest["length"])

    # decoding: the envelope's gains times the flutter's, linear between the points
    latent = torch.randn(6, codec.latent_channels, frames)
    drawn = codec.envelope_for(torch.tensor([hat]), noise=draws(), seeds=draws.dealing())
    gain = envelope.detail_gain(hats, frames)
    assert gain.shape == (6, codec.bands, frames)
    torch.testing.assert_close(codec.decode(latent, drawn, hats),
                               codec.decode(latent * gain.repeat(1, codec.channels, 1), drawn), atol=1e-5, rtol=1e-4)
    assert pipeline.detail_for(model, Conditions(label=hat), draws, 6) is not None
    for without in (Conditions(label=hat, rms=[(0, -6.0), (200, -30.0)]), Conditions(label=hat, label_b=0,
                                                                                     label_mix=0.5)):
        assert pipeline.detail_for(model, without, draws, 6) is None
    assert pipeline.detail_for(model, Conditions(label=hat), None, 6) is None

    # the studio: a hat flutters, a hat on a drawn curve and a kick are the kernel-only refit's
    studio = Studio(roots=[tmp_path / "detail", tmp_path / "plain"], device="cpu")

    def sound(where, **fields):
        return studio.render(GenerationRequest(model=str(where), steps=2, seed=5, **fields)).sounds[0].audio

    assert not torch.equal(sound(folder, label="hat"), sound(plain, label="hat"))
    for fields in (dict(label="kick"), dict(label="hat", rms=[(0, -6.0), (150, -40.0)])):
        torch.testing.assert_close(sound(folder, **fields), sound(plain, **fields), atol=0, rtol=0)

    refuses_a_kernel_extra(tmp_path, tiny_models, wav_folder, "--envelope-detail", codec.bands, prior, detail="yes")


def test_a_dealt_clip_brings_its_tone_inside_the_bands(tmp_path, tiny_models, wav_folder):
    """``--envelope-tone hat`` (with its kernel): the refit stores each hat's tone inside the bands,
    in the kernel's order; a seed deals the same clip's tone as its envelope (a morph blends the
    two seeds'), and decoding filters the sound to it; a drawn loudness curve keeps the tone (it
    drops only the flutter), a hybrid and a noise without seeds take none; every other label, the
    stored envelopes and flutter and the network are the refit's without it; a tone without a
    kernel is refused."""
    from engine import pipeline
    from engine.conditions import Conditions
    from engine.nets import tone
    folder, plain = refit_beside_plain(tmp_path, tiny_models, wav_folder, "tone", "--envelope-kernel", "hat=0",
                                       "--envelope-detail", "hat", "--envelope-tone", "hat",
                                       envelope_kernels={"hat": 0.0}, envelope_details=["hat"])
    manifest = read_manifest(folder)
    labels = manifest["labels"]
    hat = labels.index("hat")
    prior = manifest["codec"]["args"]["envelope_prior"]
    assert prior["kernel"][hat] == {"width": 0.0, "clips": 6, "detail": True, "tone": True}
    assert prior["tone_points"] == tone.TONE_POINTS
    assert "and their tone inside the bands" in manifest["training"]["sessions"][-1]["note"]
    adds_only(plain, folder, "prior_tones")  # the network, and the refit's envelopes and flutter, unchanged
    model = load_model(folder)
    codec = model.codec

    # stored in the kernel's order: the tone of the clip whose envelope sits at the same place
    audio, order = kernel_clips_in_order(codec, wav_folder, labels, hat)
    tones = codec.prior_tones[codec.kernel_slices[hat]]
    torch.testing.assert_close(tones, tone.clip_tones(audio, codec.bands)[order])
    assert float(tones.abs().max()) > 1.0

    draws, hats = dealt_like_the_envelope(codec, codec.tone_for, tones, hat, labels.index("kick"), manifest["length"])
    frames = codec.latent_length(manifest["length"])

    # decoding: the sound the envelope and flutter give, filtered to the dealt clip's tone
    latent = torch.randn(6, codec.latent_channels, frames)
    drawn = codec.envelope_for(torch.tensor([hat]), noise=draws(), seeds=draws.dealing())
    flutter = codec.detail_for(torch.tensor([hat]), seeds=draws.dealing(), batch=6)
    torch.testing.assert_close(codec.decode(latent, drawn, flutter, hats),
                               tone.apply_tone(codec.decode(latent, drawn, flutter), hats, codec.bands))
    both = pipeline.detail_for(model, Conditions(label=hat), draws, 6)
    assert torch.equal(both.flutter, flutter) and torch.equal(both.tone, hats)
    assert torch.equal(both[:1].tone, hats[:1]) and torch.equal(both[:1].flutter, flutter[:1])
    curved = pipeline.detail_for(model, Conditions(label=hat, rms=[(0, -6.0), (200, -30.0)]), draws, 6)
    assert curved.flutter is None and torch.equal(curved.tone, hats)
    assert pipeline.detail_for(model, Conditions(label=hat, label_b=0, label_mix=0.5), draws, 6) is None
    assert pipeline.detail_for(model, Conditions(label=hat), None, 6) is None

    # the studio: a hat takes its tone, on a drawn curve too; a kick is the refit's without it
    studio = Studio(roots=[tmp_path / "tone", tmp_path / "plain"], device="cpu")

    def sound(where, **fields):
        return studio.render(GenerationRequest(model=str(where), steps=2, seed=5, **fields)).sounds[0].audio

    for fields in (dict(label="hat"), dict(label="hat", rms=[(0, -6.0), (150, -40.0)])):
        assert not torch.equal(sound(folder, **fields), sound(plain, **fields))
    torch.testing.assert_close(sound(folder, label="kick"), sound(plain, label="kick"), atol=0, rtol=0)

    refuses_a_kernel_extra(tmp_path, tiny_models, wav_folder, "--envelope-tone", codec.bands, prior, tone=1)


def test_the_shipped_snares_and_hats_morph_smoothly_between_two_seeds_clips():
    """`drums-3step` (the Sound names) draws snares, hats, percussion and cymbals from their clips'
    own envelopes, dealt by seed. A seed morph moves smoothly from one seed's envelope to the other's: no tenth of the way
    moves it more than a quarter of the whole way (picked off the slerped noise instead, a morph
    jumped through unrelated clips: one tenth moved it 0.95-1.6 times the whole way). Each end is its
    seed's own sound in the studio."""
    from engine.seeds import SeedNoise

    from tests.helpers import ROOT

    model = load_model(ROOT / "checkpoints" / "drums-3step")
    codec, labels = model.codec, model.manifest["labels"]
    kernel = model.manifest["codec"]["args"]["envelope_prior"]["kernel"]
    dealt = ["snare", "hat", "perc", "cymbal"]
    assert [labels[row] for row, entry in enumerate(kernel[:-1]) if entry] == dealt
    frames = codec.latent_length(model.manifest["length"])
    for label in dealt:
        for a, b in ((3, 4), (10, 500)):
            path = []
            for share in torch.linspace(0, 1, 11).tolist():
                draws = SeedNoise([a], (codec.latent_channels, frames), [b], share)
                path.append(codec.envelope_for(torch.tensor([labels.index(label)]), noise=draws(),
                                               seeds=draws.dealing())[0])
            whole = float((path[-1] - path[0]).norm())
            assert whole > 0 and max(float((path[i + 1] - path[i]).norm()) for i in range(10)) < 0.25 * whole

    studio = Studio(roots=[ROOT / "checkpoints"], device="cpu")
    alone = [studio.render(GenerationRequest(model="snare", label="snare", seed=s)).sounds[0].audio for s in (3, 4)]
    for share, expected in ((0.0, alone[0]), (1.0, alone[1])):
        morphed = studio.render(GenerationRequest(model="snare", label="snare", seed=3, seed_b=4, morph=share))
        torch.testing.assert_close(morphed.sounds[0].audio, expected, atol=1e-4, rtol=0)
