"""Model folders: ``manifest.json`` + ``model.safetensors`` (+ ``MODEL_CARD.md``), found, loaded, saved.

A model folder fully describes a model: the manifest names the network type and its
arguments, the sampling picture (``objective``), the audio format, the labels it knows and the
aliases it answers to (``kick`` -> the ``drums`` model with label ``kick``). The studio finds
models in ``checkpoints/`` and in any folder a user points to; a user's own trained model is a
folder of the same shape. Weights are safetensors only (never pickle).
"""

from __future__ import annotations

import glob
import hashlib
import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .audio import make_shareable
from .errors import CheckpointError, InvalidRequestError, ModelNotFoundError, StudioError
from .nets import build_codec, build_network, compand
from .sampling import guidance_weights
from .steering import codec_args_steer

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
WEIGHTS = "model.safetensors"
CODEC_PREFIX = "codec."  # tensors of a codec saved with the model (the waveform codec's envelope prior)
DEFAULT_ROOT = Path(__file__).resolve().parent.parent / "checkpoints"
MODEL_KEYS = ("network", "codec", "sample_rate", "length", "channels")
CODEC_KEYS = ("codec", "sample_rate", "channels")  # a codec folder (kind "codec"): weights of its codec only
EMBEDDER_KEYS = ("network", "sample_rate")  # a text-audio embedder folder (kind "embedder", engine.embedders)


@dataclass(frozen=True)
class ModelEntry:
    """What the studio can pick: a model folder, optionally narrowed to one label by an alias."""

    name: str
    folder: Path
    manifest: dict = field(repr=False)
    label: str | None = None

    @property
    def kind(self) -> str:
        return self.manifest.get("kind", "wave")

    @property
    def labels(self) -> list[str]:
        return list(self.manifest.get("labels", []))

    @property
    def takes_guidance(self) -> bool:
        return "label" in self.manifest.get("conditioners", [])


@dataclass
class LoadedModel:
    """A network in eval mode on its device, with the manifest and the id of the weights it holds."""

    network: torch.nn.Module
    codec: torch.nn.Module
    manifest: dict
    checkpoint_id: str
    folder: Path
    device: torch.device
    dtype: torch.dtype
    guidance_weights: torch.Tensor | None = None  # per latent channel (sampling.guidance_weights)


def read_manifest(folder: str | Path) -> dict:
    path = Path(folder) / MANIFEST
    if not path.is_file():
        raise CheckpointError(f"{folder} is not a model folder: {MANIFEST} is missing")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise CheckpointError(f"{path} is not valid JSON: {error}") from error
    required = CODEC_KEYS if manifest.get("kind") == "codec" else EMBEDDER_KEYS if manifest.get("kind") == "embedder" \
        else MODEL_KEYS
    for key in required:
        if key not in manifest:
            raise CheckpointError(f"{path} lacks the required key {key!r}")
    return manifest


def checkpoint_id(folder: str | Path) -> str:
    """First 12 hex digits of the weights' SHA-256: names the exact weights in every recipe."""
    digest = hashlib.sha256()
    with open(Path(folder) / WEIGHTS, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:12]


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def copy_folder(source: Path, target: Path) -> None:
    """Copy a folder (a codec or embedder beside a model) through a temporary sibling and a rename,
    so ``target`` never holds half a copy; an older ``target`` is replaced."""
    tmp = target.parent / f".{target.name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(source, tmp)
    shutil.rmtree(target, ignore_errors=True)
    tmp.replace(target)


def atomic_write(path: Path, write) -> None:
    """Write through ``write(tmp_path)`` then rename, so ``path`` is always whole or absent.

    The temporary file's name carries the writer's pid; one left behind by a writer that was
    killed (SIGKILL cannot be caught) is removed by the next write of the same path, while a live
    writer's is left alone."""
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        pid = stale.name[len(path.name) + 2:].split(".", 1)[0]
        if pid.isdigit() and not _process_alive(int(pid)):
            stale.unlink(missing_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp")
    os.close(fd)
    try:
        write(Path(tmp))
        # after writing: mkstemp (and safetensors, which recreates the file) make 0600, but model
        # folders and data sets are for every user who may read them
        make_shareable(Path(tmp))
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_json(path: Path, data: dict) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8"))


def save_model(folder: str | Path, network: torch.nn.Module, manifest: dict, card: str | None = None,
               codec: torch.nn.Module | None = None) -> None:
    """Write weights, then manifest, each atomically: a kill at any moment leaves a loadable folder.

    The network's arguments never change during a run, so an old manifest beside new weights
    (a kill between the two renames) still loads; only the step count is then one save behind.
    A codec whose data tensors belong to the model (``stored_with_model``: the waveform codec's
    envelope prior) is saved in the same file under ``codec.``.
    """
    folder = Path(folder)
    state = {k: v.detach().float().contiguous().cpu() for k, v in network.state_dict().items()}
    if codec is not None and getattr(codec, "stored_with_model", False):
        state.update({CODEC_PREFIX + k: v.detach().float().contiguous().cpu() for k, v in codec.state_dict().items()})
    atomic_write(folder / WEIGHTS, lambda tmp: save_file(state, str(tmp), metadata={"format": "pt"}))
    write_json(folder / MANIFEST, manifest)
    if card is not None:
        atomic_write(folder / "MODEL_CARD.md", lambda tmp: tmp.write_text(card, encoding="utf-8"))


def read_weights(folder: str | Path, prefix: str = "") -> dict[str, torch.Tensor]:
    """The weights file's tensors: those under ``prefix`` (stripped), or, with no prefix, all but a
    codec's (``codec.``). CheckpointError for a missing or damaged file."""
    path = Path(folder) / WEIGHTS
    if not path.is_file():
        raise CheckpointError(f"{folder} has no {WEIGHTS}")
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError) as error:
        raise CheckpointError(f"{path} is corrupt or not a safetensors file: {error}") from error
    if prefix:
        return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    return {k: v for k, v in state.items() if not k.startswith(CODEC_PREFIX)}


