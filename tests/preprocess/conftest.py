"""Helpers for the preprocess tests: tiny wavs, recon .mat files and feature folders."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import scipy.io


def speech(seconds: float, sr: int, seed: int = 0) -> np.ndarray:
    """A short voiced, amplitude-modulated signal with a little noise (float64 in [-1, 1])."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(round(seconds * sr))) / sr
    f0 = 140 + 20 * np.sin(2 * np.pi * 0.8 * t)
    phase = 2 * np.pi * np.cumsum(f0) / sr
    x = sum(np.sin(k * phase) / k for k in range(1, 8)) * (0.55 + 0.45 * np.sin(2 * np.pi * 3 * t))
    return 0.4 * x / np.abs(x).max() + 0.005 * rng.standard_normal(t.size)


def write_mat(path: Path, n: int, seed: int = 0, coeff_dim: int = 257) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    coeff = rng.standard_normal((n, coeff_dim)).astype(np.float32)
    tp = np.concatenate([np.full((n, 2), 256.0), rng.uniform(1, 120, (n, 3))], axis=1).astype(np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    scipy.io.savemat(str(path), {"coeff": coeff, "transform_params": tp})
    return coeff, tp


def run_json(folder: Path) -> dict:
    return json.loads((folder / "run.json").read_text())


@pytest.fixture
def helpers():
    class H:
        pass
    h = H()
    h.speech, h.write_mat, h.run_json = speech, write_mat, run_json
    return h


@pytest.fixture(autouse=True)
def _no_root_logging_setup(monkeypatch):
    """In-process ``main()`` calls must not reconfigure the root logger of the pytest process."""
    import preprocess.convert
    import preprocess.extract_audio_features
    import preprocess.rearrange_recon_coeffs
    import preprocess.statistics_mean_std
    for mod in (preprocess.convert, preprocess.extract_audio_features, preprocess.rearrange_recon_coeffs,
                preprocess.statistics_mean_std):
        monkeypatch.setattr(mod, "setup_logging", lambda *a, **k: None)
