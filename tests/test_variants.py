"""A Sound's variant (engine.variants): one seed in ``every`` of a Sound asked alone goes to it.

On a tiny latent model that follows curves and a copy of it with other random weights as its
variant (the plumbing; the design notes measure what `latent-thin-hats` does to `latent-fast`'s
hats): the seeds it is dealt, the studio and the evaluation rendering them alike, the recipe
replaying on the variant, every other seed and Sound as without it, and every wrong setting refused.
"""

from __future__ import annotations

import shutil

import pytest
import torch

from engine import variants
from engine.errors import CheckpointError, InvalidRequestError
from engine.eval.run import generate_clips
from engine.models import load_model, read_manifest, save_model, write_json
from engine.nets import build_network
from engine.request import GenerationRequest
from engine.studio import Studio
from engine.train.publish import set_defaults
from ui.history import Take
from tests.test_envelopes import hits, models  # noqa: F401  (fixtures: the tiny curvy model and its bank)

THIN = {"model": "curvy-thin", "every": 3}


def _with_variant(label: str = "hat", entry: dict | None = None) -> dict:
    return {"defaults": {"per_label": {label: {"shape": "kit", "variant": entry or THIN}}}}


def test_any_run_of_every_seeds_deals_the_variant_exactly_once():
    manifest = _with_variant()
    for start in (0, 7, 1000, 4001):
        dealt = [variants.dealt_variant(manifest, "hat", seed) for seed in range(start, start + 3 * 5)]
        assert [dealt[i:i + 3].count("curvy-thin") for i in range(0, 15, 3)] == [1] * 5
        assert set(dealt) == {None, "curvy-thin"}
    assert variants.dealt_variant(manifest, "kick", 5) is None and variants.dealt_variant(manifest, None, 5) is None
    assert variants.label_variant({"defaults": {}}, "hat") is None
    for bad in ({"model": "curvy-thin", "every": 1}, {"model": "../elsewhere", "every": 3}, {"every": 3},
                {"model": "curvy-thin", "every": "often"}, "curvy-thin"):
        with pytest.raises(CheckpointError, match="hat variant"):
            variants.label_variant(_with_variant(entry=bad), "hat")


def _make_variant(root) -> str:
    """root/curvy-thin: curvy's manifest with other random weights (a variant's shape, not its training)."""
    manifest = dict(read_manifest(root / "curvy"), name="curvy-thin", variant_of={"model": "curvy", "label": "hat"})
    torch.manual_seed(7)
    save_model(root / "curvy-thin", build_network(manifest["network"]), manifest)
    shutil.copyfile(root / "curvy" / "envelopes.json", root / "curvy-thin" / "envelopes.json")
    return load_model(root / "curvy-thin").checkpoint_id


