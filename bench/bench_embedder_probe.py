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
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
