"""Alignment (68 -> 5 points, POS, PIL crop), keypoint files and cross-video batching."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from common.io import UserError
from Deep3DFaceRecon_pytorch.data import align
from Deep3DFaceRecon_pytorch.data.keypoints import load_keypoints, save_keypoints
from Deep3DFaceRecon_pytorch.data.stream import VideoJob, iter_batches, prefetch


@pytest.fixture(scope="module")
def case(golden):
    return dict(np.load(golden / "recon_align.npz"))


def test_reference_points_are_the_golden_ones(case):
    np.testing.assert_array_equal(align.LM3D_STD_5, case["lm3d_std_5x3"])


def test_golden_alignment(case):
    lm = case["lm68_xy_ydown"].astype(np.float64)  # as read from a keypoint .txt
    lm5 = align.lm_to_5p_yup(lm, 256, 256)
    np.testing.assert_array_equal(lm5, case["lm5p"])
    np.testing.assert_array_equal(align.extract_5p(case["lm68_yflipped"].astype(np.float64)), case["lm5p"])
    tp = align.solve_transform(lm, 256, 256)
    np.testing.assert_allclose(tp.astype(np.float32), case["trans_params"], rtol=1e-6)
    for fn in (align.align_frame, align.align_frame_reference):
        crop = fn(case["frame_rgb"], tp)
        np.testing.assert_array_equal(crop, case["aligned_uint8"])
        np.testing.assert_allclose(align.to_network_input(crop).numpy(), case["aligned_chw_float"], atol=1e-7)
    lm_aligned = align.align_landmarks(case["lm68_yflipped"].astype(np.float64), tp)
    np.testing.assert_allclose(lm_aligned, case["lm68_aligned"], atol=1e-6)


def test_fast_crop_equals_full_resize_recipe():
    rng = np.random.default_rng(7)
    for _ in range(60):
        h, w = rng.integers(40, 300, 2)
        frame = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        tp = np.array([w, h, rng.uniform(0.4, 5.0), rng.uniform(-60, w + 60), rng.uniform(-60, h + 60)])
        np.testing.assert_array_equal(align.align_frame(frame, tp), align.align_frame_reference(frame, tp))


def test_no_face_frame_uses_reference_points():
    lm = np.full((68, 2), -1.0)
    lm5 = align.lm_to_5p_yup(lm, 200, 100)
    ref = align.LM3D_STD_5
    np.testing.assert_allclose(lm5[:, 0], (ref[:, 0] + 1) / 2 * 200)
    np.testing.assert_allclose(lm5[:, 1], (ref[:, 1] + 1) / 2 * 100)
    tp = align.solve_transform(lm, 200, 100)
    assert np.isfinite(tp).all() and tp[0] == 200 and tp[1] == 100


def test_pos_fit_recovers_a_known_projection():
    # Image points made by an exact scaled projection: s * X[:, :2] + t.
    t, s = align.pos_fit(1.7 * align.LM3D_STD_5[:, :2] + np.array([30.0, -4.0]))
    np.testing.assert_allclose(t, [30.0, -4.0], atol=1e-9)
    assert s == pytest.approx(1.7, abs=1e-9)


def test_batched_device_alignment_is_close(case):
    tp = align.solve_transform(case["lm68_xy_ydown"].astype(np.float64), 256, 256)
    frames = torch.from_numpy(np.stack([case["frame_rgb"], np.roll(case["frame_rgb"], 5, axis=1)]))
    out = align.align_batch_torch(frames, torch.from_numpy(np.stack([tp, tp])))
    assert out.shape == (2, 3, 224, 224) and out.dtype == torch.float32
    diff = (out[0].numpy() - case["aligned_chw_float"]) * 255
    assert np.abs(diff).max() <= 1.0 + 1e-4
    assert np.abs(diff).mean() < 0.01
    ref1 = align.to_network_input(align.align_frame(np.roll(case["frame_rgb"], 5, axis=1), tp)).numpy()
    assert np.abs(out[1].numpy() - ref1).max() * 255 <= 1.0 + 1e-4


def test_keypoint_file_round_trip_and_format(tmp_path):
    lm = np.random.default_rng(0).uniform(0, 255, (3, 68, 2)).astype(np.float32)
    lm[0] = -1
    p = tmp_path / "k.txt"
    save_keypoints(p, lm)
    lines = p.read_text().splitlines()
    assert len(lines) == 3 * 68 * 2 and lines[0] == "-1.000000000000000000e+00"
    assert float(lines[136]) == float(lm[1, 0, 0]) and float(lines[137]) == float(lm[1, 0, 1])
    np.testing.assert_array_equal(load_keypoints(p), lm.astype(np.float64))


@pytest.mark.parametrize("content, message", [
    ("", "empty"),
    ("1.0\n" * 100, "whole number"),
    ("abc\n", "not a keypoint file"),
    ("nan\n" * 136, "NaN"),
])
def test_bad_keypoint_files(tmp_path, content, message):
    p = tmp_path / "bad.txt"
    p.write_text(content)
    with pytest.raises(UserError, match=message) as e:
        load_keypoints(p)
    assert str(p) in str(e.value)


def _fake_jobs(tmp_path: Path, sizes: list[int], case) -> list[VideoJob]:
    from PIL import Image

    jobs = []
    lm = case["lm68_xy_ydown"]
    for i, n in enumerate(sizes):
        img = tmp_path / f"v{i}.png"
        Image.fromarray(case["frame_rgb"]).save(img)
        kp = tmp_path / f"v{i}.txt"
        save_keypoints(kp, np.repeat(lm[None], n, axis=0))
        jobs.append(VideoJob(f"v{i}", img, kp, tmp_path / f"v{i}.mat"))
    return jobs


def test_batches_cross_videos_without_empty_batch(tmp_path, case):
    # Still images are one-frame videos; three of them and batch size 2 -> sizes 2, 1.
    jobs = _fake_jobs(tmp_path, [1, 1, 1], case)
    batches = list(prefetch(iter_batches(jobs, batch_size=2)))
    assert [len(b) for b in batches] == [2, 1]
    assert batches[0].job_ids.tolist() == [0, 1] and batches[0].completed == [0, 1]
    assert batches[1].job_ids.tolist() == [2] and batches[1].completed == [2]
    assert batches[0].crops.shape == (2, 3, 224, 224)
    np.testing.assert_allclose(batches[0].crops[0].numpy(), case["aligned_chw_float"], atol=1e-7)
    # Exactly divisible: no trailing empty batch (upstream's N // bs + 1 bug).
    exact = list(iter_batches(jobs[:2], batch_size=2))
    assert [len(b) for b in exact] == [2] and exact[0].completed == [0, 1]


def test_frame_count_mismatch_is_a_per_video_failure(tmp_path, case):
    jobs = _fake_jobs(tmp_path, [1, 3, 1], case)  # job 1: 3 landmark frames for a 1-frame input
    jobs.append(VideoJob("missing", tmp_path / "missing.png", jobs[0].keypoints, tmp_path / "m.mat"))
    batches = list(iter_batches(jobs, batch_size=8))
    assert len(batches) == 1
    b = batches[0]
    assert b.job_ids.tolist() == [0, 2] and b.completed == [0, 2]
    reasons = dict(b.failed)
    assert "has 3 frames of landmarks" in reasons[1] and "1 frames" in reasons[1]
    assert "missing.png" in reasons[3]


def test_degenerate_landmarks_are_a_per_video_failure(tmp_path, case):
    jobs = _fake_jobs(tmp_path, [1, 1], case)
    save_keypoints(jobs[0].keypoints, np.zeros((1, 68, 2)))  # all points in one spot
    (b,) = iter_batches(jobs, batch_size=4)
    assert b.job_ids.tolist() == [1] and b.completed == [1]
    assert "frame 0: landmarks give a degenerate alignment" in dict(b.failed)[0]


def test_device_alignment_groups_frames_by_size(case):
    from Deep3DFaceRecon_pytorch.data.stream import Batch
    from Deep3DFaceRecon_pytorch.face_recon_videos import _align_on_device

    big = case["frame_rgb"]
    small = np.ascontiguousarray(big[::2, ::2])
    lm = case["lm68_xy_ydown"].astype(np.float64)
    tps = np.stack([align.solve_transform(lm, 256, 256), align.solve_transform(lm / 2, 128, 128),
                    align.solve_transform(lm, 256, 256)]).astype(np.float32)
    b = Batch(crops=None, frames=[big, small, big], trans=tps, job_ids=np.array([0, 1, 2]),
              frame_ids=np.zeros(3, np.int64))
    out = _align_on_device(b, torch.device("cpu")).numpy()
    for i, f in enumerate([big, small, big]):
        ref = align.to_network_input(align.align_frame(f, tps[i].astype(np.float64))).numpy()
        assert np.abs(out[i] - ref).max() * 255 <= 1.0 + 1e-4
