"""Training windows (spec 3.1), batching, and a sampler whose global batches do not depend on
the number of processes."""
from __future__ import annotations

import math
from typing import Iterator, Sequence

import torch
from torch.nn.utils.rnn import pad_sequence
from torch.utils.data import Dataset, Sampler

from .features import ClipFeatures

# task -> (role that is predicted, role that drives it)
ROLES_OF_TASK = {"listener": ("listener", "speaker"), "speaker": ("speaker", "listener")}


def make_windows(n: int, time_size: int) -> list[tuple[int, int]]:
    """The original windows of a clip of n frames: if n > time_size, one window per start frame
    0 .. n - time_size//3 (inclusive), each [i, min(i + time_size, n)); else the whole clip."""
    if n <= time_size:
        return [(0, n)]
    return [(i, min(i + time_size, n)) for i in range(n - time_size // 3 + 1)]


class WindowDataset(Dataset):
    """Windows over in-memory clips. Item: dict of tensors
    audio (T, A), driven (T, 73), init (73,), target (T-1, 73) and the window's name."""

    def __init__(self, clips: Sequence[ClipFeatures], task: str, time_size: int | None):
        if task not in ROLES_OF_TASK:
            raise ValueError(f"task must be one of {list(ROLES_OF_TASK)}")
        self.clips, self.task = list(clips), task
        self.role, self.driver = ROLES_OF_TASK[task]
        self.index: list[tuple[int, int, int]] = []
        for ci, c in enumerate(self.clips):
            wins = [(0, c.n_frames)] if time_size is None else make_windows(c.n_frames, time_size)
            self.index.extend((ci, s, e) for s, e in wins)

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int | tuple[int, float]) -> dict:
        """``i`` or ``(i, weight)``; weight 0 marks a sampler's padding duplicate (no loss)."""
        i, weight = i if isinstance(i, tuple) else (i, 1.0)
        ci, s, e = self.index[i]
        c = self.clips[ci]
        y = c.dyn[self.role]
        return {
            "audio": torch.from_numpy(c.audio[s:e]),
            "driven": torch.from_numpy(c.dyn[self.driver][s:e]),
            "init": torch.from_numpy(y[s]),
            "target": torch.from_numpy(y[s + 1:e]),
            "name": f"{c.uuid}[{s}:{e}]",
            "weight": weight,
        }


def collate(items: Sequence[dict]) -> dict:
    """Pad to the batch maximum: audio/driven (B, Tmax, .), target (B, Tmax-1, 73), init (B, 73),
    lengths (B,) int64 (frames per sample), weights (B,) float32 (0 = padding duplicate), names."""
    return {
        "audio": pad_sequence([it["audio"] for it in items], batch_first=True),
        "driven": pad_sequence([it["driven"] for it in items], batch_first=True),
        "init": torch.stack([it["init"] for it in items]),
        "target": pad_sequence([it["target"] for it in items], batch_first=True),
        "lengths": torch.tensor([len(it["audio"]) for it in items], dtype=torch.long),
        "weights": torch.tensor([it.get("weight", 1.0) for it in items], dtype=torch.float32),
        "names": [it["name"] for it in items],
    }


class GlobalBatchSampler(Sampler[list]):
    """Batch sampler for DDP whose *global* batches are the same for any number of processes.

    Like ``DistributedSampler(shuffle=True, seed)`` + ``set_epoch``: a permutation seeded by
    seed + epoch, padded by repetition to a multiple of the world size. Unlike it, the
    permutation is cut into global batches of ``batch_size * world_size`` consecutive indices
    and rank r takes the r-th per-rank slice of each, so a 2-process run with per-rank batch B
    sees exactly the samples of a 1-process run with batch 2B, step by step. Every rank gets the
    same number of non-empty batches. The padding duplicates are yielded as ``(index, 0.0)``
    so that the loss can ignore them (real samples are plain ints).
    """

    def __init__(self, n: int, batch_size: int, rank: int = 0, world_size: int = 1, seed: int = 0,
                 shuffle: bool = True):
        if n < 1 or batch_size < 1:
            raise ValueError("need at least one sample and batch_size >= 1")
        self.n, self.b, self.rank, self.world, self.seed, self.shuffle = n, batch_size, rank, world_size, seed, shuffle
        self.epoch = 0
        self.total = math.ceil(n / world_size) * world_size

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _order(self) -> list:
        if self.shuffle:
            g = torch.Generator()
            g.manual_seed(self.seed + self.epoch)
            order = torch.randperm(self.n, generator=g).tolist()
        else:
            order = list(range(self.n))
        pad = [(order[k % self.n], 0.0) for k in range(self.total - self.n)]
        return order + pad

    def __iter__(self) -> Iterator[list]:
        order = self._order()
        gb = self.b * self.world
        for start in range(0, self.total, gb):
            chunk = order[start:start + gb]
            per = len(chunk) // self.world  # the last global batch: an equal share per rank
            yield chunk[self.rank * per:(self.rank + 1) * per]

    def __len__(self) -> int:
        return math.ceil(self.total / (self.b * self.world))
