"""The end-to-end demo on the bundled synthetic dataset: every stage through its command line.

Re-running resumes: finished steps are skipped (``--force`` re-runs them).
"""
from __future__ import annotations

import argparse
import logging
from dataclasses import replace
from pathlib import Path
from typing import Sequence

from common import artifacts
from common.cli import parser
from common.io import config_to_dict, run_cli, setup_logging, write_json_atomic
from common.synthetic.generator import pair_names
from pipeline.config import DEFAULT_CONFIG, REPO, TASKS, DemoConfig, load_config
from pipeline.runner import Runner, Step, StepFailed

log = logging.getLogger("pipeline.demo")
OVERRIDABLE = ("out", "pairs", "frames", "seed", "epochs", "weights_dir", "nproc")

EXAMPLES = """examples:
  python -m pipeline.demo                          # everything into outputs/demo
  python -m pipeline.demo --only synthetic         # one step
  python -m pipeline.demo --from validate --force  # re-run from a step
  python -m pipeline.demo --config my_demo.yaml --epochs 10   # settings and paths from a file
"""


def build_steps(cfg: DemoConfig) -> list[Step]:
    """The pipeline, in order. Each step is a stage's command line; they share only files."""
    P, w = cfg.path, cfg.weights_dir
    data, feats, metrics = P("data"), P("features"), P("metrics")
    recon_ckpt = w / "face_recon_feat0.2_augment" / "epoch_20.pth"
    pirender_ckpt = w / "pirender" / "face" / "epoch_00190_iteration_000400000_checkpoint.pt"
    generated = P("generated") / "recon_coeffs" / "test"
    steps = [
        Step("synthetic", "common.synthetic",
             ["--out", data, "--pairs", cfg.pairs, "--frames", cfg.frames, "--seed", cfg.seed],
             "synthetic ViCo dataset (real face photos animated with known motion, speech-like audio)"),
        Step("validate", "common.dataset", ["validate", data], "check files, frame counts and audio lengths"),
        Step("weights", "common.weights", ["make-smoke", *cfg.weights, "--dir", w],
             "released weights where present under weights/, labelled smoke-test stand-ins elsewhere"),
        Step("landmarks", "Deep3DFaceRecon_pytorch.extract_kp_videos",
             ["--input_dir", data / "videos", "--output_dir", P("keypoints")], "68-point landmarks (dlib)",
             distributed=True),
        Step("recon", "Deep3DFaceRecon_pytorch.face_recon_videos",
             ["--input_dir", data / "videos", "--keypoint_dir", P("keypoints"), "--output_dir", P("recons"),
              "--checkpoint", recon_ckpt], "257-d 3DMM coefficients per frame", distributed=True),
        Step("audio_features", "preprocess.extract_audio_features",
             ["--input_audio_folder", data / "audios", "--input_recons_folder", P("recons"),
              "--output_folder", feats / artifacts.AUDIO_FEATS_DIR], "45-d audio features per video frame"),
        Step("rearrange", "preprocess.rearrange_recon_coeffs",
             ["--input_folder", P("recons"), "--output_folder", feats / artifacts.VIDEO_FEATS_DIR],
             "coefficients re-split for vico"),
        Step("statistics", "preprocess.statistics_mean_std", [feats, "--split_csv", data / "train.csv"],
             "mean/std over the training split"),
    ]
    for task in TASKS:
        steps.append(Step(f"train_{task}", "vico.train",
                          ["--task", task, "--data", data, "--features", feats, "--output_path", P("vico") / task,
                           "--max_epochs", cfg.epochs, "--batch_size", 4, "--seed", cfg.seed, "--overwrite"],
                          f"train the {task} model ({cfg.epochs} epochs)", distributed=True))
    for task in TASKS:
        steps.append(Step(f"eval_{task}", "vico.eval",
                          ["--task", task, "--data", data, "--features", feats,
                           "--resume", P("vico") / task / "checkpoints" / "latest",
                           "--output_path", P("generated"), "--split_csv", "test.csv"],
                          f"generate {task} coefficients for the test split", distributed=True))
    steps += [
        Step("lmdb", "PIRender.prepare_vox_lmdb",
             ["--path", data / "videos", "--coeff_3dmm_path", P("generated") / "recon_coeffs",
              "--out", P("lmdb")], "pack GT frames and generated coefficients into PIRender's LMDB"),
        Step("render", "PIRender.inference",
             ["--input", P("lmdb"), "--checkpoint", pirender_ckpt, "--output_dir", P("rendered"),
              "--audio_dir", data / "audios"], "render the generated motion as H.264 video with speech",
             distributed=True),
        Step("landmarks_rendered", "Deep3DFaceRecon_pytorch.extract_kp_videos",
             ["--input_dir", P("rendered"), "--output_dir", P("rendered_keypoints"), "--max_no_face_fraction", 1],
             "landmarks of the rendered videos", distributed=True),
        Step("recon_rendered", "Deep3DFaceRecon_pytorch.face_recon_videos",
             ["--input_dir", P("rendered"), "--keypoint_dir", P("rendered_keypoints"),
              "--output_dir", P("rendered_recons"), "--checkpoint", recon_ckpt, "--allow_no_face"],
             "3DMM coefficients re-extracted from the rendered videos (every video scored, as the original)",
             distributed=True),
    ]
    for task in TASKS:
        steps.append(Step(f"metrics_{task}", "evaluation.evaluate",
                          ["--gt_video_folder", data / "videos", "--pd_video_folder", P("rendered"),
                           "--anno_file", data / "test.csv", "--task", task, "--metrics", "all",
                           "--gt_audio_folder", data / "audios", "--gt_coeff_folder", P("recons"),
                           "--pd_coeff_folder", P("rendered_recons"), "--weights_dir", w,
                           "--lipsync_min_track", cfg.lipsync_min_track, "--run_record", f"metrics_{task}",
                           "--output", metrics / f"{task}.json"],
                          f"every metric of the {task} videos", distributed=True))
    # score: the model's motion against the first frame held still, ranked as the challenge ranked
    for task in TASKS:
        static = P("baselines") / "static"
        motion = {"vico": generated, "static": static / "recon_coeffs" / "test"}
        steps.append(Step(f"static_{task}", "vico.baseline",
                          ["--task", task, "--gt_coeff_folder", P("recons"), "--split_csv", data / "test.csv",
                           "--output_path", static], f"reference {task} motion: the first frame held still"))
        for entry, folder in motion.items():
            steps.append(Step(f"motion_{entry}_{task}", "evaluation.evaluate",
                              ["--anno_file", data / "test.csv", "--task", task, "--metrics", "coeff",
                               "--gt_coeff_folder", P("recons"), "--pd_coeff_folder", folder, "--no_cache",
                               "--run_record", f"motion_{entry}_{task}",
                               "--output", metrics / f"motion_{entry}_{task}.json"],
                              f"motion metrics of the {entry} {task} coefficients"))
        steps.append(Step(f"score_{task}", "evaluation.score",
                          [*(metrics / f"motion_{e}_{task}.json" for e in motion), "--names", *motion,
                           "--output", metrics / f"score_{task}.md", "--json", metrics / f"score_{task}.json"],
                          f"rank the {task} model against the still head"))
    # the single-image path: a face photo speaks a test clip's speech with the trained speaker model
    test_uuid = next(p.uuid for p in pair_names(cfg.seed, cfg.pairs) if p.split == "test")
    steps.append(Step("from_image", "pipeline.generate",
                      ["--audio", data / "audios" / f"{test_uuid}.wav", "--image", cfg.face_image,
                       "--out", P("from_image") / "talking_head.mp4",
                       "--checkpoint", P("vico") / "speaker" / "checkpoints" / "latest", "--stats", feats,
                       "--weights_dir", w], "talking head from one photo and speech (pipeline.generate)"))
    steps.append(Step("report", "pipeline.report", ["--run", cfg.out],
                      f"the HTML report: {cfg.path('report')}"))
    return steps


