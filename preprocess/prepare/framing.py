"""Which face, and the square box around it: fixed per clip by default, or following the face.

A detection is (time in seconds, list of (x0, y0, x1, y1) boxes in source pixels). The box of a
clip is square: side = K x the median face side (face side = mean of the detector box's width and
height), centred on the median face centre (moved up, see below). K = 1.8 reproduces the ViCo framing as our synthetic
clips model it (faces drawn at ViCo scale, eye-to-mouth 64 px of 256): ``--measure_k`` on them
gives 1.818; dlib's median face side there is 129 px for one identity and 155 px for the other,
142 px overall, and 256 / 142 = 1.80 (docs/your_videos.md). The frame centre sits SHIFT_UP_VICO =
0.1 face sides above the face box centre there (``--measure_k``: 0.101).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

Box = tuple[float, float, float, float]
K_VICO = 1.8
SHIFT_UP_VICO = 0.1  # ViCo's frame centre sits 0.1 face sides above the face box centre
FOLLOW_WINDOW = 15  # frames of the centred moving average of --follow (0.5 s at 30 fps)
MIN_IOU = 0.3       # a face in the next sampled frame continues the track when boxes overlap this much


def parse_face(value: str) -> str | int:
    """--face: left, right, largest, or N (the N-th face from the left, 0-based)."""
    v = str(value).strip().lower()
    if v in ("left", "right", "largest"):
        return v
    if v.isdigit():
        return int(v)
    raise ValueError(f"--face must be left, right, largest or a number, got {value!r}")


def _centre(b: Box) -> tuple[float, float]:
    return (b[0] + b[2]) / 2, (b[1] + b[3]) / 2


def _side(b: Box) -> float:
    return ((b[2] - b[0]) + (b[3] - b[1])) / 2


def _iou(a: Box, b: Box) -> float:
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _pick(boxes: list[Box], which: str | int, width: float) -> Box | None:
    """The wanted face among one frame's boxes by the rule alone (None when absent).
    ``left``/``right`` only take faces whose centre is on that half of the frame, so that a
    two-person video never gives the same face to both roles."""
    by_x = sorted(boxes, key=lambda b: _centre(b)[0])
    if which == "largest":
        return max(boxes, key=_side) if boxes else None
    if which == "left":
        cand = [b for b in by_x if _centre(b)[0] < width / 2]
        return cand[0] if cand else None
    if which == "right":
        cand = [b for b in by_x if _centre(b)[0] >= width / 2]
        return cand[-1] if cand else None
    return by_x[which] if len(by_x) > which else None


def select_track(detections: list[tuple[float, list[Box]]], which: str | int, width: float) -> list[Box | None]:
    """One box (or None) per detection: the wanted face, followed through the clip. ``largest``
    and N pick by the rule at the first frame with faces, then follow the face whose box overlaps
    the previous one most (IoU >= MIN_IOU), falling back to the rule when none does; ``left`` and
    ``right`` pick by side in every frame."""
    out: list[Box | None] = []
    prev: Box | None = None
    for _, boxes in detections:
        b = None
        if prev is not None and which not in ("left", "right") and boxes:
            best = max(boxes, key=lambda x: _iou(x, prev))
            if _iou(best, prev) >= MIN_IOU:
                b = best
        if b is None:
            b = _pick(boxes, which, width)
        out.append(b)
        if b is not None:
            prev = b
    return out


@dataclass(frozen=True)
class Framing:
    """The square crop of a clip in source pixels: ``centres`` (n, 2) per output frame (all equal
    unless following), one ``side``."""
    centres: np.ndarray
    side: float

    def box(self, i: int) -> tuple[float, float, float]:
        """(x0, y0, side) of output frame i."""
        cx, cy = self.centres[i]
        return float(cx - self.side / 2), float(cy - self.side / 2), float(self.side)

    def record(self) -> dict:
        """The clip's crop box for run.json: median box, and the centre range when following."""
        c = np.median(self.centres, axis=0)
        rec = {"x0": round(float(c[0] - self.side / 2), 1), "y0": round(float(c[1] - self.side / 2), 1),
               "side": round(float(self.side), 1)}
        if np.ptp(self.centres, axis=0).max() > 0:
            rec["centre_min"] = [round(float(v), 1) for v in self.centres.min(axis=0)]
            rec["centre_max"] = [round(float(v), 1) for v in self.centres.max(axis=0)]
        return rec


def plan_framing(times: np.ndarray, track: list[Box | None], out_times: np.ndarray, k: float = K_VICO,
                 follow: bool = False, window: int = FOLLOW_WINDOW, shift_up: float = 0.0) -> Framing:
    """The crop of every output frame from the face track sampled at ``times``.

    Fixed (default): side = k x the median face side, centre = the median face centre, moved up
    by ``shift_up`` x the median face side.
    ``follow``: the centre is interpolated linearly between sampled faces (held at the ends) at
    each output time, then smoothed by a centred moving average over ``window`` output frames
    (edges repeat the end values); the side stays fixed. Raises ValueError when no face was found.
    """
    found = [(t, b) for t, b in zip(times, track) if b is not None]
    if not found:
        raise ValueError("no face found")
    ft = np.array([t for t, _ in found])
    c = np.array([_centre(b) for _, b in found])
    face = float(np.median([_side(b) for _, b in found]))
    side = k * face
    c = c - [0.0, shift_up * face]
    n = len(out_times)
    if not follow:
        return Framing(np.repeat(np.median(c, axis=0)[None], n, axis=0), side)
    cx = np.interp(out_times, ft, c[:, 0])
    cy = np.interp(out_times, ft, c[:, 1])
    centres = np.stack([cx, cy], axis=1)
    if window > 1 and n > 1:
        from scipy.ndimage import uniform_filter1d

        centres = uniform_filter1d(centres, size=window, axis=0, mode="nearest")
    return Framing(centres, side)


def crop_square(frame: np.ndarray, x0: float, y0: float, side: float, size: int = 256) -> np.ndarray:
    """The square (x0, y0, side) of an RGB frame resized to size x size; black where the square
    leaves the frame. Area averaging when shrinking, bilinear when enlarging."""
    h, w = frame.shape[:2]
    s = max(1, int(round(side)))
    ix, iy = int(round(x0)), int(round(y0))
    canvas = np.zeros((s, s, 3), np.uint8)
    sx0, sy0, sx1, sy1 = max(ix, 0), max(iy, 0), min(ix + s, w), min(iy + s, h)
    if sx1 > sx0 and sy1 > sy0:
        canvas[sy0 - iy:sy1 - iy, sx0 - ix:sx1 - ix] = frame[sy0:sy1, sx0:sx1]
    interp = cv2.INTER_AREA if s > size else cv2.INTER_LINEAR
    return cv2.resize(canvas, (size, size), interpolation=interp)
