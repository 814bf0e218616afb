"""The one-pass evaluator: every frame metric fed from a single decode of each video pair.

``Evaluator.evaluate_video`` decodes the GT and predicted videos once, in lockstep batches, and
feeds every selected frame metric; networks and the face backend are built once and shared
(landmarks of a frame serve LipLMD, its Euclidean variant and the aligned CSIM). Per-video
records hold means and frame counts; ``aggregate`` turns the records (plus the set statistics
for FID / ExpFD / PoseFD) into the results with constant metric names.
"""
from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import cv2
import numpy as np
import torch

from common.dataset import clip_name, find_audio
from common.io import UserError
from common.media import clip_problem, iter_frames, load_audio, probe_video
from common.weights import get_spec, load_pretrained, resolve_weights
from evaluation.metrics import coeff_l1 as coeffs
from evaluation.metrics import csim as csim_mod
from evaluation.metrics.cpbd import cpbd
from evaluation.metrics.fid import FeatureCache, GaussianStats, file_identity, frechet_distance, mean_cov
from evaluation.metrics.lipsync import sync_scores
from evaluation.metrics.lmd import lip_distances
from evaluation.metrics.psnr_ssim import psnr, ssim, to_nchw
from evaluation.lipsync.pipeline import (SYNC_FPS, SYNC_SR, LipSyncConfig, crop_track, cut_audio, find_tracks,
                                         resample_indices, to_pcm16)
from evaluation.networks.inception import FIDInceptionV3
from evaluation.networks.iresnet import iresnet100
from evaluation.networks.syncnet import SyncNetS

log = logging.getLogger(__name__)

# Constant metric names (results.json keys). Frame metrics are frame-weighted means.
FRAME_METRICS = ("psnr", "ssim", "cpbd", "csim", "csim_aligned", "lipLMD", "lipLMD_euclidean")
SET_METRICS = ("fid", "expFD", "poseFD")
VIDEO_METRICS = ("avoffset", "avconf")
COEFF_FRAME_METRICS = ("expL1", "poseL1")
ALL_METRICS = ("psnr", "ssim", "cpbd", "fid", "csim", "csim_aligned", "lipLMD", "lipLMD_euclidean",
               "avoffset", "avconf", "expL1", "poseL1", "expFD", "poseFD")
OPT_IN = ("csim_aligned", "lipLMD_euclidean")
DEFAULT_METRICS = tuple(m for m in ALL_METRICS if m not in OPT_IN)
GROUPS = {"lipsync": ("avoffset", "avconf"), "coeff": ("expL1", "poseL1", "expFD", "poseFD"),
          "default": DEFAULT_METRICS, "all": ALL_METRICS}
NEEDS_FACES = ("csim_aligned", "lipLMD", "lipLMD_euclidean", "avoffset", "avconf")


def parse_metrics(spec: str) -> list[str]:
    """'default', 'all', or a comma list of metric and group names -> metric names in canonical order."""
    chosen: set[str] = set()
    for tok in (t.strip() for t in spec.split(",")):
        if not tok:
            continue
        if tok in GROUPS:
            chosen.update(GROUPS[tok])
        elif tok in ALL_METRICS:
            chosen.add(tok)
        else:
            raise UserError(f"--metrics: unknown metric {tok!r} (known: {', '.join(ALL_METRICS)}; "
                            f"groups: {', '.join(GROUPS)})")
    if not chosen:
        raise UserError("--metrics: no metric selected")
    return [m for m in ALL_METRICS if m in chosen]


@dataclass
class EvalSettings:
    """What the evaluator needs beyond the metric list (filled from the CLI config)."""

    gt_video_folder: str | None = None
    pd_video_folder: str | None = None
    task: str = "speaker"
    gt_audio_folder: str | None = None
    gt_coeff_folder: str | None = None
    pd_coeff_folder: str | None = None
    weights_dir: str | None = None
    inception_weights: str | None = None
    arcface_weights: str | None = None
    syncnet_weights: str | None = None
    landmarks: str = "dlib"
    batch_size: int = 32
    fid_method: str = "newton_schulz"
    cache_dir: str | None = None  # GT Inception features and GT landmarks, keyed by file identity
    truncate: bool = False
    device: str = "cpu"
    workers: int = 2  # threads for face detection / landmarks
    lipsync: LipSyncConfig = field(default_factory=LipSyncConfig)


