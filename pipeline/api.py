"""Python API of generation: talking heads and listening heads with the models loaded once.

    from pipeline.api import TalkingHead, ListeningHead

    talk = TalkingHead("runs/speaker/checkpoints/latest", weights_dir="weights", device="auto")
    talk.generate("speech.wav", "face.jpg", "out/talking.mp4")         # -> Path of the video
    listen = ListeningHead("runs/listener/checkpoints/latest", weights_dir="weights")
    listen.generate("speaker.mp4", "listener.jpg", "out/listening.mp4", audio="speech.wav")

Each object loads its models (reconstruction, vico, PIRender) when it is made and keeps them for
every ``generate`` call; the steps are those of ``python -m pipeline.generate`` (pipeline.engine),
so the video is the same as the command line's. Errors are :class:`common.io.UserError` (or
:class:`common.media.MediaError`) with one line naming the file and the problem.
"""
from __future__ import annotations

import os
from pathlib import Path

from common.weights import resolve_weights
from common.weights import weights_dir as default_weights_dir
from pipeline.engine import Engine
from pipeline.generate import (PIRENDER_WEIGHTS, RECON_WEIGHTS, GenerateConfig, generate, recorded_feature_set,
                               resolve, resolve_stats)

PathLike = str | os.PathLike


def _path(p: PathLike | None) -> Path | None:
    return None if p is None else Path(p).expanduser().resolve()


class _Head:
    task = ""

    def __init__(self, checkpoint: PathLike, weights_dir: PathLike | None = None, device: str = "auto", *,
                 stats: PathLike | None = None, recon_checkpoint: PathLike | None = None,
                 pirender_checkpoint: PathLike | None = None, engine: Engine | None = None):
        """``checkpoint``: the vico checkpoint of this task (a file, a run's checkpoints folder or
        its ``latest``); ``weights_dir``: the released weights folder (default $VICO_WEIGHTS_DIR or
        weights/); ``stats``: the features folder the model was trained with (default: recorded in
        the training run); ``engine``: share the models of another head (one process, one copy)."""
        self.checkpoint = _path(checkpoint)
        if not self.checkpoint.exists():
            from common.io import UserError

            raise UserError(f"{self.checkpoint}: vico checkpoint not found")
        root = _path(weights_dir) or default_weights_dir().resolve()
        self.weights_dir = root
        self.recon_checkpoint = resolve_weights(RECON_WEIGHTS, _path(recon_checkpoint), root, "recon_checkpoint=")
        self.pirender_checkpoint = resolve_weights(PIRENDER_WEIGHTS, _path(pirender_checkpoint), root,
                                                   "pirender_checkpoint=")
        self.stats = resolve_stats(self.checkpoint, _path(stats))
        self.feature_set = recorded_feature_set(self.stats) or "vico45"
        self.device = device
        self.engine = engine or Engine(self.recon_checkpoint, self.pirender_checkpoint, device)
        self.engine.load_all({self.task: self.checkpoint})  # the device, the task and the files, now
        self.last: dict | None = None  # the summary of the last video (as OUT.json)

    def _run(self, out: PathLike, work_dir: PathLike | None, record: PathLike | None, **inputs) -> Path:
        cfg = GenerateConfig(task=self.task, out=_path(out), checkpoint=self.checkpoint,
                             work_dir=_path(work_dir), weights_dir=self.weights_dir,
                             recon_checkpoint=self.recon_checkpoint, pirender_checkpoint=self.pirender_checkpoint,
                             stats=self.stats, feature_set=self.feature_set, device=self.device,
                             clean=work_dir is None, record=_path(record),
                             **{k: _path(v) for k, v in inputs.items()})
        self.last = generate(resolve(cfg), self.engine)
        return cfg.out


class TalkingHead(_Head):
    """A face image speaks the given speech (the speaker model)."""

    task = "speaker"

    def generate(self, audio: PathLike, first_frame: PathLike, out: PathLike, *, work_dir: PathLike | None = None,
                 record: PathLike | None = None) -> Path:
        """Write ``out`` (.mp4, 256x256, 30 fps, round(audio seconds x 30) frames, the speech muxed
        in) and OUT.json beside it (or at ``record``); returns ``out``. The work folder is removed
        afterwards unless ``work_dir`` is given."""
        return self._run(out, work_dir, record, audio=audio, image=first_frame)


class ListeningHead(_Head):
    """A listener image reacts to a speaker video (the listener model)."""

    task = "listener"

    def generate(self, speaker_video: PathLike, first_frame: PathLike, out: PathLike, audio: PathLike | None = None,
                 *, work_dir: PathLike | None = None, record: PathLike | None = None) -> Path:
        """Write ``out`` with the speaker video's frame count; the speech is ``audio`` if given, else
        the speaker video's own sound track. Returns ``out``."""
        return self._run(out, work_dir, record, speaker_video=speaker_video, listener_image=first_frame,
                         audio=audio)
