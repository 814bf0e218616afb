"""Kaldi-compatible MFCC, numerically equal to ``torchaudio.compliance.kaldi.mfcc``.

Only the deterministic subset used by the ViCo baseline is supported (no dither, no VTLN, no
HTK compatibility). All arithmetic is done in float32 torch in the same order as torchaudio's
pure-Python implementation, so results agree with it up to FFT rounding.

The work is split in two so that callers can frame the signal themselves:
:func:`mfcc_from_frames` takes already cut analysis frames ``(M, window_size)`` and
:func:`mfcc` cuts a waveform with Kaldi's ``snip_edges`` framing first.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch

__all__ = ["KaldiMfccConfig", "mfcc", "mfcc_from_frames", "num_frames", "mel_banks"]

_WINDOW_TYPES = ("povey", "hanning", "hamming", "rectangular")


@dataclass(frozen=True)
class KaldiMfccConfig:
    """Kaldi ``compute-mfcc-feats`` options (Kaldi defaults, ``use_energy`` as ViCo uses it)."""

    sample_frequency: float = 16000.0
    frame_length_ms: float = 25.0
    frame_shift_ms: float = 10.0
    num_mel_bins: int = 23
    num_ceps: int = 13
    low_freq: float = 20.0
    high_freq: float = 0.0  # <= 0: offset from Nyquist
    cepstral_lifter: float = 22.0
    preemphasis_coefficient: float = 0.97
    remove_dc_offset: bool = True
    raw_energy: bool = True
    energy_floor: float = 1.0
    use_energy: bool = True
    round_to_power_of_two: bool = True
    window_type: str = "povey"
    frame_length_samples: int = 0  # > 0 overrides frame_length_ms (exact sample count)

    @property
    def window_size(self) -> int:
        """Samples per analysis frame (truncated like Kaldi/torchaudio)."""
        if self.frame_length_samples > 0:
            return self.frame_length_samples
        return int(self.sample_frequency * self.frame_length_ms * 0.001)

    @property
    def window_shift(self) -> int:
        """Samples between frame starts."""
        return int(self.sample_frequency * self.frame_shift_ms * 0.001)

    @property
    def padded_window_size(self) -> int:
        """FFT size."""
        n = self.window_size
        return 1 << (n - 1).bit_length() if self.round_to_power_of_two else n

    def validate(self) -> None:
        """Raise ValueError on options Kaldi would reject."""
        if self.window_type not in _WINDOW_TYPES:
            raise ValueError(f"window_type must be one of {_WINDOW_TYPES}, got {self.window_type!r}")
        if self.num_ceps > self.num_mel_bins:
            raise ValueError("num_ceps must be <= num_mel_bins")
        if self.num_mel_bins <= 3:
            raise ValueError("num_mel_bins must be > 3")
        if self.window_size < 2 or self.window_shift < 1:
            raise ValueError("frame length/shift too small for the sample rate")
        if self.padded_window_size % 2:
            raise ValueError("padded window size must be even")


def num_frames(num_samples: int, cfg: KaldiMfccConfig) -> int:
    """Number of frames Kaldi extracts with ``snip_edges=True``."""
    if num_samples < cfg.window_size:
        return 0
    return 1 + (num_samples - cfg.window_size) // cfg.window_shift


def _mel(freq):
    return 1127.0 * torch.log(1.0 + freq / 700.0)


def _mel_scalar(freq: float) -> float:
    return 1127.0 * math.log(1.0 + freq / 700.0)


@functools.lru_cache(maxsize=16)
def mel_banks(num_bins: int, padded_window_size: int, sample_freq: float,
              low_freq: float, high_freq: float) -> torch.Tensor:
    """Triangular mel filters, (num_bins, padded_window_size // 2 + 1) float32 (last column 0)."""
    num_fft_bins = padded_window_size // 2
    nyquist = 0.5 * sample_freq
    if high_freq <= 0.0:
        high_freq += nyquist
    if not (0.0 <= low_freq < nyquist and 0.0 < high_freq <= nyquist and low_freq < high_freq):
        raise ValueError(f"bad mel range low={low_freq} high={high_freq} nyquist={nyquist}")
    fft_bin_width = sample_freq / padded_window_size
    mel_low = _mel_scalar(low_freq)
    mel_high = _mel_scalar(high_freq)
    delta = (mel_high - mel_low) / (num_bins + 1)
    b = torch.arange(num_bins).unsqueeze(1)
    left = mel_low + b * delta  # (num_bins, 1) float32
    center = mel_low + (b + 1.0) * delta
    right = mel_low + (b + 2.0) * delta
    mel = _mel(fft_bin_width * torch.arange(float(num_fft_bins))).unsqueeze(0)  # (1, F)
    up = (mel - left) / (center - left)
    down = (right - mel) / (right - center)
    banks = torch.max(torch.zeros(1), torch.min(up, down))  # (num_bins, F)
    return torch.nn.functional.pad(banks, (0, 1))  # (num_bins, F + 1)


@functools.lru_cache(maxsize=16)
def _window(window_type: str, size: int) -> torch.Tensor:
    if window_type == "rectangular":
        return torch.ones(size)
    if window_type == "hamming":
        return torch.hamming_window(size, periodic=False, alpha=0.54, beta=0.46)
    hann = torch.hann_window(size, periodic=False)
    return hann.pow(0.85) if window_type == "povey" else hann


@functools.lru_cache(maxsize=16)
def _dct_matrix(num_ceps: int, num_mel_bins: int) -> torch.Tensor:
    """(num_mel_bins, num_ceps) orthonormal DCT-II with Kaldi's first column."""
    n = torch.arange(float(num_mel_bins))
    k = torch.arange(float(num_mel_bins)).unsqueeze(1)
    dct = torch.cos(math.pi / float(num_mel_bins) * (n + 0.5) * k)
    dct[0] *= 1.0 / math.sqrt(2.0)
    dct *= math.sqrt(2.0 / float(num_mel_bins))
    dct = dct.t().contiguous()
    dct[:, 0] = math.sqrt(1 / float(num_mel_bins))
    return dct[:, :num_ceps].contiguous()


@functools.lru_cache(maxsize=16)
def _lifter(num_ceps: int, cepstral_lifter: float) -> torch.Tensor:
    i = torch.arange(num_ceps)
    return 1.0 + 0.5 * cepstral_lifter * torch.sin(math.pi * i / cepstral_lifter)


_EPS = torch.tensor(torch.finfo(torch.float).eps)


def _log_energy(x: torch.Tensor, energy_floor: float) -> torch.Tensor:
    log_energy = torch.max(x.pow(2).sum(1), _EPS).log()
    if energy_floor == 0.0:
        return log_energy
    return torch.max(log_energy, torch.tensor(math.log(energy_floor)))


def mfcc_from_frames(frames: torch.Tensor, cfg: KaldiMfccConfig) -> torch.Tensor:
    """MFCC of pre-cut analysis frames.

    Args:
        frames: (M, cfg.window_size) float32 samples (any scale; Kaldi uses int16 units, the
            ViCo baseline uses [-1, 1]).
        cfg: options.
    Returns:
        (M, cfg.num_ceps) float32; with ``use_energy`` column 0 is the log-energy.
    """
    cfg.validate()
    frames = torch.as_tensor(frames)
    if frames.ndim != 2 or frames.shape[1] != cfg.window_size:
        raise ValueError(f"frames must be (M, {cfg.window_size}), got {tuple(frames.shape)}")
    x = frames.to(torch.float32)
    if cfg.remove_dc_offset:
        x = x - x.mean(dim=1, keepdim=True)
    log_energy = _log_energy(x, cfg.energy_floor) if cfg.raw_energy else None
    if cfg.preemphasis_coefficient != 0.0:
        prev = torch.cat([x[:, :1], x[:, :-1]], dim=1)  # replicate-padded shift
        x = x - cfg.preemphasis_coefficient * prev
    x = x * _window(cfg.window_type, cfg.window_size).unsqueeze(0)
    pad = cfg.padded_window_size - cfg.window_size
    if pad:
        x = torch.nn.functional.pad(x, (0, pad))
    if log_energy is None:
        log_energy = _log_energy(x, cfg.energy_floor)
    spec = torch.fft.rfft(x)  # (M, P/2+1)
    power = spec.real.square() + spec.imag.square()  # |X|^2 (torchaudio: abs().pow(2), same to 1 ulp)
    banks = mel_banks(cfg.num_mel_bins, cfg.padded_window_size, float(cfg.sample_frequency),
                      float(cfg.low_freq), float(cfg.high_freq))
    fbank = torch.max(torch.mm(power, banks.T), _EPS).log()  # (M, num_mel_bins)
    feats = fbank.matmul(_dct_matrix(cfg.num_ceps, cfg.num_mel_bins))
    if cfg.cepstral_lifter != 0.0:
        feats = feats * _lifter(cfg.num_ceps, float(cfg.cepstral_lifter)).unsqueeze(0)
    if cfg.use_energy:
        feats[:, 0] = log_energy
    return feats


def mfcc(waveform: torch.Tensor, cfg: KaldiMfccConfig) -> torch.Tensor:
    """MFCC of a mono waveform (N,) with Kaldi's ``snip_edges`` framing -> (M, num_ceps)."""
    w = torch.as_tensor(waveform).to(torch.float32)
    if w.ndim == 2 and w.shape[0] == 1:
        w = w[0]
    if w.ndim != 1:
        raise ValueError(f"waveform must be 1-D (or 1 x N), got {tuple(w.shape)}")
    m = num_frames(w.shape[0], cfg)
    if m == 0:
        return torch.empty(0, cfg.num_ceps)
    frames = w.as_strided((m, cfg.window_size), (cfg.window_shift, 1))
    return mfcc_from_frames(frames, cfg)
