"""CSIM: cosine similarity of ArcFace iresnet100 features of paired GT/predicted frames.

Default (``csim``) = the original ``compute_csim.py``: the WHOLE frame, ``cv2.resize`` to 112x112
(bilinear), RGB, (x/255-0.5)/0.5, raw BatchNorm1d features, mean of paired cosine similarities.
Opt-in ``csim_aligned``: the face aligned with a 5-point similarity transform to the standard
ArcFace 112x112 template (points from 68 landmarks), as ArcFace was trained.
"""
from __future__ import annotations

import cv2
import numpy as np
import torch
import torch.nn.functional as F

# insightface arcface_dst: left eye, right eye, nose tip, left and right mouth corners (112x112).
ARCFACE_TEMPLATE = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366],
                             [41.5493, 92.3655], [70.7299, 92.2041]], dtype=np.float64)


def normalise(faces: np.ndarray) -> torch.Tensor:
    """(B,112,112,3) uint8 RGB -> (B,3,112,112) float32 (x/255-0.5)/0.5."""
    t = torch.from_numpy(np.ascontiguousarray(faces)).permute(0, 3, 1, 2).float()
    return t.div_(255).sub_(0.5).div_(0.5)


def whole_frame_input(frames: np.ndarray) -> torch.Tensor:
    """(B,H,W,3) uint8 RGB -> (B,3,112,112): the original's whole-frame bilinear resize."""
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"expected (B,H,W,3) frames, got {frames.shape}")
    small = np.stack([cv2.resize(f, (112, 112), interpolation=cv2.INTER_LINEAR) for f in frames])
    return normalise(small)


def five_points(lm68: np.ndarray) -> np.ndarray:
    """(68,2) iBUG landmarks -> (5,2): eye centres, nose tip, mouth corners."""
    lm = np.asarray(lm68, dtype=np.float64)
    return np.stack([lm[36:42].mean(0), lm[42:48].mean(0), lm[30], lm[48], lm[54]])


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """(2,3) least-squares similarity (Umeyama) mapping src points onto dst points."""
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s, d = src - mu_s, dst - mu_d
    cov = d.T @ s / len(src)
    u, sig, vt = np.linalg.svd(cov)
    e = np.eye(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        e[1, 1] = -1
    r = u @ e @ vt
    scale = np.trace(np.diag(sig) @ e) / s.var(0).sum()
    t = mu_d - scale * r @ mu_s
    return np.hstack([scale * r, t[:, None]])


def aligned_face(frame: np.ndarray, lm68: np.ndarray) -> np.ndarray:
    """(H,W,3) uint8 frame + (68,2) landmarks -> (112,112,3) aligned face crop."""
    m = similarity_transform(five_points(lm68), ARCFACE_TEMPLATE)
    return cv2.warpAffine(frame, m, (112, 112), flags=cv2.INTER_LINEAR, borderValue=0)


def paired_cosine(gt_feats: torch.Tensor, pd_feats: torch.Tensor) -> np.ndarray:
    """(B,512) x2 -> (B,) float64 cosine similarity of each pair."""
    return F.cosine_similarity(gt_feats, pd_feats).double().numpy()
