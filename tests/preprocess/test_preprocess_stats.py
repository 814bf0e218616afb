"""Streaming statistics (exact merge) and the rearrange / statistics CLIs on real files."""
from __future__ import annotations

import csv

import numpy as np
import pytest
import torch

from common.coeffs import DYN_KEY, FIXED_KEY
from common.artifacts import load_video_feats, save_video_feats
from preprocess.rearrange_recon_coeffs import main as rearrange_main
from preprocess.statistics_mean_std import main as stats_main
from preprocess.stats import Moments, guard_std


def test_moments_merge_equals_numpy_any_order():
    rng = np.random.default_rng(0)
    chunks = [rng.normal(100.0, 3.0, (int(rng.integers(1, 40)), 5)) for _ in range(25)]
    ref = np.concatenate(chunks)
    for order in (range(25), rng.permutation(25)):
        m = Moments(5)
        for i in order:
            m.update(chunks[i])
        assert m.count == ref.shape[0]
        np.testing.assert_allclose(m.mean, ref.mean(0), rtol=0, atol=1e-9)
        np.testing.assert_allclose(m.std(), ref.std(0, ddof=1), rtol=0, atol=1e-9)
    # tree merge (as for per-worker partials) gives the same
    left, right = Moments(5), Moments(5)
    for c in chunks[:10]:
        left.update(c)
    for c in chunks[10:]:
        right.update(c)
    np.testing.assert_allclose(left.merge(right).std(), ref.std(0, ddof=1), atol=1e-9)
    np.testing.assert_allclose(Moments(5).merge(Moments.of(ref)).mean, ref.mean(0), atol=1e-12)


def test_guard_std():
    std, bad = guard_std(np.array([2.0, 3e-7, 0.0, np.nan, 1e-3]))
    np.testing.assert_array_equal(std, [2.0, 1.0, 1.0, 1.0, 1e-3])
    np.testing.assert_array_equal(bad, [False, True, True, True, False])


def _features(root, uuids, n, seed):
    rng = np.random.default_rng(seed)
    (root / "audio_feats").mkdir(parents=True, exist_ok=True)
    data = {"audio": {}, "video": {}}
    for u in uuids:
        a = rng.normal(2.0, 1.5, (n, 45)).astype(np.float32)
        a[:, 13:39] = rng.standard_normal((n, 26)) * 1e-7  # rounding-noise deltas, as the original
        np.save(root / "audio_feats" / f"{u}.npy", a)
        data["audio"][u] = a
        for role in ("speaker", "listener"):
            dyn = rng.normal(0.5, 2.0, (n, 73)).astype(np.float32)
            fixed = rng.normal(-1.0, 0.5, (n, 187)).astype(np.float32)
            save_video_feats(root / "video_feats" / f"{u}.{role}.bin", dyn, fixed)
            data["video"][f"{u}.{role}"] = (dyn, fixed)
    return data


