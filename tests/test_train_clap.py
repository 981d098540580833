"""Training the embedded text–audio model: the loss and its false-negative mask, the held-out
figures, and a tiny run that learns, resumes and leaves a loadable embedder folder.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from engine.data.captions import dataset_captions
from engine.data.dataset import DrumDataset
from engine.embedders import Embedder, load_embedder, read_embedder_manifest
from engine.embedders.clap_model import build_clap
from engine.embedders.text_tower import text_tower
from engine.errors import InvalidRequestError
from engine.seeds import seeded_init
from engine.train import clap as clap_trainer
from engine.train.clap import (ClapTrainConfig, caption_table, contrastive_loss, heldout_loss, known_positives,
                               CATEGORY_PROMPTS, retrieval_figures, train_clap)

LENGTH = 16384
TINY_ARGS = {"dim": 32, "text_hidden": 64, "n_mels": 32, "widths": [8, 16]}


# ----------------------------------------------------------------------------- the loss


def test_known_positives_are_not_counted_as_negatives():
    torch.manual_seed(0)
    a, b = F.normalize(torch.randn(2, 8), dim=1)
    audio = torch.stack([a, a, b])            # clips 0 and 1 sound the same...
    text = torch.stack([a, a, b])             # ...and were given the same caption
    loss, _, _ = contrastive_loss(audio, text, 100.0)
    assert float(loss) == pytest.approx(2 / 3 * math.log(2), abs=1e-3)   # a coin toss for the twins
    same = torch.tensor([[True, True, False], [True, True, False], [False, False, True]])
    masked, forward, backward = contrastive_loss(audio, text, 100.0, same)
    assert float(masked) < 1e-3 and float(forward) < 1e-3 and float(backward) < 1e-3
    # the diagonal is never masked, even when a caller marks it
    assert torch.isfinite(contrastive_loss(audio, text, 100.0, torch.ones(3, 3, dtype=torch.bool))[0])


def test_caption_table_and_the_mask_from_each_clips_captions():
    distinct, ids = caption_table([["kick", "dark kick"], ["kick", "bright kick"], ["snare", "snare"]])
    assert distinct == ["bright kick", "dark kick", "kick", "snare"] and ids.tolist() == [[2, 1], [2, 0], [3, 3]]
    clips = torch.tensor([0, 1, 2])
    chosen = torch.tensor([2, 0, 3])          # "kick" for clip 0, "bright kick" for 1, "snare" for 2
    mask = known_positives(ids, clips, chosen)
    # clip 1 also has "kick" (clip 0's caption); clip 0 does not have "bright kick"
    assert mask.tolist() == [[True, False, False], [True, True, False], [False, False, True]]


class OracleEmbedder(Embedder):
    """Knows each clip's category from its level (the test writes it there) and each text's from its words."""

    name, dim, id, sample_rate = "oracle", 5, "oracle", 44100
    words = ("kick", "snare", "hat", "percussion", "cymbal")

    def text(self, prompts):
        """One-hot of the category a prompt names ("a tom" is percussion); zeros when it names none."""
        named = {"kick": 0, "snare": 1, "hat": 2, "percussion": 3, "tom": 3, "cymbal": 4}
        rows = []
        for p in prompts:
            hit = next((k for w, k in named.items() if w in p), None)
            rows.append(torch.zeros(5) if hit is None else F.one_hot(torch.tensor(hit), 5).float())
        return torch.stack(rows)

    def audio(self, audio, sample_rate):
        return F.one_hot(audio.abs().amax(dim=(1, 2)).mul(10).round().long() - 1, 5).float()


class FakeSet:
    label_names = ("kick", "snare", "hat", "perc", "cymbal")
    sample_rate = 44100

    def __init__(self, categories):
        self.records = [{"category": c} for c in categories]
        levels = torch.tensor([(self.label_names.index(c) + 1) / 10 for c in categories])
        self.audio = levels[:, None, None].expand(-1, 2, 4410).clone()

    def __len__(self):
        return len(self.records)


def test_retrieval_figures_count_hits_among_identical_captions_and_classify_zero_shot():
    data = FakeSet(["kick", "kick", "snare", "hat", "cymbal", "perc"])
    captions = [["a kick"], ["a kick"], ["a snare"], ["a hi-hat"], ["a cymbal"], ["a percussion hit"]]
    assert "a tom" in CATEGORY_PROMPTS["perc"] and "a ride cymbal" in CATEGORY_PROMPTS["cymbal"]
    figures = retrieval_figures(OracleEmbedder(), data, captions)
    assert figures["zero_shot_accuracy"] == 1.0 and figures["zero_shot_kick"] == 1.0
    assert figures["r_at_1"] == 1.0 and figures["r_at_5"] == 1.0 and figures["clips"] == 6
    wrong = [["a snare"], ["a snare"], ["a kick"], ["a hi-hat"], ["a cymbal"], ["a percussion hit"]]
    worse = retrieval_figures(OracleEmbedder(), data, wrong)
    assert worse["r_at_1"] == pytest.approx(3 / 6, abs=1e-3)   # the three kick/snare queries find the wrong clips
    with pytest.raises(InvalidRequestError):
        retrieval_figures(OracleEmbedder(), data, captions[:2])


def test_a_references_instrument_is_guessed_only_when_the_embedder_is_sure():
    from engine.embedders.categories import guess_category
    labels = ["kick", "snare", "hat", "perc", "cymbal"]
    kick, snare = F.one_hot(torch.tensor(0), 5).float(), F.one_hot(torch.tensor(1), 5).float()
    assert guess_category(OracleEmbedder(), kick, labels) == "kick"
    assert guess_category(OracleEmbedder(), F.normalize(kick + snare, dim=0), labels) is None   # torn: no guess
    assert guess_category(OracleEmbedder(), F.normalize(kick + 0.5 * snare, dim=0), labels) == "kick"
    assert guess_category(OracleEmbedder(), kick, ["snare", "hat"]) is None   # sure of neither
    assert guess_category(OracleEmbedder(), kick, ["snare"]) == "snare"      # one label: the model's only sound


# ----------------------------------------------------------------------------- a tiny run


def held_out_folder(root: Path) -> Path:
    """Kicks and hats the run never sees (other seeds of the same synthetic recipe)."""
    import soundfile as sf
    from tests.helpers import synthetic_hit
    for kind in ("kick", "hat"):
        (root / kind).mkdir(parents=True, exist_ok=True)
        for seed in range(20, 24):
            sf.write(root / kind / f"{kind}_{seed}.wav", synthetic_hit(kind, seed), 44100)
    return root


def config(data: Path, run: Path, steps: int) -> ClapTrainConfig:
    return ClapTrainConfig(data=str(data), run=str(run), steps=steps, batch=8, lr=3e-3, warmup=1, ema_decay=0.0,
                           captions=4, length=LENGTH, log_every=5, save_every=20, device="cpu", network=dict(TINY_ARGS))


@pytest.mark.slow
@pytest.mark.numeric
def test_a_tiny_run_learns_resumes_and_saves_a_loadable_embedder(tmp_path, wav_folder, monkeypatch):
    run = tmp_path / "run"
    folder = train_clap(config(wav_folder, run, steps=40))
    manifest = read_embedder_manifest(folder)
    assert manifest["training"]["steps"] == 40 and manifest["kind"] == "embedder"
    assert set(manifest["captions"]["thresholds"]["groups"]) >= {"all"}

    # judged on clips the run never saw, with the deterministic held-out loss, trained weights
    # against the run's own seeded initial ones
    held = DrumDataset.from_folder(held_out_folder(tmp_path / "held"), length=LENGTH, progress=False)
    captions = [c[0] for c in dataset_captions(held, manifest["captions"]["thresholds"], 4, progress=False)]
    features = text_tower().embed(captions)
    audio = torch.stack([held[i]["audio"] for i in range(len(held))])
    with seeded_init(ClapTrainConfig.seed):
        start = build_clap(manifest["network"], manifest["sample_rate"])
    trained = load_embedder(str(folder)).network
    before, after = heldout_loss(start, audio, features, captions), heldout_loss(trained, audio, features, captions)
    assert after < 0.8 * before, (before, after)

    # resumes where it stopped, from the cached text features (the tower is not asked again)
    monkeypatch.setattr(clap_trainer, "text_tower", lambda *a, **k: pytest.fail("captions embedded again"))
    train_clap(config(wav_folder, run, steps=10))
    manifest = read_embedder_manifest(folder)
    assert manifest["training"]["steps"] == 50 and len(manifest["training"]["sessions"]) == 2
    with open(run / "log.csv") as handle:
        steps = [int(row["step"]) for row in csv.DictReader(handle)]
    assert steps == list(range(5, 55, 5))
    embedder = load_embedder(str(folder))
    assert embedder.audio(audio, held.sample_rate).shape == (len(held), 32)
    assert (folder / "MODEL_CARD.md").read_text().count("trained 50 steps") == 1
    assert (run / "captions.json").is_file() and (run / "config.json").is_file()
    from engine.train.publish import publish
    shipped = publish(run, tmp_path / "shipped" / "clap")
    assert sorted(p.name for p in shipped.iterdir()) == ["MODEL_CARD.md", "manifest.json", "model.safetensors",
                                                          "training_log.csv"]
    assert torch.allclose(load_embedder(str(shipped)).audio(audio, held.sample_rate),
                          embedder.audio(audio, held.sample_rate))


def test_bad_settings_are_refused(tmp_path, wav_folder):
    with pytest.raises(InvalidRequestError, match="captions"):
        train_clap(ClapTrainConfig(data=str(wav_folder), run=str(tmp_path / "a"), captions=0))
    bad = config(wav_folder, tmp_path / "b", steps=1)
    bad.network = {"depth": 3}
    with pytest.raises(InvalidRequestError, match="depth"):
        train_clap(bad)
