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

from ..errors import InvalidRequestError
from ..models import load_model, read_manifest, save_model
from ..nets import build_codec
from . import common
from .wave import envelope_arguments, fit_codec_prior


@dataclass
class PriorConfig:
    init: str = "checkpoints/drums"     # a waveform model whose codec draws envelopes from a prior
    data: str = "data/drums"            # the clips the prior is fitted on (the model's training data)
    run: str = "runs/prior"             # RUN/model is written
    envelope_clusters: int = 3
    envelope_components: int = 4
    envelope_shapes: dict[str, list[int]] | None = None   # {label: [clusters, components]} apart from the rest
    envelope_spreads: dict[str, float] | None = None      # {label: reach along its directions, 1 = as its clips}
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
    args.update(envelope_arguments(config, manifest["length"], manifest["labels"]))
    codec = build_codec(manifest["codec"])
    fit_codec_prior(codec, dataset, manifest["labels"])
    manifest["training"].setdefault("sessions", []).append(
        {"started_step": manifest["training"]["steps"], "ended_step": manifest["training"]["steps"],
         "data": str(config.data), "minutes": round((time.time() - started) / 60, 2),
         "note": f"envelope prior refitted: {config.envelope_clusters} clusters x "
                 f"{config.envelope_components} directions per label"
                 + "".join(f", {label} {c} x {m}" for label, (c, m) in (config.envelope_shapes or {}).items())
                 + "".join(f", {label} spread {v:g}" for label, v in (config.envelope_spreads or {}).items())
                 + " (network unchanged)"})
    network = load_model(config.init).network
    folder = Path(config.run) / "model"
    save_model(folder, network, manifest, codec=codec)
    return folder
