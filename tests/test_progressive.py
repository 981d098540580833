"""Step distillation: a student whose one DDIM step lands where its teacher's substeps land, and a
studio that samples it on exactly its own grid."""

import math
from pathlib import Path

import pytest
import torch

from engine.diffusion.denoisers import v_denoiser
from engine.diffusion.guidance import GUIDANCE_INPUT, guidance_features
from engine.diffusion.schedules import cosine_sigma_to_t
from engine.errors import CheckpointError, InvalidRequestError
from engine.models import load_model, read_manifest
from engine.request import GenerationRequest
from engine.sampling import distilled_grid, sample_latent, samplers_for
from engine.studio import Studio
from engine.train.distill import DistillConfig, train_distill
from engine.train.progressive import (ProgressiveConfig, ddim_target, sub_grid, teacher_segment, train_progressive,
                                      velocity)

GRID = [40.0, 2.0, 0.0]


def progressive_config(run, data, teacher, **changes) -> ProgressiveConfig:
    settings = dict(init=str(teacher), data=str(data), run=str(run), steps=2, batch=4, lr=1e-4, warmup=2,
                    log_every=1, save_every=100, device="cpu", grid=list(GRID), substeps=3, ema_decay=0.0)
    settings.update(changes)
    return ProgressiveConfig(**settings)


@pytest.fixture(scope="module")
def teacher(tmp_path_factory, tiny_models, wav_folder):
    """A guidance-distilled tiny model: step distillation's teacher answers a guided step in one call."""
    run = tmp_path_factory.mktemp("teacher") / "run"
    return train_distill(DistillConfig(init=str(tiny_models / "tiny"), data=str(wav_folder), run=str(run), steps=2,
                                       batch=2, warmup=1, save_every=100, device="cpu", top=6.0, ema_decay=0.0))


@pytest.fixture(scope="module")
def student(tmp_path_factory, teacher, wav_folder):
    return train_progressive(progressive_config(tmp_path_factory.mktemp("steps") / "run", wav_folder, teacher))


def test_the_target_is_exact_for_a_perfect_denoiser_and_one_substep_is_ddim():
    """One data point: the ideal denoiser always answers it, every solver is exact, and the target
    is that point; with one substep the teacher's step is DDIM and the target its own estimate."""
    point = torch.randn(1, 3, 8)
    sigma, sigma_next = torch.tensor([40.0, 2.0, 0.5]), torch.tensor([2.0, 0.5, 0.0])
    x = point + sigma[:, None, None] * torch.randn(3, 3, 8)
    ideal = lambda x, s: point.expand_as(x)  # noqa: E731
    landed = teacher_segment(ideal, x, sub_grid(sigma, sigma_next, 4))
    assert torch.allclose(ddim_target(x, landed, sigma, sigma_next), point.expand_as(x), atol=1e-4)
    rough = lambda x, s: 0.3 * x + s.reshape(-1, 1, 1)  # noqa: E731
    one = teacher_segment(rough, x, torch.stack([sigma, sigma_next]))
    assert torch.allclose(ddim_target(x, one, sigma, sigma_next), rough(x, sigma), atol=1e-4)
    # the velocity decodes back to the estimate through the sampler's own wrapper
    x_vp, v = velocity(x, point.expand_as(x), sigma)
    decoded = v_denoiser(lambda inp, t: v)(x, sigma)
    assert torch.allclose(decoded, point.expand_as(x), atol=1e-4) and torch.allclose(x_vp * torch.sqrt(1 + sigma[:, None, None] ** 2), x)


def test_the_sub_grid_runs_geometrically_to_the_next_level_and_to_zero_through_the_smallest():
    levels = sub_grid(torch.tensor([80.0, 0.5]), torch.tensor([5.0, 0.0]), 4)
    assert levels.shape == (5, 2)
    assert torch.allclose(levels[:, 0], torch.tensor([80.0, 40.0, 20.0, 10.0, 5.0]))
    assert torch.allclose(levels[:, 1], torch.tensor([0.5, 0.5 * 0.02 ** (1 / 3), 0.5 * 0.02 ** (2 / 3), 0.01, 0.0]))


