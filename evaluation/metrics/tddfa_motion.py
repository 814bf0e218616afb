"""Motion metrics from 3DDFA_V2's 62 parameters (``evaluate --tddfa_motion``), as the 2023
challenge extracted its 3DMM with cleardusk/3DDFA_V2 instead of Deep3DFaceRecon.

Their own names, because 3DDFA_V2's 10 expression values (BFM 2009 expression basis of 3DDFA)
are not comparable with Deep3DFaceRecon's 64. For each frame, parameters ``p`` (62,) are the
de-normalised network output (``p = raw * std + mean``) of the 2-frame tracking mode
(:meth:`common.tddfa.backend.TddfaBackend.track`) over each whole video:

- ``exp`` = p[52:62] (10 expression coefficients);
- ``pose`` = p[0:12] (the 3x4 camera matrix [s*R | t] row-major, as regressed: scale, rotation
  and translation in the 120 x 120 crop frame);
- ``angle`` = (yaw, pitch, roll) in degrees from p[0:12] as upstream ``utils/pose.py`` calc_pose:
  rows 1-2 of s*R normalised, row 3 their cross product, yaw = asin(R20),
  pitch = atan2(R21, R22), roll = atan2(R10, R00) (divided by cos(yaw)); gimbal case |R20| > 0.998.

Per video, over the first n = min(GT, predicted) frames where both have a face:
- ``expL1_3ddfa`` = mean over frames and the 10 values of |exp_pd - exp_gt|;
- ``poseL1_3ddfa`` = the same over the 12 camera-matrix values;
- ``angleL1_3ddfa`` = the same over the 3 angles, each difference wrapped into [-180, 180).
Aggregate: L1 metrics frame-weighted over all videos (``<name>_video_mean``: mean of per-video
means); ``expFD_3ddfa`` / ``poseFD_3ddfa`` / ``angleFD_3ddfa`` = Frechet distance (float64) between
the sets of all predicted and all GT exp (10-d) / pose (12-d) / angle (3-d) vectors.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from common.tddfa.geometry import EXP, POSE, params_to_angles
from evaluation.metrics.fid import frechet_distance, mean_cov

L1_METRICS = ("expL1_3ddfa", "poseL1_3ddfa", "angleL1_3ddfa")
FD_METRICS = ("expFD_3ddfa", "poseFD_3ddfa", "angleFD_3ddfa")
METRICS = L1_METRICS + FD_METRICS
# columns of the (N, 25) feature rows: exp 10 | pose 12 | angle 3
PARTS = {"exp": slice(0, 10), "pose": slice(10, 22), "angle": slice(22, 25)}


def features(params: np.ndarray) -> np.ndarray:
    """(N, 62) parameters -> (N, 25) float64 rows exp | pose | angle (NaN rows stay NaN)."""
    p = np.asarray(params, np.float64).reshape(-1, 62)
    return np.concatenate([p[:, EXP], p[:, POSE], params_to_angles(p)], 1)


def wrap_degrees(d: np.ndarray) -> np.ndarray:
    """Angle differences wrapped into [-180, 180)."""
    return (np.asarray(d) + 180.0) % 360.0 - 180.0


def video_values(pd_params: np.ndarray, gt_params: np.ndarray) -> tuple[dict[str, Any], np.ndarray, np.ndarray]:
    """Per-video L1 values and the paired feature rows used (pd (k, 25), gt (k, 25)).

    The first min(len) frames are paired; frames where either has no face (NaN) are dropped.
    """
    n = min(len(pd_params), len(gt_params))
    fp, fg = features(pd_params[:n]), features(gt_params[:n])
    ok = np.isfinite(fp).all(1) & np.isfinite(fg).all(1)
    fp, fg = fp[ok], fg[ok]
    rec: dict[str, Any] = {"tddfa_frames": int(ok.sum()), "tddfa_frames_without_face": int(n - ok.sum())}
    for name, part in (("expL1_3ddfa", "exp"), ("poseL1_3ddfa", "pose"), ("angleL1_3ddfa", "angle")):
        d = fp[:, PARTS[part]] - fg[:, PARTS[part]]
        if part == "angle":
            d = wrap_degrees(d)
        rec[name] = float(np.abs(d).mean()) if len(fp) else None
    return rec, fp, fg


def aggregate(records: list[dict], pd_feats: list[np.ndarray], gt_feats: list[np.ndarray],
              fid_method: str = "newton_schulz") -> dict[str, Any]:
    """Results of the six metrics (plus ``<L1 metric>_video_mean``) from per-video records and rows."""
    res: dict[str, Any] = {}
    for m in L1_METRICS:
        vals = [(r[m], r["tddfa_frames"]) for r in records if r.get(m) is not None]
        tot = sum(c for _, c in vals)
        res[m] = float(sum(v * c for v, c in vals) / tot) if tot else None
        res[f"{m}_video_mean"] = float(np.mean([v for v, _ in vals])) if vals else None
    pd = np.concatenate(pd_feats) if pd_feats else np.zeros((0, 25))
    gt = np.concatenate(gt_feats) if gt_feats else np.zeros((0, 25))
    for m, part in zip(FD_METRICS, ("exp", "pose", "angle")):
        sl = PARTS[part]
        res[m] = (frechet_distance(*mean_cov(pd[:, sl]), *mean_cov(gt[:, sl]), method=fid_method)
                  if len(pd) >= 2 else None)
    return res


class TddfaMotion:
    """Per-video parameters with a 3ddfa_v2 backend's tracking, scored against the ground truth."""

    def __init__(self, backend) -> None:
        self.backend = backend

    def video_params(self, path: str | Path, n: int | None = None) -> np.ndarray:
        """(N, 62) parameters of a video's frames (NaN rows before the first face)."""
        from common.media import iter_frames

        def frames():
            seen = 0
            for batch in iter_frames(path, 32):
                for f in batch:
                    if n is not None and seen >= n:
                        return
                    seen += 1
                    yield f
        return self.backend.track(frames())[1]

    def score(self, gt_path: str | Path, pd_path: str | Path, n: int) -> tuple[dict[str, Any], np.ndarray, np.ndarray]:
        """(record values, pd rows, gt rows) of one video pair over its first ``n`` frames."""
        return video_values(self.video_params(pd_path, n), self.video_params(gt_path, n))
