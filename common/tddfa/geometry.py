"""3DDFA_V2 geometry: roi boxes, the crop, parameter de-normalisation, camera matrix -> Euler
angles, and the 68-point reconstruction from the BFM keypoint bases.

Conventions (those of cleardusk/3DDFA_V2):
- boxes and roi boxes are (x0, y0, x1, y1) image pixels, y down;
- the 62 parameters are ``P (3x4 camera matrix, row-major) | alpha_shp (40) | alpha_exp (10)``;
- points are (3, K): x, y in image pixels (y down), z a relative depth (min 0).
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

N_PARAMS = 62
POSE = slice(0, 12)     # 3x4 camera matrix P = [s*R | t3d], row-major
SHAPE = slice(12, 52)   # 40 BFM shape coefficients
EXP = slice(52, 62)     # 10 BFM expression coefficients
SIZE = 120              # the network's input side


def roi_box_from_bbox(bbox: Sequence[float]) -> np.ndarray:
    """Square roi box of a face box, as 3DDFA_V2's ``parse_roi_box_from_bbox``.

    side = int(1.58 * mean(w, h)) (truncated), centre = box centre moved down by 0.14 * mean(w, h).
    """
    left, top, right, bottom = (float(v) for v in bbox[:4])
    old = (right - left + bottom - top) / 2.0
    cx = right - (right - left) / 2.0
    cy = bottom - (bottom - top) / 2.0 + old * 0.14
    side = int(old * 1.58)
    x0, y0 = cx - side / 2.0, cy - side / 2.0
    return np.array([x0, y0, x0 + side, y0 + side], dtype=np.float64)


def roi_box_from_landmarks(pts: np.ndarray) -> np.ndarray:
    """Square roi box of (2 or 3, K) points, as ``parse_roi_box_from_landmark``: the side is the
    diagonal of the points' enclosing square (sqrt(2) * its side), centred on it."""
    x, y = np.asarray(pts[0], np.float64), np.asarray(pts[1], np.float64)
    x0, y0, x1, y1 = x.min(), y.min(), x.max(), y.max()
    cx, cy = (x0 + x1) / 2.0, (y0 + y1) / 2.0
    radius = max(x1 - x0, y1 - y0) / 2.0
    side = math.sqrt(2.0) * 2.0 * radius
    return np.array([cx - side / 2.0, cy - side / 2.0, cx + side / 2.0, cy + side / 2.0], dtype=np.float64)


def crop(img: np.ndarray, roi_box: Sequence[float]) -> np.ndarray:
    """The roi box cut from ``img`` (H, W[, C]) uint8; parts outside the image are 0.

    Corners are rounded with Python's ``round`` (half to even), as upstream ``crop_img``.
    """
    h, w = img.shape[:2]
    sx, sy, ex, ey = (int(round(float(v))) for v in roi_box[:4])
    out = np.zeros((ey - sy, ex - sx) + img.shape[2:], dtype=np.uint8)
    ix0, iy0, ix1, iy1 = max(sx, 0), max(sy, 0), min(ex, w), min(ey, h)
    if ix1 > ix0 and iy1 > iy0:
        out[iy0 - sy:iy1 - sy, ix0 - sx:ix1 - sx] = img[iy0:iy1, ix0:ix1]
    return out


