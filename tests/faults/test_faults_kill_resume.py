"""A batch stage killed with SIGKILL midway, then re-run, ends with the same outputs as a run that
was never interrupted (arrays of .mat files, bytes of mp4 files), and no temp files are left."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import scipy.io

from .conftest import plausible_coeffs, run_json, temp_leftovers, write_mat

REPO = Path(__file__).resolve().parents[2]


def _outputs(folder: Path, ext: str) -> list[Path]:
    return sorted(p for p in folder.rglob(f"*{ext}") if not p.name.startswith("."))


def _kill_after_first_output(module: str, args: list, out: Path, ext: str, n_items: int, log: Path) -> None:
    """Start the stage, SIGKILL it as soon as its first output file exists (not all of them)."""
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    with open(log, "wb") as err:
        proc = subprocess.Popen([sys.executable, "-m", module, *map(str, args)], cwd=REPO, env=env,
                                stdout=subprocess.DEVNULL, stderr=err)
        try:
            deadline = time.monotonic() + 300
            while not _outputs(out, ext):
                assert proc.poll() is None, f"exited ({proc.returncode}) before its first output: {log.read_text()[-2000:]}"
                assert time.monotonic() < deadline, "no output within 300 s"
                time.sleep(0.02)
            proc.send_signal(signal.SIGKILL)
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert 1 <= len(_outputs(out, ext)) < n_items, "killed too late to test a resume"
    assert not (out / "run.json").exists()  # the report is written at the end


def _resume_matches_clean_run(run_cli, module: str, args_for, tmp: Path, ext: str, n_items: int) -> tuple[Path, Path]:
    killed, clean = tmp / "killed", tmp / "clean"
    _kill_after_first_output(module, args_for(killed), killed, ext, n_items, tmp / "killed.log")
    first = {p.name: p.stat().st_mtime_ns for p in _outputs(killed, ext)}
    r = run_cli(module, *args_for(killed))  # the re-run
    assert r.returncode == 0, r.stderr[-3000:]
    report = run_json(killed)
    assert report["counts"] == {"done": n_items - len(first), "skipped": len(first), "failed": 0}
    for name, mtime in first.items():  # finished outputs are skipped, not redone
        assert (killed / name).stat().st_mtime_ns == mtime
    r = run_cli(module, *args_for(clean))
    assert r.returncode == 0, r.stderr[-3000:]
    assert [p.name for p in _outputs(killed, ext)] == [p.name for p in _outputs(clean, ext)]
    assert len(_outputs(clean, ext)) == n_items
    assert temp_leftovers(killed) == [] and temp_leftovers(clean) == []
    return killed, clean


@pytest.mark.slow
def test_face_recon_killed_and_resumed(ws, tmp_path, run_cli):
    from common.media import read_video, write_video
    from Deep3DFaceRecon_pytorch.data.keypoints import load_keypoints, save_keypoints

    n = 3  # frames per clip: three short clips keep the network's share small
    videos, kp = tmp_path / "videos", tmp_path / "kp"
    for i, src in enumerate((*ws.speakers, ws.speakers[0])):
        name = src.stem if i < len(ws.speakers) else "copy.speaker"
        write_video(videos / f"{name}.mp4", read_video(src)[i:i + n])
        save_keypoints(kp / f"{name}.txt", load_keypoints(ws.keypoints / f"{src.stem}.txt")[i:i + n])

    def args(out: Path) -> list:
        return ["--input_dir", videos, "--keypoint_dir", kp, "--output_dir", out, "--checkpoint", ws.recon_ckpt,
                "--batch_size", 1]

    killed, clean = _resume_matches_clean_run(run_cli, "Deep3DFaceRecon_pytorch.face_recon_videos", args,
                                              tmp_path, ".mat", 3)
    for a, b in zip(_outputs(killed, ".mat"), _outputs(clean, ".mat")):
        ma, mb = scipy.io.loadmat(a), scipy.io.loadmat(b)
        assert ma["coeff"].shape == (n, 257)
        for key in ("coeff", "transform_params"):
            np.testing.assert_array_equal(ma[key], mb[key], err_msg=f"{a.name} {key}")


@pytest.mark.slow
def test_render_killed_and_resumed(ws, tmp_path, run_cli):
    """128 px: the writer gives byte-identical H.264 for identical frames at widths that are
    multiples of 128 (common.media.VideoWriter). Three 2-frame clips: the generator is slow on CPU."""
    from common.media import read_video, write_video

    n = 2
    for i, src in enumerate(sorted((ws.data / "videos").glob("*.mp4"))[:3]):
        write_video(tmp_path / "videos" / src.name, read_video(src)[:n])
        write_mat(tmp_path / "mats" / f"{src.stem}.mat", *plausible_coeffs(n, i))
    r = run_cli("PIRender.prepare_vox_lmdb", "--path", tmp_path / "videos", "--coeff_3dmm_path", tmp_path / "mats",
                "--out", tmp_path / "lmdb", "--sizes", "128", "--n_worker", "1")
    assert r.returncode == 0, r.stderr[-3000:]

    def args(out: Path) -> list:
        return ["--input", tmp_path / "lmdb", "--size", 128, "--checkpoint", ws.pir_ckpt, "--output_dir", out,
                "--audio_dir", ws.data / "audios", "--batch_size", 4, "--device", "cpu"]

    killed, clean = _resume_matches_clean_run(run_cli, "PIRender.inference", args, tmp_path, ".mp4", 3)
    from common.media import probe_video

    for a, b in zip(_outputs(killed, ".mp4"), _outputs(clean, ".mp4")):
        assert probe_video(a).n_frames == n
        assert a.read_bytes() == b.read_bytes(), a.name


def test_atomic_write_after_a_killed_writer_leaves_no_temp(tmp_path):
    """The temp file of a writer killed midway is removed by the next write of the same output;
    a live writer's temp file, and other outputs' temp files, are left alone."""
    from common.io import atomic_path

    out = tmp_path / "u1.speaker.mp4"
    code = ("import os, signal, sys; from common.io import atomic_path\n"
            "with atomic_path(sys.argv[1]) as tmp:\n"
            "    tmp.write_bytes(b'half a video')\n"
            "    os.kill(os.getpid(), signal.SIGKILL)\n")
    env = dict(os.environ, PYTHONPATH=str(REPO))
    r = subprocess.run([sys.executable, "-c", code, str(out)], env=env, timeout=60)
    assert r.returncode == -signal.SIGKILL
    assert len(temp_leftovers(tmp_path)) == 1 and not out.exists()
    other = tmp_path / ".u1.speaker.x.abcdefgh.tmp.mp4"  # the temp file of u1.speaker.x.mp4
    other.write_bytes(b"")
    with atomic_path(out) as tmp:
        with atomic_path(out) as tmp2:  # a second writer of the same output keeps the first's file
            assert tmp.exists()
            tmp2.write_bytes(b"second")
        tmp.write_bytes(b"complete")
    assert out.read_bytes() == b"complete"
    assert temp_leftovers(tmp_path) == [other]
