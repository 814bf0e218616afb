"""Write a synthetic ViCo dataset: videos, audio, index csv(s) and per-clip ground truth."""
from __future__ import annotations

import csv
import io
import json
import logging
import string
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from common.progress import progress

from common.io import RunReport, UserError, atomic_path, is_complete, write_text_atomic
from common.synthetic.config import RELEASED, SyntheticConfig
from common.synthetic.audio import SpeechPlan, frame_rms, openness, plan_speech, synthesize, voiced_envelope
from common.synthetic.motion import FIELDS, listener_motion, speaker_motion
from common.synthetic.render import FaceRig, Identity, load_identities

log = logging.getLogger(__name__)

FULL_ANNO = "anno.csv"
FULL_COLUMNS = ("audio", "listener", "speaker", "data_split", "speaker_id", "listener_id", "attitude")
INDEX_COLUMNS = ("video_id", "uuid", "speaker_id", "listener_id")
ATTITUDES = ("positive", "neutral", "negative")
META_FORMAT = "vico-synthetic/1"
CONVENTIONS = (
    "Per-frame motion relative to the photo's rest pose. pitch/yaw/roll in radians, Deep3DFaceRecon "
    "convention: +pitch moves the nose down in the image, +yaw moves it to the image's right, +roll "
    "turns the head counter-clockwise on screen; roll, scale, tx, ty are exact (a similarity about "
    "'face_center'), yaw/pitch are 2-D approximations (depth-weighted shifts of inner-face points). "
    "tx, ty in output pixels (y down); scale relative to rest; blink 0 open .. 1 closed; mouth_open "
    "0 rest .. 1 widest. landmarks: the rig's true 68 points per frame, output pixels (x, y). "
    "audio.envelope: RMS of each frame's samples [i*spf, (i+1)*spf), spf = int(sr/fps).")


@dataclass
class PairNames:
    """Names of one speaker/listener pair's files in both layouts."""
    index: int
    video_id: str
    uuid: str
    audio: str      # full layout: stem of the wav, '<video_id>_<segment>_0'
    speaker: str    # full layout: stem of the speaker mp4
    listener: str   # full layout: stem of the listener mp4
    split: str
    speaker_person: int
    listener_person: int
    mirrored: bool
    attitude: str


def _rng(seed: int, *stream: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(seed), *stream]))


