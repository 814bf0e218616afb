"""The challenge workflow end to end on tiny data: the released validation/test layouts
(common.synthetic), pipeline.submit under a real 2-process torchrun (sharded, resumed, zipped),
pipeline.submit --check on good and broken submissions, and the Python API example of
docs/generate.md, whose videos must equal the submission's."""
from __future__ import annotations

import csv
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import torch
import pytest
from PIL import Image

from common import media

REPO = Path(__file__).resolve().parents[2]
FRAMES = 2  # PIRender on CPU costs seconds per frame: two frames per clip keep the suite short
pytestmark = pytest.mark.slow


def _env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}


def _submit(capsys, *args) -> tuple[int, str, str]:
    """``python -m pipeline.submit ARGS`` in this process (no interpreter start-up): (exit, stdout, stderr)."""
    import logging

    from pipeline.submit import main

    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    capsys.readouterr()
    try:
        code = main([str(a) for a in args])
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
    got = capsys.readouterr()
    return code, got.out, got.err


def _run(*args, torchrun: int = 0) -> subprocess.CompletedProcess:
    launch = ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(torchrun)] if torchrun else []
    return subprocess.run([sys.executable, *launch, "-m", "pipeline.submit", *map(str, args)], cwd=REPO,
                          env=_env(), capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="session")
def challenge(tmp_path_factory) -> dict:
    """Released val and test folders (2 clips x 2 frames), smoke-test weights, speaker and listener
    checkpoints (1 epoch on small features), and one submission of the val set (torchrun, 2 ranks)."""
    import torch

    from common.faces import get_backend
    from common.synthetic import generate
    from common.smoke_weights import make_smoke_checkpoint
    from common.weights import get_spec
    from tests.vico.conftest import make_features
    from vico.train import main as train_main

    base = tmp_path_factory.mktemp("challenge")
    backend = get_backend("dlib")
    val = generate(base / "val", pairs=2, frames=FRAMES, seed=0, layout="challenge_val", backend=backend)
    test = generate(base / "test", pairs=2, frames=FRAMES, seed=0, layout="challenge_test", backend=backend)
    weights = base / "weights"
    for name in ("deep3dfacerecon_reconnet_resnet50", "pirender_face_generator"):
        make_smoke_checkpoint(name, get_spec(name).default_file(weights))
    make_features(base / "feat", (20, 16), "train", seed=0)
    torch.set_num_threads(1)
    ckpt = {}
    for task in ("speaker", "listener"):
        assert train_main(["--task", task, "--data", str(base / "feat"), "--output_path", str(base / task),
                           "--max_epochs", "1", "--time_size", "10", "--batch_size", "2", "--device", "cpu"]) == 0
        ckpt[task] = base / task / "checkpoints" / "latest"
    out = base / "sub"
    p = _run("--data", val, "--task", "both", "--team", "team-a", "--out", out, "--speaker_checkpoint",
             ckpt["speaker"], "--listener_checkpoint", ckpt["listener"], "--weights_dir", weights, "--device", "cpu",
             torchrun=2)
    assert p.returncode == 0, p.stderr[-4000:]
    uuids = [r["uuid"] for r in csv.DictReader((val / "val.csv").open())]
    return {"base": base, "val": val, "test": test, "weights": weights, "ckpt": ckpt, "out": out, "uuids": uuids,
            "log": p.stderr}


def test_released_layouts(challenge):
    val, test, uuids = challenge["val"], challenge["test"], challenge["uuids"]
    rows = list(csv.DictReader((val / "val.csv").open()))
    assert list(rows[0]) == ["video_id", "uuid", "speaker_id", "listener_id"] and len(rows) == 2
    assert [r["uuid"] for r in csv.DictReader((test / "test.csv").open())] == uuids  # same seed, same clips
    assert not (val / "train.csv").exists() and not (test / "val.csv").exists()
    for u in uuids:
        for role in ("speaker", "listener"):
            jpg = np.asarray(Image.open(val / "first_frames" / f"{u}.{role}.jpg").convert("RGB")).astype(float)
            first = media.read_video(val / "videos" / f"{u}.{role}.mp4")[0].astype(float)
            assert jpg.shape == (256, 256, 3) and np.abs(jpg - first).mean() < 3  # the GT's first frame (JPEG)
            assert (test / "first_frames" / f"{u}.{role}.jpg").is_file()
        assert media.probe_video(test / "videos" / f"{u}.speaker.mp4").n_frames == FRAMES
        assert not (test / "videos" / f"{u}.listener.mp4").exists()  # the expected result is not released
        assert (test / "audios" / f"{u}.wav").is_file()
    people = {r[k] for r in rows for k in ("speaker_id", "listener_id")}
    assert sorted(p.stem for p in (val / "ref_images").glob("*.jpg")) == sorted(people)
    assert not (test / ".gt_tmp").exists()


