"""One run record per run: demo steps that share an output folder name their records apart."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from common.io import UserError, run_record_name
from pipeline.config import DemoConfig
from pipeline.demo import build_steps

OUT_FLAGS = ("--output_path", "--output_dir", "--output_folder", "--out")


def _opt(args: list, flag: str):
    args = [str(a) for a in args]
    return args[args.index(flag) + 1] if flag in args else None


def record_of(step) -> Path | None:
    """Where ``step`` writes its run record (None: it writes none)."""
    a = step.args
    if step.module == "evaluation.evaluate":
        return Path(_opt(a, "--output")).parent / run_record_name(_opt(a, "--run_record"))
    if step.module in ("vico.eval", "vico.baseline"):
        return Path(_opt(a, "--output_path")) / run_record_name(_opt(a, "--run_record") or _opt(a, "--task"))
    if step.module == "preprocess.statistics_mean_std":
        return Path(str(a[0])) / "run.json"
    folder = next((_opt(a, f) for f in OUT_FLAGS if _opt(a, f) is not None), None)
    if folder is None or step.module in ("common.dataset", "common.weights", "pipeline.generate", "pipeline.report",
                                         "evaluation.score"):
        return None
    return Path(folder) / "run.json"


def test_no_two_demo_steps_share_a_run_record(tmp_path):
    steps = build_steps(DemoConfig(out=tmp_path))
    records = {s.name: record_of(s) for s in steps}
    written = [r for r in records.values() if r is not None]
    assert len(written) == len(set(written)), sorted(map(str, written))
    # the folders shared on purpose: both tasks' generated motion, six evaluations in metrics/
    assert records["eval_speaker"].name == "run.speaker.json" and records["eval_listener"].parent == tmp_path / "generated"
    assert records["metrics_listener"] == tmp_path / "metrics" / "run.metrics_listener.json"
    assert records["motion_static_speaker"].name == "run.motion_static_speaker.json"
    assert sum(r.parent == tmp_path / "metrics" for r in written) == 6


def test_run_record_name():
    assert run_record_name(None) == "run.json" and run_record_name("speaker") == "run.speaker.json"
    with pytest.raises(UserError, match="--run_record '../x'"):
        run_record_name("../x")


@pytest.mark.slow
def test_evaluate_writes_the_named_record(tmp_path):
    """Two evaluations into one folder keep two records (motion metrics on tiny coefficient files)."""
    import numpy as np

    from common.artifacts import save_recon_mat
    from evaluation.evaluate import main as evaluate_main

    rng = np.random.default_rng(0)
    (tmp_path / "test.csv").write_text("video_id,uuid\nv,u1\n")
    for d in ("gt", "pd"):
        save_recon_mat(tmp_path / d / "u1.speaker.mat", rng.standard_normal((20, 257)).astype(np.float32),
                       np.tile([256.0, 256.0, 1.0, 128.0, 128.0], (20, 1)))
    out = tmp_path / "metrics"
    for name in ("a", "b"):
        assert evaluate_main(["--anno_file", str(tmp_path / "test.csv"), "--task", "speaker", "--metrics", "coeff",
                              "--gt_coeff_folder", str(tmp_path / "gt"), "--pd_coeff_folder", str(tmp_path / "pd"),
                              "--no_cache", "--output", str(out / f"{name}.json"), "--run_record", name]) == 0
    assert sorted(p.name for p in out.glob("run*.json")) == ["run.a.json", "run.b.json"]
    assert json.loads((out / "run.a.json").read_text())["counts"]["done"] == 1


@pytest.mark.slow
def test_every_demo_step_parses(tmp_path, monkeypatch):
    """Each step's arguments are accepted by its stage's parser (new flags included)."""
    from tests.common.test_cli_options import parser_of

    for step in build_steps(DemoConfig(out=tmp_path)):
        module = "common.synthetic.__main__" if step.module == "common.synthetic" else step.module
        ns = parser_of(module, monkeypatch).parse_args([str(a) for a in step.args])
        if step.module == "evaluation.evaluate" and step.name.startswith("metrics_"):
            assert ns.min_track == DemoConfig().lipsync_min_track and ns.run_record == step.name
        if step.module == "vico.train":
            assert ns.overwrite
