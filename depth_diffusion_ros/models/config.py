"""Configuration of the DiffusionDepth model (Duan, Guo, Zhu, arXiv 2303.05021).

One flat dataclass on the shared config base (:mod:`depth_diffusion_ros.models.config_base`:
dict / YAML round trip, the DDIM fields and their validation), written as ``config.yaml`` beside
every checkpoint (:mod:`depth_diffusion_ros.models.checkpoint`).

Defaults are the light demo setting (ResNet-18, latent stride 8, 64 denoiser channels; about
6 GMAC per denoising step at 1216x352). The paper's setting is reached with
``backbone="swin_large_patch4_window7_224"``, ``latent_stride=2``, ``num_self_diffusion_steps=20``
and ``mode="monocular"`` (see :func:`paper_config`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Dict, FrozenSet, List, Optional, Tuple

from depth_diffusion_ros.models.config_base import ConfigError, DDIMConfig
from depth_diffusion_ros.models.ddim_schedule import BETA_SCHEDULES, TIMESTEP_SPACINGS

__all__ = ["BETA_SCHEDULES", "MODES", "TIMESTEP_SPACINGS", "ConfigError", "DiffusionDepthConfig", "paper_config"]

MODES = ("completion", "monocular")


@dataclass
class DiffusionDepthConfig(DDIMConfig):
    """All hyper-parameters of :class:`~depth_diffusion_ros.models.diffusion_depth.DiffusionDepth`.

    Visual condition
        backbone: timm model name, built with ``features_only=True, pretrained=False``.
        pretrained_path: local ImageNet weights file (safetensors or a torch state dict) for the
            backbone, or None. Never downloaded.
        backbone_kwargs: extra keyword arguments for ``timm.create_model`` (e.g.
            ``{"img_size": [352, 1216]}`` for Swin).
        freeze_backbone_bn: keep the backbone's BatchNorm layers in eval mode (running
            statistics frozen) during training; use with ImageNet weights or tiny batches, where
            batch statistics differ from the running ones used at inference.
        neck_channels: channels of the feature-pyramid neck and of the visual condition.
        neck_stride: stride of the fused neck output and of the sparse-depth encoder (authors'
            code: 4). Coarser (8) is cheaper; the condition is then brought to ``latent_stride``.
    Depth latent
        latent_channels: d, channels of the depth latent (paper: 16).
        latent_stride: s, the latent is (d, H/s, W/s). Authors' code: 2. The denoiser's cost per
            step grows ~ 1/s^2.
        decoder_channels: channels of the depth encoder/decoder.
        decoder_skip_channels: image skips for the decoder (ours, a U-Net-style decoder as in
            monocular depth networks, e.g. FastDepth): channels of the backbone features at
            strides s/2, s/4, ... down to 2, each projected by a 1x1 conv (one entry per stride,
            coarse to fine; () = none, the authors' latent-only decoder). They travel inside
            ``cond`` (pixel-unshuffled) and are concatenated at the decoder's matching stages;
            the decoder then has no conv at full resolution before its refine layer.
        decoder_head_kernel: kernel of the decoder's full-resolution output conv (3; 1 is
            cheaper, the refine layer before it is 3x3).
    Denoiser
        denoiser_channels: base width of the conditioned denoising U-Net.
        denoiser_channel_mult: width multiplier per U-Net level (one level per entry).
        denoiser_blocks: residual blocks per level.
        time_embed_dim: timestep embedding width (sinusoidal + MLP).
    Completion
        mode: "completion" (RGB + sparse LiDAR depth) or "monocular" (RGB only).
        sparse_channels: width of the sparse-depth encoder (completion only).
        sparse_stem_stride: 1 (its first conv at full resolution) or 2 (strided from the start).
        prior_levels: pyramid levels of the max-pool densification prior (completion only); the
            prior fills holes up to 2**prior_levels pixels wide.
        prior_scanline_gap: 0 = the pull-push prior only. > 0: also a scan-line prior
            (:func:`~depth_diffusion_ros.models.prior.scanline_fill` with this many columns of
            gap, then pull-push), and the decoder learns per pixel which of the two to follow,
            starting from :func:`~depth_diffusion_ros.models.prior.select_scanline`.
        average_prior: the second prior is the pull-push pyramid averaging at every level
            (normalised convolution, no nearest-return preference) instead of the scan-line prior
            (with ``prior_scanline_gap`` 0): it takes neither side at depth edges and is smoother
            on surfaces; the decoder's learned selection starts at the same hand rule.
        external_priors: () or two names of
            :data:`depth_diffusion_ros.baselines.fills.PRIOR_FILLS` (e.g. ``["ip_basic_gaussian",
            "linear_hull"]``): classical fills of the sparse input, computed outside the network
            (the pipelines, the training transform ``classical_fills``) and passed as ``priors``,
            replace the two in-graph priors; the decoder selects between them per pixel and adds
            its gated residual. The pull-push prior still decides where LiDAR is within reach.
        prior_scanline_rel_diff: the two returns bridged along a row may differ by this much
            (relative inverse depth).
        prior_select_max_farther: the hand rule's threshold (scan-line prior at most this much
            farther than the pull-push prior); the learned selection starts at it.
        prior_select_sharpness: slope of the learned selection's logit per unit of
            log(scan-line / pull-push) at initialisation.
        mask_unsupported: completion only: output 0 (published as NaN: "no estimate") where no
            LiDAR return is within the prior's reach, instead of the monocular branch's guess.
            For weights whose monocular branch is untrained (e.g. a short CPU training run). With no
            LiDAR at all the whole output is 0.
        lidar_dropout: training probability of dropping a sample's whole LiDAR input, so the same
            weights also work monocularly (fallback when LiDAR is missing at run time).
        uncertainty_head: the decoder also predicts, per pixel, the scale b of a Laplace
            distribution of log depth (aleatoric uncertainty, Kendall & Gal, NeurIPS 2017);
            ``decode`` then returns [depth, sigma] with sigma = sqrt(2) * b * depth (metres, the
            distribution's standard deviation to first order), which the pipelines combine with
            the ensemble's spread. Trained by :func:`~depth_diffusion_ros.models.depth_latent.laplace_log_depth_nll`.
        regression: ablation ("no diffusion"): the same network trained and run as a one-shot
            regressor — the denoiser runs once, at t = T-1, on a zero latent instead of noise,
            and the DDIM and latent terms are off. :meth:`DiffusionDepth.sample` then ignores
            ``noise``; run it through :class:`training.evaluate.ModuleBackend`.
    Depth range
        min_depth, max_depth: metres; output depth is clamped to this range at inference.
    DDIM (Song et al., ICLR 2021): the fields of
        :class:`~depth_diffusion_ros.models.config_base.DDIMConfig` (num_train_timesteps,
        num_inference_steps, beta_schedule, beta_start, beta_end, timestep_spacing,
        steps_offset, set_alpha_to_one, clip_sample (clamp the x0 prediction of every step to
        [-clip_sample_range, clip_sample_range]; the depth encoder's latents lie in (-1, 1)),
        clip_sample_range, prediction_type: "epsilon" (the paper's), "sample" or "v_prediction"
        (Salimans & Ho 2022; well conditioned for one step from t = T-1)).
    Losses and self-diffusion (paper Sec. 3.4; authors' weights 1.0/1.0/1.0)
        loss_weight_l1, loss_weight_l2: pixel losses on decoded depth where the GT is valid.
        loss_weight_ddim: noise MSE on the self-diffused refined latent.
        loss_weight_uncertainty: the uncertainty head's Laplace NLL (with ``uncertainty_head``).
        loss_weight_latent: depth auto-encoder reconstruction (L1 on valid GT) + L2 between the
            refined latent and the encoded (detached) target latent ("supervision on both latent
            spaces", paper Sec. 3.4); it anchors the refined latents' scale.
        num_self_diffusion_steps: DDIM steps run *with gradients* from noise during training
            (authors: the full 20-step loop; small here to keep training cheap). Sampling with
            num_inference_steps equal to it reproduces the training trajectory exactly.
    """

    # visual condition
    backbone: str = "resnet18"
    pretrained_path: Optional[str] = None
    freeze_backbone_bn: bool = False
    backbone_kwargs: Dict[str, Any] = field(default_factory=dict)
    neck_channels: int = 64
    neck_stride: int = 4

    # depth latent
    latent_channels: int = 16
    latent_stride: int = 8
    decoder_channels: int = 32
    decoder_skip_channels: Tuple[int, ...] = ()
    decoder_head_kernel: int = 3

    # denoiser (the DDIM fields come from DDIMConfig)
    denoiser_channels: int = 64
    denoiser_channel_mult: Tuple[int, ...] = (1, 2, 2)
    denoiser_blocks: int = 1
    time_embed_dim: int = 128

    # completion
    mode: str = "completion"
    sparse_channels: int = 32
    sparse_stem_stride: int = 1
    prior_levels: int = 5
    prior_scanline_gap: int = 0
    prior_scanline_rel_diff: float = 0.05
    average_prior: bool = False
    external_priors: Tuple[str, ...] = ()
    prior_select_max_farther: float = 0.1
    prior_select_sharpness: float = 50.0
    mask_unsupported: bool = False
    lidar_dropout: float = 0.2
    uncertainty_head: bool = False
    regression: bool = False

    # depth range, metres
    min_depth: float = 0.1
    max_depth: float = 88.0

    # losses and self-diffusion
    loss_weight_l1: float = 1.0
    loss_weight_l2: float = 1.0
    loss_weight_ddim: float = 1.0
    loss_weight_latent: float = 1.0
    loss_weight_uncertainty: float = 0.1
    num_self_diffusion_steps: int = 2

    architecture: ClassVar[str] = "diffusion_depth"
    TRAINED_PREDICTION_TYPES: ClassVar[tuple] = ("epsilon", "sample", "v_prediction")
    # Fields of config.yaml that may be edited after training without changing the weights.
    RUNTIME_FIELDS: ClassVar[FrozenSet[str]] = DDIMConfig.DDIM_RUNTIME_FIELDS | {
        "pretrained_path", "lidar_dropout", "loss_weight_l1", "loss_weight_l2", "loss_weight_ddim",
        "loss_weight_latent", "loss_weight_uncertainty", "num_self_diffusion_steps", "backbone_kwargs", "freeze_backbone_bn",
    }

    def normalise(self) -> None:
        self.denoiser_channel_mult = tuple(int(m) for m in self.denoiser_channel_mult)
        self.decoder_skip_channels = tuple(int(c) for c in self.decoder_skip_channels or ())
        self.external_priors = tuple(str(n) for n in self.external_priors or ())
        self.backbone_kwargs = dict(self.backbone_kwargs or {})

    def problems(self) -> List[str]:
        out = []
        if self.mode not in MODES:
            out.append(f"mode={self.mode!r}: must be one of {MODES}")
        s = self.latent_stride
        if s < 1 or (s & (s - 1)) != 0 or s > 32:
            out.append(f"latent_stride={s}: must be a power of two in [1, 32]")
        for name in ("neck_channels", "latent_channels", "decoder_channels", "denoiser_channels",
                     "time_embed_dim", "sparse_channels", "num_self_diffusion_steps", "denoiser_blocks"):
            if int(getattr(self, name)) < 1:
                out.append(f"{name}={getattr(self, name)}: must be >= 1")
        n = self.neck_stride
        if n < 4 or (n & (n - 1)) != 0 or n > 32:
            out.append(f"neck_stride={n}: must be a power of two in [4, 32]")
        if s >= 2 and len(self.decoder_skip_channels) > max(0, s.bit_length() - 2):
            out.append(f"decoder_skip_channels={self.decoder_skip_channels}: at most one entry per "
                       f"stride from latent_stride/2 down to 2 ({max(0, s.bit_length() - 2)} for stride {s})")
        if self.decoder_head_kernel not in (1, 3):
            out.append(f"decoder_head_kernel={self.decoder_head_kernel}: must be 1 or 3")
        if self.sparse_stem_stride not in (1, 2):
            out.append(f"sparse_stem_stride={self.sparse_stem_stride}: must be 1 or 2")
        if any(c < 1 for c in self.decoder_skip_channels):
            out.append(f"decoder_skip_channels={self.decoder_skip_channels}: positive ints")
        if self.time_embed_dim % 2:
            out.append(f"time_embed_dim={self.time_embed_dim}: must be even")
        if not self.denoiser_channel_mult or min(self.denoiser_channel_mult) < 1:
            out.append(f"denoiser_channel_mult={self.denoiser_channel_mult}: positive ints")
        if not (0.0 < self.min_depth < self.max_depth):
            out.append(f"min_depth={self.min_depth}, max_depth={self.max_depth}: need 0 < min < max")
        if not (0.0 <= self.lidar_dropout <= 1.0):
            out.append(f"lidar_dropout={self.lidar_dropout}: must be in [0, 1]")
        if not (0 <= self.prior_levels <= 8):
            out.append(f"prior_levels={self.prior_levels}: must be in [0, 8]")
        if not (0 <= int(self.prior_scanline_gap) <= 64):
            out.append(f"prior_scanline_gap={self.prior_scanline_gap}: must be in [0, 64]")
        if self.average_prior and int(self.prior_scanline_gap) > 0:
            out.append("average_prior and prior_scanline_gap > 0: choose one second prior")
        if self.external_priors:
            from depth_diffusion_ros.baselines.fills import check_fill_names

            out += check_fill_names(self.external_priors)
            if len(self.external_priors) != 2:
                out.append(f"external_priors={list(self.external_priors)}: give two fill names (or none)")
            if self.average_prior or int(self.prior_scanline_gap) > 0:
                out.append("external_priors replace the in-graph second prior: unset average_prior / prior_scanline_gap")
        if not (0.0 <= self.prior_scanline_rel_diff <= 1.0):
            out.append(f"prior_scanline_rel_diff={self.prior_scanline_rel_diff}: must be in [0, 1]")
        if self.prior_select_max_farther < 0:
            out.append(f"prior_select_max_farther={self.prior_select_max_farther}: must be >= 0")
        if self.prior_select_sharpness <= 0:
            out.append(f"prior_select_sharpness={self.prior_select_sharpness}: must be > 0")
        for name in ("loss_weight_l1", "loss_weight_l2", "loss_weight_ddim", "loss_weight_latent",
                     "loss_weight_uncertainty"):
            if float(getattr(self, name)) < 0:
                out.append(f"{name}={getattr(self, name)}: must be >= 0")
        return out + super().problems()

    @property
    def size_divisor(self) -> int:
        """H and W must be multiples of this: backbone stride 32, latent/U-Net and prior strides."""
        unet = self.latent_stride * 2 ** (len(self.denoiser_channel_mult) - 1)
        return max(32, unet, 2 ** self.prior_levels, self.neck_stride)


def paper_config(**overrides: Any) -> DiffusionDepthConfig:
    """The authors'-like setting: Swin-L backbone, d=16 latent at stride 2, 20-step training loop,
    monocular. Heavy (~hundreds of GMAC per denoising step at 1216x352); for GPUs only."""
    base = dict(
        backbone="swin_large_patch4_window7_224",
        backbone_kwargs={"img_size": [352, 1216]},
        neck_channels=256,
        latent_stride=2,
        denoiser_channels=64,
        denoiser_channel_mult=(1, 2, 2),
        mode="monocular",
        num_self_diffusion_steps=20,
        loss_weight_latent=1.0,
    )
    base.update(overrides)
    return DiffusionDepthConfig(**base)
