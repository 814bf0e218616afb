"""Every ViCo metric in one pass over the videos; per-video JSONL and aggregate results.json.

Replaces the original's evaluations/compute_{base_metrics,cpbd,fid,lmd}.py,
arcface_torch/compute_csim.py and lip_sync/compute_lipsync.py (one decode per video instead of
one per metric; results saved, not printed). Metric definitions default to the original's.
"""
from __future__ import annotations

import argparse
import json
import logging
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from common.progress import progress

from common.cli import HelpFormatter, add_run_record_arg
from common.dataset import read_csv_rows
from common.faces import BACKENDS
from common.dist import cleanup, gather_objects, init_dist, shard
from common.io import (RunReport, UserError, config_to_dict, run_cli, run_record_name, setup_logging, write_json_atomic,
                       write_text_atomic)
from evaluation.lipsync.pipeline import LipSyncConfig
from evaluation.metrics import registry, tddfa_motion
from evaluation.metrics.engine import EvalSettings, Evaluator, aggregate, merge_states, new_states, parse_metrics
from evaluation.metrics.fid import METHODS

log = logging.getLogger("evaluation.evaluate")

_GROUPS = registry.groups()
EPILOG = f"""\
metrics (results.json keys; frame-weighted over all frames of all videos as the original, plus
<metric>_video_mean = mean of per-video means; see docs/evaluation.md):
  default: {', '.join(_GROUPS['default'])}
  opt-in : {', '.join(m for m in _GROUPS['all'] if m not in _GROUPS['default'])}
  groups : {', '.join(_GROUPS)}
Lip sync (avoffset, avconf = LSE-C, avdist = LSE-D) needs only the predicted videos and
--gt_audio_folder; a face track must be longer than --lipsync_min_track frames at 25 fps
(default 100 as the original, i.e. clips over 4 s): a clip without one gets null and its
reason in results.json's lipsync_notes. By default the frames pass through the original's lossy
re-encodes (--lipsync_frames original), so that AVConf/AVDist compare with leaderboard figures.
A metric whose weights or inputs are missing is reported under "unavailable" with the reason
(--strict makes that an error). Per-video failures go to run.json and give exit status 1.

examples:
  # all default metrics of the speaker task
  python -m evaluation.evaluate --gt_video_folder data/gt --pd_video_folder out/pd \\
      --anno_file data/test.csv --task speaker --gt_audio_folder data/audios \\
      --gt_coeff_folder data/recons/test --pd_coeff_folder out/recon_coeffs/test \\
      --weights_dir weights --output out/results.json
  # only image metrics, listener task, score a shorter prediction on its first frames
  python -m evaluation.evaluate --gt_video_folder data/gt --pd_video_folder out/pd \\
      --anno_file data/test.csv --task listener --metrics psnr,ssim,cpbd,fid --truncate
  # lip sync only: generated videos and GT audio, no GT videos; short clips (> 40 frames at 25 fps)
  python -m evaluation.evaluate --pd_video_folder out/pd --gt_audio_folder data/audios \
      --anno_file data/test.csv --metrics lipsync --lipsync_min_track 40 --output sync.json
  # motion metrics straight from generated coefficients, no videos needed (e.g. vico.eval's output)
  python -m evaluation.evaluate --anno_file data/test.csv --task listener --metrics coeff \\
      --gt_coeff_folder data/recons --pd_coeff_folder runs/listener/recon_coeffs/test --output motion.json
  # the 2023 challenge settings: LipLMD on 3DDFA_V2 landmarks, motion from 3DDFA_V2's parameters
  python -m evaluation.evaluate --gt_video_folder data/gt --pd_video_folder out/pd \
      --anno_file data/test.csv --task listener --metrics lipLMD --landmarks 3ddfa_v2 --tddfa_motion
  # 4 processes, videos sharded, rank 0 writes the results
  torchrun --nproc_per_node 4 -m evaluation.evaluate ... --output out/results.json
"""


