"""The report explains itself: every n/a names its reason, panels are named, legends sit outside."""
from __future__ import annotations

import json
import re

import numpy as np

from common.io import write_json_atomic
from pipeline.config import DemoConfig
from pipeline.report import BETTER, ReportConfig, Report, loss_figure, metric_rows, na_reasons, trajectory_figure


def _results(path, results, **extra):
    write_json_atomic(path, {"task": path.stem, "results": results, "config": {"min_track": 50}, **extra})


def test_every_na_cell_links_to_its_reason(tmp_path):
    cfg = DemoConfig(out=tmp_path)
    m = cfg.path("metrics")
    # speaker: lip sync scored no clip (reason from the per-video JSONL, as before lipsync_notes);
    # csim could not run; listener: lipsync_notes in results.json and a null without a reason
    (m).mkdir(parents=True)
    (m / "speaker.videos.jsonl").write_text(json.dumps(
        {"uuid": "u1", "lipsync_note": "no face track longer than 50 frames at 25 fps"}) + "\n")
    _results(m / "speaker.json", {"ssim": 0.5, "avoffset": None, "avconf": None, "csim": None},
             unavailable={"csim": "missing weights file weights/arcface.pth"}, per_video=str(m / "speaker.videos.jsonl"))
    _results(m / "listener.json", {"ssim": 0.4, "avoffset": None, "avconf": None, "fid": None,
                                   "angleFD": 1.25, "transFD": 0.0312},
             lipsync_notes={"u1": "audio file u1.wav is empty"})
    rep = Report(cfg, ReportConfig(run=tmp_path))
    rep.metrics()
    page = "".join(rep.parts)
    cells = re.findall(r"<td class='num na' title='([^']*)'>n/a <a href=#na-(\d+)>", page)
    # every metric is n/a for both tasks but ssim (both) and angleFD, transFD (listener)
    assert len(cells) == 2 * len(metric_rows()) - 4
    notes = dict(re.findall(r"<li id=na-(\d+)>([^<]*)</li>", page))
    assert all(notes[i] for _, i in cells)
    assert "speaker avoffset: no clip scored; u1: no face track longer than 50 frames at 25 fps" in notes.values()
    assert "speaker avdist: no clip scored; u1: no face track longer than 50 frames at 25 fps" in notes.values()
    assert "listener avconf: no clip scored; u1: audio file u1.wav is empty" in notes.values()
    assert "speaker csim: missing weights file weights/arcface.pth" in notes.values()
    assert "listener fid: no value in listener.json (no reason recorded; see listener.videos.jsonl)" in notes.values()
    assert "longer than 50 frames at 25 fps: the demo sets this" in page and "the original requires 100" in page
    assert "Lip sync (AVOffset, AVConf, AVDist) scores clips" in page


def test_metric_rows_come_from_the_registry(tmp_path):
    """The table shows the evaluator's default metrics (evaluation.api), with the registry's labels
    and directions: AngleFD, TransFD and AVDist (LSE-D) beside the challenge's 12."""
    from evaluation import api

    assert set(BETTER) == set(api.DIRECTIONS)
    rows = {r.key: r for r in metric_rows()}
    assert list(rows) == list(api.groups()["default"])
    assert {"ssim", "cpbd", "psnr", "fid", "csim", "expL1", "poseL1", "expFD", "poseFD", "avoffset", "avconf",
            "lipLMD", "angleFD", "transFD", "avdist"} <= set(rows)
    assert rows["avdist"].title == "AVDist (LSE-D) ↓" and rows["avconf"].title == "AVConf (LSE-C) ↑"
    assert rows["angleFD"].title == "AngleFD ↓" and rows["transFD"].title == "TransFD ↓"
    assert rows["avoffset"].title == "AVOffset →0" and rows["ssim"].title == "SSIM ↑"

    cfg = DemoConfig(out=tmp_path)
    (cfg.path("metrics")).mkdir(parents=True)
    _results(cfg.path("metrics") / "speaker.json", {"angleFD": 1.25, "transFD": 0.0312, "avdist": 7.5})
    rep = Report(cfg, ReportConfig(run=tmp_path))
    rep.metrics()
    page = "".join(rep.parts)
    shown = dict(re.findall(r"<tr id=metric-(\w+)><td title='[^']*'>([^<]*)</td>", page))
    assert list(shown) == list(rows) and shown["avdist"] == "AVDist (LSE-D) ↓"
    for key, value in (("angleFD", "1.25"), ("transFD", "0.0312"), ("avdist", "7.5")):
        row = re.search(rf"<tr id=metric-{key}>.*?</tr>", page).group(0)
        assert f"<td class=num>{value}</td>" in row  # speaker: the value; listener: n/a with its footnote
        assert re.search(r"<td class='num na' title='listener: [^']*listener.json not found", row)


