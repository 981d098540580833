"""A real training hit's spectrum over time, kept beside a latent model's weights (``bands.json``):
how each of its clips shared its loudness between the codec's bands, frame by frame, so a sound
on a kit hit can take that clip's brightness as it evolves, not only its loudness curve.

Why: a Sound asked alone on `latent-drums` takes a real kit hit's loudness curve and onsets by
steering (:mod:`engine.steering`) and the dealt clip's long-term colour after decoding
(:mod:`engine.tones`); between those the network makes the timbre, and on a model that never saw
the curve it regresses to the label's typical one: its hats and cymbals reached too few of the
held-out kits' (coverage .77 and .68 of the real floor), its percussion read as percussion .846.
The codec's latent says each band's power exactly (the bypass sub-bands as they are, the band
envelopes above band 0), so the sampler can also hold each band's *share* of the frame's power on
the dealt clip's while the sound forms (:func:`engine.steering.share_projection`): the hit's
attack as bright as the kit's, its highs dying as fast as the kit's did, while the network still
makes every band's fine structure and the part of band 0 the latent does not say. Figures in
``docs/design-notes.md``, "A kit hit's spectrum over time".

The table is measured from the data set's train split (real clips only, in the data set's order,
so a seed deals the same clip as the kit envelopes and tones: :func:`engine.seeds.deal`) by
``python -m engine bands --model M --data D --label hat``: per clip, at :data:`SHARE_TIMES_MS`
(each the frames nearest it pooled), its level under its loudest and the share of each band in
dB; where the clip is silent the network's own spectrum is kept. A label without rows takes no
shares.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .errors import InvalidRequestError
from .label_tables import read_rows, write_table
from .sampling import label_defaults
from .steering import _inner, band_powers, steerable

SHARES_FILE = "bands.json"
SHARES_FORMAT = 1
SHARE_TIMES_MS = tuple([3 * i for i in range(10)] + [round(30 * 1.08 ** i) for i in range(55)])
"""When a clip's shares are kept: every 3 ms through the attack, where the spectrum changes fastest,
then 8 % further apart each time as the tail settles (65 points over a 2 s clip). Half as many
(36) read `latent-drums`' hats as hats .89 / .86 at seed sets 2000 / 3000 instead of .91 / .89."""
HEARD_DB = 60.0
"""A span this far under the clip's loudest is its silence, not its spectrum: no shares there."""
SHARE_FLOOR_DB = -80.0
MEASURE_BATCH = 16


def spans(frames: int, hop: int, sample_rate: int) -> torch.Tensor:
    """``(points, frames)`` 0/1: which of ``frames`` latent frames each of :data:`SHARE_TIMES_MS`
    pools (the frames nearer to it than to its neighbours); a point past the clip's end pools its
    last frame."""
    times = (torch.arange(frames, dtype=torch.float64) + 0.5) * hop / sample_rate * 1000.0
    points = torch.tensor(SHARE_TIMES_MS, dtype=torch.float64)
    nearest = (times[None] - points[:, None]).abs().argmin(0)
    out = torch.zeros(len(points), frames)
    out[nearest, torch.arange(frames)] = 1.0
    out[out.sum(1) == 0, frames - 1] = 1.0
    return out


def shares_db(power: torch.Tensor, hop: int, sample_rate: int) -> torch.Tensor:
    """``(B, 1 + bands, points)`` dB from the power ``(B, bands, frames)`` of each band
    (:func:`engine.steering.band_powers`) pooled at :data:`SHARE_TIMES_MS`: first each span's level
    under the clip's loudest span (floored at :data:`SHARE_FLOOR_DB`), then each band's share of the
    span's power. A span under :data:`HEARD_DB` of the loudest is the clip's silence: its shares
    read the floor and, once read onto frames (:func:`on_frames`), steer nothing."""
    pooling = spans(power.shape[-1], hop, sample_rate)
    pooling = pooling / pooling.sum(1, keepdim=True)  # each span's mean power: its level
    pooled = power.float() @ pooling.T.to(power.device)  # (B, bands, points)
    total = pooled.sum(1, keepdim=True)
    level = 10.0 * torch.log10(total.clamp_min(1e-20))
    level = (level - level.amax(-1, keepdim=True)).clamp_min(SHARE_FLOOR_DB)
    share = (10.0 * torch.log10(pooled.clamp_min(1e-20) / total.clamp_min(1e-20))).clamp_min(SHARE_FLOOR_DB)
    share = torch.where(level >= -HEARD_DB, share, torch.full_like(share, SHARE_FLOOR_DB))
    return torch.cat([level, share], dim=1).cpu()


