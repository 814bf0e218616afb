"""vico.baseline: the first ground-truth frame held still, in vico.eval's file format."""
import json

import numpy as np

from common.artifacts import load_recon_mat, save_recon_mat


def test_static_baseline_cli(run_cli, tmp_path):
    rng = np.random.default_rng(0)
    gt = tmp_path / "recons"
    (tmp_path / "test.csv").write_text("video_id,uuid,speaker_id,listener_id\nv,a,1,2\nv,b,1,2\n")
    coeff = rng.normal(size=(12, 257)).astype(np.float32)
    tp = np.column_stack([np.full((12, 2), 256.0), rng.normal(size=(12, 3))])
    save_recon_mat(gt / "a.speaker.mat", coeff, tp)
    out = tmp_path / "static"
    p = run_cli("vico.baseline", "--task", "speaker", "--gt_coeff_folder", gt, "--split_csv", tmp_path / "test.csv",
                "--output_path", out)
    assert p.returncode == 1  # clip b has no ground truth: reported, a still written
    assert p.stderr.strip().splitlines()[-1].endswith(f"(report: {out / 'run.speaker.json'})")
    got, got_tp = load_recon_mat(out / "recon_coeffs" / "test" / "a.speaker.mat")
    assert got.shape == (12, 257) and np.array_equal(got, np.repeat(coeff[:1], 12, 0))
    gt_coeff, gt_tp = load_recon_mat(gt / "a.speaker.mat")  # as stored (the .mat keeps float32)
    assert np.array_equal(got_tp, np.repeat(gt_tp[:1], 12, 0)) and np.array_equal(gt_coeff, coeff)
    run = json.loads((out / "run.speaker.json").read_text())
    assert [f["item"] for f in run["failures"]] == ["b"] and "b.speaker.mat" in run["failures"][0]["reason"]
    assert not (out / "recon_coeffs" / "test" / "b.speaker.mat").exists()
