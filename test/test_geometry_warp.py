"""geometry.warp: forward warping of depth by a known rigid motion, with z-buffering."""
from __future__ import annotations

import math

import numpy as np
import pytest

from depth_diffusion_ros.geometry.intrinsics import Intrinsics
from depth_diffusion_ros.geometry.transforms import make_transform
from depth_diffusion_ros.geometry.warp import forward_warp_depth, forward_warp_indices, warp_values

W, H = 64, 48
K = Intrinsics(fx=100.0, fy=100.0, cx=(W - 1) / 2, cy=(H - 1) / 2, width=W, height=H)


def translation(x=0.0, y=0.0, z=0.0) -> np.ndarray:
    return make_transform(np.eye(3), np.array([x, y, z]))


def plane(z: float) -> np.ndarray:
    return np.full((H, W), z, np.float32)


def test_identity_is_exact():
    rng = np.random.default_rng(0)
    d = rng.uniform(0.5, 80.0, (H, W)).astype(np.float32)
    d[rng.random((H, W)) < 0.2] = 0.0
    d[0, 0] = np.nan
    warped, valid = forward_warp_depth(d, np.eye(4), K)
    expect = np.where(np.isfinite(d), d, 0)
    np.testing.assert_array_equal(warped, expect)
    np.testing.assert_array_equal(valid, expect > 0)


def test_lateral_shift_moves_plane_by_the_disparity():
    # camera moves 0.5 m to the right: points move 0.5 m left in it; at z = 10 m: fx * 0.5 / 10 = 5 px
    warped, valid = forward_warp_depth(plane(10.0), translation(x=-0.5), K)
    assert np.all(warped[:, :W - 5] == 10.0) and valid[:, :W - 5].all()
    assert not valid[:, W - 5:].any() and np.all(warped[:, W - 5:] == 0)


def test_lateral_shift_box_occludes_and_disoccludes():
    # a box at 5 m (shifts 10 px) in front of a wall at 10 m (shifts 5 px)
    d = plane(10.0)
    d[10:20, 30:40] = 5.0
    warped, valid = forward_warp_depth(d, translation(x=-0.5), K)
    assert np.all(warped[10:20, 20:30] == 5.0)  # the box moved 10 px and hides the wall there
    # right of the box: wall that was behind the box (source cols 35..39 -> 30..34 would be box-covered
    # in the source) is not seen: a 5 px disocclusion strip at target cols 30..34
    assert not valid[10:20, 30:35].any()
    assert np.all(warped[10:20, 35:45] == 10.0)  # wall from source cols 40..49
    assert np.all(warped[:10, :W - 5] == 10.0)


def test_translation_along_z_magnifies_about_the_principal_point():
    # camera moves forward 2 m towards a wall at 10 m: depth 8 m, pixel offsets scale by 10 / 8
    d = np.zeros((H, W), np.float32)
    d[20:28, 28:36] = 10.0  # a patch around the centre (cx = 31.5, cy = 23.5)
    warped, valid = forward_warp_depth(d, translation(z=-2.0), K)
    assert set(np.unique(warped[valid])) == {np.float32(8.0)}
    # source pixel u -> target floor(cx + (u - cx) * 1.25 + 0.5)
    for u in (28, 31, 35):
        ut = math.floor(K.cx + (u - K.cx) * 1.25 + 0.5)
        vt = math.floor(K.cy + (20 - K.cy) * 1.25 + 0.5)
        assert valid[vt, ut] and warped[vt, ut] == 8.0
    cols = np.flatnonzero(valid.any(axis=0))
    assert cols.min() == math.floor(K.cx + (28 - K.cx) * 1.25 + 0.5)
    assert cols.max() == math.floor(K.cx + (35 - K.cx) * 1.25 + 0.5)


def test_rotation_about_the_optical_axis_by_180_degrees_mirrors():
    rng = np.random.default_rng(1)
    d = rng.uniform(1.0, 50.0, (H, W)).astype(np.float32)
    R = np.diag([-1.0, -1.0, 1.0])
    warped, valid = forward_warp_depth(d, make_transform(R, np.zeros(3)), K)
    assert valid.all()
    np.testing.assert_array_equal(warped, d[::-1, ::-1])


