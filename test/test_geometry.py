"""Geometry: intrinsics, depth codecs, transforms, projection z-buffer, unprojection, PointCloud2 layout."""
from __future__ import annotations

import math
import struct

import numpy as np
import pytest

from depth_diffusion_ros.geometry.depth_codecs import (
    decode_depth,
    encode_depth,
    read_kitti_depth_png,
    write_kitti_depth_png,
)
from depth_diffusion_ros.geometry.intrinsics import Intrinsics
from depth_diffusion_ros.geometry.pointcloud import (
    FIELDS,
    POINT_STEP,
    pack_depth_xyzrgb,
    pack_rgb,
    pack_xyzrgb,
    unpack_rgb,
    unpack_xyz,
)
from depth_diffusion_ros.geometry.projection import (
    depth_to_points,
    nan_invalid_depth,
    pixel_rays,
    project_lidar_to_depth,
    project_points_to_depth,
)
from depth_diffusion_ros.geometry.sampling import holdout_mask
from depth_diffusion_ros.geometry.transforms import (
    invert_transform,
    lookup_static_transform,
    make_transform,
    matrix_to_quaternion,
    quaternion_to_matrix,
    transform_points,
)


def _rot_z(a: float) -> np.ndarray:
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1.0]])


# ---------------------------------------------------------------- intrinsics
def test_intrinsics_from_p_vs_k():
    k = [500.0, 0, 320.0, 0, 510.0, 240.0, 0, 0, 1]
    p = [450.0, 0, 300.0, 12.0, 0, 455.0, 230.0, 0, 0, 0, 1, 0]
    from_p = Intrinsics.from_camera_info(k, p, 640, 480)
    assert (from_p.fx, from_p.fy, from_p.cx, from_p.cy) == (450.0, 455.0, 300.0, 230.0)
    from_k = Intrinsics.from_camera_info(k, p, 640, 480, use_p=False)
    assert (from_k.fx, from_k.fy, from_k.cx, from_k.cy) == (500.0, 510.0, 320.0, 240.0)
    # P all zero (unrectified camera) -> K
    zero_p = Intrinsics.from_camera_info(k, [0.0] * 12, 640, 480)
    assert zero_p.fx == 500.0
    np.testing.assert_array_equal(from_k.K, np.array(k).reshape(3, 3))


@pytest.mark.parametrize(
    "kwargs, word",
    [
        (dict(fx=0.0, fy=1.0, cx=0, cy=0, width=10, height=10), "focal"),
        (dict(fx=1.0, fy=-1.0, cx=0, cy=0, width=10, height=10), "focal"),
        (dict(fx=float("nan"), fy=1.0, cx=0, cy=0, width=10, height=10), "fx"),
        (dict(fx=1.0, fy=1.0, cx=float("inf"), cy=0, width=10, height=10), "cx"),
        (dict(fx=1.0, fy=1.0, cx=0, cy=0, width=0, height=10), "size"),
    ],
)
def test_intrinsics_rejects_bad_values(kwargs, word):
    with pytest.raises(ValueError, match=word):
        Intrinsics(**kwargs)


def test_uncalibrated_camera_info_is_rejected():
    with pytest.raises(ValueError, match="focal"):
        Intrinsics.from_camera_info([0.0] * 9, [0.0] * 12, 640, 480)


def test_intrinsics_scaled_and_cropped():
    intr = Intrinsics(fx=721.5377, fy=721.5377, cx=609.5593, cy=172.854, width=1242, height=375)
    half = intr.scaled(621, 187)
    assert half.fx == pytest.approx(721.5377 * 0.5)
    assert half.fy == pytest.approx(721.5377 * 187 / 375)
    assert half.cx == pytest.approx((609.5593 + 0.5) * 0.5 - 0.5)
    # Scaling back is the identity.
    back = half.scaled(1242, 375)
    assert back.fx == pytest.approx(intr.fx) and back.cx == pytest.approx(intr.cx)
    assert back.cy == pytest.approx(intr.cy)
    # The KITTI DC 1216x352 bottom-centre crop gives the published intrinsics.txt.
    crop = intr.cropped(13, 23, 1216, 352)
    assert (crop.cx, crop.cy, crop.width, crop.height) == pytest.approx((596.5593, 149.854, 1216, 352))
    with pytest.raises(ValueError, match="leaves"):
        intr.cropped(100, 0, 1216, 352)


