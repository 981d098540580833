"""Classifier-free guidance as a wrapper around any network call, never a branch in a sampler."""

from __future__ import annotations

from typing import Callable

import torch


def _stack(cond: dict, uncond: dict) -> dict:
    return {k: torch.cat([cond[k], uncond[k]]) for k in cond}


def classifier_free_guidance(net: Callable[..., torch.Tensor], cond: dict, uncond: dict,
                             scale: float | torch.Tensor):
    """``net(x, t, **cond)`` guided: ``uncond + scale * (cond - uncond)`` in one batched call.

    Works for any output that is affine in the model's prediction (x0, v, eps or the blending
    direction), so it can wrap the raw network before a picture-specific denoiser wrapper.
    ``scale`` is a number, or a tensor that broadcasts against the output (a scale per channel).
    A number 1 is plain conditional sampling and costs one call.
    """
    if not torch.is_tensor(scale) and scale == 1.0:
        return lambda x, t: net(x, t, **cond)

    def guided(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        both = net(torch.cat([x, x]), torch.cat([t, t]), **_stack(cond, uncond))
        conditional, unconditional = both.chunk(2)
        weight = scale.to(conditional) if torch.is_tensor(scale) else float(scale)
        return torch.lerp(unconditional, conditional, weight)

    return guided
