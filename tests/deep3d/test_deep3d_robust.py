"""Bad inputs: failures recorded in run.json, the others complete, non-zero exit, no partial
outputs; one-line errors for a missing checkpoint; still images as one-frame videos; torchrun."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import scipy.io

from Deep3DFaceRecon_pytorch.data.keypoints import load_keypoints, save_keypoints

from .conftest import make_tiny_inputs

KP = "Deep3DFaceRecon_pytorch.extract_kp_videos"
RECON = "Deep3DFaceRecon_pytorch.face_recon_videos"


def _no_temp_files(folder):
    return [p for p in folder.rglob(".*") if p.is_file()] == []


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, golden):
    root = tmp_path_factory.mktemp("d3d_tiny")
    files = make_tiny_inputs(root / "videos", golden)
    (root / "videos" / "test" / "corrupt.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"junk" * 200)
    return root, files


@pytest.mark.slow
def test_bad_video_is_recorded_and_the_others_complete(tiny, run_cli, recon_checkpoint, golden):
    root, files = tiny
    kp = run_cli(KP, "--input_dir", root / "videos", "--output_dir", root / "kp")
    assert kp.returncode == 1
    report = json.loads((root / "kp" / "run.json").read_text())
    assert report["counts"] == {"done": 3, "skipped": 0, "failed": 1}
    assert report["failures"][0]["item"] == "test/corrupt" and "corrupt.mp4" in report["failures"][0]["reason"]
    assert not (root / "kp" / "test" / "corrupt.txt").exists() and _no_temp_files(root / "kp")
    assert load_keypoints(root / "kp" / "test" / "a.speaker.txt").shape == (5, 68, 2)
    # The still image is a one-frame video with the golden dlib landmarks.
    still = load_keypoints(root / "kp" / "test" / "still.txt")
    np.testing.assert_array_equal(still[0], np.load(golden / "recon_align.npz")["lm68_xy_ydown"])

    # A keypoint file with the wrong frame count for b: a per-video error, no partial .mat.
    b_lm = load_keypoints(root / "kp" / "test" / "b.listener.txt")
    save_keypoints(root / "kp_bad" / "test" / "b.listener.txt", b_lm[:2])
    for name in ("a.speaker", "still"):
        (root / "kp_bad" / "test" / f"{name}.txt").write_text((root / "kp" / "test" / f"{name}.txt").read_text())
    rec = run_cli(RECON, "--input_dir", root / "videos", "--keypoint_dir", root / "kp_bad",
                  "--output_dir", root / "rec", "--checkpoint", recon_checkpoint, "--batch_size", "2")
    assert rec.returncode == 1, rec.stderr
    report = json.loads((root / "rec" / "run.json").read_text())
    assert report["counts"] == {"done": 2, "skipped": 0, "failed": 2}
    reasons = {f["item"]: f["reason"] for f in report["failures"]}
    assert "has 2 frames of landmarks" in reasons["test/b.listener"] and "3 frames" in reasons["test/b.listener"]
    assert "corrupt.txt" in reasons["test/corrupt"] and "not found" in reasons["test/corrupt"]
    assert sorted(p.name for p in (root / "rec" / "test").iterdir()) == ["a.speaker.mat", "still.mat"]
    assert _no_temp_files(root / "rec")
    assert scipy.io.loadmat(root / "rec" / "test" / "a.speaker.mat")["coeff"].shape == (5, 257)
    assert scipy.io.loadmat(root / "rec" / "test" / "still.mat")["coeff"].shape == (1, 257)

    # Fix the keypoints of b and re-run: a and still are skipped, b is done.
    save_keypoints(root / "kp_bad" / "test" / "b.listener.txt", b_lm)
    rec = run_cli(RECON, "--input_dir", root / "videos", "--keypoint_dir", root / "kp_bad",
                  "--output_dir", root / "rec", "--checkpoint", recon_checkpoint)
    report = json.loads((root / "rec" / "run.json").read_text())
    assert rec.returncode == 1 and report["counts"] == {"done": 1, "skipped": 2, "failed": 1}
    assert scipy.io.loadmat(root / "rec" / "test" / "b.listener.mat")["coeff"].shape == (3, 257)


def test_missing_checkpoint_is_one_line(tmp_path, run_cli, golden):
    make_tiny_inputs(tmp_path / "videos", golden)
    r = run_cli(RECON, "--input_dir", tmp_path / "videos", "--keypoint_dir", tmp_path / "kp",
                "--output_dir", tmp_path / "rec", "--checkpoint", tmp_path / "epoch_20.pth")
    assert r.returncode == 2
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ")
    for part in ("epoch_20.pth", "face_recon_feat0.2_augment", "--checkpoint"):
        assert part in lines[0]
    assert not (tmp_path / "rec").exists() or not list((tmp_path / "rec").rglob("*.mat"))


def test_help_shows_defaults_and_examples(run_cli):
    for mod, flag in ((KP, "--detect_every"), (RECON, "--checkpoint")):
        r = run_cli(mod, "--help")
        assert r.returncode == 0 and "examples:" in r.stdout and "(default:" in r.stdout and flag in r.stdout


def test_missing_input_dir_is_one_line(tmp_path, run_cli):
    r = run_cli(KP, "--input_dir", tmp_path / "nope", "--output_dir", tmp_path / "out")
    assert r.returncode == 2 and r.stderr.strip().count("\n") == 0 and "nope" in r.stderr


@pytest.mark.slow
@pytest.mark.torchrun
def test_torchrun_shards_and_merges(tmp_path, golden, recon_checkpoint):
    make_tiny_inputs(tmp_path / "videos", golden)
    env = dict(os.environ, PYTHONPATH=str(golden.parents[1]), OMP_NUM_THREADS="1")
    base = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m"]
    kp = subprocess.run(base + [KP, "--input_dir", str(tmp_path / "videos"), "--output_dir", str(tmp_path / "kp")],
                        env=env, capture_output=True, text=True, timeout=240, cwd=golden.parents[1])
    assert kp.returncode == 0, kp.stderr[-2000:]
    rec = subprocess.run(base + [RECON, "--input_dir", str(tmp_path / "videos"), "--keypoint_dir", str(tmp_path / "kp"),
                                 "--output_dir", str(tmp_path / "rec"), "--checkpoint", str(recon_checkpoint),
                                 "--batch_size", "2"],
                         env=env, capture_output=True, text=True, timeout=240, cwd=golden.parents[1])
    assert rec.returncode == 0, rec.stderr[-2000:]
    for d in ("kp", "rec"):
        report = json.loads((tmp_path / d / "run.json").read_text())
        assert report["config"]["world_size"] == 2
        assert report["counts"] == {"done": 3, "skipped": 0, "failed": 0}
        assert [x["item"] for x in report["done"]] == ["test/a.speaker", "test/b.listener", "test/still"]
    # Same numbers as the network run in this process on the same aligned frames.
    import torch

    from common.smoke_weights import fill_state_dict
    from Deep3DFaceRecon_pytorch.data import align
    from Deep3DFaceRecon_pytorch.data.frames import iter_media_frames
    from Deep3DFaceRecon_pytorch.models.recon_net import build_recon_net

    net = build_recon_net(fill_state_dict("deep3dfacerecon_reconnet_resnet50"))
    for name, ext in (("a.speaker", ".mp4"), ("b.listener", ".mp4"), ("still", ".png")):
        frames = np.concatenate(list(iter_media_frames(tmp_path / "videos" / "test" / f"{name}{ext}")))
        lms = load_keypoints(tmp_path / "kp" / "test" / f"{name}.txt")
        tps = np.stack([align.solve_transform(lm, 256, 256) for lm in lms])
        x = align.to_network_input(np.stack([align.align_frame(f, tp) for f, tp in zip(frames, tps)]))
        with torch.inference_mode():
            want = net(x).numpy()
        got = scipy.io.loadmat(tmp_path / "rec" / "test" / f"{name}.mat")
        np.testing.assert_allclose(got["coeff"], want, rtol=1e-4, atol=1e-4)
        np.testing.assert_array_equal(got["transform_params"], tps.astype(np.float32))
