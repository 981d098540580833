"""Audio at the edges of the engine: reading, checking, conditioning and exporting sounds.

Inside the engine audio is always a ``float32`` torch tensor shaped ``(channels, samples)``.
This module is the only place that converts to and from numpy, files and other layouts, so
every sound that enters the engine passes the same checks (one validation path shared by files
and in-memory uploads) and every sound that leaves it is written the same safe way (temporary
file, atomic rename, never overwriting, recipe embedded in the WAV).

Libraries do the signal work: soundfile (libsndfile) for I/O, soxr for resampling and
pyloudnorm for ITU-R BS.1770 loudness.
"""

from __future__ import annotations

import io
import json
import logging
import math
import operator
import os
import re
import struct
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pyloudnorm
import soundfile as sf
import soxr
import torch

from engine.errors import AudioFileError, InvalidRequestError

log = logging.getLogger(__name__)

__all__ = [
    "MIN_SAMPLE_RATE",
    "MAX_SAMPLE_RATE",
    "RECIPE_CHUNK_ID",
    "read_audio",
    "audio_from_numpy",
    "audio_to_numpy",
    "resample",
    "to_channels",
    "trim_leading_silence",
    "align_onset",
    "fit_length",
    "fade_in",
    "fade_out",
    "peak_normalise",
    "loudness",
    "loudness_normalise",
    "export_wav",
    "read_recipe",
    "audio_stats",
]

MIN_SAMPLE_RATE = 4_000
"""Below this a file is almost certainly mislabelled (or a header is corrupt), not real audio."""
MAX_SAMPLE_RATE = 384_000
"""The highest rate real converters use; anything above is a corrupt or hostile header."""

RECIPE_CHUNK_ID = b"tdsr"
"""RIFF chunk id of the recipe we append to exported WAVs; DAWs skip chunks they don't know."""

EXPORT_SUBTYPES = ("PCM_16", "PCM_24", "FLOAT")
"""WAV sample formats export_wav writes; PCM_24 is the default samplers and DAWs all read."""

_LOUDNESS_BLOCK_S = 0.4  # BS.1770 gating block; shorter clips are padded (see `loudness`)
_INT_SCALES = {np.dtype(np.int16): 32768.0, np.dtype(np.int32): 2147483648.0,
               np.dtype(np.int8): 128.0}
_MAX_ARRAY_CHANNELS = 32  # more than this in an (N, C) array means it was passed as (C, N)
_MAX_STEM_PART = 64  # characters per file-name part, so names stay far below 255 bytes
_MAX_EXPORT_TRIES = 10_000
_WINDOWS_RESERVED = {"CON", "PRN", "AUX", "NUL", *(f"COM{i}" for i in range(1, 10)),
                     *(f"LPT{i}" for i in range(1, 10))}


# --------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------

def _db_to_gain(db: float) -> float:
    return 10.0 ** (db / 20.0)


def _gain_to_db(gain: float) -> float:
    return 20.0 * math.log10(gain) if gain > 0 else float("-inf")


def _check_tensor(audio: torch.Tensor, what: str = "audio") -> None:
    """Catch layout mistakes (1-D, (N, C)) early, where the message can still say what is wrong."""
    if not isinstance(audio, torch.Tensor):
        raise InvalidRequestError(f"{what} must be a torch.Tensor, got {type(audio).__name__}")
    if audio.ndim != 2:
        raise InvalidRequestError(
            f"{what} must be shaped (channels, samples), got shape {tuple(audio.shape)}")


def _as_count(value: Any, what: str, minimum: int) -> int:
    """Accept Python and numpy integers (sliders and arrays hand out both), nothing fractional."""
    try:
        count = operator.index(value)
    except TypeError:
        raise InvalidRequestError(f"{what} must be a whole number, got {value!r}") from None
    if count < minimum:
        raise InvalidRequestError(f"{what} must be >= {minimum}, got {count}")
    return count


def _check_rate(rate: Any, source: str, error: type[Exception] = AudioFileError) -> int:
    """Return ``rate`` as an int, or raise ``error`` naming ``source`` if it is absurd.

    Absurd rates are refused rather than passed on because they come from corrupt headers and
    would otherwise turn into huge resampling jobs or nonsense durations downstream.
    """
    try:
        value = float(rate)
    except (TypeError, ValueError):
        raise error(f"{source}: sample rate {rate!r} is not a number") from None
    if not value.is_integer() or not MIN_SAMPLE_RATE <= value <= MAX_SAMPLE_RATE:
        raise error(f"{source}: sample rate {rate!r} Hz is not plausible audio "
                    f"(expected {MIN_SAMPLE_RATE}..{MAX_SAMPLE_RATE} Hz)")
    return int(value)


