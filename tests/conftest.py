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
