"""Linear interpolation of sparse depth over a Delaunay triangulation of the measured pixels.

Every pixel inside the convex hull of the measured pixels gets the barycentric interpolation of
the depths at the corners of its triangle (the function ``scipy.interpolate.LinearNDInterpolator``
computes, over OpenCV's Delaunay triangulation, which is Qhull's but for the diagonal picked inside
cocircular groups of pixels; rasterised per triangle row by
:func:`depth_diffusion_ros.geometry.triangles.rasterize_linear`, which is faster than its per-pixel
search); pixels outside the hull take the nearest measured depth
(:func:`~depth_diffusion_ros.baselines.nearest.nearest_fill`). A classical peer that, unlike
nearest fill, makes smooth surfaces between scan lines, and unlike IP-Basic uses no morphology.
"""
from __future__ import annotations

import numpy as np
from depth_diffusion_ros.baselines.nearest import nearest_fill
from depth_diffusion_ros.geometry.triangles import rasterize_linear


def linear_interpolate_hull(sparse_depth: np.ndarray) -> np.ndarray:
    """:func:`linear_interpolate` inside the convex hull of the measured pixels, 0 outside it
    (and everywhere when fewer than three non-collinear pixels are valid). Raises ValueError: not 2-D."""
    d, rows, cols = _measured(sparse_depth)
    if not _has_triangle(rows, cols):
        return np.zeros_like(d)
    dense, _ = rasterize_linear(rows, cols, d[rows, cols], d.shape)
    return dense  # float32, 0 outside the hull


def _measured(sparse_depth: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    d = np.asarray(sparse_depth, dtype=np.float32)
    if d.ndim != 2:
        raise ValueError(f"sparse_depth must be (H, W), got shape {d.shape}")
    rows, cols = np.nonzero(np.isfinite(d) & (d > 0))
    return d, rows, cols


def _has_triangle(rows: np.ndarray, cols: np.ndarray) -> bool:
    """At least three pixels, not all on one line."""
    return rows.size >= 3 and np.linalg.matrix_rank(
        np.column_stack([rows, cols, np.ones_like(rows)]).astype(float)) == 3


def linear_interpolate(sparse_depth: np.ndarray) -> np.ndarray:
    """Dense depth by linear interpolation between measured pixels (in depth, metres).

    Args:
        sparse_depth: (H, W) metres, 0 / negative / non-finite = missing.
    Returns:
        (H, W) float32 metres: dense when at least three non-collinear pixels are valid; nearest
        fill when fewer (no triangle); all zeros when none is valid.
    Raises:
        ValueError: not 2-D.
    """
    d, rows, cols = _measured(sparse_depth)
    outside = nearest_fill(d)
    if not _has_triangle(rows, cols):
        return outside
    dense, inside = rasterize_linear(rows, cols, d[rows, cols], d.shape)
    return np.where(inside, dense, outside)
