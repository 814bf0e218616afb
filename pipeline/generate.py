"""Generate a talking head or a listening head video from one still image.

Talking head (the speaker task): a face photo and a speech recording give a video of that face
speaking, with the speech as its sound track. Listening head (the listener task): a video of a
speaker (its motion, and its speech: the video's audio track, or a separate file given with
--audio) and a photo of the listener give a video of that listener reacting to the speaker, with
the speaker's speech as its sound track.

A tiny one-clip dataset in the ViCo layout is built in a work folder and every stage runs in this
process through its public Python API (pipeline.engine; each model loaded once): landmarks and 3DMM coefficients of the photo (and of the
speaker video), audio features, vico motion with the trained checkpoint, PIRender frames with
the photo as the reference frame, muxed with the speech. The output has round(audio seconds x
30) frames at 256x256 (listening head: the speaker video's frames), H.264 with AAC audio; the
resolved settings are saved next to it as OUT.json.
"""
from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from common import artifacts
from common.cli import parser
from common.dataset import Clip, audio_path, clip_name, video_path, write_index
from common.io import (UserError, atomic_path, check_writable, config_to_dict, read_json, run_cli, setup_logging,
                       write_json_atomic)
from common.media import (FPS, MediaError, VideoWriter, check_clip, iter_frames, load_audio, load_audio_track,
                          probe_video, write_wav)
from pipeline.engine import ClipJob, Engine
from pipeline.runner import REPO, StepFailed

log = logging.getLogger("pipeline.generate")

EXAMPLES = """examples:
  # talking head: one face photo + speech (speaker model)
  python -m pipeline.generate --audio speech.wav --image face.png --out talking.mp4 \\
      --checkpoint runs/speaker/checkpoints/latest
  # listening head: a speaker video with sound + a photo of the listener (listener model)
  python -m pipeline.generate --speaker_video speaker.mp4 --listener_image face.png \\
      --out listening.mp4 --checkpoint runs/listener/checkpoints/latest
  # listening head, the speech in its own file (the challenge layout: videos have no sound)
  python -m pipeline.generate --speaker_video data/videos/UUID.speaker.mp4 --audio data/audios/UUID.wav \\
      --listener_image data/first_frames/UUID.listener.jpg --out listening.mp4 \\
      --checkpoint runs/listener/checkpoints/latest
  # the demo's models, statistics given explicitly, on a GPU
  python -m pipeline.generate --audio speech.wav --image face.png --out out/talking.mp4 \\
      --checkpoint outputs/demo/vico/speaker/checkpoints/latest --stats outputs/demo/features --device cuda

The work folder (default: <OUT stem>_work/ next to OUT) keeps the one-clip dataset, every
stage's output and logs/<step>.log; it is cleared at the start of each run.
"""

UUID = "generated"        # the one clip of the work dataset
SIZE = 256                # ViCo frames are 256x256
RECON_WEIGHTS = "deep3dfacerecon_reconnet_resnet50"
PIRENDER_WEIGHTS = "pirender_face_generator"
WORK_MARKER = ".pipeline_generate"
SILENCE_PEAK = 1.0 / 32768  # below one 16-bit step: the file holds no sound


@dataclass
class GenerateConfig:
    """Resolved settings of one run (saved as OUT.json). Paths are absolute."""

    task: str                              # speaker (talking head) or listener (listening head)
    out: Path
    checkpoint: Path                       # vico checkpoint of ``task``
    audio: Path | None = None              # the speech: speaker task, required; listener task, optional
                                           # (instead of the speaker video's own sound track)
    image: Path | None = None              # speaker task: the face
    speaker_video: Path | None = None      # listener task: speaker video (with its audio track unless audio)
    listener_image: Path | None = None     # listener task: the listener's face
    work_dir: Path | None = None           # default: <out stem>_work next to out
    weights_dir: Path | None = None        # default: $VICO_WEIGHTS_DIR or <repo>/weights
    recon_checkpoint: Path | None = None   # default: the registry place under weights_dir
    pirender_checkpoint: Path | None = None
    stats: Path | None = None              # folder with the mean/std files; default: the training run's
    feature_set: str | None = None         # audio features; default: as recorded with the statistics
    device: str = "auto"
    fps: int = FPS
    clean: bool = False                    # remove the work folder after success
    record: Path | None = None             # where OUT.json goes (default: beside OUT)

    @property
    def face(self) -> Path:
        return self.image if self.task == "speaker" else self.listener_image


