"""Attack limits: how bright a real hit's first latent frames are, per label, kept beside a latent
model's weights and held while its sounds form (:func:`engine.steering.attack_projection`).

Why: `latent-fast`'s kicks with a curve (a prompt's kit hit, a drawn curve) open with a click. In
the first 2.9 ms latent frame every band above 1.4 kHz sits 1-12 dB over the training kicks' median,
relative to each sound's loudest frame, and the held-out kits' are darker still; the prompt "kick"
then sat 2.1-2.3 times as far from real kits as the held-out kicks do (issue 17 allows 2).
Guidance spread per channel took a third of it (``docs/design-notes.md``, "A kick's guidance
spread per channel"); the rest is the network's. Held at the training kicks' median there, "kick"
is 1.83-1.90 (``docs/design-notes.md``, "A kick's click held to the kits'").

The table is measured from the data set's train split (real clips only) by ``python -m engine
attacks --model M --data D --label kick``: per band envelope channel of the codec's latent and per
frame from the hit, the quantile of (the band's level - the clip's loudest frame's level), in dB.
"""

from __future__ import annotations

from pathlib import Path

import torch

from .errors import InvalidRequestError
from .label_tables import read_row, write_table
from .steering import band_levels_db

ATTACKS_FILE = "attacks.json"
ATTACKS_FORMAT = 1
FRAMES = 2          # latent frames from the hit (5.8 ms at 44.1 kHz): the click, not the body
QUANTILE = 0.5      # the training hits' median


def measure(codec: torch.nn.Module, audio: torch.Tensor, frames: int = FRAMES, quantile: float = QUANTILE,
            batch: int = 16) -> list[list[float]]:
    """``[band][frame]`` dB: over the clips ``audio`` (``(N, C, samples)``, onset at 0), the
    ``quantile`` of each band envelope's level in each of the first ``frames`` latent frames of its
    hit, under the clip's loudest frame (:func:`engine.steering.band_levels_db`)."""
    if not 0.0 < quantile < 1.0 or frames < 1:
        raise InvalidRequestError(f"the quantile must be in (0, 1) and frames at least 1, got {quantile}, {frames}")
    if audio.shape[0] == 0:
        raise InvalidRequestError("no clips to measure attacks from")
    with torch.no_grad():
        levels = torch.cat([band_levels_db(codec, codec.encode(audio[i:i + batch].float()), frames)
                            for i in range(0, audio.shape[0], batch)])
    return [[round(float(v), 2) for v in row] for row in levels.quantile(quantile, dim=0)]


def write_attacks(folder: str | Path, table: dict, source: str, quantile: float) -> Path:
    """Write ``{label: [band][frame] dB}`` into a model folder atomically."""
    return write_table(folder, ATTACKS_FILE, ATTACKS_FORMAT, "attack limits", table, source, quantile)


def read_attacks(folder: str | Path | None, label: str | None, bands: int) -> torch.Tensor | None:
    """``(bands, frames)`` dB for ``label`` from a model folder's attack limits, or None (no folder,
    file or label); a damaged file, or one that does not fit the codec's ``bands``, is a
    CheckpointError that names it."""
    def parse(rows: list) -> torch.Tensor:
        table = torch.tensor(rows, dtype=torch.float32)
        if table.dim() != 2 or table.shape[0] != bands or table.shape[1] < 1 or not torch.isfinite(table).all():
            raise ValueError(f"{label} is not {bands} bands of finite levels")
        return table

    return read_row(folder, ATTACKS_FILE, ATTACKS_FORMAT, label, "attacks", parse)
