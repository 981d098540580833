"""Fixtures and helpers shared by the UI tests (handlers and the live server)."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FAST_STEPS = 3  # enough for the sampler to run its real path; fast on a CPU


@pytest.fixture(scope="session")
def studio():
    from engine import Studio

    return Studio(device="cpu")


@pytest.fixture
def settings(tmp_path):
    from ui.settings import Settings

    return Settings(export_dir=tmp_path / "exports", cache_dir=tmp_path / "cache", presets_dir=tmp_path / "presets",
                    open_browser=False)


@pytest.fixture
def handlers(studio, settings, monkeypatch):
    from ui.handlers import Handlers
    from ui.settings import prepare_environment

    for name in ("GRADIO_TEMP_DIR", "GRADIO_ANALYTICS_ENABLED", "MPLBACKEND"):
        monkeypatch.delenv(name, raising=False)  # monkeypatch puts the originals back after the test
    prepare_environment(settings)
    return Handlers(studio, settings)


def controls(**overrides) -> dict:
    """The generate handler's inputs with fast defaults (a locked seed, few steps, one sound)."""
    values = dict(model="kick", label="kick", sampler="ddim", steps=FAST_STEPS, guidance=2.0, seed=7,
                  lock_seed=True, seed_b=None, morph=0.0, count=1, length=None, reference=None, strength=0.5,
                  variation="noise", session=None)
    values.update(overrides)
    return values


def run_generate(handlers, **overrides) -> tuple[list[dict], dict]:
    """Consume the generate stream; return every update and the merged final state."""
    updates = list(handlers.generate(**controls(**overrides)))
    merged: dict = {}
    for update in updates:
        merged.update(update)
    return updates, merged
