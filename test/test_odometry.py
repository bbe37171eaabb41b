"""LiDAR odometry (KISS-ICP) on the real KITTI raw sequence: the car's forward motion while it
drives and its standstill, and the motion in the camera frame moves the previous scan onto the
current one (better than no motion and than the motion reversed)."""
from __future__ import annotations

import numpy as np
import pytest

from depth_diffusion_ros.geometry.odometry import LidarOdometry, lidar_motion_in_camera

pytest.importorskip("kiss_icp")


@pytest.fixture(scope="module")
def drive(shared_data):
    from training.datasets.kitti_raw import drive_frames

    files = drive_frames(shared_data / "kitti_raw_2011_09_26_sequence", frames=list(range(0, 6)) + list(range(58, 66)))
    scans = {f.extras["frame_index"]: np.fromfile(f.lidar_bin, np.float32).reshape(-1, 4)[:, :3] for f in files}
    return scans, files


def motions(scans, numbers):
    odometry = LidarOdometry()
    out = [odometry.update(scans[n]) for n in numbers]
    assert out[0] is None  # the first scan of a map has no motion
    return out[1:]


def test_driving_forward_then_standing_still(drive):
    scans, _ = drive
    moving = motions(scans, range(0, 6))
    # the first registration of a map starts from a zero-velocity guess and comes out short
    assert -0.3 < moving[0][0, 3] < -0.05
    for T in moving[1:]:  # LiDAR frame: x forward; the car drives at about 2 m/s, 10 Hz
        # points move backwards relative to a car driving forwards: T_curr_prev x < 0
        assert -0.32 < T[0, 3] < -0.12 and abs(T[1, 3]) < 0.05 and abs(T[2, 3]) < 0.05
        np.testing.assert_allclose(T[:3, :3] @ T[:3, :3].T, np.eye(3), atol=1e-6)
    standing = motions(scans, range(58, 66))
    assert max(np.linalg.norm(T[:3, 3]) for T in standing) < 0.06


def test_camera_motion_warps_previous_image_onto_current(drive):
    """Photometric check: frame 3's image, forward-warped into frame 4 through its completed depth
    (IP-Basic of its scan) and the odometry's camera motion, matches frame 4's image better than
    with no motion and than with the motion reversed. (Comparing the two sparse scans directly,
    pixel-wise or by nearest neighbours, cannot tell: a laser ring hits flat ground at the same
    range from a car that drives forward.)"""
    import cv2

    from depth_diffusion_ros.baselines.ip_basic import ip_basic_complete
    from depth_diffusion_ros.geometry.projection import project_lidar_to_depth
    from depth_diffusion_ros.geometry.warp import forward_warp_indices

    scans, files = drive
    calib = files[0].calibration
    T_lidar = motions(scans, (2, 3, 4))[-1]  # noqa: N806
    T_cam = lidar_motion_in_camera(T_lidar, calib.T_camera_lidar)  # noqa: N806
    # in the camera (z forward) the scene comes towards a camera driving forwards
    assert T_cam[2, 3] < -0.12 and abs(T_cam[0, 3]) < 0.05 and abs(T_cam[1, 3]) < 0.05
    gray = {n: cv2.imread(str(f.rgb), cv2.IMREAD_GRAYSCALE).astype(np.float32)
            for f in files if (n := f.extras["frame_index"]) in (3, 4)}
    depth = ip_basic_complete(project_lidar_to_depth(scans[3], calib.T_camera_lidar, calib.intrinsics,
                                                     max_depth=80.0))
    lower = np.arange(depth.shape[0])[:, None] >= 0.4 * depth.shape[0]  # below the sky: LiDAR-backed depth

    def error(T):  # noqa: N803
        index, _ = forward_warp_indices(depth, T, calib.intrinsics)
        ok = (index >= 0) & lower
        return float(np.mean(np.abs(gray[3].ravel()[index[ok]] - gray[4][ok])))

    with_motion, static, reversed_ = error(T_cam), error(np.eye(4)), error(np.linalg.inv(T_cam))
    assert with_motion < 0.92 * static < 0.92 * reversed_


def test_bad_input_and_reset():
    odometry = LidarOdometry()
    with pytest.raises(ValueError, match=r"points must be \(N, 3\)"):
        odometry.update(np.zeros((10,)))
    with pytest.raises(ValueError, match="need at least 100"):
        odometry.update(np.full((500, 3), np.nan))
    with pytest.raises(ValueError, match="min_range < max_range"):
        LidarOdometry(max_range=1.0, min_range=2.0)
    with pytest.raises(ValueError, match="T_camera_lidar"):
        lidar_motion_in_camera(np.eye(4), np.zeros((4, 4)))
    rng = np.random.default_rng(0)
    cloud = rng.uniform(-20, 20, (3000, 3))
    assert odometry.update(cloud) is None
    assert odometry.update(cloud) is not None
    odometry.reset()
    assert odometry.update(cloud) is None and odometry.frames == 1
