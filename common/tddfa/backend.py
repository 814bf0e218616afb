"""The ``3ddfa_v2`` landmark backend: FaceBoxes (or dlib) boxes, the 3DDFA_V2 roi box and
120 x 120 crop, the MobileNet's 62 parameters de-normalised, and 68 points from the BFM keypoints.

Per frame (``detect`` + ``landmarks``, as upstream ``demo.py``): box -> roi box
(:func:`geometry.roi_box_from_bbox`) -> crop -> parameters -> 68 points.

Videos (:meth:`TddfaBackend.track`, as upstream ``demo_video.py``, the 2-frame tracking mode):
the first frame with a face is fitted from its box, then refitted from the roi box of its own 68
points; every later frame is fitted from the roi box of the previous frame's points, and the
detector is consulted again only when that roi box collapses (area < 2020 px^2).
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import cv2
import numpy as np
import torch

from common.tddfa import geometry as G
from common.tddfa.bfm import KeypointBases, load_bfm, load_param_stats
from common.tddfa.faceboxes import FaceBoxesDetector, FaceBoxesNet
from common.tddfa.mobilenet import WIDEN, TddfaMobileNet
from common.tddfa.specs import ARCH_WEIGHTS
from common.io import UserError
from common.faces import single_frames

log = logging.getLogger(__name__)

Box = tuple[float, float, float, float]
BOX_SOURCES = ("faceboxes", "dlib")
ARCHS = tuple(WIDEN)
REDETECT_AREA = 2020.0  # upstream demo_video.py: re-detect when the tracked roi box is smaller


def weight_path(name: str, weights_dir: str | os.PathLike | None = None,
                explicit: str | os.PathLike | None = None) -> Path:
    """File of registry entry ``name``: ``explicit``, else under ``weights_dir``, else its default."""
    from common.weights import get_spec, resolve_weights

    if explicit:
        return resolve_weights(name, explicit)
    if weights_dir:
        return resolve_weights(name, get_spec(name).default_file(weights_dir))
    return resolve_weights(name)


@dataclass
class TddfaModels:
    """The loaded networks and tables, shared by every thread's backend."""

    regressor: TddfaMobileNet
    bfm: KeypointBases
    mean: np.ndarray
    std: np.ndarray
    detector: FaceBoxesDetector | None
    device: torch.device
    files: dict[str, str]


def load_models(arch: str = "mb1", boxes: str = "faceboxes", device: str = "cpu",
                weights_dir: str | os.PathLike | None = None, paths: dict[str, str] | None = None) -> TddfaModels:
    """Load the regressor (``arch``), BFM keypoint bases, parameter statistics and (for
    ``boxes='faceboxes'``) FaceBoxes, strictly, from the registry files."""
    from common.weights import load_pretrained

    if arch not in WIDEN:
        raise UserError(f"unknown 3DDFA_V2 arch {arch!r} (choose from {', '.join(WIDEN)})")
    if boxes not in BOX_SOURCES:
        raise UserError(f"unknown 3DDFA_V2 box source {boxes!r} (choose from {', '.join(BOX_SOURCES)})")
    paths = paths or {}
    dev = torch.device(device)
    files: dict[str, str] = {}

    def path(name: str) -> Path:
        p = weight_path(name, weights_dir, paths.get(name))
        files[name] = str(p)
        return p

    net = TddfaMobileNet(WIDEN[arch])
    load_pretrained(net, ARCH_WEIGHTS[arch], path(ARCH_WEIGHTS[arch]))
    bfm = load_bfm(path("tddfa_v2_bfm"))
    mean, std = load_param_stats(path("tddfa_v2_param_mean_std"))
    det = None
    if boxes == "faceboxes":
        fb = FaceBoxesNet()
        load_pretrained(fb, "tddfa_v2_faceboxes", path("tddfa_v2_faceboxes"))
        det = FaceBoxesDetector(fb, dev)
    return TddfaModels(net.eval().to(dev), bfm, mean, std, det, dev, files)