def _check_duration(frames: int, rate: int, source: str, max_seconds: float) -> None:
    """Refuse empty and overlong audio; used on headers (before reading) and on arrays."""
    if frames <= 0:
        raise AudioFileError(f"{source}: the audio is empty (0 samples)")
    seconds = frames / rate
    if seconds > max_seconds:
        raise AudioFileError(f"{source}: the audio is {seconds:.1f} s long; the limit is "
                             f"{max_seconds:g} s (trim it to a single hit first)")


def _validate_array(data: np.ndarray, sample_rate: Any, source: str,
                    max_seconds: float) -> tuple[np.ndarray, int]:
    """The one validation path for audio entering the engine (files and uploads alike).

    Returns float32 data shaped (samples, channels) and the rate as an int.
    """
    if not isinstance(data, np.ndarray):
        raise AudioFileError(f"{source}: expected a numpy array of samples, "
                             f"got {type(data).__name__}")
    if data.ndim == 1:
        data = data[:, None]
    if data.ndim != 2:
        raise AudioFileError(f"{source}: expected samples shaped (samples,) or "
                             f"(samples, channels), got shape {data.shape}")
    if data.shape[1] == 0 or data.shape[1] > _MAX_ARRAY_CHANNELS:
        raise AudioFileError(f"{source}: {data.shape[1]} channels is not plausible; expected "
                             f"(samples, channels) with 1..{_MAX_ARRAY_CHANNELS} channels")
    rate = _check_rate(sample_rate, source)
    _check_duration(data.shape[0], rate, source, max_seconds)

    if data.dtype in _INT_SCALES:
        data = data.astype(np.float32) / _INT_SCALES[data.dtype]
    elif data.dtype == np.uint8:  # 8-bit WAV is unsigned with the zero at 128
        data = (data.astype(np.float32) - 128.0) / 128.0
    elif np.issubdtype(data.dtype, np.floating):
        data = data.astype(np.float32, copy=False)
    else:
        raise AudioFileError(f"{source}: unsupported sample type {data.dtype} "
                             "(expected float, int16, int32 or uint8)")
    if not np.isfinite(data).all():
        raise AudioFileError(f"{source}: the audio contains NaN or infinite samples "
                             "(the file is corrupt or was written by a broken process)")
    return data, rate


def _numpy_to_tensor(data: np.ndarray) -> torch.Tensor:
    """(samples, channels) numpy -> (channels, samples) float32 tensor that owns its memory."""
    return torch.from_numpy(np.ascontiguousarray(data.T, dtype=np.float32).copy())


def audio_to_numpy(audio: torch.Tensor) -> np.ndarray:
    """Engine tensor -> float32 numpy shaped (samples, channels), the layout soundfile,
    soxr, pyloudnorm and Gradio expect. Works from any device."""
    _check_tensor(audio)
    return np.ascontiguousarray(audio.detach().to("cpu", torch.float32).numpy().T)


def _conform(audio: torch.Tensor, rate: int, channels: int | None,
             target_rate: int | None) -> tuple[torch.Tensor, int]:
    """Apply the optional channel conversion and resampling shared by the two entry points."""
    if channels is not None:
        audio = to_channels(audio, channels)
    if target_rate is not None:
        target_rate = _check_rate(target_rate, "requested sample rate", InvalidRequestError)
        audio = resample(audio, rate, target_rate)
        rate = target_rate
    return audio, rate


# --------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------

def audio_from_numpy(data: np.ndarray, sample_rate: int, source: str = "<upload>",
                     channels: int | None = None, target_rate: int | None = None,
                     max_seconds: float = 60.0) -> tuple[torch.Tensor, int]:
    """Check and convert an in-memory array (e.g. a Gradio upload) into engine audio.

    Accepts (samples,) or (samples, channels) arrays of float, int16, int32 or uint8 (integers
    are scaled to [-1, 1)), because that is what Gradio and soundfile hand out. Applies exactly
    the checks ``read_audio`` applies, raising :class:`AudioFileError` naming ``source``.
    Optionally converts to ``channels`` and resamples to ``target_rate``.

    Returns ``(audio, rate)`` with audio a float32 tensor shaped (channels, samples).
    """
    data, rate = _validate_array(data, sample_rate, source, max_seconds)
    return _conform(_numpy_to_tensor(data), rate, channels, target_rate)


