"""Read and validate the preprocess outputs the vico models consume (formats of spec 2.2-2.4).

    FEATURES/audio_feats/<uuid>.npy              (N, 45) float per video frame
    FEATURES/audio_feats/feature_set.json        {"feature_set": ..., "dim": 45, ...}
    FEATURES/video_feats/<uuid>.<role>.bin       torch.save dict: 'angle.exp.trans' (N, 73), 'id.gamma.tex' (N, 187)
    FEATURES/audio_feats_mean_std.bin            {'mean': (45,), 'std': (45,)}
    FEATURES/video_feats_mean_std.bin            {'angle.exp.trans': {'mean','std'} (73,), 'id.gamma.tex': {...} (187,)}

Every problem is a :class:`common.io.UserError` naming the file.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from common import artifacts
from common.coeffs import DYN_KEY, FIXED_KEY
from common.dataset import clip_name
from common.io import UserError

log = logging.getLogger(__name__)


def _check_2d(arr: np.ndarray, width: int, path: Path, what: str) -> None:
    if arr.ndim != 2 or arr.shape[1] != width:
        raise UserError(f"{path}: {what} has shape {arr.shape}, expected (N, {width})")
    if arr.shape[0] == 0:
        raise UserError(f"{path}: {what} has no frames")
    if not np.isfinite(arr).all():
        raise UserError(f"{path}: {what} contains NaN or inf")


@dataclass(frozen=True)
class FeatureStats:
    """Normalisation statistics (float64 vectors)."""
    audio_mean: np.ndarray
    audio_std: np.ndarray
    dyn_mean: np.ndarray
    dyn_std: np.ndarray

    @staticmethod
    def _safe(std: np.ndarray) -> np.ndarray:
        # A zero std (constant dimension) would give NaN; such a dimension normalises to 0.
        return np.where(std > 0, std, 1.0)

    def norm_audio(self, a: np.ndarray) -> np.ndarray:
        return ((a - self.audio_mean) / self._safe(self.audio_std)).astype(np.float32)

    def norm_dyn(self, d: np.ndarray) -> np.ndarray:
        return ((d - self.dyn_mean) / self._safe(self.dyn_std)).astype(np.float32)

    def denorm_dyn(self, d: np.ndarray) -> np.ndarray:
        """Normalised (T, 73) -> coefficients, float32 (as the original's torch math)."""
        return (d.astype(np.float32) * self.dyn_std.astype(np.float32) + self.dyn_mean.astype(np.float32))


def load_stats(features: Path, audio_dim: int) -> FeatureStats:
    """Read both mean/std files of a features folder (common.artifacts) and check their widths."""
    am, astd = artifacts.load_audio_stats(features / artifacts.AUDIO_STATS_FILE, audio_dim)
    vp = features / artifacts.VIDEO_STATS_FILE
    video = artifacts.load_video_stats(vp)
    if DYN_KEY not in video:
        raise UserError(f"{vp}: no '{DYN_KEY}' statistics")
    dm, dstd = video[DYN_KEY]
    return FeatureStats(am, astd, dm, dstd)


def read_feature_set(features: Path) -> dict | None:
    """The audio feature set recorded by preprocess next to the features (None when absent)."""
    d = artifacts.read_feature_set(features / artifacts.AUDIO_FEATS_DIR)
    if d is not None and not isinstance(d, dict):
        raise UserError(f"{artifacts.feature_set_path(features)}: expected a JSON object")
    return d


def check_feature_set(features: Path, audio_dim: int, feature_set: str | None = None) -> str | None:
    """Compare the audio features' recorded set and width with the model config; returns the
    recorded feature set name (None when preprocess wrote no record, which only warns)."""
    d = read_feature_set(features)
    p = artifacts.feature_set_path(features)
    if d is None:
        log.warning("%s not found: cannot check which audio feature set the features are", p)
        return None
    dim = d.get("dim")
    if dim is not None and int(dim) != audio_dim:
        raise UserError(f"{p}: audio features are {dim}-d ({d.get('feature_set')}) but the model config "
                        f"expects audio_dim {audio_dim}")
    name = d.get("feature_set")
    if feature_set is not None and name != feature_set:
        raise UserError(f"{p}: audio features are {name!r} but the model was configured/trained on {feature_set!r}")
    return name


@dataclass
class ClipFeatures:
    """One clip's normalised features (float32): audio (N, A), speaker/listener dyn (N, 73);
    raw fixed coefficients (N, 187) per role when loaded for eval."""
    uuid: str
    audio: np.ndarray
    dyn: dict[str, np.ndarray]
    dyn_raw: dict[str, np.ndarray]
    fixed: dict[str, np.ndarray]

    @property
    def n_frames(self) -> int:
        return int(self.audio.shape[0])


def load_video_feats(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(dyn (N, 73), fixed (N, 187)) float64 from a video_feats .bin."""
    if not path.is_file():
        raise UserError(f"{path}: file not found")
    d = artifacts.load_video_feats(path)
    return d[DYN_KEY].astype(np.float64), d[FIXED_KEY].astype(np.float64)


def load_clip(features: Path, uuid: str, stats: FeatureStats, audio_dim: int,
              still_roles: Sequence[str] = ()) -> ClipFeatures:
    """Load and normalise one clip (audio and both roles); UserError naming the bad file.

    A role in ``still_roles`` (filmed as one still image) may have single-frame video features:
    that frame is held for the whole clip."""
    ap = artifacts.audio_feats_path(features, uuid)
    if not ap.is_file():
        raise UserError(f"{ap}: audio features not found")
    try:
        audio = np.load(ap, allow_pickle=False)
    except (ValueError, OSError) as e:
        raise UserError(f"{ap}: cannot read ({e})") from None
    audio = artifacts.as_float64(audio, ap, "audio features")
    _check_2d(audio, audio_dim, ap, "audio features")
    n = len(audio)
    dyn, raw, fixed = {}, {}, {}
    for role in ("speaker", "listener"):
        vp = artifacts.video_feats_path(features, clip_name(uuid, role))
        if not vp.is_file():
            raise UserError(f"{vp}: video features of the {role} not found")
        d, f = load_video_feats(vp)
        if role in still_roles and len(d) == 1:
            d, f = np.repeat(d, n, axis=0), np.repeat(f, n, axis=0)
        if len(d) != n:
            raise UserError(f"{vp}: {len(d)} frames but the audio features {ap.name} have {n}")
        dyn[role], raw[role], fixed[role] = stats.norm_dyn(d), d.astype(np.float32), f.astype(np.float32)
    return ClipFeatures(uuid, stats.norm_audio(audio), dyn, raw, fixed)
