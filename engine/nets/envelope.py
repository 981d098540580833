"""Loudness envelopes of drum clips per band and over time, and a prior that draws new ones.

Why: in PQMF bands a drum hit is zero-mean noise whose *variance* carries its structure: where
the attack sits, how each band decays, how bright a hat is next to a kick. A diffusion network
must learn that second-order structure from a tiny loss signal at high noise, and the first
drum model (8400 CPU steps) had not: it made stationary drum-coloured noise, every label alike,
with tails 60 dB too loud. So the waveform codec divides each clip's bands by the clip's own
envelope: the network sees homogeneous unit-variance fine structure (pitch, body, noise colour)
and its residual error is multiplied by the envelope on decoding, so a kick's tail is quiet
where real kicks are quiet (the "hiss" of small waveform models). A per-label average envelope
was tried first (session 2) and dropped: clips of one category differ in length far more than a
Gaussian around the average allows, and every sound came out at the average.

An envelope is stored in dB at knots spaced geometrically in time (every frame at the attack,
sparser in the tail), linear in dB in between. New sounds get theirs from a per-label mixture of
Gaussians over the training clips' envelopes (:func:`fit_prior`), whose coordinates are read off
the sound's starting noise (:func:`prior_coordinates`), or, for a label whose real envelopes that
mixture averages away, from the training clips' own envelopes, one dealt to each seed and moved a
little by the noise (:func:`draw_from_kernel`).
"""

from __future__ import annotations

import torch

FLOOR_DB = 80.0  # an envelope stays within this many dB of the clip's loudest knot: finite gains, inaudible tails


def knot_frames(frames: int, dense: int = 8, ratio: float = 1.25) -> list[int]:
    """Frame positions of the knots: ``0 .. dense-1``, then growing by ``ratio``, ending at ``frames - 1``."""
    knots = list(range(min(dense, frames)))
    position = float(max(dense - 1, 1))
    while knots[-1] < frames - 1:
        position *= ratio
        knots.append(min(frames - 1, max(knots[-1] + 1, round(position))))
    return knots


def interpolation_matrix(knots: list[int], frames: int) -> torch.Tensor:
    """``(K, frames)`` weights: frame values = knot values @ W (linear between knots, held past the ends)."""
    positions = torch.arange(frames, dtype=torch.float64)
    grid = torch.tensor(knots, dtype=torch.float64)
    index = torch.searchsorted(grid, positions, right=True).clamp(1, len(knots) - 1)
    left, right = grid[index - 1], grid[index]
    share = ((positions - left) / (right - left)).clamp(0.0, 1.0)
    weights = torch.zeros(len(knots), frames, dtype=torch.float64)
    columns = torch.arange(frames)
    weights[index - 1, columns] += 1.0 - share
    weights[index, columns] += share
    return weights.float()