def build_parser(base: DemoConfig, config: Path) -> argparse.ArgumentParser:
    """The demo's options; their defaults are the values of ``config`` (already read as ``base``)."""
    src = _shown(config)
    ap = parser("pipeline.demo", __doc__, EXAMPLES)
    ap.add_argument("--config", type=Path, default=config,
                    help=f"YAML with the demo's settings and paths; the flags below override it "
                         f"(default: {_shown(DEFAULT_CONFIG)})")

    def opt(name: str, typ: type, what: str) -> None:
        ap.add_argument(f"--{name}", type=typ, default=getattr(base, name),
                        help=f"{what} (default: {getattr(base, name)} from {src})")

    opt("out", Path, "run folder")
    opt("pairs", int, "speaker/listener pairs to synthesise")
    opt("frames", int, "frames per video, 30 fps")
    opt("seed", int, "synthetic data seed")
    opt("epochs", int, "vico training epochs")
    opt("weights_dir", Path, "released weights are used from here; missing ones get smoke-test stand-ins")
    opt("nproc", int, "processes for the steps that split their work (landmarks, recon, training, eval, "
                      "render, metrics): > 1 runs them under torchrun --standalone, one per GPU when present, "
                      "gloo on CPU")
    ap.add_argument("--from", dest="start", default=None, help="start at this step")
    ap.add_argument("--only", action="append", default=[], help="run only this step (repeatable)")
    ap.add_argument("--force", action="store_true", help="re-run steps that are already done")
    ap.add_argument("--list", action="store_true", help="list the steps and exit")
    return ap


def _shown(p: Path) -> str:
    """``p`` relative to the repository when inside it (configs/demo.yaml), else as given."""
    try:
        return str(Path(p).resolve().relative_to(REPO))
    except ValueError:
        return str(p)


def main(argv: Sequence[str] | None = None) -> int:
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config", type=Path, default=DEFAULT_CONFIG)
    config = pre.parse_known_args(argv)[0].config
    base = load_config(config)
    args = build_parser(base, config).parse_args(argv)
    setup_logging()
    cfg = replace(base, **{k: getattr(args, k) for k in OVERRIDABLE})
    runner = Runner(cfg.out, build_steps(cfg), nproc=cfg.nproc)
    if args.list:
        for s in runner.steps:
            launch = "torchrun --standalone --nproc_per_node {} ".format(cfg.nproc) \
                if s.distributed and cfg.nproc > 1 else "python "
            print(f"{s.name:22s} {launch}-m {s.module} {' '.join(map(str, s.args))}")
        return 0
    steps = runner.select(args.start, args.only)
    write_json_atomic(cfg.out / "demo_config.json", config_to_dict(cfg))
    try:
        results = runner.run(steps, force=args.force)
    except StepFailed as e:
        log.error("%s", e)  # the step, its log file and the log's last lines
        return 1
    write_json_atomic(cfg.out / "demo_steps.json", results)
    log.info("demo finished: %s", ", ".join(f"{r['step']} ({r['status']})" for r in results))
    log.info("report: %s", cfg.path("report"))
    return 0


if __name__ == "__main__":
    run_cli(main)