@dataclass
class EvaluateConfig(EvalSettings):
    """The command line's settings: the engine's (EvalSettings) plus those only the CLI uses."""

    anno_file: str = ""
    metrics: str = "default"
    output: str = "results.json"
    per_video: str | None = None
    no_cache: bool = False
    min_track: int = 100
    min_face_size: float = 100.0
    lipsync_frames: str = "original"
    strict: bool = False
    overwrite: bool = False
    verbose: bool = False
    device: str = "auto"
    run_record: str | None = None    # run.<name>.json instead of run.json (runs sharing a folder)

    def __post_init__(self) -> None:
        self.lipsync = LipSyncConfig(min_track=self.min_track, min_face_size=self.min_face_size,
                                     frames=self.lipsync_frames)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m evaluation.evaluate", description=__doc__, epilog=EPILOG,
                                formatter_class=HelpFormatter)
    d = EvaluateConfig()
    p.add_argument("--gt_video_folder", default=None,
                   help="ground-truth videos <uuid>.<task>.mp4 (not needed for --metrics coeff)")
    p.add_argument("--pd_video_folder", default=None,
                   help="predicted videos <uuid>.<task>.mp4 (not needed for --metrics coeff)")
    p.add_argument("--anno_file", required=True, help="csv with a uuid column (test.csv)")
    p.add_argument("--task", choices=("speaker", "listener"), default=d.task,
                   help="which role's videos and coefficients to score (<uuid>.<task>.mp4/.mat)")
    p.add_argument("--metrics", default=d.metrics, help="comma list of metrics/groups, 'default' or 'all'")
    p.add_argument("--gt_audio_folder", default=None, help="<uuid>.wav, for lip sync")
    p.add_argument("--gt_coeff_folder", default=None, help="GT <uuid>.<task>.mat (Deep3DFaceRecon coeff)")
    p.add_argument("--pd_coeff_folder", default=None, help="predicted <uuid>.<task>.mat")
    p.add_argument("--weights_dir", default=None, help="weights directory (default $VICO_WEIGHTS_DIR or weights/)")
    p.add_argument("--inception_weights", default=None, help="pt_inception-2015-12-05-6726825d.pth")
    p.add_argument("--arcface_weights", default=None, help="ms1mv3 r100 backbone.pth")
    p.add_argument("--syncnet_weights", default=None, help="syncnet_v2.model")
    p.add_argument("--output", default=d.output, help="aggregate results JSON")
    p.add_argument("--per_video", default=None, help="per-video JSONL (default: <output stem>.videos.jsonl)")
    p.add_argument("--batch_size", type=int, default=d.batch_size, help="frames per batch")
    p.add_argument("--fid_method", choices=METHODS, default=d.fid_method,
                   help="matrix sqrt: piq's Newton-Schulz (the original) or scipy sqrtm (pytorch-fid)")
    p.add_argument("--cache_dir", default=None,
                   help="cache of GT Inception features and GT landmarks (default: <output dir>/gt_cache)")
    p.add_argument("--no_cache", action="store_true", help="do not read or write the GT cache")
    p.add_argument("--landmarks", choices=BACKENDS, default=d.landmarks,
                   help="common.faces backend (3ddfa_v2: the 2023 challenge's landmarks)")
    p.add_argument("--tddfa_arch", choices=("mb1", "mb05"), default=d.tddfa_arch,
                   help="3ddfa_v2: MobileNet width 1.0 or 0.5 (weights_dir/tddfa_v2/)")
    p.add_argument("--tddfa_boxes", choices=("faceboxes", "dlib"), default=d.tddfa_boxes,
                   help="3ddfa_v2: face boxes from FaceBoxes (as upstream) or dlib")
    p.add_argument("--tddfa_motion", action="store_true",
                   help="also score " + ", ".join(tddfa_motion.METRICS) + " from 3DDFA_V2's parameters "
                        "(the metrics group tddfa_motion; 2-frame tracking over each video; definitions in "
                        "docs/evaluation.md)")
    p.add_argument("--lipsync_min_track", "--min_track", dest="min_track", type=int, default=d.min_track,
                   help="lip sync: a face track must be longer than this many frames at 25 fps (the original's 100)")
    p.add_argument("--lipsync_min_face_size", "--min_face_size", dest="min_face_size", type=float,
                   default=d.min_face_size, help="lip sync: min mean face box side (px)")
    p.add_argument("--lipsync_frames", choices=("original", "memory"), default=d.lipsync_frames,
                   help="lip sync frames: 'original' repeats the original's lossy steps (25 fps MPEG-4 at "
                        "qscale 2, JPEG frames, XVID crop video, default-quality JPEG; leaderboard-comparable), "
                        "'memory' scores the decoded frames (faster, not comparable)")
    p.add_argument("--truncate", action="store_true", help="score the shorter length on a frame-count mismatch")
    p.add_argument("--strict", action="store_true", help="a metric that cannot run is an error")
    p.add_argument("--overwrite", action="store_true", help="recompute even if --output exists")
    add_run_record_arg(p, default_text="run.json beside --output")
    p.add_argument("--device", default=d.device, help="auto (this rank's GPU if any, else CPU), cpu, cuda, cuda:N")
    p.add_argument("--workers", type=int, default=d.workers, help="threads for face detection/landmarks")
    p.add_argument("--verbose", action="store_true", help="debug logging")
    return p


