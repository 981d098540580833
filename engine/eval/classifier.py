"""A small drum-category classifier on :mod:`engine.eval.features`, the judge of "is it a kick?".

Trained on the TRAIN split of the drum data set, measured on the HOLDOUT split (whole kits
never trained on), so its accuracy says how far it can be trusted on sounds it has never heard.
It is a one-hidden-layer MLP on standardised features, trained full-batch with AdamW from a
fixed seed (about a second on a CPU, the same weights every time), with strong weight decay and
input dropout, classes weighted by inverse frequency so the many percussion clips don't swamp
the few kicks.

How far to trust it (data set of Nov 2026, 567 train / 84 holdout clips): ~70 % on the holdout
kits and ~79 % in leave-one-kit-out cross-validation on train; 100 % on train itself. Per
class on holdout: kick 100 %, hat 84 %, snare 79 %, cymbal 56 %, perc 53 %. The errors are
mostly real ambiguity between the coarse categories: electronic and low toms (perc) called
kicks, bright processed snares and claps called hats, open hats vs cymbals, tambourines and
shakers vs hats. Logistic regression, shrinkage LDA, k-NN, subcategory targets and pitch/gain
augmentation all land within 65-79 % on these kits. :mod:`engine.eval.run` therefore reports,
next to each category's ``classified_as_intended``, the same share for the real held-out clips
of that category (``classified_as_intended_real``): what a perfect generator would score.

:func:`load_or_train` caches it under ``cache/eval/`` as ``classifier-<key>.safetensors`` (weights,
feature mean/std) + ``.json`` (labels, holdout accuracy, key); the key hashes the data set's
``index.json``, :data:`~engine.eval.features.FEATURE_VERSION` and the training settings, so a
rebuilt data set or a changed feature vector retrains it.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import torch
from safetensors.torch import load_file, save_file

from ..data.dataset import DEFAULT_ROOT as DATA_ROOT, DrumDataset
from ..data.build import INDEX_NAME
from ..errors import DatasetError
from ..models import atomic_write, write_json
from ..seeds import seeded_init
from .features import FEATURE_VERSION, batched_features

log = logging.getLogger(__name__)

DEFAULT_CACHE = Path("cache/eval")


@dataclass(frozen=True)
class TrainSettings:
    hidden: int = 64            # hidden units (0: plain logistic regression)
    epochs: int = 400           # full-batch AdamW steps
    lr: float = 1e-2
    weight_decay: float = 1.0   # AdamW decay on the weights (strong: 567 clips, 194 features)
    dropout: float = 0.5        # input-feature dropout during training (robustness to new kits)
    seed: int = 0


class _Net(torch.nn.Module):
    def __init__(self, dim: int, classes: int, hidden: int):
        super().__init__()
        if hidden:
            self.body = torch.nn.Sequential(torch.nn.Linear(dim, hidden), torch.nn.GELU(), torch.nn.Linear(hidden, classes))
        else:
            self.body = torch.nn.Sequential(torch.nn.Linear(dim, classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


@dataclass
class Classifier:
    """Standardise -> small network -> class logits; ``label_names[i]`` names class ``i``."""

    network: _Net
    mean: torch.Tensor
    std: torch.Tensor
    label_names: tuple[str, ...]
    settings: TrainSettings = field(default_factory=TrainSettings)
    info: dict = field(default_factory=dict)  # key, holdout_accuracy, ...

    def standardise(self, feats: torch.Tensor) -> torch.Tensor:
        return (feats.float() - self.mean) / self.std

    @torch.no_grad()
    def logits(self, feats: torch.Tensor) -> torch.Tensor:
        self.network.eval()
        return self.network(self.standardise(feats))

    def predict(self, feats: torch.Tensor) -> torch.Tensor:
        """``(N,)`` class indices into :attr:`label_names`."""
        return self.logits(feats).argmax(-1)

    def predict_names(self, feats: torch.Tensor) -> list[str]:
        return [self.label_names[i] for i in self.predict(feats).tolist()]

    def accuracy(self, feats: torch.Tensor, labels: torch.Tensor) -> float:
        if len(labels) == 0:
            return float("nan")
        return float((self.predict(feats) == labels.to(torch.long)).float().mean())

    def own_labels(self, label_names, labels: torch.Tensor) -> torch.Tensor:
        """``labels`` that index ``label_names`` (a data set's) as indices into this classifier's names."""
        return torch.tensor([self.label_names.index(label_names[i]) for i in labels.tolist()], dtype=torch.long)

    def recall(self, feats: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
        """Per class: the share of its clips classified as it (nan for a class with no clips)."""
        predicted, labels = self.predict(feats), labels.to(torch.long)
        return {name: float((predicted[labels == k] == k).float().mean()) if bool((labels == k).any()) else float("nan")
                for k, name in enumerate(self.label_names)}

    def save(self, path: str | Path) -> None:
        """``path`` (``.safetensors``) + the same name with ``.json``, each written atomically."""
        path = Path(path)
        tensors = {f"net.{k}": v.detach().contiguous() for k, v in self.network.state_dict().items()}
        tensors.update(mean=self.mean.contiguous(), std=self.std.contiguous())
        atomic_write(path, lambda tmp: save_file(tensors, str(tmp)))
        write_json(path.with_suffix(".json"), {"label_names": list(self.label_names),
                                               "settings": vars(self.settings), **self.info})

    @classmethod
    def load(cls, path: str | Path) -> "Classifier":
        path = Path(path)
        meta = json.loads(path.with_suffix(".json").read_text(encoding="utf-8"))
        tensors = load_file(str(path))
        settings = TrainSettings(**meta.pop("settings"))
        names = tuple(meta.pop("label_names"))
        network = _Net(tensors["mean"].numel(), len(names), settings.hidden)
        network.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("net.")})
        return cls(network.eval(), tensors["mean"], tensors["std"], names, settings, meta)


def train_classifier(feats: torch.Tensor, labels: torch.Tensor, label_names: Sequence[str],
                     settings: TrainSettings = TrainSettings()) -> Classifier:
    """Fit on ``(N, D)`` features and ``(N,)`` label indices; deterministic for given inputs."""
    feats, labels = feats.float(), labels.to(torch.long)
    if len(feats) != len(labels) or len(feats) < 2:
        raise DatasetError(f"cannot train a classifier on {len(feats)} clips and {len(labels)} labels")
    mean = feats.mean(0)
    std = feats.std(0).clamp_min(1e-3 * feats.std(0).max().clamp_min(1e-6))
    x = (feats - mean) / std
    classes = len(label_names)
    counts = torch.bincount(labels, minlength=classes).float()
    class_weight = torch.where(counts > 0, counts.sum() / (classes * counts.clamp_min(1)), torch.zeros(()))
    generator = torch.Generator().manual_seed(settings.seed)
    with seeded_init(settings.seed):
        network = _Net(x.shape[1], classes, settings.hidden)
    decay = [p for n, p in network.named_parameters() if n.endswith("weight")]
    rest = [p for n, p in network.named_parameters() if not n.endswith("weight")]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": settings.weight_decay},
                                   {"params": rest, "weight_decay": 0.0}], lr=settings.lr)
    loss_fn = torch.nn.CrossEntropyLoss(weight=class_weight)
    network.train()
    for _ in range(settings.epochs):
        keep = (torch.rand(x.shape, generator=generator) >= settings.dropout).float() / (1.0 - settings.dropout)
        loss = loss_fn(network(x * keep), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    network.eval()
    train_accuracy = float((network(x).argmax(-1) == labels).float().mean())
    return Classifier(network, mean, std, tuple(label_names), settings, {"train_accuracy": train_accuracy})


def dataset_key(root: str | Path = DATA_ROOT, settings: TrainSettings = TrainSettings()) -> str:
    """12 hex digits naming (data set, feature version, training settings)."""
    index = Path(root) / INDEX_NAME
    if not index.is_file():
        raise DatasetError(f"no drum data set in {root}: run `python scripts/build_drum_dataset.py`")
    digest = hashlib.sha256(index.read_bytes())
    digest.update(json.dumps({"features": FEATURE_VERSION, **vars(settings)}, sort_keys=True).encode())
    return digest.hexdigest()[:12]


def dataset_features(dataset: DrumDataset) -> tuple[torch.Tensor, torch.Tensor]:
    """Features ``(N, D)`` and labels ``(N,)`` of a whole :class:`DrumDataset`."""
    return batched_features(dataset.audio.float(), dataset.sample_rate), dataset.labels


def load_or_train(root: str | Path = DATA_ROOT, cache_dir: str | Path | None = DEFAULT_CACHE,
                  settings: TrainSettings = TrainSettings()) -> Classifier:
    """The classifier for the data set in ``root``: from the cache, or trained on its train split,
    measured on its holdout split (``info["holdout_accuracy"]``, logged) and cached."""
    key = dataset_key(root, settings)
    path = Path(cache_dir) / f"classifier-{key}.safetensors" if cache_dir is not None else None
    if path is not None and path.is_file() and path.with_suffix(".json").is_file():
        try:
            return Classifier.load(path)
        except Exception as error:  # a damaged cache entry is simply rebuilt
            log.warning("ignoring the damaged classifier cache %s (%s)", path, error)
    train, holdout = DrumDataset(root, "train", real_only=True), DrumDataset(root, "holdout")
    x, y = dataset_features(train)
    classifier = train_classifier(x, y, train.label_names, settings)
    hx, hy = dataset_features(holdout)
    hy = classifier.own_labels(holdout.label_names, hy)
    classifier.info.update(key=key, holdout_accuracy=classifier.accuracy(hx, hy),
                           holdout_recall=classifier.recall(hx, hy),
                           train_clips=len(train), holdout_clips=len(holdout))
    log.info("drum classifier: %.1f%% on %d held-out clips (%.1f%% on train)",
             100 * classifier.info["holdout_accuracy"], len(holdout), 100 * classifier.info["train_accuracy"])
    if path is not None:
        classifier.save(path)
    return classifier
