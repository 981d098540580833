"""Train a latent drum model: iterative alpha-(de)blending on a frozen codec's latents.

One function, :func:`train_latent`, used by ``python -m engine train latent`` and by the tests.
The picture is IADB (Heitz, Belcour, Chambon 2023): with unit noise ``n`` and a unit-scale codec
latent ``z``, ``x_a = (1 - a) n + a z`` for ``a ~ U(0, 1)`` (stratified over the batch) and the
network regresses the direction ``d = z - n``; the manifest says ``"objective": "blend"`` so the
studio samples it with ``iadb`` natively or with DDIM / DPM-Solver++ through the VE wrapper.

The network is ``UNet1d`` with attention off at every level (fully convolutional, so a model
trained on 2 s clips generates any length that is a multiple of its hop), AdaGN conditioning
from the time embedding plus a class-label embedding, and label dropout (the "no label" class)
so classifier-free guidance works. A share of the batches (``short_crops``) is trained on a
shorter prefix of the latent, so shorter generated sounds end as cleanly as full-length ones.

The codec is either an in-house autoencoder folder (``--codec checkpoints/codec``; it is copied
into the run folder so ``run/model`` finds it beside itself, and the manifest references it by
name: ``"codec": {"type": "autoencoder", "model": "codec"}``) or EnCodec (``--codec encodec``,
weights from transformers, its arguments stored inline with the measured ``latent_scale``).
The run folder is laid out like the waveform trainer's and resumes, logs and saves the same way.
Fine-tuning (``--init``) keeps the model's own codec and latent transform; naming a codec as well
moves the model onto it, and when that codec's latent is wider (a codec that gained a band
envelope) the U-Net's stem and head grow (:func:`grow_into`) and the new channels' transform is
fitted (:func:`extend_compand`), so a trained model need not start again.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .. import dsp
from ..conditions import CONTROL_SPECS, LABEL_SPEC, PER_FRAME, PROMPT_SPEC, STEERING, condition_specs, \
    controls_from_audio, drop_conditions, level_floors, roughen_controls
from ..data.augment import augment, shape_augment
from ..errors import InvalidRequestError
from ..models import copy_folder, find_codec_folder, load_codec, read_manifest, read_weights
from ..nets import build_codec, build_network, compand
from ..nets.compand import ENVELOPE_SCALE
from ..seeds import seeded_init
from . import common, loop

log = logging.getLogger(__name__)

DEFAULT_CODEC = "checkpoints/codec"
DEFAULT_LENGTH = 88064  # ~2.0 s at 44.1 kHz: 688 latent frames at the autoencoder's hop of 128


@dataclass
class LatentTrainConfig:
    data: str = "data/drums2s"          # a built data set (build.py --length 88064) or any folder of WAVs
    run: str = "runs/latent"            # run folder: model/, <codec>/, train_state.pt, log.csv, samples/
    codec: str | None = None            # a codec folder (kind "codec") or "encodec"; None: checkpoints/codec for
                                        # a new model, the --init model's own codec when fine-tuning
    codec_args: dict | None = None      # EnCodec arguments (pretrained, latent, bandwidth, config...)
    init: str | None = None             # latent model folder to fine-tune from
    name: str = "latent-drums"          # model name written into the manifest
    steps: int = 1000
    max_minutes: float | None = None
    batch: int = 16
    length: int | None = None           # clip length when data is a folder of WAVs (default 88064)
    lr: float = 2e-4
    warmup: int = 200
    ema_decay: float = 0.999
    label_dropout: float = 0.1          # share of labels replaced by "no label": trains CFG
    controls: bool = False              # condition on loudness (RMS) and onset curves measured on each clip
                                        # (added to --init's model with zero weights: it starts unchanged)
    control_dropout: float = 0.3        # share of clips trained without each control (every control optional)
    all_dropout: float = 0.05           # share trained with no condition at all (label and controls)
    control_lr_scale: float = 10.0      # the control projections learn this much faster (they start at zero
                                        # beside weights trained for tens of thousands of steps); the prompt's too
    prompts: str | None = None          # an embedder folder (checkpoints/clap): condition on prompt embeddings,
                                        # each clip's audio embedding or one of its captions' text embeddings
    prompt_dropout: float = 0.2         # share of clips trained without a prompt
    text_share: float = 0.5             # share of prompted clips whose prompt is a caption's text embedding
                                        # (the rest: the clip's own audio embedding, "more like this")
    balance: float = 0.0                # 0: clips drawn uniformly; 1: every category equally often
    short_crops: float = 0.25           # share of batches trained on a shorter prefix of the clips
    augment: bool = True                # False: the latents are encoded once and cached
    augment_copies: int = 0             # K > 0: each clip encoded once as it is and K - 1 times augmented,
                                        # cached (augmentation at the speed of cached latents); 0: every batch
                                        # augmented and encoded afresh (three times slower on a CPU)
    compand: float = compand.DEFAULT_SCALE  # a new model's asinh latent transform scale (0: plain latent)
    compand_envelope: float = ENVELOPE_SCALE  # the same for the codec's band-envelope channels
    input_skip: bool | None = None      # the U-Net's input skip (unet1d.py says why): a new model has it
                                        # unless False; True with --init adds it (zero: nothing changes at first)
    categories: list[str] | None = None
    save_every: int = 250
    log_every: int = 25
    render_every: int = 1000            # 0: never
    render_steps: int = 32
    device: str = "auto"
    seed: int = 0
    network: dict = field(default_factory=lambda: {"widths": [128, 256, 256], "blocks": [2, 2, 2],
                                                   "factors": [2, 2], "attention": [False, False, False],
                                                   "heads": 4, "emb_dim": 256, "dropout": 0.0})


def _codec_spec(config: LatentTrainConfig, run: Path, sample_rate: int, sample: torch.Tensor) -> dict:
    """The manifest's codec entry for a new model (copying an autoencoder folder into the run)."""
    if config.codec == "encodec":
        args = dict({"pretrained": "facebook/encodec_24khz", "latent": "continuous"}, **(config.codec_args or {}))
        args.update(channels=2, sample_rate=sample_rate, latent_scale=1.0)
        codec = build_codec({"type": "encodec", "args": args})
        args["latent_scale"] = max(float(codec.encode_raw(sample).std()), 1e-4)
        return {"type": "encodec", "args": args}
    source = find_codec_folder(config.codec or DEFAULT_CODEC)
    codec_manifest = read_manifest(source)
    if codec_manifest.get("kind") != "codec":
        raise InvalidRequestError(f"{source} is not a codec folder (train one with `python -m engine train codec`)")
    name = codec_manifest.get("name") or source.name
    if name == "model":
        name = "codec"
    if (run / name).resolve() != source.resolve():
        copy_folder(source, run / name)
    return {"type": codec_manifest["codec"]["type"], "model": name}


