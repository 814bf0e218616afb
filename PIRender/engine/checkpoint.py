"""PIRender checkpoints: the released file and ours share one layout.

A checkpoint is a dict with ``net_G`` (training network; keys may carry ``module.``),
``net_G_ema`` (the averaged network used for inference; no prefix), ``opt_G``, ``sch_G``,
``current_epoch`` and ``current_iteration``. Ours add ``config`` (the resolved training config,
including the generator hyper-parameters under ``config['model']``), so a model trained at another
size is rebuilt as it was; the released file has none and gets the released ``gen.param``.
"""
from __future__ import annotations

import dataclasses
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from common.io import UserError, atomic_path
from common.weights import extract_state_dict, get_spec, is_smoke, load_state_dict_strict, \
    read_checkpoint_file, resolve_weights
from PIRender.models import FaceGenerator, GeneratorConfig

log = logging.getLogger(__name__)

WEIGHTS_NAME = "pirender_face_generator"
CHECKPOINT_KEYS = ("net_G", "net_G_ema", "opt_G", "sch_G", "current_epoch", "current_iteration")


@dataclass
class LoadedGenerator:
    model: FaceGenerator
    path: Path
    epoch: int
    iteration: int
    config: dict

    @property
    def result_subdir(self) -> str:
        """The original output sub-folder name ``epoch_EEEEE_iteration_IIIIIIIII``."""
        return f"epoch_{self.epoch:05d}_iteration_{self.iteration:09d}"


def resolve_checkpoint(path: str | os.PathLike | None) -> Path:
    """The checkpoint file: ``path`` (a file; or a folder holding ``latest_checkpoint.txt``, as the
    original ``result/<name>/``) or the registry default. One-line UserError when missing."""
    if path is not None:
        p = Path(path)
        marker = p / "latest_checkpoint.txt"
        if p.is_dir() and marker.is_file():
            line = marker.read_text().strip().splitlines()[0] if marker.read_text().strip() else ""
            name = line.split(":", 1)[-1].strip()
            if not name:
                raise UserError(f"{marker}: expected 'latest_checkpoint: <file name>'")
            p = p / name
        return resolve_weights(WEIGHTS_NAME, p)
    return resolve_weights(WEIGHTS_NAME, None)


def load_generator(path: str | os.PathLike | None, device: torch.device | str = "cpu",
                   key: str = "net_G_ema") -> LoadedGenerator:
    """Build the generator described by a checkpoint and load ``key`` strictly (eval mode)."""
    p = resolve_checkpoint(path)
    obj = read_checkpoint_file(p, map_location="cpu")
    if not isinstance(obj, dict) or key not in obj:
        found = ", ".join(map(str, list(obj)[:6])) if isinstance(obj, dict) else type(obj).__name__
        raise UserError(f"{p}: not a PIRender checkpoint (no '{key}'; found {found})")
    spec = get_spec(WEIGHTS_NAME)
    spec = dataclasses.replace(spec, state_key=key)
    sd = extract_state_dict(obj, spec, p)
    config = obj.get("config") or {}
    gen_cfg = GeneratorConfig(**config["model"]) if isinstance(config, dict) and "model" in config \
        else GeneratorConfig()
    model = FaceGenerator(gen_cfg)
    load_state_dict_strict(model, sd, p)
    if is_smoke(p):
        log.warning("%s is a smoke-test checkpoint (fill-rule weights): the video will not look like a face", p)
    model.eval().to(device)
    return LoadedGenerator(model, p, int(obj.get("current_epoch", 0) or 0),
                           int(obj.get("current_iteration", 0) or 0), config if isinstance(config, dict) else {})


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> Path:
    """Write a checkpoint atomically (torch.save to a temporary file, then rename)."""
    missing = [k for k in CHECKPOINT_KEYS if k not in state]
    if missing:
        raise ValueError(f"checkpoint state lacks {missing}")
    p = Path(path)
    with atomic_path(p) as tmp:
        torch.save(state, tmp)
    return p
