"""Prepare your own videos as ViCo clips: 30 fps, 256x256 face crops, 44.1 kHz mono wav, index csv.

Sources: any video PyAV/FFmpeg decodes (mp4, mov, mkv, avi, webm, ...), any frame rate (variable
too), any size and aspect, with or without sound; audio files (wav, flac, ogg, mp3, m4a, ...)
optional. Each pair becomes, under --output_folder,
  videos/<uuid>.speaker.mp4, videos/<uuid>.listener.mp4   30 fps, 256x256 H.264
  audios/<uuid>.wav                                       mono 16-bit 44.1 kHz, exactly frames/30 s
  <split>.csv                                             video_id, uuid, speaker_id, listener_id
  prepare/<uuid>.json                                     the clip's record (also in run.json)

Pairs come from --pairs CSV, one row per pair, paths relative to the csv's folder:
  speaker,listener[,audio][,uuid][,split][,speaker_id][,listener_id]   two videos, one per person
  video[,audio][,speaker_side][,uuid][,split]                          one two-person video, split
or from --two_person VIDEO ... (each split into two crops; left face = speaker unless
--speaker_side right). Without an audio file the speaker's (or the two-person) video's own sound
track is used.

Timing: output frame i shows the last source frame whose timestamp is at or before i/30 s;
frames = round(duration x 30). Framing: one square per clip and role, side = --k x the median
detected face side (dlib), centred --shift_up face sides above the median face centre; --follow moves the centre with the
face (linear interpolation between detections, then a centred moving average over
--follow_window frames). Black fills whatever the square leaves outside the frame.

A pair whose outputs and record exist is skipped (--overwrite redoes it). A bad pair is
recorded in run.json with its reason; the others go on; exit 1 at the end if any failed.
Under torchrun each process takes its share of the pairs.
"""
from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path
from typing import Sequence

from tqdm import tqdm

from common.cli import parser
from common.dataset import ROLES, Clip, audio_path, read_csv_rows, video_path, write_index
from common.io import RunReport, UserError, is_complete, read_json, run_cli, setup_logging, write_json_atomic
from common.media import MediaError
from preprocess.convert import make_uuid
from preprocess.prepare.clip import Item, Options, measure_k, prepare_item
from preprocess.prepare.framing import FOLLOW_WINDOW, K_VICO, SHIFT_UP_VICO, parse_face

log = logging.getLogger("preprocess.prepare_videos")

EPILOG = """examples:
  # pairs.csv: speaker,listener,audio  (one row per pair; audio optional)
  python -m preprocess.prepare_videos --pairs my_clips/pairs.csv --output_folder data/my_vico
  # one video with both people side by side (left = speaker), its own sound track
  python -m preprocess.prepare_videos --two_person talk1.mp4 talk2.mov --output_folder data/my_vico
  # a moving face: a box that follows it; the right-hand person of each video
  python -m preprocess.prepare_videos --pairs pairs.csv --output_folder data/my_vico --follow --face right
  # k and shift_up of ViCo's framing, measured on ViCo clips with the same face detection
  python -m preprocess.prepare_videos --measure_k data/listening_head/videos/*.mp4
  # many pairs on 8 processes
  torchrun --nproc_per_node 8 -m preprocess.prepare_videos --pairs pairs.csv --output_folder data/my_vico
"""

_NAME_RE = re.compile(r"^[A-Za-z0-9_-]+$")


def _resolve(base: Path, value: str) -> Path:
    p = Path(value).expanduser()
    return p if p.is_absolute() else base / p


