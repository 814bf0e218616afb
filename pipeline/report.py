"""The HTML report of a demo run: metrics, scores, training loss, trajectories, frame strips, videos.

Reads only the run's artifacts (found through ``<run>/demo_config.json``) and writes
``<run>/report.html`` plus its images under ``<run>/report_assets/``. Videos are linked, not
copied: the report opens in a browser from the run folder.
"""
from __future__ import annotations

import datetime
import html
import io
import json
import logging
import os
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from PIL import Image

from common import coeffs, media
from common.artifacts import load_recon_mat
from common.cli import parser
from common.dataset import clip_name, read_index
from common.io import UserError, config_to_dict, read_json, run_cli, setup_logging, write_bytes_atomic, \
    write_text_atomic
from common.weights import get_spec, is_smoke
from evaluation import api as evaluation  # the stage's public API: the metric registry's declarations
from pipeline.config import TASKS, DemoConfig, run_config

log = logging.getLogger("pipeline.report")

EXAMPLES = """examples:
  python -m pipeline.report --run outputs/demo            # writes outputs/demo/report.html
  python -m pipeline.report --run outputs/demo --out /tmp/r.html
"""

# the registry's ranking directions, as shown beside each metric's label
BETTER = {"max": "↑", "min": "↓", "abs0": "→0"}


@dataclass(frozen=True)
class MetricRow:
    key: str     # results.json key
    label: str   # e.g. 'AVDist'
    aka: str     # its other name, e.g. 'LSE-D' ('' when none)
    better: str  # ↑ larger is better, ↓ smaller, →0 closest to 0
    doc: str

    @property
    def title(self) -> str:
        """What the table shows, e.g. 'AVDist (LSE-D) ↓'."""
        return f"{self.label} ({self.aka}) {self.better}" if self.aka else f"{self.label} {self.better}"


def metric_rows() -> list[MetricRow]:
    """The rows of the metrics table: the evaluator's default metrics, read from the metric
    registry (evaluation.api), in the order of results.json."""
    return [MetricRow(m.name, m.label, m.aka, BETTER[m.direction], m.doc) for m in evaluation.default_metrics()]


def lipsync_keys() -> tuple[str, ...]:
    """The lip-sync metrics (the registry's 'lipsync' group): their n/a reasons come from lip sync."""
    return evaluation.groups().get("lipsync", ())


# Figures published for the original baseline, shown next to ours and marked as published.
PUBLISHED: dict[str, dict[str, float]] = {"listener": {"ssim": 0.56, "expFD": 39.02}}
PUBLISHED_SOURCE = ("Zhou et al., Responsive Listening Head Generation: A Benchmark Dataset and Baseline "
                    "(ECCV 2022, arXiv 2112.13548): the listening-head baseline on the ViCo test split, as "
                    "indexed by wizwand.com and not re-checked against the paper's PDF. No figures were found "
                    "for the talking-head baseline. Real ViCo data and released weights, so not comparable "
                    "with a demo on synthetic data.")

# trajectory panels: (layout slice name, unit, ((component index, panel name), ...)); Deep3DFaceRecon's
# angles are rotations about x, y, z: pitch, yaw, roll
TRAJECTORIES = (("angle", "rad", ((0, "pitch"), (1, "yaw"), (2, "roll"))),
                ("trans", "", ((0, "tx"), (1, "ty"), (2, "tz"))),
                ("exp", "", ((0, "exp 0"), (1, "exp 1"), (2, "exp 2"))))
ORIGINAL_MIN_TRACK = 100  # the original lip-sync scorer: face tracks longer than 100 frames at 25 fps


@dataclass
class ReportConfig:
    run: Path
    out: Path | None = None     # default: the run config's paths.report
    strip_frames: int = 6       # frames per strip (evenly spaced)
    strip_height: int = 128     # pixel height of each strip row


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _svg(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="svg", bbox_inches="tight")
    _plt().close(fig)
    return buf.getvalue()