# ---------------------------------------------------------------------------------------------
# Resolving the settings
# ---------------------------------------------------------------------------------------------

def _abs(p: str | os.PathLike | None) -> Path | None:
    return None if p is None else Path(p).expanduser().resolve()


def run_dir_of(checkpoint: Path) -> Path:
    """The vico training run folder of a checkpoint file, its ``latest`` pointer or a folder."""
    if checkpoint.is_dir():
        return checkpoint.parent if checkpoint.name == "checkpoints" else checkpoint
    return checkpoint.parent.parent if checkpoint.parent.name == "checkpoints" else checkpoint.parent


def resolve_stats(checkpoint: Path, stats: Path | None) -> Path:
    """The folder holding the mean/std files the model was trained with: ``stats`` if given, else
    the absolute features folder the checkpoint records (vico.train writes it); for checkpoints
    written before that, the features folder recorded in the training run's run.json."""
    need = " and ".join(artifacts.STATS_FILES)
    hint = f"pass --stats FEATURES_DIR (the features folder the model was trained on, holding {need})"
    if stats is not None:
        for f in artifacts.STATS_FILES:
            if not (stats / f).is_file():
                raise UserError(f"{stats / f}: not found (--stats must be the features folder holding {need})")
        return stats
    recorded = artifacts.checkpoint_features(checkpoint)
    if recorded is not None:
        if not artifacts.has_stats(recorded):
            raise UserError(f"{checkpoint}: the features folder it was trained on, {recorded}, no longer holds "
                            f"{need}; {hint}")
        return recorded
    run_json = run_dir_of(checkpoint) / "run.json"  # older checkpoints: the training run's record
    if not run_json.is_file():
        raise UserError(f"{checkpoint}: cannot tell which statistics it was trained with (no {run_json}); {hint}")
    train = (read_json(run_json).get("config") or {}).get("train") or {}
    if not isinstance(train, dict) or not (train.get("features") or train.get("data")):
        raise UserError(f"{run_json}: no training features folder recorded; {hint}")
    rel = Path(train["features"]) if train.get("features") else Path(train["data"]) / "features"
    tried = [rel] if rel.is_absolute() else [Path.cwd() / rel, REPO / rel, run_json.parent / rel]
    for cand in tried:
        if artifacts.has_stats(cand):
            return cand.resolve()
    raise UserError(f"{run_json}: the training features folder {rel} (holding {need}) is not found; {hint}")


def recorded_feature_set(stats: Path) -> str | None:
    """The audio feature set recorded with the training features (None when not recorded)."""
    d = artifacts.read_feature_set(stats / artifacts.AUDIO_FEATS_DIR)
    return d.get("feature_set") if isinstance(d, dict) else None


