"""The original lip-sync preprocessing (syncnet_python ``run_pipeline.py``) done in memory.

Upstream writes the video re-encoded to 25 fps, JPEG frames, S3FD detections, scene lists and
XVID face-crop videos to disk with ffmpeg subprocesses. Here the same steps run on arrays:

1. frames resampled to 25 fps as ``ffmpeg -r 25`` into an AVI does (``avi_25fps_indices``), audio
   to 16 kHz mono;
2. one face detector pass (``common.faces`` backend; upstream S3FD at conf 0.9);
3. scene cuts with a content detector (mean HSV change > 30, PySceneDetect 0.5 default);
4. IoU > 0.5 tracking allowing ``num_failed_det`` missed frames; a track must be longer than
   ``min_track`` frames and its mean box side above ``min_face_size`` pixels; boxes linearly
   interpolated over gaps;
5. crops: half box side and centre median-filtered (k 13), frame padded with grey 110, rows
   [cy-bs, cy+1.8bs), columns [cx-1.4bs, cx+1.4bs), resized to 224x224 (BGR, as upstream re-reads
   its crops with cv2);
6. the audio of the track's frames [f0/25, (f1+1)/25) cut out.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import scipy.signal

Box = tuple[float, float, float, float]
SYNC_FPS = 25
SYNC_SR = 16000


@dataclass
class LipSyncConfig:
    """Upstream ``run_pipeline.py`` defaults, except that the detector is common.faces'.

    frames: "original" passes the frames through upstream's lossy re-encodes (``codec``);
    "memory" crops the decoded frames directly.
    """

    min_track: int = 100
    min_face_size: float = 100.0
    num_failed_det: int = 25
    crop_scale: float = 0.40
    scene_threshold: float = 30.0
    min_scene_len: int = 15
    batch_size: int = 20
    vshift: int = 15
    frames: str = "original"

    def __post_init__(self) -> None:
        if self.frames not in ("original", "memory"):
            raise ValueError(f"lip-sync frames must be 'original' or 'memory', got {self.frames!r}")


@dataclass
class Track:
    frames: np.ndarray  # (T,) int frame indices at 25 fps, consecutive
    boxes: np.ndarray  # (T,4) x0,y0,x1,y1


def avi_25fps_indices(pts_s: np.ndarray, dur_s: np.ndarray, fps_out: int = SYNC_FPS) -> np.ndarray:
    """Source frame of each output frame of ``ffmpeg -i IN -r 25 OUT.avi`` (upstream's step 1).

    ffmpeg's video sync for AVI output is 'vfr': an input frame at output time t (in output
    frames) with duration d is dropped when t - next + d <= -0.6, where d is the frame's duration
    rounded to whole output frames when that is at least one. At 30 fps it keeps frames 0..9,
    then drops 10, 16, 22, ... (checked against ffmpeg 5.1 at 24, 25, 29.97, 30, 50 and 60 fps).
    pts_s, dur_s: (N,) start time (first frame at 0) and duration in seconds of each frame.
    """
    keep: list[int] = []
    nxt = 0
    for i, (t, d) in enumerate(zip(np.asarray(pts_s, np.float64) * fps_out, np.asarray(dur_s, np.float64) * fps_out)):
        r = int(np.rint(d))  # lrintf: ties to even
        delta = t - nxt + (float(r) if r > 0 else min(d, 1.0))
        if t < nxt and delta > 0:
            t = nxt  # an early frame that still reaches the next slot is clipped onto it
        if delta <= -0.6:
            continue
        if delta > 0.6:
            nxt = int(np.rint(t))
        keep.append(i)
        nxt += 1
    return np.asarray(keep, dtype=int)


def resample_indices(n_frames: int, fps: float, fps_out: int = SYNC_FPS) -> np.ndarray:
    """``avi_25fps_indices`` of a constant-frame-rate video of ``n_frames`` at ``fps``: (M,) int."""
    k = np.arange(n_frames, dtype=np.float64)
    return avi_25fps_indices(k / fps, np.full(n_frames, 1.0 / fps), fps_out)


def scene_cuts(frames_rgb: list[np.ndarray], threshold: float = 30.0, min_scene_len: int = 15) -> list[tuple[int, int]]:
    """[(start, end)) shots from a content detector: mean |dH|,|dS|,|dV| averaged > threshold."""
    n = len(frames_rgb)
    cuts = [0]
    prev = None
    for i, f in enumerate(frames_rgb):
        hsv = cv2.cvtColor(f, cv2.COLOR_RGB2HSV).astype(np.int32)
        if prev is not None:
            delta = np.abs(hsv - prev).reshape(-1, 3).mean(0).sum() / 3.0
            if delta >= threshold and i - cuts[-1] >= min_scene_len:
                cuts.append(i)
        prev = hsv
    cuts.append(n)
    return [(a, b) for a, b in zip(cuts[:-1], cuts[1:]) if b > a]


def iou(a: Box, b: Box) -> float:
    xa, ya, xb, yb = max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, xb - xa) * max(0.0, yb - ya)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def track_shot(dets: list[list[Box]], start: int, cfg: LipSyncConfig) -> list[Track]:
    """Greedy IoU tracks over one shot's per-frame detections (frame i of the shot = start+i)."""
    remaining = [list(d) for d in dets]
    tracks: list[Track] = []
    while True:
        track: list[tuple[int, Box]] = []
        for fi, faces in enumerate(remaining):
            for face in list(faces):
                if not track:
                    track.append((fi, face))
                    faces.remove(face)
                elif fi - track[-1][0] <= cfg.num_failed_det:
                    if iou(face, track[-1][1]) > 0.5:
                        track.append((fi, face))
                        faces.remove(face)
                        continue
                else:
                    break
        if not track:
            break
        if len(track) > cfg.min_track:
            fr = np.array([t[0] for t in track])
            bx = np.array([t[1] for t in track], dtype=np.float64)
            fi = np.arange(fr[0], fr[-1] + 1)
            bi = np.stack([np.interp(fi, fr, bx[:, j]) for j in range(4)], axis=1)
            if max(np.mean(bi[:, 2] - bi[:, 0]), np.mean(bi[:, 3] - bi[:, 1])) > cfg.min_face_size:
                tracks.append(Track(frames=fi + start, boxes=bi))
    return tracks


