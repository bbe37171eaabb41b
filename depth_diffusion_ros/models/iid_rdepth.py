"""IID-RDepth: monocular depth as the restoration of frozen encoder features by diffusion.

Bai et al., "Monocular Depth Estimation From the Perspective of Feature Restoration: A Diffusion
Enhanced Depth Restoration Approach" (IID-RDepth). The paper's method, as it states it: a frozen
encoder gives multi-level features, treated as degraded versions of an assumed ground-truth
feature that would give the ground-truth depth; the high-level semantic features, combined as
mutual conditional maps, are restored by a diffusion process in feature space
(InvT-IndDiffusion) with no supervision of the feature itself, only the indirect one of the
final sparse depth; to keep that indirect supervision from letting the feature drift between
steps the decoder is an invertible transform under a bi-Lipschitz condition; the low-level
(identity-connection) features are enhanced with an auxiliary viewpoint when one is available
(AV-LFE, plug-and-play). The authors' code was not released; this module is built from that
description. The invertible transform and AV-LFE are in :mod:`.iid_rdepth_blocks`.

Data flow (B = batch, L = len(high_strides), C = feature_channels, s = feature_stride):

1. frozen encoder (the image encoder of a trained monocular DiffusionDepth, ``pretrained_path``;
   ``requires_grad`` off, kept in eval mode in training): levels at ``high_strides`` and
   ``low_strides``;
2. degraded feature ``f_d`` (B, L*C, H/s, W/s): each high level through a 1x1 projection,
   resized to stride s, normalised per sample (group norm without affine: unit scale, the scale
   the diffusion assumes), stacked;
3. low-level features, with an auxiliary view enhanced by AV-LFE (:class:`AuxViewEnhancement`);
4. InvT-IndDiffusion: DDIM (Song et al. 2021, eq. 12; the timesteps of
   :mod:`.ddim_schedule`, 3 trailing steps by default) on the state x (B, L*C, H/s, W/s) from
   x_T ~ N(0, I); the conditioned U-Net of :mod:`.denoiser` predicts the restored feature
   ``pred_original_sample`` from (x_t, t, f_d);
5. decoder: the invertible transform (i-ResNet, bi-Lipschitz) on the restored feature, then a
   plain upsampling head with the low-level features as skips -> normalised log depth -> metres.

Training (indirect supervision): the whole DDIM loop runs with gradients from noise; every step's
``pred_original_sample`` is decoded and supervised by the sparse LiDAR depth (SILog + L1), none
by a feature target. Variant ``baseline``: the same frozen features through the same
projection, plain (unconstrained) residual blocks in place of diffusion + invertible transform,
and the same head: the comparison isolates the restoration.

The ``cond`` tensor (what the DiffusionDepth backends carry between encode, steps and decode),
(B, cond_channels, H/s, W/s): [f_d (L*C) | pixel_unshuffle(low level at stride s_i, s / s_i)
for s_i in low_strides]. The model has the DiffusionDepth graph parts (``encode_condition``,
``denoise``, ``ddim_step``, ``decode``, ``latent_shape``), so the torch, ONNX Runtime and
TensorRT DiffusionDepth backends, the sampler loop and the step-form export run it unchanged;
``encode_condition`` takes the optional ``rgb_aux``.

Design choices the paper leaves open (also listed in the model card)
--------------------------------------------------------------------
1. **Frozen encoder**: the MobileNetV3-Small image encoder of the shipped monocular DiffusionDepth
   (``weights/diffusion_depth_kitti_monocular``), not the paper's (a Swin / ConvNeXt-class
   encoder; ``training/configs/iid_rdepth_kitti_eigen_paper.yaml`` names it), so that the
   comparison isolates the restoration on this CPU. Its BatchNorms stay in eval mode.
2. **Which levels**: high = strides 8, 16, 32 (restored), low = strides 2, 4 (identity
   connections, AV-LFE on stride 4 by default).
3. **"Mutual conditional maps"**: the high levels are restored jointly as one stacked state, and
   the denoiser is conditioned on the stack of all degraded levels, so each level's restoration
   sees the others. (One diffusion per level, each conditioned on the other levels only, is the
   other reading; it costs L denoisers.)
4. **Diffusion**: in the normalised feature space at stride 8, from pure noise (a conditional
   generation of the restored feature, as DiffusionDepth samples its depth latent), the network
   predicts the sample (x0; it is what the decoder reads) as the degraded feature plus a
   correction (``residual_restoration``: the restoration starts from what the encoder gave, so
   at initialisation the model is the baseline with an invertible transform), 3 DDIM steps
   (trailing spacing, eta 0), 1000 training timesteps, linear betas, no clipping (features are
   not bounded).
5. **Indirect supervision at every step** (``step_supervision: every``): each step's x0 is
   decoded and supervised, so consecutive steps must each give the right depth; with the
   bi-Lipschitz decoder ``||x - x'|| <= Lip(T^-1) ||T x - T x'||`` this also bounds how far the
   restored features of two steps can differ in the decoder's input space (the drift the paper
   names). ``last`` supervises the final step only.
6. **Invertible transform**: i-ResNet blocks (Behrmann et al. 2019) rather than affine coupling:
   dimension-preserving on the feature map without splitting channels, bi-Lipschitz constants
   known in closed form (``(1 + c)^n`` and ``(1 - c)^-n``), and the Lipschitz bound is exact
   here: the convolutions are scaled by their exact largest singular value times the kernel
   size, a rigorous bound of a zero-padded convolution's norm (spectral normalisation by power
   iteration only estimates it from below). c = 0.9, 3 blocks; inverse by fixed-point iteration.
   The inverse is not used at inference; it is what makes the decoder injective (no feature
   direction the depth loss cannot see).
7. **AV-LFE**: local attention (a correlation over a 7x7 window at stride 4, 8-channel queries and keys, of 1x1-projected
   features, softmax over the window) from the main view into the auxiliary view, fused by a
   sigmoid gate through a zero-initialised projection (identity at the start, exactly the
   identity with no auxiliary view). The auxiliary view on the KITTI sequence is the previous
   frame (frame 0: frame 1): the drive has no image_03. Trained with ``aux_dropout`` 0.2 so one
   model serves frames with and without the auxiliary view.
8. **Head and loss**: a small upsampling head (stride 8 -> 4 -> 2, bilinear to full size) on
   normalised log depth in [min_depth, max_depth]; SILog (BTS, lambda 0.85) + 0.1 L1 in metres.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from depth_diffusion_ros.models.backbone import TimmBackbone
from depth_diffusion_ros.models.ddim import DDIMScheduler, ddim_step_tensor
from depth_diffusion_ros.models.denoiser import ConditionedUNet
from depth_diffusion_ros.models.depth_latent import LogDepthNormalizer
from depth_diffusion_ros.models.iid_rdepth_blocks import AuxViewEnhancement, InvertibleTransform, stack_levels
from depth_diffusion_ros.models.iid_rdepth_config import IIDRDepthConfig
from depth_diffusion_ros.models.losses import masked_l1, silog_loss, valid_depth_mask
from depth_diffusion_ros.models.neck import ConvAct


class PlainBlocks(nn.Module):
    """The baseline's decoder transform: residual blocks ``x + conv1x1(ELU(conv3x3(x)))``, unconstrained."""

    def __init__(self, channels: int, hidden: int, blocks: int) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.Conv2d(channels, hidden, 3, padding=1), nn.ELU(), nn.Conv2d(hidden, channels, 1))
            for _ in range(blocks)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = x + block(x)
        return x


