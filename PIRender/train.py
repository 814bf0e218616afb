"""Train the PIRender face generator on an LMDB (the original recipe; torchrun DDP).

Replaces upstream ``PIRender/train.py`` + ``config/face.yaml``. Recipe (upstream-spec 4.4): warp-only
warm-up, VGG19 perceptual losses at 4 scales (warp 2.5; final 4 with 250x style), EMA generator,
Adam 1e-4 (0.5, 0.999) with a step schedule. Checkpoints keep the original key layout (net_G,
net_G_ema, opt_G, sch_G, current_epoch, current_iteration; + config), so PIRender.inference and
the original inference.py both read them; ``epoch_iteration`` (batches of the current epoch done)
is added so that a resume skips them. Launch with plain python (1 process) or torchrun; no
--local_rank needed. Re-running with the same --output_path resumes from latest_checkpoint.txt.
"""
from __future__ import annotations

import argparse
import json
import logging
import random
import re
import sys
import time
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader
from torch.utils.data.distributed import DistributedSampler
from common.progress import progress

from common.cli import HelpFormatter
from common.dist import DistInfo, all_reduce_sum, barrier, cleanup, init_dist
from common.io import UserError, run_cli, setup_logging, versions, write_json_atomic, write_text_atomic
from common.training import (ScalarWriter, add_retention_args, check_retention, clear_run, event_files,
                             prune_checkpoints)
from common.weights import read_checkpoint_file
from PIRender.engine.checkpoint import resolve_checkpoint, save_checkpoint
from PIRender.losses import load_vgg19
from PIRender.training.config import TrainConfig, load_config
from PIRender.training.dataset import VoxTrainDataset
from PIRender.training.trainer import FaceTrainer

log = logging.getLogger("PIRender.train")

