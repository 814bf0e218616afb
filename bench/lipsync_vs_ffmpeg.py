"""How close is our lip-sync frame path to the original's ffmpeg pipeline? (needs a system ffmpeg)

Runs syncnet_python's steps with the ffmpeg command line, exactly as upstream (ViCo's mux of the
predicted video with the GT audio as AAC, ``-qscale:v 2 -async 1 -r 25`` into an AVI, JPEG frames
at quantiser 2, the 16 kHz audio, the XVID crop video written by ``cv2.VideoWriter``, the audio cut
with ``-ss/-to``, and evaluate()'s JPEG extraction at ffmpeg's default quality), and our two paths
(``--lipsync_frames original`` and ``memory``) on the same clips, with the same face boxes (the
dlib detector on the original's JPEG frames) and the same SyncNet. Prints AV offset, confidence
and min distance of each, and the differences; ``--save`` writes the per-clip reference that
tests/evaluation/test_lipsync_original_path.py checks our path against (CI has no ffmpeg);
``--make_golden`` makes that clip (a bright/dark square and a loud/quiet wav in step, at 44.1
and 16 kHz, so that any frame or sample shift shows) and its reference.

Without the released syncnet_v2.model the SyncNet is the fill-rule network (no notion of sync,
but a fixed function of the pixels and MFCCs, so differences between paths still show).

examples:
  python -m bench.lipsync_vs_ffmpeg --clips data/videos/*.speaker.mp4 --audio_dir data/audios
  # the golden reference of tests/evaluation/test_lipsync_original_path.py
  python -m bench.lipsync_vs_ffmpeg --make_golden tests/golden/lipsync_ffmpeg
"""
from __future__ import annotations

import argparse
import glob
import logging
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import av
import cv2
import numpy as np
import torch
from scipy.io import wavfile

from common.faces import get_backend
from common.media import load_audio
from common.smoke_weights import fill_state_dict
from common.weights import load_pretrained, resolve_weights
from evaluation.lipsync.codec import original_audio, original_crops, original_frames
from evaluation.lipsync.pipeline import (SYNC_SR, LipSyncConfig, crop_track, cut_audio, find_tracks,
                                         resample_indices, to_pcm16)
from evaluation.metrics.lipsync import sync_scores
from evaluation.networks.syncnet import SyncNetS

log = logging.getLogger("bench.lipsync_vs_ffmpeg")


def _ff(*args: str) -> None:
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", *args], check=True)


def ffmpeg_pipeline(video: Path, wav: Path, work: Path) -> tuple[np.ndarray, np.ndarray]:
    """Upstream steps 1-2 with the ffmpeg CLI: (T,H,W,3) BGR JPEG frames, (S,) int16 16 kHz audio."""
    work.mkdir(parents=True, exist_ok=True)
    _ff("-i", str(video), "-i", str(wav), "-c:v", "copy", "-c:a", "aac", str(work / "av.mp4"))
    _ff("-i", str(work / "av.mp4"), "-qscale:v", "2", "-async", "1", "-r", "25", str(work / "video.avi"))
    (work / "frames").mkdir(exist_ok=True)
    _ff("-i", str(work / "video.avi"), "-qscale:v", "2", "-threads", "1", "-f", "image2",
        str(work / "frames" / "%06d.jpg"))
    _ff("-i", str(work / "video.avi"), "-ac", "1", "-vn", "-acodec", "pcm_s16le", "-ar", "16000",
        str(work / "audio.wav"))
    frames = np.stack([cv2.imread(p) for p in sorted(glob.glob(str(work / "frames" / "*.jpg")))])
    return frames, wavfile.read(work / "audio.wav")[1]


def ffmpeg_crop_and_read(frames_rgb: list[np.ndarray], track, work: Path) -> tuple[np.ndarray, np.ndarray]:
    """Upstream crop_video + evaluate(): what SyncNet reads, (T,224,224,3) BGR and (S,) int16 audio."""
    crops = crop_track(frames_rgb, track)
    w = cv2.VideoWriter(str(work / "cropt.avi"), cv2.VideoWriter_fourcc(*"XVID"), 25, (224, 224))
    for c in crops:
        w.write(c)
    w.release()
    a, b = track.frames[0] / 25, (track.frames[-1] + 1) / 25
    _ff("-i", str(work / "audio.wav"), "-ss", f"{a:.3f}", "-to", f"{b:.3f}", str(work / "audiocut.wav"))
    _ff("-i", str(work / "cropt.avi"), "-i", str(work / "audiocut.wav"), "-c:v", "copy", "-c:a", "copy",
        str(work / "crop.avi"))
    tmp = work / "tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    _ff("-i", str(work / "crop.avi"), "-threads", "1", "-f", "image2", str(tmp / "%06d.jpg"))
    _ff("-i", str(work / "crop.avi"), "-async", "1", "-ac", "1", "-vn", "-acodec", "pcm_s16le", "-ar", "16000",
        str(tmp / "audio.wav"))
    imgs = np.stack([cv2.imread(p) for p in sorted(glob.glob(str(tmp / "*.jpg")))])
    return imgs, wavfile.read(tmp / "audio.wav")[1].astype(np.float64)


