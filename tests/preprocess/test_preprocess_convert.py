"""convert CLI: full release layout -> challenge layout."""
from __future__ import annotations

import csv

import numpy as np
import pytest

from common.dataset import FULL_COLUMNS, read_index, validate
from preprocess.convert import make_uuid

MOD = "preprocess.convert"


def _full_layout(root, rows):
    """Write an annotation csv and the files it names (bytes are enough for convert)."""
    (root / "videos").mkdir(parents=True)
    (root / "audios").mkdir()
    with open(root / "anno.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(FULL_COLUMNS)
        for r in rows:
            w.writerow([r[c] for c in FULL_COLUMNS])
            for c in ("speaker", "listener"):
                (root / "videos" / f"{r[c]}.mp4").write_bytes(f"video {r[c]}".encode())
            (root / "audios" / f"{r['audio']}.wav").write_bytes(f"audio {r['audio']}".encode())


ROWS = [
    {"audio": "vidA_0_1", "speaker": "vidA_spk_0", "listener": "vidA_lis_0", "data_split": "train",
     "speaker_id": "s1", "listener_id": "l1"},
    {"audio": "vidA_2_3", "speaker": "vidA_spk_1", "listener": "vidA_lis_1", "data_split": "train",
     "speaker_id": "s1", "listener_id": "l1"},
    {"audio": "vidB_0_1", "speaker": "vidB_spk_0", "listener": "vidB_lis_0", "data_split": "test",
     "speaker_id": "s2", "listener_id": "l2"},
]


def test_uuid_reproducible_and_well_formed():
    a = make_uuid(0, "x_1_2", "s", "l")
    assert a == make_uuid(0, "x_1_2", "s", "l") and len(a) == 12
    assert set(a) <= set("abcdefghijklmnopqrstuvwxyz0123456789")
    assert a != make_uuid(1, "x_1_2", "s", "l") and a != make_uuid(0, "x_1_2", "l", "s")


@pytest.mark.slow
def test_convert_layout_and_errors(tmp_path, run_cli, helpers):
    src = tmp_path / "full"
    _full_layout(src, ROWS)
    args = ["-f", src / "anno.csv", "-v", src / "videos", "-a", src / "audios"]
    r = run_cli(MOD, *args, "-t", tmp_path / "t1", "--seed", "7")
    assert r.returncode == 0, r.stderr
    t = tmp_path / "t1"
    train, test = read_index(t / "train.csv"), read_index(t / "test.csv")
    assert [c.video_id for c in train] == ["vidA", "vidA"] and [c.video_id for c in test] == ["vidB"]
    assert (t / "train.csv").read_text().splitlines()[0] == "video_id,uuid,speaker_id,listener_id"
    for clip, row in zip(train + test, ROWS):
        assert clip.uuid == make_uuid(7, row["audio"], row["speaker"], row["listener"])
        assert (clip.speaker_id, clip.listener_id) == (row["speaker_id"], row["listener_id"])
        assert (t / "videos" / f"{clip.uuid}.speaker.mp4").read_bytes() == f"video {row['speaker']}".encode()
        assert (t / "videos" / f"{clip.uuid}.listener.mp4").read_bytes() == f"video {row['listener']}".encode()
        assert (t / "audios" / f"{clip.uuid}.wav").read_bytes() == f"audio {row['audio']}".encode()
    assert helpers.run_json(t)["counts"]["done"] == 3
    # same seed -> same uuids (hard links this time)
    r = run_cli(MOD, *args, "-t", tmp_path / "t2", "--seed", "7", "--link", "hardlink")
    assert r.returncode == 0 and (tmp_path / "t2" / "train.csv").read_text() == (t / "train.csv").read_text()
    # non-empty target refused with one line
    r = run_cli(MOD, *args, "-t", t)
    assert r.returncode == 2 and "not empty" in r.stderr and r.stderr.count("\n") == 1
    # a missing referenced file: named, and nothing written
    (src / "audios" / "vidB_0_1.wav").unlink()
    r = run_cli(MOD, *args, "-t", tmp_path / "t3")
    assert r.returncode == 2 and "vidB_0_1.wav" in r.stderr and r.stderr.count("\n") == 1
    assert not (tmp_path / "t3").exists()


@pytest.mark.slow
def test_convert_synthetic_full_layout_feeds_other_stages(tmp_path, run_cli):
    """The synthetic full release -> convert -> a challenge layout that the next stage reads."""
    from common.synthetic import generate

    src = generate(tmp_path / "full", pairs=2, frames=30, seed=3, layout="full")
    t = tmp_path / "challenge"
    r = run_cli(MOD, "-f", src / "anno.csv", "-v", src / "videos", "-a", src / "audios", "-t", t)
    assert r.returncode == 0, r.stderr
    assert validate(t, t / "train.csv") == [] and validate(t, t / "test.csv") == []
    with open(src / "anno.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    clips = read_index(t / "train.csv") + read_index(t / "test.csv")
    assert len(clips) == len(rows) == 2
    for clip, row in zip(clips, sorted(rows, key=lambda r: r["data_split"] != "train")):
        assert clip.video_id == row["audio"].rsplit("_", 2)[0]
        assert (t / "audios" / f"{clip.uuid}.wav").read_bytes() == (src / "audios" / f"{row['audio']}.wav").read_bytes()
        assert (t / "videos" / f"{clip.uuid}.listener.mp4").read_bytes() == \
            (src / "videos" / f"{row['listener']}.mp4").read_bytes()
    # the audio features read the converted layout (frame counts from the speaker videos)
    r = run_cli("preprocess.extract_audio_features", "--input_audio_folder", t / "audios",
                "--video_folder", t / "videos", "--output_folder", t / "features" / "audio_feats")
    assert r.returncode == 0, r.stderr
    for clip in clips:
        f = np.load(t / "features" / "audio_feats" / f"{clip.uuid}.npy")
        assert f.shape == (30, 45) and np.isfinite(f).all()
