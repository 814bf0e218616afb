"""Run by test_pipeline_runner.py through the Runner: records which torchrun rank ran it."""
import os
import sys
from pathlib import Path

if __name__ == "__main__":
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    (out / f"rank{os.environ.get('RANK', 'none')}_of_{os.environ.get('WORLD_SIZE', 'none')}").write_text("ok")
