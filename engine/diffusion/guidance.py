"""Classifier-free guidance as a wrapper around any network call, never a branch in a sampler."""

from __future__ import annotations

import math
from typing import Callable, Mapping, Sequence

import torch


def _stack(levels: Sequence[Mapping]) -> dict:
    return {k: torch.cat([level[k] for level in levels]) for k in levels[0]}


def nested_guidance(net: Callable[..., torch.Tensor], levels: Sequence[Mapping],
                    scales: Sequence[float | torch.Tensor]) -> Callable:
    """``net(x, t, cond)`` guided by several condition groups, each with its own scale.

    ``levels[0]`` is the unconditional mapping and each next level adds one group to the one
    before (nothing -> controls -> controls + label); ``scales[i - 1]`` says how far to push
    from level ``i - 1`` towards level ``i``:
    ``e_0 + sum_i s_i (e_i - e_{i-1})`` (InstructPix2Pix's two-scale guidance, and Sketch2Sound's
    for controls beside text). Levels whose weight in that sum is zero are not evaluated, so
    with every scale 1 it is one conditional call and a single group costs two. A scale is a
    number or a tensor that broadcasts against the output (a scale per channel).
    """
    if len(scales) != len(levels) - 1 or not scales:
        raise ValueError(f"{len(levels)} levels need {len(levels) - 1} scales, got {len(scales)}")
    # the sum rewritten per level: weight_i = s_i - s_{i+1}, with s_0 = 1 and s_{n+1} = 0
    padded = [1.0, *scales, 0.0]
    weights = [padded[i] - padded[i + 1] for i in range(len(levels))]
    used = [i for i, w in enumerate(weights) if torch.is_tensor(w) or w != 0.0]
    if len(used) == 1 and not torch.is_tensor(weights[used[0]]) and weights[used[0]] == 1.0:
        only = levels[used[0]]
        return lambda x, t: net(x, t, only)
    stacked = _stack([levels[i] for i in used])

    def guided(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        count = len(used)
        outs = net(torch.cat([x] * count), torch.cat([t] * count), stacked).chunk(count)
        total = None
        for out, i in zip(outs, used):
            w = weights[i].to(out) if torch.is_tensor(weights[i]) else float(weights[i])
            total = out * w if total is None else total + out * w
        return total

    return guided


def classifier_free_guidance(net: Callable[..., torch.Tensor], cond: Mapping, uncond: Mapping,
                             scale: float | torch.Tensor) -> Callable:
    """``net(x, t, cond)`` guided: ``uncond + scale * (cond - uncond)`` in one batched call.

    Works for any output that is affine in the model's prediction (x0, v, eps or the blending
    direction), so it can wrap the raw network before a picture-specific denoiser wrapper.
    ``scale`` is a number, or a tensor that broadcasts against the output (a scale per channel).
    A number 1 is plain conditional sampling and costs one call.
    """
    return nested_guidance(net, [uncond, cond], [scale])


# ----------------------------------------------------------------------------- distilled guidance

GUIDANCE_INPUT = "guidance"
"""The name of the embedding input through which a guidance-distilled network reads its scale."""


def guidance_features(scale: float | torch.Tensor, dim: int, top: float) -> torch.Tensor:
    """``(B, dim)`` smooth features of a guidance scale in ``[0, top]`` for a guidance-distilled
    network (Meng et al. 2023, "On distillation of guided diffusion models": one network call
    gives what the conditional and unconditional calls give mixed by the scale).

    Low-frequency cosines and sines of ``scale / top`` rather than the time embedding's
    high-frequency Fourier features: nearby scales must give nearby outputs, and a student
    trained on scales drawn from a range should interpolate between them, not memorise each."""
    scale = torch.as_tensor(scale, dtype=torch.float32).reshape(-1)
    position = (scale / float(top))[:, None]
    k = torch.arange(1, dim // 2 + 1, dtype=torch.float32)[None, :]
    return torch.cat([torch.cos(math.pi * k * position), torch.sin(math.pi * k * position)], dim=1)
