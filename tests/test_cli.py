"""The command line as a user runs it: generate, models, errors with exit status 2."""

from pathlib import Path

import soundfile as sf

from engine.audio import read_recipe

from tests.helpers import cli_in_process, run_cli


def test_generate_writes_wavs_with_recipes_and_the_same_seed_gives_the_same_file(tmp_path, tiny_models):
    common = ["generate", "--models-root", str(tiny_models), "--model", "tiny-kick", "--steps", "3", "--seed", "7"]
    first = run_cli(*common, "--count", "2", "--out", str(tmp_path / "a"))
    assert first.returncode == 0, first.stderr
    paths = [Path(line) for line in first.stdout.split()]
    assert len(paths) == 2 and all(p.is_file() for p in paths)
    assert "seed7" in paths[0].name and "seed8" in paths[1].name and "3st" in paths[0].name
    info = sf.info(paths[0])
    assert (info.samplerate, info.channels, info.subtype) == (44100, 2, "PCM_24")
    recipe = read_recipe(paths[0])
    assert recipe["seed"] == 7 and recipe["steps"] == 3 and recipe["label"] == "kick" and recipe["checkpoint"]
    again = run_cli(*common, "--out", str(tmp_path / "b"), "--float")
    assert again.returncode == 0, again.stderr
    repeat = Path(again.stdout.split()[0])
    assert sf.info(repeat).subtype == "FLOAT"
    a, _ = sf.read(paths[0])
    b, _ = sf.read(repeat)
    assert abs(a - b).max() < 2**-20  # 24-bit PCM vs float of the same sound


def test_exports_never_overwrite(tmp_path, tiny_models):
    args = ["generate", "--models-root", str(tiny_models), "--model", "tiny", "--label", "hat", "--steps", "2",
            "--out", str(tmp_path)]
    names = {cli_in_process(*args).stdout.strip(), cli_in_process(*args).stdout.strip()}
    assert len(names) == 2 and all(Path(n).is_file() for n in names)


