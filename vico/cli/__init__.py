"""Pieces shared by the vico command lines."""
from __future__ import annotations

import argparse

from ..models import CONFIGS

CONFIG_METAVAR = "{" + ",".join(CONFIGS) + "}|FILE.yaml"


def config_arg(value: str) -> str:
    """argparse type for --config: a registered name (the choices) or a YAML file."""
    if value in CONFIGS or value.endswith((".yaml", ".yml")):
        return value
    raise argparse.ArgumentTypeError(f"invalid choice {value!r} (choose from {', '.join(CONFIGS)}, or a .yaml file)")