def compare_clip(video: Path, wav: Path, net, cfg: LipSyncConfig, detector, work: Path) -> dict:
    """Every path's (offset, conf, min_dist) on one clip, plus what SyncNet read on the ffmpeg path
    (per-frame crop means and the audio) for the golden reference."""
    ff_frames, _ = ffmpeg_pipeline(video, wav, work)
    ff_rgb = [np.ascontiguousarray(f[..., ::-1]) for f in ff_frames]
    boxes = [detector.detect(f) for f in ff_rgb]  # one set of boxes for every path
    ours = original_frames(video, load_audio(wav)[1])
    assert len(ours) == len(ff_frames), (len(ours), len(ff_frames))
    ours_rgb = [np.ascontiguousarray(f[..., ::-1]) for f in ours]
    tracks = find_tracks(ff_rgb, boxes, cfg)
    if not tracks:
        raise SystemExit(f"{video}: no face track longer than {cfg.min_track} frames (--min_track)")
    t = tracks[-1]  # upstream returns the last track's scores
    ff_crops, ff_audio = ffmpeg_crop_and_read(ff_rgb, t, work)
    plain = to_pcm16(load_audio(wav, sr=SYNC_SR)[0])
    pcm = cut_audio(original_audio(*load_audio(wav)), t)
    with av.open(str(video)) as c:
        dec = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    mem = [dec[i] for i in resample_indices(len(dec), 30.0)]
    mt = find_tracks(mem, [detector.detect(f) for f in mem], cfg)[-1]  # no repeated frames here: own boxes
    runs = {
        "ffmpeg": (ff_crops, ff_audio),
        "ffmpeg_frames_our_audio": (ff_crops, pcm),
        "ffmpeg_audio_our_frames": (None, ff_audio),
        "original": (original_crops(crop_track(ours_rgb, t)), pcm),
        "memory": (crop_track(mem, mt), cut_audio(plain, mt)),
    }
    out = {"frames": np.array([len(ff_frames)]), "track": np.array([t.frames[0], len(t.frames)]),
           "ffmpeg_crop_means": ff_crops.reshape(len(ff_crops), -1).mean(1), "ffmpeg_audio": ff_audio.astype(np.int16),
           "boxes": t.boxes, "jpeg_mean_abs": np.array([np.abs(ours.astype(int) - ff_frames).mean()])}
    runs["ffmpeg_audio_our_frames"] = (runs["original"][0], ff_audio)
    for name, (crops, audio) in runs.items():
        r = sync_scores(net, crops, audio, cfg.batch_size, cfg.vshift)
        out[name] = np.array([r.offset, r.conf, r.min_dist])
        out[name + "_mean_dists"] = r.mean_dists
    out["crop_mean_abs"] = np.array([np.abs(runs["original"][0].astype(int) - ff_crops).mean()])
    ours_audio = runs["original"][1]
    k = min(len(ours_audio), len(ff_audio))
    out["audio_rms_rel"] = np.array([np.sqrt(np.mean((ours_audio[:k] - ff_audio[:k]) ** 2) / np.mean(ff_audio[:k].astype(float) ** 2)),
                                     len(ours_audio) - len(ff_audio)])
    return out


class FixedBox:
    """A face 'detector' that returns one given box on every frame (the golden clip's mouth)."""

    def __init__(self, box: tuple[float, float, float, float]) -> None:
        self.box = box

    def detect(self, frame: np.ndarray) -> list:
        return [self.box]


GOLDEN_BOX = (32.0, 32.0, 96.0, 96.0)