def test_a_hybrid_of_two_labels_from_the_command_line(tmp_path, tiny_models):
    result = cli_in_process("generate", "--models-root", str(tiny_models), "--model", "tiny", "--label", "snare",
                            "--label-b", "hat", "--label-mix", "0.3", "--steps", "2", "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    path = Path(result.stdout.strip())
    recipe = read_recipe(path)
    assert (recipe["label"], recipe["label_b"], recipe["label_mix"]) == ("snare", "hat", 0.3)
    assert "snare-hat30" in path.name
    alone = cli_in_process("generate", "--models-root", str(tiny_models), "--model", "tiny", "--label-b", "hat",
                           "--label-mix", "0.3", "--out", str(tmp_path))
    assert alone.returncode == 2 and "first label" in alone.stderr


def test_models_lists_kinds_labels_and_aliases(tiny_models):
    result = cli_in_process("models", "--models-root", str(tiny_models))
    assert result.returncode == 0
    assert "tiny: kind=wave labels=kick,snare,hat,perc,cymbal" in result.stdout
    assert "tiny-hat:" in result.stdout and "label=hat" in result.stdout


def test_user_errors_print_one_line_and_exit_2(tiny_models, tmp_path):
    unknown = run_cli("generate", "--models-root", str(tiny_models), "--model", "tuba", "--out", str(tmp_path))
    assert unknown.returncode == 2 and unknown.stderr.startswith("error: no model called 'tuba'")
    absurd = cli_in_process("generate", "--models-root", str(tiny_models), "--model", "tiny", "--steps", "100000")
    assert absurd.returncode == 2 and "steps must be between" in absurd.stderr
    (tmp_path / "fake.wav").write_text("not audio")
    bad_reference = cli_in_process("generate", "--models-root", str(tiny_models), "--model", "tiny-kick",
                                   "--reference", str(tmp_path / "fake.wav"), "--out", str(tmp_path))
    assert bad_reference.returncode == 2 and "fake.wav" in bad_reference.stderr
    assert "Traceback" not in unknown.stderr + absurd.stderr + bad_reference.stderr


def test_shipped_aliases_generate_offline(tmp_path):
    result = run_cli("generate", "--model", "snare", "--steps", "2", "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert read_recipe(Path(result.stdout.strip()))["label"] == "snare"


def test_a_model_given_by_its_folder_path_names_exports_after_the_folder(tmp_path, tiny_models):
    """`--model ~/models/mykick`: the file is `tiny_kick_seed0_2st...wav`, not the whole path flattened."""
    result = cli_in_process("generate", "--model", str(tiny_models / "tiny"), "--label", "kick", "--steps", "2",
                            "--seed", "0", "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    path = Path(result.stdout.strip())
    assert path.name.startswith("tiny_kick_seed0_2st"), path.name
    assert read_recipe(path)["model"] == str(tiny_models / "tiny")  # the recipe keeps the path to regenerate


def test_defaults_changes_a_shipped_models_defaults_per_label_in_place(tmp_path, tiny_models):
    """``engine defaults``: the manifest and the card's Defaults line change, the weights do not,
    and the next generation of that label takes them; bad settings change nothing."""
    import json
    import shutil

    from engine.models import checkpoint_id, read_manifest

    folder = shutil.copytree(tiny_models / "tiny", tmp_path / "models" / "mine")
    (folder / "MODEL_CARD.md").write_text("# mine\n\n- Defaults: {'sampler': 'dpmpp_2m'}.\n- Network: ...\n")
    weights = checkpoint_id(folder)
    snare = {"snare": {"sampler": "euler_a", "steps": 3, "guidance": 2.5}}
    result = cli_in_process("defaults", "--model", str(folder), "--per-label", json.dumps(snare))
    assert result.returncode == 0, result.stderr
    assert read_manifest(folder)["defaults"]["per_label"] == snare and checkpoint_id(folder) == weights
    card = (folder / "MODEL_CARD.md").read_text()
    assert "'per_label': {'snare': {'sampler': 'euler_a'" in card and card.count("- Defaults:") == 1
    made = cli_in_process("generate", "--model", str(folder), "--label", "snare", "--out", str(tmp_path / "out"))
    assert made.returncode == 0, made.stderr
    recipe = read_recipe(made.stdout.strip())
    assert (recipe["sampler"], recipe["steps"], recipe["guidance"]) == ("euler_a", 3, 2.5)
    curves = {"per_label": {"snare": {"variety": 0.5}}}  # a snare with a drawn curve: its own variety
    result = cli_in_process("defaults", "--model", str(folder), "--with-curves", json.dumps(curves))
    assert result.returncode == 0, result.stderr
    assert read_manifest(folder)["defaults"]["with_curves"] == curves
    before = (folder / "manifest.json").read_text()
    for bad in (["--per-label", '{"tuba": {"steps": 3}}'], ["--per-label", '{"snare": {"sampler": "nope"}}'],
                ["--per-label", "{not json"], ["--steps", "0"], [], ["--with-curves", '{"variety": 7}'],
                ["--with-curves", '{"per_label": {"tuba": {"steps": 3}}}'], ["--with-curves", "[1]"]):
        refused = cli_in_process("defaults", "--model", str(folder), *bad)
        assert refused.returncode == 2 and refused.stderr.strip(), bad
        assert "error" in refused.stderr.strip().splitlines()[-1], refused.stderr  # says why, last
    assert (folder / "manifest.json").read_text() == before


def test_train_with_max_minutes_and_no_steps_runs_until_the_time_is_up(monkeypatch):
    import engine.__main__ as cli
    import engine.train.latent as latent
    from engine.train.common import UNTIL_TIME

    seen = []
    monkeypatch.setattr(latent, "train_latent", lambda config: seen.append(config) or "folder")
    assert cli.main(["train", "latent", "--max-minutes", "45"]) == 0
    assert cli.main(["train", "latent", "--max-minutes", "45", "--steps", "7"]) == 0
    assert cli.main(["train", "latent"]) == 0
    assert [(c.steps, c.max_minutes) for c in seen] == [(UNTIL_TIME, 45.0), (7, 45.0), (1000, None)]
