"""PIRender.train's run folder: --no_resume needs --overwrite, checkpoint retention by iteration."""
from __future__ import annotations

import pytest

from common.dist import DistInfo
from common.io import UserError
from PIRender.train import guard_fresh_start, prune, train
from PIRender.training.config import TrainConfig


def _ckpt(out, epoch, it):
    p = out / f"epoch_{epoch:05d}_iteration_{it:09d}_checkpoint.pt"
    p.write_bytes(b"x")
    return p


def test_no_resume_into_a_run_needs_overwrite(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    guard_fresh_start(out, overwrite=False, info=DistInfo())  # empty folder: fine
    _ckpt(out, 1, 40)
    (out / "latest_checkpoint.txt").write_text("latest_checkpoint: epoch_00001_iteration_000000040_checkpoint.pt\n")
    (out / "train_log.jsonl").write_text("{}\n")
    (out / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match=r"holds a training run already \(latest_checkpoint.txt\); --no_resume "
                                        r"there needs --overwrite"):
        # refused before any work (no VGG, no data needed)
        train(TrainConfig(), str(tmp_path / "no_lmdb"), str(out), None, "cpu", False, None, [])
    guard_fresh_start(out, overwrite=True, info=DistInfo())
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]  # only the run's files are deleted


def test_retention_by_iteration(tmp_path):
    for e, it in [(0, 40), (1, 80), (2, 120), (2, 160), (3, 200), (4, 240)]:
        _ckpt(tmp_path, e, it)
    _ckpt(tmp_path, 5, 240)  # an end-of-epoch save at the same iteration replaces the earlier file
    prune(tmp_path, 240, keep_last=2, keep_every=80)
    assert sorted(p.name[:30] for p in tmp_path.iterdir()) == [
        "epoch_00001_iteration_00000008", "epoch_00002_iteration_00000016", "epoch_00003_iteration_00000020",
        "epoch_00005_iteration_00000024"]
