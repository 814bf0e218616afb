"""The original lip-sync frame path (PyAV + OpenCV) against the ffmpeg command line's.

tests/golden/lipsync_ffmpeg/ holds a 3 s clip whose centre square is bright or dark in 40 ms steps,
wavs at 44.1 and 16 kHz whose loudness follows the same steps, and reference.npz: what
syncnet_python's steps gave with Debian's ffmpeg 5.1 (``python -m bench.lipsync_vs_ffmpeg
--make_golden``): the number of JPEG frames, the mean of each face crop SyncNet read, the 16 kHz
audio it read, and the fill-rule SyncNet's (offset, conf, min_dist). Any frame or sample shift of
our path shows in the crop means, the audio envelope and the oracle's offset.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from common.media import load_audio
from common.smoke_weights import fill_state_dict
from evaluation.lipsync.codec import aac_mux_gap, coded_rate, original_audio, original_crops, original_frames
from evaluation.lipsync.pipeline import LipSyncConfig, crop_track, cut_audio, find_tracks
from evaluation.metrics.lipsync import mfcc, sync_scores
from evaluation.networks.syncnet import SyncNetS
from tests.evaluation.oracle import OracleSync

GOLD = Path(__file__).resolve().parents[1] / "golden" / "lipsync_ffmpeg"
BOX = (32.0, 32.0, 96.0, 96.0)  # bench.lipsync_vs_ffmpeg.GOLDEN_BOX
# Tolerances: measured |differences| on this clip were conf 0.029 / 0.024 and min_dist 0.001 /
# 0.381 (44.1 / 16 kHz); all of it comes from the AAC encoder (FFmpeg 8.1's here, 5.1's there).
CONF_TOL, DIST_TOL = 0.05, 0.5


@pytest.fixture(scope="module")
def ref():
    return dict(np.load(GOLD / "reference.npz"))


@pytest.fixture(scope="module")
def fill_rule_syncnet():
    net = SyncNetS().eval()
    net.load_state_dict(fill_state_dict("syncnet_s"))
    return net


def _ours(wav: str):
    samples, sr = load_audio(GOLD / wav)
    frames = original_frames(GOLD / "clip.speaker.mp4", sr)
    rgb = [np.ascontiguousarray(f[..., ::-1]) for f in frames]
    (track,) = find_tracks(rgb, [[BOX]] * len(rgb), LipSyncConfig(min_track=40, min_face_size=10))
    return frames, track, original_crops(crop_track(rgb, track)), cut_audio(original_audio(samples, sr), track)


def _envelope(pcm: np.ndarray) -> np.ndarray:
    """log energy per 10 ms"""
    n = len(pcm) // 160
    return np.log(np.square(pcm[:n * 160].reshape(n, 160).astype(np.float64)).mean(1) + 1.0)


@pytest.mark.parametrize("wav", ["clip44k.wav", "clip16k.wav"])
def test_original_path_equals_ffmpeg_pipeline(ref, fill_rule_syncnet, wav):
    frames, track, crops, audio = _ours(wav)
    # 3 s at 30 fps -> 76 frames at 25 fps, plus the AAC mux's repeated frames (1 at 44.1 kHz, 2 at 16 kHz)
    gap = aac_mux_gap(44100 if "44k" in wav else 16000)
    assert gap == (1 if "44k" in wav else 2)
    assert len(frames) == 76 + gap == int(ref[f"{wav}/frames"][0])
    assert [int(track.frames[0]), len(track.frames)] == ref[f"{wav}/track"].tolist()
    # what SyncNet reads: the same crops (no frame shift; a shift moves a mean by ~20 levels)
    np.testing.assert_allclose(crops.reshape(len(crops), -1).mean(1), ref[f"{wav}/ffmpeg_crop_means"], atol=0.5)
    # ... and the same audio, in time: equal length, no lag, loudness envelope in step
    ff = ref[f"{wav}/ffmpeg_audio"].astype(np.float64)
    assert len(audio) == len(ff)
    e_ours, e_ff = _envelope(audio), _envelope(ff)
    lags = {lag: np.corrcoef(e_ours[max(0, lag):len(e_ours) + min(0, lag)],
                             e_ff[max(0, -lag):len(e_ff) + min(0, -lag)])[0, 1] for lag in range(-5, 6)}
    assert max(lags, key=lags.get) == 0 and lags[0] > 0.97
    # the fill-rule SyncNet: same offset, conf and min distance within the stated tolerance
    r = sync_scores(fill_rule_syncnet, crops, audio)
    offset, conf, dist = ref[f"{wav}/ffmpeg"]
    assert r.offset == int(offset)
    assert abs(r.conf - conf) <= CONF_TOL and abs(r.min_dist - dist) <= DIST_TOL


@pytest.mark.parametrize("wav", ["clip44k.wav", "clip16k.wav"])
def test_oracle_offset_equals_ffmpeg_pipeline(ref, wav):
    """With a SyncNet stand-in whose offset is meaningful, ours equals the original pipeline's
    (whose repeated frames and MP3 delay shift video and audio against each other)."""
    _, _, crops, audio = _ours(wav)
    means = ref[f"{wav}/ffmpeg_crop_means"]
    ff_crops = np.broadcast_to(np.round(means).astype(np.uint8)[:, None, None, None], crops.shape).copy()
    c0 = [mfcc(np.random.default_rng(0).standard_normal(16000) * a * 32768.0)[:, 0].mean() for a in (0.01, 0.3)]
    oracle = OracleSync(float(means.min()), float(means.max()), *c0)
    with torch.no_grad():
        ours = sync_scores(oracle, crops, audio)
        theirs = sync_scores(oracle, ff_crops, ref[f"{wav}/ffmpeg_audio"].astype(np.float64))
    assert ours.offset == theirs.offset
    assert abs(ours.conf - theirs.conf) <= 0.05 * abs(theirs.conf)
    assert theirs.conf > 0.1  # the oracle does see the sync of this clip


def test_rates_an_encoder_refuses_are_resampled_as_ffmpeg_does():
    """ffmpeg gives an encoder the closest rate it takes (read off ffmpeg 5.1: a 96 kHz wav becomes
    48 kHz MP3, 37.8 kHz becomes 32 kHz AAC, 40 kHz becomes 44.1 kHz AAC); 1 s of 96 kHz noise then
    gives the 16512 samples ffmpeg 5.1's audio.wav has (AAC at 96 kHz, MP3 at 48 kHz)."""
    assert coded_rate("libmp3lame", 96000) == 48000 and coded_rate("libmp3lame", 44100) == 44100
    assert coded_rate("aac", 37800) == 32000 and coded_rate("aac", 40000) == 44100 and coded_rate("aac", 96000) == 96000
    x = np.clip(np.random.default_rng(3).standard_normal(96000) * 0.1, -1, 1)
    assert len(original_audio(x, 96000)) == 16512