def test_na_reasons_missing_file(tmp_path):
    r = na_reasons(None, "speaker", ["ssim"], tmp_path / "speaker.json")
    assert r == {"ssim": f"speaker: {tmp_path / 'speaker.json'} not found (the metrics step has not run)"}
    assert na_reasons({"results": {"ssim": 0.1}}, "speaker", ["ssim"], tmp_path / "s.json") == {}


def _outside(ax, legend) -> bool:
    a, b = ax.get_window_extent(), legend.get_window_extent()
    return b.x1 <= a.x0 or b.x0 >= a.x1 or b.y1 <= a.y0 or b.y0 >= a.y1


def test_trajectory_panels_named_and_legend_outside():
    rng = np.random.default_rng(0)
    fig = trajectory_figure({"ground truth": rng.standard_normal((20, 257)),
                             "generated (vico)": rng.standard_normal((20, 257))})
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == ["pitch (rad)", "yaw (rad)", "roll (rad)", "tx", "ty", "tz", "exp 0", "exp 1", "exp 2"]
    (legend,) = fig.legends
    assert [t.get_text() for t in legend.get_texts()] == ["ground truth", "generated (vico)"]
    fig.canvas.draw()
    assert all(_outside(ax, legend) for ax in fig.axes)


def test_loss_legend_outside_the_curves():
    rows = [{"epoch": e, "loss": 1.0 / e, "loss_exp": 0.5 / e, "loss_angle": 0.2 / e} for e in range(1, 6)]
    fig = loss_figure({"speaker": rows, "listener": rows})
    fig.canvas.draw()
    for ax in fig.axes:
        assert [t.get_text() for t in ax.get_legend().get_texts()] == ["total", "angle", "exp"]
        assert all(_outside(other, ax.get_legend()) for other in fig.axes)


def test_score_table_shows_the_ranked_metrics(tmp_path):
    """The score table's columns are the metrics the scoring rule ranked (score_<task>.json's
    'metrics'); values of other metrics (angleFD, transFD: not in the rank sum) are left out."""
    cfg = DemoConfig(out=tmp_path)
    cfg.path("metrics").mkdir(parents=True)
    vals = {"expL1": 0.5, "expFD": 0.25, "angleFD": 0.125, "psnr": None}
    write_json_atomic(cfg.path("metrics") / "score_speaker.json", {
        "metrics": ["psnr", "expL1", "expFD"], "order": ["static", "vico"],
        "values": {"static": vals, "vico": dict(vals, expL1=0.75)},
        "ranks": {"static": {"psnr": 2, "expL1": 1, "expFD": 1}, "vico": {"psnr": 2, "expL1": 2, "expFD": 1}},
        "score": {"static": 4, "vico": 5}})
    rep = Report(cfg, ReportConfig(run=tmp_path))
    rep.scores()
    page = "".join(rep.parts)
    assert "<tr><th>entry</th><th>expL1</th><th>expFD</th><th>rank sum</th></tr>" in page
    assert "<td class=num>0.75 (2)</td>" in page and "angleFD" not in page
    assert "listener: no score yet" in page
