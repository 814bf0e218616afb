"""Pack videos and their 3DMM coefficients into PIRender's LMDB (the original layout).

Replaces upstream ``PIRender/scripts/prepare_vox_lmdb.py``. See ``PIRender/data/vox_lmdb.py``
for the keys. Differences: ``--out`` is created here; a video whose frame count differs from its
coefficient rows (or that cannot be decoded) is reported in ``<out>/run.json`` and left out
instead of producing an LMDB that crashes the reader; each video is one LMDB transaction, so an
interrupted run leaves only complete videos and a re-run skips them.
"""
from __future__ import annotations

import argparse
import errno
import logging
import multiprocessing as mp
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import lmdb

from common.cli import HelpFormatter
from common.dataset import VIDEO_EXTS, find_files
from common.io import RunReport, UserError, run_cli, setup_logging, write_text_atomic
from common.progress import progress
from PIRender.data.prepare import find_coeff_files, prepare_video, prepare_video_star
from PIRender.data.vox_lmdb import LIST_FILES, encode_count, format_key, lmdb_dir, open_env

log = logging.getLogger("PIRender.prepare_vox_lmdb")

EPILOG = """\
examples:
  # the vico eval output: recon_coeffs/test/<uuid>.<role>.mat, GT videos in data/videos
  python -m PIRender.prepare_vox_lmdb --path data/listening_head/videos \\
      --coeff_3dmm_path saved/run_E500/recon_coeffs --out saved/run_E500/vox_lmdb
  # two sizes, 4 worker processes, names listed in train_list.txt (for PIRender.train)
  python -m PIRender.prepare_vox_lmdb --path videos --coeff_3dmm_path recons \\
      --out vox_lmdb --sizes 256 128 --n_worker 4 --split train

Only videos whose stem has a <stem>.mat under --coeff_3dmm_path (directly or one folder down,
train/ preferred over test/) are packed. Output: <out>/<size>/data.mdb, <out>/test_list.txt (or
train_list.txt with --split train), <out>/run.json. Re-running adds new videos and skips the
packed ones (--overwrite repacks them).
"""


@dataclass
class PrepareConfig:
    path: str
    coeff_3dmm_path: str
    out: str
    sizes: tuple[int, ...] = (256,)
    n_worker: int = 8
    img_format: str = "jpeg"
    split: str = "test"
    overwrite: bool = False


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m PIRender.prepare_vox_lmdb", description=__doc__,
                                epilog=EPILOG, formatter_class=HelpFormatter)
    p.add_argument("--path", required=True, help="folder of videos (searched recursively for .mp4/.MP4)")
    p.add_argument("--coeff_3dmm_path", required=True,
                   help="folder of <name>.mat coefficient files (coeff, transform_params), or its parent")
    p.add_argument("--out", required=True, help="output folder (created); one LMDB per size in <out>/<size>/")
    p.add_argument("--sizes", type=int, nargs="+", default=[256], help="image sizes (square)")
    p.add_argument("--n_worker", type=int, default=min(8, os.cpu_count() or 1),
                   help="decoding processes (1: in this process)")
    p.add_argument("--img_format", choices=["jpeg", "png"], default="jpeg", help="frame encoding")
    p.add_argument("--split", choices=sorted(LIST_FILES), default="test",
                   help="which list file names the packed videos (upstream: test; train for PIRender.train)")
    p.add_argument("--overwrite", action="store_true", help="repack videos already in the LMDB")
    p.add_argument("--verbose", action="store_true", help="debug logging")
    return p


def _select(cfg: PrepareConfig, report: RunReport) -> list[tuple[str, str]]:
    root = Path(cfg.path)
    if not root.is_dir():
        raise UserError(f"{root}: video folder not found")
    videos = find_files(root, VIDEO_EXTS)
    if not videos:
        raise UserError(f"{root}: no .mp4 videos found")
    mats = find_coeff_files(cfg.coeff_3dmm_path)
    if not mats:
        raise UserError(f"{cfg.coeff_3dmm_path}: no .mat coefficient files found")
    jobs: list[tuple[str, str]] = []
    seen: dict[str, Path] = {}
    for v in videos:
        if v.stem in seen:
            report.fail(v, f"duplicate video name {v.stem} (also {seen[v.stem]})")
            continue
        seen[v.stem] = v
        if v.stem not in mats:
            report.skip(v.stem, "no coefficient file")
            continue
        jobs.append((str(v), str(mats[v.stem])))
    return jobs


