"""Wrappers that turn a network trained in its own picture into a VE denoiser ``(x, sigma) -> x0``.

A network is called as ``net(x, t, **cond)`` where ``t`` is that picture's natural time
(cosine time for the v-objective, alpha for blending). Keeping the conversions here means the
samplers stay ignorant of how a model was trained, and a model of any family can use any sampler.
"""

from __future__ import annotations

from typing import Callable

import torch

from .schedules import blend_alpha_to_sigma, blend_sigma_to_alpha, cosine_sigma_to_t

Net = Callable[..., torch.Tensor]
Denoise = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (x, noise level) -> clean estimate
Project = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (clean estimate, sigma) -> moved estimate


def _per_item(value: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return value.reshape(-1, *([1] * (x.ndim - 1)))


def v_denoiser(net: Net, **cond) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """VE denoiser for a v-objective network on the cosine schedule (tiny-audio-diffusion).

    x_ve = x_vp / alpha; the network sees the variance-preserving input and predicts
    v = alpha * eps - sigma_vp * x0, so x0 = alpha * x_vp - sigma_vp * v.
    """

    def denoise(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        s = _per_item(sigma, x)
        alpha, sigma_vp = 1 / torch.sqrt(1 + s**2), s / torch.sqrt(1 + s**2)
        x_vp = x * alpha
        v = net(x_vp, cosine_sigma_to_t(sigma), **cond).to(x.dtype)
        return alpha * x_vp - sigma_vp * v

    return denoise


def blend_model(net: Net, **cond) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The network itself with conditioning bound: ``(x_alpha, alpha) -> data - noise``."""
    return lambda x, alpha: net(x, alpha, **cond).to(x.dtype)


def blend_denoiser(net: Net, **cond) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """VE denoiser for an alpha-blending network: x_alpha = alpha * x_ve, x0 = x_alpha + (1-alpha) d."""

    def denoise(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        alpha = blend_sigma_to_alpha(sigma)
        a = _per_item(alpha, x)
        x_alpha = x * a
        return x_alpha + (1 - a) * net(x_alpha, alpha, **cond).to(x.dtype)

    return denoise


def projected(denoise: Denoise, project: Project) -> Denoise:
    """A denoiser whose clean estimate is moved by ``project(estimate, sigma)`` (onto a drawn curve,
    say) before the sampler uses it, so the remaining steps start from there (``engine.steering``)."""
    return lambda x, sigma: project(denoise(x, sigma), sigma)


def projected_blend(model: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], project: Project
                    ) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """:func:`projected` for a blending model ``(x_alpha, alpha) -> data - noise`` (the native
    ``iadb`` sampler): its clean estimate is ``x_alpha + (1 - alpha) d``, so moving the estimate
    by ``delta`` moves ``d`` by ``delta / (1 - alpha)``; ``project`` is told the VE noise level."""

    def step(x: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
        d = model(x, alpha)
        rest = _per_item((1 - alpha).clamp_min(1e-4), x)
        estimate = x + rest * d
        return d + (project(estimate, blend_alpha_to_sigma(alpha.clamp_min(1e-8))) - estimate) / rest

    return step
