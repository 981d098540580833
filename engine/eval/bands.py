"""Steps at sub-band edges and second hits in the tails of generated vs real sounds: ``name: value`` lines (issue 19).

``python -m engine.eval.bands --model drums --data data/drums2s`` generates ``--count`` sounds per
category (seeds ``--seed`` on, the model's defaults) and measures, with
:func:`engine.eval.metrics.band_edge_steps`, the largest level step across one of the model's
codec band edges in each sound's tail (200-600 ms), beside the same for the held-out real clips
of the category (any length: only the tail window is read):

``<category>.edge_step_db`` / ``.edge_step_db_real``
    the median over sounds of the largest step across a band edge (dB; sounds whose tail is too
    quiet to judge left out, ``.judged`` says how many were judged);
``<category>.cliff_share`` / ``.cliff_share_real``
    the share of sounds with a step over 12 dB at some edge (a cliff), of all the sounds;
``<category>.edge_step_db_train`` / ``.judged_train`` / ``.cliff_share_train``
    the same three for the real training clips of the category: a second real reference, since
    the held-out kits' kick tails are too dark to be judged at all (none of 10), where the kits
    the model learnt from hold kicks whose tails carry energy across the edges (22 of 46 judged);
``<category>.middle_step_db`` / ``.middle_step_db_real``
    the same step measured at the bands' middles (the control: the spectrum's own slope);
``<category>.second_rise_db`` / ``.second_rise_db_real``
    the median over sounds of how far the loudness rises again after its peak
    (:func:`engine.eval.metrics.second_rises`: 0 for a hit that only decays);
``<category>.second_hit_share`` / ``.second_hit_share_real``
    the share of sounds that rise again by more than :data:`~engine.eval.metrics.RISE_DB` (a second hit);
``<category>.rumble_db`` / ``.rumble_db_real``
    the median over sounds of how much more of their energy lies under 110 Hz than the training
    clips' of the category: per band of :data:`engine.lows.EDGES_HZ` under 110 Hz, the sound's
    share minus the training clips' median share, averaged over those bands (dB; the network's
    rumble, :mod:`engine.lows`);
``all.*``
    the same over every category (the edge steps).
"""

from __future__ import annotations

import argparse
import math
from typing import Sequence

import torch

from ..data.dataset import DEFAULT_ROOT as DATA_ROOT
from ..data.dataset import DrumDataset
from ..lows import EDGES_HZ, band_shares_db
from ..models import load_model, resolve_model
from .metrics import BAND_CLIFF_DB, RISE_DB, band_edge_steps, second_rises
from .run import generate_clips, model_header, report, studio_fade_ms, studio_output


def _median(values: torch.Tensor) -> float:
    values = values[torch.isfinite(values)]
    return float(values.median()) if values.numel() else math.nan


def _cliff_share(steps: torch.Tensor) -> float:
    """The share of sounds with a step over :data:`BAND_CLIFF_DB` at some edge, of all of them."""
    return float((steps > BAND_CLIFF_DB).float().mean()) if len(steps) else math.nan


def _edge_figures(results: dict, prefix: str, name: str, audio: torch.Tensor, rate: int, bands: int) -> torch.Tensor:
    """Put the median edge step, the count judged and the cliff share of ``audio`` in ``results``
    (keys ``prefix + figure + name``); the steps themselves, to pool."""
    edges = band_edge_steps(audio, rate, bands)
    results[f"{prefix}edge_step_db{name}"] = _median(edges)
    results[f"{prefix}judged{name}"] = float(torch.isfinite(edges).sum())
    results[f"{prefix}cliff_share{name}"] = _cliff_share(edges)
    return edges


RUMBLE_HZ = 110.0   # the bands under this are where real snares, hats and cymbals hold almost nothing


def _rumble(audio: torch.Tensor, rate: int, reference: torch.Tensor) -> torch.Tensor:
    """Per sound: its shares under :data:`RUMBLE_HZ` minus ``reference`` (the training clips' median
    shares), averaged over those bands (dB)."""
    under = [i for i, high in enumerate(EDGES_HZ[1:]) if high <= RUMBLE_HZ]
    return (band_shares_db(audio, rate)[:, under] - reference[under]).mean(1)


def evaluate_bands(model_name: str, data_root: str = str(DATA_ROOT), count: int = 16, seed: int = 0,
                   guidance: float | None = None, device: str = "cpu") -> dict[str, float | str]:
    entry = resolve_model(model_name)
    model = load_model(entry.folder, device=device)
    rate, bands = model.manifest["sample_rate"], int(model.codec.bands)
    held = DrumDataset(data_root, "holdout")
    train = DrumDataset(data_root, "train", real_only=True)
    categories = [c for c in model.manifest.get("labels", []) if c in held.label_names] or [None]
    results: dict[str, float | str] = {**model_header(entry, model), "bands": float(bands)}
    pooled = {"edge": [], "edge_real": []}
    for category in categories:
        made = studio_output(generate_clips(model, count, label=category, seed=seed, guidance=guidance), rate,
                            studio_fade_ms(model.manifest))
        rows = [i for i, r in enumerate(held.records) if category is None or r["category"] == category]
        real = held.audio[rows].float()
        key = category or "all"
        trained = [i for i, r in enumerate(train.records) if category is None or r["category"] == category]
        reference = band_shares_db(train.audio[trained].float(), rate).median(0).values if trained else None
        if trained:
            _edge_figures(results, f"{key}.", "_train", train.audio[trained].float(), rate, bands)
        for name, audio in (("", made), ("_real", real)):
            pooled["edge" + name].append(_edge_figures(results, f"{key}.", name, audio, rate, bands))
            results[f"{key}.middle_step_db{name}"] = _median(band_edge_steps(audio, rate, bands, at_edges=False))
            rises = second_rises(audio)
            results[f"{key}.second_rise_db{name}"] = _median(rises)
            results[f"{key}.second_hit_share{name}"] = float((rises > RISE_DB).float().mean()) if len(rises) else math.nan
            if reference is not None:
                results[f"{key}.rumble_db{name}"] = _median(_rumble(audio, rate, reference))
    generated, real = torch.cat(pooled["edge"]), torch.cat(pooled["edge_real"])
    results.update({"all.edge_step_db": _median(generated), "all.edge_step_db_real": _median(real),
                    "all.cliff_share": _cliff_share(generated), "all.cliff_share_real": _cliff_share(real)})
    return results


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m engine.eval.bands", description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="drums")
    parser.add_argument("--data", default="data/drums2s", help="built data set (its held-out clips are the real side)")
    parser.add_argument("--count", type=int, default=16, help="sounds per category")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--guidance", type=float, default=None)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    return report(lambda: evaluate_bands(args.model, args.data, args.count, args.seed, args.guidance, args.device))


if __name__ == "__main__":
    raise SystemExit(main())
