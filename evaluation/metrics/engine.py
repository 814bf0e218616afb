"""The one-pass evaluator: every registered metric fed from a single decode of each video (pair).

The metrics are declared in the registry (``evaluation.metrics.registry``; built-ins in
``evaluation.metrics.builtin``); this module loops over them and knows no metric by name.
``Evaluator.evaluate_video`` decodes the GT and predicted videos once, in lockstep batches
(only the predicted one when no active metric needs the GT), and hands each batch to the
batch-stage metrics, then the clip to the clip-stage ones (lip sync, coefficients). Networks
and the face backend are built once and shared (landmarks of a frame serve LipLMD, its
Euclidean variant and the aligned CSIM; predicted face boxes serve lip sync). Per-video records
hold means and frame counts; ``aggregate`` turns the records (plus the merged states of the set
metrics: FID, the Frechet distances of coefficients) into results with constant metric names.
"""
from __future__ import annotations

import itertools
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from common.dataset import clip_name, find_audio
from common.io import UserError
from common.media import clip_problem, iter_frames, load_audio, probe_video, resample
from common.dist import pick_device
from common.weights import load_pretrained, resolve_weights
from evaluation.metrics import coeff_l1 as coeffs
from evaluation.metrics import registry
from evaluation.metrics.fid import FeatureCache, file_identity
from evaluation.metrics.lipsync import sync_scores
from evaluation.metrics.psnr_ssim import to_nchw
from evaluation.lipsync.codec import original_audio, original_crops, original_frames
from evaluation.lipsync.pipeline import (SYNC_FPS, SYNC_SR, LipSyncConfig, crop_track, cut_audio, find_tracks,
                                         resample_indices, to_pcm16)
from evaluation.networks.inception import FIDInceptionV3
from evaluation.networks.iresnet import iresnet100
from evaluation.networks.syncnet import SyncNetS

log = logging.getLogger(__name__)

# weights-registry name -> (network class, EvalSettings field of its explicit file)
NETWORKS: dict[str, tuple[Callable[[], torch.nn.Module], str]] = {
    "fid_inception_v3": (FIDInceptionV3, "inception_weights"),
    "arcface_iresnet100": (iresnet100, "arcface_weights"),
    "syncnet_s": (SyncNetS, "syncnet_weights"),
}


def parse_metrics(spec: str) -> list[str]:
    """'default', 'all', or a comma list of metric and group names -> metric names in canonical order."""
    known, grp = registry.metrics(), registry.groups()
    chosen: set[str] = set()
    for tok in (t.strip() for t in spec.split(",")):
        if not tok:
            continue
        if tok in grp:
            chosen.update(grp[tok])
        elif tok in known:
            chosen.add(tok)
        else:
            raise UserError(f"--metrics: unknown metric {tok!r} (known: {', '.join(known)}; "
                            f"groups: {', '.join(grp)})")
    if not chosen:
        raise UserError("--metrics: no metric selected")
    return [m for m in known if m in chosen]


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
    device: str = "auto"  # auto = the GPU if any, else CPU (common.dist.pick_device)
    workers: int = 2  # threads for face detection / landmarks
    tddfa_arch: str = "mb1"  # 3ddfa_v2 backend: MobileNet width (mb1 / mb05)
    tddfa_boxes: str = "faceboxes"  # 3ddfa_v2 backend: box source (faceboxes / dlib)
    tddfa_motion: bool = False  # also request the metrics declared enabled_by="tddfa_motion"
    lipsync: LipSyncConfig = field(default_factory=LipSyncConfig)


@dataclass
class VideoResult:
    """Per-video record (one JSONL line) plus the per-video states of the set metrics (merged, not averaged)."""

    record: dict[str, Any]
    states: dict[str, Any] = field(default_factory=dict)

    @property
    def fid_pd(self):
        st = self.states.get("fid")
        return st.pd if st is not None else None

    @property
    def fid_gt(self):
        st = self.states.get("fid")
        return st.gt if st is not None else None


