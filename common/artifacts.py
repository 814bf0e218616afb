"""Readers and writers of the artifacts the stages pass each other (upstream-spec 1.2, 2.2-2.4, 3.5).

- ``recons/**/<name>.mat``: ``coeff`` (N, 257), ``transform_params`` (N, 5) (Deep3DFaceRecon).
- ``audio_feats/<uuid>.npy``: (N, 45) float32 (upstream wrote float64).
- ``audio_feats/feature_set.json``: which audio feature set made the .npy files.
- ``video_feats/<name>.bin``: torch.save of {'id.gamma.tex': (N,187), 'angle.exp.trans': (N,73)}
  numpy float32 arrays.
- ``audio_feats_mean_std.bin``: {'mean', 'std'} float64 tensors (D,);
  ``video_feats_mean_std.bin``: {'angle.exp.trans': {'mean','std'}, 'id.gamma.tex': {...}}
  float32 tensors.
- a vico training checkpoint records the absolute features folder it was trained on
  (``CHECKPOINT_FEATURES_KEY``), so that generation finds the same mean/std files.

The folder and file names of a features folder are the constants and ``*_path`` helpers below:
no stage spells them out itself.
"""
from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import scipy.io
import torch

from common.coeffs import DYN_KEY, FIXED_KEY, RECON, TRANSFORM_PARAMS, VICO_DYN, VICO_FIXED
from common.io import UserError, atomic_path, read_json, write_json_atomic

AUDIO_FEATS_DIR = "audio_feats"          # FEATURES/audio_feats/<uuid>.npy
VIDEO_FEATS_DIR = "video_feats"          # FEATURES/video_feats/<uuid>.<role>.bin
FEATURE_SET_FILE = "feature_set.json"    # FEATURES/audio_feats/feature_set.json
AUDIO_STATS_FILE = "audio_feats_mean_std.bin"
VIDEO_STATS_FILE = "video_feats_mean_std.bin"
STATS_FILES = (AUDIO_STATS_FILE, VIDEO_STATS_FILE)
CHECKPOINT_FEATURES_KEY = "features"     # vico checkpoints: absolute features folder of the training
LATEST = "latest"                        # vico checkpoints folder: text file naming the newest checkpoint

# numpy pickling globals needed to load torch.save'd numpy arrays with weights_only=True
_NUMPY_SAFE = [np._core.multiarray._reconstruct, np.ndarray, np.dtype,
               np.dtypes.Float32DType, np.dtypes.Float64DType]


