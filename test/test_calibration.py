"""KITTI calibration parsers on the real files, and the real-data LiDAR projection check."""
from __future__ import annotations

import numpy as np
import pytest

from depth_diffusion_ros.geometry.calibration import (
    parse_calib_file,
    read_kitti_object_calib,
    read_kitti_raw_calib,
    read_velodyne_bin,
)
from depth_diffusion_ros.geometry.depth_codecs import read_kitti_depth_png
from depth_diffusion_ros.geometry.projection import project_lidar_to_depth


def _raw_calib(kitti_raw_dir, camera=2):
    raw = kitti_raw_dir / "raw"
    return read_kitti_raw_calib(raw / "calib_cam_to_cam.txt", raw / "calib_velo_to_cam.txt", camera=camera)


def _devkit_projection(points: np.ndarray, P, R_rect, Tr) -> np.ndarray:
    """uv, z of P . R_rect(4x4) . Tr . X as written in the KITTI devkit (reference)."""
    R4 = np.eye(4)
    R4[:3, :3] = R_rect
    X = np.c_[points[:, :3].astype(np.float64), np.ones(len(points))]
    p = (P @ R4 @ Tr @ X.T).T
    return p[:, :2] / p[:, 2:3], p[:, 2]


def test_parse_skips_calib_time(kitti_raw_dir):
    c = parse_calib_file(kitti_raw_dir / "raw" / "calib_cam_to_cam.txt")
    assert "calib_time" not in c
    assert c["S_rect_02"].tolist() == [1242.0, 375.0]
    assert c["P_rect_02"].size == 12


def test_raw_calib_camera2(kitti_raw_dir):
    calib = _raw_calib(kitti_raw_dir)
    intr = calib.intrinsics
    assert (intr.fx, intr.fy, intr.cx, intr.cy) == pytest.approx((721.5377, 721.5377, 609.5593, 172.854))
    assert calib.image_size == (1242, 375) and (intr.width, intr.height) == (1242, 375)
    # Translation includes t = K^-1 P[:,3]: t_z = 2.745884e-3, t_x = (44.85728 - 609.5593 t_z) / 721.5377
    # = 0.05985 m (camera 2 sits ~6 cm to the left of camera 0).
    T_no_p = calib.T_cam0_lidar.copy()
    T_no_p[:3] = calib.R_rect @ calib.T_cam0_lidar[:3]
    t = calib.T_camera_lidar[:3, 3] - T_no_p[:3, 3]
    assert t == pytest.approx([0.0598493, (0.2163791 - 172.854 * 2.745884e-3) / 721.5377, 2.745884e-3], abs=1e-6)
    assert np.allclose(calib.T_camera_lidar[3], [0, 0, 0, 1])
    R = calib.T_camera_lidar[:3, :3]
    np.testing.assert_allclose(R @ R.T, np.eye(3), atol=1e-5)  # still a rotation


def test_raw_calib_matches_devkit_projection(kitti_raw_dir):
    """Projecting with intrinsics only after T_camera_lidar equals P_rect . R_rect . Tr."""
    calib = _raw_calib(kitti_raw_dir)
    pts = read_velodyne_bin(kitti_raw_dir / "raw" / "lidar_data.bin")
    uv_ref, z_ref = _devkit_projection(pts, calib.P_rect, calib.R_rect, calib.T_cam0_lidar)
    X = pts[:, :3].astype(np.float64) @ calib.T_camera_lidar[:3, :3].T + calib.T_camera_lidar[:3, 3]
    front = z_ref > 1.0
    uv = calib.intrinsics.K @ X[front].T
    uv = (uv[:2] / uv[2]).T
    np.testing.assert_allclose(uv, uv_ref[front], atol=1e-6)
    np.testing.assert_allclose(X[front, 2], z_ref[front], atol=1e-9)


def test_raw_calib_camera3_baseline(kitti_raw_dir):
    c2 = _raw_calib(kitti_raw_dir, 2)
    c3 = _raw_calib(kitti_raw_dir, 3)
    # Camera 3 sits ~0.47 m right of camera 0, camera 2 ~0.06 m left -> ~0.53 m baseline.
    d = c3.T_camera_lidar[:3, 3] - c2.T_camera_lidar[:3, 3]
    assert d[0] == pytest.approx(-0.532, abs=0.01)


