"""Denser depth-completion targets from neighbouring LiDAR scans accumulated with LiDAR odometry.

KITTI's own depth-completion ground truth (Uhrig et al., "Sparsity Invariant CNNs", 3DV 2017,
Sec. 4) accumulates 11 consecutive Velodyne scans (the frame and 5 on each side) registered into
the frame's camera and removes the points that disagree with the frame (occlusions seen from the
other positions, moving objects). They filtered against semi-global stereo matching; one camera
is used here, so the frame's own scan is the reference instead:

1. Poses: KISS-ICP LiDAR odometry (:class:`depth_diffusion_ros.geometry.odometry.LidarOdometry`)
   over each run of consecutive frames, chained into ``T_first_k`` (LiDAR frame k -> the run's
   first LiDAR frame); a gap in the frame numbers starts a new run (the motion is unknown there).
2. Every neighbour scan j within ``window`` frames (and inside the same run: only the frames the
   dataset was given, so a training split never borrows a validation scan) is transformed into
   frame i's LiDAR frame and rendered through the frame's camera (the one projection,
   z-buffered): the nearest neighbour return per pixel.
3. Agreement with the frame's scan: where the frame's own returns lie in a
   ``(2 check_rows + 1) x (2 check_cols + 1)`` window around a pixel (the scan lines above and
   below it), a neighbour return is kept only inside their depth range widened by
   ``tolerance``; a background point seen past a foreground object from another position, or a
   moving object at its earlier place, falls outside it.
4. Occlusion among the neighbour returns where the frame's scan says nothing: a return farther
   than ``occlusion_tolerance`` beyond the nearest kept return in its
   ``occlusion_window`` neighbourhood is dropped.
5. The frame's own returns are kept as they are; the neighbour returns fill the pixels between.

Measured on the shared sequence (frames 8, 20, 32 of the training split, 20 % of each scan
held out of step 3's reference): the kept neighbour returns at the held-out pixels are within
RMSE 2.3 m / MAE 0.36 m of them (unfiltered: 3.4 m / 0.71 m) and the target is about 19 % of the
image (the scan alone: 3.5 %); the disagreement left is mostly at depth edges, where two LiDAR
positions see different surfaces through one pixel.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy import ndimage

from depth_diffusion_ros.geometry.intrinsics import Intrinsics
from depth_diffusion_ros.geometry.projection import project_lidar_to_depth


def consecutive_runs(frame_numbers: Sequence[int]) -> list[list[int]]:
    """Split sorted frame numbers into runs of consecutive numbers: [0, 1, 2, 5, 6] -> [[0, 1, 2], [5, 6]].

    Raises:
        ValueError: the numbers are not strictly increasing.
    """
    numbers = [int(n) for n in frame_numbers]
    if any(b <= a for a, b in zip(numbers, numbers[1:])):
        raise ValueError(f"frame numbers must be strictly increasing, got {numbers}")
    runs: list[list[int]] = []
    for n in numbers:
        if runs and n == runs[-1][-1] + 1:
            runs[-1].append(n)
        else:
            runs.append([n])
    return runs


def run_poses(scans: Sequence[np.ndarray], odometry=None) -> np.ndarray:
    """Poses of consecutive scans in the first scan's LiDAR frame, by LiDAR odometry.

    Args:
        scans: consecutive (N_k, >=3) LiDAR scans, metres, LiDAR frame.
        odometry: an object with ``update(points) -> (4, 4) | None`` and ``reset()``
            (:class:`~depth_diffusion_ros.geometry.odometry.LidarOdometry`, the default).
    Returns:
        (K, 4, 4) float64 ``T_first_k``: points of scan k into scan 0's LiDAR frame (the first is
        the identity). From the odometry's motions ``T_k_(k-1)``: ``T_first_k = T_first_(k-1) @ inv(T_k_(k-1))``.
    Raises:
        ValueError: no scans, or a scan the odometry refuses (fewer than 100 finite points).
    """
    if len(scans) == 0:
        raise ValueError("run_poses needs at least one scan")
    if odometry is None:
        from depth_diffusion_ros.geometry.odometry import LidarOdometry

        odometry = LidarOdometry()
    odometry.reset()
    poses = [np.eye(4)]
    for k, scan in enumerate(scans):
        motion = odometry.update(np.asarray(scan)[:, :3])
        if k == 0:
            continue
        if motion is None:
            raise ValueError(f"odometry gave no motion for scan {k} of a run")
        poses.append(poses[-1] @ np.linalg.inv(motion))
    return np.stack(poses)


def _window_min_max(depth: np.ndarray, rows: int, cols: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel min and max of the valid (> 0) depths in a (2 rows + 1) x (2 cols + 1) window
    (+inf / -inf where the window holds none)."""
    size = (2 * rows + 1, 2 * cols + 1)
    valid = depth > 0
    lo = ndimage.minimum_filter(np.where(valid, depth, np.inf), size=size, mode="constant", cval=np.inf)
    hi = ndimage.maximum_filter(np.where(valid, depth, -np.inf), size=size, mode="constant", cval=-np.inf)
    return lo, hi


