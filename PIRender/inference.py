"""Render every video of a PIRender LMDB with the face generator, as H.264 mp4 (+ speech).

Replaces upstream ``PIRender/inference.py``. For each video: the source image is its frame 0
from the LMDB; frame i is driven by the 27-frame window of coefficients around i (clamped at the
ends); the output has the input's frame count at 30 fps. Differences from the original: frames
are rendered in batches (--batch_size), the output is H.264 (yuv420p) instead of mp4v, the
speech track is muxed in with --audio_dir, the output folder is created here, videos are sharded
over ranks under torchrun (no NCCL unless on CUDA), a bad video is recorded in run.json instead
of stopping the run, and existing outputs are skipped (--overwrite redoes them).
"""
from __future__ import annotations

import argparse
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch

from common.cli import HelpFormatter
from common.dataset import find_audio, parse_name
from common.dist import cleanup, finish_report, init_dist, shard
from common.io import RunReport, UserError, is_complete, run_cli, setup_logging
from common.media import FPS, MediaError, VideoWriter, load_audio
from common.progress import Progress
from PIRender.data.vox_lmdb import VoxLMDB
from PIRender.engine.checkpoint import load_generator
from PIRender.engine.render import Renderer, driving_windows

log = logging.getLogger("PIRender.inference")

EPILOG = """\
examples:
  # released weights in their default place (weights/pirender/face/...checkpoint.pt)
  python -m PIRender.inference --input saved/run_E500/vox_lmdb --output_dir outputs/render
  # explicit checkpoint, speech muxed in from the dataset's audios/<uuid>.wav, 4 ranks
  torchrun --nproc_per_node 4 -m PIRender.inference --input vox_lmdb \\
      --checkpoint result/face/epoch_00190_iteration_000400000_checkpoint.pt \\
      --output_dir outputs/render --audio_dir data/listening_head/audios
  # the original's output layout <output_dir>/epoch_EEEEE_iteration_IIIIIIIII/<name>.mp4
  python -m PIRender.inference --input vox_lmdb --output_dir vox_result --epoch_subfolder

--input is the prepare_vox_lmdb --out folder (with <size>/ and the list files) or the
<size>/ folder itself. --checkpoint may also be a folder with latest_checkpoint.txt (the
original result/<name>/). Outputs: <output_dir>/<name>.mp4 and <output_dir>/run.json.
"""


@dataclass
class InferenceConfig:
    input: str
    output_dir: str
    checkpoint: str | None = None
    batch_size: int = 8
    device: str = "auto"
    audio_dir: str | None = None
    size: int = 256
    split: str = "test"
    names: tuple[str, ...] = ()
    epoch_subfolder: bool = False
    precision: str = "fp32"
    channels_last: str = "auto"
    crf: int = 18
    overwrite: bool = False


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m PIRender.inference", description=__doc__, epilog=EPILOG,
                                formatter_class=HelpFormatter)
    p.add_argument("--input", required=True, help="LMDB folder written by PIRender.prepare_vox_lmdb")
    p.add_argument("--output_dir", required=True, help="folder for <name>.mp4 and run.json (created)")
    p.add_argument("--checkpoint", default=None,
                   help="PIRender checkpoint (net_G_ema is used); default: the registry place "
                        "weights/pirender/face/epoch_00190_iteration_000400000_checkpoint.pt")
    p.add_argument("--batch_size", type=int, default=8, help="frames per generator call")
    p.add_argument("--device", default="auto", help="auto (CUDA if present), cpu, cuda, cuda:N")
    p.add_argument("--audio_dir", default=None,
                   help="folder of <uuid>.wav; mux the speech of each <uuid>.<role> video into its mp4")
    p.add_argument("--size", type=int, default=256, help="which LMDB size to read (<input>/<size>/)")
    p.add_argument("--split", choices=["test", "train", "all"], default="test",
                   help="list file naming the videos (falls back to every video in the LMDB when empty)")
    p.add_argument("--names", nargs="*", default=[], help="render only these video names")
    p.add_argument("--epoch_subfolder", action="store_true",
                   help="write to <output_dir>/epoch_EEEEE_iteration_IIIIIIIII/ as the original did")
    p.add_argument("--precision", choices=["fp32", "bf16"], default="fp32",
                   help="bf16: autocast (faster on recent GPUs; pixels differ from fp32 by ~1 grey level on "
                        "average, up to ~18 at worst, see docs/pirender.md)")
    p.add_argument("--channels_last", choices=["auto", "on", "off"], default="auto",
                   help="channels_last memory format (auto: on for CUDA)")
    p.add_argument("--crf", type=int, default=18, help="H.264 quality (lower is better)")
    p.add_argument("--overwrite", action="store_true", help="re-render videos whose mp4 exists")
    p.add_argument("--verbose", action="store_true", help="debug logging")
    return p


def audio_for(name: str, audio_dir: Path) -> Path:
    """``<audio_dir>/<uuid>.wav`` for a ``<uuid>.<role>`` video, else ``<audio_dir>/<name>.wav``
    (.flac, .ogg, .mp3, .m4a, .aac too)."""
    try:
        uuid, _ = parse_name(name)
    except UserError:
        uuid = name
    for stem in (uuid, name):
        cand = find_audio(audio_dir, stem)
        if cand is not None:
            return cand
    raise MediaError(f"{audio_dir / (uuid + '.wav')}: audio file not found for video {name}")


