"""Guidance distillation: the student learns the teacher's guided step, and sampling it takes one call a step."""

import math
import shutil

import pytest
import torch

from engine.diffusion.guidance import GUIDANCE_INPUT, guidance_features
from engine.errors import InvalidRequestError
from engine.models import load_model, read_manifest, write_json
from engine.request import GenerationRequest
from engine.sampling import distilled_from, sample_latent
from engine.studio import Studio
from engine.train.distill import DistillConfig, guided_targets, train_distill
from tests.test_prompts import TINY_CLAP

TINY_EMBEDDING = TINY_CLAP["dim"]


def distill_config(run, data, teacher, **changes) -> DistillConfig:
    settings = dict(init=str(teacher), data=str(data), run=str(run), steps=4, batch=4, lr=1e-4, warmup=2,
                    log_every=1, save_every=100, device="cpu", top=6.0, ema_decay=0.0)
    settings.update(changes)
    return DistillConfig(**settings)


@pytest.fixture(scope="module")
def student(tmp_path_factory, tiny_models, wav_folder):
    """A student after a few steps: enough for its guidance input to matter, for the plumbing tests."""
    run = tmp_path_factory.mktemp("distill") / "run"
    return train_distill(distill_config(run, wav_folder, tiny_models / "tiny", steps=4))


