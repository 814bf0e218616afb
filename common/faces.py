"""Face detection and 68-point landmarks behind one interface, and per-video tracking.

Backends:
- ``dlib`` (default, offline): dlib's HOG frontal face detector and the 68-point shape predictor
  shipped by the ``face-recognition-models`` package. Its landmark indices are iBUG's, the
  same as FAN's.
- ``fan`` (optional): the original baseline's face_alignment FAN 2D (``pip install
  face-alignment``; it downloads its weights on first use).
- ``3ddfa_v2``: cleardusk/3DDFA_V2 (FaceBoxes or dlib boxes, MobileNet 62 parameters, BFM
  keypoints), the 2023 challenge's landmarks; see :mod:`common.tddfa.backend`.

Landmarks are float32 (68, 2) pixel coordinates, x then y, y pointing down.
"""
from __future__ import annotations

import importlib.util
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Protocol

import numpy as np

from common.io import UserError

log = logging.getLogger(__name__)

Box = tuple[float, float, float, float]  # x0, y0, x1, y1
N_LANDMARKS = 68
LIPS = slice(48, 68)  # outer and inner lip points (0-based)


class FaceBackend(Protocol):
    name: str

    def detect(self, frame: np.ndarray) -> list[Box]:
        """Faces in an RGB uint8 (H, W, 3) frame, best first."""

    def landmarks(self, frame: np.ndarray, box: Box) -> np.ndarray:
        """(68, 2) float32 landmarks of the face in ``box``."""

    def detect_batch(self, frames: np.ndarray) -> list[list[Box]]:
        """Faces in each frame of a (B, H, W, 3) batch."""


