"""docs/guide.md runs as written: its marked blocks, in order, with the declared substitutions only."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
GUIDE = REPO / "docs" / "guide.md"
BLOCK = re.compile(r"<!-- guide: (run|help) -->\n```bash\n(.*?)```", re.S)

# Everything the test changes in the guide's commands, and why (docs/guide.md says the same).
SUBSTITUTIONS: list[tuple[str, str, str]] = [
    ("python -m common.weights fetch --all --accept_terms", "python -m common.weights make-smoke --all",
     "no internet here: smoke-test weights in the released layouts"),
    ("--pairs 3 --frames 90", "--pairs 2 --frames 30", "a tiny dataset"),
    ("--max_epochs 500", "--max_epochs 1", "one epoch"),
    ("--output_dir runs/$task/rendered_recons", "--output_dir runs/$task/rendered_recons --allow_no_face",
     "renders made with smoke-test weights show no face"),
    ("--output_dir runs/$task/rendered_keypoints",
     "--output_dir runs/$task/rendered_keypoints --max_no_face_fraction 1",
     "renders made with smoke-test weights show no face: keep their -1 landmarks"),
]


def guide_blocks() -> list[tuple[str, str]]:
    """(kind, commands) of every marked block, in document order."""
    return [(m.group(1), m.group(2)) for m in BLOCK.finditer(GUIDE.read_text())]


def substitute(text: str) -> str:
    for old, new, _why in SUBSTITUTIONS:
        text = text.replace(old, new)
    return text


def commands(block: str) -> list[str]:
    """Logical command lines of a block (continuations joined, comments dropped)."""
    joined = re.sub(r"\\\n\s*", " ", block)
    return [line.strip() for line in joined.splitlines() if line.strip() and not line.strip().startswith("#")]


def test_guide_has_marked_blocks_and_every_substitution_applies():
    blocks = guide_blocks()
    assert [k for k, _ in blocks].count("run") >= 6 and any(k == "help" for k, _ in blocks)
    text = "\n".join(b for _, b in blocks)
    unused = [old for old, _, _ in SUBSTITUTIONS if old not in text]
    assert not unused, f"substitutions that no longer match docs/guide.md: {unused}"


def test_help_blocks_parse():
    """Blocks that need several GPUs or nodes: each command's module answers --help."""
    for kind, block in guide_blocks():
        if kind != "help":
            continue
        for cmd in commands(block):
            module = re.search(r"-m (\S+)", cmd).group(1)
            proc = subprocess.run([sys.executable, "-m", module, "--help"], cwd=REPO, capture_output=True, text=True)
            assert proc.returncode == 0, f"{module} --help failed:\n{proc.stderr}"
            flags = set(re.findall(r"(--\w+)", cmd.split(f"-m {module}", 1)[1]))
            unknown = [f for f in flags if f not in proc.stdout]
            assert not unknown, f"{module}: options in docs/guide.md that --help does not list: {unknown}"


@pytest.mark.slow
def test_guide_runs_as_written(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
               VICO_WEIGHTS_DIR=str(tmp_path / "weights"), OMP_NUM_THREADS="1")
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env["PATH"]  # `python` is this interpreter
    for i, (kind, block) in enumerate(guide_blocks()):
        if kind != "run":
            continue
        script = "set -euo pipefail\n" + substitute(block)
        proc = subprocess.run(["bash", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=900)
        assert proc.returncode == 0, f"guide block {i} failed:\n{script}\n--- stderr tail:\n{proc.stderr[-3000:]}"
    for task in ("speaker", "listener"):
        results = tmp_path / "runs" / task / "results.json"
        assert results.is_file(), f"{results} not written"
        assert list((tmp_path / "runs" / task / "rendered").glob("*.mp4")), f"no rendered videos for {task}"