def na_reasons(obj: dict | None, task: str, keys: Sequence[str], source: Path) -> dict[str, str]:
    """Why each metric of ``keys`` has no value in one results.json (``obj``; None: not found).

    Reasons, first found: the file is missing; the metric could not run (``unavailable``); lip
    sync scored no clip (``lipsync_notes`` {uuid: reason}, or the per-video JSONL's notes);
    otherwise a generic one pointing to the per-video file."""
    if obj is None:
        return {k: f"{task}: {source} not found (the metrics step has not run)" for k in keys}
    res = obj.get("results") or {}
    missing = [k for k in keys if res.get(k) is None]
    if not missing:
        return {}
    unavailable = obj.get("unavailable") or {}
    lipsync = obj.get("lipsync_notes")
    sync_keys = lipsync_keys()
    if lipsync is None and any(k in sync_keys for k in missing):
        lipsync = _lipsync_notes_from_jsonl(Path(obj.get("per_video") or source.with_suffix(".videos.jsonl")))
    out = {}
    for k in missing:
        if k in unavailable:
            out[k] = f"{task} {k}: {unavailable[k]}"
        elif k in sync_keys and lipsync:
            out[k] = f"{task} {k}: no clip scored; " + "; ".join(f"{u}: {why}" for u, why in sorted(lipsync.items()))
        else:
            out[k] = f"{task} {k}: no value in {source.name} (no reason recorded; see {source.stem}.videos.jsonl)"
    return out


def _lipsync_notes_from_jsonl(path: Path) -> dict[str, str]:
    """uuid -> why lip sync did not score it, from evaluate's per-video records."""
    notes: dict[str, str] = {}
    if not path.is_file():
        return notes
    for line in path.read_text().splitlines():
        try:
            r = json.loads(line)
        except json.JSONDecodeError:
            continue
        why = r.get("lipsync_note") or next((e for e in r.get("errors", []) if str(e).startswith("lip sync:")), None)
        if why and "uuid" in r:
            notes[r["uuid"]] = why
    return notes


def _fmt(v: Any) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:.4g}"
    return html.escape(str(v))


def loss_figure(logs: dict[str, list[dict]]):
    """One panel per task: total and per-term loss per epoch; the legend right of each panel."""
    plt = _plt()
    fig, axes = plt.subplots(1, len(logs), figsize=(12, 3.2), squeeze=False)
    fig.subplots_adjust(wspace=0.55, right=0.85)
    for ax, (task, rows) in zip(axes[0], logs.items()):
        if rows:
            epochs = [r["epoch"] for r in rows]
            ax.plot(epochs, [r["loss"] for r in rows], "k-o", label="total", lw=2)
            for k in sorted(k for k in rows[0] if k.startswith("loss_") and not k.endswith("_spiky")):
                ax.plot(epochs, [r[k] for r in rows], "-", label=k[5:], alpha=0.8)
            ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
        ax.set_title(f"{task} training loss")
        ax.set_xlabel("epoch")
    return fig


def trajectory_figure(loaded: dict[str, np.ndarray]):
    """3x3 panels (pitch/yaw/roll, tx/ty/tz, exp 0-2) of each (N, 257) series; one legend above."""
    plt = _plt()
    fig, axes = plt.subplots(len(TRAJECTORIES), 3, figsize=(11, 6.5), sharex=True)
    styles = {"ground truth": "k-", "generated (vico)": "C3-", "re-extracted from render": "C0--"}
    for r, (part, unit, comps) in enumerate(TRAJECTORIES):
        for c, (comp, name) in enumerate(comps):
            ax = axes[r][c]
            for label, coeff in loaded.items():
                ax.plot(coeffs.RECON.get(coeff, part)[:, comp], styles.get(label, "-"), label=label, lw=1.2)
            ax.set_title(f"{name} ({unit})" if unit else name, fontsize=9)
    axes[-1][1].set_xlabel("frame (30 fps)")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.subplots_adjust(top=0.9, hspace=0.35)
    fig.legend(handles, labels, loc="upper center", ncol=len(labels), fontsize=8, bbox_to_anchor=(0.5, 1.0))
    return fig


