"""68-point face landmarks of every frame of face videos, in the upstream keypoint .txt format.

Replaces the upstream ``extract_kp_videos.py`` (spec 1.1): same output format and no-face
handling (a frame without a face gets the previous frame's landmarks, or 68 rows of -1 before
the first face), but recursive discovery with mirrored output paths, a CPU landmark backend
(dlib) by default, optional detection on every N-th frame only, and per-video failures recorded
instead of crashing. With several faces one face is followed (the largest at the start, then by
overlap; common.faces.FaceTracker); run.json records, per video, the frames without the face,
the frames with several faces and the face used. A video whose face is missing in more than
--max_no_face_fraction of its frames fails (nothing is written for it). ``--backend 3ddfa_v2`` gives the 2023 challenge's cleardusk/3DDFA_V2
landmarks (its video tracking mode by default; docs/recon.md).
"""
from __future__ import annotations

import argparse
import importlib.util
import logging
import multiprocessing as mp
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence


from common.media import pin_mmap_threshold
from common.cli import HelpFormatter
from common import dist
from common.faces import BACKENDS, Track, get_backend, track_face
from common.io import RunReport, UserError, is_complete, run_cli, setup_logging
from common.progress import Progress

from .data.frames import find_inputs, iter_media_frames
from .data.keypoints import save_keypoints

log = logging.getLogger("Deep3DFaceRecon_pytorch.extract_kp_videos")
STAGE = "Deep3DFaceRecon_pytorch.extract_kp_videos"


@dataclass
class KeypointConfig:
    input_dir: str
    output_dir: str
    backend: str = "dlib"
    detect_every: int = 1
    workers: int = 1
    device: str = "cpu"
    max_no_face_fraction: float = 0.5
    overwrite: bool = False
    tddfa_arch: str = "mb1"
    tddfa_boxes: str = "faceboxes"
    tddfa_mode: str = "track"
    weights_dir: str | None = None