def read_audio(path: str | os.PathLike[str], sample_rate: int | None = None,
               channels: int | None = None,
               max_seconds: float = 60.0) -> tuple[torch.Tensor, int]:
    """Read an audio file (WAV, FLAC, AIFF, OGG or anything else libsndfile reads).

    Every problem a user can cause with a file (missing, empty, not audio, corrupt, silent
    zero-length, NaN/Inf, too long, absurd sample rate) raises :class:`AudioFileError` with
    the file name in the message. Duration and rate are checked from the header before the
    samples are read, so an hour-long file is refused without loading it.

    ``sample_rate``: resample to this rate (soxr, very high quality). ``channels``: convert
    (see :func:`to_channels`). Returns ``(audio, rate)``, audio float32 (channels, samples).
    """
    path = Path(path)
    source = str(path)
    if not path.exists():
        raise AudioFileError(f"{source}: file not found")
    if path.is_dir():
        raise AudioFileError(f"{source}: is a folder, not an audio file")
    try:
        if path.stat().st_size == 0:
            raise AudioFileError(f"{source}: the file is empty (0 bytes)")
        info = sf.info(str(path))
    except AudioFileError:
        raise
    except (sf.SoundFileError, RuntimeError, OSError) as exc:
        raise AudioFileError(f"{source}: not a readable audio file or corrupt ({exc})") from exc
    rate = _check_rate(info.samplerate, source)
    _check_duration(info.frames, rate, source, max_seconds)
    try:
        data, _ = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.SoundFileError, RuntimeError, OSError) as exc:
        raise AudioFileError(f"{source}: could not decode the audio ({exc})") from exc
    data, rate = _validate_array(data, rate, source, max_seconds)
    log.debug("read %s: %d ch, %d samples at %d Hz", source, data.shape[1], data.shape[0], rate)
    return _conform(_numpy_to_tensor(data), rate, channels, sample_rate)


# --------------------------------------------------------------------------------------------
# Format conversion
# --------------------------------------------------------------------------------------------

def resample(audio: torch.Tensor, from_rate: int, to_rate: int) -> torch.Tensor:
    """Resample with soxr (VHQ): linear phase, negligible aliasing, exact duration.

    The output has ``ceil(samples * to_rate / from_rate)`` samples (soxr's convention) and
    stays on the input's device. Not differentiable (it runs in numpy).
    """
    _check_tensor(audio)
    from_rate = _check_rate(from_rate, "resample source rate", InvalidRequestError)
    to_rate = _check_rate(to_rate, "resample target rate", InvalidRequestError)
    if from_rate == to_rate:
        return audio
    out = soxr.resample(audio_to_numpy(audio), from_rate, to_rate, quality="VHQ")
    return _numpy_to_tensor(out.reshape(out.shape[0], -1)).to(audio.device)


def to_channels(audio: torch.Tensor, channels: int) -> torch.Tensor:
    """Convert the channel count the way a user expects when a model wants mono or stereo.

    Mono -> N duplicates the channel; anything -> mono averages all channels; more channels
    than wanted keeps the first ones (front left/right in every standard layout). Upmixing
    from 2+ channels to more is refused because no choice would be obviously right.
    """
    _check_tensor(audio)
    channels = _as_count(channels, "channels", 1)
    have = audio.shape[0]
    if channels == have:
        return audio
    if channels == 1:
        return audio.mean(dim=0, keepdim=True)
    if have == 1:
        return audio.expand(channels, -1).clone()
    if channels < have:
        return audio[:channels].clone()
    raise InvalidRequestError(f"cannot upmix {have} channels to {channels}")


# --------------------------------------------------------------------------------------------
# Editing
# --------------------------------------------------------------------------------------------

def trim_leading_silence(audio: torch.Tensor, threshold_db: float = -50.0) -> torch.Tensor:
    """Drop samples before the first one louder than ``threshold_db`` dBFS on any channel.

    The threshold is absolute (dBFS), since silence is a level, not a ratio; use
    :func:`align_onset` to align hits by their attack. Input that is silent throughout is
    returned unchanged rather than as an empty clip, which nothing downstream could use.
    """
    _check_tensor(audio)
    loud = (audio.abs().amax(dim=0) > _db_to_gain(threshold_db)).nonzero()
    if loud.numel() == 0:
        log.debug("trim_leading_silence: nothing above %.1f dBFS, left unchanged", threshold_db)
        return audio
    return audio[:, int(loud[0]):]


