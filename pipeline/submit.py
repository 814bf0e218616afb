"""ViCo challenge submission: generate every clip of a released validation or test folder and zip
the results; or check a submission.

Input (the released layout): DATA/audios/<uuid>.wav, DATA/videos/<uuid>.speaker.mp4 (listening
track), DATA/first_frames/<uuid>.{speaker,listener}.jpg, DATA/ref_images/<person_id>.jpg and one
csv (video_id, uuid, speaker_id, listener_id). For every uuid of the csv, in one process with each
model loaded once (pipeline.engine): the 3DMM coefficients of the first frame (and of the speaker
video for the listening head), the audio features of audios/<uuid>.wav, the motion from the trained
vico model, PIRender frames with the first frame as the reference, the speech muxed in. Talking
heads have round(audio seconds x 30) frames, listening heads the speaker video's. The reference
images (ref_images/) are not used: the first frame already shows the person and is what the
baseline conditions on.

Output: OUT/talkinghead_test_results/<uuid>.speaker.mp4, OUT/listeninghead_test_results/
<uuid>.listener.mp4, one zip per track OUT/zips/{talking_head,listening_head}/TEAM_N.zip with the
result folder at the zip's root, OUT/run.json (per-clip failures), OUT/records/<name>.json (each
clip's settings and step times). Finished clips are skipped on a re-run (outputs are atomic);
under torchrun the clips are sharded over the processes and rank 0 writes the zips.

With --evaluate (the validation folder, which keeps the ground-truth videos) the same command then
scores both tracks as the leaderboard: 3DMM coefficients of the ground truth and of the results
(Deep3DFaceRecon_pytorch), every metric (evaluation.evaluate --metrics all) and the leaderboard
table (evaluation.score --rule num_top1), in OUT/eval/ (steps logged in OUT/eval/logs/).
"""
from __future__ import annotations

import logging
import re
import shutil
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Sequence

from common.cli import parser
from common.dataset import Clip, audio_path, clip_name, read_index, video_path
from common.dist import barrier, cleanup, finish_report, init_dist, shard
from common.io import RunReport, UserError, atomic_path, is_complete, run_cli, setup_logging
from common.media import FPS, MediaError, iter_frames, load_audio, probe_video
from pipeline.runner import Runner, Step, StepFailed

log = logging.getLogger("pipeline.submit")

SIZE = 256
TRACKS = {  # task -> (result folder, zip folder under OUT/zips)
    "speaker": ("talkinghead_test_results", "talking_head"),
    "listener": ("listeninghead_test_results", "listening_head"),
}
ZIP_NAME = re.compile(r"(?P<team>.+)_(?P<n>\d+)\.zip")

EXAMPLES = """examples:
  # validation: both tracks, scored against the kept ground truth (OUT/eval/scores_<task>.md)
  python -m pipeline.submit --data data/challenge_val --task both --team myteam --out outputs/val \\
      --speaker_checkpoint runs/speaker/checkpoints/latest --listener_checkpoint runs/listener/checkpoints/latest \\
      --evaluate
  # test: generate and zip, then check the zips
  python -m pipeline.submit --data data/challenge_test --task both --team myteam --out outputs/test \\
      --speaker_checkpoint runs/speaker/checkpoints/latest --listener_checkpoint runs/listener/checkpoints/latest
  python -m pipeline.submit --check outputs/test/zips/talking_head/myteam_1.zip --data data/challenge_test
  # 4 GPUs: the clips are shared out, rank 0 zips
  torchrun --nproc_per_node 4 -m pipeline.submit --data data/challenge_test --task speaker --team myteam \\
      --out outputs/test --speaker_checkpoint runs/speaker/checkpoints/latest --device cuda
"""


# ---------------------------------------------------------------------------------------------
# The released layout
# ---------------------------------------------------------------------------------------------

def find_csv(data: Path, csv: Path | None) -> Path:
    """The split's csv: ``csv`` (relative to DATA unless absolute), else the one csv in DATA."""
    if csv is not None:
        p = csv if csv.is_absolute() else data / csv
        if not p.is_file():
            raise UserError(f"{p}: csv not found (--csv)")
        return p
    found = sorted(data.glob("*.csv"))
    if len(found) != 1:
        what = "no csv" if not found else f"{len(found)} csv files ({', '.join(f.name for f in found)})"
        raise UserError(f"{data}: {what}; pass --csv NAME (the split's csv: video_id, uuid, speaker_id, listener_id)")
    return found[0]


