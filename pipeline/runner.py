"""Run a list of stage commands as subprocesses, with logs, resume and a clear failure message."""
from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from common.io import UserError, write_json_atomic

log = logging.getLogger(__name__)
REPO = Path(__file__).resolve().parents[1]


@dataclass
class Step:
    """One stage invocation: ``python -m module *args``."""

    name: str
    module: str
    args: list[str]
    description: str = ""
    env: dict[str, str] = field(default_factory=dict)
    distributed: bool = False  # the stage splits its work over torchrun processes

    def command(self, nproc: int = 1) -> list[str]:
        """The command line; a distributed step with ``nproc`` > 1 runs under torchrun (one node)."""
        launch = ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc)] \
            if self.distributed and nproc > 1 else []
        return [sys.executable, *launch, "-m", self.module, *map(str, self.args)]


def _tail(path: Path, n: int = 15) -> str:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return ""
    return "\n".join(lines[-n:])


class Runner:
    """Runs steps in order; a finished step leaves ``<run_dir>/steps/<name>.done.json`` and is
    skipped next time (``force`` re-runs). Each step's output goes to ``<run_dir>/logs/<name>.log``."""

    def __init__(self, run_dir: Path, steps: Sequence[Step], nproc: int = 1):
        if nproc < 1:
            raise UserError(f"--nproc must be >= 1, got {nproc}")
        self.run_dir = Path(run_dir)
        self.steps = list(steps)
        self.nproc = nproc
        names = [s.name for s in self.steps]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate step names: {names}")

    def select(self, start: str | None = None, only: Sequence[str] = ()) -> list[Step]:
        names = [s.name for s in self.steps]
        for n in [start, *only]:
            if n is not None and n not in names:
                raise UserError(f"unknown step {n!r} (steps: {', '.join(names)})")
        if only:
            return [s for s in self.steps if s.name in only]
        if start:
            return self.steps[names.index(start):]
        return list(self.steps)

    def done_marker(self, step: Step) -> Path:
        return self.run_dir / "steps" / f"{step.name}.done.json"

    def run(self, steps: Sequence[Step], force: bool = False) -> list[dict]:
        results = []
        for i, step in enumerate(steps, 1):
            marker = self.done_marker(step)
            if marker.is_file() and not force:
                log.info("[%d/%d] %s: already done, skipped", i, len(steps), step.name)
                results.append({"step": step.name, "status": "skipped"})
                continue
            logfile = self.run_dir / "logs" / f"{step.name}.log"
            logfile.parent.mkdir(parents=True, exist_ok=True)
            log.info("[%d/%d] %s: %s", i, len(steps), step.name, step.description or step.module)
            t0 = time.time()
            env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""), **step.env)
            cmd = step.command(self.nproc)
            with logfile.open("w") as f:
                f.write("$ " + " ".join(cmd) + "\n")
                f.flush()
                # the caller's folder: relative paths mean the same in every step as in the caller
                code = subprocess.call(cmd, env=env, stdout=f, stderr=subprocess.STDOUT)
            seconds = round(time.time() - t0, 2)
            if code != 0:
                raise StepFailed(step.name, code, logfile)
            write_json_atomic(marker, {"step": step.name, "command": cmd, "seconds": seconds})
            log.info("    done in %.1f s", seconds)
            results.append({"step": step.name, "status": "done", "seconds": seconds})
        return results


class StepFailed(Exception):
    """A step exited non-zero: names the step, its log file and the log's last lines."""

    def __init__(self, step: str, code: int, logfile: Path):
        self.step, self.code, self.logfile = step, code, logfile
        super().__init__(f"step '{step}' failed (exit {code}); log: {logfile}; last lines:\n{_tail(logfile)}")
