"""What a producer hit in the studio (issue 20), at the handler level: a stopped generation,
takes that survive a reload, aliases shown as what they are, variations and references.
The page-level behaviour of the same fixes is tested in a real browser in test_ui_server.py."""

from __future__ import annotations

from pathlib import Path

import gradio as gr
import numpy as np
import pytest
import soundfile as sf

from ui.handlers import slot_key
from ui.history import HISTORY_FILE, Session

from .ui_support import controls, handlers, run_generate, settings, studio  # noqa: F401

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def test_stop_leaves_no_card_that_looks_like_a_result_and_export_refuses_the_old_sound(handlers, settings):
    _, first = run_generate(handlers, seed=7)
    session = first["session"]
    stream = handlers.generate(**controls(model="drums-fast", steps=60, seed=11, session=session))  # any steps
    for _ in range(3):  # start, then a step or two
        next(stream)
    assert "stopping" in handlers.stop(session)["status"]
    last = list(stream)[-1]  # the generation ends itself, with one last update
    assert "stopped" in last["status"] and last[slot_key(0, "group")]["visible"] is False
    with pytest.raises(gr.Error, match="no sound in that slot"):  # not seed 7's sound
        handlers.export_slot(0, str(settings.export_dir), "PCM_24", False, -12, -1, session)
    assert not settings.export_dir.exists() or not list(settings.export_dir.iterdir())
    _, done = run_generate(handlers, seed=12, session=session)
    assert handlers.stop(done["session"]) == {}  # Stop after a finished sound keeps it
    assert done["session"].current()[0].recipe["seed"] == 12


def test_stop_answers_stopped_once_the_running_generation_has_stopped(handlers):
    """The page gets two updates from a stop, Stop's own answer and the stream's last one; in
    whichever order they arrive, the page ends on "stopped" (it once stayed at "stopping…")."""
    import threading
    _, first = run_generate(handlers, seed=7)
    session = first["session"]
    stream = handlers.generate(**controls(model="drums-fast", steps=120, seed=13, session=session))
    for _ in range(2):  # start, then a step
        next(stream)
    rest: list = []
    sampling = threading.Thread(target=lambda: rest.extend(stream))  # the stream goes on, as Gradio's would
    sampling.start()
    answer = handlers.stop(session)
    sampling.join(timeout=60)
    assert "stopped" in answer["status"] and "stopped" in rest[-1]["status"]
    assert not session.generating and handlers.stop(session) == {}


def test_takes_and_favourites_survive_a_reload_and_a_restart(handlers):
    _, final = run_generate(handlers, seed=3, count=2)
    session = final["session"]
    handlers.history_favourite(1, session, False)
    assert (session.folder / HISTORY_FILE).is_file()
    # a reload: the browser sends back the key it was given on the first load
    key = handlers.resume_session(None)["session_key"]
    assert key != session.key  # a browser with no key gets a new session
    resumed = handlers.resume_session(session.key)
    again = resumed["session"]
    assert again is not session and again.folder == session.folder
    assert [(t.id, t.recipe["seed"], t.favourite) for t in again.takes] == [(1, 3, True), (2, 4, False)]
    assert resumed["history"] == session.table()
    _, more = run_generate(handlers, seed=9, session=again)
    assert [t.id for t in more["session"].takes] == [1, 2, 3]  # numbering goes on
    for bad in ("../../etc", "zz", 5, {"x": 1}):  # the key comes from the browser: never a path
        assert handlers.resume_session(bad)["session"].folder.parent == session.folder.parent


def test_unstarring_in_the_history_updates_the_card_and_play_autoplays(handlers):
    _, final = run_generate(handlers, seed=5)
    session = final["session"]
    handlers.favourite_slot(0, session, False)
    out = handlers.history_favourite(1, session, False)
    assert out[slot_key(0, "caption")].startswith("#1") and "★" not in out[slot_key(0, "caption")]


def test_aliases_say_what_they_are_and_another_sound_is_named_after_the_model(handlers):
    choices = dict((value, shown) for shown, value in handlers.model_choices())
    assert choices["kick"] == "kick (= drums-3step, Sound kick)" and choices["drums"] == "drums"
    assert choices["latent-thin-hats"] == "latent-thin-hats (latent-fast's hat variant)"  # made for one Sound
    assert "the **drums-3step** model with Sound kick" in handlers.describe_model("kick")["model_info"]
    _, final = run_generate(handlers, model="kick", label="snare", seed=2)
    take = final["session"].takes[0]
    assert (take.recipe["model"], take.recipe["label"]) == ("drums-3step", "snare")
    assert "kick" not in take.wav.rsplit("/", 1)[-1]
    _, unconditional = run_generate(handlers, model="drums", label="(any)", seed=2, session=final["session"])
    assert unconditional["history"][0][3] == "(any)"


