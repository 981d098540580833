"""Audio at the edges of the engine: reading, checking, conditioning and exporting sounds.

Inside the engine audio is always a ``float32`` torch tensor shaped ``(channels, samples)``.
This module is the only place that converts to and from numpy, files and other layouts, so
every sound that enters the engine passes the same checks (one validation path shared by files
and in-memory uploads) and every sound that leaves it is written the same safe way (temporary
file, atomic rename, never overwriting, recipe embedded in the WAV).

Libraries do the signal work: soundfile (libsndfile) for I/O, soxr for resampling,
pyloudnorm for ITU-R BS.1770 loudness and scipy for the true-peak limiter's filters.
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
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pyloudnorm
import scipy.ndimage
import scipy.signal
import soundfile as sf
import soxr
import torch

from engine.errors import AudioFileError, InvalidRequestError
from engine.request import recorded_strength

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
    "normalise_loudness",
    "export_wav",
    "make_shareable",
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


def _sndfile_reason(exc: BaseException, path: Path) -> str:
    """The reason for a failed read in words: libsndfile's text without its
    ``Error opening '<full path>': `` prefix (or an OSError's strerror), in lower case.

    Uploads live under long temporary paths (``/tmp/gradio/<64 hex>/x.wav``); the message
    already starts with the file, so repeating the path only hides the reason.
    """
    if isinstance(exc, OSError) and exc.strerror:
        text = exc.strerror
    else:
        text = str(getattr(exc, "error_string", "") or exc)
        text = re.sub(r"^Error (opening|reading) '.*?': ", "", text)
    text = re.sub(r"^Error in [\w/]+ file\. ", "", text.strip())  # "Error in WAV/W64/RF64 file."
    text = text.replace(str(path), path.name).strip().rstrip(".")
    return (text[:1].lower() + text[1:]) or "unknown reason"


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
    except (sf.SoundFileError, RuntimeError) as exc:
        raise AudioFileError(f"{source}: not an audio file this studio can read "
                             f"({_sndfile_reason(exc, path)})") from exc
    except OSError as exc:
        raise AudioFileError(f"{source}: cannot open the file "
                             f"({_sndfile_reason(exc, path)})") from exc
    rate = _check_rate(info.samplerate, source)
    _check_duration(info.frames, rate, source, max_seconds)
    try:
        data, _ = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.SoundFileError, RuntimeError, OSError) as exc:
        raise AudioFileError(f"{source}: could not decode the audio, the file may be corrupt "
                             f"({_sndfile_reason(exc, path)})") from exc
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


def within_full_scale(audio: torch.Tensor) -> torch.Tensor:
    """``audio`` turned down, as a whole, so its peak sits at full scale when it was over it; as it
    is otherwise. A 32-bit float file may hold samples far over 1 (a DAW bounce without a limiter);
    as a reference or a curve's source it is read as the shape it has, at the level the studio's
    own sounds are turned down to (:func:`engine.studio.finish`), since a loudness curve lives in
    -80..0 dBFS and the codec was trained on sounds within full scale."""
    _check_tensor(audio)
    peak = float(audio.abs().max()) if audio.numel() else 0.0
    return audio / peak if peak > 1.0 else audio


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


_TRUE_PEAK_OVERSAMPLING = 4  # BS.1770-4 Annex 2: 4x is enough for 44.1/48 kHz material
_LIMITER_LOOKAHEAD_S = 0.0015  # the gain ramps down over this time before a peak
_LIMITER_RELEASE_S = 0.05  # time constant of the (exponential, in dB) recovery after a peak
_LOUDNESS_TOLERANCE_LU = 0.1  # stop correcting the gain once this close to the target
_LOUDNESS_ITERATIONS = 6  # limit-and-remeasure passes; 2-3 are enough for drum hits
_MAX_EXTRA_GAIN_DB = 24.0  # at most this much gain beyond the first guess, for unreachable targets
_MAX_LIMIT_DB = 12.0  # the limiter pulls peaks down by at most this much: past it a kick's attack is gone


def _check_level(value: Any, what: str) -> float:
    try:
        level = float(value)
    except (TypeError, ValueError):
        raise InvalidRequestError(f"{what} must be a number, got {value!r}") from None
    if not math.isfinite(level):
        raise InvalidRequestError(f"{what} must be a finite number, got {value!r}")
    return level


def _true_peak_envelope(data: np.ndarray) -> np.ndarray:
    """Peak of the 4x-oversampled signal around every sample, linked over channels.

    ``data`` is (channels, samples) float64. Entry n is the largest |x| of the reconstructed
    (oversampled, ITU-R BS.1770-4 Annex 2 style) signal between samples n-1 and n+1, so an
    inter-sample peak makes both of its neighbours lower their gain. One channel at a time,
    which keeps the 4x copy small for long clips.
    """
    up = _TRUE_PEAK_OVERSAMPLING
    frames = data.shape[1]
    blocks = np.zeros(frames)
    for channel in data:
        oversampled = np.abs(scipy.signal.resample_poly(channel, up, 1))
        blocks = np.maximum(blocks, oversampled[: frames * up].reshape(frames, up).max(axis=1))
        blocks = np.maximum(blocks, np.abs(channel))
    return np.maximum(blocks, np.concatenate(([0.0], blocks[:-1])))


def _true_peak(data: np.ndarray) -> float:
    """True peak (linear) of (channels, samples) float64 data, as a BS.1770 meter shows it."""
    return float(_true_peak_envelope(data).max()) if data.size else 0.0


def _limiter_gain(envelope: np.ndarray, rate: int, ceiling: float, release_s: float = _LIMITER_RELEASE_S) -> np.ndarray:
    """Gain per sample (<= 1, one for all channels) that keeps the true peak under ``ceiling``.

    ``envelope`` is :func:`_true_peak_envelope` of the audio; ``need`` is the gain each sample
    needs on its own. A sliding minimum over the next ``L`` samples (the look-ahead) followed
    by a moving average over the previous ``L`` samples ramps the gain down over ``L`` samples
    before a peak; every sample averaged into ``gain[n]`` is a minimum over a window that
    contains n, so ``gain[n] <= need[n]`` holds exactly, not approximately. Between the two,
    the release lets the reduction (in dB) decay exponentially after each peak instead of
    snapping back within a cycle, which would distort low notes.
    """
    need = np.minimum(1.0, ceiling / np.maximum(envelope, 1e-300))
    if need.min() >= 1.0:
        return np.ones_like(need)
    look = max(1, int(round(_LIMITER_LOOKAHEAD_S * rate)))
    size = look + 1
    padded = np.pad(need, (look, look), constant_values=1.0)  # silence before and after
    ahead = scipy.ndimage.minimum_filter1d(padded, size, origin=-(size // 2),
                                           mode="constant", cval=1.0)  # min over [n, n+L]
    held = _release(-20.0 * np.log10(ahead), release_s * rate)
    gain = 10.0 ** (-held / 20.0)
    smooth = scipy.ndimage.uniform_filter1d(gain, size, origin=(size - 1) // 2,
                                            mode="constant", cval=1.0)  # mean over [n-L, n]
    # the moving average sums in floating point; never let rounding lift it above `need`
    return np.minimum(smooth[look:look + need.size], need)


def limit_peaks(audio: torch.Tensor, sample_rate: int, ceiling: float = 0.999, release_s: float = 0.01) -> torch.Tensor:
    """``audio`` ``(C, N)`` with only its samples above ``ceiling`` turned down: the export
    limiter's gain (:func:`_limiter_gain`: look-ahead, release, linked channels), read on sample
    peaks, which is what the finishing stage keeps under full scale.

    Why: a loud drawn curve puts a kick's RMS at -6 dB and its attack's peaks over full scale, and
    the finishing stage (``engine.studio.finish``) then scaled the whole sound down by those peaks,
    leaving it 3-7 dB under the curve everywhere (session 13). Turned down only around its peaks,
    it stays within 0.6-1.0 dB of the curve (``docs/design-notes.md``, "A loud curve"). The release is
    10 ms instead of the export's 50 ms: a kick's body follows the peak, and 50 ms held it 1.0-1.9 dB under."""
    data = audio.double().numpy()
    gain = _limiter_gain(np.abs(data).max(axis=0), sample_rate, ceiling, release_s)
    return torch.from_numpy(data * gain).to(audio.dtype)


def _release(reduction_db: np.ndarray, tau: float) -> np.ndarray:
    """``max over k <= n of reduction[k] * exp(-(n - k) / tau)``: a peak-hold with exponential
    release, i.e. the recursion ``r[n] = max(x[n], r[n-1] * exp(-1 / tau))`` without its
    per-sample loop. In logs the max-product becomes a running maximum of
    ``log x[k] + k / tau`` (numpy's ``maximum.accumulate``), minus ``n / tau``."""
    n = np.arange(reduction_db.size, dtype=np.float64) / tau
    with np.errstate(divide="ignore"):
        logs = np.log(np.maximum(reduction_db, 0.0))
    return np.exp(np.maximum.accumulate(logs + n) - n)


def _limit(data: np.ndarray, envelope: np.ndarray, rate: int,
           ceiling: float) -> tuple[np.ndarray, float, float]:
    """Limit ``data`` (whose true-peak envelope is ``envelope``) to ``ceiling``, then scale it
    by a last tiny factor if the true peak is still a hair over: the gain changes within the
    reach of the interpolation filter, so the reconstructed peak can differ from the estimate.
    Returns the audio, the smallest gain applied and the true peak after (both linear)."""
    gain = _limiter_gain(envelope, rate, ceiling)
    smallest = float(gain.min())
    if smallest < 1.0:
        data = data * gain
    peak = _true_peak(data)
    if peak > ceiling:
        scale = ceiling / peak
        data, smallest, peak = data * scale, smallest * scale, peak * scale
    return data, smallest, peak


def normalise_loudness(audio: torch.Tensor, sample_rate: int, target_lufs: float = -14.0,
                       ceiling_db: float = -1.0) -> tuple[torch.Tensor, dict[str, float]]:
    """Bring ``audio`` to ``target_lufs`` with a true-peak limiter keeping peaks <= ``ceiling_db``.

    Drum hits have a high crest factor: scaling a kick to -12 LUFS puts its attack far over
    0 dBFS, and lowering the gain until the peak fits (the old behaviour) left kicks 6-13 LU
    short of the target, some even quieter than they came in. Mastering tools limit instead:
    the gain to the target is applied, and a look-ahead limiter (see :func:`_limiter_gain`)
    pulls the few peaks under the ceiling, measured as true peak on a 4x-oversampled signal
    because inter-sample peaks are what clips in a DAC or a lossy encoder. Limiting lowers the
    loudness a little, so the gain is corrected and the limiter run again (a few passes) until
    the result is within 0.1 LU of the target. Loudness is measured with :func:`loudness`
    (short clips as the hit followed by silence).

    The ceiling always wins: the returned true peak is <= ``ceiling_db``. The limiter pulls peaks
    down by at most 12 dB (more flattens a drum's attack: real kicks asked for -12 LUFS under a
    -1 dBFS ceiling wanted 30 dB), so a target that needs more lands short, and the report says
    where; so does one that no amount of gain reaches (at most 24 dB beyond the first guess). A sound asked to get louder comes out louder: the gain only grows from the
    first guess, and only peaks are pulled down (in theory a sound made almost only of peaks
    above the ceiling could still end up quieter; the ceiling would win). A sound that fits
    under the ceiling is just scaled, so its waveform is an exact scaled copy.

    Returns ``(audio, report)``; the report holds ``lufs`` (reached), ``peak_db`` (true peak
    after, dBFS), ``gain_db`` (applied before the limiter), ``limited_db`` (largest gain
    reduction of the limiter, >= 0, 0.0 when it did nothing), ``target_lufs`` and
    ``ceiling_db``. Silent input comes back unchanged with ``lufs`` -inf. NaN/Inf input raises
    :class:`InvalidRequestError`.
    """
    _check_tensor(audio)
    rate = _check_rate(sample_rate, "loudness sample rate", InvalidRequestError)
    target = _check_level(target_lufs, "target loudness (LUFS)")
    ceiling_db = _check_level(ceiling_db, "peak ceiling (dBFS)")
    report = {"target_lufs": target, "ceiling_db": ceiling_db, "gain_db": 0.0,
              "limited_db": 0.0}
    measured = loudness(audio, rate)  # raises on NaN/Inf
    if not math.isfinite(measured):
        return audio, dict(report, lufs=float("-inf"), peak_db=float("-inf"))

    data = audio.detach().to("cpu", torch.float64).numpy()
    envelope = _true_peak_envelope(data)  # scales with the gain, so it is measured once
    ceiling = _db_to_gain(ceiling_db) * (1.0 - 1e-6)  # a hair under, for the float32 rounding
    first_gain = gain_db = target - measured
    if float(envelope.max()) * _db_to_gain(gain_db) <= ceiling:  # fits: a plain scaled copy
        out = audio * _db_to_gain(gain_db)
        return out, dict(report, lufs=loudness(out, rate), gain_db=gain_db,
                         peak_db=_gain_to_db(float(envelope.max())) + gain_db)
    # a kick asked for -12 LUFS under a -1 dBFS ceiling wanted 30 dB of limiting, which leaves no
    # attack: the gain stops where peaks would be pulled down by more than _MAX_LIMIT_DB, and the
    # report says what was reached instead
    fits_db = ceiling_db - _gain_to_db(float(envelope.max()))  # the gain at which the peaks touch the ceiling
    most_db = min(first_gain + _MAX_EXTRA_GAIN_DB, fits_db + _MAX_LIMIT_DB)
    gain_db = min(gain_db, most_db)
    # the plain scale that puts the peaks on the ceiling is a candidate too: limiting a kick spreads
    # its gain reduction over the body that carries its loudness, so more gain can end up quieter
    fitted = audio * _db_to_gain(fits_db)
    candidates = [(loudness(fitted, rate), fitted, fits_db, 0.0, ceiling_db)]
    tried: list[tuple[float, float]] = []
    for _ in range(_LOUDNESS_ITERATIONS):
        gain = _db_to_gain(gain_db)
        limited, smallest, peak = _limit(data * gain, envelope * gain, rate, ceiling)
        out = torch.from_numpy(limited.astype(np.float32)).to(audio.device)
        reached = loudness(out, rate)
        tried.append((gain_db, reached))
        candidates.append((reached, out, gain_db, max(0.0, -_gain_to_db(smallest)), _gain_to_db(peak)))
        if abs(target - reached) <= _LOUDNESS_TOLERANCE_LU or gain_db >= most_db:
            break
        gain_db = min(_next_gain(tried, target), most_db)
    # the closest to the target without passing it by more than half a LU
    reached, out, gain_db, limited_db, peak_db = max(
        (c for c in candidates if c[0] <= target + 0.5), key=lambda c: c[0], default=candidates[-1])
    if abs(reached - target) > 0.5:
        log.info("normalise_loudness: reached %.1f LUFS of %.1f (ceiling %.1f dBFS)",
                 reached, target, ceiling_db)
    return out, dict(report, lufs=reached, peak_db=peak_db, gain_db=gain_db, limited_db=limited_db)


def _next_gain(tried: list[tuple[float, float]], target: float) -> float:
    """Secant step on loudness(gain). Under limiting 1 dB of gain adds between 0 and 1 LU, so
    the slope is kept in [0.05, 1]: the first step (slope 1) cannot overshoot, and a nearly
    flat curve (an unreachable target) takes big steps up to the gain cap instead of stalling."""
    gain_db, reached = tried[-1]
    slope = 1.0
    if len(tried) > 1:
        (g0, l0), (g1, l1) = tried[-2], tried[-1]
        if g1 != g0:
            slope = min(1.0, max(0.05, (l1 - l0) / (g1 - g0)))
    return gain_db + (target - reached) / slope


def loudness_normalise(audio: torch.Tensor, sample_rate: int, target_lufs: float = -14.0,
                       ceiling_db: float = -1.0) -> torch.Tensor:
    """:func:`normalise_loudness` without its report, for callers written before it existed.

    It used to lower the gain until the sample peak fitted under the ceiling, which left peaky
    sounds far below the target; it now limits, so the target is reached and the true peak
    stays under the ceiling.
    """
    return normalise_loudness(audio, sample_rate, target_lufs, ceiling_db)[0]


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

def _sanitise(part: Any, signed: bool = False) -> str:
    """Reduce one file-name part to [A-Za-z0-9._-] so user text can never form a path,
    a hidden file or an option-like name.

    Leading and trailing ``.-_`` are stripped, except that with ``signed`` a part that starts
    with ``-`` and a digit keeps its minus (``-14LUFS``): ``14LUFS`` would say the opposite
    and ``m14LUFS`` is hard to read. :func:`_safe_stem` allows it only after the first part,
    so a whole name still never starts with ``-``.
    """
    sign = "-" if signed and re.match(r"-[0-9]", str(part)) else ""
    text = re.sub(r"[^A-Za-z0-9._-]+", "-", str(part))
    text = re.sub(r"\.{2,}", ".", text)  # no ".." anywhere, even though "/" is already gone
    core = text.strip(".-_")[:_MAX_STEM_PART - len(sign)].strip(".-_")
    return sign + core if core else ""


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
    """``kick_seed42_16st_g2``: a name that says what a sound is, and what differs between two
    takes of it, and sorts well in a file browser.

    Parts in order, each only when the recipe has it: model, label (when it differs from the
    model; ``snare-perc30`` for a hybrid with 30 % perc), ``seed42``, ``to7-m0.5`` (morph
    towards seed 7), ``1.5s`` (length of a latent model's sound), ``16st`` (steps), ``g2``
    (guidance), ``var0.3`` / ``inv0.3`` (a variation by partial noising / by inversion, with its
    strength; ``like`` for "more like this", ``like0.6`` when it starts from its reference),
    ``-14LUFS`` (loudness-normalised export).
    :func:`export_wav` adds the sample format and sanitises every part.
    """
    model = _model_name(recipe.get("model"))
    parts = [model]
    blend = ""
    if recipe.get("label") and recipe.get("label_b") and recipe.get("label_mix"):  # snare-perc30: 30 % perc
        blend = f"-{recipe['label_b']}{_format_number(round(100 * float(recipe['label_mix'])))}"
    if recipe.get("label") not in (None, "") and recipe["label"] != model:
        parts.append(str(recipe["label"]) + blend)
    elif blend:  # the alias snare with 30 % hat: snare-hat30
        parts[0] += blend
    if recipe.get("seed") is not None:
        parts.append(f"seed{_format_number(recipe['seed'])}")
    if recipe.get("seed_b") is not None and recipe.get("morph"):
        parts.append(f"to{_format_number(recipe['seed_b'])}-m{_format_number(recipe['morph'])}")
    if recipe.get("length") is not None:
        parts.append(f"{_format_number(recipe['length'])}s")
    if recipe.get("steps") is not None:
        parts.append(f"{_format_number(recipe['steps'])}st")
    if recipe.get("guidance") is not None:
        parts.append(f"g{_format_number(recipe['guidance'])}")
    if recipe.get("reference") and recipe.get("variation") == "semantic":
        strength = recorded_strength(recipe)  # like: from new noises; like0.6: from its reference
        parts.append("like" if strength >= 1.0 else f"like{_format_number(strength)}")
    elif recipe.get("reference"):
        mode = "inv" if recipe.get("variation") == "invert" else "var"
        parts.append(f"{mode}{_format_number(recipe.get('strength', 0))}")
    level = recipe.get("loudness")
    if isinstance(level, Mapping) and level.get("target_lufs") is not None:
        parts.append(f"{_format_number(level['target_lufs'])}LUFS")
    return "_".join(parts)


def _safe_stem(stem: str) -> str:
    """Sanitise every ``_``-separated part; only parts after the first may keep a minus sign."""
    parts: list[str] = []
    for raw in str(stem).split("_"):
        part = _sanitise(raw, signed=bool(parts))
        if part:
            parts.append(part)
    safe = "_".join(parts) or "sample"
    if safe.split(".")[0].upper() in _WINDOWS_RESERVED:
        safe = f"sample-{safe}"
    return safe


_FORMAT_SUFFIXES = {"PCM_16": "_16bit", "PCM_24": "", "FLOAT": "_f32"}
"""Added to every export name, so a 16-bit and a float export of one sound are told apart;
PCM_24, the default, gets none."""


def _riff_chunk(chunk_id: bytes, payload: bytes) -> bytes:
    """One RIFF chunk: id, little-endian size, payload, and a pad byte if the size is odd."""
    pad = b"\0" if len(payload) % 2 else b""
    return chunk_id + struct.pack("<I", len(payload)) + payload + pad


def _wav_bytes(data: np.ndarray, rate: int, subtype: str, recipe_json: bytes) -> bytes:
    """A complete WAV in memory: soundfile's file plus our recipe chunk, RIFF size patched.

    Float WAVs get the header the WAVE spec asks of every non-PCM format (see
    :func:`_add_fmt_extension`).
    """
    buffer = io.BytesIO()
    sf.write(buffer, data, rate, format="WAV", subtype=subtype)
    wav = bytearray(buffer.getvalue())
    if wav[:4] != b"RIFF" or wav[8:12] != b"WAVE":
        raise AudioFileError(f"the audio is too large for a WAV file ({len(wav)} bytes)")
    if subtype == "FLOAT":
        wav = _add_fmt_extension(wav)
    if len(wav) % 2:  # every chunk must start at an even offset
        wav += b"\0"
    wav += _riff_chunk(RECIPE_CHUNK_ID, recipe_json)
    if len(wav) - 8 > 0xFFFFFFFF:
        raise AudioFileError("the audio is too large for a WAV file with a recipe")
    wav[4:8] = struct.pack("<I", len(wav) - 8)
    return bytes(wav)


_WAVE_FORMAT_IEEE_FLOAT = 3


def _add_fmt_extension(wav: bytearray) -> bytearray:
    """Give a float WAV's 16-byte fmt chunk the 2-byte cbSize (= 0) that non-PCM formats carry.

    libsndfile writes WAVE_FORMAT_IEEE_FLOAT with a bare 16-byte fmt chunk (and a fact chunk),
    which strict readers flag: sox says "wave header missing extended part of fmt chunk".
    WAVE_FORMAT_EXTENSIBLE (soundfile's "WAVEX") does not help, because sox 14.4 reads the
    extension and then looks for cbSize a second time, warning on every extensible float
    file. An 18-byte fmt chunk with cbSize 0 plus the fact chunk is the form the spec
    describes and every float-capable reader accepts. The RIFF size is fixed by the caller.
    """
    offset = 12
    while offset + 8 <= len(wav):
        chunk_id, size = struct.unpack_from("<4sI", wav, offset)
        if chunk_id == b"fmt ":
            tag = struct.unpack_from("<H", wav, offset + 8)[0] if size >= 2 else None
            if size != 16 or tag != _WAVE_FORMAT_IEEE_FLOAT:
                return wav  # already extended, or not the layout this fix is for
            end = offset + 8 + size
            return (wav[:offset] + b"fmt " + struct.pack("<I", 18) + wav[offset + 8:end]
                    + struct.pack("<H", 0) + wav[end:])
        offset += 8 + size + size % 2
    return wav


_UMASK_LOCK = threading.Lock()


def _current_umask() -> int:
    """The process umask, read without changing it where possible.

    ``os.umask`` can only be read by setting it, and files another thread creates in between
    would get the wrong mode; Linux shows it in /proc/self/status, so that is read first. The
    set-and-restore fallback (other systems) is serialised, which protects our own callers.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    with _UMASK_LOCK:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def make_shareable(path: Path) -> None:
    """Give ``path`` the mode a normally created file gets (0666 & ~umask, 0644 usually).

    ``tempfile.mkstemp`` creates files readable by their owner only (0600), which is right
    while they are half-written but wrong for an export: a DAW running as another user, or a
    shared folder, could not read it. Best effort: on file systems without Unix permissions
    (FAT, some network shares) chmod fails or does nothing, and the file is still usable, so
    that is logged, not raised.
    """
    try:
        os.chmod(path, 0o666 & ~_current_umask())
    except OSError as exc:
        log.debug("make_shareable: could not chmod %s (%s)", path, exc)


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

    The name is built by :func:`stem_from_recipe` (``kick_seed42_16st_g2``, absent fields
    skipped) unless ``stem`` is given, and then gets the sample format: ``_f32`` for "FLOAT",
    ``_16bit`` for "PCM_16", nothing for "PCM_24" (the default), so two formats of one sound
    never look alike (a given stem that already ends in the suffix is left alone). Every
    ``_`` part is reduced to [A-Za-z0-9._-], so a prompt or model name can never create a
    path, a hidden file or a name starting with ``-``. Existing files are never overwritten:
    ``_2``, ``_3``, ... is appended instead, safely even when two exports race. The file is
    written under a temporary name, appears under its final name only when complete, and is
    readable by others as any new file is (0666 & ~umask, see :func:`make_shareable`).

    ``subtype`` is "PCM_24", "PCM_16" or "FLOAT"; PCM is clipped to [-1, 1], float gets the
    full IEEE-float header (see :func:`_add_fmt_extension`). The recipe is stored as UTF-8
    JSON in a ``tdsr`` RIFF chunk (see :func:`read_recipe`) that audio software ignores.
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
    suffix = _FORMAT_SUFFIXES[subtype]
    if not base.endswith(suffix):
        base += suffix
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
        make_shareable(tmp)  # before it gets its name: a hard link shares the mode
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
