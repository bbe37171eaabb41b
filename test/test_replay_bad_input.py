"""replay with bad input: each case gives a clear error or a per-frame skip counted in the report."""
from __future__ import annotations

import shutil
import struct
from pathlib import Path

import numpy as np
import pytest

from depth_diffusion_ros.cli import main as cli_main
from depth_diffusion_ros.evaluation.report import load_report
from depth_diffusion_ros.geometry.calibration import read_kitti_raw_calib, read_velodyne_bin
from depth_diffusion_ros.geometry.depth_codecs import read_kitti_depth_png
from depth_diffusion_ros.tools import bag_io
from depth_diffusion_ros.tools.kitti_to_bag import convert, discover_kitti
from depth_diffusion_ros.tools.replay import ReplayError, ReplayOptions, plan_bag, replay

CAM = "/kitti/camera_color_left"


@pytest.fixture(scope="module")
def frame(kitti_raw_dir: Path):
    import cv2

    rgb = cv2.cvtColor(cv2.imread(str(kitti_raw_dir / "raw/sync_rect/cam_02.png")), cv2.COLOR_BGR2RGB)
    calib = read_kitti_raw_calib(kitti_raw_dir / "raw/calib_cam_to_cam.txt", kitti_raw_dir / "raw/calib_velo_to_cam.txt")
    points = read_velodyne_bin(kitti_raw_dir / "raw/lidar_data.bin")
    gt = read_kitti_depth_png(kitti_raw_dir / "depth_completion/groundtruth_image_02.png")
    return rgb, calib, points, gt


def write_bag(path: Path, frame, *, image=True, info=True, points=True, gt=None, tf=True) -> Path:
    rgb, calib, pts, _ = frame
    t = 2_000_000_000
    with bag_io.BagWriter(path) as bag:
        if tf:
            bag.add_topic("/tf_static", bag_io.TF_MESSAGE, latched=True)
            bag.write("/tf_static", t, bag_io.make_tf_message(calib.T_camera_lidar, "camera_color_left", "velo_link", t))
        if info:
            bag.add_topic(f"{CAM}/camera_info", bag_io.CAMERA_INFO)
            bag.write(f"{CAM}/camera_info", t, bag_io.make_camera_info(calib.intrinsics, t, "camera_color_left"))
        if points:
            bag.add_topic("/kitti/velo/pointcloud", bag_io.POINTCLOUD2)
            bag.write("/kitti/velo/pointcloud", t, bag_io.make_pointcloud_xyzi(pts, t, "velo_link"))
        if image:
            bag.add_topic(f"{CAM}/image_raw", bag_io.IMAGE)
            bag.write(f"{CAM}/image_raw", t, bag_io.make_image(rgb, "rgb8", t, "camera_color_left"))
        if gt is not None:
            bag.add_topic(f"{CAM}/depth_gt", bag_io.IMAGE)
            bag.write(f"{CAM}/depth_gt", t, bag_io.make_depth_image(gt, t, "camera_color_left"))
    return path


