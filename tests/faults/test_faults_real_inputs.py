"""Real-world inputs through the real command lines: other frame rates, sizes and aspect ratios,
variable frame rate, faces that leave or share the frame, compressed and stereo audio, and the
file system refusing to write (read-only folder, full disk, a file in the way), unicode names.

Each case ends in a correct output or one clear line naming the file, what was found and the fix;
nothing silent, nothing partial. Few subprocesses: one run per stage covers several kinds of
input (one item each), parametrized tests then read that run's outputs and run.json.

CI runs as root, where chmod does not stop writes: the read-only case drops CAP_DAC_OVERRIDE
from the child (PR_CAPBSET_DROP before exec), the full-disk case sets RLIMIT_FSIZE with SIGXFSZ
ignored (writes past the limit fail with EFBIG).
"""
from __future__ import annotations

import ctypes
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from .conftest import N_FRAMES, Workspace, copy_into, plausible_coeffs, run_json, temp_leftovers, write_mat

pytestmark = pytest.mark.slow  # about 30 s of CPU in all (14 command runs), on top of the shared workspace

FIX = "python -m preprocess.prepare_videos"
REPO = Path(__file__).resolve().parents[2]
SR = 44100


# --- making inputs ------------------------------------------------------------------------------

def encode(path: Path, frames: np.ndarray, fps: float | Fraction = 30, vfr: bool = False) -> Path:
    """H.264 mp4 of RGB frames; ``vfr`` alternates 20 ms and 50 ms frame intervals."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rate = Fraction(fps).limit_denominator(1001)
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=rate)
        s.height, s.width = frames.shape[1:3]
        s.pix_fmt = "yuv420p"
        tb = Fraction(1, 1000) if vfr else 1 / rate
        if vfr:
            s.codec_context.time_base = s.time_base = tb
        t = 0
        for i, f in enumerate(frames):
            vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="rgb24")
            vf.pts, vf.time_base = (t, tb) if vfr else (i, tb)
            t += 20 if i % 2 else 50
            for pkt in s.encode(vf):
                c.mux(pkt)
        for pkt in s.encode(None):
            c.mux(pkt)
    return path


def on_canvas(frames: np.ndarray, h: int, w: int, y: int, x: int) -> np.ndarray:
    out = np.full((len(frames), h, w, 3), 90, np.uint8)
    out[:, y:y + frames.shape[1], x:x + frames.shape[2]] = frames
    return out


def encode_audio(src: Path, dst: Path, codec: str, rate: int = SR, channels: int = 1) -> Path:
    """Re-encode a wav with PyAV (mp3, m4a) or soundfile (flac, ogg, stereo wav)."""
    from common.media import load_audio, resample

    x, sr = load_audio(src)
    if rate != sr:
        x = resample(x, sr, rate)
    if codec in ("flac", "ogg", "wav"):
        data = np.stack([x] * channels, 1) if channels > 1 else x
        sf.write(str(dst), data, rate, format=codec.upper(), subtype="VORBIS" if codec == "ogg" else "PCM_16")
        return dst
    with av.open(str(dst), "w") as c:
        a = c.add_stream({"mp3": "libmp3lame", "m4a": "aac"}[codec], rate=rate, layout="mono")
        frame = av.AudioFrame.from_ndarray(x.astype(np.float32)[None], format="flt", layout="mono")
        frame.sample_rate, frame.pts, frame.time_base = rate, 0, Fraction(1, rate)
        for pkt in list(a.encode(frame)) + list(a.encode(None)):
            c.mux(pkt)
    return dst


def run(module: str, *args, preexec=None, timeout: int = 300) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", module, *map(str, args)], cwd=REPO, env=env, preexec_fn=preexec,
                          capture_output=True, text=True, timeout=timeout)


def one_error_line(r: subprocess.CompletedProcess) -> str:
    """The run failed with exactly one ``error:`` line (last on stderr) and no traceback."""
    assert "Traceback" not in r.stderr, r.stderr[-3000:]
    assert r.returncode == 2, (r.returncode, r.stderr[-3000:])
    lines = r.stderr.strip().splitlines()
    assert lines[-1].startswith("error: ") and sum(ln.startswith("error: ") for ln in lines) == 1, r.stderr
    return lines[-1]


# --- the shared inputs (built once) -------------------------------------------------------------

@pytest.fixture(scope="module")
def real(ws: Workspace, tmp_path_factory) -> dict:
    """Clips made from the workspace's first speaker video, and their stage runs."""
    from common.media import read_video

    root = tmp_path_factory.mktemp("real inputs ü")  # a space and a non-ASCII letter in every path
    good = read_video(ws.speakers[0])  # (30, 256, 256, 3), a face in every frame
    u0 = ws.uuids[0]
    wav0 = ws.data / "audios" / f"{u0}.wav"
    clips = {
        "fps25": (good, 25, False), "fps60": (good, 60, False), "ntsc": (good, Fraction(30000, 1001), False),
        "vfr": (good, 30, True), "vga": (on_canvas(good, 480, 640, 112, 192), 30, False),
        "portrait": (on_canvas(good, 448, 256, 96, 0), 30, False),
    }
    out: dict = {"root": root, "ws": ws}

    # common.dataset validate: one clip per kind (its listener and audio are the good pair's)
    data = root / "validate"
    for kind, (frames, fps, vfr) in clips.items():
        encode(data / "videos" / f"{kind}.speaker.mp4", frames, fps, vfr)
        shutil.copy2(ws.data / "videos" / f"{u0}.listener.mp4", data / "videos" / f"{kind}.listener.mp4")
        copy_into([wav0], data / "audios").joinpath(wav0.name).rename(data / "audios" / f"{kind}.wav")
    (data / "test.csv").write_text("uuid\n" + "".join(f"{k}\n" for k in clips))
    out["validate"] = run("common.dataset", "validate", data)

    # extract_audio_features: frame counts from the videos; audio in several formats
    audios, videos = root / "audio in", root / "videos"
    audios.mkdir()
    videos.mkdir()
    for kind in ("fps25", "fps60", "vfr"):
        shutil.copy2(data / "videos" / f"{kind}.speaker.mp4", videos / f"{kind}.speaker.mp4")
        shutil.copy2(wav0, audios / f"{kind}.wav")
    formats = {"wav": ("wav", SR, 1), "flac": ("flac", SR, 1), "ogg": ("ogg", SR, 1), "mp3": ("mp3", SR, 1),
               "m4a": ("m4a", SR, 1), "stereo48k": ("wav", 48000, 2), "ü b": ("wav", SR, 1)}
    for name, (codec, rate, ch) in formats.items():
        encode_audio(wav0, audios / f"{name}.{codec}", codec, rate, ch)
        shutil.copy2(ws.speakers[0], videos / f"{name}.speaker.mp4")
    sf.write(str(audios / "short.wav"), sf.read(str(wav0))[0][: int(0.8 * SR)], SR, subtype="PCM_16")
    shutil.copy2(ws.speakers[0], videos / "short.speaker.mp4")
    out["audio_out"] = root / "feats"
    out["audio"] = run("preprocess.extract_audio_features", "--input_audio_folder", audios, "--video_folder", videos,
                       "--output_folder", out["audio_out"])
    out["audio_in"], out["videos"] = audios, videos

    # extract_kp_videos: the face leaves the frame; two faces; a unicode name with spaces
    kp_in = root / "kp in"
    leaving = good.copy()
    for i in range(10, N_FRAMES):  # slides out to the right from frame 10 on, gone from frame 14
        shift = min(256, 64 * (i - 9))
        leaving[i] = 90
        leaving[i, :, shift:] = good[i, :, : 256 - shift]
    encode(kp_in / "leaving.speaker.mp4", leaving)
    small = np.stack([np.asarray(Image.fromarray(f).resize((160, 160), Image.BICUBIC)) for f in good])
    two = on_canvas(good, 256, 512, 0, 0)
    two[:, 48:208, 304:464] = small  # a second, smaller face on the right
    encode(kp_in / "two.speaker.mp4", two)
    shutil.copy2(ws.speakers[0], kp_in / "vidéo 1.speaker.mp4")
    out["kp_out"] = root / "keypoints"
    out["kp"] = run("Deep3DFaceRecon_pytorch.extract_kp_videos", "--input_dir", kp_in, "--output_dir", out["kp_out"])
    out["clips"] = data / "videos"
    return out


