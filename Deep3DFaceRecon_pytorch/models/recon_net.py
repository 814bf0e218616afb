"""The Deep3DFaceRecon reconstruction network: ResNet-50 backbone + seven 1x1-conv heads.

Parameter names and shapes match the released checkpoint
``checkpoints/face_recon_feat0.2_augment/epoch_20.pth`` (``state['net_recon']``):
``backbone.*`` are torchvision ResNet-50 names without ``fc``; ``final_layers.0-6.*`` are the
heads (id 80, exp 64, tex 80, angle 3, gamma 27, txy 2, tz 1) whose outputs are concatenated
in that order into the 257-d coefficient vector (id|exp|tex|angle|gamma|trans).
"""
from __future__ import annotations

import torch
from torch import nn

# Output widths of final_layers.0..6, in checkpoint order.
HEAD_DIMS: tuple[int, ...] = (80, 64, 80, 3, 27, 2, 1)
COEFF_DIM = sum(HEAD_DIMS)  # 257
INPUT_SIZE = 224


class Bottleneck(nn.Module):
    """ResNet v1.5 bottleneck (stride on the 3x3 conv), torchvision parameter names."""

    expansion = 4

    def __init__(self, in_ch: int, width: int, stride: int = 1) -> None:
        super().__init__()
        out_ch = width * self.expansion
        self.conv1 = nn.Conv2d(in_ch, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, out_ch, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_ch)
        self.relu = nn.ReLU(inplace=True)
        self.downsample: nn.Module | None = None
        if stride != 1 or in_ch != out_ch:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False), nn.BatchNorm2d(out_ch)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNet50Trunk(nn.Module):
    """ResNet-50 up to global average pooling: (B,3,H,W) -> (B,2048,1,1). No ``fc``."""

    def __init__(self, layers: tuple[int, ...] = (3, 4, 6, 3)) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        in_ch = 64
        for i, (n_blocks, width) in enumerate(zip(layers, (64, 128, 256, 512))):
            stride = 1 if i == 0 else 2
            blocks = []
            for b in range(n_blocks):
                blocks.append(Bottleneck(in_ch, width, stride if b == 0 else 1))
                in_ch = width * Bottleneck.expansion
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.out_channels = in_ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.avgpool(x)


class ReconNet(nn.Module):
    """Aligned face crops -> 257-d coefficients.

    Input (B,3,224,224) RGB float in [0,1] (no mean/std normalisation); output (B,257).
    """

    def __init__(self) -> None:
        super().__init__()
        self.backbone = ResNet50Trunk()
        self.final_layers = nn.ModuleList(
            nn.Conv2d(self.backbone.out_channels, d, 1, bias=True) for d in HEAD_DIMS
        )
        for head in self.final_layers:  # upstream initialises the heads to zero for training
            nn.init.zeros_(head.weight)
            nn.init.zeros_(head.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"ReconNet expects (B,3,H,W) input, got {tuple(x.shape)}")
        feat = self.backbone(x)  # (B,2048,1,1)
        out = torch.cat([head(feat) for head in self.final_layers], dim=1)  # (B,257,1,1)
        return torch.flatten(out, 1)  # (B,257)


def build_recon_net(state_dict: dict | None = None, device: str | torch.device = "cpu") -> ReconNet:
    """Build the network in eval mode, optionally loading a ``net_recon`` state dict strictly."""
    net = ReconNet()
    if state_dict is not None:
        net.load_state_dict(state_dict, strict=True)
    return net.eval().to(device)
