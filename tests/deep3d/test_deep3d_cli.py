"""End to end: both CLIs as subprocesses on the synthetic dataset (dlib landmarks).

The dataset is a small one of our own (1 pair x 30 frames, same generator as the session's
``synthetic_root``) to keep the network's CPU time low."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch

from common.media import iter_frames, probe_video
from common.smoke_weights import fill_state_dict
from Deep3DFaceRecon_pytorch.data import align
from Deep3DFaceRecon_pytorch.data.keypoints import load_keypoints
from Deep3DFaceRecon_pytorch.models.recon_net import build_recon_net

KP = "Deep3DFaceRecon_pytorch.extract_kp_videos"
RECON = "Deep3DFaceRecon_pytorch.face_recon_videos"


@pytest.fixture(scope="module")
def e2e(tmp_path_factory, run_cli, recon_checkpoint):
    from common.synthetic import generate

    out = tmp_path_factory.mktemp("d3d_e2e")
    videos = Path(generate(out / "vico", pairs=1, frames=30, seed=3)) / "videos"
    kp = run_cli(KP, "--input_dir", videos, "--output_dir", out / "keypoints", "--workers", "2")
    assert kp.returncode == 0, kp.stderr
    rec = run_cli(RECON, "--input_dir", videos, "--keypoint_dir", out / "keypoints",
                  "--output_dir", out / "recons", "--checkpoint", recon_checkpoint, "--batch_size", "8")
    assert rec.returncode == 0, rec.stderr
    return {"videos": videos, "kp": out / "keypoints", "rec": out / "recons", "ckpt": recon_checkpoint}


@pytest.mark.slow
def test_every_video_gets_a_mat_with_its_frame_count(e2e):
    mp4s = sorted(e2e["videos"].rglob("*.mp4"))
    assert len(mp4s) == 2
    for mp4 in mp4s:
        rel = mp4.relative_to(e2e["videos"])
        n = probe_video(mp4).n_frames
        lm = load_keypoints(e2e["kp"] / rel.with_suffix(".txt"))
        assert lm.shape == (n, 68, 2)
        assert (lm[:, :, 0] >= 0).all(), f"dlib found no face in some frames of {mp4.name}"
        mat = scipy.io.loadmat(e2e["rec"] / rel.with_suffix(".mat"))
        assert mat["coeff"].shape == (n, 257) and mat["coeff"].dtype == np.float32
        assert mat["transform_params"].shape == (n, 5) and mat["transform_params"].dtype == np.float32
        np.testing.assert_array_equal(mat["transform_params"][:, :2], [[256, 256]] * n)
    report = json.loads((e2e["rec"] / "run.json").read_text())
    assert report["counts"] == {"done": len(mp4s), "skipped": 0, "failed": 0}


@pytest.mark.slow
def test_coefficients_equal_the_network_on_aligned_frames(e2e):
    mp4 = sorted(e2e["videos"].rglob("*.mp4"))[-1]
    rel = mp4.relative_to(e2e["videos"])
    frames = next(iter_frames(mp4, batch_size=3))  # the first 3 frames
    lm = load_keypoints(e2e["kp"] / rel.with_suffix(".txt"))
    tps = [align.solve_transform(lm[i], 256, 256) for i in range(3)]
    x = align.to_network_input(np.stack([align.align_frame_reference(f, tp) for f, tp in zip(frames, tps)]))
    with torch.inference_mode():
        want = build_recon_net(fill_state_dict("deep3dfacerecon_reconnet_resnet50"))(x).numpy()
    mat = scipy.io.loadmat(e2e["rec"] / rel.with_suffix(".mat"))
    np.testing.assert_allclose(mat["coeff"][:3], want, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(mat["transform_params"][:3], np.float32(tps), rtol=1e-6)


@pytest.mark.slow
def test_rerun_skips_finished_videos(e2e, run_cli):
    mats = sorted(e2e["rec"].rglob("*.mat"))
    before = {p: p.stat().st_mtime_ns for p in mats}
    kp = run_cli(KP, "--input_dir", e2e["videos"], "--output_dir", e2e["kp"])
    rec = run_cli(RECON, "--input_dir", e2e["videos"], "--keypoint_dir", e2e["kp"],
                  "--output_dir", e2e["rec"], "--checkpoint", e2e["ckpt"])
    assert kp.returncode == 0 and rec.returncode == 0, rec.stderr
    for d in (e2e["kp"], e2e["rec"]):
        counts = json.loads((d / "run.json").read_text())["counts"]
        assert counts == {"done": 0, "skipped": len(mats), "failed": 0}
    assert {p: p.stat().st_mtime_ns for p in mats} == before


@pytest.mark.slow
def test_detect_every_stays_close_to_every_frame_detection(e2e, run_cli, tmp_path):
    r = run_cli(KP, "--input_dir", e2e["videos"], "--output_dir", tmp_path, "--detect_every", "5")
    assert r.returncode == 0, r.stderr
    assert json.loads((tmp_path / "run.json").read_text())["config"]["detect_every"] == 5
    for txt in sorted(e2e["kp"].rglob("*.txt")):
        dense = load_keypoints(txt)
        sparse = load_keypoints(tmp_path / txt.relative_to(e2e["kp"]))
        assert sparse.shape == dense.shape
        assert np.linalg.norm(sparse - dense, axis=-1).mean() < 1.0
