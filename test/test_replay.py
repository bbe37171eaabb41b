"""replay: real KITTI frames from ../shared/data through the real nodes over loopback DDS.

The report's numbers must equal the metrics computed here, directly, on what the completion node
published (read back from the output bag) against the ground truth of the input bag.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from rosbags.rosbag2 import Reader, Writer
from rosbags.typesys import Stores, get_typestore

from depth_diffusion_ros.evaluation.metrics import depth_metrics, mean_metrics, to_kitti_units
from depth_diffusion_ros.evaluation.report import load_report
from depth_diffusion_ros.geometry.projection import project_lidar_to_depth
from depth_diffusion_ros.geometry.sampling import holdout_mask
from depth_diffusion_ros.tools import bag_io
from depth_diffusion_ros.tools.kitti_to_bag import convert, discover_kitti
from depth_diffusion_ros.tools.replay import ReplayOptions, replay

TS = get_typestore(Stores.ROS2_HUMBLE)
METRIC_KEYS = ("rmse_mm", "mae_mm", "irmse_1_km", "imae_1_km", "abs_rel", "delta1", "delta2", "delta3", "n_valid")


def read_topic(bag: Path, topic: str) -> list[object]:
    with Reader(bag) as reader:
        conns = [c for c in reader.connections if c.topic == topic]
        return [TS.deserialize_cdr(raw, c.msgtype) for c, _, raw in reader.messages(connections=conns)]


def stamp(msg) -> int:
    return msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec


def assert_same_metrics(reported: dict, expected: dict) -> None:
    for key in METRIC_KEYS:
        assert reported[key] == pytest.approx(expected[key], rel=1e-6, abs=1e-9), key


def test_replay_with_ground_truth_matches_metrics_on_recorded_output(kitti_raw_dir: Path, tmp_path: Path) -> None:
    bag = tmp_path / "kitti"
    convert(discover_kitti(kitti_raw_dir, start_time_s=7.0), bag)
    # a topic of a type this installation does not know is ignored (and listed), not fatal
    bag_extra = tmp_path / "kitti_extra"
    with Reader(bag) as reader, Writer(bag_extra, version=9) as writer:
        conns = {c.topic: writer.add_connection(c.topic, c.msgtype, typestore=TS) for c in reader.connections}
        custom = writer.add_connection("/vendor/status", "vendor_msgs/msg/Status", msgdef="int32 code\n",
                                       rihs01="RIHS01_" + "0" * 64)
        for c, t, raw in reader.messages():
            writer.write(conns[c.topic], t, raw)
        writer.write(custom, 7_000_000_000, b"\x00\x01\x00\x00\x05\x00\x00\x00")

    out = tmp_path / "out"
    result = replay(ReplayOptions(bag=bag_extra, output=out, backend="ip_basic", progress=False))
    report = load_report(out / "report.json")
    assert report == json.loads(json.dumps(result.report))
    assert report["n_frames"] == 1 and report["skipped"] == {}
    assert report["meta"]["ground_truth"] == "depth" and report["meta"]["input"] == "points"
    assert report["meta"]["ignored_topics"] == {"/vendor/status": "vendor_msgs/msg/Status"}

    # recompute from the output bag: what the node published, against the bag's ground truth
    (pred_msg,) = read_topic(out / "output_bag", "/depth/image")
    (gt_msg,) = read_topic(bag, "/kitti/camera_color_left/depth_gt")
    assert stamp(pred_msg) == stamp(gt_msg) == 7_000_000_000
    assert pred_msg.header.frame_id == "camera_color_left" and pred_msg.encoding == "32FC1"
    pred = bag_io.depth_msg_to_array(pred_msg)
    gt = bag_io.depth_msg_to_array(gt_msg)
    expected = to_kitti_units(depth_metrics(pred, gt))
    (frame,) = report["frames"]
    assert_same_metrics(frame, expected)
    assert_same_metrics(report["mean"], expected)
    assert frame["stamp_ns"] == 7_000_000_000
    assert frame["latency_ms"] > 0 and report["mean"]["latency_ms"] == frame["latency_ms"]
    # IP-Basic on this KITTI frame: a real completion, not a copy of the input
    assert 500 < expected["rmse_mm"] < 3000 and expected["delta1"] > 0.9
    assert expected["n_valid"] == int((gt > 0).sum()) > 80_000
    # the evaluation node's own messages were recorded too
    events = [json.loads(m.data) for m in read_topic(out / "output_bag", "/evaluation/metrics")]
    assert [e["event"] for e in events] == ["frame"]
    assert Path(frame["figure"]).is_file() and Path(frame["figure"]).stat().st_size > 10_000


def test_replay_held_out_lidar_on_object_frames_with_two_calibrations(kitti_object_dir: Path, tmp_path: Path) -> None:
    bag = tmp_path / "object"
    convert(discover_kitti(kitti_object_dir), bag, storage="sqlite3")
    out = tmp_path / "out"
    result = replay(ReplayOptions(bag=bag, output=out, backend="nearest", holdout_fraction=0.1, seed=4,
                                  figures=False, progress=False))
    report = result.report
    assert report["meta"]["ground_truth"] == "points" and report["meta"]["holdout_fraction"] == 0.1
    assert report["n_frames"] == 2 and report["skipped"] == {}
    assert report["meta"]["segments"] == 2  # the nodes restarted with the second frame's calibration
    # the report records the calibration each segment ran with (each frame's own /tf_static)
    segments = report["meta"]["calibration_segments"]
    assert [s["frames"] for s in segments] == [[0, 0], [1, 1]]
    assert all(s["source"] == "bag /tf_static" for s in segments)
    assert all(s["nodes"] == ["depth_completion_node", "depth_evaluation_node"] for s in segments)

    preds = {stamp(m): bag_io.depth_msg_to_array(m) for m in read_topic(out / "output_bag", "/depth/image")}
    clouds = read_topic(bag, "/kitti/velo/pointcloud")
    infos = read_topic(bag, "/kitti/camera_color_left/camera_info")
    tfs = read_topic(bag, "/tf_static")
    assert len(preds) == len(clouds) == len(tfs) == 2
    expected_frames = []
    for i, (cloud, info, tf) in enumerate(zip(clouds, infos, tfs)):
        points = bag_io.pointcloud_msg_to_array(cloud)
        held = holdout_mask(len(points), 0.1, 4, i)
        T = bag_io.tf_message_to_transforms(tf)[0][2]  # each frame's own calibration
        np.testing.assert_allclose(np.reshape(segments[i]["T_camera_lidar"], (4, 4)), T, atol=1e-12)
        intr = bag_io.camera_info_msg_to_intrinsics(info)
        gt = project_lidar_to_depth(points[held], T, intr)
        pred = preds[stamp(info)]
        assert pred.shape == (info.height, info.width)
        raw = depth_metrics(pred, gt)
        expected_frames.append(raw)
        assert_same_metrics(report["frames"][i], to_kitti_units(raw))
        # the held-out points were removed before the node saw the scan: a held-out pixel rarely
        # gets exactly the held-out depth back from nearest-fill of the remaining points
        hit = (gt > 0) & (np.abs(pred - gt) < 1e-6)
        assert hit.sum() < 0.5 * (gt > 0).sum()
    assert_same_metrics(report["mean"], to_kitti_units(mean_metrics(expected_frames)))


def test_replay_config_pipeline_counts_frames_without_lidar_or_ground_truth(kitti_raw_dir: Path, tmp_path: Path) -> None:
    from test_kitti_to_bag import make_fake_drive

    drive = make_fake_drive(kitti_raw_dir, tmp_path / "kitti", n=3, gt_frames=(1, 2), lidar_frames=(0, 1))
    bag = tmp_path / "drive"
    convert(discover_kitti(drive), bag)
    params = tmp_path / "pipeline.yaml"
    params.write_text(
        "lidar_depth_projection_node:\n  ros__parameters:\n    max_depth: 90\n"
        "depth_completion_node:\n  ros__parameters:\n    backend: nearest\n    input: sparse_depth\n"
    )
    out = tmp_path / "out"
    result = replay(ReplayOptions(bag=bag, output=out, params_file=params, figures=False, progress=False,
                                  frame_timeout=30))
    report = result.report
    assert report["meta"]["nodes"] == ["lidar_depth_projection_node", "depth_completion_node", "depth_evaluation_node"]
    assert report["meta"]["input"] == "projection"
    assert report["n_frames"] == 1
    assert report["skipped"] == {"no_ground_truth": 1, "no_lidar": 1}
    (frame,) = report["frames"]
    preds = {stamp(m): bag_io.depth_msg_to_array(m) for m in read_topic(out / "output_bag", "/depth/image")}
    gts = {stamp(m): bag_io.depth_msg_to_array(m) for m in read_topic(bag, "/kitti/camera_color_left/depth_gt")}
    assert len(preds) == 2  # frames 0 and 1 ran; frame 2 had no scan and was not played
    assert_same_metrics(frame, to_kitti_units(depth_metrics(preds[frame["stamp_ns"]], gts[frame["stamp_ns"]])))


def test_replay_at_recorded_timing(kitti_raw_dir: Path, tmp_path: Path) -> None:
    from test_kitti_to_bag import make_fake_drive

    drive = make_fake_drive(kitti_raw_dir, tmp_path / "kitti", n=3, gt_frames=(0, 1, 2))
    bag = tmp_path / "drive"
    convert(discover_kitti(drive), bag)  # frames 1 s apart
    out = tmp_path / "out"
    result = replay(ReplayOptions(bag=bag, output=out, backend="nearest", rate=2.0, figures=False, progress=False))
    assert result.report["n_frames"] == 3 and result.report["skipped"] == {}
    with Reader(out / "output_bag") as reader:
        conns = [c for c in reader.connections if c.topic == "/depth/image"]
        times = [t for _, t, _ in reader.messages(connections=conns)]
    assert len(times) == 3
    # played at twice the recorded speed: outputs about 0.5 s apart, not back to back
    assert (times[-1] - times[0]) / 1e9 > 0.7
    assert all(f["latency_ms"] > 0 for f in result.report["frames"])


def test_replay_with_the_shipped_kitti_config(kitti_raw_dir: Path, tmp_path: Path) -> None:
    from depth_diffusion_ros.evaluation.metrics import garg_crop_mask

    config = Path(__file__).resolve().parents[1] / "config" / "kitti.yaml"
    if not config.is_file():
        pytest.skip("config/kitti.yaml not in this checkout")
    bag = tmp_path / "kitti"
    convert(discover_kitti(kitti_raw_dir), bag)
    out = tmp_path / "out"
    result = replay(ReplayOptions(bag=bag, output=out, params_file=config, figures=False, progress=False))
    report = result.report
    assert report["n_frames"] == 1, report
    assert report["meta"]["calibration"] == "bag /tf_static"
    eval_params = report["meta"]["parameters"]["depth_evaluation_node"]
    (pred_msg,) = read_topic(out / "output_bag", "/depth/image")
    (gt_msg,) = read_topic(bag, "/kitti/camera_color_left/depth_gt")
    pred, gt = bag_io.depth_msg_to_array(pred_msg), bag_io.depth_msg_to_array(gt_msg)
    crop = garg_crop_mask(*gt.shape) if eval_params.get("crop") == "garg" else None
    expected = depth_metrics(pred, gt, crop, min_depth=eval_params.get("min_depth", 1e-3),
                             max_depth=eval_params.get("max_depth") or None)
    assert_same_metrics(report["frames"][0], to_kitti_units(expected))
