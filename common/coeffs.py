"""The 3DMM coefficient layouts, as named slices, and the only converters between them.

Three orders exist and must never be confused (upstream-spec sections 1.3, 2.3, 4.2, 6):

- RECON (257): Deep3DFaceRecon's per-frame vector, id | exp | tex | angle | gamma | trans,
  stored with ``transform_params`` (W, H, s, t0, t1) per frame.
- VICO_DYN (73): the vico model's input/output, angle | exp | trans | crop, crop = (s, t0, t1);
  VICO_FIXED (187): the dims vico passes through, id | gamma | tex.
- PIRENDER (73): PIRender's driving vector, exp | angle | trans | crop, used in windows of
  2*radius+1 = 27 frames centred on each frame, clamped at the ends.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np


@dataclass(frozen=True)
class Layout:
    """An ordered set of named, contiguous fields of a per-frame vector."""

    name: str
    fields: tuple[tuple[str, int], ...]

    @property
    def dim(self) -> int:
        return sum(n for _, n in self.fields)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(f for f, _ in self.fields)

    def slice(self, field: str) -> slice:
        start = 0
        for f, n in self.fields:
            if f == field:
                return slice(start, start + n)
            start += n
        raise KeyError(f"layout {self.name} has no field {field!r} (fields: {', '.join(self.names)})")

    def get(self, arr: np.ndarray, field: str) -> np.ndarray:
        """The field's columns of an (..., dim) array."""
        self.check(arr)
        return arr[..., self.slice(field)]

    def split(self, arr: np.ndarray) -> dict[str, np.ndarray]:
        self.check(arr)
        return {f: arr[..., self.slice(f)] for f in self.names}

    def join(self, parts: Mapping[str, np.ndarray]) -> np.ndarray:
        """Concatenate fields given by name into this layout's order."""
        missing = [f for f in self.names if f not in parts]
        if missing:
            raise KeyError(f"layout {self.name}: missing fields {missing}")
        for f, n in self.fields:
            if parts[f].shape[-1] != n:
                raise ValueError(f"layout {self.name}: field {f} must have {n} columns, got {parts[f].shape[-1]}")
        return np.concatenate([parts[f] for f in self.names], axis=-1)

    def check(self, arr: np.ndarray) -> None:
        if arr.shape[-1] != self.dim:
            raise ValueError(f"layout {self.name} expects {self.dim} columns, got shape {tuple(arr.shape)}")


RECON = Layout("recon257", (("id", 80), ("exp", 64), ("tex", 80), ("angle", 3), ("gamma", 27), ("trans", 3)))
VICO_DYN = Layout("vico73", (("angle", 3), ("exp", 64), ("trans", 3), ("crop", 3)))
VICO_FIXED = Layout("vico187", (("id", 80), ("gamma", 27), ("tex", 80)))
PIRENDER = Layout("pirender73", (("exp", 64), ("angle", 3), ("trans", 3), ("crop", 3)))
TRANSFORM_PARAMS = Layout("transform5", (("size", 2), ("crop", 3)))  # (W, H) | (s, t0, t1)

# Keys of the rearranged feature files (preprocess.rearrange_recon_coeffs / vico data).
DYN_KEY = "angle.exp.trans"
FIXED_KEY = "id.gamma.tex"
SEMANTIC_RADIUS = 13  # PIRender window: 2*13+1 = 27 frames


def _check_rows(*arrays: np.ndarray) -> None:
    n = {a.shape[0] for a in arrays}
    if len(n) != 1:
        raise ValueError(f"arrays disagree on the number of frames: {[a.shape for a in arrays]}")


def recon_to_vico(coeff: np.ndarray, transform_params: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N,257) coefficients + (N,5) transform params -> vico dyn (N,73) and fixed (N,187)."""
    RECON.check(coeff)
    TRANSFORM_PARAMS.check(transform_params)
    _check_rows(coeff, transform_params)
    r = RECON.split(coeff)
    dyn = VICO_DYN.join({"angle": r["angle"], "exp": r["exp"], "trans": r["trans"],
                         "crop": TRANSFORM_PARAMS.get(transform_params, "crop")})
    fixed = VICO_FIXED.join({"id": r["id"], "gamma": r["gamma"], "tex": r["tex"]})
    return dyn.astype(np.float32), fixed.astype(np.float32)


def vico_to_recon(dyn: np.ndarray, fixed: np.ndarray, width: int = 256,
                  height: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of :func:`recon_to_vico`; W and H (dropped by vico) are filled in as given."""
    VICO_DYN.check(dyn)
    VICO_FIXED.check(fixed)
    _check_rows(dyn, fixed)
    d, f = VICO_DYN.split(dyn), VICO_FIXED.split(fixed)
    coeff = RECON.join({"id": f["id"], "exp": d["exp"], "tex": f["tex"], "angle": d["angle"],
                        "gamma": f["gamma"], "trans": d["trans"]})
    size = np.broadcast_to(np.array([width, height], dtype=np.float32), (dyn.shape[0], 2))
    tp = TRANSFORM_PARAMS.join({"size": size, "crop": d["crop"]})
    return coeff.astype(np.float32), tp.astype(np.float32)


def vico_to_pirender(dyn: np.ndarray) -> np.ndarray:
    """vico order (angle|exp|trans|crop) -> PIRender order (exp|angle|trans|crop), (N,73)."""
    d = VICO_DYN.split(dyn)
    return PIRENDER.join({f: d[f] for f in PIRENDER.names})


def pirender_to_vico(c: np.ndarray) -> np.ndarray:
    p = PIRENDER.split(c)
    return VICO_DYN.join({f: p[f] for f in VICO_DYN.names})


def recon_to_pirender(coeff: np.ndarray, transform_params: np.ndarray) -> np.ndarray:
    """(N,257) + (N,5) -> PIRender per-frame driving vectors (N,73)."""
    dyn, _ = recon_to_vico(coeff, transform_params)
    return vico_to_pirender(dyn)


def window_indices(n_frames: int, radius: int = SEMANTIC_RADIUS) -> np.ndarray:
    """(N, 2r+1) frame indices i-r..i+r clamped to [0, N-1]."""
    if n_frames < 1:
        raise ValueError("need at least one frame")
    offsets = np.arange(-radius, radius + 1)
    return np.clip(np.arange(n_frames)[:, None] + offsets[None, :], 0, n_frames - 1)


def pirender_windows(c: np.ndarray, radius: int = SEMANTIC_RADIUS) -> np.ndarray:
    """Per-frame PIRender vectors (N,73) -> driving windows (N, 73, 2r+1), clamped at the ends."""
    PIRENDER.check(c)
    idx = window_indices(c.shape[0], radius)  # (N, 27)
    return np.ascontiguousarray(c[idx].transpose(0, 2, 1))  # (N, 27, 73) -> (N, 73, 27)