def test_submission_sharded_and_zipped(challenge, capsys):
    out, uuids = challenge["out"], challenge["uuids"]
    for folder, role in (("talkinghead_test_results", "speaker"), ("listeninghead_test_results", "listener")):
        assert sorted(p.name for p in (out / folder).iterdir()) == sorted(f"{u}.{role}.mp4" for u in uuids)
        for u in uuids:
            info = media.probe_video(out / folder / f"{u}.{role}.mp4")
            assert (info.n_frames, info.width, info.height, round(info.fps)) == (FRAMES, 256, 256, 30)
            assert abs(media.audio_duration(out / folder / f"{u}.{role}.mp4") - FRAMES / 30) < 0.05
        with zipfile.ZipFile(out / "zips" / folder.split("_")[0].replace("head", "_head") / "team-a_1.zip") as z:
            assert sorted(n for n in z.namelist() if not n.endswith("/")) == \
                sorted(f"{folder}/{u}.{role}.mp4" for u in uuids)
    rep = json.loads((out / "run.json").read_text())
    assert rep["counts"] == {"done": 4, "skipped": 0, "failed": 0} and rep["config"]["world_size"] == 2
    assert rep["config"]["smoke_test_weights"] and "smoke-test weights" in challenge["log"]
    rec = json.loads((out / "records" / f"{uuids[0]}.speaker.json").read_text())
    assert rec["weights"]["smoke_test"] and [s["step"] for s in rec["steps"]][-1] == "render"
    assert not (out / "work").exists() or not any((out / "work").iterdir())
    zips = sorted((out / "zips").rglob("team-a_1.zip"))
    assert len(zips) == 2
    p = _run("--check", zips[0], "--data", challenge["val"])  # the real command line once
    assert p.returncode == 0 and p.stdout == "" and "valid (2 videos checked)" in p.stderr, p.stderr
    assert _submit(capsys, "--check", zips[1], "--data", challenge["val"])[:2] == (0, "")
    assert _submit(capsys, "--check", out, "--data", challenge["val"])[:2] == (0, "")  # both result folders


def test_resume_skips_finished_clips(challenge, capsys):
    out = challenge["out"]
    video = out / "talkinghead_test_results" / f"{challenge['uuids'][0]}.speaker.mp4"
    before = video.stat().st_mtime_ns
    code, _, err = _submit(capsys, "--data", challenge["val"], "--task", "speaker", "--team", "team-a",
                           "--submission", 2, "--out", out, "--speaker_checkpoint", challenge["ckpt"]["speaker"],
                           "--weights_dir", challenge["weights"])
    assert code == 0, err[-3000:]
    assert "0 video(s) to generate, 2 already done" in err and video.stat().st_mtime_ns == before
    assert (out / "zips" / "talking_head" / "team-a_2.zip").is_file()


def test_validation_scores_in_one_command(challenge, capsys):
    """--evaluate on the validation folder: coefficients of GT and results, every metric, the
    leaderboard table per track; finished clips and steps are not redone."""
    out = challenge["out"]
    args = ["--data", challenge["val"], "--task", "both", "--team", "team-a", "--out", out, "--speaker_checkpoint",
            challenge["ckpt"]["speaker"], "--listener_checkpoint", challenge["ckpt"]["listener"],
            "--weights_dir", challenge["weights"], "--evaluate"]
    code, _, err = _submit(capsys, *args)
    assert code == 0, err[-3000:]
    ev = out / "eval"
    for task in ("speaker", "listener"):
        res = json.loads((ev / f"{task}.json").read_text())
        r = res["results"]
        assert r["psnr"] > 0 and r["ssim"] > 0 and r["expL1"] >= 0 and r["poseFD"] >= 0 and "angleFD" in r
        assert "syncnet_s" in " ".join(res["unavailable"].values()) or task == "listener"  # no SyncNet file here
        table = (ev / f"scores_{task}.md").read_text()
        assert "team-a" in table and "SSIM" in table and "AngleFD" in table
        assert ("AVConf" in table) == (task == "speaker")  # the listening-head columns have no lip sync
    assert sorted(p.name for p in (ev / "gt_recons").glob("*.mat")) == \
        sorted(f"{u}.{r}.mat" for u in challenge["uuids"] for r in ("speaker", "listener"))
    # again: nothing generated, every step already done
    code, _, err = _submit(capsys, *args)
    assert code == 0 and "0 video(s) to generate" in err and err.count("already done, skipped") == 10, err[-3000:]
    # the test folder has no ground truth: refused before any work, naming the missing file
    from common.io import UserError

    with pytest.raises(UserError, match=r"listener\.mp4: ground-truth video not found; --evaluate needs the val"):
        _submit(capsys, *[challenge["test"] if a == challenge["val"] else a for a in args])


