"""Audio features: parity with the original (golden), vectorised == per-frame, framing maths."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from preprocess.audio.features import (deltas, feature_dim, rms_frames, rms_librosa, vico45,
                                       vico45_context, vico45_per_frame, zcr_frames, zcr_librosa)
from preprocess.audio.kaldi import KaldiMfccConfig, mfcc, mfcc_from_frames, num_frames


@pytest.fixture(scope="module")
def gold(golden):
    return dict(np.load(golden / "audio_features.npz"))


def _check_golden(ours: np.ndarray, ref: np.ndarray) -> None:
    assert ours.shape == ref.shape
    # tolerances of golden/README.md case 5
    np.testing.assert_allclose(ours[:, :13], ref[:, :13], atol=1e-3, rtol=1e-4)
    np.testing.assert_allclose(ours[:, 13:39], ref[:, 13:39], atol=1e-5, rtol=0)
    np.testing.assert_allclose(ours[:, 39:], ref[:, 39:], atol=1e-7, rtol=0)


@pytest.mark.parametrize("sr,dim", [(44100, 45), (16000, 43)])
def test_vico45_matches_original(gold, sr, dim):
    x = gold[f"pcm16_{sr}"].astype(np.float64) / 32768.0  # what soundfile.read returns
    ref = gold[f"features_{sr}"]
    n = int(gold["n_frames"])
    ours = vico45(x, sr, n)
    assert ours.dtype == np.float32 and ours.shape == (n, dim) == (n, feature_dim(sr))
    _check_golden(ours, ref)
    # the original's deltas are zero up to float32 conv rounding; ours are exactly zero
    assert np.all(ours[:, 13:39] == 0)


def test_per_frame_loop_equals_vectorised(gold):
    x = gold["pcm16_44100"] / 32768.0
    slow = vico45_per_frame(x[: 20 * 1470], 44100, 20)
    fast = vico45(x[: 20 * 1470], 44100, 20)
    np.testing.assert_allclose(fast[:, :13], slow[:, :13], atol=5e-5, rtol=1e-5)
    np.testing.assert_array_equal(fast[:, 13:], slow[:, 13:])
    _check_golden(slow, gold["features_44100"][:20])


def test_kaldi_framing_and_energy_floor():
    cfg = KaldiMfccConfig(sample_frequency=16000)
    assert (cfg.window_size, cfg.window_shift, cfg.padded_window_size) == (400, 160, 512)
    assert num_frames(399, cfg) == 0 and num_frames(400, cfg) == 1 and num_frames(1000, cfg) == 4
    rng = np.random.default_rng(1)
    w = torch.from_numpy(rng.standard_normal(1000).astype(np.float32))
    m = mfcc(w, cfg)
    assert m.shape == (4, 13)
    # frames are independent: the second frame alone gives the second row
    np.testing.assert_allclose(mfcc_from_frames(w[160:560][None], cfg)[0], m[1], atol=1e-5)
    # log-energy column: log(sum((x - mean)^2)) of the raw frame, floored at log(1) = 0
    f = w[:400].double()
    assert float(m[0, 0]) == pytest.approx(float(torch.log(((f - f.mean()) ** 2).sum())), rel=1e-5)
    quiet = mfcc_from_frames(1e-3 * w[None, :400], cfg)
    assert float(quiet[0, 0]) == 0.0


@pytest.mark.parametrize("spf", [533, 735, 1470, 1600])
def test_rms_zcr_vectorised_equal_direct_framing(spf):
    rng = np.random.default_rng(spf)
    x = rng.standard_normal((4, spf)) * np.linspace(0.01, 1, spf)
    x[0, 100:200] = 0.0  # exact zeros and sub-threshold values count as non-negative
    x[1, 10:20] = -1e-12
    for i in range(4):
        np.testing.assert_allclose(rms_frames(x, 2048, 512)[i], rms_librosa(x[i], 2048, 512), rtol=1e-12)
        for fl in (2048, 44100, 777):
            np.testing.assert_array_equal(zcr_frames(x, fl, 512)[i], zcr_librosa(x[i], fl, 512))
    assert rms_frames(x).shape == (4, 1 + spf // 512)


def test_deltas_hand_computed():
    x = np.array([[0.0], [1.0], [4.0], [9.0]])
    # window 5, replicate padding: d[t] = (x[t+1]-x[t-1] + 2(x[t+2]-x[t-2])) / 10
    expect = np.array([(1 - 0 + 2 * (4 - 0)) / 10, (4 - 0 + 2 * (9 - 0)) / 10,
                       (9 - 1 + 2 * (9 - 0)) / 10, (9 - 4 + 2 * (9 - 1)) / 10])
    np.testing.assert_allclose(deltas(x, axis=0)[:, 0], expect)
    assert np.all(deltas(np.full((1, 13), 3.7), axis=0) == 0)


def test_context_variant(gold):
    x = gold["pcm16_44100"] / 32768.0
    c = vico45_context(x, 44100, 90)
    v = vico45(x, 44100, 90)
    assert c.shape == v.shape == (90, 45) and c.dtype == np.float32
    # deltas now follow the MFCC across video frames
    np.testing.assert_allclose(c[:, 13:26], deltas(c[:, :13].astype(np.float64), 0), atol=1e-5)
    np.testing.assert_allclose(c[:, 26:39], deltas(deltas(c[:, :13].astype(np.float64), 0), 0), atol=1e-5)
    assert np.abs(c[:, 13:26]).mean() > 0.1
    # RMS is the same; MFCC analyses the whole 1470-sample slice (one 2048-point FFT)
    np.testing.assert_array_equal(c[:, 39:42], v[:, 39:42])
    cfg = KaldiMfccConfig(sample_frequency=44100, frame_length_samples=1470)
    ref = mfcc_from_frames(torch.from_numpy(x[1470:2940][None].astype(np.float32)), cfg)[0].numpy()
    np.testing.assert_allclose(c[1, :13], ref, atol=1e-4)
    # ZCR over 2048-sample windows: the middle window holds the whole slice
    s = x[1470:2940]
    assert c[1, 43] == pytest.approx(np.sum(np.signbit(s[1:]) != np.signbit(s[:-1])) / 2048, abs=1e-7)


def test_short_audio_zero_padded_and_long_cut(gold):
    x = gold["pcm16_44100"] / 32768.0
    full = vico45(x, 44100, 90)
    np.testing.assert_array_equal(vico45(np.concatenate([x, x]), 44100, 90), full)
    padded = vico45(x[: 89 * 1470 + 100], 44100, 90)
    np.testing.assert_array_equal(padded[:88], full[:88])
