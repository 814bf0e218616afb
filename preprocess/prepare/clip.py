"""Prepare one pair: analyse its source video(s), crop and resample to 30 fps, write the audio."""
from __future__ import annotations

import logging
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import av
import cv2
import numpy as np

from common.dataset import ROLES, audio_path, video_path
from common.io import UserError
from common.media import (MediaError, VideoWriter, iter_timed_frames, load_audio, load_audio_track,
                          probe_video, resample, write_wav)
from preprocess.prepare.framing import Box, Framing, crop_square, plan_framing, select_track
from preprocess.prepare.timing import FPS, clip_duration, n_output_frames, tick_sources

log = logging.getLogger("preprocess.prepare_videos")

SIZE = 256
SAMPLE_RATE = 44100


@dataclass(frozen=True)
class Item:
    """One output pair: a source per role (the same file for a two-person video) and the face
    rule per role; the audio file (None: the speaker source's own sound track)."""
    uuid: str
    split: str
    video_id: str
    sources: dict[str, Path]
    faces: dict[str, str | int]
    audio: Path | None = None
    speaker_id: str = ""
    listener_id: str = ""


@dataclass
class Options:
    k: float
    shift_up: float
    follow: bool
    window: int
    detect_every: int
    detect_max_side: int
    max_no_face_fraction: float
    max_audio_pad_s: float
    max_length_diff_s: float
    crf: int


@dataclass
class Analysis:
    """Pass 1 over one source: frame times, sampled face detections, size and rate."""
    path: Path
    width: int
    height: int
    times: np.ndarray
    det_times: list[float] = field(default_factory=list)
    dets: list[list[Box]] = field(default_factory=list)

    @property
    def n_out(self) -> int:
        return n_output_frames(clip_duration(self.times), FPS)

    def record(self) -> dict:
        """Source size and timing for run.json; fps = frames / duration (the mean rate)."""
        d = np.diff(self.times)
        vfr = bool(d.size > 1 and (d.max() - d.min()) > 0.1 * np.median(d))
        dur = clip_duration(self.times)
        return {"file": str(self.path), "width": self.width, "height": self.height,
                "fps": round(len(self.times) / dur, 3), "variable_frame_rate": vfr,
                "frames": int(len(self.times)), "duration_s": round(dur, 4)}


FACE_PX = 110  # faces are detected at about this size (dlib's HOG window is 80 px)


def _detect(backend, frame: np.ndarray, scale: float) -> list[Box]:
    """Faces of ``frame`` detected on a copy scaled by ``scale``, in source pixels."""
    if scale != 1.0:
        interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
        frame = cv2.resize(frame, None, fx=scale, fy=scale, interpolation=interp)
    return [tuple(v / scale for v in b) for b in backend.detect(frame)]


def analyse(path: Path, backend, opt: Options) -> Analysis:
    """Decode every frame once: keep its time, detect faces every ``detect_every`` / 30 s.

    ``backend`` detects without upsampling. Until a face is found, frames are scaled to twice
    ``detect_max_side`` pixels (as dlib's one-step upsampling of a frame of that size); after, so
    that the smallest face seen last is about FACE_PX pixels (much cheaper), with a retry at the
    first scale when that finds nothing.
    """
    times: list[float] = []
    a = Analysis(path, 0, 0, np.zeros(0))
    interval = opt.detect_every / FPS
    next_t = None
    face_px = None
    for t, frame in iter_timed_frames(path):
        times.append(t)
        if next_t is None or t >= next_t - 1e-4:
            next_t = t if next_t is None else next_t
            while next_t <= t + 1e-4:
                next_t += interval
            full = 2.0 * min(1.0, opt.detect_max_side / max(frame.shape[:2]))
            boxes = _detect(backend, frame, min(full, FACE_PX / face_px)) if face_px else []
            if not boxes:
                boxes = _detect(backend, frame, full)
            if boxes:
                face_px = min((b[2] - b[0] + b[3] - b[1]) / 2 for b in boxes)
            a.det_times.append(t)
            a.dets.append(boxes)
    a.times = np.asarray(times)
    a.height, a.width = frame.shape[:2]
    return a