class Report:
    """Builds the page section by section; ``assets`` are written beside it."""

    def __init__(self, cfg: DemoConfig, rc: ReportConfig):
        self.cfg, self.rc = cfg, rc
        self.page = Path(rc.out) if rc.out else cfg.path("report")
        self.assets = self.page.parent / "report_assets"
        self.parts: list[str] = []
        self.written: list[Path] = []

    # -- helpers ---------------------------------------------------------------------------------
    def rel(self, p: Path) -> str:
        """``p`` relative to the page's folder, as a URL path."""
        return Path(os.path.relpath(Path(p).resolve(), self.page.parent.resolve())).as_posix()

    def asset(self, name: str, data: bytes) -> str:
        path = self.assets / name
        write_bytes_atomic(path, data)
        self.written.append(path)
        return self.rel(path)

    def add(self, htm: str) -> None:
        self.parts.append(htm)

    # -- sections --------------------------------------------------------------------------------
    def header(self) -> None:
        steps = sorted((self.cfg.out / "steps").glob("*.done.json"))
        seconds = sum(read_json(s).get("seconds", 0) for s in steps)
        cfg = config_to_dict(self.cfg)
        self.add(f"""<h1>ViCo baseline: demo report</h1>
<p class=meta>Run <code>{html.escape(str(self.cfg.out))}</code>, report written
{datetime.datetime.now().strftime('%Y-%m-%d %H:%M')} on {html.escape(platform.node())}
({html.escape(platform.machine())}, Python {platform.python_version()}). {len(steps)} pipeline steps
finished, {seconds / 60:.1f} min of step time in all.
Data: synthetic ({self.cfg.pairs} pairs x {self.cfg.frames} frames, seed {self.cfg.seed});
vico trained {self.cfg.epochs} epoch(s) per task.</p>
<details><summary>resolved config</summary><pre>{html.escape(json.dumps(cfg, indent=2))}</pre></details>""")

    def weights(self) -> None:
        rows, n_smoke = [], 0
        for name in self.cfg.weights:
            spec = get_spec(name)
            f = spec.default_file(self.cfg.weights_dir)
            if f is None:
                state = "managed by a package"
            elif not f.is_file():
                state = "missing"
            elif is_smoke(f):
                state, n_smoke = "SMOKE-TEST (fill-rule weights, not the released file)", n_smoke + 1
            else:
                state = "real (released file)"
            cls = "smoke" if state.startswith("SMOKE") else ""
            rows.append(f"<tr class='{cls}'><td>{html.escape(name)}</td><td><code>{html.escape(str(f))}</code></td>"
                        f"<td>{html.escape(state)}</td></tr>")
        warn = (f"<p class=warn>{n_smoke} of {len(self.cfg.weights)} networks ran with smoke-test weights: the "
                "pipeline runs and connects end to end, but images and identity/sync/FID metrics are not "
                "meaningful. Put the released files under the weights folder (docs/weights.md) and run the "
                "demo into a new folder (<code>--out outputs/demo_real</code>): stages skip outputs that "
                "exist, so a re-run in this folder would keep the smoke-test results.</p>") if n_smoke else \
            "<p>Every network ran with its released weights.</p>"
        self.add(f"""<h2 id=weights>Weights</h2>{warn}
<table><tr><th>network</th><th>file</th><th>which weights</th></tr>{''.join(rows)}</table>""")

    def metrics(self) -> None:
        results, reasons, min_tracks = {}, {}, set()
        table = metric_rows()
        keys = [r.key for r in table]
        for task in TASKS:
            p = self.cfg.path("metrics") / f"{task}.json"
            obj = read_json(p) if p.is_file() else None
            results[task] = (obj or {}).get("results") or {}
            reasons[task] = na_reasons(obj, task, keys, p)
            if obj is not None:
                min_tracks.add((obj.get("config") or {}).get("min_track"))
        notes: list[str] = []  # numbered reasons; equal reasons share a number

        def na(task: str, key: str) -> str:
            why = reasons[task].get(key, f"{task} {key}: no value")
            if why not in notes:
                notes.append(why)
            i = notes.index(why) + 1
            return (f"<td class='num na' title='{html.escape(why, quote=True)}'>n/a "
                    f"<a href=#na-{i}>[{i}]</a></td>")

        head = "".join(f"<th>{t}: ours</th><th class=pub>{t}: published<sup>*</sup></th>" for t in TASKS)
        rows = []
        for row in table:
            cells = []
            for t in TASKS:
                v = results[t].get(row.key)
                cells.append(na(t, row.key) if v is None else f"<td class=num>{_fmt(v)}</td>")
                pub = PUBLISHED.get(t, {}).get(row.key)
                cells.append(f"<td class='num pub'>{'—' if pub is None else _fmt(pub)}</td>")
            rows.append(f"<tr id=metric-{row.key}><td title='{html.escape(row.doc, quote=True)}'>"
                        f"{html.escape(row.title)}</td>{''.join(cells)}</tr>")
        note_html = "".join(f"<li id=na-{i}>{html.escape(n)}</li>" for i, n in enumerate(notes, 1))
        min_tracks.discard(None)
        mt = min_tracks.pop() if len(min_tracks) == 1 else self.cfg.lipsync_min_track
        sync_labels = ", ".join(r.label for r in table if r.key in lipsync_keys())
        sync = f"Lip sync ({sync_labels}) scores clips with a face track longer than {mt} frames at 25 fps"
        if mt != ORIGINAL_MIN_TRACK:
            sync += (f": the demo sets this (lipsync_min_track in its config) so that its short clips are scored; "
                     f"the original requires {ORIGINAL_MIN_TRACK}, so these values are not comparable with it")
        sync += "."
        self.add(f"""<h2 id=metrics>Metrics</h2>
<p>Rendered videos against the ground truth (evaluation.evaluate, every metric); motion metrics on
coefficients re-extracted from the rendered videos, as the original. Every n/a links to its
reason below the table. {html.escape(sync)}</p>
<table id=metrics-table><tr><th>metric</th>{head}</tr>{''.join(rows)}</table>
{f'<ol class=notes id=na-notes>{note_html}</ol>' if notes else ''}
<p class=pub><sup>*</sup> published: {html.escape(PUBLISHED_SOURCE)}; — : no published figure.</p>""")

    def scores(self) -> None:
        blocks = []
        for task in TASKS:
            p = self.cfg.path("metrics") / f"score_{task}.json"
            if not p.is_file():
                blocks.append(f"<p>{task}: no score yet ({html.escape(str(p))} not found).</p>")
                continue
            s = read_json(p)
            ranked = s.get("metrics") or list(s["ranks"][s["order"][0]])  # the scoring rule's metrics
            keys = [k for k in ranked if any(s["values"][e].get(k) is not None for e in s["order"])]
            head = "".join(f"<th>{k}</th>" for k in keys)
            rows = "".join(
                f"<tr><td>{html.escape(e)}</td>"
                + "".join(f"<td class=num>{_fmt(s['values'][e][k])} ({s['ranks'][e][k]})</td>"
                          if s["values"][e].get(k) is not None else
                          "<td class='num na'>n/a (no value for this entry in its motion results)</td>"
                          for k in keys)
                + f"<td class=num>{s['score'][e]}</td></tr>" for e in s["order"])
            best = s["order"][0]
            verdict = (f"The {task} model beats the still head." if best == "vico" else
                       f"Here the still head wins: {self.cfg.epochs} epoch(s) on {self.cfg.pairs} synthetic pairs "
                       "are too few to learn the motion (and with smoke-test reconstruction weights the ground-"
                       "truth coefficients barely move). Train longer (--epochs) on real data.")
            blocks.append(f"<h3>{task}</h3><table class=score><tr><th>entry</th>{head}<th>rank sum</th></tr>"
                          f"{rows}</table><p>best: <b>{html.escape(best)}</b>. {html.escape(verdict)}</p>")
        self.add(f"""<h2 id=score>Score</h2>
<p>evaluation.score ranks the trained model's coefficients against the first frame held still
(vico.baseline), on the motion metrics, as the challenge ranked entries (rank per metric, lowest
rank sum wins; rank in brackets). A model that learnt the motion beats the still head.</p>
{''.join(blocks)}""")

    def losses(self) -> None:
        logs = {}
        for task in TASKS:
            log_path = self.cfg.path("vico") / task / "log.jsonl"
            logs[task] = [json.loads(line) for line in log_path.read_text().splitlines() if line.strip()] \
                if log_path.is_file() else []
        src = self.asset("loss.svg", _svg(loss_figure(logs)))
        self.add(f"""<h2 id=loss>Training loss</h2>
{'' if any(logs.values()) else '<p>No training log found.</p>'}<img class=plot src="{src}" alt="training loss">""")

    def trajectories(self, uuid: str, role: str) -> str | None:
        name = clip_name(uuid, role) + ".mat"
        series = {"ground truth": self.cfg.path("recons") / name,
                  "generated (vico)": self.cfg.path("generated") / "recon_coeffs" / "test" / name,
                  "re-extracted from render": self.cfg.path("rendered_recons") / name}
        loaded = {k: load_recon_mat(p)[0] for k, p in series.items() if p.is_file()}
        if not loaded:
            return None
        return self.asset(f"traj_{uuid}.{role}.svg", _svg(trajectory_figure(loaded)))

    def strip(self, videos: Sequence[Path], name: str) -> str | None:
        """A PNG of evenly spaced frames, one row per video (all rows at the same frame indices)."""
        if not all(v.is_file() for v in videos):
            return None
        clips = [media.read_video(v) for v in videos]
        n = min(len(c) for c in clips)
        if n == 0:
            return None
        idx = np.linspace(0, n - 1, min(self.rc.strip_frames, n)).round().astype(int)
        h = self.rc.strip_height

        def row(frames: np.ndarray) -> Image.Image:
            tiles = [Image.fromarray(frames[i]).resize((h * frames.shape[2] // frames.shape[1], h)) for i in idx]
            out = Image.new("RGB", (sum(t.width for t in tiles), h))
            x = 0
            for t in tiles:
                out.paste(t, (x, 0))
                x += t.width
            return out

        rows = [row(c) for c in clips]
        img = Image.new("RGB", (max(r.width for r in rows), len(rows) * (h + 4) - 4), "white")
        for i, r in enumerate(rows):
            img.paste(r, (0, i * (h + 4)))
        buf = io.BytesIO()
        img.save(buf, format="PNG")
        return self.asset(f"strip_{name}.png", buf.getvalue())

    def from_image(self) -> None:
        video = self.cfg.path("from_image") / "talking_head.mp4"
        if not video.is_file():
            self.add("<h2 id=from-image>From one image</h2><p>Not generated yet (step from_image).</p>")
            return
        photo = Image.open(self.cfg.face_image).convert("RGB")
        photo.thumbnail((256, 256))
        buf = io.BytesIO()
        photo.save(buf, format="PNG")
        src = self.asset("from_image_photo.png", buf.getvalue())
        strip = self.strip([video], "from_image")
        self.add(f"""<h2 id=from-image>From one image</h2>
<p><code>python -m pipeline.generate --audio ... --image {html.escape(str(self.cfg.face_image))}</code>:
the photo, reconstructed once, driven by the trained speaker model from a test clip's speech and
rendered by PIRender (settings in <code>{html.escape(self.rel(video.with_suffix('.json')))}</code>).</p>
<div class=videos><figure><img class=photo src='{src}' alt='input photo'><figcaption>input photo</figcaption>
</figure><figure><video class=rendered controls preload=auto src='{self.rel(video)}'></video>
<figcaption>generated, with the speech</figcaption></figure></div>
{f"<img class=strip src='{strip}' alt='generated frames'>" if strip else ''}""")

    def clips(self) -> None:
        data = self.cfg.path("data")
        test = data / "test.csv"
        if not test.is_file():
            self.add("<h2 id=clips>Clips</h2><p>No test split found.</p>")
            return
        blocks = []
        for clip in read_index(test):
            for role in TASKS:
                name = clip_name(clip.uuid, role)
                gt_video = data / "videos" / f"{name}.mp4"
                pd_video = self.cfg.path("rendered") / f"{name}.mp4"
                strip = self.strip([gt_video, pd_video], name)
                traj = self.trajectories(clip.uuid, role)
                strip_html = (f"<p>Frame strip: ground truth (top) | generated (bottom)</p>"
                              f"<img class=strip src='{strip}' alt='frame strip'>") if strip else \
                    "<p>No rendered video yet.</p>"
                vids = ""
                if pd_video.is_file():
                    vids += (f"<figure><video class=rendered controls preload=auto src='{self.rel(pd_video)}'>"
                             f"</video><figcaption>generated, with the speech</figcaption></figure>")
                if gt_video.is_file():
                    vids += (f"<figure><video class=gt controls muted preload=auto src='{self.rel(gt_video)}'>"
                             f"</video><figcaption>ground truth (silent, as in ViCo)</figcaption></figure>")
                blocks.append(f"""<section class=clip><h3>{html.escape(name)}</h3><div class=videos>{vids}</div>
{strip_html}
{f"<p>Coefficient trajectories</p><img class=plot src='{traj}' alt='trajectories'>" if traj else ''}
</section>""")
        self.add(f"<h2 id=clips>Clips (test split)</h2>{''.join(blocks)}")

    def build(self) -> Path:
        for section in (self.header, self.weights, self.metrics, self.scores, self.losses, self.clips,
                        self.from_image):
            section()
        page = f"""<!doctype html><html lang=en><head><meta charset=utf-8>
<title>ViCo demo report</title><style>{CSS}</style></head><body>
<nav><a href=#weights>weights</a> · <a href=#metrics>metrics</a> · <a href=#score>score</a> ·
<a href=#loss>training loss</a> · <a href=#clips>clips</a> · <a href=#from-image>from one image</a></nav>
{''.join(self.parts)}
</body></html>
"""
        write_text_atomic(self.page, page)
        return self.page


CSS = """body{font-family:system-ui,sans-serif;max-width:1150px;margin:1em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:3px 8px}
td.num{text-align:right;font-variant-numeric:tabular-nums}.pub{color:#666;font-style:italic}
tr.smoke td{background:#fff3cd}.warn{background:#fff3cd;padding:.5em;border-left:4px solid #e0a800}
.videos{display:flex;gap:1em}video{width:256px;height:256px;background:#000}figure{margin:0}
img.plot{max-width:100%}td.na{color:#8a5a00}img.photo{width:256px}img.strip{max-width:100%;border:1px solid #ccc}.meta{color:#555}
nav{position:sticky;top:0;background:#fff;padding:.3em 0;border-bottom:1px solid #ddd}"""


def build_report(rc: ReportConfig) -> Path:
    """Write the report of the demo run ``rc.run``; returns the page's path."""
    cfg = run_config(rc.run)
    if Path(cfg.out).resolve() != Path(rc.run).resolve():  # the run folder was moved: follow it
        cfg.out = Path(rc.run)
    page = Report(cfg, rc).build()
    log.info("report: %s", page)
    return page


def main(argv: Sequence[str] | None = None) -> int:
    ap = parser("pipeline.report", __doc__, EXAMPLES)
    ap.add_argument("--run", type=Path, required=True, help="demo run folder (holds demo_config.json)")
    ap.add_argument("--out", type=Path, default=None, help="report file (default: the config's paths.report)")
    ap.add_argument("--strip_frames", type=int, default=ReportConfig.strip_frames, help="frames per strip")
    args = ap.parse_args(argv)
    setup_logging()
    if args.strip_frames < 1:
        raise UserError("--strip_frames must be >= 1")
    build_report(ReportConfig(run=args.run, out=args.out, strip_frames=args.strip_frames))
    return 0


if __name__ == "__main__":
    run_cli(main)