@dataclass
class VideoResult:
    """Per-video record (one JSONL line) plus the set statistics that are merged, not averaged."""

    record: dict[str, Any]
    fid_pd: GaussianStats | None = None
    fid_gt: GaussianStats | None = None
    coeff_pd: np.ndarray | None = None  # (N,70) exp|pose, for ExpFD / PoseFD
    coeff_gt: np.ndarray | None = None


class Evaluator:
    """Builds the shared models once; ``unavailable`` maps metric -> reason for those that cannot run."""

    def __init__(self, metrics: list[str], s: EvalSettings, face_backend_factory: Callable | None = None) -> None:
        self.s = s
        self.requested = list(metrics)
        self.unavailable: dict[str, str] = {}
        self.device = torch.device(s.device)
        self.weight_files: dict[str, str] = {}
        self._check_inputs()
        self.inception = self._load("fid_inception_v3", ("fid",), FIDInceptionV3)
        self.arcface = self._load("arcface_iresnet100", ("csim", "csim_aligned"), iresnet100)
        self.syncnet = self._load("syncnet_s", ("avoffset", "avconf"), SyncNetS)
        self.faces = None
        if any(m in self.requested and m not in self.unavailable for m in NEEDS_FACES):
            try:
                from common.faces import get_backend
                self._face_factory = face_backend_factory or get_backend
                self.faces = self._face_factory(s.landmarks)
            except (UserError, ImportError, RuntimeError) as e:
                for m in NEEDS_FACES:
                    if m in self.requested:
                        self.unavailable.setdefault(m, f"face landmarks unavailable: {e}")
        self.active = [m for m in self.requested if m not in self.unavailable]
        self._pool: ThreadPoolExecutor | None = None
        self._local = threading.local()
        self.fid_cache = self.lm_cache = None
        if self.inception is not None and s.cache_dir:
            self.fid_cache = FeatureCache(s.cache_dir, {"network": "fid_inception_v3",
                                                        "weights": self.weight_files.get("fid_inception_v3")})
        if self.faces is not None and s.cache_dir:
            self.lm_cache = FeatureCache(s.cache_dir, {"landmarks": s.landmarks, "points": 68})

    # -- setup ---------------------------------------------------------------------------------

    def _check_inputs(self) -> None:
        s = self.s
        for m in self.requested:
            reason = None
            if m in GROUPS["lipsync"]:
                if s.task != "speaker":
                    reason = "lip sync is scored on speaker videos only (as the original)"
                elif not s.gt_audio_folder:
                    reason = "needs --gt_audio_folder"
            if m in GROUPS["coeff"] and not (s.gt_coeff_folder and s.pd_coeff_folder):
                reason = "needs --gt_coeff_folder and --pd_coeff_folder"
            if m not in GROUPS["coeff"] and not (s.gt_video_folder and s.pd_video_folder):
                reason = "needs --gt_video_folder and --pd_video_folder"
            if reason:
                self.unavailable[m] = reason

    def _weights_path(self, name: str) -> Path:
        explicit = {"fid_inception_v3": self.s.inception_weights, "arcface_iresnet100": self.s.arcface_weights,
                    "syncnet_s": self.s.syncnet_weights}[name]
        if explicit:
            return resolve_weights(name, explicit)
        if self.s.weights_dir:
            return resolve_weights(name, get_spec(name).default_file(self.s.weights_dir))
        return resolve_weights(name)

    def _load(self, name: str, metrics: tuple[str, ...], build: Callable[[], torch.nn.Module]) -> torch.nn.Module | None:
        """Load weights ``name`` for ``metrics`` once; on a missing/bad file mark them unavailable."""
        wanted = [m for m in metrics if m in self.requested and m not in self.unavailable]
        if not wanted:
            return None
        try:
            path = self._weights_path(name)
            net = build()
            load_pretrained(net, name, path)
        except UserError as e:
            for m in wanted:
                self.unavailable[m] = str(e)
            return None
        ident = file_identity(path)
        self.weight_files[name] = f"{ident['path']}:{ident['size']}:{ident['mtime_ns']}"
        return net.eval().to(self.device)

    # -- one video -----------------------------------------------------------------------------

    def video_paths(self, uuid: str) -> tuple[Path, Path]:
        name = clip_name(uuid, self.s.task) + ".mp4"
        return Path(self.s.gt_video_folder) / name, Path(self.s.pd_video_folder) / name

    def evaluate_video(self, uuid: str) -> VideoResult:
        """Score one GT/predicted pair; UserError (one line, naming the file) on bad input."""
        act = set(self.active)
        if act <= set(GROUPS["coeff"]):  # motion metrics only: the coefficient files are the input
            return self._coeff_only(uuid, act)
        gt_path, pd_path = self.video_paths(uuid)
        for p in (gt_path, pd_path):
            if not p.is_file():
                raise UserError(f"{p}: video not found")
        gi, pi = probe_video(gt_path), probe_video(pd_path)
        if {"avoffset", "avconf"} & act:  # frames meet the audio: constant 30 fps only
            for vi in (gi, pi):
                if clip_problem(vi, size=None):
                    raise UserError(clip_problem(vi, size=None))
        if (gi.width, gi.height) != (pi.width, pi.height):
            raise UserError(f"{pd_path}: size {pi.width}x{pi.height} differs from the ground truth "
                            f"{gi.width}x{gi.height} ({gt_path})")
        n = min(gi.n_frames, pi.n_frames)
        rec: dict[str, Any] = {"uuid": uuid, "n_frames": n, "gt_frames": gi.n_frames, "pd_frames": pi.n_frames}
        if gi.n_frames != pi.n_frames:
            if not self.s.truncate:
                raise UserError(f"{pd_path}: {pi.n_frames} frames but the ground truth has {gi.n_frames} "
                                f"({gt_path}); use --truncate to score the first {n}")
            rec["truncated"] = True
            log.warning("%s: truncated to %d frames (gt %d, pd %d)", uuid, n, gi.n_frames, pi.n_frames)
        out = VideoResult(rec)
        sums: dict[str, list[float]] = {m: [] for m in FRAME_METRICS if m in act}
        gt_cached = self.fid_cache.get(gt_path) if self.fid_cache is not None and "fid" in act else None
        if gt_cached is not None and len(gt_cached) < n:
            gt_cached = None
        gt_feats: list[np.ndarray] = []
        if "fid" in act:
            out.fid_pd, out.fid_gt = GaussianStats.empty(2048), GaussianStats.empty(2048)
        lipsync = ("avoffset" in act) or ("avconf" in act)
        keep = set(resample_indices(pi.n_frames, pi.fps, SYNC_FPS).tolist()) if lipsync else set()
        sync_frames: dict[int, np.ndarray] = {}
        pd_boxes: dict[int, list] = {}  # face boxes of predicted frames, shared with lip sync
        faces_on = self.faces is not None and bool({"lipLMD", "lipLMD_euclidean", "csim_aligned"} & act)
        gt_lms = self.lm_cache.get(gt_path) if faces_on and self.lm_cache is not None else None
        if gt_lms is not None and len(gt_lms) < n:
            gt_lms = None
        new_gt_lms: list[np.ndarray] = []
        no_face = 0
        seen = 0
        bs = self.s.batch_size
        with torch.no_grad():
            for gb, pb in zip(iter_frames(gt_path, bs), iter_frames(pd_path, bs)):
                if seen >= n:
                    break
                k = min(len(gb), len(pb), n - seen)
                gb, pb = gb[:k], pb[:k]
                if {"psnr", "ssim"} & act:
                    gt_t, pd_t = to_nchw(gb), to_nchw(pb)
                    if "psnr" in act:
                        sums["psnr"].extend(psnr(pd_t, gt_t).tolist())
                    if "ssim" in act:
                        sums["ssim"].extend(ssim(pd_t, gt_t).tolist())
                if "cpbd" in act:
                    sums["cpbd"].extend(cpbd(cv2.cvtColor(f, cv2.COLOR_RGB2GRAY)) for f in pb)
                if "fid" in act:
                    out.fid_pd.add(self._inception(pb))
                    if gt_cached is None:
                        gt_feats.append(self._inception(gb))
                if "csim" in act:
                    gf = self.arcface(csim_mod.whole_frame_input(gb).to(self.device)).cpu()
                    pf = self.arcface(csim_mod.whole_frame_input(pb).to(self.device)).cpu()
                    sums["csim"].extend(csim_mod.paired_cosine(gf, pf).tolist())
                if faces_on:
                    known = gt_lms[seen:seen + k] if gt_lms is not None else None
                    no_face += self._face_metrics(gb, pb, sums, act, seen, pd_boxes, known, new_gt_lms)
                if lipsync:
                    for j, f in enumerate(pb):
                        if seen + j in keep:
                            sync_frames[seen + j] = f
                seen += k
        if seen != n:
            raise UserError(f"{pd_path}: decoded {seen} frames, expected {n}")
        for m, vals in sums.items():
            rec[m] = float(np.mean(vals)) if vals else None
            rec[f"{m}_frames"] = len(vals)
        if faces_on:
            rec["frames_without_face"] = no_face
            rec["gt_landmarks_cached"] = gt_lms is not None
            if gt_lms is None and self.lm_cache is not None and n == gi.n_frames:
                self.lm_cache.put(gt_path, np.stack(new_gt_lms))
        if "fid" in act:
            g = gt_cached[:n] if gt_cached is not None else np.concatenate(gt_feats)
            if gt_cached is None and self.fid_cache is not None and n == gi.n_frames:
                self.fid_cache.put(gt_path, g)
            rec["fid_gt_cached"] = gt_cached is not None
            out.fid_gt.add(g)
        # Inputs of their own (audio, coefficient files): a bad one fails only these metrics,
        # recorded under "errors" (the CLI reports the video as failed, keeping its other values).
        if lipsync:
            try:
                rec.update(self._lipsync(uuid, pi, sync_frames, pd_boxes))
            except UserError as e:
                rec.update(avoffset=None, avconf=None)
                rec.setdefault("errors", []).append(f"lip sync: {e}")
        if {"expL1", "poseL1", "expFD", "poseFD"} & act:
            try:
                self._coeff_metrics(uuid, rec, out, act)
            except UserError as e:
                rec.setdefault("errors", []).append(f"coefficients: {e}")
        return out

    def _coeff_only(self, uuid: str, act: set) -> VideoResult:
        rec: dict[str, Any] = {"uuid": uuid}
        out = VideoResult(rec)
        self._coeff_metrics(uuid, rec, out, act)  # a bad file fails the clip: it is the only input
        rec["n_frames"] = len(out.coeff_pd)
        return out

    def _inception(self, frames: np.ndarray) -> np.ndarray:
        return self.inception(to_nchw(frames).to(self.device)).cpu().numpy()

    def _backend(self):
        """This thread's face backend: dlib detectors are not thread-safe, so each worker has one."""
        if threading.current_thread() is threading.main_thread():
            return self.faces
        b = getattr(self._local, "faces", None)
        if b is None:
            make = getattr(self.faces, "for_thread", None)
            b = self._local.faces = make() if make else self._face_factory(self.s.landmarks)
        return b

    def _map(self, fn: Callable, items: list) -> list:
        """``fn`` over items in worker threads (dlib releases the GIL); order kept."""
        if self.s.workers > 1 and len(items) > 1:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.s.workers)
            return list(self._pool.map(fn, items))
        return [fn(x) for x in items]

    def _landmarks(self, frames: list[np.ndarray]) -> list[tuple[list, np.ndarray | None]]:
        """(boxes, landmarks of the best face or None) per frame."""
        def one(f: np.ndarray) -> tuple[list, np.ndarray | None]:
            be = self._backend()
            boxes = be.detect(f)
            return boxes, (be.landmarks(f, boxes[0]) if boxes else None)
        return self._map(one, frames)

    def _detect_only(self, frames: list[np.ndarray]) -> list[tuple[list, None]]:
        return self._map(lambda f: (self._backend().detect(f), None), frames)

    def _face_metrics(self, gb: np.ndarray, pb: np.ndarray, sums: dict, act: set, start: int,
                      pd_boxes: dict[int, list], gt_known: np.ndarray | None, gt_out: list[np.ndarray]) -> int:
        """Landmark metrics of a batch; GT landmarks from the cache (NaN rows = no face) when known."""
        if gt_known is None:
            res = self._landmarks(list(gb) + list(pb))
            gres, pres = res[:len(gb)], res[len(gb):]
            gt_out.extend(np.full((68, 2), np.nan, np.float32) if lm is None else lm for _, lm in gres)
        else:
            pres = self._landmarks(list(pb))
            gres = [([], None if np.isnan(lm).any() else lm) for lm in gt_known]
        missing = 0
        pairs_g, pairs_p = [], []
        for j, (g, p, (_, lg), (bp, lp)) in enumerate(zip(gb, pb, gres, pres)):
            pd_boxes[start + j] = bp
            if lg is None or lp is None:
                missing += 1
                continue
            if {"lipLMD", "lipLMD_euclidean"} & act:
                l1, eu = lip_distances(lp[None], lg[None])
                if "lipLMD" in act:
                    sums["lipLMD"].append(float(l1[0]))
                if "lipLMD_euclidean" in act:
                    sums["lipLMD_euclidean"].append(float(eu[0]))
            if "csim_aligned" in act:
                pairs_g.append(csim_mod.aligned_face(g, lg))
                pairs_p.append(csim_mod.aligned_face(p, lp))
        if pairs_g:
            gf = self.arcface(csim_mod.normalise(np.stack(pairs_g)).to(self.device)).cpu()
            pf = self.arcface(csim_mod.normalise(np.stack(pairs_p)).to(self.device)).cpu()
            sums["csim_aligned"].extend(csim_mod.paired_cosine(gf, pf).tolist())
        return missing

    def _lipsync(self, uuid: str, info, frames: dict[int, np.ndarray], known: dict[int, list]) -> dict[str, Any]:
        cfg = self.s.lipsync
        wav = find_audio(self.s.gt_audio_folder, uuid) or Path(self.s.gt_audio_folder) / f"{uuid}.wav"
        samples, _ = load_audio(wav, sr=SYNC_SR)
        pcm = to_pcm16(samples)
        idx = resample_indices(info.n_frames, info.fps, SYNC_FPS)
        idx = idx[idx < max(frames) + 1] if frames else idx[:0]
        seq = [frames[i] for i in idx]
        todo = [i for i in dict.fromkeys(idx.tolist()) if i not in known]
        for i, (boxes, _) in zip(todo, self._detect_only([frames[i] for i in todo])):
            known[i] = boxes
        dets = [known[i] for i in idx]
        tracks = find_tracks(seq, dets, cfg)
        res: dict[str, Any] = {"lipsync_frames_25fps": len(seq), "lipsync_tracks": []}
        for t in tracks:
            crops = crop_track(seq, t, cfg.crop_scale)
            audio = cut_audio(pcm, t)
            try:
                r = sync_scores(self.syncnet, crops, audio, cfg.batch_size, cfg.vshift, self.device)
            except ValueError as e:
                res["lipsync_tracks"].append({"start": int(t.frames[0]), "frames": len(t.frames), "error": str(e)})
                continue
            res["lipsync_tracks"].append({"start": int(t.frames[0]), "frames": len(t.frames), "offset": r.offset,
                                          "conf": r.conf, "min_dist": r.min_dist})
        scored = [t for t in res["lipsync_tracks"] if "offset" in t]
        if scored:
            w = np.array([t["frames"] for t in scored], dtype=np.float64)
            res["avoffset"] = float(np.average([t["offset"] for t in scored], weights=w))
            res["avconf"] = float(np.average([t["conf"] for t in scored], weights=w))
        else:
            res["avoffset"] = res["avconf"] = None
            res["lipsync_note"] = (f"no face track longer than {cfg.min_track} frames at 25 fps with mean face "
                                   f"size over {cfg.min_face_size:g} px" if not tracks else "every track too short")
        return res

    def _coeff_metrics(self, uuid: str, rec: dict, out: VideoResult, act: set) -> None:
        name = clip_name(uuid, self.s.task) + ".mat"
        gt = coeffs.load_coeff(Path(self.s.gt_coeff_folder) / name)
        pd = coeffs.load_coeff(Path(self.s.pd_coeff_folder) / name)
        if len(gt) != len(pd):
            if not self.s.truncate:
                raise UserError(f"{Path(self.s.pd_coeff_folder) / name}: {len(pd)} coefficient rows but the "
                                f"ground truth has {len(gt)}; use --truncate to score the first {min(len(gt), len(pd))}")
            k = min(len(gt), len(pd))
            gt, pd = gt[:k], pd[:k]
            rec["coeff_truncated"] = True
        per = coeffs.coeff_l1(pd, gt)
        for m in COEFF_FRAME_METRICS:
            if m in act:
                rec[m] = float(per[m].mean())
                rec[f"{m}_frames"] = len(pd)
        ge, gp = coeffs.exp_pose(gt)
        pe, pp = coeffs.exp_pose(pd)
        out.coeff_gt = np.concatenate([ge, gp], 1)
        out.coeff_pd = np.concatenate([pe, pp], 1)