def test_scaled_projection_consistent():
    """A point projects to the same place (in scaled pixel units) before and after scaling."""
    intr = Intrinsics(fx=500, fy=500, cx=319.5, cy=239.5, width=640, height=480)
    small = intr.scaled(160, 120)
    x, y, z = 0.7, -0.3, 4.0
    u, v = intr.fx * x / z + intr.cx, intr.fy * y / z + intr.cy
    us, vs = small.fx * x / z + small.cx, small.fy * y / z + small.cy
    assert us == pytest.approx((u + 0.5) / 4 - 0.5)
    assert vs == pytest.approx((v + 0.5) / 4 - 0.5)


# ---------------------------------------------------------------- codecs
def test_16uc1_round_trip_and_invalid():
    depth = np.array([[0.0, 1.2346, np.nan], [70.0, -1.0, np.inf]], dtype=np.float32)
    enc = encode_depth(depth, "16UC1")
    assert enc.dtype == np.uint16
    # 1.2346 m -> 1235 mm (rounded); 70 m clipped to 65535; NaN/inf/negative -> 0
    np.testing.assert_array_equal(enc, [[0, 1235, 0], [65535, 0, 0]])
    dec = decode_depth(enc, "16UC1")
    assert dec.dtype == np.float32
    np.testing.assert_allclose(dec, [[0, 1.235, 0], [65.535, 0, 0]], atol=1e-6)


def test_32fc1_round_trip_nan_convention():
    depth = np.array([[0.0, 2.5], [np.inf, 3.25]], dtype=np.float32)
    enc = encode_depth(depth, "32FC1")
    assert enc.dtype == np.float32
    assert np.isnan(enc[0, 0]) and np.isnan(enc[1, 0])
    assert enc[0, 1] == 2.5 and enc[1, 1] == 3.25
    dec = decode_depth(enc, "32FC1")
    np.testing.assert_array_equal(dec, [[0, 2.5], [0, 3.25]])


def test_codec_errors():
    with pytest.raises(ValueError, match="encoding"):
        decode_depth(np.zeros((2, 2), np.uint16), "mono8")
    with pytest.raises(ValueError, match="uint16"):
        decode_depth(np.zeros((2, 2), np.float32), "16UC1")
    with pytest.raises(ValueError, match="float32"):
        decode_depth(np.zeros((2, 2), np.uint16), "32FC1")
    with pytest.raises(ValueError, match=r"\(H, W\)"):
        encode_depth(np.zeros((2, 2, 3)), "32FC1")


def test_kitti_png_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    depth = rng.uniform(1, 80, size=(5, 7)).astype(np.float32)
    depth[0, :3] = 0
    path = tmp_path / "d.png"
    write_kitti_depth_png(path, depth)
    back = read_kitti_depth_png(path)
    assert back.shape == depth.shape
    np.testing.assert_allclose(back, depth, atol=0.5 / 256 + 1e-6)
    assert np.all(back[0, :3] == 0)
    with pytest.raises(FileNotFoundError):
        read_kitti_depth_png(tmp_path / "missing.png")


def test_kitti_png_real_file(kitti_raw_dir):
    d = read_kitti_depth_png(kitti_raw_dir / "depth_completion" / "velodyne_raw_image_02.png")
    assert d.shape == (375, 1242) and d.dtype == np.float32
    valid = d > 0
    assert 18000 < valid.sum() < 21000
    assert 1.0 < d[valid].min() and d[valid].max() < 100.0


# ---------------------------------------------------------------- transforms
def test_transforms_inverse_and_apply():
    T = make_transform(_rot_z(0.3), [1.0, -2.0, 0.5])
    Ti = invert_transform(T)
    np.testing.assert_allclose(T @ Ti, np.eye(4), atol=1e-12)
    pts = np.array([[1.0, 0, 0], [0, 2.0, 3.0]])
    out = transform_points(pts, T)
    np.testing.assert_allclose(out[0], [math.cos(0.3) + 1, math.sin(0.3) - 2, 0.5])
    np.testing.assert_allclose(transform_points(out, Ti), pts, atol=1e-12)
    with pytest.raises(ValueError, match=r"\(N, 3\)"):
        transform_points(np.zeros((3, 2)), T)
    with pytest.raises(ValueError, match=r"\(4,4\)"):
        invert_transform(np.eye(3))


