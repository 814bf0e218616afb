"""Batched generation in one process: each model is built and loaded once, clips go through it one
after the other.

The engine runs the same eight steps as ``pipeline.generate`` always did (validate, landmarks,
recon, audio_features, rearrange, motion, lmdb, render) on a one-clip work folder, but in this
process, through each stage's public Python API (``STAGE/api.py``: the functions its command line
calls), with the landmark backend, the reconstruction network, the vico models and the PIRender
generator kept in memory between clips. Each step's log goes to ``<work>/logs/<step>.log`` as
before; a failed step raises :class:`pipeline.runner.StepFailed` naming that log.

Work folder of one clip (written by the caller, e.g. ``pipeline.generate.build_dataset``)::

    data/videos/<uuid>.{speaker,listener}.mp4, data/audios/<uuid>.wav, data/test.csv
    recon_inputs/<uuid>.<role>.{png,mp4}    what the 3DMM coefficients are computed from
    features/{audio,video}_feats_mean_std.bin
"""
from __future__ import annotations

import logging
import time
import traceback
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import torch

from common import artifacts
from common.dataset import clip_name
from common.dist import DistInfo, configure_threads, pick_device
from common.io import UserError
from common.media import MediaError
from common.weights import is_smoke
from pipeline.runner import StepFailed

log = logging.getLogger("pipeline.engine")

STEPS = ("validate", "landmarks", "recon", "audio_features", "rearrange", "motion", "lmdb", "render")
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


@dataclass
class ClipJob:
    """One clip to generate in its own work folder (see the module docstring)."""

    work: Path
    uuid: str
    task: str                    # speaker (talking head) or listener (listening head)
    checkpoint: Path             # vico checkpoint of ``task``
    feature_set: str = "vico45"  # audio features the model was trained on
    still_roles: tuple[str, ...] = ()  # roles filmed as one photo (their features are held)


@contextmanager
def _step_log(logfile: Path) -> Iterator[None]:
    """Send every log record of this process to ``logfile`` (only) while the step runs."""
    logfile.parent.mkdir(parents=True, exist_ok=True)
    root = logging.getLogger()
    saved, level = root.handlers[:], root.level
    handler = logging.FileHandler(logfile, mode="w")
    handler.setFormatter(logging.Formatter(LOG_FORMAT, datefmt="%H:%M:%S"))
    root.handlers[:] = [handler]
    root.setLevel(min(level, logging.INFO) if level else logging.INFO)
    try:
        yield
    finally:
        handler.close()
        root.handlers[:] = saved
        root.setLevel(level)


