"""From a loaded network and a starting noise to a clean latent: the one path every caller uses.

The Studio, the training renders, the evaluation and the benchmarks all sample through
:func:`sample_latent`, so a sound rendered during training is the sound the studio would make.
The model's manifest says which picture it was trained in (``objective``): ``v_cosine``
(v-objective on the cosine schedule) or ``blend`` (iterative alpha-blending). Any sampler works
with any picture through the VE denoiser wrappers, and ``iadb`` additionally runs the native
alpha-blending steps for blending models.
"""

from __future__ import annotations

import math
from typing import Callable, Mapping

import torch

from .conditions import (CLASS, CONTROL_GROUP, CURVE, LABEL_GROUP, LABEL_SPEC, ConditionSpec, condition_specs,
                         without)
from .diffusion.guidance import GUIDANCE_INPUT, guidance_features
from .diffusion.schedules import blend_alpha_to_sigma, cosine_t_to_sigma
from .diffusion import (alphas_uniform, blend_denoiser, blend_model, invert_iadb, nested_guidance, projected,
                        projected_blend, sample_ddim, sample_dpmpp_2m, sample_euler_ancestral, sample_iadb,
                        sigmas_cosine, sigmas_karras, v_denoiser)
from .errors import CheckpointError, InvalidRequestError

SIGMA_MIN, SIGMA_MAX = 0.01, 80.0
SAMPLERS_BY_OBJECTIVE = {"v_cosine": ("dpmpp_2m", "ddim", "euler_a"),
                         "blend": ("dpmpp_2m", "ddim", "euler_a", "iadb")}
INVERSION_REFINE = 2  # fixed-point iterations per alpha-blending inversion step (docs/latent.md, experiment 4)


def samplers_for(manifest: dict) -> tuple[str, ...]:
    if distilled_grid(manifest) is not None:
        return ("ddim",)
    return SAMPLERS_BY_OBJECTIVE[manifest.get("objective", "v_cosine")]


def is_noise_grid(values) -> bool:
    """Whether ``values`` are noise levels a step-distilled model can walk: finite numbers,
    strictly decreasing, ending at 0 (checked on a manifest and on a ``train steps --grid``)."""
    return (isinstance(values, (list, tuple)) and len(values) >= 2 and
            all(isinstance(v, (int, float)) and math.isfinite(v) for v in values) and
            values[-1] == 0 and all(a > b for a, b in zip(values, values[1:])))


def distilled_grid(manifest: dict) -> list[float] | None:
    """The noise levels (VE sigma, highest first, ending at 0) a step-distilled model was trained
    to walk with DDIM (its manifest's ``steps_distilled.sigmas``; :mod:`engine.train.progressive`),
    or None for a model that runs any sampler on any number of steps."""
    spec = manifest.get("steps_distilled")
    if spec is None:
        return None
    sigmas = spec.get("sigmas") if isinstance(spec, dict) else None
    if not isinstance(sigmas, list) or not is_noise_grid(sigmas):
        raise CheckpointError(f"steps_distilled.sigmas must be decreasing noise levels ending at 0, got {sigmas!r}")
    return [float(v) for v in sigmas]


def guidance_weights(manifest: dict, codec: torch.nn.Module) -> torch.Tensor | None:
    """How much of the guidance acts on each latent channel, ``(C,)``, or None (all of it): the
    model's own ``defaults.guidance_weights`` (:func:`channel_weights`). Why: guidance extrapolates
    away from the unconditional prediction, and on the bypassed low sub-bands (0-690 Hz) that means
    "more low end than the average drum", which turns guided snares into kicks (docs/latent.md,
    session 8); the class lives in the other channels, which take the full scale. A label may
    spread its guidance otherwise (``per_label``, ``with_curves``: :func:`label_defaults`)."""
    return channel_weights(manifest.get("defaults", {}).get("guidance_weights"), codec)


