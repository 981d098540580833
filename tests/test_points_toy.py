"""The 2D alpha-(de)blending demo: a brief training run must really learn the spiral."""

from __future__ import annotations

import pytest
import torch

from engine.toys import points

pytestmark = pytest.mark.numeric  # figures that CI checks again under another kernel set

N = 1000


@pytest.fixture(scope="module")
def net() -> points.PointsNet:
    return points.train(steps=800, seed=0)  # ~2 s on 2 cores


@pytest.fixture(scope="module")
def target() -> torch.Tensor:
    return points.spiral(N, torch.Generator().manual_seed(1))


def test_spiral_is_deterministic_for_a_generator():
    a = points.spiral(50, torch.Generator().manual_seed(3))
    b = points.spiral(50, torch.Generator().manual_seed(3))
    c = points.spiral(50, torch.Generator().manual_seed(4))
    assert a.shape == (50, 2)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.norm(dim=1).max() < 1.8


def test_net_predicts_a_direction_per_point():
    net = points.PointsNet(hidden=16, depth=2, emb_dim=8)
    out = net(torch.randn(7, 2), torch.rand(7))
    assert out.shape == (7, 2) and torch.isfinite(out).all()
    # the alpha embedding joins every layer: first layer sees [x, emb], later ones [h, emb]
    assert [layer.in_features for layer in net.layers] == [2 + 8, 16 + 8]
    assert net.out.in_features == 16 + 8


def test_training_is_deterministic_for_a_seed():
    a, b = points.train(steps=5, batch=32, seed=7), points.train(steps=5, batch=32, seed=7)
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.equal(p, q)


def test_energy_distance():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(300, 2, generator=g), torch.randn(300, 2, generator=g)
    assert points.energy_distance(a, a).abs() < 1e-9
    assert torch.isclose(points.energy_distance(a, b), points.energy_distance(b, a))
    assert points.energy_distance(a, b) < 0.05 < points.energy_distance(a, b + 1.0)


def test_samples_land_on_the_spiral(net, target):
    start = points.seeds.noise(0, (N, 2))
    samples = points.sample(net, N, steps=50, noise=start)
    before = points.energy_distance(start, target)
    after = points.energy_distance(samples, target)
    assert after < 0.2 * before, (before.item(), after.item())


def test_sample_uses_the_seed(net):
    a, b = points.sample(net, 20, steps=5, seed=3), points.sample(net, 20, steps=5, seed=3)
    assert torch.equal(a, b)
    assert not torch.equal(a, points.sample(net, 20, steps=5, seed=4))


def test_invert_then_sample_reconstructs(net, target):
    errors = []
    for steps in (10, 40):
        noise = points.invert(net, target, steps)
        errors.append((points.sample(net, N, steps, noise=noise) - target).norm(dim=1).mean().item())
    assert errors[1] < 0.05
    assert errors[1] < errors[0]
    # and the inverted cloud looks like noise again, not like the spiral
    noise = points.invert(net, target, 40)
    assert points.energy_distance(noise, points.seeds.noise(5, (N, 2))) < 0.3 * points.energy_distance(
        target, points.seeds.noise(5, (N, 2)))


def test_callback_collects_intermediate_states(net):
    alphas = points.alphas_uniform(8)
    start = points.seeds.noise(0, (30, 2))
    callback, states = points.states_at(alphas, start, [0.0, 0.5, 1.0])
    final = points.sample(net, 30, steps=8, noise=start, callback=callback)
    assert sorted(states) == [0.0, 0.5, 1.0]
    assert torch.equal(states[0.0], start) and torch.equal(states[1.0], final)


def test_cli_writes_a_png(tmp_path, capsys):
    out = tmp_path / "fig" / "points.png"
    assert points.main(["--out", str(out), "--steps", "8", "--train-steps", "30", "--points", "200"]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(out.parent.glob("*.tmp*"))
    printed = dict(line.split(": ", 1) for line in capsys.readouterr().out.strip().splitlines())
    for name in ("energy_noise_vs_target", "energy_samples_vs_target", "reconstruction_error"):
        float(printed[name])
