"""Projection of 3-D points to a depth image and unprojection of a depth image to points.

This is the ONE projection used by the LiDAR projection node, the KITTI loaders, kitti-to-bag
and replay (see ``docs/interfaces.md``). Pixel convention: pixel ``(row v, col u)`` covers
``[u - 0.5, u + 0.5)``, so a point lands in column ``floor(u + 0.5)`` (round half up).
"""
from __future__ import annotations

import functools
import math
from typing import Optional

import numpy as np

from depth_diffusion_ros.geometry.intrinsics import Intrinsics


def _check_points(points: np.ndarray, what: str) -> np.ndarray:
    pts = np.asarray(points)
    if pts.ndim != 2 or pts.shape[1] < 3:
        raise ValueError(f"{what} must be (N, 3) (extra columns such as intensity are ignored), got shape {pts.shape}")
    return pts[:, :3]


def _render_depth(
    x: np.ndarray, y: np.ndarray, z: np.ndarray, intrinsics: Intrinsics
) -> np.ndarray:
    """z-buffer of camera-frame points already inside (min_depth, max_depth), float64 (M,) each."""
    h, w = intrinsics.height, intrinsics.width
    depth = np.zeros((h, w), dtype=np.float32)
    if z.size == 0:
        return depth
    u = np.floor(intrinsics.fx * x / z + intrinsics.cx + 0.5)
    v = np.floor(intrinsics.fy * y / z + intrinsics.cy + 0.5)
    inside = (u >= 0) & (u < w) & (v >= 0) & (v < h)
    if not np.any(inside):
        return depth
    lin = v[inside].astype(np.uint64) * np.uint64(w) + u[inside].astype(np.uint64)
    # z-buffer with one integer sort: key = pixel << 32 | float32 bits of z. For positive floats
    # the IEEE-754 bit pattern orders like the value, so after sorting, the first key of every
    # pixel holds its nearest return. float32 rounding is monotonic, so this stores exactly
    # float32(min z) per pixel, as a (pixel, z) lexsort followed by a float32 cast would.
    key = z[inside].astype(np.float32).view(np.uint32).astype(np.uint64)
    key |= lin << np.uint64(32)
    key.sort()
    first = np.empty(key.shape, dtype=bool)
    first[0] = True
    pix = key >> np.uint64(32)
    np.not_equal(pix[1:], pix[:-1], out=first[1:])
    nearest = key[first]
    depth.reshape(-1)[nearest >> np.uint64(32)] = (nearest & np.uint64(0xFFFFFFFF)).astype(np.uint32).view(np.float32)
    return depth


def _check_depth_range(min_depth: float, max_depth: float) -> None:
    if not (min_depth > 0) or not (max_depth >= min_depth):
        raise ValueError(f"need 0 < min_depth <= max_depth, got min_depth={min_depth}, max_depth={max_depth}")


def project_points_to_depth(
    points_camera: np.ndarray,
    intrinsics: Intrinsics,
    min_depth: float = 0.1,
    max_depth: float = math.inf,
) -> np.ndarray:
    """Render camera-frame points into a sparse depth image with a z-buffer.

    Args:
        points_camera: (N, 3) points in the camera optical frame, metres (z forward). Extra
            columns (e.g. (N, 4) with reflectance) are ignored.
        intrinsics: target image intrinsics and size.
        min_depth: points with z < min_depth (behind or too close to the camera) are dropped.
        max_depth: points with z > max_depth are dropped.

    Returns:
        (H, W) float32 depth in metres (z, along the optical axis), 0 = no point. Where several
        points fall on one pixel the nearest (smallest z) is kept. Non-finite points and points
        outside the image are dropped. Pixel coordinates are computed in float64.

    Raises:
        ValueError: points not (N, >=3), or min_depth <= 0 / max_depth < min_depth.
    """
    pts = _check_points(points_camera, "points_camera")
    _check_depth_range(min_depth, max_depth)
    z = pts[:, 2].astype(np.float64)
    # NaN fails every comparison, so non-finite points drop out here or at the bounds check.
    keep = np.flatnonzero((z >= min_depth) & (z <= max_depth))
    return _render_depth(pts[keep, 0].astype(np.float64), pts[keep, 1].astype(np.float64), z[keep], intrinsics)


def project_lidar_to_depth(
    points_lidar: np.ndarray,
    T_camera_lidar: np.ndarray,  # noqa: N803
    intrinsics: Intrinsics,
    min_depth: float = 0.1,
    max_depth: float = math.inf,
) -> np.ndarray:
    """Transform LiDAR points into the camera frame and render them like :func:`project_points_to_depth`.

    The camera-frame coordinates are those of
    :func:`~depth_diffusion_ros.geometry.transforms.transform_points` in float64 (same
    operations, so the result equals ``project_points_to_depth(transform_points(p, T), ...)``
    bit for bit), but x and y are only computed for the points whose camera z is inside
    [min_depth, max_depth] (about half of a 360-degree scan lies behind the camera).

    Args:
        points_lidar: (N, 3) or (N, 4) (x, y, z[, reflectance]) in the LiDAR frame, metres.
        T_camera_lidar: (4, 4) transform taking LiDAR points to the camera optical frame. For
            KITTI use :class:`~depth_diffusion_ros.geometry.calibration.KittiCalibration`'s, which
            already includes the rectification and the P_rect translation.
        intrinsics, min_depth, max_depth: as for :func:`project_points_to_depth`.

    Returns:
        (H, W) float32 metres, 0 = empty; nearest return per pixel.

    Raises:
        ValueError: bad shapes, a non-finite transform or a bad depth range.
    """
    pts = _check_points(points_lidar, "points_lidar")
    T = np.asarray(T_camera_lidar, dtype=np.float64)  # noqa: N806
    if T.shape != (4, 4):
        raise ValueError(f"transform must be (4,4), got shape {T.shape}")
    if not np.all(np.isfinite(T)):
        raise ValueError("transform contains non-finite values")
    _check_depth_range(min_depth, max_depth)
    x = pts[:, 0].astype(np.float64)
    y = pts[:, 1].astype(np.float64)
    z = pts[:, 2].astype(np.float64)
    # the same multiply-adds, in the same order, as transform_points
    zc = T[2, 0] * x + T[2, 1] * y + T[2, 2] * z + T[2, 3]
    keep = np.flatnonzero((zc >= min_depth) & (zc <= max_depth))
    x, y, z = x[keep], y[keep], z[keep]
    xc = T[0, 0] * x + T[0, 1] * y + T[0, 2] * z + T[0, 3]
    yc = T[1, 0] * x + T[1, 1] * y + T[1, 2] * z + T[1, 3]
    return _render_depth(xc, yc, zc[keep], intrinsics)