def _package_file(package: str, *parts: str) -> Path:
    """A data file inside an installed package, found without importing it (face_recognition_models
    imports pkg_resources at import time, which may be missing)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise UserError(f"package {package} is not installed (pip install -r requirements.txt)")
    return Path(list(spec.submodule_search_locations)[0]).joinpath(*parts)


def dlib_predictor_path() -> Path:
    p = _package_file("face_recognition_models", "models", "shape_predictor_68_face_landmarks.dat")
    if not p.is_file():
        raise UserError(f"{p}: dlib 68-point model missing (reinstall face-recognition-models)")
    return p


class DlibBackend:
    """dlib HOG detector (``upsample`` times upsampled) + 68-point shape predictor."""

    name = "dlib"

    def __init__(self, upsample: int = 1, predictor_path: str | Path | None = None, _predictor=None,
                 landmarks: bool = True):
        import dlib

        self.upsample = upsample
        self._detector = dlib.get_frontal_face_detector()
        # landmarks=False: a detector only (skips loading the 68-point model, about 0.3-2 s)
        self._predictor = _predictor or (dlib.shape_predictor(str(predictor_path or dlib_predictor_path()))
                                         if landmarks else None)
        self._rect = dlib.rectangle

    def for_thread(self) -> "DlibBackend":
        """A backend for another thread: its own detector (dlib's HOG scanner keeps scratch state,
        so sharing one across threads changes results) and the shared, read-only 68-point model
        (loading it costs about 0.3 s)."""
        return DlibBackend(self.upsample, _predictor=self._predictor)

    def detect(self, frame: np.ndarray) -> list[Box]:
        frame = _check_frame(frame)
        rects, scores, _ = self._detector.run(frame, self.upsample, 0.0)
        order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
        return [(float(rects[i].left()), float(rects[i].top()), float(rects[i].right()),
                 float(rects[i].bottom())) for i in order]

    def detect_batch(self, frames: np.ndarray) -> list[list[Box]]:
        return [self.detect(f) for f in frames]

    def landmarks(self, frame: np.ndarray, box: Box) -> np.ndarray:
        frame = _check_frame(frame)
        r = self._rect(*(int(round(v)) for v in box))
        shape = self._predictor(frame, r)
        return np.array([(shape.part(i).x, shape.part(i).y) for i in range(N_LANDMARKS)], dtype=np.float32)


class FanBackend:
    """face_alignment's FAN 2D with its default S3FD detector (the original baseline's choice)."""

    name = "fan"

    def __init__(self, device: str = "cpu", flip_input: bool = False):
        try:
            import face_alignment
        except ImportError:
            raise UserError("landmark backend 'fan' needs the optional package face-alignment "
                            "(pip install face-alignment; it downloads FAN weights on first use); "
                            "or use --backend dlib") from None
        lt = getattr(face_alignment.LandmarksType, "TWO_D", None) or getattr(face_alignment.LandmarksType, "_2D")
        self._fa = face_alignment.FaceAlignment(lt, device=str(device), flip_input=flip_input)

    def detect(self, frame: np.ndarray) -> list[Box]:
        frame = _check_frame(frame)
        dets = self._fa.face_detector.detect_from_image(frame.copy()) or []
        return [tuple(float(v) for v in d[:4]) for d in dets]

    def for_thread(self) -> "FanBackend":
        return self  # torch inference modules may be shared by threads

    def detect_batch(self, frames: np.ndarray) -> list[list[Box]]:
        import torch

        batch = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float()
        dets = self._fa.face_detector.detect_from_batch(batch)
        return [[tuple(float(v) for v in d[:4]) for d in per] for per in dets]

    def landmarks(self, frame: np.ndarray, box: Box) -> np.ndarray:
        frame = _check_frame(frame)
        out = self._fa.get_landmarks_from_image(frame, detected_faces=[list(box)])
        return np.asarray(out[0], dtype=np.float32)[:, :2]


def _check_frame(frame: np.ndarray) -> np.ndarray:
    if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
        raise ValueError(f"expected an RGB uint8 (H, W, 3) frame, got {frame.dtype} {frame.shape}")
    return np.ascontiguousarray(frame)


BACKENDS = ("dlib", "fan", "3ddfa_v2")


def get_backend(name: str = "dlib", device: str = "cpu", **options) -> FaceBackend:
    """A landmark backend by name; ``options`` go to the 3ddfa_v2 backend (arch, boxes, weights_dir)."""
    if name == "dlib":
        return DlibBackend()
    if name == "fan":
        return FanBackend(device=device)
    if name == "3ddfa_v2":
        from common.tddfa.backend import TddfaBackend

        return TddfaBackend(device=device, **options)
    raise UserError(f"unknown landmark backend {name!r} (choose from {', '.join(BACKENDS)})")


def single_frames(frames: Iterable[np.ndarray]) -> Iterable[np.ndarray]:
    """(H, W, 3) frames from a stream of frames or (B, H, W, 3) batches."""
    for f in frames:
        if f.ndim == 4:
            yield from f
        else:
            yield f


def iou(a: Box, b: Box) -> float:
    """Intersection over union of two boxes (0 when they do not overlap)."""
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    if w <= 0 or h <= 0:
        return 0.0
    inter = w * h
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def _area(b: Box) -> float:
    return max(0.0, b[2] - b[0]) * max(0.0, b[3] - b[1])


class FaceTracker:
    """Follows one face through a clip, never switching between people.

    The face is the largest detection of the first frame with a face. In later frames it is the
    detection overlapping the last known box most (IoU >= ``min_iou``), or, when none overlaps
    enough (fast motion), the one whose centre lies within ``max_shift`` box sides of the last
    centre. Otherwise the frame counts as without the face: a second person is never taken for it.
    """

    def __init__(self, min_iou: float = 0.3, max_shift: float = 0.5):
        self.min_iou, self.max_shift = min_iou, max_shift
        self.box: Box | None = None
        self.first: Box | None = None  # the box chosen at the start

    def choose(self, boxes: list[Box]) -> Box | None:
        """The tracked face among this frame's detections, or None."""
        if not boxes:
            return None
        if self.box is None:
            best = max(boxes, key=_area)
            self.first = best
        else:
            best = max(boxes, key=lambda b: iou(b, self.box))
            if iou(best, self.box) < self.min_iou:
                side = max(self.box[2] - self.box[0], self.box[3] - self.box[1], 1.0)
                c0 = np.array([(self.box[0] + self.box[2]) / 2, (self.box[1] + self.box[3]) / 2])
                dist = [float(np.hypot((b[0] + b[2]) / 2 - c0[0], (b[1] + b[3]) / 2 - c0[1])) for b in boxes]
                k = int(np.argmin(dist))
                if dist[k] > self.max_shift * side:
                    return None
                best = boxes[k]
        self.box = best
        return best


