"""DSR-Diff's networks and their building blocks (Shi et al., "DSR-Diff: Depth Map
Super-Resolution with Diffusion Model", arXiv 2311.09919, Sec. 3.2-3.4).

* Building blocks: channel layer norm, the guidance modulation ``(1 + W1 z) * LN(F) + W2 z``,
  Restormer's transposed attention and gated feed-forward (Zamir et al., CVPR 2022), guided
  transformer blocks and groups, the feature fusion module (FFM), the guidance encoder.
* Networks: the GGN (guidance generation, Sec. 3.2), the DSRN (depth super-resolution,
  Sec. 3.3, with the kernel-prediction reconstruction head) and the GRN (guidance recovery,
  Sec. 3.4: condition encoder + MLP noise predictor).

The model that ties them together (normalisation, DDIM sampling of the guidance, the two
training stages) and the design choices the paper leaves open are in
:mod:`depth_diffusion_ros.models.dsr_diff`.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from depth_diffusion_ros.models.denoiser import timestep_embedding
from depth_diffusion_ros.models.dsr_diff_config import DSRDiffConfig


class LayerNorm2d(nn.Module):
    """Layer normalisation over the channel axis of (B, C, H, W) features (ONNX-friendly)."""

    def __init__(self, channels: int, affine: bool = True):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(1, channels, 1, 1)) if affine else None
        self.bias = nn.Parameter(torch.zeros(1, channels, 1, 1)) if affine else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mu = x.mean(dim=1, keepdim=True)
        var = (x - mu).pow(2).mean(dim=1, keepdim=True)
        x = (x - mu) / torch.sqrt(var + 1e-5)
        if self.weight is not None:
            x = x * self.weight + self.bias
        return x


class GuidanceModulation(nn.Module):
    """Channel-wise modulation of normalised features by the guidance vector z.

    ``(1 + W1 z) * x + W2 z`` with x (B,C,H,W), z (B,G) (design choice 4 of
    :mod:`~depth_diffusion_ros.models.dsr_diff`).
    """

    def __init__(self, channels: int, guidance_dim: int):
        super().__init__()
        self.linear = nn.Linear(guidance_dim, 2 * channels)
        nn.init.normal_(self.linear.weight, std=0.02)
        nn.init.zeros_(self.linear.bias)

    def forward(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        scale, shift = self.linear(z).unsqueeze(-1).unsqueeze(-1).chunk(2, dim=1)
        return x * (1.0 + scale) + shift


class TransposedAttention(nn.Module):
    """Multi-head transposed (channel) self-attention, cost linear in the pixel count.

    Source: Zamir et al., "Restormer", CVPR 2022, Sec. 3.1 (MDTA): 1x1 + depth-wise 3x3 conv
    projections, L2-normalised q/k, attention map (C/heads x C/heads) with a learnt temperature.
    """

    def __init__(self, channels: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.temperature = nn.Parameter(torch.ones(num_heads, 1, 1))
        self.qkv = nn.Conv2d(channels, channels * 3, 1)
        self.qkv_dw = nn.Conv2d(channels * 3, channels * 3, 3, padding=1, groups=channels * 3)
        self.proj = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        q, k, v = self.qkv_dw(self.qkv(x)).chunk(3, dim=1)
        heads = self.num_heads
        q = F.normalize(q.reshape(b, heads, c // heads, h * w), dim=-1)
        k = F.normalize(k.reshape(b, heads, c // heads, h * w), dim=-1)
        v = v.reshape(b, heads, c // heads, h * w)
        attn = torch.softmax(torch.matmul(q, k.transpose(-2, -1)) * self.temperature, dim=-1)
        out = torch.matmul(attn, v).reshape(b, c, h, w)
        return self.proj(out)


class GatedFeedForward(nn.Module):
    """Gated depth-wise feed-forward network (Restormer GDFN, Zamir et al. 2022, Sec. 3.2)."""

    def __init__(self, channels: int, expansion: float):
        super().__init__()
        hidden = max(int(channels * expansion), 1)
        self.proj_in = nn.Conv2d(channels, hidden * 2, 1)
        self.dw = nn.Conv2d(hidden * 2, hidden * 2, 3, padding=1, groups=hidden * 2)
        self.proj_out = nn.Conv2d(hidden, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1, x2 = self.dw(self.proj_in(x)).chunk(2, dim=1)
        return self.proj_out(F.gelu(x1) * x2)


class GuidedTransformerBlock(nn.Module):
    """Transformer-style block of the DFE/CFE/reconstruction groups (DSR-Diff Sec. 3.3).

    x (B,C,H,W), z (B,G) -> (B,C,H,W):
    ``x + Attn(Mod(LN(x), z))`` then ``x + FFN(Mod(LN(x), z))``.
    """

    def __init__(self, channels: int, num_heads: int, expansion: float, guidance_dim: int):
        super().__init__()
        self.norm1 = LayerNorm2d(channels)
        self.mod1 = GuidanceModulation(channels, guidance_dim)
        self.attn = TransposedAttention(channels, num_heads)
        self.norm2 = LayerNorm2d(channels)
        self.mod2 = GuidanceModulation(channels, guidance_dim)
        self.ffn = GatedFeedForward(channels, expansion)

    def forward(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.mod1(self.norm1(x), z))
        return x + self.ffn(self.mod2(self.norm2(x), z))


class GuidedGroup(nn.Module):
    """A group of guided transformer blocks followed by a 3x3 conv, with a group residual."""

    def __init__(self, channels: int, num_blocks: int, num_heads: int, expansion: float, guidance_dim: int):
        super().__init__()
        self.blocks = nn.ModuleList(
            GuidedTransformerBlock(channels, num_heads, expansion, guidance_dim) for _ in range(num_blocks)
        )
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        y = x
        for block in self.blocks:
            y = block(y, z)
        return x + self.conv(y)


class FeatureFusionModule(nn.Module):
    """FFM (DSR-Diff Sec. 3.3): ``conv3x3(colour_features) * upsample(depth_features)``.

    colour_features (B,C,H',W'), depth_features (B,C,h,w) -> (B,C,H',W'); the depth features
    are upsampled bilinearly to (H', W') (any integer or non-integer ratio).
    """

    def __init__(self, channels: int):
        super().__init__()
        self.colour_conv = nn.Conv2d(channels, channels, 3, padding=1)

    def upsample(self, depth_features: torch.Tensor, size: tuple) -> torch.Tensor:
        return F.interpolate(depth_features, size=size, mode="bilinear", align_corners=False)

    def forward(self, colour_features: torch.Tensor, depth_features: torch.Tensor) -> torch.Tensor:
        size = (colour_features.shape[-2], colour_features.shape[-1])
        return self.colour_conv(colour_features) * self.upsample(depth_features, size)


class ResBlock(nn.Module):
    """conv3x3 - LeakyReLU(0.1) - conv3x3 with identity skip (guidance encoders)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.leaky_relu(self.conv1(x), 0.1))


