"""Training pairs from the PIRender LMDB (upstream ``data/vox_dataset.py`` VoxDataset).

Each item picks one video and two frames of it uniformly at random (with replacement, as
upstream's ``random.choices``): source and target images in [-1, 1] and their 27-frame driving
windows. Randomness comes from ``default_rng([seed, epoch, index])``, so an epoch's pairs do not
depend on the number of workers or ranks and a resumed run sees the same data.
"""
from __future__ import annotations

import os

import numpy as np
import torch
from torch.utils.data import Dataset

from common.io import UserError
from PIRender.data.vox_lmdb import VoxLMDB, image_to_tensor_array
from PIRender.engine.render import driving_windows


class VoxTrainDataset(Dataset):
    def __init__(self, path: str | os.PathLike, resolution: int = 256, split: str = "all", repeat: int = 100,
                 semantic_radius: int = 13, seed: int = 0):
        self.path, self.resolution, self.split = str(path), resolution, split
        self.radius, self.seed, self.epoch = semantic_radius, seed, 0
        with VoxLMDB(path, resolution, split) as db:  # read the index once, in the main process
            self.videos = [(e.name, e.n_frames) for e in db.entries()]
            self.db_path = db.db_path
            if not self.videos:
                raise UserError(f"{db.db_path}: no videos to train on")
            first = db.frame(self.videos[0][0], 0)
        if first.shape[:2] != (resolution, resolution):
            raise UserError(f"{self.db_path}: frames are {first.shape[1]}x{first.shape[0]}, "
                            f"config data.resolution is {resolution}")
        self.repeat = max(1, int(repeat))
        self._db: VoxLMDB | None = None  # opened lazily in each worker process

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.videos) * self.repeat

    def _open(self) -> VoxLMDB:
        if self._db is None:
            self._db = VoxLMDB(self.path, self.resolution, self.split)
        return self._db

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        db = self._open()
        name, n = self.videos[index % len(self.videos)]
        rng = np.random.default_rng([self.seed, self.epoch, index])
        src, tgt = (int(i) for i in rng.integers(0, n, size=2))
        windows = driving_windows(db.coeffs(name), self.radius)  # (N, 73, 27)
        images = image_to_tensor_array(db.frames(name, [src, tgt]))  # (2, 3, H, W)
        return {
            "source_image": torch.from_numpy(images[0]),
            "target_image": torch.from_numpy(images[1]),
            "source_semantics": torch.from_numpy(windows[src]),
            "target_semantics": torch.from_numpy(windows[tgt]),
        }
