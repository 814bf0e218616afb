"""pipeline.generate end to end: a talking head and a listening head from one still image, with
models trained for one epoch through the real stage CLIs on a tiny synthetic dataset."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from PIL import Image

from common import media
from common.io import UserError


def _ok(p):
    assert p.returncode == 0, p.stderr[-3000:]
    return p


def _last_error(p) -> str:
    assert p.returncode != 0
    last = p.stderr.strip().splitlines()[-1]
    assert last.startswith("error: "), p.stderr[-2000:]
    return last


@pytest.fixture(scope="module")
def env(tmp_path_factory, run_cli):
    """Smoke weights, speaker and listener checkpoints (1 epoch), a face photo, speech, and a
    speaker video with sound."""
    base = tmp_path_factory.mktemp("generate")
    d, o, w = base / "data", base / "prep", base / "weights"
    _ok(run_cli("common.synthetic", "--out", d, "--pairs", 1, "--frames", 6, "--seed", 1))
    _ok(run_cli("common.weights", "make-smoke", "deep3dfacerecon_reconnet_resnet50", "pirender_face_generator",
                "--dir", w))
    _ok(run_cli("Deep3DFaceRecon_pytorch.extract_kp_videos", "--input_dir", d / "videos", "--output_dir", o / "kp"))
    _ok(run_cli("Deep3DFaceRecon_pytorch.face_recon_videos", "--input_dir", d / "videos", "--keypoint_dir", o / "kp",
                "--output_dir", o / "recons", "--checkpoint", w / "face_recon_feat0.2_augment" / "epoch_20.pth"))
    f = o / "features"
    _ok(run_cli("preprocess.extract_audio_features", "--input_audio_folder", d / "audios",
                "--input_recons_folder", o / "recons", "--output_folder", f / "audio_feats"))
    _ok(run_cli("preprocess.rearrange_recon_coeffs", "--input_folder", o / "recons", "--output_folder",
                f / "video_feats"))
    _ok(run_cli("preprocess.statistics_mean_std", f, "--split_csv", d / "train.csv"))
    ckpt = {}
    for task in ("speaker", "listener"):
        _ok(run_cli("vico.train", "--task", task, "--data", d, "--features", f, "--output_path", o / task,
                    "--max_epochs", 1, "--batch_size", 1))
        ckpt[task] = o / task / "checkpoints" / "latest"

    uuid = (d / "train.csv").read_text().splitlines()[1].split(",")[1]
    face = base / "face.png"  # the listener identity's first frame: a 256x256 face photo
    Image.fromarray(media.read_video(d / "videos" / f"{uuid}.listener.mp4")[0]).save(face)
    samples, sr = media.load_audio(d / "audios" / f"{uuid}.wav")
    speech = base / "speech.wav"
    media.write_wav(speech, samples[: int(0.12 * sr)], sr)  # 0.12 s -> round(3.6) = 4 frames
    speaker_video = base / "speaker.mp4"
    # 4 frames (few frames keep the rendering short) with the speech as audio track
    media.write_video(speaker_video, media.read_video(d / "videos" / f"{uuid}.speaker.mp4")[:4],
                      audio_path=d / "audios" / f"{uuid}.wav")
    return {"base": base, "weights": w, "ckpt": ckpt, "face": face, "speech": speech,
            "speaker_video": speaker_video, "features": f}


def _check_output(out: Path, frames: int, task: str) -> dict:
    info = media.probe_video(out)
    assert (info.n_frames, info.width, info.height) == (frames, 256, 256)
    assert abs(info.fps - 30) < 1e-6
    assert abs(media.audio_duration(out) - frames / 30) < 0.05  # the speech is muxed in
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["config"]["task"] == task and meta["video"]["frames"] == frames
    assert meta["config"]["fps"] == 30 and Path(meta["config"]["stats"]).is_dir()
    assert [s["step"] for s in meta["steps"]] == ["validate", "landmarks", "recon", "audio_features",
                                                  "rearrange", "motion", "lmdb", "render"]
    return meta


@pytest.mark.slow
def test_talking_head_from_one_image(env, run_cli, tmp_path):
    out = tmp_path / "talk" / "talking.mp4"
    p = _ok(run_cli("pipeline.generate", "--audio", env["speech"], "--image", env["face"], "--out", out,
                    "--checkpoint", env["ckpt"]["speaker"], "--weights_dir", env["weights"], "--device", "cpu"))
    samples, sr = media.load_audio(env["speech"])
    frames = round(len(samples) / sr * 30)
    assert frames == 4
    meta = _check_output(out, frames, "speaker")
    # statistics found through the training run's run.json; the work folder sits next to OUT
    assert Path(meta["config"]["stats"]) == env["features"].resolve()
    work = tmp_path / "talk" / "talking_work"
    assert Path(meta["config"]["work_dir"]) == work and (work / "logs" / "render.log").is_file()
    assert not list(out.parent.glob(".talking.*"))  # no temporary files left
    assert "wrote" in p.stderr


TONE_HZ = 1000.0


def _tone(path: Path, seconds: float = 0.5, sr: int = 22050) -> Path:
    """A 1 kHz tone: speech that cannot be mistaken for the speaker video's own track."""
    t = np.arange(int(seconds * sr)) / sr
    media.write_wav(path, 0.3 * np.sin(2 * np.pi * TONE_HZ * t), sr)
    return path


