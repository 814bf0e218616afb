"""vico.eval end to end: the original .mat layout, both checkpoint formats, skip, bad clips."""
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

from common.io import UserError
from vico.data import load_clip, load_stats
from vico.eval import main as eval_main
from vico.inference import predict_batch
from vico.models import CONFIGS, build_model
from vico.train import main as train_main

from .conftest import make_features

ROOT = Path(__file__).resolve().parents[2]
# tiny models: one thread each avoids OpenMP oversubscription when tests share the cores
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    base = tmp_path_factory.mktemp("vicoeval")
    d = base / "data"
    make_features(d, (40, 33), "train", seed=0)
    make_features(d, (45, 33, 31), "test", seed=1)
    assert train_main(["--task", "listener", "--data", str(d), "--output_path", str(base / "run"),
                       "--max_epochs", "1", "--time_size", "30", "--batch_size", "8"]) == 0
    return d, base / "run" / "checkpoints" / "epoch_001.pt"


def _eval_cli(*args, check=True):
    r = subprocess.run([sys.executable, "-m", "vico.eval", *args], cwd=ROOT, capture_output=True, text=True,
                       timeout=300)
    if check and r.returncode != 0:
        raise AssertionError(r.stderr[-3000:])
    return r


@pytest.mark.slow
def test_eval_writes_original_layout(trained, tmp_path):
    d, ckpt = trained
    out = tmp_path / "ev"
    _eval_cli("--task", "listener", "--data", str(d), "--resume", str(ckpt), "--output_path", str(out),
              "--batch_size", "2")
    files = sorted((out / "recon_coeffs" / "test").iterdir())
    assert [f.name for f in files] == [f"test00{i}x.listener.mat" for i in range(3)]
    # expected values, computed here from the checkpoint and the feature files
    ck = torch.load(ckpt, weights_only=False)
    model = build_model(CONFIGS["baseline_listener"]).eval()
    model.load_state_dict(ck["model"])
    f = d / "features"
    v_mean = torch.load(f / "video_feats_mean_std.bin", weights_only=False)["angle.exp.trans"]
    for i, n in enumerate((45, 33, 31)):
        m = loadmat(files[i])
        coeff, tp = m["coeff"], m["transform_params"]
        assert coeff.shape == (n, 257) and coeff.dtype == np.float32
        assert tp.shape == (n, 5) and tp.dtype == np.float64
        gt = torch.load(f / "video_feats" / f"test00{i}x.listener.bin", weights_only=False)
        dyn, fixed = gt["angle.exp.trans"], gt["id.gamma.tex"]
        # frame 0 is the ground truth; id / gamma / tex are the ground truth at every frame
        np.testing.assert_array_equal(coeff[0, 80:144], dyn[0, 3:67])
        np.testing.assert_array_equal(coeff[0, 224:227], dyn[0, :3])
        np.testing.assert_array_equal(coeff[:, :80], fixed[:, :80])
        np.testing.assert_array_equal(coeff[:, 144:224], fixed[:, 107:187])
        np.testing.assert_array_equal(coeff[:, 227:254], fixed[:, 80:107])
        np.testing.assert_array_equal(tp[:, :2], 256.0)
        np.testing.assert_allclose(tp[0, 2:], dyn[0, 70:73], rtol=1e-7)
        clip = load_clip(f, f"test00{i}x", load_stats(f, 45), 45)
        with torch.no_grad():
            p = model(torch.from_numpy(clip.audio)[None], torch.from_numpy(clip.dyn["speaker"])[None],
                      torch.from_numpy(clip.dyn["listener"][0])[None])[0, : n - 1].numpy()
        p = p * v_mean["std"].numpy() + v_mean["mean"].numpy()
        np.testing.assert_allclose(coeff[1:, 224:227], p[:, :3], atol=1e-5)
        np.testing.assert_allclose(coeff[1:, 80:144], p[:, 3:67], atol=1e-5)
        np.testing.assert_allclose(coeff[1:, 254:257], p[:, 67:70], atol=1e-5)
        np.testing.assert_allclose(tp[1:, 2:], p[:, 70:73], atol=1e-5)
    rep = json.loads((out / "run.listener.json").read_text())
    assert rep["counts"] == {"done": 3, "skipped": 0, "failed": 0} and rep["config"]["checkpoint_epoch"] == 1

    # the original checkpoint format (module.-prefixed, no config) gives the same files
    orig = tmp_path / "Epoch_001.bin"
    torch.save({f"module.{k}": v for k, v in ck["model"].items()}, orig)
    assert eval_main(["--task", "listener", "--data", str(d), "--resume", str(orig),
                      "--output_path", str(tmp_path / "ev2")]) == 0
    for a in files:
        b = tmp_path / "ev2" / "recon_coeffs" / "test" / a.name
        np.testing.assert_allclose(loadmat(b)["coeff"], loadmat(a)["coeff"], atol=1e-6)

    # re-running skips complete outputs; --overwrite redoes them
    stamp = files[0].stat().st_mtime_ns
    assert eval_main(["--task", "listener", "--data", str(d), "--resume", str(ckpt), "--output_path", str(out)]) == 0
    assert json.loads((out / "run.listener.json").read_text())["counts"]["skipped"] == 3
    assert files[0].stat().st_mtime_ns == stamp
    assert eval_main(["--task", "listener", "--data", str(d), "--resume", str(ckpt), "--output_path", str(out),
                      "--overwrite"]) == 0
    assert json.loads((out / "run.listener.json").read_text())["counts"]["done"] == 3


