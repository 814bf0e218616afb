"""Mean and std of the audio and video features, for normalisation in vico.

Replaces the original preprocess/statistics_mean_std.py. Reads FEATURES_DIR/audio_feats/*.npy and
FEATURES_DIR/video_feats/*.bin (speaker and listener) and writes
FEATURES_DIR/audio_feats_mean_std.bin = {'mean', 'std'} (D,) float64 tensors and
FEATURES_DIR/video_feats_mean_std.bin = {'angle.exp.trans': {'mean','std'} (73,),
'id.gamma.tex': {'mean','std'} (187,)} float32 tensors; std is unbiased (N-1).

Differences from the original: with --split_csv only that split's clips are used (the original
mixed in the test clips); std below --min_std (constant dimensions such as the vico45 deltas) is
replaced by 1 so those dimensions normalise to ~0 instead of noise or NaN; one streaming pass
with an exact parallel merge (memory independent of the dataset size). If any file is bad, the
problems are listed in run.json, nothing is written and the exit code is 1.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from tqdm import tqdm

from common.coeffs import DYN_KEY, FIXED_KEY, VICO_DYN, VICO_FIXED
from common.dataset import ROLES, clip_name, read_index
from common.io import RunReport, UserError, run_cli, setup_logging
from preprocess.audio.features import feature_dim
from common.cli import parser
from common.artifacts import (AUDIO_FEATS_DIR, AUDIO_STATS_FILE, VIDEO_FEATS_DIR, VIDEO_STATS_FILE, load_audio_feats,
                              load_video_feats, read_feature_set, save_audio_stats, save_video_stats)
from preprocess.stats import DEFAULT_MIN_STD, Moments, guard_std

log = logging.getLogger("preprocess.statistics_mean_std")

EPILOG = """examples:
  # training split only (recommended)
  python -m preprocess.statistics_mean_std data/features --split_csv data/train.csv
  # every clip present, as the original did
  python -m preprocess.statistics_mean_std data/features
"""


@dataclass
class StatsConfig:
    """Resolved options of one run (saved in run.json)."""

    features_dir: str
    split_csv: str | None = None
    min_std: float = DEFAULT_MIN_STD


def _files(cfg: StatsConfig) -> tuple[list[Path], list[Path]]:
    root = Path(cfg.features_dir)
    adir, vdir = root / AUDIO_FEATS_DIR, root / VIDEO_FEATS_DIR
    for d in (adir, vdir):
        if not d.is_dir():
            raise UserError(f"{d}: folder not found (expected FEATURES_DIR/audio_feats and video_feats)")
    if cfg.split_csv is None:
        audio = sorted(p for p in adir.glob("*.npy") if not p.name.startswith("."))
        video = sorted(p for p in vdir.glob("*.bin") if not p.name.startswith("."))
    else:
        uuids = [c.uuid for c in read_index(cfg.split_csv)]
        if not uuids:
            raise UserError(f"{cfg.split_csv}: no clips")
        audio = [adir / f"{u}.npy" for u in uuids]
        video = [vdir / f"{clip_name(u, r)}.bin" for u in uuids for r in ROLES]
    if not audio:
        raise UserError(f"{adir}: no .npy files")
    if not video:
        raise UserError(f"{vdir}: no .bin files")
    return audio, video


def accumulate(paths: Sequence[Path], load: Callable[[Path], dict[str, np.ndarray]],
               dims: dict[str, int], report: RunReport, desc: str) -> dict[str, Moments]:
    """One streaming pass: per-file moments merged into running totals; bad files -> report."""
    totals = {k: Moments(d) for k, d in dims.items()}
    for p in tqdm(paths, desc=desc, unit="file"):
        try:
            arrays = load(p)
            for k, a in arrays.items():
                if not np.isfinite(a).all():
                    raise UserError(f"{p}: contains NaN or infinite values")
            parts = {k: Moments.of(a) for k, a in arrays.items()}
        except UserError as e:
            report.fail(p.name, e)
            continue
        for k, m in parts.items():
            totals[k].merge(m)
        report.ok(p.name)
    return totals


def _finish(m: Moments, what: str, min_std: float) -> tuple[np.ndarray, np.ndarray, list[int]]:
    if m.count < 2:
        raise UserError(f"{what}: need at least 2 frames for a std, have {m.count}")
    std, guarded = guard_std(m.std(ddof=1), min_std)
    idx = np.flatnonzero(guarded).tolist()
    if idx:
        log.info("%s: %d constant dims (std < %g) get std 1: %s", what, len(idx), min_std, idx)
    return m.mean, std, idx


def _first_dim(paths: Sequence[Path]) -> int:
    """Width of the first readable audio feature file (the default width when none is)."""
    for p in paths:
        try:
            return int(load_audio_feats(p).shape[1])
        except UserError:
            continue
    return feature_dim()


def run(cfg: StatsConfig) -> int:
    audio, video = _files(cfg)
    root = Path(cfg.features_dir)
    report = RunReport("preprocess.statistics_mean_std", cfg, root)
    recorded = read_feature_set(root / AUDIO_FEATS_DIR)
    adim = int(recorded["dim"]) if recorded is not None else _first_dim(audio)
    a_tot = accumulate(audio, lambda p: {"audio": load_audio_feats(p, adim)}, {"audio": adim}, report,
                       "audio stats")
    v_tot = accumulate(video, load_video_feats, {DYN_KEY: VICO_DYN.dim, FIXED_KEY: VICO_FIXED.dim},
                       report, "video stats")
    if report.failures:
        log.error("%d bad file(s): statistics not written", len(report.failures))
        report.write()
        return report.exit_code()
    a_mean, a_std, a_guard = _finish(a_tot["audio"], "audio_feats", cfg.min_std)
    video_stats, v_guard = {}, {}
    for k in (DYN_KEY, FIXED_KEY):
        mean, std, v_guard[k] = _finish(v_tot[k], f"video_feats {k}", cfg.min_std)
        video_stats[k] = (mean, std)
    save_audio_stats(root / AUDIO_STATS_FILE, a_mean, a_std)
    save_video_stats(root / VIDEO_STATS_FILE, video_stats)
    report.done.append({"item": "statistics",
                        "outputs": [str(root / AUDIO_STATS_FILE), str(root / VIDEO_STATS_FILE)],
                        "frames": {"audio": a_tot["audio"].count, "video": v_tot[DYN_KEY].count},
                        "guarded_dims": {"audio": a_guard, **v_guard}})
    report.write()
    return report.exit_code()


def main(argv: Sequence[str] | None = None) -> int:
    p = parser("preprocess.statistics_mean_std", __doc__, EPILOG)
    p.add_argument("features_dir", metavar="FEATURES_DIR", help="folder holding audio_feats/ and video_feats/")
    p.add_argument("--split_csv", default=None,
                   help="index csv (uuid column) of the clips to use, e.g. train.csv; default: all files")
    p.add_argument("--min_std", type=float, default=DEFAULT_MIN_STD,
                   help="dims with a smaller std are treated as constant (std set to 1)")
    p.add_argument("--verbose", action="store_true", help="debug logging")
    a = p.parse_args(argv)
    setup_logging(a.verbose)
    return run(StatsConfig(a.features_dir, a.split_csv, a.min_std))


if __name__ == "__main__":
    run_cli(main)
