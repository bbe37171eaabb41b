"""geometry.triangles: OpenCV's triangulation is Delaunay (no point inside a triangle's
circumcircle) and covers the convex hull as Qhull's does; the per-row rasterisation of linear
interpolation over a triangulation is LinearNDInterpolator at the pixels where the triangulations
agree (everywhere without cocircular points), and covers exactly the pixels the documented
per-pixel barycentric test selects."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.interpolate import LinearNDInterpolator
from scipy.spatial import Delaunay

from depth_diffusion_ros.geometry import triangles
from depth_diffusion_ros.geometry.depth_codecs import read_kitti_depth_png
from depth_diffusion_ros.geometry.triangles import (
    EDGE_EPS, MIN_DET, delaunay_triangles, rasterize_linear, rasterize_triangles, strip_order)


def scipy_at_pixels(rows, cols, values, shape):
    """LinearNDInterpolator at every integer pixel: (values (H, W) float64, inside (H, W) bool)."""
    f = LinearNDInterpolator(np.column_stack([rows, cols]).astype(np.float64), np.asarray(values, np.float64))
    gr, gc = np.mgrid[0:shape[0], 0:shape[1]]
    want = f(gr.ravel(), gc.ravel()).reshape(shape)
    return want, np.isfinite(want)


def per_pixel_reference(points, values, simplices, shape):
    """The membership rule of the module docstring, pixel by pixel over each bounding box."""
    h, w = shape
    dense, inside = np.zeros(shape), np.zeros(shape, bool)
    for tri in simplices:
        p0, p1, p2 = points[tri]
        a, b, c, d = p1[0] - p0[0], p2[0] - p0[0], p1[1] - p0[1], p2[1] - p0[1]
        det = a * d - b * c
        if abs(det) <= MIN_DET:
            continue
        lo = np.maximum(np.ceil(np.minimum(np.minimum(p0, p1), p2) - EDGE_EPS), 0).astype(int)
        hi = np.minimum(np.floor(np.maximum(np.maximum(p0, p1), p2) + EDGE_EPS), [h - 1, w - 1]).astype(int)
        r, cc = np.mgrid[lo[0]:hi[0] + 1, lo[1]:hi[1] + 1]
        dr, dc = r - p0[0], cc - p0[1]
        l1, l2 = (d * dr - b * dc) / det, (a * dc - c * dr) / det
        ok = (l1 >= -EDGE_EPS) & (l2 >= -EDGE_EPS) & (l1 + l2 <= 1.0 + EDGE_EPS)
        z = values[tri]
        dense[r[ok], cc[ok]] = (1 - l1 - l2)[ok] * z[0] + l1[ok] * z[1] + l2[ok] * z[2]
        inside[r[ok], cc[ok]] = True
    return dense, inside


def assert_delaunay(points, simplices):
    """Every triangle's circumcircle holds no other point (up to rounding: cocircular ones sit on it)."""
    from scipy.spatial import cKDTree

    pts = np.unique(np.asarray(points, np.float64), axis=0)
    tree = cKDTree(pts)
    p = np.asarray(points, np.float64)
    a, b, c = p[simplices[:, 0]], p[simplices[:, 1]], p[simplices[:, 2]]
    d = 2 * (a[:, 0] * (b[:, 1] - c[:, 1]) + b[:, 0] * (c[:, 1] - a[:, 1]) + c[:, 0] * (a[:, 1] - b[:, 1]))
    ok = np.abs(d) > 1e-9
    sq = [np.sum(q ** 2, axis=1) for q in (a, b, c)]
    ux = (sq[0] * (b[:, 1] - c[:, 1]) + sq[1] * (c[:, 1] - a[:, 1]) + sq[2] * (a[:, 1] - b[:, 1]))[ok] / d[ok]
    uy = (sq[0] * (c[:, 0] - b[:, 0]) + sq[1] * (a[:, 0] - c[:, 0]) + sq[2] * (b[:, 0] - a[:, 0]))[ok] / d[ok]
    centre = np.column_stack([ux, uy])
    radius = np.linalg.norm(centre - a[ok], axis=1)
    inside = tree.query_ball_point(centre, radius * (1 - 1e-7) - 1e-9)
    assert all(len(i) == 0 for i in inside), "a point lies inside a triangle's circumcircle"


def assert_delaunay_interpolation(rows, cols, values, shape, exact_scipy=False):
    """rasterize_linear = the rasterisation of delaunay_triangles, which is Delaunay and covers the
    convex hull exactly as LinearNDInterpolator does (its values too with ``exact_scipy``)."""
    dense, inside = rasterize_linear(rows, cols, values, shape)
    assert dense.shape == inside.shape == tuple(shape) and dense.dtype == np.float32
    pts = np.column_stack([rows, cols]).astype(np.float64)
    simplices = delaunay_triangles(pts)
    want_dense, want_inside = rasterize_triangles(pts, values, simplices, shape)
    np.testing.assert_array_equal(dense, want_dense)
    np.testing.assert_array_equal(inside, want_inside)
    assert_delaunay(pts, simplices)
    scipy_dense, scipy_inside = scipy_at_pixels(rows, cols, values, shape)
    np.testing.assert_array_equal(inside, scipy_inside)  # the same convex hull
    if exact_scipy:
        np.testing.assert_allclose(dense[inside], scipy_dense[inside], rtol=1e-6, atol=1e-5)
    assert (dense[~inside] == 0).all()
    return dense, inside


