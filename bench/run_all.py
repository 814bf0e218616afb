"""Run every stage benchmark (bench/bench_*.py) and write bench/RESULTS.md.

Each benchmark prints a ratio against a baseline measured in the same script, the figure on its
last line; this collects those last lines with the machine and the date.
"""
from __future__ import annotations

import argparse
import datetime
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

# The goal of each ratio, from the stage issues.
GOALS = {
    "bench_audio": ">= 20x, equal values",
    "bench_eval": ">= 3x (CPBD alone >= 5x), equal values",
    "bench_pirender": ">= 0.9 on CPU",
    "bench_recon": ">= 0.8 on CPU, >= 0.7 with one core busy (peak memory 1800/300 frames <= 1.2; --detect_every 5 >= 3x at < 1 px)",
    "bench_vico": ">= 2.5x on CPU, identical loss",
    "bench_submit": ">= 3x lower per-clip overhead (wall - network time) than the per-clip command chain",
}
BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent


def machine(threads: str) -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = ""
    try:
        import torch

        if torch.cuda.is_available():
            gpu = ", GPU " + torch.cuda.get_device_name(0)
    except Exception:
        pass
    return f"{cpu}, {os.cpu_count()} CPUs{gpu}, OMP_NUM_THREADS={threads}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", action="append", default=[], help="benchmark module name, e.g. bench_audio")
    ap.add_argument("--out", type=Path, default=BENCH / "RESULTS.md")
    args = ap.parse_args(argv)
    mods = sorted(p.stem for p in BENCH.glob("bench_*.py"))
    if args.only:
        mods = [m for m in mods if m in args.only]
    rows = []
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "2"))
    for m in mods:
        t0 = time.time()
        p = subprocess.run([sys.executable, "-m", f"bench.{m}"], cwd=REPO, env=env, capture_output=True, text=True)
        lines = [l for l in p.stdout.splitlines() if l.strip()]
        last = lines[-1] if lines and p.returncode == 0 else f"FAILED (exit {p.returncode}): {(p.stderr.strip().splitlines() or [''])[-1]}"
        print(f"{m}: {last}", flush=True)
        rows.append((m, last, round(time.time() - t0, 1)))
    text = ["# Benchmark results", "", f"- date: {datetime.date.today().isoformat()}",
            f"- machine: {machine(env['OMP_NUM_THREADS'])}", "- command: `make bench`", "",
            "| benchmark | result (last line) | goal | seconds |", "|---|---|---|---|"]
    text += [f"| `{m}` | {last} | {GOALS.get(m, '')} | {s} |" for m, last, s in rows]
    text += ["", "Each script prints its intermediate figures (frames/s of each side, memory, "
             "differences) before the last line: run it alone to see them."]
    if "GPU" not in machine(env["OMP_NUM_THREADS"]):
        text += ["", "No CUDA GPU on this machine: CPU figures only. On a GPU machine run e.g. "
                 "`python -m bench.bench_recon --device cuda --batch_size 32` and add its figures here."]
    args.out.write_text("\n".join(text) + "\n")
    print(f"wrote {args.out}")
    return 0 if all(not r[1].startswith("FAILED") for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
