"""Model folders: save/load round trip, discovery and aliases, clear errors, shipped checkpoints."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from engine.errors import CheckpointError, ModelNotFoundError
from engine.models import (DEFAULT_ROOT, MANIFEST, WEIGHTS, checkpoint_id, find_models, load_codec, load_model,
                           read_manifest, resolve_model, save_model)
from tests.helpers import make_tiny_model


def test_load_builds_the_network_from_the_manifest_and_its_weights(tiny_models):
    model = load_model(tiny_models / "tiny")
    again = load_model(tiny_models / "tiny")
    x, t = torch.randn(1, 64, 1024), torch.tensor([0.5])
    with torch.no_grad():
        assert torch.equal(model.network(x, t), again.network(x, t))
    assert not model.network.training
    assert model.checkpoint_id == checkpoint_id(tiny_models / "tiny") and len(model.checkpoint_id) == 12


def test_checkpoint_id_names_the_weights(tmp_path):
    first = make_tiny_model(tmp_path / "a", seed=0)
    second = make_tiny_model(tmp_path / "b", seed=1)
    assert checkpoint_id(first) != checkpoint_id(second)


def test_aliases_and_folders_are_found(tiny_models):
    models = find_models([tiny_models])
    assert {"tiny", "tiny_blend", "tiny-kick", "tiny-hat"} <= set(models)
    assert models["tiny-kick"].label == "kick" and models["tiny-kick"].folder.name in ("tiny", "tiny_blend")
    assert resolve_model(str(tiny_models / "tiny")).name == "tiny"  # a path to a folder works too
    with pytest.raises(ModelNotFoundError, match="available: .*tiny"):
        resolve_model("no-such-model", [tiny_models])


def test_broken_model_folders_give_clear_errors(tmp_path, tiny_models):
    folder = tmp_path / "broken"
    shutil.copytree(tiny_models / "tiny", folder)
    (folder / WEIGHTS).write_bytes(b"not safetensors at all")
    with pytest.raises(CheckpointError, match="corrupt"):
        load_model(folder)
    (folder / MANIFEST).write_text("{ not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        read_manifest(folder)
    manifest = read_manifest(tiny_models / "tiny")
    del manifest["codec"]
    (folder / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError, match="codec"):
        read_manifest(folder)
    with pytest.raises(CheckpointError, match="missing"):
        read_manifest(tmp_path / "nothing-here")


def test_weights_that_do_not_match_the_manifest_are_refused(tmp_path, tiny_models):
    folder = tmp_path / "mismatch"
    shutil.copytree(tiny_models / "tiny", folder)
    manifest = read_manifest(folder)
    manifest["network"]["args"]["widths"] = [8, 16, 16]
    (folder / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError):
        load_model(folder)


def test_a_write_sweeps_the_temporary_file_of_a_killed_writer_but_not_a_live_ones(tmp_path):
    from engine.models import atomic_write
    target = tmp_path / "model.safetensors"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    killed = tmp_path / f".model.safetensors.{dead.pid}.abc123.tmp"
    live = tmp_path / f".model.safetensors.{os.getpid()}.def456.tmp"
    killed.write_bytes(b"half")
    live.write_bytes(b"writing")
    atomic_write(target, lambda tmp: tmp.write_bytes(b"whole"))
    assert target.read_bytes() == b"whole" and not killed.exists() and live.exists()


def test_save_leaves_no_temporary_files(tmp_path, tiny_models):
    model = load_model(tiny_models / "tiny")
    save_model(tmp_path / "copy", model.network, model.manifest, card="# card\n")
    assert sorted(p.name for p in (tmp_path / "copy").iterdir()) == ["MODEL_CARD.md", MANIFEST, WEIGHTS]


SHIPPED = sorted(p for p in DEFAULT_ROOT.glob("*") if (p / MANIFEST).is_file())


@pytest.mark.parametrize("folder", SHIPPED, ids=[p.name for p in SHIPPED])
def test_shipped_checkpoints_load_and_are_small(folder: Path):
    manifest = read_manifest(folder)
    if manifest.get("kind") == "codec":  # a latent model's codec: loaded through the models that reference it
        codec = load_codec({"codec": {"type": manifest["codec"]["type"], "model": str(folder)},
                            "sample_rate": manifest["sample_rate"], "channels": manifest["channels"]})
        assert codec.latent_channels > 0
    elif manifest.get("kind") == "embedder":  # the text-audio embedder: loaded by engine.embedders
        from engine.embedders import load_embedder
        assert load_embedder(folder).dim == manifest["dim"]
    else:
        load_model(folder)
    assert (folder / "MODEL_CARD.md").is_file()
    assert (folder / WEIGHTS).stat().st_size <= 30 * 2**20
    assert manifest["training"]["steps"] > 0


def test_the_studio_offers_kick_snare_hat_and_perc():
    models = find_models()
    for name in ("kick", "snare", "hat", "perc"):
        assert name in models, f"no shipped model answers to {name!r}"
        assert models[name].label in models[name].labels
