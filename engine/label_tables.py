"""Per-label tables measured from a data set's real training clips and kept beside a model's
weights as JSON (``attacks.json``: :mod:`engine.attacks`; ``lows.json``: :mod:`engine.lows`;
``tones.json`` and ``tails.json``: :mod:`engine.tones`; ``bands.json``: :mod:`engine.band_shares`):
one writer and one reader, so each table says only what its rows are and how to check them."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Callable

import torch

from .errors import CheckpointError, InvalidRequestError
from .models import atomic_write


def write_table(folder: str | Path, name: str, fmt: int, what: str, table: dict, source: str,
                quantile: float | None = None, indent: int | None = 1, **extra) -> Path:
    """Write ``{label: rows}`` (``what`` they are, for the error when there are none) as
    ``folder/name`` atomically, with its format, source, quantile (a table of quantiles) and any
    ``extra`` fields the reader checks; ``indent`` None writes it on one line (a table of hundreds
    of thousands of numbers takes half the space)."""
    if not table:
        raise InvalidRequestError(f"no labels to write {what} for")
    path = Path(folder) / name
    payload = {"format": fmt, "source": source, **({} if quantile is None else {"quantile": quantile}), **extra,
               "labels": table}
    atomic_write(path, lambda temp: temp.write_text(json.dumps(payload, indent=indent)))
    return path


def read_row(folder: str | Path | None, name: str, fmt: int, label: str | None, command: str,
             parse: Callable[[list], torch.Tensor],
             check: Callable[[dict], None] | None = None) -> torch.Tensor | None:
    """``label``'s row of ``folder/name`` as ``parse(row)`` gives it, or None (no folder, file or
    label). A file of another format, one that is not JSON, one whose fields ``check(payload)``
    refuses, or a row ``parse`` refuses (each a ValueError) is a CheckpointError that names the
    file and ``python -m engine <command>``."""
    if folder is None or label is None:
        return None
    path = Path(folder) / name
    if not path.is_file():
        return None
    try:
        payload = read_once(path, _json_object)
        if payload.get("format") != fmt or not isinstance(payload.get("labels"), dict):
            raise ValueError(f"format {payload.get('format')!r}")
        if check is not None:
            check(payload)
        row = payload["labels"].get(label)
        return None if row is None else parse(row)
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise CheckpointError(f"{path} is damaged ({error}); rebuild it with python -m engine {command}") from error


def read_rows(folder: str | Path | None, label: str | None, name: str, fmt: int, command: str,
              spans: list[int], shape: tuple[int, ...]) -> torch.Tensor | None:
    """``(clips, *shape)`` dB for ``label`` from the table ``name`` of one row per clip (clip tones
    and tails, :mod:`engine.tones`; band shares, :mod:`engine.band_shares`), or None (no folder,
    file or label); a damaged file, or one measured in other ``spans``, is a CheckpointError that
    names ``python -m engine <command>``."""
    width = math.prod(shape)

    def same_spans(payload: dict) -> None:
        if list(payload.get("spans", ())) != spans:
            raise ValueError(f"spans {payload.get('spans')!r}, not {spans}")

    def parse(rows: list) -> torch.Tensor:
        table = torch.tensor(rows, dtype=torch.float32)
        if table.dim() != 2 or table.shape[0] == 0 or table.shape[1] != width or not torch.isfinite(table).all():
            raise ValueError(f"{label} is not rows of {width} finite levels in dB")
        return table.reshape(-1, *shape)

    return read_row(folder, name, fmt, label, command, parse, same_spans)


def read_once(path: Path, load: Callable[[Path], object]):
    """``load(path)``, kept per version of the file (inode, time, size: every writer here replaces a
    file whole) and per ``load``, so a table or a kit bank is parsed and checked once, not once a
    sound: every seeded sound of a Sound with a table asks for its row, and parsing `latent-drums`'
    360 KB ``tones.json`` took most of the 7 ms a read cost (a 1 s snare: 0.34 s). What it gives is
    shared: read it, don't change it. A ``load`` that raises keeps nothing."""
    stat = path.stat()
    key, version = (path.resolve(), load), (stat.st_ino, stat.st_mtime_ns, stat.st_size)
    kept = _READ.get(key)
    if kept is not None and kept[0] == version:
        return kept[1]
    value = load(path)
    _READ[key] = (version, value)
    return value


_READ: dict = {}


def _json_object(path: Path) -> dict:
    """The JSON object in ``path`` (each reader parses its row from it into a new tensor)."""
    payload = json.loads(path.read_text())
    if not isinstance(payload, dict):
        raise ValueError("not a JSON object")
    return payload