def filter_neighbour_depth(current: np.ndarray, neighbours: np.ndarray, check_rows: int = 4, check_cols: int = 2,
                           tolerance: float = 0.03, occlusion_window: int = 5,
                           occlusion_tolerance: float = 0.1) -> np.ndarray:
    """Keep the neighbour returns that agree with the frame's own scan (steps 3-4 of the module doc).

    Args:
        current: (H, W) metres, the frame's own projected scan, 0 = no return.
        neighbours: (H, W) metres, the nearest registered neighbour return per pixel, 0 = none.
        check_rows, check_cols: half-size of the agreement window, pixels (4 rows reach the
            scan lines above and below on a 64-line LiDAR at KITTI's focal length: ~5 px apart).
        tolerance: relative widening of the frame's depth range in that window.
        occlusion_window: side of the occlusion neighbourhood, pixels (odd, >= 1).
        occlusion_tolerance: relative margin beyond the nearest kept return there.
    Returns:
        (H, W) bool: the neighbour pixels kept.
    Raises:
        ValueError: different shapes, negative sizes or tolerances, an even occlusion window.
    """
    current, neighbours = np.asarray(current), np.asarray(neighbours)
    if current.shape != neighbours.shape or current.ndim != 2:
        raise ValueError(f"current and neighbours must be the same (H, W), got {current.shape} and {neighbours.shape}")
    if min(check_rows, check_cols) < 0 or tolerance < 0 or occlusion_tolerance < 0:
        raise ValueError("check_rows, check_cols, tolerance and occlusion_tolerance must be >= 0")
    if occlusion_window < 1 or occlusion_window % 2 == 0:
        raise ValueError(f"occlusion_window must be odd and >= 1, got {occlusion_window}")
    lo, hi = _window_min_max(current, check_rows, check_cols)
    checked = np.isfinite(lo)
    present = neighbours > 0
    keep = present & np.where(checked, (neighbours >= lo * (1.0 - tolerance)) & (neighbours <= hi * (1.0 + tolerance)),
                              True)
    half = occlusion_window // 2
    nearest, _ = _window_min_max(np.where(keep, neighbours, 0.0), half, half)
    keep &= neighbours <= nearest * (1.0 + occlusion_tolerance)
    return keep