def first_frame(data: Path, uuid: str, role: str) -> Path:
    return data / "first_frames" / f"{clip_name(uuid, role)}.jpg"


def expected_frames(data: Path, uuid: str, task: str) -> int:
    """round(audio seconds x 30) for a talking head; the speaker video's frames for a listening head."""
    if task == "speaker":
        samples, sr = load_audio(audio_path(data, uuid))
        return int(round(len(samples) / sr * FPS))
    return probe_video(video_path(data, uuid, "speaker")).n_frames


# ---------------------------------------------------------------------------------------------
# Checking a submission
# ---------------------------------------------------------------------------------------------

def _count_frames(path: Path) -> int:
    return sum(len(b) for b in iter_frames(path, batch_size=32))


def check_folder(folder: Path, task: str, data: Path, clips: Sequence[Clip], shown: str | None = None) -> list[str]:
    """Problems of one result folder: missing, extra or misnamed files, undecodable videos, fps,
    size and frame count (one line each). ``shown``: how the folder is named in the lines."""
    shown = shown or str(folder)
    role = task
    expected = {f"{clip_name(c.uuid, role)}.mp4": c for c in clips}
    problems = []
    present = sorted(folder.iterdir()) if folder.is_dir() else []
    for p in present:
        if p.name not in expected:
            kind = "a folder" if p.is_dir() else "not one of the split's videos"
            problems.append(f"{shown}/{p.name}: unexpected ({kind}; expected names <uuid>.{role}.mp4 for the "
                            f"uuids of the csv)")
    names = {p.name for p in present}
    for name, clip in expected.items():
        if name not in names:
            problems.append(f"{shown}/{name}: missing (uuid {clip.uuid})")
            continue
        path = folder / name
        try:
            info = probe_video(path)
            n = _count_frames(path)
        except (MediaError, UserError) as e:
            problems.append(f"{shown}/{name}: not a decodable mp4 ({str(e).split(': ', 1)[-1]})")
            continue
        if abs(info.fps - FPS) > 0.01:
            problems.append(f"{shown}/{name}: {info.fps:g} fps, expected {FPS}")
        if (info.width, info.height) != (SIZE, SIZE):
            problems.append(f"{shown}/{name}: {info.width}x{info.height}, expected {SIZE}x{SIZE}")
        try:
            want = expected_frames(data, clip.uuid, task)
        except (MediaError, UserError) as e:
            problems.append(f"{shown}/{name}: cannot tell the expected frame count ({e})")
            continue
        if n != want:
            src = "round(audio seconds x 30)" if task == "speaker" else "the speaker video's"
            problems.append(f"{shown}/{name}: {n} frames, expected {want} ({src})")
    return problems


def check_submission(target: Path, data: Path, csv: Path | None = None) -> tuple[list[str], int]:
    """Problems of a submission zip, a result folder or a folder holding result folders; returns
    (problem lines, number of videos expected)."""
    clips = read_index(find_csv(data, csv))
    folders = {v[0]: k for k, v in TRACKS.items()}
    if target.is_file():
        if not ZIP_NAME.fullmatch(target.name):
            return [f"{target}: the name must be TEAM_N.zip (team name, underscore, submission number)"], 0
        if not zipfile.is_zipfile(target):
            return [f"{target}: not a zip file"], 0
        with zipfile.ZipFile(target) as z:
            names = [n for n in z.namelist() if not n.endswith("/")]
            roots = {n.split("/", 1)[0] for n in z.namelist()}
            problems = []
            loose = [n for n in names if "/" not in n]
            if loose:
                problems.append(f"{target}: {len(loose)} file(s) at the zip's root ({loose[0]}, ...); the videos "
                                f"must be inside {' or '.join(folders)}/")
            known = sorted(roots & set(folders))
            if len(known) != 1 or roots - set(folders) - set(loose):
                problems.append(f"{target}: the zip's root must hold exactly one folder, {' or '.join(folders)} "
                                f"(found: {', '.join(sorted(roots)) or 'nothing'})")
            if not known:
                return problems, 0
            root = known[0]
            deep = [n for n in names if n.startswith(root + "/") and n.count("/") > 1]
            if deep:
                problems.append(f"{target}: {deep[0]}: nested folders are not allowed")
            with tempfile.TemporaryDirectory() as tmp:
                for n in names:
                    if n.startswith(root + "/") and n.count("/") == 1:
                        z.extract(n, tmp)
                Path(tmp, root).mkdir(exist_ok=True)
                problems += check_folder(Path(tmp) / root, folders[root], data, clips, f"{target.name}:{root}")
            return problems, len(clips)
    if not target.is_dir():
        return [f"{target}: not found"], 0
    if target.name in folders:
        return check_folder(target, folders[target.name], data, clips), len(clips)
    inside = [target / f for f in folders if (target / f).is_dir()]
    if not inside:
        return [f"{target}: holds neither {' nor '.join(folders)}"], 0
    problems = []
    for f in inside:
        problems += check_folder(f, folders[f.name], data, clips)
    return problems, len(clips) * len(inside)


