"""SyncNet ``S(num_layers_in_fc_layers=1024)`` (joonson/syncnet_python), keys of ``syncnet_v2.model``.

Audio stream: (B,1,13,20) MFCC -> (B,1024). Lip stream: (B,3,5,224,224) BGR float 0..255 (no
normalisation, as the original) -> (B,1024).
"""
from __future__ import annotations

import torch
from torch import nn


def _relu() -> nn.ReLU:
    return nn.ReLU(inplace=True)


class SyncNetS(nn.Module):
    def __init__(self, num_layers_in_fc_layers: int = 1024) -> None:
        super().__init__()
        # Index positions matter: they are the parameter names of the released file.
        self.netcnnaud = nn.Sequential(
            nn.Conv2d(1, 64, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1)), nn.BatchNorm2d(64), _relu(),
            nn.MaxPool2d(kernel_size=(1, 1), stride=(1, 1)),
            nn.Conv2d(64, 192, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1)), nn.BatchNorm2d(192), _relu(),
            nn.MaxPool2d(kernel_size=(3, 3), stride=(1, 2)),
            nn.Conv2d(192, 384, kernel_size=(3, 3), padding=(1, 1)), nn.BatchNorm2d(384), _relu(),
            nn.Conv2d(384, 256, kernel_size=(3, 3), padding=(1, 1)), nn.BatchNorm2d(256), _relu(),
            nn.Conv2d(256, 256, kernel_size=(3, 3), padding=(1, 1)), nn.BatchNorm2d(256), _relu(),
            nn.MaxPool2d(kernel_size=(3, 3), stride=(2, 2)),
            nn.Conv2d(256, 512, kernel_size=(5, 4), padding=(0, 0)), nn.BatchNorm2d(512), _relu(),
        )
        self.netfcaud = nn.Sequential(nn.Linear(512, 512), nn.BatchNorm1d(512), _relu(),
                                      nn.Linear(512, num_layers_in_fc_layers))
        self.netfclip = nn.Sequential(nn.Linear(512, 512), nn.BatchNorm1d(512), _relu(),
                                      nn.Linear(512, num_layers_in_fc_layers))
        self.netcnnlip = nn.Sequential(
            nn.Conv3d(3, 96, kernel_size=(5, 7, 7), stride=(1, 2, 2), padding=0), nn.BatchNorm3d(96), _relu(),
            nn.MaxPool3d(kernel_size=(1, 3, 3), stride=(1, 2, 2)),
            nn.Conv3d(96, 256, kernel_size=(1, 5, 5), stride=(1, 2, 2), padding=(0, 1, 1)),
            nn.BatchNorm3d(256), _relu(),
            nn.MaxPool3d(kernel_size=(1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1)),
            nn.Conv3d(256, 256, kernel_size=(1, 3, 3), padding=(0, 1, 1)), nn.BatchNorm3d(256), _relu(),
            nn.Conv3d(256, 256, kernel_size=(1, 3, 3), padding=(0, 1, 1)), nn.BatchNorm3d(256), _relu(),
            nn.Conv3d(256, 256, kernel_size=(1, 3, 3), padding=(0, 1, 1)), nn.BatchNorm3d(256), _relu(),
            nn.MaxPool3d(kernel_size=(1, 3, 3), stride=(1, 2, 2)),
            nn.Conv3d(256, 512, kernel_size=(1, 6, 6), padding=0), nn.BatchNorm3d(512), _relu(),
        )

    def forward_aud(self, x: torch.Tensor) -> torch.Tensor:
        """(B,1,13,20) MFCC -> (B,1024)."""
        if x.ndim != 4 or tuple(x.shape[1:]) != (1, 13, 20):
            raise ValueError(f"forward_aud expects (B,1,13,20), got {tuple(x.shape)}")
        return self.netfcaud(self.netcnnaud(x).flatten(1))

    def forward_lip(self, x: torch.Tensor) -> torch.Tensor:
        """(B,3,5,224,224) BGR 0..255 -> (B,1024)."""
        if x.ndim != 5 or tuple(x.shape[1:]) != (3, 5, 224, 224):
            raise ValueError(f"forward_lip expects (B,3,5,224,224), got {tuple(x.shape)}")
        return self.netfclip(self.netcnnlip(x).flatten(1))
