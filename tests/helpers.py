"""Small builders the engine tests share: a tiny model folder and a tiny folder of drum WAVs.

The tiny model is randomly initialised (its sounds are noise), which is all the plumbing tests
need: shapes, determinism, recipes, errors, training mechanics. Quality is measured by
``python -m engine eval`` on the shipped checkpoints, not here.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from engine.models import save_model
from engine.nets import build_codec, build_network
from engine.nets.envelope import knot_frames
from engine.nets.pqmf import fit_envelope_prior

ROOT = Path(__file__).resolve().parent.parent


def run_cli(*args: str) -> subprocess.CompletedProcess:
    """``python -m engine ARGS`` as a user runs it: a new process, one thread, no progress bars."""
    return subprocess.run([sys.executable, "-m", "engine", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=180, env={"PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1"})


def cli_in_process(*args: str) -> subprocess.CompletedProcess:
    """The same command through ``engine.__main__.main`` in this process, its output captured: what
    a test of argument checks, messages and exit statuses needs, without the ~3 s a new process
    spends importing torch (each module keeps one :func:`run_cli` test for the real process).
    Log lines go to pytest's handler here, not to the captured stderr."""
    from engine.__main__ import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            status = main(list(args))
        except SystemExit as exit:  # argparse's own errors
            status = exit.code if isinstance(exit.code, int) else (0 if exit.code is None else 2)
    return subprocess.CompletedProcess(["engine", *args], status, out.getvalue(), err.getvalue())


def assert_table_command(command: str, folder: Path, data: Path, label: str, table: str, clips: int) -> None:
    """``python -m engine <command> --model folder --data data --label label`` writes ``table`` in
    the model folder with ``clips`` rows for that label alone and says so; an unknown label is
    refused with exit status 2: what each command that measures a per-label table must do."""
    made = cli_in_process(command, "--model", str(folder), "--data", str(data), "--label", label)
    assert made.returncode == 0, made.stderr
    stored = json.loads((folder / table).read_text())
    assert set(stored["labels"]) == {label} and len(stored["labels"][label]) == clips
    assert f"{label} ({clips} clips)" in made.stdout
    refused = cli_in_process(command, "--model", str(folder), "--data", str(data), "--label", "tuba")
    assert refused.returncode == 2 and "no label" in refused.stderr, refused.stderr


def assert_filter_spares_a_reference(monkeypatch, tmp_path: Path, name: str, asked) -> None:
    """``engine.pipeline.<name>`` (a filter a dealt clip gives the decoded sound) filters the two
    sounds of ``asked`` (a studio request, count 2) once, and not a "more like this" of one of them:
    the reference's own colour and tail are kept, no clip's laid over them."""
    import soundfile

    from engine import Studio, pipeline

    rows = []
    original = getattr(pipeline, name)
    monkeypatch.setattr(pipeline, name, lambda audio, *rest: rows.append(len(audio)) or original(audio, *rest))
    studio = Studio(device="cpu")
    made = studio.render(asked).sounds[0]
    assert rows == [2]
    wav = tmp_path / "made.wav"
    soundfile.write(wav, made.audio.T.numpy(), made.sample_rate)
    studio.render(asked.with_(reference=str(wav), variation="noise", strength=0.5, count=1))
    assert rows == [2]


TINY_NETWORK = {"widths": [16, 32, 32], "blocks": [1, 1, 1], "factors": [4, 4], "pos_dim": 8, "frame_rate": 44100 / 32,
                "attention": [False, False, True], "heads": 2, "emb_dim": 32, "dropout": 0.0}
LABELS = ["kick", "snare", "hat", "perc", "cymbal"]


def assert_defaults_refused(folder: Path, cases, says: str) -> None:
    """``python -m engine defaults --model folder`` with each of ``cases`` (argument lists) ends in
    one line naming ``says`` and exit status 2, and leaves the manifest as it was."""
    before = (folder / "manifest.json").read_text()
    for bad in cases:
        refused = cli_in_process("defaults", "--model", str(folder), *bad)
        assert refused.returncode == 2 and says in refused.stderr, (bad, refused.stderr)
    assert (folder / "manifest.json").read_text() == before


def shipped_latent_fast(root: Path) -> Path:
    """A copy of the shipped `latent-fast` folder (with the codec, text–audio model and hat variant it
    names) under ``root``: what a test that rewrites a model folder's files changes instead of the shipped one."""
    for name in ("latent-fast", "latent-thin-hats", "codec", "clap"):
        shutil.copytree(ROOT / "checkpoints" / name, root / name)
    return root / "latent-fast"


def tiny_manifest(name: str = "tiny", objective: str = "v_cosine") -> dict:
    return {
        "format": 1, "name": name, "kind": "wave", "objective": objective,
        "sample_rate": 44100, "length": 32768, "channels": 2, "labels": LABELS,
        "aliases": {f"tiny-{label}": {"label": label} for label in LABELS},
        "conditioners": ["label"], "defaults": {"sampler": "dpmpp_2m", "steps": 4, "guidance": 2.0},
        "codec": {"type": "pqmf", "args": {"channels": 2, "bands": 32, "taps_per_band": 8, "band_scale": None}},
        "network": {"type": "unet1d", "args": dict(TINY_NETWORK, in_channels=64, num_labels=len(LABELS))},
        "training": {"steps": 0, "examples": 0, "data": "", "sessions": []},
    }