def channel_weights(spec: dict | None, codec: torch.nn.Module) -> torch.Tensor | None:
    """``(C,)`` weights from ``spec``, a mapping of the codec's channel groups
    (``codec.channel_groups()``: learned, bypass, envelope) to a weight w in [0, 1]; a channel's
    scale is then ``1 + w * (guidance - 1)``, so w = 0 keeps that group at the plain conditional
    prediction. None for no spec; a CheckpointError names a group the codec lacks or a bad weight."""
    if not spec:
        return None
    if not isinstance(spec, dict):
        raise CheckpointError(f"guidance weights are a mapping of codec channel groups to weights, got {spec!r}")
    groups = codec.channel_groups() if hasattr(codec, "channel_groups") else {}
    unknown = sorted(set(spec) - set(groups))
    if unknown:
        raise CheckpointError(f"guidance_weights names the channel groups {unknown}; this model's codec has "
                              f"{sorted(groups) or 'none'}")
    weights = torch.ones(codec.latent_channels)
    for name, weight in spec.items():
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not 0.0 <= weight <= 1.0:
            raise CheckpointError(f"guidance weight of {name!r} must be a number in [0, 1], got {weight!r}")
        weights[groups[name]] = float(weight)
    return weights


def every_guidance_weights(defaults: dict) -> list[dict]:
    """Every ``guidance_weights`` spec a model's defaults hold (its own, per label, with curves), so
    publishing can check them all against the codec."""
    layers = [defaults, defaults.get("with_curves") or {}]
    specs = []
    for layer in layers:
        specs.append(layer.get("guidance_weights"))
        specs.extend(settings.get("guidance_weights") for settings in (layer.get("per_label") or {}).values())
    return [spec for spec in specs if spec]


def _asked(spec: ConditionSpec, value: torch.Tensor, num_labels: int) -> bool:
    """Whether a condition's input is set for some sound of the batch (not its null)."""
    if spec.kind == CLASS:
        if value.is_floating_point():  # a blend's weights: asked unless all on "no label"
            return bool((value[..., num_labels] < 1.0).any())
        return bool((value != num_labels).any())
    if spec.kind == CURVE:
        return bool(value[:, 1].any())  # the mask channel
    return bool(value.any())


def distilled_from(manifest: dict) -> str | None:
    """The name of the model a distilled model learned from (the last folder of its step or
    guidance teacher's path, as its manifest records it), or None for a model trained on data.
    A step-distilled student names its own teacher, not the teacher's teacher."""
    for key in ("steps_distilled", "guidance_distilled"):
        spec = manifest.get(key)
        teacher = spec.get("teacher") if isinstance(spec, dict) else None
        if isinstance(teacher, str) and teacher.strip():
            # split by hand: a manifest written on Windows records backslashes
            return teacher.strip().replace("\\", "/").rstrip("/").rsplit("/", 1)[-1] or None
    return None


def distilled_top(manifest: dict) -> float | None:
    """The highest guidance scale a guidance-distilled model was trained for (its manifest's
    ``guidance_distilled.top``; :mod:`engine.train.distill`), or None for a model guided the usual
    way (two network calls a step)."""
    spec = manifest.get("guidance_distilled")
    if spec is None:
        return None
    top = spec.get("top") if isinstance(spec, dict) else None
    if not isinstance(top, (int, float)) or not top > 0:
        raise CheckpointError(f"guidance_distilled.top must be a positive number, got {top!r}")
    return float(top)


def _distilled_input(network: torch.nn.Module, cond: dict, scale: float, top: float | None) -> torch.Tensor:
    """The guidance features a guidance-distilled network reads, one row per sound of the batch."""
    if top is None:
        raise CheckpointError("the network reads a guidance scale but its manifest has no guidance_distilled entry")
    if not 0.0 <= scale <= top:
        raise InvalidRequestError(f"this model was distilled for guidance 0-{top:g}, got {scale:g}")
    label = cond.get("label")
    rows = 1 if label is None else label.shape[0]
    features = guidance_features(scale, network.embeddings[GUIDANCE_INPUT], top)
    return features.expand(rows, -1).to(next(network.parameters()).device)