def pair_names(seed: int, pairs: int) -> list[PairNames]:
    """Deterministic names, identities and split of every pair.

    uuids: 12 chars [a-z0-9]. Video ids look like YouTube ids (11 chars, may contain '_' and '-');
    two consecutive pairs are two segments of one video. The last max(1, pairs // 4) pairs are the
    test split; a single pair is put in both splits so that every stage has input.
    """
    rng = _rng(seed, 7001)
    lower = np.array(list(string.ascii_lowercase + string.digits))
    yt = np.array(list(string.ascii_letters + string.digits + "_-"))
    n_test = max(1, pairs // 4) if pairs >= 2 else 0
    out: list[PairNames] = []
    uuids: set[str] = set()
    video_id = ""
    for i in range(pairs):
        if i % 2 == 0:
            video_id = str(rng.choice(yt[:62])) + "".join(rng.choice(yt, 10))
        uuid = "".join(rng.choice(lower, 12))
        while uuid in uuids:
            uuid = "".join(rng.choice(lower, 12))
        uuids.add(uuid)
        seg = 3 * (i % 2) + int(rng.integers(0, 3))
        stem = f"{video_id}_{seg}"
        split = "test" if i >= pairs - n_test else "train"
        out.append(PairNames(i, video_id, uuid, f"{stem}_0", f"{stem}_1", f"{stem}_2", split,
                             speaker_person=i % 2, listener_person=1 - i % 2, mirrored=(i // 2) % 2 == 1,
                             attitude=ATTITUDES[i % 3]))
    return out


def _outputs(cfg: SyntheticConfig, root: Path, p: PairNames) -> dict[str, Path]:
    if cfg.layout in RELEASED:
        outs = {"speaker": root / "videos" / f"{p.uuid}.speaker.mp4",
                "listener": root / "videos" / f"{p.uuid}.listener.mp4",
                "audio": root / "audios" / f"{p.uuid}.wav",
                "first_speaker": root / "first_frames" / f"{p.uuid}.speaker.jpg",
                "first_listener": root / "first_frames" / f"{p.uuid}.listener.jpg",
                "meta": root / "meta" / f"{p.uuid}.json"}
        if cfg.layout == "challenge_test":  # the expected listener video is not released
            outs["listener"] = root / ".gt_tmp" / f"{p.uuid}.listener.mp4"
        return outs
    if cfg.layout == "challenge":
        return {"speaker": root / "videos" / f"{p.uuid}.speaker.mp4",
                "listener": root / "videos" / f"{p.uuid}.listener.mp4",
                "audio": root / "audios" / f"{p.uuid}.wav",
                "meta": root / "meta" / f"{p.uuid}.json"}
    return {"speaker": root / "videos" / f"{p.speaker}.mp4",
            "listener": root / "videos" / f"{p.listener}.mp4",
            "audio": root / "audios" / f"{p.audio}.wav",
            "meta": root / "meta" / f"{p.audio}.json"}


def _settings(cfg: SyntheticConfig) -> dict:
    """The settings that determine a pair's files (recorded in its meta)."""
    return {"seed": cfg.seed, "frames": cfg.frames, "size": cfg.size, "fps": cfg.fps,
            "sample_rate": cfg.sample_rate, "crf": cfg.crf, "layout": cfg.layout, "format": META_FORMAT}


def _transient(cfg: SyntheticConfig) -> set[str]:
    """Outputs rendered only to be dropped (the test layout's ground-truth listener video)."""
    return {"listener"} if cfg.layout == "challenge_test" else set()


def _save_jpg(path: Path, frame: np.ndarray) -> None:
    from PIL import Image

    with atomic_path(path) as tmp:
        Image.fromarray(frame).save(tmp, format="JPEG", quality=95)


def _write_ref_images(cfg: SyntheticConfig, root: Path, names: list[PairNames], identities, backend) -> None:
    """ref_images/<person_id>.jpg: each person's photo at rest (no motion), once per person id."""
    for p in names:
        for role, person in (("speaker", p.speaker_person), ("listener", p.listener_person)):
            out = root / "ref_images" / f"{person}.jpg"
            if is_complete(out) and not cfg.overwrite:
                continue
            if p.mirrored not in identities:
                if backend is None:
                    from common.faces import get_backend

                    backend = get_backend("dlib")
                identities[p.mirrored] = load_identities(backend, mirrored=p.mirrored)
            rest = {k: 0.0 for k in FIELDS}
            rest["scale"] = 1.0
            frame, _ = FaceRig(identities[p.mirrored][person], cfg.size).render(rest)
            _save_jpg(out, frame)


def _is_current(cfg: SyntheticConfig, outs: dict[str, Path]) -> bool:
    """All files of the pair exist and its meta was written with the same settings."""
    if not all(is_complete(o) for k, o in outs.items() if k not in _transient(cfg)):
        return False
    try:
        return json.loads(outs["meta"].read_text()).get("settings") == _settings(cfg)
    except (ValueError, OSError):
        return False


def _csv_text(header: tuple[str, ...], rows: list[tuple]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows(rows)
    return buf.getvalue()


def _write_index(cfg: SyntheticConfig, root: Path, names: list[PairNames]) -> list[Path]:
    if cfg.layout in RELEASED:  # one csv with every pair: the released split
        path = root / f"{RELEASED[cfg.layout]}.csv"
        write_text_atomic(path, _csv_text(INDEX_COLUMNS, [(p.video_id, p.uuid, p.speaker_person,
                                                             p.listener_person) for p in names]))
        return [path]
    if cfg.layout == "full":
        rows = [(p.audio, p.listener, p.speaker, p.split, p.speaker_person, p.listener_person, p.attitude)
                for p in names]
        path = root / FULL_ANNO
        write_text_atomic(path, _csv_text(FULL_COLUMNS, rows))
        return [path]
    paths = []
    for split in ("train", "test"):
        chosen = [p for p in names if p.split == split or len(names) == 1]
        rows = [(p.video_id, p.uuid, p.speaker_person, p.listener_person) for p in chosen]
        path = root / f"{split}.csv"
        write_text_atomic(path, _csv_text(INDEX_COLUMNS, rows))
        paths.append(path)
    return paths


def _round(x: np.ndarray, nd: int) -> list:
    return np.round(np.asarray(x, dtype=np.float64), nd).tolist()


def _render_role(rig: FaceRig, motion: dict[str, np.ndarray], path: Path, cfg: SyntheticConfig,
                 first: Path | None = None) -> np.ndarray:
    """Render and encode one role's video; returns its true landmarks (N, 68, 2). ``first``: also
    write the video's decoded first frame there as JPEG (the released layouts' first_frames/)."""
    from common.media import VideoWriter, iter_frames

    lms = np.zeros((cfg.frames, 68, 2), np.float32)
    with VideoWriter(path, fps=cfg.fps, crf=cfg.crf) as w:
        for i in range(cfg.frames):
            frame, lms[i] = rig.render({k: float(motion[k][i]) for k in FIELDS})
            w.write(frame)
    if first is not None:  # as the data's first frame: decoded from the video, not the render
        _save_jpg(first, next(iter_frames(path))[0])
    return lms


def _meta(cfg: SyntheticConfig, p: PairNames, plan: SpeechPlan, samples_q: np.ndarray,
          ids: dict[str, Identity], rigs: dict[str, FaceRig], motions: dict, landmarks: dict) -> dict:
    n = cfg.frames
    t = (np.arange(n) + 0.5) / cfg.fps
    env = frame_rms(samples_q, cfg.sample_rate, cfg.fps, n)
    speaking = (voiced_envelope(plan, t) > 0.05).astype(int)
    roles = {}
    for role in ("speaker", "listener"):
        roles[role] = {
            "identity": ids[role].name,
            "person_id": ids[role].person_id,
            "face_center": _round(rigs[role].center, 3),
            "motion": {k: _round(motions[role][k], 6) for k in FIELDS},
            "landmarks": _round(landmarks[role], 2),
        }
    return {
        "format": META_FORMAT,
        "settings": _settings(cfg),
        "conventions": CONVENTIONS,
        "seed": cfg.seed,
        "pair_index": p.index,
        "uuid": p.uuid,
        "video_id": p.video_id,
        "full_names": {"audio": p.audio, "speaker": p.speaker, "listener": p.listener},
        "split": p.split,
        "n_frames": n,
        "fps": cfg.fps,
        "size": cfg.size,
        "sample_rate": cfg.sample_rate,
        "audio": {
            "f0": round(plan.f0, 3),
            "pauses": [[round(a, 4), round(b, 4)] for a, b in plan.pauses],
            "syllables": [[round(s.start, 4), round(s.end, 4), s.vowel] for s in plan.syllables],
            "envelope": _round(env, 6),
            "speaking": speaking.tolist(),
            "planned_openness": _round(openness(plan, t), 6),
        },
        "speaker": roles["speaker"],
        "listener": roles["listener"],
    }


def generate(out_dir: str | Path, pairs: int = 2, frames: int = 90, seed: int = 0, layout: str = "challenge",
             size: int = 256, fps: int = 30, sample_rate: int = 44100, overwrite: bool = False,
             crf: int = 18, backend=None) -> Path:
    """Generate a synthetic ViCo dataset under ``out_dir`` and return ``out_dir`` as a Path.

    Same arguments -> byte-identical files (run.json aside). Pairs whose files all exist are
    skipped unless ``overwrite``. ``backend``: a ``common.faces`` backend for the photos' landmarks
    (default dlib). Raises UserError on bad arguments or when a pair could not be written.
    """
    cfg = SyntheticConfig(str(out_dir), pairs, frames, seed, layout, size, fps, sample_rate, crf, overwrite)
    report = build(cfg, backend=backend)
    if report.failures:
        raise UserError(f"{out_dir}: {len(report.failures)} pair(s) failed: {report.failures[0]['reason']}")
    return Path(out_dir)


def build(cfg: SyntheticConfig, backend=None) -> RunReport:
    """Generate the dataset described by ``cfg``; returns the written run report."""
    from common.media import load_audio, write_wav

    cfg.validate()
    root = Path(cfg.out)
    root.mkdir(parents=True, exist_ok=True)
    report = RunReport("synthetic", cfg, root)
    names = pair_names(cfg.seed, cfg.pairs)
    identities: dict[bool, list[Identity]] = {}

    for p in progress(names, desc="synthetic pairs", unit="pair"):
        outs = _outputs(cfg, root, p)
        if not cfg.overwrite and _is_current(cfg, outs):
            report.skip(p.audio if cfg.layout == "full" else p.uuid)
            continue
        if p.mirrored not in identities:
            if backend is None:
                from common.faces import get_backend

                backend = get_backend("dlib")
            identities[p.mirrored] = load_identities(backend, mirrored=p.mirrored)
        ids = {"speaker": identities[p.mirrored][p.speaker_person],
               "listener": identities[p.mirrored][p.listener_person]}
        duration = cfg.frames / cfg.fps
        plan = plan_speech(duration, _rng(cfg.seed, p.index, 1))
        samples = synthesize(plan, cfg.sample_rate, _rng(cfg.seed, p.index, 2))
        motions = {"speaker": speaker_motion(plan, cfg.frames, cfg.fps, _rng(cfg.seed, p.index, 3)),
                   "listener": listener_motion(plan, cfg.frames, cfg.fps, _rng(cfg.seed, p.index, 4))}
        rigs = {role: FaceRig(ids[role], cfg.size) for role in ids}
        landmarks = {role: _render_role(rigs[role], motions[role], outs[role], cfg, outs.get(f"first_{role}"))
                     for role in rigs}
        for key in _transient(cfg):
            outs.pop(key).unlink()
        write_wav(outs["audio"], samples, cfg.sample_rate)
        samples_q, _ = load_audio(outs["audio"])  # the envelope of what the PCM16 file holds
        meta = _meta(cfg, p, plan, samples_q, ids, rigs, motions, landmarks)
        write_text_atomic(outs["meta"], json.dumps(meta, sort_keys=True, separators=(",", ":")) + "\n")
        report.ok(p.audio if cfg.layout == "full" else p.uuid, [str(o) for o in outs.values()])
    if cfg.layout in RELEASED:
        _write_ref_images(cfg, root, names, identities, backend)
        if (root / ".gt_tmp").is_dir() and not any((root / ".gt_tmp").iterdir()):
            (root / ".gt_tmp").rmdir()
    index = _write_index(cfg, root, names)
    log.info("synthetic %s dataset: %d pair(s) x %d frames in %s (index: %s)", cfg.layout, cfg.pairs,
             cfg.frames, root, ", ".join(x.name for x in index))
    report.write()
    return report