def _failures(folder: Path) -> dict[str, str]:
    return {f["item"]: f["reason"] for f in run_json(folder)["failures"]}


# --- frame rate, size, aspect -------------------------------------------------------------------

@pytest.mark.parametrize("kind, found", [("fps25", "25.000 fps"), ("fps60", "60.000 fps"), ("ntsc", "29.970 fps"),
                                         ("vfr", "variable frame rate"), ("vga", "640x480 frames"),
                                         ("portrait", "256x448 frames")])
def test_validate_reports_fps_and_size(real, kind, found):
    r = real["validate"]
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr[-2000:]
    lines = [ln for ln in r.stderr.splitlines() if f"{kind}.speaker.mp4:" in ln]
    assert len(lines) == 1 and found in lines[0] and FIX in lines[0], r.stderr[-2000:]
    assert f"{len(['fps25', 'fps60', 'ntsc', 'vfr', 'vga', 'portrait'])} problem(s)" in r.stderr


@pytest.mark.parametrize("kind, found", [("fps25", "25.000 fps"), ("fps60", "60.000 fps"),
                                         ("vfr", "variable frame rate")])
def test_audio_features_refuse_other_frame_rates(real, kind, found):
    """No features that cover part of the clip: the item fails, naming the video and the fix."""
    r, out = real["audio"], real["audio_out"]
    assert r.returncode == 1 and "Traceback" not in r.stderr
    reason = _failures(out)[kind]
    assert f"{kind}.speaker.mp4" in reason and found in reason and FIX in reason
    assert not (out / f"{kind}.npy").exists() and temp_leftovers(out) == []


