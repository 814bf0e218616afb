"""End-to-end runs of ``python -m evaluation.evaluate`` / ``evaluation.score`` on tiny real videos."""
from __future__ import annotations

import json
import os
import shutil
import sys

import cv2
import numpy as np
import pytest
import scipy.io
import soundfile as sf
import torch

from common.media import read_video, write_video
from common.smoke_weights import make_smoke_checkpoint
from common.weights import get_spec
from evaluation.metrics.engine import EvalSettings, Evaluator
from evaluation.metrics.fid import FeatureCache
from tests.evaluation.oracle import OracleSync

N = 12  # frames per tiny video


@pytest.fixture(scope="module")
def tiny(synthetic_root, tmp_path_factory):
    """GT = first N frames of the synthetic speaker videos; predictions = copies and degraded copies."""
    root = tmp_path_factory.mktemp("eval_tiny")
    uuids = sorted(p.name.split(".")[0] for p in (synthetic_root / "videos").glob("*.speaker.mp4"))
    (root / "anno.csv").write_text("video_id,uuid\n" + "".join(f"v{i},{u}\n" for i, u in enumerate(uuids)))
    rng = np.random.default_rng(0)
    for u in uuids:
        name = f"{u}.speaker.mp4"
        frames = read_video(synthetic_root / "videos" / name)[:N]
        write_video(root / "gt" / name, frames)
        gt = read_video(root / "gt" / name)  # decoded GT, so 'same' is bit-identical after copying
        shutil.copy(root / "gt" / name, (root / "same").mkdir(exist_ok=True) or root / "same" / name)
        write_video(root / "blur" / name, np.stack([cv2.GaussianBlur(f, (9, 9), 3.0) for f in gt]))
        if u == uuids[0]:  # a 4-frame single-video set for the heavy network metrics
            for d, fr in (("gt4", gt[:4]), ("blur4", np.stack([cv2.GaussianBlur(f, (9, 9), 3.0) for f in gt[:4]]))):
                write_video(root / d / name, fr)
            (root / "same4").mkdir()
            shutil.copy(root / "gt4" / name, root / "same4" / name)
            (root / "anno4.csv").write_text(f"uuid\n{u}\n")
        noface = gt.copy()
        noface[3:6] = 128
        write_video(root / "noface" / name, noface)
        write_video(root / "short" / name, gt[: N - 2] if u == uuids[0] else gt)
        c = rng.standard_normal((N, 257)).astype(np.float32)
        for d, arr in (("gtc", c), ("pdc", c + 0.1 * rng.standard_normal(c.shape).astype(np.float32))):
            (root / d).mkdir(exist_ok=True)
            scipy.io.savemat(root / d / f"{u}.speaker.mat", {"coeff": arr, "transform_params": np.zeros((N, 5))})
    shutil.copytree(synthetic_root / "audios", root / "audios")
    for name in ("fid_inception_v3", "arcface_iresnet100", "syncnet_s"):
        make_smoke_checkpoint(name, get_spec(name).default_file(root / "weights"))
    return {"root": root, "uuids": uuids}


def _args(t, pd, out, *extra):
    r = t["root"]
    return ["--gt_video_folder", r / "gt", "--pd_video_folder", r / pd, "--anno_file", r / "anno.csv",
            "--task", "speaker", "--weights_dir", r / "weights", "--output", out, *extra]


def _results(out):
    return json.loads(out.read_text())


def test_help_shows_examples(run_cli):
    p = run_cli("evaluation.evaluate", "--help")
    assert p.returncode == 0 and "examples:" in p.stdout and "(default: default)" in p.stdout


