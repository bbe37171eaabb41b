"""Forward warping of a depth map into another camera pose (the temporal prior's geometry).

Every valid pixel of the source depth map is unprojected with the source intrinsics K, moved by
the rigid motion ``T_target_source`` (4x4, metres: source camera optical frame -> target camera
optical frame) and projected into the target camera with the pixel convention of
:mod:`depth_diffusion_ros.geometry.projection` (a point lands in column ``floor(u + 0.5)``).
Where several source pixels land on one target pixel the nearest surface (smallest target z)
wins (z-buffering), so a foreground object hides the background it moves in front of.

Forward warping leaves holes: disoccluded regions (background that was hidden in the source
view) and, where the motion magnifies the picture (moving forward), cracks between splatted
pixels. Both are reported as invalid (0 depth, ``valid`` False); the caller decides what to do
there (the temporal filter falls back to the single-frame estimate).
"""
from __future__ import annotations

import math
from typing import Optional

import numpy as np

from depth_diffusion_ros.geometry.intrinsics import Intrinsics
from depth_diffusion_ros.geometry.projection import pixel_rays
from depth_diffusion_ros.geometry.transforms import check_rigid_transform


def forward_warp_indices(
    depth: np.ndarray,
    T_target_source: np.ndarray,  # noqa: N803
    intrinsics: Intrinsics,
    target_intrinsics: Optional[Intrinsics] = None,
    min_depth: float = 1e-3,
    fill_cracks: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """The z-buffered forward warp of ``depth`` as source indices: which source pixel each
    target pixel shows, and its depth there.

    Args:
        depth: (H, W) float metres along the optical axis of the source camera; 0, negative,
            NaN or inf = no depth.
        T_target_source: (4, 4) rigid transform, source camera optical frame -> target camera
            optical frame (metres). Identity = the same camera pose.
        intrinsics: of ``depth`` (its size must match ``depth``).
        target_intrinsics: of the target image; None = ``intrinsics``.
        min_depth: points nearer than this in the target camera (metres; behind it included)
            are dropped.
        fill_cracks: fill one-pixel holes inside a continuous surface (the cracks a magnifying
            motion leaves between splatted pixels): a hole whose left and right (then: upper and
            lower) neighbours are both warped and within 5 % of each other in depth takes the
            nearer neighbour's source pixel and depth. Wider holes (disocclusions) stay empty.

    Returns:
        ``(source_index, warped_depth)``: (Ht, Wt) int64 flat index into ``depth`` (-1 = no
        source pixel lands here) and (Ht, Wt) float32 target-camera z in metres (0 = none).

    Raises:
        ValueError: ``depth`` not 2-D or not of the intrinsics' size, a transform that is not a
            finite rigid 4x4, or ``min_depth`` <= 0.
    """
    d = np.asarray(depth)
    if d.ndim != 2:
        raise ValueError(f"depth must be (H, W), got shape {d.shape}")
    if d.shape != (intrinsics.height, intrinsics.width):
        raise ValueError(f"depth is {d.shape[1]}x{d.shape[0]} but its intrinsics are for "
                         f"{intrinsics.width}x{intrinsics.height}")
    if not (min_depth > 0) or not math.isfinite(min_depth):
        raise ValueError(f"min_depth must be a finite number > 0, got {min_depth}")
    try:
        T = check_rigid_transform(T_target_source)  # noqa: N806
    except ValueError as exc:
        raise ValueError(f"T_target_source {exc}") from None
    tgt = intrinsics if target_intrinsics is None else target_intrinsics
    ht, wt = tgt.height, tgt.width
    index = np.full((ht, wt), -1, dtype=np.int64)
    warped = np.zeros((ht, wt), dtype=np.float32)

    with np.errstate(invalid="ignore"):
        src = np.flatnonzero((d > 0) & np.isfinite(d))
    if src.size == 0:
        return index, warped
    xr, yr = pixel_rays(intrinsics)
    w = d.shape[1]
    z = d.reshape(-1)[src].astype(np.float64)
    x = xr[0, src % w].astype(np.float64) * z
    y = yr[src // w, 0].astype(np.float64) * z
    zc = T[2, 0] * x + T[2, 1] * y + T[2, 2] * z + T[2, 3]
    keep = zc >= min_depth
    src, x, y, z, zc = src[keep], x[keep], y[keep], z[keep], zc[keep]
    xc = T[0, 0] * x + T[0, 1] * y + T[0, 2] * z + T[0, 3]
    yc = T[1, 0] * x + T[1, 1] * y + T[1, 2] * z + T[1, 3]
    u = np.floor(tgt.fx * xc / zc + tgt.cx + 0.5)
    v = np.floor(tgt.fy * yc / zc + tgt.cy + 0.5)
    inside = (u >= 0) & (u < wt) & (v >= 0) & (v < ht)
    if not np.any(inside):
        return index, warped
    lin = v[inside].astype(np.int64) * wt + u[inside].astype(np.int64)
    src, zc = src[inside], zc[inside]
    # z-buffer: sort by (target pixel, z); the first entry of each pixel is its nearest surface
    order = np.lexsort((zc, lin))
    lin, src, zc = lin[order], src[order], zc[order]
    first = np.ones(lin.shape, dtype=bool)
    np.not_equal(lin[1:], lin[:-1], out=first[1:])
    index.reshape(-1)[lin[first]] = src[first]
    warped.reshape(-1)[lin[first]] = zc[first].astype(np.float32)
    if fill_cracks:
        _fill_cracks(index, warped, axis=1)
        _fill_cracks(index, warped, axis=0)
    return index, warped


def _fill_cracks(index: np.ndarray, warped: np.ndarray, axis: int, rel: float = 0.05) -> None:
    """In place: one-pixel holes between two similar warped depths along ``axis`` take the
    nearer neighbour (see ``fill_cracks``)."""
    if index.shape[axis] < 3:
        return
    core = (slice(None), slice(1, -1)) if axis == 1 else (slice(1, -1), slice(None))
    lo = (slice(None), slice(None, -2)) if axis == 1 else (slice(None, -2), slice(None))
    hi = (slice(None), slice(2, None)) if axis == 1 else (slice(2, None), slice(None))
    za, zb = warped[lo].copy(), warped[hi].copy()
    ia, ib = index[lo].copy(), index[hi].copy()
    hole = (index[core] < 0) & (ia >= 0) & (ib >= 0) & (np.abs(za - zb) <= rel * np.minimum(za, zb))
    if not hole.any():
        return
    take_a = za <= zb
    index[core][hole] = np.where(take_a, ia, ib)[hole]
    warped[core][hole] = np.where(take_a, za, zb)[hole]


def forward_warp_depth(
    depth: np.ndarray,
    T_target_source: np.ndarray,  # noqa: N803
    intrinsics: Intrinsics,
    target_intrinsics: Optional[Intrinsics] = None,
    min_depth: float = 1e-3,
    fill_cracks: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Forward-warp a depth map into another camera pose with z-buffering (nearest surface wins).

    Args: as :func:`forward_warp_indices`.

    Returns:
        ``(warped_depth, valid)``: (Ht, Wt) float32 metres along the target camera's optical
        axis (0 = no source pixel lands here: disocclusion, crack, outside the source view, or
        behind the target camera) and the (Ht, Wt) bool mask ``warped_depth > 0``. With the
        identity transform and the same intrinsics the result equals ``depth`` exactly (invalid
        pixels set to 0).

    Raises:
        ValueError: as :func:`forward_warp_indices`.
    """
    index, warped = forward_warp_indices(depth, T_target_source, intrinsics, target_intrinsics, min_depth,
                                         fill_cracks)
    return warped, index >= 0


def warp_values(values: np.ndarray, source_index: np.ndarray, fill: float = 0.0) -> np.ndarray:
    """Carry per-pixel ``values`` (H, W) of the source image along a warp: (Ht, Wt) of the same
    dtype, ``fill`` where ``source_index`` is -1 (from :func:`forward_warp_indices`).

    Raises:
        ValueError: ``values`` not 2-D.
    """
    vals = np.asarray(values)
    if vals.ndim != 2:
        raise ValueError(f"values must be (H, W), got shape {vals.shape}")
    out = np.full(source_index.shape, fill, dtype=vals.dtype)
    hit = source_index >= 0
    out[hit] = vals.reshape(-1)[source_index[hit]]
    return out
