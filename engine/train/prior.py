"""Refit a waveform model's envelope prior: new loudness envelopes without training the network.

A waveform model (``train wave``) is trained on every clip's *own* loudness envelope; the prior
that draws envelopes for new sounds (a mixture of Gaussians per label, ``engine.nets.envelope``)
is only used at sampling time. Its shape (clusters x principal directions) therefore sets how
varied the sounds are without touching the network: measured in session 12, guidance changed the
spread of the `drums` kicks little, and the prior's 3 clusters x 4 directions is what limits it
(``docs/design-notes.md``, "Variety"). ``python -m engine train prior --init MODEL --data DATA
--run-dir RUN --envelope-clusters C --envelope-components M`` writes ``RUN/model``: the same
network weights beside a prior refitted on the data with that shape, ready for ``eval`` and
``publish``. The network's training record is kept; the refit is noted in it.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import InvalidRequestError
from ..models import load_model, read_manifest, save_model
from ..nets import build_codec, envelope
from . import common
from .wave import check_named_labels, envelope_arguments, fit_codec_prior


@dataclass
class PriorConfig:
    init: str = "checkpoints/drums"     # a waveform model whose codec draws envelopes from a prior
    data: str = "data/drums"            # the clips the prior is fitted on (the model's training data)
    run: str = "runs/prior"             # RUN/model is written
    envelope_clusters: int = 3
    envelope_components: int = 4
    envelope_shapes: dict[str, list[int]] | None = None   # {label: [clusters, components]} apart from the rest
    envelope_spreads: dict[str, float] | None = None      # {label: reach along its directions, 1 = as its clips}
    reattack_quantiles: dict[str, float] | None = None   # {label: q}: its drawn second hits held to its clips' q
    envelope_kernels: dict[str, float] | None = None     # {label: width}: drawn from its clips' own envelopes
    envelope_details: list[str] | None = None            # labels (each with a kernel) that take their clips' flutter too
    envelope_tones: list[str] | None = None              # labels (each with a kernel) that take their clips' tone too
    categories: list[str] | None = None


def refit_prior(config: PriorConfig) -> Path:
    """Write ``config.run``/model: ``config.init``'s network with its envelope prior refitted."""
    if not config.init:
        raise InvalidRequestError("give the model whose prior to refit: --init MODEL_FOLDER")
    if config.envelope_clusters < 1 or config.envelope_components < 0:
        raise InvalidRequestError("the prior needs at least 1 cluster and 0 or more components, got "
                                  f"{config.envelope_clusters} and {config.envelope_components}")
    manifest = copy.deepcopy(read_manifest(config.init))
    args = manifest.get("codec", {}).get("args", {})
    if manifest.get("kind") != "wave" or "envelope_prior" not in args:
        raise InvalidRequestError(f"{config.init} draws no loudness envelopes from a prior (only waveform models "
                                  "trained with an envelope do)")
    dataset = common.open_dataset(config.data, config.categories)
    if dataset.length != manifest["length"] or dataset.sample_rate != manifest["sample_rate"]:
        raise InvalidRequestError(f"the model makes {manifest['length']} samples at {manifest['sample_rate']} Hz "
                                  f"but the data set holds {dataset.length} at {dataset.sample_rate} Hz")
    started = time.time()
    model_labels = common.label_map(dataset.label_names, manifest["labels"], len(manifest["labels"]))[dataset.labels]
    counts = {label: int((model_labels == row).sum()) for row, label in enumerate(manifest["labels"])}
    args.update(envelope_arguments(config, manifest["length"], manifest["labels"], counts))
    codec = build_codec(manifest["codec"])
    fit_codec_prior(codec, dataset, manifest["labels"])
    if config.reattack_quantiles:
        limits = reattack_limits(codec, dataset, manifest["labels"], config.reattack_quantiles)
        args["envelope_prior"]["reattack_db"] = limits
        codec.set_reattack_limits(limits)
    manifest["training"].setdefault("sessions", []).append(
        {"started_step": manifest["training"]["steps"], "ended_step": manifest["training"]["steps"],
         "data": str(config.data), "minutes": round((time.time() - started) / 60, 2),
         "note": f"envelope prior refitted: {config.envelope_clusters} clusters x "
                 f"{config.envelope_components} directions per label"
                 + "".join(f", {label} {c} x {m}" for label, (c, m) in (config.envelope_shapes or {}).items())
                 + "".join(f", {label} spread {v:g}" for label, v in (config.envelope_spreads or {}).items())
                 + "".join(f", {label} second hits held to its clips' {q:g} quantile"
                           for label, q in (config.reattack_quantiles or {}).items())
                 + "".join(f", {label} drawn from its {counts[label]} clips' envelopes moved {w:g} along its directions"
                           + (" with their flutter between the knots" if label in (config.envelope_details or []) else "")
                           + (" and their tone inside the bands" if label in (config.envelope_tones or []) else "")
                           for label, w in (config.envelope_kernels or {}).items())
                 + " (network unchanged)"})
    network = load_model(config.init).network
    folder = Path(config.run) / "model"
    save_model(folder, network, manifest, codec=codec)
    return folder


def reattack_limits(codec, dataset, labels: list[str], quantiles: dict[str, float]) -> list[list[float] | None]:
    """Per prior row (each label, then all clips): for a label in ``quantiles``, per band, that
    quantile of how far the data set's clips of the label rise again after their peak
    (:func:`engine.nets.envelope.reattack_limits`); ``None`` (not held) for the other rows.

    Why: a prior fitted as a mixture of Gaussians and drawn wider than its clips for variety
    (``--envelope-spread``) also draws second hits no kit has: 25 of 64 `drums-3step` kicks rose
    again in some band by more than any training kick does, a thump 280 ms after the hit
    (``docs/design-notes.md``, "Second hits in drawn envelopes"). Per label, because the same
    hold on hats and snares cost them accuracy there."""
    check_named_labels("--reattack-quantile", quantiles, labels)
    bad = {k: v for k, v in quantiles.items() if isinstance(v, bool) or not 0.0 < float(v) <= 1.0}
    if bad:
        raise InvalidRequestError(f"each --reattack-quantile must be in (0, 1], got {bad}")
    model_labels = common.label_map(dataset.label_names, labels, len(labels))[dataset.labels]
    envelopes = torch.cat([codec.measure_envelopes(dataset.audio[i:i + 64].float())
                           for i in range(0, len(dataset), 64)])
    rows: list[list[float] | None] = [None] * (len(labels) + 1)
    for label, quantile in quantiles.items():
        row = labels.index(label)
        limits = envelope.reattack_limits(envelopes, model_labels, len(labels), float(quantile))[row]
        rows[row] = [round(float(v), 2) for v in limits]
    return rows