class GuidanceEncoder(nn.Module):
    """Image-to-vector encoder shared by the GGN and the GRN's condition encoder.

    (B, in_channels, H, W) -> (B, guidance_dim): pixel unshuffle x4, conv, ``downsamples``
    x [ResBlock, stride-2 conv], ResBlock, global average pool, two-layer MLP.
    DSR-Diff Sec. 3.2 ("extracting and compressing" the inputs into compact guidance).
    H and W must be multiples of 4. ``pooled_input``: the caller gives the inputs at (H/4, W/4)
    (area-averaged colour, depth resized from LR), no pixel unshuffle: the same receptive field
    for a fraction of the cost at 640x480 (no full-resolution bicubic, no unshuffle transpose).
    """

    def __init__(self, in_channels: int, channels: int, downsamples: int, out_dim: int, normalise: bool,
                 pooled_input: bool = False):
        super().__init__()
        if pooled_input:  # the inputs arrive at H/4 already (DSRDiffConfig.guidance_input "pool")
            layers = [nn.Conv2d(in_channels, channels, 3, padding=1), nn.LeakyReLU(0.1)]
        else:
            layers = [nn.PixelUnshuffle(4), nn.Conv2d(in_channels * 16, channels, 3, padding=1), nn.LeakyReLU(0.1)]
        for _ in range(downsamples):
            layers += [ResBlock(channels), nn.Conv2d(channels, channels, 3, stride=2, padding=1), nn.LeakyReLU(0.1)]
        layers.append(ResBlock(channels))
        self.features = nn.Sequential(*layers)
        self.mlp = nn.Sequential(nn.Linear(channels, out_dim * 2), nn.LeakyReLU(0.1), nn.Linear(out_dim * 2, out_dim))
        self.normalise = normalise

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        v = self.mlp(self.features(x).mean(dim=(2, 3)))
        if self.normalise:  # dsr_diff design choice 5: zero mean / unit variance per sample
            v = F.layer_norm(v, (v.shape[-1],))
        return v


