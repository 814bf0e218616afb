"""Smoke-test stand-ins for the five 3DDFA_V2 files, in the released layouts.

- ``mb1_120x120.pth`` / ``mb05_120x120.pth``: ``{'epoch', 'state_dict'}``, keys prefixed
  ``module.``, fill-rule values (``common.weights.fill_tensor``) in the manifest's key order;
- ``FaceBoxesProd.pth``: plain state dict, fill-rule values;
- ``bfm_noneck_v3.pkl``: the released keys (u, w_shp with 40 columns, w_exp with 10, tri,
  keypoints with 204 row indices) over a small synthetic mesh of 100 vertices whose first 68
  (in a shuffled order) form a schematic frontal face;
- ``param_mean_std_62d_120x120.pkl``: ``mean`` = a camera matrix that puts that face in the
  middle of the 120 x 120 crop, zero shape/expression; ``std`` small, so the smoke networks'
  outputs stay near a face.

Each file gets the ``<file>.smoke.json`` sidecar of ``common.weights`` (never mistaken for real).

    python -m common.tddfa.smoke --dir weights
"""
from __future__ import annotations

import argparse
import pickle
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from common import smoke_weights as S
from common import weights as W
from common.io import UserError, atomic_path, run_cli, setup_logging, write_json_atomic
from common.tddfa.specs import MANIFESTS, TDDFA_SPECS

N_VERTICES = 100
FILL = {  # fill-rule module classes (regexes on the module prefix of each key)
    "tddfa_v2_mobilenet_mb05": S.FillRules(norm=(r"module\.bn1", r"module\.dw[\d_]+\.bn_(dw|sep)")),
    "tddfa_v2_mobilenet_mb1": S.FillRules(norm=(r"module\.bn1", r"module\.dw[\d_]+\.bn_(dw|sep)")),
    "tddfa_v2_faceboxes": S.FillRules(norm=(r".*\.bn",)),
}


def fill_file_state_dict(manifest: str) -> dict[str, torch.Tensor]:
    """Fill-rule tensors for every key of ``manifest`` (the file's own keys, prefix included)."""
    rules = FILL[manifest]
    out = {}
    for key, shape in W.manifest_shapes(manifest).items():
        kind, fan_in, post = S.fill_kind(key, shape, rules)
        out[key] = torch.from_numpy(S.fill_tensor(key, shape, kind, post, fan_in))
    return out


def face_template() -> np.ndarray:
    """(68, 3) schematic frontal face in the iBUG order, model frame (y up), about 80 px wide,
    centred on 0."""
    t = np.linspace(-1, 1, 17)
    jaw = np.stack([40 * t, 15 - 55 * np.cos(t * np.pi / 2.2), -10 * np.abs(t)], 1)
    brow = lambda x0: np.stack([x0 + np.linspace(0, 22, 5), 22 + 3 * np.sin(np.linspace(0, np.pi, 5)),
                                np.full(5, 8.0)], 1)
    nose_bridge = np.stack([np.zeros(4), np.linspace(14, -2, 4), np.linspace(10, 20, 4)], 1)
    nose_base = np.stack([np.linspace(-8, 8, 5), np.full(5, -6.0), np.full(5, 14.0)], 1)
    eye = lambda cx: np.stack([cx + np.array([-8, -4, 4, 8, 4, -4.0]), 12 + np.array([0, 3, 3, 0, -3, -3.0]),
                               np.full(6, 6.0)], 1)
    a = np.linspace(0, 2 * np.pi, 12, endpoint=False)
    mouth_out = np.stack([-15 * np.cos(a), -22 + 7 * np.sin(a), np.full(12, 10.0)], 1)
    b = np.linspace(0, 2 * np.pi, 8, endpoint=False)
    mouth_in = np.stack([-10 * np.cos(b), -22 + 3 * np.sin(b), np.full(8, 10.0)], 1)
    pts = np.concatenate([jaw, brow(-30.0), brow(8.0), nose_bridge, nose_base, eye(-17.0), eye(17.0),
                          mouth_out, mouth_in])
    assert pts.shape == (68, 3), pts.shape
    return pts


