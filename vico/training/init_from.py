"""``vico.train --init_from FILE``: start a new run from trained weights (fine-tuning).

The weights come from an original ``Epoch_NNN.bin`` (a state dict, keys prefixed ``module.``)
or from one of our checkpoints (``epoch_NNN.pt``, a run's checkpoints folder or its ``latest``).
Only the weights are taken: the optimizer, the schedule, the RNG and the epoch counter start
fresh, as in a new run.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from common.io import UserError

from ..models import ModelConfig, resolve_config
from .checkpoint import load_model_for_eval, resolve_resume

log = logging.getLogger(__name__)


@dataclass
class InitWeights:
    """Weights to start from, the model config they belong to, and where they come from."""

    path: Path
    state: dict[str, torch.Tensor]
    config: ModelConfig
    format: str           # 'original' (Epoch_NNN.bin) or our checkpoint format
    epoch: int | None     # the epoch it was saved at (None for an original file)


def load_init_weights(init_from: str, task: str, config: str | None) -> InitWeights:
    """Read ``init_from`` for ``task``; one-line UserError for a missing file, another task or a
    config that differs from ``--config``. An original file carries no config: ``config`` (default
    the task's baseline) describes it."""
    if init_from == "auto":
        raise UserError("--init_from needs a weights file or a run's checkpoints folder ('auto' is for --resume)")
    p = Path(init_from)
    path = resolve_resume(str(p.parent) if p.name == "latest" else init_from, p)
    assert path is not None
    wanted = resolve_config(config, task)
    model, model_cfg, meta = load_model_for_eval(path, task, wanted)
    if config is not None and meta["format"] != "original" and model_cfg != wanted:
        raise UserError(f"{path}: its model config differs from --config {config} (--init_from keeps the "
                        "checkpoint's architecture; leave --config out)")
    log.info("initial weights from %s (%s checkpoint%s); optimizer, schedule and epochs start fresh", path,
             meta["format"], f", epoch {meta['epoch']}" if meta["epoch"] is not None else "")
    return InitWeights(path, model.state_dict(), model_cfg, meta["format"], meta["epoch"])
