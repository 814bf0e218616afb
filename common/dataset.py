"""The ViCo dataset index: csv files, file naming, discovery by uuid and role, validation.

Challenge layout (upstream-spec section 0)::

    ROOT/videos/<uuid>.speaker.mp4, ROOT/videos/<uuid>.listener.mp4   30 fps, 256x256
    ROOT/audios/<uuid>.wav
    ROOT/train.csv, ROOT/test.csv                                     video_id, uuid, speaker_id, listener_id
"""
from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from common.io import UserError

ROLES = ("speaker", "listener")
INDEX_COLUMNS = ("video_id", "uuid", "speaker_id", "listener_id")
FULL_COLUMNS = ("audio", "listener", "speaker", "data_split", "speaker_id", "listener_id")
VIDEO_EXTS = (".mp4", ".MP4")
IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".PNG", ".JPG", ".JPEG")
AUDIO_EXTS = tuple(e for x in (".wav", ".flac", ".ogg", ".mp3", ".m4a", ".aac") for e in (x, x.upper()))


@dataclass(frozen=True)
class Clip:
    video_id: str
    uuid: str
    speaker_id: str
    listener_id: str


def clip_name(uuid: str, role: str) -> str:
    """'<uuid>.<role>', the stem of every per-role artifact."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}, got {role!r}")
    return f"{uuid}.{role}"


def parse_name(stem: str) -> tuple[str, str]:
    """'<uuid>.<role>' -> (uuid, role); UserError for any other stem."""
    uuid, _, role = stem.rpartition(".")
    if not uuid or role not in ROLES:
        raise UserError(f"{stem!r} is not named <uuid>.speaker or <uuid>.listener")
    return uuid, role


def video_path(root: str | os.PathLike, uuid: str, role: str) -> Path:
    return Path(root) / "videos" / f"{clip_name(uuid, role)}.mp4"


def audio_path(root: str | os.PathLike, uuid: str) -> Path:
    return Path(root) / "audios" / f"{uuid}.wav"


def find_audio(folder: str | os.PathLike, stem: str) -> Path | None:
    """``folder/<stem>.<ext>`` for the first audio extension present (wav first), else None."""
    for ext in AUDIO_EXTS:
        p = Path(folder) / f"{stem}{ext}"
        if p.is_file():
            return p
    return None


def read_csv_rows(path: str | os.PathLike, required: Sequence[str]) -> list[dict[str, str]]:
    """Rows of a csv as dicts; UserError naming the file when it is missing a required column."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"{p}: file not found")
    try:
        with p.open(newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            header = [h.strip() for h in (reader.fieldnames or [])]
            missing = [c for c in required if c not in header]
            if missing:
                raise UserError(f"{p}: missing column(s) {', '.join(missing)} (has: {', '.join(header) or 'nothing'})")
            rows = [{k.strip(): (v or "").strip() for k, v in row.items() if k is not None} for row in reader]
    except UnicodeDecodeError:
        raise UserError(f"{p}: not a UTF-8 text csv") from None
    for i, row in enumerate(rows, start=2):
        empty = [c for c in required if not row.get(c)]
        if empty:
            raise UserError(f"{p}: line {i} has an empty {', '.join(empty)}")
    return rows


def read_index(path: str | os.PathLike) -> list[Clip]:
    """A ViCo index csv (train.csv/test.csv). Only ``uuid`` is required, as upstream; the other
    columns default to empty strings."""
    rows = read_csv_rows(path, required=("uuid",))
    clips = [Clip(r.get("video_id", ""), r["uuid"], r.get("speaker_id", ""), r.get("listener_id", "")) for r in rows]
    seen: set[str] = set()
    for c in clips:
        if c.uuid in seen:
            raise UserError(f"{path}: uuid {c.uuid} appears twice")
        seen.add(c.uuid)
    return clips


def write_index(path: str | os.PathLike, clips: Iterable[Clip]) -> None:
    """Write an index csv with the columns of upstream convert.py (atomically)."""
    from common.io import atomic_path

    with atomic_path(path) as tmp, tmp.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(INDEX_COLUMNS)
        for c in clips:
            w.writerow([c.video_id, c.uuid, c.speaker_id, c.listener_id])


def find_files(root: str | os.PathLike, exts: Sequence[str] = VIDEO_EXTS) -> list[Path]:
    """Every file under ``root`` (recursive) with one of the extensions, sorted."""
    r = Path(root)
    if not r.is_dir():
        raise UserError(f"{r}: input folder not found")
    return sorted(p for p in r.rglob("*") if p.is_file() and p.suffix in exts and not p.name.startswith("."))


def relative_stem(path: Path, root: Path) -> Path:
    """``videos/test/a.speaker.mp4`` under ``videos`` -> ``test/a.speaker``: outputs mirror inputs."""
    return path.relative_to(root).with_suffix("")


def discover(root: str | os.PathLike) -> dict[str, dict[str, Path]]:
    """uuid -> {'speaker': mp4, 'listener': mp4, 'audio': wav} for the files present under a
    challenge-layout root (videos found recursively under videos/)."""
    r = Path(root)
    out: dict[str, dict[str, Path]] = {}
    for p in find_files(r / "videos"):
        try:
            uuid, role = parse_name(p.stem)
        except UserError:
            continue
        out.setdefault(uuid, {})[role] = p
    audios = r / "audios"
    if audios.is_dir():
        for p in find_files(audios, (".wav",)):
            out.setdefault(p.stem, {})["audio"] = p
    return out


def validate(root: str | os.PathLike, index_csv: str | os.PathLike | None = None,
             max_audio_shortfall_s: float = 0.5) -> list[str]:
    """Check a challenge-layout dataset; returns one problem line per bad clip (empty when valid).

    Checks: both videos and the audio exist for each uuid of the index, each video is constant
    30 fps (|fps - 30| <= media.FPS_TOLERANCE) and 256x256, the two videos decode with the same
    frame count, and the audio is not much shorter than the video.
    """
    from common.media import MediaError, clip_problem, load_audio, probe_video

    r = Path(root)
    uuids = [c.uuid for c in read_index(index_csv)] if index_csv else sorted(discover(r))
    problems: list[str] = []
    for uuid in uuids:
        try:
            infos = [probe_video(video_path(r, uuid, role)) for role in ROLES]
            unfit = [p for p in map(clip_problem, infos) if p]
            if unfit:
                problems.extend(unfit)
                continue
            if infos[0].n_frames != infos[1].n_frames:
                raise UserError(f"{video_path(r, uuid, 'listener')}: {infos[1].n_frames} frames, "
                                f"but the speaker video has {infos[0].n_frames}")
            ap = audio_path(r, uuid)
            samples, sr = load_audio(ap)
            short = infos[0].duration - len(samples) / sr
            if short > max_audio_shortfall_s:
                raise UserError(f"{ap}: audio lasts {len(samples) / sr:.2f} s, {short:.2f} s shorter "
                                f"than its {infos[0].duration:.2f} s video")
        except (UserError, MediaError) as e:
            problems.append(str(e))
    return problems


def main(argv: Sequence[str] | None = None) -> int:
    import logging

    from common.io import setup_logging

    from common.cli import HelpFormatter, parser

    ap = parser("common.dataset",
                "Check a ViCo challenge-layout dataset: files present, 30 fps 256x256 videos, "
                "equal speaker/listener frame counts, audio not much shorter than the video.",
                "example:\n  python -m common.dataset validate data/vico --index data/vico/train.csv")
    sub = ap.add_subparsers(dest="cmd", required=True)
    v = sub.add_parser("validate", help="check a dataset root", formatter_class=HelpFormatter)
    v.add_argument("root", type=Path, help="dataset root (videos/, audios/, *.csv)")
    v.add_argument("--index", type=Path, action="append", default=None,
                   help="index csv(s) to check (default: every *.csv in root)")
    v.add_argument("--max_audio_shortfall", type=float, default=0.5, help="seconds the audio may lack")
    args = ap.parse_args(argv)
    setup_logging()
    indexes = args.index or sorted(args.root.glob("*.csv"))
    if not indexes:
        raise UserError(f"{args.root}: no index csv found (expected train.csv/test.csv)")
    problems: list[str] = []
    n = 0
    for idx in indexes:
        n += len(read_index(idx))
        problems += validate(args.root, idx, args.max_audio_shortfall)
    for p in problems:
        logging.getLogger(__name__).error("%s", p)
    logging.getLogger(__name__).info("%s: %d clips checked, %d problem(s)", args.root, n, len(problems))
    return 1 if problems else 0


if __name__ == "__main__":
    from common.io import run_cli

    run_cli(main)
