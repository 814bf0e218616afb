import json
import os
import subprocess
import sys

import pytest

WORKER = "tests.common._dist_worker"


def _run(args, repo_root, out, n):
    env = dict(os.environ, PYTHONPATH=str(repo_root), OMP_NUM_THREADS="1")
    p = subprocess.run([sys.executable, *args, "-m", WORKER, str(out), str(n)] if not args
                       else [sys.executable, "-m", "torch.distributed.run", *args, "-m", WORKER, str(out), str(n)],
                       cwd=repo_root, env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    return json.loads((out / "result.json").read_text())


def test_plain_python_is_world_size_one(tmp_path, repo_root):
    r = _run([], repo_root, tmp_path, 7)
    assert r["world"] == 1
    assert r["gathered"] == [{"rank": 0, "items": list(range(7))}]
    assert r["tensor"] == [1.0, 10.0] and r["scalar"] == 7.0 and r["token"] == "from-rank-0"
    assert r["codes"] == [1]  # the failure of the only rank


@pytest.mark.slow
@pytest.mark.torchrun
def test_torchrun_two_processes_gloo(tmp_path, repo_root):
    n = 11
    r = _run(["--standalone", "--nproc_per_node", "2"], repo_root, tmp_path, n)
    assert r["world"] == 2
    items = [i for g in r["gathered"] for i in g["items"]]
    assert sorted(items) == list(range(n)) and len(items) == n  # every item exactly once
    assert [g["rank"] for g in r["gathered"]] == [0, 1]
    assert r["tensor"] == [3.0, 20.0]  # (1 + 2), (10 + 10)
    assert r["scalar"] == float(n)
    assert r["array"] == [1.0, 2.0]
    assert r["token"] == "from-rank-0"
    assert r["codes"] == [1, 1]  # rank 1's failure makes every rank exit 1
    report = json.loads((tmp_path / "run.json").read_text())  # merged on rank 0
    assert report["counts"] == {"done": n, "skipped": 0, "failed": 1}
    assert report["config"]["world_size"] == 2
    assert report["failures"] == [{"item": "bad-item", "reason": "broken on the last rank"}]


def test_thread_count_policy(monkeypatch):
    from common.dist import configure_threads, thread_count
    from common.io import UserError

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)))
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    assert thread_count() == 8                        # every CPU this process may use
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    assert thread_count() == 4                        # shared by the local torchrun processes
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "16")
    assert thread_count() == 1                        # never 0
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert thread_count() == 3                        # the user's setting wins
    monkeypatch.setenv("OMP_NUM_THREADS", "5,2")
    assert thread_count() == 5                        # OpenMP's nested form: the outer level
    monkeypatch.setenv("OMP_NUM_THREADS", "many")
    with pytest.raises(UserError, match="OMP_NUM_THREADS=many: not a positive number"):
        thread_count()
    import torch

    before = torch.get_num_threads()
    try:
        monkeypatch.setenv("OMP_NUM_THREADS", "1")
        assert configure_threads(2) == 2 and torch.get_num_threads() == 2   # --threads 2
        assert configure_threads(0) == 1 and torch.get_num_threads() == 1   # --threads 0: automatic
        with pytest.raises(UserError, match="--threads must be >= 0"):
            configure_threads(-1)
    finally:
        torch.set_num_threads(before)


def test_threads_follow_cpu_affinity_in_a_real_process(repo_root):
    """No OMP_NUM_THREADS: a process pinned to one CPU gets one torch thread after init_dist."""
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "LOCAL_WORLD_SIZE")}
    env["PYTHONPATH"] = str(repo_root)
    code = "from common.dist import init_dist; import torch; init_dist('cpu'); print(torch.get_num_threads())"
    one_cpu = min(os.sched_getaffinity(0))
    p = subprocess.run([sys.executable, "-c", code], cwd=repo_root, env=env, capture_output=True, text=True,
                       timeout=120, preexec_fn=lambda: os.sched_setaffinity(0, {one_cpu}))
    assert p.returncode == 0, p.stderr[-2000:]
    assert p.stdout.strip() == "1"