def conditioned(network: torch.nn.Module, cond: Mapping[str, torch.Tensor] | None, guidance: float,
                weights: torch.Tensor | None = None, control_guidance: float = 1.0,
                specs: tuple[ConditionSpec, ...] | None = None, distilled: float | None = None) -> Callable:
    """``(x, t) -> prediction``: the network with its conditions bound, guided per group.

    The conditions' guidance groups come from their specs (``engine.conditions``; a network
    without declared specs has at most a label): ``label`` (the class label; the prompt next) with
    scale ``guidance``, spread per latent channel by ``weights`` (:func:`guidance_weights`), and
    ``controls`` (the curves) with ``control_guidance`` ("how strictly to follow the curves").
    A group the request leaves empty is not guided. The network is fed in its own dtype (fp16 on
    CUDA) and answers in fp32, where sampling runs.

    A guidance-distilled network (``distilled``: :func:`distilled_top`) reads the label group's
    scale as an input and answers for it in one call (half the work of a guided step); only the
    controls, if any, are still guided by extra calls. With ``weights`` it answers at scale 1 and at
    ``guidance``, mixed per channel (:func:`_spread`).
    """
    dtype = next(network.parameters()).dtype
    cond = dict(cond or {})
    num_labels = getattr(network, "num_labels", 0)
    specs = specs if specs is not None else ((LABEL_SPEC,) if num_labels else ())
    asked = [s for s in specs if s.name in cond and _asked(s, cond[s.name], num_labels)]
    labels = [s.name for s in asked if s.group == LABEL_GROUP]
    controls = [s.name for s in asked if s.group == CONTROL_GROUP]
    if GUIDANCE_INPUT in getattr(network, "embeddings", {}):
        if weights is not None and guidance != 1.0 and labels:
            return _spread(conditioned(network, cond, guidance, None, control_guidance, specs, distilled),
                           conditioned(network, cond, 1.0, None, control_guidance, specs, distilled),
                           weights.view(1, -1, 1))  # moved to the answers' device and dtype there
        cond[GUIDANCE_INPUT] = _distilled_input(network, cond, float(guidance) if labels else 1.0, distilled)
        labels = []  # guided inside the network
    levels, scales = [without(cond, [*labels, *controls], num_labels)], []
    if controls:
        levels.append(without(cond, labels, num_labels))
        scales.append(float(control_guidance))
    if labels:
        levels.append(cond)
        scales.append(guidance if weights is None or guidance == 1.0 else
                      (1.0 + weights.to(next(network.parameters()).device) * (guidance - 1.0)).view(1, -1, 1))
    if not scales:
        return lambda x, t: network(x.to(dtype), t, cond).float()
    guided = nested_guidance(network, levels, scales)
    return lambda x, t: guided(x.to(dtype), t).float()


