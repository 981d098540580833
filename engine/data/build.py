"""Build the waveform drum data set from Debian's Hydrogen drum kits.

Sources: the kits of the Debian packages ``hydrogen-drumkits`` and ``hydrogen-data`` (both
install into ``/usr/share/hydrogen/data/drumkits``; GPL / CC-BY kits, see each kit's files).
Each kit folder has a ``drumkit.xml`` naming its instruments and the sample file of every
velocity layer. Every layer whose instrument :func:`engine.data.labels.categorize` recognises
becomes one clip: 44.1 kHz stereo, onset aligned, cut or padded to ``length`` samples with a
short fade-out where it was cut. Identical clips (same decoded audio) are kept once. Whole kits
are held out for evaluation, and a held-out kit's clip never reaches train, even as a duplicate
in another kit.

Output (``--out``, default ``data/drums``), each file written to a temporary name and renamed:

- ``train.safetensors`` / ``holdout.safetensors``: tensor ``audio`` ``(N, 2, length)`` float16;
- ``index.json``: sample rate, length, categories, the held-out kits, build statistics and one
  record per clip (``split``, ``row`` in its split's tensor, ``category``, ``subcategory``,
  ``kit``, ``instrument``, ``file``, ``velocity`` [min, max], ``sha1`` of the float16 audio,
  ``peak``, ``duplicates`` it stands for; a clip the builder made has ``synth``, its voice, or
  ``slowed``, its speed and source; ``long_tail`` and ``thinned`` likewise). Written last: its presence means the set is complete.

Run ``python scripts/build_drum_dataset.py --help``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import torch
from safetensors.torch import save_file
from tqdm import tqdm

from engine.audio import align_onset, fade_out, fit_length, read_audio, resample
from engine.data import synth
from engine.data.labels import CATEGORIES, categorize
from engine.errors import AudioFileError, DatasetError, StudioError
from engine.models import atomic_write

log = logging.getLogger(__name__)

DEFAULT_SOURCES: tuple[Path, ...] = (Path("/usr/share/hydrogen/data/drumkits"),)
"""Where ``hydrogen-drumkits`` and ``hydrogen-data`` (GMRockKit, TR808EmulationKit) install."""

DEFAULT_HOLDOUT: tuple[str, ...] = (
    "Audiophob", "Millo_MultiLayered3", "TR808EmulationKit", "VariBreaks",
)
"""Evaluation kits: two acoustic, two electronic; each has kick, snare, hats and toms, together
cowbell, clap, rim, shaker, conga, clave too; ~12% of the clips. None shares audio with a train
kit (holding out "The Black Pearl 1.0" would take GMRockKit's 81 identical files with it)."""

APT_COMMAND: tuple[str, ...] = ("apt-get", "install", "-y", "hydrogen-drumkits", "hydrogen-data")
SPLITS: tuple[str, ...] = ("train", "holdout")
INDEX_NAME = "index.json"
FORMAT = "tiny-diffusion-studio/drum-clips"
SILENCE_DB = -60.0  # a clip whose peak is below this (dBFS) is skipped as silent
ONSET_DB = -40.0  # the onset is the first sample within this many dB of the clip's peak
PRE_ROLL_MS = 1.0  # kept before the onset
FADE_MS = 20.0  # fade-out where a longer sample is cut
SLOWED_RATES = (0.5, 0.8)  # tape speeds of slowed kicks (uniform): 1.25-2x as long, 4-12 semitones lower
LONG_FALLS_S = (0.45, 1.2)  # seconds the continued sub tail of a kit's kick takes to fall 30 dB (uniform)
THIN_CUTOFFS_HZ = (1000.0, 3000.0)  # high-pass corner of a thinned closed hat (log-uniform)
THIN_ORDER = 2                      # Butterworth order, run forwards and backwards: 24 dB/octave, no phase shift


# --------------------------------------------------------------------------- audio

def _decode(path: Path, sample_rate: int) -> tuple[torch.Tensor, int]:
    """float32 ``(2, N)`` at ``sample_rate`` (mono duplicated) and the file's own rate."""
    audio, rate = read_audio(path, channels=2)
    return resample(audio, rate, sample_rate), rate


def _to_clip(audio: torch.Tensor, sample_rate: int, length: int) -> torch.Tensor:
    """Onset aligned (1 ms pre-roll), then cut with a short fade-out, or zero-padded."""
    audio = align_onset(audio, sample_rate, pre_roll_ms=PRE_ROLL_MS, threshold_db=ONSET_DB)
    cut = audio.shape[-1] > length
    audio = fit_length(audio, length)
    return fade_out(audio, round(FADE_MS * sample_rate / 1000.0)) if cut else audio


def load_clip(path: str | Path, sample_rate: int = 44100, length: int = 32768) -> torch.Tensor:
    """One training clip from an audio file: float32 ``(2, length)`` at ``sample_rate``, onset
    aligned, cut (with a fade-out) or zero-padded. Raises AudioFileError if unreadable."""
    audio, _ = _decode(Path(path), sample_rate)
    return _to_clip(audio, sample_rate, length)


def audio_sha1(clip: torch.Tensor) -> str:
    """Identity of a clip: sha1 of its float16 samples (what is stored)."""
    return hashlib.sha1(clip.to(torch.float16).contiguous().numpy().tobytes()).hexdigest()


def is_silent(clip: torch.Tensor, threshold_db: float = SILENCE_DB) -> bool:
    return float(clip.abs().max()) < 10.0 ** (threshold_db / 20.0)


# --------------------------------------------------------------------------- kit parsing

@dataclass(frozen=True)
class KitSample:
    """One velocity layer of one instrument of a Hydrogen kit."""

    kit: str
    instrument: str
    file: str  # as written in drumkit.xml
    path: Path  # resolved on disk (may not exist: checked when loading)
    velocity: tuple[float, float]


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]  # drop the XML namespace of newer drumkit.xml files


