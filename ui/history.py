"""One browser session's takes: the current batch, the history and the favourites.

A :class:`Session` lives in a ``gr.State`` (one per browser tab or API client), never in a
module global, so two producers never see each other's sounds. Each take points at two files in
the session's cache folder: a 24-bit WAV that the page plays and lets you drag into a DAW, and a
32-bit float master that exports are made from. Both carry the recipe.

The takes are also written to ``history.json`` in that folder after every change, and the
browser keeps the folder's key (``gr.BrowserState``), so a reload or a server restart brings the
takes and favourites back (:meth:`Session.resume`); folders unused for ``KEEP_DAYS`` are swept.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path

from engine.models import atomic_write
from engine.request import recorded_strength

log = logging.getLogger(__name__)

HISTORY_FILE = "history.json"
KEEP_DAYS = 14                       # a session folder nobody opened for this long is swept
_KEY = re.compile(r"[0-9a-f]{16}")  # what Session.create names folders: never a path from the browser

COLUMNS = ["#", "★", "model", "label", "seed", "seed B", "morph", "steps", "sampler", "time"]


@dataclass
class Take:
    id: int
    recipe: dict
    wav: str                 # PCM_24, what the page plays and what you drag out
    master: str              # FLOAT, what exports are made from ("" until written: see Take.master_path)
    created: float = field(default_factory=time.time)
    favourite: bool = False

    def master_path(self, wait_s: float = 10.0) -> Path:
        """The float master, once written: a render sends its sounds to the page first and writes
        the masters right after (issue 18), so an Export clicked in that instant waits for them."""
        deadline = time.monotonic() + wait_s
        while not self.master and time.monotonic() < deadline:
            time.sleep(0.01)
        if not self.master:
            raise FileNotFoundError(f"take #{self.id}'s float master was not written")
        return Path(self.master)

    def caption(self) -> str:
        r = self.recipe
        label = blend_name(r) if r.get("label") not in (None, r.get("model")) else ""
        if not label and r.get("label") and r.get("label_b") and r.get("label_mix"):  # the alias snare, blended
            label = blend_name(r)[len(r["label"]):].strip()
        seed = f"seed {r.get('seed')}"
        if r.get("redrawn_from_seed") is not None:  # the seed asked for came out near-silent
            seed = f"seed {r['redrawn_from_seed']} (near-silent: drawn again as {r.get('seed')})"
        if r.get("seed_b") is not None and r.get("morph"):
            seed += f" → {r['seed_b']} @ {r['morph']:.2f}"
        model = str(r.get("model"))
        if r.get("variant_of"):  # dealt to a Sound's variant (engine.variants)
            model += f" (a variant of {r['variant_of']})"
        parts = [f"#{self.id}", model, label or ("(any)" if r.get("label") is None else ""), seed]
        parts.append(f"{r.get('steps')} steps")
        if r.get("prompt"):
            prompt = f"“{r['prompt']}”"
            if r.get("prompt_b"):
                prompt += f" → “{r['prompt_b']}” @ {float(r.get('prompt_morph') or 0):.2f}"
            parts.append(prompt)
        if r.get("score") is not None:
            parts.append(f"match {r['score']:.2f}")
        if r.get("reference"):
            strength = recorded_strength(r)
            if r.get("variation") != "semantic":
                parts.append(f"{r.get('variation')} variation {strength:.2f}")
            else:
                parts.append("more like a sound" + (f" from it at {strength:.2f}" if strength < 1.0 else ""))
        if r.get("rms") or r.get("onsets"):  # drawn curves: how many points and hits
            drawn = [f"{len(r['rms'])}-point curve"] if r.get("rms") else []
            drawn += [f"{len(r['onsets'])} hit{'s' if len(r['onsets']) > 1 else ''}"] if r.get("onsets") else []
            parts.append(" + ".join(drawn))
        return " · ".join(p for p in parts if p)

    def row(self) -> list:
        r = self.recipe
        morph = f"{r['morph']:.2f}" if r.get("seed_b") is not None else ""
        return [self.id, "★" if self.favourite else "", r.get("model"), blend_name(r) or "(any)", r.get("seed"),
                "" if r.get("seed_b") is None else r["seed_b"], morph, r.get("steps"), r.get("sampler"),
                time.strftime("%H:%M:%S", time.localtime(self.created))]


def blend_name(recipe: dict) -> str:
    """"snare", or "snare + 30% perc" for a hybrid of two labels."""
    label = recipe.get("label") or ""
    if label and recipe.get("label_b") and recipe.get("label_mix"):
        label += f" + {100 * float(recipe['label_mix']):.0f}% {recipe['label_b']}"
    return label


@dataclass
class Session:
    folder: Path
    takes: list[Take] = field(default_factory=list)
    batch: list[int] = field(default_factory=list)   # ids of the takes shown in the result slots
    next_id: int = 1
    max_takes: int = 200
    generating: bool = False        # a generation of this session is running...
    stop_requested: bool = False    # ...and Stop asked it to stop at its next step
    cards_shown: int | None = None  # result cards the page shows (None: not known, e.g. a page just loaded)

    @classmethod
    def create(cls, sounds_dir: Path, max_takes: int = 200) -> "Session":
        folder = Path(sounds_dir) / uuid.uuid4().hex[:16]
        folder.mkdir(parents=True, exist_ok=True)
        return cls(folder=folder, max_takes=max_takes)

    @property
    def key(self) -> str:
        """What the browser keeps to come back to this session (the folder's name)."""
        return self.folder.name

    @classmethod
    def resume(cls, sounds_dir: Path, key, max_takes: int = 200) -> "Session":
        """The session saved under ``key`` (its takes whose files are still there), or a new one."""
        if not (isinstance(key, str) and _KEY.fullmatch(key)):  # it comes from the browser
            return cls.create(sounds_dir, max_takes)
        folder = Path(sounds_dir) / key
        saved = folder / HISTORY_FILE
        if not saved.is_file():
            return cls.create(sounds_dir, max_takes)
        try:
            data = json.loads(saved.read_text())
            takes = [Take(**t) for t in data["takes"]]
        except (OSError, ValueError, KeyError, TypeError) as error:
            log.warning("could not read %s (%s): starting a new session", saved, error)
            return cls.create(sounds_dir, max_takes)
        takes = [t for t in takes if Path(t.wav).is_file() and t.master and Path(t.master).is_file()]
        os.utime(folder)  # in use again: the sweep counts from now
        return cls(folder=folder, takes=takes, next_id=int(data.get("next_id", len(takes) + 1)),
                   max_takes=max_takes)

    def save(self) -> None:
        """Write the takes to history.json (atomically: a crash leaves the old file or the new one)."""
        text = json.dumps({"next_id": self.next_id, "takes": [asdict(t) for t in self.takes]})
        try:
            atomic_write(self.folder / HISTORY_FILE, lambda tmp: tmp.write_text(text))
        except OSError as error:  # a full disk must not stop the studio; the takes stay in memory
            log.warning("could not save the history in %s: %s", self.folder, error)

    def add(self, recipe: dict, wav: str | Path, master: str | Path = "", save: bool = True) -> Take:
        """A new take (its master may come later: ``take.master = ...`` then :meth:`save`)."""
        take = Take(self.next_id, dict(recipe), str(wav), str(master))
        self.next_id += 1
        self.takes.append(take)
        self._trim()
        if save:
            self.save()
        return take

    def _trim(self) -> None:
        """Forget the oldest non-favourite takes beyond ``max_takes`` (their files go too)."""
        while len(self.takes) > self.max_takes:
            victim = next((t for t in self.takes if not t.favourite and t.id not in self.batch), None)
            if victim is None:
                return
            self.takes.remove(victim)
            for path in (victim.wav, victim.master):
                if path:
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
            self.save()
        return take

    def table(self, favourites_only: bool = False) -> list[list]:
        """Newest first, for the history Dataframe."""
        return [t.row() for t in reversed(self.takes) if t.favourite or not favourites_only]

    def choices(self, favourites_only: bool = False) -> list[tuple[str, int]]:
        return [(t.caption(), t.id) for t in reversed(self.takes) if t.favourite or not favourites_only]


def sweep(sounds_dir: Path, older_than_s: float = KEEP_DAYS * 24 * 3600) -> int:
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
