"""The original lip-sync frame path, with PyAV's bundled encoders and OpenCV (no system ffmpeg).

syncnet_python does not score the decoded video: its frames pass through four lossy steps, and
SyncNet's confidence moves with them. This module repeats each step with the same settings:

1. ``ffmpeg -i video -qscale:v 2 -async 1 -r 25 video.avi``: ffmpeg's frame-rate conversion for an
   AVI output (``pipeline.avi_25fps_indices``), FFmpeg's MPEG-4 part 2 encoder at quantiser 2;
2. ``ffmpeg -i video.avi -qscale:v 2 -threads 1 -f image2 %06d.jpg`` read back with ``cv2.imread``:
   limited- to full-range YUV exactly as libswscale up to FFmpeg 7 (``full_range``), then MJPEG
   at quantiser 2 (``jpeg_frames``); detection and crops use these frames;
3. ``cv2.VideoWriter(..., 'XVID', 25, (224, 224))`` for the face crops (OpenCV's own writer);
4. ``ffmpeg -i crop.avi -threads 1 -f image2 %06d.jpg``: MJPEG at ffmpeg's default rate control
   (200 kb/s at 25 fps) read back with ``cv2.imread``; SyncNet scores these.

Before step 1 ViCo muxes the predicted video with the GT wav as AAC, and step 1 turns that into
MP3 in the AVI; both are repeated (``original_audio``), with their effect on timing: the AVI gets
an empty video slot after its first frame per started 1/25 s of AAC priming (``aac_mux_gap``),
which the JPEG extraction fills with repeated frames, and its MP3 audio (libmp3lame, not gapless
in an AVI) starts 1105 samples late.

Measured against Debian's ffmpeg 5.1 with ``python -m bench.lipsync_vs_ffmpeg``: frame selection,
repeated frames, audio delay and both JPEG steps are identical; the MPEG-4 P-frames differ by a
mean of 0.17 grey levels (encoder version; the original itself moves by 0.05 between 1 and 2
encoder threads). Resulting AVConf/AVDist differences: docs/evaluation.md#lip-sync-as-the-original.
"""
from __future__ import annotations

import io
import tempfile
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

from common.io import UserError
from evaluation.lipsync.pipeline import SYNC_FPS, avi_25fps_indices

FF_QP2LAMBDA = 118  # libavcodec's quantiser -> lambda factor (-qscale:v q sets q * 118)
AAC_PRIMING = 1024  # samples the AAC encoder puts before the audio (the mp4's negative start)


def coded_rate(codec: str, sr: int) -> int:
    """The sample rate ffmpeg gives ``codec`` for input at ``sr``: ``sr`` when the encoder takes it,
    else the closest it takes (96 kHz -> 48 kHz for MP3, 37.8 kHz -> 32 kHz for AAC)."""
    rates = av.codec.Codec(codec, "w").audio_rates or [sr]
    return sr if sr in rates else min(rates, key=lambda r: abs(r - sr))


def aac_mux_gap(audio_sr: int) -> int:
    """Empty 25 fps slots after the first frame of upstream's video.avi, for a wav at ``audio_sr``:
    ceil(1024 / AAC rate * 25) (1 at 32-48 kHz, 2 at 16-22.05 kHz; measured with ffmpeg 5.1)."""
    return int(np.ceil(AAC_PRIMING * SYNC_FPS / coded_rate("aac", audio_sr) - 1e-9))


def repeat_like_image2(frames: np.ndarray, gap: int) -> np.ndarray:
    """The JPEG sequence ffmpeg's image2 output (constant frame rate) makes of an AVI whose second
    frame comes ``gap`` slots late: the first frame lrint(gap - 0.6) more times (gap > 1.1), the
    second gap + 1 - that in all. (T,...) -> (T + gap,...)."""
    if gap <= 0 or len(frames) < 2:
        return frames
    extra_first = int(np.rint(gap - 0.6)) if gap > 1.1 else 0
    return np.concatenate([frames[:1].repeat(1 + extra_first, 0), frames[1:2].repeat(gap + 1 - extra_first, 0),
                           frames[2:]])


