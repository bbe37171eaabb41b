"""Accumulated depth-completion targets (neighbouring scans by LiDAR odometry, filtered): the filter
on constructed scenes, the registration on a known motion, and the loader on the shared drive."""
from __future__ import annotations


import numpy as np
import pytest

from depth_diffusion_ros.geometry.intrinsics import Intrinsics
from depth_diffusion_ros.geometry.transforms import make_transform
from training.datasets.accumulation import (
    accumulate_depth,
    consecutive_runs,
    filter_neighbour_depth,
    run_poses,
)
from training.datasets.kitti_raw import KittiRawSequence
from training.train import TrainingError, apply_overrides


def test_consecutive_runs_split_at_gaps():
    assert consecutive_runs([0, 1, 2, 5, 6, 9]) == [[0, 1, 2], [5, 6], [9]]
    assert consecutive_runs([]) == []
    with pytest.raises(ValueError, match="strictly increasing"):
        consecutive_runs([3, 2])


def _scan_lines(shape, rows, depth_left, depth_right, split_col):
    d = np.zeros(shape, np.float32)
    for r in rows:
        d[r, :split_col] = depth_left
        d[r, split_col:] = depth_right
    return d


def test_filter_keeps_agreeing_returns_and_drops_see_through_and_ghosts():
    shape = (40, 60)
    # the frame's own scan: lines every 5 rows, a foreground object (10 m) left of column 30, a wall (20 m) right
    current = _scan_lines(shape, range(0, 21, 5), 10.0, 20.0, 30)
    neighbours = np.zeros(shape, np.float32)
    neighbours[2, 10] = 10.2   # on the object between two lines: agrees
    neighbours[2, 12] = 20.0   # the wall seen past the object from another position: dropped
    neighbours[7, 45] = 20.3   # on the wall: agrees
    neighbours[7, 47] = 12.0   # a car that drove through earlier, in front of the wall the frame sees: dropped
    neighbours[12, 29] = 20.0  # at the object's edge the window holds both depths: kept
    # below the frame's last line (rows > 24 have no own return within 4 rows): only the occlusion test
    neighbours[35, 10] = 8.0
    neighbours[35, 11] = 8.5   # within 10 % of the nearest kept return beside it: kept
    neighbours[36, 12] = 15.0  # behind that surface seen from elsewhere: dropped
    keep = filter_neighbour_depth(current, neighbours)
    assert keep[2, 10] and keep[7, 45] and keep[12, 29] and keep[35, 10] and keep[35, 11]
    assert not keep[2, 12] and not keep[7, 47] and not keep[36, 12]
    assert not keep[neighbours == 0].any()
    # a wider tolerance lets the ghost through: the test can fail for the right reason
    assert filter_neighbour_depth(current, neighbours, tolerance=0.5)[7, 47]


def test_filter_refuses_bad_arguments():
    with pytest.raises(ValueError, match="same"):
        filter_neighbour_depth(np.zeros((4, 4)), np.zeros((4, 5)))
    with pytest.raises(ValueError, match="odd"):
        filter_neighbour_depth(np.zeros((4, 4)), np.zeros((4, 4)), occlusion_window=4)
    with pytest.raises(ValueError, match=">= 0"):
        filter_neighbour_depth(np.zeros((4, 4)), np.zeros((4, 4)), tolerance=-1)


class _KnownMotion:
    """Odometry stand-in returning given frame-to-frame motions (the real KISS-ICP runs below)."""

    def __init__(self, motions):
        self.motions, self.k = motions, 0

    def reset(self):
        self.k = 0

    def update(self, points):
        self.k += 1
        return None if self.k == 1 else self.motions[self.k - 2]


def _wall_scan(T_lidar_world, rows):  # noqa: N803
    """LiDAR points (LiDAR frame: x forward) on the plane x_world = 30 m, on a few horizontal lines."""
    y, z = np.meshgrid(np.linspace(-8, 8, 400), rows)
    world = np.stack([np.full(y.size, 30.0), y.ravel(), z.ravel(), np.ones(y.size)], axis=1)
    return (world @ T_lidar_world.T)[:, :3]


