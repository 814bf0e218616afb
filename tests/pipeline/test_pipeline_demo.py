"""The demo end to end on a tiny synthetic dataset: every stage's CLI, chained through files."""
import json

import pytest

from common import dataset, media
from common.artifacts import load_recon_mat


@pytest.mark.slow
def test_demo_runs_every_stage_and_resumes(tmp_path, run_cli):
    out, weights = tmp_path / "demo", tmp_path / "weights"
    args = ["--out", out, "--pairs", 2, "--frames", 30, "--epochs", 1, "--weights_dir", weights]
    p = run_cli("pipeline.demo", *args)
    assert p.returncode == 0, p.stderr[-3000:]
    steps = json.loads((out / "demo_steps.json").read_text())
    assert len(steps) == 18 and all(s["status"] == "done" for s in steps)

    uuid = dataset.read_index(out / "data" / "test.csv")[0].uuid
    for role in dataset.ROLES:
        coeff, tp = load_recon_mat(out / "generated" / "recon_coeffs" / "test" / f"{uuid}.{role}.mat")
        assert coeff.shape == (30, 257) and tp.shape == (30, 5)
        video = out / "rendered" / f"{uuid}.{role}.mp4"
        info = media.probe_video(video)
        assert (info.n_frames, info.width, info.height) == (30, 256, 256)
        assert abs(media.audio_duration(video) - 1.0) < 0.05  # the speech is muxed in
        res = json.loads((out / "metrics" / f"{role}.json").read_text())
        assert res["n_videos"] == 1 and res["n_frames"] == 30
        for key in ("psnr", "ssim", "cpbd", "fid", "csim", "expL1", "poseL1", "expFD", "poseFD"):
            assert isinstance(res["results"][key], float), (role, key, res["results"][key])
        # smoke-rendered frames may hold no detectable face: then LipLMD is null and counted, not a crash
        assert res["results"]["lipLMD"] is not None or res["frames_without_face"] > 0
    # smoke-test stand-ins are labelled as such
    assert (weights / "pirender" / "face" / "epoch_00190_iteration_000400000_checkpoint.pt.smoke.json").is_file()

    again = run_cli("pipeline.demo", *args)
    assert again.returncode == 0, again.stderr[-2000:]
    assert all(s["status"] == "skipped" for s in json.loads((out / "demo_steps.json").read_text()))

    bad = run_cli("pipeline.demo", *args, "--only", "nonsense")
    assert bad.returncode == 2 and bad.stderr.strip().splitlines()[-1].startswith("error: unknown step 'nonsense'")
