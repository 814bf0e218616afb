"""Hand-computed checks of the lip-sync pipeline pieces, coefficient metrics and rank scoring."""
from __future__ import annotations

import os

import numpy as np
import pytest
import scipy.io

from common.io import UserError
from evaluation.lipsync.pipeline import (LipSyncConfig, Track, crop_track, cut_audio, iou, resample_indices,
                                         scene_cuts, to_pcm16, track_shot)
from evaluation.metrics.coeff_l1 import coeff_l1, exp_pose, load_coeff
from evaluation.metrics.engine import parse_metrics
from evaluation.score import rank, score


def test_resample_30_to_25_as_ffmpeg_into_avi():
    """ffmpeg 5.1's `-r 25` into an AVI (vfr sync), read off frame-numbered test videos: at 30 fps
    frames 0..9 are kept, then every sixth from 10 on is dropped; 60 fps keeps 0, 1, 3, 5, 8, ..."""
    idx = resample_indices(60, 30.0, 25.0)
    assert sorted(set(range(60)) - set(idx.tolist())) == [10, 16, 22, 28, 34, 40, 46, 52, 58]
    assert len(resample_indices(90, 30.0)) == 76 and len(resample_indices(90, 60.0)) == 39
    assert resample_indices(10, 60.0).tolist() == [0, 1, 3, 5, 8]
    assert resample_indices(25, 25.0).tolist() == list(range(25))
    assert resample_indices(90, 24.0).tolist() == list(range(90))  # vfr sync drops, never duplicates


def test_iou_and_tracking_with_a_gap():
    assert iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    assert iou((0, 0, 10, 10), (5, 0, 15, 10)) == pytest.approx(50 / 150)
    cfg = LipSyncConfig(min_track=5, min_face_size=10, num_failed_det=3)
    box = (10.0, 10.0, 40.0, 40.0)
    dets = [[box] if i not in (4, 5) else [] for i in range(12)]  # 2 missed frames: bridged
    dets[8].append((100.0, 100.0, 130.0, 130.0))  # a second face seen once: not a track
    tracks = track_shot(dets, start=7, cfg=cfg)
    assert len(tracks) == 1
    t = tracks[0]
    assert t.frames.tolist() == list(range(7, 19))
    np.testing.assert_allclose(t.boxes[4], box)  # interpolated over the gap
    # too small faces or too short tracks give nothing
    assert track_shot(dets, 0, LipSyncConfig(min_track=5, min_face_size=40)) == []
    assert track_shot(dets[:5], 0, cfg) == []


def test_scene_cut_and_crop_geometry():
    a = np.zeros((64, 64, 3), np.uint8)
    b = np.full((64, 64, 3), 255, np.uint8)
    frames = [a] * 20 + [b] * 20
    assert scene_cuts(frames, 30.0, 15) == [(0, 20), (20, 40)]
    assert scene_cuts(frames, 30.0, 25) == [(0, 40)]
    img = np.zeros((100, 100, 3), np.uint8)
    img[40:60, 40:60] = (255, 0, 0)  # red square in RGB
    t = Track(frames=np.arange(3), boxes=np.tile([40.0, 40.0, 60.0, 60.0], (3, 1)))
    crops = crop_track([img] * 3, t, 0.4)
    assert crops.shape == (3, 224, 224, 3)
    # bs = 10: rows [40, 68), cols [36, 64): the square fills the top 20/28 rows; BGR order
    assert crops[0, 10, 112].tolist() == [0, 0, 255]
    assert crops[0, 215, 112].tolist() == [0, 0, 0]
    pcm = np.arange(16000 * 2, dtype=np.float64)
    assert cut_audio(pcm, Track(np.arange(25, 50), np.zeros((25, 4)))).tolist() == list(range(16000, 32000))
    assert to_pcm16(np.array([0.5, -1.0, 1.0])).tolist() == [16384, -32768, 32767]


def test_coeff_metrics_hand_computed(tmp_path):
    gt = np.zeros((4, 257), np.float32)
    pd = gt.copy()
    pd[:, 80:144] = 0.5  # expression
    pd[:, 224:227] = 0.3  # angle
    pd[:, 254:257] = -0.1  # translation
    per = coeff_l1(pd.astype(np.float64), gt.astype(np.float64))
    np.testing.assert_allclose(per["expL1"], 0.5)
    np.testing.assert_allclose(per["poseL1"], 0.2, rtol=1e-6)
    e, p = exp_pose(pd.astype(np.float64))
    assert e.shape == (4, 64) and p.shape == (4, 6)
    f = tmp_path / "x.mat"
    scipy.io.savemat(f, {"coeff": pd, "transform_params": np.zeros((4, 5))})
    np.testing.assert_array_equal(load_coeff(f), pd)
    scipy.io.savemat(f, {"coeff": pd[:, :70], "transform_params": np.zeros((4, 5))})
    with pytest.raises(UserError, match=r"x\.mat: 'coeff' has shape"):
        load_coeff(f)
    f.write_bytes(b"not a mat file")
    with pytest.raises(UserError, match=r"x\.mat: cannot read"):
        load_coeff(f)


