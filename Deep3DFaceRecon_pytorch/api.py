"""Public Python API of the reconstruction stage: the functions its command lines call.

Batched generation (pipeline.engine) builds the landmark backend and the network once and calls
these for clip after clip; nothing else of the stage is meant to be imported from outside.
"""
from __future__ import annotations

from common.faces import get_backend as load_landmark_backend

from .extract_kp_videos import KeypointConfig
from .extract_kp_videos import run as extract_keypoints
from .face_recon_videos import AUTO_BATCH, ReconConfig
from .face_recon_videos import load_model as load_recon_model
from .face_recon_videos import run as reconstruct

__all__ = ["AUTO_BATCH", "KeypointConfig", "ReconConfig", "extract_keypoints", "load_landmark_backend",
           "load_recon_model", "reconstruct"]
