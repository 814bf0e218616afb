"""Packaging: pyproject's console scripts and pins agree, and an editable install runs from any folder."""
from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from pipeline.console import COMMANDS, attr_name

tomllib = pytest.importorskip("tomllib", reason="Python >= 3.11 reads pyproject.toml with tomllib")

REPO = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())


def _pins(name: str) -> dict[str, Version]:
    """name -> pinned version of a requirements file (following -r includes)."""
    out: dict[str, Version] = {}
    for line in (REPO / name).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line.startswith("-r "):
            out.update(_pins(line[3:].strip()))
        elif line:
            req = Requirement(line)
            (spec,) = req.specifier
            assert spec.operator == "==", f"{name}: {line} is not an exact pin"
            out[canonicalize_name(req.name)] = Version(spec.version)
    return out


def test_console_scripts_match_the_command_table():
    scripts = PYPROJECT["project"]["scripts"]
    assert scripts == {cmd: f"pipeline.console:{attr_name(cmd)}" for cmd in COMMANDS}
    import pipeline.console as console

    for cmd, module in COMMANDS.items():
        assert callable(getattr(console, attr_name(cmd))), cmd
        assert importlib.util.find_spec(module) is not None, f"{cmd}: no module {module}"
    # every task script that a user runs with python -m has a console script
    scripts_on_disk = {f"{p.parent.name}.{p.stem}" for stage in ("pipeline", "preprocess", "vico", "PIRender",
                                                                  "evaluation", "Deep3DFaceRecon_pytorch")
                       for p in (REPO / stage).glob("*.py") if re.search(r"^def main\(", p.read_text(), re.M)}
    assert scripts_on_disk <= set(COMMANDS.values())
    # docs/install.md lists every console script with the module it runs
    rows = set(re.findall(r"^\| `(vico-[a-z-]+)` \| `python -m ([\w.]+)` \|$", (REPO / "docs" / "install.md").read_text(), re.M))
    assert rows == set(COMMANDS.items())


@pytest.mark.parametrize("extra, req_file", [(None, "requirements.txt"), ("dev", "requirements-dev.txt"),
                                             ("fan", "requirements-fan.txt")])
def test_requirement_pins_meet_the_lower_bounds(extra, req_file):
    declared = PYPROJECT["project"]["dependencies"] if extra is None else \
        PYPROJECT["project"]["optional-dependencies"][extra]
    pins = _pins(req_file)
    for line in declared:
        req = Requirement(line)
        name = canonicalize_name(req.name)
        assert name in pins, f"{req_file}: no pin for {req.name} (pyproject.toml declares it)"
        assert req.specifier.contains(pins[name], prereleases=True), f"{req_file}: {name}=={pins[name]} vs {req}"
        assert any(s.operator == ">=" for s in req.specifier), f"pyproject.toml: {line} has no lower bound"
    # and the pin files hold nothing that pyproject does not declare (runtime + this extra)
    runtime = {canonicalize_name(Requirement(x).name) for x in PYPROJECT["project"]["dependencies"]}
    mine = {canonicalize_name(Requirement(x).name) for x in declared}
    assert set(pins) == runtime | mine


@pytest.mark.slow
def test_editable_install_runs_from_any_folder(tmp_path):
    """pip install -e . into a fresh venv (which sees this venv's packages through a .pth file):
    python -m STAGE.SCRIPT and the console scripts then work from a folder outside the repo."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    vpy = venv / "bin" / "python"
    site = Path(subprocess.run([vpy, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    (site / "_project_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()

    def run(*cmd):
        return subprocess.run([str(c) for c in cmd], cwd=elsewhere, env=env, capture_output=True, text=True,
                              timeout=300)

    before = run(vpy, "-m", "pipeline.generate", "--help")
    assert before.returncode == 1 and "No module named 'pipeline'" in before.stderr  # not installed yet
    r = run(sys.executable, "-m", "pip", "--python", vpy, "install", "-q", "--no-deps", "--no-build-isolation",
            "--disable-pip-version-check", "-e", REPO)
    assert r.returncode == 0, r.stderr[-2000:]

    r = run(vpy, "-m", "pipeline.generate", "--help")
    assert r.returncode == 0 and "--checkpoint" in r.stdout and "examples:" in r.stdout, r.stderr
    r = run(venv / "bin" / "vico-weights", "--help")
    assert r.returncode == 0 and "make-smoke" in r.stdout, r.stderr
    # a console script reports a bad input as python -m does: one error line, exit 2
    r = run(venv / "bin" / "vico-generate", "--audio", "missing.wav", "--image", "missing.png",
            "--out", "talking.mp4", "--checkpoint", "none.pt")
    assert r.returncode == 2 and r.stderr.strip().startswith("error: ") and "missing.wav" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert sorted(p.name for p in (venv / "bin").glob("vico-*")) == sorted(COMMANDS)
