"""Video and audio I/O with PyAV (bundled FFmpeg, libx264, AAC) and soundfile.

Decoding streams in batches, so memory is constant in video length. Every writer is atomic.
All frames are RGB uint8, shaped (H, W, 3) or (B, H, W, 3).
"""
from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterable, Iterator

import av
import numpy as np
import soundfile as sf

from common.io import UserError, atomic_path

log = logging.getLogger(__name__)

FPS = 30  # ViCo videos are 30 fps (hard-coded upstream)
FPS_TOLERANCE = 0.01  # |fps - 30| above this is not 30 fps (30000/1001 = 29.97 is not)
CLIP_SIZE = 256  # ViCo frames are 256x256
VFR_TOLERANCE = 0.25  # a frame interval off the median by more than this fraction: variable rate
PREPARE_CMD = "python -m preprocess.prepare_videos"
AUDIO_EXTS = (".wav", ".flac", ".ogg", ".mp3", ".m4a", ".aac")  # what load_audio reads


class MediaError(UserError):
    """An unreadable, empty, truncated or otherwise unusable media file."""


@dataclass(frozen=True)
class VideoInfo:
    path: str
    width: int
    height: int
    fps: float
    n_frames: int
    vfr: bool = False  # frame intervals vary by more than VFR_TOLERANCE (variable frame rate)

    @property
    def duration(self) -> float:
        return self.n_frames / self.fps if self.fps else 0.0


def _open(path: str | os.PathLike, what: str = "a video") -> av.container.InputContainer:
    p = Path(path)
    if not p.is_file():
        raise MediaError(f"{p}: file not found")
    if p.stat().st_size == 0:
        raise MediaError(f"{p}: empty file")
    try:
        return av.open(str(p), "r")
    except (av.error.FFmpegError, UnicodeDecodeError) as e:
        raise MediaError(f"{p}: cannot open as {what} ({_reason(e)})") from None


def _reason(e: BaseException) -> str:
    return getattr(e, "strerror", None) or str(e).splitlines()[0]


def _video_stream(container, path) -> av.video.stream.VideoStream:
    if not container.streams.video:
        container.close()
        raise MediaError(f"{path}: no video stream")
    return container.streams.video[0]


def probe_video(path: str | os.PathLike) -> VideoInfo:
    """Size, frame rate, the exact frame count (counted from the demuxed packets) and whether the
    frame rate varies (packet timestamps, no decoding)."""
    with _open(path) as c:
        s = _video_stream(c, path)
        fps = float(s.average_rate or s.guessed_rate or 0) or float(FPS)
        pts: list[int] = []
        n = 0
        try:
            for pkt in c.demux(s):
                if pkt.size > 0:
                    n += 1
                    if pkt.pts is not None:
                        pts.append(int(pkt.pts))
        except av.error.FFmpegError as e:
            raise MediaError(f"{path}: corrupt video stream ({_reason(e)})") from None
        return VideoInfo(str(path), s.codec_context.width, s.codec_context.height, fps, n, _is_vfr(pts))


def _is_vfr(pts: list[int]) -> bool:
    """True when a frame interval (sorted timestamps) is off the median by > VFR_TOLERANCE of it."""
    if len(pts) < 3:
        return False
    d = np.diff(np.sort(np.asarray(pts, np.int64)))
    med = float(np.median(d))
    if med <= 0:
        return True
    return bool(np.abs(d - med).max() > VFR_TOLERANCE * med)


def clip_problem(info: VideoInfo, size: int | None = CLIP_SIZE) -> str | None:
    """One line naming what makes a video unfit for the pipeline (not 30 fps within FPS_TOLERANCE,
    a variable frame rate, or, when ``size`` is given, not size x size) and the fix; None if fit."""
    found = []
    if info.vfr:
        found.append(f"variable frame rate (average {info.fps:.3f} fps)")
    elif abs(info.fps - FPS) > FPS_TOLERANCE:
        found.append(f"{info.fps:.3f} fps")
    if size is not None and (info.width, info.height) != (size, size):
        found.append(f"{info.width}x{info.height} frames")
    if not found:
        return None
    need = f"constant {FPS} fps (within {FPS_TOLERANCE})" + (f", {size}x{size}" if size is not None else "")
    return f"{info.path}: {' and '.join(found)}, the pipeline needs {need}; convert it with {PREPARE_CMD}"


