"""Cross-stage fault suite: one table of bad inputs, each fed to a stage's real command line.

Every case checks the robustness contract (DESIGN.md "Robustness"):
- no Python traceback on stderr, and a non-zero exit status;
- the file is named: in the last stderr line ``error: ...`` (a fatal setup problem, exit 2), or
  in the bad item's run.json failure with a one-line summary on stderr (a batch stage, exit 1);
- batch stages finish the other items (their outputs exist and load as valid artifacts);
- nothing partial: no temp files and no output for the bad item (none at all when fatal).

Modes: ``item`` (batch stage, per-item failure), ``fatal`` (refused before any work),
``all_or_nothing`` (a reduction such as statistics_mean_std: the bad file is listed in run.json
and nothing is written).
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import av
import numpy as np
import pytest
import soundfile as sf
import torch

from .conftest import (N_FRAMES, PIR_CKPT, Workspace, copy_into, plausible_coeffs, run_json, temp_leftovers,
                       write_mat)

KP = "Deep3DFaceRecon_pytorch.extract_kp_videos"
RECON = "Deep3DFaceRecon_pytorch.face_recon_videos"
AUDIO = "preprocess.extract_audio_features"
REARRANGE = "preprocess.rearrange_recon_coeffs"
STATS = "preprocess.statistics_mean_std"
LMDB = "PIRender.prepare_vox_lmdb"
RENDER = "PIRender.inference"
VICO_EVAL = "vico.eval"
EVALUATE = "evaluation.evaluate"
SR = 44100


@dataclass
class Setup:
    """What a case's ``corrupt`` function built: the arguments, the output folder, the bad item's
    output (must not exist) and a check of the good items' outputs."""

    args: list
    out: Path
    bad_output: Path | None = None
    check_good: Callable[[Path], None] | None = None
    extra: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Case:
    kind: str  # the kind of bad input
    stage: str  # python -m STAGE
    corrupt: Callable[[Workspace, Path], Setup]  # builds inputs in a fresh folder, one of them bad
    named: str  # the file the error must name
    mode: str  # item | fatal | all_or_nothing

    @property
    def id(self) -> str:
        return f"{self.kind}-{self.stage.split('.')[-1]}"


# --- checks of the good items' outputs --------------------------------------------------------

def _good_keypoints(names):
    def check(out: Path) -> None:
        from Deep3DFaceRecon_pytorch.data.keypoints import load_keypoints

        for n in names:
            lm = load_keypoints(out / f"{n}.txt")
            assert lm.shape == (N_FRAMES, 68, 2) and (lm >= 0).all(), n  # a face in every frame
    return check


def _good_mats(names):
    def check(out: Path) -> None:
        from common.artifacts import load_recon_mat

        for n in names:
            coeff, tp = load_recon_mat(out / f"{n}.mat")  # raises on NaN or a wrong shape
            assert coeff.shape == (N_FRAMES, 257) and tp.shape == (N_FRAMES, 5)
    return check


def _good_audio_feats(uuids):
    def check(out: Path) -> None:
        for u in uuids:
            f = np.load(out / f"{u}.npy")
            assert f.shape == (N_FRAMES, 45) and np.isfinite(f).all(), u
    return check


def _good_video_feats(names):
    def check(out: Path) -> None:
        from common.artifacts import load_video_feats

        for n in names:
            f = load_video_feats(out / f"{n}.bin")  # raises on NaN or a wrong shape
            assert f["angle.exp.trans"].shape == (N_FRAMES, 73)
    return check


def _good_lmdb(names, bad):
    def check(out: Path) -> None:
        from PIRender.data.vox_lmdb import VoxLMDB

        with VoxLMDB(out, size=64) as db:
            assert sorted(db.names) == sorted(names) and not db.has(bad)
            for n in names:
                assert db.coeffs(n).shape == (N_FRAMES, 260) and np.isfinite(db.coeffs(n)).all()
                assert db.frame(n, N_FRAMES - 1).shape == (64, 64, 3)
    return check


