"""Attack limits (engine.attacks, engine.steering.attack_projection): how bright a Sound's real hits
are in their first latent frames, measured from the data set, kept beside the weights, and held
while a sound with a curve forms; the command that writes them, and the shipped kick's click."""

from __future__ import annotations

import json
import math
import shutil
from types import SimpleNamespace

import pytest
import torch

from engine import attacks
from engine.conditions import Conditions
from engine.errors import CheckpointError
from engine.pipeline import attack_limits
from engine.steering import (_exact_channels, _from_raw, _raw, attack_frames, attack_projection, band_levels_db,
                             envelope_bands)
from tests.helpers import cli_in_process, shipped_latent_fast
from tests.test_controls import RATE, burst
from tests.test_eval import _fake_dataset
from tests.test_steering import codec


def hits(at_ms: float = 0.0) -> torch.Tensor:
    """(4, 2, N): four kick-like hits starting at ``at_ms``: a decaying 60 Hz body that carries the
    loudness, under a short noise attack."""
    t = torch.arange(int(0.4 * RATE)) / RATE
    start = int(at_ms / 1000 * RATE)
    out = []
    for k in range(4):
        body = torch.zeros_like(t)
        body[start:] = (0.5 + 0.1 * k) * torch.sin(2 * math.pi * 60 * t[: len(t) - start]) * \
            torch.exp(-t[: len(t) - start] / 0.15)
        out.append(body.repeat(2, 1) + burst(at_ms, seconds=0.4, decay_s=0.005, gain=0.05, seed=k))
    return torch.stack(out)


def brightened(model, latent: torch.Tensor, db: float = 20.0, frames: tuple[int, ...] = (0, 1)) -> torch.Tensor:
    """``latent`` with its band envelopes ``db`` louder in ``frames``: a click over the hit."""
    raw = _raw(model, latent)
    _, envelope = _exact_channels(model)
    for frame in frames:
        raw[:, envelope, frame] *= 10.0 ** (db / 20.0)
    return _from_raw(model, raw)


def test_an_attack_brighter_than_the_limits_is_held_to_them_and_nothing_else_moves():
    model = codec()
    limits = torch.tensor(attacks.measure(model, hits(), frames=2))
    assert limits.shape == (envelope_bands(model), 2) and torch.isfinite(limits).all()
    with torch.no_grad():
        plain = model.encode(hits())
        clicked = brightened(model, plain)
        project = attack_projection(model, limits)
        held = project(clicked, torch.tensor(5.0))
    before, after = band_levels_db(model, clicked, 2), band_levels_db(model, held, 2)
    assert float((before - limits).max()) > 5.0  # the click is over the limits...
    assert float((after - limits).max()) < 0.1   # ...and held to them
    groups = model.channel_groups()
    for name in ("learned", "bypass"):
        assert torch.equal(held[:, groups[name]], clicked[:, groups[name]]), name
    assert torch.allclose(held[..., 2:], clicked[..., 2:], atol=1e-6)  # after the attack: as it was
    dark = brightened(model, plain, db=-20.0)  # an attack under the limits: untouched
    assert torch.equal(project(dark, torch.tensor(5.0)), dark)
    # a hit that starts later is held from where it starts
    with torch.no_grad():
        late = model.encode(hits(at_ms=100.0))
    start = int(attack_frames(model, _raw(model, late), 2)[0][0, 0])
    assert start > 5
    late_clicked = brightened(model, late, frames=(start, start + 1))
    late_held = project(late_clicked, torch.tensor(5.0))
    assert float((band_levels_db(model, late_held, 2) - limits).max()) < 0.1
    assert torch.allclose(late_held[..., :start], late_clicked[..., :start], atol=1e-6)
    assert attack_projection(model, None) is None