def compand_scales(codec: torch.nn.Module, scale: float, envelope_scale: float) -> float | list[float]:
    """The asinh scale per latent channel: ``envelope_scale`` for the codec's band-envelope channels
    (its last ones; see ``compand.ENVELOPE_SCALE`` for why they differ), ``scale`` for the rest."""
    envelope = getattr(codec, "envelope_channels", 0)
    if not envelope:
        return scale
    return [scale] * (codec.latent_channels - envelope) + [envelope_scale] * envelope


def extend_compand(old: dict, spec: dict, run: Path, probe: torch.Tensor, sample_rate: int,
                   envelope_scale: float) -> dict:
    """The latent transform for a model moved onto a codec whose latent starts with its old codec's
    channels and adds more (a codec with a new band envelope): the old channels keep their offset
    and scale, so the model's learned mapping still holds there; the new ones are fitted on ``probe``."""
    plain = load_codec({"codec": spec, "sample_rate": sample_rate, "channels": 2, "network": {}}, run / "model")
    kept = len(old["offset"])
    if kept > plain.latent_channels:
        raise InvalidRequestError(f"the model's latent has {kept} channels but the new codec's only "
                                  f"{plain.latent_channels}: fine-tuning can move a model onto a wider latent only")
    if kept == plain.latent_channels:
        return old
    old_scales = old["scale"] if isinstance(old["scale"], list) else [old["scale"]] * kept
    envelope_start = plain.latent_channels - getattr(plain, "envelope_channels", 0)
    scales = old_scales + [envelope_scale if i >= envelope_start else old_scales[-1]
                           for i in range(kept, plain.latent_channels)]
    fitted = compand.fit(plain, probe.float(), scales).spec()
    merged = {"scale": scales, "limit": max(old["limit"], fitted["limit"]),
              "offset": list(old["offset"]) + fitted["offset"][kept:], "std": list(old["std"]) + fitted["std"][kept:]}
    return compand.wrap(plain, merged).with_ranges(probe.float()).spec()


