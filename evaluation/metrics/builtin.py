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


# -- metrics of per-frame vectors (coefficients here; e.g. 3DDFA_V2 parameters in a plugin) -----

def _ctx(ctx) -> tuple[str, int]:
    """(uuid, first frame) of a Batch or a Clip: the key that keeps a set's vectors in order."""
    clip = getattr(ctx, "clip", ctx)
    return clip.uuid, int(getattr(ctx, "start", 0))


def _vec_merge(a: dict, b: dict) -> dict:
    a.update(b)
    return a


def _vec_reduce(st: dict, s) -> float | None:
    """Frechet distance of all predicted vs all GT vectors (videos in uuid order), float64."""
    from evaluation.metrics.fid import frechet_distance, mean_cov
    keys = sorted(st)
    if sum(len(st[k][0]) for k in keys) < 2:
        return None
    pd = np.concatenate([st[k][0] for k in keys])
    gt = np.concatenate([st[k][1] for k in keys])
    return frechet_distance(*mean_cov(pd), *mean_cov(gt), method=s.fid_method)


def frechet_metric(name: str, vectors, needs: frozenset, stage: str = "clip", **kw) -> Metric:
    """A set metric: the Frechet distance of all predicted vs all GT vectors (float64, the FID
    routine); ``vectors(ctx) -> (pd (N,D), gt (N,D))`` for each Batch or Clip (``stage``)."""
    def update(st: dict, ctx) -> None:
        st[_ctx(ctx)] = tuple(np.asarray(v, np.float64) for v in vectors(ctx))
    return Metric(name, "min", "set", needs, update, stage=stage, new_state=dict, merge=_vec_merge,
                  reduce=_vec_reduce, **kw)


def l1_metric(name: str, vectors, needs: frozenset, stage: str = "clip", period: float | None = None,
              **kw) -> Metric:
    """A frame metric: per frame the mean |pd - gt| over the vector's dims; ``vectors`` as above.
    ``period`` (e.g. 360 for angles in degrees): each difference wrapped into [-period/2, period/2)."""
    def update(ctx) -> np.ndarray:
        pd, gt = vectors(ctx)
        d = np.asarray(pd, np.float64) - np.asarray(gt, np.float64)
        if period is not None:
            d = (d + period / 2) % period - period / 2
        return np.abs(d).mean(1)
    return Metric(name, "min", "frame", needs, update, stage=stage, **kw)


def coeff_parts(coeff: np.ndarray) -> dict[str, np.ndarray]:
    """(N,257) -> {'exp' (N,64), 'pose' (N,6) = angle|trans, 'angle' (N,3), 'trans' (N,3)}."""
    from evaluation.metrics.coeff_l1 import exp_pose
    exp, pose = exp_pose(coeff)
    return {"exp": exp, "pose": pose, "angle": pose[:, :3], "trans": pose[:, 3:]}


def _coeff(part: str):
    """vectors(clip) of one coefficient part from the clip's .mat files."""
    def vectors(clip) -> tuple[np.ndarray, np.ndarray]:
        gt, pd = clip.coeffs()
        return coeff_parts(pd)[part], coeff_parts(gt)[part]
    return vectors


COEFF = dict(needs=F({"coefficients"}), groups=("coeff",), source="coefficients")


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
    Metric("avconf", "max", update=_sync("avconf"), column="AVConf", aka="LSE-C", rank_sum=True, leaderboard=SPK,
           doc="SyncNet confidence (LSE-C)", **SYNC),
    Metric("avdist", "min", update=_sync("avdist"), column="AVDist", aka="LSE-D",
           doc="SyncNet mean distance at the best offset (LSE-D)", **SYNC),
    l1_metric("expL1", _coeff("exp"), column="ExpL1", rank_sum=True, doc="L1 of the 64 expression coefficients",
              **COEFF),
    l1_metric("poseL1", _coeff("pose"), column="PoseL1", rank_sum=True, doc="L1 of the 6 pose coefficients",
              **COEFF),
    frechet_metric("expFD", _coeff("exp"), column="ExpFD", rank_sum=True, leaderboard=BOTH,
                   doc="Frechet distance of expression coefficients (64-d)", **COEFF),
    frechet_metric("poseFD", _coeff("pose"), column="PoseFD", rank_sum=True,
                   doc="Frechet distance of pose coefficients (angle|trans, 6-d)", **COEFF),
    frechet_metric("angleFD", _coeff("angle"), column="AngleFD", leaderboard=BOTH,
                   doc="Frechet distance of the 3 angle coefficients", **COEFF),
    frechet_metric("transFD", _coeff("trans"), column="TransFD", leaderboard=BOTH,
                   doc="Frechet distance of the 3 translation coefficients", **COEFF),
):
    register(_m)