def resolve(cfg: GenerateConfig) -> GenerateConfig:
    """Check the inputs (one-line errors naming the file) and fill in every default."""
    if cfg.out.suffix.lower() != ".mp4":
        raise UserError(f"{cfg.out}: the output must be an .mp4 file")
    inputs = ((cfg.audio, "--audio"), (cfg.image, "--image")) if cfg.task == "speaker" else \
        ((cfg.speaker_video, "--speaker_video"), (cfg.listener_image, "--listener_image"),
         *([(cfg.audio, "--audio")] if cfg.audio is not None else []))
    for p, flag in inputs:
        if not p.is_file():
            raise UserError(f"{p}: file not found ({flag})")
    if not cfg.checkpoint.exists():
        raise UserError(f"{cfg.checkpoint}: vico checkpoint not found (--checkpoint)")
    if cfg.work_dir is None:
        cfg.work_dir = cfg.out.parent / f"{cfg.out.stem}_work"
    if cfg.work_dir == cfg.out.parent or cfg.work_dir in cfg.out.parents:
        raise UserError(f"{cfg.out}: the output must not be inside the work folder {cfg.work_dir} (it is cleared)")
    check_writable(cfg.out.parent)  # a read-only or missing output folder: one line before any work
    from common.weights import resolve_weights, weights_dir

    if cfg.weights_dir is None:
        cfg.weights_dir = weights_dir().resolve()
    cfg.recon_checkpoint = resolve_weights(RECON_WEIGHTS, cfg.recon_checkpoint, cfg.weights_dir,
                                           "--recon_checkpoint")
    cfg.pirender_checkpoint = resolve_weights(PIRENDER_WEIGHTS, cfg.pirender_checkpoint, cfg.weights_dir,
                                              "--pirender_checkpoint")
    cfg.stats = resolve_stats(cfg.checkpoint, cfg.stats)
    if cfg.feature_set is None:
        cfg.feature_set = recorded_feature_set(cfg.stats) or "vico45"
    return cfg


# ---------------------------------------------------------------------------------------------
# The one-clip work dataset
# ---------------------------------------------------------------------------------------------

def to_square(frame: np.ndarray, size: int = SIZE) -> np.ndarray:
    """(H, W, 3) uint8 -> (size, size, 3): centre-cropped to a square, resized (Lanczos)."""
    from PIL import Image

    h, w = frame.shape[:2]
    if (h, w) == (size, size):
        return frame
    s = min(h, w)
    y0, x0 = (h - s) // 2, (w - s) // 2
    im = Image.fromarray(np.ascontiguousarray(frame[y0:y0 + s, x0:x0 + s]))
    return np.asarray(im.resize((size, size), Image.LANCZOS))


