"""What the studio server was started with: host, folders, and what that allows.

No gradio import here: ``prepare_environment`` must run before gradio is imported, because
gradio reads ``GRADIO_TEMP_DIR`` at import time and we want every file it serves to live in
our own cache folder.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LOOPBACK = {"127.0.0.1", "localhost", "::1"}


@dataclass
class Settings:
    host: str = "127.0.0.1"
    port: int = 7860
    share: bool = False
    open_browser: bool = True
    export_dir: Path = field(default_factory=lambda: Path("exports"))
    cache_dir: Path = field(default_factory=lambda: Path("cache"))
    presets_dir: Path = ROOT / "presets"
    device: str = "cpu"                # what the Studio resolved, shown in the header
    concurrency: int = 2               # generations running at once (Gradio queue)
    max_history: int = 200             # takes kept per session (favourites are never dropped)
    warm_up: bool = True               # load and run the default model once when the server starts

    def __post_init__(self) -> None:
        self.export_dir = Path(self.export_dir).expanduser().resolve()
        self.cache_dir = Path(self.cache_dir).expanduser().resolve()
        self.presets_dir = Path(self.presets_dir).expanduser().resolve()

    @property
    def remote(self) -> bool:
        """Reachable by other people: then exports stay inside export_dir and model folders can't be added."""
        return self.share or self.host not in LOOPBACK

    @property
    def sounds_dir(self) -> Path:
        return self.cache_dir / "sounds"

    @property
    def gradio_dir(self) -> Path:
        return self.cache_dir / "gradio"


def prepare_environment(settings: Settings) -> None:
    """Create the folders and point gradio's own temp folder into our cache; call before importing gradio."""
    for folder in (settings.export_dir, settings.sounds_dir, settings.gradio_dir):
        folder.mkdir(parents=True, exist_ok=True)
    os.environ["GRADIO_TEMP_DIR"] = str(settings.gradio_dir)
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no calls home from a local tool
    os.environ.setdefault("MPLBACKEND", "Agg")
