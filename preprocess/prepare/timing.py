"""Resample any frame timing (25, 60, variable frame rate) to 30 fps by timestamps."""
from __future__ import annotations

import numpy as np

FPS = 30


def clip_duration(times: np.ndarray) -> float:
    """Seconds covered by frames shown at ``times`` (sorted, seconds): last minus first time plus
    one frame interval (the median interval, so variable frame rates count correctly)."""
    t = np.asarray(times, dtype=np.float64)
    if t.size == 0:
        return 0.0
    if t.size == 1:
        return 1.0 / FPS
    return float(t[-1] - t[0] + np.median(np.diff(t)))


def n_output_frames(duration: float, fps: int = FPS) -> int:
    """round(duration * fps), halves rounded up (not to even)."""
    return int(np.floor(duration * fps + 0.5))


def tick_sources(times: np.ndarray, fps: int = FPS, eps: float = 1e-3) -> np.ndarray:
    """For each output tick i (time t0 + i/fps) the index of the source frame on screen then: the
    last frame whose time is at or before the tick, with ``eps`` seconds of slack because many
    containers (mkv, webm, some mp4) round timestamps to the millisecond: a 60 fps frame stamped
    0.067 s belongs to the tick at 0.0667 s. (n_output_frames,) int64, non-decreasing."""
    t = np.maximum.accumulate(np.asarray(times, dtype=np.float64))  # guard against pts jitter
    n = n_output_frames(clip_duration(t), fps)
    ticks = t[0] + np.arange(n) / fps
    idx = np.searchsorted(t, ticks + eps, side="right") - 1
    return np.clip(idx, 0, t.size - 1).astype(np.int64)
