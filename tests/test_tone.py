"""A clip's tone inside the PQMF bands (engine.nets.tone): measured, and given to another sound."""

import math

import pytest
import torch

from engine.nets import tone

BANDS = 32


def white(count: int, seed: int = 0, length: int = 65536) -> torch.Tensor:
    return torch.randn(count, 2, length, generator=torch.Generator().manual_seed(seed))


def band_levels_db(audio: torch.Tensor) -> torch.Tensor:
    power = torch.fft.rfft(audio.mean(dim=1)).abs().pow(2)[:, :audio.shape[-1] // 2]
    return 10 * torch.log10(power.reshape(audio.shape[0], BANDS, -1).mean(dim=-1))


def test_a_tone_given_to_white_noise_is_measured_back_and_keeps_each_bands_level():
    """A smooth tone (a ripple over the spectrum, as a clip's partials make) filtered onto white
    noise reads back as that tone, and each band keeps its level: the envelope's business."""
    points = torch.arange(BANDS * tone.TONE_POINTS).float()
    wanted = torch.stack([6 * torch.sin(2 * math.pi * (points + 3 * i) / 12) for i in range(3)])
    wanted = wanted.reshape(3, BANDS, tone.TONE_POINTS)
    wanted = wanted - wanted.mean(dim=-1, keepdim=True)
    noise = white(3)
    assert float(tone.clip_tones(noise, BANDS).abs().mean()) < 0.5   # white noise has no tone of its own
    toned = tone.apply_tone(noise, wanted, BANDS)
    back = tone.clip_tones(toned, BANDS)
    assert float(torch.corrcoef(torch.stack([back.flatten(), wanted.flatten()]))[0, 1]) > 0.9
    assert float((back - wanted).abs().mean()) < 1.5
    assert float((band_levels_db(toned) - band_levels_db(noise)).abs().max()) < 1.5
    # the same on both channels: the stereo image is the network's
    torch.testing.assert_close(tone.apply_tone(noise[:, :1].expand(-1, 2, -1).contiguous(), wanted, BANDS)[:, 0],
                               tone.apply_tone(noise[:, :1].expand(-1, 2, -1).contiguous(), wanted, BANDS)[:, 1])


def test_a_sound_without_a_tone_is_left_bit_for_bit():
    noise = white(3, seed=1, length=32768)
    tones = torch.zeros(3, BANDS, tone.TONE_POINTS)
    assert torch.equal(tone.apply_tone(noise, tones, BANDS), noise)
    tones[1, 5] = torch.tensor([3.0, -3.0, 3.0, -3.0])
    mixed = tone.apply_tone(noise, tones, BANDS)
    assert torch.equal(mixed[0], noise[0]) and torch.equal(mixed[2], noise[2])
    assert not torch.equal(mixed[1], noise[1])


def test_a_clips_tone_is_kept_within_its_range_and_not_read_from_a_silent_band():
    noise = white(2, seed=2)
    faded = torch.ones(noise.shape[-1])   # faded in and out: no click at the ends to fill the top bands
    faded[:4096], faded[-4096:] = torch.hann_window(8192)[:4096], torch.hann_window(8192)[4096:]
    low = torch.fft.irfft(torch.fft.rfft(noise) * (torch.fft.rfftfreq(noise.shape[-1]) < 0.25), n=noise.shape[-1])
    tones = tone.clip_tones(low * faded, BANDS)   # band 16 holds the edge, 17 up 85 dB and more under the rest
    assert tones.shape == (2, BANDS, tone.TONE_POINTS)
    assert bool((tones[:, 17:] == 0).all()) and float(tones[:, :15].abs().max()) > 0
    assert float(tones.min()) >= tone.TONE_RANGE_DB[0] and float(tones.max()) <= tone.TONE_RANGE_DB[1]
    cycles = torch.fft.rfftfreq(noise.shape[-1])
    notched = torch.fft.irfft(torch.fft.rfft(noise) * (1 - 0.9999 * ((cycles > 0.1) & (cycles < 0.11))),
                              n=noise.shape[-1]) * faded
    assert float(tone.clip_tones(notched, BANDS).min()) == tone.TONE_RANGE_DB[0]   # an 80 dB notch, held to the range
    with pytest.raises(ValueError, match="tone points"):
        tone.clip_tones(noise, BANDS, points=5)