@pytest.mark.slow
def test_identical_vs_blurred(tiny, run_cli, tmp_path):
    r = tiny["root"]

    def run(pd, out, metrics):
        args = ["--gt_video_folder", r / "gt4", "--pd_video_folder", r / pd, "--anno_file", r / "anno4.csv",
                "--weights_dir", r / "weights", "--output", out, "--metrics", metrics, "--cache_dir", tmp_path / "c"]
        p = run_cli("evaluation.evaluate", *args)
        assert p.returncode == 0, p.stderr
        return _results(out)

    same = run("same4", tmp_path / "same" / "results.json", "psnr,ssim,cpbd,fid,lipLMD,lipLMD_euclidean,coeff")
    s = same["results"]
    assert s["ssim"] == pytest.approx(1.0, abs=1e-6) and s["psnr"] == pytest.approx(80.0)
    assert s["lipLMD"] == 0 and s["lipLMD_euclidean"] == 0
    assert abs(s["fid"]) < 1e-3
    assert same["unavailable"].keys() == {"expL1", "poseL1", "expFD", "poseFD", "angleFD", "transFD"}
    assert len(list((tmp_path / "c").glob("*.npy"))) == 2  # GT Inception features and landmarks cached
    blur = tmp_path / "blur" / "results.json"
    # FID is left out here: fill-rule Inception weights barely react to blur (real weights do), and
    # its 2048-d Newton-Schulz square root costs ~10 s; the cache is tested in-process below.
    b = run("blur4", blur, "psnr,ssim,cpbd,csim,lipLMD")
    r_ = b["results"]
    assert r_["psnr"] < s["psnr"] - 20 and r_["ssim"] < s["ssim"] - 0.05 and r_["cpbd"] < s["cpbd"]
    assert r_["csim"] < 0.9999 and r_["lipLMD"] > 0  # identical frames give csim 1 (parity tests)
    assert b["n_videos"] == 1 and b["n_frames"] == 4 and b["unavailable"] == {}
    (line,) = [json.loads(x) for x in (blur.parent / "results.videos.jsonl").read_text().splitlines()]
    assert line["uuid"] == tiny["uuids"][0] and line["psnr_frames"] == 4
    assert line["gt_landmarks_cached"]  # GT landmarks of the first run were reused
    assert r_["psnr"] == pytest.approx(line["psnr"]) and r_["psnr_video_mean"] == pytest.approx(line["psnr"])
    run_json = json.loads((blur.parent / "run.json").read_text())
    assert run_json["counts"] == {"done": 1, "skipped": 0, "failed": 0}


def test_missing_weights_unavailable_then_strict(tiny, run_cli, tmp_path):
    out = tmp_path / "r.json"
    args = _args(tiny, "same", out, "--metrics", "psnr,csim,coeff", "--weights_dir", tmp_path / "none")
    p = run_cli("evaluation.evaluate", *args)
    assert p.returncode == 0, p.stderr
    res = _results(out)
    assert res["results"]["psnr"] == pytest.approx(80.0)
    assert res["results"]["csim"] is None and res["results"]["expL1"] is None
    assert "missing weights file" in res["unavailable"]["csim"] and "--arcface_weights" in res["unavailable"]["csim"]
    assert "--gt_coeff_folder" in res["unavailable"]["expFD"]
    p = run_cli("evaluation.evaluate", *args, "--strict", "--overwrite")
    assert p.returncode == 2
    err = [ln for ln in p.stderr.splitlines() if ln.startswith("error:")]
    assert len(err) == 1 and "unavailable (--strict)" in err[0] and "Traceback" not in p.stderr


def test_frame_mismatch_error_then_truncate(tiny, run_cli, tmp_path):
    out = tmp_path / "r.json"
    p = run_cli("evaluation.evaluate", *_args(tiny, "short", out, "--metrics", "psnr,ssim"))
    assert p.returncode == 1
    res, run = _results(out), json.loads((tmp_path / "run.json").read_text())
    assert res["n_videos"] == 1 and res["n_failed"] == 1
    (fail,) = run["failures"]
    assert fail["item"] == tiny["uuids"][0] and f"{N - 2} frames but the ground truth has {N}" in fail["reason"]
    p = run_cli("evaluation.evaluate", *_args(tiny, "short", out, "--metrics", "psnr,ssim", "--truncate",
                                              "--overwrite"))
    assert p.returncode == 0, p.stderr
    res = _results(out)
    assert res["truncated_videos"] == [tiny["uuids"][0]] and res["n_frames"] == 2 * N - 2
    assert 30 < res["results"]["psnr"] < 80  # 'short' is a re-encode of the GT


def test_bad_video_reported_and_rerun_skips(tiny, run_cli, tmp_path):
    pd = tmp_path / "pd"
    shutil.copytree(tiny["root"] / "same", pd)
    bad = pd / f"{tiny['uuids'][1]}.speaker.mp4"
    bad.write_bytes(b"this is not a video")
    out = tmp_path / "out" / "r.json"
    r = tiny["root"]
    args = ["--gt_video_folder", r / "gt", "--pd_video_folder", pd, "--anno_file", r / "anno.csv",
            "--metrics", "psnr,cpbd", "--output", out]
    p = run_cli("evaluation.evaluate", *args)
    assert p.returncode == 1 and "Traceback" not in p.stderr
    run = json.loads((out.parent / "run.json").read_text())
    assert run["failures"][0]["item"] == tiny["uuids"][1] and str(bad) in run["failures"][0]["reason"]
    assert _results(out)["n_videos"] == 1
    before = out.stat().st_mtime_ns
    p = run_cli("evaluation.evaluate", *args)
    assert p.returncode == 0 and out.stat().st_mtime_ns == before and "skipping" in p.stderr