def test_the_limits_are_kept_beside_the_weights_and_taken_for_a_sound_with_a_curve(tmp_path):
    model = codec()
    table = {"kick": attacks.measure(model, hits(), frames=2)}
    attacks.write_attacks(tmp_path, table, "test hits", 0.5)
    bands = envelope_bands(model)
    assert torch.equal(attacks.read_attacks(tmp_path, "kick", bands), torch.tensor(table["kick"]))
    assert attacks.read_attacks(tmp_path, "snare", bands) is None and attacks.read_attacks(None, "kick", bands) is None
    loaded = SimpleNamespace(folder=tmp_path, codec=model, manifest={"labels": ["kick", "snare"]})
    curve = ((0.0, -6.0), (200.0, -60.0))
    assert attack_limits(loaded, Conditions(label=0, rms=curve)) is not None
    assert attack_limits(loaded, Conditions(label=0)) is None  # no curve: the network's own attack
    assert attack_limits(loaded, Conditions(label=1, rms=curve)) is None
    with pytest.raises(CheckpointError, match="does not fit|not 3 bands|damaged"):
        attacks.read_attacks(tmp_path, "kick", bands + 1)
    (tmp_path / attacks.ATTACKS_FILE).write_text("{not json")
    with pytest.raises(CheckpointError, match="python -m engine attacks"):
        attacks.read_attacks(tmp_path, "kick", bands)


def test_the_command_measures_a_labels_training_hits_and_refuses_what_it_cannot(tmp_path, tiny_models):
    _fake_dataset(tmp_path / "data")
    shipped = shipped_latent_fast(tmp_path / "models").parent
    (shipped / "latent-fast" / attacks.ATTACKS_FILE).unlink()
    made = cli_in_process("attacks", "--model", str(shipped / "latent-fast"), "--data", str(tmp_path / "data"),
                          "--label", "kick", "--label", "hat")
    assert made.returncode == 0, made.stderr
    stored = json.loads((shipped / "latent-fast" / attacks.ATTACKS_FILE).read_text())
    assert set(stored["labels"]) == {"kick", "hat"} and stored["quantile"] == attacks.QUANTILE
    assert len(stored["labels"]["kick"]) == 15 and len(stored["labels"]["kick"][0]) == attacks.FRAMES
    for bad, says in ((["--label", "tuba"], "no label"), (["--label", "kick", "--quantile", "1.5"], "quantile"),
                      (["--label", "kick", "--quantile", "nan"], "quantile"), (["--label", "kick", "--frames", "0"], "frames")):
        refused = cli_in_process("attacks", "--model", str(shipped / "latent-fast"), "--data", str(tmp_path / "data"),
                                 *bad)
        assert refused.returncode == 2 and says in refused.stderr, refused.stderr
    waveform = shutil.copytree(tiny_models / "tiny", tmp_path / "tiny")
    refused = cli_in_process("attacks", "--model", str(waveform), "--data", str(tmp_path / "data"), "--label", "kick")
    assert refused.returncode == 2 and "not a latent model" in refused.stderr, refused.stderr


@pytest.mark.numeric
def test_the_shipped_latent_models_kicks_on_a_curve_open_without_a_click():
    """`latent-fast`'s kicks on a real kick's curve: their first two frames' bands stay at the
    training kicks' median or under it, where without the limits they sit over it."""
    from engine import pipeline
    from engine.models import load_model, resolve_model
    from engine.seeds import SeedNoise

    model = load_model(resolve_model("latent-fast").folder)
    limits = pipeline.attack_limits(model, Conditions(label=0, rms=((0.0, -6.0), (300.0, -60.0))))
    assert limits is not None
    length = model.manifest["length"]
    draws = SeedNoise(list(range(4)), (model.codec.latent_channels, model.codec.latent_length(length)))
    asked = Conditions(label=0, rms=((0.0, -4.0), (60.0, -14.0), (400.0, -60.0)), onsets=(0.0,))
    settings = dict(sampler="dpmpp_2m", steps=12, guidance=6.5, control_guidance=2.0)
    held = pipeline.sample(model, draws(), asked, step_noise=draws, **settings)
    original = pipeline.attack_limits
    try:
        pipeline.attack_limits = lambda m, c: None
        again = draws.with_seeds(list(range(4)))
        loose = pipeline.sample(model, again(), asked, step_noise=again, **settings)
    finally:
        pipeline.attack_limits = original
    over_held = (band_levels_db(model.codec, held, 2) - limits).amax(dim=(1, 2))
    over_loose = (band_levels_db(model.codec, loose, 2) - limits).amax(dim=(1, 2))
    assert float(over_held.max()) < 1.0 and float(over_loose.max()) > 3.0, (over_held, over_loose)
