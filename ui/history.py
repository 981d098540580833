"""One browser session's takes: the current batch, the history and the favourites.

A :class:`Session` lives in a ``gr.State`` (one per browser tab or API client), never in a
module global, so two producers never see each other's sounds. Each take points at two files in
the session's cache folder: a 24-bit WAV that the page plays and lets you drag into a DAW, and a
32-bit float master that exports are made from. Both carry the recipe.
"""

from __future__ import annotations

import shutil
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

COLUMNS = ["#", "★", "model", "label", "seed", "seed B", "morph", "steps", "sampler", "time"]


@dataclass
class Take:
    id: int
    recipe: dict
    wav: str                 # PCM_24, what the page plays and what you drag out
    master: str              # FLOAT, what exports are made from
    created: float = field(default_factory=time.time)
    favourite: bool = False

    def caption(self) -> str:
        r = self.recipe
        label = r.get("label") if r.get("label") not in (None, r.get("model")) else ""
        seed = f"seed {r.get('seed')}"
        if r.get("seed_b") is not None and r.get("morph"):
            seed += f" → {r['seed_b']} @ {r['morph']:.2f}"
        parts = [f"#{self.id}", str(r.get("model")), label, seed]
        parts.append(f"{r.get('steps')} steps")
        if r.get("reference"):
            parts.append(f"{r.get('variation')} variation {r.get('strength'):.2f}")
        return " · ".join(p for p in parts if p)

    def row(self) -> list:
        r = self.recipe
        morph = f"{r['morph']:.2f}" if r.get("seed_b") is not None else ""
        return [self.id, "★" if self.favourite else "", r.get("model"), r.get("label") or "", r.get("seed"),
                "" if r.get("seed_b") is None else r["seed_b"], morph, r.get("steps"), r.get("sampler"),
                time.strftime("%H:%M:%S", time.localtime(self.created))]


@dataclass
class Session:
    folder: Path
    takes: list[Take] = field(default_factory=list)
    batch: list[int] = field(default_factory=list)   # ids of the takes shown in the result slots
    next_id: int = 1
    max_takes: int = 200

    @classmethod
    def create(cls, sounds_dir: Path, max_takes: int = 200) -> "Session":
        folder = Path(sounds_dir) / uuid.uuid4().hex[:16]
        folder.mkdir(parents=True, exist_ok=True)
        return cls(folder=folder, max_takes=max_takes)

    def add(self, recipe: dict, wav: str | Path, master: str | Path) -> Take:
        take = Take(self.next_id, dict(recipe), str(wav), str(master))
        self.next_id += 1
        self.takes.append(take)
        self._trim()
        return take

    def _trim(self) -> None:
        """Forget the oldest non-favourite takes beyond ``max_takes`` (their files go too)."""
        while len(self.takes) > self.max_takes:
            victim = next((t for t in self.takes if not t.favourite and t.id not in self.batch), None)
            if victim is None:
                return
            self.takes.remove(victim)
            for path in (victim.wav, victim.master):
                Path(path).unlink(missing_ok=True)

    def get(self, take_id) -> Take | None:
        try:
            wanted = int(take_id)
        except (TypeError, ValueError):
            return None
        return next((t for t in self.takes if t.id == wanted), None)

    def current(self) -> list[Take]:
        return [t for t in (self.get(i) for i in self.batch) if t is not None]

    def toggle_favourite(self, take_id) -> Take | None:
        take = self.get(take_id)
        if take is not None:
            take.favourite = not take.favourite
        return take

    def table(self, favourites_only: bool = False) -> list[list]:
        """Newest first, for the history Dataframe."""
        return [t.row() for t in reversed(self.takes) if t.favourite or not favourites_only]

    def choices(self, favourites_only: bool = False) -> list[tuple[str, int]]:
        return [(t.caption(), t.id) for t in reversed(self.takes) if t.favourite or not favourites_only]

    def close(self) -> None:
        """Delete the session's cache folder (called when Gradio drops the session's state)."""
        shutil.rmtree(self.folder, ignore_errors=True)


def sweep(sounds_dir: Path, older_than_s: float = 24 * 3600) -> int:
    """Remove session folders left behind by a crash or a killed server; returns how many."""
    removed = 0
    now = time.time()
    for folder in Path(sounds_dir).glob("*"):
        try:
            if folder.is_dir() and now - folder.stat().st_mtime > older_than_s:
                shutil.rmtree(folder, ignore_errors=True)
                removed += 1
        except OSError:
            continue
    return removed