def test_aligned_face_maps_landmarks_onto_the_arcface_template():
    from evaluation.metrics.csim import ARCFACE_TEMPLATE, aligned_face, five_points

    lm = np.zeros((68, 2))
    src = ARCFACE_TEMPLATE * 2.0 + [30.0, 10.0]  # the template, scaled and moved
    lm[36:42], lm[42:48], lm[30], lm[48], lm[54] = src[0], src[1], src[2], src[3], src[4]
    np.testing.assert_allclose(five_points(lm), src)
    frame = np.zeros((300, 300, 3), np.uint8)
    x, y = (src[2] + 0.5).astype(int)
    frame[y - 3:y + 4, x - 3:x + 4] = 255  # a white blob on the nose tip
    face = aligned_face(frame, lm)
    assert face.shape == (112, 112, 3)
    ny, nx = np.argwhere(face[..., 0] > 128).mean(0)
    assert abs(nx - ARCFACE_TEMPLATE[2, 0]) < 1.0 and abs(ny - ARCFACE_TEMPLATE[2, 1]) < 1.0


def test_parse_metrics():
    assert parse_metrics("lipsync,psnr") == ["psnr", "avoffset", "avconf", "avdist"]
    assert "csim_aligned" not in parse_metrics("default") and "csim_aligned" in parse_metrics("all")
    with pytest.raises(UserError, match="unknown metric 'nope'"):
        parse_metrics("psnr,nope")


def test_rank_directions_and_rank_sum():
    assert rank([1.0, 3.0, 2.0], "max") == [3, 1, 2]
    assert rank([1.0, 3.0, 1.0], "min") == [1, 3, 1]
    assert rank([-1.0, 2.0, 0.0], "abs0") == [2, 3, 1]
    assert rank([None, 1.0], "min") == [2, 1]
    good = {"psnr": 30, "ssim": 0.9, "cpbd": 0.3, "fid": 10, "csim": 0.9, "lipLMD": 1, "avoffset": 0, "avconf": 5,
            "expL1": 0.1, "poseL1": 0.1, "expFD": 1, "poseFD": 1}
    bad = {k: (v * 2 if k in ("fid", "lipLMD", "expL1", "poseL1", "expFD", "poseFD") else v / 2) for k, v in good.items()}
    bad["avoffset"] = -3
    r = score({"bad": bad, "good": good})
    assert r["score"] == {"good": 12, "bad": 24}
    assert r["order"] == ["good", "bad"]


def _table():
    """Five entries on the 12 rank-sum metrics plus AngleFD/TransFD; PSNR is a 3-way tie for first."""
    rng = np.random.default_rng(7)
    keys = ["psnr", "ssim", "cpbd", "fid", "csim", "lipLMD", "avoffset", "avconf", "expL1", "poseL1", "expFD",
            "poseFD", "angleFD", "transFD"]
    t = {n: {k: float(rng.integers(0, 4)) for k in keys} for n in "ABCDE"}  # small integers: many ties
    for n, v in zip("ABCDE", (31.0, 31.0, 31.0, 29.0, 28.0)):
        t[n]["psnr"] = v
    t["E"]["avoffset"] = -2.0  # |x| ranks: -2 ties with 2
    return t


def test_rank_sum_ties_average_truncated_like_pandas():
    from scipy.stats import rankdata

    from evaluation.metrics.registry import rank_sum_metrics

    t = _table()
    assert rank([31.0, 31.0, 31.0, 29.0, 28.0], "max") == [2, 2, 2, 4, 5]  # (1+2+3)/3 = 2
    assert rank([31.0, 31.0, 31.0, 29.0, 28.0], "max", ties="min") == [1, 1, 1, 4, 5]
    assert rank([1.0, 2.0, 2.0, 3.0], "min") == [1, 2, 2, 4]  # (2+3)/2 = 2.5 -> 2
    names = list(t)
    ref = dict.fromkeys(names, 0)
    key = {"max": lambda v: -v, "min": lambda v: v, "abs0": abs}
    for m, d in rank_sum_metrics().items():  # scoring_example.py: data[k].apply(v).rank().apply(int)
        for n, r in zip(names, rankdata([key[d](t[n][m]) for n in names], method="average")):
            ref[n] += int(r)
    res = score(t)
    assert res["score"] == ref and res["rule"] == "rank_sum" and len(res["metrics"]) == 12
    assert res["ranks"]["A"]["psnr"] == res["ranks"]["C"]["psnr"] == 2
    mins = score(t, ties="min")
    assert mins["ranks"]["B"]["psnr"] == 1 and all(mins["score"][n] <= ref[n] for n in names)
    assert mins["score"]["A"] < ref["A"]  # the 3-way tie alone gives A one point less


