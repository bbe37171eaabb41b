"""The KITTI raw sequence loader (official layout) and the documented split, on the shared drive."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from depth_diffusion_ros.geometry.calibration import read_kitti_raw_calib, read_velodyne_bin
from depth_diffusion_ros.geometry.projection import project_lidar_to_depth
from depth_diffusion_ros.geometry.sampling import holdout_mask
from training.datasets import build_dataset
from training.datasets.common import DatasetError
from training.datasets.kitti_raw import SEQUENCE_SPLIT, KittiRawSequence, drive_frames, find_drive, sequence_frames

DATE = "2011_09_26"


def test_split_covers_the_drive_once_and_validates_before_the_stop(sequence_root):
    frames = [n for part in SEQUENCE_SPLIT.values() for n in part]
    assert sorted(frames) == list(range(66)) and len(set(frames)) == 66
    train, gap, val = SEQUENCE_SPLIT["train"], SEQUENCE_SPLIT["gap"], SEQUENCE_SPLIT["val"]
    # contiguous blocks: train, then a gap of a few frames, then the moving validation block
    assert max(train) + 1 == min(gap) and max(gap) + 1 == min(val) and len(gap) >= 3
    assert max(val) < 52 <= min(SEQUENCE_SPLIT["static"])  # the ego car stops at about frame 52
    assert sequence_frames("val+static") == tuple(range(44, 66))
    with pytest.raises(DatasetError, match="unknown sequence split 'test'"):
        sequence_frames("test")


def test_find_drive_from_root_date_or_drive_folder(sequence_root):
    raw, date, drive = find_drive(sequence_root)
    assert date == DATE and drive.endswith("_sync") and (raw / date / drive / "image_02").is_dir()
    assert find_drive(sequence_root / DATE) == (raw, date, drive)
    assert find_drive(sequence_root / DATE / drive) == (raw, date, drive)
    assert len(drive_frames(sequence_root)) == 66


def test_heldout_frame_matches_the_projection_and_the_replay_split(sequence_root):
    ds = KittiRawSequence(sequence_root, frames=[44], holdout_fraction=0.1, seed=0)
    s = ds[0]
    assert s["rgb"].shape[1:] == (375, 1242) and s["K"].shape == (3, 3)
    sparse, gt = s["sparse_depth"][0].numpy(), s["gt_depth"][0].numpy()
    # the same projection and held-out points kitti-to-bag / replay make (frame number as index)
    raw, date, drive = find_drive(sequence_root)
    calib = read_kitti_raw_calib(raw / date / "calib_cam_to_cam.txt", raw / date / "calib_velo_to_cam.txt", camera=2)
    points = read_velodyne_bin(raw / date / drive / "velodyne_points" / "data" / "0000000044.bin")
    held = holdout_mask(len(points), 0.1, 0, 44)
    for part, got in ((held, gt), (~held, sparse)):
        want = project_lidar_to_depth(points[part, :3], calib.T_camera_lidar, calib.intrinsics)
        np.testing.assert_allclose(got, want, atol=1e-4)
    assert ((sparse > 0) & (gt > 0)).mean() < 1e-3  # held-out points land on other pixels
    n_in, n_gt = int((sparse > 0).sum()), int((gt > 0).sum())
    assert 0.06 < n_gt / (n_in + n_gt) < 0.12 and n_in > 10_000


def test_registry_builds_the_training_split_with_whole_scans_as_targets(sequence_root):
    ds = build_dataset({"type": "kitti_raw_sequence", "root": str(sequence_root), "frames": "train",
                        "gt_source": "lidar"})
    assert len(ds) == 40
    s = ds[39]
    assert torch.equal(s["gt_depth"], s["sparse_depth"])  # the whole scan: SparseDropout splits it
    assert ds.sample_name(39).endswith("0000000039/image_02")


def test_bad_layouts_are_named(tmp_path, sequence_root):
    with pytest.raises(DatasetError, match="expected one KITTI raw date folder"):
        find_drive(tmp_path)
    with pytest.raises(DatasetError, match=r"frames \[70\] not in image_02/data"):
        drive_frames(sequence_root, frames=[70])
    with pytest.raises(DatasetError, match="cameras are 2 and 3"):
        drive_frames(sequence_root, camera=1)
    raw, date, drive = find_drive(sequence_root)
    copy = tmp_path / "raw" / date / drive
    (copy / "image_02" / "data").mkdir(parents=True)
    shutil.copy(raw / date / drive / "image_02" / "data" / "0000000000.png", copy / "image_02" / "data")
    for name in ("calib_cam_to_cam.txt", "calib_velo_to_cam.txt"):
        shutil.copy(raw / date / name, tmp_path / "raw" / date / name)
    with pytest.raises(DatasetError, match="velodyne_points"):
        drive_frames(tmp_path / "raw")