@pytest.mark.parametrize("kind", ["integer", "real", "half_pixels"])
def test_rasterize_linear_is_delaunay_interpolation_on_random_points(kind):
    rng = np.random.default_rng({"integer": 0, "real": 1, "half_pixels": 2}[kind])
    h, w, n = 70, 110, 400
    if kind == "integer":
        rows, cols = rng.integers(0, h, n).astype(float), rng.integers(0, w, n).astype(float)
    elif kind == "real":
        rows, cols = rng.uniform(-0.5, h - 0.5, n), rng.uniform(-0.5, w - 0.5, n)
    else:
        rows, cols = np.round(rng.uniform(0, h - 1, n) * 2) / 2, np.round(rng.uniform(0, w - 1, n) * 2) / 2
    # real coordinates have no cocircular points: the triangulation, so the values, are Qhull's
    _, inside = assert_delaunay_interpolation(rows, cols, rng.uniform(1.0, 80.0, n), (h, w), exact_scipy=kind == "real")
    assert inside.mean() > 0.8


def test_rasterize_linear_on_the_kitti_scan(kitti_raw_dir):
    """~19 k LiDAR pixels: long thin triangles along and across the scan lines, both the row and
    the column scans, many edges along a pixel row; as many triangles as Qhull makes, and Qhull's
    values wherever its triangulation is the same (all but the pixels of cocircular groups)."""
    sparse = read_kitti_depth_png(kitti_raw_dir / "depth_completion" / "velodyne_raw_image_02.png")
    rows, cols = np.nonzero(sparse > 0)
    dense, inside = assert_delaunay_interpolation(rows, cols, sparse[rows, cols], sparse.shape)
    assert inside.mean() > 0.5
    pts = np.column_stack([rows, cols]).astype(np.float64)
    qhull = Delaunay(pts).simplices
    assert len(delaunay_triangles(pts)) == len(qhull)
    scipy_dense, _ = rasterize_triangles(pts, sparse[rows, cols], qhull, sparse.shape)
    same = np.isclose(dense, scipy_dense, rtol=1e-6, atol=1e-5)[inside]
    assert 0.9 < same.mean() < 1.0  # the other diagonal of some cocircular quadruples


def test_strip_order_is_a_permutation_of_short_steps(kitti_raw_dir):
    """The insertion order visits every point once, and on the KITTI scan its consecutive points
    lie far closer together than in np.nonzero's row-major order (whose row ends jump back across
    the image); the triangulation in that order covers Qhull's hull exactly (same area)."""
    sparse = read_kitti_depth_png(kitti_raw_dir / "depth_completion" / "velodyne_raw_image_02.png")
    rows, cols = np.nonzero(sparse > 0)
    xy = np.column_stack([cols, rows]).astype(np.float32)
    order = strip_order(xy)
    assert np.array_equal(np.sort(order), np.arange(len(xy)))
    step = lambda p: np.linalg.norm(np.diff(p, axis=0), axis=1).mean()  # noqa: E731
    assert step(xy[order]) < 0.5 * step(xy)
    pts = np.column_stack([rows, cols]).astype(np.float64)

    def area(tri):
        e1, e2 = pts[tri[:, 1]] - pts[tri[:, 0]], pts[tri[:, 2]] - pts[tri[:, 0]]
        return np.abs(e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]).sum()

    assert area(delaunay_triangles(pts)) == pytest.approx(area(Delaunay(pts).simplices), rel=1e-9)
    assert np.array_equal(strip_order(np.array([[3.0, 1.0]])), [0])


def test_delaunay_triangles_of_too_few_or_collinear_points_and_bad_input():
    assert delaunay_triangles(np.zeros((0, 2))).shape == (0, 3)
    assert delaunay_triangles(np.array([[0.0, 0.0], [1.0, 1.0]])).shape == (0, 3)
    assert delaunay_triangles(np.array([[0.0, 0.0], [1.0, 1.0], [2.0, 2.0], [5.0, 5.0]])).shape == (0, 3)
    dense, inside = rasterize_linear(np.array([1.0, 2.0, 3.0]), np.array([1.0, 2.0, 3.0]), np.ones(3), (5, 5))
    assert not inside.any() and (dense == 0).all()
    with pytest.raises(ValueError, match="finite"):
        delaunay_triangles(np.array([[0.0, np.nan], [1.0, 1.0], [2.0, 0.0]]))
    with pytest.raises(ValueError, match=r"\(N, 2\)"):
        delaunay_triangles(np.zeros((4, 3)))


