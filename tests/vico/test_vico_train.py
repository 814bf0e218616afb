"""vico.train end to end: loss falls, exact resume, checkpoints, 2-process torchrun, bad input."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.io import loadmat

from vico.eval import main as eval_main
from vico.train import main as train_main

from .conftest import make_features

ROOT = Path(__file__).resolve().parents[2]
# tiny models: one thread each avoids OpenMP oversubscription when tests share the cores
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
COMMON = ["--time_size", "30", "--batch_size", "4", "--lr", "0.003"]


def run(*args, check=True):
    r = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=300,
                       env=ENV)
    if check and r.returncode != 0:
        raise AssertionError(f"exit {r.returncode}\n{r.stderr[-3000:]}")
    return r


def losses(run_dir: Path) -> list[float]:
    return [json.loads(line)["loss"] for line in (run_dir / "log.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("vico") / "data"
    make_features(d, (50, 40, 36), "train", seed=0)  # 41 + 31 + 27 = 99 windows of <= 30 frames
    make_features(d, (45, 33), "test", seed=1)
    return d


@pytest.fixture(scope="module")
def straight(data) -> Path:
    out = data.parent / "straight"
    run("-m", "vico.train", "--task", "listener", "--data", str(data), "--output_path", str(out),
        "--max_epochs", "4", *COMMON)
    return out


@pytest.mark.slow
def test_loss_falls_and_checkpoints(straight):
    ls = losses(straight)
    assert len(ls) == 4 and ls[-1] < 0.6 * ls[0] and all(b < a for a, b in zip(ls, ls[1:]))
    ck = torch.load(straight / "checkpoints" / "epoch_004.pt", weights_only=False)
    assert (straight / "checkpoints" / "latest").read_text().strip() == "epoch_004.pt"
    assert ck["epoch"] == 4 and ck["config"]["family"] == "listener" and ck["config"]["audio_feature_set"] == "vico45"
    assert not any(k.startswith("module.") for k in ck["model"]) and len(ck["model"]) == 16
    assert ck["optimizer"]["state"] and ck["scheduler"]["last_epoch"] == 4 and len(ck["rng"]) == 1
    assert ck["train"]["time_size"] == 30
    rep = json.loads((straight / "run.json").read_text())
    assert rep["counts"] == {"done": 3, "skipped": 0, "failed": 0}
    assert rep["config"]["n_windows"] == 99 and rep["config"]["model"]["num_layers"] == 2
    assert not list(straight.rglob("*.tmp*"))


@pytest.mark.slow
def test_resume_continues_exactly(data, straight):
    out = data.parent / "resumed"
    args = ["-m", "vico.train", "--task", "listener", "--data", str(data), "--output_path", str(out), *COMMON]
    run(*args, "--max_epochs", "2")
    run(*args, "--max_epochs", "4", "--resume", "auto")
    assert losses(out) == losses(straight)  # bit-identical, dropout included
    a = torch.load(out / "checkpoints" / "epoch_004.pt", weights_only=False)["model"]
    b = torch.load(straight / "checkpoints" / "epoch_004.pt", weights_only=False)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow
def test_speaker_trains_in_process(data, tmp_path):
    out = tmp_path / "spk"
    code = train_main(["--task", "speaker", "--data", str(data), "--output_path", str(out), "--max_epochs", "3",
                       "--config", "residual_speaker", "--time_size", "30", "--batch_size", "10", "--lr", "0.003"])
    ls = losses(out)
    assert code == 0 and ls[-1] < 0.8 * ls[0]
    assert torch.load(out / "checkpoints" / "epoch_003.pt", weights_only=False)["config"]["init_conditioning"] is True


@pytest.mark.slow
@pytest.mark.torchrun
def test_two_process_torchrun_equals_one_process(data, tmp_path):
    """Per-rank batch 2 on 2 gloo processes = batch 4 on one process (same global batches and
    gradients, also for the odd window count here, whose padding duplicate has weight 0; dropout
    off since its masks are drawn per process). Tolerance: rtol 1e-5 on the epoch losses
    (float32 reduction order only; measured ~3e-7)."""
    cfg = tmp_path / "nodrop.yaml"
    cfg.write_text("base: baseline_listener\ndropout: 0.0\n")
    common = ["--task", "listener", "--data", str(data), "--config", str(cfg), "--time_size", "30",
              "--max_epochs", "2", "--lr", "0.003"]
    run("-m", "vico.train", *common, "--batch_size", "4", "--output_path", str(tmp_path / "one"))
    run("-m", "torch.distributed.run", "--nproc_per_node", "2", "--standalone", "-m", "vico.train", *common,
        "--batch_size", "2", "--output_path", str(tmp_path / "two"))
    one, two = losses(tmp_path / "one"), losses(tmp_path / "two")
    np.testing.assert_allclose(two, one, rtol=1e-5)
    assert one[1] < one[0]
    ck = torch.load(tmp_path / "two" / "checkpoints" / "epoch_002.pt", weights_only=False)
    assert ck["world_size"] == 2 and len(ck["rng"]) == 2
    assert json.loads((tmp_path / "two" / "log.jsonl").read_text().splitlines()[0])["samples"] == 99
    # eval shards the clips over the processes and gathers one report
    ev = ["-m", "vico.eval", "--task", "listener", "--data", str(data), "--resume", str(tmp_path / "two" / "checkpoints")]
    run("-m", "torch.distributed.run", "--nproc_per_node", "2", "--standalone", *ev, "--output_path", str(tmp_path / "e2"))
    assert eval_main(ev[2:] + ["--output_path", str(tmp_path / "e1")]) == 0
    rep = json.loads((tmp_path / "e2" / "run.listener.json").read_text())
    assert [d["item"] for d in rep["done"]] == ["test000x", "test001x"] and rep["counts"]["failed"] == 0
    for name in ("test000x", "test001x"):
        a, b = (loadmat(tmp_path / e / "recon_coeffs" / "test" / f"{name}.listener.mat")["coeff"] for e in ("e1", "e2"))
        np.testing.assert_allclose(a, b, atol=1e-6)


def test_bad_clip_is_recorded_and_training_goes_on(data, tmp_path):
    d = tmp_path / "data"
    make_features(d, (40, 36, 33), "train", seed=2)
    np.save(d / "features" / "audio_feats" / "train001x.npy", np.zeros((36, 44), np.float32))
    code = train_main(["--task", "listener", "--data", str(d), "--output_path", str(tmp_path / "o"),
                       "--max_epochs", "1", *COMMON])
    rep = json.loads((tmp_path / "o" / "run.json").read_text())
    assert code == 1 and rep["counts"] == {"done": 2, "skipped": 0, "failed": 1}
    assert rep["failures"][0]["item"] == "train001x"
    assert "train001x.npy: audio features has shape (36, 44), expected (N, 45)" in rep["failures"][0]["reason"]
    assert (tmp_path / "o" / "checkpoints" / "epoch_001.pt").is_file()


@pytest.mark.slow
def test_cli_errors_are_one_line(tmp_path):
    r = run("-m", "vico.train", "--task", "listener", "--data", str(tmp_path / "nope"), "--output_path",
            str(tmp_path / "o"), check=False)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines()[-1] == f"error: {tmp_path / 'nope' / 'features'}: features folder not found " \
        "(run the preprocess stage, or pass --features)"
    assert "Traceback" not in r.stderr
    r = run("-m", "vico.train", "--task", "listener", "--data", str(tmp_path), "--output_path", str(tmp_path / "o"),
            "--resume", str(tmp_path / "missing.pt"), check=False)
    assert r.returncode == 2 and r.stderr.strip() == f"error: {tmp_path / 'missing.pt'}: checkpoint not found"