@pytest.mark.slow
def test_statistics_cli_train_split_only(tmp_path, run_cli, helpers):
    feats = tmp_path / "features"
    train, test = ["aaa", "bbb", "ccc"], ["ddd"]
    data = _features(feats, train + test, 20, 0)
    with open(tmp_path / "train.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["video_id", "uuid", "speaker_id", "listener_id"])
        for u in train:
            w.writerow(["v", u, "s", "l"])
    r = run_cli("preprocess.statistics_mean_std", feats, "--split_csv", tmp_path / "train.csv")
    assert r.returncode == 0, r.stderr
    a = torch.load(feats / "audio_feats_mean_std.bin")
    v = torch.load(feats / "video_feats_mean_std.bin")
    assert a["mean"].dtype == torch.float64 and a["mean"].shape == (45,)
    assert v[DYN_KEY]["std"].dtype == torch.float32 and v[FIXED_KEY]["mean"].shape == (187,)
    ref_a = np.concatenate([data["audio"][u] for u in train]).astype(np.float64)
    ref_std = ref_a.std(0, ddof=1)
    np.testing.assert_allclose(a["mean"].numpy(), ref_a.mean(0), atol=1e-6, rtol=0)
    keep = np.r_[0:13, 39:45]
    np.testing.assert_allclose(a["std"].numpy()[keep], ref_std[keep], atol=1e-6, rtol=0)
    # near-constant dims get std 1: they normalise to ~0 instead of O(1) noise
    np.testing.assert_array_equal(a["std"].numpy()[13:39], 1.0)
    assert np.abs((ref_a[:, 13:39] - a["mean"].numpy()[13:39]) / a["std"].numpy()[13:39]).max() < 1e-5
    for k, i in ((DYN_KEY, 0), (FIXED_KEY, 1)):
        ref = np.concatenate([data["video"][f"{u}.{r}"][i] for u in train for r in ("speaker", "listener")])
        np.testing.assert_allclose(v[k]["mean"].numpy(), ref.astype(np.float64).mean(0), atol=1e-6)
        np.testing.assert_allclose(v[k]["std"].numpy(), ref.astype(np.float64).std(0, ddof=1), atol=1e-6)
    rep = helpers.run_json(feats)
    assert rep["counts"]["failed"] == 0
    assert rep["done"][-1]["guarded_dims"]["audio"] == list(range(13, 39))
    assert rep["done"][-1]["frames"] == {"audio": 60, "video": 120}

    # without a split: every clip present (test included), as the original
    assert stats_main([str(feats)]) == 0  # in-process, same entry point
    all_a = np.concatenate([data["audio"][u] for u in train + test]).astype(np.float64)
    np.testing.assert_allclose(torch.load(feats / "audio_feats_mean_std.bin")["mean"].numpy(), all_a.mean(0),
                               atol=1e-6)

    # a bad file: reported by name, nothing written, exit 1
    (feats / "audio_feats_mean_std.bin").unlink()
    np.save(feats / "audio_feats" / "bbb.npy", np.zeros((20, 44), np.float32))
    assert stats_main([str(feats), "--split_csv", str(tmp_path / "train.csv")]) == 1
    fails = helpers.run_json(feats)["failures"]
    assert [f["item"] for f in fails] == ["bbb.npy"] and "(20, 44)" in fails[0]["reason"]
    assert not (feats / "audio_feats_mean_std.bin").exists()


@pytest.mark.slow
def test_rearrange_cli(tmp_path, run_cli, helpers):
    recons, out = tmp_path / "recons", tmp_path / "video_feats"
    coeff, tp = helpers.write_mat(recons / "test" / "u1.speaker.mat", 7, seed=1)
    helpers.write_mat(recons / "train" / "deeper" / "u2.listener.mat", 5, seed=2)
    helpers.write_mat(recons / "test" / "bad.listener.mat", 5, coeff_dim=256)
    r = run_cli("preprocess.rearrange_recon_coeffs", "--input_folder", recons, "--output_folder", out)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    fails = helpers.run_json(out)["failures"]
    assert len(fails) == 1 and "bad.listener.mat" in fails[0]["reason"] and "257" in fails[0]["reason"]
    assert sorted(p.name for p in out.glob("*.bin")) == ["u1.speaker.bin", "u2.listener.bin"]
    # the original format: a dict of numpy float32 arrays; hand-indexed from the 257 layout
    d = torch.load(out / "u1.speaker.bin", weights_only=False)
    assert list(d) == [FIXED_KEY, DYN_KEY]
    assert isinstance(d[DYN_KEY], np.ndarray) and d[DYN_KEY].dtype == np.float32
    np.testing.assert_array_equal(d[DYN_KEY], np.concatenate(
        [coeff[:, 224:227], coeff[:, 80:144], coeff[:, 254:257], tp[:, 2:5]], 1))
    np.testing.assert_array_equal(d[FIXED_KEY], np.concatenate(
        [coeff[:, 0:80], coeff[:, 227:254], coeff[:, 144:224]], 1))
    assert load_video_feats(out / "u2.listener.bin")[DYN_KEY].shape == (5, 73)
    # re-run: complete outputs skipped, the bad one retried
    code = rearrange_main(["--input_folder", str(recons), "--output_folder", str(out)])
    rep = helpers.run_json(out)
    assert code == 1 and rep["counts"] == {"done": 0, "skipped": 2, "failed": 1}
