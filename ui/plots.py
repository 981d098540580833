"""One figure per sound: its waveform above its mel spectrogram, on a shared time axis in ms.

The figure has a transparent background and mid-grey text, so it reads the same on Gradio's
light and dark themes; the spectrogram is an opaque image (magma, dB colour bar) and the
waveform is drawn in an orange that stands out on white and on near-black. Figures are built
with the object-oriented ``matplotlib.figure.Figure`` (no pyplot global state), so two users'
plots never share anything.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # no display, no GUI toolkit: the server renders to bytes

import numpy as np
import torch
from matplotlib.figure import Figure

from engine.dsp import frame_times_ms, hz_to_mel, mel_spectrogram, rms_db, rms_from_points

TEXT = "#8a8a8a"        # mid grey: readable on white and on #0b0f19 (Gradio's dark background)
GRID = "#8a8a8a40"
WAVE = "#f97316"        # orange-500: the app's accent colour
WAVE_RIGHT = "#38bdf8"  # sky-400 for the right channel, so a stereo image is visible
ASKED = "#22c55e"       # green-500: the loudness curve and onsets that were asked for
MEASURED = "#a3a3a3"    # the sound's own RMS, under the asked-for curve
LEVEL_RANGE_DB = (-60.0, 3.0)
LEVEL_HOP = 128         # samples per loudness value (the latent models' frame)
N_MELS = 64
RANGE_DB = 80.0         # colour scale spans the loudest bin down to this many dB below it
FREQ_TICKS = (100, 500, 1000, 2000, 5000, 10000, 20000)


def _style(axis, label_bottom: bool) -> None:
    axis.set_facecolor("none")
    axis.tick_params(colors=TEXT, labelsize=8, length=2, labelbottom=label_bottom)
    for spine in axis.spines.values():
        spine.set_color(GRID)


def _overlay_controls(axis, audio: torch.Tensor, sample_rate: int, rms, onsets) -> None:
    """On the waveform: the asked-for loudness curve (green, dashed) over the sound's measured RMS
    (grey), on a dB scale at the right, and the asked-for onsets as green ticks, so a producer sees
    at a glance how well the sound followed what was drawn."""
    level = axis.twinx()
    measured = rms_db(audio, LEVEL_HOP).numpy()
    times = frame_times_ms(len(measured), LEVEL_HOP, sample_rate).numpy()
    level.plot(times, measured, color=MEASURED, linewidth=0.9, label="RMS")
    if rms:
        asked, mask = rms_from_points(rms, len(measured), LEVEL_HOP, sample_rate)
        shown = np.where(mask.numpy() > 0, asked.numpy(), np.nan)
        level.plot(times, shown, color=ASKED, linewidth=1.3, linestyle="--", label="asked")
    for onset in onsets or ():
        level.axvline(float(onset), color=ASKED, linewidth=0.9, alpha=0.8)
    level.set_ylim(*LEVEL_RANGE_DB)
    level.set_yticks([-60, -30, 0])
    level.tick_params(colors=TEXT, labelsize=7, length=2)
    for spine in level.spines.values():
        spine.set_color(GRID)


def sound_figure(audio: torch.Tensor, sample_rate: int, title: str | None = None,
                 width: float = 4.8, height: float = 2.7, dpi: int = 100, rms=None, onsets=None) -> Figure:
    """Waveform (each channel) and mel spectrogram (mono mix, dB) of ``audio`` shaped (channels, N);
    with ``rms`` points or ``onsets`` (what was asked for), those over the sound's measured loudness."""
    audio = audio.detach().float().cpu()
    if audio.ndim == 1:
        audio = audio[None]
    samples = audio.shape[-1]
    ms = samples / sample_rate * 1000.0
    fig = Figure(figsize=(width, height), dpi=dpi, facecolor="none")
    grid = fig.add_gridspec(2, 2, height_ratios=(1, 2.2), width_ratios=(40, 1), hspace=0.08, wspace=0.03,
                            left=0.12, right=0.88, top=0.9 if title else 0.97, bottom=0.16)
    wave_axis = fig.add_subplot(grid[0, 0])
    spec_axis = fig.add_subplot(grid[1, 0], sharex=wave_axis)
    bar_axis = fig.add_subplot(grid[1, 1])

    times = np.linspace(0.0, ms, samples, endpoint=False)
    step = max(1, samples // (8 * dpi))  # a few points per pixel is plenty
    data = audio.numpy()
    colours = [WAVE, WAVE_RIGHT]
    for channel in range(min(2, data.shape[0]))[::-1]:
        wave_axis.plot(times[::step], data[channel, ::step], color=colours[channel], linewidth=0.6,
                       alpha=0.9 if channel == 0 else 0.6)
    peak = float(np.abs(data).max()) if data.size else 0.0
    limit = max(peak, 1e-3) * 1.05
    wave_axis.set_ylim(-limit, limit)
    wave_axis.set_yticks([])
    wave_axis.axhline(0.0, color=GRID, linewidth=0.5)
    wave_axis.set_xlim(0.0, ms)
    _style(wave_axis, label_bottom=False)
    peak_db = 20 * np.log10(peak) if peak > 0 else -np.inf
    level_text = f"peak {peak_db:.1f} dBFS" if np.isfinite(peak_db) else "silent"
    if rms or onsets:  # the key to the overlay rides on the peak line, out of the curves' way
        level_text += " · RMS — asked - -"
    wave_axis.text(0.995, 0.92, level_text, transform=wave_axis.transAxes, ha="right", va="top", fontsize=8,
                   color=TEXT)
    if rms or onsets:
        _overlay_controls(wave_axis, audio, sample_rate, rms, onsets)

    mel = mel_spectrogram(audio.mean(dim=0), sample_rate, n_mels=N_MELS).numpy()
    top = float(mel.max())
    low_mel, high_mel = float(hz_to_mel(20.0)), float(hz_to_mel(sample_rate / 2.0))
    image = spec_axis.imshow(mel, origin="lower", aspect="auto", cmap="magma", interpolation="nearest",
                             extent=(0.0, ms, low_mel, high_mel), vmin=top - RANGE_DB, vmax=top)
    ticks = [f for f in FREQ_TICKS if f <= sample_rate / 2.0]
    spec_axis.set_yticks([float(hz_to_mel(f)) for f in ticks])
    spec_axis.set_yticklabels([f"{f // 1000}k" if f >= 1000 else str(f) for f in ticks])
    spec_axis.set_ylabel("Hz (mel)", color=TEXT, fontsize=8)
    spec_axis.set_xlabel("time (ms)", color=TEXT, fontsize=8)
    _style(spec_axis, label_bottom=True)

    bar = fig.colorbar(image, cax=bar_axis)
    bar.set_label("dB", color=TEXT, fontsize=8)
    bar.ax.tick_params(colors=TEXT, labelsize=7, length=2)
    bar.outline.set_edgecolor(GRID)
    if title:
        fig.suptitle(title, color=TEXT, fontsize=9, x=0.12, ha="left")
    return fig