def read_face(path: Path) -> np.ndarray:
    """The face photo as 256x256 RGB uint8 (MediaError naming the file when unreadable)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            rgb = np.asarray(im.convert("RGB"))
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise MediaError(f"{path}: cannot read as an image ({' '.join(str(e).split())})") from None
    if min(rgb.shape[:2]) < 32:
        raise MediaError(f"{path}: image is {rgb.shape[1]}x{rgb.shape[0]}, too small for a face")
    return to_square(rgb)


def write_still_video(path: Path, frame: np.ndarray, n: int, fps: int) -> None:
    """``frame`` repeated ``n`` times as an H.264 video (PIRender's reference frames)."""
    batch = np.repeat(frame[None], min(n, 30), axis=0)
    with VideoWriter(path, fps=fps) as w:
        for start in range(0, n, len(batch)):
            w.write(batch[: n - start])


def copy_video_square(src: Path, dst: Path, fps: int) -> int:
    """Re-encode ``src`` at 256x256 (centre-cropped, resized) without its sound; returns frames."""
    with VideoWriter(dst, fps=fps) as w:
        for batch in iter_frames(src, batch_size=32):
            w.write(np.stack([to_square(f) for f in batch]))
    return w.n_frames


def _check_sound(samples: np.ndarray, path: Path) -> None:
    peak = float(np.max(np.abs(samples)))
    if not np.isfinite(peak):
        raise MediaError(f"{path}: audio contains NaN or infinite samples")
    if peak < SILENCE_PEAK:
        raise MediaError(f"{path}: audio is silent (peak {peak:.2e})")


def _link_or_copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def prepare_work_dir(work: Path) -> None:
    """Start from an empty work folder; refuse to clear a folder that is not ours."""
    marker = work / WORK_MARKER
    if work.exists():
        if not work.is_dir():
            raise UserError(f"{work}: exists and is not a folder (--work_dir)")
        if any(work.iterdir()) and not marker.is_file():
            raise UserError(f"{work}: exists and is not a pipeline.generate work folder; "
                            "pass another --work_dir or remove it")
        shutil.rmtree(work)
    work.mkdir(parents=True)
    marker.write_text("created by python -m pipeline.generate; cleared by each run\n")


@dataclass
class Inputs:
    """The user's inputs, read and checked before anything is written."""

    face: np.ndarray      # (256, 256, 3) uint8
    samples: np.ndarray   # speech, float64 mono
    sr: int
    source: Path          # where the speech comes from


def read_inputs(cfg: GenerateConfig) -> Inputs:
    """Read the photo and the speech; MediaError naming the file for a bad one."""
    face = read_face(cfg.face)
    if cfg.task == "speaker":
        samples, sr = load_audio(cfg.audio)
        source = cfg.audio
        if round(len(samples) / sr * cfg.fps) < 2:
            raise MediaError(f"{source}: audio lasts {len(samples) / sr:.3f} s, shorter than two video "
                             f"frames at {cfg.fps} fps")
    else:
        info = check_clip(cfg.speaker_video, size=None)  # constant 30 fps; any size (cropped below)
        if info.n_frames < 2:
            raise MediaError(f"{cfg.speaker_video}: {info.n_frames} frame(s); at least two are needed")
        # the speech: the video's own track, or a separate file (the challenge's audios/<uuid>.wav)
        source = cfg.audio or cfg.speaker_video
        samples, sr = load_audio(cfg.audio) if cfg.audio is not None else load_audio_track(cfg.speaker_video)
    _check_sound(samples, source)
    return Inputs(face, samples, sr, source)


def build_dataset(cfg: GenerateConfig, inp: Inputs) -> dict:
    """Write the one-clip dataset into the work folder; returns its facts (frames, seconds).

    data/videos/<uuid>.{speaker,listener}.mp4   30 fps, 256x256 (a photo is repeated: reference frames)
    data/audios/<uuid>.wav                      the speech, cut or padded to the frames
    data/test.csv                               the one clip
    recon_inputs/<uuid>.<role>.{png,mp4}        what the 3DMM coefficients are computed from
    features/{audio,video}_feats_mean_std.bin   the training statistics
    """
    from PIL import Image

    work, data = cfg.work_dir, cfg.work_dir / "data"
    recon_in = work / "recon_inputs"
    recon_in.mkdir(parents=True)
    if cfg.task == "speaker":
        n = int(round(len(inp.samples) / inp.sr * cfg.fps))
        write_still_video(video_path(data, UUID, "speaker"), inp.face, n, cfg.fps)
        # the listener does not drive the speaker model: the same still face stands in
        _link_or_copy(video_path(data, UUID, "speaker"), video_path(data, UUID, "listener"))
        for r in ("speaker", "listener"):
            Image.fromarray(inp.face).save(recon_in / f"{clip_name(UUID, r)}.png")
    else:
        n = copy_video_square(cfg.speaker_video, video_path(data, UUID, "speaker"), cfg.fps)
        short = n / cfg.fps - len(inp.samples) / inp.sr
        if short > 0.5:
            log.warning("%s: the speech is %.2f s shorter than the video %s; padded with silence",
                        inp.source, short, cfg.speaker_video.name)
        write_still_video(video_path(data, UUID, "listener"), inp.face, n, cfg.fps)
        _link_or_copy(video_path(data, UUID, "speaker"), recon_in / f"{clip_name(UUID, 'speaker')}.mp4")
        Image.fromarray(inp.face).save(recon_in / f"{clip_name(UUID, 'listener')}.png")
    keep = int(round(n / cfg.fps * inp.sr))
    x = np.zeros(keep)
    x[: min(keep, len(inp.samples))] = inp.samples[:keep]
    write_wav(audio_path(data, UUID), x, inp.sr)
    write_index(data / "test.csv", [Clip(UUID, UUID, "", "")])
    feats = work / "features"
    feats.mkdir()
    for f in artifacts.STATS_FILES:
        shutil.copyfile(cfg.stats / f, feats / f)
    log.info("%s: %d frames (%.2f s at %d fps), face from %s, speech from %s", cfg.task, n, n / cfg.fps,
             cfg.fps, cfg.face.name, inp.source.name)
    return {"frames": n, "seconds": n / cfg.fps, "sample_rate": inp.sr}


# ---------------------------------------------------------------------------------------------
# The steps (pipeline.engine runs them in this process, each model loaded once)
# ---------------------------------------------------------------------------------------------

def make_engine(cfg: GenerateConfig) -> Engine:
    """The engine for ``cfg``, with every check done before the first step: the device, the vico
    checkpoint (readable, of ``cfg.task``) and the weights files; smoke-test weights are stated."""
    engine = Engine(cfg.recon_checkpoint, cfg.pirender_checkpoint, cfg.device)
    engine.load_all({cfg.task: cfg.checkpoint})
    for p in engine.smoke_weights():
        log.warning("%s: smoke-test weights (fill-rule values, not the released file): the video shows "
                    "no real face", p)
    return engine


def clip_job(cfg: GenerateConfig) -> ClipJob:
    still = ("speaker", "listener") if cfg.task == "speaker" else ("listener",)
    return ClipJob(cfg.work_dir, UUID, cfg.task, cfg.checkpoint, cfg.feature_set, still)


def stage_error(logfile: Path) -> str:
    """The most telling line of a failed stage's log: its 'error: ...' line, else its last
    ERROR record, else its last line."""
    try:
        lines = [ln.strip() for ln in logfile.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    for ln in reversed(lines):
        if ln.startswith("error: "):
            return ln[len("error: "):]
    for ln in reversed(lines):
        if " ERROR " in ln:
            return ln.split(": ", 1)[-1]
    return lines[-1] if lines else ""


def _inputs_of(cfg: GenerateConfig, step: str) -> str:
    """'input(s): ...; ' for the steps that read the work copies of the user's files."""
    files = {"landmarks": [cfg.face], "recon": [cfg.face], "audio_features": [cfg.audio or cfg.speaker_video]}
    if cfg.task == "listener":
        files["landmarks"] = files["recon"] = [cfg.speaker_video, cfg.listener_image]
    got = files.get(step)
    return f"work copies of {', '.join(map(str, got))}; " if got else ""


def generate(cfg: GenerateConfig, engine: Engine | None = None) -> dict:
    """Run everything; returns the summary written to OUT.json. ``engine``: models already loaded
    (the Python API and batch submission pass theirs), else one is made for this clip."""
    engine = engine or make_engine(cfg)
    inputs = read_inputs(cfg)
    prepare_work_dir(cfg.work_dir)
    facts = build_dataset(cfg, inputs)
    try:
        results = engine.run_clip(clip_job(cfg))
    except StepFailed as e:
        log.error("%s", e)  # the step, its log file and the log's last lines
        raise UserError(f"step '{e.step}' failed: {stage_error(e.logfile) or f'exit {e.code}'} "
                        f"({_inputs_of(cfg, e.step)}log: {e.logfile})") from None
    rendered = cfg.work_dir / "rendered" / f"{clip_name(UUID, cfg.task)}.mp4"
    info = probe_video(rendered)
    if info.n_frames != facts["frames"] or (info.width, info.height) != (SIZE, SIZE):
        raise UserError(f"{rendered}: {info.n_frames} frames of {info.width}x{info.height}, expected "
                        f"{facts['frames']} of {SIZE}x{SIZE}")
    with atomic_path(cfg.out) as tmp:
        shutil.copyfile(rendered, tmp)
    smoke = engine.smoke_weights()
    summary = {"config": config_to_dict(cfg),
               "weights": {"recon": str(cfg.recon_checkpoint), "pirender": str(cfg.pirender_checkpoint),
                           "smoke_test": smoke},
               "video": {"path": str(cfg.out), "frames": info.n_frames, "seconds": facts["seconds"],
                         "fps": cfg.fps, "width": info.width, "height": info.height},
               "steps": results}
    record = cfg.record or cfg.out.with_suffix(".json")
    write_json_atomic(record, summary)
    if cfg.clean:
        shutil.rmtree(cfg.work_dir)
    log.info("wrote %s (%d frames, %.2f s) and %s%s", cfg.out, info.n_frames, facts["seconds"],
             record.name, " (smoke-test weights: not a real face)" if smoke else "")
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    ap = parser("pipeline.generate", __doc__, EXAMPLES)
    g = ap.add_argument_group("talking head (speaker model): --audio and --image")
    g.add_argument("--audio", type=Path, default=None,
                   help="the speech (wav, flac, ogg, mp3; m4a/aac via PyAV; any rate, stereo averaged), muxed into "
                        "OUT. Talking head: what the face says (required; sets the length). Listening head "
                        "(optional): the speaker's speech, read from this file instead of the speaker video's sound "
                        "track (e.g. the challenge's audios/<uuid>.wav)")
    g.add_argument("--image", type=Path, default=None, help="face photo that speaks (png, jpg)")
    g = ap.add_argument_group("listening head (listener model): --speaker_video and --listener_image [--audio]")
    g.add_argument("--speaker_video", type=Path, default=None,
                   help="speaker video at 30 fps (mp4); its audio track is the speech unless --audio is given")
    g.add_argument("--listener_image", type=Path, default=None, help="face photo of the listener (png, jpg)")
    ap.add_argument("--out", type=Path, required=True, help="output video (.mp4); OUT.json is written beside it")
    ap.add_argument("--checkpoint", type=Path, required=True,
                    help="vico checkpoint of the matching task: epoch_NNN.pt, a run's checkpoints/ folder or "
                         "its 'latest' (vico.train), or an original Epoch_NNN.bin (then give --stats)")
    ap.add_argument("--stats", type=Path, default=None, metavar="FEATURES_DIR",
                    help="folder holding audio_feats_mean_std.bin and video_feats_mean_std.bin that the model "
                         "was trained with (default: the features folder the checkpoint records; older checkpoints: "
                         "the one in the training run's run.json)")
    ap.add_argument("--feature_set", default=None,
                    help="audio feature set (default: the one recorded in FEATURES_DIR/audio_feats, else vico45)")
    ap.add_argument("--weights_dir", type=Path, default=None,
                    help="released weights folder, same layout as the demo's (default: $VICO_WEIGHTS_DIR or "
                         "weights/ in the repository)")
    ap.add_argument("--recon_checkpoint", type=Path, default=None,
                    help="Deep3DFaceRecon epoch_20.pth (default: WEIGHTS_DIR/face_recon_feat0.2_augment/epoch_20.pth)")
    ap.add_argument("--pirender_checkpoint", type=Path, default=None,
                    help="PIRender face checkpoint (default: WEIGHTS_DIR/pirender/face/"
                         "epoch_00190_iteration_000400000_checkpoint.pt)")
    ap.add_argument("--work_dir", type=Path, default=None,
                    help="work folder, cleared at the start (default: <OUT stem>_work next to OUT)")
    ap.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (reconstruction, vico, PIRender)")
    ap.add_argument("--fps", type=int, default=FPS, choices=[FPS],
                    help="frame rate; the models and PIRender work at 30 fps only")
    ap.add_argument("--clean", action="store_true", help="remove the work folder after success")
    ap.add_argument("--verbose", action="store_true", help="debug logging")
    args = ap.parse_args(argv)
    setup_logging(args.verbose)
    talking = args.image is not None  # --audio belongs to both modes
    listening = args.speaker_video is not None or args.listener_image is not None
    if talking == listening or (talking and args.audio is None) or \
            (listening and (args.speaker_video is None or args.listener_image is None)):
        raise UserError("give either --audio and --image (talking head) or --speaker_video and "
                        "--listener_image, optionally with --audio (listening head)")
    cfg = GenerateConfig(
        task="speaker" if talking else "listener", out=_abs(args.out), checkpoint=_abs(args.checkpoint),
        audio=_abs(args.audio), image=_abs(args.image), speaker_video=_abs(args.speaker_video),
        listener_image=_abs(args.listener_image), work_dir=_abs(args.work_dir), weights_dir=_abs(args.weights_dir),
        recon_checkpoint=_abs(args.recon_checkpoint), pirender_checkpoint=_abs(args.pirender_checkpoint),
        stats=_abs(args.stats), feature_set=args.feature_set, device=args.device, fps=args.fps, clean=args.clean)
    generate(resolve(cfg))
    return 0


if __name__ == "__main__":
    run_cli(main)
