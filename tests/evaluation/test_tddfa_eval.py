"""CLI runs of the 3ddfa_v2 backend on smoke-test weights: extract_kp_videos --backend 3ddfa_v2,
evaluate --landmarks 3ddfa_v2 (LipLMD) and --tddfa_motion, sharing one tiny fixture."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from common.media import read_video, write_video
from common.tddfa.smoke import make_smoke_files
from evaluation.metrics import tddfa_motion as TM

N = 6


@pytest.fixture(scope="module")
def tiny(golden, tmp_path_factory):
    """2 clips x 6 frames (the golden 256x256 face, moving); predictions: clip a = a copy of its
    ground truth, clip b = the ground truth shifted by 6 px; smoke-test 3DDFA_V2 files."""
    root = tmp_path_factory.mktemp("tddfa_eval")
    frame = np.load(golden / "recon_align.npz")["frame_rgb"]
    for u, step in (("a", 1), ("b", 2)):
        name = f"{u}.speaker.mp4"
        write_video(root / "gt" / name, np.stack([np.roll(frame, (step * i, i), axis=(0, 1)) for i in range(N)]))
        if u == "a":
            (root / "pd").mkdir(exist_ok=True)
            shutil.copy(root / "gt" / name, root / "pd" / name)
        else:
            write_video(root / "pd" / name, np.roll(read_video(root / "gt" / name), 6, axis=2))
    (root / "anno.csv").write_text("uuid\na\nb\n")
    make_smoke_files(root / "weights")
    return root


@pytest.mark.slow
def test_extract_kp_videos_3ddfa_v2(tiny, run_cli, tmp_path):
    from common.faces import get_backend

    p = run_cli("Deep3DFaceRecon_pytorch.extract_kp_videos", "--input_dir", tiny / "gt", "--output_dir", tmp_path,
                "--backend", "3ddfa_v2", "--weights_dir", tiny / "weights")
    assert p.returncode == 0, p.stderr
    run = json.loads((tmp_path / "run.json").read_text())
    assert not run["failures"]
    be = get_backend("3ddfa_v2", weights_dir=tiny / "weights")
    for u in ("a", "b"):
        flat = np.loadtxt(tmp_path / f"{u}.speaker.txt")
        lms, _, found = be.track(read_video(tiny / "gt" / f"{u}.speaker.mp4"))
        assert flat.shape == (N * 68 * 2,) and found.all()
        np.testing.assert_allclose(flat.reshape(N, 68, 2), lms, rtol=1e-5, atol=1e-3)


def test_missing_tddfa_weights_is_one_line_error(tiny, tmp_path):
    from common.io import UserError
    from Deep3DFaceRecon_pytorch import extract_kp_videos

    with pytest.raises(UserError) as e:
        extract_kp_videos.main(["--input_dir", str(tiny / "gt"), "--output_dir", str(tmp_path),
                                "--backend", "3ddfa_v2", "--weights_dir", str(tmp_path / "none")])
    msg = str(e.value)
    assert "\n" not in msg and "mb1_120x120.pth" in msg and "raw.githubusercontent.com/cleardusk/3DDFA_V2" in msg


@pytest.mark.slow
def test_evaluate_lipLMD_on_3ddfa_landmarks_and_tddfa_motion(tiny, run_cli, tmp_path):
    from common.faces import get_backend

    out = tmp_path / "results.json"
    p = run_cli("evaluation.evaluate", "--gt_video_folder", tiny / "gt", "--pd_video_folder", tiny / "pd",
                "--anno_file", tiny / "anno.csv", "--task", "speaker", "--weights_dir", tiny / "weights",
                "--metrics", "lipLMD", "--landmarks", "3ddfa_v2", "--tddfa_motion", "--output", out, "--no_cache")
    assert p.returncode == 0, p.stderr
    res = json.loads(out.read_text())
    recs = {r["uuid"]: r for r in map(json.loads, (tmp_path / "results.videos.jsonl").read_text().splitlines())}
    assert set(TM.METRICS) <= set(res["results"]) and not res["unavailable"]
    # identical prediction: every distance is exactly 0
    for m in ("lipLMD", *TM.L1_METRICS):
        assert recs["a"][m] == 0.0, m
    # the shifted one: the values of the library functions on the same videos
    be = get_backend("3ddfa_v2", weights_dir=tiny / "weights")
    vals, fp, fg = TM.TddfaMotion(be).score(tiny / "gt" / "b.speaker.mp4", tiny / "pd" / "b.speaker.mp4", N)
    for m in TM.L1_METRICS:
        assert recs["b"][m] == pytest.approx(vals[m], rel=1e-6) and vals[m] > 0
    assert recs["b"]["tddfa_frames"] == N
    assert recs["b"]["lipLMD"] > 0
    # aggregate: frame-weighted L1 and Frechet distances over both clips' rows
    _, fa, ga = TM.TddfaMotion(be).score(tiny / "gt" / "a.speaker.mp4", tiny / "pd" / "a.speaker.mp4", N)
    agg = TM.aggregate([recs["a"], recs["b"]], [fa, fp], [ga, fg])
    for m in TM.METRICS:
        assert res["results"][m] == pytest.approx(agg[m], rel=1e-6, abs=1e-9), m
    assert res["results"]["expL1_3ddfa"] == pytest.approx(vals["expL1_3ddfa"] / 2, rel=1e-6)


def test_tddfa_motion_definitions():
    """The six values from hand-made parameters: exp = p[52:62], pose = p[0:12], angles in degrees."""
    gt = np.zeros((2, 62))
    gt[:, 0] = gt[:, 5] = gt[:, 10] = 1e-3          # P = s * I: angles 0
    pd = gt.copy()
    pd[:, 52:62] += 0.5                               # every expression value off by 0.5
    pd[0, 3] += 1.2                                   # one translation value in frame 0
    c, s = np.cos(np.radians(30)), np.sin(np.radians(30))
    pd[1, [0, 1, 4, 5]] = 1e-3 * np.array([c, -s, s, c])  # frame 1 rolled by 30 degrees
    rec, fp, fg = TM.video_values(pd, gt)
    assert rec["expL1_3ddfa"] == pytest.approx(0.5)
    assert rec["poseL1_3ddfa"] == pytest.approx((1.2 + 1e-3 * (2 * (1 - c) + 2 * s)) / 24)
    assert rec["angleL1_3ddfa"] == pytest.approx(30 / 6)
    assert TM.wrap_degrees(np.array([350.0, -190.0, 180.0])).tolist() == [-10.0, 170.0, -180.0]
    nan = gt.copy()
    nan[0] = np.nan                                   # no face in frame 0 of the ground truth
    rec2, fp2, _ = TM.video_values(pd, nan)
    assert rec2["tddfa_frames"] == 1 and rec2["tddfa_frames_without_face"] == 1 and len(fp2) == 1
    agg = TM.aggregate([rec], [fp], [fg])
    # mean shift 0.5 in 10 dims, equal covariances (Newton-Schulz square root: ~1e-5 relative)
    assert agg["expFD_3ddfa"] == pytest.approx(10 * 0.25, rel=1e-4)


def test_tddfa_motion_unavailable_without_weights(tiny, tmp_path):
    from evaluation.metrics.engine import EvalSettings, Evaluator

    s = EvalSettings(gt_video_folder=str(tiny / "gt"), pd_video_folder=str(tiny / "pd"), tddfa_motion=True,
                     weights_dir=str(tmp_path))
    ev = Evaluator(["psnr"], s)
    assert ev.tddfa is None and ev.active == ["psnr"]
    assert set(ev.unavailable) == set(TM.METRICS)
    assert all("missing weights file" in why and "mb1_120x120.pth" in why for why in ev.unavailable.values())
    ok = Evaluator(["psnr"], EvalSettings(gt_video_folder=str(tiny / "gt"), pd_video_folder=str(tiny / "pd"),
                                          tddfa_motion=True, weights_dir=str(tiny / "weights")))
    assert ok.tddfa is not None and not ok.unavailable
    assert ok.weight_files["tddfa_v2_bfm"].endswith("bfm_noneck_v3.pkl")
