"""The BFM keypoint bases of 3DDFA_V2 (``configs/bfm_noneck_v3.pkl``).

The released file is a pickled dict with ``u`` (3V, 1) mean shape, ``w_shp`` (3V, 40),
``w_exp`` (3V, 10), ``tri`` and ``keypoints`` (204,): the rows of the flat (x, y, z interleaved)
bases that hold the 68 landmark vertices. Only those rows are kept here (the sparse
reconstruction needs nothing else).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from common.io import UserError
from common.tddfa.pickles import load_numpy_pickle

N_SHAPE, N_EXP, N_KEYPOINT_ROWS = 40, 10, 204


@dataclass(frozen=True)
class KeypointBases:
    """Rows of the BFM at the 68 keypoints: u_base (204, 1), w_shp_base (204, 40), w_exp_base (204, 10)."""

    u_base: np.ndarray
    w_shp_base: np.ndarray
    w_exp_base: np.ndarray


def load_bfm(path: str | os.PathLike, shape_dim: int = N_SHAPE, exp_dim: int = N_EXP) -> KeypointBases:
    """Keypoint bases from a ``bfm_noneck_v3.pkl``-layout file (restricted unpickler)."""
    p = Path(path)
    d = load_numpy_pickle(p, {"u": -1, "w_shp": 2, "w_exp": 2, "keypoints": -1})
    u = d["u"].astype(np.float32).reshape(-1, 1)
    w_shp, w_exp = d["w_shp"].astype(np.float32), d["w_exp"].astype(np.float32)
    kp = d["keypoints"].astype(np.int64).reshape(-1)
    n = len(u)
    if w_shp.shape[0] != n or w_exp.shape[0] != n:
        raise UserError(f"{p}: u has {n} rows but w_shp {w_shp.shape[0]} and w_exp {w_exp.shape[0]}")
    if w_shp.shape[1] < shape_dim or w_exp.shape[1] < exp_dim:
        raise UserError(f"{p}: w_shp/w_exp have {w_shp.shape[1]}/{w_exp.shape[1]} columns, "
                        f"need {shape_dim}/{exp_dim}")
    if kp.size != N_KEYPOINT_ROWS or kp.min() < 0 or kp.max() >= n:
        raise UserError(f"{p}: keypoints must be {N_KEYPOINT_ROWS} row indices below {n} "
                        f"(68 points x 3 coordinates), got {kp.size} in [{kp.min()}, {kp.max()}]")
    return KeypointBases(u[kp], w_shp[kp, :shape_dim], w_exp[kp, :exp_dim])


def load_param_stats(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """(mean (62,), std (62,)) float32 from ``param_mean_std_62d_120x120.pkl`` (keys mean, std)."""
    p = Path(path)
    d = load_numpy_pickle(p, {"mean": -1, "std": -1})
    mean, std = d["mean"].astype(np.float32).reshape(-1), d["std"].astype(np.float32).reshape(-1)
    if mean.shape != (62,) or std.shape != (62,):
        raise UserError(f"{p}: mean/std must have 62 values, got {mean.size}/{std.size}")
    return mean, std
