"""Live progress: stages write JSON lines (VICO_PROGRESS_FILE), the runner draws one console line."""
from __future__ import annotations

import io
import json
import re

from common.progress import ENV, Progress, follow, format_record, progress
from pipeline.runner import LiveLine, Runner, Step


def test_progress_file_records_and_no_bar_off_terminal(tmp_path, monkeypatch, capsys):
    f = tmp_path / "p.jsonl"
    monkeypatch.setenv(ENV, str(f))
    got = list(progress(range(4), desc="files", unit="file"))
    assert got == [0, 1, 2, 3]
    recs = [json.loads(line) for line in f.read_text().splitlines()]
    assert recs[0]["n"] == 0 and recs[0]["total"] == 4 and not recs[0]["done"]
    assert recs[-1]["n"] == 4 and recs[-1]["done"] and recs[-1]["unit"] == "file" and recs[-1]["eta"] == 0.0
    assert capsys.readouterr().err == ""  # stderr is not a terminal here: no bar drawn
    last, off = follow(f)
    assert last == recs[-1] and off == f.stat().st_size and follow(f, off) == (None, off)
    # another rank writes nothing
    monkeypatch.setenv("RANK", "1")
    with Progress(3, "x") as bar:
        bar.update(3)
    assert len(f.read_text().splitlines()) == len(recs)


def test_format_record():
    rec = {"desc": "render", "n": 30, "total": 60, "unit": "frame", "rate": 2.5, "eta": 12.0, "items": 1,
           "items_total": 2}
    assert format_record(rec) == "render 30/60 frame, 2.5 frame/s, ETA 00:12 (1/2 done)"
    assert format_record({"desc": "x", "n": 0, "total": None, "unit": "it", "rate": 0}) == "x 0 it, starting"


def test_runner_shows_the_running_steps_progress(tmp_path):
    console = io.StringIO()
    r = Runner(tmp_path / "run", [Step("probe", "tests.pipeline._progress_probe", [6, 0.3])],
               line=LiveLine(console, live=True))
    assert r.run(r.steps)[0]["status"] == "done"
    shown = console.getvalue()
    # redrawn in place: carriage returns, items, rate and ETA; cleared at the end
    lines = [s.strip() for s in shown.split("\r") if s.strip()]
    assert lines and all(re.fullmatch(r"probe: probe \d/6 frame, ([\d.]+ frame/s, ETA 00:0\d|starting) \(\d/1 done\)", s)
                         for s in lines), lines
    assert any(re.search(r"[1-5]/6 frame, [\d.]+ frame/s, ETA", s) for s in lines), lines
    assert shown.endswith("\r")
    log = (tmp_path / "run" / "logs" / "probe.log").read_text()
    assert "probe starting" in log and "probe done" in log  # the log still gets everything
    last, _ = follow(tmp_path / "run" / "logs" / "probe.progress.jsonl")
    assert last["n"] == 6 and last["done"] and last["items"] == 1
    # not a terminal: nothing drawn
    quiet = io.StringIO()
    Runner(tmp_path / "run2", [Step("probe", "tests.pipeline._progress_probe", [2, 0.1])],
           line=LiveLine(quiet, live=False)).run([Step("probe", "tests.pipeline._progress_probe", [2, 0.1])])
    assert quiet.getvalue() == ""