class Batch:
    """One decoded batch handed to batch-stage metrics: RGB uint8 ``gt`` (None without GT) and ``pd``."""

    def __init__(self, ev: "Evaluator", clip: "Clip", gt: np.ndarray | None, pd: np.ndarray, start: int) -> None:
        self.ev, self.clip, self.gt, self.pd, self.start = ev, clip, gt, pd, start
        self.face_pairs: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []  # (g, p, lm_g, lm_p)

    @cached_property
    def gt_t(self) -> torch.Tensor:
        return to_nchw(self.gt)

    @cached_property
    def pd_t(self) -> torch.Tensor:
        return to_nchw(self.pd)


class Clip:
    """One video for clip-stage metrics: its record, shared inputs loaded once (coefficients, lip sync)."""

    def __init__(self, ev: "Evaluator", uuid: str, record: dict[str, Any]) -> None:
        self.ev, self.uuid, self.record = ev, uuid, record
        self.gt_path: Path | None = None
        self.pd_path: Path | None = None
        self.pd_info = None
        self.n = 0
        self.gt_frames = 0
        self.sync_frames: dict[int, np.ndarray] = {}
        self.pd_boxes: dict[int, list] = {}  # face boxes of predicted frames, shared with lip sync
        self._memo: dict[str, Any] = {}

    def once(self, key: str, fn: Callable[[], Any]) -> Any:
        """``fn()`` computed once per clip under ``key`` and shared by the metrics that ask (a
        UserError is kept and raised again for each of them)."""
        if key not in self._memo:
            try:
                self._memo[key] = (fn(), None)
            except UserError as e:
                self._memo[key] = (None, e)
        value, err = self._memo[key]
        if err is not None:
            raise err
        return value

    def coeffs(self) -> tuple[np.ndarray, np.ndarray]:
        """(gt, pd) (N,257) coefficients of this clip (truncated to the shorter with --truncate)."""
        return self.once("coeffs", lambda: self.ev._load_coeffs(self.uuid, self.record))

    def lipsync(self) -> dict[str, Any]:
        """avoffset / avconf / avdist (None with the reason in the record's lipsync_note)."""
        return self.once("lipsync", lambda: self.ev._lipsync(self))


