"""LipLMD: landmark distance over the 20 lip points 48..67 of paired GT/predicted frames.

Default ``lipLMD`` = the original ``compute_lmd.py``: mean absolute coordinate difference in
pixels (an L1 per coordinate, over frames x 20 x 2). Opt-in ``lipLMD_euclidean``: mean Euclidean
point distance (over frames x 20). Frames where either video has no face are left out and counted.
"""
from __future__ import annotations

import numpy as np

LIPS = slice(48, 68)


def lip_distances(lm_pd: np.ndarray, lm_gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N,68,2) x2 -> per-frame (L1 mean over 20x2, Euclidean mean over 20), each (N,) float64."""
    if lm_pd.shape != lm_gt.shape or lm_pd.ndim != 3 or lm_pd.shape[1:] != (68, 2):
        raise ValueError(f"landmarks must be equal (N,68,2), got {lm_pd.shape} and {lm_gt.shape}")
    d = np.asarray(lm_pd, np.float64)[:, LIPS] - np.asarray(lm_gt, np.float64)[:, LIPS]  # (N,20,2)
    return np.abs(d).mean(axis=(1, 2)), np.linalg.norm(d, axis=-1).mean(axis=1)


def first_face_landmarks(backend, frame: np.ndarray) -> np.ndarray | None:
    """(68,2) landmarks of the best face in an RGB frame, or None when there is none."""
    boxes = backend.detect(frame)
    if not boxes:
        return None
    return backend.landmarks(frame, boxes[0])
