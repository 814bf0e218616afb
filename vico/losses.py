"""The ViCo training loss (spec 3.3): per-group L2 distances and their temporal differences.

pred (B, Tmax, C) row t is trained against ground-truth frame t+1; target (B, Tmax-1, C) holds
frames 1..L-1 of each sample, zero-padded. Groups: angle 3 | exp 64 | trans 3 | crop 3.

Two means:
- ``'frames'`` (default): over real frames only (L-1 distance rows and L-2 difference rows per
  sample), so the loss scale does not depend on the batch's length mix;
- ``'padded'``: the original, over all B*Tmax (B*(Tmax-1)) rows, zero padding included.

Terms are returned as sums and row counts so that a distributed step can normalise by the
global count (exactly the single-process loss of the same global batch).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

GROUPS: tuple[tuple[str, int], ...] = (("angle", 3), ("exp", 64), ("trans", 3), ("crop", 3))
TERM_NAMES: tuple[str, ...] = tuple(n for g, _ in GROUPS for n in (f"loss_{g}", f"loss_{g}_spiky"))
DEFAULT_WEIGHTS: dict[str, float] = {
    "loss_angle": 1.0, "loss_angle_spiky": 1.0, "loss_exp": 1.0, "loss_exp_spiky": 0.001,
    "loss_trans": 1.0, "loss_trans_spiky": 1.0, "loss_crop": 1.0, "loss_crop_spiky": 1.0,
}
MEANS = ("frames", "padded")
EPS = 1e-6  # F.pairwise_distance default, as the original


@dataclass
class LossTerms:
    """Per-term sums (tensors, differentiable) and row counts (distance rows, difference rows)."""
    sums: dict[str, torch.Tensor]
    count: float
    count_spiky: float

    def means(self, count: float | None = None, count_spiky: float | None = None) -> dict[str, torch.Tensor]:
        c = max(self.count if count is None else count, 1.0)
        cs = max(self.count_spiky if count_spiky is None else count_spiky, 1.0)
        return {k: v / (cs if k.endswith("_spiky") else c) for k, v in self.sums.items()}


def total_loss(means: dict[str, torch.Tensor], weights: dict[str, float] | None = None) -> torch.Tensor:
    """Weighted sum of the term means (the original TOTAL_LOSS)."""
    w = DEFAULT_WEIGHTS if weights is None else weights
    return sum(w[k] * means[k] for k in TERM_NAMES)


def loss_terms(pred: torch.Tensor, target: torch.Tensor, lengths: torch.Tensor, mean: str = "frames",
               sample_weights: torch.Tensor | None = None) -> LossTerms:
    """Sums and counts of every term for pred (B,Tmax,C), target (B,Tmax-1,C), lengths (B,).

    ``sample_weights`` (B,) in {0, 1}: samples with weight 0 (a sampler's padding duplicates)
    add nothing to the sums or the counts."""
    if mean not in MEANS:
        raise ValueError(f"mean must be one of {MEANS}, got {mean!r}")
    b, t, c = pred.shape
    if target.shape != (b, t - 1, c):
        raise ValueError(f"target: expected shape {(b, t - 1, c)}, got {tuple(target.shape)}")
    lengths = torch.as_tensor(lengths).to(pred.device, torch.long)
    ar = torch.arange(t, device=pred.device)[None, :]
    keep = (ar < (lengths[:, None] - 1)).to(pred.dtype)  # (B, T): rows with a real target
    pred = pred * keep[..., None]  # the original's pred[i, L-1:] = 0
    tgt = F.pad(target, (0, 0, 0, 1))  # (B, T, C), zeros at t >= L-1
    sw = None if sample_weights is None else torch.as_tensor(sample_weights).to(pred.device, pred.dtype)
    if mean == "frames":
        w = keep if sw is None else keep * sw[:, None]
        w_s = w[:, 1:] * keep[:, :-1]
        count, count_s = float(w.sum()), float(w_s.sum())
    elif sw is None:
        w = w_s = None
        count, count_s = float(b * t), float(b * (t - 1))
    else:
        w, w_s = sw[:, None].expand(b, t), sw[:, None].expand(b, t - 1)
        count, count_s = float(sw.sum()) * t, float(sw.sum()) * (t - 1)
    sums: dict[str, torch.Tensor] = {}
    start = 0
    for name, dim in GROUPS:
        p, g = pred[..., start:start + dim], tgt[..., start:start + dim]
        start += dim
        d = F.pairwise_distance(p.reshape(-1, dim), g.reshape(-1, dim), eps=EPS).view(b, t)
        dp, dg = p[:, 1:] - p[:, :-1], g[:, 1:] - g[:, :-1]
        ds = F.pairwise_distance(dp.reshape(-1, dim), dg.reshape(-1, dim), eps=EPS).view(b, t - 1)
        sums[f"loss_{name}"] = d.sum() if w is None else (d * w).sum()
        sums[f"loss_{name}_spiky"] = ds.sum() if w_s is None else (ds * w_s).sum()
    if start != c:
        raise ValueError(f"pred: expected {start} coefficient dims, got {c}")
    return LossTerms(sums, count, count_s)


def vico_loss(pred: torch.Tensor, target: torch.Tensor, lengths: torch.Tensor, mean: str = "frames",
              weights: dict[str, float] | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """(TOTAL_LOSS, {term: mean}) for one batch."""
    means = loss_terms(pred, target, lengths, mean).means()
    return total_loss(means, weights), means
