"""Run by test_pipeline_progress.py through the Runner: a stage loop that reports progress."""
import sys
import time

from common.progress import Progress

if __name__ == "__main__":
    n, pause = int(sys.argv[1]), float(sys.argv[2])
    print("probe starting", flush=True)
    with Progress(total=n, desc="probe", unit="frame", items_total=1, interval=0.05) as bar:
        for i in range(n):
            time.sleep(pause)
            bar.update(1, items=int(i == n - 1))
    print("probe done", flush=True)
