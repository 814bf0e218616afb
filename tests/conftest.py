"""Shared fixtures: the golden parity data and one small synthetic dataset per test session."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

# Two CPU threads, as the golden data and the benchmarks assume; keeps runs comparable.
os.environ.setdefault("OMP_NUM_THREADS", "2")
# Idle OpenMP threads sleep instead of spinning: with two test workers (make test) and their
# subprocesses, more threads than cores run at once, and spinning threads then take the cores
# from the working ones (a 30-frame face_recon_videos run, two at once: 129 s spinning, 24 s passive).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


# Parallel runs: `make test` runs pytest -n 2 with --dist loadscope (addopts), and the scopes are
# those of xdist_scope() below. Each worker process builds its own session- and module-scoped
# fixtures, so a scope keeps the tests that share an expensive fixture on one worker: a module, or
# for a folder whose session-scoped workspace several modules use, the whole folder.
SHARED_FOLDERS = ("tests/faults",)  # tests/faults/conftest.py: ws (synthetic data, keypoints, LMDB)
# Handed out first, in this order (longest first, from --durations), so that the two long end-to-end
# runs start at once, one per worker, and the shorter scopes fill in behind them.
LONG_FIRST = (
    "tests/docs/test_guide.py",               # every stage by hand, about 7.5 min
    "tests/pipeline/test_pipeline_demo.py",   # the demo, about 7 min
    "tests/faults",
    "tests/pipeline/test_pipeline_generate.py",
    "tests/evaluation/test_evaluation_cli.py",
    "tests/pipeline/test_challenge.py",
    "tests/pirender/test_pirender_train.py",
    "tests/pirender/test_pirender_inference.py",
    "tests/deep3d/test_deep3d_robust.py",
    "tests/deep3d/test_deep3d_cli.py",
    "tests/vico/test_vico_train.py",
)


def xdist_scope(nodeid: str) -> str:
    """The unit of work a worker gets: the test's module, or its folder if listed in SHARED_FOLDERS."""
    module = nodeid.split("::", 1)[0]
    return next((f for f in SHARED_FOLDERS if module.startswith(f + "/")), module)


@pytest.hookimpl(tryfirst=True)  # before xdist's own choice
def pytest_xdist_make_scheduler(config, log):
    """--dist loadscope with the scopes of xdist_scope(), LONG_FIRST handed out first (the other
    scopes in xdist's order: most tests first). Other --dist modes are left to xdist."""
    if config.getvalue("dist") != "loadscope":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class Scheduling(LoadScopeScheduling):
        _ordered = False

        def _split_scope(self, nodeid: str) -> str:
            return xdist_scope(nodeid)

        def _assign_work_unit(self, node) -> None:
            if not self._ordered:  # the work queue is complete at the first assignment
                for scope in reversed(LONG_FIRST):
                    if scope in self.workqueue:
                        self.workqueue.move_to_end(scope, last=False)
                self._ordered = True
            super()._assign_work_unit(node)

    return Scheduling(config, log)


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope="session")
def golden() -> Path:
    """tests/golden: inputs and outputs of the original implementations (see its README.md)."""
    return REPO / "tests" / "golden"


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory) -> Path:
    """A small synthetic ViCo dataset in the challenge layout (2 pairs x 60 frames)."""
    from common.synthetic import generate

    return generate(tmp_path_factory.mktemp("synthetic") / "vico", pairs=2, frames=60, seed=0)


def run_module(module: str, *args: str, cwd: Path | None = None, env: dict | None = None, timeout: int = 600):
    """Run ``python -m module args`` like a user would; returns the CompletedProcess."""
    import subprocess

    full_env = dict(os.environ)
    full_env["PYTHONPATH"] = str(REPO) + os.pathsep + full_env.get("PYTHONPATH", "")
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", module, *map(str, args)], cwd=cwd or REPO, env=full_env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="session")
def run_cli():
    """``run_cli('STAGE.SCRIPT', *args)`` -> CompletedProcess (stdout, stderr, returncode)."""
    return run_module