def _peak_hz(samples: np.ndarray, sr: int) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.fft.rfftfreq(len(samples), 1 / sr)[np.argmax(spectrum)])


@pytest.mark.slow
def test_listening_head_from_one_image(env, run_cli, tmp_path):
    """--audio: the speech comes from its own file (the challenge's audios/<uuid>.wav), not from the
    speaker video's sound track, and is muxed into the output."""
    out = tmp_path / "listening.mp4"
    work = tmp_path / "w"
    tone = _tone(tmp_path / "speech.wav")
    own = media.load_audio_track(env["speaker_video"])
    assert abs(_peak_hz(*own) - TONE_HZ) > 100  # the video's own track is something else
    _ok(run_cli("pipeline.generate", "--speaker_video", env["speaker_video"], "--audio", tone,
                "--listener_image", env["face"], "--out", out, "--checkpoint", env["ckpt"]["listener"],
                "--weights_dir", env["weights"], "--stats", env["features"], "--work_dir", work, "--clean"))
    frames = media.probe_video(env["speaker_video"]).n_frames
    assert frames == 4
    meta = _check_output(out, frames, "listener")  # 4 frames of video and of sound: the tone was cut
    assert meta["config"]["audio"] == str(tone.resolve())
    assert abs(_peak_hz(*media.load_audio_track(out)) - TONE_HZ) < 50  # the tone is what was muxed in
    assert not work.exists()  # --clean


def test_listening_head_speech_source(env, tmp_path):
    """Without --audio the speech is the speaker video's sound track; with it, the file (a speaker
    video without sound is then fine)."""
    from pipeline.generate import GenerateConfig, read_inputs

    mute = tmp_path / "mute.mp4"
    media.write_video(mute, media.read_video(env["speaker_video"]))
    tone = _tone(tmp_path / "speech.wav")

    def cfg(video, audio=None):
        return GenerateConfig(task="listener", out=tmp_path / "o.mp4", checkpoint=env["ckpt"]["listener"],
                              speaker_video=video, listener_image=env["face"], audio=audio)

    inp = read_inputs(cfg(env["speaker_video"]))
    assert inp.source == env["speaker_video"]
    assert np.allclose(inp.samples, media.load_audio_track(env["speaker_video"])[0])
    inp = read_inputs(cfg(mute, tone))
    assert inp.source == tone and inp.sr == 22050
    assert np.allclose(inp.samples, media.load_audio(tone)[0])