def read_uuids(path: str) -> list[str]:
    rows = read_csv_rows(path, ["uuid"])
    uuids = sorted({r["uuid"].strip() for r in rows if r["uuid"].strip()})
    if not uuids:
        raise UserError(f"{path}: no uuid rows")
    return uuids


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    cfg = EvaluateConfig(**vars(args))
    setup_logging(cfg.verbose)
    if cfg.batch_size < 1:
        raise UserError("--batch_size must be >= 1")
    out = Path(cfg.output)
    per_video = Path(cfg.per_video) if cfg.per_video else out.with_name(out.stem + ".videos.jsonl")
    metrics = parse_metrics(cfg.metrics)
    for flag in ("gt_video_folder", "pd_video_folder", "gt_audio_folder", "gt_coeff_folder", "pd_coeff_folder"):
        folder = getattr(cfg, flag)
        if folder is not None and not Path(folder).is_dir():  # not one 'video not found' per video
            raise UserError(f"{folder}: folder not found (--{flag})")
    info = init_dist(cfg.device)
    try:
        if out.is_file() and not cfg.overwrite:
            if info.is_main:
                log.info("%s exists; skipping (use --overwrite to recompute)", out)
            return 0
        uuids = read_uuids(cfg.anno_file)
        # the CLI config is the engine's settings, with the device and the cache resolved here
        cache_dir = None if cfg.no_cache else (cfg.cache_dir or str(out.parent / "gt_cache"))
        settings = dataclasses.replace(cfg, device=str(info.device), cache_dir=cache_dir)
        ev = Evaluator(metrics, settings)
        if ev.unavailable:
            for m, why in ev.unavailable.items():
                if info.is_main:
                    log.warning("metric %s unavailable: %s", m, why)
            if cfg.strict:
                m, why = next(iter(ev.unavailable.items()))
                raise UserError(f"metric {m} unavailable (--strict): {why}")
        if not ev.active:
            m, why = next(iter(ev.unavailable.items()))
            raise UserError(f"no requested metric can run (first: {m} {why})")
        report = RunReport("evaluation.evaluate", cfg, out.parent, run_record_name(cfg.run_record))
        records: list[dict] = []
        states = new_states(ev.active)  # set metrics (FID, Frechet distances): merged, not averaged
        mine = shard(uuids, info)
        for uuid in progress(mine, desc="evaluate", unit="video", enabled=info.is_main):
            try:
                r = ev.evaluate_video(uuid)
            except UserError as e:
                report.fail(uuid, e)
                continue
            records.append(r.record)
            merge_states(states, r.states)
            if r.record.get("errors"):  # scored, but some metric's own input was bad
                report.fail(uuid, "; ".join(r.record["errors"]))
            else:
                report.ok(uuid)
        part = {"records": records, "states": states, "report": report.to_dict()}
        parts = gather_objects(part, info)
        if not info.is_main:
            return 0
        return _finish(cfg, ev, ev.requested, parts, report, out, per_video)
    finally:
        cleanup(info)


def _lipsync_notes(records: list[dict]) -> dict[str, str]:
    """uuid -> why the clip has no lip-sync score (no long-enough face track, a bad audio file)."""
    notes = {}
    for r in records:
        why = r.get("lipsync_note") or next((e for e in r.get("errors", []) if e.startswith("lip sync:")), None)
        if why:
            notes[r["uuid"]] = why
    return notes


def _finish(cfg: EvaluateConfig, ev: Evaluator, metrics: list[str], parts: list[dict], report: RunReport,
            out: Path, per_video: Path) -> int:
    report.done, report.skipped, report.failures = [], [], []
    report.merge(p["report"] for p in parts)
    records = sorted((r for p in parts for r in p["records"]), key=lambda r: r["uuid"])
    states = new_states(ev.active)
    for p in parts:
        merge_states(states, p["states"])
    results = aggregate(records, ev.active, states, cfg)
    for m in metrics:  # constant keys: unavailable metrics are present as null
        results.setdefault(m, None)
    summary = {
        "task": cfg.task,
        "results": results,
        "unavailable": ev.unavailable,
        "n_videos": len(records),
        "n_frames": int(sum(r["n_frames"] for r in records)),
        "n_failed": len(report.failures),
        "frames_without_face": int(sum(r.get("frames_without_face", 0) for r in records)),
        "truncated_videos": [r["uuid"] for r in records if r.get("truncated")],
        "lipsync_notes": _lipsync_notes(records),
        "aggregation": "frame-weighted over all frames (lip sync: mean over videos); *_video_mean: mean of per-video means",
        "fid_method": cfg.fid_method,
        "weights": ev.weight_files,
        "config": config_to_dict(cfg),
        "per_video": str(per_video),
    }
    write_text_atomic(per_video, "".join(json.dumps(r, sort_keys=True) + "\n" for r in records))
    write_json_atomic(out, summary)
    report.write()
    shown = ", ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}=n/a" for k, v in results.items()
                      if not k.endswith(("_video_mean", "_videos")))
    log.info("%s: %s", out, shown)
    return report.exit_code()


if __name__ == "__main__":
    run_cli(main)
