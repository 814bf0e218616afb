"""Audio featurisation throughput: the vectorised extractor against the original's per-frame loop.

The baseline calls the feature functions one video frame at a time, as the original
preprocess/extract.py does (Kaldi MFCC, deltas, RMS, ZCR per 1470-sample slice); ours computes
all frames at once. Both produce the same values (checked). Throughput is seconds of 44.1 kHz
audio featurised per wall-clock second; the last line prints the speed-up.

  python -m bench.bench_audio                 # 60 s of audio, best of 3
  python -m bench.bench_audio --seconds 300 --threads 1
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from preprocess.audio.features import vico45, vico45_context, vico45_per_frame

SR, FPS = 44100, 30


def _audio(seconds: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    f0 = 130 + 25 * np.sin(2 * np.pi * 0.7 * t)
    ph = 2 * np.pi * np.cumsum(f0) / SR
    x = sum(np.sin(k * ph) / k for k in range(1, 10)) * 0.5 * (1 - np.cos(2 * np.pi * 4 * t))
    x = 0.5 * x / np.abs(x).max() + 0.01 * rng.standard_normal(t.size)
    return np.round(x * 32767) / 32768.0


def _best(fn, repeats: int) -> tuple[float, np.ndarray]:
    best, out = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=60.0, help="audio length (default 60)")
    p.add_argument("--repeats", type=int, default=3, help="timing repeats, best kept (default 3)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1, one core)")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    x = _audio(a.seconds)
    n = int(a.seconds * FPS)
    vico45(x[: SR], SR, FPS)  # warm-up (FFT plans, caches)
    t_loop, ref = _best(lambda: vico45_per_frame(x, SR, n), 1)
    t_vec, ours = _best(lambda: vico45(x, SR, n), a.repeats)
    t_ctx, _ = _best(lambda: vico45_context(x, SR, n), a.repeats)
    diff_mfcc = float(np.abs(ours[:, :13] - ref[:, :13]).max())
    diff_rest = float(np.abs(ours[:, 13:] - ref[:, 13:]).max())
    print(f"audio: {a.seconds:.0f} s at {SR} Hz = {n} video frames, torch threads {a.threads}")
    print(f"per-frame loop (original call pattern): {t_loop:.3f} s -> {a.seconds / t_loop:.1f} s audio/s")
    print(f"vectorised vico45:                      {t_vec:.3f} s -> {a.seconds / t_vec:.1f} s audio/s")
    print(f"vectorised vico45_context:              {t_ctx:.3f} s -> {a.seconds / t_ctx:.1f} s audio/s")
    print(f"max |diff| vs loop: MFCC {diff_mfcc:.2e} (float32 FFT batching), other dims {diff_rest:.2e}")
    if diff_mfcc > 1e-3 or diff_rest > 1e-7:
        raise SystemExit("values differ from the per-frame loop")
    print(f"speedup vico45 vectorised vs per-frame loop: {t_loop / t_vec:.1f}x")


if __name__ == "__main__":
    main()