def probe(teacher, seed: int = 0):
    """Fixed noisy latents, times, labels and scales, with the teacher's guided answer."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(8, 64, 1024, generator=generator)
    t = torch.linspace(0.2, 0.9, 8)
    labels = torch.tensor([0, 1, 2, 3, 4, 0, 1, 5])  # 5: no label
    scales = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0, 0.0, 2.5, 3.0])
    with torch.no_grad():
        return x, t, labels, scales, guided_targets(teacher, x, t, labels, scales)


@pytest.mark.slow
@pytest.mark.numeric
def test_the_student_gives_the_teachers_guided_step_in_one_call(tmp_path, tiny_models, wav_folder):
    student = train_distill(distill_config(tmp_path / "run", wav_folder, tiny_models / "tiny", steps=200))
    teacher = load_model(tiny_models / "tiny").network
    model = load_model(student)
    x, t, labels, scales, target = probe(teacher)
    features = guidance_features(scales, model.network.embeddings[GUIDANCE_INPUT], 6.0)
    with torch.no_grad():
        before = (teacher(x, t, {"label": labels}) - target).pow(2).mean()   # the student's start: the cond call
        after = (model.network(x, t, {"label": labels, GUIDANCE_INPUT: features}) - target).pow(2).mean()
    # a random tiny teacher's guidance offset is learned slowly: 0.00175 -> 0.00124 after 200 steps
    assert after < 0.85 * before, (float(before), float(after))
    manifest = read_manifest(student)
    assert manifest["guidance_distilled"]["top"] == 6.0 and manifest["training"]["steps"] == 200
    assert manifest["network"]["args"]["embeddings"] == {GUIDANCE_INPUT: 16}


class Counting(torch.nn.Module):
    """A network wrapper that records the batch size of every call."""

    def __init__(self, network):
        super().__init__()
        self.network, self.calls = network, []
        self.num_labels, self.embeddings = network.num_labels, network.embeddings

    def forward(self, x, t, cond=None):
        self.calls.append((x.shape[0], sorted(cond or {})))
        return self.network(x, t, cond)


def test_a_distilled_model_samples_a_guided_step_in_one_call_and_refuses_scales_it_never_learned(student, tiny_models):
    model, teacher = load_model(student), load_model(tiny_models / "tiny")
    noise = torch.randn(1, 64, 1024, generator=torch.Generator().manual_seed(1))
    cond = {"label": torch.tensor([0])}
    counted = Counting(model.network)
    sample_latent(counted, model.manifest, noise, sampler="dpmpp_2m", steps=4, guidance=3.0, cond=cond)
    assert counted.calls == [(1, [GUIDANCE_INPUT, "label"])] * 4
    plain = Counting(teacher.network)
    sample_latent(plain, teacher.manifest, noise, sampler="dpmpp_2m", steps=4, guidance=3.0, cond=cond)
    assert [batch for batch, _ in plain.calls] == [2] * 4
    # the scale is what the network reads: 3 and 1 give different sounds, each from one call a step
    guided = sample_latent(model.network, model.manifest, noise, sampler="dpmpp_2m", steps=4, guidance=3.0, cond=cond)
    unguided = sample_latent(model.network, model.manifest, noise, sampler="dpmpp_2m", steps=4, guidance=1.0, cond=cond)
    assert not torch.allclose(guided, unguided)
    with pytest.raises(InvalidRequestError, match="distilled for guidance 0-6"):
        sample_latent(model.network, model.manifest, noise, sampler="dpmpp_2m", steps=4, guidance=7.0, cond=cond)


def test_the_studio_renders_a_distilled_model_with_its_variety_and_blends(student):
    studio = Studio(roots=[student.parent])
    assert studio.describe(str(student))["guidance_max"] == 6.0  # the studio's guidance slider stops there
    for request in (GenerationRequest(model=str(student), label="kick", seed=3),
                    GenerationRequest(model=str(student), label="kick", label_b="hat", label_mix=0.3, variety=0.5),
                    GenerationRequest(model=str(student), label="snare", guidance=0.0)):
        sound = studio.render(request).sounds[0]
        assert sound.audio.shape == (2, 32768) and math.isfinite(float(sound.audio.abs().max()))
    with pytest.raises(InvalidRequestError, match="distilled for guidance"):
        studio.render(GenerationRequest(model=str(student), label="kick", guidance=12.0))


def test_distillation_refuses_a_teacher_it_cannot_distil(tmp_path, student, wav_folder):
    with pytest.raises(InvalidRequestError, match="already guidance-distilled"):
        train_distill(distill_config(tmp_path / "again", wav_folder, student))
    with pytest.raises(InvalidRequestError, match="needs its teacher"):
        train_distill(distill_config(tmp_path / "none", wav_folder, "", init=None))


def test_the_command_line_distils_and_fine_tuning_a_student_points_to_its_teacher(tmp_path, tiny_models, wav_folder):
    from tests.test_cli import run_cli
    from engine.train.wave import WaveTrainConfig, train_wave

    run = tmp_path / "run"
    done = run_cli("train", "distill", "--init", str(tiny_models / "tiny"), "--data", str(wav_folder), "--run-dir",
                   str(run), "--steps", "2", "--batch", "2", "--device", "cpu")
    assert done.returncode == 0, done.stderr
    made = run_cli("generate", "--model", str(run / "model"), "--label", "kick", "--steps", "2", "--guidance", "3",
                   "--out", str(tmp_path / "out"))
    assert made.returncode == 0 and made.stdout.strip().endswith(".wav"), made.stderr
    refused = run_cli("generate", "--model", str(run / "model"), "--label", "kick", "--guidance", "12",
                      "--out", str(tmp_path / "out"))
    assert refused.returncode == 2 and "distilled for guidance 0-10" in refused.stderr
    listed = run_cli("models", "--models-root", str(run))
    assert listed.returncode == 0 and "model: kind=wave" in listed.stdout and "distilled_from=tiny" in listed.stdout
    with pytest.raises(InvalidRequestError, match="fine-tune .*tiny instead"):
        train_wave(WaveTrainConfig(data=str(wav_folder), run=str(tmp_path / "tune"), init=str(run / "model"),
                                   steps=1, batch=2, device="cpu"))


# ----------------------------------------------------------------------------- the latent model


@pytest.fixture(scope="module")
def latent_teacher(tmp_path_factory, wav_folder, trained_codec):
    """A tiny latent model with every condition (label, loudness and onset curves, prompt) after
    60 steps, published beside its codec and its random-weight embedder."""
    from engine.data.dataset import DrumDataset
    from engine.train.latent import LatentTrainConfig, train_latent
    from engine.train.publish import publish
    from tests.test_latent import LENGTH, TINY_LATENT_NET
    from tests.test_prompts import make_tiny_embedder

    root = tmp_path_factory.mktemp("latent_teacher")
    data = DrumDataset.from_folder(wav_folder, length=LENGTH, progress=False)
    embedder = make_tiny_embedder(root / "tiny-clap", data)
    train_latent(LatentTrainConfig(data=str(wav_folder), run=str(root / "run"), codec=str(trained_codec),
                                   length=LENGTH, batch=8, lr=3e-3, warmup=1, ema_decay=0.5, log_every=50,
                                   save_every=500, render_every=0, augment_copies=2, device="cpu",
                                   network=dict(TINY_LATENT_NET), controls=True, prompts=str(embedder), steps=60))
    return publish(root / "run", root / "models" / "tiny-all")


def latent_probe(model, seed: int = 0):
    """Fixed blended latents, levels and conditions (some labels and prompts absent, some curves)."""
    from engine.conditions import Conditions
    from engine.pipeline import inputs_for
    generator = torch.Generator().manual_seed(seed)
    frames = 64
    x = torch.randn(6, model.codec.latent_channels, frames, generator=generator)
    alpha = torch.linspace(0.1, 0.9, 6)
    prompt = torch.nn.functional.normalize(torch.randn(model.network.embeddings["prompt"], generator=generator), dim=0)
    asked = inputs_for(model, Conditions(label=0, prompt=prompt, rms=[(0.0, -6.0), (100.0, -30.0)]), 6, frames)
    bare = inputs_for(model, Conditions(), 6, frames)
    rows = torch.tensor([True, True, True, True, False, True])[:, None]
    cond = {name: torch.where(rows.view(-1, *[1] * (value.dim() - 1)), value, bare[name]) for name, value in asked.items()}
    return x, alpha, cond, torch.tensor([1.0, 2.0, 3.0, 4.0, 3.0, 0.0])


def test_the_latent_guided_target_spreads_its_scale_per_channel_and_keeps_the_curves(latent_teacher):
    from engine.conditions import without
    from engine.train.distill_latent import guided_blend_targets
    teacher = load_model(latent_teacher)
    x, alpha, cond, scales = latent_probe(teacher)
    net = teacher.network
    group = ["label", "prompt"]
    with torch.no_grad():
        conditional = net(x, alpha, cond)
        unconditional = net(x, alpha, without(cond, group, net.num_labels))
        plain = guided_blend_targets(net, x, alpha, cond, scales, None, group)
        channels = teacher.codec.latent_channels
        weights = torch.zeros(channels)
        weights[: channels // 2] = 1.0
        spread = guided_blend_targets(net, x, alpha, cond, scales, weights, group)
    expected = unconditional + scales[:, None, None] * (conditional - unconditional)
    assert torch.allclose(plain, expected, atol=1e-5)
    assert torch.allclose(plain[0], conditional[0], atol=1e-5)          # scale 1: the conditional call
    assert torch.allclose(plain[5], unconditional[5], atol=1e-5)        # scale 0: the unconditional one
    assert torch.allclose(plain[4], unconditional[4], atol=1e-5)        # label and prompt absent: any scale
    assert torch.allclose(spread[:, channels // 2:], conditional[:, channels // 2:], atol=1e-5)  # weight 0
    assert torch.allclose(spread[:, : channels // 2], expected[:, : channels // 2], atol=1e-5)
    assert not torch.allclose(unconditional[1], net(x, alpha, without(cond, group + ["rms", "onsets"],
                                                                      net.num_labels))[1])  # the curves stayed


@pytest.fixture(scope="module")
def latent_student(tmp_path_factory, latent_teacher, wav_folder):
    run = tmp_path_factory.mktemp("latent_distill") / "run"
    return train_distill(distill_config(run, wav_folder, latent_teacher, steps=3, name="tiny-all-fast"))


def test_a_latent_student_takes_every_condition_and_a_guided_step_in_one_call(latent_student, latent_teacher):
    manifest, teacher = read_manifest(latent_student), read_manifest(latent_teacher)
    assert manifest["network"]["args"]["embeddings"] == {"prompt": TINY_EMBEDDING, GUIDANCE_INPUT: 16}
    assert manifest["network"]["args"]["controls"] == ["rms", "onsets"] and manifest["conditions"] == teacher["conditions"]
    assert manifest["guidance_distilled"]["guidance_weights"] == teacher["defaults"].get("guidance_weights")
    assert "guidance_weights" not in manifest["defaults"]        # learned by the student, not applied again
    assert manifest["training"]["steps"] == teacher["training"]["steps"] + 3
    for folder in ("tiny-clap", manifest["codec"]["model"]):     # its codec and embedder beside it in the run
        assert (latent_student.parent / folder / "manifest.json").is_file()
    model = load_model(latent_student)
    assert model.guidance_weights is None
    x, _, cond, _ = latent_probe(model)
    noise = x[:1]
    one = {name: value[:1] for name, value in cond.items()}
    no_curves = {**one, "rms": torch.zeros_like(one["rms"]), "onsets": torch.zeros_like(one["onsets"])}
    counted = Counting(model.network)
    sample_latent(counted, model.manifest, noise, sampler="euler_a", steps=4, guidance=4.0, cond=no_curves)
    assert [batch for batch, _ in counted.calls] == [1] * 4      # the teacher's step: a batch of 2
    counted.calls.clear()
    sample_latent(counted, model.manifest, noise, sampler="euler_a", steps=4, guidance=4.0, cond=one,
                  control_guidance=2.0)
    assert [batch for batch, _ in counted.calls] == [2] * 4      # the curves are still guided by a second call
    with pytest.raises(InvalidRequestError, match="distilled for guidance 0-6"):
        sample_latent(model.network, model.manifest, noise, sampler="euler_a", steps=2, guidance=8.0, cond=one)


def test_latent_distillation_refuses_a_teacher_that_is_already_distilled(tmp_path, latent_student, wav_folder):
    with pytest.raises(InvalidRequestError, match="already guidance-distilled"):
        train_distill(distill_config(tmp_path / "again", wav_folder, latent_student, steps=1))
    assert not (tmp_path / "again" / "model").exists()


def test_a_student_can_start_from_an_earlier_student_of_the_same_teacher(tmp_path, latent_student, latent_teacher,
                                                                          wav_folder):
    from engine.models import read_weights
    from engine.train import distill
    earlier = tmp_path / "earlier"          # an earlier student whose defaults were chosen for it
    shutil.copytree(latent_student, earlier)
    write_json(earlier / "manifest.json", {**read_manifest(latent_student),
                                           "defaults": {**read_manifest(latent_student)["defaults"], "guidance": 2.5}})
    network = load_model(latent_student).network       # loaded beside its codec
    latent_student = earlier
    config = distill_config(tmp_path / "again", wav_folder, latent_teacher, steps=1, student=str(latent_student))
    started = {name: value.clone() for name, value in network.state_dict().items()}
    torch.nn.init.zeros_(next(iter(network.parameters())))
    distill.start_student(config)(network)
    assert all(torch.equal(value, started[name]) for name, value in network.state_dict().items())
    assert distill.session_note(config, "latent ").endswith(f"the student started from {latent_student}")
    # its guidance input is learned already: the teacher's start would have left it at zero
    assert any(read_weights(latent_student)[name].abs().sum() > 0 for name in started if GUIDANCE_INPUT in name)
    with pytest.raises(InvalidRequestError, match="not a guidance-distilled model"):
        distill.start_student(distill_config(tmp_path / "x", wav_folder, latent_teacher, student=str(latent_teacher)))(network)
    folder = train_distill(config)
    made, earlier = read_manifest(folder), read_manifest(latent_student)
    assert "the student started from" in made["training"]["sessions"][-1]["note"]
    # it goes on counting its own steps, with its own history and defaults, not its teacher's
    assert made["training"]["steps"] == earlier["training"]["steps"] + 1
    assert made["training"]["sessions"][:-1] == earlier["training"]["sessions"]
    assert made["training"]["sessions"][-1]["started_step"] == earlier["training"]["steps"]
    assert made["defaults"] == earlier["defaults"] and made["defaults"]["guidance"] == 2.5
    assert made["name"] == earlier["name"] == "tiny-all-fast"
    assert made["guidance_distilled"]["guidance_weights"] == earlier["guidance_distilled"]["guidance_weights"]


def test_the_studio_renders_a_latent_student_from_a_prompt_and_a_curve(latent_student):
    studio = Studio(roots=[latent_student.parent], device="cpu")
    assert studio.describe(str(latent_student))["guidance_max"] == 6.0
    request = GenerationRequest(model=str(latent_student), prompt="short kick", rms=[(0.0, -6.0), (80.0, -30.0)],
                                onsets=[0.0], steps=3, length=0.1, seed=2)
    sound = studio.render(request).sounds[0]
    assert sound.audio.shape[-1] == 4410 and math.isfinite(float(sound.audio.abs().max()))
    assert sound.recipe["prompt"] == "short kick" and sound.recipe["rms"]


@pytest.mark.slow
@pytest.mark.numeric
def test_the_latent_student_learns_the_teachers_guided_step(tmp_path, latent_teacher, wav_folder):
    from engine.train.distill_latent import guided_blend_targets
    student = train_distill(distill_config(tmp_path / "run", wav_folder, latent_teacher, steps=150, lr=1e-3))
    teacher, model = load_model(latent_teacher), load_model(student)
    x, alpha, cond, scales = latent_probe(teacher, seed=1)
    features = guidance_features(scales, 16, 6.0)
    with torch.no_grad():
        target = guided_blend_targets(teacher.network, x, alpha, cond, scales, teacher.guidance_weights,
                                      ["label", "prompt"])
        before = (teacher.network(x, alpha, cond) - target).pow(2).mean()   # the student's start
        after = (model.network(x, alpha, {**cond, GUIDANCE_INPUT: features}) - target).pow(2).mean()
    assert after < 0.8 * before, (float(before), float(after))


def test_a_students_manifest_names_its_own_teacher():
    """Step distillation names the step teacher (not its guidance teacher); paths written on any OS."""
    assert distilled_from({"guidance_distilled": {"teacher": "checkpoints/drums"}}) == "drums"
    assert distilled_from({"guidance_distilled": {"teacher": "checkpoints/drums"},
                           "steps_distilled": {"teacher": "checkpoints/drums-fast/"}}) == "drums-fast"
    assert distilled_from({"guidance_distilled": {"teacher": "C:\\models\\latent-prompts"}}) == "latent-prompts"
    assert distilled_from({}) is None and distilled_from({"guidance_distilled": {"top": 10.0}}) is None


def test_a_latent_student_spreads_its_guidance_per_channel_between_its_plain_and_guided_steps(latent_student):
    from engine.sampling import condition_specs, conditioned, distilled_top
    model = load_model(latent_student)
    x, alpha, cond, _ = latent_probe(model)
    one = {name: value[:1] for name, value in cond.items()}  # a label, a prompt and a curve
    specs, top = condition_specs(model.manifest), distilled_top(model.manifest)
    channels = model.codec.latent_channels

    def step(scale, weights=None):
        with torch.no_grad():
            return conditioned(model.network, one, scale, weights, 2.0, specs, top)(x[:1], alpha[:1])

    guided, plain = step(4.0), step(1.0)
    assert not torch.allclose(guided, plain, atol=1e-4)
    assert torch.allclose(step(4.0, torch.ones(channels)), guided, atol=1e-5)   # weight 1: the guided step
    weights = torch.ones(channels)
    weights[channels // 2:] = 0.25
    spread = step(4.0, weights)
    assert torch.allclose(spread[:, : channels // 2], guided[:, : channels // 2], atol=1e-5)
    assert torch.allclose(spread[:, channels // 2:], (plain + 0.25 * (guided - plain))[:, channels // 2:], atol=1e-5)
    assert torch.allclose(step(1.0, weights), plain, atol=1e-5)                   # scale 1: nothing to spread


def test_a_labels_guidance_weights_with_curves_reach_its_sounds_and_recipes(tmp_path, latent_student):
    import shutil
    from engine.errors import CheckpointError
    from engine.train.publish import set_defaults
    shutil.copytree(latent_student.parent, tmp_path / "models")
    folder = tmp_path / "models" / latent_student.name
    label, other = read_manifest(folder)["labels"][:2]
    studio = Studio(roots=[folder.parent], device="cpu")
    curve = dict(rms=[(0.0, -6.0), (60.0, -30.0)], onsets=[0.0])

    def render(sound=label, **changes):
        request = GenerationRequest(model=str(folder), label=sound, steps=3, length=0.1, seed=4, guidance=4.0,
                                    **changes)
        return studio.render(request).sounds[0]

    before, before_free = render(**curve), render()
    spread = {"learned": 0.2}  # the tiny codec has one group; the shipped one learned, bypass and envelope
    set_defaults(folder, {"with_curves": {"per_label": {label: {"guidance_weights": spread}}}})
    studio = Studio(roots=[folder.parent], device="cpu")
    after = render(**curve)
    assert after.recipe["guidance_weights"] == spread
    # the highs took less guidance: a tiny student three steps trained moves its sound by 1e-4 or less
    # (7e-5 or 3e-4, as the tests before it leave the random state), so any change tells, none is a miss
    assert not torch.equal(after.audio, before.audio)
    free = render()
    assert "guidance_weights" not in free.recipe and torch.allclose(free.audio, before_free.audio, atol=1e-6)
    assert "guidance_weights" not in render(other, **curve).recipe                # another label: the full scale
    with pytest.raises(CheckpointError, match="channel groups"):
        set_defaults(folder, {"per_label": {label: {"guidance_weights": {"treble": 0.5}}}})
    with pytest.raises(CheckpointError, match=r"in \[0, 1\]"):
        set_defaults(folder, {"with_curves": {"per_label": {label: {"guidance_weights": {"learned": 2}}}}})
    with pytest.raises(InvalidRequestError, match="JSON object of codec channel groups"):
        set_defaults(folder, {"per_label": {label: {"guidance_weights": 0.5}}})
    assert read_manifest(folder)["defaults"]["with_curves"]["per_label"][label]["guidance_weights"] == spread


def test_the_shipped_student_spreads_a_kicks_guidance_only_when_it_has_a_curve():
    """latent-fast's kick with a drawn curve keeps the label's full pull on its low sub-bands and
    about scale 2 elsewhere (its card, "Session 25"); a kick without a curve and a snare with one
    take the full scale on every channel, and the recipes say which."""
    studio = Studio(device="cpu")
    spread = read_manifest(studio.entry("latent-fast").folder)["defaults"]["with_curves"]["per_label"]["kick"]
    assert set(spread["guidance_weights"]) == {"learned", "envelope"}  # the bypass keeps its weight 1

    def recipe(label, **curve):
        request = GenerationRequest(model="latent-fast", label=label, length=0.2, seed=1, **curve)
        return studio.render(request).sounds[0].recipe

    curve = dict(rms=[(0.0, -3.0), (60.0, -20.0), (180.0, -50.0)], onsets=[0.0])
    assert recipe("kick", **curve)["guidance_weights"] == spread["guidance_weights"]
    assert "guidance_weights" not in recipe("kick")
    assert "guidance_weights" not in recipe("snare", **curve)


def test_a_label_can_take_its_targets_from_a_teacher_of_its_own(tmp_path, latent_teacher, wav_folder, tiny_models):
    """Kicks learned from a teacher fine-tuned for them, the rest from the teacher it came from
    (session 34): each clip's guided target is its own label's teacher's, chosen by the label it had
    before dropout, and the run records which teacher taught what."""
    from engine.train.distill_latent import guided_blend_targets, label_teachers, routed_targets
    from engine.models import read_weights
    from safetensors.torch import save_file
    teacher = load_model(latent_teacher)
    tuned = latent_teacher.parent / "tuned-kicks"            # beside the teacher's codec and embedder
    shutil.copytree(latent_teacher, tuned)
    save_file({name: value + 0.05 * torch.randn_like(value) for name, value in read_weights(latent_teacher).items()},
              str(tuned / "model.safetensors"))
    config = distill_config(tmp_path / "run", wav_folder, latent_teacher, steps=2,
                            label_teachers={"kick": str(tuned)})
    by_label = label_teachers(config, teacher, "cpu")
    kick = teacher.manifest["labels"].index("kick")
    assert list(by_label) == [kick]
    x, alpha, cond, scales = latent_probe(teacher)
    labels = torch.tensor([kick, 1 - kick if kick == 0 else 0, kick, 2, kick, 3])
    names = ["label", "prompt"]
    got = routed_targets((teacher.network, teacher.guidance_weights), by_label, labels, x, alpha, cond, scales, names)
    other = load_model(tuned).network
    from_tuned = guided_blend_targets(other, x, alpha, cond, scales, None, names)
    from_teacher = guided_blend_targets(teacher.network, x, alpha, cond, scales, teacher.guidance_weights, names)
    rows = labels == kick
    assert torch.allclose(got[rows], from_tuned[rows], atol=1e-5)
    assert torch.allclose(got[~rows], from_teacher[~rows], atol=1e-5)
    assert not torch.allclose(from_tuned[rows], from_teacher[rows], atol=1e-3)   # the two teachers differ
    alone = routed_targets((teacher.network, teacher.guidance_weights), {}, labels, x, alpha, cond, scales, names)
    assert torch.allclose(alone, from_teacher, atol=1e-5)                          # no label teacher: all its own
    folder = train_distill(config)
    made = read_manifest(folder)
    assert made["guidance_distilled"]["label_teachers"] == {"kick": str(tuned)}
    # the teacher recorded the caption thresholds it trained on; its student captions by the same
    assert made["captions"] == read_manifest(latent_teacher)["captions"]
    assert "low_mid_share" in made["captions"]["thresholds"]["groups"]["all"]
    assert made["training"]["sessions"][-1]["note"].endswith(f"its kick clips from {tuned}")
    with pytest.raises(InvalidRequestError, match="no label 'gong'"):
        label_teachers(distill_config(tmp_path / "x", wav_folder, latent_teacher, label_teachers={"gong": str(tuned)}),
                       teacher, "cpu")
    # a student of the teacher may teach a label too (session 44): one call at the clip's scale, so a
    # category the studio should keep stays where it is while the others learn from a new teacher
    by_student = label_teachers(distill_config(tmp_path / "y", wav_folder, tuned, label_teachers={"kick": str(folder)}),
                                load_model(tuned), "cpu")
    assert by_student[kick].top == made["guidance_distilled"]["top"] and by_student[kick].weights is None
    got = routed_targets((other, None), by_student, labels, x, alpha, cond, scales, names)
    from engine.diffusion.guidance import GUIDANCE_INPUT, guidance_features
    features = guidance_features(scales, made["guidance_distilled"]["features"], made["guidance_distilled"]["top"])
    student = load_model(folder).network
    assert torch.allclose(got[rows], student(x, alpha, {**cond, GUIDANCE_INPUT: features})[rows].float(), atol=1e-5)
    assert torch.allclose(got[~rows], from_tuned[~rows], atol=1e-5)
    with pytest.raises(InvalidRequestError, match="must be a fine-tune"):   # another network is another question
        label_teachers(distill_config(tmp_path / "z", wav_folder, latent_teacher,
                                      label_teachers={"kick": str(tiny_models / "tiny")}), teacher, "cpu")


def test_the_command_line_names_a_teacher_per_label(tmp_path, tiny_models, wav_folder):
    from tests.test_cli import run_cli
    bad = run_cli("train", "distill", "--init", str(tiny_models / "tiny"), "--label-teacher", "kick",
                  "--run-dir", str(tmp_path / "run"))
    assert bad.returncode == 2 and "expected LABEL=FOLDER" in bad.stderr
    wrong_family = run_cli("train", "latent", "--label-teacher", "kick=x", "--run-dir", str(tmp_path / "run"))
    assert wrong_family.returncode == 2 and "--label-teacher is for train distill" in wrong_family.stderr
    waveform = run_cli("train", "distill", "--init", str(tiny_models / "tiny"), "--data", str(wav_folder),
                       "--label-teacher", f"kick={tiny_models / 'tiny'}", "--run-dir", str(tmp_path / "run"),
                       "--steps", "1", "--batch", "2", "--device", "cpu")
    assert waveform.returncode == 2 and "latent models only" in waveform.stderr


def test_a_latent_student_is_taught_most_near_each_labels_own_default_scales():
    """Kicks sampled alone at 1 and with a curve at 6.5, percussion at 6.5 and 10: the student learns
    each clip near one of its label's default scales, not near one default for every label (session 40:
    the shipped student's kicks at 1 read as kicks .81-.86 where its teacher's read .89-.91)."""
    from engine.train.distill import draw_scales
    from engine.train.distill_latent import clip_defaults, label_scales
    manifest = {"labels": ["kick", "snare", "perc"],
                "defaults": {"guidance": 4.0, "per_label": {"kick": {"guidance": 1.0}, "perc": {"guidance": 6.5}},
                             "with_curves": {"per_label": {"kick": {"guidance": 6.5}, "perc": {"guidance": 10.0}}},
                             "with_prompt": {"per_label": {"kick": {"guidance": 6.5}}}}}
    table = label_scales(manifest)
    assert table == [(1.0, 6.5), (4.0,), (6.5, 10.0), (4.0,)]   # the last: a clip of a category it lacks
    generator = torch.Generator().manual_seed(0)
    labels = torch.tensor([0] * 400 + [1] * 100 + [3] * 10)
    picked = clip_defaults(labels, table, generator)
    kicks = picked[:400]
    assert set(kicks.tolist()) == {1.0, 6.5} and 0.4 < float((kicks == 1.0).float().mean()) < 0.6
    assert torch.all(picked[400:] == 4.0)
    config = DistillConfig(top=10.0, near_default=1.0)     # every scale drawn near its clip's default
    scales = draw_scales(len(labels), picked, config, generator)
    assert torch.all((scales - picked).abs() <= 1.0) and torch.all((scales >= 0) & (scales <= 10))
    assert float(scales[:400][kicks == 1.0].max()) <= 2.0 and float(scales[:400][kicks == 6.5].min()) >= 5.5
    one = draw_scales(8, 3.0, config, generator)           # one default for every clip, as the waveform students
    assert torch.all((one - 3.0).abs() <= 1.0)


# ----------------------------------------------------------------------------- a Sound's variant


def test_a_variant_is_the_student_fine_tuned_on_one_sounds_clips_and_ships_with_its_kit_hits(tmp_path, latent_student,
                                                                                            wav_folder):
    """``train variant``: a copy of the model fine-tuned on the chosen clips (the hats of a folder of
    WAVs here; ``--only thinned`` on the built data set), asked as the Sound at guidance scale 1; its
    manifest says what it is a variant of and deals no variant itself; ``publish`` ships the model's
    kit hits and holds with it; a choice that leaves no clip is a clear error."""
    from engine import envelopes
    from engine.data.dataset import DrumDataset
    from engine.models import checkpoint_id, copy_folder
    from engine.train.publish import publish
    from engine.train.variant import VariantConfig, train_variant, variant_clips
    from tests.test_latent import LENGTH

    init = tmp_path / "models" / "tiny-all-fast"  # the student beside its codec and embedder, with kit hits
    for folder in latent_student.parent.iterdir():
        if folder.is_dir() and (folder / "manifest.json").is_file():
            copy_folder(folder, tmp_path / "models" / (init.name if folder == latent_student else folder.name))
    data = DrumDataset.from_folder(wav_folder, length=LENGTH, progress=False)
    envelopes.write_bank(init, envelopes.measure_bank(data), data.sample_rate, "test hits")
    hats = variant_clips(data, None, "hat")
    assert hats and all(data.label_names[int(data.labels[i])] == "hat" for i in hats)
    dealing = read_manifest(init)  # the model already deals a variant: the new one deals none of its own
    dealing["defaults"].setdefault("per_label", {})["hat"] = {"shape": "kit",
                                                              "variant": {"model": "tiny-thin-hats", "every": 5}}
    write_json(init / "manifest.json", dealing)

    config = VariantConfig(init=str(init), data=str(wav_folder), label="hat", run=str(tmp_path / "run"), steps=3,
                           batch=4, device="cpu")
    folder = train_variant(config)
    manifest, before = read_manifest(folder), read_manifest(init)
    assert manifest["variant_of"] == {"model": "tiny-all-fast", "label": "hat", "only": None, "clips": len(hats),
                                      "steps_before": before["training"]["steps"]}
    assert manifest["training"]["steps"] == before["training"]["steps"] + 3
    assert manifest["network"] == before["network"] and manifest["guidance_distilled"] == before["guidance_distilled"]
    assert manifest["defaults"]["per_label"]["hat"] == {"shape": "kit"}
    assert read_manifest(init)["defaults"]["per_label"]["hat"]["variant"]["model"] == "tiny-thin-hats"  # untouched
    tuned, plain = load_model(folder).network.state_dict(), load_model(init).network.state_dict()
    assert any(not torch.equal(tuned[name], plain[name]) for name in plain)
    shipped = publish(tmp_path / "run", tmp_path / "models" / "tiny-thin-hats")
    assert (shipped / envelopes.BANK_FILE).read_bytes() == (init / envelopes.BANK_FILE).read_bytes()
    assert read_manifest(shipped)["name"] == "tiny-thin-hats" and checkpoint_id(shipped) == checkpoint_id(folder)

    for wrong, why in ((dict(only="thinned"), "none of them 'hat' marked 'thinned'"),
                       (dict(label="gong"), "not 'gong'"), (dict(label=None), "give its --label")):
        with pytest.raises(InvalidRequestError, match=why):
            train_variant(VariantConfig(**{**config.__dict__, "run": str(tmp_path / "wrong"), **wrong}))
