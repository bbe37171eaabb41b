"""kitti-to-bag on the real KITTI samples in ../shared/data, read back with plain ``rosbags``."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from rosbags.rosbag2 import Reader
from rosbags.typesys import Stores, get_typestore

from depth_diffusion_ros.cli import main as cli_main
from depth_diffusion_ros.geometry.calibration import read_kitti_object_calib, read_kitti_raw_calib
from depth_diffusion_ros.geometry.depth_codecs import read_kitti_depth_png, write_kitti_depth_png
from depth_diffusion_ros.geometry.intrinsics import Intrinsics
from depth_diffusion_ros.geometry.projection import project_lidar_to_depth
from depth_diffusion_ros.geometry.sampling import holdout_mask
from depth_diffusion_ros.tools import bag_io
from depth_diffusion_ros.tools.kitti_to_bag import (
    KittiLayoutError,
    convert,
    discover_kitti,
    parse_kitti_timestamps,
)

TS = get_typestore(Stores.ROS2_HUMBLE)
IMG, INFO, GT = ("/kitti/camera_color_left/image_raw", "/kitti/camera_color_left/camera_info",
                 "/kitti/camera_color_left/depth_gt")
PTS, HOLD, TF = "/kitti/velo/pointcloud", "/kitti/velo/pointcloud_holdout", "/tf_static"


def read_all(path: Path) -> tuple[dict[str, str], dict[str, list[tuple[int, object]]]]:
    """Plain rosbags read: topic -> msgtype, topic -> [(log time, message)]."""
    out: dict[str, list[tuple[int, object]]] = {}
    with Reader(path) as reader:
        types = {c.topic: c.msgtype for c in reader.connections}
        for conn, t, raw in reader.messages():
            out.setdefault(conn.topic, []).append((t, TS.deserialize_cdr(raw, conn.msgtype)))
    return types, out


def stamp(msg) -> int:
    return msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec


def test_torch_kitti_sample_to_mcap(kitti_raw_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "tk"
    rc = cli_main(["kitti-to-bag", str(kitti_raw_dir), "-o", str(out), "--start-time", "5"])
    assert rc == 0
    assert list(out.glob("*.mcap")), "MCAP is the default storage"
    types, msgs = read_all(out)
    assert types == {IMG: "sensor_msgs/msg/Image", INFO: "sensor_msgs/msg/CameraInfo",
                     GT: "sensor_msgs/msg/Image", PTS: "sensor_msgs/msg/PointCloud2",
                     TF: "tf2_msgs/msg/TFMessage"}
    assert {k: len(v) for k, v in msgs.items()} == {IMG: 1, INFO: 1, GT: 1, PTS: 1, TF: 1}
    img, info, gt, pts = (msgs[t][0][1] for t in (IMG, INFO, GT, PTS))
    for topic in (IMG, INFO, GT, PTS):
        t, m = msgs[topic][0]
        assert t == stamp(m) == 5_000_000_000
    assert img.header.frame_id == info.header.frame_id == gt.header.frame_id == "camera_color_left"
    assert pts.header.frame_id == "velo_link"
    assert (img.encoding, img.width, img.height, img.step) == ("rgb8", 1242, 375, 1242 * 3)
    assert [f.name for f in pts.fields] == ["x", "y", "z", "intensity"]
    assert all(f.datatype == 7 for f in pts.fields) and pts.point_step == 16
    assert pts.width * pts.height == os.path.getsize(kitti_raw_dir / "raw/lidar_data.bin") // 16

    calib = read_kitti_raw_calib(kitti_raw_dir / "raw/calib_cam_to_cam.txt",
                                 kitti_raw_dir / "raw/calib_velo_to_cam.txt", 2)
    P = info.p.reshape(3, 4)
    np.testing.assert_allclose(P[:, :3], calib.P_rect[:, :3])
    np.testing.assert_array_equal(P[:, 3], 0.0)  # translation folded into the tf
    (tf,) = msgs[TF][0][1].transforms
    assert (tf.header.frame_id, tf.child_frame_id) == ("camera_color_left", "velo_link")
    T = bag_io.tf_message_to_transforms(msgs[TF][0][1])[0][2]
    np.testing.assert_allclose(T, calib.T_camera_lidar, atol=2e-5)  # KITTI R is orthonormal to ~1e-6

    # tf + camera_info projection of the recorded cloud reproduces KITTI's velodyne_raw map.
    cloud = bag_io.pointcloud_msg_to_array(pts)
    depth = project_lidar_to_depth(cloud, T, Intrinsics.from_camera_info(info.k, info.p, info.width, info.height))
    velodyne_raw = read_kitti_depth_png(kitti_raw_dir / "depth_completion/velodyne_raw_image_02.png")
    assert abs(int((depth > 0).sum()) - int((velodyne_raw > 0).sum())) < 500
    both = (depth > 0) & (velodyne_raw > 0)
    assert np.median(np.abs(depth[both] - velodyne_raw[both])) < 0.1

    gt_expected = read_kitti_depth_png(kitti_raw_dir / "depth_completion/groundtruth_image_02.png")
    gt_arr = np.frombuffer(gt.data.tobytes(), dtype="<f4").reshape(375, 1242)
    assert gt.encoding == "32FC1"
    np.testing.assert_array_equal(np.isnan(gt_arr), gt_expected == 0)
    np.testing.assert_array_equal(gt_arr[gt_expected > 0], gt_expected[gt_expected > 0])


def test_object_folder_to_sqlite3_with_holdout(kitti_object_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "obj"
    seq = discover_kitti(kitti_object_dir)
    assert seq.layout == "object" and [f.name for f in seq.frames] == ["000000", "000001"]
    summary = convert(seq, out, storage="sqlite3", holdout_fraction=0.1, seed=3)
    assert summary.frames_written == 2 and not summary.skipped
    assert list(out.glob("*.db3"))
    types, msgs = read_all(out)
    assert GT not in types
    assert {k: len(v) for k, v in msgs.items()} == {IMG: 2, INFO: 2, PTS: 2, HOLD: 2, TF: 2}
    # stamps: 10 Hz from --start-time 1 s
    assert [stamp(m) for _, m in msgs[IMG]] == [1_000_000_000, 1_100_000_000]
    # per-frame calibration: the two frames differ in size and focal length
    sizes = [(m.width, m.height, round(m.k[0], 4)) for _, m in msgs[INFO]]
    assert sizes == [(1224, 370, 707.0493), (1242, 375, 721.5377)]
    for i, name in enumerate(["000000", "000001"]):
        n_total = os.path.getsize(kitti_object_dir / f"velodyne/{name}.bin") // 16
        kept, held = msgs[PTS][i][1], msgs[HOLD][i][1]
        assert kept.width + held.width == n_total
        assert held.width == round(0.1 * n_total)
        mask = holdout_mask(n_total, 0.1, 3, i)
        full = np.fromfile(kitti_object_dir / f"velodyne/{name}.bin", dtype="<f4").reshape(-1, 4)
        np.testing.assert_array_equal(bag_io.pointcloud_msg_to_array(held, ("x", "y", "z", "intensity")), full[mask])
        calib = read_kitti_object_calib(kitti_object_dir / f"calib/{name}.txt", 2, (sizes[i][0], sizes[i][1]))
        T = bag_io.tf_message_to_transforms(msgs[TF][i][1])[0][2]
        np.testing.assert_allclose(T, calib.T_camera_lidar, atol=2e-5)  # KITTI R is orthonormal to ~1e-6


def make_fake_drive(kitti_raw_dir: Path, root: Path, n: int = 3, gt_frames=(1, 2), lidar_frames=None) -> Path:
    """A KITTI raw ``*_sync`` drive built from the shared single frame (symlinks in tmp only)."""
    date = root / "2011_09_26"
    drive = date / "2011_09_26_drive_0001_sync"
    (drive / "image_02/data").mkdir(parents=True)
    (drive / "velodyne_points/data").mkdir(parents=True)
    for name in ("calib_cam_to_cam.txt", "calib_velo_to_cam.txt"):
        (date / name).symlink_to(kitti_raw_dir / "raw" / name)
    gt_dir = root / "train/2011_09_26_drive_0001_sync/proj_depth/groundtruth/image_02"
    gt_dir.mkdir(parents=True)
    cam_ts, velo_ts = [], []
    for i in range(n):
        (drive / f"image_02/data/{i:010d}.png").symlink_to(kitti_raw_dir / "raw/sync_rect/cam_02.png")
        if lidar_frames is None or i in lidar_frames:
            (drive / f"velodyne_points/data/{i:010d}.bin").symlink_to(kitti_raw_dir / "raw/lidar_data.bin")
        if i in gt_frames:
            (gt_dir / f"{i:010d}.png").symlink_to(kitti_raw_dir / "depth_completion/groundtruth_image_02.png")
        cam_ts.append(f"2011-09-26 13:02:{25 + i}.{964389445 + i * 1000:09d}")
        velo_ts.append(f"2011-09-26 13:02:{25 + i}.{950000000 + i:09d}")
    (drive / "image_02/timestamps.txt").write_text("\n".join(cam_ts) + "\n")
    (drive / "velodyne_points/timestamps.txt").write_text("\n".join(velo_ts) + "\n")
    return drive


def test_fake_sync_drive_stamps_gt_and_missing_lidar(kitti_raw_dir: Path, tmp_path: Path) -> None:
    drive = make_fake_drive(kitti_raw_dir, tmp_path / "kitti", n=3, gt_frames=(1, 2), lidar_frames=(0, 1))
    seq = discover_kitti(drive)
    assert seq.layout == "raw_drive" and len(seq.frames) == 3
    summary = convert(seq, tmp_path / "drive", storage="mcap")
    assert summary.frames_written == 3 and summary.frames_without_lidar == 1
    _, msgs = read_all(tmp_path / "drive")
    assert {k: len(v) for k, v in msgs.items()} == {IMG: 3, INFO: 3, PTS: 2, GT: 2, TF: 1}
    base = 1317042145  # 2011-09-26 13:02:25 UTC
    expected_cam = [(base + i) * 10**9 + 964389445 + i * 1000 for i in range(3)]
    assert [stamp(m) for _, m in msgs[IMG]] == expected_cam
    assert [t for t, _ in msgs[IMG]] == expected_cam
    assert [stamp(m) for _, m in msgs[PTS]] == [(base + i) * 10**9 + 950000000 + i for i in range(2)]
    assert [stamp(m) for _, m in msgs[GT]] == expected_cam[1:]
    assert parse_kitti_timestamps(drive / "image_02/timestamps.txt") == expected_cam


def test_bad_inputs_give_clear_errors_or_counted_skips(kitti_raw_dir: Path, tmp_path: Path, capsys) -> None:
    with pytest.raises(KittiLayoutError, match="not a KITTI folder"):
        discover_kitti(tmp_path)
    drive = make_fake_drive(kitti_raw_dir, tmp_path / "kitti", n=2, gt_frames=())
    # a truncated image: the frame is skipped and counted, the bag stays readable
    bad = drive / "image_02/data/0000000001.png"
    bad.unlink()
    bad.write_bytes((kitti_raw_dir / "raw/sync_rect/cam_02.png").read_bytes()[:2000])
    summary = convert(discover_kitti(drive), tmp_path / "b1")
    assert summary.frames_written == 1 and summary.skipped == {"unreadable_file": 1}
    _, msgs = read_all(tmp_path / "b1")
    assert len(msgs[IMG]) == 1
    # existing output is refused without --overwrite
    with pytest.raises(bag_io.BagError, match="already exists"):
        convert(discover_kitti(drive), tmp_path / "b1")
    # an output whose parent is a file cannot be written
    (tmp_path / "afile").write_text("x")
    assert cli_main(["kitti-to-bag", str(drive), "-o", str(tmp_path / "afile/bag")]) == 2
    assert "cannot write the bag" in capsys.readouterr().err
    # a malformed timestamp names the file and line
    (drive / "image_02/timestamps.txt").write_text("2011-09-26 13:02:25.1\nnot a time\n")
    with pytest.raises(KittiLayoutError, match="timestamps.txt:2"):
        discover_kitti(drive)
    # missing calibration
    (drive.parent / "calib_velo_to_cam.txt").unlink()
    with pytest.raises(KittiLayoutError, match="calib_velo_to_cam"):
        discover_kitti(drive)
    # a ground-truth png of another size skips the frame
    drive2 = make_fake_drive(kitti_raw_dir, tmp_path / "k2", n=1, gt_frames=())
    gt_dir = tmp_path / "gt"
    gt_dir.mkdir()
    write_kitti_depth_png(gt_dir / "0000000000.png", np.ones((10, 20), np.float32))
    summary = convert(discover_kitti(drive2, gt_dir=gt_dir), tmp_path / "b2")
    assert summary.frames_written == 0 and summary.skipped == {"gt_size_mismatch": 1}


def test_cli_notes_match_the_options_and_a_storage_suffix_names_the_folder(kitti_object_dir: Path, tmp_path: Path,
                                                                           capsys) -> None:
    # -o out/x.mcap: the bag folder is out/x (holding x.mcap), not out/x.mcap/x.mcap.mcap
    assert cli_main(["kitti-to-bag", str(kitti_object_dir), "-o", str(tmp_path / "obj.mcap"),
                     "--holdout-fraction", "0.1"]) == 0
    out = capsys.readouterr().out
    assert (tmp_path / "obj" / "obj.mcap").is_file() and not (tmp_path / "obj.mcap").exists()
    assert f"writing {tmp_path / 'obj'}/" in out
    # with --holdout-fraction the note says where the held-out points went, not "use --holdout-fraction"
    assert "10 % of each scan is held out on /kitti/velo/pointcloud_holdout" in out
    assert "give --holdout-fraction" not in out
    assert cli_main(["kitti-to-bag", str(kitti_object_dir), "-o", str(tmp_path / "plain")]) == 0
    assert "no depth ground truth: give --holdout-fraction" in capsys.readouterr().out
    # a suffix of the other storage is refused with both names
    assert cli_main(["kitti-to-bag", str(kitti_object_dir), "-o", str(tmp_path / "x.db3")]) == 2
    assert "--storage sqlite3" in capsys.readouterr().err