def probe(manifest, teacher_net, seed: int = 0):
    """Fixed noisy latents at each level of the student's grid, their guidance and labels, and the
    velocity the teacher's substeps ask of the student there."""
    generator = torch.Generator().manual_seed(seed)
    grid = torch.tensor(distilled_grid(manifest))
    index = torch.arange(8) % (len(grid) - 1)
    sigma, sigma_next = grid[index], grid[index + 1]
    x = torch.randn(8, 64, 1024, generator=generator) * 0.5 + sigma[:, None, None] * torch.randn(8, 64, 1024, generator=generator)
    labels = torch.tensor([0, 1, 2, 3, 4, 0, 1, 5])
    scales = torch.tensor([3.0, 2.0, 3.0, 4.0, 3.0, 0.0, 2.5, 1.0])
    cond = {"label": labels, GUIDANCE_INPUT: guidance_features(scales, 16, 6.0)}
    with torch.no_grad():
        landed = teacher_segment(v_denoiser(lambda inp, t: teacher_net(inp, t, cond)), x, sub_grid(sigma, sigma_next, 3))
        x_vp, target = velocity(x, ddim_target(x, landed, sigma, sigma_next), sigma)
    return x_vp, cosine_sigma_to_t(sigma), cond, target


@pytest.mark.slow
@pytest.mark.numeric
def test_the_students_one_step_moves_towards_the_teachers_substeps(tmp_path, teacher, wav_folder):
    student = train_progressive(progressive_config(tmp_path / "run", wav_folder, teacher, steps=120, lr=3e-4))
    teacher_net = load_model(teacher).network
    model = load_model(student)
    x_vp, t, cond, target = probe(model.manifest, teacher_net)
    with torch.no_grad():
        before = (teacher_net(x_vp, t, cond) - target).pow(2).mean()   # the student's start: the teacher
        after = (model.network(x_vp, t, cond) - target).pow(2).mean()
    # a random tiny teacher: 0.0275 -> 0.0219 after 120 steps (0.0236 at lr 1e-4)
    assert after < 0.85 * before, (float(before), float(after))


class Counting(torch.nn.Module):
    def __init__(self, network):
        super().__init__()
        self.network, self.times = network, []
        self.num_labels, self.embeddings = network.num_labels, network.embeddings

    def forward(self, x, t, cond=None):
        self.times.append(float(t.reshape(-1)[0]))
        return self.network(x, t, cond)


def test_a_step_distilled_model_samples_its_own_grid_with_ddim_and_refuses_any_other(student):
    model = load_model(student)
    manifest = model.manifest
    assert distilled_grid(manifest) == GRID and samplers_for(manifest) == ("ddim",)
    assert manifest["defaults"]["sampler"] == "ddim" and manifest["defaults"]["steps"] == 2
    assert manifest["steps_distilled"]["substeps"] == 3 and manifest["guidance_distilled"]["top"] == 6.0
    noise = torch.randn(1, 64, 1024, generator=torch.Generator().manual_seed(1))
    counted = Counting(model.network)
    sample_latent(counted, manifest, noise, sampler="ddim", steps=2, guidance=3.0, cond={"label": torch.tensor([0])})
    expected = cosine_sigma_to_t(torch.tensor(GRID[:-1])).tolist()
    assert counted.times == pytest.approx(expected, rel=1e-5)
    for sampler, steps in (("ddim", 4), ("dpmpp_2m", 2)):
        with pytest.raises(InvalidRequestError, match="distilled to make a sound in 2 ddim steps"):
            sample_latent(model.network, manifest, noise, sampler=sampler, steps=steps)
    broken = dict(manifest, steps_distilled={"sigmas": [1.0, 2.0, 0.0]})
    with pytest.raises(CheckpointError, match="decreasing noise levels"):
        distilled_grid(broken)


def test_the_studio_renders_a_step_distilled_model_at_its_fixed_steps(student):
    studio = Studio(roots=[student.parent])
    info = studio.describe(str(student))
    assert info["steps_fixed"] == 2 and info["samplers"] == ["ddim"]
    for request in (GenerationRequest(model=str(student), label="kick", seed=3),
                    GenerationRequest(model=str(student), label="kick", label_b="hat", label_mix=0.3, variety=0.5,
                                      count=2)):
        result = studio.render(request)
        assert result.sounds[0].audio.shape == (2, 32768)
        assert all(math.isfinite(float(s.audio.abs().max())) for s in result.sounds)
        assert result.sounds[0].recipe["steps"] == 2 and result.sounds[0].recipe["sampler"] == "ddim"
    # a request for other steps (an old preset, a habit) gets the model's own, and says so
    asked = studio.render(GenerationRequest(model=str(student), label="kick", steps=10, sampler="dpmpp_2m"))
    assert asked.sounds[0].recipe["steps"] == 2 and asked.sounds[0].recipe["sampler"] == "ddim"
    assert len(asked.notes) == 1 and "2 ddim steps" in asked.notes[0] and "10 dpmpp_2m" in asked.notes[0]
    teacher = Path(read_manifest(student)["steps_distilled"]["teacher"]).name  # the folder it was distilled from
    assert asked.notes[0].endswith(f"; {teacher} takes any"), asked.notes[0]
    assert result.notes == []


