"""A kick's tail cut towards the shape of a real kick's tail, after its attack.

Why: the waveform models render each 689 Hz band under its own loudness envelope. A real kick's
tail is a low tone: under 689 Hz its energy sits in the lowest 100-200 Hz and falls 30-50 dB by
the band's top. Where the envelope keeps band 0 loud for a long tail, `drums-3step` often fills
the whole band with noise instead, a flat box of energy up to 689 Hz that ends at the band's edge
(issue 19's "band edges"; in the tail, 250-680 Hz sat at -27 dB under 20-150 Hz in the median of
64 generated kicks, where the training kicks' median is -32 and their darkest tenth -52). The
network cannot be told to put a tone there, so the decoded tail is filtered: each bin is cut where
the sound's tail stands above the tail of the training kick its seed deals (relative to each
one's loudest bin under 689 Hz), and where it steps down at a band edge further than that kick
does; never raised, over the whole spectrum, and the attack is left as it was. Measured in
``docs/design-notes.md``, "A kick's tail cut to a real kick's".

Written by hand for the reason :mod:`engine.nets.tone` is: one time-varying STFT gain per sound.
"""

from __future__ import annotations

import torch

TAIL_FFT = 1024              # STFT size: 43 Hz bins at 44.1 kHz, so band 0 (0-689 Hz) holds 16 of them
TAIL_BINS = 64               # bins a tail's shape is kept at one by one: up to 2.76 kHz, the first four bands
HIGH_SPANS = 16              # and above them, equal spans to Nyquist (1.2 kHz each at 44.1 kHz)
TAIL_POINTS = TAIL_BINS + HIGH_SPANS  # the levels a tail's shape holds
REFERENCE_BINS = 16          # a shape is relative to its loudest bin under 689 Hz (a kick's tail tone)
SMOOTH_BINS = 5              # a shape is smoothed over this many bins (215 Hz): a level, not a partial
TAIL_WINDOW_S = (0.06, 0.6)  # after the peak: where a tail's shape is measured
CUT_START_S = 0.03           # the cut fades in from this long after the peak ...
CUT_RAMP_S = 0.04            # ... over this long: the attack's click and body keep their spectrum
MAX_CUT_DB = 40.0            # a bin is cut by at most this
BAND_BINS = 16               # bins a 689 Hz band holds (32 bands at 44.1 kHz): edges at 16, 32, 48
EDGE_SIDE = (2, 6)           # bins either side of an edge whose mean level is compared (86-258 Hz away)
EDGE_RAMP = 4                # an edge's cut rises over this many bins below its near side
EDGE_FLOOR_DB = 50.0         # an edge whose lower side is this far under the tail's tone is not cut (nothing heard)


def _stft(mono: torch.Tensor) -> torch.Tensor:
    return torch.stft(mono, TAIL_FFT, TAIL_FFT // 4, window=torch.hann_window(TAIL_FFT, device=mono.device),
                      return_complex=True)


