"""DiffusionDepth: depth estimation / completion as conditioned denoising of a depth latent.

Duan, Guo, Zhu, "DiffusionDepth: Diffusion Denoising Approach for Monocular Depth Estimation",
arXiv 2303.05021. Parts:
  * visual condition (Sec. 3.2): timm backbone + feature-pyramid neck (stride 4), brought to
    the latent stride s;
  * completion extension (ours; the authors' code is monocular only): the sparse LiDAR depth,
    its validity and an exportable densified prior (:mod:`.prior`) enter a small conv encoder
    whose features are added to the stride-4 condition; the full-resolution prior also travels
    inside ``cond`` (pixel-unshuffled, lossless) so :meth:`decode` can output prior + residual;
  * depth latent (Sec. 3.4): d = 16 channels at stride s, encoder/decoder in :mod:`.depth_latent`;
  * monocular conditioned denoising block (Sec. 3.3): :mod:`.denoiser`;
  * DDIM sampling (Song et al. 2021, eq. 12), 1000 training / 20 inference timesteps, eta 0;
  * self-diffusion training (Sec. 3.4): run the denoising loop from noise *with gradients*,
    take the refined latent, diffuse it to a random timestep with fresh noise and supervise the
    noise prediction (DDIM loss), plus L1 + L2 on decoded depth where the sparse GT is valid.

``cond`` layout, (B, cond_channels, H/s, W/s):
  channels [0, neck_channels): visual (+ sparse) condition features;
  completion only, then G*s*s channels: pixel_unshuffle(s) of the full-resolution guidance,
  G = 2: [normalised log prior * valid, prior_valid]; G = 4 (``prior_scanline_gap`` > 0):
  [pull-push prior, prior_valid, scan-line prior, measured-pixel mask] (priors normalised log
  depth * prior_valid). The sparse encoder then sees the hand-rule selection of the two priors.
The same values unpacked (:meth:`DiffusionDepth.condition_parts`): "cond" the features (all the
denoiser sees), "guidance" at full resolution, "skip_<i>" at their strides; the graphs and the
torch backend pass those (the exact pack-unpack round trip cost ONNX Runtime about 30 ms of a
1248x384 frame: 6-D transposes and a 480-channel step input).
With no LiDAR (sparse_depth None or all zero) the prior channels are zero and the decoder's
output is exactly its monocular branch; the sparse encoder sees zeros, which training with
random whole-frame LiDAR dropout (``lidar_dropout``) teaches it to treat as "monocular".

Export: ``encode_condition``, ``denoise``, ``ddim_step`` and ``decode`` contain no Python
control flow on tensor values; timesteps are tensors.
"""
from __future__ import annotations

import math
from typing import Dict, Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn

from depth_diffusion_ros.models.backbone import TimmBackbone
from depth_diffusion_ros.models.config import DiffusionDepthConfig
from depth_diffusion_ros.models.ddim import DDIMScheduler, ddim_step_tensor
from depth_diffusion_ros.models.denoiser import ConditionedUNet
from depth_diffusion_ros.models.depth_latent import (
    DepthDecoder,
    DepthEncoder,
    LogDepthNormalizer,
    laplace_log_depth_nll,
)
from depth_diffusion_ros.models.losses import masked_l1, masked_l2, valid_depth_mask
from depth_diffusion_ros.models.neck import ConvAct, FeaturePyramidNeck, SparseDepthEncoder, stride_adapter
from depth_diffusion_ros.models.prior import densify_sparse_depth, scanline_prior, select_scanline

#: cond (B, cond_channels, h, w) or its unpacked form, :meth:`DiffusionDepth.condition_parts`.
Condition = Union[torch.Tensor, Dict[str, torch.Tensor]]


