"""Seeded noise that is the same on every device, and morphing between two seeds' noises.

The noise for a seed is always drawn on the CPU with its own ``torch.Generator`` and then moved,
because CUDA and CPU generators give different numbers for the same seed: a sound found on a
laptop must come out identical on a GPU box. Nothing here touches the global RNG
(:func:`seeded_init` forks it and gives it back as it was).
"""

from __future__ import annotations

import contextlib
import random

import numpy as np
import torch

MAX_SEED = 2**63 - 1
REDRAWN_FROM = 10**9  # redrawn seeds have ten digits


def redrawn_seed(seed: int, attempt: int) -> int:
    """The seed a sound of ``seed`` is drawn again from, the ``attempt``-th time (1, 2, ...): a hash of
    the two (numpy's ``SeedSequence``, the same on every platform), a ten-digit number, so it is a
    seed like any other (short enough to read in a file name), and a recipe that records it replays
    the redrawn sound by itself. Why not ``seed + 1``: that is the next sound of the user's batch."""
    if attempt < 1:
        raise ValueError(f"a redraw is attempt 1 or later, got {attempt}")
    state = np.random.SeedSequence([int(seed), int(attempt)]).generate_state(1, np.uint64)
    return REDRAWN_FROM + int(state[0]) % (9 * REDRAWN_FROM)


DECK_ORDER_SEED = 0
"""The fixed shuffle :func:`deal` lays a label's kit hits out in (any seed: it only has to be one)."""


def deal(seed: int, count: int) -> int:
    """Which of ``count`` kit hits (or clip envelopes, or variants' places) seed ``seed`` draws: place ``seed mod count`` of one fixed
    shuffle of them, so any ``count`` consecutive seeds draw every hit once, as cards dealt from a
    shuffled deck, and neighbouring seeds draw unrelated hits (the bank lists a kit's hits together).

    Why not an independent draw per seed: 64 seeds drawing from 72 snare hits each at random take
    only 41-46 different hits (one in three sounds repeats another's shape), and a producer scrubbing
    seeds meets the same hit again within a few clicks. Dealt, `latent-fast`'s 64 snares at seed
    sets 1000-4000 spread .93-1.07 of the training snares' instead of .82-.99
    (``docs/design-notes.md``, "Kit hits dealt as a deck")."""
    if count < 1:
        raise ValueError(f"a deck of {count} kit hits deals nothing")
    order = list(range(count))
    random.Random(DECK_ORDER_SEED).shuffle(order)
    return order[int(seed) % count]


def noise(seed: int, shape: tuple[int, ...], device: torch.device | str = "cpu") -> torch.Tensor:
    """Standard normal float32 noise for ``seed``: bit-identical for a given seed and shape (the
    first draw of :class:`SeedNoise`, so a sound's starting noise is this by construction)."""
    return SeedNoise([seed], shape, device=device)()[0]


@contextlib.contextmanager
def seeded_init(seed: int):
    """Draw a new network's initial weights (anything built inside) from ``seed`` without touching
    the global generator: the same command trains the same model, whatever ran before it in the
    process (a test of a short run's loss fell or did not fall depending on that)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def slerp(a: torch.Tensor, b: torch.Tensor, t: float) -> torch.Tensor:
    """Spherical interpolation from ``a`` (t=0) to ``b`` (t=1), treating each tensor as one vector.

    Linear interpolation of two Gaussian noises shrinks the norm in the middle (two independent
    noises are nearly orthogonal, so the midpoint has ~0.71 of their norm) and the model then
    renders a quieter, duller sound. Slerp follows the great circle, and the norm is interpolated
    linearly so the result keeps the statistics of a noise draw all the way along.
    """
    if a.shape != b.shape:
        raise ValueError(f"cannot morph noises of shapes {tuple(a.shape)} and {tuple(b.shape)}")
    t = float(t)
    a64, b64 = a.double().flatten(), b.double().flatten()
    norm_a, norm_b = a64.norm(), b64.norm()
    unit_a, unit_b = a64 / norm_a, b64 / norm_b
    omega = torch.arccos(torch.clamp(torch.dot(unit_a, unit_b), -1.0, 1.0))
    if omega.abs() < 1e-6:  # (anti)parallel enough: fall back to lerp of the directions
        direction = torch.lerp(unit_a, unit_b, t)
    else:
        direction = (torch.sin((1 - t) * omega) * unit_a + torch.sin(t * omega) * unit_b) / torch.sin(omega)
    direction = direction / direction.norm()
    norm = torch.lerp(norm_a, norm_b, t)
    return (direction * norm).reshape(a.shape).to(a.dtype)


class SeedNoise:
    """The noise of a batch of sounds, one generator per sound's seed, called once per draw.

    The first draw is each seed's starting noise (what :func:`noise` returns, or its slerp towards the
    second seed's by ``morph``); every later draw is the fresh noise an ancestral sampler adds at a step.
    Why one generator per sound: a sound must not change with the batch it was made in, nor with
    its length (each draw is made at ``shape`` and cut to ``frames``, as the studio cuts a longer
    noise). With ``seeds_b`` and ``morph`` every draw is the slerp of the two seeds' draws, so a
    morph between two seeds stays smooth with a stochastic sampler too. State is needed here
    (the generators' positions), hence a class.
    """

    def __init__(self, seeds: list[int], shape: tuple[int, ...], seeds_b: list[int] | None = None,
                 morph: float = 0.0, frames: int | None = None, device: torch.device | str = "cpu"):
        for seed in list(seeds) + list(seeds_b or []):
            if not 0 <= int(seed) <= MAX_SEED:
                raise ValueError(f"seed must be in [0, {MAX_SEED}], got {seed}")
        if seeds_b is not None and len(seeds_b) != len(seeds):
            raise ValueError(f"{len(seeds)} seeds but {len(seeds_b)} second seeds")
        self.shape, self.morph, self.frames, self.device = tuple(shape), float(morph), frames, device
        self.seeds, self.seeds_b = [int(s) for s in seeds], None if seeds_b is None else [int(s) for s in seeds_b]
        self.generators = [torch.Generator(device="cpu").manual_seed(int(s)) for s in seeds]
        self.generators_b = [torch.Generator(device="cpu").manual_seed(int(s)) for s in seeds_b] \
            if seeds_b is not None and self.morph > 0.0 else None

    def with_seeds(self, seeds: list[int], seeds_b: list[int] | None = None) -> "SeedNoise":
        """Fresh noise for other seeds, drawn as this is (shape, morph, length, device)."""
        return SeedNoise(seeds, self.shape, seeds_b, self.morph, self.frames, self.device)

    def dealing(self) -> tuple[list[int], list[int] | None, float]:
        """``(seeds, seeds_b or None, morph)``: what a codec deals each sound's clip envelope by
        (:func:`deal`; a morph blends the two seeds' clips, :meth:`engine.nets.pqmf.BandCodec.envelope_for`)."""
        return list(self.seeds), None if self.generators_b is None else list(self.seeds_b), self.morph

    def _draw(self, generator: torch.Generator) -> torch.Tensor:
        return torch.randn(self.shape, generator=generator, dtype=torch.float32)

    def __call__(self) -> torch.Tensor:
        """``(len(seeds), *shape)``, cut to ``frames`` in the last dimension, on ``device``."""
        draws = [self._draw(g) for g in self.generators]
        if self.generators_b is not None:
            draws = [slerp(a, self._draw(g), self.morph) for a, g in zip(draws, self.generators_b)]
        out = torch.stack(draws)
        if self.frames is not None:
            out = out[..., :self.frames]
        return out.contiguous().to(self.device)