def _has(env, name: str) -> bool:
    with env.begin() as txn:
        return txn.get(format_key(name, "length")) is not None


def _count_videos(txn) -> int:
    return sum(1 for k, _ in txn.cursor() if k.endswith(b"-length"))


def prepare(cfg: PrepareConfig) -> RunReport:
    """Pack the selected videos into ``cfg.out``; returns the run report (not yet written)."""
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    report = RunReport("PIRender.prepare_vox_lmdb", cfg, out)
    if any(s < 1 for s in cfg.sizes):
        raise UserError(f"--sizes must be positive, got {cfg.sizes}")
    sizes = tuple(dict.fromkeys(cfg.sizes))
    jobs = _select(cfg, report)
    envs = {s: open_env(lmdb_dir(out, s), write=True) for s in sizes}
    try:
        todo = []
        for video, mat in jobs:
            name = Path(video).stem
            done = all(_has(e, name) for e in envs.values())
            if done and not cfg.overwrite:
                report.skip(name)
            else:
                todo.append((video, mat, sizes, cfg.img_format))
        reasons = [r["reason"] for r in report.skipped]
        log.info("%d videos to pack, %d already packed, %d without coefficients", len(todo),
                 reasons.count("already complete"), reasons.count("no coefficient file"))
        n_worker = max(1, min(cfg.n_worker, len(todo)))
        if n_worker > 1:
            pool = mp.get_context("spawn").Pool(n_worker)
            results = pool.imap(prepare_video_star, todo, chunksize=1)
        else:
            pool = None
            results = (prepare_video(*t) for t in todo)
        try:
            for res in progress(results, total=len(todo), desc="prepare_vox_lmdb", unit="video"):
                if res.error:
                    report.fail(res.name, res.error)
                    continue
                for s, env in envs.items():
                    try:
                        with env.begin(write=True) as txn:  # one transaction per video: all or nothing
                            old = txn.get(format_key(res.name, "length"))
                            if old is not None:  # repacking: drop frames beyond the new length
                                for i in range(res.n_frames, int(old.decode())):
                                    txn.delete(format_key(res.name, i))
                            for i, data in enumerate(res.frames[s]):
                                txn.put(format_key(res.name, i), data)
                            txn.put(format_key(res.name, "coeff_3dmm"), res.coeff)
                            txn.put(format_key(res.name, "length"), encode_count(res.n_frames))
                    except lmdb.Error as e:  # full disk, read-only: one error line (common.io.run_cli)
                        raise OSError(errno.EIO, f"LMDB write failed ({' '.join(str(e).split())}; disk full?)",
                                      str(lmdb_dir(out, s))) from e
                report.ok(res.name, [str(lmdb_dir(out, s)) for s in sizes])
        finally:
            if pool is not None:
                pool.close()
                pool.join()
        names: list[str] = []
        for s, env in envs.items():
            with env.begin(write=True) as txn:
                txn.put(b"length", encode_count(_count_videos(txn)))
                names = sorted(k.decode()[: -len("-length")] for k, _ in txn.cursor() if k.endswith(b"-length"))
    finally:
        for env in envs.values():
            env.sync()
            env.close()
    # The list file names every packed video of this split: earlier runs' names plus this run's.
    list_file = out / LIST_FILES[cfg.split]
    old = [ln.strip() for ln in list_file.read_text().splitlines()] if list_file.is_file() else []
    packed = set(names)
    listed = sorted({n for n in old if n in packed} | {r["item"] for r in report.done}
                    | {r["item"] for r in report.skipped if r["reason"] == "already complete"})
    write_text_atomic(list_file, "".join(f"{n}\n" for n in listed))
    for other in LIST_FILES.values():  # the original reader opens both list files
        if not (out / other).exists():
            write_text_atomic(out / other, "")
    return report


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)
    cfg = PrepareConfig(path=args.path, coeff_3dmm_path=args.coeff_3dmm_path, out=args.out,
                        sizes=tuple(args.sizes), n_worker=args.n_worker, img_format=args.img_format,
                        split=args.split, overwrite=args.overwrite)
    report = prepare(cfg)
    report.write()
    return report.exit_code()


if __name__ == "__main__":
    run_cli(main)