def _child_text(element: ET.Element, name: str) -> str | None:
    for child in element:
        if _local(child.tag) == name:
            return child.text.strip() if child.text else ""
    return None


def _float(text: str | None, default: float) -> float:
    try:
        return float(text) if text not in (None, "") else default
    except ValueError:
        return default


def _resolve(kit_dir: Path, file_name: str) -> Path:
    """Sample path as Hydrogen finds it: relative to the kit folder; else by base name there,
    case-insensitively (kits moved from other systems carry absolute or mis-cased names)."""
    candidate = Path(file_name)
    if not candidate.is_absolute():
        candidate = kit_dir / file_name
    if candidate.is_file():
        return candidate
    base = Path(file_name.replace("\\", "/")).name
    if (kit_dir / base).is_file():
        return kit_dir / base
    lowered = base.lower()
    for entry in kit_dir.iterdir() if kit_dir.is_dir() else ():
        if entry.name.lower() == lowered:
            return entry
    return kit_dir / file_name


def parse_drumkit(xml_path: str | Path) -> tuple[str, list[KitSample]]:
    """Read a Hydrogen ``drumkit.xml``: the kit's name and one KitSample per velocity layer.

    Handles the formats Hydrogen has used: ``instrument/layer/filename`` (0.9.x),
    ``instrument/instrumentComponent/layer/filename`` (0.9.7+; namespaced), and the oldest
    ``instrument/filename`` without layers (velocity 0..1). Layers without a file name are
    skipped; a broken XML raises DatasetError.
    """
    xml_path = Path(xml_path)
    try:
        root = ET.parse(xml_path).getroot()
    except (ET.ParseError, OSError) as error:
        raise DatasetError(f"cannot parse {xml_path}: {error}") from error
    kit_dir = xml_path.parent
    kit = _child_text(root, "name") or kit_dir.name
    samples: list[KitSample] = []
    for instrument in root.iter():
        if _local(instrument.tag) != "instrument":
            continue
        name = _child_text(instrument, "name") or ""
        layers = [element for element in instrument.iter() if _local(element.tag) == "layer"]
        if not layers:
            layers = [instrument]  # oldest format: the file sits on the instrument itself
        for layer in layers:
            file_name = _child_text(layer, "filename")
            if not file_name:
                continue
            velocity = (_float(_child_text(layer, "min"), 0.0), _float(_child_text(layer, "max"), 1.0))
            samples.append(KitSample(kit, name, file_name, _resolve(kit_dir, file_name), velocity))
    return kit, samples


