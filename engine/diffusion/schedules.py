"""Noise schedules: tiny pure functions that return 1-D tensors of noise levels.

Every sampler here works in the variance-exploding picture of k-diffusion: a noisy sample is
``x = x0 + sigma * eps`` and a denoiser maps ``(x, sigma) -> x0``. A model trained in another
picture (v-objective on a cosine schedule, alpha-blending) is wrapped once (see
``denoisers.py``) so that all samplers serve all models. Grids run from the highest noise to 0.
"""

from __future__ import annotations

import math

import torch


def cosine_t_to_sigma(t: torch.Tensor) -> torch.Tensor:
    """Cosine schedule (alpha=cos(t*pi/2), sigma_vp=sin(t*pi/2)) as a VE sigma = tan(t*pi/2)."""
    return torch.tan(t * math.pi / 2)


def cosine_sigma_to_t(sigma: torch.Tensor) -> torch.Tensor:
    return torch.atan(sigma) * 2 / math.pi


def blend_alpha_to_sigma(alpha: torch.Tensor) -> torch.Tensor:
    """Alpha-blending x_a = (1-a)*noise + a*data equals a*(data + (1-a)/a * noise)."""
    return (1 - alpha) / alpha


def blend_sigma_to_alpha(sigma: torch.Tensor) -> torch.Tensor:
    return 1 / (1 + sigma)


def sigmas_cosine(steps: int, t_max: float = 0.999, t_min: float = 0.0) -> torch.Tensor:
    """tiny-audio-diffusion's grid: t uniform in [t_min, t_max], mapped through the cosine schedule.

    The last level is 0 (a clean estimate). t_max < 1 keeps sigma finite.
    """
    t = torch.linspace(t_max, t_min, steps + 1, dtype=torch.float64)
    return cosine_t_to_sigma(t).float()


def sigmas_karras(steps: int, sigma_min: float = 0.01, sigma_max: float = 80.0, rho: float = 7.0) -> torch.Tensor:
    """Karras et al. (2022) grid: uniform in sigma^(1/rho), dense near the data, then a final 0."""
    ramp = torch.linspace(0, 1, steps, dtype=torch.float64)
    min_inv, max_inv = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    sigmas = (max_inv + ramp * (min_inv - max_inv)) ** rho
    return torch.cat([sigmas, sigmas.new_zeros(1)]).float()


def alphas_uniform(steps: int) -> torch.Tensor:
    """Iterative alpha-(de)blending's grid: alpha uniform from 0 (noise) to 1 (data)."""
    return torch.linspace(0, 1, steps + 1, dtype=torch.float32)
