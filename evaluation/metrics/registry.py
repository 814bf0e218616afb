"""The metric registry: one declaration per metric, read by the evaluator and by ``evaluation.score``.

A :class:`Metric` says what the metric is called (its ``results.json`` key), in which direction
it is ranked, what it needs from the evaluator and how it is computed:

* ``kind="frame"``: ``update`` returns per-frame values; the video's value is their mean and the
  set's value the frame-weighted mean (as the original scripts);
* ``kind="video"``: ``update`` returns one value per video (or None); the set's value is the mean
  over videos;
* ``kind="set"``: ``update(state, ctx)`` accumulates into a per-video state made by
  ``new_state``; states are combined with ``merge`` (across videos and processes) and
  ``reduce(state, settings)`` gives the set's value (FID, Frechet distances of coefficients).

``stage="batch"``: ``update`` is called for every decoded batch with a ``Batch`` (GT and
predicted frames, landmarks on demand); ``stage="clip"``: once per video with a ``Clip``
(uuid, coefficient files, lip-sync results). Both are defined in ``evaluation.metrics.engine``.

Built-in metrics are declared in ``evaluation.metrics.builtin``. Another module adds its own by
calling :func:`register` at import time and being listed in :data:`PLUGINS` (one line), or, out of
tree, in the environment variable ``VICO_METRIC_PLUGINS`` (comma-separated module names).
"""
from __future__ import annotations

import importlib
import os
import re
from dataclasses import dataclass
from typing import Any, Callable

DIRECTIONS = ("max", "min", "abs0")  # larger better, smaller better, |x| closest to 0 better
KINDS = ("frame", "video", "set")
STAGES = ("batch", "clip")
# what a metric may need from the evaluator
NEEDS = frozenset({
    "frames",        # decoded GT and predicted frames, paired (needs both video folders)
    "pd_frames",     # decoded predicted frames only (needs --pd_video_folder)
    "faces",         # the face detector (common.faces) on predicted frames
    "landmarks",     # 68-point landmarks of GT and predicted frames (implies frames)
    "audio",         # the GT audio <uuid>.wav (needs --gt_audio_folder)
    "coefficients",  # GT and predicted coefficient .mat files (needs both coefficient folders)
})
TRACKS = ("speaker", "listener")

# Modules that register metrics when imported, in order. Add yours here (one line).
PLUGINS: list[str] = [
    "evaluation.metrics.builtin",
    "evaluation.metrics.tddfa_motion",
]
PLUGIN_ENV = "VICO_METRIC_PLUGINS"

_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
_RESERVED_SUFFIXES = ("_frames", "_video_mean", "_videos")


@dataclass(frozen=True)
class Metric:
    """One metric's declaration (see the module docstring for ``kind`` and ``stage``)."""

    name: str
    direction: str
    kind: str
    needs: frozenset[str]
    update: Callable[..., Any]
    stage: str = "batch"
    new_state: Callable[[], Any] | None = None
    merge: Callable[[Any, Any], Any] | None = None
    reduce: Callable[[Any, Any], float | None] | None = None
    finish: Callable[[Any, Any], None] | None = None  # set, batch stage: finish(state, clip) after the video
    default: bool = True  # part of --metrics default (else opt-in by name or 'all')
    enabled_by: str = ""  # an EvalSettings switch that requests it too (e.g. 'tddfa_motion' = --tddfa_motion)
    groups: tuple[str, ...] = ()  # --metrics group names it belongs to
    tasks: tuple[str, ...] = TRACKS  # tasks it is scored on
    weights: tuple[str, ...] = ()  # weights-registry names the engine loads once (see engine.NETWORKS)
    setup: Callable[[Any], None] | None = None  # setup(evaluator) once; UserError = unavailable
    source: str = ""  # label of its own input in per-video errors (e.g. 'lip sync'); default: name
    column: str = ""  # display name in score tables (the original's spelling, e.g. 'AngleFD')
    aka: str = ""  # its other name in the literature, shown beside the label in reports (e.g. 'LSE-D')
    rank_sum: bool = False  # one of the original scoring_example.py's 12 metrics
    leaderboard: tuple[str, ...] = ()  # tracks whose 2022 leaderboard has it as a column
    doc: str = ""

    @property
    def label(self) -> str:
        return self.column or self.name


