"""Drum data set: labels, Hydrogen kit parsing, the builder, loading, augmentation.

Everything runs on tiny generated kits in tmp_path; only the last test looks at the real
Debian Hydrogen kits, and is skipped where they are not installed.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from safetensors.torch import load_file

from engine.data import build
from engine.data.augment import augment, timbre_augment
from engine.data.build import main, parse_drumkit
from engine.data.dataset import DrumDataset, folder_category
from engine.data.labels import CATEGORIES, SUBCATEGORIES, categorize
from engine.errors import DatasetError

RATE = 44100
LENGTH = 2048
REAL_KITS = Path("/usr/share/hydrogen/data/drumkits")


# --------------------------------------------------------------------------- labels

@pytest.mark.parametrize("name, file, expected", [
    ("Kick", "Kick-Soft.wav", ("kick", "kick")),
    ("Bass Drum", "", ("kick", "kick")),
    ("BassDrum", "BD_08.aiff", ("kick", "kick")),
    ("BD", "", ("kick", "kick")),
    ("Kick Drum 2", "", ("kick", "kick")),
    ('Kick (Tama Superstar 22")', "Kick-0.wav", ("kick", "kick")),
    ("c3 - bass drum 1", "beats_06-38.flac", ("kick", "kick")),
    ("Snare", "", ("snare", "snare")),
    ("Snare Rimshot", "SnareRimshot-Hard.wav", ("snare", "snare")),
    ("Snare1", "", ("snare", "snare")),
    ("redo super opaco", "snare-opaque-2mics_normal-shot1.flac", ("snare", "snare")),
    ("Snare Roll", "SN3_04.aiff", None),
    ("Side Stick", "", ("perc", "rim")),
    ("Pearl Side Stick", "", ("perc", "rim")),
    ("Rim", "", ("perc", "rim")),
    ("Rim Click (Pearl Free Floating Maple 14x3.5)", "RimClick-0.wav", ("perc", "rim")),
    ("Stick", "SideStick-Soft.wav", ("perc", "rim")),
    ("Hat Closed", "", ("hat", "closed_hat")),
    ("Closed HH 1", "FX_Chh_01.flac", ("hat", "closed_hat")),
    ("HH open", "", ("hat", "open_hat")),
    ("Side OHH", "PowR_HH_2.flac", ("hat", "open_hat")),
    ("Hi Hat Opened", "", ("hat", "open_hat")),
    ("Sabian Hat Semi-Open", "", ("hat", "open_hat")),
    ("Hi-Hat Pedal", "", ("hat", "pedal_hat")),
    ("Pedal HH", "", ("hat", "pedal_hat")),
    ("VariBreaks Hat 1 Pd", "VP Hat 1 Pd.flac", ("hat", "pedal_hat")),
    ("VariBreaks Hat 1 Cl", "", ("hat", "closed_hat")),
    ("Tom Hi", "", ("perc", "tom")),
    ("Floor Tom", "", ("perc", "tom")),
    ("tomhi2", "", ("perc", "tom")),
    ("b3 - low tom", "", ("perc", "tom")),
    ("Crash", "", ("cymbal", "crash")),
    ("Crash/Ride (Paiste Rude Crash/Ride 18\")", "", ("cymbal", "crash")),
    ("Ride Bell", "", ("cymbal", "ride")),
    ("Paiste Bell", "", ("cymbal", "ride")),
    ("Bell", "Bell-Soft.wav", ("cymbal", "ride")),
    ("China (Paiste Alpha 18\")", "", ("cymbal", "china")),
    ("Zildjian Splash Choke", "", ("cymbal", "splash")),
    ("Cymbal", "808_Cymbal.flac", ("cymbal", "crash")),
    ("Clap", "", ("perc", "clap")),
    ("Hand Clap", "", ("perc", "clap")),
    ("Cowbell", "", ("perc", "cowbell")),
    ("Tambourine Pedal (Pearl PTM-10GH)", "TambourineFoot-0.wav", ("perc", "tambourine")),
    ("Maraca", "", ("perc", "shaker")),
    ("Conga 1", "", ("perc", "conga")),
    ("Bongo Lo", "", ("perc", "bongo")),
    ("Woodblock Hi", "", ("perc", "woodblock")),
    ("Clave", "", ("perc", "clave")),
    ("Djembe1 Bass", "Djembe1 Bass.wav", ("perc", "djembe")),
    ("Cajon Thump", "", ("perc", "cajon")),
    ("Sangban1 Bell Hit", "", ("perc", "bell")),
    ("VariBreaks Drum 1", "VP Click.flac", ("perc", "other_perc")),
    ("FX", "xFX_6.flac", None),
    ("Zap 1", "yFX_8.flac", None),
    ("Whistle", "", None),
    ("Drum Loop 120bpm", "loop.wav", None),
    ("Piano C4", "", None),
    ("17", "emptySample.flac", None),
    ("Sample: beats_08-37.flac", "beats_08-37.flac", None),
    ("", "", None),
])
def test_categorize(name, file, expected):
    assert categorize(name, file) == expected


def test_every_label_is_declared():
    for name in ("Kick", "Hat Open", "Tom 1", "Ride", "Clap", "Maraca", "Sangban1 Head Hit"):
        category, subcategory = categorize(name, "")
        assert category in CATEGORIES and subcategory in SUBCATEGORIES[category]


# --------------------------------------------------------------------------- fixtures

def _hit(seed: int, n: int = 3000, lead: int = 0, channels: int = 1, level: float = 0.5,
         decay: float = 300.0) -> np.ndarray:
    """A decaying noise burst (n samples, `lead` of silence first), shape (n, channels)."""
    rng = np.random.default_rng(seed)
    body = rng.standard_normal((n - lead, channels)) * np.exp(-np.arange(n - lead) / decay)[:, None]
    body *= level / np.abs(body).max()
    return np.concatenate([np.zeros((lead, channels)), body]).astype(np.float32)


def _wav(path: Path, data: np.ndarray, rate: int = RATE) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, data, rate)


NEW_XML = """<?xml version="1.0" encoding="UTF-8"?>
<drumkit_info xmlns="http://www.hydrogen-music.org/drumkit">
 <name>New Kit</name>
 <instrumentList>
  <instrument><id>0</id><name>Kick</name>
   <instrumentComponent><component_id>0</component_id>
    <layer><filename>kick_soft.wav</filename><min>0</min><max>0.5</max></layer>
    <layer><filename>kick_hard.wav</filename><min>0.5</min><max>1</max></layer>
   </instrumentComponent>
  </instrument>
  <instrument><id>1</id><name>Snare</name>
   <instrumentComponent><layer><filename>snare.wav</filename><min>0</min><max>1</max></layer></instrumentComponent>
  </instrument>
  <instrument><id>2</id><name>Hat Closed</name>
   <instrumentComponent><layer><filename>HAT.WAV</filename><min>0</min><max>1</max></layer></instrumentComponent>
  </instrument>
  <instrument><id>3</id><name>Hat Closed 2</name>
   <instrumentComponent><layer><filename>hat.wav</filename><min>0</min><max>1</max></layer></instrumentComponent>
  </instrument>
  <instrument><id>4</id><name>FX</name>
   <instrumentComponent><layer><filename>fx.wav</filename><min>0</min><max>1</max></layer></instrumentComponent>
  </instrument>
  <instrument><id>5</id><name>Tom Hi</name>
   <instrumentComponent><layer><filename>silent.wav</filename><min>0</min><max>1</max></layer></instrumentComponent>
  </instrument>
  <instrument><id>6</id><name>Tom Low</name>
   <instrumentComponent><layer><filename>missing.wav</filename><min>0</min><max>1</max></layer></instrumentComponent>
  </instrument>
  <instrument><id>7</id><name>Empty</name></instrument>
 </instrumentList>
