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

    @property
    def data(self) -> Path:
        return self.out / "data"


def build_steps(cfg: DemoConfig) -> list[Step]:
    """The pipeline, in order. Each step is a stage's command line."""
    data = cfg.data
    return [
        Step("synthetic", "common.synthetic",
             ["--out", data, "--pairs", cfg.pairs, "--frames", cfg.frames, "--seed", cfg.seed],
             "synthetic ViCo dataset (real face photos animated with known motion, speech-like audio)"),
        Step("validate", "common.dataset", ["validate", data], "check files, frame counts and audio lengths"),
    ]


def main(argv: Sequence[str] | None = None) -> int:
    ap = parser("pipeline.demo", __doc__, EXAMPLES)
    ap.add_argument("--out", type=Path, default=DemoConfig.out, help="run folder")
    ap.add_argument("--pairs", type=int, default=DemoConfig.pairs, help="speaker/listener pairs to synthesise")
    ap.add_argument("--frames", type=int, default=DemoConfig.frames, help="frames per video (30 fps)")
    ap.add_argument("--seed", type=int, default=DemoConfig.seed, help="synthetic data seed")
    ap.add_argument("--from", dest="start", default=None, help="start at this step")
    ap.add_argument("--only", action="append", default=[], help="run only this step (repeatable)")
    ap.add_argument("--force", action="store_true", help="re-run steps that are already done")
    ap.add_argument("--list", action="store_true", help="list the steps and exit")
    args = ap.parse_args(argv)
    setup_logging()
    cfg = DemoConfig(out=args.out, pairs=args.pairs, frames=args.frames, seed=args.seed)
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
