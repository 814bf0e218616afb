"""The generator's configuration (kept free of heavy imports so that the CLI starts fast)."""
from __future__ import annotations

from dataclasses import dataclass

from common.io import UserError

LAYOUTS = ("challenge", "full", "challenge_val", "challenge_test")
RELEASED = {"challenge_val": "val", "challenge_test": "test"}  # released evaluation layouts -> csv stem


@dataclass
class SyntheticConfig:
    """Everything that determines the generated files (the same config gives identical bytes)."""
    out: str
    pairs: int = 2
    frames: int = 90
    seed: int = 0
    layout: str = "challenge"
    size: int = 256
    fps: int = 30
    sample_rate: int = 44100
    crf: int = 18
    overwrite: bool = False

    def validate(self) -> None:
        if self.layout not in LAYOUTS:
            raise UserError(f"--layout must be one of {', '.join(LAYOUTS)}, got {self.layout!r}")
        if self.pairs < 1:
            raise UserError(f"--pairs must be >= 1, got {self.pairs}")
        if self.frames < 1:
            raise UserError(f"--frames must be >= 1, got {self.frames}")
        if self.size < 128 or self.size % 2:
            raise UserError(f"--size must be even and >= 128, got {self.size}")
        if self.fps < 1:
            raise UserError(f"--fps must be >= 1, got {self.fps}")
        if self.sample_rate < 8000:
            raise UserError(f"--sample_rate must be >= 8000, got {self.sample_rate}")
        if self.seed < 0:
            raise UserError(f"--seed must be >= 0, got {self.seed}")