def synthetic_bfm(seed: int = 0) -> dict[str, np.ndarray]:
    """Released keys and column shapes over a 100-vertex mesh (see the module docstring)."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(N_VERTICES)  # vertex index of landmark i = order[i]
    verts = np.zeros((N_VERTICES, 3))
    verts[order[:68]] = face_template()
    verts[order[68:]] = rng.uniform(-40, 40, (N_VERTICES - 68, 3))
    u = verts.reshape(-1, 1)  # x, y, z interleaved per vertex, as the released flat bases
    w_shp = rng.standard_normal((3 * N_VERTICES, 40)) * 0.5
    w_exp = rng.standard_normal((3 * N_VERTICES, 10)) * 0.5
    kp = (3 * order[:68, None] + np.arange(3)[None]).reshape(-1)
    tri = rng.integers(0, N_VERTICES, (3, 150))
    return {"u": u.astype(np.float32), "w_shp": w_shp.astype(np.float32), "w_exp": w_exp.astype(np.float32),
            "tri": tri.astype(np.int32), "keypoints": kp.astype(np.int64)}


def synthetic_param_stats() -> dict[str, np.ndarray]:
    """mean: P = [I | (60, 60, 0)] (face centred in the crop), shape/exp 0; small std."""
    mean = np.zeros(62, np.float32)
    mean[:12] = [1, 0, 0, 60, 0, 1, 0, 60, 0, 0, 1, 0]
    std = np.full(62, 0.01, np.float32)
    std[[3, 7, 11]] = 0.5
    return {"mean": mean, "std": std}


def _write(path: Path, name: str, write, layout: str) -> None:
    if path.exists() and not W.is_smoke(path):
        raise UserError(f"{path}: a real weights file is there; not overwriting it with a smoke-test file")
    side = {"smoke_test": True, "warning": "NOT real weights: synthetic values for tests and demos only",
            "weights": name, "made_by": "python -m common.tddfa.smoke", "layout": layout}
    write_json_atomic(W.smoke_sidecar(path), side)
    with atomic_path(path) as tmp:
        write(tmp)
    st = path.stat()
    write_json_atomic(W.smoke_sidecar(path), {**side, "file": {"bytes": st.st_size, "mtime_ns": st.st_mtime_ns}})


def make_smoke_files(root: str | Path) -> dict[str, Path]:
    """Write all five stand-ins under ``root`` (registry default places); returns name -> path."""
    root = Path(root)
    specs = {d["name"]: d for d in TDDFA_SPECS}
    out = {}
    for name, d in specs.items():
        path = root / d["default_path"]
        path.parent.mkdir(parents=True, exist_ok=True)
        if name in ("tddfa_v2_mb1", "tddfa_v2_mb05"):
            payload = {"epoch": 0, "state_dict": fill_file_state_dict(MANIFESTS[name])}
            write = lambda tmp, obj=payload: torch.save(obj, tmp)
        elif name == "tddfa_v2_faceboxes":
            payload = fill_file_state_dict(MANIFESTS[name])
            write = lambda tmp, obj=payload: torch.save(obj, tmp)
        else:
            obj = synthetic_bfm() if name == "tddfa_v2_bfm" else synthetic_param_stats()
            write = lambda tmp, obj=obj: Path(tmp).write_bytes(pickle.dumps(obj, protocol=2))
        _write(path, name, write, d["note"])
        out[name] = path
    return out


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m common.tddfa.smoke", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dir", type=Path, default=W.weights_dir(), help="weights directory (files go to DIR/tddfa_v2/)")
    args = p.parse_args(argv)
    setup_logging()
    for name, path in make_smoke_files(args.dir).items():
        print(f"{name}: {path}")
    return 0


if __name__ == "__main__":
    run_cli(main)
