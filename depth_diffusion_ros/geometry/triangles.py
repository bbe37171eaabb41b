"""Linear interpolation over a Delaunay triangulation, rasterised onto the pixel grid.

The function ``scipy.interpolate.LinearNDInterpolator`` evaluates at every pixel, over a Delaunay
triangulation made by OpenCV (:func:`delaunay_triangles`; Qhull's but for the diagonal chosen
inside cocircular groups of points), computed per triangle and per pixel row of it instead of per
pixel, so no point-location search runs.

Membership (unchanged from the per-pixel version this replaces): a pixel (r, c) belongs to a
triangle p0 p1 p2 when it lies in the triangle's bounding box (widened by eps, clipped to the
image) and its barycentric coordinates ``l1 = (d dr - b dc) / det``, ``l2 = (a dc - c dr) / det``
(dr = r - r0, dc = c - c0; a, b the row and c, d the column offsets of p1, p2 from p0) pass
``l1 >= -eps``, ``l2 >= -eps`` and ``l1 + l2 <= 1 + eps`` (eps = :data:`EDGE_EPS`). A pixel on an
edge shared by two triangles belongs to both; the two values agree up to rounding and either is
written. Triangles with ``|det| <= MIN_DET`` (zero area) are skipped.

Algorithm: each condition is a half-plane. Along one pixel row it bounds the column from below or
from above (at most two bounds on each side, as the three conditions sum to a constant), or, when
the edge lies along the row direction, holds for whole rows (a range of rows). So each row of a
triangle meets it in one column interval, computed from the bounds; the pixels of the intervals
are expanded with ``np.repeat``. Work is proportional to the covered pixels plus the rows, not to
the bounding boxes (KITTI's LiDAR triangles are long and thin: their boxes hold about five times
the pixels they cover). A triangle taller than wide is scanned by columns instead (the same code
on the transposed coordinates, where the test computes bit for bit the same barycentrics), which
makes fewer intervals. Triangles go in blocks of :data:`BLOCK`, so the temporaries stay in the
CPU caches.

Rounding: the interval bounds and the barycentric coordinates of the test both carry rounding
errors. Each bound therefore carries a margin larger than both (the relative :data:`ROUNDING`,
about 10^4 times the float64 unit roundoff, of the magnitudes involved): the pixels inside the
shrunk interval pass the test for certain, the pixels outside the widened one fail it, and the few
between (a barycentric coordinate within ~1e-12 of ``-eps``; typically none) are put through the
test itself. The covered pixel set is therefore exactly the set the per-pixel test selects.

Values: each triangle's plane ``z0 + g_r dr + g_c dc`` at the first pixel of an interval, stepped
by ``g_c`` along it, in float64, stored as float32 (the callers' depth maps): within half a
float32 ulp plus float64 rounding of LinearNDInterpolator's value (6e-8 relative).

On a 1242x375 KITTI frame (~15 k LiDAR pixels, ~30 k triangles, ~340 k pixels in the hull) the
rasterisation is several times faster than the per-pixel test over the bounding boxes
(``benchmarks/bench_linear_fill.py``); the triangulation takes about as long again.
"""
from __future__ import annotations

from typing import NamedTuple

import cv2
import numpy as np

#: Barycentric slack: pixels on a shared edge belong to both triangles (either value is exact).
EDGE_EPS = 1e-9
#: Relative bound on the float64 rounding of the interval bounds and of the barycentric test.
ROUNDING = 1e-12
#: Triangles rasterised together (their temporaries, ~5 intervals and ~15 pixels a triangle on
#: KITTI, stay in the CPU caches).
BLOCK = 4096
#: Triangles with |det| (twice the area, pixels^2) at or below this are skipped.
MIN_DET = 1e-12


