"""A tiny stand-in model for the trainer tests only (the trainer is model-agnostic: it needs
``training_losses(batch) -> dict`` and, for evaluation, ``sample(...)``). Real DiffusionDepth
training is exercised by ``python -m training.kitti_completion`` and the model's own tests."""
from __future__ import annotations

import torch
from torch import nn

from depth_diffusion_ros.models.losses import masked_l1, masked_l2, valid_depth_mask, weighted_total


class TinyCompletion(nn.Module):
    """rgb (B,3,H,W) + sparse (B,1,H,W) m + valid -> depth (B,1,H,W) m (a 3-layer conv net)."""

    size_divisor = 4

    def __init__(self, width: int = 8, max_depth: float = 80.0):
        super().__init__()
        self.max_depth = max_depth
        self.net = nn.Sequential(
            nn.Conv2d(5, width, 3, padding=1), nn.ReLU(),
            nn.Conv2d(width, width, 3, padding=1), nn.ReLU(),
            nn.Conv2d(width, 1, 3, padding=1),
        )

    def forward(self, rgb, sparse_depth, valid_mask):
        x = torch.cat([rgb, sparse_depth / self.max_depth, valid_mask], 1)
        return torch.sigmoid(self.net(x)) * self.max_depth

    def training_losses(self, batch):
        pred = self(batch["rgb"], batch["sparse_depth"], batch["valid_mask"])
        gt = batch["gt_depth"]
        valid = valid_depth_mask(gt, batch["gt_mask"]).to(gt.dtype)
        parts = {"l1": masked_l1(pred, gt, valid), "l2": masked_l2(pred, gt, valid)}
        return weighted_total(parts, {"l1": 1.0, "l2": 0.01})

    @torch.no_grad()
    def sample(self, rgb, sparse_depth=None, valid_mask=None, noise=None, num_inference_steps=None,
               generator=None):
        if sparse_depth is None:
            sparse_depth = rgb.new_zeros(rgb.shape[0], 1, *rgb.shape[2:])
        if valid_mask is None:
            valid_mask = (sparse_depth > 0).to(rgb.dtype)
        return self(rgb, sparse_depth, valid_mask)


def build(cfg):
    """Builder for ``model.type: _training_standin:build`` in configs."""
    return TinyCompletion(**cfg)
