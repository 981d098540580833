"""Shared fixtures. Engine fixtures build tiny random models; UI fixtures live in tests/ui_support.py."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

os.environ.setdefault("TQDM_DISABLE", "1")  # progress bars are for people, not test logs
torch.set_num_threads(1)  # the machine has 2 cores; training or another suite may share them


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> Path:
    """A folder holding two tiny random model folders: ``tiny`` (v-objective) and ``tiny_blend``."""
    from tests.helpers import make_tiny_model

    root = tmp_path_factory.mktemp("models")
    make_tiny_model(root, "tiny")
    make_tiny_model(root, "tiny_blend", seed=1, objective="blend")
    return root


@pytest.fixture(scope="session")
def wav_folder(tmp_path_factory) -> Path:
    from tests.helpers import make_wav_folder

    return make_wav_folder(tmp_path_factory.mktemp("wavs"))


@pytest.fixture(autouse=True)
def _autograd_stays_on():
    """A test (or the code it calls) must not leave autograd switched off for the tests after it."""
    yield
    assert torch.is_grad_enabled(), "autograd was left disabled"
