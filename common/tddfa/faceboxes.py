"""FaceBoxes face detector as used by 3DDFA_V2 (``FaceBoxes/weights/FaceBoxesProd.pth``).

The network keeps the released parameter names (a plain state dict, no prefix). Priors,
box decoding and non-maximum suppression are numpy code of ours (no torchvision), with the
upstream settings: score > 0.05, top 5000 before NMS, IoU 0.3 with the ``+1`` pixel area
convention of the upstream cpu_nms, top 750 after, and faces kept when score > 0.5. Images
larger than 720 x 1080 are downscaled for detection as upstream; boxes are mapped back.
"""
from __future__ import annotations

import math

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

MIN_SIZES = ((32, 64, 128), (256,), (512,))
STEPS = (32, 64, 128)
VARIANCE = (0.1, 0.2)
BGR_MEAN = (104.0, 117.0, 123.0)
CONF_THRESHOLD, TOP_K, NMS_IOU, KEEP_TOP_K, VIS_THRESHOLD = 0.05, 5000, 0.3, 750, 0.5
MAX_H, MAX_W = 720, 1080


class ConvBN(nn.Module):
    """conv (no bias) + BN, then ReLU (``crelu``: ReLU of [x, -x])."""

    def __init__(self, cin: int, cout: int, k: int, stride: int = 1, pad: int = 0, crelu: bool = False) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, stride, pad, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=1e-5)
        self.crelu = crelu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn(self.conv(x))
        return F.relu(torch.cat([x, -x], 1) if self.crelu else x)