EPILOG = """\
examples:
  # the README layout: videos/test/*.mp4 -> keypoints/test/*.txt
  python -m Deep3DFaceRecon_pytorch.extract_kp_videos \\
      --input_dir data/listening_head/videos --output_dir data/listening_head/keypoints

  # 3-4x faster: detect the face every 5th frame, fit landmarks on every frame; 2 processes
  python -m Deep3DFaceRecon_pytorch.extract_kp_videos --input_dir videos --output_dir keypoints \\
      --detect_every 5 --workers 2

  # 3DDFA_V2 landmarks as the 2023 challenge (weights in weights/tddfa_v2/, see docs/weights.md)
  python -m Deep3DFaceRecon_pytorch.extract_kp_videos --input_dir videos --output_dir keypoints \
      --backend 3ddfa_v2

  # the original baseline's detector (pip install face-alignment), sharded over 2 GPUs
  torchrun --nproc_per_node 2 -m Deep3DFaceRecon_pytorch.extract_kp_videos \\
      --input_dir videos --output_dir keypoints --backend fan --device cuda

inputs: every .mp4 (and .png/.jpg, as one-frame videos) under --input_dir, recursively;
input_dir/REL/NAME.mp4 -> output_dir/REL/NAME.txt, the flattened (N*68*2) landmarks (x, y in
pixels, y down), one float per line. Finished outputs are skipped (--overwrite redoes them);
failures are listed in output_dir/run.json and make the exit status 1.
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m Deep3DFaceRecon_pytorch.extract_kp_videos",
                                description=__doc__, epilog=EPILOG, formatter_class=HelpFormatter)
    p.add_argument("--input_dir", required=True, help="folder of videos/images (searched recursively)")
    p.add_argument("--output_dir", required=True, help="where the .txt files and run.json go")
    p.add_argument("--backend", default=KeypointConfig.backend, choices=BACKENDS,
                   help="dlib: HOG detector + 68-point predictor (CPU); fan: face_alignment FAN 2D "
                        "as upstream (optional package); 3ddfa_v2: cleardusk/3DDFA_V2 (2023 challenge)")
    p.add_argument("--detect_every", type=int, default=KeypointConfig.detect_every,
                   help="run the face detector on every N-th frame and reuse its box in between "
                        "(landmarks are fitted on every frame)")
    p.add_argument("--workers", type=int, default=KeypointConfig.workers,
                   help="worker processes per rank (videos are spread over them)")
    p.add_argument("--device", default=KeypointConfig.device, help="device of the fan / 3ddfa_v2 backend")
    p.add_argument("--tddfa_arch", default=KeypointConfig.tddfa_arch, choices=("mb1", "mb05"),
                   help="3ddfa_v2: MobileNet width 1.0 (mb1_120x120.pth) or 0.5 (mb05_120x120.pth)")
    p.add_argument("--tddfa_boxes", default=KeypointConfig.tddfa_boxes, choices=("faceboxes", "dlib"),
                   help="3ddfa_v2: face boxes from FaceBoxes (as upstream) or dlib's HOG detector")
    p.add_argument("--tddfa_mode", default=KeypointConfig.tddfa_mode, choices=("track", "detect"),
                   help="3ddfa_v2: track = upstream demo_video.py (first frame from its box, then each "
                        "frame from the previous frame's landmarks; --detect_every unused); detect = "
                        "box -> landmarks on every frame (--detect_every applies)")
    p.add_argument("--weights_dir", default=None,
                   help="3ddfa_v2: folder holding tddfa_v2/ (default $VICO_WEIGHTS_DIR or weights/)")
    p.add_argument("--max_no_face_fraction", type=float, default=KeypointConfig.max_no_face_fraction,
                   help="fail a video whose face is missing (landmarks carried over) in more than this "
                        "fraction of its frames; 1 keeps every video, as upstream")
    p.add_argument("--overwrite", action="store_true", help="redo outputs that already exist")
    p.add_argument("--verbose", action="store_true", help="debug logging")
    return p


def output_path(path: Path, in_root: Path, out_root: Path) -> Path:
    return out_root / path.relative_to(in_root).with_suffix(".txt")


_BACKEND = None  # per worker process, built once by _init_worker


def backend_options(cfg: KeypointConfig) -> dict:
    """Keyword options of ``get_backend`` for ``cfg.backend``."""
    if cfg.backend != "3ddfa_v2":
        return {}
    return {"arch": cfg.tddfa_arch, "boxes": cfg.tddfa_boxes, "weights_dir": cfg.weights_dir}


def _init_worker(backend: str, device: str, threads: int, options: dict | None = None) -> None:
    global _BACKEND  # noqa: PLW0603 - one backend per worker process
    dist.configure_threads(threads)
    _BACKEND = get_backend(backend, device=device, **(options or {}))


def extract_one(video: Path, out: Path, backend, detect_every: int = 1,
                max_no_face_fraction: float = 1.0) -> dict:
    """Landmarks of one video written to ``out``; returns the track summary (``Track.summary``).
    UserError, and nothing written, when the face is missing in too many frames.

    ``detect_every`` 0 means the backend's own video tracking (3ddfa_v2 ``track``)."""
    if detect_every == 0:
        lms, _, found = backend.track(iter_media_frames(video))
        track = Track(lms, found, found.astype(int), None)  # tracking mode: one face, no face count
    else:
        track = track_face(iter_media_frames(video), backend, detect_every)
    lms = track.landmarks
    assert lms.ndim == 3 and lms.shape[1:] == (68, 2), lms.shape
    facts = track.summary()
    n, missing = facts["frames"], facts["n_no_face"]
    if n and 0 < missing < n and missing / n > max_no_face_fraction:
        raise UserError(f"{video}: no face in {missing} of {n} frames ({missing / n:.0%}, frames "
                        f"{facts['no_face_frames']}), above --max_no_face_fraction {max_no_face_fraction:g}; "
                        f"use a clip where the face stays in view (python -m preprocess.prepare_videos "
                        f"crops one) or raise the limit")
    if n and missing == n and max_no_face_fraction < 1.0:
        raise UserError(f"{video}: no face in any of its {n} frames (--max_no_face_fraction "
                        f"{max_no_face_fraction:g}; 1 writes -1 rows as upstream)")
    save_keypoints(out, lms)
    return facts


def _work(task: tuple[str, str, str, int, float]) -> tuple[str, str | None, dict]:
    name, video, out, detect_every, max_no_face = task
    try:
        facts = extract_one(Path(video), Path(out), _BACKEND, detect_every, max_no_face)
    except UserError as e:
        return name, str(e), {}
    except OSError:
        raise  # the output folder, not this video: one error line for the run (common.io.run_cli)
    except Exception as e:  # noqa: BLE001 - one bad video must not stop the others
        return name, f"{video}: {type(e).__name__}: {' '.join(str(e).split())}", {}
    return name, None, facts