class Engine:
    """The models of batched generation, loaded once per process (lazily, on first use).

    ``Engine(recon_checkpoint, pirender_checkpoint, device).run_clip(job)`` runs the eight steps of
    one clip in this process. ``device``: auto, cpu, cuda or cuda:N (checked here, once).
    """

    def __init__(self, recon_checkpoint: Path, pirender_checkpoint: Path, device: str = "auto",
                 local_rank: int = 0):
        self.device = pick_device(None if device == "auto" else device, local_rank)
        configure_threads()  # the stage command lines' thread policy ($OMP_NUM_THREADS, else the CPUs)
        self.info = DistInfo(device=self.device)  # each clip alone: no sharding inside the steps
        self.recon_checkpoint = Path(recon_checkpoint)
        self.pirender_checkpoint = Path(pirender_checkpoint)
        self._backend = self._recon = self._generator = None
        self._vico: dict[tuple[Path, str], tuple] = {}
        self.load_seconds: dict[str, float] = {}
        self.quiet = False  # step lines at debug level (batch jobs log one line per clip)

    # -- the models, each loaded once -------------------------------------------------------------
    def smoke_weights(self) -> list[str]:
        """The weights files in use that are smoke-test stand-ins (fill-rule weights)."""
        return [str(p) for p in (self.recon_checkpoint, self.pirender_checkpoint) if is_smoke(p)]

    def _timed(self, what: str, load: Callable):
        t0 = time.time()
        obj = load()
        self.load_seconds[what] = self.load_seconds.get(what, 0.0) + round(time.time() - t0, 3)
        return obj

    def landmark_backend(self):
        if self._backend is None:
            from Deep3DFaceRecon_pytorch.api import load_landmark_backend

            self._backend = self._timed("landmarks", lambda: load_landmark_backend("dlib"))
        return self._backend

    def recon_net(self):
        if self._recon is None:
            from Deep3DFaceRecon_pytorch.api import load_recon_model

            self._recon = self._timed("recon", lambda: load_recon_model(str(self.recon_checkpoint), self.device))
        return self._recon

    def generator(self):
        if self._generator is None:
            from PIRender.api import load_generator

            self._generator = self._timed("pirender", lambda: load_generator(self.pirender_checkpoint, self.device))
        return self._generator

    def vico_model(self, checkpoint: Path, task: str) -> tuple:
        """(model, config, meta, path) of a vico checkpoint; checks that it holds ``task``'s model."""
        key = (Path(checkpoint), task)
        if key not in self._vico:
            from vico.api import load_eval_model

            self._vico[key] = self._timed("vico", lambda: load_eval_model(str(checkpoint), task, None, self.device))
        return self._vico[key]

    def load_all(self, checkpoints: dict[str, Path]) -> None:
        """Load every model now (a bad file fails before any clip); ``checkpoints``: task -> vico file."""
        for task, ck in checkpoints.items():
            self.vico_model(ck, task)
        self.landmark_backend()
        self.recon_net()
        self.generator()

    # -- one clip -----------------------------------------------------------------------------------
    def _steps(self, job: ClipJob) -> list[tuple[str, str, Callable[[], int]]]:
        from common.dataset import validate
        from Deep3DFaceRecon_pytorch.api import (AUTO_BATCH, KeypointConfig, ReconConfig, extract_keypoints,
                                                 reconstruct)
        from PIRender.api import InferenceConfig, PrepareConfig, prepare, render
        from preprocess.api import (ExtractAudioConfig, RearrangeConfig, extract_audio_features,
                                    rearrange_recon_coeffs)
        from vico.api import eval_parser, generate

        w, data, feats = job.work, job.work / "data", job.work / "features"
        info = self.info

        def validate_step() -> int:
            problems = validate(data, data / "test.csv")
            for p in problems:
                log.error("%s", p)
            return 1 if problems else 0

        def landmarks() -> int:
            cfg = KeypointConfig(str(w / "recon_inputs"), str(w / "keypoints"))
            return _finish(extract_keypoints(cfg, DistInfo(), backend=self.landmark_backend()))

        def recon() -> int:
            cfg = ReconConfig(str(w / "recon_inputs"), str(w / "keypoints"), str(w / "recons"),
                              checkpoint=str(self.recon_checkpoint), device=str(self.device),
                              batch_size=AUTO_BATCH.get(self.device.type, 1))
            return _finish(reconstruct(cfg, info, self.recon_net()))

        def audio() -> int:
            return extract_audio_features(ExtractAudioConfig(
                input_audio_folder=str(data / "audios"), output_folder=str(feats / artifacts.AUDIO_FEATS_DIR),
                video_folder=str(data / "videos"), feature_set=job.feature_set))

        def rearrange() -> int:
            return rearrange_recon_coeffs(RearrangeConfig(str(w / "recons"), str(feats / artifacts.VIDEO_FEATS_DIR)))

        def motion() -> int:
            args = eval_parser().parse_args([
                "--task", job.task, "--data", str(data), "--features", str(feats), "--resume", str(job.checkpoint),
                "--output_path", str(w / "generated"), "--split_csv", str(data / "test.csv"), "--batch_size", "1",
                "--device", str(self.device), *(["--still_roles", *job.still_roles] if job.still_roles else [])])
            return generate(args, info, self.vico_model(job.checkpoint, job.task))

        def lmdb() -> int:
            report = prepare(PrepareConfig(str(data / "videos"), str(w / "generated" / "recon_coeffs"),
                                           str(w / "vox_lmdb"), n_worker=1))
            report.write()
            return report.exit_code()

        def render_step() -> int:
            cfg = InferenceConfig(input=str(w / "vox_lmdb"), output_dir=str(w / "rendered"),
                                  checkpoint=str(self.pirender_checkpoint), device=str(self.device),
                                  audio_dir=str(data / "audios"), names=(clip_name(job.uuid, job.task),))
            torch.set_flush_denormal(True)  # as the PIRender CLI: subnormals are slow on CPUs
            try:
                with torch.no_grad():
                    return render(cfg, info, self.generator())
            finally:
                torch.set_flush_denormal(False)

        return [
            ("validate", "check the one-clip dataset", validate_step),
            ("landmarks", "68-point landmarks", landmarks),
            ("recon", "257-d 3DMM coefficients", recon),
            ("audio_features", f"{job.feature_set} audio features per video frame", audio),
            ("rearrange", "coefficients re-split for vico", rearrange),
            ("motion", f"{job.task} motion from the trained model", motion),
            ("lmdb", "pack the reference frames and the motion", lmdb),
            ("render", "render the frames, mux the speech", render_step),
        ]

    def run_clip(self, job: ClipJob, quiet: bool = False) -> list[dict]:
        """Run the eight steps on ``job.work``; returns one record per step (name, status, seconds).
        Raises StepFailed (the step, its exit status, its log file) at the first failing step."""
        steps = self._steps(job)
        quiet = quiet or self.quiet
        results = []
        for i, (name, description, fn) in enumerate(steps, 1):
            logfile = job.work / "logs" / f"{name}.log"
            (log.debug if quiet else log.info)("[%d/%d] %s: %s", i, len(steps), name, description)
            t0 = time.time()
            code, error = 0, None
            with _step_log(logfile):
                try:
                    code = int(fn() or 0)
                except (UserError, MediaError) as e:
                    code, error = 2, f"error: {e}"
                except Exception:  # noqa: BLE001 - the step's failure, named with its log
                    code, error = 1, traceback.format_exc()
            if error is not None:
                with logfile.open("a") as f:
                    f.write(error.rstrip("\n") + "\n")
            seconds = round(time.time() - t0, 2)
            if code != 0:
                raise StepFailed(name, code, logfile)
            (log.debug if quiet else log.info)("    done in %.1f s", seconds)
            results.append({"step": name, "status": "done", "seconds": seconds})
        return results


def _finish(report) -> int:
    """A stage report of this process written as its CLI does; its exit status."""
    report.write()
    return report.exit_code()
