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

from common.media import load_audio, probe_video, read_video, resample
from preprocess.prepare.framing import crop_square, plan_framing, select_track
from preprocess.prepare.timing import tick_sources

MOD = "preprocess.prepare_videos"
# The faces are ViCo-framed 256x256 synthetic frames pasted into bigger ones: the prepared box
# should be that pasted square again (centre at paste + 128; side 256 up to dlib's spread).
CENTRE_TOL = 12.0  # px (measured: within 5 px)


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


# The frame number in 6 black/white 10x10 cells (bit j centred at MARK + (10 j, 0)), in face-clip
# pixels, inside the crop: robust to H.264 (a small grey change can be coded as "skip").
MARK = (35, 205)


def _paste(faces: list[np.ndarray], at: list[tuple[int, int]], size, n: int) -> list[np.ndarray]:
    """n frames of a black canvas with the face images pasted at ``at``; the first face carries
    the frame number in binary (MARK)."""
    out = []
    for i in range(n):
        canvas = np.zeros((size[1], size[0], 3), np.uint8)
        for face, (x, y) in zip(faces, at):
            canvas[y:y + 256, x:x + 256] = face
        for j in range(6):
            x, y = at[0][0] + MARK[0] + 10 * j, at[0][1] + MARK[1]
            canvas[y - 5:y + 5, x - 5:x + 5] = 255 * ((i >> j) & 1)
        out.append(canvas)
    return out


def _speech(seconds: float, sr: int) -> np.ndarray:
    t = np.arange(int(round(seconds * sr))) / sr
    phase = 2 * np.pi * np.cumsum(140 + 20 * np.sin(2 * np.pi * 0.8 * t)) / sr
    x = sum(np.sin(k * phase) / k for k in range(1, 8)) * (0.55 + 0.45 * np.sin(2 * np.pi * 3 * t))
    return 0.4 * x / np.abs(x).max()


@pytest.fixture(scope="session")
def prepared(tmp_path_factory, run_cli):
    from common.faces import DlibBackend
    from common.synthetic.render import FaceRig, load_identities

    src = tmp_path_factory.mktemp("raw")
    rest = {"pitch": 0.0, "yaw": 0.0, "roll": 0.0, "tx": 0.0, "ty": 0.0, "scale": 1.0, "blink": 0.0, "mouth_open": 0.0}
    a, b = (FaceRig(ident, 256).render(rest)[0] for ident in load_identities(DlibBackend(upsample=0)))
    speech48 = _speech(1.5, 48000)
    times = {"p25": np.arange(30) / 25, "p60": np.arange(42) / 60,
             # variable frame rate: 40 ms and 20 ms apart
             "two": np.concatenate([[0.0], np.cumsum(np.tile([0.04, 0.02], 15))[:29]])}
    # 1. 25 fps 640x480, sound in the speaker video (stereo 48 kHz AAC); listener in an mkv
    t = times["p25"]
    _encode(src / "spk25.mp4", _paste([a], [(300, 150)], (640, 480), 30), t, (640, 480), audio=speech48[:57600])
    _encode(src / "lis25.mkv", _paste([b], [(60, 100)], (640, 480), 30), t, (640, 480))
    # 2. 60 fps portrait 360x640, separate stereo 48 kHz flac
    t = times["p60"]
    _encode(src / "spk60.mov", _paste([a], [(52, 200)], (360, 640), 42), t, (360, 640))
    _encode(src / "lis60.mp4", _paste([b], [(52, 200)], (360, 640), 42), t, (360, 640))
    sf.write(src / "speech48.flac", np.stack([speech48[:33600], speech48[:33600]], 1), 48000)
    # 3. variable frame rate, two people side by side (speaker left), audio in a 44.1 kHz wav
    _encode(src / "two.mp4", _paste([a, b], [(40, 52), (344, 52)], (640, 360), 30), times["two"], (640, 360))
    sf.write(src / "two.wav", _speech(0.92, 44100), 44100)
    # bad items: a broken file; audio 0.6 s short of its video
    (src / "broken.mp4").write_bytes(os.urandom(2000))
    sf.write(src / "short.wav", _speech(0.1, 44100), 44100)
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
            "speech44": resample(speech48, 48000, 44100), "times": times}


EXPECT = {"p25": 36, "p60": 21, "two": 28}  # round(duration * 30): 1.2 s, 0.7 s, 0.92 s


@pytest.mark.slow
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


@pytest.mark.slow
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


@pytest.mark.slow
@pytest.mark.parametrize("uuid,role,paste", [("p25", "speaker", (300, 150)), ("p25", "listener", (60, 100)),
                                             ("p60", "speaker", (52, 200)), ("two", "speaker", (40, 52)),
                                             ("two", "listener", (344, 52))])
def test_crop_box_on_the_face(prepared, uuid, role, paste):
    box = prepared["run"]["clips"][uuid][role]["crop_box"]
    centre = np.array([box["x0"] + box["side"] / 2, box["y0"] + box["side"] / 2])
    np.testing.assert_allclose(centre, np.add(paste, 128), atol=CENTRE_TOL)
    assert 0.85 * 256 <= box["side"] <= 1.15 * 256