def test_rotation_about_y_moves_a_point_as_computed_by_hand():
    theta = math.radians(5.0)
    R = np.array([[math.cos(theta), 0, math.sin(theta)], [0, 1, 0], [-math.sin(theta), 0, math.cos(theta)]])
    d = np.zeros((H, W), np.float32)
    d[24, 32] = 20.0
    warped, valid = forward_warp_depth(d, make_transform(R, np.zeros(3)), K)
    x, z = (32 - K.cx) / K.fx * 20.0, 20.0
    xt, zt = math.cos(theta) * x + math.sin(theta) * z, -math.sin(theta) * x + math.cos(theta) * z
    y = (24 - K.cy) / K.fy * 20.0
    ut, vt = math.floor(K.fx * xt / zt + K.cx + 0.5), math.floor(K.fy * y / zt + K.cy + 0.5)
    assert np.argwhere(valid).tolist() == [[vt, ut]]
    assert warped[vt, ut] == pytest.approx(zt, rel=1e-6)


def test_points_behind_the_camera_are_dropped():
    # drive 12 m forward through a wall at 10 m: every point is behind the camera
    warped, valid = forward_warp_depth(plane(10.0), translation(z=-12.0), K)
    assert not valid.any() and not warped.any()
    # turn around (180 degrees about y): everything is behind
    R = np.diag([-1.0, 1.0, -1.0])
    _, valid = forward_warp_depth(plane(10.0), make_transform(R, np.zeros(3)), K)
    assert not valid.any()


def test_z_buffer_keeps_the_nearest_surface():
    # two source pixels land on one target pixel: columns 10 (at 10 m) and 20 (at 5 m), camera moves right
    # such that u10 -> 10 - 100*b/10 and u20 -> 20 - 100*b/5; b = 1 m: 0 and 0; keep the 5 m one
    d = np.zeros((H, W), np.float32)
    d[5, 10], d[5, 20] = 10.0, 5.0
    index, warped = forward_warp_indices(d, translation(x=-1.0), K)
    assert warped[5, 0] == 5.0 and index[5, 0] == 5 * W + 20
    carried = warp_values(np.arange(H * W, dtype=np.float32).reshape(H, W), index, fill=-1)
    assert carried[5, 0] == 5 * W + 20 and (carried == -1).sum() == H * W - 1


def test_other_target_intrinsics():
    K2 = K.scaled(W // 2, H // 2)
    warped, valid = forward_warp_depth(plane(7.0), np.eye(4), K, K2)
    assert warped.shape == (H // 2, W // 2) and valid.all() and np.all(warped == 7.0)


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match=r"\(H, W\)"):
        forward_warp_depth(np.zeros((H, W, 1)), np.eye(4), K)
    with pytest.raises(ValueError, match="intrinsics are for"):
        forward_warp_depth(np.zeros((H + 1, W)), np.eye(4), K)
    with pytest.raises(ValueError, match="T_target_source"):
        forward_warp_depth(plane(1.0), np.full((4, 4), np.nan), K)
    with pytest.raises(ValueError, match="rotation"):
        forward_warp_depth(plane(1.0), np.diag([2.0, 1, 1, 1]), K)
    with pytest.raises(ValueError, match="min_depth"):
        forward_warp_depth(plane(1.0), np.eye(4), K, min_depth=0.0)


def test_fill_cracks_closes_one_pixel_cracks_but_not_disocclusions():
    # moving 1 m towards a wall at 10 m magnifies by 10/9: a crack every ~9 px without the fill
    warped, valid = forward_warp_depth(plane(10.0), translation(z=-1.0), K)
    inner = (slice(6, -6), slice(6, -6))
    assert valid[inner].mean() < 0.9
    warped, valid = forward_warp_depth(plane(10.0), translation(z=-1.0), K, fill_cracks=True)
    assert valid[inner].all() and np.all(warped[inner] == 9.0)
    # the 5 px disocclusion strip of the lateral-shift box stays empty
    d = plane(10.0)
    d[10:20, 30:40] = 5.0
    _, valid = forward_warp_depth(d, translation(x=-0.5), K, fill_cracks=True)
    assert not valid[10:20, 30:35].any()
