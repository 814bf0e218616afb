import numpy as np
import pytest

from common import dataset as D
from common import media
from common.io import UserError


def test_names():
    assert D.clip_name("ab12", "speaker") == "ab12.speaker"
    assert D.parse_name("ab12.listener") == ("ab12", "listener")
    with pytest.raises(UserError, match="not named"):
        D.parse_name("ab12.viewer")
    with pytest.raises(ValueError):
        D.clip_name("x", "viewer")


def test_index_round_trip_and_errors(tmp_path):
    clips = [D.Clip("v1", "aaa", "s1", "l1"), D.Clip("v2", "bbb", "s2", "l2")]
    D.write_index(tmp_path / "train.csv", clips)
    assert (tmp_path / "train.csv").read_text().splitlines()[0] == "video_id,uuid,speaker_id,listener_id"
    assert D.read_index(tmp_path / "train.csv") == clips
    (tmp_path / "bad.csv").write_text("video_id,speaker_id\nv1,s1\n")
    with pytest.raises(UserError, match=r"bad\.csv: missing column\(s\) uuid"):
        D.read_index(tmp_path / "bad.csv")
    (tmp_path / "dup.csv").write_text("uuid\naaa\naaa\n")
    with pytest.raises(UserError, match="appears twice"):
        D.read_index(tmp_path / "dup.csv")
    with pytest.raises(UserError, match="file not found"):
        D.read_index(tmp_path / "none.csv")


def _clip(root, uuid, n_spk, n_lis, audio_s):
    fr = np.zeros((max(n_spk, n_lis), 256, 256, 3), np.uint8)
    media.write_video(D.video_path(root, uuid, "speaker"), fr[:n_spk])
    media.write_video(D.video_path(root, uuid, "listener"), fr[:n_lis])
    media.write_wav(D.audio_path(root, uuid), np.zeros(int(audio_s * 44100)) + 0.1, 44100)


def test_discover_and_validate(tmp_path):
    _clip(tmp_path, "good", 30, 30, 1.0)
    _clip(tmp_path, "mismatch", 30, 20, 1.0)
    _clip(tmp_path, "short", 30, 30, 0.2)
    (tmp_path / "videos" / "readme.mp4").write_bytes(b"")  # not a clip name: ignored by discovery
    found = D.discover(tmp_path)
    assert sorted(found) == ["good", "mismatch", "short"]
    assert set(found["good"]) == {"speaker", "listener", "audio"}
    problems = D.validate(tmp_path)
    assert len(problems) == 2
    assert any("mismatch.listener.mp4: 20 frames, but the speaker video has 30" in p for p in problems)
    assert any("short.wav: audio lasts 0.20 s" in p for p in problems)


def test_find_files_recursive_and_missing(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    for p in ["a/x.mp4", "a/b/y.mp4", "a/b/z.wav", "a/.hidden.mp4"]:
        (tmp_path / p).write_bytes(b"1")
    assert [p.relative_to(tmp_path).as_posix() for p in D.find_files(tmp_path)] == ["a/b/y.mp4", "a/x.mp4"]
    assert D.relative_stem(tmp_path / "a/b/y.mp4", tmp_path).as_posix() == "a/b/y"
    with pytest.raises(UserError, match="input folder not found"):
        D.find_files(tmp_path / "nope")