class Inception(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.branch1x1 = ConvBN(128, 32, 1)
        self.branch1x1_2 = ConvBN(128, 32, 1)
        self.branch3x3_reduce = ConvBN(128, 24, 1)
        self.branch3x3 = ConvBN(24, 32, 3, pad=1)
        self.branch3x3_reduce_2 = ConvBN(128, 24, 1)
        self.branch3x3_2 = ConvBN(24, 32, 3, pad=1)
        self.branch3x3_3 = ConvBN(32, 32, 3, pad=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.branch1x1(x)
        b = self.branch1x1_2(F.avg_pool2d(x, 3, 1, 1))
        c = self.branch3x3(self.branch3x3_reduce(x))
        d = self.branch3x3_3(self.branch3x3_2(self.branch3x3_reduce_2(x)))
        return torch.cat([a, b, c, d], 1)


class FaceBoxesNet(nn.Module):
    """(B, 3, H, W) BGR - mean -> loc (B, P, 4), face probability (B, P)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = ConvBN(3, 24, 7, 4, 3, crelu=True)
        self.conv2 = ConvBN(48, 64, 5, 2, 2, crelu=True)
        self.inception1, self.inception2, self.inception3 = Inception(), Inception(), Inception()
        self.conv3_1 = ConvBN(128, 128, 1)
        self.conv3_2 = ConvBN(128, 256, 3, 2, 1)
        self.conv4_1 = ConvBN(256, 128, 1)
        self.conv4_2 = ConvBN(128, 256, 3, 2, 1)
        self.loc = nn.Sequential(nn.Conv2d(128, 21 * 4, 3, padding=1), nn.Conv2d(256, 4, 3, padding=1),
                                 nn.Conv2d(256, 4, 3, padding=1))
        self.conf = nn.Sequential(nn.Conv2d(128, 21 * 2, 3, padding=1), nn.Conv2d(256, 2, 3, padding=1),
                                  nn.Conv2d(256, 2, 3, padding=1))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = F.max_pool2d(self.conv1(x), 3, 2, 1)
        x = F.max_pool2d(self.conv2(x), 3, 2, 1)
        s1 = self.inception3(self.inception2(self.inception1(x)))
        s2 = self.conv3_2(self.conv3_1(s1))
        s3 = self.conv4_2(self.conv4_1(s2))
        b = x.shape[0]
        loc = torch.cat([l(s).permute(0, 2, 3, 1).reshape(b, -1) for s, l in zip((s1, s2, s3), self.loc)], 1)
        conf = torch.cat([c(s).permute(0, 2, 3, 1).reshape(b, -1) for s, c in zip((s1, s2, s3), self.conf)], 1)
        return loc.view(b, -1, 4), torch.softmax(conf.view(b, -1, 2), -1)[..., 1]


def priors(height: int, width: int) -> np.ndarray:
    """(P, 4) prior boxes (cx, cy, w, h) relative to the image, in the network's output order:
    per level, per cell (row-major), per min size; 32 px priors are densified 4x4, 64 px 2x2."""
    out = []
    for step, sizes in zip(STEPS, MIN_SIZES):
        fh, fw = math.ceil(height / step), math.ceil(width / step)
        for i in range(fh):
            for j in range(fw):
                for ms in sizes:
                    n = {32: 4, 64: 2}.get(ms, 1)
                    offs = [k / n for k in range(n)] if n > 1 else [0.5]
                    for dy in offs:
                        for dx in offs:
                            out.append(((j + dx) * step / width, (i + dy) * step / height, ms / width, ms / height))
    return np.asarray(out, dtype=np.float32).reshape(-1, 4)


def decode(loc: np.ndarray, prior: np.ndarray, variance: tuple[float, float] = VARIANCE) -> np.ndarray:
    """SSD decoding of (P, 4) offsets against (P, 4) priors -> (P, 4) corner boxes (x0, y0, x1, y1)."""
    loc, prior = np.asarray(loc, np.float32), np.asarray(prior, np.float32)
    centre = prior[:, :2] + loc[:, :2] * variance[0] * prior[:, 2:]
    size = prior[:, 2:] * np.exp(loc[:, 2:] * variance[1])
    return np.concatenate([centre - size / 2, centre + size / 2], 1)


def nms(boxes: np.ndarray, scores: np.ndarray, iou: float) -> np.ndarray:
    """Greedy non-maximum suppression; indices of kept boxes, best score first.

    Areas use the inclusive-pixel convention of the upstream cpu_nms: (x1 - x0 + 1) * (y1 - y0 + 1);
    a box is suppressed when its overlap with a kept box is >= ``iou``.
    """
    boxes = np.asarray(boxes, np.float32)
    order = np.argsort(-np.asarray(scores), kind="stable")
    x0, y0, x1, y1 = boxes.T
    area = (x1 - x0 + 1) * (y1 - y0 + 1)
    keep = []
    while order.size:
        i, rest = order[0], order[1:]
        keep.append(i)
        w = np.maximum(0.0, np.minimum(x1[i], x1[rest]) - np.maximum(x0[i], x0[rest]) + 1)
        h = np.maximum(0.0, np.minimum(y1[i], y1[rest]) - np.maximum(y0[i], y0[rest]) + 1)
        inter = w * h
        order = rest[inter / (area[i] + area[rest] - inter) < iou]
    return np.asarray(keep, dtype=np.int64)


class FaceBoxesDetector:
    """Faces of an RGB uint8 frame: list of (x0, y0, x1, y1, score), best first."""

    def __init__(self, net: FaceBoxesNet, device: str | torch.device = "cpu") -> None:
        self.net = net.eval().to(device)
        self.device = torch.device(device)
        self._priors: dict[tuple[int, int], np.ndarray] = {}

    def _prior(self, h: int, w: int) -> np.ndarray:
        if (h, w) not in self._priors:
            self._priors[(h, w)] = priors(h, w)
        return self._priors[(h, w)]

    @torch.no_grad()
    def __call__(self, rgb: np.ndarray) -> list[tuple[float, float, float, float, float]]:
        img = np.ascontiguousarray(rgb[:, :, ::-1])  # the released network expects BGR
        h, w = img.shape[:2]
        scale = 1.0
        if h > MAX_H:
            scale = MAX_H / h
        if w * scale > MAX_W:
            scale *= MAX_W / (w * scale)
        if scale != 1.0:
            img = cv2.resize(img, (int(scale * w), int(scale * h)))
        x = img.astype(np.float32) - np.asarray(BGR_MEAN, np.float32)
        hs, ws = x.shape[:2]
        loc, score = self.net(torch.from_numpy(x.transpose(2, 0, 1)).unsqueeze(0).to(self.device))
        boxes = decode(loc[0].cpu().numpy(), self._prior(hs, ws))
        boxes *= np.asarray([ws, hs, ws, hs], np.float32) / scale
        score = score[0].cpu().numpy()
        sel = np.nonzero(score > CONF_THRESHOLD)[0]
        sel = sel[np.argsort(-score[sel], kind="stable")][:TOP_K]
        boxes, score = boxes[sel], score[sel]
        keep = nms(boxes, score, NMS_IOU)[:KEEP_TOP_K]
        return [(*map(float, boxes[i]), float(score[i])) for i in keep if score[i] > VIS_THRESHOLD]
