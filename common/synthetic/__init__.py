"""The deterministic synthetic ViCo dataset used by the demo and the tests.

Real face photographs (bundled with scikit-image and matplotlib) animated with known head motion,
blinks and a mouth that follows a synthetic speech signal; the listener nods in the speaker's
pauses. Per-clip ground truth goes to ``meta/<key>.json``. Entry points::

    python -m common.synthetic --out data/synthetic --pairs 2 --frames 90 --seed 0
    from common.synthetic import generate; root = generate("data/synthetic", pairs=2, frames=90)
"""
from __future__ import annotations

from common.synthetic.config import LAYOUTS, SyntheticConfig

__all__ = ["LAYOUTS", "SyntheticConfig", "build", "generate", "pair_names"]


def __getattr__(name: str):
    # The generator pulls in cv2, scipy and dlib: import it on first use only, so that
    # `python -m common.synthetic --help` and argument errors are fast.
    if name in ("build", "generate", "pair_names"):
        from common.synthetic import generator as _generator

        return getattr(_generator, name)
    raise AttributeError(name)
