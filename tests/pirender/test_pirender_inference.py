"""PIRender.inference end to end: real CLI runs on small LMDBs with fill-rule weights."""
from __future__ import annotations

import json

import pytest

from common.io import UserError
from common.media import audio_duration, probe_video, read_video
from PIRender.data.vox_lmdb import VoxLMDB


def _prepare(run_cli, root, out, size):
    r = run_cli("PIRender.prepare_vox_lmdb", "--path", root / "videos", "--coeff_3dmm_path", root / "recons",
                "--out", out, "--sizes", str(size), "--n_worker", "1")
    assert r.returncode == 0, r.stderr
    return out


@pytest.mark.slow
def test_render_256_with_audio(tiny_dataset, run_cli, pir_weights, tmp_path):
    """The released resolution: 4 frames at 256 px, speech muxed in, run.json, re-run skips."""
    root = tiny_dataset(n_frames=4, size=256, names=("u1.speaker",))
    lmdb = _prepare(run_cli, root, tmp_path / "lmdb", 256)
    out = tmp_path / "render"
    args = ["--input", lmdb, "--checkpoint", pir_weights["generator"], "--output_dir", out,
            "--audio_dir", root / "audios", "--batch_size", "3"]
    progress = tmp_path / "progress.jsonl"  # what pipeline.runner follows: frames, in batches of 3
    r = run_cli("PIRender.inference", *args, env={"VICO_PROGRESS_FILE": str(progress)})
    assert r.returncode == 0, r.stderr
    recs = [json.loads(line) for line in progress.read_text().splitlines()]
    assert (recs[0]["n"], recs[0]["total"], recs[0]["unit"]) == (0, 4, "frame")
    assert (recs[-1]["n"], recs[-1]["items"], recs[-1]["items_total"], recs[-1]["done"]) == (4, 1, 1, True)
    mp4 = out / "u1.speaker.mp4"
    info = probe_video(mp4)
    assert (info.n_frames, info.width, info.height, info.fps) == (4, 256, 256, 30.0)
    assert audio_duration(mp4) == pytest.approx(4 / 30, abs=0.03)
    frames = read_video(mp4)
    assert frames.std() > 10  # a rendered image, not a flat frame
    report = json.loads((out / "run.json").read_text())
    assert report["counts"] == {"done": 1, "skipped": 0, "failed": 0}
    assert report["config"]["precision_used"] == "fp32"
    mtime = mp4.stat().st_mtime_ns
    r = run_cli("PIRender.inference", *args)
    assert r.returncode == 0, r.stderr
    assert json.loads((out / "run.json").read_text())["counts"]["skipped"] == 1
    assert mp4.stat().st_mtime_ns == mtime


@pytest.mark.slow
def test_synthetic_dataset_end_to_end(synthetic_root, run_cli, pir_weights, pir_helpers, tmp_path):
    """Synthetic ViCo videos (+ coefficients) -> LMDB (64 px) -> videos with the input frame count."""
    from common.media import probe_video as probe

    videos = sorted((synthetic_root / "videos").glob("*.mp4"))[:1]
    recons = tmp_path / "recons" / "test"
    for i, v in enumerate(videos):
        pir_helpers.write_mat(recons / f"{v.stem}.mat", *pir_helpers.make_coeffs(probe(v).n_frames, 256, i))
    lmdb = tmp_path / "lmdb"
    r = run_cli("PIRender.prepare_vox_lmdb", "--path", synthetic_root / "videos", "--coeff_3dmm_path",
                tmp_path / "recons", "--out", lmdb, "--sizes", "64", "--n_worker", "1")
    assert r.returncode == 0, r.stderr
    out = tmp_path / "render"
    r = run_cli("PIRender.inference", "--input", lmdb, "--size", "64", "--checkpoint", pir_weights["generator"],
                "--output_dir", out, "--audio_dir", synthetic_root / "audios", "--batch_size", "16",
                "--epoch_subfolder")
    assert r.returncode == 0, r.stderr
    sub = out / "epoch_00000_iteration_000000000"  # the original's layout, behind the flag
    for v in videos:
        info = probe(sub / f"{v.stem}.mp4")
        assert (info.n_frames, info.width, info.height) == (probe(v).n_frames, 64, 64)
        assert audio_duration(sub / f"{v.stem}.mp4") > 0
    report = json.loads((sub / "run.json").read_text())
    assert report["counts"] == {"done": 1, "skipped": 0, "failed": 0}


def test_bad_inputs(tiny_dataset, run_cli, pir_weights, tmp_path):
    root = tiny_dataset(n_frames=2, size=64, names=("u1.speaker", "u2.listener"))
    (root / "audios" / "u2.wav").unlink()  # u2 has no speech file
    lmdb = _prepare(run_cli, root, tmp_path / "lmdb", 64)
    out = tmp_path / "render"
    # missing checkpoint: one line naming the file, where to get it and the flag; nothing written
    r = run_cli("PIRender.inference", "--input", lmdb, "--output_dir", out, "--size", "64",
                "--checkpoint", tmp_path / "missing.pt")
    assert r.returncode == 2
    assert r.stderr.strip().splitlines()[-1].startswith("error: missing weights file")
    assert "missing.pt" in r.stderr and "--checkpoint" in r.stderr and "Traceback" not in r.stderr
    assert not out.exists()
    with pytest.raises(UserError, match="no LMDB found"):  # not an LMDB
        VoxLMDB(root)
    # one video lacks its audio: recorded, the other is rendered, exit 1, no partial file
    r = run_cli("PIRender.inference", "--input", lmdb, "--output_dir", out, "--size", "64",
                "--checkpoint", pir_weights["generator"], "--audio_dir", root / "audios")
    assert r.returncode == 1
    report = json.loads((out / "run.json").read_text())
    assert [d["item"] for d in report["done"]] == ["u1.speaker"]
    assert report["failures"][0]["item"] == "u2.listener" and "u2.wav" in report["failures"][0]["reason"]
    assert sorted(p.name for p in out.iterdir()) == ["run.json", "u1.speaker.mp4"]


@pytest.mark.slow
@pytest.mark.torchrun
def test_torchrun_shards_videos(tiny_dataset, run_cli, pir_weights, tmp_path):
    root = tiny_dataset(n_frames=3, size=64, names=("a.speaker", "a.listener", "b.speaker"))
    lmdb = _prepare(run_cli, root, tmp_path / "lmdb", 64)
    out = tmp_path / "render"
    r = run_cli("torch.distributed.run", "--nproc_per_node", "2", "--standalone", "-m", "PIRender.inference",
                "--input", lmdb, "--size", "64", "--checkpoint", pir_weights["generator"], "--output_dir", out,
                "--device", "cpu")
    assert r.returncode == 0, r.stderr
    report = json.loads((out / "run.json").read_text())
    assert report["config"]["world_size"] == 2
    assert [d["item"] for d in report["done"]] == ["a.listener", "a.speaker", "b.speaker"]
    for name in ("a.listener", "a.speaker", "b.speaker"):
        assert probe_video(out / f"{name}.mp4").n_frames == 3
    assert "[rank 1]" in r.stderr  # both ranks worked
