"""Checkpoints: ours (``checkpoints/epoch_NNN.pt`` + ``latest``) and the original ``Epoch_NNN.bin``.

Ours is a dict: ``model`` (state dict, no ``module.`` prefix), ``optimizer``, ``scheduler``,
``epoch`` (epochs completed), ``rng`` (one state per rank), ``config`` (the model config as a
dict; rebuilds the model), ``train`` (the resolved training config), ``world_size``,
``versions``. The original is a flat dict of tensors whose keys all start with ``module.``.
"""
from __future__ import annotations

import dataclasses
import logging
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from common.artifacts import CHECKPOINT_FEATURES_KEY, LATEST, checkpoint_file
from common.io import UserError, atomic_path, versions, write_text_atomic
from common.weights import load_state_dict_strict

from ..models import ModelConfig, build_model, config_from_dict

log = logging.getLogger(__name__)
FORMAT = "vico-checkpoint-v1"


def checkpoint_name(epoch: int) -> str:
    return f"epoch_{epoch:03d}.pt"


def rng_state() -> dict[str, Any]:
    st = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        st["cuda"] = torch.cuda.get_rng_state_all()
    return st


def set_rng_state(st: dict[str, Any]) -> None:
    torch.set_rng_state(st["torch"])
    np.random.set_state(st["numpy"])
    random.setstate(st["python"])
    if "cuda" in st and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(st["cuda"])


def save_checkpoint(ckpt_dir: Path, epoch: int, model: nn.Module, optimizer, scheduler, rng: list,
                    config: ModelConfig, train: dict, world_size: int, features: str | None = None) -> Path:
    """Write epoch_NNN.pt atomically, then point ``latest`` at it. ``features``: the absolute
    features folder of the training (its mean/std files normalise the model's inputs and outputs)."""
    path = ckpt_dir / checkpoint_name(epoch)
    state = {
        "format": FORMAT,
        "epoch": epoch,
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "rng": rng,
        "config": dataclasses.asdict(config),
        "train": train,
        "world_size": world_size,
        "versions": versions(),
        CHECKPOINT_FEATURES_KEY: features,
    }
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
    write_text_atomic(ckpt_dir / LATEST, path.name + "\n")
    return path


def resolve_resume(resume: str | None, ckpt_dir: Path) -> Path | None:
    """``None`` -> None; ``auto`` -> the ``latest`` checkpoint of this run if any; a file or a
    checkpoints folder (its ``latest``) -> that checkpoint."""
    if resume is None:
        return None
    if resume == "auto":
        p = ckpt_dir / LATEST
        if not p.is_file():
            log.info("--resume auto: no checkpoint in %s yet, starting from scratch", ckpt_dir)
            return None
        return checkpoint_file(p)
    return checkpoint_file(resume)


def read_checkpoint(path: Path) -> dict:
    if not path.is_file():
        raise UserError(f"{path}: checkpoint not found")
    try:
        # Our checkpoints hold numpy/python RNG states, so they are not weights_only loadable.
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # noqa: BLE001
        raise UserError(f"{path}: not a readable checkpoint ({type(e).__name__}: {e})") from None


def strip_module_prefix(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The original loader: remove the first ``module.`` of each key."""
    return {k.replace("module.", "", 1): v for k, v in state.items()}


def load_model_for_eval(path: Path, task: str, fallback: ModelConfig) -> tuple[nn.Module, ModelConfig, dict]:
    """Model (eval mode, CPU) from our checkpoint or an original ``Epoch_NNN.bin``.

    The original format stores no config: ``fallback`` (the task's baseline unless --config says
    otherwise) is used. Returns (model, config, checkpoint metadata)."""
    ck = read_checkpoint(path)
    if not isinstance(ck, dict):
        raise UserError(f"{path}: expected a dict checkpoint, got {type(ck).__name__}")
    if "model" in ck and "config" in ck:
        cfg = config_from_dict(ck["config"], source=str(path))
        state, meta = ck["model"], {"format": ck.get("format", FORMAT), "epoch": ck.get("epoch")}
    elif ck and all(isinstance(v, torch.Tensor) for v in ck.values()):
        cfg, state, meta = fallback, strip_module_prefix(ck), {"format": "original", "epoch": None}
    else:
        raise UserError(f"{path}: neither a vico checkpoint (model+config) nor an original Epoch_NNN.bin state dict")
    if cfg.family != task:
        raise UserError(f"{path}: holds a {cfg.family} model but --task is {task}")
    model = build_model(cfg)
    load_state_dict_strict(model, state, path)
    return model.eval(), cfg, meta