def align_onset(audio: torch.Tensor, sample_rate: int, pre_roll_ms: float = 1.0,
                threshold_db: float = -40.0) -> torch.Tensor:
    """Start the clip ``pre_roll_ms`` before its onset, so hits line up at the same time.

    The onset is the first sample whose peak envelope (max |x| over channels) reaches
    ``threshold_db`` relative to the clip's peak; a relative threshold finds quiet and loud
    hits alike. The pre-roll keeps the very start of the attack, and is faded in so the cut
    cannot click. The result is shorter than the input: follow with :func:`fit_length` when
    a fixed length is needed. Silent input is returned unchanged.
    """
    _check_tensor(audio)
    if pre_roll_ms < 0:
        raise InvalidRequestError(f"pre_roll_ms must be >= 0, got {pre_roll_ms}")
    envelope = audio.abs().amax(dim=0)
    peak = float(envelope.max()) if envelope.numel() else 0.0
    if peak <= 0.0:
        return audio
    onset = int((envelope >= peak * _db_to_gain(threshold_db)).nonzero()[0])
    pre_roll = int(round(pre_roll_ms * 1e-3 * sample_rate))
    start = max(0, onset - pre_roll)
    if start == 0:
        return audio
    return fade_in(audio[:, start:], onset - start)


def fit_length(audio: torch.Tensor, length: int) -> torch.Tensor:
    """Cut at the end, or zero-pad at the end, to exactly ``length`` samples."""
    _check_tensor(audio)
    length = _as_count(length, "length (samples)", 1)
    have = audio.shape[1]
    if have >= length:
        return audio[:, :length]
    return torch.nn.functional.pad(audio, (0, length - have))


def _raised_cosine(samples: int, like: torch.Tensor) -> torch.Tensor:
    """Gain rising from exactly 0 towards 1 over ``samples`` samples (half a Hann window)."""
    n = torch.arange(samples, dtype=torch.float64, device=like.device)
    return (0.5 - 0.5 * torch.cos(math.pi * n / samples)).to(like.dtype)


def _fade_samples(audio: torch.Tensor, samples: int) -> int:
    _check_tensor(audio)
    return min(_as_count(samples, "fade length (samples)", 0), audio.shape[1])


def fade_in(audio: torch.Tensor, samples: int) -> torch.Tensor:
    """Raised-cosine fade-in over the first ``samples`` samples; the first sample becomes 0.

    A raised cosine has no corner at either end, so it removes clicks without dulling the
    attack the way a long linear ramp would. Returns a new tensor.
    """
    samples = _fade_samples(audio, samples)
    out = audio.clone()
    if samples:
        out[:, :samples] *= _raised_cosine(samples, audio)
    return out


def fade_out(audio: torch.Tensor, samples: int) -> torch.Tensor:
    """Raised-cosine fade-out over the last ``samples`` samples; the last sample becomes 0."""
    samples = _fade_samples(audio, samples)
    out = audio.clone()
    if samples:
        out[:, -samples:] *= _raised_cosine(samples, audio).flip(0)
    return out


# --------------------------------------------------------------------------------------------
# Level
# --------------------------------------------------------------------------------------------

def peak_normalise(audio: torch.Tensor, ceiling_db: float = -1.0) -> torch.Tensor:
    """Scale so the sample peak sits exactly at ``ceiling_db`` dBFS.

    -1 dBFS leaves headroom for lossy encoding and inter-sample peaks. Silent input is
    returned unchanged (there is no gain that would make it reach the ceiling).
    """
    _check_tensor(audio)
    peak = float(audio.abs().max()) if audio.numel() else 0.0
    if peak <= 0.0:
        return audio
    return audio * (_db_to_gain(ceiling_db) / peak)


