"""Per-video-frame audio features: <output_folder>/<uuid>.npy, (N, 45) float32.

Replaces the original preprocess/extract.py. Every audio file of --input_audio_folder (wav, flac,
ogg, mp3; m4a/aac through PyAV; any channel count and rate) is loaded as mono,
resampled to 44.1 kHz (so the width is always 45), cut or zero-padded to N video frames of 1470
samples and featurised. N is the row count of the speaker's recon <uuid>.speaker.mat found
anywhere under --input_recons_folder, or, when there is none, the frame count of
<uuid>.speaker.mp4 found under --video_folder, which must then be constant 30 fps (else the item
fails, naming python -m preprocess.prepare_videos). The feature set is recorded in
<output_folder>/feature_set.json, read by vico training.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from common.progress import progress

from common.dataset import AUDIO_EXTS, find_files
from common.dist import configure_threads
from common.io import RunReport, UserError, atomic_path, is_complete, run_cli, setup_logging
from common.media import MediaError, check_clip, load_audio
from preprocess.audio.features import (DEFAULT_FPS, DEFAULT_SAMPLE_RATE, FEATURE_SETS, extract,
                                       feature_dim, samples_per_frame)
from common.cli import parser
from common.artifacts import read_feature_set, recon_frame_count, write_feature_set

log = logging.getLogger("preprocess.extract_audio_features")

SILENCE_PEAK = 1.0 / 32768  # below one 16-bit step: the file holds no sound

EPILOG = """examples:
  # frame counts from the reconstructed coefficients (any sub-folder of recons/)
  python -m preprocess.extract_audio_features --input_audio_folder data/audios \\
      --input_recons_folder data/recons --output_folder data/features/audio_feats
  # no recons yet: frame counts from the speaker videos; the context-aware variant
  python -m preprocess.extract_audio_features --input_audio_folder data/audios \\
      --video_folder data/videos --output_folder data/features/audio_feats \\
      --feature_set vico45_context
"""


@dataclass
class ExtractAudioConfig:
    """Resolved options of one run (saved in run.json)."""

    input_audio_folder: str
    output_folder: str
    input_recons_folder: str | None = None
    video_folder: str | None = None
    feature_set: str = "vico45"
    sample_rate: int = DEFAULT_SAMPLE_RATE
    fps: int = DEFAULT_FPS
    max_missing_frames: int = 1
    overwrite: bool = False


def _index(folder: str | None, suffix: str) -> dict[str, list[Path]]:
    """uuid -> files named <uuid><suffix> anywhere under folder."""
    out: dict[str, list[Path]] = {}
    if folder is None:
        return out
    root = Path(folder)
    if not root.is_dir():
        raise UserError(f"{root}: folder not found")
    for p in sorted(root.rglob(f"*{suffix}")):
        if p.is_file() and not p.name.startswith("."):
            out.setdefault(p.name[: -len(suffix)], []).append(p)
    return out


class FrameCounter:
    """Frame count of a uuid's speaker clip: recon .mat first, then the video."""

    def __init__(self, recons_folder: str | None, video_folder: str | None):
        self.mats = _index(recons_folder, ".speaker.mat")
        self.videos = _index(video_folder, ".speaker.mp4")
        self.recons_folder, self.video_folder = recons_folder, video_folder

    def __call__(self, uuid: str) -> tuple[int, Path]:
        for found in (self.mats.get(uuid), self.videos.get(uuid)):
            if found:
                if len(found) > 1:
                    raise UserError(f"{uuid}: several candidates {', '.join(map(str, found))}")
                p = found[0]
                n = recon_frame_count(p) if p.suffix == ".mat" else check_clip(p, size=None).n_frames
                if n < 1:
                    raise UserError(f"{p}: no frames")
                return n, p
        where = " or ".join(f"{name} under {folder}" for name, folder in (
            (f"{uuid}.speaker.mat", self.recons_folder), (f"{uuid}.speaker.mp4", self.video_folder))
            if folder)
        raise UserError(f"{uuid}: no {where} to take the frame count from")


def featurize_file(wav: Path, n_frames: int, cfg: ExtractAudioConfig) -> np.ndarray:
    """Load, check and featurise one wav -> (n_frames, D) float32; UserError naming the file."""
    samples, sr = load_audio(wav, sr=cfg.sample_rate)
    peak = float(np.max(np.abs(samples)))
    if not np.isfinite(peak):
        raise UserError(f"{wav}: audio contains NaN or infinite samples")
    if peak < SILENCE_PEAK:
        raise UserError(f"{wav}: audio is silent (peak {peak:.2e})")
    spf = samples_per_frame(sr, cfg.fps)
    missing = math.ceil((n_frames * spf - samples.shape[0]) / spf)
    if missing > cfg.max_missing_frames:
        raise UserError(f"{wav}: audio lasts {samples.shape[0] / sr:.3f} s, shorter than the "
                        f"{n_frames}-frame video ({n_frames / cfg.fps:.3f} s) by {missing} frames")
    feats = extract(cfg.feature_set, samples, sr, n_frames, cfg.fps)  # (n_frames, D)
    assert feats.shape == (n_frames, feature_dim(sr, cfg.fps)), feats.shape
    if not np.isfinite(feats).all():
        raise UserError(f"{wav}: features contain NaN or infinite values")
    return feats


