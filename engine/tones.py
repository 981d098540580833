"""A Sound's real training clips' long-term spectra, kept beside a latent model's weights
(``tones.json``), and the clip each seed deals (:func:`dealt_spectra`): the sound is filtered to
that clip's colour when it is decoded (:func:`engine.nets.tone.match_tone`, called by
:func:`engine.pipeline.decode`).

Why: `latent-fast`'s cymbals are darker than the kits' (spectral centroid median 2.4-2.9 kHz
against the training cymbals' 4.3 kHz; the codec's own round trip keeps 4.2) and alike from seed to
seed, and guiding them harder to read more often as cymbals narrowed them further. Each cymbal
given the colour of a training cymbal dealt by its seed, as the waveform models' Sounds are dealt
their clips' envelopes, spreads them along the kits' directions and lets the guidance rise
(``docs/design-notes.md``, "Cymbals in a kit cymbal's colour").

The table is measured from the data set's train split (real clips only) by ``python -m engine
tones --model M --data D --label cymbal``: one row of :data:`engine.nets.tone.MATCH_BANDS` x
:data:`engine.nets.tone.TONE_POINTS` dB per clip, in the data set's order. Only the labels named
get rows; a label without rows is decoded as the network makes it.

``tails.json`` holds the same for the clips' tails (:func:`engine.nets.tail.tail_shapes_db`, any
model kind; ``python -m engine tails``): a sound's tail is cut, after its attack, where it stands
above the tail of the clip its seed deals (:func:`engine.nets.tail.cut_tail`): `drums-3step`'s
kicks filled band 0 with a flat box of noise where real kicks hold a low tone.

``widths.json`` holds each clip's stereo width (its side over its mid, :func:`engine.dsp.side_mid_db`;
``python -m engine widths``): a latent model's sound is narrowed to the width of the clip its seed
deals (:func:`engine.dsp.match_width`), before the request's own width scales it: the codec decodes
each channel's highs on its own, so `latent-drums`' cymbals all came back alike and wider than the kits'.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch

from .dsp import side_mid_db
from .errors import InvalidRequestError
from .label_tables import read_rows, write_table
from .nets.tail import HIGH_SPANS, TAIL_BINS, TAIL_FFT, TAIL_POINTS, tail_shapes_db
from .nets.tone import MATCH_BANDS, TONE_POINTS, spectra_db
from .seeds import deal

TONES_FILE = "tones.json"
TONES_FORMAT = 1
TAILS_FILE = "tails.json"
TAILS_FORMAT = 1
WIDTHS_FILE = "widths.json"
WIDTHS_FORMAT = 1
MEASURE_BATCH = 32  # clips per STFT while measuring


def measure(audio: torch.Tensor) -> list[list[float]]:
    """One row per clip of ``audio`` (``(N, C, samples)``): its long-term spectrum in dB
    (:func:`engine.nets.tone.spectra_db`), flattened, to 0.1 dB."""
    if audio.shape[0] == 0:
        raise InvalidRequestError("no clips to measure tones from")
    rows = torch.cat([spectra_db(audio[i:i + MEASURE_BATCH]) for i in range(0, audio.shape[0], MEASURE_BATCH)])
    return [[round(float(v), 1) for v in row] for row in rows.flatten(1)]


def measure_tails(audio: torch.Tensor, sample_rate: int) -> list[list[float]]:
    """One row per clip of ``audio``: its tail's shape (:func:`engine.nets.tail.tail_shapes_db`), to 0.1 dB."""
    if audio.shape[0] == 0:
        raise InvalidRequestError("no clips to measure tails from")
    rows = torch.cat([tail_shapes_db(audio[i:i + MEASURE_BATCH], sample_rate)[0]
                      for i in range(0, audio.shape[0], MEASURE_BATCH)])
    return [[round(float(v), 1) for v in row] for row in rows]


def measure_widths(audio: torch.Tensor) -> list[list[float]]:
    """One row per clip of ``audio``: its side over its mid (:func:`engine.dsp.side_mid_db`), to 0.1 dB."""
    if audio.shape[0] == 0:
        raise InvalidRequestError("no clips to measure widths from")
    if audio.shape[1] != 2:
        raise InvalidRequestError(f"a stereo width is measured on two channels, not {audio.shape[1]}")
    return [[round(float(v), 1)] for v in side_mid_db(audio)]


def write_tones(folder: str | Path, table: dict, source: str) -> Path:
    """Write ``{label: [clip rows]}`` into a model folder atomically."""
    return write_table(folder, TONES_FILE, TONES_FORMAT, "clip tones", table, source,
                       spans=[MATCH_BANDS, TONE_POINTS])


def write_tails(folder: str | Path, table: dict, source: str) -> Path:
    """Write ``{label: [clip rows]}`` of tail shapes into a model folder atomically."""
    return write_table(folder, TAILS_FILE, TAILS_FORMAT, "clip tails", table, source,
                       spans=[TAIL_FFT, TAIL_BINS, HIGH_SPANS])


def write_widths(folder: str | Path, table: dict, source: str) -> Path:
    """Write ``{label: [clip rows]}`` of stereo widths into a model folder atomically."""
    return write_table(folder, WIDTHS_FILE, WIDTHS_FORMAT, "clip widths", table, source, spans=[1])


def read_widths(folder: str | Path | None, label: str | None) -> torch.Tensor | None:
    """``(clips, 1)`` dB (side over mid) for ``label`` from a model folder's clip widths, or None, as
    :func:`read_tones`."""
    return read_rows(folder, label, WIDTHS_FILE, WIDTHS_FORMAT, "widths", [1], (1,))


def read_tones(folder: str | Path | None, label: str | None) -> torch.Tensor | None:
    """``(clips, bands, points)`` dB for ``label`` from a model folder's clip tones, or None (no
    folder, file or label); a damaged file, or one measured in other spans, is a CheckpointError
    that names it."""
    return read_rows(folder, label, TONES_FILE, TONES_FORMAT, "tones", [MATCH_BANDS, TONE_POINTS],
                         (MATCH_BANDS, TONE_POINTS))


def read_tails(folder: str | Path | None, label: str | None) -> torch.Tensor | None:
    """``(clips, TAIL_POINTS)`` dB for ``label`` from a model folder's clip tails, or None, as :func:`read_tones`."""
    return read_rows(folder, label, TAILS_FILE, TAILS_FORMAT, "tails", [TAIL_FFT, TAIL_BINS, HIGH_SPANS],
                         (TAIL_POINTS,))


def dealt_spectra(table: torch.Tensor, seeds: Sequence[int], seeds_b: Sequence[int] | None = None,
                  morph: float = 0.0) -> torch.Tensor:
    """``(len(seeds), ...)``: the spectrum (or tail) of the clip each seed deals from ``table``
    (:func:`engine.seeds.deal`, as kit hits are dealt); with second seeds, a morph's mix of the
    two clips' (in dB, ``morph`` of the way to the second), so a seed morph moves smoothly."""
    first = table[[deal(seed, table.shape[0]) for seed in seeds]]
    if seeds_b is None or not morph:
        return first
    second = table[[deal(seed, table.shape[0]) for seed in seeds_b]]
    return (1.0 - float(morph)) * first + float(morph) * second
