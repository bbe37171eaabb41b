"""Monocular conditioned denoising block (DiffusionDepth, arXiv 2303.05021, Sec. 3.3).

Predicts the noise ``noise_pred`` in the depth latent from (noisy latent x_t, timestep t, visual
condition c). The paper fuses the condition with the latent hierarchically; here that is a small
U-Net (Ronneberger et al. 2015; the diffusion form of Ho et al. 2020, Appendix B) in which every
residual block receives
  * the timestep embedding (sinusoidal, Vaswani et al. 2017 Sec. 3.5, then an MLP) as a
    GroupNorm scale/shift (Dhariwal & Nichol 2021, "AdaGN", Sec. 3), and
  * the visual condition average-pooled to that block's scale and projected by 1x1 convs,
    added to its features after the block's normalisation (condition injected at every scale).

No final activation: the authors' code ends the noise head with a ReLU, which makes negative
noise values impossible although epsilon ~ N(0, I); we deliberately leave it out.
"""
from __future__ import annotations

import math
from typing import List, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from depth_diffusion_ros.models.neck import group_norm


def timestep_embedding(timesteps: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding (Vaswani et al. 2017, Sec. 3.5) of timesteps.

    timesteps: 0-d or (B,) tensor (int or float). Returns (B or 1, dim) float32 as [cos | sin]
    (an odd ``dim`` gets one zero column at the end). Used by DiffusionDepth's U-Net and
    DSR-Diff's guidance denoiser.
    """
    half = dim // 2
    t = timesteps.reshape(-1).to(torch.float32)
    freqs = torch.exp(
        -math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half
    )
    args = t[:, None] * freqs[None, :]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    return F.pad(emb, (0, 1)) if dim % 2 else emb


class TimestepMLP(nn.Module):
    """Sinusoidal embedding -> Linear -> SiLU -> Linear. (B,) -> (B, dim)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim
        self.mlp = nn.Sequential(nn.Linear(dim, dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, timesteps: torch.Tensor) -> torch.Tensor:
        return self.mlp(timestep_embedding(timesteps, self.dim))


class CondResBlock(nn.Module):
    """Residual block with timestep scale/shift and additive condition injection.

    forward(x (B,cin,h,w), temb (B|1, temb_dim), cond (B, cout, h, w)) -> (B, cout, h, w).
    ``cond`` is already projected to ``cout`` channels at this scale.
    """

    def __init__(self, cin: int, cout: int, temb_dim: int) -> None:
        super().__init__()
        self.norm1 = group_norm(cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.temb = nn.Linear(temb_dim, 2 * cout)
        self.norm2 = group_norm(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor, temb: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = self.temb(F.silu(temb))[:, :, None, None].chunk(2, dim=1)
        # the condition is added after the normalisation so its absolute level (e.g. the metric
        # depth carried by the LiDAR features) is not normalised away
        h = self.norm2(h) * (1 + scale) + shift + cond
        h = self.conv2(F.silu(h))
        return self.skip(x) + h


class ConditionedUNet(nn.Module):
    """Noise predictor eps_theta(x_t, t, c) for latents at the latent stride.

    Args:
        latent_channels: d (paper: 16).
        cond_channels: channels of the visual condition at the latent resolution.
        channels: base width; level l has ``channels * channel_mult[l]`` channels and resolution
            (h / 2**l, w / 2**l), so h and w must be divisible by 2**(len(channel_mult)-1).
        channel_mult: width multipliers per level.
        num_blocks: CondResBlocks per level on the way down (and up).
        temb_dim: timestep-embedding width.
    forward(latents (B,d,h,w), timestep 0-d or (B,) tensor, cond (B,cond_channels,h,w))
        -> noise_pred (B,d,h,w).
    """

    def __init__(
        self,
        latent_channels: int,
        cond_channels: int,
        channels: int = 64,
        channel_mult: Sequence[int] = (1, 2, 2),
        num_blocks: int = 1,
        temb_dim: int = 128,
    ) -> None:
        super().__init__()
        widths = [channels * m for m in channel_mult]
        self.levels = len(widths)
        self.time = TimestepMLP(temb_dim)
        self.cond_proj = nn.ModuleList(
            nn.Sequential(nn.Conv2d(cond_channels, w, 1), nn.SiLU(), nn.Conv2d(w, w, 1)) for w in widths
        )
        self.inp = nn.Conv2d(latent_channels, widths[0], 3, padding=1)
        self.down = nn.ModuleList()
        self.downsample = nn.ModuleList()
        cin = widths[0]
        for l, w in enumerate(widths):
            self.down.append(nn.ModuleList(CondResBlock(cin if b == 0 else w, w, temb_dim) for b in range(num_blocks)))
            cin = w
            if l < self.levels - 1:
                self.downsample.append(nn.Conv2d(w, widths[l + 1], 3, stride=2, padding=1))
                cin = widths[l + 1]
        self.mid = CondResBlock(widths[-1], widths[-1], temb_dim)
        self.up = nn.ModuleList()
        self.upsample = nn.ModuleList()
        for l in range(self.levels - 1, -1, -1):
            w = widths[l]
            self.up.append(nn.ModuleList(CondResBlock(2 * w if b == 0 else w, w, temb_dim) for b in range(num_blocks)))
            if l > 0:
                self.upsample.append(nn.Conv2d(w, widths[l - 1], 3, padding=1))
        self.out_norm = group_norm(widths[0])
        self.out = nn.Conv2d(widths[0], latent_channels, 3, padding=1)
        # NOTE: deliberately no ReLU (or any activation) after self.out: the authors' code
        # applies a final ReLU to the predicted noise, which cannot represent negative noise.

    def forward(self, latents: torch.Tensor, timestep: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        temb = self.time(timestep.to(latents.device))
        conds: List[torch.Tensor] = []
        c = cond
        for l in range(self.levels):
            if l > 0:
                c = F.avg_pool2d(c, 2)
            conds.append(self.cond_proj[l](c))
        h = self.inp(latents)
        skips: List[torch.Tensor] = []
        for l in range(self.levels):
            for block in self.down[l]:
                h = block(h, temb, conds[l])
            skips.append(h)
            if l < self.levels - 1:
                h = self.downsample[l](h)
        h = self.mid(h, temb, conds[-1])
        for i, l in enumerate(range(self.levels - 1, -1, -1)):
            h = torch.cat([h, skips[l]], dim=1)
            for block in self.up[i]:
                h = block(h, temb, conds[l])
            if l > 0:
                h = self.upsample[i](F.interpolate(h, scale_factor=2.0, mode="nearest"))
        return self.out(F.silu(self.out_norm(h)))
