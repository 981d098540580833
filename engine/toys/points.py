"""2D point-cloud demo of iterative alpha-(de)blending (Heitz, Belcour, Chambon 2023).

A tiny MLP learns to turn a Gaussian cloud into a spiral in a few seconds on a CPU, with the same
sampler and inverter the audio models use (:func:`engine.diffusion.sample_iadb`,
:func:`engine.diffusion.invert_iadb`), so the whole alpha-blending picture can be seen at once:

    x_alpha = (1 - alpha) * x0 + alpha * x1,   x0 ~ N(0, I) (noise),   x1 ~ spiral (data)
    net(x_alpha, alpha) ~= E[x1 - x0 | x_alpha]          (the IADB objective)

    python -m engine.toys.points --out docs/iadb_points.png

draws the cloud at several alphas on its way from noise to the spiral, then inverts the spiral
back to noise and re-samples it, and prints energy distances and the reconstruction error.
"""

from __future__ import annotations

import argparse
import logging
import math
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from engine import seeds
from engine.diffusion import alphas_uniform, invert_iadb, sample_iadb

log = logging.getLogger(__name__)

Callback = Callable[[dict], None] | None


# ----------------------------------------------------------------------------- target cloud


def spiral(n: int, generator: torch.Generator | None = None, turns: float = 1.5, start: float = 0.25,
           noise: float = 0.03, return_t: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """``n`` points on a noisy Archimedean spiral, shape ``(n, 2)``, within radius 1.6 of the origin.

    The arm parameter ``t`` in [start, 1] sets both the radius (``1.6 t``) and the angle
    (``2 pi turns t``); it is drawn with density proportional to ``t`` so that points are spread
    evenly along the arm's length. The arm starts at ``start`` rather than at the centre, where a
    tightly wound core is more than a few seconds of training can resolve. Deterministic given
    ``generator``. With ``return_t`` the arm parameter comes back too (handy to colour the points).
    """
    u = torch.rand(n, generator=generator)
    t = (start**2 + (1 - start**2) * u).sqrt()
    angle = 2 * math.pi * turns * t
    radius = 1.6 * t
    points = torch.stack([radius * angle.cos(), radius * angle.sin()], dim=1)
    points = points + noise * torch.randn(n, 2, generator=generator)
    return (points, t) if return_t else points


# ----------------------------------------------------------------------------- network


@contextmanager
def _one_thread():
    """Run torch on one intra-op thread, then restore the setting.

    The network is so small that extra threads only add synchronisation; on a busy 2-core machine
    two spinning threads made a training step ~30x slower than one thread.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def alpha_embedding(alpha: torch.Tensor, dim: int, max_freq: float = 64.0) -> torch.Tensor:
    """Sinusoidal embedding ``[sin(f_k alpha), cos(f_k alpha)]`` with f_k geometric in [1, max_freq]."""
    freqs = torch.exp(torch.linspace(0.0, math.log(max_freq), dim // 2, device=alpha.device))
    angles = alpha.reshape(-1, 1).float() * freqs
    return torch.cat([angles.sin(), angles.cos()], dim=1)


class PointsNet(nn.Module):
    """MLP ``(x_alpha, alpha) -> x1 - x0`` for 2D points; the alpha embedding joins every layer."""

    def __init__(
        self,
        hidden: int = 128,        # width of each hidden layer
        depth: int = 3,           # number of hidden layers
        emb_dim: int = 16,        # size of the sinusoidal alpha embedding (even)
        max_freq: float = 64.0,   # highest embedding frequency, in radians per unit alpha
    ) -> None:
        super().__init__()
        self.emb_dim, self.max_freq = emb_dim, max_freq
        widths = [2] + [hidden] * depth
        self.layers = nn.ModuleList(nn.Linear(w + emb_dim, hidden) for w in widths[:-1])
        self.out = nn.Linear(hidden + emb_dim, 2)
        self.act = nn.SiLU()

    def forward(self, x: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
        emb = alpha_embedding(alpha.expand(x.shape[0]), self.emb_dim, self.max_freq).to(x.dtype)
        h = x
        for layer in self.layers:
            h = self.act(layer(torch.cat([h, emb], dim=1)))
        return self.out(torch.cat([h, emb], dim=1))


def train(steps: int = 2000, batch: int = 256, seed: int = 0, lr: float = 1e-2,
          hidden: int = 128, depth: int = 3) -> PointsNet:
    """Fit a :class:`PointsNet` to the spiral with the IADB objective; a few seconds on a CPU.

    Each step draws fresh noise x0, fresh spiral points x1 and alpha ~ U(0, 1), and regresses
    ``net((1-alpha) x0 + alpha x1, alpha)`` on ``x1 - x0``. The learning rate follows a cosine
    decay to zero, which is what makes the final cloud crisp. Only ``seed``'s own generators are
    used (the network's initialisation included); the global RNG is left alone.
    """
    with _one_thread():
        return _fit(steps, batch, seed, lr, hidden, depth)


def _fit(steps: int, batch: int, seed: int, lr: float, hidden: int, depth: int) -> PointsNet:
    generator = torch.Generator().manual_seed(seed)
    with seeds.seeded_init(seed):
        net = PointsNet(hidden=hidden, depth=depth)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda k: 0.5 * (1 + math.cos(math.pi * k / steps)))
    net.train()
    for _ in range(steps):
        x0 = torch.randn(batch, 2, generator=generator)
        x1 = spiral(batch, generator)
        alpha = torch.rand(batch, generator=generator)
        x_alpha = torch.lerp(x0, x1, alpha[:, None])
        loss = (net(x_alpha, alpha) - (x1 - x0)).square().sum(dim=1).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    log.info("trained %d steps, last loss %.4f", steps, loss.item())
    return net.eval()


# ----------------------------------------------------------------------------- sampling


def sample(net: PointsNet, n: int = 2000, steps: int = 100, seed: int = 0, noise: torch.Tensor | None = None,
           callback: Callback = None) -> torch.Tensor:
    """Deblend ``n`` points from ``seed``'s noise (or the given ``noise``) to the learned cloud."""
    x = seeds.noise(seed, (n, 2)) if noise is None else noise
    with _one_thread():
        return sample_iadb(net, x, alphas_uniform(steps), callback=callback)


def invert(net: PointsNet, points: torch.Tensor, steps: int = 100, callback: Callback = None) -> torch.Tensor:
    """Blend ``points`` back to the noise that :func:`sample` would turn into them."""
    with _one_thread():
        return invert_iadb(net, points, alphas_uniform(steps), callback=callback)


def states_at(alphas: torch.Tensor, start: torch.Tensor, wanted: list[float]) -> tuple[Callable[[dict], None], dict]:
    """A callback that keeps the cloud at the grid alphas nearest to ``wanted`` (for figures).

    The samplers report ``x`` after step ``i``, i.e. at ``alphas[i + 1]``; ``start`` is the state at
    ``alphas[0]``. Returns ``(callback, states)`` where ``states`` maps each wanted alpha to its cloud.
    """
    index = {min(range(len(alphas)), key=lambda k: abs(float(alphas[k]) - a)): a for a in wanted}
    states = {index[0]: start.clone()} if 0 in index else {}

    def callback(info: dict) -> None:
        if info["i"] + 1 in index:
            states[index[info["i"] + 1]] = info["x"].clone()

    return callback, states


def energy_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Energy distance between two point clouds (Szekely & Rizzo), a scalar >= 0.

    ``D(a, b) = 2 E|a - b| - E|a - a'| - E|b - b'|`` with |.| the Euclidean norm and each
    expectation the mean over all pairs from :func:`torch.cdist` (the V-statistic, self-pairs
    included, so it is never negative). It is 0 only for identical clouds and grows with any
    difference in location, spread or shape; for two independent samples of one distribution
    it is O(1/n).
    """
    a, b = a.double(), b.double()
    return 2 * torch.cdist(a, b).mean() - torch.cdist(a, a).mean() - torch.cdist(b, b).mean()


# ----------------------------------------------------------------------------- figure


def figure(path: Path, net: PointsNet, steps: int, seed: int, n: int = 2000) -> dict[str, float]:
    """Draw sampling (top row) and inversion + re-sampling (bottom row); return the figures."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    alphas = alphas_uniform(steps)
    shown = [0.0, 0.25, 0.5, 0.75, 1.0]
    target, target_t = spiral(n, torch.Generator().manual_seed(seed + 1), return_t=True)

    start = seeds.noise(seed, (n, 2))
    callback, forward_states = states_at(alphas, start, shown)
    samples = sample(net, n, steps, noise=start, callback=callback)
    forward_states[1.0] = samples

    back_cb, back_states = states_at(alphas.flip(0), target, [1.0, 0.5])  # grid as invert walks it
    inverted = invert(net, target, steps, callback=back_cb)
    re_cb, re_states = states_at(alphas, inverted, [0.5])
    reconstruction = sample(net, n, steps, noise=inverted, callback=re_cb)

    results = {
        "energy_noise_vs_target": energy_distance(start, target).item(),
        "energy_samples_vs_target": energy_distance(samples, target).item(),
        "inversion_noise_vs_gaussian": energy_distance(inverted, seeds.noise(seed + 2, (n, 2))).item(),
        "reconstruction_error": (reconstruction - target).norm(dim=1).mean().item(),
    }

    # colour every sampled point by where it lands (its final radius), every data point by its
    # place on the arm, so each point can be followed from panel to panel
    colour_top = samples.norm(dim=1).numpy()
    colour_bottom = target_t.numpy()
    style = dict(s=2, cmap="viridis", linewidths=0)
    fig, axes = plt.subplots(2, 6, figsize=(18, 6.6))
    for ax, a in zip(axes[0], shown):
        ax.scatter(*forward_states[a].T.numpy(), c=colour_top, **style)
        ax.set_title(f"sampling: alpha = {a:g}" + (" (noise)" if a == 0 else " (samples)" if a == 1 else ""))
    axes[0, 5].scatter(*target.T.numpy(), c="0.35", s=2, linewidths=0)
    axes[0, 5].set_title("target (reference)")

    bottom = [
        (target, "data: alpha = 1"),
        (back_states[0.5], "inverting: alpha = 0.5"),
        (inverted, "inverted: alpha = 0 (noise)"),
        (re_states[0.5], "re-sampling: alpha = 0.5"),
        (reconstruction, "reconstruction: alpha = 1"),
    ]
    for ax, (cloud, title) in zip(axes[1], bottom):
        ax.scatter(*cloud.T.numpy(), c=colour_bottom, **style)
        ax.set_title(title)
    ax = axes[1, 5]
    ax.scatter(*target.T.numpy(), c="0.6", s=6, linewidths=0, label="data")
    ax.scatter(*reconstruction.T.numpy(), c="crimson", s=1, linewidths=0, label="reconstruction")
    ax.legend(loc="lower right", fontsize=8, markerscale=4)
    ax.set_title(f"overlay (mean error {results['reconstruction_error']:.3f})")
    for ax in axes.flat:
        ax.set_xlim(-3.2, 3.2)
        ax.set_ylim(-3.2, 3.2)
        ax.set_aspect("equal")
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"Iterative alpha-(de)blending on 2D points: {steps} steps, {n} points, seed {seed}.  "
                 f"Top: noise -> spiral.  Bottom: spiral -> noise (inversion) -> spiral (re-sampling).  "
                 f"Energy distance to target: noise {results['energy_noise_vs_target']:.3f}, "
                 f"samples {results['energy_samples_vs_target']:.4f}", fontsize=11)
    fig.tight_layout()

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp.png")
    fig.savefig(tmp, dpi=90)
    plt.close(fig)
    tmp.replace(path)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m engine.toys.points", description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("docs/iadb_points.png"), help="figure to write (PNG)")
    parser.add_argument("--steps", type=int, default=100, help="sampling / inversion steps")
    parser.add_argument("--train-steps", type=int, default=2000, help="training steps")
    parser.add_argument("--points", type=int, default=2000, help="points in each cloud")
    parser.add_argument("--seed", type=int, default=0, help="seed for training, noise and target")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    started = time.perf_counter()
    net = train(steps=args.train_steps, seed=args.seed)
    log.info("training took %.1f s", time.perf_counter() - started)
    results = figure(args.out, net, args.steps, args.seed, args.points)
    for name, value in results.items():
        print(f"{name}: {value:.4f}")
    print(f"figure: {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