def load_recon_mat(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """``coeff`` (N,257) float32 and ``transform_params`` (N,5) float32 of a recon .mat."""
    p = Path(path)
    try:
        m = scipy.io.loadmat(str(p))
    except Exception as e:  # scipy raises several types for corrupt files
        raise UserError(f"{p}: cannot read as a .mat file ({type(e).__name__}: {e})") from None
    for key in ("coeff", "transform_params"):
        if key not in m:
            raise UserError(f"{p}: no '{key}' array (has: {', '.join(k for k in m if not k.startswith('__'))})")
    coeff = np.asarray(m["coeff"], dtype=np.float32)
    tp = np.asarray(m["transform_params"], dtype=np.float32)
    if coeff.ndim != 2 or coeff.shape[1] != RECON.dim or coeff.shape[0] == 0:
        raise UserError(f"{p}: 'coeff' has shape {coeff.shape}, expected (N, {RECON.dim})")
    if tp.ndim != 2 or tp.shape != (coeff.shape[0], TRANSFORM_PARAMS.dim):
        raise UserError(f"{p}: 'transform_params' has shape {tp.shape}, expected ({coeff.shape[0]}, "
                        f"{TRANSFORM_PARAMS.dim})")
    if not (np.isfinite(coeff).all() and np.isfinite(tp).all()):
        raise UserError(f"{p}: contains NaN or infinite values")
    return coeff, tp


def save_recon_mat(path: str | os.PathLike, coeff: np.ndarray, transform_params: np.ndarray) -> None:
    """Write a Deep3DFaceRecon-layout .mat atomically: ``coeff`` (N,257) float32 and
    ``transform_params`` (N,5) (float32 unless given as float64, as vico.eval's upstream wrote)."""
    RECON.check(coeff)
    TRANSFORM_PARAMS.check(transform_params)
    if coeff.shape[0] != transform_params.shape[0]:
        raise ValueError(f"coeff has {coeff.shape[0]} rows, transform_params {transform_params.shape[0]}")
    tp = np.asarray(transform_params)
    tp = tp if tp.dtype == np.float64 else tp.astype(np.float32)
    with atomic_path(path) as tmp:
        scipy.io.savemat(str(tmp), {"coeff": np.asarray(coeff, np.float32), "transform_params": tp})


def recon_frame_count(path: str | os.PathLike) -> int:
    """Rows of ``coeff`` in a recon .mat (the video's frame count)."""
    p = Path(path)
    try:
        m = scipy.io.loadmat(str(p), variable_names=["coeff"])
    except Exception as e:
        raise UserError(f"{p}: cannot read as a .mat file ({type(e).__name__}: {e})") from None
    if "coeff" not in m:
        raise UserError(f"{p}: no 'coeff' array")
    c = m["coeff"]
    if c.ndim != 2 or c.shape[1] != RECON.dim or c.shape[0] == 0:
        raise UserError(f"{p}: 'coeff' has shape {c.shape}, expected (N, {RECON.dim})")
    return int(c.shape[0])


def save_video_feats(path: str | os.PathLike, dyn: np.ndarray, fixed: np.ndarray) -> None:
    """Write a ``video_feats/<name>.bin`` atomically (dyn (N,73), fixed (N,187), float32)."""
    VICO_DYN.check(dyn)
    VICO_FIXED.check(fixed)
    with atomic_path(path) as tmp:
        torch.save({FIXED_KEY: np.ascontiguousarray(fixed, dtype=np.float32),
                    DYN_KEY: np.ascontiguousarray(dyn, dtype=np.float32)}, tmp)


def load_torch_file(p: str | os.PathLike) -> Any:
    """torch.load with weights_only=True, numpy arrays allowed (the original feature formats
    pickle numpy arrays inside torch.save); UserError naming the file when it cannot be read."""
    p = Path(p)
    try:
        with torch.serialization.safe_globals(_NUMPY_SAFE):
            return torch.load(p, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise UserError(f"{p}: file not found") from None
    except Exception as e:
        why = "not a torch.save file of arrays" if isinstance(e, pickle.UnpicklingError) else " ".join(str(e).split())[:160]
        raise UserError(f"{p}: cannot read ({type(e).__name__}: {why})") from None


def load_video_feats(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read a ``video_feats/<name>.bin`` -> {'angle.exp.trans': (N,73), 'id.gamma.tex': (N,187)}."""
    p = Path(path)
    d = load_torch_file(p)
    if not isinstance(d, dict) or DYN_KEY not in d or FIXED_KEY not in d:
        raise UserError(f"{p}: expected a dict with keys '{DYN_KEY}' and '{FIXED_KEY}'")
    out = {k: np.asarray(d[k], dtype=np.float32) for k in (DYN_KEY, FIXED_KEY)}
    for key, layout in ((DYN_KEY, VICO_DYN), (FIXED_KEY, VICO_FIXED)):
        a = out[key]
        if a.ndim != 2 or a.shape[1] != layout.dim:
            raise UserError(f"{p}: '{key}' has shape {a.shape}, expected (N, {layout.dim})")
        if a.shape[0] == 0:
            raise UserError(f"{p}: '{key}' has no frames")
        if not np.isfinite(a).all():
            raise UserError(f"{p}: '{key}' contains NaN or inf")
    if out[DYN_KEY].shape[0] != out[FIXED_KEY].shape[0]:
        raise UserError(f"{p}: '{DYN_KEY}' has {out[DYN_KEY].shape[0]} frames but '{FIXED_KEY}' has "
                        f"{out[FIXED_KEY].shape[0]}")
    return out


def load_audio_feats(path: str | os.PathLike, dim: int | None = None) -> np.ndarray:
    """Read an ``audio_feats/<uuid>.npy`` -> (N, D) array."""
    p = Path(path)
    try:
        a = np.load(p, allow_pickle=False)
    except FileNotFoundError:
        raise UserError(f"{p}: file not found") from None
    except Exception as e:
        raise UserError(f"{p}: cannot read as .npy ({type(e).__name__})") from None
    if a.ndim != 2 or a.shape[0] == 0 or (dim is not None and a.shape[1] != dim):
        raise UserError(f"{p}: shape {a.shape}, expected (N, {dim if dim is not None else 'D'})")
    return a


def write_feature_set(folder: str | os.PathLike, feature_set: str, dim: int, sample_rate: int,
                      fps: int) -> None:
    """Record the audio feature set next to the features (read by vico training)."""
    write_json_atomic(Path(folder) / FEATURE_SET_FILE, {"feature_set": feature_set, "dim": int(dim),
                                                         "sample_rate": int(sample_rate), "fps": int(fps)})


def read_feature_set(folder: str | os.PathLike) -> dict | None:
    """The recorded feature set of an audio feature folder, or None when there is none."""
    p = Path(folder) / FEATURE_SET_FILE
    return read_json(p) if p.is_file() else None


def save_audio_stats(path: str | os.PathLike, mean: np.ndarray, std: np.ndarray) -> None:
    """{'mean': (D,), 'std': (D,)} float64 tensors, as upstream."""
    with atomic_path(path) as tmp:
        torch.save({"mean": torch.from_numpy(np.asarray(mean, np.float64)),
                    "std": torch.from_numpy(np.asarray(std, np.float64))}, tmp)


def save_video_stats(path: str | os.PathLike, stats: dict[str, tuple[np.ndarray, np.ndarray]]) -> None:
    """{key: {'mean': (D,), 'std': (D,)}} float32 tensors for the dyn and fixed keys."""
    with atomic_path(path) as tmp:
        torch.save({k: {"mean": torch.from_numpy(np.asarray(m, np.float32)),
                        "std": torch.from_numpy(np.asarray(s, np.float32))}
                    for k, (m, s) in stats.items()}, tmp)


# ---------------------------------------------------------------------------------------------
# The features folder: names, the mean/std readers, the folder a vico checkpoint was trained on
# ---------------------------------------------------------------------------------------------

def audio_feats_path(features: str | os.PathLike, uuid: str) -> Path:
    return Path(features) / AUDIO_FEATS_DIR / f"{uuid}.npy"


def video_feats_path(features: str | os.PathLike, name: str) -> Path:
    """``name`` is a clip name ``<uuid>.<role>`` (common.dataset.clip_name)."""
    return Path(features) / VIDEO_FEATS_DIR / f"{name}.bin"


def feature_set_path(features: str | os.PathLike) -> Path:
    return Path(features) / AUDIO_FEATS_DIR / FEATURE_SET_FILE


def has_stats(features: str | os.PathLike) -> bool:
    """Whether both mean/std files are in ``features``."""
    return all((Path(features) / f).is_file() for f in STATS_FILES)


def as_float64(x: Any, path: Path, what: str) -> np.ndarray:
    """A tensor or array-like read from ``path`` as a float64 array; UserError when not numeric."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    try:
        return np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError):
        raise UserError(f"{path}: {what} is not a numeric array") from None


def _mean_std(d: Any, path: Path, where: str) -> tuple[np.ndarray, np.ndarray]:
    if not isinstance(d, dict) or "mean" not in d or "std" not in d:
        raise UserError(f"{path}: not a mean/std file (expected {where}{{'mean', 'std'}})")
    mean, std = as_float64(d["mean"], path, "mean"), as_float64(d["std"], path, "std")
    if mean.ndim != 1 or mean.shape != std.shape:
        raise UserError(f"{path}: mean {mean.shape} and std {std.shape} must be vectors of one length")
    return mean, std


def load_audio_stats(path: str | os.PathLike, dim: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(mean, std) float64 (D,) of ``audio_feats_mean_std.bin``; ``dim`` checks D."""
    p = Path(path)
    mean, std = _mean_std(load_torch_file(p), p, "")
    if dim is not None and mean.shape != (dim,):
        raise UserError(f"{p}: statistics have shape {mean.shape}, expected ({dim},)")
    return mean, std


def load_video_stats(path: str | os.PathLike) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{'angle.exp.trans': (mean, std) (73,), 'id.gamma.tex': (mean, std) (187,)} float64 of
    ``video_feats_mean_std.bin``."""
    p = Path(path)
    d = load_torch_file(p)
    if not isinstance(d, dict) or DYN_KEY not in d:
        raise UserError(f"{p}: not a mean/std file (expected {{'{DYN_KEY}': {{'mean', 'std'}}, ...}})")
    out = {}
    for key, layout in ((DYN_KEY, VICO_DYN), (FIXED_KEY, VICO_FIXED)):
        if key not in d:
            continue
        mean, std = _mean_std(d[key], p, f"'{key}': ")
        if mean.shape != (layout.dim,):
            raise UserError(f"{p}: statistics have shape {mean.shape}, expected ({layout.dim},)")
        out[key] = (mean, std)
    return out


def checkpoint_file(path: str | os.PathLike) -> Path:
    """The checkpoint file behind a vico checkpoint path: the file itself, its ``latest`` pointer,
    or a run / checkpoints folder (its ``latest``)."""
    p = Path(path)
    if p.is_dir():
        ptr = p / LATEST if (p / LATEST).is_file() else p / "checkpoints" / LATEST
        if not ptr.is_file():
            raise UserError(f"{p}: no '{LATEST}' checkpoint pointer in this folder")
        p = ptr
    if p.name == LATEST and p.is_file() and p.stat().st_size < 4096:
        target = p.parent / p.read_text().strip()
        if not target.is_file():
            raise UserError(f"{p}: points to {target.name}, which does not exist")
        return target
    if not p.is_file():
        raise UserError(f"{p}: checkpoint not found")
    return p


def checkpoint_features(path: str | os.PathLike) -> Path | None:
    """The absolute features folder a vico checkpoint records (vico.train writes it); None for a
    checkpoint written before it was recorded, or an original ``Epoch_NNN.bin``."""
    p = checkpoint_file(path)
    try:
        # vico checkpoints hold numpy/python RNG states: not loadable with weights_only.
        ck = torch.load(p, map_location="cpu", weights_only=False)
    except Exception as e:  # noqa: BLE001 - any unreadable file is one line
        raise UserError(f"{p}: not a readable checkpoint ({type(e).__name__})") from None
    rec = ck.get(CHECKPOINT_FEATURES_KEY) if isinstance(ck, dict) else None
    return Path(rec) if isinstance(rec, str) and rec else None
