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
def trained_codec(tmp_path_factory, wav_folder) -> Path:
    """A tiny codec trained for 30 steps (~5 s on one thread), shared by the latent, prompt and
    distillation tests (each trained its own until session 18). Read it; never train it on."""
    from engine.train.codec import CodecTrainConfig, train_codec
    from tests.test_latent import LENGTH, TINY_CODEC

    run = tmp_path_factory.mktemp("codec_run")
    return train_codec(CodecTrainConfig(data=str(wav_folder), run=str(run), length=LENGTH, steps=30, batch=4,
                                        segment=4096, lr=3e-3, warmup=1, ema_decay=0.0, log_every=1,
                                        save_every=10, device="cpu", network=dict(TINY_CODEC), waveform_weight=1.0))


@pytest.fixture(scope="session")
def wav_folder(tmp_path_factory) -> Path:
    from tests.helpers import make_wav_folder

    return make_wav_folder(tmp_path_factory.mktemp("wavs"))


@pytest.fixture(autouse=True)
def _autograd_stays_on():
    """A test (or the code it calls) must not leave autograd switched off for the tests after it."""
    yield
    assert torch.is_grad_enabled(), "autograd was left disabled"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A failed browser or API test carries the live server's last log lines in its report: CI's
    temporary folders are gone by the time anyone reads its output, and a flaky field or a slow
    render shows there (which handler ran, when, how long the engine took)."""
    outcome = yield
    report = outcome.get_result()
    server = getattr(item, "funcargs", {}).get("server")
    log = getattr(server, "log", None)
    if report.failed and log is not None and Path(log).exists():
        lines = Path(log).read_text(errors="replace").splitlines()[-40:]
        report.sections.append(("studio server log (last 40 lines)", "\n".join(lines)))