def accumulate_depth(index: int, scans: Sequence[np.ndarray], poses: np.ndarray, T_camera_lidar: np.ndarray,  # noqa: N803
                     intrinsics: Intrinsics, window: int = 5, max_depth: float = np.inf,
                     **filter_options) -> tuple[np.ndarray, np.ndarray]:
    """The frame's scan densified by its filtered neighbours (the whole recipe of the module doc).

    Args:
        index: the frame's position in ``scans`` / ``poses``.
        scans: the run's consecutive (N_k, >=3) scans, metres, LiDAR frame.
        poses: (K, 4, 4) ``T_first_k`` of :func:`run_poses`.
        T_camera_lidar: (4, 4) LiDAR -> camera (KITTI: with the rectification and P_rect translation).
        intrinsics: the camera's (its size is the output's).
        window: neighbours on each side (5: KITTI DC's 11 scans).
        max_depth: metres; farther returns are ignored.
        **filter_options: passed to :func:`filter_neighbour_depth`.
    Returns:
        ``(target, own)``: (H, W) float32 metres each, 0 = none: the densified target (the frame's
        own returns wherever it has one, the kept neighbour returns between) and the frame's own
        projected scan.
    Raises:
        ValueError: an index outside the run, mismatched poses, a negative window.
    """
    if not 0 <= index < len(scans) or len(poses) != len(scans):
        raise ValueError(f"index {index} outside the run of {len(scans)} scans ({len(poses)} poses)")
    if window < 0:
        raise ValueError(f"window must be >= 0, got {window}")
    inv_i = np.linalg.inv(poses[index])
    own = project_lidar_to_depth(np.asarray(scans[index])[:, :3], T_camera_lidar, intrinsics, max_depth=max_depth)
    nearest = np.full(own.shape, np.inf, dtype=np.float32)
    for j in range(max(0, index - window), min(len(scans), index + window + 1)):
        if j == index:
            continue
        T_cam_j = np.asarray(T_camera_lidar) @ inv_i @ poses[j]  # noqa: N806
        d = project_lidar_to_depth(np.asarray(scans[j])[:, :3], T_cam_j, intrinsics, max_depth=max_depth)
        np.minimum(nearest, np.where(d > 0, d, np.inf), out=nearest)
    neighbours = np.where(np.isfinite(nearest), nearest, 0.0).astype(np.float32)
    keep = filter_neighbour_depth(own, neighbours, **filter_options)
    target = np.where(own > 0, own, np.where(keep, neighbours, 0.0)).astype(np.float32)
    return target, own


class AccumulatedTargets:
    """Accumulated targets for the frames of one drive, poses computed once per run.

    Args:
        frame_numbers: the frames the dataset holds (strictly increasing); neighbours come only
            from these, runs split at gaps.
        read_scan: ``frame_number -> (N, >=3)`` scan.
        window, max_depth, filter_options: as :func:`accumulate_depth`.
        odometry: as :func:`run_poses`.
    """

    def __init__(self, frame_numbers: Sequence[int], read_scan, window: int = 5, max_depth: float = np.inf,
                 odometry=None, **filter_options) -> None:
        self.window, self.max_depth, self.filter_options = int(window), float(max_depth), filter_options
        self._read, self._odometry = read_scan, odometry
        self._run_of = {n: run for run in consecutive_runs(sorted(frame_numbers)) for n in run}
        self._poses: dict[int, np.ndarray] = {}

    def poses(self, frame_number: int) -> tuple[list[int], np.ndarray]:
        """(the run holding the frame, its (K, 4, 4) poses), computed on first use."""
        run = self._run_of.get(int(frame_number))
        if run is None:
            raise ValueError(f"frame {frame_number} is not one of the dataset's frames")
        if run[0] not in self._poses:
            self._poses[run[0]] = run_poses([self._read(n) for n in run], self._odometry)
        return run, self._poses[run[0]]

    def __call__(self, frame_number: int, T_camera_lidar: np.ndarray,  # noqa: N803
                 intrinsics: Intrinsics) -> tuple[np.ndarray, np.ndarray]:
        """``(target, own)`` of :func:`accumulate_depth` for one frame number."""
        run, poses = self.poses(frame_number)
        first, last = max(0, run.index(frame_number) - self.window), run.index(frame_number) + self.window + 1
        scans = [self._read(n) for n in run[first:last]]
        return accumulate_depth(run.index(frame_number) - first, scans, poses[first:last], T_camera_lidar,
                                intrinsics, self.window, self.max_depth, **self.filter_options)