def find_kits(sources: Sequence[str | Path]) -> list[Path]:
    """All ``drumkit.xml`` files directly inside the kit folders of ``sources``, sorted."""
    found: dict[Path, None] = {}
    for source in sources:
        for xml_path in sorted(Path(source).glob("*/drumkit.xml")):
            found[xml_path.resolve()] = None
    return list(found)


# --------------------------------------------------------------------------- building

@dataclass
class BuildReport:
    """What a build did: per-split clip records and the counts printed at the end."""

    clips: dict[str, list[dict]] = field(default_factory=lambda: {s: [] for s in SPLITS})
    holdout_kits: list[str] = field(default_factory=list)
    kits: list[str] = field(default_factory=list)
    duplicates_same_file: int = 0  # one file referenced by several instruments/layers
    duplicates_same_audio: int = 0  # different files with identical decoded audio
    duplicate_pairs: Counter = field(default_factory=Counter)  # (kept kit, dropped kit) -> n
    not_drums: int = 0
    silent: int = 0
    broken: int = 0
    seconds: float = 0.0

    @property
    def duplicates(self) -> int:
        return self.duplicates_same_file + self.duplicates_same_audio

    def counts(self) -> dict[str, Counter]:
        return {split: Counter(c["category"] for c in clips) for split, clips in self.clips.items()}

    def table(self) -> str:
        counts = self.counts()
        lines = [f"{'category':<10}" + "".join(f"{s:>9}" for s in SPLITS) + f"{'total':>9}"]
        for category in CATEGORIES:
            row = [counts[s][category] for s in SPLITS]
            lines.append(f"{category:<10}" + "".join(f"{n:>9}" for n in row) + f"{sum(row):>9}")
        totals = [len(self.clips[s]) for s in SPLITS]
        lines.append(f"{'total':<10}" + "".join(f"{n:>9}" for n in totals) + f"{sum(totals):>9}")
        return "\n".join(lines)


def _select_holdout(kit_names: list[str], folders: list[str], wanted: Sequence[str] | None) -> list[str]:
    """Map requested held-out kits (kit name or folder name, any case) to kit names."""
    by_key = {}
    for name, folder in zip(kit_names, folders):
        by_key[name.lower()] = name
        by_key[folder.lower()] = name
    if wanted is None:  # the default set: those of DEFAULT_HOLDOUT that this source has
        chosen = [by_key[k.lower()] for k in DEFAULT_HOLDOUT if k.lower() in by_key]
        if not chosen:
            log.warning("none of the default held-out kits %s is present: no holdout split",
                        ", ".join(DEFAULT_HOLDOUT))
        return sorted(set(chosen))
    unknown = [k for k in wanted if k.lower() not in by_key]
    if unknown:
        raise DatasetError(f"unknown held-out kit(s) {unknown}; kits found: {sorted(set(kit_names))}")
    return sorted({by_key[k.lower()] for k in wanted})


def _add_clip(report: BuildReport, tensors: dict[str, list[torch.Tensor]], split: str, clip16: torch.Tensor,
              sha1: str, label: tuple[str, str], where: dict[str, str], velocity: Sequence[float],
              source_rate: int, **extra) -> dict:
    """Keep a clip: its row in its split's tensor and its index record, one schema for every clip
    (``extra``: what only some clips have, e.g. a synthesised one's voice)."""
    category, subcategory = label
    record = {"split": split, "row": len(tensors[split]), "category": category, "subcategory": subcategory,
              **where, "velocity": list(velocity), "sha1": sha1, "peak": round(float(clip16.abs().max()), 6),
              "source_rate": source_rate, "duplicates": [], **extra}
    report.clips[split].append(record)
    tensors[split].append(clip16)
    return record