def _frame_starts(frames: int, device) -> torch.Tensor:
    return torch.arange(frames, device=device) * (TAIL_FFT // 4)


def _high_spans(bins: int) -> list[torch.Tensor]:
    """The STFT bins above :data:`TAIL_BINS`, in :data:`HIGH_SPANS` near-equal spans."""
    return list(torch.arange(TAIL_BINS, bins).tensor_split(HIGH_SPANS))


def tail_shapes_db(audio: torch.Tensor, sample_rate: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``((B, TAIL_POINTS) dB, (B,) peak sample)``: each clip's (``(B, C, N)``, mono mix) power
    spectrum over :data:`TAIL_WINDOW_S` after its peak, bin by bin up to 2.76 kHz (smoothed over
    :data:`SMOOTH_BINS` bins) and in :data:`HIGH_SPANS` spans above, relative to its loudest bin
    under 689 Hz. A clip whose tail is silent reads 0 everywhere."""
    mono = audio.float().mean(dim=1)
    peaks = mono.abs().argmax(dim=-1)
    return _shapes(_stft(mono).abs().pow(2), peaks, sample_rate), peaks


def _shapes(power: torch.Tensor, peaks: torch.Tensor, sample_rate: int) -> torch.Tensor:
    """:func:`tail_shapes_db`'s shapes from the mono mix's STFT power ``(B, bins, frames)``."""
    starts = _frame_starts(power.shape[-1], power.device)[None, :]
    after = starts - peaks[:, None]
    inside = ((after >= TAIL_WINDOW_S[0] * sample_rate) & (after <= TAIL_WINDOW_S[1] * sample_rate)).float()
    mean = (power * inside[:, None, :]).sum(-1) / inside.sum(-1, keepdim=True).clamp_min(1.0)
    high = torch.stack([mean[:, span].mean(dim=1) for span in _high_spans(mean.shape[1])], dim=1)
    fine = 10.0 * torch.log10(mean[:, :TAIL_BINS].clamp_min(1e-20))
    fine = torch.nn.functional.avg_pool1d(fine[:, None], SMOOTH_BINS, 1, SMOOTH_BINS // 2,
                                          count_include_pad=False)[:, 0]
    level = torch.cat([fine, 10.0 * torch.log10(high.clamp_min(1e-20))], dim=1)
    return level - level[:, :REFERENCE_BINS].amax(dim=1, keepdim=True)


def _spectrum_gain(gain: torch.Tensor, bins: int) -> torch.Tensor:
    """``(B, bins)``: the points' gains (``(B, TAIL_POINTS)``) on every STFT bin: the fine bins as
    they are, the spans' linear between their centres (held past the last), so no step of its own."""
    centres = torch.tensor([float(span.float().mean()) for span in _high_spans(bins)])
    where = torch.cat([torch.arange(TAIL_BINS, dtype=torch.float32), centres]).to(gain.device)
    at = torch.arange(bins, dtype=torch.float32, device=gain.device).clamp(max=float(where[-1]))
    right = torch.searchsorted(where, at).clamp(1, where.numel() - 1)
    left = right - 1
    share = ((at - where[left]) / (where[right] - where[left])).clamp(0.0, 1.0)
    return gain[:, left] * (1.0 - share) + gain[:, right] * share


EDGES = tuple(range(BAND_BINS, TAIL_BINS - EDGE_SIDE[1] + 1, BAND_BINS))
"""The band edges a tail's fine bins hold with both sides (:data:`EDGE_SIDE`) inside them."""


def _edge_sides(shape: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``((B, edges), (B, edges))`` dB: each shape's mean level just under and just above each of
    :data:`EDGES` (:data:`EDGE_SIDE` away)."""
    near, far = EDGE_SIDE
    below = torch.stack([shape[:, edge - far:edge - near].mean(dim=1) for edge in EDGES], dim=1)
    above = torch.stack([shape[:, edge + near:edge + far].mean(dim=1) for edge in EDGES], dim=1)
    return below, above


def _edge_cuts(own: torch.Tensor, clip_db: torch.Tensor) -> torch.Tensor:
    """``(B, TAIL_POINTS)`` dB: where a sound steps down at a band edge by more than its clip does, the
    top of the band under the edge lowered by the difference (rising over :data:`EDGE_RAMP` bins), so
    the band's level meets the next one's as the clip's does (not where the band's top is
    :data:`EDGE_FLOOR_DB` under the tail's tone: nothing there to hear). A cut on the clip's shape alone
    cannot do it when the clip is loud on both sides of the edge and the sound only below it: a
    box filling band 0 under a band 1 the envelope left quiet."""
    (below, above), (clip_below, clip_above) = _edge_sides(own), _edge_sides(clip_db)
    excess = ((below - above) - (clip_below - clip_above)).clamp_min(0.0) * (below > -EDGE_FLOOR_DB)
    cuts = torch.zeros_like(own)
    far = EDGE_SIDE[1]
    for index, edge in enumerate(EDGES):
        ramp = torch.zeros(TAIL_POINTS, device=own.device)
        ramp[edge - far - EDGE_RAMP:edge - far] = torch.linspace(0.0, 1.0, EDGE_RAMP + 1, device=own.device)[1:]
        ramp[edge - far:edge] = 1.0
        cuts = torch.minimum(cuts, -excess[:, index:index + 1] * ramp)
    return cuts


def cut_tail(audio: torch.Tensor, clip_db: torch.Tensor, sample_rate: int, strength: float = 1.0) -> torch.Tensor:
    """``audio`` ``(B, C, N)`` with each sound's tail cut where its shape stands above
    ``clip_db`` (``(B, TAIL_POINTS)``, :func:`tail_shapes_db` of the clip each sound is dealt), or
    steps down at a band edge further than the clip does (:func:`_edge_cuts`): the gain is
    ``strength`` times the larger of the two cuts, at most 0 dB and at least -:data:`MAX_CUT_DB`,
    over the whole spectrum (:func:`_spectrum_gain`), applied from :data:`CUT_START_S` after the
    sound's peak (reaching full over :data:`CUT_RAMP_S`), the same on every channel. A sound left
    uncut is returned bit for bit."""
    channels, length = audio.shape[1:]
    spectrum = _stft(audio.float().reshape(-1, length))  # (B * C, bins, frames): one STFT for the shape and the cut
    spectrum = spectrum.reshape(-1, channels, *spectrum.shape[1:])
    peaks = audio.float().mean(dim=1).abs().argmax(dim=-1)
    own = _shapes(spectrum.mean(dim=1).abs().pow(2), peaks, sample_rate)  # the mono mix's, as tail_shapes_db
    clip_db = clip_db.to(own.device).float()
    gain = torch.minimum(clip_db - own, _edge_cuts(own, clip_db)).clamp(-MAX_CUT_DB, 0.0) * float(strength)
    cut = gain.amin(dim=1) < 0.0
    if not bool(cut.any()):
        return audio
    starts = _frame_starts(spectrum.shape[-1], spectrum.device)[None, :]
    centres = starts - peaks[cut][:, None].to(spectrum.device)  # torch.stft centres frame t on sample t * hop
    fade = ((centres - CUT_START_S * sample_rate) / (CUT_RAMP_S * sample_rate)).clamp(0.0, 1.0)  # (B', frames)
    full = _spectrum_gain(gain[cut].to(spectrum.device), spectrum.shape[2])
    scale = torch.pow(10.0, full[:, :, None] * fade[:, None, :] / 20.0)[:, None]
    filtered = torch.istft((spectrum[cut] * scale).reshape(-1, *spectrum.shape[2:]), TAIL_FFT, TAIL_FFT // 4,
                           window=torch.hann_window(TAIL_FFT, device=spectrum.device), length=length)
    out = audio.clone()
    out[cut] = filtered.reshape(-1, channels, length).to(audio.dtype)
    return out
