"""Streaming, cross-video batching of aligned face crops for the reconstruction network.

Videos are decoded in small chunks (memory constant in video length); each frame is aligned
with its landmarks and added to the current batch, which is filled across video boundaries;
the last batch holds the remainder (never empty). A background thread prepares the next
batches while the network runs. A video that fails (unreadable, keypoint file missing or
malformed, frame-count mismatch) is reported once and the others go on.
"""
from __future__ import annotations

import logging
import queue
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch

from common.io import UserError
from common.media import check_clip

from . import align
from .frames import is_image, iter_media_frames
from .keypoints import load_keypoints

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class VideoJob:
    """One input: its name (path relative to the input folder, no suffix) and files."""

    name: str
    video: Path
    keypoints: Path
    output: Path


@dataclass
class Batch:
    """Up to ``batch_size`` frames from one or more videos.

    ``crops`` (B,3,224,224) float32 in [0,1] (CPU alignment), or ``frames`` (B arrays (H,W,3)
    uint8) when alignment is left to the consumer (``align_batch_torch`` on the device).
    ``trans`` (B,5) float32 = [W,H,s,t0,t1]; ``job_ids``/``frame_ids`` (B,) say whose frame
    each row is. ``completed``: jobs whose every frame is in this or an earlier batch;
    ``failed``: (job id, reason) of jobs that failed since the previous batch (their earlier
    rows must be discarded).
    """

    crops: torch.Tensor | None
    frames: list[np.ndarray] | None
    trans: np.ndarray
    job_ids: np.ndarray
    frame_ids: np.ndarray
    completed: list[int] = field(default_factory=list)
    failed: list[tuple[int, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.job_ids)


class _Builder:
    def __init__(self, batch_size: int, keep_frames: bool):
        self.batch_size = batch_size
        self.keep_frames = keep_frames
        self.reset()

    def reset(self) -> None:
        self.crops: list[np.ndarray] = []
        self.frames: list[np.ndarray] = []
        self.trans: list[np.ndarray] = []
        self.job_ids: list[int] = []
        self.frame_ids: list[int] = []
        self.completed: list[int] = []
        self.failed: list[tuple[int, str]] = []

    def add(self, job_id: int, frame_id: int, frame: np.ndarray, tp: np.ndarray) -> None:
        if self.keep_frames:
            self.frames.append(frame)
        else:
            self.crops.append(align.align_frame(frame, tp))
        self.trans.append(tp)
        self.job_ids.append(job_id)
        self.frame_ids.append(frame_id)

    @property
    def full(self) -> bool:
        return len(self.job_ids) >= self.batch_size

    @property
    def has_news(self) -> bool:
        return bool(self.job_ids or self.completed or self.failed)

    def drop_job(self, job_id: int) -> None:
        keep = [i for i, j in enumerate(self.job_ids) if j != job_id]
        for name in ("crops", "frames", "trans", "job_ids", "frame_ids"):
            lst = getattr(self, name)
            if lst:
                setattr(self, name, [lst[i] for i in keep])

    def take(self) -> Batch:
        crops = None
        if self.crops:
            crops = align.to_network_input(np.stack(self.crops))  # (B,3,224,224)
        b = Batch(
            crops=crops,
            frames=list(self.frames) if self.keep_frames else None,
            trans=np.asarray(self.trans, dtype=np.float32).reshape(-1, 5),
            job_ids=np.asarray(self.job_ids, dtype=np.int64),
            frame_ids=np.asarray(self.frame_ids, dtype=np.int64),
            completed=list(self.completed),
            failed=list(self.failed),
        )
        self.reset()
        return b


def iter_batches(jobs: Sequence[VideoJob], batch_size: int, keep_frames: bool = False,
                 decode_chunk: int = 16, allow_no_face: bool = False) -> Iterator[Batch]:
    """Aligned batches over all ``jobs`` in order (see :class:`Batch`); single-threaded.

    A video without a face in any frame fails, unless ``allow_no_face`` (the original: every
    frame gets the fallback crop)."""
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    bld = _Builder(batch_size, keep_frames)
    # A full batch is held back until the next frame arrives, so that the completion of the
    # video it ends travels with it: the last batch is never an empty one.
    pending: Batch | None = None
    for job_id, job in enumerate(jobs):
        try:
            if not is_image(job.video):  # coefficients are per frame at 30 fps: refuse other rates
                check_clip(job.video, size=None)
            lms = load_keypoints(job.keypoints)  # (N,68,2) float64, y down
            if (lms == -1).all() and not allow_no_face:  # single faceless frames: the fallback crop
                raise UserError(f"{job.keypoints}: no face detected in any of the {len(lms)} frames of "
                                f"{job.video} (all landmarks -1)")
            n = 0
            for chunk in iter_media_frames(job.video, batch_size=decode_chunk):
                for frame in chunk:
                    if n >= len(lms):  # too few landmark frames: count the rest, fail below
                        n += 1
                        continue
                    height, width = frame.shape[:2]
                    tp = align.solve_transform(lms[n], width, height)
                    if not (np.isfinite(tp).all() and 0 < tp[2] * max(width, height) < align.MAX_RESIZED):
                        raise UserError(f"{job.keypoints}: frame {n}: landmarks give a degenerate "
                                        f"alignment (scale {tp[2]:.3g})")
                    if pending is not None:
                        yield pending
                        pending = None
                    bld.add(job_id, n, frame, tp.astype(np.float32))
                    n += 1
                    if bld.full:
                        pending = bld.take()
            if n != len(lms):
                raise UserError(f"{job.keypoints}: has {len(lms)} frames of landmarks but "
                                f"{job.video} has {n} frames")
            (pending or bld).completed.append(job_id)
        except Exception as e:  # noqa: BLE001 - one bad video must not stop the others
            if not isinstance(e, UserError):
                log.debug("unexpected error on %s", job.video, exc_info=True)
                e = UserError(f"{job.video}: {type(e).__name__}: {e}")
            bld.drop_job(job_id)
            (pending or bld).failed.append((job_id, str(e)))
    if pending is not None:
        yield pending
    if bld.has_news:  # rows left over, or only a failure to report (then no rows)
        yield bld.take()


def prefetch(it: Iterator[Batch], depth: int = 2) -> Iterator[Batch]:
    """Run the iterator ``it`` in a background thread, ``depth`` batches ahead."""
    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    done = object()

    def worker() -> None:
        try:
            for item in it:
                while not stop.is_set():
                    try:
                        q.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
        except BaseException as e:  # noqa: BLE001 - re-raised in the consumer
            q.put(e)
            return
        q.put(done)

    t = threading.Thread(target=worker, name="recon-prefetch", daemon=True)
    t.start()
    try:
        while True:
            item = q.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