def _slowed_kicks(report: BuildReport, tensors: dict[str, list[torch.Tensor]], count: int, seed: int,
                  sample_rate: int, length: int) -> None:
    """Add ``count`` training kicks played at a tape speed of :data:`SLOWED_RATES` to the train split.

    Why: the kits' kicks are short (the longest falls 30 dB in 0.52 s) and the one 808 kit is held
    out, so a long boom asked of a kick comes out as a tom. Synthesised 808s gave the long kicks
    their category but moved every kick away from the kits' own textures (``docs/design-notes.md``,
    "Synthesised kicks"); a real kick slowed down keeps its own click, body and room, just longer
    and lower, as a sampler's pitch knob makes them. The kicks are taken in a seeded random order,
    each once before any twice; each speed is drawn uniformly. Measured (session 23): the set sits
    close to the kits' kicks (Fréchet ratio 0.23), but `latent-prompts` fine-tuned with it made
    kicks with long curves no closer to the kits than before, so it is off by default.
    """
    for source, rate in _kit_draws(report, count, seed, SLOWED_RATES, "--slowed-kicks", "kick"):
        original = tensors["train"][source["row"]].float()
        clip = _to_clip(resample(original, round(sample_rate * rate), sample_rate), sample_rate, length)
        clip16 = (clip / max(1.0, float(clip.abs().max()))).to(torch.float16)   # the resampler can ring over full scale
        _add_copy(report, tensors, source, clip16, sample_rate,
                  slowed={"rate": round(rate, 4), "from": source["sha1"]})


def _kit_draws(report: BuildReport, count: int, seed: int, bounds: tuple[float, float], option: str,
               category: str, subcategory: str | None = None):
    """``count`` (training record, value drawn uniformly in ``bounds``) pairs over the kits' own clips
    of ``category`` (and ``subcategory``), in a seeded random order, each once before any twice (the
    clips the builder made are left out)."""
    if count <= 0:
        return
    clips = [r for r in report.clips["train"] if r["category"] == category and not made_by_builder(r)
             and (subcategory is None or r["subcategory"] == subcategory)]
    if not clips:
        raise DatasetError(f"{option} needs the kits' training {subcategory or category}s; the kits gave none")
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(clips), generator=generator).tolist()
    for i in range(count):
        value = bounds[0] + float(torch.rand((), generator=generator)) * (bounds[1] - bounds[0])
        yield clips[order[i % len(clips)]], value


def _add_copy(report: BuildReport, tensors: dict[str, list[torch.Tensor]], source: dict,
              clip16: torch.Tensor, sample_rate: int, **made) -> None:
    """A clip made from the training clip ``source`` joins the train split under its kit, instrument
    and file, with ``made`` (how it was made) in its record."""
    where = {"kit": source["kit"], "instrument": source["instrument"], "file": source["file"]}
    _add_clip(report, tensors, "train", clip16, audio_sha1(clip16), (source["category"], source["subcategory"]),
              where, source["velocity"], sample_rate, **made)


def _long_kicks(report: BuildReport, tensors: dict[str, list[torch.Tensor]], count: int, seed: int,
                sample_rate: int, length: int) -> None:
    """Add ``count`` training kicks whose sub tail is continued as a sine that falls 30 dB in a time
    drawn from :data:`LONG_FALLS_S` (:func:`engine.data.synth.continue_sub_tail`; the kicks then fall
    30 dB under their peak in about 0.3-0.8 s, the kits' own in at most 0.52 s) to the train split.

    Why: a long boom asked of a kick comes out a tom (the kits' longest kick falls 30 dB in 0.52 s;
    the one 808 kit is held out). Slowed kicks kept their mid-heavy tails and synthesised 808s left
    the kits' textures (``docs/design-notes.md``, "Synthesised kicks"); these keep each kit kick's
    attack and body and only make its low, pure tail longer. Measured before training on them
    (session 33): the classifier reads all 46 as kicks, and as a set they sit at a Fréchet ratio of
    0.07 against the training kicks (the held-out kicks: 1). Kicks in a seeded random order, each
    once before any twice; each record says under ``"long_tail"`` its fall, pitch and source clip.
    """
    for source, fall in _kit_draws(report, count, seed, LONG_FALLS_S, "--long-kicks", "kick"):
        clip, pitch = synth.continue_sub_tail(tensors["train"][source["row"]].float(), sample_rate, fall)
        _add_copy(report, tensors, source, clip.to(torch.float16), sample_rate,
                  long_tail={"fall_s": round(fall, 3), "pitch_hz": round(pitch, 1), "from": source["sha1"]})