def test_quaternion_matrix_round_trip():
    # the LiDAR "x forward, y left, z up" -> optical "x right, y down, z forward" rotation
    R_optical = np.array([[0, -1, 0], [0, 0, -1], [1, 0, 0]], dtype=float)
    np.testing.assert_allclose(matrix_to_quaternion(R_optical), (0.5, -0.5, 0.5, 0.5), atol=1e-12)
    np.testing.assert_allclose(quaternion_to_matrix(0.5, -0.5, 0.5, 0.5), R_optical, atol=1e-12)
    rng = np.random.default_rng(0)
    for _ in range(50):  # every branch of Shepperd's method (trace > 0 and each diagonal largest)
        q = rng.normal(size=4)
        R = quaternion_to_matrix(*q)
        np.testing.assert_allclose(R @ R.T, np.eye(3), atol=1e-12)
        q2 = matrix_to_quaternion(R)
        assert q2[3] >= 0 and abs(np.linalg.norm(q2) - 1) < 1e-12
        np.testing.assert_allclose(quaternion_to_matrix(*q2), R, atol=1e-12)
        np.testing.assert_allclose(np.abs(q2), np.abs(q / np.linalg.norm(q)), atol=1e-9)  # +-q: same rotation
    np.testing.assert_allclose(quaternion_to_matrix(0, 0, 0, 2.0), np.eye(3))  # normalised first
    with pytest.raises(ValueError, match="invalid quaternion"):
        quaternion_to_matrix(0, 0, 0, 0)
    with pytest.raises(ValueError, match="proper rotation"):
        matrix_to_quaternion(np.diag([1.0, 1.0, -1.0]))
    with pytest.raises(ValueError, match="3x3"):
        matrix_to_quaternion(np.eye(4))


def test_lookup_static_transform_follows_chains_both_ways():
    T_base_velo = make_transform(_rot_z(0.2), [1.0, 0.0, 1.5])
    T_camera_base = make_transform(_rot_z(-0.4), [0.0, -0.1, 0.3])
    edges = [("base_link", "velo", T_base_velo), ("camera", "base_link", T_camera_base)]
    np.testing.assert_allclose(lookup_static_transform(edges, "camera", "velo"), T_camera_base @ T_base_velo,
                               atol=1e-12)
    np.testing.assert_allclose(lookup_static_transform(edges, "velo", "/camera"),
                               invert_transform(T_camera_base @ T_base_velo), atol=1e-12)
    np.testing.assert_array_equal(lookup_static_transform(edges, "velo", "velo"), np.eye(4))
    assert lookup_static_transform(edges, "camera", "imu") is None


def test_holdout_mask_is_the_seeded_draw():
    mask = holdout_mask(1000, 0.1, seed=3, frame_index=7)
    assert mask.dtype == bool and mask.shape == (1000,) and mask.sum() == 100
    expected = np.zeros(1000, dtype=bool)
    expected[np.random.default_rng([3, 7]).choice(1000, size=100, replace=False)] = True
    np.testing.assert_array_equal(mask, expected)  # the exact draw kitti-to-bag, replay and training share
    np.testing.assert_array_equal(mask, holdout_mask(1000, 0.1, 3, 7))
    assert not np.array_equal(mask, holdout_mask(1000, 0.1, 3, 8))
    assert holdout_mask(1000, 0.0, 3, 7).sum() == 0 and holdout_mask(5, 0.25, 0, 0).sum() == 1  # round(1.25)
    for bad in (-0.1, 1.0):
        with pytest.raises(ValueError, match=r"\[0, 1\)"):
            holdout_mask(10, bad, 0, 0)


# ---------------------------------------------------------------- projection
INTR = Intrinsics(fx=100.0, fy=100.0, cx=4.0, cy=3.0, width=8, height=6)