class DiffusionDepth(nn.Module):
    """DiffusionDepth with an optional sparse-depth (completion) condition.

    Args:
        config: :class:`DiffusionDepthConfig`. ``config.pretrained_path`` is loaded into the
            backbone at construction (local file only).
    Attributes:
        size_divisor: H and W of every input must be multiples of it.
        cond_channels: channels of the ``cond`` tensor (see module docstring).
        scheduler: the :class:`DDIMScheduler` of the config.
    """

    def __init__(self, config: DiffusionDepthConfig) -> None:
        super().__init__()
        config.validate()
        self.config = config
        self.completion = config.mode == "completion"
        s = config.latent_stride
        self.latent_stride = s
        self.size_divisor = config.size_divisor
        self.normalizer = LogDepthNormalizer(config.min_depth, config.max_depth)
        neck_stride = config.neck_stride
        self.skip_strides = [s // 2 ** (i + 1) for i in range(len(config.decoder_skip_channels))]
        self.backbone = TimmBackbone(
            config.backbone, config.pretrained_path, min_stride=min([neck_stride] + self.skip_strides),
            **config.backbone_kwargs,
        )
        strides, channels = self.backbone.strides, self.backbone.channels
        self.neck_levels = [i for i, st in enumerate(strides) if st >= neck_stride]
        self.neck = FeaturePyramidNeck(
            [channels[i] for i in self.neck_levels], [strides[i] for i in self.neck_levels],
            config.neck_channels, out_stride=neck_stride,
        )
        self.skip_levels: list[int] = []
        for st in self.skip_strides:
            if st not in strides:
                raise ValueError(f"decoder skip at stride {st}: backbone {config.backbone!r} has feature "
                                 f"strides {strides}")
            self.skip_levels.append(strides.index(st))
        self.skip_proj = nn.ModuleList(
            ConvAct(channels[i], c, 1) for i, c in zip(self.skip_levels, config.decoder_skip_channels)
        )
        if self.completion:
            self.sparse_encoder = SparseDepthEncoder(config.sparse_channels, config.neck_channels, neck_stride,
                                                     config.sparse_stem_stride)
        self.cond_adapter = stride_adapter(config.neck_channels, neck_stride, s)
        self.feature_channels = config.neck_channels
        self.external_priors = tuple(config.external_priors) if self.completion else ()
        self.two_priors = self.completion and (config.prior_scanline_gap > 0 or config.average_prior
                                               or bool(self.external_priors))
        self.guidance_channels = (4 if self.two_priors else 2) if self.completion else 0
        self.skip_cond_channels = [c * (s // st) ** 2 for c, st in zip(config.decoder_skip_channels, self.skip_strides)]
        self.cond_channels = self.feature_channels + self.guidance_channels * s * s + sum(self.skip_cond_channels)
        self.depth_encoder = DepthEncoder(config.latent_channels, s, config.decoder_channels, self.normalizer)
        self.depth_decoder = DepthDecoder(
            config.latent_channels, s, config.decoder_channels, self.normalizer, self.guidance_channels,
            select_max_farther=config.prior_select_max_farther, select_sharpness=config.prior_select_sharpness,
            skip_channels=config.decoder_skip_channels, uncertainty=config.uncertainty_head,
            head_kernel=config.decoder_head_kernel,
        )
        self.denoiser = ConditionedUNet(
            config.latent_channels,
            self.feature_channels,
            config.denoiser_channels,
            config.denoiser_channel_mult,
            config.denoiser_blocks,
            config.time_embed_dim,
        )
        self.scheduler = DDIMScheduler.from_config(config)
        self.register_buffer("alphas_cumprod", self.scheduler.alphas_cumprod.clone(), persistent=False)
        self.register_buffer(
            "final_alpha_cumprod", self.scheduler.final_alpha_cumprod.reshape(1).clone(), persistent=False
        )

    def train(self, mode: bool = True) -> "DiffusionDepth":
        """nn.Module.train, keeping backbone BatchNorms in eval mode if ``freeze_backbone_bn``."""
        super().train(mode)
        if mode and self.config.freeze_backbone_bn:
            for m in self.backbone.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.eval()
        return self

    # ------------------------------------------------------------------ shapes
    def latent_shape(self, height: int, width: int) -> Tuple[int, int, int]:
        """(latent_channels, H/s, W/s): the shape of ``noise`` per sample.

        Raises ValueError if H or W is not a multiple of ``size_divisor``."""
        self.check_size(height, width)
        s = self.latent_stride
        return (self.config.latent_channels, height // s, width // s)

    def check_size(self, height: int, width: int) -> None:
        """Raise ValueError naming the size unless both are positive multiples of size_divisor."""
        d = self.size_divisor
        if height <= 0 or width <= 0 or height % d or width % d:
            raise ValueError(
                f"input size {height}x{width} (HxW) must be a positive multiple of the model's "
                f"size_divisor {d}; pad with inference.preprocess.pad_to_multiple"
            )

    # ------------------------------------------------------------------ graph parts
    def encode_condition(
        self,
        rgb: torch.Tensor,
        sparse_depth: Optional[torch.Tensor] = None,
        valid_mask: Optional[torch.Tensor] = None,
        priors: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        """Visual (+ sparse) condition, packed into one tensor.

        rgb: (B,3,H,W) float in [0,1]; sparse_depth: (B,1,H,W) metres, 0 = missing, or None;
        valid_mask: (B,1,H,W) {0,1} or None (then sparse_depth > 0); priors: (B,2,H,W) metres,
        the classical fills of ``config.external_priors`` (0 = none), or None (then the pull-push
        prior stands in for both).
        Returns cond (B, cond_channels, H/s, W/s): :meth:`pack_condition` of
        :meth:`condition_parts`. In monocular mode sparse inputs are ignored.
        """
        return self.pack_condition(self.condition_parts(rgb, sparse_depth, valid_mask, priors))

    def condition_parts(
        self,
        rgb: torch.Tensor,
        sparse_depth: Optional[torch.Tensor] = None,
        valid_mask: Optional[torch.Tensor] = None,
        priors: Optional[torch.Tensor] = None,
    ) -> Dict[str, torch.Tensor]:
        """The condition unpacked (arguments as :meth:`encode_condition`), in this order: {"cond":
        features (B,F,H/s,W/s), "guidance": (B,G,H,W) (completion only), "skip_<i>": (B,C_i,H/st_i,W/st_i)}."""
        feats = self.backbone(rgb)
        cn = self.neck([feats[i] for i in self.neck_levels], image_hw=rgb.shape[-2:])
        skips = {f"skip_{k}": proj(feats[i]) for k, (proj, i) in enumerate(zip(self.skip_proj, self.skip_levels))}
        if not self.completion:
            return dict({"cond": self.cond_adapter(cn)}, **skips)
        if sparse_depth is None:
            sparse_depth = rgb.new_zeros(rgb.shape[0], 1, rgb.shape[2], rgb.shape[3])
        if valid_mask is None:
            valid_mask = (sparse_depth > 0).to(rgb.dtype)
        valid = ((valid_mask > 0.5) & (sparse_depth > 0)).to(rgb.dtype)
        sparse = sparse_depth * valid
        prior, prior_valid, scan, rule = self.lidar_priors(sparse, valid, priors)
        sparse_n = self.normalizer(sparse) * valid
        rule_n = self.normalizer(rule) * prior_valid
        cn = cn + self.sparse_encoder(torch.cat([sparse_n, valid, rule_n, prior_valid], dim=1))
        guidance = [self.normalizer(prior) * prior_valid, prior_valid]
        if scan is not None:
            guidance += [self.normalizer(scan) * prior_valid, valid]
        return dict({"cond": self.cond_adapter(cn), "guidance": torch.cat(guidance, dim=1)}, **skips)

    def pack_condition(self, parts: Dict[str, torch.Tensor]) -> torch.Tensor:
        """:meth:`condition_parts` -> cond (B, cond_channels, H/s, W/s): the features, then the guidance
        and the skips pixel-unshuffled to the latent stride (lossless)."""
        s = self.latent_stride
        packed = [parts["cond"]]
        if "guidance" in parts:
            packed.append(F.pixel_unshuffle(parts["guidance"], s))
        packed += [F.pixel_unshuffle(parts[f"skip_{k}"], s // st) for k, st in enumerate(self.skip_strides)]
        return torch.cat(packed, dim=1)

    def split_condition(self, cond: Condition) -> Tuple[torch.Tensor, Optional[torch.Tensor], list]:
        """cond (B, cond_channels, h, w), or its :meth:`condition_parts` -> (features (B,F,h,w),
        full-resolution guidance (B,G,H,W) or None (monocular), decoder skips
        [(B,C_i,H/st_i,W/st_i)] coarse to fine); features None for parts without "cond"."""
        if isinstance(cond, dict):
            return (cond.get("cond"), cond.get("guidance"),  # the decoder needs no features
                    [cond[f"skip_{k}"] for k in range(len(self.skip_strides))])
        s = self.latent_stride
        features = cond[:, : self.feature_channels]
        start = self.feature_channels
        guidance = None
        if self.guidance_channels:
            end = start + self.guidance_channels * s * s
            guidance = F.pixel_shuffle(cond[:, start:end], s)
            start = end
        skips = []
        for c, st in zip(self.skip_cond_channels, self.skip_strides):
            skips.append(F.pixel_shuffle(cond[:, start:start + c], s // st))
            start += c
        return features, guidance, skips

    def lidar_priors(
        self, sparse_depth: torch.Tensor, valid: torch.Tensor, priors: Optional[torch.Tensor] = None
    ) -> Tuple[torch.Tensor, torch.Tensor, Optional[torch.Tensor], torch.Tensor]:
        """The completion priors of :mod:`.prior` with this config's settings.

        sparse_depth: (B,1,H,W) metres, 0 = missing; valid: (B,1,H,W) {0,1}.
        priors: (B,2,H,W) the external fills (``config.external_priors``; 0 = none there: the
        pull-push prior, resp. the first fill, stands in).
        Returns (first prior (B,1,H,W) m: pull-push, or the first external fill; the pull-push
        validity (B,1,H,W), i.e. where LiDAR is within reach; the second prior (scan-line, the
        averaging pull-push with ``average_prior``, the second external fill) or None with one
        prior; the hand rule's selection of the two — the first prior itself with one prior).
        The pull-push priors are 0 where nothing is within reach.
        """
        cfg = self.config
        prior, prior_valid = densify_sparse_depth(sparse_depth, valid, levels=cfg.prior_levels,
                                                  min_depth=cfg.min_depth)
        if not self.two_priors:
            return prior, prior_valid, None, prior
        if self.external_priors:
            first = prior if priors is None else torch.where(priors[:, 0:1] > 0, priors[:, 0:1], prior)
            second = first if priors is None else torch.where(priors[:, 1:2] > 0, priors[:, 1:2], first)
            return first, prior_valid, second, select_scanline(first, second, cfg.prior_select_max_farther)
        if cfg.average_prior:
            scan, _ = densify_sparse_depth(sparse_depth, valid, levels=cfg.prior_levels, min_depth=cfg.min_depth,
                                           max_levels=0)
        else:
            scan = scanline_prior(sparse_depth, valid, cfg.prior_levels, cfg.prior_scanline_gap,
                                  cfg.prior_scanline_rel_diff, cfg.min_depth)
        return prior, prior_valid, scan, select_scanline(prior, scan, cfg.prior_select_max_farther)

    def denoise(self, latents: torch.Tensor, timestep: torch.Tensor, cond: Condition) -> torch.Tensor:
        """One network pass: the prediction (``config.prediction_type``: noise, x0 or v) (B,d,h,w) from latents (B,d,h,w), timestep (0-d or (B,)
        int64 tensor in [0, num_train_timesteps)), cond (B, cond_channels, h, w)."""
        features = cond["cond"] if isinstance(cond, dict) else cond[:, : self.feature_channels]
        return self.denoiser(latents, timestep, features)

    def ddim_step(
        self,
        latents: torch.Tensor,
        timestep: torch.Tensor,
        prev_timestep: torch.Tensor,
        cond: Condition,
    ) -> torch.Tensor:
        """One deterministic DDIM step (eta 0; Song et al. 2021, eq. 12): x_t -> x_prev.

        timestep, prev_timestep: int64 tensors (0-d or (B,)); prev_timestep < 0 means the final
        step (alpha_cumprod_prev = final_alpha_cumprod). Returns prev_latents (B,d,h,w).
        """
        noise_pred = self.denoise(latents, timestep, cond)
        prev, _ = ddim_step_tensor(
            self.alphas_cumprod, self.final_alpha_cumprod, noise_pred, timestep, prev_timestep, latents,
            prediction_type=self.config.prediction_type, clip_sample_range=self.scheduler.clip_sample_range,
        )
        return prev

    def decode(self, latents: torch.Tensor, cond: Optional[Condition] = None) -> torch.Tensor:
        """Depth (B,1,H,W) metres from latents (B,d,H/s,W/s); with ``config.uncertainty_head``
        (B,2,H,W): [depth, sigma], sigma the predicted standard deviation of depth (metres).

        cond: the ``encode_condition`` output or its ``condition_parts``; in completion mode its prior channels give the
        prior + residual decode. None (or a cond without LiDAR) decodes monocularly.
        In eval mode the depth is clamped to [min_depth, max_depth], and with
        ``config.mask_unsupported`` both channels are 0 where no LiDAR return is within the
        prior's reach."""
        out, prior_valid = self._decode_log(latents, cond)
        if self.training:
            depth = torch.exp(out[:, :1].clamp(max=20.0))
        else:
            depth = torch.exp(out[:, :1]).clamp(self.config.min_depth, self.config.max_depth)
        if self.config.uncertainty_head:
            depth = torch.cat([depth, depth * (math.sqrt(2.0) * torch.exp(out[:, 1:2]))], dim=1)
        if not self.training and prior_valid is not None and self.config.mask_unsupported:
            depth = depth * prior_valid  # 0 = no estimate where no LiDAR is within reach
        return depth

    def _decode_log(self, latents: torch.Tensor, cond: Optional[Condition],
                    guidance_too: bool = True) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        """The decoder's (B,1|2,H,W) [log depth (, log b)] and the prior validity (B,1,H,W) or
        None; ``guidance_too`` False decodes with the image skips only (monocular)."""
        guidance, skips = None, None
        if cond is not None:
            _, guidance, skips = self.split_condition(cond)
        if not guidance_too:
            guidance = None
        out = self.depth_decoder(latents, guidance, skips)
        return out, (None if guidance is None else guidance[:, 1:2])

    def encode_depth(self, depth: torch.Tensor) -> torch.Tensor:
        """Depth (B,1,H,W) metres (dense) -> latent (B,d,H/s,W/s) (latent reconstruction term)."""
        return self.depth_encoder(depth)

    # ------------------------------------------------------------------ sampling
    def _loop(
        self, latents: torch.Tensor, cond: Condition, num_steps: int
    ) -> torch.Tensor:
        for t, prev in self.scheduler.timestep_pairs(num_steps):
            tt = torch.tensor(t, dtype=torch.long, device=latents.device)
            tp = torch.tensor(prev, dtype=torch.long, device=latents.device)
            latents = self.ddim_step(latents, tt, tp, cond)
        return latents

    @torch.no_grad()
    def sample(
        self,
        rgb: torch.Tensor,
        sparse_depth: Optional[torch.Tensor] = None,
        valid_mask: Optional[torch.Tensor] = None,
        noise: Optional[torch.Tensor] = None,
        num_inference_steps: Optional[int] = None,
        generator: Optional[torch.Generator] = None,
        full_output: bool = False,
        priors: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        """Run DDIM from noise and decode: one sample per image (ensembles and their uncertainty
        are the pipelines' job, :mod:`depth_diffusion_ros.inference.pipelines`).

        rgb (B,3,H,W) [0,1]; sparse_depth/valid_mask (B,1,H,W) or None (monocular fallback);
        priors: (B,2,H,W) the external fills (``config.external_priors``) or None;
        noise: (B, d, H/s, W/s) initial latents, else drawn from ``generator``;
        num_inference_steps: default ``config.num_inference_steps``.
        Returns depth (B,1,H,W) metres; with ``full_output`` every channel of :meth:`decode`
        ([depth, sigma] (B,2,H,W) for a model with the uncertainty head).
        Raises ValueError for bad sizes, step counts or noise shape (message names it).
        """
        if rgb.ndim != 4 or rgb.shape[1] != 3:
            raise ValueError(f"rgb must be (B,3,H,W), got {tuple(rgb.shape)}")
        B, _, H, W = rgb.shape
        self.check_size(H, W)
        for name, t in (("sparse_depth", sparse_depth), ("valid_mask", valid_mask)):
            if t is not None and tuple(t.shape) != (B, 1, H, W):
                raise ValueError(f"{name} must be {(B, 1, H, W)}, got {tuple(t.shape)}")
        steps = int(num_inference_steps or self.config.num_inference_steps)
        if not 1 <= steps <= self.config.num_train_timesteps:
            raise ValueError(f"num_inference_steps={steps}: must be in [1, {self.config.num_train_timesteps}]")
        shape = (B,) + self.latent_shape(H, W)
        if self.config.regression:
            noise, steps = torch.zeros(shape, device=rgb.device, dtype=rgb.dtype), 1
        elif noise is None:
            noise = torch.randn(shape, generator=generator, device=rgb.device, dtype=rgb.dtype)
        elif tuple(noise.shape) != shape:
            raise ValueError(f"noise must be {shape} (B, d, H/s, W/s), got {tuple(noise.shape)}")
        cond = self.condition_parts(rgb, sparse_depth, valid_mask, priors)
        latents = self._loop(noise.to(rgb.dtype), cond, steps)
        out = self.decode(latents, cond)
        return out if full_output else out[:, :1]

    # ------------------------------------------------------------------ training
    def _prediction_target(self, eps: torch.Tensor, z0: torch.Tensor, alpha_cumprod: torch.Tensor) -> torch.Tensor:
        """What the denoiser learns to output for x_t = sqrt(a) z0 + sqrt(1-a) eps: eps
        ("epsilon", Ho et al. 2020), z0 ("sample") or v = sqrt(a) eps - sqrt(1-a) z0
        ("v_prediction", Salimans & Ho, ICLR 2022, Sec. 4; Marigold's choice). With v (or the
        sample), one step from t = T-1 is well conditioned; with eps the x0 estimate divides by
        sqrt(a_{T-1}) ~ 0.006 and amplifies the prediction's error ~160-fold."""
        kind = self.config.prediction_type
        if kind == "sample":
            return z0
        if kind == "v_prediction":
            return alpha_cumprod**0.5 * eps - (1 - alpha_cumprod) ** 0.5 * z0
        return eps

    def training_losses(
        self, batch: Dict[str, torch.Tensor], generator: Optional[torch.Generator] = None
    ) -> Dict[str, torch.Tensor]:
        """Self-diffusion training losses (paper Sec. 3.4) for one batch.

        batch: rgb (B,3,H,W) [0,1]; sparse_depth (B,1,H,W) m (completion; optional); priors
        (B,2,H,W) m (with ``external_priors``);
        valid_mask (B,1,H,W) (optional); gt_depth (B,1,H,W) m, 0 = no GT; gt_mask (optional,
        default gt_depth > 0); gt_weight (optional (B,1,H,W), weights of the L1 / L2 / uncertainty
        means over the GT pixels).
        Steps: (1) in completion mode drop each sample's whole LiDAR with probability
        ``lidar_dropout`` (model in train mode only); (2) run ``num_self_diffusion_steps`` DDIM
        steps from noise with gradients -> refined latent z0; (3) decode -> L1, L2 on valid GT;
        (4) self-diffusion: x_t = sqrt(abar_t) sg(z0) + sqrt(1-abar_t) eps, t ~ U{0..T-1},
        DDIM loss = ||eps_theta(x_t, t, c) - eps||^2 (or its x0 / v form, ``prediction_type``); (5) latent terms: the depth encoder encodes
        the dense target (GT where valid, else sg(prediction)); its monocular decode is
        supervised by L1 on valid GT (reconstruction), and z0 is pulled to sg(encoded) by L2.
        (6) with ``uncertainty_head``: the Laplace NLL of the GT's log depth
        (:func:`~depth_diffusion_ros.models.depth_latent.laplace_log_depth_nll`).
        With ``config.regression`` (the "no diffusion" ablation) step (2) is one step from a zero
        latent and only the pixel and uncertainty terms are trained.
        Returns dict with "loss" (weighted total, differentiable) and the detached parts
        "l1", "l2", "ddim", "latent_rec", "latent_align", "uncertainty" (0 without the head).
        """
        cfg = self.config
        rgb = batch["rgb"]
        B, _, H, W = rgb.shape
        self.check_size(H, W)
        gt = batch["gt_depth"]
        gt_valid = valid_depth_mask(gt, batch.get("gt_mask"))
        gt_valid_f = gt_valid.to(rgb.dtype)
        if batch.get("gt_weight") is not None:
            gt_valid_f = gt_valid_f * batch["gt_weight"].to(rgb.dtype)  # weighted pixel/uncertainty means
        device = rgb.device

        sparse = batch.get("sparse_depth")
        valid_mask = batch.get("valid_mask")
        priors = batch.get("priors")
        if self.completion and sparse is not None and self.training and cfg.lidar_dropout > 0:
            keep = (torch.rand(B, 1, 1, 1, generator=generator, device="cpu") >= cfg.lidar_dropout)
            keep = keep.to(device=device, dtype=rgb.dtype)
            sparse = sparse * keep
            if valid_mask is not None:
                valid_mask = valid_mask * keep
            if priors is not None:
                priors = priors * keep
        cond = self.condition_parts(rgb, sparse, valid_mask, priors)

        shape = (B,) + self.latent_shape(H, W)
        noise = torch.randn(shape, generator=generator, device="cpu").to(device=device, dtype=rgb.dtype)
        if cfg.regression:
            z0 = self._loop(torch.zeros_like(noise), cond, 1)
        else:
            z0 = self._loop(noise, cond, cfg.num_self_diffusion_steps)
        out, _ = self._decode_log(z0, cond)
        depth = torch.exp(out[:, :1].clamp(max=20.0))
        l1 = masked_l1(depth, gt, gt_valid_f)
        l2 = masked_l2(depth, gt, gt_valid_f)
        unc = laplace_log_depth_nll(out[:, :1], out[:, 1:2], gt, gt_valid_f) if cfg.uncertainty_head else l1 * 0

        if cfg.regression:
            zero = l1.detach() * 0
            loss = cfg.loss_weight_l1 * l1 + cfg.loss_weight_l2 * l2 + cfg.loss_weight_uncertainty * unc
            return {"loss": loss, "l1": l1.detach(), "l2": l2.detach(), "ddim": zero, "latent_rec": zero,
                    "latent_align": zero, "uncertainty": unc.detach()}

        # self-diffusion of the model's own refined latent
        t = torch.randint(0, cfg.num_train_timesteps, (B,), generator=generator, device="cpu").to(device)
        eps = torch.randn(shape, generator=generator, device="cpu").to(device=device, dtype=rgb.dtype)
        z0_sg = z0.detach()
        a = self.alphas_cumprod.index_select(0, t).reshape(-1, 1, 1, 1).to(rgb.dtype)
        x_t = a**0.5 * z0_sg + (1 - a) ** 0.5 * eps
        ddim = F.mse_loss(self.denoise(x_t, t, cond), self._prediction_target(eps, z0_sg, a))

        # depth auto-encoder terms
        target = torch.where(gt_valid, gt, depth.detach()).clamp(cfg.min_depth, cfg.max_depth)
        z_enc = self.encode_depth(target)
        rec_log, _ = self._decode_log(z_enc, cond, guidance_too=False)
        rec = masked_l1(torch.exp(rec_log[:, :1].clamp(max=20.0)), gt, gt_valid_f)
        align = F.mse_loss(z0, z_enc.detach())

        loss = (
            cfg.loss_weight_l1 * l1
            + cfg.loss_weight_l2 * l2
            + cfg.loss_weight_ddim * ddim
            + cfg.loss_weight_latent * (rec + align)
            + cfg.loss_weight_uncertainty * unc
        )
        return {
            "loss": loss,
            "l1": l1.detach(),
            "l2": l2.detach(),
            "ddim": ddim.detach(),
            "latent_rec": rec.detach(),
            "latent_align": align.detach(),
            "uncertainty": unc.detach(),
        }