def run(cfg: KeypointConfig, info: dist.DistInfo, backend=None) -> RunReport:
    """Extract this rank's share of the inputs; returns this rank's report. ``backend``: a
    landmark backend built once by the caller (batched generation), used in this process."""
    global _BACKEND  # noqa: PLW0603 - the in-process worker's backend
    in_root, out_root = Path(cfg.input_dir), Path(cfg.output_dir)
    report = RunReport(STAGE, cfg, out_root)
    tasks = []
    inputs = find_inputs(in_root)
    first: dict[Path, Path] = {}  # over all ranks' inputs: a.mp4 and a.png would collide
    for path in inputs:
        first.setdefault(output_path(path, in_root, out_root), path)
    for path in dist.shard(inputs, info):
        name = path.relative_to(in_root).with_suffix("").as_posix()
        out = output_path(path, in_root, out_root)
        if first[out] != path:
            report.fail(name, f"{path}: same output {out} as {first[out]}")
            continue
        if not cfg.overwrite and is_complete(out):
            report.skip(name)
            continue
        tracking = cfg.backend == "3ddfa_v2" and cfg.tddfa_mode == "track"
        tasks.append((name, str(path), str(out), 0 if tracking else cfg.detect_every, cfg.max_no_face_fraction))
    outputs = {t[0]: t[2] for t in tasks}
    if not tasks:
        return report
    device = str(info.device) if cfg.backend in ("fan", "3ddfa_v2") else "cpu"
    workers = max(1, min(cfg.workers, len(tasks)))
    bar = Progress(len(tasks), desc="landmarks", unit="video", enabled=info.is_main)
    threads = max(1, dist.thread_count() // workers)  # this process's CPUs, shared by its workers
    if backend is not None:
        _BACKEND, workers = backend, 1
    if workers == 1:
        if backend is None:
            _init_worker(cfg.backend, device, threads, backend_options(cfg))
        results = map(_work, tasks)
        pool = None
    else:
        pool = mp.get_context("spawn").Pool(workers, _init_worker, (cfg.backend, device, threads, backend_options(cfg)))
        results = pool.imap_unordered(_work, tasks)
    try:
        for name, err, facts in results:
            bar.update(1, frames=facts.get("frames", 0))
            if err is not None:
                report.fail(name, err)
                continue
            n, missing = facts["frames"], facts["n_no_face"]
            if missing == n:
                log.warning("%s: no face in any of its %d frames (all rows -1, as upstream)", name, n)
            elif missing:
                log.warning("%s: no face in %d of %d frames (previous landmarks reused)", name, missing, n)
            if facts["n_multi_face"]:
                log.info("%s: several faces in %d frames; followed the one chosen at the start",
                         name, facts["n_multi_face"])
            report.ok(name, [outputs[name]], **facts)
    finally:
        if pool is not None:
            pool.close()
            pool.join()
        bar.close()
    return report


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)
    pin_mmap_threshold()  # flat peak memory over long videos
    cfg = KeypointConfig(**{k: v for k, v in vars(args).items() if k != "verbose"})
    if cfg.detect_every < 1:
        raise UserError(f"--detect_every must be >= 1, got {cfg.detect_every}")
    if not 0.0 <= cfg.max_no_face_fraction <= 1.0:
        raise UserError(f"--max_no_face_fraction must be within [0, 1], got {cfg.max_no_face_fraction}")
    if cfg.workers < 1:
        raise UserError(f"--workers must be >= 1, got {cfg.workers}")
    if not Path(cfg.input_dir).is_dir():
        raise UserError(f"{cfg.input_dir}: input folder not found")
    info = dist.init_dist("cpu" if cfg.backend == "dlib" else cfg.device)
    try:
        if cfg.backend == "fan" and importlib.util.find_spec("face_alignment") is None:
            get_backend("fan")  # raises the one-line 'pip install face-alignment' error
        if cfg.backend == "3ddfa_v2":  # a missing weights file: one error line, before any worker starts
            get_backend("3ddfa_v2", **backend_options(cfg))
        report = run(cfg, info)
        return dist.finish_report(report, info)
    finally:
        dist.cleanup(info)


if __name__ == "__main__":
    run_cli(main)
