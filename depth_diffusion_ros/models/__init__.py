"""torch models: DiffusionDepth (arXiv 2303.05021) with an optional sparse-depth condition,
its timm backbone / FPN neck / depth latent / conditioned denoiser, the DDIM sampler shared with
DSR-Diff, DSR-Diff (arXiv 2311.09919), DenseDepth (arXiv 1812.11941), their losses (``losses``)
and one safetensors checkpoint format for all of them (``checkpoint``).

Importing this package does not import torch: the torch-free modules (``config_base`` with the
one config mechanism, ``config``, ``dsr_diff_config``, ``ddim_schedule`` with the DDIM timestep
rule, ``dsr_diff_io``, and ``checkpoint.read_checkpoint_config``) serve the onnxruntime/tensorrt
backends, and the names below that need torch (``DDIMScheduler``, ``ddim_step_tensor``) are
imported on first use.
"""
from __future__ import annotations

from typing import Any

from depth_diffusion_ros.models.config import ConfigError, DiffusionDepthConfig, paper_config

_LAZY = {"DDIMScheduler": "depth_diffusion_ros.models.ddim", "ddim_step_tensor": "depth_diffusion_ros.models.ddim"}


def __getattr__(name: str) -> Any:  # PEP 562: torch is imported only when these are asked for
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "ConfigError",
    "DiffusionDepthConfig",
    "paper_config",
    "DDIMScheduler",
    "ddim_step_tensor",
]
