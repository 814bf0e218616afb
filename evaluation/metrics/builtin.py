"""The built-in metrics, declared for the registry (order = the order of results.json keys).

Heavy modules (torch, networks) are imported inside the update functions, so that
``evaluation.score`` can read the declarations without loading torch.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from evaluation.metrics.registry import Metric, register

F = frozenset
_UNSET = object()


# -- image metrics (per frame) ------------------------------------------------------------------

def _psnr(b) -> list[float]:
    from evaluation.metrics.psnr_ssim import psnr
    return psnr(b.pd_t, b.gt_t).tolist()


def _ssim(b) -> list[float]:
    from evaluation.metrics.psnr_ssim import ssim
    return ssim(b.pd_t, b.gt_t).tolist()


def _cpbd(b) -> list[float]:
    import cv2
    from evaluation.metrics.cpbd import cpbd
    return [cpbd(cv2.cvtColor(f, cv2.COLOR_RGB2GRAY)) for f in b.pd]


def _csim(b) -> list[float]:
    from evaluation.metrics import csim as c
    net, dev = b.ev.nets["arcface_iresnet100"], b.ev.device
    gf = net(c.whole_frame_input(b.gt).to(dev)).cpu()
    pf = net(c.whole_frame_input(b.pd).to(dev)).cpu()
    return c.paired_cosine(gf, pf).tolist()


def _csim_aligned(b) -> list[float]:
    from evaluation.metrics import csim as c
    if not b.face_pairs:
        return []
    net, dev = b.ev.nets["arcface_iresnet100"], b.ev.device
    gf = net(c.normalise(np.stack([c.aligned_face(g, lg) for g, _, lg, _ in b.face_pairs])).to(dev)).cpu()
    pf = net(c.normalise(np.stack([c.aligned_face(p, lp) for _, p, _, lp in b.face_pairs])).to(dev)).cpu()
    return c.paired_cosine(gf, pf).tolist()


def _lip(which: int):
    def update(b) -> list[float]:
        from evaluation.metrics.lmd import lip_distances
        return [float(lip_distances(lp[None], lg[None])[which][0]) for _, _, lg, lp in b.face_pairs]
    return update


# -- FID (set statistics of Inception features) --------------------------------------------------

@dataclass
class FidState:
    """Inception pool3 sums of predicted and GT frames; GT features may come from the cache."""

    pd: Any
    gt: Any
    gt_feats: list = field(default_factory=list)
    gt_cached: Any = _UNSET


def _fid_new() -> FidState:
    from evaluation.metrics.fid import GaussianStats
    return FidState(GaussianStats.empty(2048), GaussianStats.empty(2048))


def _inception(ev, frames: np.ndarray) -> np.ndarray:
    from evaluation.metrics.psnr_ssim import to_nchw
    return ev.nets["fid_inception_v3"](to_nchw(frames).to(ev.device)).cpu().numpy()


def _fid_update(st: FidState, b) -> None:
    ev, clip = b.ev, b.clip
    if st.gt_cached is _UNSET:
        got = ev.fid_cache.get(clip.gt_path) if ev.fid_cache is not None else None
        st.gt_cached = None if got is not None and len(got) < clip.n else got
    st.pd.add(_inception(ev, b.pd))
    if st.gt_cached is None:
        st.gt_feats.append(_inception(ev, b.gt))


def _fid_finish(st: FidState, clip) -> None:
    cached = None if st.gt_cached is _UNSET else st.gt_cached
    g = cached[:clip.n] if cached is not None else np.concatenate(st.gt_feats)
    if cached is None and clip.ev.fid_cache is not None and clip.n == clip.gt_frames:
        clip.ev.fid_cache.put(clip.gt_path, g)
    clip.record["fid_gt_cached"] = cached is not None
    st.gt.add(g)
    st.gt_feats, st.gt_cached = [], None  # per-video scratch, not merged or gathered


def _fid_merge(a: FidState, b: FidState) -> FidState:
    a.pd.merge(b.pd)
    a.gt.merge(b.gt)
    return a


def _fid_reduce(st: FidState, s) -> float | None:
    from evaluation.metrics.fid import frechet_distance
    if st.pd.n < 2 or st.gt.n < 2:
        return None
    return frechet_distance(*st.pd.mean_cov(), *st.gt.mean_cov(), method=s.fid_method)


# -- lip sync (per video, from the predicted video and the GT audio) ----------------------------

def _sync(key: str):
    def update(clip) -> float | None:
        return clip.lipsync()[key]
    return update


# -- motion metrics from coefficient files -------------------------------------------------------

def _coeff_l1(key: str):
    def update(clip) -> np.ndarray:
        from evaluation.metrics.coeff_l1 import coeff_l1
        gt, pd = clip.coeffs()
        return coeff_l1(pd, gt)[key]
    return update


def coeff_parts(coeff: np.ndarray) -> dict[str, np.ndarray]:
    """(N,257) -> {'exp' (N,64), 'pose' (N,6) = angle|trans, 'angle' (N,3), 'trans' (N,3)}."""
    from evaluation.metrics.coeff_l1 import exp_pose
    exp, pose = exp_pose(coeff)
    return {"exp": exp, "pose": pose, "angle": pose[:, :3], "trans": pose[:, 3:]}


def _fd_update(part: str):
    def update(st: dict, clip) -> None:
        gt, pd = clip.coeffs()
        st[clip.uuid] = (coeff_parts(pd)[part], coeff_parts(gt)[part])
    return update


def _fd_merge(a: dict, b: dict) -> dict:
    a.update(b)
    return a


def _fd_reduce(st: dict, s) -> float | None:
    """Frechet distance of all predicted vs all GT vectors (videos in uuid order), float64."""
    from evaluation.metrics.fid import frechet_distance, mean_cov
    keys = sorted(st)
    if sum(len(st[k][0]) for k in keys) < 2:
        return None
    pd = np.concatenate([st[k][0] for k in keys])
    gt = np.concatenate([st[k][1] for k in keys])
    return frechet_distance(*mean_cov(pd), *mean_cov(gt), method=s.fid_method)


def _fd(name: str, part: str, column: str, rank_sum: bool, leaderboard: tuple, doc: str) -> Metric:
    return Metric(name, "min", "set", F({"coefficients"}), _fd_update(part), stage="clip", new_state=dict,
                  merge=_fd_merge, reduce=_fd_reduce, groups=("coeff",), source="coefficients", column=column,
                  rank_sum=rank_sum, leaderboard=leaderboard, doc=doc)


BOTH = ("speaker", "listener")
SPK = ("speaker",)
SYNC = dict(kind="video", stage="clip", needs=F({"pd_frames", "faces", "audio"}), groups=("lipsync",), tasks=SPK,
            weights=("syncnet_s",), source="lip sync")

for _m in (
    Metric("psnr", "max", "frame", F({"frames"}), _psnr, column="PSNR", rank_sum=True, leaderboard=BOTH,
           doc="piq PSNR per frame on RGB in [0,1]"),
    Metric("ssim", "max", "frame", F({"frames"}), _ssim, column="SSIM", rank_sum=True, leaderboard=BOTH,
           doc="piq SSIM per frame"),
    Metric("cpbd", "max", "frame", F({"frames"}), _cpbd, column="CPBD", rank_sum=True, leaderboard=BOTH,
           doc="CPBD sharpness of the grey predicted frame"),
    Metric("fid", "min", "set", F({"frames"}), _fid_update, new_state=_fid_new, merge=_fid_merge,
           reduce=_fid_reduce, weights=("fid_inception_v3",), column="FID", rank_sum=True, leaderboard=BOTH,
           finish=_fid_finish, doc="Frechet distance of Inception pool3 features, all frames"),
    Metric("csim", "max", "frame", F({"frames"}), _csim, weights=("arcface_iresnet100",), column="CSIM",
           rank_sum=True, leaderboard=BOTH, doc="ArcFace cosine of paired whole frames"),
    Metric("csim_aligned", "max", "frame", F({"frames", "landmarks"}), _csim_aligned, default=False,
           weights=("arcface_iresnet100",), doc="ArcFace cosine of aligned faces (opt-in)"),
    Metric("lipLMD", "min", "frame", F({"frames", "landmarks"}), _lip(0), column="LipLMD", rank_sum=True,
           leaderboard=SPK, doc="L1 of the 20 lip landmarks, pixels"),
    Metric("lipLMD_euclidean", "min", "frame", F({"frames", "landmarks"}), _lip(1), default=False,
           doc="Euclidean distance of the 20 lip landmarks (opt-in)"),
    Metric("avoffset", "abs0", update=_sync("avoffset"), column="AVOffset", rank_sum=True, leaderboard=SPK,
           doc="SyncNet AV offset (frames)", **SYNC),
    Metric("avconf", "max", update=_sync("avconf"), column="AVConf", rank_sum=True, leaderboard=SPK,
           doc="SyncNet confidence (LSE-C)", **SYNC),
    Metric("avdist", "min", update=_sync("avdist"), column="AVDist",
           doc="SyncNet mean distance at the best offset (LSE-D)", **SYNC),
    Metric("expL1", "min", "frame", F({"coefficients"}), _coeff_l1("expL1"), stage="clip", groups=("coeff",),
           source="coefficients", column="ExpL1", rank_sum=True, doc="L1 of the 64 expression coefficients"),
    Metric("poseL1", "min", "frame", F({"coefficients"}), _coeff_l1("poseL1"), stage="clip", groups=("coeff",),
           source="coefficients", column="PoseL1", rank_sum=True, doc="L1 of the 6 pose coefficients"),
    _fd("expFD", "exp", "ExpFD", True, BOTH, "Frechet distance of expression coefficients (64-d)"),
    _fd("poseFD", "pose", "PoseFD", True, (), "Frechet distance of pose coefficients (angle|trans, 6-d)"),
    _fd("angleFD", "angle", "AngleFD", False, BOTH, "Frechet distance of the 3 angle coefficients"),
    _fd("transFD", "trans", "TransFD", False, BOTH, "Frechet distance of the 3 translation coefficients"),
):
    register(_m)
