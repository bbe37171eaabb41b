"""torch models: DiffusionDepth (arXiv 2303.05021) with an optional sparse-depth condition,
its timm backbone / FPN neck / depth latent / conditioned denoiser, the DDIM sampler shared with
DSR-Diff, and safetensors checkpoints. Importing this package imports torch (and timm lazily,
when a backbone is built)."""
from __future__ import annotations

from depth_diffusion_ros.models.config import ConfigError, DiffusionDepthConfig, paper_config
from depth_diffusion_ros.models.ddim import DDIMScheduler, ddim_step_tensor

__all__ = [
    "ConfigError",
    "DiffusionDepthConfig",
    "paper_config",
    "DDIMScheduler",
    "ddim_step_tensor",
]