def _resample(x: np.ndarray, sr: int, rate: int, fmt: str = "fltp") -> np.ndarray:
    """Mono samples from ``sr`` to ``rate`` with ffmpeg's resampler (swresample defaults, as the CLI)."""
    resampler = av.AudioResampler(format=fmt, layout="mono", rate=rate)
    frame = av.AudioFrame.from_ndarray(np.asarray(x, np.float32)[None, :], format="fltp", layout="mono")
    frame.sample_rate, frame.pts = sr, 0
    return np.concatenate([f.to_ndarray().reshape(-1) for f in (*resampler.resample(frame), *resampler.resample(None))])


def _audio_roundtrip(samples: np.ndarray, sr: int, codec: str, container: str) -> tuple[np.ndarray, int]:
    """Mono float samples through ``codec`` in an in-memory ``container`` and back (what a later
    ffmpeg step decodes from that file: the mp4 edit list trims AAC's priming, an AVI keeps MP3's
    delay), at the rate ffmpeg gives the encoder: (samples, rate)."""
    rate = coded_rate(codec, sr)
    x = np.asarray(samples if rate == sr else _resample(samples, sr, rate), np.float32)
    buf = io.BytesIO()
    with av.open(buf, "w", format=container) as out:
        stream = out.add_stream(codec, rate=rate)
        stream.layout = "mono"
        for i in range(0, len(x), AAC_PRIMING):
            frame = av.AudioFrame.from_ndarray(x[None, i:i + AAC_PRIMING], format="fltp", layout="mono")
            frame.sample_rate, frame.pts = rate, i
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    buf.seek(0)
    with av.open(buf) as c:
        return np.concatenate([f.to_ndarray().reshape(-1) for f in c.decode(audio=0)]), rate


def original_audio(samples: np.ndarray, audio_sr: int) -> np.ndarray:
    """The 16 kHz audio.wav of upstream's video.avi: the GT samples (float mono at ``audio_sr``)
    through AAC in the mp4, libmp3lame in the AVI (whose 1105-sample delay stays) and ffmpeg's
    resampler to 16 kHz s16, as int16-valued float64 (what ``wavfile.read`` gives upstream).
    UserError when PyAV cannot code it."""
    try:
        aac, rate = _audio_roundtrip(samples, audio_sr, "aac", "mp4")
        mp3, rate = _audio_roundtrip(aac, rate, "libmp3lame", "avi")
        return _resample(mp3, rate, 16000, fmt="s16").astype(np.float64)
    except av.error.FFmpegError as e:
        raise UserError(f"lip sync: cannot pass the audio through AAC and MP3 as the original does ({e}); "
                        "--lipsync_frames memory scores it without") from None


def full_range(frame: av.VideoFrame) -> av.VideoFrame:
    """yuv420p (limited range) -> yuvj420p with libswscale's integer formulas (FFmpeg <= 7; 8.x
    rounds chroma differently): what ffmpeg's auto-inserted scaler feeds its MJPEG encoder."""
    x = frame.to_ndarray().astype(np.int64)
    h = frame.height
    y, c = x[:h], x[h:]
    y = ((np.minimum(y << 7, 30189) * 19077 - 39057361) >> 14) + 64 >> 7
    c = ((np.minimum(c << 7, 30775) * 4663 - 9289992) >> 12) + 64 >> 7
    out = np.clip(np.concatenate([y, c]), 0, 255).astype(np.uint8)
    return av.VideoFrame.from_ndarray(out, format="yuvj420p")


def _encoder(name: str, width: int, height: int, pix_fmt: str, qscale: int | None) -> av.CodecContext:
    enc = av.CodecContext.create(name, "w")
    enc.width, enc.height, enc.pix_fmt = width, height, pix_fmt
    enc.time_base, enc.framerate = Fraction(1, SYNC_FPS), Fraction(SYNC_FPS)
    enc.thread_count = 1  # the CLI's -threads 1; more threads mean slices, i.e. other pictures
    if qscale is not None:
        enc.qscale = True
        enc.global_quality = qscale * FF_QP2LAMBDA
    return enc


def _encode_all(enc: av.CodecContext, frames) -> list[av.Packet]:
    packets: list[av.Packet] = []
    for j, f in enumerate(frames):
        f.pts, f.time_base = j, enc.time_base
        packets.extend(enc.encode(f))
    packets.extend(enc.encode(None))
    return packets