ADDABLE = ("input_skip.", "control_down.", "control_up.", "embedding_in.")  # parameters an init model may lack: they start
                                                           # at zero, changing nothing


def grow_into(network: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Load ``state`` into ``network`` whose latent has more channels than the state was trained on
    (or that adds an input skip the state lacks, which keeps its zero start).

    A tensor that is smaller than the network's along some dimensions is copied into the leading
    slice; the rest keeps the network's fresh initialisation, except new *input* columns of the
    stem (dimension 1 of its weight), which are zeroed so the grown network computes exactly what
    the old one did until training teaches it to read the new channels. (Measured in session 5:
    the new channels are then learned slowly; an input skip helps, see unet1d.py.)
    """
    own = network.state_dict()
    lacking = {name for name in set(own) - set(state) if not name.startswith(ADDABLE)}
    if lacking:
        raise InvalidRequestError(f"the init weights lack {sorted(lacking)[:3]}: not the same network")
    for name, value in state.items():
        if name not in own:
            raise InvalidRequestError(f"the init weights have {name}, which the network lacks")
        target = own[name]
        if value.shape == target.shape:
            target.copy_(value)
            continue
        if value.dim() != target.dim() or any(a > b for a, b in zip(value.shape, target.shape)):
            raise InvalidRequestError(f"{name}: the init weights' shape {tuple(value.shape)} does not fit "
                                      f"{tuple(target.shape)}")
        if name == "stem.weight":
            target[:, value.shape[1]:] = 0
        target[tuple(slice(0, n) for n in value.shape)] = value
    network.load_state_dict(own)


def new_manifest(config: LatentTrainConfig, labels: list[str], codec_spec: dict, latent_channels: int,
                 length: int, sample_rate: int) -> dict:
    network_args = dict(config.network, in_channels=latent_channels, num_labels=len(labels), pos_dim=32)
    # a new model gets the input skip unless told otherwise (session 5: without it a model left the
    # codec's envelope channels as noise; with it the training loss fell from 0.67 to 0.50 in 800 steps)
    network_args["input_skip"] = bool(network_args.get("input_skip", True) if config.input_skip is None
                                      else config.input_skip)
    network_args["attention"] = [False] * len(network_args["widths"])  # fully convolutional: any length
    manifest = {
        "format": 1,
        "name": config.name,
        "kind": "latent",
        "objective": "blend",
        "description": "Latent drum one-shots: iterative alpha-blending on an audio autoencoder's latent, "
                       "class-conditional, any length up to the training clips'.",
        "sample_rate": sample_rate,
        "length": length,                # the longest sound it makes (its training clips)
        "channels": 2,
        "labels": labels,
        "aliases": {},
        "conditioners": ["label"],
        # euler_a: on the latent drums it halved the kick's Fréchet ratio and read 66 % of snares as
        # snares against 38 % with dpmpp_2m (docs/latent.md, "Session 6 results")
        "defaults": {"sampler": "euler_a", "steps": 16, "guidance": 2.0},
        "codec": codec_spec,
        "network": {"type": "unet1d", "args": network_args},
        "training": {"steps": 0, "examples": 0, "data": "", "sessions": []},
    }
    return with_conditions(manifest, config)


def with_conditions(manifest: dict, config: LatentTrainConfig) -> dict:
    """The manifest declaring what the model trained by ``config`` takes: its label (dropout as
    configured) and, with ``controls``, the loudness and onset curves (read by zero-initialised
    projections, so an --init model gains them without changing)."""
    specs = [dataclasses.replace(LABEL_SPEC, dropout=config.label_dropout)] if manifest.get("labels") else []
    args = manifest["network"]["args"]
    if config.controls or args.get("controls"):
        specs += [dataclasses.replace(spec, dropout=config.control_dropout) for spec in CONTROL_SPECS]
        args["controls"] = [spec.name for spec in CONTROL_SPECS]
        manifest["defaults"].setdefault("control_guidance", 1.0)
    else:  # an --init model steered onto curves (python -m engine steer) still is: its codec did not change
        specs += [spec for spec in condition_specs(manifest) if spec.enters == STEERING]
    if config.prompts or args.get("embeddings", {}).get("prompt"):
        specs.append(dataclasses.replace(PROMPT_SPEC, dropout=config.prompt_dropout))
    manifest["conditions"] = [spec.to_dict() for spec in specs]
    manifest["conditioners"] = [spec.name for spec in specs]
    manifest["training"]["all_dropout"] = config.all_dropout
    return manifest


def dataset_level_floors(dataset, hop: int = 128, chunk: int = 64) -> dict:
    """The level floors (:func:`engine.conditions.level_floors`) of ``dataset``'s clips: per category
    the quarter-quantile of their loudest-frame RMS, what a network trained on them knows as quiet."""
    peaks = torch.cat([dsp.rms_db(dataset.audio[i: i + chunk].float(), hop).amax(-1)
                       for i in range(0, len(dataset.records), chunk)])
    return level_floors(peaks, [record["category"] for record in dataset.records])


def set_level_floors(manifest: dict, floors: dict) -> bool:
    """Record ``floors`` on the manifest's rms condition (a frame-wise curve the network reads);
    False when the model takes no such curve."""
    for spec in manifest.get("conditions", []):
        if spec["name"] == "rms" and spec["enters"] == PER_FRAME:
            spec["level_floor_db"] = dict(floors)
            return True
    return False


def blend_batch(latent: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(x_alpha, alpha, target d = z - noise) with alpha stratified over the batch."""
    batch = latent.shape[0]
    alpha = ((torch.arange(batch) + torch.rand(batch, generator=generator)) / batch).to(latent.device)
    eps = torch.randn(latent.shape, generator=generator).to(latent.device)
    a = alpha[:, None, None]
    return (1 - a) * eps + a * latent, alpha, latent - eps


@torch.no_grad()
def channel_losses(network: torch.nn.Module, latent: torch.Tensor, cond: dict | torch.Tensor | None,
                   points: int = 8, seed: int = 0) -> torch.Tensor:
    """``(C,)``: the blending loss of each latent channel on fixed latents, fixed noise and a fixed
    grid of alphas. Read per channel group it shows a kind of channel the model has not learned
    (session 5: a model moved onto the band-envelope codec still left its envelope channels at
    ~0.85 after 9700 steps, against 0.2-0.3 for the learned ones, and sampled them as noise)."""
    generator = torch.Generator().manual_seed(seed)
    cond = {"label": cond} if torch.is_tensor(cond) else cond
    total = torch.zeros(latent.shape[1])
    for a_value in torch.linspace(0.05, 0.95, points):
        eps = torch.randn(latent.shape, generator=generator).to(latent.device)
        alpha = torch.full((latent.shape[0],), float(a_value), device=latent.device)
        prediction = network((1 - a_value) * eps + a_value * latent, alpha, cond)
        total += (prediction.float() - (latent - eps)).pow(2).mean(dim=(0, 2)).cpu()
    return total / points


def validation_loss(network: torch.nn.Module, latent: torch.Tensor, cond: dict | torch.Tensor | None,
                    points: int = 8, seed: int = 0) -> float:
    """The blending loss over all channels (a fresh net: ~2); see :func:`channel_losses`."""
    return float(channel_losses(network, latent, cond, points, seed).mean())


def encode_copies(codec: torch.nn.Module, dataset, copies: int, seed: int, device: torch.device,
                  batch: int = 16, progress: bool = True, controls: bool = False,
                  embed=None) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """Encode every clip once as it is and ``copies - 1`` times augmented: ``(copies * clips, C, F)``.

    Row ``k * len(dataset) + i`` is copy ``k`` of clip ``i`` (copy 0 unaugmented). Encoding costs
    about twice a U-Net training step on a CPU, so augmenting each batch afresh triples the step
    time; a fixed set of augmented copies keeps most of the benefit at the cached speed. The
    copies are drawn from ``seed`` alone, so a resumed run trains on the same ones.

    With ``controls`` the augmented copies also get loudness shapes (:func:`shape_augment`:
    double hits, swells, gates) and every row's control curves are measured on the audio it was
    encoded from: ``(rows, 4, F)`` (RMS value and mask, onsets value and mask); else None.
    With ``embed`` (audio -> ``(B, D)`` unit vectors: an embedder's ``audio``), the third tensor holds
    every row's audio embedding, measured on the same augmented audio; else None.
    """
    generator = torch.Generator().manual_seed(seed + 7919)
    chunks, curves, vectors = [], [], []
    with torch.no_grad(), tqdm(total=copies * len(dataset), desc="encode latents", unit="clip",
                               disable=not progress) as bar:
        for copy in range(copies):
            for start in range(0, len(dataset), batch):
                audio = torch.stack([dataset[j]["audio"] for j in range(start, min(start + batch, len(dataset)))])
                if copy:
                    audio = augment(audio, generator)
                    if controls:
                        audio = shape_augment(audio, generator, sample_rate=dataset.sample_rate)
                latent = codec.encode(audio.to(device))
                chunks.append(latent)
                if controls:
                    curves.append(clip_controls(audio, codec, dataset.sample_rate, latent.shape[-1]))
                if embed is not None:
                    vectors.append(embed(audio.float().cpu()))
                bar.update(len(audio))
    return (torch.cat(chunks), torch.cat(curves) if controls else None,
            torch.cat(vectors) if embed is not None else None)


def clip_controls(audio: torch.Tensor, codec: torch.nn.Module, sample_rate: int, frames: int) -> torch.Tensor:
    """``(B, 4, F)``: the RMS and onset control channels measured on ``audio`` at the latent frame rate."""
    hop = getattr(codec, "hop", None) or max(1, audio.shape[-1] // frames)
    measured = controls_from_audio(audio.float().cpu(), hop, sample_rate, frames)
    return torch.cat([measured["rms"], measured["onsets"]], dim=1)


CONTROL_PREFIXES = ("control_", "embedding_in.")  # control_down.*, control_up.*, the prompt's MLP: new inputs


def embedder_spec(config: LatentTrainConfig, run: Path) -> dict:
    """The manifest's ``embedder`` entry for a model trained on prompts: the embedder folder is
    copied into the run beside ``model/`` (as the codec is), and referenced by name and id."""
    from ..embedders.base import read_embedder_manifest
    if config.prompts == "laion":  # laion-clap: loaded by name (it keeps its own weights), not copied
        from ..embedders.laion import LAION_DIM
        return {"model": "laion", "dim": LAION_DIM}
    source = Path(config.prompts)
    embedder_manifest = read_embedder_manifest(source)
    name = embedder_manifest.get("name") or source.name
    if (run / name).resolve() != source.resolve():
        copy_folder(source, run / name)
    return {"model": name, "dim": int(embedder_manifest["dim"])}


def copy_codec_and_embedder(manifest: dict, init: str | Path, run: Path) -> None:
    """Copy the codec and embedder folders ``manifest`` names (found beside ``init``) into ``run``, so
    ``run/model`` loads beside them as a trained model does (laion-clap is loaded by name, not copied)."""
    for what in ("codec", "embedder"):
        name = (manifest.get(what) or {}).get("model")
        if name and name != "laion":
            copy_folder(find_codec_folder(name, init, what=what), run / name)


def prompt_tables(embedder, embedder_manifest: dict, dataset, data: str, manifest: dict | None = None) -> torch.Tensor:
    """``(clips, K, D)``: the text embeddings of every clip's K captions, in the embedder's own
    words (its phrasing count and seed, its caption thresholds), so "dark" means what it meant to it.

    The thresholds are the model's own when its ``manifest`` records them (``captions.thresholds``:
    a fine-tune and its student caption as their teacher did); else the embedder's, completed with
    the descriptors they lack measured on ``dataset``'s real clips (:func:`completed_thresholds`: a
    hat's thinness, newer than the shipped embedder), and recorded in ``manifest`` so the model's
    kit hits are captioned alike (``python -m engine envelopes``). An embedder without thresholds
    (laion-clap) has them measured on ``dataset``."""
    from ..data.captions import completed_thresholds, dataset_captions, dataset_descriptors, descriptor_thresholds
    from .clap import _kit_info
    settings = embedder_manifest.get("captions", {})
    described = dataset_descriptors(dataset, progress=False)  # measured once: for the thresholds and the captions
    thresholds = (manifest or {}).get("captions", {}).get("thresholds")
    if thresholds is None:
        recorded = settings.get("thresholds")
        thresholds = (completed_thresholds(recorded, dataset, described) if recorded
                      else descriptor_thresholds(dataset, described))
        if manifest is not None:
            manifest["captions"] = {"thresholds": thresholds}
    captions = dataset_captions(dataset, thresholds, int(settings.get("count", 6)), int(settings.get("seed", 0)),
                                descriptors=described, kit_info=_kit_info(Path(data), dataset), progress=False)
    flat = [c for clip in captions for c in clip]
    text = torch.cat([embedder.text(flat[i:i + 256]) for i in range(0, len(flat), 256)])
    return text.view(len(captions), -1, text.shape[-1])


def load_run_embedder(manifest: dict, run: Path, device: torch.device):
    """The embedder a prompted model's run trains with: laion-clap by name, else its folder in the run."""
    from ..embedders.base import load_embedder
    name = manifest["embedder"]["model"]
    return load_embedder(name if name == "laion" else run / name, device)


def batch_source(config, manifest: dict, dataset, codec: torch.nn.Module, network: torch.nn.Module,
                 device: torch.device, embedder=None, progress: bool = True) -> Callable:
    """``draw(generator) -> (latent, cond, labels)``: one training batch of unit-scale latents, the
    condition mapping the network reads, every condition of the manifest measured on the clips and
    dropped as its spec says, and each clip's label index before any was dropped (a distillation
    that takes some categories from another teacher reads it).

    Shared by ``train latent`` and the latent model's guidance distillation
    (:mod:`engine.train.distill_latent`), so a student learns on exactly the inputs its teacher
    was trained on. ``config`` gives the batch settings both configs name alike: ``batch``,
    ``balance``, ``augment``, ``augment_copies``, ``seed``, ``text_share``, ``short_crops``, ``data``.
    """
    null = network.num_labels
    label_map = common.label_map(dataset.label_names, manifest["labels"], null)
    copies = 1 if not config.augment else config.augment_copies  # 0: nothing cached
    specs = condition_specs(manifest)
    takes_controls = bool(manifest["network"]["args"].get("controls"))
    if embedder is not None and not copies:
        raise InvalidRequestError("training on prompts needs cached latents (--augment-copies K or --no-augment)")
    if embedder is not None:
        caption_vectors = prompt_tables(embedder, getattr(embedder, "manifest", {}), dataset, config.data, manifest)
    cached, cached_controls, audio_vectors = encode_copies(
        codec, dataset, copies, config.seed, device, progress=progress, controls=takes_controls,
        embed=None if embedder is None else (lambda audio: embedder.audio(audio, dataset.sample_rate))) \
        if copies else (None, None, None)
    all_dropout = float(manifest["training"].get("all_dropout", 0.0))
    clip_labels = dataset.labels
    frames = codec.latent_length(dataset.length)

    def draw(generator: torch.Generator) -> tuple[torch.Tensor, dict]:
        index = common.batch_index(clip_labels, config.batch, config.balance, generator)
        cond = {"label": label_map[clip_labels[index]]}  # from the index: no clip is read for its label
        clips = index
        if cached is not None:
            if copies > 1:  # which copy of each drawn clip (copy k of clip i is row k * clips + i)
                index = index + torch.randint(0, copies, index.shape, generator=generator) * len(dataset)
            latent = cached[index.to(cached.device)]
            curves = None if cached_controls is None else cached_controls[index]
        else:
            audio = augment(torch.stack([dataset[int(i)]["audio"] for i in index]), generator)
            if takes_controls:
                audio = shape_augment(audio, generator, sample_rate=dataset.sample_rate)
            with torch.no_grad():
                latent = codec.encode(audio.to(device))
            curves = clip_controls(audio, codec, dataset.sample_rate, latent.shape[-1]) if takes_controls else None
        if audio_vectors is not None:  # the clip's own sound, or one of its captions, as the prompt
            text = caption_vectors[clips, torch.randint(caption_vectors.shape[1], clips.shape, generator=generator)]
            use_text = (torch.rand(clips.shape, generator=generator) < config.text_share)[:, None]
            cond["prompt"] = torch.where(use_text, text, audio_vectors[index])
        if curves is not None:
            cond.update(roughen_controls({"rms": curves[:, :2], "onsets": curves[:, 2:]}, generator))
        cond = {name: value.to(device) for name, value in
                drop_conditions(cond, specs, generator, null, all_dropout).items()}
        if torch.rand((), generator=generator) < config.short_crops and frames > network.hop:
            keep = int(torch.randint(1, frames // network.hop, (), generator=generator)) * network.hop
            latent = latent[..., :keep]
            cond = {name: value[..., :keep] if value.dim() == 3 else value for name, value in cond.items()}
        return latent.float(), cond, label_map[clip_labels[clips]].to(device)

    return draw


def train_latent(config: LatentTrainConfig) -> Path:
    """Run ``config.steps`` steps (or until ``max_minutes``), saving as it goes; returns the model folder."""
    if config.augment_copies < 0 or (config.augment_copies and not config.augment):
        raise InvalidRequestError(f"augment_copies (--augment-copies) must be 0 or more and needs augmentation on, "
                                  f"not --no-augment (got {config.augment_copies} with augment {config.augment})")
    dataset = common.open_dataset(config.data, config.categories, config.length or DEFAULT_LENGTH, batch=config.batch)
    probe = torch.stack([dataset[i]["audio"] for i in range(0, len(dataset), max(1, len(dataset) // 64))])
    run = Path(config.run)

    def adapt_init(_: loop.Trainer, manifest: dict) -> dict:
        if manifest.get("objective") != "blend":
            raise InvalidRequestError(f"{config.init} is not an alpha-blending latent model")
        if config.input_skip:
            manifest["network"]["args"]["input_skip"] = True
        manifest = with_conditions(manifest, config)
        spec = manifest["codec"]
        if config.codec is not None and config.codec != "encodec":  # move the model onto another codec
            manifest["codec"] = _codec_spec(config, run, dataset.sample_rate, probe)
            if spec.get("compand"):
                manifest["codec"]["compand"] = extend_compand(spec["compand"], manifest["codec"], run, probe,
                                                            dataset.sample_rate, config.compand_envelope)
        elif "model" in spec:  # bring the init model's codec into the run, keeping its latent transform
            source = find_codec_folder(spec["model"], config.init)
            manifest["codec"] = _codec_spec(LatentTrainConfig(codec=str(source)), run, dataset.sample_rate, probe)
            if spec.get("compand"):
                manifest["codec"]["compand"] = spec["compand"]
        return manifest

    def fresh_manifest(trainer: loop.Trainer) -> dict:
        spec = None
        if trainer.place.main:
            spec = _codec_spec(config, run, dataset.sample_rate, probe)
            if config.compand > 0:  # fit the latent transform once, on the training clips
                plain = load_codec({"codec": spec, "sample_rate": dataset.sample_rate, "channels": 2, "network": {}},
                                   run / "model")
                scales = compand_scales(plain, config.compand, config.compand_envelope)
                spec["compand"] = compand.fit(plain, probe.float(), scales).spec()
        if trainer.place.world > 1:  # rank 0 copied the codec folder (or measured EnCodec's scale); share it
            box = [spec]
            torch.distributed.broadcast_object_list(box, src=0)
            spec = box[0]
        return new_manifest(config, list(dataset.label_names), spec, 0, dataset.length, dataset.sample_rate)

    trainer = loop.begin(config, fresh_manifest, adapt_init)
    manifest, device = trainer.manifest, trainer.device
    set_level_floors(manifest, dataset_level_floors(dataset))  # the clips this network learns from
    if manifest["length"] != dataset.length or manifest["sample_rate"] != dataset.sample_rate:
        raise InvalidRequestError(f"the model expects {manifest['length']} samples at {manifest['sample_rate']} Hz "
                                  f"but the data set has {dataset.length} at {dataset.sample_rate} Hz")
    codec_probe = dict(manifest, network={})  # the channel check is done below, once the count is known
    codec = load_codec(codec_probe, trainer.model_dir).to(device).eval().requires_grad_(False)
    if isinstance(codec, compand.CompandedCodec) and not codec.ranged:  # a model from before per-channel ranges
        codec = codec.with_ranges(probe.float().to(device)).requires_grad_(False)
        manifest["codec"]["compand"] = codec.spec()
        common.log.info("measured the latent's per-channel ranges on %d clips (decode clamps to them)", len(probe))
    if trainer.state is None and not config.init and "bypass" in getattr(codec, "channel_groups", dict)():
        # a new model guides only above the bypassed low sub-bands: guided there, 14 of 32 latent
        # snares read as kicks at guidance 3 and 16 of 32 at 4; spared, 2 of 64 at 3 and at 4
        # (docs/latent.md, "Session 8 results")
        manifest["defaults"].setdefault("guidance_weights", {"bypass": 0.0})
    frames = codec.latent_length(dataset.length)
    args = manifest["network"]["args"]
    args["in_channels"] = codec.latent_channels
    embedder = None
    if config.prompts or manifest.get("embedder"):
        if config.prompts and trainer.state is None:
            manifest["embedder"] = embedder_spec(config, run)
            args["embeddings"] = {"prompt": manifest["embedder"]["dim"]}
        embedder = load_run_embedder(manifest, run, device)
    if args.get("pos_dim"):  # positions in seconds: latent frames per second of this codec
        args.setdefault("frame_rate", frames * dataset.sample_rate / dataset.length)
    with seeded_init(config.seed):
        network = build_network(manifest["network"])
    if frames % network.hop:
        raise InvalidRequestError(f"{dataset.length} samples make {frames} latent frames, not a multiple of the "
                                  f"network's hop {network.hop}; build the data with a --length that is a multiple "
                                  f"of {getattr(codec, 'hop', 1) * network.hop} samples or change the factors")
    loop.prepare(trainer, network, load_init=lambda net: grow_into(net, read_weights(config.init)),
                 lr_scales={prefix: config.control_lr_scale for prefix in CONTROL_PREFIXES})
    draw = batch_source(config, manifest, dataset, codec, network, device, embedder, progress=trainer.place.main)

    def batch_losses(generator: torch.Generator) -> loop.Losses:
        latent, cond, _ = draw(generator)
        noisy, alpha, target = blend_batch(latent, generator)
        with trainer.autocast():
            prediction = trainer.trainable(noisy, alpha, cond)
        return {"loss": F.mse_loss(prediction.float(), target)}

    def render(shipped: torch.nn.Module, step: int) -> None:
        loop.render_samples(shipped, codec, manifest, run / "samples", step, config.render_steps)

    return loop.run_loop(trainer, batch_losses, render=render)
