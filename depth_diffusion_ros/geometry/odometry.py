"""Ego-motion between consecutive frames from the LiDAR scans alone (LiDAR odometry).

The temporal filter (:mod:`depth_diffusion_ros.inference.temporal`) warps the previous output into
the current camera by the rigid motion between the two frames. Where no tf tree gives that motion
(a replayed bag without odometry, a robot without wheel odometry), it is estimated here from
consecutive LiDAR scans with KISS-ICP (Vizzo et al., "KISS-ICP: In Defense of Point-to-Point ICP",
RA-L 2023), a maintained library: point-to-point ICP of each scan against a local voxel map,
with an adaptive correspondence threshold and a constant-velocity initial guess. This module only
feeds it scans and converts its poses into the camera frame.

Frames: KISS-ICP returns the pose of the current scan in its map, ``T_map_lidar`` (4, 4). The
motion that takes points from the previous LiDAR frame into the current one is
``T_curr_prev = inv(T_map_curr) @ T_map_prev`` (:meth:`LidarOdometry.update`); in the camera,
with ``T_camera_lidar`` the fixed extrinsics, ``T_cam_curr_prev = T_cl @ T_curr_prev @ inv(T_cl)``
(:func:`lidar_motion_in_camera`), which is the ``T_prev_to_curr`` the temporal filter takes.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from depth_diffusion_ros.geometry.transforms import check_rigid_transform


class OdometryUnavailable(ImportError):
    """kiss-icp is not installed (``pip install kiss-icp``; it is in requirements.txt)."""


def lidar_motion_in_camera(T_curr_prev_lidar: np.ndarray, T_camera_lidar: np.ndarray) -> np.ndarray:  # noqa: N803
    """The LiDAR frame-to-frame motion expressed in the camera frame.

    Args:
        T_curr_prev_lidar: (4, 4) rigid motion taking points from the previous LiDAR frame to the
            current one.
        T_camera_lidar: (4, 4) rigid LiDAR -> camera extrinsics (fixed on the rig).
    Returns:
        (4, 4) float64 ``T_camera_lidar @ T_curr_prev_lidar @ inv(T_camera_lidar)``: previous
        camera frame -> current camera frame.
    Raises:
        ValueError: either matrix is not a finite rigid 4x4.
    """
    checked = []
    for name, T in (("T_curr_prev_lidar", T_curr_prev_lidar), ("T_camera_lidar", T_camera_lidar)):  # noqa: N806
        try:
            checked.append(check_rigid_transform(T))
        except ValueError as exc:
            raise ValueError(f"{name} {exc}") from exc
    a, c = checked
    return c @ a @ np.linalg.inv(c)


class LidarOdometry:
    """Frame-to-frame LiDAR motion from KISS-ICP, one map per sensor stream.

    Args:
        max_range, min_range: metres; points outside are ignored by the registration (KISS-ICP's
            ``data.max_range`` / ``min_range``; its voxel size is ``max_range / 100``, its default).
        threads: ICP threads (0 = KISS-ICP's automatic choice).
    Raises:
        OdometryUnavailable: kiss-icp is not importable.
        ValueError: ``max_range <= min_range`` or a negative range.

    Scans are registered without deskewing (the ROS PointCloud2 of a replayed bag has no per-point
    times). :meth:`reset` starts a new map (after a gap or a time jump the constant-velocity guess
    is wrong).
    """

    def __init__(self, max_range: float = 80.0, min_range: float = 2.0, threads: int = 1) -> None:
        if not 0.0 <= min_range < max_range:
            raise ValueError(f"LiDAR odometry needs 0 <= min_range < max_range, got {min_range}, {max_range}")
        try:
            from kiss_icp.config.parser import load_config
            from kiss_icp.kiss_icp import KissICP
        except ImportError as exc:  # pragma: no cover - kiss-icp is a requirement
            raise OdometryUnavailable(f"LiDAR odometry needs kiss-icp ({exc}); pip install kiss-icp") from exc
        config = load_config(None)
        config.data.deskew = False
        config.data.max_range, config.data.min_range = float(max_range), float(min_range)
        config.mapping.voxel_size = float(max_range) / 100.0
        config.registration.max_num_threads = int(threads)
        self._config = config
        self._make = KissICP
        self._icp = None
        self.frames = 0

    def reset(self) -> None:
        """Forget the map: the next scan starts a new one (its motion is the identity)."""
        self._icp = None
        self.frames = 0

    def update(self, points: np.ndarray) -> Optional[np.ndarray]:
        """Register one scan; the motion from the previous scan.

        Args:
            points: (N, 3) or (N, >=3) LiDAR points in metres, in the LiDAR frame; non-finite
                rows are dropped.
        Returns:
            (4, 4) float64 motion taking points from the previous scan's LiDAR frame into this
            one's (``inv(T_map_curr) @ T_map_prev``), or None for the first scan after
            construction or :meth:`reset`.
        Raises:
            ValueError: ``points`` is not (N, >=3), or fewer than 100 finite points remain.
        """
        pts = np.asarray(points)
        if pts.ndim != 2 or pts.shape[1] < 3:
            raise ValueError(f"LiDAR odometry: points must be (N, 3), got shape {pts.shape}")
        xyz = np.ascontiguousarray(pts[:, :3], dtype=np.float64)
        xyz = xyz[np.isfinite(xyz).all(axis=1)]
        if xyz.shape[0] < 100:
            raise ValueError(f"LiDAR odometry: {xyz.shape[0]} finite points, need at least 100")
        first = self._icp is None
        if first:
            self._icp = self._make(self._config)
        previous = self._icp.last_pose.copy()
        self._icp.register_frame(xyz, np.zeros(xyz.shape[0]))
        self.frames += 1
        if first:
            return None
        return np.linalg.inv(self._icp.last_pose) @ previous
