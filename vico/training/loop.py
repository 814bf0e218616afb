"""The training loop: one code path for plain python (1 process) and torchrun (DDP).

Exactness across process counts: the sampler's global batches do not depend on the world size,
the model is initialised from ``seed`` before per-rank seeding, and each step's loss is the
per-term sum over the global batch divided by the global row count (all-reduced), scaled by the
world size so that DDP's gradient average equals the single-process gradient.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import random
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.utils.data import DataLoader

from common.dataset import read_index
from common.dist import all_reduce_sum, barrier, cleanup, gather_objects, init_dist
from common.io import RunReport, UserError, write_text_atomic
from common.progress import Progress, progress
from common.training import ScalarWriter, check_retention, clear_run, event_files, prune_checkpoints
from common.weights import load_state_dict_strict

from ..data import GlobalBatchSampler, WindowDataset, check_feature_set, collate, load_clip, load_stats
from ..losses import DEFAULT_WEIGHTS, MEANS, TERM_NAMES, loss_terms
from ..models import build_model, config_from_dict, resolve_config
from .init_from import load_init_weights
from .checkpoint import (LATEST, checkpoint_name, read_checkpoint, resolve_resume, rng_state, save_checkpoint,
                         set_rng_state)

log = logging.getLogger(__name__)
LOG_FILE = "log.jsonl"


@dataclass
class TrainConfig:
    """Everything a training run depends on (saved in run.json and in every checkpoint)."""
    task: str
    data: str
    output_path: str
    features: str | None = None      # default: DATA/features
    split_csv: str = "train.csv"     # relative to DATA unless absolute
    config: str | None = None        # registry name or YAML; default baseline_<task>
    time_size: int = 90
    batch_size: int = 4              # per process
    lr: float = 0.002
    weight_decay: float = 0.05
    lr_step: int = 30
    lr_gamma: float = 0.5
    max_epochs: int = 500
    seed: int = 42
    loss_mean: str = "frames"        # 'padded' = the original mean over padding too
    workers: int = 0
    device: str = "auto"
    resume: str | None = None        # checkpoint, run/checkpoints folder, or 'auto'
    save_every: int = 1
    keep_last: int = 3               # checkpoints kept on disk: the newest K ...
    keep_every: int = 100            # ... plus every epoch that is a multiple of E (0: none)
    overwrite: bool = False          # start afresh in an existing run folder
    init_from: str | None = None     # start a new run from these weights (fresh optimizer); see init_from.py


def features_dir(data: str, features: str | None) -> Path:
    return Path(features) if features else Path(data) / "features"


def split_path(data: str, split_csv: str) -> Path:
    p = Path(split_csv)
    return p if p.is_absolute() or p.exists() else Path(data) / p


def load_split(data: str, features: str | None, split_csv: str, audio_dim: int, report: RunReport,
               feature_set: str | None = None):
    """Load every clip of a split csv; per-clip problems go to ``report`` and are skipped."""
    fdir = features_dir(data, features)
    if not fdir.is_dir():
        raise UserError(f"{fdir}: features folder not found (run the preprocess stage, or pass --features)")
    recorded = check_feature_set(fdir, audio_dim, feature_set)
    stats = load_stats(fdir, audio_dim)
    clips = []
    index = read_index(split_path(data, split_csv))
    for c in progress(index, desc="loading features", unit="clip"):
        try:
            clips.append(load_clip(fdir, c.uuid, stats, audio_dim))
            report.ok(c.uuid)
        except UserError as e:
            report.fail(c.uuid, e)
    return clips, stats, recorded


def _read_log(path: Path, upto: int) -> list[str]:
    if not path.is_file():
        return []
    keep = []
    for line in path.read_text().splitlines():
        try:
            if json.loads(line)["epoch"] <= upto:
                keep.append(line)
        except (json.JSONDecodeError, KeyError, TypeError):
            continue
    return keep


def train_step(net: torch.nn.Module, opt: torch.optim.Optimizer, batch: dict, info, mean: str
               ) -> tuple[float, torch.Tensor, int]:
    """One optimizer step on this rank's share of a global batch.

    Returns (global TOTAL_LOSS, global term means (8,) float64, real samples in the global batch).
    The backward loss is this rank's term sums over the *global* row counts, times the world
    size: DDP's gradient average then equals the gradient of the global-batch loss.
    """
    audio, driven, init, target = (batch[k].to(info.device, non_blocking=True)
                                   for k in ("audio", "driven", "init", "target"))
    lengths = batch["lengths"]  # (B,) on CPU
    pred = net(audio, driven, init, lengths)  # (B, Tmax, 73)
    terms = loss_terms(pred, target, lengths, mean, batch["weights"])
    local = torch.stack([terms.sums[k].detach().double().cpu() for k in TERM_NAMES])
    counts = torch.tensor([terms.count, terms.count_spiky, float(batch["weights"].sum())], dtype=torch.float64)
    vec = all_reduce_sum(torch.cat([local, counts]), info)
    gsum, gc, gcs, gb = vec[:-3], max(float(vec[-3]), 1.0), max(float(vec[-2]), 1.0), round(float(vec[-1]))
    denom = {k: gcs if k.endswith("_spiky") else gc for k in TERM_NAMES}
    loss = sum(DEFAULT_WEIGHTS[k] * terms.sums[k] / denom[k] for k in TERM_NAMES) * info.world_size
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    means = gsum / torch.tensor([denom[k] for k in TERM_NAMES], dtype=torch.float64)
    total = float(sum(DEFAULT_WEIGHTS[k] * float(m) for k, m in zip(TERM_NAMES, means)))
    return total, means, gb


def train(cfg: TrainConfig) -> int:
    """Run (or resume) training; returns the exit code (1 when some clips could not be loaded)."""
    if cfg.loss_mean not in MEANS:
        raise UserError(f"--loss_mean must be one of {MEANS}")
    if cfg.batch_size < 1 or cfg.time_size < 2 or cfg.max_epochs < 1:
        raise UserError("--batch_size and --max_epochs must be >= 1 and --time_size >= 2")
    check_retention(cfg.keep_last, cfg.keep_every)
    info = init_dist(None if cfg.device == "auto" else cfg.device)
    try:
        return _train(cfg, info)
    finally:
        cleanup(info)


def _train(cfg: TrainConfig, info) -> int:
    out = Path(cfg.output_path)
    ckpt_dir = out / "checkpoints"
    guard_run_folder(out, cfg.resume, cfg.overwrite, info)
    ckpt_path = resolve_resume(cfg.resume, ckpt_dir)
    ck = read_checkpoint(ckpt_path) if ckpt_path else None
    if ck is not None:
        if "optimizer" not in ck or "config" not in ck:
            raise UserError(f"{ckpt_path}: not a resumable vico checkpoint (no optimizer/config state); "
                            "original Epoch_NNN.bin files hold weights only")
        model_cfg = config_from_dict(ck["config"], source=str(ckpt_path))
        if cfg.config is not None and resolve_config(cfg.config, cfg.task) != model_cfg:
            raise UserError(f"{ckpt_path}: its model config differs from --config {cfg.config}")
        if model_cfg.family != cfg.task:
            raise UserError(f"{ckpt_path}: holds a {model_cfg.family} model but --task is {cfg.task}")
    else:
        model_cfg = resolve_config(cfg.config, cfg.task)
    init = None
    if cfg.init_from and ck is None:
        init = load_init_weights(cfg.init_from, cfg.task, cfg.config)
        model_cfg = init.config
    elif cfg.init_from:
        log.info("resuming %s: --init_from %s is not used", ckpt_path, cfg.init_from)

    features = str(features_dir(cfg.data, cfg.features).resolve())  # recorded for pipeline.generate
    report = RunReport("vico.train", {"train": cfg, "model": model_cfg, "world_size": info.world_size,
                                      "features": features}, out)
    clips, _, feature_set = load_split(cfg.data, cfg.features, cfg.split_csv, model_cfg.audio_dim, report,
                                       model_cfg.audio_feature_set)
    if not clips:
        raise UserError(f"{split_path(cfg.data, cfg.split_csv)}: no clip could be loaded "
                        f"({len(report.failures)} failed, see messages above)")
    if model_cfg.audio_feature_set is None and feature_set is not None:
        model_cfg = dataclasses.replace(model_cfg, audio_feature_set=feature_set)  # recorded for eval's check
        report.config["model"] = dataclasses.asdict(model_cfg)

    ds = WindowDataset(clips, cfg.task, cfg.time_size)
    sampler = GlobalBatchSampler(len(ds), cfg.batch_size, info.rank, info.world_size, seed=cfg.seed)
    loader = DataLoader(ds, batch_sampler=sampler, collate_fn=collate, num_workers=cfg.workers,
                        pin_memory=info.device.type == "cuda")

    torch.manual_seed(cfg.seed)  # the same initial weights for any world size
    model = build_model(model_cfg).to(info.device)
    if init is not None:
        load_state_dict_strict(model, init.state, init.path)
    seed = cfg.seed * info.world_size + info.rank
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)
    if info.device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=(0.9, 0.999), weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=cfg.lr_step, gamma=cfg.lr_gamma)
    start = 0
    if ck is not None:
        load_state_dict_strict(model, ck["model"], ckpt_path)
        opt.load_state_dict(ck["optimizer"])
        sched.load_state_dict(ck["scheduler"])
        start = int(ck["epoch"])
        rng = ck.get("rng") or []
        if len(rng) == info.world_size:
            set_rng_state(rng[info.rank])
        else:
            log.warning("%s was written by %d process(es), now %d: RNG streams restart from the seed",
                        ckpt_path, len(rng), info.world_size)
        log.info("resumed from %s (epoch %d)", ckpt_path, start)
    net = DDP(model, device_ids=[info.device] if info.device.type == "cuda" else None) if info.distributed else model

    n_params = sum(p.numel() for p in model.parameters())
    log_path = out / LOG_FILE
    if info.is_main:
        out.mkdir(parents=True, exist_ok=True)
        lines = _read_log(log_path, start)
        write_text_atomic(log_path, "".join(line + "\n" for line in lines))
        report.config.update({"n_parameters": n_params, "n_clips": len(clips), "n_windows": len(ds),
                              "resumed_from": str(ckpt_path) if ckpt_path else None,
                              "initialised_from": str(init.path) if init is not None else None})
        report.write()
        log.info("%s model (%s params), %d clips, %d windows, %d step(s)/epoch x %d process(es), epochs %d..%d",
                 cfg.task, f"{n_params:,}", len(clips), len(ds), len(sampler), info.world_size, start + 1,
                 cfg.max_epochs)
    if start >= cfg.max_epochs:
        log.info("checkpoint is at epoch %d >= --max_epochs %d: nothing to do", start, cfg.max_epochs)
    scalars = ScalarWriter(out, enabled=info.is_main, purge_step=start + 1 if start else None)
    try:
        _epochs(cfg, info, start, net, model, model_cfg, opt, sched, loader, sampler, log_path, scalars)
    finally:
        scalars.close()
    if info.is_main:
        report.write()
    return report.exit_code()


def _epochs(cfg: TrainConfig, info, start: int, net, model, model_cfg, opt, sched, loader, sampler,
            log_path: Path, scalars: ScalarWriter) -> None:
    """Epochs ``start+1 .. max_epochs``: one log line (and TensorBoard scalars) per epoch,
    checkpoints every --save_every epochs, pruned to --keep_last/--keep_every."""
    out = Path(cfg.output_path)
    features = str(features_dir(cfg.data, cfg.features).resolve())  # recorded for pipeline.generate
    bar = Progress(max(cfg.max_epochs - start, 0) * len(sampler), desc="train", unit="step",
                   items_total=max(cfg.max_epochs - start, 0), enabled=info.is_main)
    for epoch in range(start, cfg.max_epochs):
        t0 = time.time()
        sampler.set_epoch(epoch)
        net.train()
        lr = opt.param_groups[0]["lr"]
        sums = torch.zeros(len(TERM_NAMES) + 1, dtype=torch.float64)
        steps = samples = 0
        for batch in loader:
            total, means, gb = train_step(net, opt, batch, info, cfg.loss_mean)
            sums += torch.cat([torch.tensor([total], dtype=torch.float64), means])
            steps += 1
            samples += gb
            bar.update(1, items=0)
            bar.set_postfix(epoch=epoch + 1, loss=f"{total:.4f}")
        sched.step()  # after the epoch's optimizer steps (the original stepped first: one epoch early)
        rngs = gather_objects(rng_state(), info)
        avg = (sums / max(steps, 1)).tolist()
        if info.is_main:
            rec = {"epoch": epoch + 1, "loss": avg[0], **{k: v for k, v in zip(TERM_NAMES, avg[1:])},
                   "lr": lr, "steps": steps, "samples": samples, "seconds": round(time.time() - t0, 3)}
            with log_path.open("a") as f:
                f.write(json.dumps(rec) + "\n")
            scalars.add(epoch + 1, {k: v for k, v in rec.items() if k != "epoch"}, prefix="train/")
            log.info("epoch %d: loss %.6f (lr %.3g, %d samples, %.1f s)", epoch + 1, avg[0], lr, samples,
                     rec["seconds"])
            if (epoch + 1) % cfg.save_every == 0 or epoch + 1 == cfg.max_epochs:
                save_checkpoint(out / "checkpoints", epoch + 1, model, opt, sched, rngs, model_cfg,
                                dataclasses.asdict(cfg), info.world_size, features=features)
                prune_run_checkpoints(out / "checkpoints", epoch + 1, cfg.keep_last, cfg.keep_every)
        bar.update(0, items=1)
        barrier(info)
    bar.close()


def _run_files(out: Path) -> list[Path]:
    """The files that make ``out`` a training run: checkpoints, the latest pointer, the log, events."""
    ckpt_dir = out / "checkpoints"
    found = [p for p in (ckpt_dir / LATEST, out / LOG_FILE) if p.is_file()]
    return found + sorted(ckpt_dir.glob("epoch_*.pt")) + event_files(out)


def guard_run_folder(out: Path, resume: str | None, overwrite: bool, info) -> None:
    """Never restart an existing run silently: without --resume, a folder holding a run needs
    --overwrite, which deletes the run's checkpoints, log and events (rank 0) first."""
    if resume is not None:
        return
    files = _run_files(out)
    clear_run(out, files, overwrite, info, f"{out}: holds a training run already "
              f"({files[0].relative_to(out) if files else ''}); continue it with --resume auto, or start afresh "
              "with --overwrite")


def prune_run_checkpoints(ckpt_dir: Path, saved: int, keep_last: int, keep_every: int) -> None:
    """Delete this run's checkpoints beyond --keep_last/--keep_every (never ``saved``, the newest)."""
    files = {}
    for p in ckpt_dir.glob("epoch_*.pt"):
        try:
            n = int(p.stem[len("epoch_"):])
        except ValueError:
            continue
        if p.name == checkpoint_name(n):
            files[n] = p
    gone = prune_checkpoints(files, keep_last, keep_every, protect=saved)
    if gone:
        log.debug("kept %d checkpoint(s), removed %s", len(files) - len(gone), ", ".join(p.name for p in gone))
