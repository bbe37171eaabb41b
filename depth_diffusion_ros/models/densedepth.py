"""DenseDepth: the non-diffusion regression baseline (monocular depth and depth super-resolution).

Source: I. Alhashim, P. Wonka, "High Quality Monocular Depth Estimation via Transfer Learning",
arXiv 1812.11941 (2018).

* Encoder (Sec. 3.1): DenseNet-169 (timm ``densenet169``, ``features_only``,
  ``pretrained=False``; ImageNet weights only from a local file, ``pretrained_path``).
* Decoder (Sec. 3.1): a 1x1 conv with as many channels as the encoder output (x
  ``decoder_width``), then four up-sampling blocks, each: 2x bilinear up-sampling, concatenation
  with the encoder feature map of the same resolution, two 3x3 convs with half the input
  channels each followed by LeakyReLU(0.2); a final 3x3 conv gives one channel at half the input
  resolution (bilinearly up-sampled to full resolution for the loss and the output).
* Output (Sec. 3.2): the reciprocal depth ``y = max_depth / depth`` (the paper: m / y_orig with
  m the maximum depth), so SSIM's dynamic range is ``max_depth / min_depth``.
* Loss (Sec. 3.2, Eq. 1-4): ``0.1 * L1 + L_grad + (1 - SSIM)/2``
  (:func:`~depth_diffusion_ros.models.losses.densedepth_loss`).

Super-resolution mode (ours, for the CDSR comparison): the same network on the HR colour image;
the LR depth, bicubically up-sampled and in reciprocal units, is concatenated to every decoder
skip (resized) and the network predicts a residual over it. Encoder weights stay RGB-only, so
ImageNet weights load unchanged.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Dict, FrozenSet, List, Optional

import torch
import torch.nn.functional as F
from torch import nn

from depth_diffusion_ros.models.backbone import TimmBackbone
from depth_diffusion_ros.models.config_base import ModelConfig
from depth_diffusion_ros.models.losses import densedepth_loss

MODES = ("monocular", "super_resolution")


@dataclass
class DenseDepthConfig(ModelConfig):
    """Hyper-parameters of :class:`DenseDepth` (paper defaults: densenet169, width 1.0, NYU
    depth range 0.1-10 m, lambda 0.1). ``freeze_encoder_bn`` keeps the encoder's BatchNorm layers
    in eval mode while training (ImageNet weights with small batches)."""

    encoder: str = "densenet169"
    pretrained_path: Optional[str] = None
    freeze_encoder_bn: bool = False
    decoder_width: float = 1.0
    mode: str = "monocular"
    min_depth: float = 0.1
    max_depth: float = 10.0
    depth_weight: float = 0.1

    architecture: ClassVar[str] = "densedepth"
    # Fields of config.yaml that may be edited after training without changing the weights.
    RUNTIME_FIELDS: ClassVar[FrozenSet[str]] = frozenset({"pretrained_path", "depth_weight", "freeze_encoder_bn"})

    def problems(self) -> List[str]:
        out = []
        if self.mode not in MODES:
            out.append(f"mode={self.mode!r}: choose one of {MODES}")
        if not 0 < self.min_depth < self.max_depth:
            out.append(f"need 0 < min_depth < max_depth, got {self.min_depth}, {self.max_depth}")
        if self.decoder_width <= 0:
            out.append(f"decoder_width must be > 0, got {self.decoder_width}")
        return out + super().problems()


class UpSampleBlock(nn.Module):
    """DenseDepth decoder block: bilinear x2 (to the skip's size), concat skip, 2 x (3x3 conv +
    LeakyReLU 0.2). (B,Cin,h,w) + (B,Cs,2h,2w) -> (B,Cout,2h,2w)."""

    def __init__(self, in_channels: int, skip_channels: int, out_channels: int):
        super().__init__()
        self.conv_a = nn.Conv2d(in_channels + skip_channels, out_channels, 3, padding=1)
        self.conv_b = nn.Conv2d(out_channels, out_channels, 3, padding=1)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=True)
        x = F.leaky_relu(self.conv_a(torch.cat([x, skip], dim=1)), 0.2)
        return F.leaky_relu(self.conv_b(x), 0.2)


class DenseDepth(nn.Module):
    """DenseDepth encoder-decoder (module docstring).

    Shapes: rgb (B,3,H,W) in [0,1], H and W multiples of 32; depth_lr (B,1,h,w) metres (SR mode).
    Output depth (B,1,H,W) metres in [min_depth, max_depth].
    """

    size_divisor = 32

    def __init__(self, config: Optional[DenseDepthConfig] = None):
        super().__init__()
        self.config = config or DenseDepthConfig()
        cfg = self.config
        self.encoder = TimmBackbone(cfg.encoder, cfg.pretrained_path, min_stride=2)
        ch = self.encoder.channels  # strides 2, 4, 8, 16, 32
        if self.encoder.strides[:5] != [2, 4, 8, 16, 32]:
            raise ValueError(f"encoder {cfg.encoder!r} must give strides 2..32, got {self.encoder.strides}")
        extra = 1 if cfg.mode == "super_resolution" else 0
        f = max(int(ch[4] * cfg.decoder_width), 16)
        self.conv2 = nn.Conv2d(ch[4], f, 1)
        self.up1 = UpSampleBlock(f, ch[3] + extra, f // 2)
        self.up2 = UpSampleBlock(f // 2, ch[2] + extra, f // 4)
        self.up3 = UpSampleBlock(f // 4, ch[1] + extra, f // 8)
        self.up4 = UpSampleBlock(f // 8, ch[0] + extra, f // 16)
        self.conv3 = nn.Conv2d(f // 16, 1, 3, padding=1)
        if cfg.mode == "super_resolution":
            nn.init.zeros_(self.conv3.weight)
            nn.init.zeros_(self.conv3.bias)

    def train(self, mode: bool = True) -> "DenseDepth":
        """nn.Module.train, keeping the encoder's BatchNorms in eval mode if ``freeze_encoder_bn``."""
        super().train(mode)
        if mode and self.config.freeze_encoder_bn:
            for m in self.encoder.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.eval()
        return self

    # ---------------------------------------------------------------- parameterisation
    def depth_to_target(self, depth: torch.Tensor) -> torch.Tensor:
        """metres -> reciprocal units ``max_depth / clamp(depth)`` (paper Sec. 3.2)."""
        c = self.config
        return c.max_depth / depth.clamp(c.min_depth, c.max_depth)

    def target_to_depth(self, y: torch.Tensor) -> torch.Tensor:
        c = self.config
        return (c.max_depth / y.clamp(min=1.0)).clamp(c.min_depth, c.max_depth)

    # ---------------------------------------------------------------- forward
    def _check(self, rgb: torch.Tensor, depth_lr: Optional[torch.Tensor]) -> None:
        if rgb.dim() != 4 or rgb.shape[1] != 3:
            raise ValueError(f"rgb must be (B,3,H,W), got {tuple(rgb.shape)}")
        if rgb.shape[-2] % 32 or rgb.shape[-1] % 32:
            raise ValueError(f"H, W {tuple(rgb.shape[-2:])} must be multiples of 32; pad first")
        if self.config.mode == "super_resolution" and depth_lr is None:
            raise ValueError("super_resolution mode needs depth_lr")

    def forward(self, rgb: torch.Tensor, depth_lr: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Reciprocal-depth prediction at full resolution (B,1,H,W) (see module docstring)."""
        self._check(rgb, depth_lr)
        feats = self.encoder(rgb)
        size = rgb.shape[-2:]
        y_up = None
        if self.config.mode == "super_resolution":
            valid = (depth_lr > 0).to(depth_lr.dtype)
            filled = torch.where(valid > 0, depth_lr, depth_lr.amax(dim=(2, 3), keepdim=True))
            y_up = self.depth_to_target(F.interpolate(filled, size=size, mode="bicubic", align_corners=False))

        def skip(i: int) -> torch.Tensor:
            if y_up is None:
                return feats[i]
            d = F.interpolate(y_up, size=feats[i].shape[-2:], mode="bilinear", align_corners=False)
            return torch.cat([feats[i], d / self.config.max_depth * self.config.min_depth], dim=1)

        x = self.conv2(feats[4])
        x = self.up1(x, skip(3))
        x = self.up2(x, skip(2))
        x = self.up3(x, skip(1))
        x = self.up4(x, skip(0))
        y = F.interpolate(self.conv3(x), size=size, mode="bilinear", align_corners=True)
        return y if y_up is None else y_up + y

    @torch.no_grad()
    def sample(self, rgb: torch.Tensor, depth_lr: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Depth (B,1,H,W) metres — the same API as the diffusion models' ``sample``."""
        return self.target_to_depth(self.forward(rgb, depth_lr))

    def training_losses(self, batch: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        """DenseDepth loss on one batch (rgb, gt_depth, gt_mask[, depth_lr]) in reciprocal units.

        Returns dict with ``loss`` and the detached ``l_depth``, ``l_grad``, ``l_ssim``.
        """
        gt = batch["gt_depth"]
        mask = batch.get("gt_mask")
        if mask is None:
            mask = (gt > 0).to(gt.dtype)
        y_hat = self.forward(batch["rgb"], batch.get("depth_lr"))
        y = self.depth_to_target(torch.where(mask > 0, gt, torch.full_like(gt, self.config.max_depth)))
        c = self.config
        parts = densedepth_loss(y_hat, y, mask, c.depth_weight, data_range=c.max_depth / c.min_depth)
        return {"loss": parts["loss"], **{k: v.detach() for k, v in parts.items() if k != "loss"}}


def build_densedepth(cfg: Dict[str, Any]) -> DenseDepth:
    """Training-config entry point (``model.type: depth_diffusion_ros.models.densedepth:build_densedepth``)."""
    return DenseDepth(DenseDepthConfig.from_dict(dict(cfg)))