def _framing(a: Analysis, which: str | int, n: int, opt: Options, role: str) -> tuple[Framing, dict]:
    track = select_track(list(zip(a.det_times, a.dets)), which, a.width)
    missing = sum(b is None for b in track)
    frac = missing / max(len(track), 1)
    rec = {"face": which, "sampled_frames": len(track), "frames_without_face": missing,
           "frames_with_several_faces": sum(len(d) > 1 for d in a.dets)}
    if missing == len(track):
        raise UserError(f"{a.path}: no {which} face found for the {role} in {len(track)} sampled frames")
    if frac > opt.max_no_face_fraction:
        raise UserError(f"{a.path}: the {role}'s ({which}) face is missing in {missing} of {len(track)} sampled "
                        f"frames ({frac:.0%} > --max_no_face_fraction {opt.max_no_face_fraction})")
    out_times = a.times[0] + np.arange(n) / FPS
    fr = plan_framing(np.asarray(a.det_times), track, out_times, opt.k, opt.follow, opt.window, opt.shift_up)
    rec["crop_box"] = fr.record()
    return fr, rec


def _write_role_videos(a: Analysis, n: int, jobs: dict[str, tuple[Framing, Path]], crf: int) -> None:
    """Pass 2: decode ``a`` again; every output tick takes the last frame at or before it, cropped
    for each role of ``jobs`` and written to that role's mp4."""
    src = tick_sources(a.times, FPS)[:n]
    with ExitStack() as stack:  # every writer finishes, or removes its temporary file
        writers = {role: stack.enter_context(VideoWriter(p, fps=FPS, crf=crf)) for role, (_, p) in jobs.items()}
        i = 0
        for k, (_, frame) in enumerate(iter_timed_frames(a.path)):
            while i < n and src[i] == k:
                for role, (fr, _) in jobs.items():
                    writers[role].write(crop_square(frame, *fr.box(i), size=SIZE))
                i += 1
            if i >= n:
                break
        if i < n:
            raise MediaError(f"{a.path}: decoded fewer frames on the second pass ({i} of {n} written)")


def _stream_offset(path: Path) -> float:
    """Seconds by which the first audio stream starts after the first video stream (0 if unknown)."""
    try:
        with av.open(str(path)) as c:
            v, s = c.streams.video, c.streams.audio
            if not v or not s or v[0].start_time is None or s[0].start_time is None:
                return 0.0
            return float(s[0].start_time * s[0].time_base - v[0].start_time * v[0].time_base)
    except av.error.FFmpegError:
        return 0.0


def load_item_audio(item: Item) -> tuple[np.ndarray, int, float, Path]:
    """The pair's speech: (mono samples, rate, start offset in seconds relative to the picture,
    file): the audio file, else the speaker source's own sound track."""
    if item.audio is not None:
        try:
            x, sr = load_audio(item.audio)
        except MediaError:
            x, sr = load_audio_track(item.audio)  # m4a, aac, a video's sound, ...
        return x, sr, 0.0, item.audio
    src = item.sources["speaker"]
    try:
        x, sr = load_audio_track(src)
    except MediaError as e:
        raise UserError(f"{e}; give the pair an audio file (the audio column of a --pairs csv)") from None
    return x, sr, _stream_offset(src), src


def fit_audio(x: np.ndarray, sr: int, offset: float, src: Path, n: int, opt: Options) -> tuple[np.ndarray, dict]:
    """Mono 44.1 kHz samples of exactly n/30 s: shifted by the start offset, padded with silence
    (at most --max_audio_pad_s, else UserError) or trimmed."""
    rec = {"file": str(src), "sample_rate": int(sr), "seconds": round(len(x) / sr, 4),
           "start_offset_s": round(offset, 4)}
    if sr != SAMPLE_RATE:
        x = resample(x, sr, SAMPLE_RATE)
    shift = int(round(offset * SAMPLE_RATE))
    x = np.concatenate([np.zeros(shift), x]) if shift > 0 else x[-shift:]
    want = n * SAMPLE_RATE // FPS  # 1470 samples per frame
    short = (want - len(x)) / SAMPLE_RATE
    if short > opt.max_audio_pad_s:
        raise UserError(f"{src}: audio lasts {len(x) / SAMPLE_RATE:.3f} s, {short:.3f} s shorter than the "
                        f"{n}-frame clip ({n / FPS:.3f} s); more than --max_audio_pad_s {opt.max_audio_pad_s}")
    rec["padded_s"] = round(max(short, 0.0), 4)
    rec["trimmed_s"] = round(max(-short, 0.0), 4)
    out = np.zeros(want)
    out[:min(want, len(x))] = x[:want]
    return out, rec


