"""A clip's tone inside each PQMF band, and the filter that gives it to a generated sound.

Why: the waveform models' envelope sets each of the 32 bands' level over time, and the network
fills each 689 Hz band with its own fine structure. Real hats ring at their own metallic partials
inside those bands; the network's fill is smoother and alike from sound to sound. A sound dealt a
training clip's envelope (``train prior --envelope-kernel``) can also take that clip's tone: its
long-term spectrum at a few points per band, each band's mean 0 dB so the envelope keeps the band
levels. Measured in ``docs/design-notes.md``, "A dealt clip's tone inside the bands".

A latent model's sound has no band envelope to keep: it can take a dealt clip's whole long-term
spectrum instead (:func:`match_tone`, the clips' spectra kept in the model folder by
:mod:`engine.tones`): `latent-fast`'s cymbals are darker and more alike than the kits'.

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


def _span_power(audio: torch.Tensor, bands: int, points: int) -> torch.Tensor:
    """``(B, bands, points)``: each clip's (``(B, C, N)``) long-term power spectrum, its mono mix,
    averaged over ``points`` equal spans per band."""
    if BINS_PER_BAND % points:
        raise ValueError(f"a band's {BINS_PER_BAND} bins do not split into {points} tone points")
    power = _stft(audio.float().mean(dim=1), bands).abs().pow(2).mean(dim=-1)[:, :BINS_PER_BAND * bands]
    return power.reshape(power.shape[0], bands, points, BINS_PER_BAND // points).mean(dim=-1)


def clip_tones(audio: torch.Tensor, bands: int, points: int = TONE_POINTS) -> torch.Tensor:
    """``(B, bands, points)`` dB: each clip's (``(B, C, N)``) long-term power spectrum, its mono
    mix, averaged into ``points`` spans per band and taken relative to the band's mean; clamped to
    :data:`TONE_RANGE_DB`, and 0 in a band :data:`TONE_FLOOR_DB` under the clip's loudest."""
    spans = _span_power(audio, bands, points)
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


MATCH_BANDS = 16
"""A latent sound's whole spectrum is matched to a clip's in ``MATCH_BANDS`` x :data:`TONE_POINTS`
spans (64 of 345 Hz at 44.1 kHz): a long-term tone, not a clip's partials."""


def spectra_db(audio: torch.Tensor, bands: int = MATCH_BANDS, points: int = TONE_POINTS) -> torch.Tensor:
    """``(B, bands, points)`` dB: each clip's long-term spectrum in equal spans (mono mix)."""
    return 10.0 * torch.log10(_span_power(audio, bands, points).clamp_min(1e-20))


def match_tone(audio: torch.Tensor, clip_db: torch.Tensor, strength: float = 1.0) -> torch.Tensor:
    """``audio`` ``(B, C, N)`` filtered so its long-term spectrum moves ``strength`` of the way to
    ``clip_db`` (``(B, bands, points)``, :func:`spectra_db` of the clip each sound is dealt): the
    gain is the clip's spectrum over the sound's, less its mean weighted by the sound's power, 0
    where the clip is :data:`TONE_FLOOR_DB` under its loudest span (its noise floor says nothing of
    its tone), clamped to :data:`TONE_RANGE_DB`, then moved as one so the sound keeps its long-term
    power; applied as :func:`apply_tone`. The sound keeps its own envelope and fine structure; only
    its colour is the clip's (``docs/design-notes.md``, "Cymbals in a kit cymbal's colour")."""
    bands, points = clip_db.shape[1:]
    own = spectra_db(audio, bands, points).to(clip_db.device)
    gain = clip_db.float() - own
    weight = torch.pow(10.0, own / 10.0)
    total = weight.sum(dim=(1, 2), keepdim=True).clamp_min(1e-30)
    heard = (clip_db >= clip_db.amax(dim=(1, 2), keepdim=True) - TONE_FLOOR_DB).float()
    heard_weight = weight * heard
    # the colour, about the sound's level where the clip is heard
    gain = gain - (gain * heard_weight).sum(dim=(1, 2), keepdim=True) / \
        heard_weight.sum(dim=(1, 2), keepdim=True).clamp_min(1e-30)
    gain = (gain * heard).clamp(*TONE_RANGE_DB) * float(strength)
    # then exactly the sound's power: a dark sound given a bright clip's highs is not made louder
    gain = gain - 10.0 * torch.log10((weight * torch.pow(10.0, gain / 10.0)).sum(dim=(1, 2), keepdim=True) / total)
    return apply_tone(audio, gain, bands)