def test_projection_zbuffer_keeps_nearest():
    # Three points on pixel (u=4+100*0.1/1... ) -> all land on pixel (row 3, col 5).
    pts = np.array(
        [
            [0.05, 0.0, 5.0],   # u = 4 + 100*0.01 = 5, v = 3
            [0.02, 0.0, 2.0],   # u = 5, v = 3 -> nearest, kept
            [0.08, 0.0, 8.0],   # u = 5, v = 3
            [0.0, 0.0, 3.0],    # u = 4, v = 3
        ],
        dtype=np.float32,
    )
    for perm in ([0, 1, 2, 3], [3, 2, 1, 0], [2, 0, 3, 1]):
        d = project_points_to_depth(pts[perm], INTR)
        assert d.dtype == np.float32 and d.shape == (6, 8)
        assert d[3, 5] == pytest.approx(2.0)
        assert d[3, 4] == pytest.approx(3.0)
        assert np.count_nonzero(d) == 2


def test_projection_drops_behind_outside_and_nonfinite():
    pts = np.array(
        [
            [0.0, 0.0, -2.0],     # behind the camera
            [0.0, 0.0, 0.05],     # closer than min_depth
            [1.0, 0.0, 1.0],      # u = 104: outside
            [np.nan, 0.0, 1.0],   # non-finite
            [-0.045, -0.03, 1.0],  # u = -0.5 -> col 0 (round half up), v = 0
            [0.0, 0.0, 200.0],    # beyond max_depth
        ]
    )
    d = project_points_to_depth(pts, INTR, min_depth=0.1, max_depth=100.0)
    assert np.count_nonzero(d) == 1
    assert d[0, 0] == pytest.approx(1.0)
    assert not project_points_to_depth(np.zeros((0, 3)), INTR).any()
    with pytest.raises(ValueError, match="min_depth"):
        project_points_to_depth(pts, INTR, min_depth=0.0)


def test_project_lidar_applies_extrinsics():
    # LiDAR frame: x forward, y left, z up -> camera: x right, y down, z forward.
    R = np.array([[0, -1, 0], [0, 0, -1], [1, 0, 0]], dtype=float)
    T = make_transform(R, [0.0, 0.0, 0.0])
    d = project_lidar_to_depth(np.array([[4.0, 0.0, 0.0, 0.5]]), T, INTR)  # (N,4) with reflectance
    assert d[3, 4] == pytest.approx(4.0)
    d2 = project_lidar_to_depth(np.array([[4.0, -0.04, 0.0]]), T, INTR)  # 4 cm right -> u = 5
    assert d2[3, 5] == pytest.approx(4.0)


def _zbuffer_reference(points_camera: np.ndarray, intr: Intrinsics, min_depth: float, max_depth: float) -> np.ndarray:
    """Per-point loop: pixel floor(f x / z + c + 0.5), nearest z kept (the definition)."""
    out = np.full((intr.height, intr.width), np.inf)
    for x, y, z in np.asarray(points_camera, np.float64)[:, :3]:
        if not (min_depth <= z <= max_depth) or not (np.isfinite(x) and np.isfinite(y)):
            continue
        u = math.floor(intr.fx * x / z + intr.cx + 0.5)
        v = math.floor(intr.fy * y / z + intr.cy + 0.5)
        if 0 <= u < intr.width and 0 <= v < intr.height:
            out[v, u] = min(out[v, u], z)
    out[np.isinf(out)] = 0.0
    return out.astype(np.float32)