def read_items(pairs_csv: Path | None, two_person: Sequence[Path], face: str | int, speaker_side: str,
               split: str) -> list[Item]:
    """The work list from --pairs and --two_person; UserError before anything is written."""
    items: list[Item] = []
    if pairs_csv is not None:
        rows = read_csv_rows(pairs_csv, required=())
        base = pairs_csv.parent
        for line, r in enumerate(rows, start=2):
            where = f"{pairs_csv}: line {line}"
            if r.get("video"):
                side = r.get("speaker_side") or speaker_side
                if side not in ("left", "right"):
                    raise UserError(f"{where}: speaker_side must be left or right, got {side!r}")
                items.append(_split_item(_resolve(base, r["video"]), side, r, base, split))
            elif r.get("speaker") and r.get("listener"):
                s, li = _resolve(base, r["speaker"]), _resolve(base, r["listener"])
                a = _resolve(base, r["audio"]) if r.get("audio") else None
                # from the names as written, so that moving the folder keeps the uuids
                uuid = r.get("uuid") or make_uuid(0, r.get("audio", ""), r["speaker"], r["listener"])
                items.append(Item(uuid, r.get("split") or split, s.stem, {"speaker": s, "listener": li},
                                  {"speaker": face, "listener": face}, a,
                                  r.get("speaker_id") or s.stem, r.get("listener_id") or li.stem))
            else:
                raise UserError(f"{where}: needs speaker and listener, or video (columns: speaker, "
                                "listener, audio, uuid, split or video, audio, speaker_side, uuid, split)")
    for v in two_person:
        items.append(_split_item(Path(v), speaker_side, {}, Path("."), split))
    if not items:
        raise UserError("nothing to prepare: give --pairs CSV and/or --two_person VIDEO ...")
    seen: dict[str, Item] = {}
    for it in items:
        if not _NAME_RE.match(it.uuid) or not _NAME_RE.match(it.split):
            raise UserError(f"{it.uuid}: uuid and split must be plain names (letters, digits, _ or -)")
        if it.uuid in seen:
            raise UserError(f"uuid {it.uuid} is given twice ({it.video_id}, {seen[it.uuid].video_id})")
        seen[it.uuid] = it
    return items


def _split_item(video: Path, side: str, r: dict, base: Path, split: str) -> Item:
    a = _resolve(base, r["audio"]) if r.get("audio") else None
    other = "right" if side == "left" else "left"
    uuid = r.get("uuid") or make_uuid(0, r.get("audio", ""), r.get("video") or str(video), side)
    return Item(uuid, r.get("split") or split, video.stem, {"speaker": video, "listener": video},
                {"speaker": side, "listener": other}, a, f"{video.stem}.{side}", f"{video.stem}.{other}")


def record_path(out: Path, uuid: str) -> Path:
    return out / "prepare" / f"{uuid}.json"


def is_done(out: Path, uuid: str) -> bool:
    """The record is written last, so its presence with the three outputs marks a finished pair."""
    return all(is_complete(p) for p in (video_path(out, uuid, "speaker"), video_path(out, uuid, "listener"),
                                        audio_path(out, uuid), record_path(out, uuid)))


class PrepareReport(RunReport):
    """run.json with the per-clip records under ``clips``."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.clips: dict[str, dict] = {}

    def to_dict(self) -> dict:
        d = super().to_dict()
        d["clips"] = dict(sorted(self.clips.items()))
        return d

    def merge(self, others) -> None:
        others = list(others)
        super().merge(others)
        for o in others:
            self.clips.update((o or {}).get("clips", {}))


def _dist():
    """common.dist under torchrun; None for a plain single process (spares importing torch)."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        from common import dist

        return dist
    return None


