"""The synthetic ViCo dataset: determinism, both layouts, and that its content is what meta says.

The content checks use the session dataset (``synthetic_root``: 2 pairs x 60 frames, seed 0) and
measure it with the real tools: dlib landmarks, the decoded wav, probe_video.
"""
from __future__ import annotations

import csv
import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pytest

from common.dataset import FULL_COLUMNS, INDEX_COLUMNS, ROLES, read_index, validate
from common.media import load_audio, probe_video, read_video
from common.synthetic import generate
from common.synthetic.motion import FIELDS



def _hashes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and p.name != "run.json"}


def _csv(path: Path) -> tuple[list[str], list[dict]]:
    with path.open(newline="") as f:
        r = csv.DictReader(f)
        return list(r.fieldnames or []), list(r)


def _frames(root: Path) -> int:
    """The frame count the session dataset was asked for (tests/conftest.py), from its run.json."""
    return json.loads((root / "run.json").read_text())["config"]["frames"]


def _metas(root: Path) -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text()) for p in sorted((root / "meta").glob("*.json"))}


@pytest.fixture(scope="module")
def dlib_backend():
    from common.faces import get_backend

    return get_backend("dlib")


@pytest.fixture(scope="module")
def tracked(synthetic_root, dlib_backend):
    """dlib landmarks of every video of the session dataset: {(uuid, role): (lm, found)}."""
    from common.faces import track_landmarks

    be = dlib_backend
    return {(u, role): track_landmarks(read_video(synthetic_root / "videos" / f"{u}.{role}.mp4"), be, return_found=True)
            for u in _metas(synthetic_root) for role in ROLES}


def test_same_seed_gives_identical_files(tmp_path, dlib_backend):
    # 3 pairs: the third uses the mirrored photos.
    a = generate(tmp_path / "a", pairs=3, frames=4, seed=11, backend=dlib_backend)
    b = generate(tmp_path / "b", pairs=3, frames=4, seed=11, backend=dlib_backend)
    ha, hb = _hashes(a), _hashes(b)
    assert len(ha) == 3 * 4 + 2  # 2 mp4 + wav + json per pair, train.csv, test.csv
    assert ha == hb
    c = generate(tmp_path / "c", pairs=1, frames=4, seed=12, backend=dlib_backend)
    assert set(_hashes(c).values()).isdisjoint(ha.values())


def test_challenge_layout(synthetic_root):
    root = synthetic_root
    n = _frames(root)
    splits = {}
    for split in ("train", "test"):
        header, rows = _csv(root / f"{split}.csv")
        assert tuple(header) == INDEX_COLUMNS
        assert len(rows) >= 1
        splits[split] = [r["uuid"] for r in rows]
        assert [c.uuid for c in read_index(root / f"{split}.csv")] == splits[split]
    uuids = splits["train"] + splits["test"]
    assert len(set(uuids)) == 2
    assert all(re.fullmatch(r"[a-z0-9]{12}", u) for u in uuids)
    assert sorted(p.name for p in (root / "videos").iterdir()) == sorted(
        f"{u}.{r}.mp4" for u in uuids for r in ROLES)
    assert sorted(p.name for p in (root / "audios").iterdir()) == sorted(f"{u}.wav" for u in uuids)
    assert validate(root) == []
    for u in uuids:
        for role in ROLES:
            info = probe_video(root / "videos" / f"{u}.{role}.mp4")
            assert (info.width, info.height, info.fps, info.n_frames) == (256, 256, 30.0, n)
        x, sr = load_audio(root / "audios" / f"{u}.wav")
        assert sr == 44100 and len(x) == n * 1470
    run = json.loads((root / "run.json").read_text())
    assert run["counts"] == {"done": 2, "skipped": 0, "failed": 0} and run["config"]["seed"] == 0


def test_meta_is_complete_and_listener_nods_in_pauses(synthetic_root):
    metas = _metas(synthetic_root)
    assert len(metas) == 2
    n_frames = _frames(synthetic_root)
    assert n_frames >= 60, "a pause between two phrases needs a clip of 2 s or more"
    for u, m in metas.items():
        assert m["uuid"] == u and m["n_frames"] == n_frames and m["fps"] == 30 and m["sample_rate"] == 44100
        assert m["speaker"]["identity"] != m["listener"]["identity"]
        for role in ROLES:
            assert set(m[role]["motion"]) == set(FIELDS)
            assert all(len(v) == n_frames for v in m[role]["motion"].values())
            assert np.asarray(m[role]["landmarks"]).shape == (n_frames, 68, 2)
        t = (np.arange(n_frames) + 0.5) / 30
        pitch = np.asarray(m["listener"]["motion"]["pitch"])
        in_pause = np.zeros(n_frames, bool)
        for a, b in m["audio"]["pauses"]:
            if a > 0.05 and b - a >= 0.3:
                in_pause |= (t >= a) & (t < b)
        assert in_pause.any(), "a 2 s clip has a pause between two phrases"
        assert pitch[in_pause].max() > 0.08  # a nod of > 4.5 degrees
        assert np.abs(pitch[~in_pause]).max() < 0.06
        assert np.max(m["listener"]["motion"]["mouth_open"]) <= 0.15
        assert np.max(m["speaker"]["motion"]["mouth_open"]) > 0.5


