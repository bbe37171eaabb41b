"""Speed of the linear fills (Delaunay-linear interpolation, nearest fill) before and after the
per-row rasterisation, on the KITTI frame of ``speed.json`` (sequence frame 44, its LiDAR scan
projected, 10 % held out; 1242x375).

Rows (median and minimum wall ms over ``--repeats`` runs after a warm-up, one frame at a time, the
old and the new implementation taking turns):
  * the stages: the Delaunay triangulation (old: Qhull through ``scipy.spatial.Delaunay``; new:
    OpenCV's Subdiv2D, :func:`~depth_diffusion_ros.geometry.triangles.delaunay_triangles`), the
    rasterisation alone on Qhull's triangulation, nearest fill;
  * the fills the pipelines call: ``linear_hull`` (inside the hull, 0 outside), ``linear`` (nearest
    fill outside), and the shipped model's priors (``ip_basic_gaussian`` + ``linear_hull``);
  * for scale, ``LinearNDInterpolator`` per frame (triangulation, barycentric transforms, every
    pixel).
"old" is the implementation this replaced (every triangle's bounding-box pixels through the
barycentric test over Qhull's triangulation; the nearest fill with distances), kept here only for
the comparison. Then the agreement with LinearNDInterpolator over the hull (the same pixels
inside; the share of pixels within 1e-5 relative, the rest inside cocircular groups where the two
triangulations pick the other diagonal), and with ``--pipeline`` the whole CompletionPipeline of the shipped ONNX export
(ONNX Runtime, ``--threads`` intra-op threads) with the new and the old priors.

    .venv/bin/python benchmarks/bench_linear_fill.py [--repeats 15] [--pipeline] [--threads 2]

The load average before and after is printed: on a shared machine, read the minimum column too.
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
from scipy import ndimage
from scipy.interpolate import LinearNDInterpolator
from scipy.spatial import Delaunay

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench_completion_v2 import kitti_frame  # noqa: E402 - benchmarks/, beside this script

from depth_diffusion_ros.baselines import fills  # noqa: E402
from depth_diffusion_ros.baselines.ip_basic import ip_basic_complete  # noqa: E402
from depth_diffusion_ros.baselines.linear import linear_interpolate, linear_interpolate_hull  # noqa: E402
from depth_diffusion_ros.baselines.nearest import nearest_fill  # noqa: E402
from depth_diffusion_ros.geometry.triangles import delaunay_triangles, rasterize_triangles  # noqa: E402

EDGE_EPS = 1e-9


def old_rasterize(pts: np.ndarray, z: np.ndarray, tri: np.ndarray, shape: tuple[int, int]):
    """The previous rasterisation (geometry/triangles.py before the per-row version): every pixel of
    every triangle's bounding box through the barycentric test. (dense float64, inside bool)."""
    h, w = shape
    p0, p1, p2 = pts[tri[:, 0]], pts[tri[:, 1]], pts[tri[:, 2]]
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


def old_nearest_fill(d: np.ndarray) -> np.ndarray:
    """The previous nearest fill (the transform with distances and indices)."""
    valid = np.isfinite(d) & (d > 0)
    _, (iy, ix) = ndimage.distance_transform_edt(~valid, return_indices=True)
    return d[iy, ix].astype(np.float32)


def old_linear_hull(sparse: np.ndarray) -> np.ndarray:
    rows, cols = np.nonzero(np.isfinite(sparse) & (sparse > 0))
    pts = np.column_stack([rows, cols]).astype(np.float64)
    dense, inside = old_rasterize(pts, sparse[rows, cols].astype(np.float64), Delaunay(pts).simplices, sparse.shape)
    return np.where(inside, dense, 0.0).astype(np.float32)