def _good_eval(uuid):
    def check(out: Path) -> None:
        import json

        rows = [json.loads(ln) for ln in (out / "r.videos.jsonl").read_text().splitlines()]
        assert [r["uuid"] for r in rows] == [uuid]
        res = json.loads((out / "r.json").read_text())["results"]
        assert all(np.isfinite(v) for v in res.values()), res
    return check


# --- the bad inputs ---------------------------------------------------------------------------

def _names(ws: Workspace) -> list[str]:
    return [p.stem for p in ws.speakers]


def _zero_frame_mp4(path: Path) -> None:
    """A valid mp4 container whose video holds no frames (an export that stopped at once)."""
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=30)
        s.width, s.height, s.pix_fmt = 256, 256, "yuv420p"
        c.start_encoding()
    assert 0 < path.stat().st_size < 1000


def corrupt_mp4_kp(ws: Workspace, tmp: Path) -> Setup:
    videos = copy_into(ws.speakers, tmp / "videos")
    good = (videos / ws.speakers[0].name).read_bytes()
    (videos / "bad.speaker.mp4").write_bytes(good[:48] + b"\x00junk" * 200)  # the header then garbage
    out = tmp / "kp"
    return Setup([ "--input_dir", videos, "--output_dir", out], out, out / "bad.speaker.txt",
                 _good_keypoints(_names(ws)))