# ---------------------------------------------------------------------------------------------
# Generating a submission
# ---------------------------------------------------------------------------------------------

def write_zip(folder: Path, clips: Sequence[Clip], task: str, dest: Path) -> Path:
    """``dest`` (atomic) holding ``<folder name>/<uuid>.<role>.mp4`` for every clip, stored as is."""
    with atomic_path(dest) as tmp:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as z:
            z.write(folder, folder.name)
            for c in clips:
                name = f"{clip_name(c.uuid, task)}.mp4"
                z.write(folder / name, f"{folder.name}/{name}")
    return dest


def make_heads(args, device: str) -> dict:
    """task -> TalkingHead / ListeningHead, sharing one engine (each model loaded once)."""
    from pipeline.api import ListeningHead, TalkingHead

    tasks = ["speaker", "listener"] if args.task == "both" else [args.task]
    heads: dict = {}
    engine = None
    for task in tasks:
        ckpt = args.speaker_checkpoint if task == "speaker" else args.listener_checkpoint
        stats = args.speaker_stats if task == "speaker" else args.listener_stats
        if ckpt is None:
            raise UserError(f"--task {args.task} needs --{task}_checkpoint")
        cls = TalkingHead if task == "speaker" else ListeningHead
        heads[task] = cls(ckpt, args.weights_dir, device, stats=stats, recon_checkpoint=args.recon_checkpoint,
                          pirender_checkpoint=args.pirender_checkpoint, engine=engine)
        engine = heads[task].engine
    engine.quiet = True
    return heads


def generate_all(args) -> int:
    data, out = args.data.resolve(), args.out.resolve()
    csv = find_csv(data, args.csv)
    clips = read_index(csv)
    if not clips:
        raise UserError(f"{csv}: no clips")
    if args.submission < 1:
        raise UserError(f"--submission must be >= 1, got {args.submission}")
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", args.team):
        raise UserError(f"--team {args.team!r}: use letters, digits, '.', '-' or '_' (it names the zip)")
    info = init_dist(None if args.device == "auto" else args.device)
    try:
        tasks = ["speaker", "listener"] if args.task == "both" else [args.task]
        for task in tasks:
            if getattr(args, f"{task}_checkpoint") is None:
                raise UserError(f"--task {args.task} needs --{task}_checkpoint")
        if args.evaluate:
            check_ground_truth(data, clips, tasks)
        report = RunReport("pipeline.submit", {**vars(args), "csv": str(csv), "world_size": info.world_size}, out)
        todo = []
        for task in tasks:
            for c in shard(clips, info):
                name = clip_name(c.uuid, task)
                if is_complete(out / TRACKS[task][0] / f"{name}.mp4") and not args.overwrite:
                    report.skip(name)
                else:
                    todo.append((task, c))
        # every check (device, checkpoints and their tasks, weights) before the first clip; the
        # models are loaded only when there is work
        heads = make_heads(args, str(info.device)) if todo else {}
        smoke = next(iter(heads.values())).engine.smoke_weights() if heads else []
        report.config["smoke_test_weights"] = smoke
        if smoke and info.is_main:
            log.warning("smoke-test weights (%s): the videos show no real face; not a real submission",
                        ", ".join(smoke))
        log.info("%d video(s) to generate, %d already done", len(todo), len(report.skipped))
        t_start = time.time()
        for i, (task, c) in enumerate(todo, 1):
            name = clip_name(c.uuid, task)
            dest = out / TRACKS[task][0] / f"{name}.mp4"
            work = out / "work" / name
            t0 = time.time()
            try:
                if task == "speaker":
                    heads[task].generate(audio_path(data, c.uuid), first_frame(data, c.uuid, "speaker"), dest,
                                         work_dir=work, record=out / "records" / f"{name}.json")
                else:
                    heads[task].generate(video_path(data, c.uuid, "speaker"), first_frame(data, c.uuid, "listener"),
                                         dest, audio=audio_path(data, c.uuid), work_dir=work,
                                         record=out / "records" / f"{name}.json")
            except (UserError, MediaError) as e:
                log.error("%s: %s", name, e)
                report.fail(name, e)
                continue
            if not args.keep_work:
                shutil.rmtree(work, ignore_errors=True)
            report.ok(name, [dest])
            log.info("[%d/%d] %s: %.1f s", i, len(todo), name, time.time() - t0)
        report.config["seconds"] = round(time.time() - t_start, 2)
        report.config["model_load_seconds"] = next(iter(heads.values())).engine.load_seconds if heads else {}
        code = finish_report(report, info)
        barrier(info)
        if info.is_main:
            if code:
                log.error("some clips failed (see %s): no zip written; fix them and run again", out / "run.json")
            else:
                for task in tasks:
                    folder = out / TRACKS[task][0]
                    dest = out / "zips" / TRACKS[task][1] / f"{args.team}_{args.submission}.zip"
                    write_zip(folder, clips, task, dest)
                    log.info("wrote %s (%d videos)", dest, len(clips))
                if args.evaluate:  # rank 0 only; under torchrun other ranks' clips may be new: start over
                    code = evaluate_validation(args, data, out, csv, tasks, bool(todo) or info.world_size > 1)
        return code
    finally:
        cleanup(info)


