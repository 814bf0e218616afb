from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch

from common import artifacts as A
from common.io import UserError


def test_recon_mat_round_trip_and_errors(tmp_path):
    rng = np.random.default_rng(1)
    c, t = rng.random((6, 257), np.float32), rng.random((6, 5), np.float32)
    A.save_recon_mat(tmp_path / "a.speaker.mat", c, t)
    c2, t2 = A.load_recon_mat(tmp_path / "a.speaker.mat")
    np.testing.assert_array_equal(c2, c)
    np.testing.assert_array_equal(t2, t)
    assert A.recon_frame_count(tmp_path / "a.speaker.mat") == 6
    scipy.io.savemat(tmp_path / "wrong.mat", {"coeff": c[:, :200], "transform_params": t})
    with pytest.raises(UserError, match=r"wrong\.mat: 'coeff' has shape \(6, 200\)"):
        A.load_recon_mat(tmp_path / "wrong.mat")
    c[2, 5] = np.nan
    scipy.io.savemat(tmp_path / "nan.mat", {"coeff": c, "transform_params": t})
    with pytest.raises(UserError, match=r"nan\.mat: contains NaN"):
        A.load_recon_mat(tmp_path / "nan.mat")
    (tmp_path / "junk.mat").write_bytes(b"not a mat file at all")
    with pytest.raises(UserError, match=r"junk\.mat: cannot read"):
        A.load_recon_mat(tmp_path / "junk.mat")


def test_video_feats_round_trip_loads_with_weights_only(tmp_path):
    dyn, fixed = np.ones((3, 73), np.float32), np.zeros((3, 187), np.float32)
    A.save_video_feats(tmp_path / "a.bin", dyn, fixed)
    d = A.load_video_feats(tmp_path / "a.bin")
    np.testing.assert_array_equal(d["angle.exp.trans"], dyn)
    assert d["id.gamma.tex"].shape == (3, 187)
    torch.save({"angle.exp.trans": dyn}, tmp_path / "b.bin")
    with pytest.raises(UserError, match=r"b\.bin: expected a dict with keys"):
        A.load_video_feats(tmp_path / "b.bin")


def test_mean_std_files_round_trip_and_errors(tmp_path):
    rng = np.random.default_rng(0)
    am, astd = rng.standard_normal(45), rng.random(45) + 0.1
    A.save_audio_stats(tmp_path / A.AUDIO_STATS_FILE, am, astd)
    vstats = {"angle.exp.trans": (rng.standard_normal(73), rng.random(73)),
              "id.gamma.tex": (rng.standard_normal(187), rng.random(187))}
    A.save_video_stats(tmp_path / A.VIDEO_STATS_FILE, vstats)
    assert A.has_stats(tmp_path) and not A.has_stats(tmp_path / "nothing")
    m, s = A.load_audio_stats(tmp_path / A.AUDIO_STATS_FILE, 45)
    assert m.dtype == np.float64 and np.array_equal(m, am) and np.array_equal(s, astd)  # float64 as written
    v = A.load_video_stats(tmp_path / A.VIDEO_STATS_FILE)
    for k, (m, s) in vstats.items():  # written float32
        assert np.array_equal(v[k][0], m.astype(np.float32)) and np.array_equal(v[k][1], s.astype(np.float32))
    with pytest.raises(UserError, match=r"audio_feats_mean_std.bin: statistics have shape \(45,\), expected \(47,\)"):
        A.load_audio_stats(tmp_path / A.AUDIO_STATS_FILE, 47)
    A.save_audio_stats(tmp_path / "swapped.bin", am, astd)  # an audio file where the video one belongs
    with pytest.raises(UserError, match=r"swapped.bin: not a mean/std file \(expected \{'angle.exp.trans'"):
        A.load_video_stats(tmp_path / "swapped.bin")
    assert A.audio_feats_path(tmp_path, "u1") == tmp_path / "audio_feats" / "u1.npy"
    assert A.video_feats_path(tmp_path, "u1.speaker") == tmp_path / "video_feats" / "u1.speaker.bin"
    assert A.feature_set_path(tmp_path) == tmp_path / "audio_feats" / "feature_set.json"


def test_checkpoint_features_record(tmp_path):
    ckdir = tmp_path / "run" / "checkpoints"
    ckdir.mkdir(parents=True)
    torch.save({"model": {}, A.CHECKPOINT_FEATURES_KEY: "/data/features"}, ckdir / "epoch_001.pt")
    (ckdir / A.LATEST).write_text("epoch_001.pt\n")
    for given in (ckdir / A.LATEST, ckdir, tmp_path / "run", ckdir / "epoch_001.pt"):
        assert A.checkpoint_features(given) == Path("/data/features")
    torch.save({"model": {}}, ckdir / "old.pt")  # written before the record existed
    assert A.checkpoint_features(ckdir / "old.pt") is None
    (ckdir / A.LATEST).write_text("epoch_009.pt\n")
    with pytest.raises(UserError, match="latest: points to epoch_009.pt, which does not exist"):
        A.checkpoint_features(ckdir)
    (ckdir / "bad.pt").write_text("not a checkpoint")
    with pytest.raises(UserError, match=r"bad.pt: not a readable checkpoint"):
        A.checkpoint_features(ckdir / "bad.pt")
