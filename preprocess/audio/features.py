"""The ViCo per-video-frame audio features (45 dims at 44.1 kHz, 30 fps).

Two feature sets share one layout (at 44.1 kHz: [0:13] MFCC with log-energy in column 0,
[13:26] delta, [26:39] delta-delta, [39:42] RMS, [42:45] ZCR):

``vico45``
    The original baseline's vector, frame for frame. Video frame i owns the samples
    [i*spf, (i+1)*spf), spf = int(sr/fps). One Kaldi MFCC frame (the first 25 ms of the slice)
    with log-energy; deltas and delta-deltas over that single frame (hence exactly 0); RMS with
    a 2048-sample frame and hop 512, zero-padded and centred on the slice; ZCR with a window of
    ``sr`` samples (what the original's positional ``zero_crossing_rate(x, sr)`` did), hop 512,
    edge-padded. RMS and ZCR each give 1 + spf // 512 values.
``vico45_context``
    The same 45 dims with the original's flaw fixed: the MFCC window covers the whole slice and
    the deltas are taken across neighbouring video frames (window 5, replicate padding), so they
    carry information; ZCR uses a 2048-sample window like RMS.

Everything is vectorised over all video frames at once (chunked to bound memory); the
per-frame reference loop :func:`vico45_per_frame` mirrors the original call pattern and is
kept for tests and the benchmark.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from preprocess.audio.kaldi import KaldiMfccConfig, mfcc, mfcc_from_frames, num_frames

__all__ = [
    "FEATURE_SETS", "DEFAULT_SAMPLE_RATE", "DEFAULT_FPS", "samples_per_frame", "feature_dim",
    "fit_length", "deltas", "rms_frames", "zcr_frames", "rms_librosa", "zcr_librosa",
    "vico45", "vico45_context", "vico45_per_frame", "extract",
]

DEFAULT_SAMPLE_RATE = 44100
DEFAULT_FPS = 30
RMS_FRAME, HOP = 2048, 512
ZCR_THRESHOLD = 1e-10  # librosa.zero_crossings default: |y| <= threshold counts as 0
N_CEPS = 13
_CHUNK = 4096  # video frames per vectorised chunk (bounds memory for long clips)


def samples_per_frame(sample_rate: int, fps: int = DEFAULT_FPS) -> int:
    """Audio samples per video frame, as the original: int(sr / fps)."""
    return int(sample_rate / fps)


def feature_dim(sample_rate: int = DEFAULT_SAMPLE_RATE, fps: int = DEFAULT_FPS) -> int:
    """Width of the feature vector: 39 + 2 * (1 + spf // 512) (45 at 44.1 kHz / 30 fps)."""
    return 3 * N_CEPS + 2 * (1 + samples_per_frame(sample_rate, fps) // HOP)


def fit_length(samples: np.ndarray, n_samples: int) -> np.ndarray:
    """Cut or zero-pad a 1-D signal at the end to exactly ``n_samples``."""
    samples = np.asarray(samples)
    if samples.ndim != 1:
        raise ValueError(f"expected mono samples (S,), got {samples.shape}")
    if samples.shape[0] >= n_samples:
        return samples[:n_samples]
    return np.concatenate([samples, np.zeros(n_samples - samples.shape[0], samples.dtype)])


def deltas(x: np.ndarray, axis: int = 0, win_length: int = 5) -> np.ndarray:
    """Regression deltas along ``axis`` with replicate padding (torchaudio.compute_deltas).

    Written as sum_k k*(x[t+k] - x[t-k]) / (2*sum_k k^2), float64, so a constant sequence
    gives exact zeros.
    """
    if win_length < 3:
        raise ValueError("win_length must be >= 3")
    n = (win_length - 1) // 2
    denom = n * (n + 1) * (2 * n + 1) / 3
    x = np.moveaxis(np.asarray(x, dtype=np.float64), axis, -1)
    t = x.shape[-1]
    idx = np.arange(t)
    out = np.zeros_like(x)
    for k in range(1, n + 1):
        out += k * (x[..., np.minimum(idx + k, t - 1)] - x[..., np.maximum(idx - k, 0)])
    return np.moveaxis(out / denom, -1, axis)


def _n_windows(length: int, frame_length: int, hop: int) -> int:
    """Frames librosa gets from a signal of ``length`` centred-padded by frame_length // 2."""
    padded = length + 2 * (frame_length // 2)
    return 1 + (padded - frame_length) // hop


def _window_bounds(length: int, frame_length: int, hop: int):
    """Start/end (in unpadded sample indices, unclipped) of each centred window."""
    j = np.arange(_n_windows(length, frame_length, hop))
    start = j * hop - frame_length // 2
    return start, start + frame_length


def _window_sums(v: np.ndarray, start: np.ndarray, end: np.ndarray, dtype=None) -> np.ndarray:
    """Sums of v[:, start_j:end_j] (bounds clipped to [0, L]) for every window j -> (n, J).

    One pass over the data: the row is cut at every window boundary (np.add.reduceat) and the
    window sums are assembled from the few segment sums.
    """
    n, length = v.shape
    start, end = np.clip(start, 0, length), np.clip(end, 0, length)
    bounds = np.unique(np.concatenate([[0, length], start, end]))  # strictly increasing
    seg = np.add.reduceat(v, bounds[:-1], axis=1, dtype=dtype)  # (n, len(bounds) - 1)
    prefix = np.zeros((n, bounds.size), dtype=seg.dtype)
    np.cumsum(seg, axis=1, out=prefix[:, 1:])
    return prefix[:, np.searchsorted(bounds, end)] - prefix[:, np.searchsorted(bounds, start)]


def rms_frames(slices: np.ndarray, frame_length: int = RMS_FRAME, hop: int = HOP) -> np.ndarray:
    """librosa ``rms(y=s, frame_length, hop_length, center=True, pad_mode='constant')`` of every
    row of ``slices`` (n, spf) at once -> (n, n_windows) float64 (no framing copies)."""
    slices = np.asarray(slices, dtype=np.float64)
    start, end = _window_bounds(slices.shape[1], frame_length, hop)
    power = _window_sums(slices * slices, start, end) / frame_length  # zero padding adds nothing
    return np.sqrt(np.maximum(power, 0.0))


def zcr_frames(slices: np.ndarray, frame_length: int, hop: int = HOP,
               threshold: float = ZCR_THRESHOLD) -> np.ndarray:
    """librosa ``zero_crossing_rate(y=s, frame_length, hop_length, center=True)`` (edge padding)
    of every row of ``slices`` (n, spf) at once -> (n, n_windows) float64."""
    slices = np.asarray(slices, dtype=np.float64)
    n, spf = slices.shape
    # librosa zeroes |y| <= threshold, then compares sign bits: negative <=> y < -threshold
    neg = slices < -threshold
    # cross[:, k] (k >= 1): a crossing between samples k-1 and k; edge padding adds none
    cross = np.zeros((n, spf), dtype=np.uint8)
    np.not_equal(neg[:, 1:], neg[:, :-1], out=cross[:, 1:].view(bool))
    start, end = _window_bounds(spf, frame_length, hop)
    # the first element of each window is padded False: count crossings k with start < k < end
    return _window_sums(cross, start + 1, end, dtype=np.int64) / frame_length


def rms_librosa(y: np.ndarray, frame_length: int = RMS_FRAME, hop: int = HOP) -> np.ndarray:
    """Direct framing version of librosa's centred RMS for one signal -> (n_windows,)."""
    yp = np.pad(np.asarray(y, dtype=np.float64), frame_length // 2, mode="constant")
    frames = np.lib.stride_tricks.sliding_window_view(yp, frame_length)[::hop]
    return np.sqrt(np.mean(np.abs(frames) ** 2, axis=-1))


def zcr_librosa(y: np.ndarray, frame_length: int, hop: int = HOP,
                threshold: float = ZCR_THRESHOLD) -> np.ndarray:
    """Direct framing version of librosa's centred zero-crossing rate for one signal."""
    yp = np.pad(np.asarray(y, dtype=np.float64), frame_length // 2, mode="edge")
    frames = np.lib.stride_tricks.sliding_window_view(yp, frame_length)[::hop].copy()
    frames[np.abs(frames) <= threshold] = 0.0
    s = np.signbit(frames)
    return np.sum(s[:, 1:] != s[:, :-1], axis=-1) / frame_length


def _mfcc_cfg(sample_rate: int, frame_length_samples: int = 0) -> KaldiMfccConfig:
    return KaldiMfccConfig(sample_frequency=float(sample_rate), use_energy=True,
                           frame_length_samples=frame_length_samples)


def _slices(samples: np.ndarray, sample_rate: int, n_frames: int, fps: int) -> np.ndarray:
    spf = samples_per_frame(sample_rate, fps)
    if n_frames < 1:
        raise ValueError(f"n_frames must be >= 1, got {n_frames}")
    return fit_length(samples, n_frames * spf).reshape(n_frames, spf)  # (n, spf)


def _chunked_mfcc(frames: np.ndarray, cfg: KaldiMfccConfig) -> np.ndarray:
    out = [mfcc_from_frames(torch.from_numpy(np.ascontiguousarray(frames[i:i + _CHUNK],
                                                                  dtype=np.float32)), cfg)
           for i in range(0, frames.shape[0], _CHUNK)]
    return torch.cat(out).numpy().astype(np.float64)


def vico45(samples: np.ndarray, sample_rate: int, n_frames: int,
           fps: int = DEFAULT_FPS) -> np.ndarray:
    """The original per-frame vector, vectorised.

    Args:
        samples: (S,) mono float in [-1, 1]; cut or zero-padded at the end to n_frames * spf.
        sample_rate: Hz (the CLI always resamples to 44100 first, giving 45 dims).
        n_frames: video frame count.
    Returns:
        (n_frames, feature_dim(sample_rate, fps)) float32.
    """
    x = _slices(samples, sample_rate, n_frames, fps)
    cfg = _mfcc_cfg(sample_rate)
    if num_frames(x.shape[1], cfg) != 1:
        raise ValueError(f"sample rate {sample_rate} / fps {fps}: slice does not hold one MFCC frame")
    mf = _chunked_mfcc(x[:, :cfg.window_size], cfg)  # (n, 13): the slice's single Kaldi frame
    d1 = deltas(mf[:, None, :], axis=1)[:, 0]  # over a 1-frame sequence: exact zeros
    d2 = deltas(d1[:, None, :], axis=1)[:, 0]
    rms = rms_frames(x, RMS_FRAME, HOP)
    zcr = zcr_frames(x, sample_rate, HOP)  # window = sr samples, as the original
    return np.concatenate([mf, d1, d2, rms, zcr], axis=1).astype(np.float32)


def vico45_context(samples: np.ndarray, sample_rate: int, n_frames: int,
                   fps: int = DEFAULT_FPS) -> np.ndarray:
    """Fixed variant: whole-slice MFCC, deltas across video frames; same layout and width."""
    x = _slices(samples, sample_rate, n_frames, fps)
    cfg = _mfcc_cfg(sample_rate, frame_length_samples=x.shape[1])
    mf = _chunked_mfcc(x, cfg)  # (n, 13)
    d1 = deltas(mf, axis=0)
    d2 = deltas(d1, axis=0)
    rms = rms_frames(x, RMS_FRAME, HOP)
    zcr = zcr_frames(x, RMS_FRAME, HOP)
    return np.concatenate([mf, d1, d2, rms, zcr], axis=1).astype(np.float32)


def vico45_per_frame(samples: np.ndarray, sample_rate: int, n_frames: int,
                     fps: int = DEFAULT_FPS) -> np.ndarray:
    """Reference loop in the original's call pattern: one video frame at a time (slow)."""
    x = _slices(samples, sample_rate, n_frames, fps)
    cfg = _mfcc_cfg(sample_rate)
    rows = []
    for s in x:
        mf = mfcc(torch.from_numpy(s.astype(np.float32)), cfg).numpy().astype(np.float64)  # (1, 13)
        d1 = deltas(mf, axis=0)
        d2 = deltas(d1, axis=0)
        rows.append(np.concatenate([mf[0], d1[0], d2[0], rms_librosa(s, RMS_FRAME, HOP),
                                    zcr_librosa(s, sample_rate, HOP)]))
    return np.stack(rows).astype(np.float32)


FEATURE_SETS: dict[str, Callable[..., np.ndarray]] = {
    "vico45": vico45,
    "vico45_context": vico45_context,
}


def extract(feature_set: str, samples: np.ndarray, sample_rate: int, n_frames: int,
            fps: int = DEFAULT_FPS) -> np.ndarray:
    """Dispatch by name -> (n_frames, feature_dim) float32."""
    try:
        fn = FEATURE_SETS[feature_set]
    except KeyError:
        raise ValueError(f"unknown feature set {feature_set!r}; choose from {sorted(FEATURE_SETS)}")
    return fn(samples, sample_rate, n_frames, fps)