def _thin_hats(report: BuildReport, tensors: dict[str, list[torch.Tensor]], count: int, seed: int,
               sample_rate: int) -> None:
    """Add ``count`` training closed hats high-passed at a corner drawn log-uniformly from
    :data:`THIN_CUTOFFS_HZ` (zero-phase Butterworth, :data:`THIN_ORDER` each way; peak kept) to the
    train split, each record under ``"thinned"`` with its corner and source clip.

    Why: electronic closed hats (an 808's, a breakbeat kit's) hold almost nothing under 1-2 kHz, and
    the training kits' hats nearly all do: 2 of their 109 hats sit where 8 of the 19 held-out hats do
    on the real kits' third principal direction (``docs/design-notes.md``, "Thinned closed hats"), so
    no model trained on them makes such a hat. A kit's closed hat with its stick and body filtered
    away keeps its attack, decay and metal. Measured before training (session 42): the 44 training
    closed hats thinned so sit at -18.5 to -6.4 on that direction (the held-out thin hats -9 to -20),
    the evaluation's classifier still reads 36 of 44 as hats, and thinned *open* hats read as
    cymbals (33 of 49), which is why only closed hats are thinned. Hats in a seeded random order,
    each once before any twice.
    """
    import numpy as np
    import scipy.signal
    low, high = THIN_CUTOFFS_HZ
    # silence before the onset and after the end is what a one-shot is, so the filter runs over
    # zeros there (scipy's default odd reflection would fold an abrupt first sample into lows)
    pad = sample_rate // 20
    for source, unit in _kit_draws(report, count, seed, (0.0, 1.0), "--thin-hats", "hat", "closed_hat"):
        cutoff = low * (high / low) ** unit
        original = tensors["train"][source["row"]].float()
        sos = scipy.signal.butter(THIN_ORDER, cutoff, "highpass", fs=sample_rate, output="sos")
        padded = np.pad(original.numpy(), ((0, 0), (pad, pad)))
        clip = torch.from_numpy(scipy.signal.sosfiltfilt(sos, padded, axis=-1, padtype=None)[:, pad:-pad].copy()).float()
        clip = clip * (float(original.abs().max()) / max(float(clip.abs().max()), 1e-9))
        _add_copy(report, tensors, source, clip.clamp(-1.0, 1.0).to(torch.float16), sample_rate,
                  thinned={"cutoff_hz": round(cutoff, 1), "from": source["sha1"]})


def made_by_builder(record: dict) -> bool:
    """Whether a clip was made by this builder (synthesised, a kit's clip slowed down, a kit's kick
    with its tail continued, a kit's hat thinned) rather than read from a kit: the evaluation leaves
    those out."""
    return bool(record.get("synth") or record.get("slowed") or record.get("long_tail") or record.get("thinned"))