def test_audio_has_speech_and_silent_pauses(synthetic_root):
    for u, m in _metas(synthetic_root).items():
        x, sr = load_audio(synthetic_root / "audios" / f"{u}.wav")
        rms = lambda a, b: float(np.sqrt(np.mean(x[int(a * sr):int(b * sr)] ** 2)))  # noqa: E731
        speech = [rms(a, b) for a, b, _ in m["audio"]["syllables"]]
        assert np.mean(speech) > 0.05
        pauses = [(a, b) for a, b in m["audio"]["pauses"] if b - a > 0.1]
        assert len(pauses) >= 2  # the leading silence and one between phrases
        for a, b in pauses:
            assert rms(a + 0.02, b - 0.02) < 0.01, (u, a, b)
        env = np.asarray(m["audio"]["envelope"])
        np.testing.assert_allclose(env[10], np.sqrt(np.mean(x[10 * 1470:11 * 1470] ** 2)), rtol=1e-5)
        assert np.corrcoef(env, m["speaker"]["motion"]["mouth_open"])[0, 1] > 0.8


@pytest.mark.slow
def test_dlib_finds_faces_and_sees_the_mouth_open(synthetic_root, tracked):
    from common.faces import mouth_opening

    metas = _metas(synthetic_root)
    found = np.concatenate([f for _, f in tracked.values()])
    assert found.mean() >= 0.95
    for u, m in metas.items():
        lm, ok = tracked[(u, "speaker")]
        r = np.corrcoef(mouth_opening(lm[ok]), np.asarray(m["speaker"]["motion"]["mouth_open"])[ok])[0, 1]
        assert r > 0.8, (u, r)
        for role in ROLES:
            lm, ok = tracked[(u, role)]
            err = np.linalg.norm(lm[ok] - np.asarray(m[role]["landmarks"])[ok], axis=-1).mean()
            assert err < 4.0, (u, role, err)  # the true landmarks in meta are where dlib sees them


@pytest.mark.slow
def test_roll_is_exact(synthetic_root, tracked):
    """The eye line measured by dlib turns by -roll (y points down; +roll is counter-clockwise)."""
    angles, rolls = [], []
    for (u, role), (lm, ok) in tracked.items():
        m = _metas(synthetic_root)[u]
        d = lm[ok, 45] - lm[ok, 36]
        a = np.arctan2(d[:, 1], d[:, 0])
        r = np.asarray(m[role]["motion"]["roll"])[ok]
        angles.append(a - a.mean())
        rolls.append(r - r.mean())
    slope = np.polyfit(np.concatenate(rolls), np.concatenate(angles), 1)[0]
    assert -1.25 < slope < -0.8


def test_full_layout_cli_and_skip(tmp_path, run_cli, dlib_backend):
    out = tmp_path / "full"
    p = run_cli("common.synthetic", "--out", out, "--layout", "full", "--pairs", "2", "--frames", "3", "--seed", "4")
    assert p.returncode == 0, p.stderr
    header, rows = _csv(out / "anno.csv")
    assert set(FULL_COLUMNS) <= set(header)
    assert len(rows) == 2 and {r["data_split"] for r in rows} == {"train", "test"}
    for r in rows:
        meta = json.loads((out / "meta" / f"{r['audio']}.json").read_text())
        assert r["audio"].rsplit("_", 2)[0] == meta["video_id"]
        assert (r["speaker"], r["listener"]) == (meta["full_names"]["speaker"], meta["full_names"]["listener"])
        for name in (r["speaker"], r["listener"]):
            assert probe_video(out / "videos" / f"{name}.mp4").n_frames == 3
        assert (out / "audios" / f"{r['audio']}.wav").is_file()
        assert r["speaker_id"] != r["listener_id"]
    before = _hashes(out)
    p = run_cli("common.synthetic", "--out", out, "--layout", "full", "--pairs", "2", "--frames", "3", "--seed", "4")
    assert p.returncode == 0, p.stderr
    assert json.loads((out / "run.json").read_text())["counts"] == {"done": 0, "skipped": 2, "failed": 0}
    assert _hashes(out) == before
    # Other settings: the existing pairs are stale and are regenerated.
    generate(out, layout="full", pairs=2, frames=4, seed=4, backend=dlib_backend)
    assert json.loads((out / "run.json").read_text())["counts"] == {"done": 2, "skipped": 0, "failed": 0}
    assert probe_video(out / "videos" / f"{rows[0]['speaker']}.mp4").n_frames == 4


def test_cli_bad_argument_is_one_line(tmp_path, run_cli):
    p = run_cli("common.synthetic", "--out", tmp_path / "x", "--pairs", "0")
    assert p.returncode == 2
    assert p.stderr.strip().splitlines() == ["error: --pairs must be >= 1, got 0"]
    h = run_cli("common.synthetic", "--help")
    assert h.returncode == 0 and "python -m common.synthetic --out" in h.stdout and "(default: 90)" in h.stdout
