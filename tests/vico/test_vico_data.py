"""Windows, the sampler, and validation of the preprocess outputs."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from common.io import UserError
from vico.data import GlobalBatchSampler, WindowDataset, check_feature_set, collate, load_clip, load_stats, make_windows


def test_windows_as_original():
    w = make_windows(100, 90)
    assert len(w) == 100 - 30 + 1 and w[0] == (0, 90) and w[10] == (10, 100) and w[-1] == (70, 100)
    assert min(e - s for s, e in w) == 30
    assert make_windows(90, 90) == [(0, 90)] and make_windows(12, 90) == [(0, 12)]


def test_dataset_items_and_collate(feat_data):
    f = feat_data / "features"
    stats = load_stats(f, 45)
    clip = load_clip(f, "train000x", stats, 45)
    raw = torch.load(f / "video_feats" / "train000x.listener.bin", weights_only=False)["angle.exp.trans"]
    np.testing.assert_allclose(clip.dyn_raw["listener"], raw)
    np.testing.assert_allclose(stats.denorm_dyn(clip.dyn["listener"]), raw, atol=1e-5)
    ds = WindowDataset([clip], "listener", 30)
    assert len(ds) == 50 - 10 + 1
    it = ds[5]
    assert it["audio"].shape == (30, 45) and it["target"].shape == (29, 73)
    torch.testing.assert_close(it["init"], torch.from_numpy(clip.dyn["listener"][5]))
    torch.testing.assert_close(it["target"], torch.from_numpy(clip.dyn["listener"][6:35]))
    torch.testing.assert_close(it["driven"], torch.from_numpy(clip.dyn["speaker"][5:35]))
    b = collate([ds[40], ds[0]])  # 10 frames and 30 frames
    assert b["audio"].shape == (2, 30, 45) and b["target"].shape == (2, 29, 73)
    assert b["lengths"].tolist() == [10, 30] and float(b["target"][0, 9:].abs().sum()) == 0
    spk = WindowDataset([clip], "speaker", 30)[5]
    torch.testing.assert_close(spk["driven"], torch.from_numpy(clip.dyn["listener"][5:35]))


@pytest.mark.parametrize("n", [40, 37])
def test_global_batches_do_not_depend_on_world_size(n):
    one = GlobalBatchSampler(n, 4, 0, 1, seed=3)
    two = [GlobalBatchSampler(n, 2, r, 2, seed=3) for r in (0, 1)]
    for s in (one, *two):
        s.set_epoch(5)
    a, b0, b1 = list(one), list(two[0]), list(two[1])
    assert len(b0) == len(b1) == len(two[0]) and all(len(x) > 0 for x in b0 + b1)
    real = lambda batch: sorted(i for i in batch if isinstance(i, int))  # noqa: E731
    assert [real(x) for x in a] == [real(x + y) for x, y in zip(b0, b1)]
    pads = [i for x in b0 + b1 for i in x if not isinstance(i, int)]
    assert len(pads) == n % 2 and all(w == 0.0 for _, w in pads)  # padding duplicates carry weight 0
    assert sorted(sum(a, [])) == list(range(n)) == sorted(sum(map(real, b0 + b1), []))
    one.set_epoch(6)
    assert list(one) != a  # reshuffled per epoch


def _write_bin(path, n, w=73):
    torch.save({"angle.exp.trans": np.zeros((n, w), np.float32), "id.gamma.tex": np.zeros((n, 187), np.float32)}, path)


def test_bad_features_name_the_file(feat_data):
    f = feat_data / "features"
    stats = load_stats(f, 45)
    vf = f / "video_feats"
    _write_bin(vf / "train001x.listener.bin", 39)
    with pytest.raises(UserError, match=r"train001x.listener.bin: 39 frames but the audio features train001x.npy have 40"):
        load_clip(f, "train001x", stats, 45)
    (vf / "train002x.speaker.bin").unlink()
    with pytest.raises(UserError, match=r"train002x.speaker.bin: video features of the speaker not found"):
        load_clip(f, "train002x", stats, 45)
    _write_bin(vf / "train000x.speaker.bin", 50, 70)
    with pytest.raises(UserError, match=r"train000x.speaker.bin: 'angle.exp.trans' has shape \(50, 70\), expected \(N, 73\)"):
        load_clip(f, "train000x", stats, 45)
    np.save(f / "audio_feats" / "test000x.npy", np.zeros((45, 43), np.float32))
    with pytest.raises(UserError, match=r"test000x.npy: audio features has shape \(45, 43\), expected \(N, 45\)"):
        load_clip(f, "test000x", stats, 45)
    (vf / "test001x.listener.bin").write_bytes(b"not a pickle")
    with pytest.raises(UserError, match=r"test001x.listener.bin: cannot read"):
        load_clip(f, "test001x", stats, 45)


def test_feature_set_is_checked(feat_data):
    f = feat_data / "features"
    assert check_feature_set(f, 45) == "vico45"
    assert check_feature_set(f, 45, "vico45") == "vico45"
    with pytest.raises(UserError, match="feature_set.json: audio features are 'vico45' but the model was configured"):
        check_feature_set(f, 45, "vico45_context")
    (f / "audio_feats" / "feature_set.json").write_text(json.dumps({"feature_set": "x", "dim": 43}))
    with pytest.raises(UserError, match="audio features are 43-d .* expects audio_dim 45"):
        check_feature_set(f, 45)
    with pytest.raises(UserError, match=r"audio_feats_mean_std.bin: statistics have shape \(45,\), expected \(47,\)"):
        load_stats(f, 47)