def measure(codec: torch.nn.Module, audio: torch.Tensor) -> list[list[float]]:
    """One row per clip of ``audio`` (``(N, C, samples)``): its band shares (:func:`shares_db`)
    read from the codec's exact latent channels, flattened, to 1 dB (`latent-drums`' 567 clips: 3 MB of
    JSON). A clear error for a codec whose latent does not say its band levels."""
    if audio.shape[0] == 0:
        raise InvalidRequestError("no clips to measure band shares from")
    if not steerable(codec):
        raise InvalidRequestError("this model's codec does not say its band levels in the latent, so a sound "
                                  "cannot be steered onto a clip's band shares")
    inner = _inner(codec)
    rows = []
    with torch.no_grad():
        for i in range(0, audio.shape[0], MEASURE_BATCH):
            raw = inner.encode_raw(audio[i:i + MEASURE_BATCH].float())
            rows.append(shares_db(band_powers(codec, raw), inner.hop, inner.sample_rate))
    return [[int(round(float(v))) for v in row] for row in torch.cat(rows).flatten(1)]


def write_shares(folder: str | Path, table: dict, source: str, bands: int) -> Path:
    """Write ``{label: [clip rows]}`` of a level and ``bands`` band shares into a model folder atomically."""
    return write_table(folder, SHARES_FILE, SHARES_FORMAT, "band shares", table, source, indent=None,
                       spans=[1 + bands, len(SHARE_TIMES_MS)], times_ms=list(SHARE_TIMES_MS))


def read_shares(folder: str | Path | None, label: str | None, bands: int) -> torch.Tensor | None:
    """``(clips, 1 + bands, points)`` dB (each span's level, then the ``bands`` shares) for ``label``
    from a model folder's band shares, or None (no folder, file or label); a damaged file, or one
    measured for another number of bands or times, is a CheckpointError that names it."""
    points = len(SHARE_TIMES_MS)
    return read_rows(folder, label, SHARES_FILE, SHARES_FORMAT, "bands", [1 + bands, points], (1 + bands, points))


def on_frames(table: torch.Tensor, frames: int, hop: int, sample_rate: int) -> torch.Tensor:
    """``(B, bands, frames)``: the shares kept at :data:`SHARE_TIMES_MS` (``(B, 1 + bands, points)``
    dB, as :func:`shares_db` gives) read at every latent frame, straight lines in dB between the
    points, the last held after it; NaN in the frames where the clip's level (read the same way) is
    under :data:`HEARD_DB` of its loudest: its silence says nothing of the spectrum, and there the
    network's own is kept (held at the clip's last heard shares, `latent-drums`' hats read as hats
    .83 instead of .91 at seed sets 2000 and 3000)."""
    times = (np.arange(frames) + 0.5) * hop / sample_rate * 1000.0
    flat = table.float().reshape(-1, table.shape[-1]).cpu().numpy()
    read = np.stack([np.interp(times, SHARE_TIMES_MS, row) for row in flat]) if len(flat) else \
        np.zeros((0, frames))
    read = torch.from_numpy(read).float().reshape(*table.shape[:-1], frames)
    level, shares = read[:, :1], read[:, 1:]
    return torch.where(level >= -HEARD_DB, shares, torch.full_like(shares, float("nan")))


def takes(conditions) -> bool:
    """Whether a sound under ``conditions`` takes band shares when its request leaves ``kit_bands``
    open: a Sound alone (one label, no prompt: a dealt clip is one label's) with a loudness curve
    to ride on, a kit hit's or a drawn one (as it takes the dealt clip's tone)."""
    return bool(conditions.rms) and conditions.label is not None and conditions.prompt is None \
        and conditions.label_b is None


def strength(manifest: dict, label: str | None) -> float:
    """How far a Sound of ``label`` with a loudness curve is steered onto its dealt clip's band
    shares when the request leaves it open: the label's ``kit_bands`` default, 0 where none is set."""
    return float(label_defaults(manifest.get("defaults", {}), label).get("kit_bands", 0.0))


def strength_for(manifest: dict, label: str | None, asked: float | None, conditions) -> float:
    """The strength a sound under ``conditions`` is made at, the studio's and the evaluation's one
    rule: for a sound that :func:`takes` band shares, the ``asked`` one, else its label's default
    (:func:`strength`); 0 for any other sound, whatever was asked (as curve guidance is nothing
    without a curve: the page's slider holds a Sound's value while the user asks for a free cymbal
    or a hybrid)."""
    if not takes(conditions):
        return 0.0
    return strength(manifest, label) if asked is None else float(asked)