def build(
    sources: Sequence[str | Path] = DEFAULT_SOURCES,
    out: str | Path = "data/drums",
    length: int = 32768,
    sample_rate: int = 44100,
    holdout: Sequence[str] | None = None,
    limit: int | None = None,
    progress: bool = True,
    synth_kicks: int = 0,
    synth_seed: int = 0,
    slowed_kicks: int = 0,
    slowed_seed: int = 0,
    long_kicks: int = 0,
    long_seed: int = 0,
    thin_hats: int = 0,
    thin_seed: int = 0,
) -> BuildReport:
    """Build the data set into ``out`` and return what was done (see the module docstring).

    ``holdout``: kit names (or folder names) to hold out; None picks :data:`DEFAULT_HOLDOUT`,
    an empty list holds out nothing. ``limit``: at most this many clips per kit (quick runs).
    ``synth_kicks``: this many synthesised 808-style kicks (:mod:`engine.data.synth`) join the
    training split, as the kit :data:`engine.data.synth.SYNTH_KIT`, each record with its voice
    under ``"synth"``; the held-out split stays real. ``slowed_kicks``: this many copies of the
    training kits' own kicks played slower, as tape would (:func:`_slowed_kicks`), join the
    training split, each record under ``"slowed"`` with its speed and the clip it came from.
    ``long_kicks``: this many copies of the training kits' kicks with their sub tail continued
    (:func:`_long_kicks`), each record under ``"long_tail"``. ``thin_hats``: this many copies of the
    training kits' closed hats high-passed at 1-3 kHz (:func:`_thin_hats`), each record under ``"thinned"``.
    """
    started = time.perf_counter()
    xml_paths = find_kits(sources)
    if not xml_paths:
        raise DatasetError(f"no drum kits (*/drumkit.xml) under {', '.join(map(str, sources))}")
    parsed = [parse_drumkit(p) for p in xml_paths]
    report = BuildReport(kits=sorted({kit for kit, _ in parsed}))
    report.holdout_kits = _select_holdout([k for k, _ in parsed], [p.parent.name for p in xml_paths], holdout)
    held = set(report.holdout_kits)
    # Held-out kits first, so a clip they share with a train kit is claimed by holdout.
    order = sorted(range(len(parsed)), key=lambda i: (parsed[i][0] not in held, parsed[i][0], str(xml_paths[i])))

    jobs: list[tuple[str, KitSample, tuple[str, str]]] = []
    for i in order:
        kit, samples = parsed[i]
        taken = 0
        for sample in samples:
            label = categorize(sample.instrument, sample.file)
            if label is None:
                report.not_drums += 1
                log.debug("not a drum one-shot: %s / %r / %s", kit, sample.instrument, sample.file)
                continue
            if limit is not None and taken >= limit:
                break
            taken += 1
            jobs.append(("holdout" if kit in held else "train", sample, label))

    by_path: dict[Path, str] = {}  # decoded file -> sha1 (or "" when unusable)
    kept: dict[str, dict] = {}  # sha1 -> record
    tensors: dict[str, list[torch.Tensor]] = {s: [] for s in SPLITS}
    for split, sample, (category, subcategory) in tqdm(jobs, desc="drum clips", unit="clip", disable=not progress):
        key = sample.path.resolve() if sample.path.exists() else sample.path
        where = {"kit": sample.kit, "instrument": sample.instrument, "file": sample.file}
        if key in by_path:
            sha1 = by_path[key]
            if sha1:
                report.duplicates_same_file += 1
                kept[sha1]["duplicates"].append(where)
                report.duplicate_pairs[(kept[sha1]["kit"], sample.kit)] += 1
            continue
        try:
            audio, source_rate = _decode(sample.path, sample_rate)
        except AudioFileError as error:
            log.warning("skipping %s / %s: %s", sample.kit, sample.instrument, error)
            report.broken += 1
            by_path[key] = ""
            continue
        clip = _to_clip(audio, sample_rate, length)
        if is_silent(clip):
            log.warning("skipping silent sample %s / %r / %s", sample.kit, sample.instrument, sample.file)
            report.silent += 1
            by_path[key] = ""
            continue
        clip16 = clip.to(torch.float16)
        sha1 = audio_sha1(clip16)
        by_path[key] = sha1
        if sha1 in kept:
            report.duplicates_same_audio += 1
            kept[sha1]["duplicates"].append(where)
            report.duplicate_pairs[(kept[sha1]["kit"], sample.kit)] += 1
            if kept[sha1]["category"] != category:
                log.info("duplicate %s labelled %s, kept as %s", sample.file, category, kept[sha1]["category"])
            continue
        kept[sha1] = _add_clip(report, tensors, split, clip16, sha1, (category, subcategory), where,
                               sample.velocity, source_rate)

    for i, (voice, clip) in enumerate(synth.synth_kicks(synth_kicks, sample_rate, length, synth_seed)):
        clip16 = clip.to(torch.float16)
        where = {"kit": synth.SYNTH_KIT, "instrument": "808 Kick", "file": f"synth-808-kick-{synth_seed}-{i:03d}"}
        _add_clip(report, tensors, "train", clip16, audio_sha1(clip16), ("kick", "kick"), where, (1.0, 1.0),
                  sample_rate, synth=voice.as_record())

    _slowed_kicks(report, tensors, slowed_kicks, slowed_seed, sample_rate, length)
    _long_kicks(report, tensors, long_kicks, long_seed, sample_rate, length)
    _thin_hats(report, tensors, thin_hats, thin_seed, sample_rate)

    if not report.clips["train"]:
        raise DatasetError("no usable training clips were found; check the kits and --holdout")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    meta = {"sample_rate": str(sample_rate), "length": str(length), "format": FORMAT}
    for split in SPLITS:
        stacked = torch.stack(tensors[split]) if tensors[split] else torch.zeros(0, 2, length, dtype=torch.float16)
        atomic_write(out / f"{split}.safetensors", lambda tmp: save_file({"audio": stacked}, str(tmp), metadata=meta))
    report.seconds = time.perf_counter() - started
    index = {
        "format": FORMAT,
        "version": 1,
        "sample_rate": sample_rate,
        "length": length,
        "channels": 2,
        "dtype": "float16",
        "categories": list(CATEGORIES),
        "splits": {s: {"file": f"{s}.safetensors", "count": len(report.clips[s])} for s in SPLITS},
        "holdout_kits": report.holdout_kits,
        "kits": report.kits + ([synth.SYNTH_KIT] if synth_kicks else []),
        "sources": [str(s) for s in sources],
        "stats": {
            "duplicates_removed": report.duplicates,
            "duplicates_same_file": report.duplicates_same_file,
            "duplicates_same_audio": report.duplicates_same_audio,
            "duplicate_pairs": [{"kept": a, "dropped": b, "count": n} for (a, b), n in sorted(report.duplicate_pairs.items())],
            "not_drums": report.not_drums,
            "silent": report.silent,
            "broken": report.broken,
            "build_seconds": round(report.seconds, 1),
        },
        "clips": report.clips["train"] + report.clips["holdout"],
    }
    atomic_write(out / INDEX_NAME, lambda tmp: tmp.write_text(json.dumps(index, indent=1), encoding="utf-8"))
    return report


