"""A clip's tone inside each PQMF band, and the filter that gives it to a generated sound.

Why: the waveform models' envelope sets each of the 32 bands' level over time, and the network
fills each 689 Hz band with its own fine structure. Real hats ring at their own metallic partials
inside those bands; the network's fill is smoother and alike from sound to sound. A sound dealt a
training clip's envelope (``train prior --envelope-kernel``) can also take that clip's tone: its
long-term spectrum at a few points per band, each band's mean 0 dB so the envelope keeps the band
levels. Measured in ``docs/design-notes.md``, "A dealt clip's tone inside the bands".

Written by hand because it is one STFT gain (``torch.stft``/``torch.istft``); no filter
package applies a different smooth curve to each sound of a batch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

TONE_POINTS = 4               # points a band's tone is kept at (172 Hz apart at 44.1 kHz and 32 bands)
TONE_RANGE_DB = (-18.0, 12.0)  # a notch deeper or a peak higher than this is not a tone the filter should copy
TONE_FLOOR_DB = 60.0           # a band this far under the clip's loudest holds its noise floor: no tone there
BINS_PER_BAND = 32             # spectrum bins per band the tone is measured and applied at


def _fft_size(bands: int) -> int:
    return 2 * BINS_PER_BAND * bands


def _stft(audio: torch.Tensor, bands: int) -> torch.Tensor:
    size = _fft_size(bands)
    return torch.stft(audio, size, size // 4, window=torch.hann_window(size, device=audio.device),
                      return_complex=True)


def clip_tones(audio: torch.Tensor, bands: int, points: int = TONE_POINTS) -> torch.Tensor:
    """``(B, bands, points)`` dB: each clip's (``(B, C, N)``) long-term power spectrum, its mono
    mix, averaged into ``points`` spans per band and taken relative to the band's mean; clamped to
    :data:`TONE_RANGE_DB`, and 0 in a band :data:`TONE_FLOOR_DB` under the clip's loudest."""
    if BINS_PER_BAND % points:
        raise ValueError(f"a band's {BINS_PER_BAND} bins do not split into {points} tone points")
    power = _stft(audio.float().mean(dim=1), bands).abs().pow(2).mean(dim=-1)[:, :BINS_PER_BAND * bands]
    spans = power.reshape(power.shape[0], bands, points, BINS_PER_BAND // points).mean(dim=-1)
    band_db = 10.0 * torch.log10(spans.mean(dim=-1, keepdim=True).clamp_min(1e-20))
    tone = (10.0 * torch.log10(spans.clamp_min(1e-20)) - band_db).clamp(*TONE_RANGE_DB)
    quiet = band_db < band_db.amax(dim=1, keepdim=True) - TONE_FLOOR_DB
    return torch.where(quiet, torch.zeros_like(tone), tone)


def apply_tone(audio: torch.Tensor, tones: torch.Tensor, bands: int) -> torch.Tensor:
    """``audio`` ``(B, C, N)`` filtered by each sound's tone ``(B, bands, points)`` (dB, as
    :func:`clip_tones` gives), one curve over the whole spectrum, linear between the spans' centres
    (no step at a band's edge), the same on every channel. A sound whose tone is all 0 is returned
    as it was, bit for bit."""
    shaped = tones.detach().float().cpu().flatten(1).abs().amax(dim=1) > 0
    if not bool(shaped.any()):
        return audio
    channels, length = audio.shape[1:]
    on_device = shaped.to(audio.device)
    picked = audio[on_device].float()
    spectrum = _stft(picked.reshape(-1, length), bands)
    curve = F.interpolate(tones[shaped].float().reshape(picked.shape[0], 1, -1).to(spectrum.device),
                          size=BINS_PER_BAND * bands, mode="linear", align_corners=False).squeeze(1)
    curve = torch.cat([curve, curve[:, -1:]], dim=1)  # the Nyquist bin as the last span
    gain = torch.pow(10.0, curve / 20.0).repeat_interleave(channels, dim=0)[:, :, None]
    size = _fft_size(bands)
    filtered = torch.istft(spectrum * gain, size, size // 4, window=torch.hann_window(size, device=audio.device),
                           length=length).reshape(picked.shape)
    out = audio.clone()
    out[on_device] = filtered.to(audio.dtype)
    return out
