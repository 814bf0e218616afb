"""Batched rendering of one video: source frame + per-frame driving windows -> RGB frames."""
from __future__ import annotations

import contextlib
import logging
from typing import Iterator

import numpy as np
import torch

from common.coeffs import SEMANTIC_RADIUS, pirender_windows, recon_to_pirender
from PIRender.data.vox_lmdb import COEFF_DIM, image_to_tensor_array, tensor_to_uint8
from PIRender.models import FaceGenerator

log = logging.getLogger(__name__)


def driving_windows(coeff: np.ndarray, radius: int = SEMANTIC_RADIUS) -> np.ndarray:
    """LMDB coefficients (N, 260) = coeff 257 | s, t0, t1 -> driving windows (N, 73, 2r+1).

    Per frame: [exp 64, angle 3, trans 3, crop 3] of frames i-r..i+r clamped to [0, N-1]
    (upstream ``VoxVideoDataset.transform_semantic``), built with ``common.coeffs``.
    """
    coeff = np.asarray(coeff, dtype=np.float32)
    if coeff.ndim != 2 or coeff.shape[1] != COEFF_DIM:
        raise ValueError(f"coefficients must be (N, {COEFF_DIM}), got {coeff.shape}")
    n = coeff.shape[0]
    tp = np.concatenate([np.zeros((n, 2), np.float32), coeff[:, 257:260]], 1)  # W, H unused
    return pirender_windows(recon_to_pirender(coeff[:, :257], tp), radius).astype(np.float32)


class Renderer:
    """Runs the generator over a video's frames in batches.

    ``precision``: 'fp32', or 'bf16' (autocast; on CUDA only by default, see docs/pirender.md's
    measured tolerance). ``channels_last`` applies to CUDA.
    """

    def __init__(self, model: FaceGenerator, device: torch.device | str = "cpu", batch_size: int = 8,
                 precision: str = "fp32", channels_last: bool = False):
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        if precision not in ("fp32", "bf16"):
            raise ValueError(f"precision must be fp32 or bf16, got {precision!r}")
        self.device = torch.device(device)
        self.model = model.eval().to(self.device)
        self.batch_size = batch_size
        self.precision = precision
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        if channels_last:
            self.model.to(memory_format=torch.channels_last)

    def _autocast(self):
        if self.precision == "bf16":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    @torch.inference_mode()
    def render_tensors(self, source: torch.Tensor, windows: torch.Tensor) -> torch.Tensor:
        """source (B, 3, H, W) in [-1, 1], windows (B, 73, 27) -> fake images (B, 3, H, W) in [-1, 1]."""
        source = source.to(self.device, non_blocking=True).contiguous(memory_format=self.memory_format)
        windows = windows.to(self.device, non_blocking=True)
        with self._autocast():
            out = self.model(source, windows)["fake_image"]
        return out.float().clamp_(-1, 1)

    def render(self, source_rgb: np.ndarray, windows: np.ndarray) -> Iterator[np.ndarray]:
        """source_rgb (H, W, 3) uint8, windows (N, 73, 27) -> batches of RGB uint8 (B, H, W, 3)."""
        if source_rgb.ndim != 3 or source_rgb.shape[2] != 3:
            raise ValueError(f"source frame must be (H, W, 3), got {source_rgb.shape}")
        src = torch.from_numpy(image_to_tensor_array(source_rgb[None]))  # (1, 3, H, W)
        src = src.to(self.device)
        win = torch.from_numpy(np.ascontiguousarray(windows, dtype=np.float32))
        for start in range(0, win.shape[0], self.batch_size):
            w = win[start:start + self.batch_size]
            fake = self.render_tensors(src.expand(w.shape[0], -1, -1, -1), w)
            yield tensor_to_uint8(fake.cpu().numpy())
