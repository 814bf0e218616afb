"""common.training: which checkpoints are kept, and the optional TensorBoard writer."""
from __future__ import annotations

import pytest

from common.training import ScalarWriter, event_files, prune_checkpoints, to_delete


def test_retention_rule():
    written = list(range(1, 11))  # a checkpoint every epoch, 10 epochs
    assert to_delete(written, keep_last=3, keep_every=0) == [1, 2, 3, 4, 5, 6, 7]
    assert to_delete(written, keep_last=3, keep_every=4) == [1, 2, 3, 5, 6, 7]  # 4 and 8 are milestones
    assert to_delete(written, keep_last=0, keep_every=4) == []  # 0: keep all
    assert to_delete([2, 4, 6, 7], keep_last=1, keep_every=4) == [2, 6]  # save_every 2, last epoch 7
    assert to_delete([5, 9, 12], keep_last=1, keep_every=0, protect=5) == [9]  # the one just written stays
    assert to_delete([], 3, 2) == []


def test_prune_deletes_files(tmp_path):
    files = {n: tmp_path / f"epoch_{n:03d}.pt" for n in range(1, 6)}
    for p in files.values():
        p.write_bytes(b"x")
    gone = prune_checkpoints(files, keep_last=2, keep_every=2)
    assert sorted(p.name for p in gone) == ["epoch_001.pt", "epoch_003.pt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["epoch_002.pt", "epoch_004.pt", "epoch_005.pt"]


def test_scalar_writer_without_or_with_tensorboard(tmp_path, caplog):
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        with caplog.at_level("INFO"):
            w = ScalarWriter(tmp_path)
        w.add(1, {"loss": 1.0})
        w.close()
        assert event_files(tmp_path) == [] and "tensorboard is not installed" in caplog.text
        return
    w = ScalarWriter(tmp_path)
    w.add(1, {"loss": 0.5, "stage": "warp", "flag": True})  # strings and booleans are not scalars
    w.close()
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(tmp_path))
    acc.Reload()
    assert acc.Tags()["scalars"] == ["loss"] and acc.Scalars("loss")[0].value == pytest.approx(0.5)
    assert ScalarWriter(tmp_path / "off", enabled=False).writer is None
