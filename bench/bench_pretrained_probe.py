"""Could a pretrained audio model from a registry package read the held-out kits' categories better
than our own text–audio tower? (issue 17: zero-shot ≥ 80 %)

Our tower reads the four held-out kits' categories 70 % of the time zero-shot, and no tower of its
design trained on the twelve training kits does better, even supervised (`bench_embedder_probe.py`).
The one route left was a tower pretrained on far more audio whose weights ship inside a PyPI wheel
(no download at run time). `musicnn` (Pons & Serra 2019) is one: its 29 MB wheel carries TensorFlow
checkpoints of taggers trained on MagnaTagATune and the Million Song Dataset. (`openl3` fetches its
weights from GitHub while it builds, `panns-inference`, `msclap` and `laion-clap` at run time.)

This fits a logistic regression (balanced classes, standardised inputs, C = 0.01 / 0.1 / 1) on the
training clips' musicnn embeddings (mean and max pools, the penultimate layer, the 50 tags) and
measures it on the held-out clips, beside a 4-fold cross-validation grouped by training kit. It is
an upper bound for a zero-shot reader of the same embeddings. Two steps, two environments,
because musicnn needs TensorFlow 1-style graphs and pins numpy < 1.17:

    .venv/bin/python bench/bench_pretrained_probe.py export --data data/drums2s --out /tmp/clips16k.npz
    python3.11 -m venv /tmp/tfenv && /tmp/tfenv/bin/pip install tensorflow-cpu==2.15.1 librosa scikit-learn
    .venv/bin/pip download musicnn==0.1.0 --no-deps -d /tmp/musicnn && unzip -q -d /tmp/musicnn /tmp/musicnn/*.whl
    /tmp/tfenv/bin/python bench/bench_pretrained_probe.py probe --clips /tmp/clips16k.npz --musicnn /tmp/musicnn

Prints ``name: value`` lines; a few minutes on two CPU threads. Measured in session 39: 45-64 % on
the held-out kits at every layer and C, against 70-73 % for our tower (docs/design-notes.md).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MUSICNN_RATE, MUSICNN_HOP, MUSICNN_FFT, MUSICNN_MELS = 16000, 256, 512, 96   # musicnn's configuration.py
MODELS = ("MTT_musicnn", "MSD_musicnn")
LAYERS = ("penultimate", "pools", "tags")
STRENGTHS = (0.01, 0.1, 1.0)


def export(data: str, out: str) -> None:
    """The data set's clips as mono float32 at musicnn's 16 kHz, with their categories and kits."""
    sys.path.insert(0, str(ROOT))
    import numpy as np
    from scipy.signal import resample_poly

    from engine.data.dataset import DrumDataset

    arrays = {}
    for split in ("train", "holdout"):
        clips = DrumDataset(data, split)
        mono = clips.audio.float().mean(1).numpy()
        arrays[f"{split}_audio"] = resample_poly(mono, MUSICNN_RATE, clips.sample_rate, axis=-1).astype(np.float32)
        arrays[f"{split}_category"] = np.array([r["category"] for r in clips.records])
        arrays[f"{split}_kit"] = np.array([str(r["kit"]) for r in clips.records])
        print(f"clips_{split}: {len(clips)}")
    np.savez(out, **arrays)


def probe(clips_path: str, musicnn_dir: str) -> None:
    import numpy as np
    import librosa
    import tensorflow as tf
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GroupKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    tf.compat.v1.disable_eager_execution()
    sys.path.insert(0, musicnn_dir)
    from musicnn import models

    clips = np.load(clips_path)

    def log_mels(audio):   # musicnn's own front end (extractor.batch_data)
        mels = np.stack([librosa.feature.melspectrogram(y=a, sr=MUSICNN_RATE, hop_length=MUSICNN_HOP,
                                                        n_fft=MUSICNN_FFT, n_mels=MUSICNN_MELS).T for a in audio])
        return np.log10(10000 * mels.astype(np.float16) + 1).astype(np.float32)

    train, held = log_mels(clips["train_audio"]), log_mels(clips["holdout_audio"])
    y_train, y_held, kits = clips["train_category"], clips["holdout_category"], clips["train_kit"]
    for model in MODELS:
        tf.compat.v1.reset_default_graph()
        with tf.name_scope("model"):
            x = tf.compat.v1.placeholder(tf.float32, [None, train.shape[1], MUSICNN_MELS])
            training = tf.compat.v1.placeholder(tf.bool)
            logits, *_, mean_pool, max_pool, penultimate = models.define_model(x, training, model, 50)
        session = tf.compat.v1.Session()
        session.run(tf.compat.v1.global_variables_initializer())
        tf.compat.v1.train.Saver().restore(session, str(Path(musicnn_dir) / "musicnn" / model) + "/")
        outputs = [tf.concat([mean_pool, max_pool], 1), penultimate, tf.nn.sigmoid(logits)]

        def embedded(mels):
            parts = [session.run(outputs, {x: mels[i:i + 32], training: False}) for i in range(0, len(mels), 32)]
            pools, last, tags = (np.concatenate([p[j] for p in parts]) for j in range(3))
            return {"pools": pools, "penultimate": last, "tags": tags}

        train_emb, held_emb = embedded(train), embedded(held)
        for layer in LAYERS:
            for strength in STRENGTHS:
                reader = make_pipeline(StandardScaler(), LogisticRegression(C=strength, max_iter=3000,
                                                                            class_weight="balanced"))
                kit_cv = cross_val_score(reader, train_emb[layer], y_train, groups=kits, cv=GroupKFold(4)).mean()
                guesses = reader.fit(train_emb[layer], y_train).predict(held_emb[layer])
                name = f"{model}_{layer}_C{strength:g}"
                print(f"{name}_kit_cv: {kit_cv:.3f}")
                print(f"{name}_holdout: {float((guesses == y_held).mean()):.3f}")
                for category in sorted(set(y_held)):
                    print(f"{name}_{category}: {float((guesses[y_held == category] == category).mean()):.2f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    steps = parser.add_subparsers(dest="step", required=True)
    out = steps.add_parser("export", help="write the clips at 16 kHz (the project's environment)")
    out.add_argument("--data", default="data/drums2s")
    out.add_argument("--out", required=True)
    read = steps.add_parser("probe", help="fit and measure the probes (an environment with TensorFlow)")
    read.add_argument("--clips", required=True)
    read.add_argument("--musicnn", required=True, help="folder holding the unpacked musicnn wheel")
    args = parser.parse_args(argv)
    if args.step == "export":
        export(args.data, args.out)
    else:
        probe(args.clips, args.musicnn)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