@pytest.mark.parametrize("kind, found", [("vga", "640x480 frames"), ("portrait", "256x448 frames"),
                                         ("fps25", "25.000 fps"), ("vfr", "variable frame rate")])
def test_prepare_vox_lmdb_refuses_other_sizes_and_rates(real, kind, found, tmp_path):
    """The per-video step of PIRender.prepare_vox_lmdb (its command line runs it per item; the
    faults suite runs that command elsewhere): 256x256 at constant 30 fps only."""
    from PIRender.data.prepare import prepare_video

    mat = write_mat(tmp_path / f"{kind}.speaker.mat", *plausible_coeffs(N_FRAMES, 1))
    res = prepare_video(str(real["clips"] / f"{kind}.speaker.mp4"), str(mat), (64,))
    assert res.error and f"{kind}.speaker.mp4: " in res.error and found in res.error and FIX in res.error
    assert res.frames == {} and res.n_frames == 0


# --- audio formats ------------------------------------------------------------------------------

@pytest.mark.parametrize("name, ext", [("flac", "flac"), ("ogg", "ogg"), ("mp3", "mp3"), ("m4a", "m4a"),
                                       ("stereo48k", "wav"), ("ü b", "wav")])
def test_audio_features_read_every_format(real, name, ext):
    """Every format gives (30, 45) features of the whole clip; lossless mono ones equal the wav's;
    the others decode to the same sound (soundfile, or PyAV for m4a)."""
    from common.media import load_audio

    out = real["audio_out"]
    done = {d["item"] for d in run_json(out)["done"]}
    assert name in done and "wav" in done
    ref, got = np.load(out / "wav.npy"), np.load(out / f"{name}.npy")
    assert got.shape == ref.shape == (N_FRAMES, 45) and np.isfinite(got).all()
    if name in ("flac", "ü b"):
        np.testing.assert_array_equal(got, ref)
    else:  # lossy or resampled stereo: the same sound, sample by sample
        a, _ = load_audio(real["audio_in"] / "wav.wav", sr=SR)
        b, _ = load_audio(real["audio_in"] / f"{name}.{ext}", sr=SR)
        assert len(b) >= len(a) - 2 and np.corrcoef(a, b[: len(a)])[0, 1] > 0.9


def test_audio_shorter_than_the_video_is_refused(real):
    reason = _failures(real["audio_out"])["short"]
    assert "short.wav" in reason and "shorter than the 30-frame video" in reason
    assert set(_failures(real["audio_out"])) == {"fps25", "fps60", "vfr", "short"}  # nothing else failed


# --- faces ----------------------------------------------------------------------------------------

def test_face_leaving_the_frame_fails_the_item(real):
    r, out = real["kp"], real["kp_out"]
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr[-2000:]
    reason = _failures(out)["leaving.speaker"]
    assert "leaving.speaker.mp4: no face in" in reason and "--max_no_face_fraction 0.5" in reason
    n_missing = int(reason.split("no face in ")[1].split()[0])
    assert 15 <= n_missing <= 20  # gone from frame 14 (half out from 12 on)
    assert not (out / "leaving.speaker.txt").exists() and temp_leftovers(out) == []


def test_two_faces_the_larger_is_followed(real):
    from Deep3DFaceRecon_pytorch.data.keypoints import load_keypoints

    out = real["kp_out"]
    rec = {d["item"]: d for d in run_json(out)["done"]}["two.speaker"]
    assert rec["n_multi_face"] == N_FRAMES and rec["multi_face_frames"] == f"0-{N_FRAMES - 1}"
    assert rec["n_no_face"] == 0 and rec["face"]["first_box"][2] < 256  # the left, larger face
    lm = load_keypoints(out / "two.speaker.txt")
    assert (lm[..., 0].max(axis=1) < 256).all()  # every frame: landmarks of the left face only
    alone = load_keypoints(out / "vidéo 1.speaker.txt")  # the same face, alone
    assert np.abs(lm - alone).mean() < 2.0


def test_unicode_and_spaces_in_names(real):
    rec = {d["item"]: d for d in run_json(real["kp_out"])["done"]}["vidéo 1.speaker"]
    assert rec["n_no_face"] == 0 and rec["n_multi_face"] == 0 and rec["no_face_frames"] == ""
    assert (real["kp_out"] / "vidéo 1.speaker.txt").is_file()
    assert (real["audio_out"] / "ü b.npy").is_file()  # and in a folder with a space (see test above)


