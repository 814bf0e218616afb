"""The upstream keypoint .txt format (spec 1.1): the flattened (N*68*2) landmarks, x then y in
image pixels with y down, one float per line as ``np.savetxt`` writes it (``%.18e``); a frame
with no face (and none before it) has 68 rows of -1."""
from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np

from common.io import UserError, atomic_path

N_POINTS = 68


def save_keypoints(path: str | os.PathLike, landmarks: np.ndarray) -> None:
    """Write (N,68,2) landmarks atomically in the upstream format."""
    lm = np.asarray(landmarks)
    if lm.ndim != 3 or lm.shape[1:] != (N_POINTS, 2):
        raise ValueError(f"expected (N,68,2) landmarks, got {lm.shape}")
    with atomic_path(path) as tmp:
        np.savetxt(tmp, lm.reshape(-1))


def load_keypoints(path: str | os.PathLike) -> np.ndarray:
    """Read a keypoint file as (N,68,2) float64; UserError naming the file when malformed."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"{p}: keypoint file not found (run extract_kp_videos first)")
    try:
        with warnings.catch_warnings():  # an empty file is reported below, not as a warning
            warnings.simplefilter("ignore", UserWarning)
            flat = np.loadtxt(p, dtype=np.float64, ndmin=1)
    except ValueError as e:
        raise UserError(f"{p}: not a keypoint file ({' '.join(str(e).split())[:120]})") from None
    if flat.ndim != 1:
        raise UserError(f"{p}: not a keypoint file (expected one number per line, got {flat.shape[1]} columns)")
    if flat.size == 0:
        raise UserError(f"{p}: keypoint file is empty")
    if flat.size % (N_POINTS * 2):
        raise UserError(f"{p}: {flat.size} numbers is not a whole number of 68x2 landmark frames")
    if not np.isfinite(flat).all():
        raise UserError(f"{p}: keypoint file contains NaN or infinite values")
    return flat.reshape(-1, N_POINTS, 2)