</drumkit_info>
"""

OLD_XML = """<drumkit_info>
 <name>Old Kit</name>
 <instrumentList>
  <instrument><id>0</id><filename>bd.wav</filename><name>Bass Drum</name></instrument>
  <instrument><id>1</id><name>Tom</name>
   <layer><filename>tom.flac</filename><min>0.25</min><max>0.75</max></layer>
  </instrument>
  <instrument><id>2</id><filename>clap.wav</filename><name>Clap</name></instrument>
 </instrumentList>
</drumkit_info>
"""

HOLD_XML = """<drumkit_info>
 <name>Hold Kit</name>
 <instrumentList>
  <instrument><id>0</id><filename>k.wav</filename><name>Kick</name></instrument>
  <instrument><id>1</id><filename>s.wav</filename><name>Snare</name></instrument>
  <instrument><id>2</id><filename>clap_copy.wav</filename><name>Clap</name></instrument>
 </instrumentList>
</drumkit_info>
"""


@pytest.fixture(scope="module")
def kits(tmp_path_factory) -> Path:
    """Three tiny kits: a new-format one, an old-format one (folder name != kit name) whose
    kick is the new kit's soft kick again, and a held-out one sharing the old kit's clap."""
    root = tmp_path_factory.mktemp("kits")
    new, old, hold = root / "NewKit", root / "old_kit", root / "HoldKit"
    for folder, xml in ((new, NEW_XML), (old, OLD_XML), (hold, HOLD_XML)):
        folder.mkdir()
        (folder / "drumkit.xml").write_text(xml)
    _wav(new / "kick_soft.wav", _hit(1, lead=200, level=0.2))
    _wav(new / "kick_hard.wav", _hit(2, n=5000, channels=2, decay=1e9))  # longer than LENGTH: cut + fade
    _wav(new / "snare.wav", _hit(3, channels=2), rate=48000)  # resampled
    _wav(new / "hat.wav", _hit(4), rate=22050)
    _wav(new / "fx.wav", _hit(5))
    _wav(new / "silent.wav", np.zeros((1000, 1), np.float32))
    _wav(old / "bd.wav", _hit(1, lead=200, level=0.2))  # same audio as NewKit's kick_soft
    sf.write(old / "tom.flac", _hit(6), RATE)
    _wav(old / "clap.wav", _hit(7))
    _wav(hold / "k.wav", _hit(8))
    _wav(hold / "s.wav", _hit(9))
    _wav(hold / "clap_copy.wav", _hit(7))  # same audio as old_kit's clap
    return root


@pytest.fixture(scope="module")
def built(kits, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("drums")
    code = main(["--source", str(kits), "--out", str(out), "--length", str(LENGTH),
                 "--holdout", "HoldKit", "--quiet"])
    assert code == 0
    return out


# --------------------------------------------------------------------------- parsing

def test_parse_new_format(kits):
    kit, samples = parse_drumkit(kits / "NewKit" / "drumkit.xml")
    assert kit == "New Kit"
    assert [(s.instrument, s.file, s.velocity) for s in samples[:2]] == [
        ("Kick", "kick_soft.wav", (0.0, 0.5)), ("Kick", "kick_hard.wav", (0.5, 1.0))]
    assert len(samples) == 8  # "Empty" has no file
    hat = next(s for s in samples if s.file == "HAT.WAV")
    assert hat.path.name == "hat.wav" and hat.path.is_file()  # resolved case-insensitively


def test_parse_old_format(kits):
    kit, samples = parse_drumkit(kits / "old_kit" / "drumkit.xml")
    assert kit == "Old Kit"
    assert [(s.instrument, s.file, s.velocity) for s in samples] == [
        ("Bass Drum", "bd.wav", (0.0, 1.0)), ("Tom", "tom.flac", (0.25, 0.75)), ("Clap", "clap.wav", (0.0, 1.0))]


def test_parse_broken_xml(tmp_path):
    (tmp_path / "drumkit.xml").write_text("<drumkit_info><name>x</name>")
    with pytest.raises(DatasetError):
        parse_drumkit(tmp_path / "drumkit.xml")


# --------------------------------------------------------------------------- builder

def test_build_outputs(built):
    index = json.loads((built / "index.json").read_text())
    assert index["sample_rate"] == RATE and index["length"] == LENGTH
    assert index["holdout_kits"] == ["Hold Kit"]
    for split in ("train", "holdout"):
        audio = load_file(str(built / f"{split}.safetensors"))["audio"]
        rows = [c for c in index["clips"] if c["split"] == split]
        assert audio.dtype == torch.float16 and audio.shape == (len(rows), 2, LENGTH)
        assert [c["row"] for c in rows] == list(range(len(rows)))
    assert not list(built.glob("*.tmp")) and not list(built.glob(".*.tmp"))


def test_build_dedupes_and_holds_out(built):
    index = json.loads((built / "index.json").read_text())
    train = [c for c in index["clips"] if c["split"] == "train"]
    holdout = [c for c in index["clips"] if c["split"] == "holdout"]
    # train: kick_soft, kick_hard, snare, hat (HAT.WAV; hat.wav again is the same file), tom;
    # bd.wav is kick_soft again; clap.wav belongs to the held-out kit's clap_copy.wav.
    assert sorted(c["file"] for c in train) == ["HAT.WAV", "kick_hard.wav", "kick_soft.wav", "snare.wav", "tom.flac"]
    assert sorted(c["file"] for c in holdout) == ["clap_copy.wav", "k.wav", "s.wav"]
    assert {c["kit"] for c in holdout} == {"Hold Kit"} and "Hold Kit" not in {c["kit"] for c in train}
    assert not {c["sha1"] for c in train} & {c["sha1"] for c in holdout}
    stats = index["stats"]
    assert (stats["duplicates_removed"], stats["duplicates_same_file"], stats["duplicates_same_audio"]) == (3, 1, 2)
    assert (stats["not_drums"], stats["silent"], stats["broken"]) == (1, 1, 1)
    kick = next(c for c in train if c["file"] == "kick_soft.wav")
    assert kick["duplicates"] == [{"kit": "Old Kit", "instrument": "Bass Drum", "file": "bd.wav"}]
    assert kick["category"] == "kick" and kick["velocity"] == [0.0, 0.5] and 0.19 < kick["peak"] < 0.21


def test_build_clips_are_aligned_and_faded(built):
    index = json.loads((built / "index.json").read_text())
    audio = load_file(str(built / "train.safetensors"))["audio"].float()
    rows = {c["file"]: c["row"] for c in index["clips"] if c["split"] == "train"}
    soft = audio[rows["kick_soft.wav"]]
    onset = int(torch.nonzero(soft.abs().amax(0) > 0.2 * 0.01)[0])
    assert abs(onset - round(0.001 * RATE)) <= 2  # 200 leading zeros removed, 1 ms pre-roll kept
    assert torch.equal(soft[0], soft[1])  # mono duplicated
    hard = audio[rows["kick_hard.wav"]]
    assert hard[:, -1].abs().max() < 1e-3 and hard[:, -1000:-900].abs().max() > 0.05  # cut, faded


def test_build_unknown_holdout_and_missing_source(kits, tmp_path, capsys):
    assert main(["--source", str(kits), "--out", str(tmp_path), "--holdout", "Nope", "--quiet"]) == 1
    assert "unknown held-out kit" in capsys.readouterr().err
    assert main(["--source", str(tmp_path / "none"), "--out", str(tmp_path)]) == 2


def test_build_missing_kits_prints_apt_command(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(build, "DEFAULT_SOURCES", (tmp_path / "nothing",))
    monkeypatch.setattr(build.os, "geteuid", lambda: 1000, raising=False)
    assert main(["--out", str(tmp_path / "out")]) == 2
    assert "apt-get install -y hydrogen-drumkits hydrogen-data" in capsys.readouterr().err


def test_build_limit(kits, tmp_path):
    report = build.build([kits], tmp_path, LENGTH, RATE, holdout=[], limit=1, progress=False)
    assert report.holdout_kits == [] and not report.clips["holdout"]
    # one clip per kit; the old kit's first (bd.wav) is the new kit's first again
    assert len(report.clips["train"]) == 2 and report.duplicates == 1


# --------------------------------------------------------------------------- dataset

def test_dataset_loads_split(built):
    train = DrumDataset(built, "train")
    assert len(train) == 5 and train.label_names == CATEGORIES
    item = train[0]
    assert item["audio"].dtype == torch.float32 and item["audio"].shape == (2, LENGTH)
    assert train.label_names[item["label"]] == item["category"]
    assert train.audio.dtype == torch.float16
    holdout = DrumDataset(built, "holdout")
    assert sorted(holdout[i]["category"] for i in range(len(holdout))) == ["kick", "perc", "snare"]
    batch = next(iter(torch.utils.data.DataLoader(train, batch_size=4)))
    assert batch["audio"].shape == (4, 2, LENGTH) and batch["label"].dtype == torch.long


def test_dataset_category_filter(built):
    kicks = DrumDataset(built, "train", categories=["kick", "hat"])
    assert kicks.label_names == ("kick", "hat") and len(kicks) == 3
    assert sorted(kicks[i]["label"] for i in range(3)) == [0, 0, 1]
    with pytest.raises(DatasetError, match="unknown categor"):
        DrumDataset(built, "train", categories=["bass"])


def test_dataset_missing_says_how_to_build(tmp_path):
    with pytest.raises(DatasetError, match="build_drum_dataset.py"):
        DrumDataset(tmp_path / "nowhere")


def test_from_folder(tmp_path):
    _wav(tmp_path / "Kicks" / "a.wav", _hit(10))
    _wav(tmp_path / "snare" / "b.wav", _hit(11, channels=2), rate=48000)
    _wav(tmp_path / "hihats" / "open_hat_1.wav", _hit(12))
    _wav(tmp_path / "misc" / "c.wav", _hit(13))
    (tmp_path / "misc" / "broken.wav").write_bytes(b"not a wav")
    data = DrumDataset.from_folder(tmp_path, length=LENGTH, progress=False)
    assert data.label_names == CATEGORIES + ("unlabeled",)
    got = sorted((r["file"], r["category"], r["subcategory"]) for r in data.records)
    assert got == [("Kicks/a.wav", "kick", "kick"), ("hihats/open_hat_1.wav", "hat", "open_hat"),
                   ("misc/c.wav", "unlabeled", "unlabeled"), ("snare/b.wav", "snare", "snare")]
    assert data[0]["audio"].shape == (2, LENGTH)
    only = DrumDataset.from_folder(tmp_path, categories=["kick"], length=LENGTH, progress=False)
    assert len(only) == 1 and only.label_names == ("kick",)
    with pytest.raises(DatasetError):
        DrumDataset.from_folder(tmp_path / "Kicks" / "a.wav")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="no audio files"):
        DrumDataset.from_folder(tmp_path / "empty")


def test_folder_category():
    assert [folder_category(n) for n in ("kick", "Kicks", "HiHats", "toms", "Cymbals", "mine")] == [
        "kick", "kick", "hat", "perc", "cymbal", None]


# --------------------------------------------------------------------------- augmentation

def test_augment_shape_and_determinism():
    x = torch.from_numpy(np.stack([_hit(20 + i, n=LENGTH, channels=2).T for i in range(4)]))
    a = augment(x, torch.Generator().manual_seed(7))
    b = augment(x, torch.Generator().manual_seed(7))
    c = augment(x, torch.Generator().manual_seed(8))
    assert a.shape == x.shape and a.dtype == x.dtype
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.isfinite(a).all() and a.abs().max() <= x.abs().max() * 1.0001  # gain <= 0 dB
    item = augment(x[0], torch.Generator().manual_seed(7))
    assert item.shape == x[0].shape
    assert augment(x.half(), torch.Generator().manual_seed(7)).dtype == torch.float16


def test_augment_parts():
    x = torch.from_numpy(_hit(30, n=LENGTH, channels=2).T.copy())
    g = torch.Generator().manual_seed(0)
    off = dict(gain_db=(0.0, 0.0), semitones=0.0, max_delay_ms=0.0, p_flip=0.0, p_swap=0.0)
    assert torch.equal(augment(x, g, **off), x)
    assert torch.equal(augment(x, g, **{**off, "p_flip": 1.0, "p_swap": 1.0}), -x.flip(0))
    click = torch.zeros(2, LENGTH)
    click[:, 1000] = 1.0
    delays = [int(augment(click, g, **{**off, "max_delay_ms": 3.0})[0].argmax()) - 1000 for _ in range(8)]
    assert all(0 <= d <= round(0.003 * RATE) for d in delays) and len(set(delays)) > 1
    shifts = [int(augment(click, g, **{**off, "semitones": 1.0})[0].argmax()) for _ in range(8)]
    assert all(1000 / 2 ** (1 / 12) - 1 <= s <= 1000 * 2 ** (1 / 12) + 1 for s in shifts) and len(set(shifts)) > 1
    quieter = augment(x, g, **{**off, "gain_db": (-6.0, -6.0)})
    assert torch.allclose(quieter, x * 10 ** (-6 / 20), atol=1e-6)
    shifted = augment(x, g, **{**off, "semitones": 1.0})
    assert shifted.shape == x.shape and not torch.equal(shifted, x)


def test_timbre_augment_colours_within_its_bounds_and_keeps_the_onset():
    x = torch.from_numpy(np.stack([_hit(20 + i, n=LENGTH, channels=2).T for i in range(6)]))
    a = timbre_augment(x, torch.Generator().manual_seed(3))
    assert a.shape == x.shape and a.dtype == x.dtype and torch.isfinite(a).all()
    assert torch.equal(a, timbre_augment(x, torch.Generator().manual_seed(3)))
    assert not torch.equal(a, timbre_augment(x, torch.Generator().manual_seed(4)))
    assert (a.abs().amax(dim=(1, 2)) <= x.abs().amax(dim=(1, 2)) * 1.0001).all()   # never louder at the peak
    flat = timbre_augment(x, torch.Generator().manual_seed(3), bump_db=0.0, p_room=0.0)
    assert torch.allclose(flat, x, atol=1e-5)                                        # nothing asked, nothing done
    # the EQ stays within +-bumps x bump_db at every frequency: compare the spectra of white noise
    noise = torch.randn(4, 1, LENGTH, generator=torch.Generator().manual_seed(0)) * 0.1
    eq = timbre_augment(noise, torch.Generator().manual_seed(5), p_room=0.0, bumps=2, bump_db=3.0)
    ratio_db = 20 * torch.log10(torch.fft.rfft(eq).abs() / torch.fft.rfft(noise).abs().clamp_min(1e-9))
    assert ratio_db[..., 50:].abs().quantile(0.99) <= 6.0 + 0.5
    # a room adds a tail after a click but leaves the click where it was
    click = torch.zeros(1, 2, LENGTH)
    click[..., 1000] = 1.0
    room = timbre_augment(click, torch.Generator().manual_seed(1), bump_db=0.0, p_room=1.0, max_wet=0.2)
    assert int(room[0, 0].abs().argmax()) == 1000
    assert float(room[0, 0, 1100:].abs().sum()) > 0.01


# --------------------------------------------------------------------------- real kits

@pytest.mark.skipif(not REAL_KITS.exists(), reason="Debian hydrogen-drumkits / hydrogen-data not installed")
def test_real_kits_labelling_covers_categories():
    labelled, total = {}, 0
    for xml_path in build.find_kits([REAL_KITS]):
        kit, samples = parse_drumkit(xml_path)
        for sample in samples:
            total += 1
            label = categorize(sample.instrument, sample.file)
            if label:
                labelled.setdefault(label[0], set()).add(kit)
    assert {"kick", "snare", "hat", "perc", "cymbal"} <= set(labelled)
    assert all(len(labelled[c]) >= 5 for c in ("kick", "snare", "hat", "perc"))
    assert set(build.DEFAULT_HOLDOUT) <= {p.parent.name for p in build.find_kits([REAL_KITS])}