def test_a_distilled_model_names_the_model_it_learned_from(handlers):
    """The faster twins say whose sound they learned; a model trained on data says nothing of it."""
    assert "distilled from latent-prompts" in handlers.describe_model("latent-fast")["model_info"]
    assert "distilled from drums-fast" in handlers.describe_model("drums-3step")["model_info"]
    assert "distilled from" not in handlers.describe_model("latent-prompts")["model_info"]


def test_vary_this_unlocks_the_seed_and_a_long_reference_is_announced(handlers, tmp_path):
    _, final = run_generate(handlers, seed=21)
    assert handlers.vary_slot(0, final["session"])["lock_seed"] is False
    long = tmp_path / "long.wav"
    t = np.arange(int(1.5 * 44100)) / 44100
    sf.write(long, (0.5 * np.sin(2 * np.pi * 80 * t) * np.exp(-t * 2)).astype(np.float32), 44100)
    info = handlers.check_reference(str(long), "kick")["reference_info"]
    assert "longer than this model's 0.74 s" in info
    assert "longer" not in handlers.check_reference(str(long), "latent-drums")["reference_info"]  # up to 2 s


def test_normalised_exports_reach_their_target_and_names_say_what_differs(handlers, settings, monkeypatch):
    import stat

    from engine import audio as audio_io
    _, final = run_generate(handlers, seed=100, count=4)
    session = final["session"]
    infos: list[str] = []
    monkeypatch.setattr(gr, "Info", lambda message, *a, **k: infos.append(message))
    saved = handlers.export_all("kicks", "PCM_24", True, -12, -1, session)["saved"].splitlines()
    assert all(p.startswith(str(settings.export_dir / "kicks") + "/") for p in saved)  # relative to the export root
    assert len(infos) == 1 and infos[0].count("LUFS, true peak") == 4  # what each file reached
    for path, take in zip(saved, session.current()):
        audio, rate = audio_io.read_audio(path)  # measured as the studio measures one-shots (engine.audio.loudness)
        master, _ = audio_io.read_audio(take.master)
        reached, before = audio_io.loudness(audio, rate), audio_io.loudness(master, rate)
        # on the target, or short of it where 12 dB of limiting was not enough; never quieter than it was
        assert abs(reached - (-12.0)) < 0.5 or reached > before + 1.0, (path, before, reached)
        assert 20 * np.log10(float(audio.abs().max())) <= -1.0 + 0.01
        assert f"{Path(path).name}: {reached:.1f} LUFS" in infos[0]
        assert "_-12LUFS" in path and stat.S_IMODE(Path(path).stat().st_mode) & 0o044 == 0o044  # others can read
    floats = handlers.export_slot(0, "", "FLOAT", False, -12, -1, session)["saved"]
    plain = handlers.export_slot(0, "", "PCM_24", False, -12, -1, session)["saved"]
    assert floats.endswith("_f32.wav") and Path(plain).name == Path(floats).name.replace("_f32", "")
    assert audio_io.read_recipe(floats)["seed"] == 100


def test_saved_presets_are_readable_by_other_users(handlers, settings):
    import stat
    out = handlers.save_preset("shared-kick", False, "kick", "kick", "dpmpp_2m", 8, 2.0, 1, "", 0.0, 0.74)
    path = settings.presets_dir / "shared-kick.json"
    assert "shared-kick" in out["recipe_note"] and stat.S_IMODE(path.stat().st_mode) & 0o044 == 0o044


def test_a_bad_upload_is_named_by_its_file_not_the_servers_cache_path(handlers, settings):
    upload = settings.gradio_dir / ("ab" * 32) / "my snare.wav"  # gradio's upload folder: a 64-hex hash
    upload.parent.mkdir(parents=True)
    upload.write_text("not audio")
    info = handlers.check_reference(str(upload), "kick")["reference_info"]
    assert "my snare.wav" in info and "ab" * 32 not in info and str(settings.cache_dir) not in info
    assert "Error opening" not in info and info.count("my snare.wav") == 1  # libsndfile's raw text is gone
