"""Progress of a stage's long loops: a tqdm bar on a terminal, and a JSON-lines channel for runners.

A stage wraps each long loop in ``Progress`` (or ``progress(iterable)``). On a terminal the user
sees a tqdm bar (on stderr); when stderr is not a terminal (a log file, CI) the bar is off. When
the environment variable ``VICO_PROGRESS_FILE`` names a file (``pipeline.runner`` sets it for
each step it runs), the main process also appends one JSON object per update, at most every
``interval`` seconds plus the last one:

    {"desc": "render", "n": 30, "total": 60, "unit": "frame", "rate": 2.5, "eta": 12.0,
     "elapsed": 12.1, "items": 1, "items_total": 2, "done": false, "pid": 1234}

``rate`` is units per second since the bar started, ``eta`` seconds left (null when unknown),
``items``/``items_total`` the finished work items (videos, files) when the unit is finer (frames);
``frames``/``fps`` video frames processed so far and per second, where the unit is coarser (videos).
The runner follows the file and draws one updating console line from its last record.
"""
from __future__ import annotations

import json
import os
import sys
import time
from typing import Any, Iterable, Iterator, TypeVar

from tqdm import tqdm

ENV = "VICO_PROGRESS_FILE"
T = TypeVar("T")


def _is_main() -> bool:
    return os.environ.get("RANK", "0") == "0"


class Progress:
    """A bar over ``total`` units (None: unknown). ``enabled`` False (e.g. not rank 0) shows and
    writes nothing; the bar is also off when stderr is not a terminal."""

    def __init__(self, total: int | None = None, desc: str = "", unit: str = "it", items_total: int | None = None,
                 enabled: bool = True, leave: bool = False, interval: float = 0.5):
        self.enabled = enabled and _is_main()
        self.total, self.desc, self.unit, self.items_total = total, desc, unit, items_total
        self.n, self.items, self.frames, self.interval = 0, 0, 0, interval
        self.t0 = time.monotonic()
        self._last = -1e9
        self.path = os.environ.get(ENV) if self.enabled else None
        self.bar = tqdm(total=total, desc=desc, unit=unit, leave=leave,
                        disable=not (self.enabled and sys.stderr.isatty()))
        self._emit(force=True)

    def update(self, n: int = 1, items: int = 0, frames: int = 0) -> None:
        """``n`` more units done (and ``items`` more work items finished, ``frames`` more frames)."""
        self.n += n
        self.items += items
        self.frames += frames
        if frames and self.bar is not None and not self.bar.disable:
            self.bar.set_postfix(frames=self.frames, refresh=False)
        self.bar.update(n)
        self._emit()

    def set_postfix(self, **kw: Any) -> None:
        self.bar.set_postfix(**kw)

    def record(self, done: bool = False) -> dict:
        elapsed = time.monotonic() - self.t0
        rate = self.n / elapsed if elapsed > 0 and self.n else 0.0
        eta = (self.total - self.n) / rate if rate and self.total is not None else None
        fps = self.frames / elapsed if elapsed > 0 and self.frames else None
        return {"desc": self.desc, "n": self.n, "total": self.total, "unit": self.unit, "rate": round(rate, 4),
                "eta": None if eta is None else round(max(eta, 0.0), 1), "elapsed": round(elapsed, 2),
                "items": self.items, "items_total": self.items_total, "frames": self.frames or None,
                "fps": None if fps is None else round(fps, 3), "done": done, "pid": os.getpid()}

    def _emit(self, force: bool = False, done: bool = False) -> None:
        if not self.path:
            return
        now = time.monotonic()
        if not force and now - self._last < self.interval:
            return
        self._last = now
        try:
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(json.dumps(self.record(done)) + "\n")
        except OSError:  # progress is best effort: never stop the work for it
            self.path = None

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self._emit(force=True, done=True)
            self.bar = None

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def progress(iterable: Iterable[T], desc: str = "", unit: str = "it", total: int | None = None,
             enabled: bool = True, leave: bool = False) -> Iterator[T]:
    """Iterate ``iterable`` with a Progress bar (one unit per element)."""
    if total is None and hasattr(iterable, "__len__"):
        total = len(iterable)  # type: ignore[arg-type]
    with Progress(total, desc, unit, enabled=enabled, leave=leave) as bar:
        for x in iterable:
            yield x
            bar.update(1, items=1)


def follow(path: str | os.PathLike, offset: int = 0) -> tuple[dict | None, int]:
    """The last complete record of a progress file from byte ``offset`` on, and the new offset."""
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            data = f.read()
    except OSError:
        return None, offset
    end = data.rfind(b"\n")
    if end < 0:
        return None, offset
    last = None
    for line in data[:end].splitlines():
        try:
            last = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError):
            continue
    return last, offset + end + 1


def _clock(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60:02d}:{s % 60:02d}"


def format_record(rec: dict) -> str:
    """One console line: 'render 30/60 frame, 2.5 frame/s, ETA 00:12 (video 1/2)'."""
    total = rec.get("total")
    parts = [f"{rec.get('desc') or 'working'} {rec.get('n', 0)}{'' if total is None else f'/{total}'} {rec.get('unit', 'it')}"]
    rate = rec.get("rate") or 0.0
    parts.append(f"{rate:.3g} {rec.get('unit', 'it')}/s" if rate else "starting")
    if rec.get("eta") is not None:
        parts.append(f"ETA {_clock(rec['eta'])}")
    if rec.get("fps"):
        parts.append(f"{rec['fps']:.3g} frames/s")
    line = ", ".join(parts)
    if rec.get("items_total"):
        line += f" ({rec.get('items', 0)}/{rec['items_total']} done)"
    return line
