"""Trivial reference motion to rank a trained model against: the first frame held still.

For every clip of a split, writes OUT/recon_coeffs/<split>/<uuid>.<task>.mat in vico.eval's
format (coeff (T, 257) float32, transform_params (T, 5)) where every row is the ground truth's
frame 0. It is the motion a model that learnt nothing would produce from the reference frame,
so a trained model should beat it on the motion metrics (ExpL1, PoseL1, ExpFD, PoseFD).
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Sequence

import numpy as np

from common.artifacts import load_recon_mat, save_recon_mat
from common.cli import HelpFormatter, add_run_record_arg
from common.dataset import clip_name, read_index
from common.io import RunReport, UserError, is_complete, run_cli, run_record_name, setup_logging

from .models import TASKS

log = logging.getLogger("vico.baseline")

EPILOG = """\
examples:
  python -m vico.baseline --task listener --gt_coeff_folder recons --split_csv data/test.csv \\
      --output_path baselines/static
  # then score it like a model:
  python -m evaluation.evaluate ... --metrics coeff --pd_coeff_folder baselines/static/recon_coeffs/test
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m vico.baseline", description=__doc__, epilog=EPILOG,
                                formatter_class=HelpFormatter)
    p.add_argument("--task", required=True, choices=TASKS, help="which head")
    p.add_argument("--gt_coeff_folder", required=True, help="ground-truth <uuid>.<task>.mat (Deep3DFaceRecon)")
    p.add_argument("--split_csv", required=True, help="clips to write (index csv); <split> = its stem")
    p.add_argument("--output_path", required=True, help="writes recon_coeffs/<split>/ and run.<task>.json here")
    p.add_argument("--kind", default="static", choices=["static"], help="static: ground-truth frame 0 held")
    p.add_argument("--overwrite", action="store_true", help="redo outputs that already exist")
    add_run_record_arg(p, default_text="run.<task>.json: both tasks may share --output_path")
    p.add_argument("--verbose", action="store_true", help="debug logging")
    return p


def static_motion(coeff: np.ndarray, transform_params: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(T, 257), (T, 5) -> the same shapes with every row equal to row 0."""
    if len(coeff) == 0:
        raise ValueError("no frames")
    return np.repeat(coeff[:1], len(coeff), 0), np.repeat(transform_params[:1], len(coeff), 0)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)
    gt_dir = Path(args.gt_coeff_folder)
    if not gt_dir.is_dir():
        raise UserError(f"{gt_dir}: ground-truth coefficient folder not found")
    split = Path(args.split_csv).stem
    out_dir = Path(args.output_path) / "recon_coeffs" / split
    report = RunReport("vico.baseline", vars(args), args.output_path, run_record_name(args.run_record or args.task))
    for clip in read_index(args.split_csv):
        name = clip_name(clip.uuid, args.task) + ".mat"
        out = out_dir / name
        if is_complete(out) and not args.overwrite:
            report.skip(clip.uuid)
            continue
        try:
            coeff, tp = load_recon_mat(gt_dir / name)
            save_recon_mat(out, *static_motion(coeff, tp))
            report.ok(clip.uuid, [out])
        except (UserError, ValueError) as e:
            report.fail(clip.uuid, e if isinstance(e, UserError) else f"{gt_dir / name}: {e}")
    report.write()
    return report.exit_code()


if __name__ == "__main__":
    run_cli(main)
