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
