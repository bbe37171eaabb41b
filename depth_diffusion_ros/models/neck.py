"""Feature-pyramid neck: fuses multi-scale backbone features into one condition map.

DiffusionDepth (arXiv 2303.05021, Sec. 3.2) aggregates the backbone's scales with a
feature-pyramid neck into the "monocular visual condition"; the authors' code outputs it at
stride 4. This neck is an FPN (Lin et al., CVPR 2017, Sec. 3: lateral 1x1 convs + top-down
nearest upsampling + 3x3 smoothing) followed by a fusion of all levels at ``out_stride``
(upsample every level, concatenate, 3x3 conv), as in panoptic-FPN style semantic heads.
"""
from __future__ import annotations

from typing import List, Sequence

import torch
import torch.nn.functional as F
from torch import nn


def group_norm(channels: int, max_groups: int = 8) -> nn.GroupNorm:
    """GroupNorm with the largest group count <= max_groups dividing ``channels``."""
    groups = max(g for g in range(1, max_groups + 1) if channels % g == 0)
    return nn.GroupNorm(groups, channels)


class ConvNormAct(nn.Sequential):
    """Conv2d (no bias) -> GroupNorm -> SiLU."""

    def __init__(self, cin: int, cout: int, kernel: int = 3, stride: int = 1) -> None:
        super().__init__(
            nn.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2, bias=False),
            group_norm(cout),
            nn.SiLU(),
        )


class ConvAct(nn.Sequential):
    """Conv2d (with bias) -> SiLU, no normalisation: for layers whose inputs carry absolute
    values that a per-sample normalisation would erase (metric depth, depth latents)."""

    def __init__(self, cin: int, cout: int, kernel: int = 3, stride: int = 1) -> None:
        super().__init__(
            nn.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2),
            nn.SiLU(),
        )


class FeaturePyramidNeck(nn.Module):
    """FPN over backbone features, fused into one map at ``out_stride``.

    Args:
        in_channels: channels of each input level, fine to coarse.
        in_strides: stride of each input level (e.g. [4, 8, 16, 32]).
        out_channels: channels of the FPN levels and of the output map.
        out_stride: stride of the fused output (DiffusionDepth: 4); must be >= in_strides[0]
            divided by 2**k for some k >= 0 (upsampled by interpolation if finer).
    forward(list of (B, C_i, H/s_i, W/s_i)) -> (B, out_channels, H/out_stride, W/out_stride).
    """

    def __init__(
        self,
        in_channels: Sequence[int],
        in_strides: Sequence[int],
        out_channels: int = 64,
        out_stride: int = 4,
    ) -> None:
        super().__init__()
        if len(in_channels) != len(in_strides) or not in_channels:
            raise ValueError("in_channels and in_strides must be non-empty and of equal length")
        self.in_strides = list(in_strides)
        self.out_stride = int(out_stride)
        self.lateral = nn.ModuleList(nn.Conv2d(c, out_channels, 1) for c in in_channels)
        self.smooth = nn.ModuleList(ConvNormAct(out_channels, out_channels) for _ in in_channels)
        self.fuse = nn.Sequential(
            ConvNormAct(out_channels * len(in_channels), out_channels),
            nn.Conv2d(out_channels, out_channels, 3, padding=1),
        )
        self.out_channels = out_channels

    def forward(self, feats: List[torch.Tensor], image_hw: Sequence[int] | None = None) -> torch.Tensor:
        """feats fine to coarse; image_hw (H, W) sets the exact output size H/out_stride."""
        lat = [l(f) for l, f in zip(self.lateral, feats)]
        for i in range(len(lat) - 2, -1, -1):  # top-down pathway
            lat[i] = lat[i] + F.interpolate(lat[i + 1], size=lat[i].shape[-2:], mode="nearest")
        outs = [s(x) for s, x in zip(self.smooth, lat)]
        if image_hw is not None:
            size = (int(image_hw[0]) // self.out_stride, int(image_hw[1]) // self.out_stride)
        else:
            scale = self.in_strides[0] // self.out_stride if self.in_strides[0] >= self.out_stride else 1
            size = (outs[0].shape[-2] * scale, outs[0].shape[-1] * scale)
        ups = [
            F.interpolate(o, size=size, mode="bilinear", align_corners=False) for o in outs
        ]
        return self.fuse(torch.cat(ups, dim=1))


class SparseDepthEncoder(nn.Module):
    """[log sparse*valid, valid, log prior*prior_valid, prior_valid] (B,4,H,W) -> (B,C,H/s,W/s),
    s = ``stride`` (a power of two >= 4: one stride-2 conv per halving). ``stem_stride`` 2 makes
    the first conv strided too (no layer at full resolution, where thin convs are slow)."""

    def __init__(self, channels: int, out_channels: int, stride: int = 4, stem_stride: int = 1) -> None:
        super().__init__()
        # no normalisation: it would erase the metric depth level of the LiDAR input
        layers: list[nn.Module] = [ConvAct(4, channels // 2, 3, stride=stem_stride),
                                   ConvAct(channels // 2, channels, 3, stride=2)]
        s = 2 * stem_stride
        while s < stride:
            layers.append(ConvAct(channels, channels, 3, stride=2))
            s *= 2
        layers.append(nn.Conv2d(channels, out_channels, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def stride_adapter(channels: int, from_stride: int, to_stride: int) -> nn.Module:
    """Brings the neck-stride condition to the latent stride (strided convs or upsample + conv).
    No normalisation: the condition carries the LiDAR's metric depth level."""
    layers: list[nn.Module] = []
    s = from_stride
    while s < to_stride:
        layers.append(ConvAct(channels, channels, 3, stride=2))
        s *= 2
    while s > to_stride:
        layers.append(nn.Upsample(scale_factor=2.0, mode="bilinear", align_corners=False))
        layers.append(ConvAct(channels, channels, 3))
        s //= 2
    layers.append(nn.Conv2d(channels, channels, 1))
    return nn.Sequential(*layers)
