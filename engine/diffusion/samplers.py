"""Samplers: plain functions over a denoiser, in the shape k-diffusion made standard.

``denoiser(x, sigma) -> x0`` takes a batch ``x`` at noise level ``sigma`` (a tensor with one
level per batch item) and returns its clean estimate; conditioning, guidance and the model's own
parameterisation live in wrappers (``denoisers.py``, ``guidance.py``), never in here. Each
sampler starts from ``x`` already at ``sigmas[0]`` (``noise * sigmas[0]``) and walks the grid.
``callback`` receives ``{"i", "sigma", "x", "denoised"}`` after every step, which is how the
studio streams previews. All samplers are deterministic for a given starting ``x``; the ancestral
one also takes the fresh noise it adds at each step from a ``noise()`` the caller seeds.
"""

from __future__ import annotations

from typing import Callable

import torch
from tqdm.auto import tqdm

Denoiser = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
Callback = Callable[[dict], None] | None


def _levels(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    return sigma.to(x.device, torch.float32).expand(x.shape[0])


@torch.no_grad()
def sample_ddim(denoiser: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, callback: Callback = None,
                disable: bool | None = True) -> torch.Tensor:
    """Deterministic DDIM (eta=0): the first-order ODE step, exact for a perfect denoiser.

    In the VE picture DDIM is Euler on dx/dsigma = (x - x0)/sigma. Run over an increasing grid
    (starting above 0) it is DDIM inversion: data -> noise.
    """
    for i in tqdm(range(len(sigmas) - 1), disable=disable):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        denoised = denoiser(x, _levels(x, sigma))
        x = denoised + (x - denoised) * (sigma_next / sigma)
        if callback is not None:
            callback({"i": i, "sigma": sigma, "x": x, "denoised": denoised})
    return x


@torch.no_grad()
def sample_dpmpp_2m(denoiser: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, callback: Callback = None,
                    disable: bool | None = True) -> torch.Tensor:
    """DPM-Solver++(2M) (Lu et al. 2022): second order from the previous step's estimate.

    One model call per step like DDIM, but the linear multistep correction removes most of the
    first-order error, so 10-20 steps sound like 50+ DDIM steps.
    """
    log_sigma = lambda s: s.log()  # noqa: E731 - tiny local alias, reads like the paper
    old_denoised = None
    for i in tqdm(range(len(sigmas) - 1), disable=disable):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        denoised = denoiser(x, _levels(x, sigma))
        if sigma_next == 0:
            x = denoised
        else:
            h = log_sigma(sigma) - log_sigma(sigma_next)
            if old_denoised is None:
                corrected = denoised
            else:
                h_last = log_sigma(sigmas[i - 1]) - log_sigma(sigma)
                r = h_last / h
                corrected = (1 + 1 / (2 * r)) * denoised - (1 / (2 * r)) * old_denoised
            x = (sigma_next / sigma) * x - torch.expm1(-h) * corrected
        old_denoised = denoised
        if callback is not None:
            callback({"i": i, "sigma": sigma, "x": x, "denoised": denoised})
    return x


@torch.no_grad()
def sample_euler_ancestral(denoiser: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, callback: Callback = None,
                           disable: bool | None = True, noise: Callable[[], torch.Tensor] | None = None,
                           eta: float = 1.0) -> torch.Tensor:
    """Euler ancestral (k-diffusion's ``euler_a``): each step goes by DDIM below the next level and
    adds fresh noise back up to it (``eta`` = 1: the DDPM amount).

    Why a stochastic sampler: the ODE samplers carry every error of an imperfect denoiser to the
    end, and a small model's errors are smooth ones, so its sounds come out duller than the data
    (session 6: the latent model's snares kept about 0.7 of the real latents' energy in the
    learned channels with ``dpmpp_2m``, and sounded like kicks). The fresh noise lets each later
    step correct the one before; see docs/latent.md, "Session 6 results".

    ``noise()`` returns the next unit noise shaped like ``x``. The studio draws it from each
    sound's own seed (:class:`engine.seeds.SeedNoise`), so a sound stays reproducible and a batch
    does not change it; without one, a generator seeded 0 makes the run deterministic all the same.
    """
    if noise is None:
        generator = torch.Generator().manual_seed(0)
        noise = lambda: torch.randn(x.shape, generator=generator).to(x.device, x.dtype)  # noqa: E731
    for i in tqdm(range(len(sigmas) - 1), disable=disable):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        denoised = denoiser(x, _levels(x, sigma))
        if sigma_next <= 0:
            x = denoised
        else:
            up = (sigma_next ** 2 * (sigma ** 2 - sigma_next ** 2) / sigma ** 2).sqrt()
            up = torch.clamp(eta * up, max=sigma_next)
            down = (sigma_next ** 2 - up ** 2).sqrt()
            x = denoised + (x - denoised) * (down / sigma) + noise() * up
        if callback is not None:
            callback({"i": i, "sigma": sigma, "x": x, "denoised": denoised})
    return x


BlendModel = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@torch.no_grad()
def sample_iadb(blend_model: BlendModel, x: torch.Tensor, alphas: torch.Tensor, callback: Callback = None,
                disable: bool | None = True) -> torch.Tensor:
    """Iterative alpha-deblending (Heitz, Belcour, Chambon 2023), from noise (alpha=0) to data.

    ``blend_model(x_alpha, alpha) -> d`` predicts ``data - noise``; each step moves the blend by
    ``(alpha_next - alpha) * d``. As in the other samplers the callback gets ``x`` after the step
    (at ``alphas[i + 1]``), ``sigma`` = the alpha the model saw and the clean estimate from there,
    ``x + (1-alpha) d``.
    """
    for i in tqdm(range(len(alphas) - 1), disable=disable):
        alpha, alpha_next = alphas[i], alphas[i + 1]
        d = blend_model(x, _levels(x, alpha))
        denoised = x + (1 - alpha) * d
        x = x + (alpha_next - alpha) * d
        if callback is not None:
            callback({"i": i, "sigma": alpha, "x": x, "denoised": denoised})
    return x


@torch.no_grad()
def invert_iadb(blend_model: BlendModel, x: torch.Tensor, alphas: torch.Tensor, callback: Callback = None,
                disable: bool | None = True, refine: int = 0) -> torch.Tensor:
    """Deterministic alpha-blending inversion: data (alpha=1) back to the noise that makes it.

    The same ODE as :func:`sample_iadb` walked backwards. With ``refine=0`` the direction is
    evaluated at the point being left, so sampling the result over the same grid reconstructs the
    data up to a first-order discretisation error. ``refine=k`` then solves each step's own
    equation, ``x_prev + (alpha - alpha_prev) d(x_prev, alpha_prev) = x``, by ``k`` fixed-point
    iterations (as in fixed-point / "ReNoise" inversion of DDIM), so that :func:`sample_iadb`'s
    forward step from ``x_prev`` lands back on ``x``: the reconstruction error then shrinks
    geometrically with ``k`` (by about ``step * Lipschitz(d)`` per iteration) instead of with the
    number of steps, at ``1 + k`` network evaluations per step.
    """
    for i in tqdm(range(len(alphas) - 1, 0, -1), disable=disable):
        alpha, alpha_prev = alphas[i], alphas[i - 1]
        d = blend_model(x, _levels(x, alpha))
        x_prev = x - (alpha - alpha_prev) * d
        for _ in range(refine):
            x_prev = x - (alpha - alpha_prev) * blend_model(x_prev, _levels(x_prev, alpha_prev))
        x = x_prev
        if callback is not None:
            callback({"i": len(alphas) - 1 - i, "sigma": alpha, "x": x, "denoised": x})
    return x


SAMPLERS: dict[str, Callable] = {"ddim": sample_ddim, "dpmpp_2m": sample_dpmpp_2m, "euler_a": sample_euler_ancestral}
