"""Convert the full ViCo release into the challenge layout.

Replaces the original preprocess/convert.py. Each row of --anno_file (columns audio, listener,
speaker, data_split, speaker_id, listener_id) becomes one clip with a 12-character [a-z0-9]
uuid, copied to
  TARGET/videos/<uuid>.speaker.mp4, TARGET/videos/<uuid>.listener.mp4, TARGET/audios/<uuid>.wav
and one index csv per data_split, TARGET/<split>.csv (video_id, uuid, speaker_id, listener_id;
video_id = audio.rsplit('_', 2)[0]).

Unlike the original, the uuids are reproducible: derived from --seed and the row's file names;
every referenced file is checked before anything is written; the target must be empty or absent.
"""
from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from common.progress import progress

from common.dataset import FULL_COLUMNS, Clip, audio_path, read_csv_rows, video_path, write_index
from common.io import RunReport, UserError, atomic_path, run_cli, setup_logging
from common.cli import parser

log = logging.getLogger("preprocess.convert")

UUID_LEN = 12
_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"
_SPLIT_RE = re.compile(r"^[A-Za-z0-9_-]+$")
LINK_MODES = ("copy", "hardlink", "symlink")

EPILOG = """examples:
  python -m preprocess.convert --anno_file vico/annotation.csv --video_folder vico/videos \\
      --audio_folder vico/audios --target_folder data/listening_head
  # same uuids on every run with the same seed; link instead of copying to save space
  python -m preprocess.convert -f vico/annotation.csv -v vico/videos -a vico/audios \\
      -t data/listening_head --seed 1 --link hardlink
"""


@dataclass
class ConvertConfig:
    """Resolved options of one run (saved in run.json)."""

    anno_file: str
    video_folder: str
    audio_folder: str
    target_folder: str
    seed: int = 0
    link: str = "copy"


def make_uuid(seed: int, audio: str, speaker: str, listener: str) -> str:
    """12 characters of [a-z0-9], a pure function of the seed and the row's file names."""
    h = hashlib.sha256(f"{seed}\0{audio}\0{speaker}\0{listener}".encode("utf-8")).digest()
    v = int.from_bytes(h[:16], "big")
    chars = []
    for _ in range(UUID_LEN):
        v, r = divmod(v, len(_ALPHABET))
        chars.append(_ALPHABET[r])
    return "".join(chars)


@dataclass(frozen=True)
class Row:
    clip: Clip
    split: str
    speaker: Path
    listener: Path
    audio: Path


def plan(cfg: ConvertConfig) -> list[Row]:
    """Read and check the annotation; UserError before anything is written."""
    rows = read_csv_rows(cfg.anno_file, FULL_COLUMNS)
    if not rows:
        raise UserError(f"{cfg.anno_file}: no rows")
    vdir, adir = Path(cfg.video_folder), Path(cfg.audio_folder)
    out: list[Row] = []
    missing: list[str] = []
    uuids: dict[str, int] = {}
    for line, r in enumerate(rows, start=2):
        if not _SPLIT_RE.match(r["data_split"]):
            raise UserError(f"{cfg.anno_file}: line {line}: data_split {r['data_split']!r} is not a "
                            "plain name (letters, digits, _ or -)")
        uuid = make_uuid(cfg.seed, r["audio"], r["speaker"], r["listener"])
        if uuid in uuids:
            raise UserError(f"{cfg.anno_file}: line {line} repeats line {uuids[uuid]} "
                            f"(audio {r['audio']}, speaker {r['speaker']}, listener {r['listener']})")
        uuids[uuid] = line
        row = Row(Clip(r["audio"].rsplit("_", 2)[0], uuid, r["speaker_id"], r["listener_id"]),
                  r["data_split"], vdir / f"{r['speaker']}.mp4", vdir / f"{r['listener']}.mp4",
                  adir / f"{r['audio']}.wav")
        missing += [str(p) for p in (row.speaker, row.listener, row.audio) if not p.is_file()]
        out.append(row)
    if missing:
        raise UserError(f"{cfg.anno_file}: {len(missing)} referenced file(s) missing, e.g. "
                        f"{', '.join(missing[:3])}; nothing was written")
    return out


def _place(src: Path, dst: Path, mode: str) -> None:
    if mode == "symlink":
        tmp = dst.with_name(f".{dst.name}.tmp")
        tmp.unlink(missing_ok=True)
        os.symlink(src.resolve(), tmp)
        os.replace(tmp, dst)
        return
    with atomic_path(dst) as tmp:
        if mode == "hardlink":
            tmp.unlink()
            os.link(src, tmp)
        else:
            shutil.copyfile(src, tmp)


def run(cfg: ConvertConfig) -> int:
    if cfg.link not in LINK_MODES:
        raise UserError(f"--link must be one of {LINK_MODES}")
    target = Path(cfg.target_folder)
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise UserError(f"{target}: target folder exists and is not empty; give a new folder")
    rows = plan(cfg)
    for d in ("videos", "audios"):
        (target / d).mkdir(parents=True, exist_ok=True)
    report = RunReport("preprocess.convert", cfg, target)
    for row in progress(rows, desc="convert", unit="clip"):
        u = row.clip.uuid
        dsts = [(row.speaker, video_path(target, u, "speaker")), (row.listener, video_path(target, u, "listener")),
                (row.audio, audio_path(target, u))]
        try:
            for src, dst in dsts:
                _place(src, dst, cfg.link)
            report.ok(u, [d for _, d in dsts])
        except OSError as e:
            report.fail(u, f"{e.filename or u}: {e.strerror or e}")
    failed = {f["item"] for f in report.failures}
    splits: dict[str, list[Clip]] = {}
    for row in rows:
        if row.clip.uuid not in failed:
            splits.setdefault(row.split, []).append(row.clip)
    for split, clips in sorted(splits.items()):
        write_index(target / f"{split}.csv", clips)
        log.info("%s.csv: %d clips", split, len(clips))
    report.write()
    return report.exit_code()


def main(argv: Sequence[str] | None = None) -> int:
    p = parser("preprocess.convert", __doc__, EPILOG)
    p.add_argument("-f", "--anno_file", required=True, help="annotation csv of the full release")
    p.add_argument("-v", "--video_folder", required=True, help="folder of <speaker>.mp4 / <listener>.mp4")
    p.add_argument("-a", "--audio_folder", required=True, help="folder of <audio>.wav")
    p.add_argument("-t", "--target_folder", required=True, help="new (or empty) challenge-layout folder")
    p.add_argument("--seed", type=int, default=0, help="uuid seed: same seed and rows give the same uuids")
    p.add_argument("--link", default="copy", choices=LINK_MODES, help="how files are placed in the target")
    p.add_argument("--verbose", action="store_true", help="debug logging")
    a = p.parse_args(argv)
    setup_logging(a.verbose)
    return run(ConvertConfig(a.anno_file, a.video_folder, a.audio_folder, a.target_folder, a.seed, a.link))


if __name__ == "__main__":
    run_cli(main)