def _early_audio_check(item: Item, x: np.ndarray, sr: int, offset: float, src: Path, opt: Options) -> None:
    """Fail before decoding any video when the audio is clearly too short for the sources'
    durations from their containers (packet count / average rate; the exact check follows)."""
    dur = min(probe_video(p).duration for p in set(item.sources.values()))
    have = len(x) / sr + max(offset, 0.0)
    if dur - have > opt.max_audio_pad_s + 2 / FPS:
        raise UserError(f"{src}: audio lasts {have:.3f} s, {dur - have:.3f} s shorter than the video "
                        f"({dur:.3f} s); more than --max_audio_pad_s {opt.max_audio_pad_s}")


def prepare_item(item: Item, out_root: Path, backend, opt: Options,
                 cache: dict[Path, Analysis] | None = None) -> dict:
    """Write the pair's two videos and its wav; returns the per-clip record. ``cache`` keeps
    the analyses of sources used by several pairs of one run."""
    x, sr, offset, audio_src = load_item_audio(item)
    _early_audio_check(item, x, sr, offset, audio_src, opt)
    analyses: dict[Path, Analysis] = {}
    cache = {} if cache is None else cache
    for p in dict.fromkeys(item.sources.values()):
        if p not in cache:
            cache[p] = analyse(p, backend, opt)
        analyses[p] = cache[p]
    counts = {p: a.n_out for p, a in analyses.items()}
    n = min(counts.values())
    if max(counts.values()) - n > opt.max_length_diff_s * FPS:
        raise UserError(f"{item.uuid}: speaker and listener sources differ in length "
                        f"({', '.join(f'{p}: {c / FPS:.2f} s' for p, c in counts.items())}), more than "
                        f"--max_length_diff_s {opt.max_length_diff_s}")
    if n < 1:
        raise UserError(f"{item.uuid}: the source is shorter than one 30 fps frame")
    rec: dict = {"uuid": item.uuid, "split": item.split, "frames": n, "fps": FPS, "size": SIZE,
                 "framing": {"k": opt.k, "shift_up": opt.shift_up, "mode": f"follow (moving average, {opt.window} frames)" if opt.follow
                             else "fixed"}}
    framings = {}
    for role in ROLES:
        a = analyses[item.sources[role]]
        fr, r = _framing(a, item.faces[role], n, opt, role)
        framings[role] = fr
        rec[role] = {"source": a.record(), **r}
    audio, rec["audio"] = fit_audio(x, sr, offset, audio_src, n, opt)
    for p, a in analyses.items():
        jobs = {role: (framings[role], video_path(out_root, item.uuid, role))
                for role in ROLES if item.sources[role] == p}
        _write_role_videos(a, n, jobs, opt.crf)
    write_wav(audio_path(out_root, item.uuid), audio, SAMPLE_RATE)
    return rec


def measure_k(videos: list[Path], backend, opt: Options) -> dict:
    """k and shift_up that reproduce the framing of already framed (square) clips: frame side /
    face side, and (face centre y - frame centre y) / face side, medians over every sampled
    frame's largest face, found by the same detection as the preparation."""
    ks: list[float] = []
    ups: list[float] = []
    per: dict[str, dict] = {}
    for v in videos:
        a = analyse(Path(v), backend, opt)
        faces = [max(d, key=lambda b: b[2] - b[0]) for d in a.dets if d]
        if not faces:
            raise UserError(f"{v}: no face found")
        side = np.array([(b[2] - b[0] + b[3] - b[1]) / 2 for b in faces])
        cy = np.array([(b[1] + b[3]) / 2 for b in faces])
        k, up = max(a.width, a.height) / side, (cy - a.height / 2) / side
        per[str(v)] = {"k": round(float(np.median(k)), 3), "shift_up": round(float(np.median(up)), 3)}
        ks += list(k)
        ups += list(up)
    return {"k": round(float(np.median(ks)), 3), "shift_up": round(float(np.median(ups)), 3), "per_video": per}
