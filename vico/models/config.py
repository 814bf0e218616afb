"""Typed model configs (one dataclass per model family) and the registry of named configs.

A config is stored in every checkpoint (``dataclasses.asdict``) and rebuilds the model with
:func:`vico.models.build_model`. Variants are config fields, never copied classes.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

from common.config import from_dict, read_yaml
from common.io import UserError

TASKS = ("speaker", "listener")


@dataclass(frozen=True)
class ListenerConfig:
    """ListenerGenerator: audio + speaker motion (+ listener frame 0) -> listener motion (causal).

    Defaults are the original architecture (248,449 parameters, spec 3.2).
    """
    family: str = "listener"
    audio_dim: int = 45          # per-frame audio feature width (preprocess vico45: 45)
    coeff_dim: int = 73          # vico dynamic layout: angle 3 | exp 64 | trans 3 | crop 3
    fusion_dim: int = 192        # per-frame projection before the LSTM
    hidden_dim: int = 96         # LSTM hidden size
    num_layers: int = 2
    dropout: float = 0.1         # LSTM inter-layer dropout
    residual: bool = False       # predict a residual added to the first frame's coefficients
    audio_feature_set: str | None = None  # if set, must equal features/audio_feats/feature_set.json


@dataclass(frozen=True)
class SpeakerConfig:
    """SpeakerGenerator: audio (+ optionally speaker frame 0) -> speaker motion.

    Defaults are the original architecture (907,747 parameters, spec 3.2): 4-layer bidirectional
    LSTM, no first-frame or identity input (non-causal).
    """
    family: str = "speaker"
    audio_dim: int = 45
    coeff_dim: int = 73
    fusion_dim: int = 192
    hidden_dim: int = 96
    num_layers: int = 4
    bidirectional: bool = True
    dropout: float = 0.1
    residual: bool = False       # predict a residual added to frame 0's coefficients
    init_conditioning: bool = False  # initial LSTM state from frame 0 (as the listener does)
    audio_feature_set: str | None = None


ModelConfig = Union[ListenerConfig, SpeakerConfig]
_FAMILIES: dict[str, type] = {"listener": ListenerConfig, "speaker": SpeakerConfig}

CONFIGS: dict[str, ModelConfig] = {
    "baseline_listener": ListenerConfig(),
    "baseline_speaker": SpeakerConfig(),
    # 2022 listening-track winner's change: predict a residual on top of the first frame.
    "residual_listener": ListenerConfig(residual=True),
    "residual_speaker": SpeakerConfig(residual=True, init_conditioning=True),
}


def default_config_name(task: str) -> str:
    return f"baseline_{task}"


def config_from_dict(d: dict[str, Any], source: str = "config") -> ModelConfig:
    """Rebuild a config from ``asdict`` output (checkpoint) or a YAML mapping."""
    if not isinstance(d, dict):
        raise UserError(f"{source}: model config must be a mapping, got {type(d).__name__}")
    base = d.get("base")
    d = {k: v for k, v in d.items() if k != "base"}
    if base is not None:
        if base not in CONFIGS:
            raise UserError(f"{source}: unknown base config {base!r} (choices: {', '.join(CONFIGS)})")
        merged = dataclasses.asdict(CONFIGS[base])
        merged.update(d)
        d = merged
    family = d.get("family")
    if family not in _FAMILIES:
        raise UserError(f"{source}: 'family' must be one of {list(_FAMILIES)} (or give 'base'), got {family!r}")
    return from_dict(_FAMILIES[family], d, source, what=f"{family} config field")


def resolve_config(name_or_path: str | None, task: str) -> ModelConfig:
    """A registry name, or a YAML file (a mapping of config fields; ``base: NAME`` starts from a
    registered config). None gives the task's baseline."""
    if task not in TASKS:
        raise UserError(f"unknown task {task!r} (choices: {', '.join(TASKS)})")
    if name_or_path is None:
        name_or_path = default_config_name(task)
    if name_or_path in CONFIGS:
        cfg = CONFIGS[name_or_path]
    else:
        p = Path(name_or_path)
        if p.suffix not in (".yaml", ".yml", ".json") :
            raise UserError(f"unknown config {name_or_path!r}: give one of {', '.join(CONFIGS)} or a .yaml file")
        data = read_yaml(p)
        if isinstance(data, dict) and "model" in data and isinstance(data["model"], dict):
            data = data["model"]
        cfg = config_from_dict(data or {}, source=str(p))
    if cfg.family != task:
        raise UserError(f"config {name_or_path!r} is a {cfg.family} model but --task is {task}")
    return cfg
