"""A stand-in SyncNet for lip-sync tests whose offsets mean something (the fill-rule one's do not)."""
from __future__ import annotations

import torch


class OracleSync(torch.nn.Module):
    """A stand-in SyncNet whose embeddings can be matched by construction: per video frame of a
    5-frame window, the crop's brightness (lips) and the mean log energy c0 (audio), both mapped
    to 1 (quiet/dark) .. 2 (loud/bright). The fill-rule SyncNet has no notion of sync, so the
    known offset is recovered with this network through the whole evaluator path instead."""

    def __init__(self, dark: float, bright: float, quiet: float, loud: float) -> None:
        super().__init__()
        self.v, self.a = (dark, bright), (quiet, loud)

    def forward_lip(self, x: torch.Tensor) -> torch.Tensor:  # (b,3,5,224,224) BGR 0..255
        return 1 + (x.mean(dim=(1, 3, 4)) - self.v[0]) / (self.v[1] - self.v[0])

    def forward_aud(self, x: torch.Tensor) -> torch.Tensor:  # (b,1,13,20) MFCC, 4 columns per frame
        c0 = x[:, 0, 0, :].reshape(len(x), 5, 4).mean(-1)
        return 1 + (c0 - self.a[0]) / (self.a[1] - self.a[0])