# ---------------------------------------------------------------------------------------------
# Validation scores (--evaluate)
# ---------------------------------------------------------------------------------------------

def check_ground_truth(data: Path, clips: Sequence[Clip], tasks: Sequence[str]) -> None:
    """--evaluate needs every clip's ground-truth video of each track (the validation folder)."""
    for task in tasks:
        for c in clips:
            gt = video_path(data, c.uuid, task)
            if not gt.is_file():
                raise UserError(f"{gt}: ground-truth video not found; --evaluate needs the validation folder "
                                "(the test folder keeps no ground truth)")


def validation_steps(args, data: Path, out: Path, csv: Path, tasks: Sequence[str]) -> list[Step]:
    """The stage commands that score the result folders against DATA/videos, into OUT/eval."""
    ev = out / "eval"
    ckpt = ["--checkpoint", args.recon_checkpoint] if args.recon_checkpoint else []
    wd = ["--weights_dir", args.weights_dir] if args.weights_dir else []
    env = {"VICO_WEIGHTS_DIR": str(args.weights_dir)} if args.weights_dir else {}
    steps = [
        Step("gt_landmarks", "Deep3DFaceRecon_pytorch.extract_kp_videos",
             ["--input_dir", data / "videos", "--output_dir", ev / "gt_keypoints"], "landmarks of the ground truth"),
        Step("gt_recon", "Deep3DFaceRecon_pytorch.face_recon_videos",
             ["--input_dir", data / "videos", "--keypoint_dir", ev / "gt_keypoints", "--output_dir", ev / "gt_recons",
              *ckpt], "3DMM coefficients of the ground truth", env=env),
    ]
    for task in tasks:
        results = out / TRACKS[task][0]
        sync = ["--gt_audio_folder", data / "audios"] if task == "speaker" else []
        steps += [
            Step(f"landmarks_{task}", "Deep3DFaceRecon_pytorch.extract_kp_videos",
                 ["--input_dir", results, "--output_dir", ev / f"{task}_keypoints", "--max_no_face_fraction", 1],
                 f"landmarks of the {task} results"),
            Step(f"recon_{task}", "Deep3DFaceRecon_pytorch.face_recon_videos",
                 ["--input_dir", results, "--keypoint_dir", ev / f"{task}_keypoints", "--output_dir",
                  ev / f"{task}_recons", *ckpt, "--allow_no_face"],
                 f"3DMM coefficients of the {task} results (every video scored, as the original)", env=env),
            Step(f"metrics_{task}", "evaluation.evaluate",
                 ["--gt_video_folder", data / "videos", "--pd_video_folder", results, "--anno_file", csv,
                  "--task", task, "--metrics", "all", *sync, "--gt_coeff_folder", ev / "gt_recons",
                  "--pd_coeff_folder", ev / f"{task}_recons", *wd, "--overwrite",
                  "--run_record", f"metrics_{task}", "--output", ev / f"{task}.json"],
                 f"every metric of the {task} results"),
            Step(f"score_{task}", "evaluation.score",
                 [ev / f"{task}.json", "--names", args.team, "--rule", "num_top1", "--task", task,
                  "--output", ev / f"scores_{task}.md", "--json", ev / f"scores_{task}.json"],
                 f"the {task} track's leaderboard columns"),
        ]
    return steps


