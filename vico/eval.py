"""Generate coefficients for every clip of a split with a trained speaker or listener model.

Writes OUT/recon_coeffs/<split>/<uuid>.<task>.mat exactly as the original eval.py: the
prediction de-normalised, ground-truth frame 0 prepended, ground-truth id/gamma/tex per frame,
coeff (T, 257) float32 and transform_params [256, 256, s, t0, t1] (T, 5) float64. These feed
PIRender's LMDB preparation and inference.
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Sequence


from common.artifacts import save_recon_mat
from common.dataset import clip_name, read_index
from common.dist import cleanup, finish_report, init_dist, shard
from common.io import RunReport, UserError, is_complete, run_cli, run_record_name, setup_logging

from .data import check_feature_set, load_clip, load_stats
from .inference import predict_batch, to_recon
from common.cli import HelpFormatter, add_run_record_arg
from common.progress import Progress

from .cli import CONFIG_METAVAR, config_arg
from .models import CONFIGS, TASKS, resolve_config
from .training.checkpoint import load_model_for_eval, resolve_resume
from .training.loop import features_dir, split_path

log = logging.getLogger("vico.eval")

EPILOG = """\
examples:
  python -m vico.eval --task listener --data data/listening_head \\
      --resume runs/listener/checkpoints/latest --output_path runs/listener_E500
  # a checkpoint of the original code (Epoch_NNN.bin, keys prefixed 'module.')
  python -m vico.eval --task speaker --data data/listening_head --resume saved/speaker/checkpoints/Epoch_500.bin \\
      --output_path runs/speaker_E500 --split_csv test.csv
  # shard the clips over 4 processes
  torchrun --nproc_per_node 4 -m vico.eval --task listener --data ... --resume ... --output_path ...
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m vico.eval", description=__doc__, epilog=EPILOG, formatter_class=HelpFormatter)
    p.add_argument("--task", required=True, choices=TASKS, help="which head to run")
    p.add_argument("--data", required=True, help="dataset folder holding the split csv and features/")
    p.add_argument("--resume", required=True,
                   help="checkpoint: ours (epoch_NNN.pt, a checkpoints folder or its 'latest') or an original Epoch_NNN.bin")
    p.add_argument("--output_path", required=True, help="writes recon_coeffs/<split>/ and run.<task>.json here")
    p.add_argument("--features", default=None, help="features folder (default: DATA/features)")
    p.add_argument("--split_csv", default="test.csv", help="clips to generate (relative to DATA); <split> = its stem")
    p.add_argument("--config", default=None, type=config_arg, metavar=CONFIG_METAVAR,
                   help=f"model config for original-format checkpoints (ours carry their own): {', '.join(CONFIGS)} or YAML")
    p.add_argument("--batch_size", type=int, default=8, help="clips per forward pass")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda")
    p.add_argument("--still_roles", nargs="+", choices=TASKS, default=[],
                   help="roles filmed as one still image: their single-frame video features are held "
                        "for the whole clip (pipeline.generate uses this for a photo)")
    p.add_argument("--overwrite", action="store_true", help="redo outputs that already exist")
    add_run_record_arg(p, default_text="run.<task>.json: both tasks may share --output_path")
    p.add_argument("--verbose", action="store_true", help="debug logging")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)
    if args.batch_size < 1:
        raise UserError("--batch_size must be >= 1")
    info = init_dist(None if args.device == "auto" else args.device)
    try:
        return _eval(args, info)
    finally:
        cleanup(info)


def load_eval_model(resume: str, task: str, config: str | None, device) -> tuple:
    """(model on ``device``, model config, checkpoint metadata, checkpoint path) of ``--resume``."""
    if resume == "auto":
        raise UserError("--resume needs a checkpoint file or a run's checkpoints folder for vico.eval ('auto' is for training)")
    p = Path(resume)
    ckpt = resolve_resume(str(p.parent) if p.name == "latest" else resume, p)
    model, cfg, meta = load_model_for_eval(ckpt, task, resolve_config(config, task))
    return model.to(device), cfg, meta, ckpt


def _eval(args: argparse.Namespace, info, loaded: tuple | None = None) -> int:
    """Generate the split; ``loaded``: load_eval_model's result, loaded once by the caller."""
    model, cfg, meta, ckpt = loaded or load_eval_model(args.resume, args.task, args.config, info.device)
    fdir = features_dir(args.data, args.features)
    if not fdir.is_dir():
        raise UserError(f"{fdir}: features folder not found (run the preprocess stage, or pass --features)")
    check_feature_set(fdir, cfg.audio_dim, cfg.audio_feature_set)
    stats = load_stats(fdir, cfg.audio_dim)
    csv = split_path(args.data, args.split_csv)
    split = Path(args.split_csv).stem
    index = read_index(csv)
    out_dir = Path(args.output_path) / "recon_coeffs" / split
    report = RunReport("vico.eval", {**vars(args), "checkpoint": str(ckpt), "checkpoint_format": meta["format"],
                                     "checkpoint_epoch": meta["epoch"], "model": cfg}, args.output_path,
                       run_record_name(args.run_record or args.task))
    todo = []
    for c in shard(index, info):
        out = out_dir / f"{clip_name(c.uuid, args.task)}.mat"
        if is_complete(out) and not args.overwrite:
            report.skip(c.uuid)
        else:
            todo.append((c.uuid, out))
    log.info("%s: %d clip(s) to generate with %s (%s checkpoint)", csv, len(todo), ckpt, meta["format"])
    bar = Progress(len(todo), desc="generating", unit="clip", enabled=info.is_main)
    for i in range(0, len(todo), args.batch_size):
        chunk = todo[i:i + args.batch_size]
        clips, outs = [], []
        for uuid, out in chunk:
            try:
                clips.append(load_clip(fdir, uuid, stats, cfg.audio_dim, args.still_roles))
                outs.append(out)
            except UserError as e:
                report.fail(uuid, e)
        if clips:
            preds = predict_batch(model, clips, args.task, info.device)
            for clip, pred, out in zip(clips, preds, outs):
                try:
                    coeff, tp = to_recon(pred, clip, args.task, stats)
                    save_recon_mat(out, coeff, tp)
                    report.ok(clip.uuid, [out])
                except (UserError, ValueError) as e:  # an OSError (full disk, ...) stops the run
                    report.fail(clip.uuid, e)
        bar.update(len(chunk))
    bar.close()
    return finish_report(report, info)  # run.json on rank 0; every rank exits alike


if __name__ == "__main__":
    run_cli(main)
