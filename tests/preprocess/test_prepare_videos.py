"""prepare_videos: raw sources (25 fps, 60 fps, variable frame rate, 640x480, portrait, two
people, sound in the video or in a separate stereo 48 kHz file) -> ViCo clips, through the real
command line. One CLI run prepares every source (session fixture); the tests read its outputs."""
from __future__ import annotations

import csv
import json
import os
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile as sf

from common.dataset import discover
from common.media import load_audio, probe_video, read_video, resample
from common.synthetic.render import EYE_MID_Y, EYE_MOUTH
from preprocess.prepare.framing import K_VICO
from preprocess.prepare.timing import tick_sources

MOD = "preprocess.prepare_videos"
# Where the synthetic rig puts the face centre in its 256x256 frames (exact by construction).
FACE = np.array([128.0, (EYE_MID_Y + EYE_MOUTH / 2) * 256])
CENTRE_TOL = 12.0  # px: dlib's box centre vs the rig's face centre (measured: within 5 px)


def _encode(path: Path, frames, times, size, audio=None, sr=48000):
    """H.264 video at the given frame times (seconds; any spacing), optionally with a stereo AAC
    track; frames are pasted on a black canvas by the caller."""
    w, h = size
    with av.open(str(path), "w") as c:
        v = c.add_stream("libx264", rate=30)
        v.width, v.height, v.pix_fmt = w, h, "yuv420p"
        v.time_base = Fraction(1, 1000)
        v.codec_context.time_base = Fraction(1, 1000)
        a = c.add_stream("aac", rate=sr, layout="stereo") if audio is not None else None
        for f, t in zip(frames, times):
            vf = av.VideoFrame.from_ndarray(f, format="rgb24").reformat(format="yuv420p")
            vf.pts, vf.time_base = int(round(t * 1000)), Fraction(1, 1000)
            for p in v.encode(vf):
                c.mux(p)
        for p in v.encode(None):
            c.mux(p)
        if a is not None:
            x = np.ascontiguousarray(np.stack([audio, audio * 0.5]).astype(np.float32))
            for s in range(0, x.shape[1], 4096):
                af = av.AudioFrame.from_ndarray(np.ascontiguousarray(x[:, s:s + 4096]), format="fltp", layout="stereo")
                af.sample_rate, af.pts, af.time_base = sr, s, Fraction(1, sr)
                for p in a.encode(af):
                    c.mux(p)
            for p in a.encode(None):
                c.mux(p)


def _paste(faces: list[np.ndarray], at: list[tuple[int, int]], size) -> list[np.ndarray]:
    out = []
    for i in range(len(faces[0])):
        canvas = np.zeros((size[1], size[0], 3), np.uint8)
        for clip, (x, y) in zip(faces, at):
            canvas[y:y + 256, x:x + 256] = clip[i]
        out.append(canvas)
    return out