def load_weights(folder: str | Path, network: torch.nn.Module, prefix: str = "") -> None:
    """Load :func:`read_weights` into ``network``, which must match it exactly."""
    path = Path(folder) / WEIGHTS
    state = read_weights(folder, prefix)
    try:
        missing, unexpected = network.load_state_dict(state, strict=False)
    except RuntimeError as error:  # shape mismatches
        raise CheckpointError(f"{path} does not match its manifest's network: {str(error).splitlines()[0]}") from error
    if missing or unexpected:
        raise CheckpointError(
            f"{path} does not match its manifest's network (missing {missing[:3]}, unexpected {unexpected[:3]})")


def pick_device(name: str | None = "auto") -> torch.device:
    """``auto``/None: CUDA when there is a GPU, else the CPU; asking for CUDA without one is an error."""
    if name in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise InvalidRequestError("CUDA was asked for but no CUDA GPU is visible; use --device cpu")
    return torch.device(name)


def load_model(folder: str | Path, device: str | torch.device = "cpu", half: bool = False) -> LoadedModel:
    """Build the network from the manifest alone, load its weights, put it in eval mode.

    ``half`` gives fp16 weights on CUDA only; on a CPU it is ignored (fp16 there is slow and
    inexact), so asking for it on a laptop does no harm.
    """
    folder = Path(folder)
    manifest = read_manifest(folder)
    if manifest.get("kind") == "codec":
        raise CheckpointError(f"{folder} is a codec folder, not a model that generates; pick a latent model that uses it")
    network = build_network(manifest["network"])
    load_weights(folder, network)
    device = torch.device(device)
    dtype = torch.float16 if half and device.type == "cuda" else torch.float32
    network = network.to(device, dtype).eval()
    codec = load_codec(manifest, folder).to(device).eval()
    weights = guidance_weights(manifest, codec)
    log.info("loaded %s (%s) on %s", folder.name, manifest.get("kind"), device)
    return LoadedModel(network, codec, manifest, model_id(manifest, folder), folder, device, dtype, weights)


def model_id(manifest: dict, folder: str | Path) -> str:
    """The id a recipe records: the weights' id, joined by ``+`` to a referenced codec folder's
    (a latent model regenerates the same sound only with the same codec weights too)."""
    spec = manifest["codec"]
    if "model" not in spec:
        return checkpoint_id(folder)
    return f"{checkpoint_id(folder)}+{checkpoint_id(find_codec_folder(spec['model'], folder))}"


def find_codec_folder(name: str, near: str | Path | None = None, roots: list[str | Path] | None = None,
                      what: str = "codec") -> Path:
    """The codec (or embedder) folder a latent model references: ``name`` next to the model folder
    (``near``'s parent), else ``name`` as a path, else in the default model roots. CheckpointError
    naming where it looked."""
    candidates = [Path(near).parent / name] if near is not None else []
    candidates.append(Path(name))
    candidates += [Path(root) / name for root in (roots or [DEFAULT_ROOT])]
    for folder in candidates:
        if (folder / MANIFEST).is_file():
            return folder
    raise CheckpointError(f"{what} folder {name!r} not found (looked in {', '.join(str(c) for c in candidates)}); "
                          f"train one with `python -m engine train {'clap' if what == 'embedder' else what}` or copy "
                          "it beside the model folder")


def codec_steers(manifest: dict, folder: str | Path) -> bool:
    """Whether the latent model in ``folder`` (its ``manifest``) has a codec whose latent says its own
    loudness (:func:`engine.steering.codec_args_steer`), read from the manifests alone: what the
    studio shows and what ``python -m engine steer`` needs."""
    spec = manifest.get("codec", {})
    if manifest.get("kind") != "latent" or spec.get("type") != "autoencoder":
        return False
    args = spec.get("args")
    if args is None and spec.get("model"):
        try:
            args = read_manifest(find_codec_folder(spec["model"], folder))["codec"]["args"]
        except (StudioError, KeyError, OSError):
            return False
    return codec_args_steer(args or {})