def old_linear(sparse: np.ndarray) -> np.ndarray:
    outside = old_nearest_fill(sparse)
    rows, cols = np.nonzero(np.isfinite(sparse) & (sparse > 0))
    pts = np.column_stack([rows, cols]).astype(np.float64)
    dense, inside = old_rasterize(pts, sparse[rows, cols].astype(np.float64), Delaunay(pts).simplices, sparse.shape)
    return np.where(inside, dense, outside).astype(np.float32)


def timed(*fns, repeats: int) -> list[tuple[float, float]]:
    """(median, min) wall ms of each fn() over ``repeats`` runs after one warm-up run each, the
    functions taking turns (a change of machine load hits them alike)."""
    for fn in fns:
        fn()
    times = [[] for _ in fns]
    for _ in range(repeats):
        for fn, ts in zip(fns, times):
            t0 = time.perf_counter()
            fn()
            ts.append((time.perf_counter() - t0) * 1000.0)
    return [(float(np.median(ts)), float(np.min(ts))) for ts in times]


def stage_rows(sparse: np.ndarray, repeats: int) -> list[tuple[str, object, object]]:
    rows, cols = np.nonzero(sparse > 0)
    pts = np.column_stack([rows, cols]).astype(np.float64)
    z = sparse[rows, cols].astype(np.float64)
    simplices = Delaunay(pts).simplices
    hull_priors = ("ip_basic_gaussian", "linear_hull")
    old_priors = lambda: (ip_basic_complete(sparse, 100.0, True, "gaussian"), old_linear_hull(sparse))  # noqa: E731
    triangulation = timed(lambda: Delaunay(pts), lambda: delaunay_triangles(pts), repeats=repeats)
    return [
        ("Delaunay triangulation (old: Qhull, new: OpenCV Subdiv2D)", *triangulation),
        ("rasterisation alone (given the triangles)",
         *timed(lambda: old_rasterize(pts, z, simplices, sparse.shape),
                lambda: rasterize_triangles(pts, z, simplices, sparse.shape), repeats=repeats)),
        ("nearest fill", *timed(lambda: old_nearest_fill(sparse), lambda: nearest_fill(sparse), repeats=repeats)),
        ("linear_hull fill", *timed(lambda: old_linear_hull(sparse), lambda: linear_interpolate_hull(sparse),
                                    repeats=repeats)),
        ("linear fill (nearest outside the hull)",
         *timed(lambda: old_linear(sparse), lambda: linear_interpolate(sparse), repeats=repeats)),
        ("model priors ip_basic_gaussian + linear_hull",
         *timed(old_priors, lambda: fills.prior_fills(hull_priors, sparse), repeats=repeats)),
    ]


