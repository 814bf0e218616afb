"""vico.train's run folder: checkpoint retention, no silent restart, TensorBoard scalars."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from common.io import run_cli
from vico.train import main as train_main

from .conftest import make_features

TINY = ["--time_size", "30", "--batch_size", "4", "--lr", "0.003"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("vico_run") / "data"
    make_features(d, (32,), "train", seed=3)  # a few windows: two steps per epoch
    return d


def _args(data: Path, out: Path, *extra: str) -> list[str]:
    return ["--task", "listener", "--data", str(data), "--output_path", str(out), *TINY, *extra]


def _on_disk(out: Path) -> list[str]:
    return sorted(p.name for p in (out / "checkpoints").glob("epoch_*.pt"))


def _log_epochs(out: Path) -> list[int]:
    return [json.loads(line)["epoch"] for line in (out / "log.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_keep_last_keep_every_refuse_resume_overwrite(tiny, tmp_path, capsys):
    out = tmp_path / "run"
    assert train_main(_args(tiny, out, "--max_epochs", "7", "--keep_last", "2", "--keep_every", "3")) == 0
    # written every epoch; the newest 2 (6, 7) stay, and the milestones 3 and 6
    assert _on_disk(out) == ["epoch_003.pt", "epoch_006.pt", "epoch_007.pt"]
    assert (out / "checkpoints" / "latest").read_text().strip() == "epoch_007.pt"

    # the same command again: one error line naming both ways on, nothing touched
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        run_cli(train_main, _args(tiny, out, "--max_epochs", "9"))
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and len(err) == 1
    assert err[0].startswith(f"error: {out}: holds a training run already")
    assert "--resume auto" in err[0] and "--overwrite" in err[0]
    assert _log_epochs(out) == list(range(1, 8)) and len(_on_disk(out)) == 3

    # --resume auto continues; retention goes on over old and new checkpoints
    assert train_main(_args(tiny, out, "--max_epochs", "9", "--keep_last", "2", "--keep_every", "3",
                            "--resume", "auto")) == 0
    assert _on_disk(out) == ["epoch_003.pt", "epoch_006.pt", "epoch_008.pt", "epoch_009.pt"]
    assert _log_epochs(out) == list(range(1, 10))

    # --overwrite starts afresh: old checkpoints and log lines are gone; --keep_last 0 keeps all
    assert train_main(_args(tiny, out, "--max_epochs", "2", "--keep_last", "0", "--overwrite")) == 0
    assert _on_disk(out) == ["epoch_001.pt", "epoch_002.pt"]
    assert _log_epochs(out) == [1, 2]


def test_save_every_and_bad_values(tiny, tmp_path, capsys):
    out = tmp_path / "run"
    assert train_main(_args(tiny, out, "--max_epochs", "5", "--save_every", "2", "--keep_last", "1",
                            "--keep_every", "2")) == 0
    # written at 2, 4 and 5 (the last); 5 is the newest, 2 and 4 are milestones
    assert _on_disk(out) == ["epoch_002.pt", "epoch_004.pt", "epoch_005.pt"]
    capsys.readouterr()
    with pytest.raises(SystemExit):
        run_cli(train_main, _args(tiny, tmp_path / "o2", "--keep_last", "-1"))
    assert capsys.readouterr().err.strip() == "error: --keep_last and --keep_every must be >= 0, got -1 and 100"


def test_tensorboard_scalars_match_log(tiny, tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "run"
    assert train_main(_args(tiny, out, "--max_epochs", "3")) == 0
    assert train_main(_args(tiny, out, "--max_epochs", "4", "--resume", str(out / "checkpoints" / "epoch_002.pt"))) == 0
    rows = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    acc = EventAccumulator(str(out))
    acc.Reload()
    assert {"train/loss", "train/lr", "train/samples"} <= set(acc.Tags()["scalars"])
    # resumed at epoch 2: the first run's epoch 3 is purged, as in log.jsonl
    events = acc.Scalars("train/loss")
    assert [ev.step for ev in events] == [r["epoch"] for r in rows] == [1, 2, 3, 4]
    assert [ev.value for ev in events] == pytest.approx([r["loss"] for r in rows], rel=1e-6)


def test_progress_records_steps_and_epochs(tiny, tmp_path, monkeypatch):
    """What pipeline.runner shows while vico.train runs: one bar over every remaining step."""
    f = tmp_path / "progress.jsonl"
    monkeypatch.setenv("VICO_PROGRESS_FILE", str(f))
    assert train_main(_args(tiny, tmp_path / "run", "--max_epochs", "3")) == 0
    recs = [json.loads(line) for line in f.read_text().splitlines()]
    train = [r for r in recs if r["desc"] == "train"]
    steps = json.loads((tmp_path / "run" / "log.jsonl").read_text().splitlines()[0])["steps"]
    assert train[0]["total"] == 3 * steps and train[0]["items_total"] == 3
    assert (train[-1]["n"], train[-1]["items"], train[-1]["done"]) == (3 * steps, 3, True)