def render_one(db: VoxLMDB, name: str, renderer: Renderer, out_path: Path, audio_dir: Path | None,
               crf: int, bar: Progress | None = None) -> int:
    """Render video ``name`` to ``out_path`` atomically; returns the frame count. ``bar``
    advances by each rendered batch's frames."""
    n = db.n_frames(name)
    if n < 1:
        raise UserError(f"{db.db_path}: {name} has no frames")
    windows = driving_windows(db.coeffs(name))  # (N, 73, 27)
    source = db.frame(name, 0)  # (H, W, 3) uint8, GT first frame
    if source.shape[0] % 32 or source.shape[1] % 32:
        raise UserError(f"{db.db_path}: {name}: frames are {source.shape[1]}x{source.shape[0]}, "
                        "the generator needs sizes divisible by 32")
    audio = None
    if audio_dir is not None:
        wav = audio_for(name, audio_dir)
        audio = load_audio(wav)
        short = n / FPS - len(audio[0]) / audio[1]
        if short > 1.0 / FPS:  # more than one frame of silence would be padded in
            raise MediaError(f"{wav}: audio lasts {len(audio[0]) / audio[1]:.3f} s, shorter than the "
                             f"{n}-frame video ({n / FPS:.3f} s) by more than one frame")
    with VideoWriter(out_path, fps=FPS, crf=crf, audio=audio) as writer:
        for frames in renderer.render(source, windows):
            writer.write(frames)
            if bar is not None:
                bar.update(len(frames))
    return writer.n_frames


def _frames_or_zero(db: VoxLMDB, name: str) -> int:
    try:
        return max(0, int(db.n_frames(name)))
    except Exception:  # noqa: BLE001 - a broken entry is reported by render_one
        return 0


def run(cfg: InferenceConfig) -> int:
    info = init_dist(None if cfg.device == "auto" else cfg.device)
    try:
        return _run(cfg, info)
    finally:
        cleanup(info)


def _run(cfg: InferenceConfig, info, gen=None) -> int:
    """Render ``cfg``'s videos; ``gen``: a generator loaded once by the caller (batched generation)."""
    if cfg.batch_size < 1:
        raise UserError(f"--batch_size must be >= 1, got {cfg.batch_size}")
    audio_dir = Path(cfg.audio_dir) if cfg.audio_dir else None
    if audio_dir is not None and not audio_dir.is_dir():
        raise UserError(f"{audio_dir}: audio folder not found")
    db = VoxLMDB(cfg.input, size=cfg.size, split=cfg.split)
    names = list(db.names)
    if cfg.names:
        unknown = [n for n in cfg.names if not db.has(n)]
        if unknown:
            raise UserError(f"{db.db_path}: no video named {', '.join(unknown[:3])}")
        names = list(dict.fromkeys(cfg.names))
    if not names:
        raise UserError(f"{db.db_path}: no videos in the LMDB")
    if gen is None:
        gen = load_generator(cfg.checkpoint, device=info.device)
    cuda = info.device.type == "cuda"
    precision = cfg.precision
    channels_last = cfg.channels_last == "on" or (cfg.channels_last == "auto" and cuda)
    renderer = Renderer(gen.model, info.device, cfg.batch_size, precision, channels_last)
    out_dir = Path(cfg.output_dir) / (gen.result_subdir if cfg.epoch_subfolder else "")
    out_dir.mkdir(parents=True, exist_ok=True)
    report = RunReport("PIRender.inference", cfg, out_dir)
    report.config.update(checkpoint_resolved=str(gen.path), epoch=gen.epoch, iteration=gen.iteration,
                         precision_used=precision, channels_last_used=channels_last,
                         world_size=info.world_size)
    mine = shard(names, info)
    log.info("rendering %d of %d videos on %s (batch %d, %s) -> %s", len(mine), len(names), info.device,
             cfg.batch_size, precision, out_dir)
    n_frames = 0
    t0 = time.time()
    todo = [n for n in mine if cfg.overwrite or not is_complete(out_dir / f"{n}.mp4")]
    for name in mine:
        if name not in todo:
            report.skip(name)
    # frames of this rank's videos (a bad entry counts 0 here and fails below)
    total = sum(_frames_or_zero(db, n) for n in todo)
    bar = Progress(total, desc="render", unit="frame", items_total=len(todo), enabled=info.is_main)
    for name in todo:
        out_path = out_dir / f"{name}.mp4"
        done_before = bar.n
        try:
            n = render_one(db, name, renderer, out_path, audio_dir, cfg.crf, bar)
        except (UserError, ValueError) as e:
            report.fail(name, e)
            continue
        except RuntimeError as e:  # e.g. CUDA out of memory on one long video: report, go on
            report.fail(name, f"{type(e).__name__}: {' '.join(str(e).split())[:200]}")
            continue
        finally:
            bar.update(max(0, _frames_or_zero(db, name) - (bar.n - done_before)), items=1)
        n_frames += n
        report.ok(name, [out_path])
    bar.close()
    dt = time.time() - t0
    if n_frames:
        log.info("%d frames in %.1f s (%.2f frames/s)", n_frames, dt, n_frames / dt)
    db.close()
    return finish_report(report, info)  # run.json on rank 0; every rank exits alike


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)
    cfg = InferenceConfig(input=args.input, output_dir=args.output_dir, checkpoint=args.checkpoint,
                          batch_size=args.batch_size, device=args.device, audio_dir=args.audio_dir,
                          size=args.size, split=args.split, names=tuple(args.names),
                          epoch_subfolder=args.epoch_subfolder, precision=args.precision,
                          channels_last=args.channels_last, crf=args.crf, overwrite=args.overwrite)
    torch.set_grad_enabled(False)
    torch.set_flush_denormal(True)  # subnormal floats are slow on CPUs; no effect on the images
    return run(cfg)


if __name__ == "__main__":
    run_cli(main)
