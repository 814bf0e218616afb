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