def corrupt_mp4_evaluate(ws: Workspace, tmp: Path) -> Setup:
    pd = copy_into(ws.speakers, tmp / "pd")
    bad_uuid, good_uuid = ws.uuids[1], ws.uuids[0]
    (pd / f"{bad_uuid}.speaker.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"junk" * 200)
    out = tmp / "eval"
    return Setup(["--gt_video_folder", ws.data / "videos", "--pd_video_folder", pd,
                  "--anno_file", _csv(tmp, ws.uuids), "--task", "speaker", "--metrics", "ssim,psnr",
                  "--output", out / "r.json", "--no_cache"], out, None, _good_eval(good_uuid))


def _csv(tmp: Path, uuids) -> Path:
    p = tmp / "test.csv"
    p.write_text("video_id,uuid,speaker_id,listener_id\n" + "".join(f"v{i},{u},1,0\n" for i, u in enumerate(uuids)))
    return p


def zero_frame_lmdb(ws: Workspace, tmp: Path) -> Setup:
    videos = copy_into(ws.speakers, tmp / "videos")
    _zero_frame_mp4(videos / "zero.speaker.mp4")
    mats = copy_into([ws.mats / f"{n}.mat" for n in _names(ws)], tmp / "mats")
    write_mat(mats / "zero.speaker.mat", *plausible_coeffs(N_FRAMES, 9))
    out = tmp / "lmdb"
    return Setup(["--path", videos, "--coeff_3dmm_path", mats, "--out", out, "--sizes", "64", "--n_worker", "1"],
                 out, None, _good_lmdb(_names(ws), "zero.speaker"))


def no_face_recon(ws: Workspace, tmp: Path) -> Setup:
    """A video without a face: extract_kp_videos keeps the upstream format (68 rows of -1 per frame,
    a warning), face_recon_videos refuses to make coefficients out of it."""
    from common.media import write_video
    from tests.conftest import run_module

    good = ws.speakers[0]  # one good video only: the reconstruction network is the slow part
    videos = copy_into([good], tmp / "videos")
    kp = copy_into([ws.keypoints / f"{good.stem}.txt"], tmp / "kp")
    write_video(tmp / "noface_in" / "noface.speaker.mp4",
                np.tile(np.linspace(60, 200, 256, dtype=np.uint8)[None, :, None], (N_FRAMES, 256, 1, 3)))
    r = run_module(KP, "--input_dir", tmp / "noface_in", "--output_dir", kp, "--max_no_face_fraction", 1)
    assert r.returncode == 0 and "noface.speaker: no face in any of its 30 frames" in r.stderr, r.stderr
    shutil.copy2(tmp / "noface_in" / "noface.speaker.mp4", videos)
    out = tmp / "recons"
    return Setup(["--input_dir", videos, "--keypoint_dir", kp, "--output_dir", out, "--checkpoint", ws.recon_ckpt],
                 out, out / "noface.speaker.mat", _good_mats([good.stem]))


def _audio_case(make_bad: Callable[[Path], None]) -> Callable[[Workspace, Path], Setup]:
    def corrupt(ws: Workspace, tmp: Path) -> Setup:
        audios = copy_into([ws.data / "audios" / f"{u}.wav" for u in ws.uuids], tmp / "audios")
        mats = copy_into([ws.mats / f"{n}.mat" for n in _names(ws)], tmp / "mats")
        write_mat(mats / "bad.speaker.mat", *plausible_coeffs(N_FRAMES, 7))  # a 30-frame video
        make_bad(audios / "bad.wav")
        out = tmp / "feats"
        return Setup(["--input_audio_folder", audios, "--input_recons_folder", mats, "--output_folder", out],
                     out, out / "bad.npy", _good_audio_feats(ws.uuids))
    return corrupt


def _silent(p: Path) -> None:
    sf.write(str(p), np.zeros(SR), SR, subtype="PCM_16")  # 1 s of digital silence


def _empty(p: Path) -> None:
    sf.write(str(p), np.zeros(0), SR, subtype="PCM_16")  # a valid header, no samples


def _short(p: Path) -> None:
    t = np.arange(int(0.3 * SR)) / SR  # 0.3 s of tone for a 1 s (30-frame) video
    sf.write(str(p), 0.3 * np.sin(2 * np.pi * 220 * t), SR, subtype="PCM_16")


def _mats_case(bad: Callable[[Path], None], stage: str) -> Callable[[Workspace, Path], Setup]:
    def corrupt(ws: Workspace, tmp: Path) -> Setup:
        mats = copy_into([ws.mats / f"{n}.mat" for n in _names(ws)], tmp / "mats")
        bad(mats / "bad.speaker.mat")
        if stage == REARRANGE:
            out = tmp / "video_feats"
            return Setup(["--input_folder", mats, "--output_folder", out], out, out / "bad.speaker.bin",
                         _good_video_feats(_names(ws)))
        videos = copy_into(ws.speakers, tmp / "videos")
        shutil.copy2(ws.speakers[0], videos / "bad.speaker.mp4")
        out = tmp / "lmdb"
        return Setup(["--path", videos, "--coeff_3dmm_path", mats, "--out", out, "--sizes", "64", "--n_worker", "1"],
                     out, None, _good_lmdb(_names(ws), "bad.speaker"))
    return corrupt


def _nan_mat(p: Path) -> None:
    coeff, tp = plausible_coeffs(N_FRAMES, 3)
    coeff[5, 100] = np.nan  # one NaN (a diverged fit) in a 30-frame clip
    write_mat(p, coeff, tp)


def _wrong_shape_mat(p: Path) -> None:
    coeff, tp = plausible_coeffs(N_FRAMES, 3)
    write_mat(p, coeff[:, :254], tp)  # 254 columns instead of 257 (e.g. a truncated export)


def nan_features_stats(ws: Workspace, tmp: Path) -> Setup:
    feats = tmp / "features"
    copy_into([ws.mats / f"{n}.mat" for n in _names(ws)], tmp / "mats")
    from tests.conftest import run_module

    r = run_module(REARRANGE, "--input_folder", tmp / "mats", "--output_folder", feats / "video_feats")
    assert r.returncode == 0, r.stderr
    (feats / "audio_feats").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i, u in enumerate(ws.uuids):
        a = rng.standard_normal((N_FRAMES, 45)).astype(np.float32)
        if i == 1:
            a[3, 7] = np.inf
        np.save(feats / "audio_feats" / f"{u}.npy", a)
    return Setup([feats], feats, None, None, {"bad": feats / "audio_feats" / f"{ws.uuids[1]}.npy"})


def _recon_args(ws: Workspace, tmp: Path, ckpt) -> Setup:
    out = tmp / "recons"
    return Setup(["--input_dir", tmp / "videos", "--keypoint_dir", ws.keypoints, "--output_dir", out,
                  "--checkpoint", ckpt], out)


def _render_args(ws: Workspace, tmp: Path, ckpt, lmdb=None) -> Setup:
    out = tmp / "render"
    return Setup(["--input", lmdb or ws.lmdb, "--size", "64", "--checkpoint", ckpt, "--output_dir", out], out)


def _renamed_key_checkpoint(src: Path, dst: Path, sub: str) -> Path:
    """The released layout with one key under another name (as a model of another version has)."""
    ck = torch.load(src, map_location="cpu", weights_only=False)
    sd = ck[sub]
    k = next(iter(sd))
    sd["encoder." + k] = sd.pop(k)
    dst.parent.mkdir(parents=True, exist_ok=True)
    torch.save(ck, dst)
    return dst


def wrong_keys_recon(ws: Workspace, tmp: Path) -> Setup:
    copy_into(ws.speakers, tmp / "videos")
    return _recon_args(ws, tmp, _renamed_key_checkpoint(ws.recon_ckpt, tmp / "w" / "bad_keys.pth", "net_recon"))


def wrong_keys_render(ws: Workspace, tmp: Path) -> Setup:
    return _render_args(ws, tmp, _renamed_key_checkpoint(ws.pir_ckpt, tmp / "w" / "bad_keys.pt", "net_G_ema"))


def missing_weights_recon(ws: Workspace, tmp: Path) -> Setup:
    copy_into(ws.speakers, tmp / "videos")
    return _recon_args(ws, tmp, tmp / "w" / "face_recon_feat0.2_augment" / "epoch_20.pth")


def missing_weights_render(ws: Workspace, tmp: Path) -> Setup:
    return _render_args(ws, tmp, tmp / "w" / PIR_CKPT)


def missing_weights_vico(ws: Workspace, tmp: Path) -> Setup:
    out = tmp / "generated"
    return Setup(["--task", "speaker", "--data", ws.data, "--features", tmp / "features",
                  "--resume", tmp / "runs" / "Epoch_500.bin", "--output_path", out], out)


def missing_weights_evaluate(ws: Workspace, tmp: Path) -> Setup:
    out = tmp / "eval"
    return Setup(["--gt_video_folder", ws.data / "videos", "--pd_video_folder", ws.data / "videos",
                  "--anno_file", ws.data / "test.csv", "--metrics", "csim", "--strict",
                  "--weights_dir", tmp / "weights", "--output", out / "r.json"], out)


def truncated_lmdb(ws: Workspace, tmp: Path) -> Setup:
    lmdb = tmp / "lmdb"
    shutil.copytree(ws.lmdb, lmdb)
    data = lmdb / "64" / "data.mdb"
    with open(data, "r+b") as f:  # a copy cut short: the first half of the pages
        f.truncate(data.stat().st_size // 2)
    return _render_args(ws, tmp, ws.pir_ckpt, lmdb)


def _missing_input(stage: str) -> Callable[[Workspace, Path], Setup]:
    def corrupt(ws: Workspace, tmp: Path) -> Setup:
        gone, out = tmp / "no_such_folder", tmp / "out"
        args = {
            RECON: ["--input_dir", gone, "--keypoint_dir", ws.keypoints, "--output_dir", out,
                    "--checkpoint", ws.recon_ckpt],
            REARRANGE: ["--input_folder", gone, "--output_folder", out],
            STATS: [gone],
            RENDER: ["--input", gone, "--checkpoint", ws.pir_ckpt, "--output_dir", out],
            EVALUATE: ["--gt_video_folder", gone, "--pd_video_folder", ws.data / "videos",
                       "--anno_file", ws.data / "test.csv", "--metrics", "ssim", "--output", out / "r.json"],
        }[stage]
        return Setup(args, out)
    return corrupt


CASES = [
    # kind                      stage       how to corrupt                      file named            mode
    Case("corrupt_mp4",          KP,        corrupt_mp4_kp,                     "bad.speaker.mp4",    "item"),
    Case("corrupt_mp4",          EVALUATE,  corrupt_mp4_evaluate,               ".speaker.mp4",       "item"),
    Case("zero_frame_mp4",       LMDB,      zero_frame_lmdb,                    "zero.speaker.mp4",   "item"),
    Case("no_face",              RECON,     no_face_recon,                      "noface.speaker",     "item"),
    Case("silent_wav",           AUDIO,     _audio_case(_silent),               "bad.wav",            "item"),
    Case("empty_wav",            AUDIO,     _audio_case(_empty),                "bad.wav",            "item"),
    Case("wav_shorter_than_video", AUDIO,   _audio_case(_short),                "bad.wav",            "item"),
    Case("nan_coeffs",           REARRANGE, _mats_case(_nan_mat, REARRANGE),    "bad.speaker.mat",    "item"),
    Case("nan_coeffs",           LMDB,      _mats_case(_nan_mat, LMDB),         "bad.speaker.mat",    "item"),
    Case("inf_features",         STATS,     nan_features_stats,                 ".npy",               "all_or_nothing"),
    Case("wrong_shape_mat",      REARRANGE, _mats_case(_wrong_shape_mat, REARRANGE), "bad.speaker.mat", "item"),
    Case("wrong_shape_mat",      LMDB,      _mats_case(_wrong_shape_mat, LMDB), "bad.speaker.mat",    "item"),
    Case("checkpoint_wrong_keys", RECON,    wrong_keys_recon,                   "bad_keys.pth",       "fatal"),
    Case("checkpoint_wrong_keys", RENDER,   wrong_keys_render,                  "bad_keys.pt",        "fatal"),
    Case("missing_weights",      RECON,     missing_weights_recon,              "epoch_20.pth",       "fatal"),
    Case("missing_weights",      RENDER,    missing_weights_render,             PIR_CKPT,             "fatal"),
    Case("missing_weights",      VICO_EVAL, missing_weights_vico,               "Epoch_500.bin",      "fatal"),
    Case("missing_weights",      EVALUATE,  missing_weights_evaluate,           "backbone.pth",       "fatal"),
    Case("truncated_lmdb",       RENDER,    truncated_lmdb,                     "data.mdb",           "fatal"),
] + [
    Case("missing_input_folder", stage,     _missing_input(stage),              "no_such_folder",     "fatal")
    for stage in (RECON, REARRANGE, STATS, RENDER, EVALUATE)
]


def _stderr_lines(stderr: str) -> list[str]:
    # tqdm redraws with carriage returns; the last segment of a line is what a terminal shows
    return [ln.split("\r")[-1].strip() for ln in stderr.splitlines() if ln.split("\r")[-1].strip()]


SLOW = {"no_face-face_recon_videos"}  # runs the reconstruction network on a real clip


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id, marks=[pytest.mark.slow] if c.id in SLOW else [])
                                  for c in CASES])
