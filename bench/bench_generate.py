"""Benchmark generation and training cost of a model; prints ``name: value`` lines.

    python bench/bench_generate.py                       # the shipped `drums` model
    python bench/bench_generate.py --model runs/drums/model --runs 3

Generation goes through the same path as the studio and the evaluation
(:func:`engine.eval.run.generate_clips` -> :func:`engine.sampling.sample_latent` -> codec), at
the model's default sampler, steps and guidance. Every timing is the median of ``--runs`` runs
after one warm-up run. On the CPU: seconds per sound at batch 1 and batch 16; on CUDA (when
present) the same in fp16 weights, batch 16, with the peak GPU memory. Then the peak CPU RSS of
this process, the parameter counts, and one training step (forward + backward + AdamW step, the
wave trainer's loss) at batch 16, with its peak GPU memory on CUDA.
"""

from __future__ import annotations

import argparse
import math
import resource
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from engine.errors import StudioError  # noqa: E402
from engine.eval.run import generate_clips  # noqa: E402
from engine.models import LoadedModel, load_model, resolve_model  # noqa: E402
from engine.request import GenerationRequest  # noqa: E402
from engine.sampling import label_defaults  # noqa: E402
from engine.studio import Studio  # noqa: E402


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, runs: int, device: torch.device) -> float:
    """Median seconds of ``fn()`` over ``runs`` runs, after one warm-up run."""
    fn()
    _sync(device)
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def _label(model: LoadedModel, wanted: str | None) -> str | None:
    labels = model.manifest.get("labels", [])
    return wanted if wanted else (labels[0] if labels else None)


def generation(model: LoadedModel, batch: int, runs: int, label: str | None, steps: int | None) -> float:
    """Median seconds to generate one batch of ``batch`` sounds."""
    return timed(lambda: generate_clips(model, batch, label=label, steps=steps, batch=batch), runs, model.device)


def studio_render(entry, label: str | None, args: argparse.Namespace) -> float:
    """Median seconds of ``Studio.render`` for one sound of ``args.length`` seconds at the model's
    defaults: what the studio does after a click (sampling, decoding, fades), model already loaded."""
    studio = Studio([args.models_root] if args.models_root else None, device="cpu")
    request = GenerationRequest(model=str(entry.folder), label=label, length=args.length, shape=args.shape,
                                **({"steps": args.steps} if args.steps else {}))
    return timed(lambda: studio.render(request), args.runs, torch.device("cpu"))


def training_step(model: LoadedModel, batch: int, runs: int) -> float:
    """Median seconds of one v-objective training step at ``batch`` (fp16 autocast on CUDA)."""
    manifest, codec, device = model.manifest, model.codec, model.device
    network = load_model(model.folder, device=device).network.float().train()  # fp32 master weights
    optimizer = torch.optim.AdamW(network.parameters(), lr=1e-4)
    scaler = torch.amp.GradScaler("cuda", enabled=device.type == "cuda")
    generator = torch.Generator().manual_seed(0)
    audio = (0.1 * torch.randn(batch, manifest["channels"], manifest["length"], generator=generator)).to(device)
    eps = torch.randn(batch, codec.latent_channels, codec.latent_length(manifest["length"]), generator=generator).to(device)
    t = torch.rand(batch, generator=generator).to(device)
    labels = torch.zeros(batch, dtype=torch.long, device=device) if getattr(network, "num_labels", 0) else None

    def step() -> None:
        with torch.no_grad():
            latent = codec.encode(audio, codec.envelope_for(labels, audio=audio))
        alpha, sigma = torch.cos(t * math.pi / 2)[:, None, None], torch.sin(t * math.pi / 2)[:, None, None]
        with torch.autocast("cuda", dtype=torch.float16, enabled=device.type == "cuda"):
            loss = F.mse_loss(network(alpha * latent + sigma * eps, t, {} if labels is None else {"label": labels}).float(), alpha * eps - sigma * latent)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()

    return timed(step, runs, device)