def loudness(audio: torch.Tensor, sample_rate: int) -> float:
    """Integrated loudness in LUFS (ITU-R BS.1770-4 via pyloudnorm); ``-inf`` for silence.

    Two adaptations make it usable on drum one-shots:

    * Clips shorter than one 400 ms gating block are zero-padded to one block. The result is
      the loudness of the hit followed by silence, i.e. what a loudness meter shows when the
      one-shot is played once; it is comparable across short and long clips.
    * The clip is measured at 0 dBFS peak and the gain is taken back out. BS.1770's relative
      gate is scale-invariant, so this changes nothing for normal material, but a very quiet
      clip is measured instead of vanishing under the absolute -70 LUFS gate (which exists to
      skip silence in broadcast programmes, not to reject quiet samples).

    Only the first five channels are measured (the BS.1770 channel weights stop there).
    """
    _check_tensor(audio)
    rate = _check_rate(sample_rate, "loudness sample rate", InvalidRequestError)
    data = audio_to_numpy(audio).astype(np.float64)
    peak = float(np.abs(data).max()) if data.size else 0.0
    if peak <= 0.0:
        return float("-inf")
    if not math.isfinite(peak):
        raise InvalidRequestError("cannot measure loudness: the audio contains NaN or Inf")
    if data.shape[1] > 5:
        log.warning("loudness: measuring the first 5 of %d channels", data.shape[1])
        data = data[:, :5]
    data = data / peak
    block = int(math.ceil(_LOUDNESS_BLOCK_S * rate)) + 1
    if data.shape[0] < block:
        data = np.pad(data, ((0, block - data.shape[0]), (0, 0)))
    lufs = pyloudnorm.Meter(rate, block_size=_LOUDNESS_BLOCK_S).integrated_loudness(data)
    return float(lufs) + _gain_to_db(peak)


def loudness_normalise(audio: torch.Tensor, sample_rate: int, target_lufs: float = -14.0,
                       ceiling_db: float = -1.0) -> torch.Tensor:
    """Scale to ``target_lufs`` integrated loudness, but never above ``ceiling_db`` sample peak.

    Loudness (see :func:`loudness` for how short clips are measured) makes kicks and hats
    sit at the same perceived level; the ceiling wins when the two disagree, because a clipped
    export is worse than a slightly quieter one, so very peaky sounds land below the target.
    Silent input is returned unchanged.
    """
    measured = loudness(audio, sample_rate)
    if not math.isfinite(measured):
        return audio
    gain_db = target_lufs - measured
    peak = float(audio.abs().max())
    peak_after_db = _gain_to_db(peak) + gain_db
    if peak_after_db > ceiling_db:
        log.debug("loudness_normalise: ceiling %.1f dBFS limits gain (target %.1f LUFS, "
                  "reached %.1f LUFS)", ceiling_db, target_lufs,
                  measured + gain_db - (peak_after_db - ceiling_db))
        gain_db -= peak_after_db - ceiling_db
    return audio * _db_to_gain(gain_db)


def audio_stats(audio: torch.Tensor) -> dict[str, Any]:
    """Quick facts for logs, the UI and tests: peak and RMS in dBFS, and whether any sample
    is NaN/Inf (the first thing to check when a model diverges)."""
    _check_tensor(audio)
    x = audio.detach().to("cpu", torch.float64)
    finite = torch.isfinite(x)
    has_nonfinite = not bool(finite.all())
    x = torch.where(finite, x, torch.zeros_like(x))
    peak = float(x.abs().max()) if x.numel() else 0.0
    rms = float(x.square().mean().sqrt()) if x.numel() else 0.0
    return {
        "channels": int(audio.shape[0]),
        "samples": int(audio.shape[1]),
        "peak_db": _gain_to_db(peak),
        "rms_db": _gain_to_db(rms),
        "has_nan": has_nonfinite,
    }


# --------------------------------------------------------------------------------------------
# Export with the recipe embedded
# --------------------------------------------------------------------------------------------

def _sanitise(part: Any) -> str:
    """Reduce one file-name part to [A-Za-z0-9._-] so user text can never form a path,
    a hidden file or an option-like name."""
    text = re.sub(r"[^A-Za-z0-9._-]+", "-", str(part))
    text = re.sub(r"\.{2,}", ".", text)  # no ".." anywhere, even though "/" is already gone
    return text.strip(".-_")[:_MAX_STEM_PART].strip(".-_")


