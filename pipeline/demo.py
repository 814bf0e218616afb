"""The end-to-end demo on the bundled synthetic dataset: every stage through its command line.

Re-running resumes: finished steps are skipped (``--force`` re-runs them).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from common.cli import parser
from common.io import config_to_dict, run_cli, setup_logging, write_json_atomic
from pipeline.runner import Runner, Step, StepFailed

log = logging.getLogger("pipeline.demo")

EXAMPLES = """examples:
  python -m pipeline.demo                          # everything into outputs/demo
  python -m pipeline.demo --only synthetic         # one step
  python -m pipeline.demo --from validate --force  # re-run from a step
"""


@dataclass
class DemoConfig:
    out: Path = Path("outputs/demo")
    pairs: int = 3
    frames: int = 90
    seed: int = 0
    epochs: int = 3
    weights_dir: Path = Path("weights")

    @property
    def data(self) -> Path:
        return self.out / "data"


# Pretrained files the demo needs; missing ones get labelled smoke-test stand-ins.
DEMO_WEIGHTS = ("deep3dfacerecon_reconnet_resnet50", "pirender_face_generator",
                "fid_inception_v3", "arcface_iresnet100", "syncnet_s")
TASKS = ("speaker", "listener")


def build_steps(cfg: DemoConfig) -> list[Step]:
    """The pipeline, in order. Each step is a stage's command line; they share only files."""
    o, data, w = cfg.out, cfg.data, cfg.weights_dir
    recon_ckpt = w / "face_recon_feat0.2_augment" / "epoch_20.pth"
    pirender_ckpt = w / "pirender" / "face" / "epoch_00190_iteration_000400000_checkpoint.pt"
    feats = o / "features"
    steps = [
        Step("synthetic", "common.synthetic",
             ["--out", data, "--pairs", cfg.pairs, "--frames", cfg.frames, "--seed", cfg.seed],
             "synthetic ViCo dataset (real face photos animated with known motion, speech-like audio)"),
        Step("validate", "common.dataset", ["validate", data], "check files, frame counts and audio lengths"),
        Step("weights", "common.weights", ["make-smoke", *DEMO_WEIGHTS, "--dir", w],
             "released weights where present under weights/, labelled smoke-test stand-ins elsewhere"),
        Step("landmarks", "Deep3DFaceRecon_pytorch.extract_kp_videos",
             ["--input_dir", data / "videos", "--output_dir", o / "keypoints"], "68-point landmarks (dlib)"),
        Step("recon", "Deep3DFaceRecon_pytorch.face_recon_videos",
             ["--input_dir", data / "videos", "--keypoint_dir", o / "keypoints", "--output_dir", o / "recons",
              "--checkpoint", recon_ckpt], "257-d 3DMM coefficients per frame"),
        Step("audio_features", "preprocess.extract_audio_features",
             ["--input_audio_folder", data / "audios", "--input_recons_folder", o / "recons",
              "--output_folder", feats / "audio_feats"], "45-d audio features per video frame"),
        Step("rearrange", "preprocess.rearrange_recon_coeffs",
             ["--input_folder", o / "recons", "--output_folder", feats / "video_feats"],
             "coefficients re-split for vico"),
        Step("statistics", "preprocess.statistics_mean_std", [feats, "--split_csv", data / "train.csv"],
             "mean/std over the training split"),
    ]
    for task in TASKS:
        steps.append(Step(f"train_{task}", "vico.train",
                          ["--task", task, "--data", data, "--features", feats, "--output_path", o / "vico" / task,
                           "--max_epochs", cfg.epochs, "--batch_size", 4, "--seed", cfg.seed],
                          f"train the {task} model ({cfg.epochs} epochs)"))
    for task in TASKS:
        steps.append(Step(f"eval_{task}", "vico.eval",
                          ["--task", task, "--data", data, "--features", feats,
                           "--resume", o / "vico" / task / "checkpoints" / "latest",
                           "--output_path", o / "generated", "--split_csv", "test.csv"],
                          f"generate {task} coefficients for the test split"))
    steps += [
        Step("lmdb", "PIRender.prepare_vox_lmdb",
             ["--path", data / "videos", "--coeff_3dmm_path", o / "generated" / "recon_coeffs",
              "--out", o / "vox_lmdb"], "pack GT frames and generated coefficients into PIRender's LMDB"),
        Step("render", "PIRender.inference",
             ["--input", o / "vox_lmdb", "--checkpoint", pirender_ckpt, "--output_dir", o / "rendered",
              "--audio_dir", data / "audios"], "render the generated motion as H.264 video with speech"),
        Step("landmarks_rendered", "Deep3DFaceRecon_pytorch.extract_kp_videos",
             ["--input_dir", o / "rendered", "--output_dir", o / "rendered_keypoints"],
             "landmarks of the rendered videos"),
        Step("recon_rendered", "Deep3DFaceRecon_pytorch.face_recon_videos",
             ["--input_dir", o / "rendered", "--keypoint_dir", o / "rendered_keypoints",
              "--output_dir", o / "rendered_recons", "--checkpoint", recon_ckpt],
             "3DMM coefficients re-extracted from the rendered videos"),
    ]
    for task in TASKS:
        steps.append(Step(f"metrics_{task}", "evaluation.evaluate",
                          ["--gt_video_folder", data / "videos", "--pd_video_folder", o / "rendered",
                           "--anno_file", data / "test.csv", "--task", task, "--metrics", "all",
                           "--gt_audio_folder", data / "audios", "--gt_coeff_folder", o / "recons",
                           "--pd_coeff_folder", o / "rendered_recons", "--weights_dir", w,
                           "--output", o / "metrics" / f"{task}.json"],
                          f"every metric of the {task} videos"))
    return steps


def main(argv: Sequence[str] | None = None) -> int:
    ap = parser("pipeline.demo", __doc__, EXAMPLES)
    ap.add_argument("--out", type=Path, default=DemoConfig.out, help="run folder")
    ap.add_argument("--pairs", type=int, default=DemoConfig.pairs, help="speaker/listener pairs to synthesise")
    ap.add_argument("--frames", type=int, default=DemoConfig.frames, help="frames per video (30 fps)")
    ap.add_argument("--seed", type=int, default=DemoConfig.seed, help="synthetic data seed")
    ap.add_argument("--epochs", type=int, default=DemoConfig.epochs, help="vico training epochs")
    ap.add_argument("--weights_dir", type=Path, default=DemoConfig.weights_dir,
                    help="released weights are used from here; missing ones get smoke-test stand-ins")
    ap.add_argument("--from", dest="start", default=None, help="start at this step")
    ap.add_argument("--only", action="append", default=[], help="run only this step (repeatable)")
    ap.add_argument("--force", action="store_true", help="re-run steps that are already done")
    ap.add_argument("--list", action="store_true", help="list the steps and exit")
    args = ap.parse_args(argv)
    setup_logging()
    cfg = DemoConfig(out=args.out, pairs=args.pairs, frames=args.frames, seed=args.seed, epochs=args.epochs,
                     weights_dir=args.weights_dir)
    runner = Runner(cfg.out, build_steps(cfg))
    if args.list:
        for s in runner.steps:
            print(f"{s.name:12s} python -m {s.module} {' '.join(map(str, s.args))}")
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
    return 0


if __name__ == "__main__":
    run_cli(main)
