"""Configuration of IID-RDepth (monocular depth as restoration of frozen encoder features).

A dataclass on the shared config base (:mod:`depth_diffusion_ros.models.config_base`: YAML round
trip, the DDIM fields); no torch import, so a node can read a checkpoint's ``config.yaml``
without torch installed.

Source: Bai, Li, Zhai, Gao, Lv, Wang, Ping, Hua, Gao, "Monocular Depth Estimation From the
Perspective of Feature Restoration: A Diffusion Enhanced Depth Restoration Approach" (IID-RDepth).
The design choices the paper leaves open are listed in :mod:`depth_diffusion_ros.models.iid_rdepth`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, FrozenSet, List, Optional

from depth_diffusion_ros.models.config_base import DDIMConfig

VARIANTS = ("baseline", "iid_rdepth")


@dataclass
class IIDRDepthConfig(DDIMConfig):
    """Hyper-parameters of :class:`~depth_diffusion_ros.models.iid_rdepth.IIDRDepth`.

    Frozen encoder:
        backbone: timm name of the image encoder (must be the encoder checkpoint's);
            backbone_kwargs: forwarded to timm (e.g. Swin's ``img_size``).
        pretrained_path: the frozen encoder's weights, read at construction only (a saved
            IID-RDepth holds them itself): a DiffusionDepth checkpoint directory (its
            ``backbone.*``) or a backbone weights file (``training.pretrained``'s output).
        high_strides: encoder levels treated as high-level semantic features (restored).
        low_strides: encoder levels used as low-level (identity-connection) features.
    Restoration (``variant`` "iid_rdepth"; "baseline" is the plain decoder on the same features):
        feature_channels: channels each high-level level is projected to; the diffusion state is
            their stack at ``feature_stride`` (``len(high_strides) * feature_channels`` channels).
        denoiser_channels / denoiser_channel_mult / time_embed_dim: the conditioned U-Net.
        residual_restoration: the predicted sample is the degraded feature plus the U-Net's output.
        invertible_blocks / invertible_hidden / lipschitz_coeff: the i-ResNet decoder transform;
            every residual branch has Lipschitz constant <= ``lipschitz_coeff`` (< 1).
        inverse_iterations: fixed-point iterations of its inverse.
    AV-LFE:
        av_lfe: build the auxiliary-view low-level feature enhancement.
        av_lfe_strides: low-level levels it enhances; av_lfe_window: the local correlation window
            (pixels at that level); av_lfe_dim: query / key / value width.
        aux_dropout: training probability of running a sample without its auxiliary view.
    Decoder / depth: decoder_channels, min_depth, max_depth (metres).
    Training: loss_weight_silog, loss_weight_l1 (on depth, where the sparse GT is valid),
        supervised at every DDIM step's ``pred_original_sample`` (``step_supervision``) or the
        last only.
    Diffusion: the :class:`DDIMConfig` fields, here 3 trailing steps predicting the sample.
    """

    backbone: str = "tf_mobilenetv3_small_100"
    backbone_kwargs: dict = field(default_factory=dict)
    pretrained_path: Optional[str] = None
    high_strides: list = field(default_factory=lambda: [8, 16, 32])
    low_strides: list = field(default_factory=lambda: [2, 4])
    variant: str = "iid_rdepth"
    feature_channels: int = 32
    feature_stride: int = 8
    denoiser_channels: int = 32
    denoiser_channel_mult: list = field(default_factory=lambda: [1, 2])
    time_embed_dim: int = 64
    residual_restoration: bool = True
    invertible_blocks: int = 3
    invertible_hidden: int = 64
    lipschitz_coeff: float = 0.9
    inverse_iterations: int = 60
    av_lfe: bool = False
    av_lfe_strides: list = field(default_factory=lambda: [4])
    av_lfe_window: int = 7
    av_lfe_dim: int = 8
    aux_dropout: float = 0.2
    decoder_channels: int = 32
    min_depth: float = 0.5
    max_depth: float = 88.0
    loss_weight_silog: float = 1.0
    loss_weight_l1: float = 0.1
    step_supervision: str = "every"
    num_inference_steps: int = 3
    timestep_spacing: str = "trailing"
    prediction_type: str = "sample"

    architecture: ClassVar[str] = "iid_rdepth"
    TRAINED_PREDICTION_TYPES: ClassVar[tuple] = ("epsilon", "sample", "v_prediction")
    RUNTIME_FIELDS: ClassVar[FrozenSet[str]] = DDIMConfig.DDIM_RUNTIME_FIELDS | {
        "pretrained_path", "inverse_iterations", "aux_dropout", "loss_weight_silog", "loss_weight_l1",
        "step_supervision",
    }

    # The DiffusionDepth-backend view of this config (a monocular model, no LiDAR input).
    mode: ClassVar[str] = "monocular"
    mask_unsupported: ClassVar[bool] = False
    external_priors: ClassVar[tuple] = ()

    @property
    def latent_channels(self) -> int:
        """Channels of the diffusion state (the stacked high-level features)."""
        return len(self.high_strides) * int(self.feature_channels)

    @property
    def latent_stride(self) -> int:
        return int(self.feature_stride)

    @property
    def size_divisor(self) -> int:
        """H and W must be multiples of it: the coarsest encoder level and the U-Net's halvings."""
        return max(max(self.high_strides), self.feature_stride * 2 ** (len(self.denoiser_channel_mult) - 1))

    def normalise(self) -> None:
        for name in ("high_strides", "low_strides", "denoiser_channel_mult", "av_lfe_strides"):
            setattr(self, name, [int(v) for v in getattr(self, name)])

    def problems(self) -> List[str]:
        out = super().problems()
        if self.variant not in VARIANTS:
            out.append(f"variant={self.variant!r}: must be one of {VARIANTS}")
        if not 0.0 < self.lipschitz_coeff < 1.0:
            out.append(f"lipschitz_coeff={self.lipschitz_coeff}: must be in (0, 1) (the i-ResNet condition)")
        if self.feature_stride not in self.high_strides or self.feature_stride != min(self.high_strides):
            out.append(f"feature_stride={self.feature_stride}: must be the finest of high_strides {self.high_strides}")
        if any(s >= self.feature_stride for s in self.low_strides):
            out.append(f"low_strides={self.low_strides}: must be finer than feature_stride {self.feature_stride}")
        if not set(self.av_lfe_strides) <= set(self.low_strides):
            out.append(f"av_lfe_strides={self.av_lfe_strides}: must be among low_strides {self.low_strides}")
        if self.av_lfe_window < 1 or self.av_lfe_window % 2 == 0:
            out.append(f"av_lfe_window={self.av_lfe_window}: must be odd and >= 1")
        if not 0.0 <= self.aux_dropout <= 1.0:
            out.append(f"aux_dropout={self.aux_dropout}: must be in [0, 1]")
        if self.step_supervision not in ("every", "last"):
            out.append(f"step_supervision={self.step_supervision!r}: must be 'every' or 'last'")
        if not 0 < self.min_depth < self.max_depth:
            out.append(f"min_depth={self.min_depth}, max_depth={self.max_depth}: need 0 < min < max")
        if self.invertible_blocks < 1 or self.inverse_iterations < 1:
            out.append("invertible_blocks and inverse_iterations must be >= 1")
        return out
