"""Typed training configuration, read from the YAML (``configs/pirender_face.yaml``)."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import yaml

from common.config import from_dict, read_yaml
from common.io import UserError
from PIRender.models import GeneratorConfig

FIVE_LAYERS = ("relu_1_1", "relu_2_1", "relu_3_1", "relu_4_1", "relu_5_1")


@dataclass
class LRPolicy:
    step_size: int = 300000
    gamma: float = 0.2


@dataclass
class OptimizerConfig:
    lr: float = 1e-4
    adam_beta1: float = 0.5
    adam_beta2: float = 0.999
    lr_policy: LRPolicy = field(default_factory=LRPolicy)


@dataclass
class VGGLossConfig:
    layers: tuple[str, ...] = FIVE_LAYERS
    num_scales: int = 4
    use_style_loss: bool = False
    style_to_perceptual: float = 0.0


@dataclass
class LossWeights:
    weight_perceptual_warp: float = 2.5
    weight_perceptual_final: float = 4.0


@dataclass
class TrainerConfig:
    pretrain_warp_iteration: int = 200000
    ema_decay: float = 0.5 ** (32 / 10000)
    init_gain: float = 0.02
    loss_weight: LossWeights = field(default_factory=LossWeights)
    vgg_param_warp: VGGLossConfig = field(default_factory=VGGLossConfig)
    vgg_param_final: VGGLossConfig = field(
        default_factory=lambda: VGGLossConfig(use_style_loss=True, style_to_perceptual=250.0))


@dataclass
class DataLoaderConfig:
    batch_size: int = 5


@dataclass
class DataConfig:
    resolution: int = 256
    semantic_radius: int = 13
    repeat: int = 100
    split: str = "all"
    num_workers: int = 4
    train: DataLoaderConfig = field(default_factory=DataLoaderConfig)


@dataclass
class TrainConfig:
    max_epoch: int = 200
    max_iter: int = 1_000_000_000
    seed: int = 0
    logging_iter: int = 100
    snapshot_save_iter: int = 40000
    snapshot_save_start_iter: int = 20000
    snapshot_save_epoch: int = 20
    snapshot_save_start_epoch: int = 10
    gen_optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    model: GeneratorConfig = field(default_factory=GeneratorConfig)
    data: DataConfig = field(default_factory=DataConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def config_from_dict(raw: dict[str, Any], source: str = "config") -> TrainConfig:
    """TrainConfig from the YAML structure (``gen.param`` is the upstream nested generator form)."""
    raw = dict(raw or {})
    gen = raw.pop("gen", None)
    model_raw = raw.pop("model", None)
    cfg = from_dict(TrainConfig, raw, source)
    if gen is not None:
        if not isinstance(gen, dict) or "param" not in gen:
            raise UserError(f"{source}.gen: expected a mapping with 'param'")
        try:
            cfg.model = GeneratorConfig.from_param(gen["param"])
        except (ValueError, TypeError) as e:
            raise UserError(f"{source}.gen.param: {e}") from None
    elif model_raw is not None:
        cfg.model = from_dict(GeneratorConfig, model_raw, source, path="model.")
    if cfg.data.resolution % 32 or cfg.data.resolution < 64:
        raise UserError(f"{source}.data.resolution must be a multiple of 32 and >= 64, got {cfg.data.resolution}")
    if cfg.data.split not in ("all", "train", "test"):
        raise UserError(f"{source}.data.split must be all, train or test, got {cfg.data.split!r}")
    return cfg


def _set_path(d: dict, dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    for k in keys[:-1]:
        d = d.setdefault(k, {})
        if not isinstance(d, dict):
            raise UserError(f"--set {dotted}: {k} is not a mapping")
    d[keys[-1]] = value


def load_config(path: str | Path, overrides: Sequence[str] = ()) -> TrainConfig:
    """Read the YAML file and apply ``key.sub=value`` overrides (values parsed as YAML)."""
    p = Path(path)
    raw = read_yaml(p) or {}
    if not isinstance(raw, dict):
        raise UserError(f"{p}: expected a mapping of training settings, got {type(raw).__name__}")
    for item in overrides:
        if "=" not in item:
            raise UserError(f"--set {item}: expected key=value")
        key, value = item.split("=", 1)
        _set_path(raw, key.strip(), yaml.safe_load(value))
    return config_from_dict(raw, str(p))
