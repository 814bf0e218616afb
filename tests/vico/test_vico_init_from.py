"""vico.train --init_from: a new run starts from an original Epoch_NNN.bin or one of our
checkpoints (weights only; optimizer, schedule and epochs fresh)."""
from __future__ import annotations

import json

import pytest
import torch

from common.io import UserError
from vico.train import main as train_main

ARGS = ["--time_size", "30", "--batch_size", "4", "--device", "cpu"]


def _train(data, out, *extra) -> dict:
    assert train_main(["--task", "listener", "--data", str(data), "--output_path", str(out), *ARGS, *extra]) == 0
    ckdir = out / "checkpoints"
    return torch.load(ckdir / (ckdir / "latest").read_text().strip(), weights_only=False)


def test_init_from_original_and_own_checkpoint(feat_data, tmp_path):
    torch.set_num_threads(1)
    base = _train(feat_data, tmp_path / "base", "--max_epochs", "2", "--lr", "0.003")
    original = tmp_path / "Epoch_002.bin"  # the original format: a bare state dict, keys 'module.'-prefixed
    torch.save({f"module.{k}": v for k, v in base["model"].items()}, original)
    for src in (original, tmp_path / "base" / "checkpoints" / "latest"):
        out = tmp_path / f"ft_{src.stem}"
        # lr 0: the weights cannot move, so the saved model is exactly the initial one
        ck = _train(feat_data, out, "--max_epochs", "1", "--lr", "0", "--init_from", str(src))
        assert all(torch.equal(ck["model"][k], base["model"][k]) for k in base["model"])
        assert ck["epoch"] == 1 and ck["scheduler"]["last_epoch"] == 1  # fresh schedule and epochs
        steps = {int(s["step"]) for s in ck["optimizer"]["state"].values()}
        base_steps = {int(s["step"]) for s in base["optimizer"]["state"].values()}
        assert steps and max(steps) * 2 == max(base_steps)  # one epoch of steps, not three
        rep = json.loads((out / "run.json").read_text())
        assert rep["config"]["initialised_from"].endswith((".bin", ".pt"))
        assert rep["config"]["resumed_from"] is None
    with pytest.raises(UserError, match="holds a listener model but --task is speaker"):
        train_main(["--task", "speaker", "--data", str(feat_data), "--output_path", str(tmp_path / "x"), *ARGS,
                    "--max_epochs", "1", "--init_from", str(tmp_path / "base" / "checkpoints")])
    with pytest.raises(UserError, match="checkpoint not found"):
        train_main(["--task", "listener", "--data", str(feat_data), "--output_path", str(tmp_path / "y"), *ARGS,
                    "--max_epochs", "1", "--init_from", str(tmp_path / "nope.bin")])