def aggregate(records: list[dict], metrics: list[str], fid_pd: GaussianStats | None, fid_gt: GaussianStats | None,
              coeff_pd: list[np.ndarray], coeff_gt: list[np.ndarray], fid_method: str) -> dict[str, Any]:
    """Results with constant keys: each metric (frame-weighted, as the original), and
    ``<metric>_video_mean`` (mean of per-video means) for the per-frame and per-video ones."""
    res: dict[str, Any] = {}
    for m in metrics:
        if m in FRAME_METRICS or m in COEFF_FRAME_METRICS:
            vals = [(r[m], r[f"{m}_frames"]) for r in records if r.get(m) is not None]
            tot = sum(c for _, c in vals)
            res[m] = float(sum(v * c for v, c in vals) / tot) if tot else None
            res[f"{m}_video_mean"] = float(np.mean([v for v, _ in vals])) if vals else None
        elif m in VIDEO_METRICS:
            vals = [r[m] for r in records if r.get(m) is not None]
            res[m] = float(np.mean(vals)) if vals else None  # mean over videos (upstream: none)
            res[f"{m}_videos"] = len(vals)
        elif m == "fid":
            ok = fid_pd is not None and fid_gt is not None and fid_pd.n >= 2 and fid_gt.n >= 2
            res[m] = frechet_distance(*fid_pd.mean_cov(), *fid_gt.mean_cov(), method=fid_method) if ok else None
        elif m in ("expFD", "poseFD"):
            if len(coeff_pd) and sum(len(c) for c in coeff_pd) >= 2:
                pd, gt = np.concatenate(coeff_pd), np.concatenate(coeff_gt)
                sl = slice(0, 64) if m == "expFD" else slice(64, 70)
                res[m] = frechet_distance(*mean_cov(pd[:, sl]), *mean_cov(gt[:, sl]), method=fid_method)
            else:
                res[m] = None
    return res