def test_bad_input(case: Case, ws: Workspace, tmp_path: Path, run_cli):
    s = case.corrupt(ws, tmp_path)
    r = run_cli(case.stage, *s.args)
    err = r.stderr
    assert "Traceback" not in err, err[-3000:]
    assert r.returncode != 0, err[-3000:]
    lines = _stderr_lines(err)

    if case.mode == "fatal":
        assert r.returncode == 2, err[-3000:]
        assert lines[-1].startswith("error: ") and case.named in lines[-1], lines[-1]
        written = [p for p in s.out.rglob("*") if p.is_file()] if s.out.exists() else []
        assert written == [], written
        return

    assert r.returncode == 1, err[-3000:]
    report = run_json(s.out)
    bad = [f for f in report["failures"] if case.named in f["reason"]]
    assert len(bad) == 1 and len(report["failures"]) == 1, report["failures"]
    assert "\n" not in bad[0]["reason"]
    # the reason is on stderr too, and the run ends with a one-line summary
    assert any(bad[0]["reason"] in ln for ln in lines), err[-3000:]
    assert "1 failed" in lines[-1] or any("1 failed" in ln or "bad file" in ln for ln in lines[-3:]), lines[-3:]
    assert temp_leftovers(s.out) == []
    if s.bad_output is not None:
        assert not s.bad_output.exists()
    if case.mode == "all_or_nothing":
        assert s.extra["bad"].name in bad[0]["reason"]
        assert not list(s.out.glob("*mean_std.bin"))
        return
    assert report["counts"]["done"] >= 1
    s.check_good(s.out)


