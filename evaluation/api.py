"""Public Python API of the evaluation stage: what ``pipeline/`` may import (stages never do).

The metric registry's declarations, read without loading torch or any network: each metric's
``results.json`` key (``Metric.name``), display label (``Metric.label``, e.g. 'AngleFD'), other
name in the literature (``Metric.aka``, e.g. 'LSE-D'), ranking direction (``Metric.direction``:
'max', 'min' or 'abs0'), the tasks it is scored on, its groups and a one-line ``doc``.
"""
from __future__ import annotations

from .metrics.registry import DIRECTIONS, TRACKS, Metric, directions, get, groups, metrics

__all__ = ["DIRECTIONS", "TRACKS", "Metric", "default_metrics", "directions", "get", "groups", "metrics"]


def default_metrics() -> list[Metric]:
    """The metrics ``evaluation.evaluate`` computes by default (``--metrics default``), in the
    order of results.json; opt-in fixes and metrics switched on by a setting are left out."""
    ms = metrics()
    return [ms[n] for n in groups()["default"]]