def test_frames_without_face_are_counted(tiny, run_cli, tmp_path):
    out = tmp_path / "r.json"
    p = run_cli("evaluation.evaluate", *_args(tiny, "noface", out, "--metrics", "lipLMD"))
    assert p.returncode == 0, p.stderr
    res = _results(out)
    assert res["frames_without_face"] == 2 * 3
    assert 0 <= res["results"]["lipLMD"] < 3  # the remaining frames are a re-encode of the GT
    lines = [json.loads(x) for x in (tmp_path / "r.videos.jsonl").read_text().splitlines()]
    assert all(x["lipLMD_frames"] == N - 3 for x in lines)


@pytest.mark.slow
def test_lipsync_and_coefficient_metrics(tiny, run_cli, tmp_path):
    r = tiny["root"]
    u0, u1 = tiny["uuids"]
    audios = tmp_path / "audios"
    shutil.copytree(r / "audios", audios)
    (audios / f"{u0}.wav").unlink()  # fails lip sync of u0 only
    common = ["--gt_audio_folder", audios, "--gt_coeff_folder", r / "gtc", "--pd_coeff_folder", r / "pdc"]
    out = tmp_path / "a.json"
    p = run_cli("evaluation.evaluate", *_args(tiny, "same", out, "--metrics", "psnr,lipsync,coeff", *common,
                                              "--min_track", "5", "--min_face_size", "40"))
    assert p.returncode == 1 and "Traceback" not in p.stderr
    res = _results(out)["results"]
    assert res["avoffset_videos"] == 1 and res["avdist_videos"] == 1
    assert res["psnr"] == 80.0
    l0, l1 = [json.loads(x) for x in (tmp_path / "a.videos.jsonl").read_text().splitlines()]
    # 12 frames at 30 fps: ffmpeg -r 25 into an AVI keeps 0..9 and 11 (11 frames), and the AAC mux
    # of the 44.1 kHz wav repeats one frame (the original path's 25 fps sequence)
    assert l1["lipsync_frames_25fps"] == 12 and len(l1["lipsync_tracks"]) == 1
    assert l1["lipsync_frame_path"] == "original"
    (t,) = l1["lipsync_tracks"]  # one video, one track: the results are that track's numbers
    assert (res["avoffset"], res["avconf"], res["avdist"]) == (t["offset"], t["conf"], t["min_dist"])
    # (the known offset of a shifted clip is checked in test_lipsync_recovers_known_audio_shift:
    # the fill-rule SyncNet used here has no notion of sync)
    assert l0["avoffset"] is None and "expL1" in l0  # other metrics of u0 are kept
    (fail,) = json.loads((tmp_path / "run.json").read_text())["failures"]
    assert fail["item"] == u0 and "lip sync" in fail["reason"] and f"{u0}.wav" in fail["reason"]
    assert list(_results(out)["lipsync_notes"]) == [u0] and f"{u0}.wav" in _results(out)["lipsync_notes"][u0]
    # coefficient metrics by hand
    gt = np.concatenate([scipy.io.loadmat(r / "gtc" / f"{u}.speaker.mat")["coeff"] for u in tiny["uuids"]])
    pd = np.concatenate([scipy.io.loadmat(r / "pdc" / f"{u}.speaker.mat")["coeff"] for u in tiny["uuids"]])
    d = np.abs(pd.astype(np.float64) - gt)
    assert res["expL1"] == pytest.approx(d[:, 80:144].mean(), rel=1e-9)
    assert res["poseL1"] == pytest.approx(np.concatenate([d[:, 224:227], d[:, 254:257]], 1).mean(), rel=1e-9)
    assert res["expFD"] > 0 and res["poseFD"] > 0
    # the original's minimum track length (100 frames at 25 fps): reported, no crash
    out2 = tmp_path / "b.json"
    p = run_cli("evaluation.evaluate", *_args(tiny, "same", out2, "--metrics", "lipsync",
                                              "--gt_audio_folder", r / "audios"))
    assert p.returncode == 0, p.stderr
    assert _results(out2)["results"]["avoffset"] is None
    assert sorted(_results(out2)["lipsync_notes"]) == tiny["uuids"]
    lines = [json.loads(x) for x in (tmp_path / "b.videos.jsonl").read_text().splitlines()]
    assert all("no face track longer than 100" in x["lipsync_note"] for x in lines)


