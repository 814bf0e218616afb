"""ExpL1, PoseL1, ExpFD, PoseFD from Deep3DFaceRecon coefficient files (``<uuid>.<role>.mat``).

ExpL1: mean |exp_pd - exp_gt| over frames x 64 expression dims. PoseL1: the same over the 6
pose dims (angle 3 + translation 3). ExpFD / PoseFD: Frechet distance between the sets of all
predicted and all GT expression (64-d) / pose (6-d) vectors, float64, as the 2023 challenge
scored (the README names them; no upstream code exists).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from common.artifacts import load_recon_mat
from common.coeffs import RECON
from common.io import UserError


def load_coeff(path: str | os.PathLike) -> np.ndarray:
    """``coeff`` (N,257) of a reconstruction .mat file, float64; UserError naming the file."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"{p}: coefficient file not found")
    return load_recon_mat(p)[0].astype(np.float64)


def exp_pose(coeff: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N,257) -> (exp (N,64), pose (N,6) = angle | trans)."""
    return RECON.get(coeff, "exp"), np.concatenate([RECON.get(coeff, "angle"), RECON.get(coeff, "trans")], 1)


def coeff_l1(pd: np.ndarray, gt: np.ndarray) -> dict[str, np.ndarray]:
    """Per-frame L1 means: {'expL1': (N,), 'poseL1': (N,)} for (N,257) coefficient arrays."""
    if pd.shape != gt.shape:
        raise ValueError(f"coefficient arrays differ in shape: {pd.shape} vs {gt.shape}")
    (pe, pp), (ge, gp) = exp_pose(pd), exp_pose(gt)
    return {"expL1": np.abs(pe - ge).mean(1), "poseL1": np.abs(pp - gp).mean(1)}