def perturb_zero_init(network: torch.nn.Module, std: float = 0.02) -> torch.nn.Module:
    """Give zero-initialised weights (residual branches, head) small random values.

    A fresh network is built to start as the identity and to predict 0; a test model must
    instead depend on its input, time and label, or the tests could not see them.
    """
    with torch.no_grad():
        for param in network.parameters():
            if param.dim() > 1 and torch.count_nonzero(param) == 0:
                param.normal_(0, std)
    return network


def make_tiny_model(folder: Path, name: str = "tiny", seed: int = 0, objective: str = "v_cosine",
                    envelope: bool = True) -> Path:
    """A model folder with random weights whose output depends on its input, time and label.

    With ``envelope`` (what shipped waveform models have) its codec carries a per-clip envelope
    prior fitted on synthetic kicks and hats (other labels fall back to the all-clips row).
    """
    torch.manual_seed(seed)
    manifest = tiny_manifest(name, objective)
    if envelope:
        manifest["codec"]["args"]["envelope_prior"] = {"knots": knot_frames(1024), "rows": len(LABELS) + 1,
                                                       "clusters": 2, "components": 2}
    network = perturb_zero_init(build_network(manifest["network"]))
    codec = build_codec(manifest["codec"])  # checks the codec arguments too
    if envelope:
        hits = [(kind, synthetic_hit(kind, i)) for kind in ("kick", "hat") for i in range(4)]
        audio = torch.stack([torch.from_numpy(np.pad(hit, ((0, 32768 - len(hit)), (0, 0))).T.copy()) for _, hit in hits])
        fit_envelope_prior(codec, audio, torch.tensor([LABELS.index(kind) for kind, _ in hits]))
    folder = Path(folder) / name
    save_model(folder, network, manifest, card=f"# {name}\nA randomly initialised test model.\n", codec=codec)
    return folder


def synthetic_hit(kind: str, seed: int, sample_rate: int = 44100, seconds: float = 0.5) -> np.ndarray:
    """A crude kick (decaying pitch-swept sine) or hat (decaying noise burst), (N, 2) float32."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(sample_rate * seconds)) / sample_rate
    if kind == "kick":
        freq = 50 + 120 * np.exp(-t * 30) + rng.uniform(-5, 5)
        wave = np.sin(2 * math.pi * np.cumsum(freq) / sample_rate) * np.exp(-t * rng.uniform(6, 10))
    else:
        wave = rng.standard_normal(t.size) * np.exp(-t * rng.uniform(30, 50)) * 0.5
    return np.stack([wave, wave], axis=1).astype(np.float32) * 0.8


def make_wav_folder(root: Path, per_class: int = 6) -> Path:
    """kick/ and hat/ sub-folders of synthetic one-shots: a user's own training folder."""
    for kind in ("kick", "hat"):
        (root / kind).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            sf.write(root / kind / f"{kind}_{i}.wav", synthetic_hit(kind, i), 44100)
    return root


def make_drum_dataset(root: Path, length: int, train: int = 4, holdout: int = 3, sample_rate: int = 44100) -> Path:
    """A built data set (``index.json`` + ``train``/``holdout`` safetensors, as
    ``scripts/build_drum_dataset.py`` writes it) of synthetic hits, ``train`` and ``holdout`` clips of
    every category: what the evaluation tools read, without the Hydrogen kits."""
    import json

    from safetensors.torch import save_file

    from engine.data.build import FORMAT, INDEX_NAME
    from engine.data.labels import CATEGORIES

    root.mkdir(parents=True, exist_ok=True)
    t = np.arange(length) / sample_rate
    tone = {"kick": (50.0, 12.0), "perc": (180.0, 15.0)}            # base pitch, decay rate
    noise = {"snare": (25.0, 0.9), "hat": (60.0, 0.2), "cymbal": (4.0, 0.1)}   # decay rate, low share
    clips, audio = [], {"train": [], "holdout": []}
    for split, count in (("train", train), ("holdout", holdout)):
        for category in CATEGORIES:
            for i in range(count):
                rng = np.random.default_rng(len(clips))
                if category in tone:
                    base, decay = tone[category]
                    freq = base * (1 + 2 * np.exp(-t * 40)) + rng.uniform(-5, 5)
                    wave = np.sin(2 * math.pi * np.cumsum(freq) / sample_rate) * np.exp(-t * decay)
                else:
                    decay, low = noise[category]
                    white = rng.standard_normal(length)
                    wave = (low * np.convolve(white, np.ones(8) / 8, "same") + (1 - low) * white) * np.exp(-t * decay)
                wave = 0.7 * wave / np.abs(wave).max()
                audio[split].append(torch.from_numpy(np.stack([wave, wave]).astype(np.float16)))
                clips.append({"split": split, "row": len(audio[split]) - 1, "category": category,
                              "subcategory": category, "kit": f"Synthetic {split}", "instrument": category,
                              "file": f"{category}_{i}.wav", "velocity": [0.0, 1.0], "sha1": f"{len(clips):040x}",
                              "peak": 0.7, "source_rate": sample_rate, "duplicates": []})
    for split, rows in audio.items():
        save_file({"audio": torch.stack(rows)}, str(root / f"{split}.safetensors"))
    index = {"format": FORMAT, "version": 1, "sample_rate": sample_rate, "length": length, "channels": 2,
             "dtype": "float16", "categories": list(CATEGORIES),
             "splits": {s: {"file": f"{s}.safetensors", "count": len(rows)} for s, rows in audio.items()},
             "holdout_kits": ["Synthetic holdout"], "kits": ["Synthetic train", "Synthetic holdout"],
             "sources": [], "stats": {}, "clips": clips}
    (root / INDEX_NAME).write_text(json.dumps(index), encoding="utf-8")
    return root