# --- the file system refuses ----------------------------------------------------------------------

_libc = ctypes.CDLL(None, use_errno=True)


def _drop_dac_override() -> None:
    """In the child before exec: root loses the right to write where the permissions say no."""
    for cap in (1, 2):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH
        if _libc.prctl(24, cap, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
            os._exit(97)


def _file_size_limit(nbytes: int):
    def pre() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (nbytes, nbytes))
    return pre


@pytest.fixture(scope="module")
def fs(real) -> dict:
    """A read-only folder, a folder for full-disk runs, a file where a folder should be, and the
    arguments of each command aimed at an output under a given folder."""
    ws: Workspace = real["ws"]
    root = real["root"] / "fs"
    ro = root / "read only"
    ro.mkdir(parents=True)
    ro.chmod(0o555)
    (root / "a file").write_text("not a folder\n")
    stats = copy_into([], root / "stats")
    for f in ("audio_feats_mean_std.bin", "video_feats_mean_std.bin"):
        (stats / f).write_bytes(b"x")
    face = root / "face.png"
    Image.fromarray(_first_frame(ws.speakers[0])).save(face)
    src = root / "convert_src"
    from common.synthetic import generate

    generate(src, pairs=1, frames=4, seed=1, layout="full")
    audios, mats = real["audio_in"], root / "mats"
    write_mat(mats / "wav.speaker.mat", *plausible_coeffs(N_FRAMES, 0))
    wav_only = copy_into([audios / "wav.wav"], root / "wav only")
    commands = {
        "synthetic": lambda o: ("common.synthetic", "--out", o / "data", "--pairs", 1, "--frames", 30),
        "convert": lambda o: ("preprocess.convert", "-f", src / "anno.csv", "-v", src / "videos", "-a",
                              src / "audios", "-t", o / "vico"),
        "audio": lambda o: ("preprocess.extract_audio_features", "--input_audio_folder", wav_only,
                            "--input_recons_folder", mats, "--output_folder", o / "feats"),
        "demo": lambda o: ("pipeline.demo", "--out", o / "demo", "--frames", 30, "--pairs", 2),
        "generate": lambda o: ("pipeline.generate", "--audio", audios / "wav.wav", "--image", face,
                               "--out", o / "talking.mp4", "--checkpoint", ws.recon_ckpt, "--stats", stats,
                               "--recon_checkpoint", ws.recon_ckpt, "--pirender_checkpoint", ws.pir_ckpt),
    }
    return {"root": root, "ro": ro, "file": root / "a file", "commands": commands}


def _first_frame(video: Path) -> np.ndarray:
    from common.media import iter_frames

    return next(iter_frames(video, 1))[0]


def _nothing_written(folder: Path) -> None:
    left = [p for p in folder.rglob("*") if p.is_file()] if folder.exists() else []
    assert left == [], left


@pytest.mark.parametrize("cmd", ["synthetic", "convert", "audio", "demo", "generate"])
def test_read_only_output_folder(fs, cmd):
    if os.geteuid() == 0 and _libc.prctl(23, 1, 0, 0, 0) != 1:  # PR_CAPBSET_READ: can we drop it?
        pytest.skip("root without CAP_DAC_OVERRIDE in its bounding set")
    r = run(*fs["commands"][cmd](fs["ro"]), preexec=_drop_dac_override if os.geteuid() == 0 else None)
    assert r.returncode != 97, "could not drop CAP_DAC_OVERRIDE"
    line = one_error_line(r)
    assert str(fs["ro"]) in line and "Permission denied" in line, line
    _nothing_written(fs["ro"])


@pytest.mark.parametrize("cmd", ["synthetic", "audio"])
def test_full_disk(fs, cmd, tmp_path):
    """Writes past RLIMIT_FSIZE fail (EFBIG) like a full disk: one line, no partial file."""
    out = tmp_path / "full"
    r = run(*fs["commands"][cmd](out), preexec=_file_size_limit(2000))
    line = one_error_line(r)
    assert ("File too large" in line or "disk full" in line) and str(out) in line and ".tmp" not in line, line
    assert temp_leftovers(out) == []
    big = [p for p in out.rglob("*") if p.is_file() and p.stat().st_size >= 2000]
    assert big == []  # nothing cut short at the limit


@pytest.mark.parametrize("cmd", ["synthetic", "convert"])
def test_output_path_is_a_file(fs, cmd):
    r = run(*fs["commands"][cmd](fs["file"]))
    line = one_error_line(r)
    assert str(fs["file"]) in line and "Not a directory" in line, line
    assert fs["file"].read_text() == "not a folder\n"