# --- silent audio: the behaviour chosen ---------------------------------------------------------
# Digital silence (every sample 0, i.e. below one 16-bit step) is refused by
# preprocess.extract_audio_features as a per-item failure ("audio is silent"): in ViCo every clip
# has a speaker, so an all-zero track is a broken export, and training on it would teach the
# listener that silence is normal. The feature code itself gives finite numbers for it (checked
# below, so relaxing the check can never write NaN), and a quiet but real recording (room noise
# at about -60 dBFS) is accepted with finite features.

def test_silence_features_are_finite_and_quiet_audio_is_accepted(ws: Workspace, tmp_path: Path, run_cli):
    from preprocess.audio.features import FEATURE_SETS, extract

    for fs in FEATURE_SETS:
        for x in (np.zeros(SR), np.zeros(10)):  # one second, and far shorter than the video
            f = extract(fs, x, SR, N_FRAMES, 30)
            assert f.shape == (N_FRAMES, 45) and np.isfinite(f).all(), fs
    audios = tmp_path / "audios"
    audios.mkdir()
    quiet = 1e-3 * np.random.default_rng(0).standard_normal(SR)  # about -60 dBFS of noise
    sf.write(str(audios / "quiet.wav"), quiet, SR, subtype="PCM_16")
    write_mat(tmp_path / "mats" / "quiet.speaker.mat", *plausible_coeffs(N_FRAMES, 1))
    r = run_cli(AUDIO, "--input_audio_folder", audios, "--input_recons_folder", tmp_path / "mats",
                "--output_folder", tmp_path / "feats")
    assert r.returncode == 0, r.stderr[-2000:]
    f = np.load(tmp_path / "feats" / "quiet.npy")
    assert f.shape == (N_FRAMES, 45) and np.isfinite(f).all()


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_requested_but_unavailable_is_one_line(ws: Workspace, tmp_path: Path, run_cli):
    """'CUDA not used': an explicit --device cuda without a usable GPU is a one-line error, not a
    traceback from deep inside torch (--device auto falls back to the CPU and says so)."""
    r = run_cli(RENDER, *_render_args(ws, tmp_path, ws.pir_ckpt).args, "--device", "cuda")
    lines = _stderr_lines(r.stderr)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr[-2000:]
    assert lines[-1].startswith("error: --device cuda: CUDA is not available here") and "--device cpu" in lines[-1]
    assert not (tmp_path / "render").exists()


@pytest.mark.slow
def test_no_face_allowed_gets_the_original_fallback(ws: Workspace, tmp_path: Path, run_cli):
    """--allow_no_face (used to score generated videos, whose face may be lost): the original's
    behaviour, the fallback crop in every frame, so the video still gets its coefficients."""
    from common.artifacts import load_recon_mat

    s = no_face_recon(ws, tmp_path)
    r = run_cli(RECON, *s.args, "--allow_no_face")
    assert r.returncode == 0, r.stderr[-2000:]
    coeff, tp = load_recon_mat(s.bad_output)
    assert coeff.shape == (N_FRAMES, 257) and np.isfinite(coeff).all() and tp.shape == (N_FRAMES, 5)
