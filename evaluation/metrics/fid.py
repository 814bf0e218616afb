"""Frechet distances in float64 and a disk cache of ground-truth Inception features.

Two matrix square roots are available:
* ``newton_schulz`` (default): piq 0.8 ``FID.compute_metric``, which the original
  ``compute_fid.py`` calls: unbiased covariance, Newton-Schulz iterations (at most 100, stop when
  the relative error is within 1e-5 of 0), +1e-6 diagonal retry when not finite.
* ``scipy``: pytorch-fid ``calculate_frechet_distance`` (scipy ``sqrtm``, real part).
The two differ by ~1e-4 relative; results name the method in their config.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.linalg
import torch

from common.io import atomic_path

log = logging.getLogger(__name__)
METHODS = ("newton_schulz", "scipy")


@dataclass
class GaussianStats:
    """Running sufficient statistics of a feature set (float64): count, sum, sum of outer products."""

    n: int
    s1: np.ndarray  # (D,)
    s2: np.ndarray  # (D,D)

    @classmethod
    def empty(cls, dim: int) -> "GaussianStats":
        return cls(0, np.zeros(dim), np.zeros((dim, dim)))

    def add(self, feats: np.ndarray) -> None:
        f = np.asarray(feats, dtype=np.float64)
        if f.ndim != 2 or f.shape[1] != self.s1.shape[0]:
            raise ValueError(f"features must be (N,{self.s1.shape[0]}), got {f.shape}")
        self.n += f.shape[0]
        self.s1 += f.sum(0)
        self.s2 += f.T @ f

    def merge(self, other: "GaussianStats") -> None:
        self.n += other.n
        self.s1 += other.s1
        self.s2 += other.s2

    def mean_cov(self) -> tuple[np.ndarray, np.ndarray]:
        """(mu (D,), unbiased covariance (D,D))."""
        if self.n < 2:
            raise ValueError("need at least 2 feature vectors for a covariance")
        mu = self.s1 / self.n
        cov = (self.s2 - self.n * np.outer(mu, mu)) / (self.n - 1)
        return mu, cov


def mean_cov(feats: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Exact float64 mean and unbiased covariance of (N,D) features (as np.cov(rowvar=False))."""
    f = np.asarray(feats, dtype=np.float64)
    mu = f.mean(0)
    c = f - mu
    return mu, c.T @ c / (f.shape[0] - 1)


def sqrtm_newton_schulz(matrix: torch.Tensor, num_iters: int = 100) -> torch.Tensor:
    """Newton-Schulz square root of a (D,D) matrix, as piq (float64 in, float64 out)."""
    dim = matrix.shape[0]
    norm = torch.linalg.matrix_norm(matrix, ord="fro")
    y = matrix / norm
    eye = torch.eye(dim, dtype=matrix.dtype)
    z = torch.eye(dim, dtype=matrix.dtype)
    s = torch.empty_like(matrix)
    for _ in range(num_iters):
        t = 0.5 * (3.0 * eye - z.mm(y))
        y = y.mm(t)
        z = t.mm(z)
        s = y * torch.sqrt(norm)
        err = torch.linalg.matrix_norm(matrix - s.mm(s), ord="fro") / norm
        if abs(float(err)) <= 1e-5:
            break
    return s


def frechet_distance(mu1: np.ndarray, cov1: np.ndarray, mu2: np.ndarray, cov2: np.ndarray,
                     method: str = "newton_schulz", eps: float = 1e-6) -> float:
    """||mu1-mu2||^2 + tr(C1) + tr(C2) - 2 tr(sqrt(C1 C2)), float64."""
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    cov1, cov2 = np.asarray(cov1, np.float64), np.asarray(cov2, np.float64)
    diff = mu1 - mu2
    if method == "newton_schulz":
        s1, s2 = torch.from_numpy(cov1), torch.from_numpy(cov2)
        cm = sqrtm_newton_schulz(s1.mm(s2))
        if not torch.isfinite(cm).all():
            off = torch.eye(s1.shape[0], dtype=torch.float64) * eps
            cm = sqrtm_newton_schulz((s1 + off).mm(s2 + off))
        tr = float(torch.trace(cm))
    elif method == "scipy":
        cm = scipy.linalg.sqrtm(cov1.dot(cov2))
        if not np.isfinite(cm).all():
            off = np.eye(cov1.shape[0]) * eps
            cm = scipy.linalg.sqrtm((cov1 + off).dot(cov2 + off))
        if np.iscomplexobj(cm):
            if not np.allclose(np.diagonal(cm).imag, 0, atol=1e-3):
                raise ValueError(f"sqrtm has a large imaginary part {np.max(np.abs(cm.imag)):.3g}")
            cm = cm.real
        tr = float(np.trace(cm))
    else:
        raise ValueError(f"unknown Frechet method {method!r} (choose from {', '.join(METHODS)})")
    return float(diff.dot(diff) + np.trace(cov1) + np.trace(cov2) - 2 * tr)


def fid_from_features(pd_feats: np.ndarray, gt_feats: np.ndarray, method: str = "newton_schulz") -> float:
    """FID of two (N,D) feature sets (the original's argument order: predicted, ground truth)."""
    return frechet_distance(*mean_cov(pd_feats), *mean_cov(gt_feats), method=method)


def file_identity(path: str | os.PathLike) -> dict:
    """Identity of a file for caching: resolved path, size, mtime (ns)."""
    p = Path(path).resolve()
    st = p.stat()
    return {"path": str(p), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


class FeatureCache:
    """Ground-truth features on disk, one .npy per (video identity, model identity)."""

    def __init__(self, cache_dir: str | os.PathLike | None, model_key: dict) -> None:
        self.dir = Path(cache_dir) if cache_dir else None
        self.model_key = model_key

    def _path(self, video: str | os.PathLike) -> Path:
        key = json.dumps({"video": file_identity(video), "model": self.model_key}, sort_keys=True)
        return self.dir / f"{hashlib.sha1(key.encode()).hexdigest()}.npy"  # type: ignore[operator]

    def get(self, video: str | os.PathLike) -> np.ndarray | None:
        if self.dir is None:
            return None
        p = self._path(video)
        if not p.is_file():
            return None
        try:
            return np.load(p)
        except (OSError, ValueError) as e:  # a broken cache entry is recomputed
            log.warning("ignoring unreadable cache file %s: %s", p, e)
            return None

    def put(self, video: str | os.PathLike, feats: np.ndarray) -> None:
        if self.dir is None:
            return
        p = self._path(video)
        with atomic_path(p) as tmp:
            with open(tmp, "wb") as f:
                np.save(f, np.asarray(feats, dtype=np.float32))
