"""Rank several results.json files as the challenge did.

Two rules. ``rank_sum`` (default) is the original's evaluations/scoring_example.py: each of its 12
metrics (PSNR, SSIM, CPBD, FID, CSIM, LipLMD, AVOffset, AVConf, ExpL1, PoseL1, ExpFD, PoseFD)
ranks the entries in its direction, the ranks are summed and the lowest sum wins. ``num_top1`` is
the 2022 leaderboard's order: per entry, the number of its track's leaderboard columns (talking
head: SSIM, CPBD, PSNR, FID, CSIM, ExpFD, AngleFD, TransFD, AVOffset, AVConf, LipLMD; listening
head: the same without AVOffset, AVConf and LipLMD) on which it is best, tied best entries each
counting; the highest count wins. Directions come from the metric registry: larger is better
for CPBD, SSIM, PSNR, CSIM and AVConf; |AVOffset| closest to 0 is better; smaller is better for
the others. An entry without a value for a metric gets the worst rank (the number of entries)
and is never best on it; the table marks it.
"""
from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path
from typing import Any, Sequence

from common.cli import HelpFormatter
from common.io import UserError, read_json, run_cli, setup_logging, write_json_atomic, write_text_atomic
from evaluation.metrics import registry

log = logging.getLogger("evaluation.score")

RULES = ("rank_sum", "num_top1")
TIES = ("average_trunc", "min")