def denormalise(raw: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """Network output (..., 62) -> parameters: raw * std + mean (float32)."""
    return (np.asarray(raw, np.float32) * np.asarray(std, np.float32).reshape(-1)
            + np.asarray(mean, np.float32).reshape(-1)).astype(np.float32)


def split_params(param: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(62,) -> R (3, 3) (scaled rotation, first 3 columns of P), offset (3, 1), alpha_shp (40, 1),
    alpha_exp (10, 1)."""
    param = np.asarray(param).reshape(-1)
    P = param[POSE].reshape(3, 4)
    return P[:, :3], P[:, 3:4], param[SHAPE].reshape(-1, 1), param[EXP].reshape(-1, 1)


def to_image(pts3d: np.ndarray, roi_box: Sequence[float], size: int = SIZE) -> np.ndarray:
    """Points in the size x size crop's model frame (y up, 1-based) -> image pixels, as upstream
    ``similar_transform``: x-1, z-1, y flipped, scaled by the roi box side / size and shifted to
    its corner; z scaled by the mean scale and shifted to a minimum of 0."""
    p = np.array(pts3d, dtype=np.float64, copy=True)
    p[0] -= 1.0
    p[2] -= 1.0
    p[1] = size - p[1]
    sx, sy, ex, ey = (float(v) for v in roi_box[:4])
    kx, ky = (ex - sx) / size, (ey - sy) / size
    p[0] = p[0] * kx + sx
    p[1] = p[1] * ky + sy
    p[2] *= (kx + ky) / 2.0
    p[2] -= p[2].min()
    return p.astype(np.float32)


def reconstruct(param: np.ndarray, roi_box: Sequence[float], u_base: np.ndarray, w_shp_base: np.ndarray,
                w_exp_base: np.ndarray, size: int = SIZE) -> np.ndarray:
    """(3, K) points of one face: R @ (u + W_shp a_shp + W_exp a_exp) reshaped (3, K) column-major
    (the flat bases interleave x, y, z per point) + offset, then :func:`to_image`."""
    R, offset, a_shp, a_exp = split_params(np.asarray(param, np.float64))
    flat = (np.asarray(u_base, np.float64).reshape(-1, 1) + np.asarray(w_shp_base, np.float64) @ a_shp
            + np.asarray(w_exp_base, np.float64) @ a_exp)
    pts = R @ flat.reshape(3, -1, order="F") + offset
    return to_image(pts, roi_box, size)


def camera_to_rotation(P: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(..., 3, 4) camera matrices -> scale (...,), rotation (..., 3, 3), t3d (..., 3), as upstream
    ``P2sRt``: rows 1 and 2 normalised, row 3 their cross product, s the mean of the two norms."""
    P = np.asarray(P, np.float64)
    n1 = np.linalg.norm(P[..., 0, :3], axis=-1)
    n2 = np.linalg.norm(P[..., 1, :3], axis=-1)
    r1 = P[..., 0, :3] / n1[..., None]
    r2 = P[..., 1, :3] / n2[..., None]
    R = np.stack([r1, r2, np.cross(r1, r2)], axis=-2)
    return (n1 + n2) / 2.0, R, P[..., :, 3]


def rotation_to_angles(R: np.ndarray) -> np.ndarray:
    """(..., 3, 3) -> (..., 3) yaw, pitch, roll in degrees, as upstream ``matrix2angle`` +
    ``calc_pose``: yaw = asin(R20), pitch = atan2(R21/cos yaw, R22/cos yaw),
    roll = atan2(R10/cos yaw, R00/cos yaw); |R20| > 0.998 is the gimbal case (yaw = +-90,
    roll = 0, pitch = atan2(-+R01, -+R02))."""
    R = np.asarray(R, np.float64)
    r20 = R[..., 2, 0]
    yaw = np.arcsin(np.clip(r20, -1.0, 1.0))
    c = np.cos(yaw)
    c = np.where(np.abs(c) < 1e-12, 1.0, c)
    pitch = np.arctan2(R[..., 2, 1] / c, R[..., 2, 2] / c)
    roll = np.arctan2(R[..., 1, 0] / c, R[..., 0, 0] / c)
    hi, lo = r20 > 0.998, r20 < -0.998
    yaw = np.where(hi, np.pi / 2, np.where(lo, -np.pi / 2, yaw))
    pitch = np.where(hi, np.arctan2(-R[..., 0, 1], -R[..., 0, 2]),
                     np.where(lo, np.arctan2(R[..., 0, 1], R[..., 0, 2]), pitch))
    roll = np.where(hi | lo, 0.0, roll)
    return np.degrees(np.stack([yaw, pitch, roll], axis=-1))


def params_to_angles(params: np.ndarray) -> np.ndarray:
    """(..., 62) parameters -> (..., 3) yaw, pitch, roll in degrees (upstream ``calc_pose``)."""
    P = np.asarray(params, np.float64)[..., POSE].reshape(*np.shape(params)[:-1], 3, 4)
    return rotation_to_angles(camera_to_rotation(P)[1])
