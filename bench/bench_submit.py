"""Batched generation against the per-clip command chain: per-clip overhead.

Both sides make the same talking-head videos of N clips of a released-layout validation folder
(common.synthetic --layout challenge_val) with the same checkpoint and weights:

- batched: one ``python -m pipeline.submit --task speaker`` process; each model is loaded once
  and the clips go through pipeline.engine one after the other;
- chain: for each clip, the one-clip work folder of pipeline.generate and the eight stage command
  lines run as subprocesses (validate, landmarks, recon, audio_features, rearrange, motion, lmdb,
  render), as pipeline.generate did before the engine and as the demo still does; each process
  starts Python, imports torch and loads its model.

Network time = the seconds of the recon, motion and render steps as the batched side records
them per clip (records/<name>.json); per-clip overhead = (wall - network time) / N on each side.
The outputs are compared frame by frame (same steps, same code: equal up to a rounding).

  python -m bench.bench_submit                       # 6 clips x 8 frames, CPU, smoke-test weights
  python -m bench.bench_submit --clips 6 --frames 30 --device cuda

Last line: the per-clip overhead ratio chain / batched (goal >= 3x) and the total wall ratio.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
NETWORK_STEPS = ("recon", "motion", "render")


def setup(root: Path, clips: int, frames: int) -> tuple[Path, Path, Path]:
    """Validation folder, smoke-test weights and a 1-epoch speaker checkpoint (timing, not quality)."""
    import torch

    from common.synthetic import generate
    from common.smoke_weights import make_smoke_checkpoint
    from common.weights import get_spec
    from tests.vico.conftest import make_features  # small features in the exact preprocess formats
    from vico.train import main as train_main

    data = generate(root / "val", pairs=clips, frames=frames, seed=0, layout="challenge_val")
    weights = root / "weights"
    for name in ("deep3dfacerecon_reconnet_resnet50", "pirender_face_generator"):
        make_smoke_checkpoint(name, get_spec(name).default_file(weights))
    make_features(root / "feat", (40, 30), "train", seed=0)
    torch.set_num_threads(1)
    assert train_main(["--task", "speaker", "--data", str(root / "feat"), "--output_path", str(root / "speaker"),
                       "--max_epochs", "1", "--time_size", "20", "--batch_size", "2", "--device", "cpu"]) == 0
    return data, weights, root / "speaker" / "checkpoints" / "latest"


def chain_steps(work: Path, ckpt: Path, recon: Path, pirender: Path, device: str, feature_set: str):
    """The eight stage command lines of one clip (pipeline.generate before the engine)."""
    from pipeline.runner import Step

    data, feats = work / "data", work / "features"
    return [
        Step("validate", "common.dataset", ["validate", data]),
        Step("landmarks", "Deep3DFaceRecon_pytorch.extract_kp_videos",
             ["--input_dir", work / "recon_inputs", "--output_dir", work / "keypoints"]),
        Step("recon", "Deep3DFaceRecon_pytorch.face_recon_videos",
             ["--input_dir", work / "recon_inputs", "--keypoint_dir", work / "keypoints", "--output_dir",
              work / "recons", "--checkpoint", recon, "--device", device]),
        Step("audio_features", "preprocess.extract_audio_features",
             ["--input_audio_folder", data / "audios", "--video_folder", data / "videos",
              "--output_folder", feats / "audio_feats", "--feature_set", feature_set]),
        Step("rearrange", "preprocess.rearrange_recon_coeffs",
             ["--input_folder", work / "recons", "--output_folder", feats / "video_feats"]),
        Step("motion", "vico.eval",
             ["--task", "speaker", "--data", data, "--features", feats, "--resume", ckpt, "--output_path",
              work / "generated", "--split_csv", data / "test.csv", "--batch_size", 1, "--device", device,
              "--still_roles", "speaker", "listener"]),
        Step("lmdb", "PIRender.prepare_vox_lmdb",
             ["--path", data / "videos", "--coeff_3dmm_path", work / "generated" / "recon_coeffs",
              "--out", work / "vox_lmdb", "--n_worker", 1]),
        Step("render", "PIRender.inference",
             ["--input", work / "vox_lmdb", "--checkpoint", pirender, "--output_dir", work / "rendered",
              "--audio_dir", data / "audios", "--names", "generated.speaker", "--device", device]),
    ]


def run_chain(data: Path, uuids: list[str], weights: Path, ckpt: Path, out: Path, device: str) -> float:
    """N clips, each through the eight stage subprocesses; returns the wall seconds."""
    from pipeline.generate import (GenerateConfig, build_dataset, prepare_work_dir, read_inputs, resolve)
    from pipeline.runner import Runner

    t0 = time.time()
    for u in uuids:
        cfg = resolve(GenerateConfig(task="speaker", out=out / f"{u}.speaker.mp4", checkpoint=ckpt,
                                     audio=data / "audios" / f"{u}.wav",
                                     image=data / "first_frames" / f"{u}.speaker.jpg",
                                     work_dir=out / "work" / u, weights_dir=weights, device=device))
        prepare_work_dir(cfg.work_dir)
        build_dataset(cfg, read_inputs(cfg))
        steps = chain_steps(cfg.work_dir, ckpt, cfg.recon_checkpoint, cfg.pirender_checkpoint, device,
                            cfg.feature_set)
        Runner(cfg.work_dir, steps).run(steps)
        shutil.copyfile(cfg.work_dir / "rendered" / "generated.speaker.mp4", cfg.out)
    return time.time() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clips", type=int, default=6, help="clips on each side")
    ap.add_argument("--frames", type=int, default=8, help="frames per clip (30 fps)")
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    ap.add_argument("--threads", type=int, default=2, help="OMP threads of every process")
    ap.add_argument("--keep", default=None, help="work folder to keep (default: a temporary one)")
    args = ap.parse_args()
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    from common import media

    root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench_submit_"))
    data, weights, ckpt = setup(root, args.clips, args.frames)
    uuids = [ln.split(",")[1] for ln in (data / "val.csv").read_text().splitlines()[1:]]
    env = {**os.environ, "PYTHONPATH": str(REPO)}

    t0 = time.time()
    subprocess.run([sys.executable, "-m", "pipeline.submit", "--data", str(data), "--task", "speaker",
                    "--team", "bench", "--out", str(root / "batched"), "--speaker_checkpoint", str(ckpt),
                    "--weights_dir", str(weights), "--device", args.device], cwd=REPO, env=env, check=True,
                   capture_output=True)
    wall_b = time.time() - t0
    net = 0.0
    for u in uuids:
        rec = json.loads((root / "batched" / "records" / f"{u}.speaker.json").read_text())
        net += sum(s["seconds"] for s in rec["steps"] if s["step"] in NETWORK_STEPS)
    wall_c = run_chain(data, uuids, weights, ckpt, root / "chain", args.device)

    diff = 0
    for u in uuids:
        a = media.read_video(root / "batched" / "talkinghead_test_results" / f"{u}.speaker.mp4").astype(int)
        b = media.read_video(root / "chain" / f"{u}.speaker.mp4").astype(int)
        assert a.shape == b.shape, (a.shape, b.shape)
        diff = max(diff, int(np.abs(a - b).max()))
    n = len(uuids)
    over_b, over_c = (wall_b - net) / n, (wall_c - net) / n
    print(f"clips: {n} x {args.frames} frames ({args.frames / 30:.2f} s each), device {args.device}, "
          f"{args.threads} threads, smoke-test weights")
    print(f"batched (pipeline.submit): {wall_b:.1f} s wall; chain (8 subprocesses per clip): {wall_c:.1f} s wall")
    print(f"network time (recon + motion + render steps): {net:.1f} s; largest pixel difference: {diff}")
    print(f"per-clip overhead: batched {over_b:.2f} s, chain {over_c:.2f} s")
    print(f"per-clip overhead chain/batched: {over_c / max(over_b, 1e-9):.2f}x (goal >= 3x); "
          f"total wall ratio {wall_c / wall_b:.2f}x")
    if not args.keep:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