@pytest.fixture(scope="session")
def prepared(tmp_path_factory, synthetic_root, run_cli):
    src = tmp_path_factory.mktemp("raw")
    clips = discover(synthetic_root)
    (u0, u1) = sorted(clips)[:2]
    spk, lis, other = (read_video(clips[u0]["speaker"]), read_video(clips[u0]["listener"]),
                       read_video(clips[u1]["speaker"]))
    speech, sr44 = load_audio(clips[u0]["audio"])
    speech48 = resample(speech, sr44, 48000)
    rep = lambda v, n: np.stack([v[i % len(v)] for i in range(n)])  # noqa: E731
    # 1. 25 fps 640x480, sound in the speaker video (stereo 48 kHz AAC); listener in an mkv
    t25 = np.arange(30) / 25
    _encode(src / "spk25.mp4", _paste([rep(spk, 30)], [(300, 150)], (640, 480)), t25, (640, 480),
            audio=speech48[: int(1.2 * 48000)])
    _encode(src / "lis25.mkv", _paste([rep(lis, 30)], [(60, 100)], (640, 480)), t25, (640, 480))
    # 2. 60 fps portrait 360x640, separate stereo 48 kHz flac
    t60 = np.arange(42) / 60
    _encode(src / "spk60.mov", _paste([rep(spk, 42)], [(52, 200)], (360, 640)), t60, (360, 640))
    _encode(src / "lis60.mp4", _paste([rep(lis, 42)], [(52, 200)], (360, 640)), t60, (360, 640))
    sf.write(src / "speech48.flac", np.stack([speech48[:33600], speech48[:33600]], 1), 48000)
    # 3. variable frame rate (40 ms and 20 ms apart), two people side by side, audio 44.1 kHz wav
    tv = np.concatenate([[0.0], np.cumsum(np.tile([0.04, 0.02], 15))[:29]])
    _encode(src / "two.mp4", _paste([rep(spk, 30), rep(other, 30)], [(40, 52), (344, 52)], (640, 360)),
            tv, (640, 360))
    sf.write(src / "two.wav", speech[: int(0.92 * 44100)], 44100)
    # bad items: a broken file; audio 0.6 s short of its video
    (src / "broken.mp4").write_bytes(os.urandom(2000))
    sf.write(src / "short.wav", speech[: int(0.1 * 44100)], 44100)
    with open(src / "pairs.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["speaker", "listener", "audio", "uuid", "video", "split"])
        w.writerow(["spk25.mp4", "lis25.mkv", "", "p25", "", "train"])
        w.writerow(["spk60.mov", "lis60.mp4", "speech48.flac", "p60", "", ""])
        w.writerow(["", "", "two.wav", "two", "two.mp4", ""])
        w.writerow(["broken.mp4", "lis25.mkv", "", "broken", "", ""])
        w.writerow(["spk60.mov", "lis60.mp4", "short.wav", "short", "", ""])
    out = tmp_path_factory.mktemp("prepared") / "vico"
    r = run_cli(MOD, "--pairs", src / "pairs.csv", "--output_folder", out)
    return {"out": out, "src": src, "r": r, "run": json.loads((out / "run.json").read_text()),
            "speech": speech}


EXPECT = {"p25": 36, "p60": 21, "two": 28}  # round(duration * 30): 1.2 s, 0.7 s, 0.92 s


def test_frames_size_audio(prepared):
    r, out = prepared["r"], prepared["out"]
    assert r.returncode == 1, r.stderr  # the two bad items fail, the rest are done
    assert prepared["run"]["counts"] == {"done": 3, "skipped": 0, "failed": 2}
    for uuid, n in EXPECT.items():
        for role in ("speaker", "listener"):
            info = probe_video(out / "videos" / f"{uuid}.{role}.mp4")
            assert (info.n_frames, info.width, info.height, info.fps) == (n, 256, 256, 30.0), (uuid, info)
        wav = sf.info(str(out / "audios" / f"{uuid}.wav"))
        assert (wav.samplerate, wav.channels, wav.subtype, wav.frames) == (44100, 1, "PCM_16", n * 1470)
    with open(out / "test.csv") as f:
        assert sorted(row["uuid"] for row in csv.DictReader(f)) == ["p60", "two"]
    with open(out / "train.csv") as f:
        assert [row["uuid"] for row in csv.DictReader(f)] == ["p25"]


def test_sources_recorded_and_bad_items_named(prepared):
    run, clips = prepared["run"], prepared["run"]["clips"]
    assert clips["p25"]["speaker"]["source"]["fps"] == 25 and clips["p25"]["speaker"]["source"]["width"] == 640
    assert clips["p60"]["listener"]["source"]["fps"] == 60 and clips["p60"]["listener"]["source"]["height"] == 640
    assert clips["two"]["speaker"]["source"]["variable_frame_rate"] is True
    assert not clips["p25"]["speaker"]["source"]["variable_frame_rate"]
    assert clips["p25"]["speaker"]["frames_without_face"] == 0
    assert clips["p60"]["audio"]["sample_rate"] == 48000
    fails = {f["item"]: f["reason"] for f in run["failures"]}
    assert "broken.mp4" in fails["broken"]
    assert "short.wav" in fails["short"] and "--max_audio_pad_s" in fails["short"]
    err = prepared["r"].stderr
    assert "short.wav" in err and "broken.mp4" in err and "Traceback" not in err


@pytest.mark.parametrize("uuid,role,paste", [("p25", "speaker", (300, 150)), ("p25", "listener", (60, 100)),
                                             ("p60", "speaker", (52, 200)), ("two", "speaker", (40, 52)),
                                             ("two", "listener", (344, 52))])
def test_crop_box_on_the_face(prepared, uuid, role, paste):
    box = prepared["run"]["clips"][uuid][role]["crop_box"]
    centre = np.array([box["x0"] + box["side"] / 2, box["y0"] + box["side"] / 2])
    np.testing.assert_allclose(centre, FACE + paste, atol=CENTRE_TOL)
    # side = K x dlib's face side (129-155 px for the two synthetic identities)
    assert K_VICO * 120 <= box["side"] <= K_VICO * 165


def test_audio_from_the_video_track_is_aligned(prepared):
    """The speaker video's own stereo 48 kHz AAC track becomes the wav, in sync (no shift)."""
    x, sr = load_audio(prepared["out"] / "audios" / "p25.wav")
    ref = prepared["speech"][: len(x)] * 0.75  # the stereo channels were 1 and 0.5
    lags = range(-300, 301, 10)
    corr = [np.corrcoef(x[1000 + k: 40000 + k], ref[1000:40000])[0, 1] for k in lags]
    assert max(corr) > 0.9 and abs(list(lags)[int(np.argmax(corr))]) <= 20, (max(corr), np.argmax(corr))


def test_timestamp_resampling():
    # 25 fps -> 30: tick i shows frame floor(i * 25 / 30); 60 fps -> every other frame
    np.testing.assert_array_equal(tick_sources(np.arange(25) / 25), np.arange(30) * 25 // 30)
    np.testing.assert_array_equal(tick_sources(np.arange(60) / 60 + 3.0), np.arange(30) * 2)


def test_resume_skips_complete(prepared, run_cli):
    out, src = prepared["out"], prepared["src"]
    mtime = (out / "videos" / "p25.speaker.mp4").stat().st_mtime_ns
    r = run_cli(MOD, "--pairs", src / "pairs.csv", "--output_folder", out)
    run = json.loads((out / "run.json").read_text())
    assert run["counts"]["skipped"] == 3 and run["counts"]["done"] == 0, r.stderr
    assert (out / "videos" / "p25.speaker.mp4").stat().st_mtime_ns == mtime
    assert run["clips"]["p25"]["frames"] == 36  # records kept for skipped clips