class _Triangles(NamedTuple):
    """Per-triangle quantities of the rasterisation, (T,) float64 arrays unless stated. Rows and
    columns are those of the scan frame: the image's, transposed for triangles scanned by columns."""

    r0: np.ndarray  # first vertex (pixel row, column)
    c0: np.ndarray
    a: np.ndarray  # row / column offsets of the other two vertices from it, and
    b: np.ndarray  # det = a d - b c (the barycentric test)
    c: np.ndarray
    d: np.ndarray
    det: np.ndarray
    z0: np.ndarray  # the plane z0 + gr dr + gc dc
    gr: np.ndarray
    gc: np.ndarray
    lower: np.ndarray  # (2, 2, T): column >= u + v dr for [bound][u, v] (u = -inf: none, odd triangles)
    upper: np.ndarray  # (2, 2, T): column <= u + v dr (u = +inf: none)
    margin: np.ndarray  # column margin of those bounds
    row0: np.ndarray  # first candidate row (float), and the number of rows (intp)
    nrows: np.ndarray
    sure_row0: np.ndarray  # rows outside [sure_row0, sure_row1] go through the test
    sure_row1: np.ndarray
    col0: np.ndarray  # bounding-box columns
    col1: np.ndarray


class _RowSpans(NamedTuple):
    """Per triangle row, (R,) float64 columns: [cand0, sure0) and (sure1, cand1] go through the
    barycentric test, [sure0, sure1] are inside for certain."""

    tri: np.ndarray  # triangle index (intp)
    row: np.ndarray
    cand0: np.ndarray
    sure0: np.ndarray
    sure1: np.ndarray
    cand1: np.ndarray


