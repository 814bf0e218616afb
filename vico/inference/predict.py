"""Predict full-length clips and write them as Deep3DFaceRecon-layout .mat files (spec 3.5)."""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.nn as nn

from common.coeffs import vico_to_recon

from ..data.features import ClipFeatures, FeatureStats
from ..data.windows import ROLES_OF_TASK, WindowDataset, collate

FRAME_SIZE = 256  # the original writes W = H = 256 into transform_params


@torch.no_grad()
def predict_batch(model: nn.Module, clips: Sequence[ClipFeatures], task: str,
                  device: torch.device = torch.device("cpu")) -> list[np.ndarray]:
    """Normalised predictions, one (T-1, 73) float32 array per clip (row t = frame t+1)."""
    batch = collate([WindowDataset(clips, task, None)[i] for i in range(len(clips))])
    pred = model(batch["audio"].to(device), batch["driven"].to(device), batch["init"].to(device),
                 batch["lengths"])  # (B, Tmax, 73)
    pred = pred.float().cpu().numpy()
    return [pred[i, : c.n_frames - 1] for i, c in enumerate(clips)]


def to_recon(pred: np.ndarray, clip: ClipFeatures, task: str, stats: FeatureStats) -> tuple[np.ndarray, np.ndarray]:
    """As the original: de-normalise, prepend the ground-truth frame 0 of the predicted role, copy
    its ground-truth id/gamma/tex per frame -> (coeff (T, 257) float32, transform_params (T, 5)
    float64 = [256, 256, s, t0, t1])."""
    role = ROLES_OF_TASK[task][0]
    dyn = np.concatenate([clip.dyn_raw[role][:1], stats.denorm_dyn(pred)], axis=0)  # (T, 73)
    coeff, tp = vico_to_recon(dyn, clip.fixed[role], FRAME_SIZE, FRAME_SIZE)
    return coeff.astype(np.float32), tp.astype(np.float64)