_REGISTRY: dict[str, Metric] = {}
_loaded = False


def register(metric: Metric, *, replace: bool = False) -> Metric:
    """Add ``metric``; ValueError on a bad or duplicate name or an inconsistent declaration."""
    m = metric
    if not _NAME.match(m.name) or m.name.endswith(_RESERVED_SUFFIXES):
        raise ValueError(f"metric name {m.name!r}: letters, digits and '_', not ending in {_RESERVED_SUFFIXES}")
    if m.name in _REGISTRY and not replace:
        raise ValueError(f"metric {m.name!r} is already registered")
    if m.direction not in DIRECTIONS:
        raise ValueError(f"metric {m.name!r}: direction {m.direction!r} not in {DIRECTIONS}")
    if m.kind not in KINDS or m.stage not in STAGES:
        raise ValueError(f"metric {m.name!r}: kind {m.kind!r} / stage {m.stage!r} unknown")
    if not m.needs or not set(m.needs) <= NEEDS:
        raise ValueError(f"metric {m.name!r}: needs {sorted(m.needs)} not a non-empty subset of {sorted(NEEDS)}")
    if m.kind == "set" and not (m.new_state and m.merge and m.reduce):
        raise ValueError(f"metric {m.name!r}: a set metric needs new_state, merge and reduce")
    if m.stage == "batch" and not ({"frames", "pd_frames", "landmarks"} & set(m.needs)):
        raise ValueError(f"metric {m.name!r}: a batch-stage metric needs frames")
    if not set(m.tasks) <= set(TRACKS) or not set(m.leaderboard) <= set(TRACKS):
        raise ValueError(f"metric {m.name!r}: tasks/leaderboard must be among {TRACKS}")
    clash = {g for g in m.groups if g in _REGISTRY or g in ("default", "all")}
    if clash or m.name in groups(load=False):
        raise ValueError(f"metric {m.name!r}: a name is both a metric and a group ({clash or m.name})")
    _REGISTRY[m.name] = m
    return m


def load_plugins() -> None:
    """Import the modules of PLUGINS and $VICO_METRIC_PLUGINS once (they call register)."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    extra = [s.strip() for s in os.environ.get(PLUGIN_ENV, "").split(",") if s.strip()]
    for mod in PLUGINS + extra:
        importlib.import_module(mod)


def metrics() -> dict[str, Metric]:
    """Every registered metric, in registration order (the canonical order of results)."""
    load_plugins()
    return dict(_REGISTRY)


def get(name: str) -> Metric:
    ms = metrics()
    if name not in ms:
        raise KeyError(f"unknown metric {name!r} (known: {', '.join(ms)})")
    return ms[name]


def groups(load: bool = True) -> dict[str, tuple[str, ...]]:
    """Group name -> metric names: the declared groups plus 'default' and 'all' (every metric
    except those switched on by a setting, e.g. --tddfa_motion, which need their own weights)."""
    ms = metrics() if load else _REGISTRY
    out: dict[str, tuple[str, ...]] = {}
    for m in ms.values():
        for g in m.groups:
            out[g] = out.get(g, ()) + (m.name,)
    out["default"] = tuple(n for n, m in ms.items() if m.default)
    out["all"] = tuple(n for n, m in ms.items() if not m.enabled_by)
    return out


def directions() -> dict[str, str]:
    """Metric name -> ranking direction, for every registered metric."""
    return {n: m.direction for n, m in metrics().items()}


def rank_sum_metrics() -> dict[str, str]:
    """The original scoring_example.py's 12 metrics -> direction, in its order of registration."""
    return {n: m.direction for n, m in metrics().items() if m.rank_sum}


def leaderboard_metrics(track: str) -> dict[str, str]:
    """The 2022 leaderboard columns of ``track`` ('speaker' = talking head, 'listener') -> direction."""
    if track not in TRACKS:
        raise ValueError(f"track {track!r} not in {TRACKS}")
    return {n: m.direction for n, m in metrics().items() if track in m.leaderboard}
