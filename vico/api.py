"""Public Python API of the vico stage: what ``python -m vico.eval`` calls, with the model loaded
once by the caller (``load_eval_model``) and fed split after split (``generate``)."""
from __future__ import annotations

from .eval import _eval as generate
from .eval import build_parser as eval_parser
from .eval import load_eval_model

__all__ = ["eval_parser", "generate", "load_eval_model"]