def test_accumulate_registers_neighbours_onto_the_same_surface():
    # the car drives 1 m forward per frame towards a wall; each scan samples different heights
    T_camera_lidar = np.array([[0, -1, 0, 0], [0, 0, -1, 0], [1, 0, 0, 0], [0, 0, 0, 1]], float)  # noqa: N806
    intr = Intrinsics(200.0, 200.0, 80.0, 60.0, 160, 120)
    scans, poses = [], []
    for k in range(3):
        T_world_k = make_transform(np.eye(3), np.array([float(k), 0.0, 0.0]))  # noqa: N806
        poses.append(T_world_k)
        scans.append(_wall_scan(np.linalg.inv(T_world_k), np.linspace(-2, 2, 5) + 0.13 * k))
    # motions T_k_(k-1) as odometry reports them -> run_poses chains them back into T_first_k
    motions = [np.linalg.inv(poses[k]) @ poses[k - 1] for k in (1, 2)]
    chained = run_poses(scans, _KnownMotion(motions))
    np.testing.assert_allclose(chained, np.stack(poses), atol=1e-12)
    target, own = accumulate_depth(1, scans, chained, T_camera_lidar, intr, window=1)
    wall = 30.0 - 1.0  # the wall's distance from frame 1
    added = (target > 0) & (own == 0)
    assert added.sum() > 0.5 * (own > 0).sum()           # the two neighbours add their own lines
    np.testing.assert_allclose(target[target > 0], wall, rtol=1e-5)
    np.testing.assert_array_equal(target[own > 0], own[own > 0])
    # with a wrong pose the neighbours land 1 m off the wall the frame sees: filtered out
    wrong = chained.copy()
    wrong[0, 0, 3] -= 1.0
    wrong[2, 0, 3] += 1.0
    target_wrong, _ = accumulate_depth(1, scans, wrong, T_camera_lidar, intr, window=1)
    assert ((target_wrong > 0) & (own == 0)).sum() < 0.05 * added.sum()


def test_kiss_icp_poses_of_the_shared_drive_move_forward(sequence_root):
    ds = KittiRawSequence(sequence_root, frames=list(range(0, 6)), gt_source="accumulated")
    run, poses = ds.accumulated.poses(3)
    assert run == list(range(6)) and poses.shape == (6, 4, 4)
    travel = poses[-1][:3, 3]
    # the ego car drives forward (LiDAR x) at walking pace: ~0.15-0.2 m a frame, little sideways
    assert 0.3 < travel[0] < 2.0 and abs(travel[1]) < 0.3 * travel[0], travel


def test_loader_accumulates_only_the_given_frames(sequence_root):
    full = KittiRawSequence(sequence_root, frames=list(range(0, 11)), gt_source="accumulated")
    head = KittiRawSequence(sequence_root, frames=list(range(0, 6)), gt_source="accumulated")
    alone = KittiRawSequence(sequence_root, frames=[5, 8], gt_source="accumulated")
    own = KittiRawSequence(sequence_root, frames=[5], gt_source="lidar").load_frame(0)["gt_depth"]
    f_full, f_head, f_alone = full.load_frame(5), head.load_frame(5), alone.load_frame(0)
    for f in (f_full, f_head, f_alone):
        np.testing.assert_array_equal(f["sparse_depth"], own)  # the input is the whole scan
        np.testing.assert_array_equal(f["gt_depth"][own > 0], own[own > 0])
    # frames 6-10 are neighbours of 5 only where the dataset holds them; a lone frame has none
    assert (f_full["gt_depth"] > 0).sum() > (f_head["gt_depth"] > 0).sum() > 2 * (own > 0).sum()
    np.testing.assert_array_equal(f_alone["gt_depth"], own)
    with pytest.raises(ValueError, match="not one of the dataset's frames"):
        head.accumulated.poses(40)


def test_overrides_index_lists():
    cfg = {"data": {"train": {"datasets": [{"gt_source": "lidar"}, {"gt_source": "png"}]}}}
    out = apply_overrides(cfg, ["data.train.datasets.0.gt_source=accumulated", "data.train.datasets.-1.cache=true"])
    assert out["data"]["train"]["datasets"] == [{"gt_source": "accumulated"}, {"gt_source": "png", "cache": True}]
    assert cfg["data"]["train"]["datasets"][0]["gt_source"] == "lidar"  # a copy
    with pytest.raises(TrainingError, match="list of 2; '2' is not an index"):
        apply_overrides(cfg, ["data.train.datasets.2.gt_source=x"])
    with pytest.raises(TrainingError, match="is a str"):
        apply_overrides(cfg, ["data.train.datasets.0.gt_source.x=1"])