# --------------------------------------------------------------------------- command line

def _ensure_sources(sources: list[Path], defaults: bool) -> int | None:
    """None when the kit folders exist; else install them (root) or say how; an exit code."""
    missing = [s for s in sources if not s.is_dir()]
    if not missing:
        return None
    if not defaults:
        print(f"error: kit folder(s) not found: {', '.join(map(str, missing))}", file=sys.stderr)
        return 2
    command = " ".join(APT_COMMAND)
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        print(f"Hydrogen drum kits not found; running: {command}", file=sys.stderr)
        result = subprocess.run(list(APT_COMMAND), check=False)
        if result.returncode == 0 and all(s.is_dir() for s in sources):
            return None
        print(f"error: `{command}` failed (exit {result.returncode}); try `apt-get update` first",
              file=sys.stderr)
        return 2
    print(f"error: Hydrogen drum kits not found in {', '.join(map(str, missing))}.\n"
          f"Install them with:  sudo {command}", file=sys.stderr)
    return 2


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="build_drum_dataset",
        description="Build the drum one-shot training set from Debian's Hydrogen drum kits "
                    "(hydrogen-drumkits, hydrogen-data).")
    parser.add_argument("--source", type=Path, nargs="+", default=None,
                        help=f"folders of Hydrogen kits (default: {' '.join(map(str, DEFAULT_SOURCES))})")
    parser.add_argument("--out", type=Path, default=Path("data/drums"), help="output folder (default: data/drums)")
    parser.add_argument("--length", type=int, default=32768, help="clip length in samples (default: 32768)")
    parser.add_argument("--sample-rate", type=int, default=44100, help="sample rate in Hz (default: 44100)")
    parser.add_argument("--holdout", nargs="*", default=None, metavar="KIT",
                        help="kits held out for evaluation (kit or folder names; none given: no holdout; "
                             f"default: {', '.join(DEFAULT_HOLDOUT)})")
    parser.add_argument("--limit", type=int, default=None, help="at most this many clips per kit (quick tests)")
    parser.add_argument("--synth-kicks", type=int, default=0, metavar="N",
                        help="add N synthesised 808-style kicks to the training split (default 0; "
                             "the held-out split stays real)")
    parser.add_argument("--synth-seed", type=int, default=0, help="which synthesised kicks (default 0)")
    parser.add_argument("--slowed-kicks", type=int, default=0, metavar="N",
                        help="add N of the training kicks played slower (tape speed "
                             f"{SLOWED_RATES[0]}-{SLOWED_RATES[1]}: longer and lower) to the training split (default 0)")
    parser.add_argument("--slowed-seed", type=int, default=0, help="which kicks and speeds (default 0)")
    parser.add_argument("--long-kicks", type=int, default=0, metavar="N",
                        help="add N of the training kicks with their sub tail continued as a sine that falls 30 dB in "
                             f"{LONG_FALLS_S[0]}-{LONG_FALLS_S[1]} s to the training split (default 0)")
    parser.add_argument("--long-seed", type=int, default=0, help="which kicks and falls (default 0)")
    parser.add_argument("--thin-hats", type=int, default=0, metavar="N",
                        help="add N of the training closed hats high-passed at "
                             f"{THIN_CUTOFFS_HZ[0]:.0f}-{THIN_CUTOFFS_HZ[1]:.0f} Hz (thin, as electronic hats are) "
                             "to the training split (default 0)")
    parser.add_argument("--thin-seed", type=int, default=0, help="which hats and corners (default 0)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    if args.length < 1024 or args.sample_rate < 8000 or (args.limit is not None and args.limit < 1) \
            or not all(0 <= n <= 10000 for n in (args.synth_kicks, args.slowed_kicks, args.long_kicks,
                                                 args.thin_hats)):
        parser.error("--length must be >= 1024, --sample-rate >= 8000, --limit >= 1, --synth-kicks, "
                     "--slowed-kicks, --long-kicks and --thin-hats 0..10000")
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    sources = args.source or list(DEFAULT_SOURCES)
    code = _ensure_sources(sources, defaults=args.source is None)
    if code is not None:
        return code
    try:
        report = build(sources, args.out, args.length, args.sample_rate, args.holdout, args.limit,
                       progress=not args.quiet, synth_kicks=args.synth_kicks, synth_seed=args.synth_seed,
                       slowed_kicks=args.slowed_kicks, slowed_seed=args.slowed_seed,
                       long_kicks=args.long_kicks, long_seed=args.long_seed,
                       thin_hats=args.thin_hats, thin_seed=args.thin_seed)
    except StudioError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    total = sum(len(c) for c in report.clips.values())
    held = len(report.clips["holdout"])
    print(f"\nkits: {len(report.kits)}; held out ({held} clips, {100.0 * held / max(total, 1):.0f}%): "
          f"{', '.join(report.holdout_kits) or 'none'}")
    print(report.table())
    print(f"duplicates removed: {report.duplicates} ({report.duplicates_same_file} same file referenced again, "
          f"{report.duplicates_same_audio} identical audio in another file)")
    for (kept, dropped), n in sorted(report.duplicate_pairs.items(), key=lambda kv: -kv[1]):
        print(f"  {n:4d}  kept from {kept!r}, dropped from {dropped!r}")
    print(f"skipped: {report.not_drums} not drum one-shots, {report.silent} silent, {report.broken} unreadable")
    print(f"wrote {args.out}/train.safetensors, holdout.safetensors, {INDEX_NAME} in {report.seconds:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
