"""Losses of the super-resolution / regression baselines, for training configs and scripts.

The DenseDepth loss lives in :mod:`depth_diffusion_ros.models.densedepth_loss` (the model's
``training_losses`` uses it, and ``models`` must not import ``training``); it is re-exported
here so that training code finds every loss under ``training``.
"""
from depth_diffusion_ros.models.densedepth_loss import (  # noqa: F401
    densedepth_loss,
    gaussian_window,
    gradient_loss,
    ssim,
)

__all__ = ["densedepth_loss", "gaussian_window", "gradient_loss", "ssim"]