def _in_process(capsys, *args) -> tuple[int, str]:
    """``python -m pipeline.generate ARGS`` in this process (these fail before any stage runs):
    (exit code, last stderr line)."""
    import logging

    from common.io import run_cli
    from pipeline.generate import main

    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        with pytest.raises(SystemExit) as e:
            run_cli(main, [str(a) for a in args])
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("error: "), last
    return e.value.code, last


def test_bad_inputs_give_one_line_errors(env, run_cli, tmp_path, capsys):
    out = tmp_path / "bad.mp4"
    ckpt = ["--checkpoint", env["ckpt"]["speaker"]]
    common = ["--out", out, *ckpt, "--weights_dir", env["weights"]]
    missing = tmp_path / "missing.png"
    p = run_cli("pipeline.generate", "--audio", env["speech"], "--image", missing, *common)
    assert p.returncode == 2 and str(missing) in _last_error(p)

    empty = tmp_path / "empty.wav"
    sf.write(str(empty), np.zeros(0), 16000)
    p = run_cli("pipeline.generate", "--audio", empty, "--image", env["face"], *common)
    assert p.returncode == 2 and str(empty) in _last_error(p) and "no samples" in _last_error(p)

    silent_video = tmp_path / "mute.mp4"
    media.write_video(silent_video, media.read_video(env["speaker_video"]))
    code, last = _in_process(capsys, "--speaker_video", silent_video, "--listener_image", env["face"], "--out", out,
                             "--checkpoint", env["ckpt"]["listener"], "--weights_dir", env["weights"])
    assert code == 2 and f"{silent_video}: no audio track" in last
    listen = ["--speaker_video", silent_video, "--listener_image", env["face"], "--out", out,
              "--checkpoint", env["ckpt"]["listener"], "--weights_dir", env["weights"]]
    missing_wav = tmp_path / "missing.wav"
    code, last = _in_process(capsys, *listen, "--audio", missing_wav)
    assert code == 2 and last == f"error: {missing_wav}: file not found (--audio)"
    garbage = tmp_path / "garbage.wav"
    garbage.write_bytes(b"not a sound file" * 64)
    code, last = _in_process(capsys, *listen, "--audio", garbage)
    assert code == 2 and f"{garbage}: cannot read as audio" in last

    code, last = _in_process(capsys, "--audio", env["speech"], "--image", env["face"], "--out", out, *ckpt,
                             "--weights_dir", tmp_path / "no_weights")
    assert "missing weights file" in last and "epoch_20.pth" in last and "--recon_checkpoint" in last

    code, last = _in_process(capsys, "--audio", env["speech"], "--image", env["face"], *common, "--stats", tmp_path)
    assert "audio_feats_mean_std.bin" in last

    code, last = _in_process(capsys, "--audio", env["speech"], "--image", env["face"], *common, "--work_dir", tmp_path)
    assert "must not be inside the work folder" in last

    code, last = _in_process(capsys, "--audio", env["speech"], "--speaker_video", env["speaker_video"], *common)
    assert "either --audio and --image" in last and "optionally with --audio (listening head)" in last
    code, last = _in_process(capsys, "--audio", env["speech"], *common)
    assert "either --audio and --image" in last
    assert not out.exists() and not list(tmp_path.glob(".bad.*"))


@pytest.mark.slow
def test_failing_stage_is_named_with_its_log(env, run_cli, tmp_path):
    gray = tmp_path / "gray.png"  # no face to find
    Image.fromarray(np.full((300, 400, 3), 128, np.uint8)).save(gray)
    out = tmp_path / "noface.mp4"
    p = run_cli("pipeline.generate", "--audio", env["speech"], "--image", gray, "--out", out,
                "--checkpoint", env["ckpt"]["speaker"], "--weights_dir", env["weights"])
    last = _last_error(p)
    # the landmark step stops a clip without a face (--max_no_face_fraction), before reconstruction
    assert p.returncode == 2 and "step 'landmarks' failed" in last and "no face in" in last
    assert str(gray) in last and "landmarks.log" in last
    assert not out.exists()
    # a folder that is not a work folder of ours is never cleared
    mine = tmp_path / "mine"
    (mine / "keep.txt").parent.mkdir()
    (mine / "keep.txt").write_text("x")
    p = run_cli("pipeline.generate", "--audio", env["speech"], "--image", env["face"], "--out", out,
                "--checkpoint", env["ckpt"]["speaker"], "--weights_dir", env["weights"], "--work_dir", mine)
    assert "not a pipeline.generate work folder" in _last_error(p) and (mine / "keep.txt").is_file()


