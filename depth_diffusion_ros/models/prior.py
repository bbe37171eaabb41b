"""Exportable classical densification of sparse LiDAR depth, used as the completion prior.

A pull-push pyramid (Gortler et al., "The Lumigraph", SIGGRAPH 1996, Sec. 3.4 pull-push hole
filling) over *inverse* depth. Pull: the first ``max_levels`` 2x2 reductions keep the nearest
return of each block (largest inverse depth: the foreground-preserving choice IP-Basic, Ku et
al., CRV 2018, makes with its dilations of inverted depth); coarser reductions average the
valid values (normalised convolution, Knutsson & Westin, CVPR 1993). Push: holes at a fine level
are filled from the next coarser level (nearest-neighbour upsampling followed by a 3x3
normalised average). Valid input pixels keep their measured depth exactly.
On the KITTI DC frame of the shared data (1216x352, 20 % of the LiDAR points held out and
scored against the semi-dense GT at non-input pixels) this gives MAE 0.355 m / RMSE 1.273 m,
IP-Basic 0.325 / 1.282 (all-max pooling: 0.396 / 1.536).

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
    max_levels: int = 2,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Fill holes of sparse depth from coarser pyramid levels (see module docstring).

    sparse_depth: (B,1,H,W) metres, 0 where missing; valid_mask: (B,1,H,W) {0,1}.
    levels: pyramid depth, holes up to ~2**levels px are filled; H and W must be multiples of
    2**levels. max_levels: how many of the first reductions keep the nearest return (the rest
    average).
    Returns (prior (B,1,H,W) metres, 0 where nothing within reach; prior_valid (B,1,H,W) float
    {0,1}). With no valid input pixel both are all zero (monocular fallback upstream).
    """
    valid = (valid_mask > 0.5) & (sparse_depth > 0)
    weight = valid.to(sparse_depth.dtype)
    inv = torch.where(valid, 1.0 / sparse_depth.clamp(min=min_depth), torch.zeros_like(sparse_depth))
    pyramid = [(inv, weight)]
    for level in range(levels):
        v, w = pyramid[-1]
        if level < max_levels:
            v2 = F.max_pool2d(v, 2)
            w2 = (v2 > 0).to(v.dtype)
        else:
            total = F.avg_pool2d(v * w, 2)
            count = F.avg_pool2d(w, 2)
            v2 = torch.where(count > 0, total / count.clamp(min=1e-6), torch.zeros_like(total))
            w2 = (count > 0).to(v.dtype)
        pyramid.append((v2, w2))
    filled = pyramid[-1][0]
    for level in range(levels - 1, -1, -1):
        fine, fine_w = pyramid[level]
        up = F.interpolate(filled, size=fine.shape[-2:], mode="nearest")
        # smooth the coarse fill with a normalised 3x3 average (ignores empty cells)
        num = F.avg_pool2d(up, 3, stride=1, padding=1)
        den = F.avg_pool2d((up > 0).to(up.dtype), 3, stride=1, padding=1)
        up = torch.where(den > 0, num / den.clamp(min=1e-6), up)
        filled = torch.where(fine_w > 0, fine, up)
    prior_valid = (filled > 0).to(sparse_depth.dtype)
    prior = torch.where(filled > 0, 1.0 / filled.clamp(min=1e-6), torch.zeros_like(filled))
    # measured pixels keep their exact value
    prior = torch.where(valid, sparse_depth, prior)
    return prior, prior_valid
