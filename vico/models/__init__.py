"""Speaker/listener generators, their typed configs and the registry of named configs."""
from __future__ import annotations

import torch.nn as nn

from .config import (CONFIGS, TASKS, ListenerConfig, ModelConfig, SpeakerConfig, config_from_dict,
                     default_config_name, resolve_config)
from .generators import ListenerGenerator, SpeakerGenerator, run_lstm

MANIFESTS = {"listener": "vico_listener_generator", "speaker": "vico_speaker_generator"}


def build_model(cfg: ModelConfig) -> nn.Module:
    """The generator for a config (``cfg.family`` picks the class)."""
    if isinstance(cfg, ListenerConfig):
        return ListenerGenerator(cfg)
    if isinstance(cfg, SpeakerConfig):
        return SpeakerGenerator(cfg)
    raise TypeError(f"not a vico model config: {type(cfg).__name__}")


__all__ = ["CONFIGS", "TASKS", "MANIFESTS", "ListenerConfig", "SpeakerConfig", "ModelConfig", "ListenerGenerator",
           "SpeakerGenerator", "build_model", "config_from_dict", "resolve_config", "default_config_name", "run_lstm"]