def rasterize_linear(rows: np.ndarray, cols: np.ndarray, values: np.ndarray,
                     shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Barycentric (linear) interpolation of ``values`` at every pixel of ``shape`` inside the
    convex hull of the points (row, col), over their Delaunay triangulation
    (:func:`delaunay_triangles`): ``LinearNDInterpolator((rows, cols), values)`` at the integer
    pixel positions wherever the two triangulations agree (everywhere but inside groups of four
    or more cocircular points, where either diagonal is Delaunay).

    Args:
        rows, cols: (N,) pixel coordinates of the points (any real values, inside the image or not).
        values: (N,) the values at the points (depth in metres for the callers).
        shape: (H, W) of the output grid.
    Returns:
        (dense (H, W) float32, inside (H, W) bool): dense is 0 where inside is False (everywhere
        for fewer than 3 points or all collinear: no triangle).
    """
    pts = np.column_stack([np.asarray(rows, np.float64), np.asarray(cols, np.float64)])
    return rasterize_triangles(pts, values, delaunay_triangles(pts), shape)


def delaunay_triangles(points: np.ndarray) -> np.ndarray:
    """The Delaunay triangulation of 2-D points: (T, 3) int vertex indices, T = 0 for fewer than
    three points or all collinear.

    OpenCV's ``Subdiv2D`` (incremental Delaunay, Guibas-Stolfi; 3-4x faster than Qhull through
    ``scipy.spatial.Delaunay`` on a KITTI scan's 15 k pixels: 25 vs 70-110 ms). Its three virtual
    outer vertices are placed 10 spans beyond the points' bounding box, so the triangles among the
    points cover their whole convex hull (on the KITTI scan: the same 30,220 triangles' area as
    Qhull's); where four or more points are cocircular (frequent on a pixel lattice) it may pick
    the other, equally Delaunay, diagonal. Points are located in float32 (``Subdiv2D``'s
    precision): points that coincide there count once (the first index). They are inserted in
    :func:`strip_order` (each new point near the last one: ``Subdiv2D`` walks to it from the last
    edge it located), which on the KITTI scan takes a third of the time of the row-major order of
    ``np.nonzero`` (12-13 vs 36 ms); the triangulation is the same up to those diagonals.

    Args:
        points: (N, 2) coordinates (any order of axes, finite).
    Raises:
        ValueError: not (N, 2) or not finite.
    """
    pts = np.asarray(points, np.float64)
    if pts.ndim != 2 or pts.shape[1] != 2 or not np.isfinite(pts).all():
        raise ValueError(f"points must be finite (N, 2), got shape {pts.shape}")
    if len(pts) < 3:
        return np.zeros((0, 3), np.intp)
    xy = np.ascontiguousarray(pts[:, ::-1], np.float32)  # Subdiv2D's (x, y)
    lo, hi = xy.min(axis=0).astype(np.float64), xy.max(axis=0).astype(np.float64)
    span = np.maximum(hi - lo, 1.0)
    x0, y0 = lo - 10 * span
    subdiv = cv2.Subdiv2D((int(np.floor(x0)), int(np.floor(y0)), int(np.ceil(21 * span[0])) + 2,
                           int(np.ceil(21 * span[1])) + 2))
    subdiv.insert(xy[strip_order(xy)])
    corners = np.asarray(subdiv.getTriangleList(), np.float32).reshape(-1, 3, 2)
    # each corner back to its point: exact float32 keys, sorted (the first index of equal points)
    keys = xy.view(np.uint64).ravel()
    order = np.argsort(keys, kind="stable")
    sorted_keys = keys[order]
    want = np.ascontiguousarray(corners).view(np.uint64).reshape(-1)
    at = np.minimum(np.searchsorted(sorted_keys, want), len(keys) - 1)
    real = (sorted_keys[at] == want).reshape(-1, 3).all(axis=1)  # drops the virtual vertices' triangles
    return order[at].reshape(-1, 3)[real].astype(np.intp)


def strip_order(xy: np.ndarray) -> np.ndarray:
    """An insertion order for incremental Delaunay triangulation in which consecutive points are
    near each other: the points fall into about sqrt(N / 2) vertical strips of equal width in x,
    visited left to right, and within a strip they are sorted by y, downwards and upwards in
    turn (the strip sort of point-location walks; cf. Amenta, Choi, Rote, "Incremental
    constructions con BRIO", SoCG 2003, for why the order matters).

    xy: (N, 2) finite coordinates. Returns (N,) int indices.
    """
    x, y = xy[:, 0].astype(np.float64), xy[:, 1].astype(np.float64)
    n_strips = max(1, int(np.sqrt(len(xy) / 2)))
    width = max(float(x.max() - x.min()), 1e-12) / n_strips
    strip = np.minimum(((x - x.min()) / width).astype(np.intp), n_strips - 1)
    return np.lexsort((np.where(strip % 2 == 0, y, -y), strip))


def rasterize_triangles(points: np.ndarray, values: np.ndarray, simplices: np.ndarray,
                        shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Linear interpolation of ``values`` over the given triangles at every pixel of ``shape``
    they cover (the rasterisation of :func:`rasterize_linear`, for a triangulation already made).

    Args:
        points: (N, 2) pixel coordinates (row, col) of the vertices.
        values: (N,) the values at the vertices.
        simplices: (T, 3) vertex indices of the triangles (:func:`delaunay_triangles`, or
            ``scipy.spatial.Delaunay(points).simplices``);
            triangles of zero area are skipped; where triangles overlap (not a triangulation),
            which one's value is written is unspecified.
        shape: (H, W) of the output grid.
    Returns:
        (dense (H, W) float32, inside (H, W) bool): inside marks the pixels of at least one
        triangle; dense is 0 where inside is False.
    Raises:
        ValueError: points not (N, 2) or simplices not (T, 3).
    """
    pts = np.asarray(points, np.float64)
    simplices = np.asarray(simplices, np.intp)
    if pts.ndim != 2 or pts.shape[1] != 2 or simplices.ndim != 2 or simplices.shape[1] != 3:
        raise ValueError(f"points must be (N, 2) and simplices (T, 3), got {pts.shape} and {simplices.shape}")
    h, w = int(shape[0]), int(shape[1])
    z = np.asarray(values, np.float64)
    dense = np.zeros(h * w, np.float32)
    inside = np.zeros(h * w, bool)
    # a triangle taller than wide is rasterised by columns (in the transposed frame): fewer spans
    p0, p1, p2 = pts[simplices[:, 0]], pts[simplices[:, 1]], pts[simplices[:, 2]]
    ext = np.maximum(np.maximum(p0, p1), p2) - np.minimum(np.minimum(p0, p1), p2)
    tall = ext[:, 0] > ext[:, 1]
    frames = ((pts, simplices[~tall], (h, w), (w, 1)),
              (np.ascontiguousarray(pts[:, ::-1]), simplices[tall], (w, h), (1, w)))
    for frame_pts, part, (fh, fw), strides in frames:
        for start in range(0, len(part), BLOCK):  # blocks of triangles: temporaries stay in cache
            tris = _triangles(frame_pts, z, part[start:start + BLOCK], fh, fw)
            spans = _row_spans(tris)
            _paint_sure(dense, inside, tris, spans, strides)
            _paint_tested(dense, inside, tris, spans, strides)
    return dense.reshape(h, w), inside.reshape(h, w)


def _triangles(pts: np.ndarray, z: np.ndarray, simplices: np.ndarray, h: int, w: int) -> _Triangles:
    """The non-degenerate triangles' test coefficients, planes, column bounds and row ranges."""
    p0, p1, p2 = pts[simplices[:, 0]], pts[simplices[:, 1]], pts[simplices[:, 2]]
    a, b = p1[:, 0] - p0[:, 0], p2[:, 0] - p0[:, 0]
    c, d = p1[:, 1] - p0[:, 1], p2[:, 1] - p0[:, 1]
    det = a * d - b * c
    keep = np.abs(det) > MIN_DET
    if not keep.all():
        simplices, p0, p1, p2, a, b, c, d, det = (x[keep] for x in (simplices, p0, p1, p2, a, b, c, d, det))
    pmin, pmax = np.minimum(np.minimum(p0, p1), p2), np.maximum(np.maximum(p0, p1), p2)
    box0 = np.maximum(np.ceil(pmin - EDGE_EPS), 0)
    box1 = np.floor(pmax + EDGE_EPS)
    np.minimum(box1, [h - 1, w - 1], out=box1)
    ext_r, ext_c = pmax[:, 0] - pmin[:, 0] + 1.0, pmax[:, 1] - pmin[:, 1] + 1.0
    z0, z1, z2 = z[simplices[:, 0]], z[simplices[:, 1]], z[simplices[:, 2]]
    z1, z2 = z1 - z0, z2 - z0
    gr, gc = (z1 * d - z2 * c) / det, (z2 * a - z1 * b) / det
    r0, c0 = p0[:, 0], p0[:, 1]
    # the conditions l1 >= -eps, l2 >= -eps, -(l1 + l2) >= -1 - eps times |det|, as (3, T):
    # kd dr + bd dc >= rhs; delta bounds the rounding of the test (same units) in the box
    sg, adet = np.sign(det), np.abs(det)
    kd = np.array([d, -c, c - d]) * sg
    bd = np.array([-b, a, b - a]) * sg
    rhs = np.array([[-EDGE_EPS], [-EDGE_EPS], [-1.0 - EDGE_EPS]]) * adet
    delta = ROUNDING * ((np.abs(a) + np.abs(b)) * ext_c + (np.abs(c) + np.abs(d)) * ext_r + adet)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        u, v = rhs / bd + c0, -kd / bd  # the column bound c0 + (rhs - kd dr) / bd
        m = delta / np.abs(bd) + ROUNDING * (np.abs(u) + np.abs(v) * ext_r + np.abs(c0) + 1.0)
        margin = np.where(bd != 0, m, 0.0).max(0)
        row0, row1, sure_row0, sure_row1 = _row_ranges(kd, bd, rhs, delta, r0, box0[:, 0], box1[:, 0])
    lower, upper = _two_bounds(u, v, bd > 0), _two_bounds(u, v, bd < 0)
    # overflowing bounds (near-degenerate input): the whole box goes through the test
    odd = ~(np.isfinite(margin) & np.isfinite(row0) & np.isfinite(row1))
    if odd.any():
        lower[:, :, odd], upper[:, :, odd], margin[odd] = 0.0, 0.0, 0.0
        lower[:, 0, odd], upper[:, 0, odd] = -np.inf, np.inf
        row0[odd], row1[odd], sure_row0[odd] = box0[odd, 0], box1[odd, 0], np.inf
    nrows = np.maximum(row1 - row0 + 1, 0).astype(np.intp)
    nrows[box1[:, 1] < box0[:, 1]] = 0
    return _Triangles(r0, c0, a, b, c, d, det, z0, gr, gc, lower, upper, margin, row0, nrows,
                      sure_row0, sure_row1, box0[:, 1], box1[:, 1])


def _two_bounds(u: np.ndarray, v: np.ndarray, sel: np.ndarray) -> np.ndarray:
    """(2, 2, T) [bound][u, v]: the first and the last selected of the three (3, T) column bounds
    (the same one twice when one is selected; every triangle has one at least on each side, as
    the three bd sum to 0)."""
    uv = np.stack([u, v], 1)  # (3, 2, T)
    out = np.empty((2,) + uv.shape[1:])
    out[0] = uv[2]  # the first selected: overwritten by the lower selected ones
    np.copyto(out[0], uv[1], where=sel[1])
    np.copyto(out[0], uv[0], where=sel[0])
    out[1] = uv[0]  # the last selected
    np.copyto(out[1], uv[1], where=sel[1])
    np.copyto(out[1], uv[2], where=sel[2])
    return out


def _row_ranges(kd: np.ndarray, bd: np.ndarray, rhs: np.ndarray, delta: np.ndarray, r0: np.ndarray,
                box_row0: np.ndarray, box_row1: np.ndarray) -> tuple[np.ndarray, ...]:
    """Candidate rows [row0, row1] and sure rows [sure_row0, sure_row1] of the triangles: the box
    rows, limited by the condition whose edge lies along a row (bd = 0; one at most)."""
    row0, row1 = box_row0.copy(), box_row1.copy()
    sure_row0, sure_row1 = np.full(len(r0), -np.inf), np.full(len(r0), np.inf)
    flat = bd == 0
    i = np.flatnonzero(flat[0] | flat[1] | flat[2])
    j = np.where(flat[0, i], 0, np.where(flat[1, i], 1, 2))
    k = kd[j, i]
    rb = r0[i] + rhs[j, i] / k  # rows >= rb for k > 0, rows <= rb for k < 0
    mr = delta[i] / np.abs(k) + ROUNDING * (np.abs(rb) + np.abs(r0[i]) + 1.0)
    up, down = k > 0, k < 0
    row0[i[up]] = np.maximum(row0[i[up]], np.ceil(rb[up] - mr[up]))
    sure_row0[i[up]] = np.ceil(rb[up] + mr[up])
    row1[i[down]] = np.minimum(row1[i[down]], np.floor(rb[down] + mr[down]))
    sure_row1[i[down]] = np.floor(rb[down] - mr[down])
    return row0, row1, sure_row0, sure_row1


def _row_spans(tris: _Triangles) -> _RowSpans:
    """Every candidate row of every triangle, with its sure and candidate column intervals."""
    nrows = tris.nrows
    t = np.repeat(np.arange(len(nrows)), nrows)
    r = (tris.row0 - (np.cumsum(nrows) - nrows))[t]
    r += np.arange(len(t))
    dr = r - tris.r0[t]
    lo = _lines_at(tris.lower, t, dr, np.maximum)
    hi = _lines_at(tris.upper, t, dr, np.minimum)
    m = tris.margin[t]
    cand0 = np.maximum(np.ceil(lo - m), tris.col0[t])
    cand1 = np.minimum(np.floor(hi + m), tris.col1[t])
    sure0 = np.maximum(np.ceil(np.add(lo, m, out=lo), out=lo), cand0, out=lo)
    sure1 = np.minimum(np.floor(np.subtract(hi, m, out=hi), out=hi), cand1, out=hi)
    empty = (sure1 < sure0) | (r < tris.sure_row0[t]) | (r > tris.sure_row1[t])
    sure0[empty] = cand1[empty] + 1  # nothing sure: the whole candidate interval is tested
    sure1[empty] = cand1[empty]
    return _RowSpans(t, r, cand0, sure0, sure1, cand1)


def _lines_at(bounds: np.ndarray, t: np.ndarray, dr: np.ndarray, pick) -> np.ndarray:
    """pick (np.maximum / np.minimum) of the two column bounds u + v dr of triangle t."""
    (u0, v0), (u1, v1) = bounds
    x, y = v0[t], v1[t]
    x *= dr
    x += u0[t]
    y *= dr
    y += u1[t]
    return pick(x, y, out=x)


def _paint_sure(dense: np.ndarray, inside: np.ndarray, tris: _Triangles, spans: _RowSpans,
                strides: tuple[int, int]) -> None:
    """Write the sure intervals: the plane at each interval's first pixel, stepped along it."""
    t, r, c = spans.tri, spans.row, spans.sure0
    length = (spans.sure1 - c + 1).astype(np.intp)
    v0 = tris.gr[t] * (r - tris.r0[t])
    v0 += tris.z0[t]
    v0 += tris.gc[t] * (c - tris.c0[t])
    first = np.cumsum(length) - length
    run = np.repeat(np.arange(len(length)), length)
    k = np.arange(len(run))
    k -= first[run]
    flat = (r * strides[0] + c * strides[1]).astype(np.intp)[run]
    flat += k * strides[1] if strides[1] != 1 else k
    value = tris.gc[t][run]
    value *= k
    value += v0[run]
    dense[flat] = value
    inside[flat] = True


def _paint_tested(dense: np.ndarray, inside: np.ndarray, tris: _Triangles, spans: _RowSpans,
                  strides: tuple[int, int]) -> None:
    """Put the pixels between the sure and the candidate intervals ([cand0, sure0) and
    (sure1, cand1]) through the barycentric test and write those that pass."""
    left, right = spans.sure0 - spans.cand0, spans.cand1 - spans.sure1
    which = np.flatnonzero((left > 0) | (right > 0))
    if not len(which):
        return
    left, right = np.maximum(left[which], 0).astype(np.intp), right[which].astype(np.intp)
    start = np.concatenate([spans.cand0[which], spans.sure1[which] + 1])
    length = np.concatenate([left, right])
    run = np.repeat(np.arange(len(length)), length)
    col = start[run] + (np.arange(len(run)) - (np.cumsum(length) - length)[run])
    row_of = np.concatenate([which, which])[run]
    row, t = spans.row[row_of], spans.tri[row_of]
    dr, dc = row - tris.r0[t], col - tris.c0[t]
    l1 = (tris.d[t] * dr - tris.b[t] * dc) / tris.det[t]
    l2 = (tris.a[t] * dc - tris.c[t] * dr) / tris.det[t]
    ok = (l1 >= -EDGE_EPS) & (l2 >= -EDGE_EPS) & (l1 + l2 <= 1.0 + EDGE_EPS)
    t, flat = t[ok], (row[ok] * strides[0] + col[ok] * strides[1]).astype(np.intp)
    dense[flat] = (tris.z0[t] + tris.gr[t] * dr[ok] + tris.gc[t] * dc[ok]).astype(np.float32)
    inside[flat] = True
