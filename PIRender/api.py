"""Public Python API of the PIRender stage: the functions its command lines call, the generator
loaded once by the caller (``load_generator``) and passed to ``render``."""
from __future__ import annotations

from .engine.checkpoint import load_generator
from .inference import InferenceConfig
from .inference import _run as render
from .prepare_vox_lmdb import PrepareConfig, prepare

__all__ = ["InferenceConfig", "PrepareConfig", "load_generator", "prepare", "render"]