def main(argv: Sequence[str] | None = None) -> int:
    p = parser("preprocess.prepare_videos", __doc__, EPILOG)
    p.add_argument("--pairs", type=Path, default=None, help="csv of pairs (see above)")
    p.add_argument("--two_person", type=Path, nargs="+", default=[], help="two-person videos to split")
    p.add_argument("-o", "--output_folder", type=Path, default=None, help="the ViCo-layout folder to write (required)")
    p.add_argument("--split", default="test", help="index csv of pairs whose row gives no split")
    p.add_argument("--face", default="largest", help="which face: largest, left, right or N (N-th from the left, 0-based)")
    p.add_argument("--speaker_side", default="left", choices=("left", "right"), help="two-person videos: the speaker's side")
    p.add_argument("--k", type=float, default=K_VICO, help="box side / median face side (ViCo framing)")
    p.add_argument("--shift_up", type=float, default=SHIFT_UP_VICO,
                   help="the box centre sits this many face sides above the face centre (ViCo framing)")
    p.add_argument("--follow", action="store_true", help="move the box with the face instead of one box per clip")
    p.add_argument("--follow_window", type=int, default=FOLLOW_WINDOW, help="frames of the --follow moving average")
    p.add_argument("--detect_every", type=int, default=3, help="detect faces every N output frames (1 = all)")
    p.add_argument("--detect_max_side", type=int, default=640, help="frames are scaled to at most this many pixels for detection")
    p.add_argument("--max_no_face_fraction", type=float, default=0.5, help="fail a clip when its face is missing in more of the sampled frames")
    p.add_argument("--max_audio_pad_s", type=float, default=0.5, help="pad short audio with at most this much silence, else fail the pair")
    p.add_argument("--max_length_diff_s", type=float, default=0.5, help="speaker/listener videos may differ by this much (the longer is trimmed)")
    p.add_argument("--crf", type=int, default=18, help="H.264 quality (lower = better, larger)")
    p.add_argument("--overwrite", action="store_true", help="redo pairs that are already complete")
    p.add_argument("--measure_k", type=Path, nargs="+", default=None, metavar="VIDEO",
                   help="print the k and shift_up of already framed clips (e.g. ViCo videos) and exit")
    p.add_argument("--verbose", action="store_true", help="debug logging")
    a = p.parse_args(argv)
    setup_logging(a.verbose)
    try:
        face = parse_face(a.face)
    except ValueError as e:
        raise UserError(str(e)) from None
    if a.k <= 0 or a.detect_every < 1 or a.follow_window < 1 or a.detect_max_side < 64:
        raise UserError("--k must be > 0, --detect_every and --follow_window >= 1, --detect_max_side >= 64")
    opt = Options(a.k, a.shift_up, a.follow, a.follow_window, a.detect_every, a.detect_max_side, a.max_no_face_fraction,
                  a.max_audio_pad_s, a.max_length_diff_s, a.crf)
    if a.measure_k:
        from common.faces import DlibBackend

        try:
            res = measure_k(a.measure_k, DlibBackend(upsample=0, landmarks=False), opt)
        except MediaError as e:
            raise UserError(str(e)) from None
        print(json.dumps(res, indent=1))
        return 0
    out = a.output_folder
    if out is None:
        raise UserError("--output_folder is required")
    if out.exists() and not out.is_dir():
        raise UserError(f"{out}: exists and is not a folder")
    items = read_items(a.pairs, a.two_person, face, a.speaker_side, a.split)
    dist = _dist()
    info = dist.init_dist("cpu") if dist else None
    is_main = info is None or info.is_main
    report = PrepareReport("preprocess.prepare_videos", vars(a), out)
    backend = None
    cache: dict = {}  # source -> its analysis, for sources shared by several pairs
    for it in tqdm(dist.shard(items, info) if dist else items, desc="prepare", unit="pair", disable=None):
        rp = record_path(out, it.uuid)
        if not a.overwrite and is_done(out, it.uuid):
            report.skip(it.uuid)
            report.clips[it.uuid] = read_json(rp)
            continue
        if backend is None:
            from common.faces import DlibBackend

            backend = DlibBackend(upsample=0, landmarks=False)
        try:
            rec = prepare_item(it, out, backend, opt, cache)
            write_json_atomic(rp, rec)
        except (UserError, MediaError) as e:
            report.fail(it.uuid, e)
            continue
        except OSError as e:
            report.fail(it.uuid, f"{e.filename or it.uuid}: {e.strerror or e}")
            continue
        report.clips[it.uuid] = rec
        report.ok(it.uuid, [video_path(out, it.uuid, r) for r in ROLES] + [audio_path(out, it.uuid)])
    try:
        if dist:
            code = dist.finish_report(report, info)
        else:
            report.write()
            code = report.exit_code()
        if is_main:
            _write_indexes(out, items)
    except OSError as e:
        raise UserError(f"{e.filename or out}: {e.strerror or e}") from None
    return code


def _write_indexes(out: Path, items: list[Item]) -> None:
    """<split>.csv of every complete pair (this run's and earlier ones')."""
    splits: dict[str, list[Clip]] = {}
    for it in items:
        if is_done(out, it.uuid):
            splits.setdefault(it.split, []).append(Clip(it.video_id, it.uuid, it.speaker_id, it.listener_id))
    for split, clips in sorted(splits.items()):
        write_index(out / f"{split}.csv", clips)
        log.info("%s: %d pair(s)", out / f"{split}.csv", len(clips))


if __name__ == "__main__":
    run_cli(main)