EPILOG = """\
examples:
  # one process (CPU or one GPU); VGG19 from weights/vgg19-dcbb9e9d.pth
  python -m PIRender.train --config configs/pirender_face.yaml --data vox_lmdb --output_path runs/face
  # 4 GPUs, explicit VGG19 weights
  torchrun --nproc_per_node 4 -m PIRender.train --config configs/pirender_face.yaml \\
      --data vox_lmdb --output_path runs/face --vgg_weights ~/models/vgg19-dcbb9e9d.pth
  # a short run at 128 px: override config values (YAML syntax)
  python -m PIRender.train --config configs/pirender_face.yaml --data vox_lmdb --output_path runs/t \\
      --set data.resolution=128 max_iter=1000 trainer.pretrain_warp_iteration=500
  # fine-tune from the released checkpoint (its optimizer state is not included)
  python -m PIRender.train --config configs/pirender_face.yaml --data vox_lmdb --output_path runs/ft \\
      --init_checkpoint weights/pirender/face/epoch_00190_iteration_000400000_checkpoint.pt

--data is the prepare_vox_lmdb --out folder; <data>/<data.resolution>/ is read; videos come from
the list files (data.split), or all videos of the LMDB when they are empty (upstream writes an
empty train_list.txt). Outputs in --output_path: epoch_EEEEE_iteration_IIIIIIIII_checkpoint.pt,
latest_checkpoint.txt, config.json (the resolved config), train_log.jsonl (losses per logged
iteration, rank 0), events.out.tfevents.* (the same scalars for TensorBoard, when installed).
Inference: python -m PIRender.inference --checkpoint <output_path> ...

Checkpoints are written every snapshot_save_iter iterations and snapshot_save_epoch epochs (see
the config) and at the end; of those, the newest --keep_last stay on disk, plus every one whose
iteration is a multiple of --keep_every. --no_resume into a folder holding a run needs --overwrite.
After the warp warm-up the learning rate stays at gen_optimizer.lr, as in the original (whose
schedule keeps stepping the discarded optimizer); --restart_lr_schedule restarts it instead.
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m PIRender.train", description=__doc__, epilog=EPILOG,
                                formatter_class=HelpFormatter)
    p.add_argument("--config", default="configs/pirender_face.yaml", help="training config (YAML)")
    p.add_argument("--data", required=True, help="LMDB folder written by PIRender.prepare_vox_lmdb")
    p.add_argument("--output_path", required=True, help="folder for checkpoints and logs (created)")
    p.add_argument("--vgg_weights", default=None,
                   help="torchvision VGG19 ImageNet weights (vgg19-dcbb9e9d.pth); default: weights/vgg19-dcbb9e9d.pth")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="config overrides, e.g. max_iter=10")
    p.add_argument("--device", default="auto", help="auto (this rank's GPU if present), cpu, cuda")
    p.add_argument("--no_resume", action="store_true",
                   help="start afresh even if --output_path has a checkpoint (needs --overwrite there)")
    p.add_argument("--overwrite", action="store_true",
                   help="with --no_resume: delete the folder's checkpoints, train_log.jsonl and events first")
    p.add_argument("--init_checkpoint", default=None,
                   help="start from this checkpoint's weights (e.g. the released one) at its iteration")
    add_retention_args(p, keep_last=3, keep_every=200000, unit="iteration")
    p.add_argument("--restart_lr_schedule", action="store_true",
                   help="restart the LR schedule with the optimizer after the warp warm-up "
                        "(default: the original's constant rate; config trainer.restart_lr_schedule)")
    p.add_argument("--verbose", action="store_true", help="debug logging")
    return p


CKPT_RE = re.compile(r"epoch_(\d{5,})_iteration_(\d{9,})_checkpoint\.pt")


def _run_files(out: Path) -> list[Path]:
    """The files that make ``out`` a training run: pointer, checkpoints, log, events."""
    found = [p for p in (out / "latest_checkpoint.txt", out / "train_log.jsonl") if p.is_file()]
    return found + sorted(p for p in out.glob("epoch_*_checkpoint.pt") if CKPT_RE.fullmatch(p.name)) + event_files(out)


def guard_fresh_start(out: Path, overwrite: bool, info: DistInfo) -> None:
    """--no_resume into a folder holding a run: refuse, or with --overwrite delete the run first."""
    files = _run_files(out)
    clear_run(out, files, overwrite, info, f"{out}: holds a training run already ({files[0].name if files else ''}); "
              "--no_resume there needs --overwrite (or drop --no_resume to continue it)")


def prune(out: Path, saved: int, keep_last: int, keep_every: int) -> None:
    """Delete checkpoints beyond --keep_last/--keep_every, by iteration (never ``saved``)."""
    files: dict[int, Path] = {}
    for p in sorted(out.glob("epoch_*_checkpoint.pt")):  # by epoch: an end-of-epoch save of the same
        m = CKPT_RE.fullmatch(p.name)                      # iteration replaces the earlier file
        if m:
            it = int(m.group(2))
            if it in files and keep_last > 0:
                files[it].unlink(missing_ok=True)
            files[it] = p
    prune_checkpoints(files, keep_last, keep_every, protect=saved)


class _ResumableSampler(torch.utils.data.Sampler):
    """A DistributedSampler whose first ``skip`` samples of the current epoch are dropped (resume)."""

    def __init__(self, base: DistributedSampler):
        self.base, self.skip = base, 0

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        self.base.set_epoch(epoch)
        self.skip = skip

    def __iter__(self):
        return iter(list(self.base)[self.skip:])

    def __len__(self) -> int:
        return len(self.base) - self.skip


def _seed(cfg: TrainConfig, info: DistInfo) -> None:
    s = cfg.seed * info.world_size + info.rank
    random.seed(s)
    np.random.seed(s % 2**32)
    torch.manual_seed(s)


def _save(out: Path, trainer: FaceTrainer, epoch: int, iteration: int, info: DistInfo, in_epoch: int = 0,
          keep: tuple[int, int] = (0, 0)) -> None:
    if info.is_main:
        name = f"epoch_{epoch:05d}_iteration_{iteration:09d}_checkpoint.pt"
        state = trainer.state_dict(epoch, iteration)
        state["epoch_iteration"] = in_epoch  # batches of `epoch` already done (resume skips them)
        save_checkpoint(out / name, state)
        write_text_atomic(out / "latest_checkpoint.txt", f"latest_checkpoint: {name}\n")
        log.info("saved %s", out / name)
        prune(out, iteration, *keep)
    barrier(info)


def train(cfg: TrainConfig, data: str, output_path: str, vgg_weights: str | None, device: str,
          resume: bool, init_checkpoint: str | None, argv: Sequence[str], keep: tuple[int, int] = (3, 200000),
          overwrite: bool = False) -> int:
    """``keep``: (--keep_last, --keep_every); ``overwrite``: allows ``resume=False`` into a run folder."""
    check_retention(*keep)
    info = init_dist(None if device == "auto" else device)
    try:
        if not resume:
            guard_fresh_start(Path(output_path), overwrite, info)
        return _train(cfg, data, Path(output_path), vgg_weights, info, resume, init_checkpoint, argv, keep)
    finally:
        cleanup(info)


def _train(cfg: TrainConfig, data: str, out: Path, vgg_weights: str | None, info: DistInfo, resume: bool,
           init_checkpoint: str | None, argv: Sequence[str], keep: tuple[int, int]) -> int:
    _seed(cfg, info)
    vgg = load_vgg19(vgg_weights)  # clear error when the file is missing, before any work
    dataset = VoxTrainDataset(data, cfg.data.resolution, cfg.data.split, cfg.data.repeat,
                              cfg.data.semantic_radius, cfg.seed)
    bs = cfg.data.train.batch_size
    if len(dataset) < bs * info.world_size:
        raise UserError(f"{dataset.db_path}: {len(dataset)} samples per epoch, fewer than batch_size "
                        f"{bs} x {info.world_size} ranks (raise data.repeat)")
    sampler = _ResumableSampler(DistributedSampler(dataset, num_replicas=info.world_size, rank=info.rank,
                                                   shuffle=True, seed=cfg.seed, drop_last=True))
    loader = DataLoader(dataset, batch_size=bs, sampler=sampler, num_workers=cfg.data.num_workers,
                        pin_memory=info.device.type == "cuda", drop_last=True,
                        persistent_workers=False)
    trainer = FaceTrainer(cfg, vgg, info)
    out.mkdir(parents=True, exist_ok=True)
    epoch, iteration, in_epoch = 0, 0, 0
    marker = out / "latest_checkpoint.txt"
    if resume and marker.is_file():
        ckpt = resolve_checkpoint(out)
        state = read_checkpoint_file(ckpt, map_location=info.device)
        epoch, iteration = trainer.load_state_dict(state)
        in_epoch = int(state.get("epoch_iteration", 0))
        log.info("resumed from %s (epoch %d, iteration %d)", ckpt, epoch, iteration)
    elif init_checkpoint:
        ckpt = resolve_checkpoint(init_checkpoint)
        epoch, iteration = trainer.load_state_dict(read_checkpoint_file(ckpt, map_location=info.device))
        log.info("initialised from %s (epoch %d, iteration %d)", ckpt, epoch, iteration)
    if info.is_main:
        write_json_atomic(out / "config.json", {"config": cfg.to_dict(), "argv": list(argv), "data": data,
                                                "world_size": info.world_size, "versions": versions()})
    log_path = out / "train_log.jsonl"
    log.info("training on %d videos (%d samples/epoch), %d rank(s) x batch %d, %s, resolution %d",
             len(dataset.videos), len(dataset), info.world_size, bs, info.device, cfg.data.resolution)
    saved_at = iteration
    done = iteration >= cfg.max_iter
    scalars = ScalarWriter(out, enabled=info.is_main, purge_step=iteration + 1 if iteration else None)
    while epoch < cfg.max_epoch and not done:
        sampler.set_epoch(epoch, skip=in_epoch * bs)
        dataset.set_epoch(epoch)
        bar = progress(loader, desc=f"epoch {epoch}", unit="it", enabled=info.is_main)
        t0 = time.time()
        for batch in bar:
            losses = trainer.step(batch, iteration)
            iteration += 1
            in_epoch += 1
            if iteration % cfg.logging_iter == 0 or iteration == cfg.max_iter:
                names = sorted(losses)
                mean = all_reduce_sum(np.array([losses[k] for k in names]), info) / info.world_size
                row = {"iteration": iteration, "epoch": epoch, "stage": trainer.stage(iteration - 1),
                       "lr": trainer.opt_G.param_groups[0]["lr"], "seconds": round(time.time() - t0, 3),
                       **{k: float(v) for k, v in zip(names, np.atleast_1d(mean))}}
                if info.is_main:
                    with open(log_path, "a", encoding="utf-8") as f:
                        f.write(json.dumps(row) + "\n")
                    log.info("it %d %s total %.4f", iteration, row["stage"], row["total_loss"])
                    scalars.add(iteration, {k: v for k, v in row.items() if k != "iteration"}, prefix="train/")
                t0 = time.time()
            if not np.isfinite(losses["total_loss"]):
                raise UserError(f"iteration {iteration}: the loss is not finite ({losses}); "
                                "lower gen_optimizer.lr or check the data")
            if iteration % cfg.snapshot_save_iter == 0 and iteration >= cfg.snapshot_save_start_iter:
                _save(out, trainer, epoch, iteration, info, in_epoch, keep)
                saved_at = iteration
            if iteration >= cfg.max_iter:
                done = True
                break
        if not done:
            epoch += 1
            in_epoch = 0
            if epoch % cfg.snapshot_save_epoch == 0 and epoch >= cfg.snapshot_save_start_epoch:
                _save(out, trainer, epoch, iteration, info, keep=keep)
                saved_at = iteration
    if saved_at != iteration or not marker.is_file():  # always leave a resumable checkpoint
        _save(out, trainer, epoch, iteration, info, in_epoch, keep)
    scalars.close()
    log.info("done: epoch %d, iteration %d", epoch, iteration)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)
    cfg = load_config(args.config, args.set)
    if args.restart_lr_schedule:
        cfg.trainer.restart_lr_schedule = True
    # Small gradients of the freshly initialised generator become subnormal floats, which are
    # 10x slower on CPUs; flushing them to zero changes nothing measurable.
    torch.set_flush_denormal(True)
    return train(cfg, args.data, args.output_path, args.vgg_weights, args.device, not args.no_resume,
                 args.init_checkpoint, list(sys.argv[1:] if argv is None else argv), (args.keep_last, args.keep_every),
                 args.overwrite)


if __name__ == "__main__":
    run_cli(main)
