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
