"""Where hybrids of two labels land: ``name: value`` lines (issue 19, "Hybrids").

``python -m engine.eval.hybrids --model latent-prompts --data data/drums2s`` generates ``--count``
sounds (seeds ``--seed`` on) for each pair of labels (``--pairs snare:perc,...``) at each blend
(``--mixes 0,0.25,...``; 0 = the first label alone, 1 = the second) and asks the evaluation's
classifier (trained on the real training kits) what it hears:

``<a>_<b>.mix<m>.p_a`` / ``.p_b``
    the classifier's mean probability of each of the two categories;
``<a>_<b>.mix<m>.share_b``
    the share of sounds it calls ``b`` among those it calls ``a`` or ``b``;
``<a>_<b>.monotonic``
    1 when ``p_b - p_a`` grows (within 0.05) at every step of the mix, else 0;
``<a>_<b>.middle_balance``
    at the middle mix, ``min(p_a, p_b) / max(p_a, p_b)``: 1 for an even hybrid, near 0 when the
    blend collapses to one side.
"""

from __future__ import annotations

import argparse
from typing import Sequence

import torch

from ..data.dataset import DEFAULT_ROOT as DATA_ROOT
from ..errors import InvalidRequestError
from ..models import load_model, resolve_model
from .classifier import DEFAULT_CACHE, load_or_train
from .features import batched_features
from .run import generate_clips, model_header, report, studio_fade_ms, studio_output

DEFAULT_PAIRS = (("snare", "perc"), ("kick", "perc"), ("hat", "cymbal"))
DEFAULT_MIXES = (0.0, 0.25, 0.5, 0.75, 1.0)


def evaluate_hybrids(model_name: str, data_root: str = str(DATA_ROOT), pairs: Sequence[tuple[str, str]] = DEFAULT_PAIRS,
                     mixes: Sequence[float] = DEFAULT_MIXES, count: int = 16, seed: int = 0,
                     guidance: float | None = None, device: str = "cpu",
                     cache_dir: str = str(DEFAULT_CACHE)) -> dict[str, float | str]:
    entry = resolve_model(model_name)
    model = load_model(entry.folder, device=device)
    labels = list(model.manifest.get("labels", []))
    classifier = load_or_train(data_root, cache_dir)
    results: dict[str, float | str] = dict(model_header(entry, model))
    rate = model.manifest["sample_rate"]
    for a, b in pairs:
        if a not in labels or b not in labels or a not in classifier.label_names or b not in classifier.label_names:
            raise InvalidRequestError(f"the pair {a}:{b} needs labels the model ({labels}) and the classifier "
                                      f"({list(classifier.label_names)}) both know")
        ia, ib = classifier.label_names.index(a), classifier.label_names.index(b)
        gaps = []
        for mix in mixes:
            audio = studio_output(generate_clips(model, count, label=a, label_b=b, label_mix=mix, seed=seed,
                                                 guidance=guidance), rate, studio_fade_ms(model.manifest))
            probs = torch.softmax(classifier.logits(batched_features(audio, rate)), dim=-1)
            p_a, p_b = float(probs[:, ia].mean()), float(probs[:, ib].mean())
            verdicts = probs.argmax(-1)
            either = int(((verdicts == ia) | (verdicts == ib)).sum())
            key = f"{a}_{b}.mix{mix:g}"
            results[f"{key}.p_a"], results[f"{key}.p_b"] = p_a, p_b
            results[f"{key}.share_b"] = float((verdicts == ib).sum()) / either if either else float("nan")
            gaps.append(p_b - p_a)
        results[f"{a}_{b}.monotonic"] = float(all(later >= earlier - 0.05 for earlier, later in zip(gaps, gaps[1:])))
        middle = f"{a}_{b}.mix{mixes[len(mixes) // 2]:g}"
        low, high = sorted((results[f"{middle}.p_a"], results[f"{middle}.p_b"]))
        results[f"{a}_{b}.middle_balance"] = low / high if high else float("nan")
    return results


def _pairs(text: str) -> list[tuple[str, str]]:
    pairs = []
    for part in text.split(","):
        names = [n.strip() for n in part.split(":")]
        if len(names) != 2 or not all(names):
            raise argparse.ArgumentTypeError(f"a pair is two labels joined by ':' (snare:perc), got {part!r}")
        pairs.append((names[0], names[1]))
    return pairs


def _mixes(text: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"mixes are numbers in [0, 1] joined by ',', got {text!r}") from None
    if not values or any(not 0.0 <= v <= 1.0 for v in values):
        raise argparse.ArgumentTypeError(f"mixes must lie in [0, 1], got {text!r}")
    return values


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m engine.eval.hybrids", description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="latent-prompts")
    parser.add_argument("--data", default="data/drums2s", help="built data set (its classifier judges)")
    parser.add_argument("--pairs", type=_pairs, default=list(DEFAULT_PAIRS), help="e.g. snare:perc,hat:cymbal")
    parser.add_argument("--mixes", type=_mixes, default=list(DEFAULT_MIXES), help="e.g. 0,0.25,0.5,0.75,1")
    parser.add_argument("--count", type=int, default=16, help="sounds per pair and mix")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--guidance", type=float, default=None)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--cache", default=str(DEFAULT_CACHE))
    args = parser.parse_args(argv)
    return report(lambda: evaluate_hybrids(args.model, args.data, args.pairs, args.mixes, args.count, args.seed,
                                           args.guidance, args.device, args.cache))


if __name__ == "__main__":
    raise SystemExit(main())
