"""The diffusion core against closed-form denoisers, and the seeded noise it starts from.

For data ~ N(mu, s^2 I) everything is known exactly, so no training is needed:
- VE denoiser: E[x0 | x0 + sigma eps = x] = (s^2 x + sigma^2 mu) / (s^2 + sigma^2);
- its probability-flow ODE keeps (x - mu) / sqrt(s^2 + sigma^2) constant along a path;
- alpha-blending with noise N(0, I): x_a = (1-a) x0 + a x1 ~ N(a mu, ((1-a)^2 + a^2 s^2) I) and
  E[x1 - x0 | x_a] = mu + (a s^2 - (1-a)) / ((1-a)^2 + a^2 s^2) * (x_a - a mu).
"""

from __future__ import annotations

import math

import pytest
import torch

from engine import seeds
from engine.diffusion import (
    SAMPLERS, alphas_uniform, blend_denoiser, blend_model, classifier_free_guidance, invert_iadb, sample_ddim,
    sample_dpmpp_2m, sample_euler_ancestral, sample_iadb, sigmas_cosine, sigmas_karras, v_denoiser,
)

pytestmark = pytest.mark.numeric  # figures that CI checks again under another kernel set

MU = torch.tensor([1.5, -0.5])
S = 0.5


def gaussian_denoiser(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    var = sigma.reshape(-1, 1) ** 2
    return (S**2 * x + var * MU) / (S**2 + var)


def gaussian_blend(x: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    a = alpha.reshape(-1, 1)
    return MU + (a * S**2 - (1 - a)) / ((1 - a) ** 2 + a**2 * S**2) * (x - a * MU)


def exact_ode(x: torch.Tensor, sigma_from: float, sigma_to: float) -> torch.Tensor:
    return MU + (x - MU) * math.sqrt(S**2 + sigma_to**2) / math.sqrt(S**2 + sigma_from**2)


def standard_noise(n: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 2, generator=torch.Generator().manual_seed(seed))


def data(n: int, seed: int = 1) -> torch.Tensor:
    return MU + S * standard_noise(n, seed)


# ----------------------------------------------------------------------------- schedules


@pytest.mark.parametrize("make", [sigmas_karras, sigmas_cosine])
def test_sigma_grids_fall_to_zero(make):
    sigmas = make(12)
    assert sigmas.shape == (13,) and sigmas.dtype == torch.float32
    assert (sigmas[1:] < sigmas[:-1]).all()
    assert sigmas[-1] == 0 and (sigmas[:-1] > 0).all() and torch.isfinite(sigmas).all()


def test_karras_grid_spans_its_range():
    sigmas = sigmas_karras(10, sigma_min=0.02, sigma_max=50.0)
    assert sigmas[0] == pytest.approx(50.0) and sigmas[-2] == pytest.approx(0.02)


def test_alphas_uniform():
    alphas = alphas_uniform(4)
    assert torch.allclose(alphas, torch.tensor([0.0, 0.25, 0.5, 0.75, 1.0]))


# ----------------------------------------------------------------------------- samplers


def test_a_single_point_is_reached_exactly_by_ddim():
    point = torch.tensor([0.3, -2.0])
    sigmas = sigmas_karras(5)
    out = sample_ddim(lambda x, sigma: point.expand_as(x), standard_noise(10) * sigmas[0], sigmas)
    assert torch.allclose(out, point.expand(10, 2))


@pytest.mark.parametrize("sampler, steps", [(sample_ddim, 200), (sample_dpmpp_2m, 30)])
def test_samplers_map_noise_to_the_data_distribution(sampler, steps):
    sigmas = sigmas_karras(steps)
    out = sampler(gaussian_denoiser, standard_noise(20000) * sigmas[0], sigmas)
    assert torch.allclose(out.mean(0), MU, atol=0.03)
    assert torch.allclose(out.std(0), torch.full((2,), S), rtol=0.04)


def test_dpmpp_2m_is_closer_to_the_exact_ode_than_ddim():
    sigmas = sigmas_karras(10)
    x = standard_noise(2000) * sigmas[0]
    exact = exact_ode(x, sigmas[0].item(), 0.0)
    ddim_error = (sample_ddim(gaussian_denoiser, x, sigmas) - exact).abs().mean()
    dpm_error = (sample_dpmpp_2m(gaussian_denoiser, x, sigmas) - exact).abs().mean()
    assert dpm_error < 0.5 * ddim_error


def test_ddim_inversion_then_sampling_reconstructs():
    x0 = data(500)
    errors = []
    for steps in (20, 80):
        sigmas = sigmas_karras(steps, sigma_min=0.002)
        noise = sample_ddim(gaussian_denoiser, x0, sigmas[:-1].flip(0))  # increasing grid: inversion
        assert noise.std() / sigmas[0] == pytest.approx(1.0, abs=0.15)
        errors.append((sample_ddim(gaussian_denoiser, noise, sigmas) - x0).abs().mean().item())
    assert errors[1] < 0.03 and errors[1] < 0.5 * errors[0]


def test_iadb_maps_noise_to_data_and_inverts():
    x0 = data(500)
    out = sample_iadb(gaussian_blend, standard_noise(20000), alphas_uniform(100))
    assert torch.allclose(out.mean(0), MU, atol=0.03)
    assert torch.allclose(out.std(0), torch.full((2,), S), rtol=0.04)
    errors = []
    for steps in (10, 80):
        alphas = alphas_uniform(steps)
        noise = invert_iadb(gaussian_blend, x0, alphas)
        errors.append((sample_iadb(gaussian_blend, noise, alphas) - x0).abs().mean().item())
    assert errors[1] < 0.02 and errors[1] < 0.25 * errors[0]


def test_fixed_point_refinement_makes_iadb_inversion_nearly_exact():
    """Each refinement iteration shrinks the round-trip error by about step x Lipschitz(d)."""
    x0, alphas = data(500), alphas_uniform(20)
    errors = [(sample_iadb(gaussian_blend, invert_iadb(gaussian_blend, x0, alphas, refine=k), alphas) - x0)
              .abs().mean().item() for k in (0, 1, 2, 4)]
    assert errors[0] > 1e-3 and all(b < a / 3 for a, b in zip(errors, errors[1:])), errors
    assert errors[-1] < 1e-5, errors


def test_euler_ancestral_samples_the_data_distribution_and_follows_its_noise():
    """With an exact denoiser the stochastic sampler reaches the data's mean and spread too (it is
    first order: at 16 steps it keeps only ~0.7 of this narrow Gaussian's spread, at 400 all of it);
    its result is fixed by the start and the step noises, and other step noises give another sample."""
    sigmas = sigmas_karras(400, sigma_min=0.002)
    out = sample_euler_ancestral(gaussian_denoiser, standard_noise(20000) * sigmas[0], sigmas)
    assert torch.allclose(out.mean(0), MU, atol=0.03)
    assert torch.allclose(out.std(0), torch.full((2,), S), rtol=0.04)
    sigmas = sigmas_karras(16)
    x = standard_noise(64) * sigmas[0]
    draws = lambda seed: seeds.SeedNoise([seed], (64, 2))  # noqa: E731
    run = lambda seed: sample_euler_ancestral(gaussian_denoiser, x, sigmas, noise=lambda d=draws(seed): d()[0])  # noqa: E731
    assert torch.equal(run(1), run(1)) and not torch.allclose(run(1), run(2), atol=1e-3)


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_samplers_are_deterministic(name):
    sigmas = sigmas_karras(6)
    x = standard_noise(64) * sigmas[0]
    assert torch.equal(SAMPLERS[name](gaussian_denoiser, x, sigmas), SAMPLERS[name](gaussian_denoiser, x, sigmas))


@pytest.mark.parametrize("sampler, grid", [
    (sample_ddim, sigmas_karras(7)), (sample_dpmpp_2m, sigmas_karras(7)), (sample_euler_ancestral, sigmas_karras(7)),
    (sample_iadb, alphas_uniform(7)), (invert_iadb, alphas_uniform(7)),
])
def test_callback_once_per_step_with_the_state_after_it(sampler, grid):
    model = gaussian_blend if "iadb" in sampler.__name__ else gaussian_denoiser
    calls = []
    out = sampler(model, standard_noise(8), grid, callback=calls.append)
    assert [c["i"] for c in calls] == list(range(7))
    assert all({"i", "sigma", "x", "denoised"} <= set(c) for c in calls)
    assert torch.equal(calls[-1]["x"], out)
    if sampler is not invert_iadb:
        assert [c["sigma"].item() for c in calls] == grid[:-1].tolist()
        assert all(c["denoised"].shape == out.shape for c in calls)


# ----------------------------------------------------------------------------- model wrappers


def test_v_denoiser_recovers_x0():
    x0, eps = standard_noise(4, 1), standard_noise(4, 2)
    sigma = torch.tensor([0.1, 1.0, 3.0, 20.0])
    seen = {}

    def net(x_vp, t, label):
        alpha, sigma_vp = torch.cos(t * math.pi / 2)[:, None], torch.sin(t * math.pi / 2)[:, None]
        assert torch.allclose(x_vp, alpha * x0 + sigma_vp * eps, atol=1e-5)  # VP picture of the input
        seen["label"] = label
        return alpha * eps - sigma_vp * x0  # the exact v

    out = v_denoiser(net, label=7)(x0 + sigma[:, None] * eps, sigma)
    assert torch.allclose(out, x0, atol=1e-4) and seen["label"] == 7


def test_blend_denoiser_and_model_recover_x0():
    x0, eps = standard_noise(4, 1), standard_noise(4, 2)
    sigma = torch.tensor([0.1, 1.0, 3.0, 20.0])

    def net(x_alpha, alpha, label):
        a = alpha[:, None]
        assert torch.allclose(x_alpha, a * x0 + (1 - a) * eps, atol=1e-5)  # blend picture of the input
        return (x0 - eps) * label  # the exact direction data - noise (label 1)

    out = blend_denoiser(net, label=1.0)(x0 + sigma[:, None] * eps, sigma)
    assert torch.allclose(out, x0, atol=1e-4)
    alpha = torch.full((4,), 0.3)
    assert torch.allclose(blend_model(net, label=1.0)(0.3 * x0 + 0.7 * eps, alpha), x0 - eps)


# ----------------------------------------------------------------------------- guidance


class CountingNet:
    def __init__(self):
        self.batches = []

    def __call__(self, x, t, cond):
        self.batches.append(x.shape[0])
        return x * cond["label"][:, None] + t[:, None]


@pytest.mark.parametrize("scale", [0.0, 1.0, 3.5])
def test_classifier_free_guidance(scale):
    x, t = standard_noise(5), torch.rand(5)
    cond, uncond = {"label": torch.full((5,), 2.0)}, {"label": torch.zeros(5)}
    reference = CountingNet()
    conditional, unconditional = reference(x, t, cond), reference(x, t, uncond)
    net = CountingNet()
    out = classifier_free_guidance(net, cond, uncond, scale)(x, t)
    assert net.batches == ([5] if scale in (0.0, 1.0) else [10])  # one call (only what is needed), batched when guiding
    expected = {0.0: unconditional, 1.0: conditional}.get(scale, unconditional + scale * (conditional - unconditional))
    assert torch.allclose(out, expected, atol=1e-5)


# ----------------------------------------------------------------------------- seeds


def test_noise_is_deterministic_per_seed():
    state = torch.get_rng_state()
    a = seeds.noise(42, (3, 100))
    assert torch.equal(a, seeds.noise(42, (3, 100)))
    assert not torch.equal(a, seeds.noise(43, (3, 100)))
    assert a.dtype == torch.float32 and a.shape == (3, 100)
    assert torch.equal(state, torch.get_rng_state())  # the global RNG is left alone
    with pytest.raises(ValueError):
        seeds.noise(-1, (3,))


def test_slerp_keeps_the_norm_where_lerp_shrinks_it():
    a, b = seeds.noise(1, (1, 4096)), seeds.noise(2, (1, 4096))
    assert torch.allclose(seeds.slerp(a, b, 0.0), a, atol=1e-5)
    assert torch.allclose(seeds.slerp(a, b, 1.0), b, atol=1e-5)
    middle = seeds.slerp(a, b, 0.5)
    mean_norm = (a.norm() + b.norm()) / 2
    assert middle.norm() == pytest.approx(mean_norm.item(), rel=1e-4)
    assert torch.lerp(a, b, 0.5).norm() < 0.8 * mean_norm
    with pytest.raises(ValueError):
        seeds.slerp(a, seeds.noise(2, (1, 4095)), 0.5)


def test_seed_noise_starts_with_each_seeds_noise_and_morphs():
    shape = (2, 256)
    assert torch.equal(seeds.SeedNoise([3, 4], shape)(), torch.stack([seeds.noise(3, shape), seeds.noise(4, shape)]))
    assert torch.equal(seeds.SeedNoise([3], shape, [9], morph=0.0)(), seeds.noise(3, shape)[None])
    assert torch.allclose(seeds.SeedNoise([3], shape, [9], morph=1.0)(), seeds.noise(9, shape)[None], atol=1e-5)
    with pytest.raises(ValueError):
        seeds.SeedNoise([-1], shape)
    with pytest.raises(ValueError):
        seeds.SeedNoise([1, 2], shape, [3])


def test_seed_noise_later_draws_belong_to_each_seed_alone():
    """A sound's step noises depend on its own seed only: not on the batch, and a shorter sound's
    draws are the start of a longer one's (the studio cuts noise drawn at the full length)."""
    shape = (2, 64)
    alone, batch = seeds.SeedNoise([7], shape), seeds.SeedNoise([5, 7], shape)
    short = seeds.SeedNoise([7], shape, frames=16)
    for draw in range(3):
        a, b, c = alone(), batch(), short()
        assert torch.equal(a[0], b[1]) and torch.equal(a[..., :16], c)
        assert draw == 0 or not torch.equal(a, first)
        first = a if draw == 0 else first