@dataclass
class Track:
    """What ``track_face`` saw in each of N frames."""

    landmarks: np.ndarray  # (N, 68, 2) float32; carried over where the face is missing, -1 before it
    found: np.ndarray  # (N,) bool: the tracked face was found (not carried over)
    n_faces: np.ndarray  # (N,) int: faces detected in the frame (of the last detection run)
    first_box: Box | None  # the face chosen at the start (the largest)

    def summary(self) -> dict:
        """JSON-friendly facts for run.json: frames without the face, frames with several faces."""
        n = len(self.found)
        return {"frames": n, "no_face_frames": ranges(np.flatnonzero(~self.found)),
                "n_no_face": int(n - self.found.sum()),
                "multi_face_frames": ranges(np.flatnonzero(self.n_faces > 1)),
                "n_multi_face": int((self.n_faces > 1).sum()),
                "face": None if self.first_box is None else {
                    "rule": "largest face at the start, then followed by overlap",
                    "first_box": [round(v, 1) for v in self.first_box]}}


def ranges(idx: np.ndarray) -> str:
    """Sorted frame indices as '0-3,7,9-10' (compact for run.json)."""
    out: list[str] = []
    idx = [int(i) for i in idx]
    start = prev = None
    for i in idx + [None]:
        if start is not None and (i is None or i != prev + 1):
            out.append(f"{start}" if start == prev else f"{start}-{prev}")
            start = None
        if i is not None and start is None:
            start = i
        prev = i
    return ",".join(out)


def track_face(frames: Iterable[np.ndarray], backend: FaceBackend, detect_every: int = 1,
               tracker: FaceTracker | None = None) -> Track:
    """Landmarks of one face followed through the frames (see FaceTracker); a frame without it
    gets the previous frame's landmarks, or -1 rows before the face first appears (as upstream).

    ``frames`` yields (H, W, 3) frames or (B, H, W, 3) batches (as ``media.iter_frames``).
    ``detect_every`` > 1 runs the detector on every n-th frame only and reuses its box in
    between (landmarks are still fitted on every frame).
    """
    if detect_every < 1:
        raise ValueError("detect_every must be >= 1")
    tracker = tracker or FaceTracker()
    out: list[np.ndarray] = []
    found: list[bool] = []
    n_faces: list[int] = []
    prev: np.ndarray | None = None
    box: Box | None = None
    n_det = 0
    for i, frame in enumerate(single_frames(frames)):
        if box is None or i % detect_every == 0:
            boxes = backend.detect(frame)
            n_det = len(boxes)
            box = tracker.choose(boxes)
        n_faces.append(n_det)
        if box is None:
            lm = prev if prev is not None else np.full((N_LANDMARKS, 2), -1.0, np.float32)
            found.append(False)
        else:
            lm = backend.landmarks(frame, box)
            prev = lm
            found.append(True)
        out.append(lm)
    lms = np.stack(out).astype(np.float32) if out else np.zeros((0, N_LANDMARKS, 2), np.float32)
    return Track(lms, np.array(found, dtype=bool), np.array(n_faces, dtype=np.int64), tracker.first)


def track_landmarks(frames: Iterable[np.ndarray], backend: FaceBackend, detect_every: int = 1,
                    return_found: bool = False) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """(N, 68, 2) landmarks of one face followed through the frames (``track_face``).
    ``return_found`` adds an (N,) bool mask of the frames where the face was actually found."""
    t = track_face(frames, backend, detect_every)
    return (t.landmarks, t.found) if return_found else t.landmarks


def mouth_opening(lm: np.ndarray) -> np.ndarray:
    """Inner-lip gap (points 62-66) over the inter-ocular distance (36-45), per frame: (N,)."""
    lm = np.asarray(lm, dtype=np.float64).reshape(-1, N_LANDMARKS, 2)
    gap = np.linalg.norm(lm[:, 66] - lm[:, 62], axis=-1)
    iod = np.linalg.norm(lm[:, 45] - lm[:, 36], axis=-1)
    return gap / np.maximum(iod, 1e-6)
