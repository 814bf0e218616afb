"""Per-frame 257-d 3DMM coefficients of face videos (Deep3DFaceRecon ResNet-50, no renderer).

Replaces the upstream ``face_recon_videos.py`` (spec 1.2): same alignment, same network, same
.mat output, but without nvdiffrast or the BFM face model, streaming the videos, batching frames
across videos, pairing keypoint files by name and carrying on past bad videos.
"""
from __future__ import annotations

import argparse
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from common.media import pin_mmap_threshold
from common.artifacts import save_recon_mat
from common.cli import HelpFormatter
from common import dist
from common.io import RunReport, UserError, is_complete, run_cli, setup_logging
from common.weights import load_checkpoint, load_state_dict_strict, resolve_weights
from common.progress import Progress

from .data import align
from .data.frames import find_inputs
from .data.stream import Batch, VideoJob, iter_batches, prefetch
from .models.recon_net import COEFF_DIM, ReconNet

log = logging.getLogger("Deep3DFaceRecon_pytorch.face_recon_videos")

WEIGHTS_NAME = "deep3dfacerecon_reconnet_resnet50"
STAGE = "Deep3DFaceRecon_pytorch.face_recon_videos"
# Measured (bench/bench_recon.py): on CPU one frame per call is fastest (ResNet-50 runs
# slower per frame in larger batches); GPUs want large batches.
AUTO_BATCH = {"cpu": 1, "cuda": 32}


@dataclass
class ReconConfig:
    input_dir: str
    keypoint_dir: str
    output_dir: str
    checkpoint: str | None = None
    batch_size: int = 0  # 0: auto (AUTO_BATCH by device type)
    device: str = "auto"
    gpu_align: bool = False
    overwrite: bool = False
    threads: int = 0
    allow_no_face: bool = False


EPILOG = """\
examples:
  # the README layout: videos/test/*.mp4 -> keypoints/test/*.txt -> recons/test/*.mat
  python -m Deep3DFaceRecon_pytorch.face_recon_videos \\
      --input_dir data/listening_head/videos --keypoint_dir data/listening_head/keypoints \\
      --output_dir data/listening_head/recons \\
      --checkpoint weights/face_recon_feat0.2_augment/epoch_20.pth

  # two processes (CPU: gloo; one GPU each with CUDA)
  torchrun --nproc_per_node 2 -m Deep3DFaceRecon_pytorch.face_recon_videos \\
      --input_dir videos --keypoint_dir keypoints --output_dir recons

inputs: every .mp4 (and .png/.jpg, as one-frame videos) under --input_dir, recursively; the
keypoint file of input_dir/REL/NAME.mp4 is keypoint_dir/REL/NAME.txt and the output is
output_dir/REL/NAME.mat with coeff (N,257) float32 and transform_params (N,5) float32.
Finished outputs are skipped (--overwrite redoes them); failures are listed in
output_dir/run.json and make the exit status 1.
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m Deep3DFaceRecon_pytorch.face_recon_videos",
                                description=__doc__, epilog=EPILOG, formatter_class=HelpFormatter)
    p.add_argument("--input_dir", required=True, help="folder of videos/images (searched recursively)")
    p.add_argument("--keypoint_dir", required=True, help="folder of the landmark .txt files (extract_kp_videos)")
    p.add_argument("--output_dir", required=True, help="where the .mat files and run.json go")
    p.add_argument("--checkpoint", default=None,
                   help="epoch_20.pth of face_recon_feat0.2_augment (default: "
                        "weights/face_recon_feat0.2_augment/epoch_20.pth or $VICO_WEIGHTS_DIR)")
    p.add_argument("--batch_size", type=int, default=ReconConfig.batch_size,
                   help="frames per network call, filled across videos; 0: auto (1 on CPU, where "
                        "larger batches are slower per frame; 32 on CUDA)")
    p.add_argument("--device", default=ReconConfig.device, help="auto, cpu, cuda or cuda:N")
    p.add_argument("--gpu_align", action="store_true",
                   help="align the crops on the device with a batched bicubic resampler (approximate: "
                        "differs from the upstream PIL crops by at most 1 grey level on few pixels)")
    p.add_argument("--allow_no_face", action="store_true",
                   help="a video with no face in any frame gets the fallback crop in every frame (the "
                        "original's behaviour) instead of failing; for scoring generated videos")
    p.add_argument("--overwrite", action="store_true", help="redo outputs that already exist")
    p.add_argument("--threads", type=int, default=ReconConfig.threads,
                   help="torch CPU threads per process (0: $OMP_NUM_THREADS when set, else the CPUs this process may "
                        "use divided by the local torchrun processes)")
    p.add_argument("--verbose", action="store_true", help="debug logging")
    return p


def make_jobs(cfg: ReconConfig) -> list[VideoJob]:
    """Pair every input with its keypoint file and output by relative path and name."""
    in_root, kp_root, out_root = Path(cfg.input_dir), Path(cfg.keypoint_dir), Path(cfg.output_dir)
    jobs = []
    for path in find_inputs(in_root):
        rel = path.relative_to(in_root)  # REL/NAME.mp4; NAME may contain dots (uuid.role)
        jobs.append(VideoJob(name=rel.with_suffix("").as_posix(), video=path,
                             keypoints=kp_root / rel.with_suffix(".txt"),
                             output=out_root / rel.with_suffix(".mat")))
    return jobs


def load_model(checkpoint: str | None, device: torch.device) -> ReconNet:
    """The network with the released weights, strictly loaded (one-line errors)."""
    path = resolve_weights(WEIGHTS_NAME, checkpoint)
    net = ReconNet()
    load_state_dict_strict(net, load_checkpoint(WEIGHTS_NAME, path), path)
    return net.eval().to(device)


class _Collector:
    """Per-video rows of coefficients, written when the video's last frame has been seen."""

    def __init__(self, jobs: Sequence[VideoJob], report: RunReport):
        self.jobs = jobs
        self.report = report
        self.rows: dict[int, list[tuple[np.ndarray, np.ndarray, np.ndarray]]] = {}

    def add(self, batch: Batch, coeff: np.ndarray) -> None:
        for j in np.unique(batch.job_ids):
            m = batch.job_ids == j
            self.rows.setdefault(int(j), []).append((batch.frame_ids[m], coeff[m], batch.trans[m]))
        for j, reason in batch.failed:
            self.rows.pop(j, None)
            self.report.fail(self.jobs[j].name, reason)
        for j in batch.completed:
            self._finish(j)

    def _finish(self, j: int) -> None:
        job = self.jobs[j]
        parts = self.rows.pop(j, [])
        try:
            idx = np.concatenate([p[0] for p in parts])
            coeff = np.concatenate([p[1] for p in parts])
            trans = np.concatenate([p[2] for p in parts])
            if not np.array_equal(idx, np.arange(len(idx))):
                raise RuntimeError("frames out of order")  # cannot happen: batches are in order
            if not np.isfinite(coeff).all():
                raise UserError(f"{job.video}: network output has NaN/inf")
            save_recon_mat(job.output, coeff, trans)
        except (UserError, RuntimeError) as e:  # an OSError (full disk, read-only) stops the run
            self.report.fail(job.name, e)
            return
        self.report.ok(job.name, [job.output])