def test_projection_zbuffer_matches_per_point_reference_and_lidar_path():
    """Many points per pixel (rounded coordinates give exact ties), NaNs, points behind."""
    rng = np.random.default_rng(7)
    intr = Intrinsics(fx=50.0, fy=55.0, cx=15.5, cy=11.0, width=32, height=24)
    T = make_transform(_rot_z(0.3), [0.2, -0.1, 0.5])
    for trial in range(20):
        n = int(rng.integers(1, 2000))
        pts = rng.normal(size=(n, 3)) * [4.0, 4.0, 3.0] + [0.0, 0.0, 2.0]
        pts = np.round(pts, int(rng.integers(1, 3)))
        pts[rng.random(n) < 0.05, int(rng.integers(0, 3))] = np.nan
        lo, hi = (0.1, math.inf) if trial % 2 else (0.5, 6.0)
        got = project_points_to_depth(pts, intr, min_depth=lo, max_depth=hi)
        np.testing.assert_array_equal(got, _zbuffer_reference(pts, intr, lo, hi))
        # the LiDAR path (x, y only for points in the depth range) equals transform + project
        via_transform = project_points_to_depth(transform_points(pts, T), intr, min_depth=lo, max_depth=hi)
        assert project_lidar_to_depth(pts, T, intr, min_depth=lo, max_depth=hi).tobytes() == via_transform.tobytes()
    with pytest.raises(ValueError, match="non-finite"):
        project_lidar_to_depth(pts, np.full((4, 4), np.nan), intr)
    with pytest.raises(ValueError, match=r"\(4,4\)"):
        project_lidar_to_depth(pts, np.eye(3), intr)


def test_depth_to_points_and_reprojection_round_trip():
    intr = Intrinsics(fx=50.0, fy=55.0, cx=15.5, cy=11.0, width=32, height=24)
    rng = np.random.default_rng(1)
    depth = rng.uniform(0.5, 20.0, size=(24, 32)).astype(np.float32)
    depth[rng.random((24, 32)) < 0.3] = 0.0
    depth[0, 0] = np.nan
    pts = depth_to_points(depth, intr)
    assert pts.shape == (24, 32, 3) and pts.dtype == np.float32
    invalid = ~(np.nan_to_num(depth) > 0)
    assert np.all(np.isnan(pts[invalid]))
    # x = (u - cx) z / fx at one pixel
    v, u = 5, 20
    if depth[v, u] > 0:
        assert pts[v, u, 0] == pytest.approx((u - 15.5) * depth[v, u] / 50.0, rel=1e-5)
    flat = pts.reshape(-1, 3)
    back = project_points_to_depth(flat[np.isfinite(flat).all(1)], intr, min_depth=0.1)
    expected = np.nan_to_num(depth)
    np.testing.assert_allclose(back, expected, rtol=1e-6)
    with pytest.raises(ValueError, match="does not match"):
        depth_to_points(depth[:, :10], intr)


# ---------------------------------------------------------------- pointcloud layout
def test_pack_xyzrgb_layout():
    pts = np.array([[[1.0, 2.0, 3.0], [np.nan, np.nan, np.nan]]], dtype=np.float32)  # (1,2,3)
    rgb = np.array([[[255, 128, 1], [0, 0, 0]]], dtype=np.uint8)
    data = pack_xyzrgb(pts, rgb)
    assert POINT_STEP == 32 and len(data) == 2 * 32
    assert dict(FIELDS) == {"x": 0, "y": 4, "z": 8, "rgb": 16}
    x, y, z = struct.unpack_from("<fff", data, 0)
    assert (x, y, z) == (1.0, 2.0, 3.0)
    (rgb_bits,) = struct.unpack_from("<I", data, 16)
    assert rgb_bits == (255 << 16) | (128 << 8) | 1
    assert all(math.isnan(v) for v in struct.unpack_from("<fff", data, 32))
    xyz = unpack_xyz(data, 32, dict(FIELDS), 2)
    np.testing.assert_array_equal(xyz[0], [1, 2, 3])
    assert np.isnan(xyz[1]).all()
    np.testing.assert_array_equal(unpack_rgb(pack_rgb(rgb)), rgb)


def test_pack_without_rgb_and_unpack_other_layout():
    pts = np.arange(12, dtype=np.float32).reshape(4, 3)
    data = pack_xyzrgb(pts)
    assert len(data) == 4 * 32
    assert struct.unpack_from("<I", data, 16)[0] == 0
    np.testing.assert_array_equal(unpack_xyz(data, 32, {"x": 0, "y": 4, "z": 8}, 4), pts)
    # A 16-byte xyz + intensity layout (e.g. a Velodyne driver), as a bytearray.
    buf = bytearray()
    for p in pts:
        buf += struct.pack("<ffff", *p, 7.0)
    np.testing.assert_array_equal(unpack_xyz(buf, 16, {"x": 0, "y": 4, "z": 8, "intensity": 12}, 4), pts)
    with pytest.raises(ValueError, match="bytes"):
        unpack_xyz(buf, 16, {"x": 0, "y": 4, "z": 8}, 5)
    with pytest.raises(ValueError, match="'z'"):
        unpack_xyz(buf, 16, {"x": 0, "y": 4}, 4)
    with pytest.raises(ValueError, match="does not match"):
        pack_xyzrgb(pts, np.zeros((3, 3), np.uint8))