def reference_ms(sparse: np.ndarray, repeats: int) -> tuple[float, float]:
    """LinearNDInterpolator per frame: Delaunay, its barycentric transforms (LAPACK per triangle:
    sensitive to BLAS threads and machine load), every pixel."""
    rows, cols = np.nonzero(sparse > 0)
    pts = np.column_stack([rows, cols]).astype(np.float64)
    z = sparse[rows, cols].astype(np.float64)
    grid = np.mgrid[0:sparse.shape[0], 0:sparse.shape[1]].reshape(2, -1).T.astype(np.float64)
    return timed(lambda: LinearNDInterpolator(pts, z)(grid), repeats=max(3, repeats // 3))[0]


def agreement(sparse: np.ndarray) -> list[str]:
    rows, cols = np.nonzero(sparse > 0)
    pts = np.column_stack([rows, cols]).astype(np.float64)
    gr, gc = np.mgrid[0:sparse.shape[0], 0:sparse.shape[1]]
    want = LinearNDInterpolator(pts, sparse[rows, cols].astype(np.float64))(gr.ravel(), gc.ravel()).reshape(sparse.shape)
    inside = np.isfinite(want)
    out = []
    for name, got in (("old", old_linear_hull(sparse)), ("new", linear_interpolate_hull(sparse))):
        diff = np.abs(got.astype(np.float64)[inside] - want[inside])
        same = diff <= 1e-5 * want[inside]
        out.append(f"{name}: inside pixels equal to LinearNDInterpolator's: {np.array_equal(got > 0, inside)} "
                   f"({int(inside.sum())} px); within 1e-5 relative: {100 * same.mean():.1f} %; "
                   f"max |diff| {diff.max():.3g} m (cocircular groups, the other diagonal)")
    old_full, new_full = old_linear(sparse), linear_interpolate(sparse)
    out.append(f"linear fill new vs old: max |diff| {np.abs(new_full - old_full).max():.3g} m; outside the hull "
               f"identical: {np.array_equal(new_full[~inside], old_full[~inside])}")
    return out


def pipeline_rows(rgb: np.ndarray, sparse: np.ndarray, threads: int, repeats: int) -> list[tuple[str, object, object]]:
    """The CompletionPipeline of the shipped ONNX export with the old and the new priors."""
    from depth_diffusion_ros.inference.backends import make_completion_backend
    from depth_diffusion_ros.inference.backends.exported import DEFAULT_COMPLETION_EXPORT
    from depth_diffusion_ros.inference.pipelines import CompletionPipeline

    backend = make_completion_backend("onnxruntime", model_path=str(DEFAULT_COMPLETION_EXPORT),
                                      intra_op_num_threads=threads, inter_op_num_threads=1)
    pipe = CompletionPipeline(backend)
    new_hull = fills.PRIOR_FILLS["linear_hull"]

    def with_hull(fill):
        def run():
            fills.PRIOR_FILLS["linear_hull"] = fill
            pipe(rgb, sparse)
        return run

    try:
        old, new = timed(with_hull(old_linear_hull), with_hull(new_hull), repeats=repeats)
    finally:
        fills.PRIOR_FILLS["linear_hull"] = new_hull
    steps = backend.num_inference_steps
    return [(f"CompletionPipeline, shipped ONNX step graphs, {steps} step{'s' if steps > 1 else ''}, "
             f"ONNX Runtime {threads} threads", old, new)]


def table(rows: list[tuple[str, object, object]]) -> str:
    fmt = lambda t: f"{t[0]:.1f} ({t[1]:.1f})"  # noqa: E731
    lines = ["| what | old ms, median (min) | new ms, median (min) | speed-up (median) |", "|---|---:|---:|---:|"]
    for what, old, new in rows:
        gain = f"{old[0] / new[0]:.1f}x" if old is not new else "-"
        lines.append(f"| {what} | {fmt(old)} | {fmt(new)} | {gain} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    from training.kitti_completion import shared_data

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=15, help="timed runs per row (>= 10 for the report)")
    p.add_argument("--pipeline", action="store_true", help="also time the CompletionPipeline of the shipped export")
    p.add_argument("--threads", type=int, default=2, help="ONNX Runtime intra-op threads (--pipeline)")
    args = p.parse_args(argv)
    load_before = os.getloadavg()
    rgb, sparse = kitti_frame(shared_data())
    rows = stage_rows(sparse, args.repeats)
    reference = reference_ms(sparse, args.repeats)
    if args.pipeline:
        rows += pipeline_rows(rgb, sparse, args.threads, args.repeats)
    load_after = os.getloadavg()
    print(f"# KITTI sequence frame 44 (LiDAR projected, 10 % held out), {sparse.shape[1]}x{sparse.shape[0]}, "
          f"{int((sparse > 0).sum())} LiDAR px; {platform.machine()} CPU, {os.cpu_count()} cores; "
          f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    print(f"# load average before {load_before[0]:.2f}, after {load_after[0]:.2f}\n")
    print(table(rows))
    print(f"\nLinearNDInterpolator per frame (Delaunay, transforms, every pixel): {reference[0]:.1f} ms median "
          f"({reference[1]:.1f} min)\n")
    for line in agreement(sparse):
        print("- " + line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