def _spread(guided: Callable, plain: Callable, weights: torch.Tensor) -> Callable:
    """A guidance-distilled network's guidance spread per channel: ``plain + w (guided - plain)``,
    from its plain conditional step (scale 1) and its guided one. The network's answer is close to
    linear in the scale it reads (it learned the teacher's ``e_u + s (e_c - e_u)``), so this is the
    scale ``1 + w (s - 1)`` per channel, as a teacher's weights give, at twice the calls. Why: a
    kick with a curve needs the label's full pull on its low band but not on its highs
    (``docs/design-notes.md``, "A kick's guidance spread per channel")."""
    def spread(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        base = plain(x, t)
        return base + weights.to(base) * (guided(x, t) - base)
    return spread


def noise_levels(objective: str, sampler: str, steps: int, grid: list[float] | None = None) -> torch.Tensor:
    """The grid a sampler walks: sigmas (VE) for ddim/dpmpp_2m, alphas for native iadb; a
    step-distilled model's own ``grid`` (:func:`distilled_grid`) when it has one."""
    if grid is not None:
        return torch.tensor(grid, dtype=torch.float32)
    if sampler == "iadb":
        return alphas_uniform(steps)
    if sampler == "ddim" and objective == "v_cosine":
        return sigmas_cosine(steps)
    return sigmas_karras(steps, SIGMA_MIN, SIGMA_MAX)


def _check(manifest: dict, sampler: str, steps: int) -> str:
    objective = manifest.get("objective", "v_cosine")
    grid = distilled_grid(manifest)
    if grid is not None and (sampler != "ddim" or steps != len(grid) - 1):
        raise InvalidRequestError(f"this model was distilled to make a sound in {len(grid) - 1} ddim steps; "
                                  f"got {steps} {sampler} steps (its teacher "
                                  f"{manifest['steps_distilled'].get('teacher', '')} takes any)")
    if sampler not in SAMPLERS_BY_OBJECTIVE[objective]:
        raise InvalidRequestError(
            f"sampler {sampler!r} does not fit this model; choose one of {list(SAMPLERS_BY_OBJECTIVE[objective])}")
    if not 1 <= steps <= 1000:
        raise InvalidRequestError(f"steps must be between 1 and 1000, got {steps}")
    return objective


def variety_interval(variety: float) -> tuple[float, float]:
    """The noise levels (VE sigma, low and high) where label and prompt guidance acts, for a
    "variety" from 0 (safe: everywhere, as trained and measured) to 1 (surprising: only below
    sigma 1, in the last third of the steps).

    Why: guidance at high noise levels is what narrows a model to its category's average sound
    (it picks the coarse shape: decay, body, pitch), while at low levels it is nearly free of
    that cost; guiding only in an interval keeps accuracy and gives back variety (Kynkäänniemi
    et al. 2024, "Applying guidance in a limited interval"). The upper bound moves down the log
    sigma range from SIGMA_MAX to 1 as ``variety`` goes from 0 to 1; measured in
    ``docs/design-notes.md`` ("Variety")."""
    variety = min(max(float(variety), 0.0), 1.0)
    high = SIGMA_MAX ** (1.0 - variety)   # 80 at 0, ~9 at 0.5, 1 at 1
    return 0.0, (math.inf if variety == 0.0 else high)


LABEL_DEFAULT_KEYS = ("sampler", "steps", "guidance", "variety", "control_guidance", "shape", "guidance_weights",
                      "hit_prompt", "kit_spread", "one_hit_db", "redraw_under_db", "width", "variant", "kit_bands")
MODEL_SETTING_KEYS = ("guidance_weights", "hit_prompt", "kit_spread", "one_hit_db", "redraw_under_db", "variant")
"""The label defaults that are the model's own settings, applied to each sound it makes, not fields of a
request (no field of the studio shows them; ``publish`` checks them on their own)."""


LAYERS = ("per_label", "with_curves", "with_prompt")
"""The keys of a model's defaults that hold further defaults, not settings (:func:`label_defaults`)."""


def label_defaults(defaults: dict, label: str | None, curves: bool = False, prompt: bool = False) -> dict:
    """A model's generation defaults for ``label``: its manifest's ``defaults`` with the entries of
    ``defaults.per_label[label]`` in their place, and ``variety`` as a number (it may be one, or a
    mapping from label to number, labels it does not name and no label taking 0). Per label
    because samplers and guidance buy different trades per category: the latent student's kicks
    read as kicks and sit far closer to real kits under ``dpmpp_2m`` at a higher scale, its snares
    and prompts do better under ``euler_a`` (``docs/design-notes.md``, "Defaults per category").

    With ``curves`` (a loudness curve drawn, or a prompt's kit hit; not a kit hit that only shapes a
    Sound asked alone: `latent-fast`'s percussion guided at 10 with a curve read as percussion .83
    on kit hits at seed 1000, .88 at its own 6.5), ``defaults.with_curves`` (the same form) goes on top:
    a kick guided only at low noise takes its shape from a long drawn boom and reads as a tom, so
    `latent-fast` guides a kick with a curve at every noise level (variety 0: 56 of 64 held-out
    kick curves read as kicks against 50).

    With ``prompt`` (the user's prompt, or a reference's embedding for "more like this"),
    ``defaults.with_prompt`` (the same form) goes on top of that: a prompt is a looser pull on the
    instrument than the label alone, so a Sound that is guided gently for variety may need its
    full scale back under a prompt (`latent-fast`'s cymbals: guidance 1.5 alone, 3 with a prompt;
    ``docs/design-notes.md``, "Cymbals guided gently")."""
    def layer(out: dict, source: dict) -> None:
        out.update({key: value for key, value in source.items() if key not in LAYERS})
        if label is not None:
            out.update(source.get("per_label", {}).get(label, {}))

    out: dict = {}
    layer(out, defaults)
    if curves:
        layer(out, defaults.get("with_curves", {}))
    if prompt:
        layer(out, defaults.get("with_prompt", {}))
    variety = out.get("variety", 0.0)
    out["variety"] = float(variety.get(label, 0.0) if isinstance(variety, dict) else variety)
    return out


ONE_CLEAN_HIT_KEYS = ("one_hit_db", "redraw_under_db")


def holds_one_hit(defaults: dict) -> bool:
    """Whether a model's defaults set a one-hit limit (``one_hit_db``) or a level under which a sound
    is drawn again (``redraw_under_db``), model-wide or for some Sound: then its sounds asked as one
    clean hit are held (:func:`engine.steering.one_hit_projection`) or drawn again
    (:func:`engine.pipeline.redraw_quiet`)."""
    layers = [defaults, *defaults.get("per_label", {}).values()]
    return any(key in layer for layer in layers for key in ONE_CLEAN_HIT_KEYS)


def prompt_shape(defaults: dict, label: str | None) -> str:
    """The shape a sound asked for with a prompt takes when the request leaves it open: what the
    model's ``with_prompt`` layer says for ``label`` (model-wide or per label), else "free". Not the
    Sound's own default shape: a random real hit could contradict the prompt ("long roomy snare"),
    so only a model whose kit hits carry captions sets "kit" here, and then the hit is drawn among
    those whose caption matches the prompt (:func:`engine.envelopes.prompt_candidates`)."""
    layer = defaults.get("with_prompt", {})
    return str(layer.get("per_label", {}).get(label, {}).get("shape") or layer.get("shape") or "free")


def default_shape(defaults: dict, label: str | None, prompt: bool = False, hybrid: bool = False) -> str:
    """The shape a request that leaves it open takes: with a prompt, :func:`prompt_shape`; a hybrid
    of two labels, "free"; else ``label``'s own default (``per_label``), else "free".

    Why not a hybrid on its first label's kit hit: the hit is one label's real hit, and its caption
    (a Sound's ``hit_prompt``) that label's words, so the blend came back as the first label.
    `latent-fast`'s hat->cymbal at mix 1 read as a cymbal .22 of the time, snare->perc as
    percussion .47 (``docs/design-notes.md``, "Hybrids on their own shape")."""
    if prompt:
        return prompt_shape(defaults, label)
    if hybrid:
        return "free"
    return str(label_defaults(defaults, label).get("shape", "free"))


def _in_interval(guided: Callable, plain: Callable, interval: tuple[float, float], to_sigma: Callable) -> Callable:
    """``guided`` where the step's noise level lies in ``interval`` (low, high], else ``plain``
    (one conditional call: cheaper too)."""
    low, high = interval

    def choose(x: torch.Tensor, level: torch.Tensor) -> torch.Tensor:
        sigma = float(to_sigma(level.reshape(-1)[0]))
        return guided(x, level) if low < sigma <= high else plain(x, level)

    return choose


@torch.no_grad()
def sample_latent(network: torch.nn.Module, manifest: dict, noise: torch.Tensor, *, sampler: str = "dpmpp_2m",
                  steps: int = 16, guidance: float = 1.0, cond: Mapping[str, torch.Tensor] | None = None,
                  control_guidance: float = 1.0, reference: torch.Tensor | None = None, strength: float = 1.0,
                  callback: Callable[[dict], None] | None = None,
                  step_noise: Callable[[], torch.Tensor] | None = None,
                  guidance_weights: torch.Tensor | None = None,
                  guidance_interval: tuple[float, float] | None = None,
                  project: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
    """Sample a batch of latents from unit ``noise``.

    ``step_noise()`` gives the unit noise a stochastic sampler (``euler_a``) adds at each step;
    pass each sound's own :class:`engine.seeds.SeedNoise` so that a seed gives the same sound in
    any batch. Without it that sampler draws from a generator seeded 0 (deterministic per batch).

    With a ``reference`` latent and ``strength`` < 1 this is a variation by partial noising: the
    reference is noised to the level that ``strength`` picks on the grid (1 = pure noise, a new
    sound; near 0 = almost the reference) and only the remaining steps run.

    ``cond`` is the network's condition mapping (``engine.conditions.network_inputs``);
    ``guidance_weights`` (from :func:`guidance_weights`) spreads the label guidance per latent
    channel and ``control_guidance`` scales the pull of the control curves (:func:`conditioned`).
    ``guidance_interval`` (low, high) in VE sigma (:func:`variety_interval`): the label and prompt
    guidance acts only at noise levels in it; elsewhere the step is one conditional call (the
    curves still guided). ``project(estimate, sigma)`` may move each step's clean estimate before the
    sampler uses it (loudness steering, :func:`engine.steering.loudness_projection`).
    """
    objective = _check(manifest, sampler, steps)
    specs = condition_specs(manifest)
    top = distilled_top(manifest)
    net = conditioned(network, cond, guidance, guidance_weights, control_guidance, specs, top)
    if guidance_interval is not None and guidance != 1.0:
        plain = conditioned(network, cond, 1.0, None, control_guidance, specs, top)
        # the network is called at its own time: alpha (blending models), cosine t (v-models)
        to_sigma = (lambda alpha: blend_alpha_to_sigma(alpha.clamp_min(1e-8))) if objective == "blend" \
            else cosine_t_to_sigma
        net = _in_interval(net, plain, guidance_interval, to_sigma)
    levels = noise_levels(objective, sampler, steps, distilled_grid(manifest)).to(noise.device)
    start = 0
    if reference is not None and strength < 1.0:
        if not 0.0 < strength <= 1.0:
            raise InvalidRequestError(f"variation strength must be in (0, 1], got {strength}")
        start = min(int(round((1.0 - strength) * steps)), steps - 1)
    levels = levels[start:]
    if sampler == "iadb":
        alpha = levels[0]
        x = noise if start == 0 else (1 - alpha) * noise + alpha * reference
        model = blend_model(net) if project is None else projected_blend(blend_model(net), project)
        return sample_iadb(model, x, levels, callback=callback)
    x = noise * levels[0] if start == 0 else reference + noise * levels[0]
    denoise = (v_denoiser if objective == "v_cosine" else blend_denoiser)(net)
    if project is not None:
        denoise = projected(denoise, project)
    if sampler == "euler_a":
        return sample_euler_ancestral(denoise, x, levels, callback=callback, noise=step_noise)
    run = sample_dpmpp_2m if sampler == "dpmpp_2m" else sample_ddim
    return run(denoise, x, levels, callback=callback)


@torch.no_grad()
def invert_latent(network: torch.nn.Module, manifest: dict, latent: torch.Tensor, *, steps: int = 50,
                  cond: Mapping[str, torch.Tensor] | None = None, refine: int = INVERSION_REFINE) -> torch.Tensor:
    """Deterministic inversion: the unit noise that, sampled back with the same grid, gives ``latent``.

    Blending models use the alpha-blending inversion with ``refine`` fixed-point iterations per
    step (see :func:`invert_iadb`); v-models DDIM inversion from the smallest noise level of the
    cosine grid up. Guidance is off (scale 1) as inversion needs it.
    """
    objective = manifest.get("objective", "v_cosine")
    net = conditioned(network, cond, 1.0, specs=condition_specs(manifest), distilled=distilled_top(manifest))
    if objective == "blend":
        return invert_iadb(blend_model(net), latent, alphas_uniform(steps).to(latent.device), refine=refine)
    grid = distilled_grid(manifest)  # a step-distilled model inverts on its own grid, as it samples
    sigmas = (sigmas_cosine(steps) if grid is None else torch.tensor(grid)).flip(0)[1:].to(latent.device)  # 0 dropped
    x = sample_ddim(v_denoiser(net), latent, sigmas)
    return x / sigmas[-1]
