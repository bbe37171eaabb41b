"""Classical baselines on hand-made cases and on real KITTI / NYU frames."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
from scipy import ndimage

from depth_diffusion_ros.baselines.ip_basic import diamond_kernel, ip_basic_complete
from depth_diffusion_ros.baselines.nearest import nearest_fill
from depth_diffusion_ros.baselines.upsampling import (
    bicubic_upsample,
    guided_filter_upsample,
    joint_bilateral_upsample,
)
from depth_diffusion_ros.evaluation.metrics import depth_metrics
from depth_diffusion_ros.geometry.depth_codecs import read_kitti_depth_png


def test_diamond_kernel():
    k = diamond_kernel(5)
    assert k.sum() == 13  # 1 + 3 + 5 + 3 + 1
    assert k[0, 2] == 1 and k[0, 1] == 0 and k[2].all()
    with pytest.raises(ValueError, match="odd"):
        diamond_kernel(4)


def test_ip_basic_constant_scene_and_nearer_wins():
    sparse = np.zeros((60, 80), np.float32)
    sparse[20::4, ::4] = 10.0
    out = ip_basic_complete(sparse)
    assert (out > 0).all()  # extrapolated to the top, large holes filled
    np.testing.assert_allclose(out, 10.0, atol=1e-3)
    # A near object (5 m, a 3x3 block of points) in front of a far background (20 m) on a grid
    # with 4 px spacing: dilating the inverted depth lets the near value win in between.
    sparse = np.zeros((40, 40), np.float32)
    sparse[::4, ::4] = 20.0
    sparse[16:25:4, 16:25:4] = 5.0
    out = ip_basic_complete(sparse, blur_type="none")
    assert out[22, 22] == pytest.approx(5.0)  # inside the object, between points
    assert out[20, 14] == pytest.approx(5.0)  # equidistant from a near and a far point -> near
    assert out[2, 30] == pytest.approx(20.0)
    assert out[34, 4] == pytest.approx(20.0)


def test_ip_basic_without_extrapolation_leaves_sky_empty():
    sparse = np.zeros((100, 50), np.float32)
    sparse[70::3, ::3] = 8.0
    out = ip_basic_complete(sparse, extrapolate=False, blur_type="gaussian")
    assert (out[:20] == 0).all()  # beyond the 31x31 fill, nothing reaches the top rows
    assert (out[75:] > 0).all()
    with pytest.raises(ValueError, match="blur_type"):
        ip_basic_complete(sparse, blur_type="box")
    with pytest.raises(ValueError, match=r"\(H, W\)"):
        ip_basic_complete(np.zeros((2, 2, 2)))


def test_ip_basic_real_kitti(kitti_raw_dir):
    dc = kitti_raw_dir / "depth_completion"
    sparse = read_kitti_depth_png(dc / "velodyne_raw_image_02.png")
    gt = read_kitti_depth_png(dc / "groundtruth_image_02.png")
    out = ip_basic_complete(sparse)
    assert out.shape == sparse.shape and out.dtype == np.float32
    assert (out > 0).mean() > 0.99
    m = depth_metrics(out, gt)
    near = depth_metrics(nearest_fill(sparse), gt)
    print("ip_basic", m["rmse"], m["mae"], "nearest", near["rmse"], near["mae"])
    assert 0.3 < m["rmse"] < 2.0  # measured 1.17 m (paper: ~1.29 m on KITTI val)
    assert m["mae"] < 0.5
    assert m["rmse"] < near["rmse"]


def test_nearest_fill_exact():
    rng = np.random.default_rng(3)
    sparse = np.zeros((30, 40), np.float32)
    ys, xs = rng.integers(0, 30, 25), rng.integers(0, 40, 25)
    sparse[ys, xs] = rng.uniform(1, 50, 25).astype(np.float32)
    sparse[0, 0] = np.nan
    out = nearest_fill(sparse)
    assert (out > 0).all()
    vy, vx = np.nonzero(sparse > 0)
    for y, x in [(0, 0), (15, 20), (29, 39), (7, 3)]:
        d2 = (vy - y) ** 2 + (vx - x) ** 2
        nearest_vals = sparse[vy[d2 == d2.min()], vx[d2 == d2.min()]]
        assert out[y, x] in nearest_vals
    assert not nearest_fill(np.zeros((4, 4))).any()


def test_nearest_fill_real_kitti_fills_all(kitti_raw_dir):
    sparse = read_kitti_depth_png(kitti_raw_dir / "depth_completion" / "velodyne_raw_image_02.png")
    out = nearest_fill(sparse)
    assert (out > 0).all()
    v = sparse > 0
    np.testing.assert_array_equal(out[v], sparse[v])
    # the same nearest pixel (ties included) as the transform that also returns the distances
    _, (iy, ix) = ndimage.distance_transform_edt(~v, return_indices=True)
    np.testing.assert_array_equal(out, sparse[iy, ix])


def _nyu_x8(shared_data):
    root = shared_data / "nyu_depth_v2_metric3d"
    gt = cv2.imread(str(root / "depth" / "sync_depth_00000.png"), cv2.IMREAD_UNCHANGED).astype(np.float32) / 1000.0
    rgb = cv2.cvtColor(cv2.imread(str(root / "rgb" / "rgb_00000.jpg")), cv2.COLOR_BGR2RGB)
    # x8 down-sampling by area averaging of the valid pixels only.
    v = (gt > 0).astype(np.float32)
    num = cv2.resize(gt * v, (80, 60), interpolation=cv2.INTER_AREA)
    den = cv2.resize(v, (80, 60), interpolation=cv2.INTER_AREA)
    lr = np.where(den > 0.5, num / np.maximum(den, 1e-6), 0.0).astype(np.float32)
    return gt, rgb, lr


def test_upsampling_x8_real_nyu(shared_data):
    gt, rgb, lr = _nyu_x8(shared_data)
    bic = bicubic_upsample(lr, (480, 640))
    assert bic.shape == (480, 640)
    mask = bic > 0
    assert mask[gt > 0].mean() > 0.95  # holes stay holes, little else is lost
    rm_bic = depth_metrics(bic, gt, valid_mask=mask)["rmse"]
    # Nearest-neighbour upsampling as a floor every method must beat.
    nn = cv2.resize(lr, (640, 480), interpolation=cv2.INTER_NEAREST)
    rm_nn = depth_metrics(nn, gt, valid_mask=mask & (nn > 0))["rmse"]
    results = {"bicubic": rm_bic, "nearest": rm_nn}
    for name, out in (
        ("guided_filter", guided_filter_upsample(lr, rgb)),
        ("joint_bilateral", joint_bilateral_upsample(lr, rgb)),
    ):
        assert out.shape == (480, 640) and out.dtype == np.float32
        np.testing.assert_array_equal(out > 0, mask)
        results[name] = depth_metrics(out, gt, valid_mask=mask)["rmse"]
    print(results)  # measured: bicubic 0.088, guided 0.090, joint bilateral 0.089, nearest 0.102
    assert rm_bic < 0.15
    for name in ("guided_filter", "joint_bilateral"):
        assert results[name] < 1.1 * rm_bic
        assert results[name] < rm_nn


def test_upsampling_constant_and_errors():
    lr = np.full((10, 12), 3.0, np.float32)
    lr[0, 0] = 0.0
    rgb = np.random.default_rng(0).integers(0, 255, (40, 48, 3), dtype=np.uint8)
    for out in (bicubic_upsample(lr, (40, 48)), guided_filter_upsample(lr, rgb), joint_bilateral_upsample(lr, rgb)):
        assert out.shape == (40, 48)
        assert (out[:4, :4] == 0).all()  # the LR hole maps to a 4x4 HR hole
        np.testing.assert_allclose(out[out > 0], 3.0, atol=1e-4)
        assert (out > 0).sum() == 40 * 48 - 16
    with pytest.raises(ValueError, match="guide_rgb"):
        guided_filter_upsample(lr, rgb[..., 0])
    with pytest.raises(ValueError, match="size"):
        bicubic_upsample(lr, (0, 4))


def test_linear_interpolation_on_the_kitti_scan_covers_the_hull_and_keeps_the_measured_pixels(kitti_raw_dir):
    """Inside the convex hull (LinearNDInterpolator's domain) the rasterised Delaunay triangulation;
    outside, the linear peer is nearest fill and linear_hull 0."""
    from scipy.interpolate import LinearNDInterpolator

    from depth_diffusion_ros.baselines.linear import linear_interpolate, linear_interpolate_hull
    from depth_diffusion_ros.geometry.triangles import rasterize_linear

    sparse = read_kitti_depth_png(kitti_raw_dir / "depth_completion" / "velodyne_raw_image_02.png")
    rows, cols = np.nonzero(sparse > 0)
    ref = LinearNDInterpolator(np.column_stack([rows, cols]).astype(np.float64), sparse[rows, cols].astype(np.float64))
    gr, gc = np.mgrid[0:sparse.shape[0], 0:sparse.shape[1]]
    want = ref(gr.ravel(), gc.ravel()).reshape(sparse.shape)
    inside = np.isfinite(want)
    hull = linear_interpolate_hull(sparse)
    np.testing.assert_array_equal(hull, rasterize_linear(rows, cols, sparse[rows, cols], sparse.shape)[0])
    assert (hull[inside] > 0).all() and (hull[~inside] == 0).all() and inside.mean() > 0.5
    # the same function as Qhull's but inside cocircular groups (the other diagonal)
    assert np.isclose(hull[inside], want[inside], rtol=1e-5, atol=1e-4).mean() > 0.9
    full = linear_interpolate(sparse)
    np.testing.assert_array_equal(full[inside], hull[inside])
    np.testing.assert_array_equal(full[~inside], nearest_fill(sparse)[~inside])
    measured = sparse > 0
    np.testing.assert_allclose(full[measured], sparse[measured], rtol=1e-6)  # measured pixels are kept


def test_linear_interpolation_of_a_plane_is_exact_and_degenerate_inputs_are_handled():
    from depth_diffusion_ros.baselines.linear import linear_interpolate, linear_interpolate_hull

    rng = np.random.default_rng(0)
    plane = lambda r, c: 5.0 + 0.05 * r + 0.02 * c  # noqa: E731 - depth linear in the pixel grid
    sparse = np.zeros((60, 90), np.float32)
    r, c = rng.integers(0, 60, 300), rng.integers(0, 90, 300)
    sparse[r, c] = plane(r, c)
    hull = linear_interpolate_hull(sparse)
    gr, gc = np.mgrid[0:60, 0:90]
    covered = hull > 0
    np.testing.assert_allclose(hull[covered], plane(gr, gc)[covered], rtol=1e-5)
    line = np.zeros((10, 10), np.float32)
    line[2, 1:8] = 4.0  # collinear: no triangle
    assert (linear_interpolate_hull(line) == 0).all()
    np.testing.assert_array_equal(linear_interpolate(line), nearest_fill(line))
    assert (linear_interpolate_hull(np.zeros((5, 5), np.float32)) == 0).all()
    with pytest.raises(ValueError, match="must be \\(H, W\\)"):
        linear_interpolate_hull(np.zeros((2, 3, 4), np.float32))


def test_prior_fills_stack_the_named_fills_and_name_unknown_ones(kitti_raw_dir):
    from depth_diffusion_ros.baselines.fills import prior_fills
    from depth_diffusion_ros.baselines.linear import linear_interpolate_hull

    sparse = read_kitti_depth_png(kitti_raw_dir / "depth_completion" / "velodyne_raw_image_02.png")
    fills = prior_fills(["ip_basic_gaussian", "linear_hull"], sparse)
    assert fills.shape == (2,) + sparse.shape and fills.dtype == np.float32
    np.testing.assert_array_equal(fills[0], ip_basic_complete(sparse, 100.0, True, "gaussian"))
    np.testing.assert_array_equal(fills[1], linear_interpolate_hull(sparse))
    # the fills run on a shared two-thread pool: callers on several threads get the same maps
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(3) as pool:
        for other in pool.map(lambda _: prior_fills(["ip_basic_gaussian", "linear_hull"], sparse), range(3)):
            np.testing.assert_array_equal(other, fills)
    assert prior_fills(["linear_hull"], sparse).shape == (1,) + sparse.shape
    assert prior_fills([], sparse).shape == (0,) + sparse.shape
    with pytest.raises(ValueError, match="unknown classical fill 'bicubic'"):
        prior_fills(["bicubic"], sparse)
