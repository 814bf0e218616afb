"""PIRender's FaceGenerator: MappingNet -> WarpingNet -> EditingNet.

Module and parameter names follow the released checkpoint exactly (``common/manifests/
pirender_face_generator.json``, 304 entries, 22 519 109 parameters), so the released
``net_G_ema`` loads with ``strict=True``. The behaviours the released weights were trained with
are kept on purpose (upstream-spec 4.3):

* FineADAIN residual blocks compute a conv1/norm1 branch and throw it away; the output is
  ``norm2(conv2(x), z) + x``. conv1 and norm1 stay in the state dict (they are computed only when
  ``compute_dead_branch=True``, which changes nothing but the run time);
* the flow is predicted at 1/4 resolution (64x64 for 256 px), turned into a sampling grid built
  for ``align_corners=True`` (divide by w-1), bilinearly upsampled and sampled with
  ``grid_sample(..., align_corners=False)`` (the torch 1.7 default the weights were trained with);
* nearest x2 upsampling in the editing decoder; ADAIN modulation ``x * (1 + gamma) + beta``.

Shapes: ``input_image`` (B, 3, H, W) in [-1, 1] with H, W divisible by 32 (256 for the released
weights); ``driving_source`` (B, 73, 27) = [exp 64, angle 3, trans 3, crop 3] x 27 frames.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import nn

NEG_SLOPE = 0.1  # LeakyReLU(0.1) everywhere


# ------------------------------------------------------------------------------------------------
# Config
# ------------------------------------------------------------------------------------------------


@dataclass
class GeneratorConfig:
    """Hyper-parameters of the FaceGenerator; defaults are the released ``gen.param``."""

    coeff_nc: int = 73
    descriptor_nc: int = 256
    mapping_layers: int = 3
    warp_encoder_layers: int = 5
    warp_decoder_layers: int = 3
    warp_base_nc: int = 32
    edit_layers: int = 3
    edit_res_blocks: int = 2
    edit_base_nc: int = 64
    image_nc: int = 3
    max_nc: int = 256

    @classmethod
    def from_param(cls, param: Mapping[str, Any]) -> "GeneratorConfig":
        """Build from the upstream nested ``gen.param`` dict (mapping_net/warpping_net/...)."""
        m, w, e, c = (dict(param.get(k) or {}) for k in ("mapping_net", "warpping_net", "editing_net", "common"))
        if c.get("use_spect", False):
            raise ValueError("use_spect=True is not supported (the released weights have no spectral norm)")
        d = cls()
        return cls(
            coeff_nc=int(m.get("coeff_nc", d.coeff_nc)),
            descriptor_nc=int(m.get("descriptor_nc", c.get("descriptor_nc", d.descriptor_nc))),
            mapping_layers=int(m.get("layer", d.mapping_layers)),
            warp_encoder_layers=int(w.get("encoder_layer", d.warp_encoder_layers)),
            warp_decoder_layers=int(w.get("decoder_layer", d.warp_decoder_layers)),
            warp_base_nc=int(w.get("base_nc", d.warp_base_nc)),
            edit_layers=int(e.get("layer", d.edit_layers)),
            edit_res_blocks=int(e.get("num_res_blocks", d.edit_res_blocks)),
            edit_base_nc=int(e.get("base_nc", d.edit_base_nc)),
            image_nc=int(c.get("image_nc", d.image_nc)),
            max_nc=int(c.get("max_nc", d.max_nc)),
        )

    def to_param(self) -> dict[str, Any]:
        """The upstream nested ``gen.param`` form."""
        return {
            "mapping_net": {"coeff_nc": self.coeff_nc, "descriptor_nc": self.descriptor_nc, "layer": self.mapping_layers},
            "warpping_net": {"encoder_layer": self.warp_encoder_layers, "decoder_layer": self.warp_decoder_layers,
                             "base_nc": self.warp_base_nc},
            "editing_net": {"layer": self.edit_layers, "num_res_blocks": self.edit_res_blocks,
                            "base_nc": self.edit_base_nc},
            "common": {"image_nc": self.image_nc, "descriptor_nc": self.descriptor_nc, "max_nc": self.max_nc,
                       "use_spect": False},
        }

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# ------------------------------------------------------------------------------------------------
# Building blocks
# ------------------------------------------------------------------------------------------------


def _act() -> nn.Module:
    return nn.LeakyReLU(NEG_SLOPE)


class LayerNorm2d(nn.Module):
    """Layer norm over (C, H, W) with per-channel affine parameters of shape (C, 1, 1)."""

    def __init__(self, channels: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(channels, 1, 1))
        self.bias = nn.Parameter(torch.zeros(channels, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape[1:]
        return F.layer_norm(x, shape, self.weight.expand(shape), self.bias.expand(shape), self.eps)


class ADAIN(nn.Module):
    """Instance norm (no affine) modulated by the descriptor: ``norm(x) * (1 + gamma) + beta``."""

    def __init__(self, channels: int, descriptor_nc: int, hidden: int = 128):
        super().__init__()
        self.param_free_norm = nn.InstanceNorm2d(channels, affine=False)
        self.mlp_shared = nn.Sequential(nn.Linear(descriptor_nc, hidden), nn.ReLU())
        self.mlp_gamma = nn.Linear(hidden, channels)
        self.mlp_beta = nn.Linear(hidden, channels)

    def forward(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        h = self.mlp_shared(z.reshape(z.shape[0], -1))
        gamma = self.mlp_gamma(h)[:, :, None, None]
        beta = self.mlp_beta(h)[:, :, None, None]
        return self.param_free_norm(x) * (1 + gamma) + beta


class ADAINEncoderBlock(nn.Module):
    """[ADAIN, act, Conv k4 s2] then [ADAIN, act, Conv k3]: halves the resolution."""

    def __init__(self, cin: int, cout: int, descriptor_nc: int):
        super().__init__()
        self.conv_0 = nn.Conv2d(cin, cout, 4, stride=2, padding=1)
        self.conv_1 = nn.Conv2d(cout, cout, 3, stride=1, padding=1)
        self.norm_0 = ADAIN(cin, descriptor_nc)
        self.norm_1 = ADAIN(cout, descriptor_nc)
        self.actvn = _act()

    def forward(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        x = self.conv_0(self.actvn(self.norm_0(x, z)))
        return self.conv_1(self.actvn(self.norm_1(x, z)))


class ADAINDecoderBlock(nn.Module):
    """Residual up-block: conv_0 (k3) + ConvTranspose (k3 s2) and a ConvTranspose shortcut."""

    def __init__(self, cin: int, cout: int, hidden: int, descriptor_nc: int):
        super().__init__()
        up = dict(kernel_size=3, stride=2, padding=1, output_padding=1)
        self.conv_0 = nn.Conv2d(cin, hidden, 3, stride=1, padding=1)
        self.conv_1 = nn.ConvTranspose2d(hidden, cout, **up)
        self.conv_s = nn.ConvTranspose2d(cin, cout, **up)
        self.norm_0 = ADAIN(cin, descriptor_nc)
        self.norm_1 = ADAIN(hidden, descriptor_nc)
        self.norm_s = ADAIN(cin, descriptor_nc)
        self.actvn = _act()

    def forward(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        x_s = self.conv_s(self.actvn(self.norm_s(x, z)))
        dx = self.conv_0(self.actvn(self.norm_0(x, z)))
        dx = self.conv_1(self.actvn(self.norm_1(dx, z)))
        return x_s + dx


class ADAINEncoder(nn.Module):
    def __init__(self, image_nc: int, descriptor_nc: int, base_nc: int, max_nc: int, layers: int):
        super().__init__()
        self.layers = layers
        self.input_layer = nn.Conv2d(image_nc, base_nc, 7, stride=1, padding=3)
        for i in range(layers):
            cin = min(base_nc * 2**i, max_nc)
            cout = min(base_nc * 2 ** (i + 1), max_nc)
            setattr(self, f"encoder{i}", ADAINEncoderBlock(cin, cout, descriptor_nc))

    def forward(self, x: torch.Tensor, z: torch.Tensor) -> list[torch.Tensor]:
        out = self.input_layer(x)
        feats = [out]
        for i in range(self.layers):
            out = getattr(self, f"encoder{i}")(out, z)
            feats.append(out)
        return feats


class ADAINDecoder(nn.Module):
    def __init__(self, descriptor_nc: int, base_nc: int, max_nc: int, encoder_layers: int, decoder_layers: int):
        super().__init__()
        self.levels = list(range(encoder_layers - decoder_layers, encoder_layers))[::-1]
        cout = base_nc
        for i in self.levels:
            cin = min(base_nc * 2 ** (i + 1), max_nc)
            cin = cin * 2 if i != encoder_layers - 1 else cin  # skip concatenation below the top
            cout = min(base_nc * 2**i, max_nc)
            setattr(self, f"decoder{i}", ADAINDecoderBlock(cin, cout, cout, descriptor_nc))
        self.output_nc = cout * 2

    def forward(self, feats: list[torch.Tensor], z: torch.Tensor) -> torch.Tensor:
        feats = list(feats)
        out = feats.pop()
        for i in self.levels:
            out = getattr(self, f"decoder{i}")(out, z)
            out = torch.cat([out, feats.pop()], 1)
        return out


class ADAINHourglass(nn.Module):
    def __init__(self, image_nc: int, descriptor_nc: int, base_nc: int, max_nc: int, encoder_layers: int,
                 decoder_layers: int):
        super().__init__()
        self.encoder = ADAINEncoder(image_nc, descriptor_nc, base_nc, max_nc, encoder_layers)
        self.decoder = ADAINDecoder(descriptor_nc, base_nc, max_nc, encoder_layers, decoder_layers)
        self.output_nc = self.decoder.output_nc

    def forward(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x, z), z)


class ConvNormAct(nn.Module):
    """``model = Sequential(Conv, LayerNorm2d, LeakyReLU[, AvgPool2d])`` (upstream First/Down/Up/Jump)."""

    def __init__(self, cin: int, cout: int, kernel: int, pool: bool = False, upsample: bool = False):
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(cin, cout, kernel, stride=1, padding=kernel // 2), LayerNorm2d(cout), _act()]
        if pool:
            layers.append(nn.AvgPool2d(2))
        self.model = nn.Sequential(*layers)
        self.upsample = upsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.upsample:
            x = F.interpolate(x, scale_factor=2, mode="nearest")
        return self.model(x)


class FinalBlock(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.model = nn.Sequential(nn.Conv2d(cin, cout, 7, stride=1, padding=3), nn.Tanh())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class FineADAINResBlock(nn.Module):
    """Upstream FineADAINResBlock2d: output = norm2(conv2(x), z) + x; conv1/norm1 are dead weights."""

    def __init__(self, channels: int, descriptor_nc: int, compute_dead_branch: bool = False):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, stride=1, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, stride=1, padding=1)
        self.norm1 = ADAIN(channels, descriptor_nc)
        self.norm2 = ADAIN(channels, descriptor_nc)
        self.actvn = _act()
        self.compute_dead_branch = compute_dead_branch

    def forward(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        if self.compute_dead_branch:  # upstream computes it, then overwrites the result
            _ = self.actvn(self.norm1(self.conv1(x), z))
        return self.norm2(self.conv2(x), z) + x


class FineADAINResBlocks(nn.Module):
    def __init__(self, num_blocks: int, channels: int, descriptor_nc: int):
        super().__init__()
        self.num_blocks = num_blocks
        for i in range(num_blocks):
            setattr(self, f"res{i}", FineADAINResBlock(channels, descriptor_nc))

    def forward(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        for i in range(self.num_blocks):
            x = getattr(self, f"res{i}")(x, z)
        return x


class FineEncoder(nn.Module):
    def __init__(self, image_nc: int, base_nc: int, max_nc: int, layers: int):
        super().__init__()
        self.layers = layers
        self.first = ConvNormAct(image_nc, base_nc, 7)
        for i in range(layers):
            cin, cout = min(base_nc * 2**i, max_nc), min(base_nc * 2 ** (i + 1), max_nc)
            setattr(self, f"down{i}", ConvNormAct(cin, cout, 3, pool=True))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.first(x)
        feats = [x]
        for i in range(self.layers):
            x = getattr(self, f"down{i}")(x)
            feats.append(x)
        return feats


class FineDecoder(nn.Module):
    def __init__(self, image_nc: int, descriptor_nc: int, base_nc: int, max_nc: int, layers: int, num_blocks: int):
        super().__init__()
        self.layers = layers
        cout = base_nc
        for i in range(layers)[::-1]:
            cin, cout = min(base_nc * 2 ** (i + 1), max_nc), min(base_nc * 2**i, max_nc)
            # registration order (up, res, jump) fixes the state-dict order of the released file
            setattr(self, f"up{i}", ConvNormAct(cin, cout, 3, upsample=True))
            setattr(self, f"res{i}", FineADAINResBlocks(num_blocks, cin, descriptor_nc))
            setattr(self, f"jump{i}", ConvNormAct(cout, cout, 3))
        self.final = FinalBlock(cout, image_nc)

    def forward(self, feats: list[torch.Tensor], z: torch.Tensor) -> torch.Tensor:
        feats = list(feats)
        out = feats.pop()
        for i in range(self.layers)[::-1]:
            out = getattr(self, f"res{i}")(out, z)
            out = getattr(self, f"up{i}")(out)
            out = getattr(self, f"jump{i}")(feats.pop()) + out
        return self.final(out)


# ------------------------------------------------------------------------------------------------
# Flow helpers (upstream util/flow_util.py semantics)
# ------------------------------------------------------------------------------------------------


def identity_grid(b: int, h: int, w: int, like: torch.Tensor) -> torch.Tensor:
    """(B, H, W, 2) grid of (x, y) in [-1, 1], pixel centres at -1 and 1 (align_corners=True style)."""
    x = 2 * (torch.arange(w, device=like.device, dtype=like.dtype) / (w - 1)) - 1
    y = 2 * (torch.arange(h, device=like.device, dtype=like.dtype) / (h - 1)) - 1
    grid = torch.stack([x.view(1, w).expand(h, w), y.view(h, 1).expand(h, w)], dim=2)
    return grid.unsqueeze(0).expand(b, h, w, 2)


def flow_to_deformation(flow: torch.Tensor) -> torch.Tensor:
    """Pixel flow (B, 2, h, w) -> sampling grid (B, h, w, 2) = identity + 2 * flow / (size - 1)."""
    b, _, h, w = flow.shape
    norm = 2 * torch.cat([flow[:, :1] / (w - 1), flow[:, 1:] / (h - 1)], 1)
    return identity_grid(b, h, w, flow) + norm.permute(0, 2, 3, 1)


def warp_image(image: torch.Tensor, deformation: torch.Tensor) -> torch.Tensor:
    """Sample ``image`` (B, C, H, W) at ``deformation`` (B, h, w, 2), upsampled bilinearly to H x W.

    ``align_corners=False`` in both calls, as the released weights were trained (torch 1.7 default).
    """
    _, hd, wd, _ = deformation.shape
    _, _, h, w = image.shape
    if (hd, wd) != (h, w):
        deformation = F.interpolate(deformation.permute(0, 3, 1, 2), size=(h, w), mode="bilinear",
                                    align_corners=False).permute(0, 2, 3, 1)
    return F.grid_sample(image, deformation, mode="bilinear", padding_mode="zeros", align_corners=False)


# ------------------------------------------------------------------------------------------------
# The three networks and the generator
# ------------------------------------------------------------------------------------------------


class MappingNet(nn.Module):
    """(B, 73, 27) driving window -> (B, 256, 1) descriptor (dilated 1-D convs, residual)."""

    def __init__(self, coeff_nc: int = 73, descriptor_nc: int = 256, layer: int = 3):
        super().__init__()
        self.layer = layer
        self.first = nn.Sequential(nn.Conv1d(coeff_nc, descriptor_nc, kernel_size=7, padding=0))
        for i in range(layer):
            setattr(self, f"encoder{i}", nn.Sequential(
                _act(), nn.Conv1d(descriptor_nc, descriptor_nc, kernel_size=3, padding=0, dilation=3)))
        self.pooling = nn.AdaptiveAvgPool1d(1)

    def forward(self, coeffs: torch.Tensor) -> torch.Tensor:
        out = self.first(coeffs)
        for i in range(self.layer):
            out = getattr(self, f"encoder{i}")(out) + out[:, :, 3:-3]
        return self.pooling(out)


class WarpingNet(nn.Module):
    """ADAIN hourglass -> flow (B, 2, H/4, W/4) in pixels of that grid -> warped source image."""

    def __init__(self, image_nc: int, descriptor_nc: int, base_nc: int, max_nc: int, encoder_layer: int,
                 decoder_layer: int):
        super().__init__()
        self.hourglass = ADAINHourglass(image_nc, descriptor_nc, base_nc, max_nc, encoder_layer, decoder_layer)
        nc = self.hourglass.output_nc
        self.flow_out = nn.Sequential(LayerNorm2d(nc), _act(), nn.Conv2d(nc, 2, 7, stride=1, padding=3))

    def forward(self, image: torch.Tensor, descriptor: torch.Tensor) -> dict[str, torch.Tensor]:
        flow = self.flow_out(self.hourglass(image, descriptor))
        # Sampling positions in float32 even under bf16/fp16 autocast: a 3-digit grid would move
        # pixels by up to half a pixel at 256 px.
        with torch.autocast(image.device.type, enabled=False):
            warped = warp_image(image.float(), flow_to_deformation(flow.float()))
        return {"flow_field": flow, "warp_image": warped}


class EditingNet(nn.Module):
    """cat(source, warped) -> encoder -> ADAIN-conditioned decoder -> image in [-1, 1]."""

    def __init__(self, image_nc: int, descriptor_nc: int, layer: int, base_nc: int, max_nc: int,
                 num_res_blocks: int):
        super().__init__()
        self.encoder = FineEncoder(image_nc * 2, base_nc, max_nc, layer)
        self.decoder = FineDecoder(image_nc, descriptor_nc, base_nc, max_nc, layer, num_res_blocks)

    def forward(self, image: torch.Tensor, warped: torch.Tensor, descriptor: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(torch.cat([image, warped], 1)), descriptor)


class FaceGenerator(nn.Module):
    """PIRender generator. ``forward(image, driving, stage)`` returns flow_field, warp_image and
    (unless ``stage == 'warp'``) fake_image."""

    def __init__(self, cfg: GeneratorConfig | None = None):
        super().__init__()
        cfg = cfg or GeneratorConfig()
        self.cfg = cfg
        self.mapping_net = MappingNet(cfg.coeff_nc, cfg.descriptor_nc, cfg.mapping_layers)
        self.warpping_net = WarpingNet(cfg.image_nc, cfg.descriptor_nc, cfg.warp_base_nc, cfg.max_nc,
                                       cfg.warp_encoder_layers, cfg.warp_decoder_layers)
        self.editing_net = EditingNet(cfg.image_nc, cfg.descriptor_nc, cfg.edit_layers, cfg.edit_base_nc,
                                      cfg.max_nc, cfg.edit_res_blocks)

    def forward(self, input_image: torch.Tensor, driving_source: torch.Tensor,
                stage: str | None = None) -> dict[str, torch.Tensor]:
        b, c, h, w = input_image.shape
        if c != self.cfg.image_nc or h % 32 or w % 32:
            raise ValueError(f"input_image must be (B, {self.cfg.image_nc}, H, W) with H, W divisible by 32, "
                             f"got {tuple(input_image.shape)}")
        if driving_source.dim() != 3 or driving_source.shape[0] != b or driving_source.shape[1] != self.cfg.coeff_nc \
                or driving_source.shape[2] < 19:
            raise ValueError(f"driving_source must be ({b}, {self.cfg.coeff_nc}, 27), got {tuple(driving_source.shape)}")
        descriptor = self.mapping_net(driving_source)  # (B, 256, 1)
        out = self.warpping_net(input_image, descriptor)  # flow (B,2,H/4,W/4), warp (B,3,H,W)
        if stage != "warp":
            out["fake_image"] = self.editing_net(input_image, out["warp_image"], descriptor)  # (B,3,H,W)
        return out


def build_generator(cfg: GeneratorConfig | None = None) -> FaceGenerator:
    return FaceGenerator(cfg)
