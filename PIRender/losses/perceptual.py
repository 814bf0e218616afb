"""VGG19 perceptual and style losses of PIRender (upstream ``loss/perceptual.py``), no torchvision.

:class:`VGG19Features` is torchvision's ``vgg19().features`` with the same parameter names
(``features.N.weight``/``bias``), so torchvision's released ``vgg19-dcbb9e9d.pth`` loads into it
(``common.weights`` keeps its ``features.*`` keys). Inputs of the losses are images in [-1, 1];
they are mapped to [0, 1] and ImageNet-normalised first, as upstream.
"""
from __future__ import annotations

import logging
import os
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from common.weights import load_checkpoint, load_state_dict_strict, resolve_weights

log = logging.getLogger(__name__)

# torchvision VGG19 ("E") layer configuration: conv 3x3 widths, 'M' = max pool 2x2.
VGG19_CFG: tuple = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
                    512, 512, 512, 512, "M")


def _relu_names() -> dict[str, int]:
    """'relu_B_L' -> index in ``features`` of that ReLU (block B, layer L), as upstream names them."""
    names: dict[str, int] = {}
    idx, block, layer = 0, 1, 0
    for v in VGG19_CFG:
        if v == "M":
            idx += 1
            block, layer = block + 1, 0
        else:
            layer += 1
            names[f"relu_{block}_{layer}"] = idx + 1
            idx += 2
    return names


RELU_INDEX = _relu_names()  # relu_1_1 -> 1, relu_2_1 -> 6, relu_3_1 -> 11, relu_4_1 -> 20, relu_5_1 -> 29
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class VGG19Features(nn.Module):
    """torchvision VGG19 ``features`` (frozen); ``forward(x, layers)`` -> {layer name: activation}."""

    def __init__(self):
        super().__init__()
        layers: list[nn.Module] = []
        cin = 3
        for v in VGG19_CFG:
            if v == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            else:
                layers += [nn.Conv2d(cin, v, kernel_size=3, padding=1), nn.ReLU(inplace=False)]
                cin = v
        self.features = nn.Sequential(*layers)
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> "VGG19Features":  # always eval: frozen feature extractor
        return super().train(False)

    def forward(self, x: torch.Tensor, layers: Sequence[str]) -> dict[str, torch.Tensor]:
        wanted = {RELU_INDEX[name]: name for name in layers}
        last = max(wanted)
        out: dict[str, torch.Tensor] = {}
        for i, module in enumerate(self.features):
            x = module(x)
            if i in wanted:
                out[wanted[i]] = x
            if i == last:
                break
        return out


def load_vgg19(path: str | os.PathLike | None = None, device: torch.device | str = "cpu") -> VGG19Features:
    """VGG19 features with the user's torchvision weights file (registry name ``vgg19``).

    A missing file raises one UserError line naming the file, where to get it and ``--vgg_weights``.
    """
    p = resolve_weights("vgg19", path)
    net = VGG19Features()
    load_state_dict_strict(net, load_checkpoint("vgg19", p), p)
    return net.to(device)


def imagenet_normalize(x: torch.Tensor) -> torch.Tensor:
    """[-1, 1] images -> ImageNet-normalised (upstream ``apply_imagenet_normalization``)."""
    mean = x.new_tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = x.new_tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return ((x + 1) / 2 - mean) / std


def gram_matrix(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, C, C) Gram matrix divided by C*H*W."""
    b, c, h, w = x.shape
    f = x.reshape(b, c, h * w)
    return f.bmm(f.transpose(1, 2)) / (h * w * c)


class PerceptualLoss(nn.Module):
    """Multi-scale L1 distance of VGG19 activations, plus an optional Gram-matrix style term.

    loss = sum over scales s < num_scales and layers l of w_l * L1(vgg_l(x_s), vgg_l(y_s))
           [+ style_weight * sum over layers of L1(gram(vgg_l(x_0)), gram(vgg_l(y_0)))]
    where x_{s+1} is x_s halved (bilinear, align_corners False) after ImageNet normalisation.
    """

    def __init__(self, vgg: VGG19Features, layers: Sequence[str] = ("relu_4_1",),
                 weights: Sequence[float] | None = None, num_scales: int = 1, use_style_loss: bool = False,
                 style_to_perceptual: float = 0.0):
        super().__init__()
        unknown = [name for name in layers if name not in RELU_INDEX]
        if unknown:
            raise ValueError(f"unknown VGG19 layers {unknown} (known: {', '.join(RELU_INDEX)})")
        self.vgg = vgg
        self.layers = tuple(layers)
        self.weights = tuple(weights) if weights is not None else (1.0,) * len(self.layers)
        if len(self.weights) != len(self.layers):
            raise ValueError("one weight per layer")
        self.num_scales = num_scales
        self.use_style_loss = use_style_loss
        self.style_weight = style_to_perceptual

    def target_features(self, target: torch.Tensor) -> list[dict[str, torch.Tensor]]:
        """Detached VGG activations of ``target`` at every scale (shareable between losses)."""
        with torch.no_grad():
            y = imagenet_normalize(target)
            feats = []
            for s in range(self.num_scales):
                feats.append({k: v.detach() for k, v in self.vgg(y, self.layers).items()})
                if s != self.num_scales - 1:
                    y = _half(y)
        return feats

    def forward(self, inp: torch.Tensor, target: torch.Tensor,
                target_feats: list[dict[str, torch.Tensor]] | None = None) -> torch.Tensor:
        if target_feats is None:
            target_feats = self.target_features(target)
        x = imagenet_normalize(inp)
        loss = inp.new_zeros(())
        style = inp.new_zeros(())
        for s in range(self.num_scales):
            fx = self.vgg(x, self.layers)
            for name, w in zip(self.layers, self.weights):
                loss = loss + w * F.l1_loss(fx[name], target_feats[s][name])
                if self.use_style_loss and s == 0:
                    style = style + F.l1_loss(gram_matrix(fx[name]), gram_matrix(target_feats[s][name]))
            if s != self.num_scales - 1:
                x = _half(x)
        if self.use_style_loss:
            return loss + style * self.style_weight
        return loss


def _half(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, mode="bilinear", scale_factor=0.5, align_corners=False, recompute_scale_factor=True)
