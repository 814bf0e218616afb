"""extract_audio_features CLI: real subprocess runs on tiny wav/.mat/mp4 files."""
from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf

from common.media import load_audio, write_video, write_wav
from common.io import UserError
from preprocess.audio.features import vico45
from preprocess.extract_audio_features import main

MOD = "preprocess.extract_audio_features"


@pytest.mark.slow
def test_width_45_for_any_rate_and_recursive_mats(tmp_path, run_cli, helpers):
    audios, recons, out = tmp_path / "audios", tmp_path / "recons", tmp_path / "feats"
    rates = {"r16k": 16000, "r22k": 22050, "r44k": 44100, "r48k": 48000}
    for i, (uuid, sr) in enumerate(rates.items()):
        write_wav(audios / f"{uuid}.wav", helpers.speech(0.5, sr, seed=i), sr)
        # mats in different sub-folders (train/, test/, deeper), no hard-coded test/
        sub = ["train", "test", "a/b", "."][i]
        helpers.write_mat(recons / sub / f"{uuid}.speaker.mat", 15, seed=i)
    r = run_cli(MOD, "--input_audio_folder", audios, "--input_recons_folder", recons, "--output_folder", out)
    assert r.returncode == 0, r.stderr
    for uuid, sr in rates.items():
        f = np.load(out / f"{uuid}.npy")
        assert f.shape == (15, 45) and f.dtype == np.float32
    # the file is resampled to 44.1 kHz first, then featurised exactly as the library does
    x, sr = load_audio(audios / "r48k.wav", sr=44100)
    np.testing.assert_array_equal(np.load(out / "r48k.npy"), vico45(x, 44100, 15))
    assert json.loads((out / "feature_set.json").read_text()) == {
        "feature_set": "vico45", "dim": 45, "sample_rate": 44100, "fps": 30}
    rep = helpers.run_json(out)
    assert rep["counts"] == {"done": 4, "skipped": 0, "failed": 0}
    # re-run (in-process, same entry point) skips complete outputs
    mtime = (out / "r16k.npy").stat().st_mtime_ns
    args = ["--input_audio_folder", str(audios), "--input_recons_folder", str(recons), "--output_folder", str(out)]
    assert main(args) == 0 and helpers.run_json(out)["counts"]["skipped"] == 4
    assert (out / "r16k.npy").stat().st_mtime_ns == mtime
    # another feature set into the same folder is refused, --overwrite replaces
    with pytest.raises(UserError, match="holds vico45 features"):
        main(args + ["--feature_set", "vico45_context"])
    assert main(args + ["--feature_set", "vico45_context", "--overwrite"]) == 0
    assert json.loads((out / "feature_set.json").read_text())["feature_set"] == "vico45_context"
    assert not np.array_equal(np.load(out / "r16k.npy")[:, 13:26], 0)


@pytest.mark.slow
def test_bad_inputs_recorded_and_others_done(tmp_path, run_cli, helpers):
    audios, recons, videos, out = (tmp_path / d for d in ("audios", "recons", "videos", "feats"))
    sr = 44100
    write_wav(audios / "good.wav", helpers.speech(0.4, sr), sr)
    helpers.write_mat(recons / "test" / "good.speaker.mat", 12)
    # frame count from the speaker video when no .mat exists
    write_wav(audios / "fromvideo.wav", helpers.speech(0.4, sr, 1), sr)
    write_video(videos / "fromvideo.speaker.mp4", np.zeros((9, 32, 32, 3), np.uint8))
    write_wav(audios / "silent.wav", np.zeros(sr // 2), sr)
    helpers.write_mat(recons / "silent.speaker.mat", 10)
    sf.write(str(audios / "empty.wav"), np.zeros(0), sr, subtype="PCM_16")  # header, no samples
    (audios / "zerobytes.wav").write_bytes(b"")
    helpers.write_mat(recons / "zerobytes.speaker.mat", 10)
    helpers.write_mat(recons / "empty.speaker.mat", 10)
    write_wav(audios / "short.wav", helpers.speech(0.2, sr), sr)  # 6 frames of audio
    helpers.write_mat(recons / "short.speaker.mat", 12)
    write_wav(audios / "badmat.wav", helpers.speech(0.4, sr), sr)
    (recons / "badmat.speaker.mat").write_bytes(b"not a mat file")
    write_wav(audios / "wrongshape.wav", helpers.speech(0.4, sr), sr)
    helpers.write_mat(recons / "wrongshape.speaker.mat", 12, coeff_dim=250)
    write_wav(audios / "nomat.wav", helpers.speech(0.4, sr), sr)
    r = run_cli(MOD, "--input_audio_folder", audios, "--input_recons_folder", recons,
                "--video_folder", videos, "--output_folder", out)
    assert r.returncode == 1
    assert "Traceback" not in r.stderr
    rep = helpers.run_json(out)
    fails = {f["item"]: f["reason"] for f in rep["failures"]}
    assert set(fails) == {"silent", "empty", "zerobytes", "short", "badmat", "wrongshape", "nomat"}
    assert "silent" in fails["silent"] and "silent.wav" in fails["silent"]
    assert "empty.wav" in fails["empty"] and "no samples" in fails["empty"]
    assert "zerobytes.wav" in fails["zerobytes"] and "cannot read" in fails["zerobytes"]
    assert "short.wav" in fails["short"] and "shorter" in fails["short"]
    assert "badmat.speaker.mat" in fails["badmat"]
    assert "wrongshape.speaker.mat" in fails["wrongshape"] and "257" in fails["wrongshape"]
    assert "nomat.speaker.mat" in fails["nomat"]
    assert np.load(out / "good.npy").shape == (12, 45)
    assert np.load(out / "fromvideo.npy").shape == (9, 45)
    assert sorted(p.name for p in out.iterdir()) == ["feature_set.json", "fromvideo.npy", "good.npy", "run.json"]


def test_missing_source_option_is_one_line_error(tmp_path, run_cli, helpers):
    write_wav(tmp_path / "a" / "x.wav", helpers.speech(0.1, 16000), 16000)
    r = run_cli(MOD, "--input_audio_folder", tmp_path / "a", "--output_folder", tmp_path / "o")
    assert r.returncode == 2 and r.stderr.startswith("error:") and r.stderr.count("\n") == 1
    with pytest.raises(UserError, match="nope: input folder not found"):
        main(["--input_audio_folder", str(tmp_path / "nope"), "--video_folder", str(tmp_path),
              "--output_folder", str(tmp_path / "o")])
