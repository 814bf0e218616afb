"""Small feature folders in the exact preprocess formats (no dependency on the preprocess stage)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch


def smooth(rng: np.random.Generator, n: int, d: int, scale: float = 1.0) -> np.ndarray:
    t = np.arange(n)[:, None] / 30.0
    f = rng.uniform(0.2, 2.0, (1, d))
    ph = rng.uniform(0, 2 * np.pi, (1, d))
    return scale * np.sin(2 * np.pi * f * t + ph) + 0.05 * rng.standard_normal((n, d))


def make_features(data: Path, lengths=(50, 40, 36), split="train", seed: int = 0, feature_set="vico45") -> list[str]:
    """DATA/<split>.csv and DATA/features/... for clips of the given frame counts; returns uuids."""
    rng = np.random.default_rng(seed)
    f = data / "features"
    (f / "audio_feats").mkdir(parents=True, exist_ok=True)
    (f / "video_feats").mkdir(parents=True, exist_ok=True)
    uuids = [f"{split}{i:03d}x" for i in range(len(lengths))]
    for u, n in zip(uuids, lengths):
        audio = smooth(rng, n, 45, 3.0)
        np.save(f / "audio_feats" / f"{u}.npy", audio.astype(np.float32))
        spk = smooth(rng, n, 73) + 0.3 * audio[:, :73 % 45 + 28].repeat(3, 1)[:, :73]
        lis = 0.5 * np.roll(spk, 3, axis=0) + smooth(rng, n, 73, 0.3)
        for role, dyn in (("speaker", spk), ("listener", lis)):
            fixed = rng.standard_normal((n, 187))
            torch.save({"angle.exp.trans": dyn.astype(np.float32), "id.gamma.tex": fixed.astype(np.float32)},
                       f / "video_feats" / f"{u}.{role}.bin")
    if feature_set:
        (f / "audio_feats" / "feature_set.json").write_text(json.dumps({"feature_set": feature_set, "dim": 45}))
    csv = data / f"{split}.csv"
    csv.write_text("video_id,uuid,speaker_id,listener_id\n" + "".join(f"v{u},{u},s,l\n" for u in uuids))
    write_stats(f)
    return uuids


def write_stats(f: Path) -> None:
    a = np.concatenate([np.load(p) for p in sorted((f / "audio_feats").glob("*.npy"))]).astype(np.float64)
    vids = [torch.load(p, weights_only=False) for p in sorted((f / "video_feats").glob("*.bin"))]
    torch.save({"mean": torch.from_numpy(a.mean(0)), "std": torch.from_numpy(a.std(0, ddof=1))},
               f / "audio_feats_mean_std.bin")
    out = {}
    for k in ("angle.exp.trans", "id.gamma.tex"):
        v = np.concatenate([d[k] for d in vids])
        out[k] = {"mean": torch.from_numpy(v.mean(0)), "std": torch.from_numpy(v.std(0, ddof=1))}
    torch.save(out, f / "video_feats_mean_std.bin")


@pytest.fixture
def feat_data(tmp_path) -> Path:
    make_features(tmp_path / "data", (50, 40, 36), "train", seed=0)
    make_features(tmp_path / "data", (45, 33), "test", seed=1)
    return tmp_path / "data"


@pytest.fixture(autouse=True)
def one_thread():
    """In-process runs of these tiny models: one intra-op thread (restored afterwards)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