def make_golden_clip(out: Path, seconds: float = 3.0) -> list[Path]:
    """A 128x128 30 fps clip whose centre square is bright (160) or dark (100) in 40 ms steps, and
    wavs at 44.1 and 16 kHz whose loudness follows the same steps (aligned in time): any frame or
    sample shift of a path shows in the oracle offset and in the per-frame means."""
    from common.media import VideoWriter
    import soundfile as sf

    rng = np.random.default_rng(7)
    bits = rng.integers(0, 2, int(seconds * 25) + 1)
    n = int(seconds * 30)
    frames = np.full((n, 128, 128, 3), 100, np.uint8)
    for k in range(n):
        frames[k, 40:88, 40:88] = 160 if bits[int(k * 25 // 30)] else 100
    out.mkdir(parents=True, exist_ok=True)
    with VideoWriter(out / "clip.speaker.mp4", fps=30) as w:
        w.write(frames)
    wavs = []
    for sr in (44100, 16000):
        t = np.arange(int(seconds * sr))
        amp = np.where(bits[(t * 25 // sr).astype(int)] == 1, 0.3, 0.01)
        x = np.clip(rng.standard_normal(len(t)) * amp, -1, 1)
        wavs.append(out / f"clip{sr // 1000}k.wav")
        sf.write(wavs[-1], x, sr, subtype="PCM_16")
    return wavs


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.lipsync_vs_ffmpeg", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clips", nargs="+", default=[], help="predicted videos <uuid>.<task>.mp4 (30 fps)")
    p.add_argument("--audio_dir", default=None, help="GT <uuid>.wav")
    p.add_argument("--make_golden", default=None, metavar="DIR",
                   help="write the golden clip, its wavs and reference.npz (ffmpeg's path) into DIR")
    p.add_argument("--min_track", type=int, default=100, help="as evaluation.evaluate's --lipsync_min_track")
    p.add_argument("--weights_dir", default=None, help="syncnet_v2.model here if present, else fill-rule")
    p.add_argument("--save", default=None, help="write the per-clip reference (.npz) here")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if shutil.which("ffmpeg") is None:
        raise SystemExit("error: needs a system ffmpeg (e.g. apt-get install ffmpeg)")
    net = SyncNetS().eval()
    try:
        load_pretrained(net, "syncnet_s", resolve_weights("syncnet_s", a.weights_dir))
        weights = "syncnet_v2.model"
    except Exception:  # noqa: BLE001 - no released file here: the fill-rule network
        net.load_state_dict(fill_state_dict("syncnet_s"))
        weights = "fill-rule"
    torch.set_grad_enabled(False)
    cfg = LipSyncConfig(min_track=a.min_track)
    detector = get_backend("dlib")
    saved: dict[str, np.ndarray] = {}
    pairs = [(Path(c), Path(a.audio_dir) / f"{Path(c).name.split('.')[0]}.wav") for c in a.clips]
    if a.make_golden:
        gold = Path(a.make_golden)
        pairs = [(gold / "clip.speaker.mp4", w) for w in make_golden_clip(gold)]
        cfg = LipSyncConfig(min_track=40, min_face_size=10)
        detector = FixedBox(GOLDEN_BOX)
        a.save = str(gold / "reference.npz")
    print(f"SyncNet: {weights}; ffmpeg: {subprocess.run(['ffmpeg', '-version'], capture_output=True, text=True).stdout.split()[2]}")
    print(f"{'clip':40} {'path':24} offset   conf      min_dist  d_conf    d_min_dist")
    for video, wav in pairs:
        with tempfile.TemporaryDirectory() as tmp:
            r = compare_clip(video, wav, net, cfg, detector, Path(tmp))
        ref = r["ffmpeg"]
        for name in ("ffmpeg", "ffmpeg_frames_our_audio", "ffmpeg_audio_our_frames", "original", "memory"):
            o = r[name]
            print(f"{video.name + ' ' + wav.name:40} {name:24} {int(o[0]):+4d} {o[1]:9.5f} {o[2]:9.4f} {o[1] - ref[1]:+9.5f} "
                  f"{o[2] - ref[2]:+9.4f}")
        print(f"{'':40} pixels: JPEG frames mean |d| {r['jpeg_mean_abs'][0]:.3f}, crops {r['crop_mean_abs'][0]:.3f}; "
              f"audio: rms of the difference / rms {r['audio_rms_rel'][0]:.3f}, length {int(r['audio_rms_rel'][1]):+d}")
        saved.update({f"{wav.name}/{k}": v for k, v in r.items()})
    if a.save:
        np.savez_compressed(a.save, **saved)
        print(f"saved {a.save}")


if __name__ == "__main__":
    sys.exit(main())