def find_tracks(frames_rgb: list[np.ndarray], dets: list[list[Box]], cfg: LipSyncConfig) -> list[Track]:
    """Scene-split, then track each shot of at least ``min_track`` frames."""
    out: list[Track] = []
    for a, b in scene_cuts(frames_rgb, cfg.scene_threshold, cfg.min_scene_len):
        if b - a >= cfg.min_track:
            out.extend(track_shot(dets[a:b], a, cfg))
    return out


def crop_track(frames_rgb: list[np.ndarray], track: Track, crop_scale: float = 0.40) -> np.ndarray:
    """(T,224,224,3) uint8 BGR face crops of a track, as upstream ``crop_video``."""
    b = track.boxes
    k = min(13, len(b) if len(b) % 2 else len(b) - 1)
    s = scipy.signal.medfilt(np.maximum(b[:, 3] - b[:, 1], b[:, 2] - b[:, 0]) / 2, kernel_size=k)
    y = scipy.signal.medfilt((b[:, 1] + b[:, 3]) / 2, kernel_size=k)
    x = scipy.signal.medfilt((b[:, 0] + b[:, 2]) / 2, kernel_size=k)
    out = np.empty((len(b), 224, 224, 3), dtype=np.uint8)
    cs = crop_scale
    for i, f in enumerate(track.frames):
        bs = s[i]
        bsi = int(bs * (1 + 2 * cs))
        img = np.pad(cv2.cvtColor(frames_rgb[f], cv2.COLOR_RGB2BGR), ((bsi, bsi), (bsi, bsi), (0, 0)),
                     mode="constant", constant_values=110)
        my, mx = y[i] + bsi, x[i] + bsi
        face = img[int(my - bs):int(my + bs * (1 + 2 * cs)), int(mx - bs * (1 + cs)):int(mx + bs * (1 + cs))]
        out[i] = cv2.resize(face, (224, 224))
    return out


def cut_audio(pcm16: np.ndarray, track: Track) -> np.ndarray:
    """The 16 kHz samples of the track's frames [f0/25, (f1+1)/25)."""
    a = int(round(track.frames[0] / SYNC_FPS * SYNC_SR))
    b = int(round((track.frames[-1] + 1) / SYNC_FPS * SYNC_SR))
    return pcm16[a:b]


def to_pcm16(samples: np.ndarray) -> np.ndarray:
    """float [-1,1] -> int16-valued float64 (what wavfile.read of a s16 wav gives upstream)."""
    return np.clip(np.round(np.asarray(samples, np.float64) * 32768.0), -32768, 32767)
