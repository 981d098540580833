"""Drum one-shot data sets for training: the built Hydrogen set, or any folder of WAVs.

Clips are kept in memory as float16 ``(N, 2, length)`` (the built set is ~100 MB) and turned
into float32 one item at a time. An item is ``dict(audio=(2, length) float32, label=int,
category=str, subcategory=str)``; ``label`` indexes :attr:`DrumDataset.label_names`.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Iterable, Sequence

import torch
from safetensors import safe_open
from torch.utils.data import Dataset
from tqdm import tqdm

from engine.data.build import INDEX_NAME, SPLITS, is_silent, load_clip, made_by_builder
from engine.data.labels import CATEGORIES, categorize
from engine.errors import AudioFileError, DatasetError

log = logging.getLogger(__name__)

DEFAULT_ROOT = Path("data/drums")
UNLABELED = "unlabeled"
AUDIO_EXTENSIONS = (".wav", ".flac", ".aif", ".aiff", ".ogg")
BUILD_HINT = "run `python scripts/build_drum_dataset.py` (needs the Debian packages hydrogen-drumkits and hydrogen-data)"


def load_index(root: str | Path = DEFAULT_ROOT) -> dict:
    """The ``index.json`` of a built data set; DatasetError saying how to build it if missing."""
    path = Path(root) / INDEX_NAME
    if not path.is_file():
        out = "" if Path(root) == DEFAULT_ROOT else f" --out {root}"
        raise DatasetError(f"No drum data set in {Path(root)} ({INDEX_NAME} not found): run "
                           f"`python scripts/build_drum_dataset.py{out}` (needs the Debian packages "
                           "hydrogen-drumkits and hydrogen-data), or train on your own WAVs with "
                           "DrumDataset.from_folder(path).")
    try:
        index = json.loads(path.read_text(encoding="utf-8"))
        index["clips"], index["sample_rate"], index["length"]  # noqa: B018 - required keys
    except (ValueError, KeyError, TypeError) as error:
        raise DatasetError(f"{path} is corrupt ({error}): {BUILD_HINT} again.") from error
    return index


def folder_category(name: str) -> str | None:
    """Category named by a folder ("kick", "Kicks", "HiHats", "toms" -> perc), else None."""
    key = name.strip().lower()
    for category in CATEGORIES:
        if key in (category, category + "s", category + "es"):
            return category
    label = categorize(name, "")
    return label[0] if label else None


def _check_categories(categories: Iterable[str] | None, allowed: Sequence[str]) -> tuple[str, ...]:
    """Selected categories in canonical order (all of ``allowed`` when None)."""
    if categories is None:
        return tuple(allowed)
    if isinstance(categories, str):
        categories = [categories]
    wanted = set(categories)
    unknown = sorted(wanted - set(allowed))
    if unknown:
        raise DatasetError(f"unknown categor{'y' if len(unknown) == 1 else 'ies'} {unknown}; "
                           f"choose from {list(allowed)}")
    return tuple(c for c in allowed if c in wanted)


class DrumDataset(Dataset):
    """Clips of one split of the built data set (``root``/``index.json`` + safetensors).

    ``categories`` keeps only those categories (``label_names`` are then just those, in
    :data:`CATEGORIES` order). ``real_only`` leaves out clips the builder made rather
    than read (``build.py --synth-kicks``, ``--slowed-kicks``, ``--long-kicks``, ``--thin-hats``): the
    evaluation compares with real
    recordings only. Use :meth:`from_folder`
    for a user's own folder of WAVs.
    """

    def __init__(
        self,
        root: str | Path = DEFAULT_ROOT,
        split: str = "train",
        categories: Iterable[str] | None = None,
        real_only: bool = False,
    ) -> None:
        if split not in SPLITS:
            raise DatasetError(f"unknown split {split!r}; choose from {list(SPLITS)}")
        root = Path(root)
        index = load_index(root)
        names = _check_categories(categories, CATEGORIES)
        records = [c for c in index["clips"] if c["split"] == split]
        path = root / index["splits"][split]["file"]
        if not path.is_file():
            raise DatasetError(f"{path} is missing: {BUILD_HINT} again.")
        try:
            with safe_open(str(path), framework="pt") as f:
                audio = f.get_tensor("audio")
        except Exception as error:  # safetensors raises several types for a damaged file
            raise DatasetError(f"cannot load {path} ({error}): {BUILD_HINT} again.") from error
        if audio.shape[0] != len(records) or audio.dim() != 3 or audio.shape[-1] != index["length"]:
            raise DatasetError(f"{path} has shape {tuple(audio.shape)} but {INDEX_NAME} lists "
                               f"{len(records)} clips of {index['length']} samples: {BUILD_HINT} again.")
        keep = [i for i, r in enumerate(records) if r["category"] in names and not (real_only and made_by_builder(r))]
        if len(keep) != len(records):
            audio = audio[torch.tensor(keep, dtype=torch.long)] if keep else audio[:0]
            records = [records[i] for i in keep]
        self._setup(audio, records, names, index["sample_rate"], index["length"])
        self.root, self.split = root, split

    def _setup(self, audio: torch.Tensor, records: list[dict], label_names: tuple[str, ...],
               sample_rate: int, length: int) -> None:
        if not records:
            raise DatasetError(f"the data set has no clips of {list(label_names)}")
        self.audio = audio.to(torch.float16).contiguous()  # (N, 2, length)
        self.records = records
        self._label_names = label_names
        self._labels = [label_names.index(r["category"]) for r in records]
        self.sample_rate = int(sample_rate)
        self.length = int(length)

    @classmethod
    def from_folder(
        cls,
        path: str | Path,
        categories: Iterable[str] | None = None,
        sample_rate: int = 44100,
        length: int = 32768,
        progress: bool = True,
    ) -> "DrumDataset":
        """A data set from any folder of audio files (searched recursively), prepared like the
        built one (stereo, ``sample_rate``, onset aligned, cut/padded to ``length``).

        A file's category is its parent folder's name when that names one ("kick", "Snares",
        "hihats", "toms"...), else ``"unlabeled"``. Unreadable or silent files are skipped with a
        warning; DatasetError if nothing usable is left.
        """
        folder = Path(path)
        if not folder.is_dir():
            raise DatasetError(f"{folder} is not a folder; give a folder of WAV files "
                               "(optionally in sub-folders named kick, snare, hat, perc, cymbal)")
        files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in AUDIO_EXTENSIONS and p.is_file())
        if not files:
            raise DatasetError(f"no audio files ({', '.join(AUDIO_EXTENSIONS)}) under {folder}")
        clips, records = [], []
        for file in tqdm(files, desc="reading clips", unit="file", disable=not progress):
            try:
                clip = load_clip(file, sample_rate, length)
            except AudioFileError as error:
                log.warning("skipping %s: %s", file, error)
                continue
            if is_silent(clip):
                log.warning("skipping silent file %s", file)
                continue
            category = folder_category(file.parent.name) or UNLABELED
            subcategory = category
            for text in (file.stem, file.parent.name):  # "hats/open_hat_3.wav" -> open_hat
                label = categorize(text, "")
                if label and label[0] == category:
                    subcategory = label[1]
                    break
            clips.append(clip.to(torch.float16))
            records.append({
                "category": category,
                "subcategory": subcategory,
                "file": file.relative_to(folder).as_posix(),
                "kit": folder.name,
            })
        if not records:
            raise DatasetError(f"none of the {len(files)} audio files under {folder} could be used")
        allowed = CATEGORIES + ((UNLABELED,) if any(r["category"] == UNLABELED for r in records) else ())
        names = _check_categories(categories, CATEGORIES + (UNLABELED,))
        names = tuple(n for n in names if n in allowed)
        keep = [i for i, r in enumerate(records) if r["category"] in names]
        dataset = cls.__new__(cls)
        dataset._setup(torch.stack([clips[i] for i in keep]) if keep else torch.zeros(0, 2, length),
                       [records[i] for i in keep], names, sample_rate, length)
        dataset.root, dataset.split = folder, "folder"
        return dataset

    @property
    def label_names(self) -> tuple[str, ...]:
        """Class names; an item's ``label`` indexes this tuple."""
        return self._label_names

    @property
    def labels(self) -> torch.Tensor:
        """All items' labels (for class-balanced sampling)."""
        return torch.tensor(self._labels, dtype=torch.long)

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int) -> dict:
        record = self.records[i]
        return {
            "audio": self.audio[i].float(),
            "label": self._labels[i],
            "category": record["category"],
            "subcategory": record.get("subcategory") or record["category"],
        }

    def __repr__(self) -> str:
        counts = {n: self._labels.count(k) for k, n in enumerate(self._label_names)}
        return f"DrumDataset({self.root}, split={self.split!r}, {len(self)} clips, {counts})"