def test_batch_size_independent_and_deterministic(tiny):
    r = tiny["root"]

    s = EvalSettings(gt_video_folder=str(r / "gt4"), pd_video_folder=str(r / "blur4"),
                     weights_dir=str(r / "weights"), workers=1)
    ev = Evaluator(["psnr", "ssim", "cpbd"], s)  # networks: see the golden batch tests

    def run(bs):
        ev.s.batch_size = bs
        return ev.evaluate_video(tiny["uuids"][0]).record

    a, b, c = run(3), run(4), run(3)  # batches 3+1 vs one batch of 4
    assert a == c  # deterministic
    for m in ("psnr", "ssim", "cpbd"):
        assert a[m] == pytest.approx(b[m], abs=1e-6) and a[f"{m}_frames"] == 4


@pytest.mark.slow
def test_fid_gt_features_cached_by_file_identity(tiny, tmp_path):
    r = tiny["root"]
    s = EvalSettings(gt_video_folder=str(r / "gt4"), pd_video_folder=str(r / "blur4"),
                     weights_dir=str(r / "weights"), cache_dir=str(tmp_path / "cache"), workers=1)
    ev = Evaluator(["fid"], s)
    u = tiny["uuids"][0]
    first, second = ev.evaluate_video(u), ev.evaluate_video(u)
    assert not first.record["fid_gt_cached"] and second.record["fid_gt_cached"]
    np.testing.assert_allclose(second.fid_gt.s2, first.fid_gt.s2, rtol=1e-6)
    assert first.fid_gt.n == second.fid_gt.n == 4
    # the key is the file identity and the model: a new mtime or other weights miss the entry
    gt = r / "gt4" / f"{u}.speaker.mp4"
    assert ev.fid_cache.get(gt) is not None
    assert FeatureCache(tmp_path / "cache", {"network": "other"}).get(gt) is None
    st = gt.stat()
    os.utime(gt, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    try:
        assert ev.fid_cache.get(gt) is None
    finally:
        os.utime(gt, ns=(st.st_atime_ns, st.st_mtime_ns))


@pytest.mark.slow
@pytest.mark.torchrun
def test_torchrun_two_ranks_equal_single_process(tiny, run_cli, tmp_path, repo_root):
    import socket
    import subprocess

    r = tiny["root"]
    extra = ["--metrics", "psnr,ssim,cpbd,coeff", "--gt_coeff_folder", r / "gtc", "--pd_coeff_folder", r / "pdc"]
    single = tmp_path / "single" / "r.json"
    p = run_cli("evaluation.evaluate", *_args(tiny, "blur", single, *extra))
    assert p.returncode == 0, p.stderr
    multi = tmp_path / "multi" / "r.json"
    env = dict(os.environ, PYTHONPATH=str(repo_root), OMP_NUM_THREADS="1")
    # a free port, not a fixed one: another torchrun may run at the same time (xdist workers, other jobs)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(port),
           "-m", "evaluation.evaluate", *map(str, _args(tiny, "blur", multi, *extra))]
    p = subprocess.run(cmd, cwd=repo_root, env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    a, b = _results(single), _results(multi)
    assert a["n_videos"] == b["n_videos"] == 2
    for k, v in a["results"].items():
        assert b["results"][k] == pytest.approx(v, rel=1e-12), k
    assert (single.parent / "r.videos.jsonl").read_text() == (multi.parent / "r.videos.jsonl").read_text()


def test_score_cli(tiny, run_cli, tmp_path):
    vals = {"psnr": 30, "ssim": 0.9, "cpbd": 0.3, "fid": 10, "csim": 0.9, "lipLMD": 1, "avoffset": 1, "avconf": 5,
            "expL1": 0.1, "poseL1": 0.1, "expFD": 1, "poseFD": 1}
    a, b = tmp_path / "a" / "results.json", tmp_path / "b" / "results.json"
    a.parent.mkdir()
    b.parent.mkdir()
    a.write_text(json.dumps({"results": vals}))
    b.write_text(json.dumps({"results": dict(vals, psnr=31, fid=None, avoffset=-2)}))
    p = run_cli("evaluation.score", a, b, "--json", tmp_path / "rank.json")
    assert p.returncode == 0, p.stderr
    rows = [ln for ln in p.stdout.splitlines() if ln.startswith("| a") or ln.startswith("| b")]
    assert rows[0].startswith("| a |") and rows[0].endswith("| 13 |")  # 1 each, 2 for psnr
    assert rows[1].startswith("| b |") and rows[1].endswith("| 14 |") and "n/a (2)" in rows[1]
    assert json.loads((tmp_path / "rank.json").read_text())["order"] == ["a", "b"]
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    p = run_cli("evaluation.score", a, bad)
    assert p.returncode == 2 and p.stderr.strip().startswith("error:") and str(bad) in p.stderr


def test_motion_metrics_from_coefficients_alone(run_cli, tmp_path):
    """--metrics coeff needs no videos: the .mat files are the input; numbers equal the definition."""
    from common.artifacts import save_recon_mat

    rng = np.random.default_rng(3)
    (tmp_path / "gt").mkdir()
    (tmp_path / "test.csv").write_text("video_id,uuid,speaker_id,listener_id\nv,a,1,2\nv,b,1,2\n")
    gts, pds = {}, {}
    for u in ("a", "b"):
        gts[u], pds[u] = rng.normal(size=(20, 257)).astype(np.float32), rng.normal(size=(20, 257)).astype(np.float32)
        tp = np.tile([256.0, 256.0, 1.0, 0.0, 0.0], (20, 1))
        save_recon_mat(tmp_path / "gt" / f"{u}.listener.mat", gts[u], tp)
        save_recon_mat(tmp_path / "pd" / f"{u}.listener.mat", pds[u], tp)
    out = tmp_path / "motion.json"
    p = run_cli("evaluation.evaluate", "--anno_file", tmp_path / "test.csv", "--task", "listener",
                "--metrics", "coeff", "--gt_coeff_folder", tmp_path / "gt", "--pd_coeff_folder", tmp_path / "pd",
                "--output", out)
    assert p.returncode == 0, p.stderr[-2000:]
    res = json.loads(out.read_text())["results"]
    exp = np.mean([np.abs(pds[u][:, 80:144] - gts[u][:, 80:144]).mean() for u in "ab"])
    pose = np.mean([np.abs(np.concatenate([pds[u][:, 224:227] - gts[u][:, 224:227],
                                           pds[u][:, 254:257] - gts[u][:, 254:257]], 1)).mean() for u in "ab"])
    assert res["expL1"] == pytest.approx(exp, rel=1e-6) and res["poseL1"] == pytest.approx(pose, rel=1e-6)
    assert res["expFD"] > 0 and res["poseFD"] > 0
    # AngleFD / TransFD: the same Frechet distance over the 3 angle / 3 translation columns of all frames
    from evaluation.metrics.fid import frechet_distance, mean_cov
    allp, allg = np.concatenate([pds[u] for u in "ab"]), np.concatenate([gts[u] for u in "ab"])
    for key, cols in (("angleFD", slice(224, 227)), ("transFD", slice(254, 257)), ("expFD", slice(80, 144))):
        want = frechet_distance(*mean_cov(allp[:, cols]), *mean_cov(allg[:, cols]))
        assert res[key] == pytest.approx(want, rel=1e-9), key
    assert len({res["angleFD"], res["transFD"], res["poseFD"]}) == 3

    # a video metric without video folders is one clear error
    p = run_cli("evaluation.evaluate", "--anno_file", tmp_path / "test.csv", "--metrics", "psnr",
                "--output", tmp_path / "x.json")
    assert p.returncode == 2
    assert p.stderr.strip().splitlines()[-1] == ("error: no requested metric can run "
                                                 "(first: psnr needs --gt_video_folder and --pd_video_folder)")


class _BoxOnly:
    """Face backend with one fixed box (lip sync only needs boxes)."""

    def detect(self, frame):
        return [(24.0, 16.0, 40.0, 36.0)]

    def for_thread(self):
        return self


@pytest.mark.parametrize("frames", ["original", "memory"])
def test_lipsync_recovers_known_audio_shift(tiny, tmp_path, frames):
    """Audio delayed by k frames gives avoffset -k (aligned: 0), from the predicted video and the
    GT audio alone (no GT video folder), through the original's lossy frame path and without it."""
    from evaluation.lipsync.pipeline import LipSyncConfig, resample_indices
    from evaluation.metrics.lipsync import mfcc

    rng = np.random.default_rng(5)
    n, hop, lo, hi = 60, 640, 300.0, 6000.0
    bits = rng.integers(0, 2, n)
    # a 30 fps video (the pipeline's rate) whose 25 fps resampling for SyncNet shows bits[i] at frame i
    src = np.zeros(next(m for m in range(n, 2 * n) if len(resample_indices(m, 30, 25)) == n), int)
    for i, j in enumerate(resample_indices(len(src), 30, 25)):
        src[j:] = bits[i]
    write_video(tmp_path / "pd" / "clip.speaker.mp4",
                np.stack([np.full((64, 64, 3), 100 + 40 * b, np.uint8) for b in src]), fps=30)
    amp = np.repeat(np.where(bits == 1, hi, lo), hop)

    def noise(a):
        return np.clip(rng.standard_normal(len(a)) * a, -32767, 32767) / 32768.0

    (tmp_path / "aud").mkdir()
    k = 3
    sf.write(tmp_path / "aud" / "clip.wav", noise(amp), 16000, subtype="PCM_16")
    sf.write(tmp_path / "aud" / "late.wav", noise(np.concatenate([np.full(k * hop, lo), amp[:-k * hop]])), 16000,
             subtype="PCM_16")
    shutil.copy(tmp_path / "pd" / "clip.speaker.mp4", tmp_path / "pd" / "late.speaker.mp4")
    c0 = [mfcc(noise(np.full(16000, a)) * 32768.0)[:, 0].mean() for a in (lo, hi)]
    s = EvalSettings(pd_video_folder=str(tmp_path / "pd"), gt_audio_folder=str(tmp_path / "aud"),
                     weights_dir=str(tiny["root"] / "weights"), workers=1, device="cpu",
                     lipsync=LipSyncConfig(min_track=40, min_face_size=10, frames=frames))
    ev = Evaluator(["avoffset", "avconf", "avdist"], s, face_backend_factory=lambda _name: _BoxOnly())
    assert ev.unavailable == {}
    ev.nets["syncnet_s"] = OracleSync(100.0, 140.0, *c0)
    aligned, late = ev.evaluate_video("clip").record, ev.evaluate_video("late").record
    assert aligned["avoffset"] == 0 and late["avoffset"] == -k
    # zero pads give >= 2.2; the original path's MP3-coded noise raises the matched distance a little
    assert aligned["avconf"] > 0.5 and late["avconf"] > 0.5 and aligned["avdist"] < (0.6 if frames == "memory" else 1.0)
    (t,) = aligned["lipsync_tracks"]
    extra = 2 if frames == "original" else 0  # the AAC mux of a 16 kHz wav repeats 2 frames
    assert t["frames"] == n + extra and aligned["avdist"] == t["min_dist"] and "gt_frames" not in aligned
    assert aligned["lipsync_frame_path"] == frames
    # a track not longer than --lipsync_min_track: no score, and the reason
    ev.s.lipsync.min_track = n + extra
    r = ev.evaluate_video("clip").record
    assert r["avoffset"] is None and r["avdist"] is None
    assert f"no face track longer than {n + extra} frames at 25 fps ({n + extra} frames here" in r["lipsync_note"]


def test_docs_adding_a_metric_example_runs(tiny, repo_root):
    """The example of docs/evaluation.md#adding-a-metric registers and is computed by the engine."""
    import re

    from evaluation.metrics import registry

    text = (repo_root / "docs" / "evaluation.md").read_text()
    code = re.search(r"## Adding a metric.*?```python\n(.*?)```", text, re.S).group(1)
    exec(compile(code, "docs/evaluation.md", "exec"), {})
    try:
        r = tiny["root"]
        s = EvalSettings(gt_video_folder=str(r / "gt4"), pd_video_folder=str(r / "blur4"), workers=1)
        rec = Evaluator(["psnr", "brightnessL1"], s).evaluate_video(tiny["uuids"][0]).record
        gt = read_video(r / "gt4" / f"{tiny['uuids'][0]}.speaker.mp4").astype(np.float64)
        pd = read_video(r / "blur4" / f"{tiny['uuids'][0]}.speaker.mp4").astype(np.float64)
        want = np.abs(pd.mean(axis=(1, 2, 3)) - gt.mean(axis=(1, 2, 3))).mean()
        assert rec["brightnessL1"] == pytest.approx(want, rel=1e-9) and rec["brightnessL1_frames"] == 4
        assert rec["psnr_frames"] == 4
    finally:
        registry._REGISTRY.pop("brightnessL1", None)