def check_clip(path: str | os.PathLike, size: int | None = CLIP_SIZE) -> VideoInfo:
    """probe_video, then MediaError (one line with the fix) unless the clip is constant 30 fps and,
    when ``size`` is given, size x size. Stages whose frames meet audio or coefficients call it
    with ``size=None``; stages that need 256x256 frames with the default."""
    info = probe_video(path)
    problem = clip_problem(info, size)
    if problem:
        raise MediaError(problem)
    return info


def iter_frames(path: str | os.PathLike, batch_size: int = 1) -> Iterator[np.ndarray]:
    """Decode a video as RGB uint8 batches (B, H, W, 3), B <= batch_size; streaming.

    A file that stops decoding midway raises MediaError naming the frame; a video with no
    decodable frame raises MediaError too.
    """
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    n = 0
    buf: list[np.ndarray] = []
    with _open(path) as c:
        s = _video_stream(c, path)
        s.thread_type = "AUTO"
        try:
            for frame in c.decode(s):
                buf.append(frame.to_ndarray(format="rgb24"))
                n += 1
                if len(buf) == batch_size:
                    yield np.stack(buf)
                    buf = []
        except av.error.FFmpegError as e:
            raise MediaError(f"{path}: decoding failed after {n} frames ({_reason(e)})") from None
    if buf:
        yield np.stack(buf)
    if n == 0:
        raise MediaError(f"{path}: no decodable video frames")


def iter_timed_frames(path: str | os.PathLike) -> Iterator[tuple[float, np.ndarray]]:
    """Decode a video as (presentation time in seconds, RGB uint8 (H, W, 3) frame), streaming.

    Times come from each frame's pts (variable frame rate kept); a frame without a pts gets the
    previous time plus one nominal frame interval. Frames are turned upright as the file's
    rotation metadata (phone videos) says. MediaError as ``iter_frames``.
    """
    n = 0
    t = None
    with _open(path) as c:
        s = _video_stream(c, path)
        s.thread_type = "AUTO"
        step = 1.0 / float(s.average_rate or s.guessed_rate or FPS)
        try:
            for frame in c.decode(s):
                t = float(frame.pts * frame.time_base) if frame.pts is not None and frame.time_base \
                    else (0.0 if t is None else t + step)
                n += 1
                img = frame.to_ndarray(format="rgb24")
                turns = int(round((frame.rotation or 0) / 90)) % 4  # display matrix, counter-clockwise
                yield t, (np.ascontiguousarray(np.rot90(img, turns)) if turns else img)
        except av.error.FFmpegError as e:
            raise MediaError(f"{path}: decoding failed after {n} frames ({_reason(e)})") from None
    if n == 0:
        raise MediaError(f"{path}: no decodable video frames")


def read_video(path: str | os.PathLike) -> np.ndarray:
    """The whole video as (N, H, W, 3) RGB uint8. Prefer iter_frames for long videos."""
    return np.concatenate(list(iter_frames(path, batch_size=64)), axis=0)