def mpeg4_25fps(path: str | Path) -> list[av.VideoFrame]:
    """Step 1: the video at 25 fps through MPEG-4 at quantiser 2, decoded (yuv420p frames)."""
    try:
        with av.open(str(path)) as c:
            stream = c.streams.video[0]
            frames = [f.reformat(format="yuv420p") if f.format.name != "yuv420p" else f for f in c.decode(stream)]
    except av.error.FFmpegError as e:
        raise UserError(f"{path}: decoding failed for lip sync ({e})") from None
    if not frames:
        return []
    tb = float(frames[0].time_base)
    t0 = frames[0].pts
    pts = np.array([(f.pts - t0) * tb for f in frames])
    dur = np.array([f.duration * tb if f.duration else np.nan for f in frames])
    dur = np.where(np.isnan(dur), 1.0 / float(stream.average_rate or 30), dur)
    chosen = [frames[i] for i in avi_25fps_indices(pts, dur)]
    enc = _encoder("mpeg4", chosen[0].width, chosen[0].height, "yuv420p", qscale=2)
    packets = _encode_all(enc, [av.VideoFrame.from_ndarray(f.to_ndarray(), format="yuv420p") for f in chosen])
    return _decode_all("mpeg4", packets)


def _decode_all(codec: str, packets: list[av.Packet]) -> list[av.VideoFrame]:
    dec = av.CodecContext.create(codec, "r")
    out: list[av.VideoFrame] = []
    for p in packets:
        out.extend(dec.decode(p))
    out.extend(dec.decode(None))
    return out


def jpeg_frames(frames: list[av.VideoFrame], qscale: int | None) -> np.ndarray:
    """Steps 2 and 4: MJPEG (fixed quantiser, or ffmpeg's default 200 kb/s rate control when
    None) then ``cv2.imdecode``: (T,H,W,3) uint8 BGR."""
    if not frames:
        return np.zeros((0, 0, 0, 3), np.uint8)
    enc = _encoder("mjpeg", frames[0].width, frames[0].height, "yuvj420p", qscale)
    packets = _encode_all(enc, [full_range(f) for f in frames])
    return np.stack([cv2.imdecode(np.frombuffer(bytes(p), np.uint8), cv2.IMREAD_COLOR) for p in packets])


def original_frames(path: str | Path, audio_sr: int) -> np.ndarray:
    """Steps 1-2: the frames syncnet_python detects faces on and crops from, (T,H,W,3) BGR at 25 fps,
    for a video muxed with a GT wav at ``audio_sr`` Hz."""
    return repeat_like_image2(jpeg_frames(mpeg4_25fps(path), qscale=2), aac_mux_gap(audio_sr))


def original_crops(crops_bgr: np.ndarray) -> np.ndarray:
    """Steps 3-4: face crops (T,224,224,3) BGR -> what SyncNet reads after the XVID crop video
    and ffmpeg's default-quality JPEG extraction, (T,224,224,3) BGR."""
    if crops_bgr.ndim != 4 or crops_bgr.shape[1:] != (224, 224, 3):
        raise ValueError(f"crops must be (T,224,224,3), got {crops_bgr.shape}")
    with tempfile.TemporaryDirectory(prefix="vico_lipsync_") as tmp:
        avi = str(Path(tmp) / "crop.avi")
        writer = cv2.VideoWriter(avi, cv2.VideoWriter_fourcc(*"XVID"), SYNC_FPS, (224, 224))
        if not writer.isOpened():
            raise UserError("lip sync: this OpenCV cannot write XVID video (no FFmpeg backend); "
                            "pip install opencv-python-headless, or use --lipsync_frames memory")
        for f in crops_bgr:
            writer.write(np.ascontiguousarray(f))
        writer.release()
        with av.open(avi) as c:
            frames = [f if f.format.name == "yuv420p" else f.reformat(format="yuv420p") for f in c.decode(video=0)]
    if len(frames) != len(crops_bgr):
        raise UserError(f"lip sync: the XVID crop video has {len(frames)} frames, {len(crops_bgr)} were written")
    return jpeg_frames(frames, qscale=None)
