"""Shared inputs of the cross-stage fault suite: one tiny synthetic dataset (2 pairs x 30 frames),
smoke-test weights, landmarks and coefficients of its good clips, and a 64 px LMDB.

Built once per session; every case copies what it needs into its own folder before corrupting it.
"""
from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from scipy.io import savemat

N_FRAMES = 30
PIR_CKPT = "epoch_00190_iteration_000400000_checkpoint.pt"


@dataclass(frozen=True)
class Workspace:
    """Paths of the shared, never-modified good inputs."""

    root: Path
    data: Path  # synthetic ViCo layout: videos/, audios/, train.csv, test.csv
    speakers: tuple[Path, ...]  # the good speaker videos (30 frames each)
    keypoints: Path  # <name>.txt of the speaker videos, by the real extract_kp_videos
    mats: Path  # <name>.mat (30, 257) + (30, 5) of every clip
    lmdb: Path  # prepare_vox_lmdb output (64 px) of the speaker videos
    recon_ckpt: Path
    pir_ckpt: Path

    @property
    def uuids(self) -> list[str]:
        return [p.name.split(".")[0] for p in self.speakers]


def plausible_coeffs(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(n, 257) float32 coefficients and (n, 5) transform params of a 256 px frame."""
    rng = np.random.default_rng(seed)
    coeff = (0.1 * rng.standard_normal((n, 257))).astype(np.float32)
    tp = (np.tile([[256.0, 256.0, 3.0, 110.0, 120.0]], (n, 1)) + 0.1 * rng.standard_normal((n, 5)))
    return coeff, tp.astype(np.float32)


def write_mat(path: Path, coeff: np.ndarray, tp: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    savemat(str(path), {"coeff": coeff, "transform_params": tp})
    return path


def copy_into(files, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for f in files:
        shutil.copy2(f, folder / Path(f).name)
    return folder


def run_ok(run_cli, module: str, *args) -> None:
    r = run_cli(module, *args)
    assert r.returncode == 0, r.stderr[-3000:]


@pytest.fixture(scope="session")
def ws(tmp_path_factory, run_cli) -> Workspace:
    from common.synthetic import generate
    from common.smoke_weights import make_smoke_checkpoint

    root = tmp_path_factory.mktemp("faults")
    data = generate(root / "data", pairs=2, frames=N_FRAMES, seed=0)
    speakers = tuple(sorted((data / "videos").glob("*.speaker.mp4")))
    mats = root / "mats"
    for i, v in enumerate(sorted((data / "videos").glob("*.mp4"))):
        write_mat(mats / f"{v.stem}.mat", *plausible_coeffs(N_FRAMES, i))
    kp_in = copy_into(speakers, root / "kp_in")
    run_ok(run_cli, "Deep3DFaceRecon_pytorch.extract_kp_videos", "--input_dir", kp_in,
           "--output_dir", root / "keypoints")
    run_ok(run_cli, "PIRender.prepare_vox_lmdb", "--path", kp_in, "--coeff_3dmm_path", mats,
           "--out", root / "lmdb", "--sizes", "64", "--n_worker", "1")
    return Workspace(
        root=root, data=data, speakers=speakers, keypoints=root / "keypoints", mats=mats, lmdb=root / "lmdb",
        recon_ckpt=make_smoke_checkpoint("deep3dfacerecon_reconnet_resnet50", root / "w" / "epoch_20.pth"),
        pir_ckpt=make_smoke_checkpoint("pirender_face_generator", root / "w" / "pirender" / PIR_CKPT),
    )


def temp_leftovers(folder: Path) -> list[Path]:
    """Files an interrupted atomic write would leave (common.io.atomic_path: .<stem>.XXXX.tmp<ext>)."""
    if not folder.exists():
        return []
    return sorted(p for p in folder.rglob(".*") if p.is_file() and ".tmp" in p.name)


def run_json(folder: Path) -> dict:
    return json.loads((folder / "run.json").read_text())