def test_help_has_examples(run_cli):
    p = _ok(run_cli("pipeline.generate", "--help"))
    assert "--listener_image" in p.stdout and "examples:" in p.stdout
    assert "--speaker_video data/videos/UUID.speaker.mp4 --audio data/audios/UUID.wav" in p.stdout


def test_vico_eval_holds_still_roles(tmp_path):
    """vico.eval --still_roles: single-frame video features (a photo) are held for the clip."""
    from vico.data import load_clip
    from vico.data.features import FeatureStats

    f = tmp_path / "features"
    (f / "audio_feats").mkdir(parents=True)
    (f / "video_feats").mkdir()
    n = 6
    np.save(f / "audio_feats" / "c.npy", np.ones((n, 45), np.float32))
    for role, rows in (("speaker", n), ("listener", 1)):
        torch.save({"angle.exp.trans": np.arange(rows * 73, dtype=np.float32).reshape(rows, 73),
                    "id.gamma.tex": np.ones((rows, 187), np.float32)}, f / "video_feats" / f"c.{role}.bin")
    stats = FeatureStats(np.zeros(45), np.ones(45), np.zeros(73), np.ones(73))
    clip = load_clip(f, "c", stats, 45, still_roles=("listener",))
    assert clip.dyn_raw["listener"].shape == (n, 73) and clip.fixed["listener"].shape == (n, 187)
    assert (clip.dyn_raw["listener"] == np.arange(73)).all()
    with pytest.raises(UserError, match="c.listener.bin: 1 frames"):
        load_clip(f, "c", stats, 45)


def test_statistics_found_through_the_checkpoint_record(env, tmp_path):
    """vico.train records the absolute features folder in its checkpoint (and run.json);
    pipeline.generate reads it there, and falls back to run.json for older checkpoints."""
    import shutil

    from common import artifacts
    from pipeline.generate import resolve_stats

    feats = env["features"].resolve()
    ck = artifacts.checkpoint_file(env["ckpt"]["speaker"])
    assert artifacts.checkpoint_features(env["ckpt"]["speaker"]) == feats
    run_json = ck.parent.parent / "run.json"
    assert json.loads(run_json.read_text())["config"]["features"] == str(feats)
    moved = tmp_path / "moved.pt"  # away from its run folder: no run.json to fall back on
    shutil.copyfile(ck, moved)
    assert resolve_stats(moved, None) == feats
    old_run = tmp_path / "old_run"
    (old_run / "checkpoints").mkdir(parents=True)
    state = torch.load(ck, weights_only=False)
    del state[artifacts.CHECKPOINT_FEATURES_KEY]  # as written before the record existed
    torch.save(state, old_run / "checkpoints" / "epoch_001.pt")
    with pytest.raises(UserError, match="cannot tell which statistics it was trained with"):
        resolve_stats(old_run / "checkpoints" / "epoch_001.pt", None)
    shutil.copyfile(run_json, old_run / "run.json")
    assert resolve_stats(old_run / "checkpoints" / "epoch_001.pt", None) == feats
    state[artifacts.CHECKPOINT_FEATURES_KEY] = str(tmp_path / "gone")
    torch.save(state, moved)
    with pytest.raises(UserError, match=r"the features folder it was trained on, .*gone, no longer holds"):
        resolve_stats(moved, None)
