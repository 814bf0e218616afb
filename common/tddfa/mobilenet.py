"""3DDFA_V2's MobileNet V1 parameter regressor, with the released files' parameter names.

The released ``weights/mb1_120x120.pth`` (widen 1.0) and ``mb05_120x120.pth`` (widen 0.5) hold
``{'epoch', 'state_dict'}``; the state dict keys carry a ``module.`` prefix and include
``fc_lm`` (a 136-value landmark head unused at inference). Here the head is named ``fc_param``
as in the file (upstream renames it to ``fc`` while loading) and ``fc_lm`` is kept, so a
file loads with ``strict=True`` after stripping ``module.``.
"""
from __future__ import annotations

import torch
from torch import nn


class DepthWise(nn.Module):
    """3x3 depth-wise conv + BN + ReLU, then 1x1 conv + BN + ReLU."""

    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.conv_dw = nn.Conv2d(cin, cin, 3, stride, 1, groups=cin, bias=False)
        self.bn_dw = nn.BatchNorm2d(cin)
        self.conv_sep = nn.Conv2d(cin, cout, 1, 1, 0, bias=False)
        self.bn_sep = nn.BatchNorm2d(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn_dw(self.conv_dw(x)))
        return torch.relu(self.bn_sep(self.conv_sep(x)))


# (name, in, out, stride) in units of the widen factor
_BLOCKS = (("dw2_1", 32, 64, 1), ("dw2_2", 64, 128, 2), ("dw3_1", 128, 128, 1), ("dw3_2", 128, 256, 2),
           ("dw4_1", 256, 256, 1), ("dw4_2", 256, 512, 2), ("dw5_1", 512, 512, 1), ("dw5_2", 512, 512, 1),
           ("dw5_3", 512, 512, 1), ("dw5_4", 512, 512, 1), ("dw5_5", 512, 512, 1), ("dw5_6", 512, 1024, 2),
           ("dw6", 1024, 1024, 1))

WIDEN = {"mb1": 1.0, "mb05": 0.5}


class TddfaMobileNet(nn.Module):
    """(B, 3, 120, 120) normalised BGR crops -> (B, 62) normalised parameters."""

    def __init__(self, widen_factor: float = 1.0, num_params: int = 62, num_landmarks: int = 136) -> None:
        super().__init__()
        w = widen_factor
        self.conv1 = nn.Conv2d(3, int(32 * w), 3, 2, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(int(32 * w))
        for name, cin, cout, stride in _BLOCKS:
            setattr(self, name, DepthWise(int(cin * w), int(cout * w), stride))
        self.fc_param = nn.Linear(int(1024 * w), num_params)
        self.fc_lm = nn.Linear(int(1024 * w), num_landmarks)  # released, unused at inference

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn1(self.conv1(x)))
        for name, *_ in _BLOCKS:
            x = getattr(self, name)(x)
        return self.fc_param(x.mean((2, 3)))