@pytest.mark.slow
def test_audio_from_the_video_track_is_aligned(prepared):
    """The speaker video's own stereo 48 kHz AAC track becomes the wav, in sync (no shift)."""
    x, sr = load_audio(prepared["out"] / "audios" / "p25.wav")
    ref = prepared["speech44"][: len(x)] * 0.75  # the stereo channels were 1 and 0.5
    lags = range(-300, 301, 10)
    corr = [np.corrcoef(x[1000 + k: 40000 + k], ref[1000:40000])[0, 1] for k in lags]
    assert max(corr) > 0.9 and abs(list(lags)[int(np.argmax(corr))]) <= 20, (max(corr), np.argmax(corr))


@pytest.mark.slow
@pytest.mark.parametrize("uuid", ["p25", "p60", "two"])
def test_each_tick_shows_the_last_source_frame_at_or_before_it(prepared, uuid):
    """The frame number painted into each source frame, read back from the prepared speaker video."""
    t = prepared["times"][uuid]
    box = prepared["run"]["clips"][uuid]["speaker"]["crop_box"]
    paste = {"p25": (300, 150), "p60": (52, 200), "two": (40, 52)}[uuid]
    frames = read_video(prepared["out"] / "videos" / f"{uuid}.speaker.mp4")
    seen = np.zeros(len(frames), int)
    for j in range(6):
        x, y = ((np.add(paste, MARK) + [10 * j, 0] - [box["x0"], box["y0"]]) * 256 / box["side"]).round().astype(int)
        seen += (frames[:, y - 1:y + 2, x - 1:x + 2].mean(axis=(1, 2, 3)) > 128) << j
    ticks = np.arange(EXPECT[uuid]) / 30
    want = np.array([np.flatnonzero(t <= tk + 1e-6)[-1] for tk in ticks])
    np.testing.assert_array_equal(seen, want)


def test_timestamp_resampling():
    # 25 fps -> 30: tick i shows frame floor(i * 25 / 30); 60 fps -> every other frame
    np.testing.assert_array_equal(tick_sources(np.arange(25) / 25), np.arange(30) * 25 // 30)
    np.testing.assert_array_equal(tick_sources(np.arange(60) / 60 + 3.0), np.arange(30) * 2)


@pytest.mark.slow
def test_resume_skips_complete(prepared):
    from preprocess.prepare_videos import main  # in-process: the CLI itself ran in the fixture

    out, src = prepared["out"], prepared["src"]
    mtime = (out / "videos" / "p25.speaker.mp4").stat().st_mtime_ns
    assert main(["--pairs", str(src / "pairs.csv"), "--output_folder", str(out)]) == 1  # the 2 bad ones
    run = json.loads((out / "run.json").read_text())
    assert run["counts"] == {"done": 0, "skipped": 3, "failed": 2}
    assert (out / "videos" / "p25.speaker.mp4").stat().st_mtime_ns == mtime
    assert run["clips"]["p25"]["frames"] == 36  # records kept for skipped clips


def test_follow_smooths_and_fixed_box_is_the_median():
    # a face moving right at 3 px per sampled frame (every 0.1 s), with one frame missed
    times = np.arange(10) / 10
    track = [(100.0 + 3 * i, 50.0, 200.0 + 3 * i, 150.0) for i in range(10)]
    track[4] = None
    out_t = np.arange(27) / 30
    fixed = plan_framing(times, track, out_t, k=2.0, shift_up=0.1)
    assert fixed.side == 200.0 and np.ptp(fixed.centres, axis=0).max() == 0
    np.testing.assert_allclose(fixed.centres[0], [150 + 3 * 5, 100 - 10])  # median of the 9 found, 0.1 side up
    moving = plan_framing(times, track, out_t, k=2.0, follow=True, window=15)
    cx = moving.centres[:, 0]
    # linear motion: the centred moving average leaves the middle on the line, 1 px per frame
    np.testing.assert_allclose(cx[7:20], 150 + np.arange(7, 20), atol=1e-6)
    assert np.all(np.diff(cx) >= 0) and moving.side == 200.0


def test_face_choice_follows_by_overlap_and_sides():
    big, small = (300.0, 100.0, 460.0, 260.0), (40.0, 100.0, 140.0, 200.0)
    grown = (20.0, 80.0, 200.0, 260.0)  # the other face comes closer and becomes the largest
    dets = [(0.0, [big, small]), (0.1, [big, small]), (0.2, [grown, big])]
    assert select_track(dets, "largest", 640) == [big, big, big]
    assert select_track(dets, "left", 640) == [small, small, grown]
    assert select_track(dets, "right", 640) == [big, big, big]
    assert select_track([(0.0, [small])], "right", 640) == [None]  # a left face is never the right one


def test_crop_outside_the_frame_is_black():
    frame = np.full((100, 200, 3), 200, np.uint8)
    out = crop_square(frame, -50, -50, 100, size=64)  # the top-left quarter is inside
    assert out.shape == (64, 64, 3)
    assert out[:28, :28].max() == 0 and out[36:, 36:].min() == 200