class VideoWriter:
    """Atomic H.264 (yuv420p) mp4 writer; optionally muxes a mono audio track (AAC).

    Identical frames give a byte-identical file when the width is a multiple of 128 (256x256
    ViCo frames are); at other widths uninitialised row padding was seen to reach the encoder.

    with VideoWriter("out.mp4", fps=30) as w:
        w.write(frames)            # (H, W, 3) or (B, H, W, 3) RGB uint8
    """

    def __init__(self, path: str | os.PathLike, fps: float = FPS, crf: int = 18,
                 audio: tuple[np.ndarray, int] | None = None, preset: str = "medium"):
        self.path = Path(path)
        self.fps = fps
        self.crf = crf
        self.preset = preset
        self.audio = audio
        self.n_frames = 0
        self._ctx = None
        self._tmp: Path | None = None
        self._container = None
        self._stream = None
        self._audio_stream = None

    def __enter__(self) -> "VideoWriter":
        self._ctx = atomic_path(self.path)
        self._tmp = self._ctx.__enter__()
        self._container = av.open(str(self._tmp), "w", format="mp4")
        return self

    def _start(self, h: int, w: int) -> None:
        if h % 2 or w % 2:
            raise MediaError(f"{self.path}: H.264 yuv420p needs even frame sizes, got {w}x{h}")
        rate = Fraction(self.fps).limit_denominator(1001)
        self._time_base = 1 / rate
        s = self._container.add_stream("libx264", rate=rate)
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        # Deterministic output for identical input: one encoder thread, no wall-clock metadata.
        s.options = {"crf": str(self.crf), "preset": self.preset, "threads": "1"}
        self._stream = s
        if self.audio is not None:
            self._audio_stream = _add_aac(self._container, int(self.audio[1]))

    def write(self, frames: np.ndarray) -> None:
        frames = np.asarray(frames)
        if frames.ndim == 3:
            frames = frames[None]
        if frames.ndim != 4 or frames.shape[-1] != 3:
            raise ValueError(f"expected (B,H,W,3) RGB frames, got {frames.shape}")
        if frames.dtype != np.uint8:
            raise ValueError(f"expected uint8 frames, got {frames.dtype}")
        if self._stream is None:
            self._start(frames.shape[1], frames.shape[2])
        elif frames.shape[1:3] != (self._stream.height, self._stream.width):
            raise ValueError(f"frame size changed to {frames.shape[1:3]}")
        for f in frames:
            vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="rgb24")
            # Colour conversion in one thread: threaded swscale made identical input encode
            # differently under load.
            vf = vf.reformat(format="yuv420p", threads=1)
            vf.pts, vf.time_base = self.n_frames, self._time_base
            self.n_frames += 1
            for pkt in self._stream.encode(vf):
                self._container.mux(pkt)

    def _write_audio(self) -> None:
        samples, sr = self.audio
        n_keep = int(round(self.n_frames / self.fps * sr))  # trim/pad to the video's duration
        x = np.zeros(n_keep, np.float32)
        x[: min(n_keep, len(samples))] = np.asarray(samples, np.float32)[:n_keep]
        _encode_aac(self._container, self._audio_stream, x, sr)

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is None:
                if self._stream is None:
                    raise MediaError(f"{self.path}: no frames were written")
                for pkt in self._stream.encode(None):
                    self._container.mux(pkt)
                if self.audio is not None:
                    self._write_audio()
            self._container.close()
        except BaseException as e:
            try:
                self._container.close()
            except Exception:  # already failing; the temporary file is removed below
                pass
            self._ctx.__exit__(type(e), e, e.__traceback__)
            raise
        self._ctx.__exit__(exc_type, exc, tb)


def _add_aac(container, sr: int, bit_rate: int = 128_000):
    """Add a mono AAC stream (streams must all exist before the first packet is muxed)."""
    a = container.add_stream("aac", rate=sr, layout="mono")
    a.bit_rate = bit_rate
    return a


def _encode_aac(container, a, x: np.ndarray, sr: int) -> None:
    """Encode mono float32 samples into the AAC stream ``a`` of an open output container."""
    chunk = 1024 * 16
    for start in range(0, len(x), chunk):
        seg = x[start:start + chunk][None, :]
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(seg), format="flt", layout="mono")
        frame.sample_rate = sr
        frame.pts = start
        frame.time_base = Fraction(1, sr)
        for pkt in a.encode(frame):
            container.mux(pkt)
    for pkt in a.encode(None):
        container.mux(pkt)


def write_video(path: str | os.PathLike, frames: Iterable[np.ndarray] | np.ndarray, fps: float = FPS,
                audio_path: str | os.PathLike | None = None, crf: int = 18) -> int:
    """Write frames (an array or an iterable of frames/batches) to H.264 mp4; returns frame count."""
    audio = load_audio(audio_path) if audio_path is not None else None
    with VideoWriter(path, fps=fps, crf=crf, audio=audio) as w:
        if isinstance(frames, np.ndarray):
            w.write(frames)
        else:
            for f in frames:
                w.write(f)
    return w.n_frames


def mux_audio(video_path: str | os.PathLike, wav_path: str | os.PathLike, out_path: str | os.PathLike) -> None:
    """Copy the video stream of ``video_path`` and add ``wav_path`` as AAC, trimmed/padded to the
    video's duration. ``out_path`` may equal ``video_path``."""
    info = probe_video(video_path)
    samples, sr = load_audio(wav_path)
    n_keep = int(round(info.n_frames / info.fps * sr))
    x = np.zeros(n_keep, np.float32)
    x[: min(n_keep, len(samples))] = samples[:n_keep]
    with _open(video_path) as src, atomic_path(out_path) as tmp:
        vin = _video_stream(src, video_path)
        with av.open(str(tmp), "w", format="mp4") as dst:
            vout = dst.add_stream_from_template(vin)
            aout = _add_aac(dst, sr)
            for pkt in src.demux(vin):
                if pkt.dts is None:
                    continue
                pkt.stream = vout
                dst.mux(pkt)
            _encode_aac(dst, aout, x, sr)


