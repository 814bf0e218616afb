"""PSNR and SSIM with the original's definitions (piq 0.8 ``psnr`` / ``ssim``), batched in torch.

PSNR: MSE over C*H*W of RGB in [0,1]; ``10*log10(1/(mse+1e-8))`` (identical frames give 80 dB,
never infinity). SSIM: 11-tap gaussian (sigma 1.5), k1 0.01, k2 0.03, 'valid' window, each RGB
channel separately then averaged; downsampled by round(min(H,W)/256) when that is > 1.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

EPS = 1e-8


def to_nchw(frames: np.ndarray | torch.Tensor) -> torch.Tensor:
    """(B,H,W,3) uint8 RGB -> (B,3,H,W) float32 in [0,1]."""
    t = torch.as_tensor(frames)
    if t.ndim != 4 or t.shape[-1] != 3:
        raise ValueError(f"expected (B,H,W,3) frames, got {tuple(t.shape)}")
    return t.permute(0, 3, 1, 2).float().div_(255.0)


def psnr(pd: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """(B,3,H,W) in [0,1] each -> (B,) float64 PSNR in dB."""
    mse = (pd.double() - gt.double()).pow(2).mean(dim=(1, 2, 3))
    return -10.0 * torch.log10(mse + EPS)


def gaussian_kernel(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """piq's (size,size) float32 kernel exp(-(x^2+y^2)/(2 sigma^2)) / sum.

    The 2-D float32 convolution is kept on purpose: SSIM's E[x^2]-mu^2 cancels in float32, and
    the original's values (golden data) differ from exact arithmetic by ~1.5e-5.
    """
    coords = torch.arange(size, dtype=torch.float32) - (size - 1) / 2.0
    sq = coords ** 2
    g = torch.exp(-(sq.unsqueeze(0) + sq.unsqueeze(1)) / (2 * sigma ** 2))
    return g / g.sum()


def ssim(pd: torch.Tensor, gt: torch.Tensor, kernel_size: int = 11, sigma: float = 1.5,
         k1: float = 0.01, k2: float = 0.03) -> torch.Tensor:
    """(B,C,H,W) in [0,1] each -> (B,) float64 SSIM (mean over the valid window and channels)."""
    if pd.shape != gt.shape or pd.ndim != 4:
        raise ValueError(f"ssim needs equal (B,C,H,W) inputs, got {tuple(pd.shape)} and {tuple(gt.shape)}")
    f = max(1, round(min(pd.shape[-2:]) / 256))
    if f > 1:
        pd = F.avg_pool2d(pd, kernel_size=f)
        gt = F.avg_pool2d(gt, kernel_size=f)
    b, c, h, w = pd.shape
    pd, gt = pd.float(), gt.float()
    k = gaussian_kernel(kernel_size, sigma).to(pd.device)[None, None].repeat(5 * c, 1, 1, 1)
    stack = torch.cat([pd, gt, pd * pd, gt * gt, pd * gt], dim=1)  # (B,5C,H,W)
    filt = F.conv2d(stack, k, groups=5 * c)  # (B,5C,H-10,W-10)
    mu_x, mu_y, e_xx, e_yy, e_xy = filt.split(c, dim=1)  # each (B,C,h,w)
    mu_xx, mu_yy, mu_xy = mu_x * mu_x, mu_y * mu_y, mu_x * mu_y
    c1, c2 = k1 ** 2, k2 ** 2
    cs = (2.0 * (e_xy - mu_xy) + c2) / ((e_xx - mu_xx) + (e_yy - mu_yy) + c2)
    ss = (2.0 * mu_xy + c1) / (mu_xx + mu_yy + c1) * cs
    return ss.mean(dim=(-1, -2)).double().mean(dim=1)
