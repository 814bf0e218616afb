"""Train the ViCo speaker or listener model (plain python or torchrun, CPU or GPU)."""
from __future__ import annotations

import argparse
import logging
from typing import Sequence

from common.io import run_cli, setup_logging
from common.training import add_retention_args

from .losses import MEANS
from common.cli import HelpFormatter

from .cli import CONFIG_METAVAR, config_arg
from .models import TASKS
from .training.loop import TrainConfig, train

log = logging.getLogger("vico.train")

EPILOG = """\
inputs (written by the preprocess stage):
  DATA/train.csv                                  clips to train on (uuid column)
  DATA/features/audio_feats/<uuid>.npy            (N, 45) audio features per video frame
  DATA/features/video_feats/<uuid>.<role>.bin     'angle.exp.trans' (N, 73), 'id.gamma.tex' (N, 187)
  DATA/features/{audio,video}_feats_mean_std.bin  normalisation statistics
outputs:
  OUT/checkpoints/epoch_NNN.pt, OUT/checkpoints/latest, OUT/log.jsonl, OUT/run.json,
  OUT/events.out.tfevents.* (TensorBoard scalars, when tensorboard is installed)
checkpoints on disk: one is written every --save_every epochs (and at the last epoch); of those,
  the newest --keep_last stay, plus every one whose epoch is a multiple of --keep_every.
an existing run folder is never restarted silently: continue it with --resume auto, or start
  afresh with --overwrite (deletes its checkpoints, log.jsonl and TensorBoard events).

examples:
  # one process (CPU or one GPU)
  python -m vico.train --task listener --data data/listening_head --output_path runs/listener \\
      --time_size 90 --batch_size 4 --lr 0.002 --max_epochs 500
  # 4 GPUs on one node: --batch_size is per process
  torchrun --nproc_per_node 4 -m vico.train --task speaker --data data/listening_head \\
      --output_path runs/speaker --batch_size 4
  # continue where a run stopped (optimizer, schedule, RNG and epoch included)
  python -m vico.train --task listener --data data/listening_head --output_path runs/listener --resume auto
  # fine-tune from an original Epoch_NNN.bin (weights only; optimizer, schedule and epochs start fresh)
  python -m vico.train --task speaker --data data/listening_head --output_path runs/speaker_ft \\
      --init_from saved/baseline_speaker/checkpoints/Epoch_500.bin --max_epochs 20 --lr 0.0005
  # the 2022 winner's residual variant, or your own YAML (fields of the config; 'base: NAME')
  python -m vico.train --task listener --config residual_listener --data ... --output_path ...
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m vico.train", description=__doc__, epilog=EPILOG, formatter_class=HelpFormatter)
    p.add_argument("--task", required=True, choices=TASKS, help="which head to train")
    p.add_argument("--data", required=True, help="dataset folder holding the split csv and features/")
    p.add_argument("--output_path", required=True, help="run folder (checkpoints, logs, run.json)")
    p.add_argument("--features", default=None, help="features folder (default: DATA/features)")
    p.add_argument("--split_csv", default="train.csv", help="clips to train on (relative to DATA)")
    p.add_argument("--config", default=None, type=config_arg, metavar=CONFIG_METAVAR,
                   help="model config: a registered name or a YAML file of config fields (default: baseline_<task>)")
    p.add_argument("--time_size", type=int, default=90, help="training window length in frames")
    p.add_argument("--batch_size", type=int, default=4, help="windows per process and step")
    p.add_argument("--lr", type=float, default=0.002, help="AdamW learning rate")
    p.add_argument("--weight_decay", type=float, default=0.05, help="AdamW weight decay")
    p.add_argument("--lr_step", type=int, default=30, help="multiply the LR by --lr_gamma every this many epochs (StepLR)")
    p.add_argument("--lr_gamma", type=float, default=0.5, help="StepLR factor")
    p.add_argument("--max_epochs", type=int, default=500, help="total epochs (also when resuming)")
    p.add_argument("--seed", type=int, default=42, help="seed (rank r uses seed*world+r)")
    p.add_argument("--loss_mean", choices=MEANS, default="frames",
                   help="'frames': mean over real frames; 'padded': the original mean including padding")
    p.add_argument("--workers", type=int, default=0, help="DataLoader worker processes (features are in RAM)")
    p.add_argument("--device", default="auto", help="auto (this rank's GPU if any, else CPU), cpu, cuda")
    p.add_argument("--resume", default=None, help="checkpoint file, checkpoints folder, or 'auto' (this run's latest)")
    p.add_argument("--init_from", default=None, metavar="FILE",
                   help="start from these weights, fresh optimizer and epochs (fine-tuning): an original "
                        "Epoch_NNN.bin or our epoch_NNN.pt / checkpoints folder / 'latest'")
    p.add_argument("--save_every", type=int, default=1, help="write a checkpoint every N epochs (and the last)")
    add_run_folder_args(p)
    p.add_argument("--verbose", action="store_true", help="debug logging")
    return p


def add_run_folder_args(p: argparse.ArgumentParser) -> None:
    """Disk and run-folder options: checkpoint retention and --overwrite."""
    add_retention_args(p, keep_last=3, keep_every=100, unit="epoch")
    p.add_argument("--overwrite", action="store_true",
                   help="start afresh in an existing run folder (its checkpoints, log.jsonl and events are deleted)")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)
    kw = {k: v for k, v in vars(args).items() if k != "verbose"}
    return train(TrainConfig(**kw))


if __name__ == "__main__":
    run_cli(main)
