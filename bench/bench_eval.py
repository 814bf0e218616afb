"""Evaluation throughput: the one-pass evaluator against one decode pass per metric, as the original.

Baseline = the original's structure: each metric script decodes every GT/predicted video again
and calls its metric one frame at a time (piq-style per-frame PSNR/SSIM, ``cpbd.compute`` of the
cpbd package per frame, landmarks per frame for LipLMD with one detector). Ours = one decode,
batched PSNR/SSIM, vectorised CPBD, landmarks in worker threads (the headline figure is with
a cold GT cache; a second line shows a run with the GT landmarks cached, as when several
submissions are scored against the same GT). Both run on the same synthetic
videos (predictions = blurred GT) and must give the same numbers (checked). Also: our CPBD alone
against the cpbd package on the same grey frames. The last line prints the one-pass speed-up.

  python -m bench.bench_eval                  # 3 clips x 90 frames (the demo dataset's size)
  python -m bench.bench_eval --pairs 3 --frames 90 --threads 2

Needs the test-only package cpbd-py312 for the baseline's CPBD (falls back to ours per frame).
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from common.faces import get_backend
from common.media import iter_frames, read_video, write_video
from common.synthetic import generate
from evaluation.metrics.cpbd import cpbd as our_cpbd
from evaluation.metrics.engine import EvalSettings, Evaluator
from evaluation.metrics.lmd import first_face_landmarks, lip_distances
from evaluation.metrics.psnr_ssim import psnr, ssim, to_nchw

METRICS = ["psnr", "ssim", "cpbd", "lipLMD"]


def make_data(root: Path, pairs: int, frames: int) -> tuple[Path, Path, list[str]]:
    syn = generate(root / "syn", pairs=pairs, frames=frames, seed=0)
    gt_dir, pd_dir = root / "gt", root / "pd"
    uuids = []
    for p in sorted((syn / "videos").glob("*.speaker.mp4")):
        uuids.append(p.name.split(".")[0])
        v = read_video(p)
        write_video(gt_dir / p.name, v)
        write_video(pd_dir / p.name, np.stack([cv2.GaussianBlur(f, (7, 7), 2.0) for f in read_video(gt_dir / p.name)]))
    return gt_dir, pd_dir, uuids


def ours(gt_dir: Path, pd_dir: Path, uuids: list[str], workers: int, cache_dir: Path | None = None) -> tuple[dict, int]:
    ev = Evaluator(METRICS, EvalSettings(gt_video_folder=str(gt_dir), pd_video_folder=str(pd_dir), workers=workers,
                                         cache_dir=str(cache_dir) if cache_dir else None))
    recs = [ev.evaluate_video(u).record for u in uuids]
    n = sum(r["n_frames"] for r in recs)
    return {m: sum(r[m] * r[f"{m}_frames"] for r in recs) / sum(r[f"{m}_frames"] for r in recs) for m in METRICS}, n


def baseline(gt_dir: Path, pd_dir: Path, uuids: list[str]) -> dict:
    try:
        import cpbd as cpbd_pkg
        cpbd_fn = cpbd_pkg.compute
    except ImportError:
        cpbd_fn = our_cpbd
    backend = get_backend("dlib")
    out: dict[str, list[float]] = {m: [] for m in METRICS}

    def pairs(u):  # one fresh decode of both videos per metric, one frame at a time
        name = f"{u}.speaker.mp4"
        return zip(iter_frames(gt_dir / name, 1), iter_frames(pd_dir / name, 1))

    with torch.no_grad():
        for u in uuids:  # compute_base_metrics.py: PSNR and SSIM
            for g, p in pairs(u):
                gt, pd = to_nchw(g), to_nchw(p)
                out["psnr"].append(float(psnr(pd, gt)[0]))
                out["ssim"].append(float(ssim(pd, gt)[0]))
    for u in uuids:  # compute_cpbd.py (decodes the prediction only)
        for (p,) in ((p,) for p in iter_frames(pd_dir / f"{u}.speaker.mp4", 1)):
            out["cpbd"].append(float(cpbd_fn(cv2.cvtColor(p[0], cv2.COLOR_RGB2GRAY))))
    for u in uuids:  # compute_lmd.py
        for g, p in pairs(u):
            lg, lp = first_face_landmarks(backend, g[0]), first_face_landmarks(backend, p[0])
            if lg is not None and lp is not None:
                out["lipLMD"].append(float(lip_distances(lp[None], lg[None])[0][0]))
    return {m: float(np.mean(v)) for m, v in out.items()}


def bench_cpbd(pd_dir: Path, uuids: list[str], n: int) -> tuple[float, float, float]:
    import cpbd as cpbd_pkg

    greys = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for u in uuids for f in read_video(pd_dir / f"{u}.speaker.mp4")][:n]
    t = time.perf_counter()
    a = [our_cpbd(g) for g in greys]
    t_ours = time.perf_counter() - t
    t = time.perf_counter()
    b = [cpbd_pkg.compute(g) for g in greys]
    t_ref = time.perf_counter() - t
    return len(greys) / t_ours, len(greys) / t_ref, float(np.max(np.abs(np.array(a) - np.array(b))))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", type=int, default=3, help="synthetic clips")
    ap.add_argument("--frames", type=int, default=90, help="frames per clip")
    ap.add_argument("--threads", type=int, default=2, help="torch threads and face-detection workers")
    ap.add_argument("--cpbd_frames", type=int, default=30, help="frames for the CPBD-only comparison")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        gt_dir, pd_dir, uuids = make_data(Path(tmp), args.pairs, args.frames)
        t, c = time.perf_counter(), time.process_time()
        ref = baseline(gt_dir, pd_dir, uuids)
        t_base, c_base = time.perf_counter() - t, time.process_time() - c
        t, c = time.perf_counter(), time.process_time()
        got, n = ours(gt_dir, pd_dir, uuids, args.threads, Path(tmp) / "cache")  # cold: fills the GT cache
        t_ours, c_ours = time.perf_counter() - t, time.process_time() - c
        t = time.perf_counter()
        warm, _ = ours(gt_dir, pd_dir, uuids, args.threads, Path(tmp) / "cache")  # GT landmarks cached
        t_warm = time.perf_counter() - t
        assert all(abs(warm[m] - got[m]) < 1e-12 for m in METRICS)
        for m in METRICS:
            print(f"{m:8s} ours {got[m]:.6f}  per-metric baseline {ref[m]:.6f}  |diff| {abs(got[m] - ref[m]):.2e}")
        try:
            f_ours, f_ref, diff = bench_cpbd(pd_dir, uuids, args.cpbd_frames)
            print(f"CPBD alone: ours {f_ours:.1f} frames/s, cpbd package {f_ref:.1f} frames/s, "
                  f"speed-up {f_ours / f_ref:.1f}x, max |diff| {diff:.1e}")
        except ImportError:
            print("CPBD alone: cpbd package not installed (pip install cpbd-py312), skipped")
    print(f"{n} frame pairs, metrics {','.join(METRICS)}, {args.threads} threads; CPU seconds (all threads): "
          f"one-pass {c_ours:.1f}, per-metric {c_base:.1f}")
    print(f"with the GT landmark cache warm (a further submission on the same GT): {n / t_warm:.1f} frames/s, "
          f"{t_base / t_warm:.2f}x")
    print(f"one-pass evaluator {n / t_ours:.1f} frames/s; one decode per metric, per-frame calls {n / t_base:.1f} frames/s")
    print(f"speed-up {t_base / t_ours:.2f}x")


if __name__ == "__main__":
    main()
