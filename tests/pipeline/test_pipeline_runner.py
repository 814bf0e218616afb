import json

import pytest

from pipeline.runner import Runner, Step, StepFailed
from common.io import UserError


def test_runs_in_order_skips_when_done_and_reports_failures(tmp_path):
    good = tmp_path / "in.json"
    good.write_text('{"a": 1}')
    steps = [Step("one", "json.tool", [good, tmp_path / "one.json"]),
             Step("two", "json.tool", [tmp_path / "one.json", tmp_path / "two.json"]),
             Step("bad", "json.tool", [tmp_path / "missing.json"])]
    r = Runner(tmp_path / "run", steps)
    with pytest.raises(StepFailed) as e:
        r.run(r.steps)
    msg = str(e.value)
    assert "step 'bad' failed" in msg and str(tmp_path / "run" / "logs" / "bad.log") in msg
    assert "missing.json" in msg  # the log's last lines are quoted
    assert json.loads((tmp_path / "two.json").read_text()) == {"a": 1}
    (tmp_path / "two.json").unlink()
    res = r.run(r.select(only=["one", "two"]))
    assert [x["status"] for x in res] == ["skipped", "skipped"]  # resumed: nothing redone
    assert not (tmp_path / "two.json").exists()
    res = r.run(r.select(only=["two"]), force=True)
    assert res[0]["status"] == "done" and (tmp_path / "two.json").exists()


def test_select_errors(tmp_path):
    r = Runner(tmp_path, [Step("a", "json.tool", []), Step("b", "json.tool", [])])
    assert [s.name for s in r.select(start="b")] == ["b"]
    with pytest.raises(UserError, match="unknown step 'c'"):
        r.select(start="c")


def test_distributed_steps_run_under_torchrun_with_nproc(tmp_path):
    """nproc > 1: steps marked distributed run as torchrun --standalone jobs (one node), the others
    as one plain process; the done marker records the command."""
    steps = [Step("split", "tests.pipeline._rank_probe", [tmp_path / "split"], distributed=True),
             Step("single", "tests.pipeline._rank_probe", [tmp_path / "single"])]
    r = Runner(tmp_path / "run", steps, nproc=2)
    r.run(r.steps)
    assert sorted(p.name for p in (tmp_path / "split").iterdir()) == ["rank0_of_2", "rank1_of_2"]
    assert [p.name for p in (tmp_path / "single").iterdir()] == ["ranknone_of_none"]
    marker = json.loads((tmp_path / "run" / "steps" / "split.done.json").read_text())
    assert marker["command"][1:6] == ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    with pytest.raises(UserError, match="--nproc must be >= 1"):
        Runner(tmp_path / "run", steps, nproc=0)