def test_thin_and_degenerate_point_sets():
    rng = np.random.default_rng(5)
    h, w = 40, 60
    sets = {
        # a scan line (collinear along a row) and a column, with a few points off them
        "collinear subsets": (np.r_[np.full(30, 12.0), np.arange(5.0, 35.0), [3.0, 30.0, 38.0]],
                              np.r_[np.arange(10.0, 40.0), np.full(30, 45.0), [2.0, 55.0, 20.0]]),
        # duplicated points (Qhull keeps one), on the image border and outside it
        "duplicates and border": (np.r_[0.0, 0.0, 39.0, 39.0, 39.0, 20.0, 20.0, -3.0, 44.0, 10.0],
                                  np.r_[0.0, 0.0, 0.0, 59.0, 59.0, 30.0, 30.0, 25.0, 31.0, 62.5]),
        # slivers: two nearly parallel scan lines one pixel apart, non-integer columns
        "slivers": (np.r_[np.full(25, 10.0), np.full(25, 11.0)],
                    np.r_[np.sort(rng.uniform(0, 59, 25)), np.sort(rng.uniform(0, 59, 25))]),
        # a lattice: cocircular quadruples everywhere (either diagonal is Delaunay)
        "lattice": tuple(g.ravel().astype(float) for g in np.mgrid[0:40:3, 1:60:4]),
        # a long diagonal needle and points exactly on pixel-row edges
        "needle": (np.r_[0.0, 39.0, 0.5, 20.0, 20.0], np.r_[0.0, 59.0, 1.2, 0.0, 59.0]),
    }
    for name, (rows, cols) in sets.items():
        values = rng.uniform(1.0, 80.0, len(rows))
        assert_delaunay_interpolation(rows, cols, values, (h, w))
        pts = np.column_stack([rows, cols])
        simplices = Delaunay(pts).simplices
        dense, inside = rasterize_triangles(pts, values, simplices, (h, w))
        ref, ref_inside = per_pixel_reference(pts, values, simplices, (h, w))
        np.testing.assert_array_equal(inside, ref_inside, err_msg=name)
        np.testing.assert_allclose(dense, ref, rtol=1e-6, atol=1e-5, err_msg=name)


def test_edge_pixels_through_the_test_blocks_and_odd_triangles_give_the_same_pixels(monkeypatch):
    """A large rounding margin sends most pixels through the barycentric test, small blocks split
    the triangles; a zero-area triangle is skipped; a triangle whose column bounds overflow
    (a row offset of 1e-320 between two vertices) is tested over its whole box. The covered set stays the rule's."""
    rng = np.random.default_rng(7)
    h, w = 50, 70
    pts = np.column_stack([rng.uniform(-2, h + 1, 120), rng.uniform(-2, w + 1, 120)])
    values = rng.uniform(1.0, 80.0, 120)
    simplices = Delaunay(pts).simplices
    base = rasterize_triangles(pts, values, simplices, (h, w))
    monkeypatch.setattr(triangles, "ROUNDING", 0.2)
    monkeypatch.setattr(triangles, "BLOCK", 7)
    wide = rasterize_triangles(pts, values, simplices, (h, w))
    np.testing.assert_array_equal(wide[1], base[1])
    np.testing.assert_allclose(wide[0], base[0], rtol=1e-6)
    monkeypatch.undo()

    odd = np.array([[0.0, 3.0], [1e-320, 40.0], [30.0, 20.0], [8.0, 8.0], [8.0, 16.0], [8.0, 24.0]])
    z = np.array([3.0, 9.0, 20.0, 1.0, 2.0, 3.0])
    simplices = np.array([[0, 1, 2], [3, 4, 5]])  # the second is collinear: zero area
    dense, inside = rasterize_triangles(odd, z, simplices, (h, w))
    ref, ref_inside = per_pixel_reference(odd, z, simplices, (h, w))
    np.testing.assert_array_equal(inside, ref_inside)
    np.testing.assert_allclose(dense, ref, rtol=1e-6)
    assert inside[0, 3:41].all() and inside.sum() > 300


def test_rasterize_triangles_checks_its_arrays():
    with pytest.raises(ValueError, match="points must be"):
        rasterize_triangles(np.zeros((4, 3)), np.zeros(4), np.zeros((1, 3), int), (5, 5))
    with pytest.raises(ValueError, match="simplices"):
        rasterize_triangles(np.zeros((4, 2)), np.zeros(4), np.zeros((3,), int), (5, 5))
    dense, inside = rasterize_triangles(np.zeros((0, 2)), np.zeros(0), np.zeros((0, 3), int), (3, 4))
    assert dense.shape == (3, 4) and not inside.any()
