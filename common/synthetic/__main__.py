"""python -m common.synthetic: write a small synthetic ViCo dataset (see --help)."""
from __future__ import annotations

import argparse
import logging
from typing import Sequence

from common.cli import parser
from common.io import run_cli, setup_logging
from common.synthetic.config import LAYOUTS, SyntheticConfig

log = logging.getLogger("common.synthetic")

EPILOG = """\
layouts:
  challenge  videos/<uuid>.speaker.mp4, videos/<uuid>.listener.mp4, audios/<uuid>.wav,
             train.csv, test.csv (video_id, uuid, speaker_id, listener_id)
  full       the original release's layout, input of preprocess.convert: anno.csv (audio,
             listener, speaker, data_split, speaker_id, listener_id, attitude),
             videos/<speaker>.mp4, videos/<listener>.mp4, audios/<audio>.wav
  challenge_val   the released validation layout: audios/<uuid>.wav, videos/<uuid>.speaker.mp4,
                  first_frames/<uuid>.{speaker,listener}.jpg (first frame of the expected result),
                  ref_images/<person_id>.jpg (each person at rest), val.csv (video_id, uuid,
                  speaker_id, listener_id); the ground truth videos/<uuid>.listener.mp4 is kept
                  for scoring
  challenge_test  the same for the test set (test.csv), without videos/<uuid>.listener.mp4
  meta/      (every layout) <uuid or audio>.json: the known per-frame motion, true landmarks,
             speech pauses and audio envelope of each pair

examples:
  python -m common.synthetic --out data/synthetic
  python -m common.synthetic --out /tmp/vico_small --pairs 4 --frames 150 --seed 3
  python -m common.synthetic --out /tmp/vico_full --layout full --pairs 2
  python -m common.synthetic --out /tmp/vico_val --layout challenge_val --pairs 3 --frames 30
"""


def build_parser() -> argparse.ArgumentParser:
    ap = parser("common.synthetic",
                "Write a deterministic synthetic ViCo dataset: two real face photos animated with "
                "known head motion, blinks and a mouth that follows a synthetic speech signal.", EPILOG)
    ap.add_argument("--out", required=True, help="output folder (created; existing complete pairs are kept)")
    ap.add_argument("--pairs", type=int, default=2, help="number of speaker/listener pairs")
    ap.add_argument("--frames", type=int, default=90, help="frames per video")
    ap.add_argument("--seed", type=int, default=0, help="random seed (same seed -> identical files)")
    ap.add_argument("--layout", choices=LAYOUTS, default="challenge", help="file layout")
    ap.add_argument("--size", type=int, default=256, help="frame width and height in pixels")
    ap.add_argument("--fps", type=int, default=30, help="video frame rate")
    ap.add_argument("--sample_rate", type=int, default=44100, help="audio sample rate in Hz")
    ap.add_argument("--sample-rate", dest="sample_rate", type=int, help=argparse.SUPPRESS)  # the old spelling
    ap.add_argument("--crf", type=int, default=18, help="H.264 quality (lower is better)")
    ap.add_argument("--overwrite", action="store_true", help="regenerate pairs whose files already exist")
    ap.add_argument("--verbose", action="store_true", help="debug logging")
    return ap


def parse_args(argv: Sequence[str] | None = None) -> SyntheticConfig:
    a = build_parser().parse_args(argv)
    setup_logging(a.verbose)
    return SyntheticConfig(out=a.out, pairs=a.pairs, frames=a.frames, seed=a.seed, layout=a.layout, size=a.size,
                           fps=a.fps, sample_rate=a.sample_rate, crf=a.crf, overwrite=a.overwrite)


def main(argv: Sequence[str] | None = None) -> int:
    cfg = parse_args(argv)
    cfg.validate()
    from common.synthetic.generator import build  # heavy imports (cv2, dlib) only once arguments are valid

    report = build(cfg)
    return report.exit_code()


if __name__ == "__main__":
    run_cli(main)