def test_missing_or_broken_bags_and_topics_give_clear_errors(frame, tmp_path: Path, capsys) -> None:
    with pytest.raises(bag_io.BagError, match="bag not found"):
        plan_bag(tmp_path / "nope")
    (tmp_path / "plain").mkdir()
    with pytest.raises(bag_io.BagError, match="not a rosbag2 directory"):
        plan_bag(tmp_path / "plain")
    with pytest.raises(ReplayError, match="no colour image topic.*pointcloud"):
        plan_bag(write_bag(tmp_path / "no_image", frame, image=False))
    with pytest.raises(ReplayError, match="no sensor_msgs/msg/CameraInfo"):
        plan_bag(write_bag(tmp_path / "no_info", frame, info=False))
    with pytest.raises(ReplayError, match="no /tf_static transform"):
        plan_bag(write_bag(tmp_path / "no_tf", frame, tf=False))
    with pytest.raises(ReplayError, match="has type sensor_msgs/msg/PointCloud2"):
        plan_bag(tmp_path / "no_tf", {"image": "/kitti/velo/pointcloud"})
    # a truncated MCAP file (no footer): a clear error naming the bag, and the CLI exits 2
    good = write_bag(tmp_path / "good", frame)
    trunc = tmp_path / "trunc"
    shutil.copytree(good, trunc)
    mcap = next(trunc.glob("*.mcap"))
    mcap.write_bytes(mcap.read_bytes()[: mcap.stat().st_size // 2])
    with pytest.raises(bag_io.BagError, match="cannot open bag .*trunc"):
        plan_bag(trunc)
    assert cli_main(["replay", str(trunc), "-o", str(tmp_path / "o1")]) == 2
    assert "replay: error: cannot open bag" in capsys.readouterr().err
    # nothing to score against (no GT) without a holdout
    with pytest.raises(ReplayError, match="holdout-fraction"):
        replay(ReplayOptions(bag=good, output=tmp_path / "o2", holdout_fraction=0.0, progress=False))
    # an output folder that cannot be written
    (tmp_path / "afile").write_text("x")
    with pytest.raises(ReplayError, match="not writable"):
        replay(ReplayOptions(bag=good, output=tmp_path / "afile" / "out", progress=False))
    # a params file naming a node replay does not know
    params = tmp_path / "p.yaml"
    params.write_text("mystery_node:\n  ros__parameters:\n    x: 1\n")
    with pytest.raises(ReplayError, match="mystery_node"):
        replay(ReplayOptions(bag=good, output=tmp_path / "o3", params_file=params, progress=False))
    # a bad parameter value is named
    params.write_text("depth_completion_node:\n  ros__parameters:\n    backend: magic\n")
    with pytest.raises(ReplayError, match="backend"):
        replay(ReplayOptions(bag=good, output=tmp_path / "o4", params_file=params, progress=False))


def test_ground_truth_of_another_size_is_counted_and_report_written(frame, tmp_path: Path) -> None:
    _, _, _, gt = frame
    bag = write_bag(tmp_path / "gt_crop", frame, gt=gt[:200, :700])
    out = tmp_path / "out"
    rc = cli_main(["replay", str(bag), "-o", str(out), "--backend", "nearest", "--no-figures"])
    assert rc == 1  # nothing scored
    report = load_report(out / "report.json")
    assert report["n_frames"] == 0
    assert report["skipped"] == {"gt_size_mismatch": 1}
    assert report["meta"]["node_skipped"] == {"gt_size_mismatch": 1}


def test_corrupt_chunk_keeps_frames_before_the_damage(kitti_object_dir: Path, tmp_path: Path) -> None:
    bag = tmp_path / "obj"
    convert(discover_kitti(kitti_object_dir), bag)
    mcap = next(bag.glob("*.mcap"))
    data = bytearray(mcap.read_bytes())
    # find the MCAP chunk records (opcode 0x06) and break the first record of the third one
    pos, chunks = 8, []
    while pos < len(data):
        op, length = data[pos], struct.unpack_from("<Q", data, pos + 1)[0]
        if op == 0x06:
            chunks.append(pos)
        pos += 9 + length
        if op == 0x0F:
            break
    assert len(chunks) >= 3
    p = chunks[2]
    compression_len = struct.unpack_from("<I", data, p + 9 + 28)[0]
    first_record = p + 9 + 32 + compression_len + 8
    data[first_record + 1:first_record + 9] = struct.pack("<Q", 10**12)
    mcap.write_bytes(bytes(data))

    out = tmp_path / "out"
    result = replay(ReplayOptions(bag=bag, output=out, backend="nearest", figures=False, progress=False))
    report = load_report(out / "report.json")
    assert report["n_frames"] == 1 and report["frames"][0]["stamp_ns"] == 1_000_000_000
    assert report["skipped"] == {"unreadable_bag": 1}
    assert any("truncated or corrupt" in e for e in report["errors"])
    assert result.report["n_frames"] == 1
    assert np.isfinite(report["mean"]["rmse_mm"])


def test_camera_info_recorded_once_and_an_empty_scan(frame, tmp_path: Path) -> None:
    rgb, calib, pts, gt = frame
    bag = tmp_path / "three"
    with bag_io.BagWriter(bag) as w:
        for topic, msgtype in (("/tf_static", bag_io.TF_MESSAGE), (f"{CAM}/camera_info", bag_io.CAMERA_INFO),
                               ("/kitti/velo/pointcloud", bag_io.POINTCLOUD2), (f"{CAM}/image_raw", bag_io.IMAGE),
                               (f"{CAM}/depth_gt", bag_io.IMAGE)):
            w.add_topic(topic, msgtype, latched=topic == "/tf_static")
        w.write("/tf_static", 1_000_000_000, bag_io.make_tf_message(calib.T_camera_lidar, "camera_color_left", "velo_link", 1_000_000_000))
        w.write(f"{CAM}/camera_info", 1_000_000_000, bag_io.make_camera_info(calib.intrinsics, 1_000_000_000, "camera_color_left"))
        for k in range(3):
            t = 1_000_000_000 + k * 100_000_000
            cloud = pts if k != 2 else pts[:0]  # frame 2: a scan with no points
            w.write("/kitti/velo/pointcloud", t, bag_io.make_pointcloud_xyzi(cloud, t, "velo_link"))
            w.write(f"{CAM}/image_raw", t, bag_io.make_image(rgb, "rgb8", t, "camera_color_left"))
            w.write(f"{CAM}/depth_gt", t, bag_io.make_depth_image(gt, t, "camera_color_left"))
    result = replay(ReplayOptions(bag=bag, output=tmp_path / "out", backend="nearest", figures=False,
                                  progress=False, frame_timeout=60))
    report = result.report
    # frame 1 reused frame 0's camera_info; frame 2 was dropped by the completion node, and replay
    # moved on as soon as the node counted the drop instead of waiting for the frame timeout
    assert report["n_frames"] == 2
    assert report["skipped"] == {"node_drop_empty_points": 1}
    assert result.wall_s < 30
