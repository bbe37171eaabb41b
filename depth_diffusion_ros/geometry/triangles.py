"""Linear interpolation over a Delaunay triangulation, rasterised onto the pixel grid.

The same function as ``scipy.interpolate.LinearNDInterpolator`` evaluated at every pixel (the
triangulation is Qhull's, through ``scipy.spatial.Delaunay``), computed per triangle instead of
per pixel: every triangle visits the pixels of its bounding box and keeps those inside it
(barycentric coordinates >= 0), so no point-location search runs. On a 1242x375 KITTI frame
(~15 k LiDAR pixels, ~30 k triangles) that is several times faster than the per-pixel search.
"""
from __future__ import annotations

import numpy as np
from scipy.spatial import Delaunay

#: Barycentric slack: pixels on a shared edge belong to both triangles (either value is exact).
EDGE_EPS = 1e-9


def rasterize_linear(rows: np.ndarray, cols: np.ndarray, values: np.ndarray,
                     shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Barycentric (linear) interpolation of ``values`` at every pixel of ``shape`` inside the
    convex hull of the points (row, col).

    rows, cols: (N,) pixel coordinates (any real values); values: (N,); shape: (H, W).
    Returns (dense (H, W) float64, inside (H, W) bool): dense is 0 where inside is False.
    Raises scipy's QhullError for fewer than 3 or collinear points (callers check first).
    """
    h, w = int(shape[0]), int(shape[1])
    pts = np.column_stack([np.asarray(rows, np.float64), np.asarray(cols, np.float64)])
    z = np.asarray(values, np.float64)
    tri = Delaunay(pts).simplices
    p0, p1, p2 = pts[tri[:, 0]], pts[tri[:, 1]], pts[tri[:, 2]]
    # barycentric coordinates l1, l2 of (r, c): solve [p1-p0, p2-p0] [l1 l2]^T = (r, c) - p0
    a, b = p1[:, 0] - p0[:, 0], p2[:, 0] - p0[:, 0]
    c, d = p1[:, 1] - p0[:, 1], p2[:, 1] - p0[:, 1]
    det = a * d - b * c
    keep = np.abs(det) > 1e-12
    tri, p0, a, b, c, d, det = tri[keep], p0[keep], a[keep], b[keep], c[keep], d[keep], det[keep]
    lo = np.maximum(np.ceil(np.minimum(np.minimum(pts[tri[:, 0]], pts[tri[:, 1]]), pts[tri[:, 2]]) - EDGE_EPS), 0)
    hi = np.minimum(np.floor(np.maximum(np.maximum(pts[tri[:, 0]], pts[tri[:, 1]]), pts[tri[:, 2]]) + EDGE_EPS),
                    [h - 1, w - 1])
    lo, hi = lo.astype(np.int64), hi.astype(np.int64)
    nr, nc = np.maximum(hi[:, 0] - lo[:, 0] + 1, 0), np.maximum(hi[:, 1] - lo[:, 1] + 1, 0)
    counts = nr * nc
    t = np.repeat(np.arange(len(tri)), counts)
    k = np.arange(int(counts.sum())) - np.repeat(np.cumsum(counts) - counts, counts)
    r = lo[t, 0] + k // nc[t]
    cc = lo[t, 1] + k % nc[t]
    dr, dc = r - p0[t, 0], cc - p0[t, 1]
    l1 = (d[t] * dr - b[t] * dc) / det[t]
    l2 = (a[t] * dc - c[t] * dr) / det[t]
    inside = (l1 >= -EDGE_EPS) & (l2 >= -EDGE_EPS) & (l1 + l2 <= 1.0 + EDGE_EPS)
    t, r, cc, l1, l2 = t[inside], r[inside], cc[inside], l1[inside], l2[inside]
    tz = z[tri[t]]
    dense = np.zeros((h, w), np.float64)
    dense[r, cc] = (1.0 - l1 - l2) * tz[:, 0] + l1 * tz[:, 1] + l2 * tz[:, 2]
    covered = np.zeros((h, w), bool)
    covered[r, cc] = True
    return dense, covered