def run(cfg: ExtractAudioConfig) -> int:
    """Featurise every wav; returns the exit code (1 if any file failed)."""
    if cfg.feature_set not in FEATURE_SETS:
        raise UserError(f"--feature_set {cfg.feature_set!r} unknown; choose from {sorted(FEATURE_SETS)}")
    if cfg.input_recons_folder is None and cfg.video_folder is None:
        raise UserError("give --input_recons_folder and/or --video_folder (where the frame counts come from)")
    wavs = find_files(cfg.input_audio_folder, AUDIO_EXTS)
    if not wavs:
        raise UserError(f"{cfg.input_audio_folder}: no audio files ({', '.join(AUDIO_EXTS[::2])})")
    counter = FrameCounter(cfg.input_recons_folder, cfg.video_folder)
    out_dir = Path(cfg.output_folder)
    dim = feature_dim(cfg.sample_rate, cfg.fps)
    recorded = read_feature_set(out_dir) if out_dir.is_dir() else None
    wanted = {"feature_set": cfg.feature_set, "dim": dim, "sample_rate": cfg.sample_rate, "fps": cfg.fps}
    if recorded is not None and recorded != wanted and not cfg.overwrite:
        raise UserError(f"{out_dir}: holds {recorded.get('feature_set')} features ({recorded}); use "
                        f"another --output_folder or --overwrite to replace them with {cfg.feature_set}")
    out_dir.mkdir(parents=True, exist_ok=True)
    write_feature_set(out_dir, cfg.feature_set, dim, cfg.sample_rate, cfg.fps)

    report = RunReport("preprocess.extract_audio_features", cfg, out_dir)
    seen: dict[str, Path] = {}
    for wav in progress(wavs, desc="audio features", unit="file"):
        uuid = wav.stem
        out = out_dir / f"{uuid}.npy"
        if uuid in seen:
            report.fail(wav, f"{wav}: same uuid as {seen[uuid]}")
            continue
        seen[uuid] = wav
        if is_complete(out) and not cfg.overwrite:
            report.skip(uuid)
            continue
        try:
            n_frames, source = counter(uuid)
            feats = featurize_file(wav, n_frames, cfg)
            with atomic_path(out) as tmp:
                np.save(tmp, feats)
            report.ok(uuid, [out])
            log.debug("%s: %d frames (from %s)", uuid, n_frames, source)
        except (UserError, MediaError) as e:
            report.fail(uuid, e)
    report.write()
    return report.exit_code()


def main(argv: Sequence[str] | None = None) -> int:
    p = parser("preprocess.extract_audio_features", __doc__, EPILOG)
    p.add_argument("--input_audio_folder", required=True,
                   help="folder of <uuid>.wav (also .flac .ogg .mp3 .m4a .aac; searched recursively)")
    p.add_argument("--output_folder", required=True, help="where <uuid>.npy and feature_set.json go")
    p.add_argument("--input_recons_folder", default=None,
                   help="recon .mat folder; <uuid>.speaker.mat searched recursively for the frame count")
    p.add_argument("--video_folder", default=None,
                   help="video folder; <uuid>.speaker.mp4 gives the frame count when no .mat exists")
    p.add_argument("--feature_set", default="vico45", choices=sorted(FEATURE_SETS),
                   help="vico45: the original vector; vico45_context: whole-slice MFCC, deltas across frames")
    p.add_argument("--max_missing_frames", type=int, default=1,
                   help="zero-pad audio that ends at most this many video frames early; shorter is an error")
    p.add_argument("--overwrite", action="store_true", help="recompute existing outputs")
    p.add_argument("--verbose", action="store_true", help="debug logging")
    a = p.parse_args(argv)
    setup_logging(a.verbose)
    configure_threads()
    cfg = ExtractAudioConfig(input_audio_folder=a.input_audio_folder, output_folder=a.output_folder,
                             input_recons_folder=a.input_recons_folder, video_folder=a.video_folder,
                             feature_set=a.feature_set, max_missing_frames=a.max_missing_frames,
                             overwrite=a.overwrite)
    return run(cfg)


if __name__ == "__main__":
    run_cli(main)