class Evaluator:
    """Builds the shared models once; ``unavailable`` maps metric -> reason for those that cannot run."""

    def __init__(self, metrics: list[str], s: EvalSettings, face_backend_factory: Callable | None = None) -> None:
        self.s = s
        self.metrics = registry.metrics()
        # metrics requested by a settings switch (Metric.enabled_by, e.g. --tddfa_motion) join the list
        self.requested = list(metrics) + [n for n, m in self.metrics.items() if m.enabled_by and n not in metrics
                                          and getattr(s, m.enabled_by, False)]
        self.unavailable: dict[str, str] = {}
        self.device = pick_device(s.device)
        self.weight_files: dict[str, str] = {}
        self.nets: dict[str, torch.nn.Module] = {}
        self.resources: dict[str, Any] = {}  # objects that metric setups build once and share
        self._check_inputs()
        for name in NETWORKS:
            self._load(name)
        self.faces = None
        self._face_factory = face_backend_factory or _face_factory(s, self.device)
        face_users = [m for m in self._pending() if {"faces", "landmarks"} & self.metrics[m].needs]
        if face_users:
            try:
                self.faces = self._face_factory(s.landmarks)
                self.weight_files.update(getattr(getattr(self.faces, "models", None), "files", {}))
            except (UserError, ImportError, RuntimeError) as e:
                for m in face_users:
                    self.unavailable.setdefault(m, f"face landmarks unavailable: {e}")
        for m in self.requested:  # after the face backend, so that a setup may share it (face_backend)
            setup = self.metrics[m].setup
            if setup is not None and m not in self.unavailable:
                try:
                    setup(self)
                except UserError as e:
                    self.unavailable[m] = str(e)
        self.active = self._pending()
        self._pool: ThreadPoolExecutor | None = None
        self._local = threading.local()
        self.fid_cache = self.lm_cache = None
        if "fid_inception_v3" in self.nets and s.cache_dir:
            self.fid_cache = FeatureCache(s.cache_dir, {"network": "fid_inception_v3",
                                                        "weights": self.weight_files.get("fid_inception_v3")})
        if self.faces is not None and s.cache_dir:
            self.lm_cache = FeatureCache(s.cache_dir, {"landmarks": s.landmarks, "points": 68,
                                                       **_face_options(s, s.landmarks)})

    def face_backend(self, name: str):
        """A landmark backend by name (for metric setups): the evaluator's own when it is that one,
        else a new one with the settings' options; UserError when its files are missing."""
        if self.faces is not None and getattr(self.faces, "name", "") == name:
            return self.faces
        be = self._face_factory(name)
        self.weight_files.update(getattr(getattr(be, "models", None), "files", {}))
        return be

    # -- setup ---------------------------------------------------------------------------------

    def _pending(self) -> list[str]:
        return [m for m in self.requested if m not in self.unavailable]

    def _needs(self, *what: str) -> bool:
        """Whether an active metric needs any of ``what``."""
        return any(set(what) & self.metrics[m].needs for m in self.active)

    def _check_inputs(self) -> None:
        s = self.s
        for m in self.requested:
            meta, reason = self.metrics[m], None
            needs = meta.needs
            if s.task not in meta.tasks:
                reason = f"{meta.source or m} is scored on {' and '.join(meta.tasks)} videos only (as the original)"
            elif "audio" in needs and not s.gt_audio_folder:
                reason = "needs --gt_audio_folder"
            if "coefficients" in needs and not (s.gt_coeff_folder and s.pd_coeff_folder):
                reason = "needs --gt_coeff_folder and --pd_coeff_folder"
            if {"frames", "landmarks"} & needs and not (s.gt_video_folder and s.pd_video_folder):
                reason = "needs --gt_video_folder and --pd_video_folder"
            elif "pd_frames" in needs and not s.pd_video_folder:
                reason = "needs --pd_video_folder"
            if reason:
                self.unavailable[m] = reason

    def _weights_path(self, name: str) -> Path:
        explicit = getattr(self.s, NETWORKS[name][1])
        return resolve_weights(name, explicit or None, self.s.weights_dir or None)

    def _load(self, name: str) -> None:
        """Load weights ``name`` once for the metrics that use them; on a missing/bad file mark them unavailable."""
        wanted = [m for m in self._pending() if name in self.metrics[m].weights]
        if not wanted:
            return
        try:
            path = self._weights_path(name)
            net = NETWORKS[name][0]()
            load_pretrained(net, name, path)
        except UserError as e:
            for m in wanted:
                self.unavailable[m] = str(e)
            return
        ident = file_identity(path)
        self.weight_files[name] = f"{ident['path']}:{ident['size']}:{ident['mtime_ns']}"
        self.nets[name] = net.eval().to(self.device)

    # -- one video -----------------------------------------------------------------------------

    def video_paths(self, uuid: str) -> tuple[Path, Path]:
        name = clip_name(uuid, self.s.task) + ".mp4"
        gt = Path(self.s.gt_video_folder) / name if self.s.gt_video_folder else None
        return gt, Path(self.s.pd_video_folder) / name

    def evaluate_video(self, uuid: str) -> VideoResult:
        """Score one video (pair); UserError (one line, naming the file) on bad input."""
        ms = [self.metrics[m] for m in self.active]
        rec: dict[str, Any] = {"uuid": uuid}
        out = VideoResult(rec, {m.name: m.new_state() for m in ms if m.kind == "set"})
        clip = Clip(self, uuid, rec)
        decode = self._needs("frames", "pd_frames", "landmarks")
        if decode:
            self._decode(clip, [m for m in ms if m.stage == "batch"], out)
        # Clip-stage metrics read inputs of their own (audio, coefficient files): with videos decoded,
        # a bad one fails only these metrics, recorded under "errors" (the CLI reports the video as
        # failed, keeping its other values); without videos it is the only input and fails the clip.
        errors: list[str] = []
        for m in ms:
            if m.stage != "clip":
                continue
            try:
                if m.kind == "set":
                    m.update(out.states[m.name], clip)
                else:
                    self._put(rec, m, m.update(clip))
            except UserError as e:
                if not decode:
                    raise
                if m.kind != "set":
                    rec[m.name] = None
                msg = f"{m.source or m.name}: {e}"
                if msg not in errors:
                    errors.append(msg)
        if errors:
            rec.setdefault("errors", []).extend(errors)
        if not decode and "coeffs" in clip._memo:  # motion metrics only: the coefficient files are the input
            rec["n_frames"] = len(clip.coeffs()[1])
        return out

    @staticmethod
    def _put(rec: dict[str, Any], m: registry.Metric, value: Any) -> None:
        if m.kind == "frame":
            vals = list(value) if value is not None else []
            rec[m.name] = float(np.mean(vals)) if vals else None
            rec[f"{m.name}_frames"] = len(vals)
        else:
            rec[m.name] = None if value is None else float(value)

    def _decode(self, clip: Clip, ms: list[registry.Metric], out: VideoResult) -> None:
        """Decode the video (pair) once, in lockstep batches, feeding every batch-stage metric."""
        rec, s = clip.record, self.s
        need_gt = self._needs("frames", "landmarks")
        gt_path, pd_path = self.video_paths(clip.uuid)
        for p in (gt_path, pd_path) if need_gt else (pd_path,):
            if not p.is_file():
                raise UserError(f"{p}: video not found")
        pi = probe_video(pd_path)
        if self._needs("audio") and clip_problem(pi, size=None):  # frames meet the audio: constant 30 fps only
            raise UserError(clip_problem(pi, size=None))
        if need_gt:
            gi = probe_video(gt_path)
            if (gi.width, gi.height) != (pi.width, pi.height):
                raise UserError(f"{pd_path}: size {pi.width}x{pi.height} differs from the ground truth "
                                f"{gi.width}x{gi.height} ({gt_path})")
            n = min(gi.n_frames, pi.n_frames)
            rec.update(n_frames=n, gt_frames=gi.n_frames, pd_frames=pi.n_frames)
            if gi.n_frames != pi.n_frames:
                if not s.truncate:
                    raise UserError(f"{pd_path}: {pi.n_frames} frames but the ground truth has {gi.n_frames} "
                                    f"({gt_path}); use --truncate to score the first {n}")
                rec["truncated"] = True
                log.warning("%s: truncated to %d frames (gt %d, pd %d)", clip.uuid, n, gi.n_frames, pi.n_frames)
            clip.gt_frames = gi.n_frames
        else:
            n = pi.n_frames
            rec.update(n_frames=n, pd_frames=pi.n_frames)
        clip.gt_path, clip.pd_path, clip.pd_info, clip.n = gt_path, pd_path, pi, n
        frame_vals: dict[str, list[float]] = {m.name: [] for m in ms if m.kind == "frame"}
        keep = (set(resample_indices(pi.n_frames, pi.fps, SYNC_FPS).tolist())
                if self._needs("audio") and self.faces is not None and s.lipsync.frames == "memory" else set())
        faces_on = self.faces is not None and self._needs("landmarks")
        gt_lms = self.lm_cache.get(gt_path) if faces_on and self.lm_cache is not None else None
        if gt_lms is not None and len(gt_lms) < n:
            gt_lms = None
        new_gt_lms: list[np.ndarray] = []
        no_face = 0
        seen = 0
        bs = s.batch_size
        gt_iter = iter_frames(gt_path, bs) if need_gt else itertools.repeat(None)
        # nothing reads the frames here (e.g. lip sync alone on its original path, which decodes its own)
        pd_iter = iter_frames(pd_path, bs) if ms or faces_on or keep else iter(())
        with torch.no_grad():
            for gb, pb in zip(gt_iter, pd_iter):
                if seen >= n:
                    break
                k = min(len(pb), n - seen) if gb is None else min(len(gb), len(pb), n - seen)
                b = Batch(self, clip, None if gb is None else gb[:k], pb[:k], seen)
                if faces_on:
                    known = gt_lms[seen:seen + k] if gt_lms is not None else None
                    no_face += self._face_pairs(b, clip.pd_boxes, known, new_gt_lms)
                for m in ms:
                    if m.kind == "set":
                        m.update(out.states[m.name], b)
                    else:
                        frame_vals[m.name].extend(m.update(b))
                for j, f in enumerate(b.pd):
                    if seen + j in keep:
                        clip.sync_frames[seen + j] = f
                seen += k
        if seen != n and (ms or faces_on or keep):
            raise UserError(f"{pd_path}: decoded {seen} frames, expected {n}")
        for m in ms:
            if m.kind == "frame":
                self._put(rec, m, frame_vals[m.name])
        if faces_on:
            rec["frames_without_face"] = no_face
            rec["gt_landmarks_cached"] = gt_lms is not None
            if gt_lms is None and self.lm_cache is not None and n == clip.gt_frames:
                self.lm_cache.put(gt_path, np.stack(new_gt_lms))
        for m in ms:
            if m.finish is not None:
                m.finish(out.states[m.name], clip)

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

    def _face_pairs(self, b: Batch, pd_boxes: dict[int, list], gt_known: np.ndarray | None,
                    gt_out: list[np.ndarray]) -> int:
        """Fill ``b.face_pairs`` (frames where both faces were found); GT landmarks from the cache
        (NaN rows = no face) when known. Returns the number of frames without a face pair."""
        gb, pb = b.gt, b.pd
        if gt_known is None:
            res = self._landmarks(list(gb) + list(pb))
            gres, pres = res[:len(gb)], res[len(gb):]
            gt_out.extend(np.full((68, 2), np.nan, np.float32) if lm is None else lm for _, lm in gres)
        else:
            pres = self._landmarks(list(pb))
            gres = [([], None if np.isnan(lm).any() else lm) for lm in gt_known]
        missing = 0
        for j, (g, p, (_, lg), (bp, lp)) in enumerate(zip(gb, pb, gres, pres)):
            pd_boxes[b.start + j] = bp
            if lg is None or lp is None:
                missing += 1
                continue
            b.face_pairs.append((g, p, lg, lp))
        return missing

    def _lipsync(self, clip: Clip) -> dict[str, Any]:
        """Lip sync of the predicted video with the GT audio; extra fields go to the record."""
        cfg = self.s.lipsync
        wav = find_audio(self.s.gt_audio_folder, clip.uuid) or Path(self.s.gt_audio_folder) / f"{clip.uuid}.wav"
        samples, wav_sr = load_audio(wav)
        pcm = to_pcm16(resample(samples, wav_sr, SYNC_SR) if wav_sr != SYNC_SR else samples)
        if cfg.frames == "original":  # upstream's lossy re-encodes and timing; faces found on its JPEGs
            seq = [np.ascontiguousarray(f[..., ::-1]) for f in original_frames(clip.pd_path, wav_sr)]
            try:
                pcm = original_audio(samples, wav_sr)
            except UserError as e:
                raise UserError(f"{wav}: {e}") from None
            dets = [boxes for boxes, _ in self._detect_only(seq)]
        else:  # the decoded frames, and the boxes other metrics already found on them
            frames, known = clip.sync_frames, clip.pd_boxes
            idx = resample_indices(clip.pd_info.n_frames, clip.pd_info.fps, SYNC_FPS)
            idx = idx[idx < max(frames) + 1] if frames else idx[:0]
            seq = [frames[i] for i in idx]
            todo = [i for i in dict.fromkeys(idx.tolist()) if i not in known]
            for i, (boxes, _) in zip(todo, self._detect_only([frames[i] for i in todo])):
                known[i] = boxes
            dets = [known[i] for i in idx]
        tracks = find_tracks(seq, dets, cfg)
        rec = clip.record
        rec.update(lipsync_frames_25fps=len(seq), lipsync_frame_path=cfg.frames, lipsync_tracks=[])
        for t in tracks:
            crops = crop_track(seq, t, cfg.crop_scale)
            if cfg.frames == "original":
                crops = original_crops(crops)
            audio = cut_audio(pcm, t)
            try:
                r = sync_scores(self.nets["syncnet_s"], crops, audio, cfg.batch_size, cfg.vshift, self.device)
            except ValueError as e:
                rec["lipsync_tracks"].append({"start": int(t.frames[0]), "frames": len(t.frames), "error": str(e)})
                continue
            rec["lipsync_tracks"].append({"start": int(t.frames[0]), "frames": len(t.frames), "offset": r.offset,
                                          "conf": r.conf, "min_dist": r.min_dist})
        scored = [t for t in rec["lipsync_tracks"] if "offset" in t]
        res: dict[str, Any] = {}
        if scored:
            w = np.array([t["frames"] for t in scored], dtype=np.float64)
            res["avoffset"] = float(np.average([t["offset"] for t in scored], weights=w))
            res["avconf"] = float(np.average([t["conf"] for t in scored], weights=w))
            res["avdist"] = float(np.average([t["min_dist"] for t in scored], weights=w))
        else:
            res["avoffset"] = res["avconf"] = res["avdist"] = None
            rec["lipsync_note"] = (
                f"no face track longer than {cfg.min_track} frames at 25 fps ({len(seq)} frames here; "
                f"--lipsync_min_track) with mean face size over {cfg.min_face_size:g} px" if not tracks
                else "every face track too short for SyncNet: " + "; ".join(t["error"] for t in rec["lipsync_tracks"]))
        return res

    def _load_coeffs(self, uuid: str, rec: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
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
        return gt, pd


def _face_options(s: EvalSettings, name: str) -> dict[str, Any]:
    """``get_backend`` options of backend ``name``: those of 3ddfa_v2 (none for the others)."""
    if name != "3ddfa_v2":
        return {}
    return {"arch": s.tddfa_arch, "boxes": s.tddfa_boxes, "weights_dir": s.weights_dir}


def _face_factory(s: EvalSettings, device: torch.device) -> Callable:
    """``name -> backend`` with the settings' options (3ddfa_v2 on ``device``, the others on the CPU)."""
    from common.faces import get_backend

    def make(name: str):
        return get_backend(name, device=str(device) if name == "3ddfa_v2" else "cpu", **_face_options(s, name))
    return make


def new_states(metrics: list[str]) -> dict[str, Any]:
    """Empty merged states of the set metrics among ``metrics``."""
    ms = registry.metrics()
    return {m: ms[m].new_state() for m in metrics if ms[m].kind == "set"}


def merge_states(into: dict[str, Any], states: dict[str, Any]) -> dict[str, Any]:
    """Merge per-video (or per-process) set-metric states into ``into`` (in place; returned)."""
    ms = registry.metrics()
    for name, st in states.items():
        into[name] = ms[name].merge(into[name], st) if name in into else st
    return into


def aggregate(records: list[dict], metrics: list[str], states: dict[str, Any], settings: Any) -> dict[str, Any]:
    """Results with constant keys: each metric (frame-weighted, as the original), and
    ``<metric>_video_mean`` (mean of per-video means) for the per-frame ones, ``<metric>_videos``
    for the per-video ones; set metrics reduce their merged state (``settings.fid_method``)."""
    ms = registry.metrics()
    res: dict[str, Any] = {}
    for m in metrics:
        kind = ms[m].kind
        if kind == "frame":
            vals = [(r[m], r[f"{m}_frames"]) for r in records if r.get(m) is not None]
            tot = sum(c for _, c in vals)
            res[m] = float(sum(v * c for v, c in vals) / tot) if tot else None
            res[f"{m}_video_mean"] = float(np.mean([v for v, _ in vals])) if vals else None
        elif kind == "video":
            vals = [r[m] for r in records if r.get(m) is not None]
            res[m] = float(np.mean(vals)) if vals else None  # mean over videos (upstream: none)
            res[f"{m}_videos"] = len(vals)
        else:
            res[m] = ms[m].reduce(states[m], settings) if m in states else None
    return res
