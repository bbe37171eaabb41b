"""Linear interpolation of sparse depth over a Delaunay triangulation of the measured pixels.

Every pixel inside the convex hull of the measured pixels gets the barycentric interpolation of
the depths at the corners of its triangle (``scipy.interpolate.LinearNDInterpolator``, which
triangulates with Qhull); pixels outside the hull take the nearest measured depth
(:func:`~depth_diffusion_ros.baselines.nearest.nearest_fill`). A classical peer that, unlike
nearest fill, makes smooth surfaces between scan lines, and unlike IP-Basic uses no morphology.
"""
from __future__ import annotations

import numpy as np
from scipy.interpolate import LinearNDInterpolator

from depth_diffusion_ros.baselines.nearest import nearest_fill


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
    d = np.asarray(sparse_depth, dtype=np.float32)
    if d.ndim != 2:
        raise ValueError(f"sparse_depth must be (H, W), got shape {d.shape}")
    valid = np.isfinite(d) & (d > 0)
    rows, cols = np.nonzero(valid)
    outside = nearest_fill(d)
    if rows.size < 3 or np.linalg.matrix_rank(np.column_stack([rows, cols, np.ones_like(rows)]).astype(float)) < 3:
        return outside
    interpolate = LinearNDInterpolator(np.column_stack([rows, cols]).astype(np.float64), d[valid].astype(np.float64))
    h, w = d.shape
    grid_r, grid_c = np.mgrid[0:h, 0:w]
    dense = interpolate(grid_r.ravel(), grid_c.ravel()).reshape(h, w)
    return np.where(np.isfinite(dense), dense, outside).astype(np.float32)
