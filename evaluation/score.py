"""Rank several results.json files as the challenge did: rank sum over 12 metrics, lowest wins.

Replaces the original's evaluations/scoring_example.py. Each metric ranks the entries in its
direction: larger is better for CPBD, SSIM, PSNR, CSIM and AVConf; |AVOffset| closest to 0 is
better; smaller is better for FID, ExpL1, PoseL1, LipLMD, ExpFD and PoseFD. Ties share the best
rank of the tie (1, 1, 3). An entry without a value for a metric gets the worst rank (the number
of entries) for it, and the table marks it.
"""
from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path
from typing import Any, Sequence

from common.cli import HelpFormatter
from common.io import UserError, read_json, run_cli, setup_logging, write_json_atomic, write_text_atomic

log = logging.getLogger("evaluation.score")

# metric -> direction: 'max' (larger better), 'min' (smaller better), 'abs0' (|x| closest to 0)
SCORED: dict[str, str] = {
    "psnr": "max", "ssim": "max", "cpbd": "max", "fid": "min", "csim": "max", "lipLMD": "min",
    "avoffset": "abs0", "avconf": "max", "expL1": "min", "poseL1": "min", "expFD": "min", "poseFD": "min",
}

EPILOG = """\
examples:
  python -m evaluation.score teamA/results.json teamB/results.json baseline/results.json
  python -m evaluation.score a.json b.json --names A B --output ranking.md --json ranking.json
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m evaluation.score", description=__doc__, epilog=EPILOG,
                                formatter_class=HelpFormatter)
    p.add_argument("results", nargs="+", help="results.json files written by evaluation.evaluate")
    p.add_argument("--names", nargs="+", default=None, help="entry names (default: parent folder or file stem)")
    p.add_argument("--output", default=None, help="write the markdown table here too")
    p.add_argument("--json", default=None, help="write ranks and scores as JSON here")
    return p


def load_values(path: str | os.PathLike) -> dict[str, float | None]:
    """The 12 scored metric values of a results file (``results`` dict or a flat dict)."""
    obj = read_json(path)
    if not isinstance(obj, dict):
        raise UserError(f"{path}: expected a JSON object of metric values")
    vals = obj.get("results", obj)
    if not isinstance(vals, dict) or not any(m in vals for m in SCORED):
        raise UserError(f"{path}: no scored metric found (expected keys such as {', '.join(list(SCORED)[:4])})")
    out: dict[str, float | None] = {}
    for m in SCORED:
        v = vals.get(m)
        if v is not None and not isinstance(v, (int, float)):
            raise UserError(f"{path}: metric {m} is not a number ({v!r})")
        out[m] = None if v is None else float(v)
    return out


def rank(values: list[float | None], direction: str) -> list[int]:
    """Competition ranks (1 = best, ties share the best rank); None ranks last (len(values))."""
    key = {"max": lambda v: -v, "min": lambda v: v, "abs0": lambda v: abs(v)}[direction]
    n = len(values)
    keys = [None if v is None else key(v) for v in values]
    return [n if k is None else 1 + sum(1 for o in keys if o is not None and o < k) for k in keys]


def score(entries: dict[str, dict[str, float | None]]) -> dict[str, Any]:
    """{'ranks': {entry: {metric: rank}}, 'score': {entry: rank sum}, 'order': [entries best first]}."""
    names = list(entries)
    ranks: dict[str, dict[str, int]] = {n: {} for n in names}
    for m, direction in SCORED.items():
        for n, r in zip(names, rank([entries[n][m] for n in names], direction)):
            ranks[n][m] = r
    total = {n: sum(ranks[n].values()) for n in names}
    order = sorted(names, key=lambda n: (total[n], names.index(n)))
    return {"ranks": ranks, "score": total, "order": order}


def markdown(entries: dict[str, dict[str, float | None]], result: dict[str, Any]) -> str:
    cols = list(SCORED)
    head = "| entry | " + " | ".join(cols) + " | rank sum |"
    sep = "|---|" + "---|" * len(cols) + "---|"
    lines = [head, sep]
    for n in result["order"]:
        cells = []
        for m in cols:
            v = entries[n][m]
            cells.append(f"n/a ({result['ranks'][n][m]})" if v is None else f"{v:.4g} ({result['ranks'][n][m]})")
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
    entries = {n: load_values(p) for n, p in zip(names, paths)}
    result = score(entries)
    table = markdown(entries, result)
    print(table, end="")
    if args.output:
        write_text_atomic(args.output, table)
    if args.json:
        write_json_atomic(args.json, {"values": entries, **result})
    return 0


if __name__ == "__main__":
    run_cli(main)
