"""The engine's one door: determinism, seeds and morphing, variations, progress, errors, recipes."""

import threading

import numpy as np
import pytest
import soundfile as sf
import torch

from engine import AudioFileError, GenerationRequest, InvalidRequestError, Progress, Result, Studio, StudioError
from engine.studio import finish


@pytest.fixture(scope="module")
def studio(tiny_models):
    return Studio(roots=[tiny_models], device="cpu")


def render(studio, **kwargs):
    return studio.render(GenerationRequest(**dict({"model": "tiny", "label": "kick", "steps": 4}, **kwargs)))


def test_same_request_same_sound_other_seed_other_sound(studio):
    a, b, c = render(studio, seed=1), render(studio, seed=1), render(studio, seed=2)
    assert torch.equal(a.sounds[0].audio, b.sounds[0].audio)
    assert not torch.allclose(a.sounds[0].audio, c.sounds[0].audio)
    sound = a.sounds[0]
    assert sound.audio.shape == (2, 32768) and sound.audio.dtype == torch.float32
    assert torch.isfinite(sound.audio).all() and sound.audio.abs().max() <= 1.0


@pytest.mark.parametrize("sampler", ["dpmpp_2m", "euler_a"])
def test_sound_i_of_a_batch_is_the_sound_of_seed_plus_i(studio, sampler):
    """Also with the stochastic sampler: its step noises come from each sound's own seed."""
    batch = render(studio, seed=10, count=3, sampler=sampler)
    assert [s.recipe["seed"] for s in batch.sounds] == [10, 11, 12]
    single = render(studio, seed=12, sampler=sampler)
    assert torch.allclose(batch.sounds[2].audio, single.sounds[0].audio, atol=1e-4)
    assert not torch.allclose(batch.sounds[1].audio, single.sounds[0].audio, atol=1e-3)


def test_morph_ends_are_the_two_seeds(studio):
    a, b = render(studio, seed=3), render(studio, seed=4)
    start = render(studio, seed=3, seed_b=4, morph=0.0)
    end = render(studio, seed=3, seed_b=4, morph=1.0)
    middle = render(studio, seed=3, seed_b=4, morph=0.5)
    assert torch.allclose(start.sounds[0].audio, a.sounds[0].audio, atol=1e-5)
    assert torch.allclose(end.sounds[0].audio, b.sounds[0].audio, atol=1e-4)
    assert not torch.allclose(middle.sounds[0].audio, a.sounds[0].audio, atol=1e-3)
    ends = [render(studio, seed=3, seed_b=4, morph=m, sampler="euler_a").sounds[0].audio for m in (0.0, 1.0)]
    assert torch.allclose(ends[0], render(studio, seed=3, sampler="euler_a").sounds[0].audio, atol=1e-5)
    assert torch.allclose(ends[1], render(studio, seed=4, sampler="euler_a").sounds[0].audio, atol=1e-4)


def test_every_sampler_and_the_blending_model_work(studio):
    for model, samplers in (("tiny", ("dpmpp_2m", "ddim", "euler_a")),
                            ("tiny_blend", ("dpmpp_2m", "ddim", "euler_a", "iadb"))):
        for sampler in samplers:
            sound = render(studio, model=model, sampler=sampler).sounds[0]
            assert torch.isfinite(sound.audio).all(), (model, sampler)
    with pytest.raises(InvalidRequestError, match="sampler"):
        render(studio, sampler="iadb")  # native blending steps need a blending model


def test_a_render_shorter_than_the_preview_delay_decodes_no_preview(studio):
    events = list(studio.generate(GenerationRequest(model="tiny", label="snare", steps=8), preview_every=2,
                                  preview_after_s=60.0))
    assert [e.step for e in events[:-1]] == list(range(1, 9)) and all(e.preview is None for e in events[:-1])


def test_progress_streams_previews_then_one_result(studio):
    events = list(studio.generate(GenerationRequest(model="tiny", label="snare", steps=8), preview_every=4))
    progress = [e for e in events if isinstance(e, Progress)]
    assert [p.step for p in progress] == list(range(1, 9)) and all(p.total == 8 for p in progress)
    assert [p.step for p in progress if p.preview is not None] == [4, 8]
    assert progress[-1].preview.shape == (2, 32768)
    assert isinstance(events[-1], Result) and sum(isinstance(e, Result) for e in events) == 1


def test_closing_the_stream_cancels_sampling(studio):
    before = threading.active_count()
    stream = studio.generate(GenerationRequest(model="tiny", label="kick", steps=200))
    next(stream)
    stream.close()
    for _ in range(100):
        if threading.active_count() <= before:
            break
        threading.Event().wait(0.05)
    assert threading.active_count() <= before


def test_recipe_regenerates_the_same_sound(studio):
    sound = render(studio, seed=5, seed_b=9, morph=0.3, count=2, guidance=3.0).sounds[1]
    assert sound.recipe["checkpoint"] and sound.recipe["sample_rate"] == 44100
    again = studio.render(GenerationRequest.from_recipe(sound.recipe)).sounds[0]
    assert torch.allclose(again.audio, sound.audio, atol=1e-4)