def test_num_top1_counts_leaderboard_columns_with_ties():
    t = _table()
    for n in t:
        t[n].update(expL1=0.0 if n == "D" else 5.0, poseL1=0.0 if n == "D" else 5.0)  # not leaderboard columns
    res = score(t, rule="num_top1", task="speaker")
    assert res["metrics"] == ["psnr", "ssim", "cpbd", "fid", "csim", "lipLMD", "avoffset", "avconf", "expFD",
                              "angleFD", "transFD"]
    signed = {m: (lambda v: -v) for m in ("psnr", "ssim", "cpbd", "csim", "avconf")}
    signed["avoffset"] = abs
    for n in t:
        want = [m for m in res["metrics"]
                if signed.get(m, float)(t[n][m]) == min(signed.get(m, float)(t[o][m]) for o in t)]
        assert sorted(res["top1"][n]) == sorted(want), n
        assert res["score"][n] == len(want)
    assert {"psnr"} <= set(res["top1"]["A"]) & set(res["top1"]["B"]) & set(res["top1"]["C"])  # 3-way tie counts 3x
    assert res["order"] == sorted(t, key=lambda n: (-res["score"][n], n))
    lst = score(t, rule="num_top1", task="listener")
    assert lst["metrics"] == ["psnr", "ssim", "cpbd", "fid", "csim", "expFD", "angleFD", "transFD"]
    assert score({"x": {"psnr": None}, "y": {"psnr": 1.0}}, rule="num_top1")["top1"] == {"x": [], "y": ["psnr"]}


def test_registry_checks_declarations_and_loads_plugins(tmp_path, repo_root):
    import subprocess
    import sys

    from evaluation.metrics import registry
    from evaluation.metrics.registry import Metric, register

    ok = dict(direction="min", kind="frame", needs=frozenset({"frames"}), update=lambda b: [])
    registry.metrics()
    with pytest.raises(ValueError, match="already registered"):
        register(Metric("psnr", **ok))
    with pytest.raises(ValueError, match="both a metric and a group"):
        register(Metric("coeff", **ok))
    with pytest.raises(ValueError, match="direction"):
        register(Metric("x1", **dict(ok, direction="up")))
    with pytest.raises(ValueError, match="needs"):
        register(Metric("x2", **dict(ok, needs=frozenset({"video"}))))
    with pytest.raises(ValueError, match="new_state, merge and reduce"):
        register(Metric("x3", **dict(ok, kind="set")))
    with pytest.raises(ValueError, match="letters"):
        register(Metric("psnr_frames", **ok))
    assert not {"x1", "x2", "x3", "psnr_frames"} & set(registry.metrics())
    assert registry.directions()["avoffset"] == "abs0" and registry.directions()["avconf"] == "max"
    # an out-of-tree plugin module, named in $VICO_METRIC_PLUGINS, registers with one call
    (tmp_path / "my_metrics.py").write_text(
        "from evaluation.metrics.registry import Metric, register\n"
        "register(Metric('mine', 'max', 'video', frozenset({'coefficients'}), lambda clip: 1.0, stage='clip',"
        " leaderboard=('listener',)))\n")
    code = ("from evaluation.metrics import registry;"  # no torch: the declarations are light
            "print(list(registry.metrics())[-1], list(registry.groups()['default'][-1:]),"
            " list(registry.leaderboard_metrics('listener')))")
    env = dict(os.environ, PYTHONPATH=f"{repo_root}{os.pathsep}{tmp_path}", VICO_METRIC_PLUGINS="my_metrics")
    p = subprocess.run([sys.executable, "-c", code], cwd=repo_root, env=env, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr[-2000:]
    assert p.stdout.split("[", 1)[0].strip() == "mine" and "['mine']" in p.stdout and p.stdout.strip().endswith(
        "'transFD', 'mine']")
