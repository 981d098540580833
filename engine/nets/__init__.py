"""Networks and codecs, built from a model's manifest alone.

A manifest says ``"network": {"type": "unet1d", "args": {...}}`` and
``"codec": {"type": "pqmf", "args": {...}}``; :func:`build` looks the type up here and passes
the arguments through, so a model folder fully describes what it runs.
"""

from __future__ import annotations

from torch import nn

from ..errors import CheckpointError
from .autoencoder import AudioAutoencoder
from .encodec_backend import EncodecCodec  # imports transformers only when an EncodecCodec is built
from .pqmf import BandCodec
from .unet1d import UNet1d

NETWORKS: dict[str, type[nn.Module]] = {"unet1d": UNet1d}
CODECS: dict[str, type[nn.Module]] = {"pqmf": BandCodec, "autoencoder": AudioAutoencoder, "encodec": EncodecCodec}


def build(spec: dict, registry: dict[str, type[nn.Module]]) -> nn.Module:
    kind = spec.get("type")
    if kind not in registry:
        raise CheckpointError(f"unknown type {kind!r}; this engine knows {sorted(registry)}")
    try:
        return registry[kind](**spec.get("args", {}))
    except (TypeError, ValueError) as error:
        raise CheckpointError(f"arguments do not fit {kind}: {error}") from error


def build_network(spec: dict) -> nn.Module:
    return build(spec, NETWORKS)


def build_codec(spec: dict) -> nn.Module:
    return build(spec, CODECS)
