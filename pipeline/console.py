"""Console scripts: ``vico-NAME`` runs ``python -m MODULE`` (installed by ``pip install -e .``).

Each entry imports its module only when it runs, and goes through :func:`common.io.run_cli`, so
a console script behaves exactly as ``python -m MODULE``: same options, same one-line errors,
same exit codes. pyproject.toml's ``[project.scripts]`` lists the same names (a test checks it).
"""
from __future__ import annotations

import importlib
from typing import Callable

from common.io import run_cli

# console script name -> module whose main(argv) -> exit code it runs
COMMANDS: dict[str, str] = {
    "vico-demo": "pipeline.demo",
    "vico-generate": "pipeline.generate",
    "vico-submit": "pipeline.submit",
    "vico-report": "pipeline.report",
    "vico-evaluate": "evaluation.evaluate",
    "vico-score": "evaluation.score",
    "vico-weights": "common.weights",
    "vico-dataset": "common.dataset",
    "vico-synthetic": "common.synthetic",
    "vico-convert": "preprocess.convert",
    "vico-prepare-videos": "preprocess.prepare_videos",
    "vico-audio-features": "preprocess.extract_audio_features",
    "vico-rearrange": "preprocess.rearrange_recon_coeffs",
    "vico-mean-std": "preprocess.statistics_mean_std",
    "vico-landmarks": "Deep3DFaceRecon_pytorch.extract_kp_videos",
    "vico-recon": "Deep3DFaceRecon_pytorch.face_recon_videos",
    "vico-train": "vico.train",
    "vico-eval": "vico.eval",
    "vico-baseline": "vico.baseline",
    "vico-pirender-lmdb": "PIRender.prepare_vox_lmdb",
    "vico-pirender-train": "PIRender.train",
    "vico-render": "PIRender.inference",
}


def entry_point(module: str) -> Callable[[], None]:
    """A no-argument function (what console scripts call) running ``module``'s main on sys.argv."""

    def run() -> None:
        mod = importlib.import_module(module)
        main = getattr(mod, "main", None)
        if main is None:  # a package run as python -m PKG keeps main in PKG.__main__
            main = importlib.import_module(f"{module}.__main__").main
        run_cli(main)

    run.__doc__ = f"python -m {module}"
    return run


def attr_name(command: str) -> str:
    """The attribute of this module that pyproject.toml names for ``command`` (vico-mean-std -> mean_std)."""
    return command.removeprefix("vico-").replace("-", "_")


for _cmd, _mod in COMMANDS.items():
    globals()[attr_name(_cmd)] = entry_point(_mod)