def test_check_reports_every_problem(challenge, tmp_path, capsys):
    val, uuids = challenge["val"], challenge["uuids"]
    bad = tmp_path / "talkinghead_test_results"
    shutil.copytree(challenge["out"] / "talkinghead_test_results", bad)
    (bad / f"{uuids[0]}.speaker.mp4").unlink()
    (bad / "notes.txt").write_text("x")
    media.write_video(bad / f"{uuids[1]}.speaker.mp4", np.zeros((3, 128, 128, 3), np.uint8), fps=25)
    code, stdout, _ = _submit(capsys, "--check", bad, "--data", val)
    lines = stdout.strip().splitlines()
    assert code == 1 and len(lines) == 5, stdout
    assert any(f"{uuids[0]}.speaker.mp4: missing" in ln for ln in lines)
    assert any("notes.txt: unexpected" in ln for ln in lines)
    assert any(f"{uuids[1]}.speaker.mp4: 25 fps, expected 30" in ln for ln in lines)
    assert any("128x128, expected 256x256" in ln for ln in lines)
    assert any(f"3 frames, expected {FRAMES}" in ln for ln in lines)
    # zip: wrong name; files at the root instead of inside the result folder
    wrong = tmp_path / "team.zip"
    shutil.copyfile(challenge["out"] / "zips" / "talking_head" / "team-a_1.zip", wrong)
    code, stdout, _ = _submit(capsys, "--check", wrong, "--data", val)
    assert code == 1 and "TEAM_N.zip" in stdout
    flat = tmp_path / "team_3.zip"
    with zipfile.ZipFile(flat, "w") as z:
        for u in uuids:
            z.write(challenge["out"] / "talkinghead_test_results" / f"{u}.speaker.mp4", f"{u}.speaker.mp4")
    code, stdout, _ = _submit(capsys, "--check", flat, "--data", val)
    assert code == 1 and "at the zip's root" in stdout and "exactly one folder" in stdout


def test_api_example_of_docs_gives_the_submission_videos(challenge, tmp_path, monkeypatch):
    """docs/generate.md's Python example, with declared substitutions only, run here; its videos
    equal the submission's for the same clips."""
    text = (REPO / "docs" / "generate.md").read_text()
    code = re.search(r"<!-- api example -->\n```python\n(.*?)```", text, re.S).group(1)
    a = challenge["uuids"][0]
    for old, new in [('["clip_a", "clip_b"]', f'["{a}"]'),  # one clip per head keeps the test short
                     ("clip_a", a), ("data/", f"{challenge['val']}/"), ("out/", f"{tmp_path}/"),
                     ('weights_dir="weights"', f'weights_dir="{challenge["weights"]}"'),
                     ("runs/speaker/checkpoints/latest", str(challenge["ckpt"]["speaker"])),
                     ("runs/listener/checkpoints/latest", str(challenge["ckpt"]["listener"]))]:
        assert old in code, old
        code = code.replace(old, new)
    # one thread, as the submission's processes had (smoke-test networks magnify float-order changes)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        exec(compile(code, "docs/generate.md", "exec"), {})  # noqa: S102 - the documented example
    finally:
        torch.set_num_threads(threads)
    for role, folder in (("speaker", "talkinghead_test_results"), ("listener", "listeninghead_test_results")):
        mine = media.read_video(tmp_path / f"{a}.{role}.mp4").astype(int)
        theirs = media.read_video(challenge["out"] / folder / f"{a}.{role}.mp4").astype(int)
        assert mine.shape == theirs.shape == (FRAMES, 256, 256, 3)
        assert np.abs(mine - theirs).max() <= 2  # same steps; thread counts may move a rounding
        assert (tmp_path / f"{a}.{role}.json").is_file() and not (tmp_path / f"{a}.{role}_work").exists()


def test_checks_come_before_any_work(challenge, tmp_path):
    """A checkpoint of the other task, or CUDA where there is none, fails when the head is made."""
    import torch

    from common.io import UserError
    from pipeline.api import ListeningHead, TalkingHead

    with pytest.raises(UserError, match="holds a listener model but --task is speaker"):
        TalkingHead(challenge["ckpt"]["listener"], weights_dir=challenge["weights"], device="cpu")
    with pytest.raises(UserError, match="missing weights file"):
        ListeningHead(challenge["ckpt"]["listener"], weights_dir=tmp_path, device="cpu")
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="CUDA is not available"):
            TalkingHead(challenge["ckpt"]["speaker"], weights_dir=challenge["weights"], device="cuda")
