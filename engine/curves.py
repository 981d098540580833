"""Drawn controls as text and back, and their checks: one spelling for the CLI, the UI and presets.

A loudness curve is written ``"0:-3,40:-10,250:-40"`` (time in ms : level in dBFS, joined by
straight lines in dB) and onsets ``"0,180"`` (ms). The UI's curve editor writes exactly these
strings, the CLI takes them as ``--rms`` / ``--onsets``, and a recipe stores the parsed points,
so a WAV dropped back into the studio restores what was drawn.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

from .errors import InvalidRequestError

MAX_RMS_POINTS = 256
MAX_ONSETS = 64
MIN_DB, MAX_DB = -80.0, 0.0


def _number(text: str, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise InvalidRequestError(f"{what}: {text.strip()!r} is not a number") from None
    if not math.isfinite(value):
        raise InvalidRequestError(f"{what}: {text.strip()!r} is not a finite number")
    return value


def parse_rms(text: str | None) -> tuple[tuple[float, float], ...] | None:
    """``"0:-3,40:-10"`` -> ((0, -3), (40, -10)); empty -> None. InvalidRequestError saying what is wrong."""
    if text is None or not str(text).strip():
        return None
    points = []
    for n, part in enumerate(str(text).replace(";", ",").split(","), start=1):
        if not part.strip():
            raise InvalidRequestError(f"loudness curve: point {n} is empty (write ms:dB pairs like 0:-3,40:-10)")
        if part.count(":") != 1:
            raise InvalidRequestError(f"loudness curve: point {n} {part.strip()!r} is not ms:dB (like 40:-10)")
        ms, db = part.split(":")
        points.append((_number(ms, f"loudness curve point {n} time"), _number(db, f"loudness curve point {n} level")))
    return check_rms(points)


def parse_onsets(text: str | None) -> tuple[float, ...] | None:
    """``"0,180"`` -> (0.0, 180.0); empty -> None."""
    if text is None or not str(text).strip():
        return None
    parts = str(text).replace(";", ",").split(",")
    if any(not part.strip() for part in parts):
        raise InvalidRequestError("onsets: an empty entry (write times in ms like 0,180)")
    return check_onsets([_number(part, "onset time") for part in parts])


def check_rms(points: Any, length_ms: float | None = None) -> tuple[tuple[float, float], ...] | None:
    """Points as a tuple of (ms, dB) pairs: finite, times from 0 increasing (inside the sound when
    ``length_ms`` is known), levels in [-80, 0] dBFS, at most 256. None/empty -> None."""
    if points is None or (isinstance(points, (list, tuple)) and not points):
        return None
    if not isinstance(points, (list, tuple)):
        raise InvalidRequestError(f"loudness curve must be a list of (ms, dB) points, got {type(points).__name__}")
    if len(points) > MAX_RMS_POINTS:
        raise InvalidRequestError(f"loudness curve has {len(points)} points; at most {MAX_RMS_POINTS}")
    checked = []
    for n, point in enumerate(points, start=1):
        if not isinstance(point, (list, tuple)) or len(point) != 2:
            raise InvalidRequestError(f"loudness curve point {n} must be a (ms, dB) pair, got {point!r}")
        ms, db = point
        for value, what in ((ms, "time"), (db, "level")):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise InvalidRequestError(f"loudness curve point {n}: {what} must be a finite number, got {value!r}")
        if not MIN_DB <= db <= MAX_DB:
            raise InvalidRequestError(f"loudness curve point {n}: level must be between {MIN_DB:g} and "
                                      f"{MAX_DB:g} dBFS, got {db:g}")
        if ms < 0:
            raise InvalidRequestError(f"loudness curve point {n}: time must be 0 ms or later, got {ms:g}")
        if length_ms is not None and ms > length_ms + 0.5:
            raise InvalidRequestError(f"loudness curve point {n} at {ms:g} ms is past the end of the sound "
                                      f"({length_ms:.0f} ms)")
        if checked and ms <= checked[-1][0]:
            raise InvalidRequestError(f"loudness curve times must increase: point {n} ({ms:g} ms) comes after "
                                      f"{checked[-1][0]:g} ms")
        checked.append((float(ms), float(db)))
    return tuple(checked)


def check_onsets(times: Any, length_ms: float | None = None) -> tuple[float, ...] | None:
    """Onset times in ms: finite, 0 or later (inside the sound when ``length_ms`` is known), at
    most 64; returned sorted with repeats merged. None/empty -> None."""
    if times is None or (isinstance(times, (list, tuple)) and not times):
        return None
    if not isinstance(times, (list, tuple)):
        raise InvalidRequestError(f"onsets must be a list of times in ms, got {type(times).__name__}")
    if len(times) > MAX_ONSETS:
        raise InvalidRequestError(f"{len(times)} onsets; at most {MAX_ONSETS}")
    for value in times:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise InvalidRequestError(f"onset times must be finite numbers of ms, got {value!r}")
        if value < 0:
            raise InvalidRequestError(f"onset times must be 0 ms or later, got {value:g}")
        if length_ms is not None and value > length_ms:
            raise InvalidRequestError(f"the onset at {value:g} ms is past the end of the sound ({length_ms:.0f} ms)")
    return tuple(sorted({float(v) for v in times}))


def cut_rms(points: Sequence[Sequence[float]], length_ms: float) -> tuple[tuple[float, float], ...]:
    """A loudness curve's points cut to a sound of ``length_ms``: the points inside it, and where a
    segment crosses the end, a point at the end interpolated on it (a request refuses points past
    the end of its sound)."""
    points = [tuple(p) for p in points]
    kept = [p for p in points if p[0] <= length_ms]
    if len(kept) < len(points) and kept:
        (t0, d0), (t1, d1) = kept[-1], points[len(kept)]
        if t0 < length_ms:
            kept.append((round(length_ms, 1), round(d0 + (d1 - d0) * (length_ms - t0) / (t1 - t0), 1)))
    return tuple(kept)


def _short(value: float) -> str:
    return f"{value:.1f}".rstrip("0").rstrip(".")


def format_rms(points: Sequence[Sequence[float]] | None) -> str:
    return ",".join(f"{_short(ms)}:{_short(db)}" for ms, db in points or ())


def format_onsets(times: Sequence[float] | None) -> str:
    return ",".join(_short(t) for t in times or ())