@functools.lru_cache(maxsize=16)
def _pixel_rays(intrinsics: Intrinsics) -> tuple[np.ndarray, np.ndarray]:
    u = np.arange(intrinsics.width, dtype=np.float64)
    v = np.arange(intrinsics.height, dtype=np.float64)
    xr = ((u - intrinsics.cx) / intrinsics.fx).astype(np.float32)[None, :]
    yr = ((v - intrinsics.cy) / intrinsics.fy).astype(np.float32)[:, None]
    xr.setflags(write=False)
    yr.setflags(write=False)
    return xr, yr


def pixel_rays(intrinsics: Intrinsics) -> tuple[np.ndarray, np.ndarray]:
    """Return ``((u - cx) / fx, (v - cy) / fy)`` as (1, W) and (H, 1) float32 arrays.

    Computed once per :class:`Intrinsics` value (an LRU cache of 16), so unprojecting a stream
    of frames is two multiplications per pixel. The arrays are shared and read-only.
    """
    return _pixel_rays(intrinsics)


_NAN_BITS = np.uint32(0x7FC00000)  # np.float32(np.nan)


def nan_invalid_depth(depth: np.ndarray, out: Optional[np.ndarray] = None, fill: float = math.nan) -> np.ndarray:
    """Depth as float32 metres with NaN where it is invalid (0, negative or non-finite).

    The REP 118 encoding of ``32FC1`` depth images and the z of organised point clouds. The
    selection is done on the integer bits (AND with an all-ones / all-zeros mask, OR in the
    quiet-NaN bits), which is several times faster than a masked float store, and every invalid
    pixel gets exactly ``np.float32(fill)`` (``np.float32(np.nan)`` by default).

    Args:
        depth: (H, W) (or any shape) depth in metres, any real dtype; validity is decided on the
            float32 value (float64 values beyond the float32 range become inf: invalid).
        out: float32 array of depth's shape to write into (may be strided, e.g. the z field of
            a point buffer), or None for a new array.
        fill: the value of invalid pixels (default NaN; 0.0 gives the in-memory convention of
            :func:`~depth_diffusion_ros.geometry.depth_codecs.sanitize_depth`).

    Returns:
        ``out`` (or the new array).

    Raises:
        ValueError: ``out`` is not float32 of depth's shape.
    """
    d = np.asarray(depth)
    if d.dtype != np.float32:
        with np.errstate(over="ignore"):
            d = d.astype(np.float32)
    if out is None:
        out = np.empty(d.shape, dtype=np.float32)
    elif out.dtype != np.float32 or out.shape != d.shape:
        raise ValueError(f"out must be float32 {d.shape}, got {out.dtype} {out.shape}")
    with np.errstate(invalid="ignore"):
        valid = (d > 0) & (d < np.inf)
    mask = valid.view(np.uint8).astype(np.uint32)
    np.negative(mask, out=mask)  # 1 -> 0xFFFFFFFF, 0 -> 0
    bits = out.view(np.uint32)
    np.bitwise_and(d.view(np.uint32), mask, out=bits)
    fill_bits = _NAN_BITS if math.isnan(fill) else np.float32(fill).view(np.uint32)
    if fill_bits:
        np.invert(mask, out=mask)
        mask &= fill_bits
        bits |= mask
    return out


def depth_to_points(depth: np.ndarray, intrinsics: Intrinsics) -> np.ndarray:
    """Unproject a depth image to an organised point cloud in the camera optical frame.

    ``x = (u - cx) * z / fx``, ``y = (v - cy) * z / fy``, ``z = depth`` (pinhole inverse).

    Args:
        depth: (H, W) depth in metres (z along the optical axis); 0, negative or non-finite
            values are invalid.
        intrinsics: must match the depth size.

    Returns:
        (H, W, 3) float32 points in metres; all three coordinates are NaN where depth is invalid.

    Raises:
        ValueError: depth not 2-D or its size differs from the intrinsics.
    """
    d = np.asarray(depth)
    if d.ndim != 2:
        raise ValueError(f"depth must be (H, W), got shape {d.shape}")
    if d.shape != (intrinsics.height, intrinsics.width):
        raise ValueError(
            f"depth size {d.shape[1]}x{d.shape[0]} does not match intrinsics "
            f"{intrinsics.width}x{intrinsics.height}"
        )
    z = nan_invalid_depth(d)
    xr, yr = pixel_rays(intrinsics)
    out = np.empty(d.shape + (3,), dtype=np.float32)
    np.multiply(xr, z, out=out[..., 0])
    np.multiply(yr, z, out=out[..., 1])
    out[..., 2] = z
    return out