def test_object_calib(kitti_object_dir):
    calib = read_kitti_object_calib(kitti_object_dir / "calib" / "000000.txt", camera=2, image_size=(1224, 370))
    assert calib.intrinsics.fx == pytest.approx(707.0493)
    assert (calib.intrinsics.width, calib.intrinsics.height) == (1224, 370)
    assert calib.T_lidar_imu is not None and calib.T_lidar_imu.shape == (4, 4)
    # The object frame's projection equals the README formula P2 . R0_rect . Tr_velo_to_cam.
    pts = read_velodyne_bin(kitti_object_dir / "velodyne" / "000000.bin")
    uv_ref, z_ref = _devkit_projection(pts, calib.P_rect, calib.R_rect, calib.T_cam0_lidar)
    depth = project_lidar_to_depth(pts, calib.T_camera_lidar, calib.intrinsics)
    inside = (z_ref > 0.1) & (uv_ref[:, 0] > -0.5) & (uv_ref[:, 0] < 1223.5) & (uv_ref[:, 1] > -0.5) & (uv_ref[:, 1] < 369.5)
    n = np.count_nonzero(depth)
    # README: about 18.6k-20.3k points land in the image; the z-buffer merges a few per pixel.
    assert 17000 < n <= inside.sum() and inside.sum() < 21000
    assert 4.0 < depth[depth > 0].min() and depth.max() < 80.0
    with pytest.raises(ValueError, match="image_size"):
        read_kitti_object_calib(kitti_object_dir / "calib" / "000000.txt")


def test_calib_errors(tmp_path, kitti_object_dir):
    with pytest.raises(FileNotFoundError):
        parse_calib_file(tmp_path / "nope.txt")
    bad = tmp_path / "bad.txt"
    bad.write_text("P2: 1 2 3\nR0_rect: 1 0 0 0 1 0 0 0 1\n")
    with pytest.raises(ValueError, match="P2"):
        read_kitti_object_calib(bad, image_size=(10, 10))
    with pytest.raises(ValueError, match="camera"):
        read_kitti_object_calib(kitti_object_dir / "calib" / "000000.txt", camera=5, image_size=(10, 10))


def agreement_with_velodyne_raw(ours: np.ndarray, ref: np.ndarray, tol_m: float = 0.1) -> dict:
    """For every valid pixel of ``ours``: is there a ``ref`` pixel within +-1 px whose depth is within tol_m?"""
    h, w = ref.shape
    ys, xs = np.nonzero(ours)
    best = np.full(ys.shape, np.inf)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            y = np.clip(ys + dy, 0, h - 1)
            x = np.clip(xs + dx, 0, w - 1)
            r = ref[y, x]
            best = np.minimum(best, np.where(r > 0, np.abs(r - ours[ys, xs]), np.inf))
    same = (ref[ys, xs] > 0) & (np.abs(ref[ys, xs] - ours[ys, xs]) < tol_m)
    co = (ours > 0) & (ref > 0)
    return {
        "n_ours": int(ys.size),
        "n_ref": int(np.count_nonzero(ref)),
        "frac_same_px": float(same.mean()),
        "frac_within_1px": float((best < tol_m).mean()),
        "median_abs_diff_within_1px": float(np.median(best[np.isfinite(best)])),
        "median_abs_diff_same_px": float(np.median(np.abs(ours - ref)[co])),
    }


def test_real_projection_matches_kitti_velodyne_raw(kitti_raw_dir):
    """Our projection of raw/lidar_data.bin vs KITTI DC's velodyne_raw_image_02.png (1242x375).

    KITTI DC applies its own motion compensation, so exact equality is not expected; the README
    measured ~19.1k px, ~75 % within +-1 px, median 3 cm.
    """
    calib = _raw_calib(kitti_raw_dir)
    pts = read_velodyne_bin(kitti_raw_dir / "raw" / "lidar_data.bin")
    ours = project_lidar_to_depth(pts, calib.T_camera_lidar, calib.intrinsics)
    ref = read_kitti_depth_png(kitti_raw_dir / "depth_completion" / "velodyne_raw_image_02.png")
    assert ours.shape == ref.shape == (375, 1242)
    m = agreement_with_velodyne_raw(ours, ref, tol_m=0.1)
    print(m)
    assert abs(m["n_ours"] - m["n_ref"]) < 0.02 * m["n_ref"]
    assert m["frac_same_px"] > 0.25
    assert m["frac_within_1px"] > 0.70
    assert m["median_abs_diff_same_px"] < 0.05
    assert m["median_abs_diff_within_1px"] < 0.08