def test_a_hybrid_of_two_labels_runs_from_one_to_the_other(studio):
    """The label embeddings mixed by weight (and the waveform codec's two envelopes): 0 is the
    first label's sound, 1 the second's, between them a sound that is neither; the recipe replays it."""
    kick, hat = render(studio, seed=6).sounds[0], render(studio, seed=6, label="hat").sounds[0]
    ends = [render(studio, seed=6, label_b="hat", label_mix=m).sounds[0] for m in (0.0, 1.0)]
    assert torch.allclose(ends[0].audio, kick.audio, atol=1e-5)
    assert torch.allclose(ends[1].audio, hat.audio, atol=1e-4)
    middle = render(studio, seed=6, label_b="hat", label_mix=0.3, guidance=3.0).sounds[0]
    assert not torch.allclose(middle.audio, kick.audio, atol=1e-3) and not torch.allclose(middle.audio, hat.audio,
                                                                                        atol=1e-3)
    assert (middle.recipe["label_b"], middle.recipe["label_mix"]) == ("hat", 0.3)
    again = studio.render(GenerationRequest.from_recipe(middle.recipe)).sounds[0]
    assert torch.allclose(again.audio, middle.audio, atol=1e-5)
    from engine.audio import stem_from_recipe
    assert "kick-hat30" in stem_from_recipe(middle.recipe)


def test_variety_guides_only_at_low_noise_levels_and_saves_those_calls(studio):
    """variety 0 is the guided sampling as it was; at 1 guidance acts only where sigma <= 1 (the
    last steps), the other steps are one conditional call each; without guidance it changes nothing."""
    from engine import pipeline
    from engine.conditions import Conditions
    from engine.diffusion.schedules import cosine_t_to_sigma
    from engine.sampling import sample_latent, variety_interval

    safe, default = render(studio, seed=4, guidance=3.0, variety=0.0), render(studio, seed=4, guidance=3.0)
    assert torch.equal(safe.sounds[0].audio, default.sounds[0].audio)
    wild = render(studio, seed=4, guidance=3.0, variety=1.0)
    assert not torch.allclose(wild.sounds[0].audio, safe.sounds[0].audio, atol=1e-4)
    assert wild.sounds[0].recipe["variety"] == 1.0
    assert torch.equal(render(studio, seed=4, guidance=1.0, variety=1.0).sounds[0].audio,
                       render(studio, seed=4, guidance=1.0).sounds[0].audio)

    model = studio.load(studio.entry("tiny"))
    calls = []

    class Counting(torch.nn.Module):
        def __init__(self, net):
            super().__init__()
            self.net, self.num_labels = net, net.num_labels

        def forward(self, x, t, cond=None):
            calls.append((x.shape[0], float(cosine_t_to_sigma(t.reshape(-1)[0]))))
            return self.net(x, t, cond)

    noise = torch.randn(1, model.codec.latent_channels, 64, generator=torch.Generator().manual_seed(0))
    cond = pipeline.inputs_for(model, Conditions(label=0), 1, 64)
    sample_latent(Counting(model.network), model.manifest, noise, sampler="ddim", steps=8, guidance=3.0, cond=cond,
                  guidance_interval=variety_interval(1.0))
    guided = [sigma for size, sigma in calls if size == 2]
    plain = [sigma for size, sigma in calls if size == 1]
    assert guided and plain and max(guided) <= 1.0 < min(plain)


def test_label_defaults_read_a_models_defaults_for_one_label():
    from engine.sampling import label_defaults
    assert label_defaults({"variety": {"kick": 0.5}}, "kick")["variety"] == 0.5
    assert label_defaults({"variety": {"kick": 0.5}}, "hat")["variety"] == 0.0 == label_defaults({}, "kick")["variety"]
    assert label_defaults({"variety": {"kick": 0.5}}, None)["variety"] == 0.0
    assert label_defaults({"variety": 0.3}, None)["variety"] == 0.3
    defaults = {"sampler": "euler_a", "steps": 16, "guidance": 4.0, "variety": {"kick": 0.5},
                "per_label": {"kick": {"sampler": "dpmpp_2m", "steps": 12, "guidance": 6.5}}}
    assert label_defaults(defaults, "kick") == {"sampler": "dpmpp_2m", "steps": 12, "guidance": 6.5, "variety": 0.5}
    assert label_defaults(defaults, "hat") == label_defaults(defaults, None) == {
        "sampler": "euler_a", "steps": 16, "guidance": 4.0, "variety": 0.0}
    assert defaults["per_label"]["kick"] == {"sampler": "dpmpp_2m", "steps": 12, "guidance": 6.5}  # not changed


