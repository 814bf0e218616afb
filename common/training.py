"""Shared plumbing of the training CLIs (vico.train, PIRender.train): which checkpoints are
kept on disk, the run-folder guard, and scalars to TensorBoard beside the JSON-lines log.

Retention: a checkpoint is written every ``save_every`` epochs (vico) or at the recipe's
snapshot points (PIRender); of those written, the newest ``keep_last`` stay, plus every one
whose number (epoch for vico, iteration for PIRender) is a multiple of ``keep_every``
(milestones, kept for ever). ``keep_last 0`` keeps everything; ``keep_every 0`` keeps no
milestones. The newest checkpoint (the one ``latest`` points to) is never deleted.
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Iterable, Mapping

log = logging.getLogger(__name__)

KEEP_HELP = ("of the checkpoints written, keep the newest K on disk (0: keep all); "
             "the newest one is always kept")
EVERY_HELP = "also keep for ever every checkpoint whose {unit} is a multiple of E (0: none)"


def add_retention_args(p: argparse.ArgumentParser, keep_last: int = 3, keep_every: int = 0,
                       unit: str = "epoch") -> None:
    """Add ``--keep_last K`` and ``--keep_every E`` to a training CLI."""
    p.add_argument("--keep_last", type=int, default=keep_last, metavar="K", help=KEEP_HELP)
    p.add_argument("--keep_every", type=int, default=keep_every, metavar="E", help=EVERY_HELP.format(unit=unit))


def check_retention(keep_last: int, keep_every: int) -> None:
    from common.io import UserError

    if keep_last < 0 or keep_every < 0:
        raise UserError(f"--keep_last and --keep_every must be >= 0, got {keep_last} and {keep_every}")


def to_delete(numbers: Iterable[int], keep_last: int, keep_every: int, protect: int | None = None) -> list[int]:
    """The checkpoint numbers to delete (sorted): all but the newest ``keep_last``, the multiples
    of ``keep_every`` and ``protect`` (the one just written). ``keep_last`` 0 deletes nothing."""
    nums = sorted(set(numbers))
    if keep_last <= 0 or not nums:
        return []
    keep = set(nums[-keep_last:]) | {protect}
    if keep_every > 0:
        keep |= {n for n in nums if n % keep_every == 0}
    return [n for n in nums if n not in keep]


def prune_checkpoints(files: Mapping[int, Path], keep_last: int, keep_every: int,
                      protect: int | None = None) -> list[Path]:
    """Delete the files of ``to_delete(files, ...)``; returns the deleted paths."""
    gone = []
    for n in to_delete(files, keep_last, keep_every, protect):
        try:
            files[n].unlink()
        except FileNotFoundError:
            continue
        gone.append(files[n])
        log.debug("removed old checkpoint %s", files[n])
    return gone


class ScalarWriter:
    """Scalars to TensorBoard event files in ``log_dir`` (``torch.utils.tensorboard``).

    Optional: without the ``tensorboard`` package it logs one line and does nothing, so training
    never depends on it (the JSON-lines log is the record). ``purge_step``: on resume, events of
    the earlier run from this step on are hidden by TensorBoard, as log.jsonl is truncated."""

    def __init__(self, log_dir: str | Path, enabled: bool = True, purge_step: int | None = None):
        self.writer = None
        if not enabled:
            return
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            log.info("tensorboard is not installed: scalars go to the JSON-lines log only "
                     "(pip install tensorboard for TensorBoard event files)")
            return
        self.writer = SummaryWriter(log_dir=str(log_dir), purge_step=purge_step)

    def add(self, step: int, scalars: Mapping[str, object], prefix: str = "") -> None:
        if self.writer is None:
            return
        for k, v in scalars.items():
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                self.writer.add_scalar(prefix + k, float(v), step)
        self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def event_files(log_dir: str | Path) -> list[Path]:
    return sorted(Path(log_dir).glob("events.out.tfevents.*"))


def clear_run(out: Path, files: list[Path], overwrite: bool, info, refusal: str) -> None:
    """A fresh start in a folder holding a run (``files``): refuse with ``refusal`` (a UserError),
    or with --overwrite delete those files (rank 0) and wait for every process."""
    from common.dist import barrier
    from common.io import UserError

    if not files:
        return
    if not overwrite:
        raise UserError(refusal)
    if info.is_main:
        for p in files:
            p.unlink(missing_ok=True)
        log.info("--overwrite: deleted %d file(s) of the earlier run in %s", len(files), out)
    barrier(info)
