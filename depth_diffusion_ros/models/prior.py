"""Exportable classical densification of sparse LiDAR depth, used as the completion prior.

A pull-push pyramid (Gortler et al., "The Lumigraph", SIGGRAPH 1996, Sec. 3.4 pull-push hole
filling) over *inverse* depth with 2x2 max pooling: at each coarser level the nearest return
(largest inverse depth) of the block wins, which is the foreground-preserving choice IP-Basic
(Ku et al., CRV 2018) makes with its dilations of inverted depth. Holes at a fine level are then
filled from the next coarser level (nearest-neighbour upsampling), and a 3x3 normalised average
smooths the filled values (Knutsson & Westin, CVPR 1993, normalised convolution). Valid input
pixels keep their measured depth exactly.

Everything is torch tensor ops (max_pool2d, interpolate, avg_pool2d, where), so it runs inside
the exported ONNX graph; there is no data-dependent Python control flow.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def densify_sparse_depth(
    sparse_depth: torch.Tensor,
    valid_mask: torch.Tensor,
    levels: int = 5,
    min_depth: float = 0.1,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Fill holes of sparse depth with the nearest (closest-to-camera) return of a coarser level.

    sparse_depth: (B,1,H,W) metres, 0 where missing; valid_mask: (B,1,H,W) {0,1}.
    H and W must be multiples of 2**levels.
    Returns (prior (B,1,H,W) metres, 0 where nothing within reach; prior_valid (B,1,H,W) float
    {0,1}). With no valid input pixel both are all zero (monocular fallback upstream).
    """
    valid = (valid_mask > 0.5) & (sparse_depth > 0)
    inv = torch.where(valid, 1.0 / sparse_depth.clamp(min=min_depth), torch.zeros_like(sparse_depth))
    pyramid = [inv]
    for _ in range(levels):
        pyramid.append(F.max_pool2d(pyramid[-1], 2))
    filled = pyramid[-1]
    for level in range(levels - 1, -1, -1):
        fine = pyramid[level]
        up = F.interpolate(filled, size=fine.shape[-2:], mode="nearest")
        # smooth the coarse fill with a normalised 3x3 average (ignores empty cells)
        num = F.avg_pool2d(up, 3, stride=1, padding=1)
        den = F.avg_pool2d((up > 0).to(up.dtype), 3, stride=1, padding=1)
        up = torch.where(den > 0, num / den.clamp(min=1e-6), up)
        filled = torch.where(fine > 0, fine, up)
    prior_valid = (filled > 0).to(sparse_depth.dtype)
    prior = torch.where(filled > 0, 1.0 / filled.clamp(min=1e-6), torch.zeros_like(filled))
    # measured pixels keep their exact value
    prior = torch.where(valid, sparse_depth, prior)
    return prior, prior_valid
