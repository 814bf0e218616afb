"""LMDB layout (upstream-spec 4.1), prepare_vox_lmdb CLI robustness, driving windows."""
from __future__ import annotations

import io
import json

import lmdb
import numpy as np
import pytest
from PIL import Image

from common.media import read_video
from PIRender.data.vox_lmdb import VoxLMDB, coeff_260, encode_frame, format_key
from PIRender.engine.render import driving_windows


def test_format_key():
    assert format_key("ab.listener", 12) == b"ab.listener-0000012"
    assert format_key("ab.listener", "length") == b"ab.listener-length"
    assert format_key("length") == b"length"
    assert format_key("x", "coeff_3dmm") == b"x-coeff_3dmm"


def test_driving_windows_order_and_clamping():
    n = 5
    coeff = np.arange(n * 260, dtype=np.float32).reshape(n, 260)
    w = driving_windows(coeff)
    assert w.shape == (n, 73, 27) and w.dtype == np.float32
    # rows: exp 80:144, angle 224:227, trans 254:257, crop 257:260 (PIRender order)
    cols = np.r_[80:144, 224:227, 254:257, 257:260]
    for i in (0, 2, 4):
        frames = np.clip(np.arange(i - 13, i + 14), 0, n - 1)
        np.testing.assert_array_equal(w[i], coeff[frames][:, cols].T)
    assert w[0, 0, 0] == coeff[0, 80] and w[0, 64, 26] == coeff[4, 224]


def _raw(db_dir) -> dict[bytes, bytes]:
    env = lmdb.open(str(db_dir), readonly=True, lock=False)
    with env.begin() as txn:
        out = {bytes(k): bytes(v) for k, v in txn.cursor()}
    env.close()
    return out


def test_prepare_layout(tiny_dataset, run_cli, tmp_path, pir_helpers):
    from scipy.io import loadmat

    root = tiny_dataset(n_frames=3, size=64)
    out = tmp_path / "new" / "lmdb"  # parent does not exist: created
    r = run_cli("PIRender.prepare_vox_lmdb", "--path", root / "videos", "--coeff_3dmm_path", root / "recons",
                "--out", out, "--sizes", "64", "32", "--n_worker", "2")
    assert r.returncode == 0, r.stderr
    names = ["u1.listener", "u1.speaker"]
    assert (out / "test_list.txt").read_text().split() == names
    assert (out / "train_list.txt").read_text() == ""
    for size in (64, 32):
        kv = _raw(out / str(size))
        expect = {b"length"} | {format_key(n, k) for n in names for k in ("length", "coeff_3dmm", 0, 1, 2)}
        assert set(kv) == expect
        assert kv[b"length"] == b"0000002"
        for n in names:
            assert kv[format_key(n, "length")] == b"0000003"
            m = loadmat(root / "recons" / "test" / f"{n}.mat")
            coeff = np.frombuffer(kv[format_key(n, "coeff_3dmm")], dtype="<f4").reshape(3, 260)
            np.testing.assert_array_equal(coeff[:, :257], m["coeff"].astype(np.float32))
            np.testing.assert_array_equal(coeff[:, 257:], m["transform_params"][:, 2:5].astype(np.float32))
            frames = read_video(root / "videos" / f"{n}.mp4")
            for i in range(3):
                data = kv[format_key(n, i)]
                assert data[:2] == b"\xff\xd8"  # JPEG
                img = Image.open(io.BytesIO(data))
                assert img.size == (size, size) and img.mode == "RGB"
                assert data == encode_frame(frames[i], size)  # bicubic resize, PIL default quality
    with VoxLMDB(out, size=64) as db:
        assert db.names == names
        assert db.coeffs("u1.speaker").shape == (3, 260)
        assert db.frame("u1.speaker", 2).shape == (64, 64, 3)
    report = json.loads((out / "run.json").read_text())
    assert report["counts"] == {"done": 2, "skipped": 0, "failed": 0}


def test_prepare_mismatch_bad_file_and_rerun(tiny_dataset, run_cli, tmp_path, pir_helpers):
    root = tiny_dataset(n_frames=3, size=64, names=("a.speaker", "a.listener", "b.speaker"),
                        coeff_rows={"a.listener": 4})
    (root / "recons" / "test" / "b.speaker.mat").write_bytes(b"not a mat file")
    (root / "videos" / "c.listener.mp4").write_bytes(b"")  # no coefficients: skipped, not failed
    out = tmp_path / "lmdb"
    args = ["--path", root / "videos", "--coeff_3dmm_path", root / "recons", "--out", out, "--sizes", "64",
            "--n_worker", "1"]
    r = run_cli("PIRender.prepare_vox_lmdb", *args)
    assert r.returncode == 1
    report = json.loads((out / "run.json").read_text())
    fails = {f["item"]: f["reason"] for f in report["failures"]}
    assert set(fails) == {"a.listener", "b.speaker"}
    assert "frame-count mismatch" in fails["a.listener"] and "3 frames" in fails["a.listener"]
    assert "4 coefficient rows" in fails["a.listener"]
    assert "b.speaker.mat" in fails["b.speaker"]
    assert {s["item"]: s["reason"] for s in report["skipped"]} == {"c.listener": "no coefficient file"}
    kv = _raw(out / "64")
    assert not any(k.startswith((b"a.listener", b"b.speaker")) for k in kv)  # nothing partial
    assert kv[b"length"] == b"0000001"
    assert (out / "test_list.txt").read_text().split() == ["a.speaker"]
    # fix one input and re-run: the packed video is skipped, the fixed one added
    pir_helpers.write_mat(root / "recons" / "test" / "a.listener.mat", *pir_helpers.make_coeffs(3, 64, 5))
    (root / "recons" / "test" / "b.speaker.mat").unlink()
    r = run_cli("PIRender.prepare_vox_lmdb", *args)
    assert r.returncode == 0, r.stderr
    report = json.loads((out / "run.json").read_text())
    assert [d["item"] for d in report["done"]] == ["a.listener"]
    assert {s["item"] for s in report["skipped"]} == {"a.speaker", "b.speaker", "c.listener"}
    assert (out / "test_list.txt").read_text().split() == ["a.listener", "a.speaker"]
    assert _raw(out / "64")[b"length"] == b"0000002"


def test_prepare_bad_arguments(run_cli, tmp_path):
    r = run_cli("PIRender.prepare_vox_lmdb", "--path", tmp_path / "nothing", "--coeff_3dmm_path", tmp_path,
                "--out", tmp_path / "o")
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert lines[-1].startswith("error: ") and "nothing" in lines[-1] and "Traceback" not in r.stderr


def test_reader_rejects_wrong_coefficient_size(tmp_path):
    from PIRender.data.vox_lmdb import open_env

    env = open_env(tmp_path / "256", write=True)
    with env.begin(write=True) as txn:
        txn.put(b"v-length", b"0000003")
        txn.put(b"v-coeff_3dmm", np.zeros((2, 260), "<f4").tobytes())
    env.close()
    from common.io import UserError

    with VoxLMDB(tmp_path) as db:
        assert db.names == ["v"]
        with pytest.raises(UserError, match="520 floats, expected 3 frames x 260"):
            db.coeffs("v")


def test_coeff_260_checks():
    with pytest.raises(ValueError):
        coeff_260(np.zeros((3, 256)), np.zeros((3, 5)))
    out = coeff_260(np.ones((2, 257)), np.arange(10.0).reshape(2, 5))
    assert out.dtype == np.dtype("<f4") and out[1, 257:].tolist() == [7.0, 8.0, 9.0]
