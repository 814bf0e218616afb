import numpy as np
import pytest

from common import media
from common.media import MediaError


def _frames(n=12, h=64, w=96, seed=0):
    """Smooth moving gradients: codec-friendly, so decoded frames stay close to the input."""
    yy, xx = np.mgrid[0:h, 0:w]
    out = []
    for i in range(n):
        r = (xx * 2 + i * 5) % 256
        g = (yy * 3 + i * 3) % 256
        b = np.full_like(xx, (i * 20) % 256)
        out.append(np.stack([r, g, b], -1).astype(np.uint8))
    return np.stack(out)


def _tone(seconds=1.0, sr=44100, f=440.0):
    t = np.arange(int(seconds * sr)) / sr
    return 0.5 * np.sin(2 * np.pi * f * t)


def test_video_round_trip_exact_count_size_fps(tmp_path):
    fr = _frames()
    p = tmp_path / "v.mp4"
    assert media.write_video(p, fr, fps=30) == len(fr)
    info = media.probe_video(p)
    assert (info.n_frames, info.width, info.height, info.fps) == (12, 96, 64, 30.0)
    back = media.read_video(p)
    assert back.shape == fr.shape and back.dtype == np.uint8
    assert np.abs(back.astype(int) - fr).mean() < 6  # lossy H.264 at crf 18
    batches = list(media.iter_frames(p, batch_size=5))
    assert [len(b) for b in batches] == [5, 5, 2]
    np.testing.assert_array_equal(np.concatenate(batches), back)


def test_writer_is_deterministic_and_atomic(tmp_path):
    fr = _frames(6, h=64, w=128)
    media.write_video(tmp_path / "a.mp4", fr)
    media.write_video(tmp_path / "b.mp4", fr)
    assert (tmp_path / "a.mp4").read_bytes() == (tmp_path / "b.mp4").read_bytes()
    with pytest.raises(RuntimeError):
        with media.VideoWriter(tmp_path / "c.mp4") as w:
            w.write(fr[:3])
            raise RuntimeError("killed midway")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.mp4", "b.mp4"]  # no partial output


def test_audio_round_trip_and_resample(tmp_path):
    x = _tone(0.5)
    media.write_wav(tmp_path / "a.wav", x, 44100)
    y, sr = media.load_audio(tmp_path / "a.wav")
    assert sr == 44100 and len(y) == len(x)
    assert np.abs(y - x).max() < 1.0 / 32768 + 1e-9  # PCM16 quantisation
    z, sr2 = media.load_audio(tmp_path / "a.wav", sr=16000)
    assert sr2 == 16000 and len(z) == 8000
    # a 440 Hz tone stays a 440 Hz tone after resampling
    spec = np.abs(np.fft.rfft(z))
    assert abs(np.argmax(spec) * 16000 / len(z) - 440) < 3


def test_stereo_is_averaged(tmp_path):
    import soundfile as sf

    st = np.stack([_tone(0.1), np.zeros(4410)], 1)
    sf.write(tmp_path / "s.wav", st, 44100, subtype="FLOAT")
    y, _ = media.load_audio(tmp_path / "s.wav")
    np.testing.assert_allclose(y, st.mean(1), atol=1e-7)


def test_mux_audio_adds_a_track_of_the_video_length(tmp_path):
    fr = _frames(30)
    media.write_video(tmp_path / "v.mp4", fr)
    media.write_wav(tmp_path / "a.wav", _tone(2.0), 44100)  # longer than the 1 s video
    media.mux_audio(tmp_path / "v.mp4", tmp_path / "a.wav", tmp_path / "m.mp4")
    assert media.probe_video(tmp_path / "m.mp4").n_frames == 30
    assert abs(media.audio_duration(tmp_path / "m.mp4") - 1.0) < 0.05
    assert media.audio_duration(tmp_path / "v.mp4") == 0.0
    # video stream copied bit for bit: same decoded frames
    np.testing.assert_array_equal(media.read_video(tmp_path / "m.mp4"), media.read_video(tmp_path / "v.mp4"))
    # in place
    media.mux_audio(tmp_path / "v.mp4", tmp_path / "a.wav", tmp_path / "v.mp4")
    assert media.audio_duration(tmp_path / "v.mp4") > 0.9


@pytest.mark.parametrize("kind", ["garbage", "truncated", "empty", "missing"])
def test_bad_videos_give_one_line_errors(tmp_path, kind):
    p = tmp_path / f"{kind}.mp4"
    if kind == "garbage":
        p.write_bytes(np.random.default_rng(0).bytes(5000))
    elif kind == "truncated":
        media.write_video(tmp_path / "ok.mp4", _frames(20))
        data = (tmp_path / "ok.mp4").read_bytes()
        p.write_bytes(data[: len(data) // 2])
    elif kind == "empty":
        p.write_bytes(b"")
    with pytest.raises(MediaError) as e:
        media.probe_video(p)
        list(media.iter_frames(p))
    msg = str(e.value)
    assert str(p) in msg and "\n" not in msg


def test_bad_audio_gives_one_line_errors(tmp_path):
    import soundfile as sf

    sf.write(tmp_path / "empty.wav", np.zeros(0), 44100)
    with pytest.raises(MediaError, match=r"empty\.wav: audio has no samples"):
        media.load_audio(tmp_path / "empty.wav")
    (tmp_path / "junk.wav").write_bytes(b"RIFF0000WAVEjunk")
    with pytest.raises(MediaError, match=r"junk\.wav: cannot read as audio"):
        media.load_audio(tmp_path / "junk.wav")
    with pytest.raises(MediaError, match="file not found"):
        media.load_audio(tmp_path / "none.wav")


def test_pin_mmap_threshold_applies_on_glibc():
    import platform

    if platform.libc_ver()[0] != "glibc":
        pytest.skip("mallopt is glibc's")
    assert media.pin_mmap_threshold() is True


def test_clip_problem_rates_sizes_and_the_fix():
    from common.media import PREPARE_CMD, VideoInfo, clip_problem

    ok = VideoInfo("a.mp4", 256, 256, 30.0, 30)
    assert clip_problem(ok) is None and clip_problem(VideoInfo("a.mp4", 256, 256, 30.005, 30)) is None
    ntsc = clip_problem(VideoInfo("b.mp4", 256, 256, 30000 / 1001, 30))
    assert ntsc.startswith("b.mp4: 29.970 fps") and PREPARE_CMD in ntsc
    vfr = clip_problem(VideoInfo("c.mp4", 640, 480, 30.0, 30, vfr=True))
    assert "variable frame rate" in vfr and "640x480 frames" in vfr
    assert clip_problem(VideoInfo("d.mp4", 640, 480, 30.0, 30), size=None) is None  # size not needed