def envelope_gain(decibels: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """``(B, bands, frames)`` amplitude gains from envelopes ``(B, bands, K)`` in dB at knots."""
    return torch.pow(10.0, (decibels @ weights) / 20.0)


# ----------------------------------------------------------------------------- per-clip envelopes and their prior
# The prior draws each sound's envelope from the first channels of its starting noise, so a seed
# still fixes the whole sound and morphing between two seeds morphs their envelopes too. Its
# tensors are data, not architecture: they live in model.safetensors under "codec.".


def knot_power(power: torch.Tensor, knots: list[int]) -> torch.Tensor:
    """``(B, bands, K)`` mean power around each knot from ``(B, bands, frames)`` power."""
    weights = interpolation_matrix(knots, power.shape[-1]).to(power)
    return power @ (weights / weights.sum(dim=1, keepdim=True).clamp_min(1e-12)).T


def clip_envelopes(power: torch.Tensor, knots: list[int], floor_db: float = FLOOR_DB) -> torch.Tensor:
    """``(B, bands, K)`` envelopes in dB of each clip, floored ``floor_db`` below the clip's loudest knot."""
    decibels = 10.0 * torch.log10(knot_power(power, knots).clamp_min(1e-20))
    return torch.maximum(decibels, decibels.amax(dim=(1, 2), keepdim=True) - floor_db)


DETAIL_WINDOW = 32      # frames a clip's fine detail is smoothed over (32 frames of 32 samples: 23 ms at 44.1 kHz)
DETAIL_POINTS = 128     # points a band's detail is stored at over the sound (8 frames apart for 1024 frames)
DETAIL_RANGE_DB = (-12.0, 6.0)  # a dip deeper or a rise higher than this is the knots' business, not the detail's


def clip_details(power: torch.Tensor, knots: list[int], points: int = DETAIL_POINTS, window: int = DETAIL_WINDOW,
                 floor_db: float = FLOOR_DB) -> torch.Tensor:
    """``(B, bands, points)`` dB: what each clip's band power ``(B, bands, frames)``, smoothed over
    ``window`` frames, does between its envelope's knots (its :func:`clip_envelopes` interpolated
    to the frames), averaged into ``points`` spans; clamped to :data:`DETAIL_RANGE_DB`, and 0
    where the clip sits near its envelope's floor.

    Why: the knots lie 70-140 ms apart late in a sound, so a hat's or a snare's body flutter
    cannot pass through the envelope, and the network made it smoother than the kits' (issue 19,
    docs/design-notes.md "Waveform hats: which directions are narrow, and their clips' flutter")."""
    frames = power.shape[-1]
    if frames % points:
        raise ValueError(f"{frames} frames do not split into {points} detail points")
    smooth = torch.nn.functional.avg_pool1d(power.float(), window, 1, padding=window // 2,
                                            count_include_pad=False)[..., :frames]
    fine = 10.0 * torch.log10(smooth.clamp_min(1e-20))
    coarse = clip_envelopes(power, knots, floor_db)
    between = coarse @ interpolation_matrix(knots, frames)
    detail = (fine - between).clamp(*DETAIL_RANGE_DB)
    quiet = between <= coarse.amax(dim=(1, 2), keepdim=True) - floor_db + 3.0
    detail = detail.masked_fill(quiet, 0.0)
    return detail.reshape(*detail.shape[:2], points, frames // points).mean(dim=-1)


def detail_gain(details: torch.Tensor, frames: int) -> torch.Tensor:
    """``(B, bands, frames)`` amplitude gains from details ``(B, bands, points)`` in dB, linear
    between the spans' centres (:func:`clip_details` averaged each span): no steps every span."""
    spread = torch.nn.functional.interpolate(details.float(), size=frames, mode="linear", align_corners=False)
    return torch.pow(10.0, spread / 20.0)


def _kmeans(points: torch.Tensor, clusters: int, iterations: int = 30) -> torch.Tensor:
    """Cluster index of each row of ``points``: k-means from farthest-point seeds (deterministic)."""
    centres = [points.mean(dim=0)]
    for _ in range(1, min(clusters, points.shape[0])):
        distance = torch.cdist(points, torch.stack(centres)).amin(dim=1)
        centres.append(points[int(distance.argmax())])
    centres = torch.stack(centres)
    for _ in range(iterations):
        assignment = torch.cdist(points, centres).argmin(dim=1)
        for j in range(centres.shape[0]):
            if bool((assignment == j).any()):
                centres[j] = points[assignment == j].mean(dim=0)
    return torch.cdist(points, centres).argmin(dim=1)


@torch.no_grad()
def fit_prior(envelopes: torch.Tensor, labels: torch.Tensor, num_labels: int, clusters: int,
              components: int, row_shapes: list | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A mixture of Gaussians over clip envelopes (dB), per label plus an all-clips row.

    Returns means ``(R, clusters, bands, K)``, principal directions scaled by their standard
    deviation ``(R, clusters, components, bands, K)`` and mixture weights ``(R, clusters)``.
    Why a mixture: one Gaussian per label averages closed and open hats into a half-open hat
    that the drum classifier calls a cymbal; three clusters keep them apart (measured: decoded
    unit noise through drawn envelopes is classified as a hat 88 % of the time, 50 % with one).

    ``row_shapes`` (one ``(clusters, components)`` per row, each at most the tensors' own) gives a
    row fewer of either: its other clusters weigh 0 and its other directions are 0, so one
    category can keep a few broad clusters while another needs many (``docs/design-notes.md``,
    "A prior shaped per category").
    """
    shape = envelopes.shape[1:]
    flat = envelopes.flatten(1).double()
    means = torch.zeros(num_labels + 1, clusters, flat.shape[1], dtype=torch.float64)
    bases = torch.zeros(num_labels + 1, clusters, components, flat.shape[1], dtype=torch.float64)
    weights = torch.zeros(num_labels + 1, clusters, dtype=torch.float64)
    for row in range(num_labels + 1):
        chosen = flat if row == num_labels else flat[labels == row]
        if chosen.shape[0] == 0:
            chosen = flat
        row_clusters, row_components = (clusters, components) if row_shapes is None else row_shapes[row]
        assignment = _kmeans(chosen, row_clusters)
        for j in range(row_clusters):
            members = chosen[assignment == j]
            if members.shape[0] == 0:
                continue
            weights[row, j] = members.shape[0] / chosen.shape[0]
            means[row, j] = members.mean(dim=0)
            if members.shape[0] > 1:
                _, singular, directions = torch.linalg.svd(members - means[row, j], full_matrices=False)
                usable = min(row_components, directions.shape[0])
                bases[row, j, :usable] = directions[:usable] * (singular[:usable] / (members.shape[0] - 1) ** 0.5)[:, None]
    return (means.float().reshape(num_labels + 1, clusters, *shape),
            bases.float().reshape(num_labels + 1, clusters, components, *shape), weights.float())


def draw_from_prior(means: torch.Tensor, bases: torch.Tensor, weights: torch.Tensor, rows: torch.Tensor,
                    coordinates: torch.Tensor | None) -> torch.Tensor:
    """``(B, bands, K)`` envelopes for label ``rows`` from standard normal ``coordinates``
    ``(B, components + 1)``: the last picks the cluster (through the normal CDF, so it is uniform),
    the others move along the cluster's principal directions. Without coordinates: each row's
    most likely cluster's mean."""
    if coordinates is None:
        return means[rows, weights[rows].argmax(dim=1)]
    components = bases.shape[2]
    uniform = 0.5 * (1.0 + torch.erf(coordinates[:, components] / 2 ** 0.5))
    cumulative = torch.cumsum(weights[rows], dim=1)
    cluster = torch.searchsorted(cumulative, (uniform * cumulative[:, -1:].squeeze(1)).unsqueeze(1)).squeeze(1)
    cluster = cluster.clamp(max=weights.shape[1] - 1)
    return means[rows, cluster] + torch.einsum("bc,bcmk->bmk", coordinates[:, :components], bases[rows, cluster])


# ----------------------------------------------------------------------------- a kernel over the clips' own envelopes
# A label's row may draw instead from its training clips' own envelopes (a kernel density): the
# noise's pick coordinate chooses one clip, the direction coordinates move it a little along the
# row's fitted directions. Measured on `drums-3step` (docs/design-notes.md, "Snares and hats on their
# clips' own envelopes"): a mixture of a few Gaussians draws the average shapes of its clusters, and
# real snares and hats differ in ways a dozen directions do not hold.

def kernel_order(envelopes: torch.Tensor) -> torch.Tensor:
    """The order to store one label's clip envelopes ``(N, bands, K)`` in: along their first
    principal direction, so that neighbouring pick coordinates choose clips of similar shape."""
    flat = envelopes.flatten(1).double()
    if flat.shape[0] < 2:
        return torch.arange(flat.shape[0])
    centred = flat - flat.mean(dim=0)
    _, _, directions = torch.linalg.svd(centred, full_matrices=False)
    position = centred @ directions[0]
    position = position if float(position.sum()) >= 0 else -position  # an SVD's sign is arbitrary: fix it
    return torch.argsort(position, stable=True)


def kernel_pick(count: int, pick: torch.Tensor) -> torch.Tensor:
    """``(B,)`` index among ``count`` stored clips for standard normal pick coordinates ``(B,)``:
    through the normal CDF, so every clip is as likely (how a noise with no seed picks its clip)."""
    uniform = 0.5 * (1.0 + torch.erf(pick.double() / 2 ** 0.5))
    return (uniform * count).long().clamp(0, count - 1)


def nearest_cluster(envelopes: torch.Tensor, means: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """``(B,)``: which of a row's clusters (``means`` ``(clusters, bands, K)``, unused ones weighing 0)
    each envelope ``(B, bands, K)`` lies nearest."""
    distance = torch.cdist(envelopes.flatten(1).float(), means.flatten(1).float())
    return distance.masked_fill(weights[None] <= 0, float("inf")).argmin(dim=1)


def draw_from_kernel(clips: torch.Tensor, means: torch.Tensor, bases: torch.Tensor, weights: torch.Tensor,
                     width: float, coordinates: torch.Tensor, picks: torch.Tensor | None = None,
                     picks_b: torch.Tensor | None = None, share: float = 0.0) -> torch.Tensor:
    """``(B, bands, K)`` envelopes of one row drawn from its stored clip envelopes ``clips`` ``(N, bands, K)``:
    clip ``picks`` ``(B,)`` (None: the one the last coordinate picks, :func:`kernel_pick`), moved
    ``width`` times the first coordinates along the directions of the row's cluster nearest it
    (``means`` ``(clusters, bands, K)``, ``bases`` ``(clusters, components, bands, K)``, ``weights``
    ``(clusters,)``).

    ``picks_b`` draws a morph: each sound's two picked clips, each moved along its own cluster's
    directions, blended ``1 - share : share``. Why: read off the slerped noise, a morph would run
    through one unrelated clip after another; blended, the envelope moves smoothly from one seed's
    to the other's and is exactly each seed's own at the ends."""
    components = bases.shape[1]
    moves = coordinates[:, :components].float()

    def moved(index: torch.Tensor) -> torch.Tensor:
        chosen = clips[index]
        cluster = nearest_cluster(chosen, means, weights)
        return chosen + width * torch.einsum("bc,bcmk->bmk", moves, bases[cluster])

    first = moved(kernel_pick(clips.shape[0], coordinates[:, components]) if picks is None else picks)
    if picks_b is None or share == 0.0:
        return first
    return (1.0 - share) * first + share * moved(picks_b)


def reattacks(envelopes: torch.Tensor) -> torch.Tensor:
    """``(B, bands)``: how far each band of ``(B, bands, K)`` dB envelopes rises again after its
    peak, over the lowest level it had fallen to since (0 for a band that only decays). A drum hit
    decays; a large rise late in a tail is a second hit, which a one-shot's kit rarely has. It is
    what :func:`limit_reattacks` with no rise allowed takes away."""
    held = limit_reattacks(envelopes, envelopes.new_zeros(envelopes.shape[:2]))
    return (envelopes - held).amax(dim=2)


def reattack_limits(envelopes: torch.Tensor, labels: torch.Tensor, num_labels: int, quantile: float) -> torch.Tensor:
    """``(num_labels + 1, bands)``: the ``quantile`` of :func:`reattacks` over each label's clips
    (rows as :func:`fit_prior`'s, the last over every clip): how far a band of that category's
    real hits rises again, at most, as often as ``quantile`` says."""
    rises = reattacks(envelopes.float())
    limits = torch.zeros(num_labels + 1, envelopes.shape[1])
    for row in range(num_labels + 1):
        chosen = rises if row == num_labels else rises[labels == row]
        limits[row] = (chosen if len(chosen) else rises).quantile(quantile, dim=0)
    return limits


def limit_reattacks(envelopes: torch.Tensor, limits: torch.Tensor) -> torch.Tensor:
    """``envelopes`` ``(B, bands, K)`` with each band's rise after its peak held to ``limits``
    ``(B, bands)`` dB over the lowest level it had fallen to: a drawn envelope keeps its attack and
    decay, but a second hit larger than real ones of its category is turned down to their size.

    Limits are rises, so never negative; then the lowest level a held band has fallen to is the
    lowest of its own levels since the peak (a held frame is never under that plus the limit), and
    the whole hold is one running minimum: no loop over frames (the sampler holds a sound's
    loudness this way at every step, :func:`engine.steering.one_hit_projection`)."""
    limits = limits.to(envelopes)  # the codec keeps its limits on the CPU; a GPU sound's envelope is not
    if bool((limits < 0).any()):
        raise ValueError("a rise limit is never negative")
    frames = torch.arange(envelopes.shape[2], device=envelopes.device)
    peak = envelopes.argmax(dim=2, keepdim=True)
    since_peak = torch.where(frames >= peak, envelopes, torch.full_like(envelopes, float("inf")))
    low = torch.cummin(since_peak, dim=2).values  # the lowest level from the peak to each frame
    before = torch.cat([torch.full_like(low[..., :1], float("inf")), low[..., :-1]], dim=2)
    return torch.where(frames > peak, torch.minimum(envelopes, before + limits[..., None]), envelopes)


def prior_coordinates(noise: torch.Tensor, components: int) -> torch.Tensor:
    """``(B, components)`` standard normal coordinates read from a starting noise ``(B, C, frames)``:
    channel c's mean times sqrt(frames), exactly N(0, 1) for Gaussian noise and linear in it."""
    return noise[:, :components].float().mean(dim=-1) * noise.shape[-1] ** 0.5
