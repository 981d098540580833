"""How separable the text–audio embedder's audio embeddings are by instrument, on held-out kits.

    .venv/bin/python bench/bench_embedder_probe.py [--embedder embedded] [--data data/drums2s]

The embedder's zero-shot accuracy (text prompts against held-out audio) has a ceiling: what any
classifier could read off the audio embeddings of clips from kits it never saw. This prints, as
``name: value`` lines, the zero-shot accuracy on the held-out and on the training clips, and three
classifiers fitted on the training clips' embeddings and measured on the held-out ones:
nearest class centroid, k nearest neighbours (k = 1, 5, 15) and a multinomial logistic
regression (torch, full batch, weight decay). If they land where zero-shot does, better prompts
or a retrained text head cannot raise it; the audio tower (or the data's own ambiguity) is the
limit. Takes about ten seconds on a CPU.

``--tower-steps N`` asks the other question: could *any* audio tower of this design do better on
these kits? It trains the audio tower's architecture (``clap_model.AudioTower``, a fresh one) on
the training clips' category labels directly, supervised, with ``train clap``'s augmentation
(gain, pitch, delay, polarity; ``--timbre`` adds the kit-colour EQ and room) and category-balanced
batches, and measures it on the held-out kits every 250 steps (``tower_step_<n>``), then prints
its final accuracy per category and the clips it misses. A supervised classifier is an upper
bound for a zero-shot one trained on the same clips. ~2.7 steps a second on two CPU threads.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--embedder", default="embedded")
    parser.add_argument("--data", default="data/drums2s")
    parser.add_argument("--tower-steps", type=int, default=0, help="also train a supervised audio tower this long")
    parser.add_argument("--timbre", action="store_true", help="the supervised tower's batches get timbre_augment")
    parser.add_argument("--semitones", type=float, default=2.0, help="the supervised tower's pitch shift range")
    args = parser.parse_args(argv)
    import torch
    import torch.nn.functional as F

    from engine.data.dataset import DrumDataset
    from engine.embedders import load_embedder
    from engine.embedders.categories import CATEGORY_PROMPTS, zero_shot

    embedder = load_embedder(args.embedder)

    def embedded(split: str):
        data = DrumDataset(args.data, split)
        vectors = torch.cat([embedder.audio(data.audio[i:i + 32].float(), data.sample_rate)
                             for i in range(0, len(data), 32)])
        return vectors, [r["category"] for r in data.records]

    train, train_names = embedded("train")
    held, held_names = embedded("holdout")
    names = [n for n in CATEGORY_PROMPTS if n in set(train_names)]
    y_train = torch.tensor([names.index(n) for n in train_names])
    y_held = torch.tensor([names.index(n) for n in held_names])
    prompts = {n: CATEGORY_PROMPTS[n] for n in names}
    print(f"clips_train: {len(train_names)}")
    print(f"clips_holdout: {len(held_names)}")
    print(f"zero_shot_holdout: {float((zero_shot(embedder, held, prompts) == y_held).float().mean()):.3f}")
    print(f"zero_shot_train: {float((zero_shot(embedder, train, prompts) == y_train).float().mean()):.3f}")
    centroids = F.normalize(torch.stack([train[y_train == k].mean(0) for k in range(len(names))]), dim=1)
    print(f"nearest_centroid_holdout: {float(((held @ centroids.T).argmax(1) == y_held).float().mean()):.3f}")
    nearest = (held @ train.T).argsort(dim=1, descending=True)
    for k in (1, 5, 15):
        votes = [Counter(y_train[row[:k]].tolist()).most_common(1)[0][0] for row in nearest]
        print(f"knn{k}_holdout: {float((torch.tensor(votes) == y_held).float().mean()):.3f}")
    torch.manual_seed(0)
    weights = torch.zeros(train.shape[1], len(names), requires_grad=True)
    bias = torch.zeros(len(names), requires_grad=True)
    optimizer = torch.optim.LBFGS([weights, bias], max_iter=200)

    def closure():
        optimizer.zero_grad()
        loss = F.cross_entropy(train @ weights + bias, y_train) + 1e-3 * weights.pow(2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    with torch.no_grad():
        print(f"logistic_holdout: {float(((held @ weights + bias).argmax(1) == y_held).float().mean()):.3f}")
    if args.tower_steps > 0:
        supervised_tower(args, names)
    return 0


def supervised_tower(args, names: list[str]) -> None:
    """Train a fresh AudioTower on the training clips' categories; print its held-out figures."""
    import torch
    import torch.nn.functional as F

    from engine.data.augment import augment, timbre_augment
    from engine.data.dataset import DrumDataset
    from engine.embedders.clap_model import AudioTower
    from engine.train.common import batch_index

    train, held = DrumDataset(args.data, "train"), DrumDataset(args.data, "holdout")
    y_train = torch.tensor([names.index(r["category"]) for r in train.records])
    y_held = torch.tensor([names.index(r["category"]) for r in held.records])
    torch.manual_seed(0)
    tower = AudioTower(len(names), train.sample_rate)
    optimizer = torch.optim.AdamW(tower.parameters(), 1e-3, weight_decay=0.05)
    generator = torch.Generator().manual_seed(0)

    @torch.no_grad()
    def predict() -> torch.Tensor:
        tower.eval()
        out = torch.cat([tower(held.audio[i:i + 32].float()) for i in range(0, len(held), 32)]).argmax(1)
        tower.train()
        return out

    for step in range(1, args.tower_steps + 1):
        clips = batch_index(y_train, 32, 0.5, generator)
        audio = augment(train.audio[clips].float(), generator, sample_rate=train.sample_rate,
                        semitones=args.semitones)
        if args.timbre:
            audio = timbre_augment(audio, generator, sample_rate=train.sample_rate)
        loss = F.cross_entropy(tower(audio), y_train[clips], label_smoothing=0.1)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % 250 == 0 or step == args.tower_steps:
            print(f"tower_step_{step}: {float((predict() == y_held).float().mean()):.3f}", flush=True)
    guesses = predict()
    print(f"supervised_tower_holdout: {float((guesses == y_held).float().mean()):.3f}")
    for k, name in enumerate(names):
        print(f"supervised_tower_{name}: {float((guesses[y_held == k] == k).float().mean()):.3f}")
    for record, guess, truth in zip(held.records, guesses.tolist(), y_held.tolist()):
        if guess != truth:
            print(f"missed: {record['kit']} / {record['instrument']} ({names[truth]}) -> {names[guess]}")


if __name__ == "__main__":
    raise SystemExit(main())