def embedder_location(manifest: dict, folder: str | Path, roots: list[str | Path] | None = None) -> str | Path:
    """Where a prompted model's text–audio embedder is: "laion" (loaded by name) or its folder,
    resolved (:func:`find_codec_folder`), so one embedder shared by models loads once per key."""
    name = manifest["embedder"]["model"]
    return name if name == "laion" else find_codec_folder(name, folder, roots, "embedder").resolve()


def load_codec(manifest: dict, folder: str | Path | None = None) -> torch.nn.Module:
    """A model's codec in eval mode on the CPU: built from its arguments (``{"type", "args"}``) or,
    for ``{"type", "model": NAME}``, from the codec model folder NAME with its trained weights.

    The referenced folder must be a codec folder (kind ``codec``) of the same type, sample rate and
    channels as the model; a latent model's network must take that codec's latent channels.
    A ``compand`` entry in the spec wraps the codec in that latent transform (``nets.compand``).
    """
    spec = manifest["codec"]
    if "model" not in spec:
        codec = build_codec(spec)
        if getattr(codec, "stored_with_model", False):
            if folder is None:
                raise CheckpointError("this codec's tensors live in its model folder; load it with the folder")
            load_weights(folder, codec, prefix=CODEC_PREFIX)
        return _with_transform(codec, spec)
    codec_folder = find_codec_folder(spec["model"], folder)
    codec_manifest = read_manifest(codec_folder)
    inner = codec_manifest["codec"]
    if codec_manifest.get("kind") != "codec" or inner.get("type") != spec.get("type", inner.get("type")):
        raise CheckpointError(f"{codec_folder} is not a {spec.get('type')} codec folder (kind "
                              f"{codec_manifest.get('kind')!r}, type {inner.get('type')!r})")
    for key in ("sample_rate", "channels"):
        if codec_manifest[key] != manifest[key]:
            raise CheckpointError(f"the codec {codec_folder} has {key} {codec_manifest[key]} but the model "
                                  f"expects {manifest[key]}")
    codec = build_codec(inner)
    load_weights(codec_folder, codec)
    expected = manifest.get("network", {}).get("args", {}).get("in_channels")
    if expected is not None and codec.latent_channels != expected:
        raise CheckpointError(f"the codec {codec_folder} makes {codec.latent_channels} latent channels but the "
                              f"model's network takes {expected}")
    return _with_transform(codec, spec)


def _with_transform(codec: torch.nn.Module, spec: dict) -> torch.nn.Module:
    """``codec`` in eval mode, seen through the spec's latent transform (``compand``) if it has one."""
    try:
        return compand.wrap(codec, spec.get("compand")).eval()
    except (KeyError, TypeError, ValueError) as error:
        raise CheckpointError(f"the model's latent transform (codec.compand) is damaged: {error}") from error


def find_models(roots: list[str | Path] | None = None) -> dict[str, ModelEntry]:
    """Every model folder under ``roots`` (a root may itself be a model folder), plus its aliases.

    Folder names come first; an alias never shadows a folder of the same name.
    """
    entries: dict[str, ModelEntry] = {}
    aliases: dict[str, ModelEntry] = {}
    for root in [Path(r) for r in (roots or [DEFAULT_ROOT])]:
        candidates = [root] if (root / MANIFEST).is_file() else sorted(p for p in root.glob("*") if (p / MANIFEST).is_file())
        for folder in candidates:
            try:
                manifest = read_manifest(folder)
            except CheckpointError as error:
                log.warning("skipping %s: %s", folder, error)
                continue
            if manifest.get("kind") in ("codec", "embedder"):  # loaded through a model or the Studio, not generated from
                continue
            entries.setdefault(folder.name, ModelEntry(folder.name, folder, manifest))
            for alias, target in manifest.get("aliases", {}).items():
                aliases.setdefault(alias, ModelEntry(alias, folder, manifest, target.get("label")))
    for alias, entry in aliases.items():
        entries.setdefault(alias, entry)
    return entries


def resolve_model(name: str, roots: list[str | Path] | None = None) -> ModelEntry:
    """A model by name or alias, or by a path to a model folder."""
    if (Path(name) / MANIFEST).is_file():
        folder = Path(name)
        return ModelEntry(folder.name, folder, read_manifest(folder))
    entries = find_models(roots)
    if name not in entries:
        known = ", ".join(sorted(entries)) or "none (is checkpoints/ empty?)"
        raise ModelNotFoundError(f"no model called {name!r}; available: {known}")
    return entries[name]