def run(cfg: ReconConfig, info: dist.DistInfo, net: ReconNet) -> RunReport:
    """Reconstruct this rank's share of the inputs with ``net``; returns this rank's report."""
    report = RunReport(STAGE, cfg, cfg.output_dir)
    jobs_all = make_jobs(cfg)
    if not jobs_all and info.is_main:
        log.warning("no .mp4/.png/.jpg files under %s", cfg.input_dir)
    first: dict[Path, Path] = {}  # over all ranks' inputs: a.mp4 and a.png would collide
    for job in jobs_all:
        first.setdefault(job.output, job.video)
    todo: list[VideoJob] = []
    for job in dist.shard(jobs_all, info):
        if first[job.output] != job.video:
            report.fail(job.name, f"{job.video}: same output {job.output} as {first[job.output]}")
            continue
        if not cfg.overwrite and is_complete(job.output):
            report.skip(job.name)
            continue
        if not job.keypoints.is_file():
            report.fail(job.name, f"{job.keypoints}: keypoint file not found for {job.video}")
            continue
        todo.append(job)
    if not todo:
        return report
    collector = _Collector(todo, report)
    use_gpu_align = cfg.gpu_align
    batches = iter_batches(todo, cfg.batch_size, keep_frames=use_gpu_align, allow_no_face=cfg.allow_no_face)
    if info.device.type == "cuda":
        # Prepare the next batches while the GPU works. Not on CPU: there the network already
        # uses every core and a competing thread slows its OpenMP workers more than it saves.
        batches = prefetch(batches)
    bar = Progress(len(todo), desc="recon", unit="video", enabled=info.is_main)
    n_frames = 0
    with torch.inference_mode():
        for batch in batches:
            coeff = np.zeros((0, COEFF_DIM), np.float32)
            if len(batch):
                x = _align_on_device(batch, info.device) if use_gpu_align else batch.crops.to(info.device)
                assert x.shape[1:] == (3, align.TARGET_SIZE, align.TARGET_SIZE), x.shape
                coeff = net(x).float().cpu().numpy()  # (B,257)
                n_frames += len(batch)
            collector.add(batch, coeff)
            bar.update(len(batch.completed) + len(batch.failed), frames=len(batch))
    bar.close()
    return report


def _align_on_device(batch: Batch, device: torch.device) -> torch.Tensor:
    """Batched approximate alignment on ``device``; frames are grouped by size."""
    out = torch.empty((len(batch), 3, align.TARGET_SIZE, align.TARGET_SIZE), device=device)
    shapes: dict[tuple[int, ...], list[int]] = {}
    for i, f in enumerate(batch.frames or []):
        shapes.setdefault(f.shape, []).append(i)
    for idx in shapes.values():
        frames = torch.from_numpy(np.stack([batch.frames[i] for i in idx])).to(device)
        tps = torch.from_numpy(batch.trans[idx].astype(np.float64))
        out[idx] = align.align_batch_torch(frames, tps)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)
    pin_mmap_threshold()  # flat peak memory over long videos
    cfg = ReconConfig(**{k: v for k, v in vars(args).items() if k != "verbose"})
    if cfg.batch_size < 0:
        raise UserError(f"--batch_size must be >= 0, got {cfg.batch_size}")
    if not Path(cfg.input_dir).is_dir():
        raise UserError(f"{cfg.input_dir}: input folder not found")
    if cfg.device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"--device {cfg.device}: CUDA is not available here (use --device cpu)")
    info = dist.init_dist(None if cfg.device == "auto" else cfg.device)
    try:
        if cfg.batch_size == 0:
            cfg.batch_size = AUTO_BATCH.get(info.device.type, 1)
        dist.configure_threads(cfg.threads)
        # Load the checkpoint up front on every rank: a bad file fails all ranks alike, at once.
        net = load_model(cfg.checkpoint, info.device)
        report = run(cfg, info, net)
        return dist.finish_report(report, info)
    finally:
        dist.cleanup(info)


if __name__ == "__main__":
    run_cli(main)