class GuidanceGenerationNetwork(nn.Module):
    """GGN (DSR-Diff Sec. 3.2): HR depth + HR colour + upsampled LR depth -> guidance z.

    Inputs (normalised depth): rgb (B,3,H,W) [0,1], depth_hr (B,1,H,W), depth_up (B,1,H,W),
    mask_up (B,1,H,W). Output (B, guidance_dim), per-sample layer-normalised.
    """

    def __init__(self, config: DSRDiffConfig):
        super().__init__()
        self.encoder = GuidanceEncoder(6, config.ggn_channels, config.ggn_downsamples, config.guidance_dim, True,
                                       config.guidance_input == "pool")

    def forward(self, rgb, depth_hr, depth_up, mask_up) -> torch.Tensor:
        return self.encoder(torch.cat([rgb, depth_hr, depth_up, mask_up], dim=1))


class GuidanceDenoiser(nn.Module):
    """The GRN's noise predictor: (z_t (B,G), timestep, condition c (B,G)) -> noise_pred (B,G).

    An MLP over ``[z_t, c]`` with residual layers, each shifted by an embedding of the timestep
    (DSR-Diff Sec. 3.4 uses linear layers in the compact latent space, as DiffIR).
    """

    def __init__(self, guidance_dim: int, hidden: int, layers: int):
        super().__init__()
        self.hidden = hidden
        self.inp = nn.Linear(guidance_dim * 2, hidden)
        self.time = nn.Sequential(nn.Linear(hidden, hidden), nn.SiLU(), nn.Linear(hidden, hidden))
        self.layers = nn.ModuleList(
            nn.Sequential(nn.LayerNorm(hidden), nn.Linear(hidden, hidden), nn.SiLU(), nn.Linear(hidden, hidden))
            for _ in range(layers)
        )
        self.out = nn.Sequential(nn.LayerNorm(hidden), nn.Linear(hidden, guidance_dim))

    def forward(self, latents: torch.Tensor, timestep: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        temb = self.time(timestep_embedding(timestep, self.hidden))
        if temb.shape[0] != latents.shape[0]:
            temb = temb.expand(latents.shape[0], -1)
        h = self.inp(torch.cat([latents, cond], dim=-1)) + temb
        for layer in self.layers:
            h = h + layer(h + temb)
        return self.out(h)


class GuidanceRecoveryNetwork(nn.Module):
    """GRN (DSR-Diff Sec. 3.4): condition encoder (LR depth + HR colour) + latent denoiser."""

    def __init__(self, config: DSRDiffConfig):
        super().__init__()
        self.cond_encoder = GuidanceEncoder(5, config.ggn_channels, config.ggn_downsamples, config.guidance_dim, False,
                                            config.guidance_input == "pool")
        self.denoiser = GuidanceDenoiser(config.guidance_dim, config.grn_hidden, config.grn_layers)


def depth_candidates(depth_lr: torch.Tensor, size: tuple, depth_up: torch.Tensor) -> torch.Tensor:
    """Candidate depths per HR pixel for the kernel-prediction head: the bicubic value and the
    3x3 LR neighbourhood of the pixel's LR cell (nearest-upsampled). (B,1,h,w) -> (B,10,H,W).

    Built from padding and slicing only (no unfold), so it exports to any ONNX opset.
    """
    h, w = depth_lr.shape[-2], depth_lr.shape[-1]
    padded = F.pad(depth_lr, (1, 1, 1, 1), mode="replicate")
    shifts = [padded[..., dy:dy + h, dx:dx + w] for dy in range(3) for dx in range(3)]
    neighbours = F.interpolate(torch.cat(shifts, dim=1), size=size, mode="nearest")
    return torch.cat([depth_up, neighbours], dim=1)


NUM_CANDIDATES = 10


def channel_softmax(logits: torch.Tensor) -> torch.Tensor:
    """Softmax over the channel axis of (B,K,H,W) as exp / sum: the same values as
    ``torch.softmax(logits, 1)``, but element-wise ops and one reduction in ONNX (ONNX Runtime's
    Softmax over axis 1 of an NCHW tensor transposes it, ~4x slower at 640x480)."""
    e = torch.exp(logits - logits.amax(dim=1, keepdim=True))
    return e / e.sum(dim=1, keepdim=True)


class DepthSuperResolutionNetwork(nn.Module):
    """DSRN (DSR-Diff Sec. 3.3): LR depth + HR colour + guidance -> HR depth (normalised units).

    forward(rgb (B,3,H,W) [0,1], depth_lr (B,1,h,w) normalised & filled, mask_lr (B,1,h,w),
    guidance (B,G)) -> (B,1,H,W) normalised depth. H, W multiples of ``feature_stride``.

    Reconstruction head (design choice 8 of :mod:`~depth_diffusion_ros.models.dsr_diff`): per HR
    pixel, softmax weights over :func:`depth_candidates` (bicubic value + 3x3 LR neighbours) plus
    a residual, ``sum_k softmax(a)_k c_k + residual_scale * r``. Initialised to (almost) the
    bicubic value.
    """

    def __init__(self, config: DSRDiffConfig):
        super().__init__()
        c, s = config.channels, config.feature_stride
        g, heads, exp = config.guidance_dim, config.num_heads, config.ffn_expansion
        self.stride = s
        self.residual_scale = float(config.residual_scale)
        self.depth_embed = nn.Conv2d(2, c, 3, padding=1)
        self.dfe = GuidedGroup(c, config.dfe_blocks, heads, exp, g)
        self.colour_embed = nn.Conv2d(3 * s * s, c, 3, padding=1)
        self.cfe = GuidedGroup(c, config.cfe_blocks, heads, exp, g)
        self.ffm = FeatureFusionModule(c)
        self.up_depth_embed = nn.Conv2d(s * s, c, 3, padding=1)
        self.fusion = GuidedGroup(c, config.fusion_blocks, heads, exp, g)
        k = int(config.head_kernel)
        self.upsample_mode = config.upsample_mode
        self.head = nn.Sequential(
            nn.Conv2d(c, c, 3, padding=1), nn.LeakyReLU(0.1),
            nn.Conv2d(c, (NUM_CANDIDATES + 1) * s * s, k, padding=k // 2),
        )
        self.shuffle = nn.PixelShuffle(s) if s > 1 else nn.Identity()
        self.unshuffle = nn.PixelUnshuffle(s) if s > 1 else nn.Identity()
        last = self.head[-1]
        nn.init.zeros_(last.weight)
        with torch.no_grad():  # start as (almost) bicubic: logit 5 for candidate 0, no residual
            last.bias.zero_()
            last.bias.view(NUM_CANDIDATES + 1, s * s)[0] = 5.0

    def forward(self, rgb, depth_lr, mask_lr, guidance) -> torch.Tensor:
        size = (rgb.shape[-2], rgb.shape[-1])
        depth_up = F.interpolate(depth_lr, size=size, mode=self.upsample_mode, align_corners=False)
        f_depth = self.dfe(self.depth_embed(torch.cat([depth_lr, mask_lr], dim=1)), guidance)
        f_colour = self.cfe(self.colour_embed(self.unshuffle(rgb)), guidance)
        fused = self.ffm(f_colour, f_depth) + self.up_depth_embed(self.unshuffle(depth_up))
        fused = self.fusion(fused, guidance)
        out = self.shuffle(self.head(fused))
        weights = channel_softmax(out[:, :NUM_CANDIDATES])
        cands = depth_candidates(depth_lr, size, depth_up)
        return (weights * cands).sum(dim=1, keepdim=True) + self.residual_scale * out[:, NUM_CANDIDATES:]