def test_step_distillation_refuses_a_teacher_it_cannot_distil_and_a_broken_grid(tmp_path, tiny_models, student,
                                                                                teacher, wav_folder):
    with pytest.raises(InvalidRequestError, match="not guidance-distilled"):
        train_progressive(progressive_config(tmp_path / "a", wav_folder, tiny_models / "tiny"))
    with pytest.raises(InvalidRequestError, match="already step-distilled"):
        train_progressive(progressive_config(tmp_path / "b", wav_folder, student))
    with pytest.raises(InvalidRequestError, match="decreasing noise levels ending at 0"):
        train_progressive(progressive_config(tmp_path / "c", wav_folder, teacher, grid=[2.0, 40.0, 0.0]))
    with pytest.raises(InvalidRequestError, match="substeps must be at least 2"):
        train_progressive(progressive_config(tmp_path / "d", wav_folder, teacher, substeps=1))


def test_the_command_line_distils_steps_and_generates_on_the_students_grid(tmp_path, teacher, wav_folder):
    from tests.test_cli import run_cli

    run = tmp_path / "run"
    done = run_cli("train", "steps", "--init", str(teacher), "--data", str(wav_folder), "--run-dir", str(run),
                   "--steps", "1", "--batch", "2", "--grid", "40,2,0", "--substeps", "2", "--device", "cpu")
    assert done.returncode == 0, done.stderr
    assert read_manifest(run / "model")["steps_distilled"]["sigmas"] == GRID
    made = run_cli("generate", "--model", str(run / "model"), "--label", "kick", "--out", str(tmp_path / "out"))
    assert made.returncode == 0 and made.stdout.strip().endswith(".wav"), made.stderr
    habit = run_cli("generate", "--model", str(run / "model"), "--label", "kick", "--steps", "8",
                    "--out", str(tmp_path / "out"))
    assert habit.returncode == 0 and "note: model makes its sound in 2 ddim steps" in habit.stderr, habit.stderr


def test_the_page_fixes_the_steps_slider_for_a_step_distilled_model_and_frees_it_for_others(student, teacher,
                                                                                          tmp_path):
    from ui.handlers import Handlers
    from ui.settings import Settings

    settings = Settings(export_dir=tmp_path / "exports", cache_dir=tmp_path / "cache",
                        presets_dir=tmp_path / "presets", open_browser=False)
    handlers = Handlers(Studio(roots=[student.parent, teacher.parent]), settings)
    fixed = handlers.describe_model(str(student))
    assert fixed["steps"]["value"] == 2 and fixed["steps"]["interactive"] is False
    assert "makes its sound in 2 steps" in fixed["steps"]["info"]
    assert fixed["sampler"]["choices"] == ["ddim"] and fixed["sampler"]["value"] == "ddim"
    free = handlers.describe_model(str(teacher))
    assert free["steps"]["interactive"] is True and free["steps"]["value"] == 4  # the tiny model's default


def test_the_first_log_row_of_a_run_that_starts_between_log_steps_is_the_mean_of_its_own_steps(tmp_path, teacher,
                                                                                             wav_folder):
    """The teacher has 2 steps; with a row every 4 steps the first row holds steps 3-4 only, and
    must read as their mean (it was their sum over 4: half the loss, or 1/12 of it at 25)."""
    import csv

    def rows(run, every):
        train_progressive(progressive_config(run, wav_folder, teacher, steps=2, log_every=every))
        with open(run / "log.csv") as handle:
            return {int(r["step"]): float(r["loss"]) for r in csv.DictReader(handle)}

    each, window = rows(tmp_path / "each", 1), rows(tmp_path / "window", 4)
    assert sorted(each) == [3, 4] and sorted(window) == [4]
    assert window[4] == pytest.approx((each[3] + each[4]) / 2, rel=1e-3)


def test_the_student_can_start_from_its_teachers_adam_moments_and_a_wrong_file_is_refused(tmp_path, teacher,
                                                                                          wav_folder):
    """``--moments-from``: the teacher run's optimizer state starts the student's (the teacher's
    run folder holds it beside its model); a file that holds no training state is named."""
    started = train_progressive(progressive_config(tmp_path / "run", wav_folder, teacher, steps=1,
                                                   moments_from=str(teacher.parent / "train_state.pt")))
    assert read_manifest(started)["training"]["steps"] == 3
    with pytest.raises(InvalidRequestError, match="holds no training state"):
        train_progressive(progressive_config(tmp_path / "bad", wav_folder, teacher, steps=1,
                                             moments_from=str(tmp_path / "missing.pt")))