class DepthHead(nn.Module):
    """Feature (B,Cin,H/s,W/s) + low-level skips (coarse to fine) -> normalised log depth (B,1,H,W)."""

    def __init__(self, cin: int, channels: int, skips: List[Tuple[int, int]], stride: int) -> None:
        super().__init__()
        self.stride = stride
        self.inp = ConvAct(cin, channels, 3)
        self.skip_strides = [s for s, _ in skips]
        self.fuse = nn.ModuleList(ConvAct(channels + c, channels, 3) for _, c in skips)
        self.out = nn.Conv2d(channels, 1, 3, padding=1)

    def forward(self, x: torch.Tensor, skips: List[torch.Tensor], size: Tuple[int, int]) -> torch.Tensor:
        h = self.inp(x)
        for fuse, skip in zip(self.fuse, skips):
            h = F.interpolate(h, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            h = fuse(torch.cat([h, skip], dim=1))
        return F.interpolate(self.out(h), size=size, mode="bilinear", align_corners=False)


def load_frozen_encoder(encoder: TimmBackbone, checkpoint: str) -> Optional[float]:
    """Copy the ``backbone`` of a DiffusionDepth checkpoint (a directory) into ``encoder`` and
    return its canonical focal; a file is loaded as backbone weights (no canonical focal)."""
    from depth_diffusion_ros.models.backbone import load_backbone_weights
    from depth_diffusion_ros.models.checkpoint import load_checkpoint

    if not Path(checkpoint).is_dir():
        load_backbone_weights(encoder.body, checkpoint)
        return None
    source = load_checkpoint(Path(checkpoint), architecture="diffusion_depth")
    encoder.load_state_dict(source.backbone.state_dict(), strict=True)
    return source.canonical_focal


class IIDRDepth(nn.Module):
    """IID-RDepth (module docstring); ``config.variant`` "baseline" is the plain-decoder row.

    Attributes:
        size_divisor: H and W of every input must be multiples of it.
        cond_channels: channels of ``cond``; latent_channels: of the diffusion state.
        canonical_focal: the encoder checkpoint's (pixels), saved with the weights.
    """

    def __init__(self, config: IIDRDepthConfig) -> None:
        super().__init__()
        config.validate()
        self.config = config
        self.restoration = config.variant == "iid_rdepth"
        self.completion = False  # monocular: the DiffusionDepth export and backends read this
        self.size_divisor = config.size_divisor
        self.latent_stride = s = config.feature_stride
        self.normalizer = LogDepthNormalizer(config.min_depth, config.max_depth)
        self.encoder = TimmBackbone(config.backbone, None, min_stride=min(config.low_strides), **config.backbone_kwargs)
        self.canonical_focal = load_frozen_encoder(self.encoder, config.pretrained_path) \
            if config.pretrained_path else None
        self.encoder.requires_grad_(False)
        strides, channels = self.encoder.strides, self.encoder.channels
        missing = [st for st in config.high_strides + config.low_strides if st not in strides]
        if missing:
            raise ValueError(f"encoder {config.backbone!r} has feature strides {strides}, not {missing}")
        self.high_levels = [strides.index(st) for st in config.high_strides]
        self.low_levels = [strides.index(st) for st in sorted(config.low_strides, reverse=True)]
        self.low_strides = [strides[i] for i in self.low_levels]  # coarse to fine
        self.low_channels = [channels[i] for i in self.low_levels]
        C = config.feature_channels
        self.latent_channels = config.latent_channels
        self.high_proj = nn.ModuleList(nn.Conv2d(channels[i], C, 1) for i in self.high_levels)
        self.cond_channels = self.latent_channels + sum(c * (s // st) ** 2 for c, st in
                                                        zip(self.low_channels, self.low_strides))
        self.av_lfe = nn.ModuleDict({
            str(st): AuxViewEnhancement(c, config.av_lfe_dim, config.av_lfe_window)
            for st, c in zip(self.low_strides, self.low_channels) if config.av_lfe and st in config.av_lfe_strides
        })
        if self.restoration:
            self.denoiser = ConditionedUNet(self.latent_channels, self.latent_channels, config.denoiser_channels,
                                            config.denoiser_channel_mult, 1, config.time_embed_dim)
            self.transform: nn.Module = InvertibleTransform(self.latent_channels, config.invertible_hidden,
                                                            config.invertible_blocks, config.lipschitz_coeff)
        else:
            self.transform = PlainBlocks(self.latent_channels, config.invertible_hidden, config.invertible_blocks)
        self.head = DepthHead(self.latent_channels, config.decoder_channels,
                              list(zip(self.low_strides, self.low_channels)), s)
        self.scheduler = DDIMScheduler.from_config(config)
        self.register_buffer("alphas_cumprod", self.scheduler.alphas_cumprod.clone(), persistent=False)
        self.register_buffer("final_alpha_cumprod", self.scheduler.final_alpha_cumprod.reshape(1).clone(),
                             persistent=False)

    @property
    def uses_aux(self) -> bool:
        """True when the model has AV-LFE (an auxiliary view changes its output)."""
        return len(self.av_lfe) > 0

    def train(self, mode: bool = True) -> "IIDRDepth":
        """nn.Module.train; the frozen encoder stays in eval mode (its BatchNorm statistics too)."""
        super().train(mode)
        self.encoder.eval()
        return self

    # ------------------------------------------------------------------ shapes
    def latent_shape(self, height: int, width: int) -> Tuple[int, int, int]:
        """(latent_channels, H/s, W/s): the shape of ``noise`` per sample (ValueError for a bad size)."""
        self.check_size(height, width)
        s = self.latent_stride
        return (self.latent_channels, height // s, width // s)

    def check_size(self, height: int, width: int) -> None:
        d = self.size_divisor
        if height <= 0 or width <= 0 or height % d or width % d:
            raise ValueError(f"input size {height}x{width} (HxW) must be a positive multiple of the model's "
                             f"size_divisor {d}; pad with inference.preprocess.pad_to_multiple")

    # ------------------------------------------------------------------ graph parts
    def encoder_features(self, rgb: torch.Tensor) -> List[torch.Tensor]:
        """The frozen encoder's levels (no gradient) for rgb (B,3,H,W) in [0,1]."""
        with torch.no_grad():
            return [f.detach() for f in self.encoder(rgb)]

    def encode_condition(self, rgb: torch.Tensor, sparse_depth: Optional[torch.Tensor] = None,
                         valid_mask: Optional[torch.Tensor] = None, priors: Optional[torch.Tensor] = None,
                         rgb_aux: Optional[torch.Tensor] = None,
                         aux_weight: Optional[torch.Tensor] = None) -> torch.Tensor:
        """cond (B, cond_channels, H/s, W/s) from rgb (B,3,H,W) in [0,1] (sparse inputs ignored:
        monocular) and the optional auxiliary view rgb_aux (B,3,H,W); aux_weight (B,1,1,1) in
        {0,1} (training: per-sample dropout of the auxiliary view; default 1)."""
        self.check_size(rgb.shape[-2], rgb.shape[-1])
        feats = self.encoder_features(rgb)
        s = self.latent_stride
        size = (rgb.shape[-2] // s, rgb.shape[-1] // s)
        degraded = [F.group_norm(proj(feats[i]), 1) for proj, i in zip(self.high_proj, self.high_levels)]
        parts = [stack_levels(degraded, size)]
        aux = None
        if rgb_aux is not None and self.uses_aux:
            aux = self.encoder_features(rgb_aux)
            if aux_weight is None:
                aux_weight = rgb.new_ones(rgb.shape[0], 1, 1, 1)
        for i, st in zip(self.low_levels, self.low_strides):
            f = feats[i]
            if aux is not None and str(st) in self.av_lfe:
                f = self.av_lfe[str(st)](f, aux[i], aux_weight)
            parts.append(F.pixel_unshuffle(f, s // st))
        return torch.cat(parts, dim=1)

    def split_condition(self, cond: torch.Tensor) -> Tuple[torch.Tensor, List[torch.Tensor]]:
        """cond -> (degraded feature (B, L*C, h, w), low-level features coarse to fine)."""
        s, start = self.latent_stride, self.latent_channels
        lows = []
        for c, st in zip(self.low_channels, self.low_strides):
            n = c * (s // st) ** 2
            lows.append(F.pixel_shuffle(cond[:, start:start + n], s // st))
            start += n
        return cond[:, : self.latent_channels], lows

    def denoise(self, latents: torch.Tensor, timestep: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """The network's prediction (``config.prediction_type``) from the noisy state x_t; with
        ``residual_restoration`` and sample prediction, the degraded feature plus the U-Net's
        correction (restoration as a residual on what the encoder gave)."""
        degraded = cond[:, : self.latent_channels]
        out = self.denoiser(latents, timestep, degraded)
        if self.config.residual_restoration and self.config.prediction_type == "sample":
            out = degraded + out
        return out

    def ddim_step_outputs(self, latents: torch.Tensor, timestep: torch.Tensor, prev_timestep: torch.Tensor,
                          cond: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """(prev_sample, pred_original_sample) of one deterministic DDIM step (eq. 12)."""
        return ddim_step_tensor(self.alphas_cumprod, self.final_alpha_cumprod, self.denoise(latents, timestep, cond),
                                timestep, prev_timestep, latents, prediction_type=self.config.prediction_type,
                                clip_sample_range=self.scheduler.clip_sample_range)

    def ddim_step(self, latents: torch.Tensor, timestep: torch.Tensor, prev_timestep: torch.Tensor,
                  cond: torch.Tensor) -> torch.Tensor:
        """x_t -> x_prev (the baseline has no diffusion: the state passes through unchanged)."""
        if not self.restoration:
            return latents
        return self.ddim_step_outputs(latents, timestep, prev_timestep, cond)[0]

    def decode_log(self, latents: torch.Tensor, cond: torch.Tensor, size: Tuple[int, int]) -> torch.Tensor:
        """Normalised log depth (B,1,H,W) from the restored feature (baseline: the degraded one)."""
        degraded, lows = self.split_condition(cond)
        feature = latents if self.restoration else degraded
        return self.head(self.transform(feature), lows, size)

    def decode(self, latents: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """Depth (B,1,H,W) metres (clamped to [min_depth, max_depth] in eval mode)."""
        s = self.latent_stride
        size = (cond.shape[-2] * s, cond.shape[-1] * s)
        log_depth = self.normalizer.log_depth(self.decode_log(latents, cond, size))
        if self.training:
            return torch.exp(log_depth.clamp(max=20.0))
        return torch.exp(log_depth).clamp(self.config.min_depth, self.config.max_depth)

    # ------------------------------------------------------------------ sampling and training
    def timestep_pairs(self, num_inference_steps: Optional[int] = None) -> List[Tuple[torch.Tensor, torch.Tensor]]:
        pairs = self.scheduler.timestep_pairs(int(num_inference_steps or self.config.num_inference_steps))
        dev = self.alphas_cumprod.device
        return [(torch.tensor(t, device=dev), torch.tensor(p, device=dev)) for t, p in pairs]

    def restore(self, cond: torch.Tensor, noise: torch.Tensor,
                num_inference_steps: Optional[int] = None) -> List[torch.Tensor]:
        """Every step's pred_original_sample (B, L*C, h, w), from x_T = noise (baseline: [noise])."""
        if not self.restoration:
            return [noise]
        x, outs = noise, []
        for t, prev in self.timestep_pairs(num_inference_steps):
            x, x0 = self.ddim_step_outputs(x, t, prev, cond)
            outs.append(x0)
        return outs

    def sample(self, rgb: torch.Tensor, rgb_aux: Optional[torch.Tensor] = None, noise: Optional[torch.Tensor] = None,
               num_inference_steps: Optional[int] = None, generator: Optional[torch.Generator] = None,
               full_output: bool = True) -> torch.Tensor:
        """Depth (B,1,H,W) metres for rgb (B,3,H,W) in [0,1] (and the optional auxiliary view);
        ``full_output`` as DiffusionDepth.sample's (no uncertainty head here: always depth only)."""
        cond = self.encode_condition(rgb, rgb_aux=rgb_aux)
        if noise is None:
            shape = (rgb.shape[0],) + self.latent_shape(rgb.shape[-2], rgb.shape[-1])
            noise = torch.randn(shape, generator=generator, device=rgb.device, dtype=rgb.dtype)
        x0 = self.restore(cond, noise, num_inference_steps)[-1]
        return self.decode(x0, cond)

    def training_loss(self, rgb: torch.Tensor, gt_depth: torch.Tensor, rgb_aux: Optional[torch.Tensor] = None,
                      aux_available: Optional[torch.Tensor] = None,
                      generator: Optional[torch.Generator] = None) -> Dict[str, torch.Tensor]:
        """{"loss", "silog", "l1"}: indirect supervision of every step's decoded x0 by the sparse
        GT (B,1,H,W) metres, 0 = none. aux_available (B,) bool: which samples have rgb_aux."""
        cfg = self.config
        aux_weight = None
        if rgb_aux is not None and self.uses_aux:
            keep = torch.rand(rgb.shape[0], generator=generator) >= cfg.aux_dropout
            if aux_available is not None:
                keep = keep & aux_available.cpu().bool()
            aux_weight = keep.to(rgb.dtype).reshape(-1, 1, 1, 1).to(rgb.device)
        cond = self.encode_condition(rgb, rgb_aux=rgb_aux, aux_weight=aux_weight)
        shape = (rgb.shape[0],) + self.latent_shape(rgb.shape[-2], rgb.shape[-1])
        noise = torch.randn(shape, generator=generator).to(rgb.device, rgb.dtype)
        x0s = self.restore(cond, noise)
        if cfg.step_supervision == "last":
            x0s = x0s[-1:]
        mask = valid_depth_mask(gt_depth)
        sil, l1 = rgb.new_zeros(()), rgb.new_zeros(())
        for x0 in x0s:
            depth = self.decode(x0, cond)
            sil = sil + silog_loss(depth, gt_depth, mask) / len(x0s)
            l1 = l1 + masked_l1(depth, gt_depth, mask) / len(x0s)
        loss = cfg.loss_weight_silog * sil + cfg.loss_weight_l1 * l1
        return {"loss": loss, "silog": sil.detach(), "l1": l1.detach()}

    def trainable_parameters(self) -> List[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]

    def parameter_counts(self) -> Dict[str, int]:
        """{"total", "trainable", "frozen_encoder"} parameter counts."""
        total = sum(p.numel() for p in self.parameters())
        enc = sum(p.numel() for p in self.encoder.parameters())
        return {"total": total, "trainable": total - enc, "frozen_encoder": enc}
