"""Configuration of the DiffusionDepth model (Duan, Guo, Zhu, arXiv 2303.05021).

One flat dataclass, round-tripped through YAML beside every checkpoint
(``config.yaml``, see :mod:`depth_diffusion_ros.models.checkpoint`).

Defaults are the light demo setting (ResNet-18, latent stride 8, 64 denoiser channels; about
6 GMAC per denoising step at 1216x352). The paper's setting is reached with
``backbone="swin_large_patch4_window7_224"``, ``latent_stride=2``, ``num_self_diffusion_steps=20``
and ``mode="monocular"`` (see :func:`paper_config`).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

import yaml

MODES = ("completion", "monocular")
BETA_SCHEDULES = ("linear", "scaled_linear", "squaredcos_cap_v2")
TIMESTEP_SPACINGS = ("leading", "trailing", "linspace")


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the field and the allowed values."""


@dataclass
class DiffusionDepthConfig:
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
    Depth latent
        latent_channels: d, channels of the depth latent (paper: 16).
        latent_stride: s, the latent is (d, H/s, W/s). Authors' code: 2. The denoiser's cost per
            step grows ~ 1/s^2.
        decoder_channels: channels of the depth encoder/decoder.
    Denoiser
        denoiser_channels: base width of the conditioned denoising U-Net.
        denoiser_channel_mult: width multiplier per U-Net level (one level per entry).
        denoiser_blocks: residual blocks per level.
        time_embed_dim: timestep embedding width (sinusoidal + MLP).
    Completion
        mode: "completion" (RGB + sparse LiDAR depth) or "monocular" (RGB only).
        sparse_channels: width of the sparse-depth encoder (completion only).
        prior_levels: pyramid levels of the max-pool densification prior (completion only); the
            prior fills holes up to 2**prior_levels pixels wide.
        prior_scanline_gap: 0 = the pull-push prior only. > 0: also a scan-line prior
            (:func:`~depth_diffusion_ros.models.prior.scanline_fill` with this many columns of
            gap, then pull-push), and the decoder learns per pixel which of the two to follow,
            starting from :func:`~depth_diffusion_ros.models.prior.select_scanline`.
        prior_scanline_rel_diff: the two returns bridged along a row may differ by this much
            (relative inverse depth).
        prior_select_max_farther: the hand rule's threshold (scan-line prior at most this much
            farther than the pull-push prior); the learned selection starts at it.
        prior_select_sharpness: slope of the learned selection's logit per unit of
            log(scan-line / pull-push) at initialisation.
        mask_unsupported: completion only: output 0 (published as NaN: "no estimate") where no
            LiDAR return is within the prior's reach, instead of the monocular branch's guess.
            For weights whose monocular branch is untrained (the shipped demo weights). With no
            LiDAR at all the whole output is 0.
        lidar_dropout: training probability of dropping a sample's whole LiDAR input, so the same
            weights also work monocularly (fallback when LiDAR is missing at run time).
    Depth range
        min_depth, max_depth: metres; output depth is clamped to this range at inference.
    DDIM (Song et al., ICLR 2021; numbers identical to diffusers.DDIMScheduler)
        num_train_timesteps, num_inference_steps, beta_schedule, beta_start, beta_end,
        timestep_spacing, steps_offset, set_alpha_to_one, clip_sample (clamp the x0 prediction
        of every step to [-clip_sample_range, clip_sample_range]; the depth encoder's latents
        lie in (-1, 1)).
    Losses and self-diffusion (paper Sec. 3.4; authors' weights 1.0/1.0/1.0)
        loss_weight_l1, loss_weight_l2: pixel losses on decoded depth where the GT is valid.
        loss_weight_ddim: noise MSE on the self-diffused refined latent.
        loss_weight_latent: depth auto-encoder reconstruction (L1 on valid GT) + L2 between the
            refined latent and the encoded (detached) target latent ("supervision on both latent
            spaces", paper Sec. 3.4); it anchors the refined latents' scale.
        num_self_diffusion_steps: DDIM steps run *with gradients* from noise during training
            (authors: the full 20-step loop; small here to keep training cheap). Sampling with
            num_inference_steps equal to it reproduces the training trajectory exactly.
    """

    backbone: str = "resnet18"
    pretrained_path: Optional[str] = None
    backbone_kwargs: Dict[str, Any] = field(default_factory=dict)
    freeze_backbone_bn: bool = False
    neck_channels: int = 64

    latent_channels: int = 16
    latent_stride: int = 8
    decoder_channels: int = 32

    denoiser_channels: int = 64
    denoiser_channel_mult: Tuple[int, ...] = (1, 2, 2)
    denoiser_blocks: int = 1
    time_embed_dim: int = 128

    mode: str = "completion"
    sparse_channels: int = 32
    prior_levels: int = 5
    prior_scanline_gap: int = 0
    prior_scanline_rel_diff: float = 0.05
    prior_select_max_farther: float = 0.1
    prior_select_sharpness: float = 50.0
    mask_unsupported: bool = False
    lidar_dropout: float = 0.2

    min_depth: float = 0.1
    max_depth: float = 88.0

    num_train_timesteps: int = 1000
    num_inference_steps: int = 20
    beta_schedule: str = "linear"
    beta_start: float = 0.0001
    beta_end: float = 0.02
    timestep_spacing: str = "leading"
    steps_offset: int = 0
    set_alpha_to_one: bool = True
    clip_sample: bool = False
    clip_sample_range: float = 1.0

    loss_weight_l1: float = 1.0
    loss_weight_l2: float = 1.0
    loss_weight_ddim: float = 1.0
    loss_weight_latent: float = 1.0
    num_self_diffusion_steps: int = 2

    def __post_init__(self) -> None:
        self.denoiser_channel_mult = tuple(int(m) for m in self.denoiser_channel_mult)
        self.backbone_kwargs = dict(self.backbone_kwargs or {})
        self.validate()

    # ------------------------------------------------------------------ validation
    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the first invalid field."""
        if self.mode not in MODES:
            raise ConfigError(f"mode={self.mode!r}: must be one of {MODES}")
        if self.beta_schedule not in BETA_SCHEDULES:
            raise ConfigError(f"beta_schedule={self.beta_schedule!r}: must be one of {BETA_SCHEDULES}")
        if self.timestep_spacing not in TIMESTEP_SPACINGS:
            raise ConfigError(
                f"timestep_spacing={self.timestep_spacing!r}: must be one of {TIMESTEP_SPACINGS}"
            )
        s = self.latent_stride
        if s < 1 or (s & (s - 1)) != 0 or s > 32:
            raise ConfigError(f"latent_stride={s}: must be a power of two in [1, 32]")
        for name in ("neck_channels", "latent_channels", "decoder_channels", "denoiser_channels",
                     "time_embed_dim", "sparse_channels", "num_train_timesteps",
                     "num_inference_steps", "num_self_diffusion_steps", "denoiser_blocks"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"{name}={getattr(self, name)}: must be >= 1")
        if self.time_embed_dim % 2:
            raise ConfigError(f"time_embed_dim={self.time_embed_dim}: must be even")
        if not self.denoiser_channel_mult or min(self.denoiser_channel_mult) < 1:
            raise ConfigError(f"denoiser_channel_mult={self.denoiser_channel_mult}: positive ints")
        if self.num_inference_steps > self.num_train_timesteps:
            raise ConfigError(
                f"num_inference_steps={self.num_inference_steps} > num_train_timesteps="
                f"{self.num_train_timesteps}"
            )
        if not (0.0 < self.min_depth < self.max_depth):
            raise ConfigError(
                f"min_depth={self.min_depth}, max_depth={self.max_depth}: need 0 < min < max"
            )
        if not (0.0 <= self.lidar_dropout <= 1.0):
            raise ConfigError(f"lidar_dropout={self.lidar_dropout}: must be in [0, 1]")
        if not (0 <= self.prior_levels <= 8):
            raise ConfigError(f"prior_levels={self.prior_levels}: must be in [0, 8]")
        if not (0 <= int(self.prior_scanline_gap) <= 64):
            raise ConfigError(f"prior_scanline_gap={self.prior_scanline_gap}: must be in [0, 64]")
        if not (0.0 <= self.prior_scanline_rel_diff <= 1.0):
            raise ConfigError(f"prior_scanline_rel_diff={self.prior_scanline_rel_diff}: must be in [0, 1]")
        if self.prior_select_max_farther < 0:
            raise ConfigError(f"prior_select_max_farther={self.prior_select_max_farther}: must be >= 0")
        if self.prior_select_sharpness <= 0:
            raise ConfigError(f"prior_select_sharpness={self.prior_select_sharpness}: must be > 0")
        if self.clip_sample_range <= 0:
            raise ConfigError(f"clip_sample_range={self.clip_sample_range}: must be > 0")
        if not (0.0 < self.beta_start < self.beta_end < 1.0):
            raise ConfigError(f"beta_start={self.beta_start}, beta_end={self.beta_end}: need 0<start<end<1")
        for name in ("loss_weight_l1", "loss_weight_l2", "loss_weight_ddim", "loss_weight_latent"):
            if float(getattr(self, name)) < 0:
                raise ConfigError(f"{name}={getattr(self, name)}: must be >= 0")

    # ------------------------------------------------------------------ serialisation
    def to_dict(self) -> Dict[str, Any]:
        """Plain-python dict (tuples become lists) suitable for YAML/JSON."""
        out = dataclasses.asdict(self)
        out["denoiser_channel_mult"] = list(self.denoiser_channel_mult)
        return out

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> "DiffusionDepthConfig":
        """Build from a dict; unknown keys raise :class:`ConfigError` naming them."""
        if not isinstance(data, dict):
            raise ConfigError(f"config must be a mapping, got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown DiffusionDepthConfig keys: {unknown}")
        return cls(**data)

    def to_yaml(self, path: Optional[str | Path] = None) -> str:
        """Serialise to YAML text; also writes it to ``path`` when given."""
        text = yaml.safe_dump(self.to_dict(), sort_keys=False)
        if path is not None:
            Path(path).write_text(text)
        return text

    @classmethod
    def from_yaml(cls, path_or_text: str | Path) -> "DiffusionDepthConfig":
        """Load from a YAML file (a ``Path``, or a string ending in .yaml/.yml or naming an
        existing file) or from YAML text. Errors name the file."""
        source = str(path_or_text)
        is_path = isinstance(path_or_text, Path) or (
            "\n" not in source and (source.endswith((".yaml", ".yml")) or Path(source).is_file())
        )
        if not is_path:
            data = yaml.safe_load(source)
            return cls.from_dict(data)
        p = Path(source)
        if not p.is_file():
            raise ConfigError(f"{p}: config file not found")
        try:
            data = yaml.safe_load(p.read_text())
        except yaml.YAMLError as exc:
            raise ConfigError(f"{p}: not valid YAML: {exc}") from exc
        try:
            return cls.from_dict(data)
        except (ConfigError, TypeError) as exc:
            raise ConfigError(f"{p}: {exc}") from exc

    @property
    def size_divisor(self) -> int:
        """H and W must be multiples of this: backbone stride 32, latent/U-Net and prior strides."""
        unet = self.latent_stride * 2 ** (len(self.denoiser_channel_mult) - 1)
        return max(32, unet, 2 ** self.prior_levels)


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