def _format_number(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _model_name(model: Any) -> str:
    """A model given by its folder path (``~/models/mykick``) is named by the folder alone: the
    whole path in a file name (``home-me-models-mykick_...``) says where it was, not what it is."""
    text = str(model or "").rstrip("/\\")
    return re.split(r"[/\\]", text)[-1] or "sample"


def stem_from_recipe(recipe: Mapping[str, Any]) -> str:
    """``kick_seed42_16st_g2`` (+ the label when it differs from the model, ``_to7-m0.5`` for a
    morph, ``_var0.3`` for a variation): names that say what a sound is and sort well in a file
    browser. Absent fields are skipped; :func:`export_wav` sanitises every part."""
    model = _model_name(recipe.get("model"))
    parts = [model]
    if recipe.get("label") not in (None, "") and recipe["label"] != model:
        parts.append(str(recipe["label"]))
    if recipe.get("seed") is not None:
        parts.append(f"seed{_format_number(recipe['seed'])}")
    if recipe.get("seed_b") is not None and recipe.get("morph"):
        parts.append(f"to{_format_number(recipe['seed_b'])}-m{_format_number(recipe['morph'])}")
    if recipe.get("steps") is not None:
        parts.append(f"{_format_number(recipe['steps'])}st")
    if recipe.get("guidance") is not None:
        parts.append(f"g{_format_number(recipe['guidance'])}")
    if recipe.get("reference"):
        parts.append(f"var{_format_number(recipe.get('strength', 0))}")
    return "_".join(parts)


def _safe_stem(stem: str) -> str:
    parts = [p for p in (_sanitise(p) for p in str(stem).split("_")) if p]
    safe = "_".join(parts) or "sample"
    if safe.split(".")[0].upper() in _WINDOWS_RESERVED:
        safe = f"sample-{safe}"
    return safe


def _riff_chunk(chunk_id: bytes, payload: bytes) -> bytes:
    """One RIFF chunk: id, little-endian size, payload, and a pad byte if the size is odd."""
    pad = b"\0" if len(payload) % 2 else b""
    return chunk_id + struct.pack("<I", len(payload)) + payload + pad


def _wav_bytes(data: np.ndarray, rate: int, subtype: str, recipe_json: bytes) -> bytes:
    """A complete WAV in memory: soundfile's file plus our recipe chunk, RIFF size patched."""
    buffer = io.BytesIO()
    sf.write(buffer, data, rate, format="WAV", subtype=subtype)
    wav = bytearray(buffer.getvalue())
    if wav[:4] != b"RIFF" or wav[8:12] != b"WAVE":
        raise AudioFileError(f"the audio is too large for a WAV file ({len(wav)} bytes)")
    if len(wav) % 2:  # every chunk must start at an even offset
        wav += b"\0"
    wav += _riff_chunk(RECIPE_CHUNK_ID, recipe_json)
    if len(wav) - 8 > 0xFFFFFFFF:
        raise AudioFileError("the audio is too large for a WAV file with a recipe")
    wav[4:8] = struct.pack("<I", len(wav) - 8)
    return bytes(wav)


def _claim(tmp: Path, final: Path) -> bool:
    """Atomically give the finished ``tmp`` the name ``final`` unless ``final`` exists.

    A hard link fails if the name is taken and makes the complete file appear at once, so two
    concurrent exports never clobber each other and nobody sees a half-written WAV. Where the
    file system has no hard links we reserve the name with O_EXCL and ``os.replace`` over our
    own empty placeholder (briefly visible as a 0-byte file, never as a partial WAV).
    """
    try:
        os.link(tmp, final)
        return True
    except FileExistsError:
        return False
    except OSError:
        pass  # no hard links here (FAT, some network shares): fall back to O_EXCL
    try:
        os.close(os.open(final, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
    except FileExistsError:
        return False
    os.replace(tmp, final)
    return True


def export_wav(audio: torch.Tensor, sample_rate: int, folder: str | os.PathLike[str],
               recipe: Mapping[str, Any], *, subtype: str = "PCM_24",
               stem: str | None = None) -> Path:
    """Write ``audio`` as a WAV in ``folder`` with ``recipe`` embedded; return its path.

    The name is ``{model}_{label}_seed{seed}_{steps}st_g{guidance}.wav`` built from the recipe
    (absent fields skipped) unless ``stem`` is given; every part is reduced to
    [A-Za-z0-9._-], so a prompt or model name can never create a path. Existing files are
    never overwritten: ``_2``, ``_3``, ... is appended instead, safely even when two exports
    race. The file is written under a temporary name and appears under its final name only
    when complete. ``subtype`` is "PCM_24" (default), "PCM_16" or "FLOAT"; PCM is clipped to
    [-1, 1]. The recipe is stored as UTF-8 JSON in a ``tdsr`` RIFF chunk (see
    :func:`read_recipe`) that audio software ignores.
    """
    _check_tensor(audio)
    if subtype not in EXPORT_SUBTYPES:
        raise InvalidRequestError(f"WAV subtype must be one of {', '.join(EXPORT_SUBTYPES)}, "
                                  f"got {subtype!r}")
    rate = _check_rate(sample_rate, "export sample rate", InvalidRequestError)
    if audio.shape[1] == 0:
        raise AudioFileError("refusing to export empty audio (0 samples)")
    data = audio_to_numpy(audio)
    if not np.isfinite(data).all():
        raise AudioFileError("refusing to export audio with NaN or infinite samples "
                             "(the model output diverged)")
    if subtype != "FLOAT":
        data = np.clip(data, -1.0, 1.0)
    try:
        recipe_json = json.dumps(dict(recipe), ensure_ascii=False, sort_keys=True,
                                 allow_nan=False).encode("utf-8")
    except (TypeError, ValueError) as exc:
        raise InvalidRequestError(f"the recipe cannot be stored as JSON: {exc}") from exc
    wav = _wav_bytes(data, rate, subtype, recipe_json)

    folder = Path(folder)
    base = _safe_stem(stem if stem is not None else stem_from_recipe(recipe))
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=folder, prefix=f".{base}.", suffix=".tmp")
    except OSError as exc:
        raise AudioFileError(f"{folder}: cannot write exports here ({exc})") from exc
    tmp = Path(tmp_name)
    try:
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(wav)
                f.flush()
                os.fsync(f.fileno())
        except OSError as exc:  # disk full, quota, removed folder...
            raise AudioFileError(f"{folder}: could not write {base}.wav ({exc})") from exc
        for n in range(1, _MAX_EXPORT_TRIES + 1):
            final = folder / (f"{base}.wav" if n == 1 else f"{base}_{n}.wav")
            if _claim(tmp, final):
                log.info("exported %s (%s, %d Hz, %d ch)", final, subtype, rate, data.shape[1])
                return final
        raise AudioFileError(f"{folder}: {_MAX_EXPORT_TRIES} files named {base}*.wav already "
                             "exist; choose another folder or name")
    finally:
        tmp.unlink(missing_ok=True)


def _looks_like_chunk_id(raw: bytes) -> bool:
    return len(raw) == 4 and all(32 <= b < 127 for b in raw)


def read_recipe(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """Return the recipe embedded by :func:`export_wav`, or None if the WAV has none.

    Walks the RIFF chunk list (seeking past the audio, so large files are cheap), honouring
    the pad byte after odd-sized chunks and tolerating writers that forget it. Raises
    :class:`AudioFileError` if the file is missing, not a RIFF/WAVE file, or holds a
    recipe chunk that is not a JSON object.
    """
    path = Path(path)
    source = str(path)
    try:
        f = path.open("rb")
    except FileNotFoundError:
        raise AudioFileError(f"{source}: file not found") from None
    except OSError as exc:
        raise AudioFileError(f"{source}: cannot open ({exc})") from exc
    with f:
        header = f.read(12)
        if len(header) < 12 or header[:4] != b"RIFF" or header[8:12] != b"WAVE":
            raise AudioFileError(f"{source}: not a RIFF/WAVE file, so it has no recipe chunk")
        end = os.fstat(f.fileno()).st_size
        offset = 12
        while offset + 8 <= end:
            f.seek(offset)
            chunk_id, size = struct.unpack("<4sI", f.read(8))
            if chunk_id == RECIPE_CHUNK_ID:
                payload = f.read(size)
                try:
                    recipe = json.loads(payload.decode("utf-8"))
                except (UnicodeDecodeError, ValueError) as exc:
                    raise AudioFileError(f"{source}: the recipe chunk is corrupt ({exc})") from exc
                if not isinstance(recipe, dict):
                    raise AudioFileError(f"{source}: the recipe chunk is not a JSON object")
                return recipe
            following = offset + 8 + size
            if size % 2:
                # a correct writer left a zero pad byte; a careless one started the next
                # chunk right here, which we recognise by a printable chunk id
                f.seek(following)
                unpadded_next = f.read(4)
                if unpadded_next[:1] == b"\0" or not _looks_like_chunk_id(unpadded_next):
                    following += 1
            offset = following
    return None