EPILOG = """\
tie rules (rank_sum):
  average_trunc  the original: pandas rank() (average of the tied positions) truncated to int
  min            ties share the best position (1, 1, 3)

worked example: entries A, B, C with PSNR 30, 30, 30 and FID 10, 12, 11
  rank_sum, --ties average_trunc: PSNR (1+2+3)/3 = 2 for each; FID 1, 3, 2
           -> A 3, B 5, C 4 on these two metrics
  rank_sum, --ties min: PSNR 1 for each; FID 1, 3, 2 -> A 2, B 4, C 3
  num_top1: PSNR is a 3-way tie for best, each counts it; FID only A -> A 2, B 1, C 1

examples:
  python -m evaluation.score teamA/results.json teamB/results.json baseline/results.json
  python -m evaluation.score a.json b.json --names A B --output ranking.md --json ranking.json
  python -m evaluation.score a.json b.json c.json --rule num_top1 --task listener
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m evaluation.score", description=__doc__, epilog=EPILOG,
                                formatter_class=HelpFormatter)
    p.add_argument("results", nargs="+", help="results.json files written by evaluation.evaluate")
    p.add_argument("--names", nargs="+", default=None, help="entry names (default: parent folder or file stem)")
    p.add_argument("--output", default=None, help="write the markdown table here too")
    p.add_argument("--json", default=None, help="write ranks and scores as JSON here")
    p.add_argument("--rule", choices=RULES, default="rank_sum",
                   help="rank_sum: scoring_example.py's 12 metrics, lowest sum wins; num_top1: the 2022 leaderboard")
    p.add_argument("--ties", choices=TIES, default="average_trunc", help="rank of tied entries (see below)")
    p.add_argument("--task", choices=registry.TRACKS, default=None,
                   help="track whose leaderboard columns num_top1 counts (default: the files' task, else speaker)")
    return p


def load_values(path: str | os.PathLike) -> dict[str, float | None]:
    """The values of every registered metric in a results file (``results`` dict or a flat dict)."""
    return load_entry(path)[0]


def load_entry(path: str | os.PathLike) -> tuple[dict[str, float | None], str | None]:
    """(metric values, task or None) of a results file."""
    obj = read_json(path)
    if not isinstance(obj, dict):
        raise UserError(f"{path}: expected a JSON object of metric values")
    vals = obj.get("results", obj)
    known = registry.directions()
    if not isinstance(vals, dict) or not any(m in vals for m in known):
        raise UserError(f"{path}: no scored metric found (expected keys such as {', '.join(list(known)[:4])})")
    out: dict[str, float | None] = {}
    for m in known:
        v = vals.get(m)
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))):
            raise UserError(f"{path}: metric {m} is not a number ({v!r})")
        out[m] = None if v is None else float(v)
    task = obj.get("task")
    return out, task if task in registry.TRACKS else None


def _key(direction: str):
    return {"max": lambda v: -v, "min": lambda v: v, "abs0": lambda v: abs(v)}[direction]


def rank(values: list[float | None], direction: str, ties: str = "average_trunc") -> list[int]:
    """Ranks (1 = best); None ranks last (len(values)). Ties: 'average_trunc' = int(average of the
    tied positions) as pandas ``rank()`` then ``int`` in scoring_example.py; 'min' = the best position."""
    if ties not in TIES:
        raise ValueError(f"ties {ties!r} not in {TIES}")
    key = _key(direction)
    n = len(values)
    keys = [None if v is None else key(v) for v in values]
    out = []
    for k in keys:
        if k is None:
            out.append(n)
            continue
        better = sum(1 for o in keys if o is not None and o < k)
        tied = sum(1 for o in keys if o is not None and o == k)
        out.append(better + 1 if ties == "min" else int(better + (tied + 1) / 2))
    return out


def best(values: list[float | None], direction: str) -> list[bool]:
    """Whether each entry is best (tied best entries all are); None never is."""
    key = _key(direction)
    keys = [None if v is None else key(v) for v in values]
    real = [k for k in keys if k is not None]
    return [k is not None and k == min(real) for k in keys]


def columns(rule: str, task: str = "speaker") -> dict[str, str]:
    """Metric -> direction of the metrics a rule uses."""
    return registry.rank_sum_metrics() if rule == "rank_sum" else registry.leaderboard_metrics(task)


def score(entries: dict[str, dict[str, float | None]], rule: str = "rank_sum", ties: str = "average_trunc",
          task: str = "speaker") -> dict[str, Any]:
    """{'rule', 'metrics', 'ranks': {entry: {metric: rank}}, 'score': {entry: rank sum or number of
    top-1 metrics}, 'top1': {entry: [metrics]}, 'order': [entries best first]}."""
    if rule not in RULES:
        raise ValueError(f"rule {rule!r} not in {RULES}")
    names = list(entries)
    cols = columns(rule, task)
    ranks: dict[str, dict[str, int]] = {n: {} for n in names}
    top1: dict[str, list[str]] = {n: [] for n in names}
    for m, direction in cols.items():
        vals = [entries[n].get(m) for n in names]
        for n, r, b in zip(names, rank(vals, direction, ties), best(vals, direction)):
            ranks[n][m] = r
            if b:
                top1[n].append(m)
    if rule == "rank_sum":
        total = {n: sum(ranks[n].values()) for n in names}
        order = sorted(names, key=lambda n: (total[n], names.index(n)))
    else:
        total = {n: len(top1[n]) for n in names}
        order = sorted(names, key=lambda n: (-total[n], names.index(n)))
    return {"rule": rule, "ties": ties, "task": task, "metrics": list(cols), "ranks": ranks, "score": total,
            "top1": top1, "order": order}


def markdown(entries: dict[str, dict[str, float | None]], result: dict[str, Any]) -> str:
    cols = result.get("metrics") or list(registry.rank_sum_metrics())
    total = "rank sum" if result.get("rule", "rank_sum") == "rank_sum" else "num top1"
    labels = [registry.get(m).label for m in cols]
    head = "| entry | " + " | ".join(labels) + f" | {total} |"
    sep = "|---|" + "---|" * len(cols) + "---|"
    lines = [head, sep]
    for n in result["order"]:
        cells = []
        for m in cols:
            v, r = entries[n].get(m), result["ranks"][n][m]
            mark = "*" if m in result.get("top1", {}).get(n, ()) else ""
            cells.append(f"n/a ({r})" if v is None else f"{v:.4g}{mark} ({r})")
        lines.append(f"| {n} | " + " | ".join(cells) + f" | {result['score'][n]} |")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging()
    paths = [Path(p) for p in args.results]
    if args.names is not None and len(args.names) != len(paths):
        raise UserError(f"--names: {len(args.names)} names for {len(paths)} results files")
    names = args.names or [p.parent.name or p.stem for p in paths]
    if len(set(names)) != len(names):
        names = [str(p) for p in paths]
    if len(set(names)) != len(names):
        raise UserError("the same results file is given twice")
    loaded = {n: load_entry(p) for n, p in zip(names, paths)}
    entries = {n: v for n, (v, _) in loaded.items()}
    task = args.task
    if task is None:
        tasks = {t for _, t in loaded.values() if t}
        if len(tasks) > 1:
            raise UserError(f"the results files mix tasks ({', '.join(sorted(tasks))}); give --task")
        task = tasks.pop() if tasks else "speaker"
    result = score(entries, args.rule, args.ties, task)
    table = markdown(entries, result)
    print(table, end="")
    if args.output:
        write_text_atomic(args.output, table)
    if args.json:
        write_json_atomic(args.json, {"values": entries, **result})
    return 0


if __name__ == "__main__":
    run_cli(main)