class TddfaBackend:
    """3DDFA_V2 behind the :class:`common.faces.FaceBackend` interface, plus parameters and tracking."""

    name = "3ddfa_v2"

    def __init__(self, arch: str = "mb1", boxes: str = "faceboxes", device: str = "cpu",
                 weights_dir: str | os.PathLike | None = None, paths: dict[str, str] | None = None,
                 _models: TddfaModels | None = None) -> None:
        self.arch, self.boxes = arch, boxes
        self.models = _models or load_models(arch, boxes, device, weights_dir, paths)
        self._dlib = None
        if boxes == "dlib":
            from common.faces import DlibBackend

            self._dlib = DlibBackend()

    def for_thread(self) -> "TddfaBackend":
        """A backend for another thread: shared networks; its own dlib detector when boxes=dlib."""
        return TddfaBackend(self.arch, self.boxes, _models=self.models)

    # -- FaceBackend interface ------------------------------------------------------------------

    def detect(self, frame: np.ndarray) -> list[Box]:
        """Face boxes of an RGB uint8 frame, best first (FaceBoxes score > 0.5, or dlib)."""
        if self._dlib is not None:
            return self._dlib.detect(frame)
        return [tuple(b[:4]) for b in self.models.detector(_check(frame))]

    def detect_batch(self, frames: np.ndarray) -> list[list[Box]]:
        return [self.detect(f) for f in frames]

    def landmarks(self, frame: np.ndarray, box: Box) -> np.ndarray:
        """(68, 2) float32 points of the face in ``box`` (roi from the box, no refinement)."""
        _, _, pts = self.fit(frame, box)
        return pts[:2].T.copy()

    # -- parameters -------------------------------------------------------------------------------

    @torch.no_grad()
    def params(self, frame: np.ndarray, roi_boxes: list[np.ndarray]) -> np.ndarray:
        """(K, 62) de-normalised parameters of the roi boxes of an RGB frame.

        Each crop is taken from the BGR image (upstream reads frames with OpenCV), resized to
        120 x 120 (bilinear) and normalised as (x - 127.5) / 128.
        """
        bgr = np.ascontiguousarray(_check(frame)[:, :, ::-1])
        crops = [cv2.resize(G.crop(bgr, r), (G.SIZE, G.SIZE), interpolation=cv2.INTER_LINEAR) for r in roi_boxes]
        x = torch.from_numpy(np.stack(crops).astype(np.float32)).permute(0, 3, 1, 2)
        x = (x - 127.5) / 128.0
        raw = self.models.regressor(x.to(self.models.device)).cpu().numpy()
        return G.denormalise(raw, self.models.mean, self.models.std)

    def points(self, param: np.ndarray, roi_box: np.ndarray) -> np.ndarray:
        b = self.models.bfm
        return G.reconstruct(param, roi_box, b.u_base, b.w_shp_base, b.w_exp_base)

    def fit(self, frame: np.ndarray, box_or_points: Box | np.ndarray,
            policy: str = "box") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(param (62,), roi box (4,), points (3, 68)) from a face box or (policy='landmark')
        the previous (2+, 68) points."""
        roi = G.roi_box_from_bbox(box_or_points) if policy == "box" else G.roi_box_from_landmarks(box_or_points)
        param = self.params(frame, [roi])[0]
        return param, roi, self.points(param, roi)

    def track(self, frames: Iterable[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The 2-frame tracking mode over a video: (landmarks (N, 68, 2), params (N, 62), found (N,)).

        Before the first face: -1 landmark rows and NaN parameter rows (found False).
        """
        lms, prm, found = [], [], []
        prev: np.ndarray | None = None
        for frame in single_frames(frames):
            if prev is None:
                boxes = self.detect(frame)
                if not boxes:
                    lms.append(np.full((68, 2), -1.0, np.float32))
                    prm.append(np.full(G.N_PARAMS, np.nan, np.float32))
                    found.append(False)
                    continue
                _, _, pts = self.fit(frame, boxes[0])
                param, roi, pts = self.fit(frame, pts, "landmark")  # refine from its own points
            else:
                param, roi, pts = self.fit(frame, prev, "landmark")
                if (roi[2] - roi[0]) * (roi[3] - roi[1]) < REDETECT_AREA:
                    boxes = self.detect(frame)
                    if boxes:
                        param, roi, pts = self.fit(frame, boxes[0])
            prev = pts
            lms.append(pts[:2].T.astype(np.float32))
            prm.append(param)
            found.append(True)
        if not lms:
            return np.zeros((0, 68, 2), np.float32), np.zeros((0, G.N_PARAMS), np.float32), np.zeros(0, bool)
        return np.stack(lms), np.stack(prm).astype(np.float32), np.array(found, bool)


def _check(frame: np.ndarray) -> np.ndarray:
    if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
        raise ValueError(f"expected an RGB uint8 (H, W, 3) frame, got {frame.dtype} {frame.shape}")
    return frame
