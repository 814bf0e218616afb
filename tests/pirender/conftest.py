"""Fixtures of the PIRender tests: smoke-test weights and tiny videos with coefficients."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy.io import savemat

from common.media import write_video, write_wav


@pytest.fixture(scope="session")
def pir_weights(tmp_path_factory) -> dict[str, Path]:
    """Smoke-test (fill-rule) files in the released layouts: PIRender checkpoint and VGG19."""
    from common.smoke_weights import make_smoke_checkpoint

    d = tmp_path_factory.mktemp("pir_weights")
    return {
        "generator": make_smoke_checkpoint("pirender_face_generator", d / "face" / "epoch_00190_iteration_000400000_checkpoint.pt"),
        "vgg19": make_smoke_checkpoint("vgg19", d / "vgg19-dcbb9e9d.pth"),
    }


def make_coeffs(n: int, size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Plausible (N, 257) coefficients and (N, 5) transform params."""
    rng = np.random.default_rng(seed)
    coeff = (0.1 * rng.standard_normal((n, 257))).astype(np.float32)
    tp = np.tile(np.array([[size, size, 3.0, 110.0, 120.0]]), (n, 1)) + 0.1 * rng.standard_normal((n, 5))
    return coeff, tp


def write_mat(path: Path, coeff: np.ndarray, tp: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    savemat(path, {"coeff": coeff, "transform_params": tp})
    return path


def make_clip_frames(n: int, size: int, seed: int) -> np.ndarray:
    """(N, size, size, 3) uint8: a moving gradient with a bright square."""
    yy, xx = np.mgrid[0:size, 0:size]
    frames = np.zeros((n, size, size, 3), np.uint8)
    for t in range(n):
        frames[t, ..., 0] = (xx * 255 // size + 9 * t + 40 * seed) % 256
        frames[t, ..., 1] = (yy * 255 // size + 60 * seed) % 256
        frames[t, ..., 2] = 100
        c = size // 4 + t
        frames[t, c:c + size // 4, c:c + size // 4] = 230
    return frames


@pytest.fixture
def tiny_dataset(tmp_path):
    """Factory: ``tiny_dataset(n_frames, size, names=('u1.speaker', 'u1.listener'))`` -> root with
    videos/<name>.mp4, recons/test/<name>.mat, audios/<uuid>.wav. The videos are 256x256 whatever
    ``size`` is (prepare_vox_lmdb refuses other sizes); ``size`` is the LMDB size the test packs."""

    def make(n_frames: int = 4, size: int = 64, names=("u1.speaker", "u1.listener"), coeff_rows=None) -> Path:
        root = tmp_path / f"data_{size}_{n_frames}"
        for i, name in enumerate(names):
            write_video(root / "videos" / f"{name}.mp4", make_clip_frames(n_frames, 256, i))
            rows = (coeff_rows or {}).get(name, n_frames)
            write_mat(root / "recons" / "test" / f"{name}.mat", *make_coeffs(rows, size, i))
        for uuid in sorted({n.split(".")[0] for n in names}):
            t = np.arange(44100) / 44100.0
            write_wav(root / "audios" / f"{uuid}.wav", 0.3 * np.sin(2 * np.pi * 220 * t), 44100)
        return root

    return make


@pytest.fixture(scope="session")
def pir_helpers():
    """The helper functions above, for tests (conftest modules are not importable by name)."""
    import types

    return types.SimpleNamespace(make_coeffs=make_coeffs, write_mat=write_mat, make_clip_frames=make_clip_frames)