def count(module: torch.nn.Module) -> tuple[int, int]:
    """(parameters, buffer elements) of a module."""
    return sum(p.numel() for p in module.parameters()), sum(b.numel() for b in module.buffers())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Seconds per generated one-shot, memory, parameters, training step.")
    parser.add_argument("--model", default="drums", help="model name, alias or model folder (default drums)")
    parser.add_argument("--models-root", default=None, help="folder of model folders (default checkpoints/)")
    parser.add_argument("--label", default=None, help="label to generate (default: the model's first)")
    parser.add_argument("--steps", type=int, default=None, help="sampling steps (default: the model's)")
    parser.add_argument("--runs", type=int, default=3, help="timed runs per figure, after a warm-up (default 3)")
    parser.add_argument("--batch", type=int, default=16, help="the large batch (default 16)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's choice)")
    parser.add_argument("--no-train", action="store_true", help="skip the training-step figures")
    parser.add_argument("--no-cpu", action="store_true", help="skip the CPU generation figures")
    parser.add_argument("--shape", choices=["free", "kit"], default=None,
                        help="the Studio sound's shape (default: the label's, engine.envelopes)")
    parser.add_argument("--length", type=float, default=None,
                        help="also time one sound of this many seconds through the Studio (latent models)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        entry = resolve_model(args.model, [args.models_root] if args.models_root else None)
        cpu = load_model(entry.folder, device="cpu")
    except StudioError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    label = _label(cpu, args.label or entry.label)
    defaults = label_defaults(cpu.manifest.get("defaults", {}), label)  # the studio's for this label
    say = lambda name, value: print(f"{name}: {value}", flush=True)  # noqa: E731
    say("model", f"{entry.folder} ({cpu.checkpoint_id}, {cpu.manifest.get('training', {}).get('steps', '?')} steps)")
    say("settings", f"label={label} sampler={defaults.get('sampler')} steps={args.steps or defaults.get('steps')} "
                    f"guidance={defaults.get('guidance')} length={cpu.manifest['length']} "
                    f"rate={cpu.manifest['sample_rate']}")
    say("cpu_threads", torch.get_num_threads())
    params, _ = count(cpu.network)
    codec_params, codec_buffers = count(cpu.codec)
    say("network_parameters", params)
    say("codec_parameters", codec_params)
    say("codec_buffer_elements", codec_buffers)

    if not args.no_cpu:
        say("cpu_fp32_batch1_seconds_per_sound", f"{generation(cpu, 1, args.runs, label, args.steps):.3f}")
        if args.length:
            say(f"cpu_fp32_studio_{args.length:g}s_sound_seconds", f"{studio_render(entry, label, args):.3f}")
        big = generation(cpu, args.batch, args.runs, label, args.steps)
        say(f"cpu_fp32_batch{args.batch}_seconds_per_sound", f"{big / args.batch:.3f}")
    if torch.cuda.is_available():
        gpu = load_model(entry.folder, device="cuda", half=True)
        say("cuda_device", torch.cuda.get_device_name(gpu.device))
        torch.cuda.reset_peak_memory_stats(gpu.device)
        big = generation(gpu, args.batch, args.runs, label, args.steps)
        say(f"cuda_fp16_batch{args.batch}_seconds", f"{big:.3f}")
        say(f"cuda_fp16_batch{args.batch}_seconds_per_sound", f"{big / args.batch:.4f}")
        say(f"cuda_fp16_batch{args.batch}_peak_memory_mib", f"{torch.cuda.max_memory_allocated(gpu.device) / 2**20:.0f}")
        del gpu
    else:
        say("cuda", "not available")

    if not args.no_train:
        say(f"cpu_train_step_batch{args.batch}_seconds", f"{training_step(cpu, args.batch, args.runs):.3f}")
        if torch.cuda.is_available():
            gpu = load_model(entry.folder, device="cuda")
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(gpu.device)
            say(f"cuda_amp_train_step_batch{args.batch}_seconds", f"{training_step(gpu, args.batch, args.runs):.4f}")
            say(f"cuda_amp_train_step_batch{args.batch}_peak_memory_mib",
                f"{torch.cuda.max_memory_allocated(gpu.device) / 2**20:.0f}")
    say("peak_cpu_rss_mib", f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