def test_pack_depth_xyzrgb_equals_unproject_then_pack():
    intr = Intrinsics(fx=50.0, fy=55.0, cx=15.5, cy=11.0, width=32, height=24)
    rng = np.random.default_rng(5)
    depth = rng.uniform(0.5, 60.0, (24, 32))
    depth[rng.random(depth.shape) < 0.3] = 0.0
    depth[0, :6] = [np.nan, np.inf, -1.0, 1e-50, 1e300, 2.5]  # float64: tiny -> 0 and huge -> inf in float32
    rgb = rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)
    with np.errstate(over="ignore"):
        depth32 = depth.astype(np.float32)
    for d in (depth, depth32):
        assert pack_depth_xyzrgb(d, intr, rgb).tobytes() == pack_xyzrgb(depth_to_points(d, intr), rgb)
        assert pack_depth_xyzrgb(d, intr).tobytes() == pack_xyzrgb(depth_to_points(d, intr))
    # a reused buffer: colours of the previous frame are cleared, padding stays 0
    out = bytearray(24 * 32 * 32)
    pack_depth_xyzrgb(depth, intr, rgb, out=out)
    view = pack_depth_xyzrgb(depth * 2, intr, None, out=out)
    assert bytes(out) == pack_xyzrgb(depth_to_points(depth * 2, intr)) == view.tobytes()
    with pytest.raises(ValueError, match=">= 24576 bytes"):
        pack_depth_xyzrgb(depth, intr, out=bytearray(100))
    with pytest.raises(ValueError, match="read-only"):
        pack_depth_xyzrgb(depth, intr, out=bytes(24 * 32 * 32))
    with pytest.raises(ValueError, match="does not match intrinsics"):
        pack_depth_xyzrgb(depth[:, :5], intr)
    # the rays are computed once per intrinsics and cannot be modified by a caller
    xr, yr = pixel_rays(intr)
    assert pixel_rays(intr)[0] is xr and not xr.flags.writeable
    assert xr[0, 20] == np.float32((20 - 15.5) / 50.0) and yr[5, 0] == np.float32((5 - 11.0) / 55.0)


def test_nan_invalid_depth_bits_and_strided_out():
    rng = np.random.default_rng(9)
    d = rng.uniform(-5.0, 90.0, (37, 53)).astype(np.float32)
    d[rng.random(d.shape) < 0.4] = 0.0
    d[0, :5] = [np.nan, np.inf, -np.inf, -0.0, 1e-40]  # 1e-40: a positive subnormal is valid
    expected = np.where(np.isfinite(d) & (d > 0), d, np.float32(np.nan))
    got = nan_invalid_depth(d)
    assert got.dtype == np.float32 and got.tobytes() == expected.tobytes()  # NaN is exactly np.nan's bits
    assert encode_depth(d, "32FC1").tobytes() == got.tobytes()
    assert nan_invalid_depth(d, fill=0.0).tobytes() == decode_depth(d, "32FC1").tobytes()  # 0 = invalid
    buf = np.zeros((37, 53, 8), np.float32)  # write into the z word of a 32-byte point
    nan_invalid_depth(d.astype(np.float64), out=buf[..., 2])
    assert buf[..., 2].tobytes() == expected.tobytes() and not buf[..., 3].any()
    with np.errstate(over="ignore"):
        assert np.isnan(nan_invalid_depth(np.array([[1e300, 2.0]]))[0, 0])  # float32 overflow -> invalid
    with pytest.raises(ValueError, match="float32"):
        nan_invalid_depth(d, out=np.zeros((37, 53), np.float64))