def evaluate_validation(args, data: Path, out: Path, csv: Path, tasks: Sequence[str], regenerated: bool) -> int:
    """Run ``validation_steps``; steps on results that were (re)generated in this run start over."""
    steps = validation_steps(args, data, out, csv, tasks)
    runner = Runner(out / "eval", steps)
    if regenerated:  # results changed: their coefficients and scores are stale
        for task in tasks:
            for folder in (f"{task}_keypoints", f"{task}_recons"):
                shutil.rmtree(out / "eval" / folder, ignore_errors=True)
        for step in steps:
            if not step.name.startswith("gt_"):
                runner.done_marker(step).unlink(missing_ok=True)
    try:
        runner.run(steps)
    except StepFailed as e:
        log.error("%s", e)
        return 1
    for task in tasks:
        log.info("%s track: %s", task, out / "eval" / f"scores_{task}.md")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    ap = parser("pipeline.submit", __doc__, EXAMPLES)
    ap.add_argument("--data", type=Path, required=True, help="released validation or test folder")
    ap.add_argument("--csv", type=Path, default=None, help="the split's csv (default: the one *.csv in DATA)")
    ap.add_argument("--check", type=Path, default=None, metavar="ZIP_OR_DIR",
                    help="only check a submission zip, a result folder or OUT; one line per problem, exit 1 if any")
    ap.add_argument("--task", choices=["speaker", "listener", "both"], default="both",
                    help="speaker: talking heads; listener: listening heads")
    ap.add_argument("--speaker_checkpoint", type=Path, default=None, help="vico speaker checkpoint")
    ap.add_argument("--listener_checkpoint", type=Path, default=None, help="vico listener checkpoint")
    ap.add_argument("--speaker_stats", type=Path, default=None, metavar="FEATURES_DIR",
                    help="features folder of the speaker model's mean/std (default: recorded in its training run)")
    ap.add_argument("--listener_stats", type=Path, default=None, metavar="FEATURES_DIR",
                    help="the same for the listener model")
    ap.add_argument("--team", default=None, help="team name: the zips are TEAM_N.zip")
    ap.add_argument("--submission", type=int, default=1, help="N of TEAM_N.zip")
    ap.add_argument("--out", type=Path, default=None, help="output folder (result folders, zips, run.json)")
    ap.add_argument("--weights_dir", type=Path, default=None,
                    help="released weights folder (default: $VICO_WEIGHTS_DIR or weights/ in the repository)")
    ap.add_argument("--recon_checkpoint", type=Path, default=None, help="Deep3DFaceRecon epoch_20.pth")
    ap.add_argument("--pirender_checkpoint", type=Path, default=None, help="PIRender face checkpoint")
    ap.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (under torchrun: each rank's GPU)")
    ap.add_argument("--evaluate", action="store_true",
                    help="validation folder: then score both tracks against its ground truth (OUT/eval/)")
    ap.add_argument("--keep_work", action="store_true", help="keep each clip's work folder (OUT/work/<name>)")
    ap.add_argument("--overwrite", action="store_true", help="regenerate clips whose video exists")
    ap.add_argument("--verbose", action="store_true", help="debug logging")
    args = ap.parse_args(argv)
    setup_logging(args.verbose)
    if not args.data.is_dir():
        raise UserError(f"{args.data}: data folder not found (--data)")
    if args.check is not None:
        problems, n = check_submission(args.check, args.data, args.csv)
        for p in problems:
            print(p, flush=True)
        if problems:
            log.error("%s: %d problem(s)", args.check, len(problems))
            return 1
        log.info("%s: valid (%d videos checked)", args.check, n)
        return 0
    if args.team is None or args.out is None:
        raise UserError("give --team NAME and --out DIR (or --check ZIP_OR_DIR)")
    return generate_all(args)


if __name__ == "__main__":
    run_cli(main)
