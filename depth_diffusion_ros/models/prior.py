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


def _shift_columns(x: torch.Tensor, offset: int) -> torch.Tensor:
    """out[..., c] = x[..., c + offset], zero where c + offset falls outside the image."""
    k = abs(offset)
    padded = F.pad(x, (k, k))
    return padded[..., k + offset: k + offset + x.shape[-1]]


def scanline_fill(
    sparse_depth: torch.Tensor,
    valid_mask: torch.Tensor,
    max_gap: int = 8,
    max_rel_diff: float = 0.05,
    min_depth: float = 0.1,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Interpolate sparse depth along image rows between two agreeing returns.

    A spinning LiDAR's points form scan lines that run roughly along image rows: consecutive
    returns of one laser are about a pixel apart horizontally (KITTI HDL-64E: 0.09 deg azimuth
    step, ~1.1 px at fx 721) while lasers are several rows apart. A hole with a valid pixel at
    most ``max_gap`` columns to its left *and* to its right in the same row, whose inverse depths
    differ by at most ``max_rel_diff`` (relative), gets the inverse-depth linear interpolation of
    the two (weights by column distance). Other pixels are untouched. This is what IP-Basic
    (Ku et al., CRV 2018, Sec. III) gets from its small dilation kernels along a scan line,
    without taking values from the lasers above and below.

    sparse_depth: (B,1,H,W) metres, 0 = missing; valid_mask: (B,1,H,W) {0,1}.
    Returns (filled depth (B,1,H,W) m, 0 = still missing; filled validity (B,1,H,W) float {0,1}).
    Measured pixels keep their value. Static loops only (exportable to ONNX).
    """
    valid = (valid_mask > 0.5) & (sparse_depth > 0)
    inv = torch.where(valid, 1.0 / sparse_depth.clamp(min=min_depth), torch.zeros_like(sparse_depth))

    def nearest(sign: int) -> tuple[torch.Tensor, torch.Tensor]:
        value = torch.zeros_like(inv)
        dist = torch.zeros_like(inv)
        for k in range(max_gap, 0, -1):  # nearer columns overwrite farther ones
            shifted = _shift_columns(inv, sign * k)
            found = shifted > 0
            value = torch.where(found, shifted, value)
            dist = torch.where(found, torch.full_like(dist, float(k)), dist)
        return value, dist

    left, left_dist = nearest(-1)
    right, right_dist = nearest(1)
    agree = (left > 0) & (right > 0) & ((left - right).abs() <= max_rel_diff * torch.maximum(left, right))
    fill = agree & ~valid
    interp = (left * right_dist + right * left_dist) / (left_dist + right_dist).clamp(min=1.0)
    depth = torch.where(valid, sparse_depth, torch.zeros_like(sparse_depth))
    depth = torch.where(fill, 1.0 / interp.clamp(min=1e-6), depth)
    return depth, (valid | fill).to(sparse_depth.dtype)


def scanline_prior(
    sparse_depth: torch.Tensor,
    valid_mask: torch.Tensor,
    levels: int = 5,
    max_gap: int = 8,
    max_rel_diff: float = 0.05,
    min_depth: float = 0.1,
) -> torch.Tensor:
    """:func:`densify_sparse_depth` of the :func:`scanline_fill` ed input: (B,1,H,W) metres, 0
    where nothing is within reach (its support contains the plain prior's: bridged pixels can
    reach a little further)."""
    filled, filled_valid = scanline_fill(sparse_depth, valid_mask, max_gap, max_rel_diff, min_depth)
    prior, _ = densify_sparse_depth(filled, filled_valid, levels=levels, min_depth=min_depth)
    return prior


def select_scanline(prior: torch.Tensor, scanline: torch.Tensor, max_farther: float = 0.1) -> torch.Tensor:
    """The hand rule the learned selection starts from: the scan-line prior where it is at most
    ``max_farther`` (relative) farther than the pull-push prior, else the pull-push prior.

    The pull-push prior prefers the nearest return of each block (right at occlusion edges,
    where background returns of the LiDAR bleed past foreground objects; too near on the ground
    far away, where the laser below is nearer); the scan-line prior takes neither side. Farther
    by more than ``max_farther`` means a bleeding background return is the likelier cause.
    prior, scanline: (B,1,H,W) metres (0 = none). Returns (B,1,H,W) metres.
    """
    use = (scanline > 0) & (scanline <= prior * (1.0 + max_farther))
    return torch.where(use, scanline, prior)