def test_predictions_do_not_depend_on_batching(trained):
    d, _ = trained
    f = d / "features"
    clips = [load_clip(f, f"test00{i}x", load_stats(f, 45), 45) for i in range(3)]
    for name in ("baseline_speaker", "residual_listener"):
        torch.manual_seed(0)
        m = build_model(CONFIGS[name]).eval()
        task = CONFIGS[name].family
        together = predict_batch(m, clips, task)
        alone = [predict_batch(m, [c], task)[0] for c in clips]
        assert [p.shape for p in together] == [(44, 73), (32, 73), (30, 73)]
        for a, b in zip(together, alone):
            np.testing.assert_allclose(a, b, atol=1e-5)


@pytest.mark.slow
def test_eval_bad_clip_and_bad_checkpoint(trained, tmp_path):
    d, ckpt = trained
    bad = tmp_path / "data"
    make_features(bad, (40, 33), "test", seed=3)
    torch.save({"angle.exp.trans": np.zeros((32, 73), np.float32), "id.gamma.tex": np.zeros((32, 187), np.float32)},
               bad / "features" / "video_feats" / "test001x.speaker.bin")
    out = tmp_path / "ev"
    code = eval_main(["--task", "listener", "--data", str(bad), "--resume", str(ckpt), "--output_path", str(out)])
    rep = json.loads((out / "run.listener.json").read_text())
    assert code == 1 and rep["counts"]["done"] == 1 and rep["failures"][0]["item"] == "test001x"
    assert "test001x.speaker.bin: 32 frames but the audio features test001x.npy have 33" in rep["failures"][0]["reason"]
    assert os.listdir(out / "recon_coeffs" / "test") == ["test000x.listener.mat"]  # nothing partial
    # features of another audio feature set than the model was trained on
    (bad / "features" / "audio_feats" / "feature_set.json").write_text('{"feature_set": "vico45_context", "dim": 45}')
    with pytest.raises(UserError, match="audio features are 'vico45_context' but the model was configured/trained on 'vico45'"):
        eval_main(["--task", "listener", "--data", str(bad), "--resume", str(ckpt), "--output_path", str(out)])
    # a speaker checkpoint given for the listener task, and a file that is no checkpoint
    r = _eval_cli("--task", "speaker", "--data", str(d), "--resume", str(ckpt), "--output_path", str(out),
                  check=False)
    assert r.returncode == 2 and r.stderr.strip() == f"error: {ckpt}: holds a listener model but --task is speaker"
    junk = tmp_path / "junk.bin"
    torch.save({"module.foo": torch.zeros(3)}, junk)
    r = _eval_cli("--task", "listener", "--data", str(d), "--resume", str(junk), "--output_path", str(out),
                  check=False)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
    assert "junk.bin: weights do not fit ListenerGenerator: 16 missing keys" in r.stderr