def test_a_model_may_default_to_other_settings_per_label(studio):
    """Variety, sampler, steps and guidance per label; what a request names itself wins."""
    defaults = studio.load(studio.entry("tiny")).manifest["defaults"]
    defaults["variety"] = {"kick": 1.0}
    defaults["per_label"] = {"snare": {"sampler": "euler_a", "steps": 3, "guidance": 2.5}}
    try:
        kick = studio.render(GenerationRequest(model="tiny", label="kick", seed=4, guidance=3.0, steps=4)).sounds[0]
        assert kick.recipe["variety"] == 1.0
        assert torch.equal(kick.audio, render(studio, seed=4, guidance=3.0, variety=1.0).sounds[0].audio)
        assert render(studio, seed=4, guidance=3.0, label="hat").sounds[0].recipe["variety"] == 0.0
        snare = studio.render(GenerationRequest(model="tiny", label="snare", seed=4)).sounds[0].recipe
        assert (snare["sampler"], snare["steps"], snare["guidance"]) == ("euler_a", 3, 2.5)
        hat = studio.render(GenerationRequest(model="tiny", label="hat", seed=4)).sounds[0].recipe
        assert (hat["sampler"], hat["steps"], hat["guidance"]) == (defaults["sampler"], defaults["steps"],
                                                                    defaults["guidance"])
        chosen = studio.render(GenerationRequest(model="tiny", label="snare", seed=4, sampler="ddim", steps=5,
                                                 guidance=1.0)).sounds[0].recipe
        assert (chosen["sampler"], chosen["steps"], chosen["guidance"]) == ("ddim", 5, 1.0)
    finally:
        del defaults["variety"], defaults["per_label"]


@pytest.mark.parametrize("bad, words", [(dict(label=None, label_b="hat", label_mix=0.5), "first label"),
                                        (dict(label_b="tuba", label_mix=0.5), "no label 'tuba'"),
                                        (dict(label_b="hat", label_mix=1.5), "label_mix")])
def test_a_bad_hybrid_says_what_is_wrong(studio, bad, words):
    with pytest.raises(InvalidRequestError, match=words):
        render(studio, **bad)


@pytest.mark.parametrize("bad", [dict(steps=0), dict(steps=1000), dict(guidance=float("nan")), dict(morph=1.5),
                                 dict(count=0), dict(count=1000), dict(seed=-1), dict(strength=0.0),
                                 dict(variation="blur"), dict(steps=2.5), dict(label="tuba"), dict(variety=2.0)])
def test_absurd_values_are_refused_with_a_message(studio, bad):
    with pytest.raises(InvalidRequestError):
        render(studio, **bad)


def _write_reference(path, seconds=0.5, rate=48000, silent=False):
    t = np.arange(int(rate * seconds)) / rate
    wave = np.zeros_like(t) if silent else np.sin(2 * np.pi * 60 * t) * np.exp(-t * 8)
    sf.write(path, wave.astype(np.float32), rate)
    return str(path)


@pytest.mark.numeric
def test_variations_stay_closer_to_the_reference_at_low_strength(studio, tmp_path):
    reference = _write_reference(tmp_path / "ref.wav")
    fresh = render(studio, seed=1).sounds[0].audio
    near = render(studio, seed=1, reference=reference, strength=0.1).sounds[0].audio
    far = render(studio, seed=1, reference=reference, strength=0.9).sounds[0].audio
    from engine import audio as audio_io
    target, _ = audio_io.read_audio(reference, 44100, 2)
    target = audio_io.fit_length(audio_io.align_onset(target, 44100), 32768)
    distance = lambda x: float((x - target).pow(2).mean())  # noqa: E731
    assert distance(near) < distance(far) and distance(near) < distance(fresh)


def test_inversion_variation_runs_and_is_deterministic(studio, tmp_path):
    reference = _write_reference(tmp_path / "ref.wav")
    a = render(studio, seed=1, reference=reference, strength=0.2, variation="invert").sounds[0]
    b = render(studio, seed=1, reference=reference, strength=0.2, variation="invert").sounds[0]
    assert torch.equal(a.audio, b.audio) and a.recipe["sampler"] == "ddim"


def test_bad_references_are_refused(studio, tmp_path):
    (tmp_path / "notes.wav").write_text("this is not audio")
    with pytest.raises(AudioFileError, match="notes.wav"):
        render(studio, reference=str(tmp_path / "notes.wav"))
    with pytest.raises(InvalidRequestError, match="silent"):
        render(studio, reference=_write_reference(tmp_path / "silent.wav", silent=True))


def test_unknown_model_and_missing_gpu_are_clear_errors(studio, tiny_models):
    with pytest.raises(StudioError, match="no model called"):
        studio.render(GenerationRequest(model="tuba"))
    if not torch.cuda.is_available():
        with pytest.raises(InvalidRequestError, match="CUDA"):
            Studio(roots=[tiny_models], device="cuda")


def test_finish_never_clips_and_refuses_nan():
    loud = torch.randn(2, 2, 4410, generator=torch.Generator().manual_seed(0)) * 3
    out = finish(loud, 44100)
    # scaled to 0.999 of full scale (float32 may land one rounding step above it), never clipped: shape kept
    assert 0.998 < out.abs().max() <= 0.999 * (1 + 1e-6) and out[..., -1].abs().max() == 0
    first = loud[0, :, :4000] / loud[0].abs().max()
    torch.testing.assert_close(out[0, :, :4000] / out[0].abs().max(), first)
    with pytest.raises(StudioError, match="NaN"):
        finish(torch.full((1, 2, 100), float("nan")), 44100)