def test_a_sound_alone_goes_to_its_variant_for_the_seeds_it_is_dealt_and_replays_there(models):  # noqa: F811
    variant_id = _make_variant(models)
    set_defaults(models / "curvy", {"per_label": {"hat": {"shape": "kit"}}})
    request = GenerationRequest(model="curvy", label="hat", seed=10, count=6, steps=2)
    alone = Studio(roots=[models], device="cpu").render(request).sounds
    set_defaults(models / "curvy", {"per_label": {"hat": {"shape": "kit", "variant": THIN}}})
    studio = Studio(roots=[models], device="cpu")
    dealt = studio.render(request).sounds
    to_variant = [variants.dealt_variant(read_manifest(models / "curvy"), "hat", 10 + i) is not None for i in range(6)]
    assert to_variant.count(True) == 2
    for sound, before, varied in zip(dealt, alone, to_variant):
        assert sound.recipe["model"] == ("curvy-thin" if varied else "curvy")
        assert sound.recipe["checkpoint"] == (variant_id if varied else load_model(models / "curvy").checkpoint_id)
        assert sound.recipe["rms"] == before.recipe["rms"]  # the same kit hit either way
        assert sound.recipe.get("variant_of") == ("curvy" if varied else None)
        if varied:
            assert not torch.allclose(sound.audio, before.audio, atol=1e-4)
            caption = Take(1, sound.recipe, "", "").caption()  # the history says who made it
            assert caption.startswith("#1 · curvy-thin (a variant of curvy) · hat · seed"), caption
            again = studio.render(GenerationRequest.from_recipe(sound.recipe)).sounds[0]
            assert again.recipe["model"] == "curvy-thin" and torch.allclose(again.audio, sound.audio, atol=1e-6)
        else:
            assert torch.equal(sound.audio, before.audio)  # every other seed as without the variant
    clips = generate_clips(load_model(models / "curvy"), 6, label="hat", seed=10, steps=2)
    for i, varied in enumerate(to_variant):  # the evaluation deals as the studio
        own = generate_clips(load_model(models / ("curvy-thin" if varied else "curvy")), 1, label="hat",
                             seed=10 + i, steps=2, shape="kit")
        assert torch.allclose(clips[i], own[0], atol=1e-6)

    kick = studio.render(GenerationRequest(model="curvy", label="kick", seed=10, count=3, steps=2, shape="kit"))
    assert {sound.recipe["model"] for sound in kick.sounds} == {"curvy"}  # only the Sound that names it
    drawn = studio.render(request.with_(count=3, rms=((0, -6), (60, -40))))
    assert {sound.recipe["model"] for sound in drawn.sounds} == {"curvy"}  # a drawn curve asks for the model itself


def test_a_variant_is_refused_where_it_could_not_be_dealt(models):  # noqa: F811
    with pytest.raises(CheckpointError, match="curvy-thin is missing"):
        set_defaults(models / "curvy", _with_variant()["defaults"])
    _make_variant(models)
    with pytest.raises(InvalidRequestError, match="shape kit as well"):
        set_defaults(models / "curvy", {"per_label": {"hat": {"shape": "free", "variant": THIN}}})
    with pytest.raises(InvalidRequestError, match="not in --with-curves"):
        set_defaults(models / "curvy", {"with_curves": {"per_label": {"hat": {"variant": THIN}}}})
    with pytest.raises(CheckpointError, match="hat variant"):
        set_defaults(models / "curvy", _with_variant(entry={"model": "curvy-thin", "every": 0})["defaults"])
    other = read_manifest(models / "curvy-thin")
    write_json(models / "curvy-thin" / "manifest.json", dict(other, sample_rate=22050))
    with pytest.raises(InvalidRequestError, match="differs from the model in \\['sample_rate'\\]"):
        set_defaults(models / "curvy", _with_variant()["defaults"])
    write_json(models / "curvy-thin" / "manifest.json", dict(other, **_with_variant()))
    with pytest.raises(InvalidRequestError, match="deals a variant of its own"):
        set_defaults(models / "curvy", _with_variant()["defaults"])


def test_the_command_line_says_which_sounds_the_variant_made_and_their_wavs_replay_on_it(models, tmp_path):  # noqa: F811
    from engine.audio import read_recipe
    from tests.helpers import cli_in_process

    _make_variant(models)
    set_defaults(models / "curvy", _with_variant()["defaults"])
    made = cli_in_process("generate", "--model", str(models / "curvy"), "--label", "hat", "--seed", "10", "--count", "3",
                          "--steps", "2", "--out", str(tmp_path / "out"))
    assert made.returncode == 0, made.stderr
    lines = made.stdout.strip().splitlines()
    recipes = [read_recipe(line.split("\t")[0]) for line in lines]
    varied = [variants.dealt_variant(read_manifest(models / "curvy"), "hat", 10 + i) is not None for i in range(3)]
    assert varied.count(True) == 1
    for line, recipe, by_variant in zip(lines, recipes, varied):
        assert ("made by curvy's hat variant curvy-thin" in line) == by_variant
        assert recipe["model"] == str(models / ("curvy-thin" if by_variant else "curvy"))
    listed = cli_in_process("models", "--models-root", str(models))
    assert "curvy-thin: kind=latent" in listed.stdout and "variant_of=curvy for=hat" in listed.stdout, listed.stdout