def audio_duration(path: str | os.PathLike) -> float:
    """Seconds of audio in a media file's first audio stream (0.0 when it has none)."""
    with _open(path) as c:
        if not c.streams.audio:
            return 0.0
        s = c.streams.audio[0]
        n = 0
        for frame in c.decode(s):
            n += frame.samples
        return n / s.rate


def load_audio_track(path: str | os.PathLike) -> tuple[np.ndarray, int]:
    """The first audio stream of a media file (e.g. the speech of an mp4) as float64 mono in
    [-1, 1] at the stream's rate; MediaError when there is none or it holds no samples."""
    with _open(path, "audio or video") as c:
        if not c.streams.audio:
            raise MediaError(f"{path}: no audio track")
        s = c.streams.audio[0]
        rate = int(s.rate or s.codec_context.sample_rate or 0)
        mono = av.AudioResampler(format="flt", layout="mono", rate=rate)
        chunks: list[np.ndarray] = []
        try:
            for frame in c.decode(s):
                chunks += [f.to_ndarray().reshape(-1) for f in mono.resample(frame)]
            chunks += [f.to_ndarray().reshape(-1) for f in mono.resample(None)]
        except av.error.FFmpegError as e:
            raise MediaError(f"{path}: audio decoding failed ({_reason(e)})") from None
    x = np.concatenate(chunks).astype(np.float64) if chunks else np.zeros(0)
    if x.size == 0:
        raise MediaError(f"{path}: audio track has no samples")
    return np.clip(x, -1.0, 1.0), rate


def load_audio(path: str | os.PathLike, sr: int | None = None) -> tuple[np.ndarray, int]:
    """Read a sound file as float64 mono in [-1, 1] (channels averaged); resample to ``sr`` if given.

    wav, flac, ogg and mp3 are read with soundfile; anything it cannot read (m4a, aac, ...) is
    decoded with PyAV (first audio stream); MediaError naming the file when neither can."""
    p = Path(path)
    if not p.is_file():
        raise MediaError(f"{p}: file not found")
    try:
        x, rate = sf.read(str(p), dtype="float64", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError) as e:
        try:
            x, rate = load_audio_track(p)
        except MediaError as e2:
            if "no audio track" in str(e2) or "no samples" in str(e2):
                raise
            raise MediaError(f"{p}: cannot read as audio ({_reason(e)})") from None
        x = x[:, None]
    if x.shape[0] == 0:
        raise MediaError(f"{p}: audio has no samples")
    x = x.mean(axis=1)
    if sr is not None and sr != rate:
        x = resample(x, rate, sr)
        rate = sr
    return x, int(rate)


def resample(x: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """Polyphase resampling (scipy.signal.resample_poly) between integer rates."""
    from scipy.signal import resample_poly  # imported on use: scipy.signal takes seconds to import

    g = math.gcd(int(sr_in), int(sr_out))
    return resample_poly(x, sr_out // g, sr_in // g)


def write_wav(path: str | os.PathLike, samples: np.ndarray, sr: int) -> None:
    """Write mono float samples in [-1, 1] as 16-bit PCM wav, atomically."""
    x = np.clip(np.asarray(samples, dtype=np.float64), -1.0, 1.0)
    with atomic_path(path) as tmp:
        sf.write(str(tmp), x, int(sr), subtype="PCM_16", format="WAV")


def pin_mmap_threshold(nbytes: int = 128 * 1024) -> bool:
    """Keep glibc from raising its mmap threshold, so that freed frame-sized buffers go back to
    the OS and peak memory stays flat over long videos (glibc otherwise moves them onto the heap,
    where fragmentation grows with video length). No-op off glibc; returns whether it applied."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.mallopt(-3, int(nbytes)))  # -3 = M_MMAP_THRESHOLD
    except (OSError, AttributeError):
        return False
