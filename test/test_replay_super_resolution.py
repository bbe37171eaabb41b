"""replay --pipeline super_resolution: a bag made from shared-data NYU frames (LR depth = the GT
block-averaged by 8) through the real depth_super_resolution_node over loopback DDS, scored by the
same depth_evaluation_node; the report must equal the metrics computed here, directly, on the
node's recorded depth/image against the bag's ground truth."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from rosbags.rosbag2 import Reader
from rosbags.typesys import Stores, get_typestore

from depth_diffusion_ros.cli import main as cli_main
from depth_diffusion_ros.evaluation.metrics import depth_metrics, mean_metrics, to_kitti_units
from depth_diffusion_ros.evaluation.report import load_report
from depth_diffusion_ros.tools import bag_io
from depth_diffusion_ros.tools.demo import block_average_depth, nyu_frames, write_sr_bag
from depth_diffusion_ros.tools.replay import ReplayError, ReplayOptions, replay

TS = get_typestore(Stores.ROS2_HUMBLE)
METRIC_KEYS = ("rmse_mm", "mae_mm", "irmse_1_km", "imae_1_km", "abs_rel", "delta1", "delta2", "delta3", "n_valid")


def read_topic(bag: Path, topic: str) -> list:
    with Reader(bag) as reader:
        conns = [c for c in reader.connections if c.topic == topic]
        return [TS.deserialize_cdr(raw, c.msgtype) for c, _, raw in reader.messages(connections=conns)]


def test_block_average_depth_uses_valid_pixels_only() -> None:
    depth = np.zeros((4, 6), np.float32)
    depth[0, 0], depth[1, 1] = 2.0, 4.0  # block (0, 0): two valid pixels
    depth[2:4, 2:4] = 3.0  # block (1, 1): all valid
    depth[0, 4] = np.nan  # block (0, 2): NaN is invalid -> 0
    lr = block_average_depth(depth, 2)
    assert lr.shape == (2, 3) and lr.dtype == np.float32
    np.testing.assert_array_equal(lr, [[3.0, 0.0, 0.0], [0.0, 3.0, 0.0]])
    with pytest.raises(ValueError, match="not a multiple"):
        block_average_depth(np.zeros((5, 6), np.float32), 2)


def test_replay_super_resolution_report_matches_metrics_on_recorded_output(shared_data: Path, tmp_path: Path) -> None:
    frames = nyu_frames(shared_data / "nyu_depth_v2_metric3d")[:2]
    assert frames[0][0].shape == (480, 640, 3) and frames[0][1].shape == (480, 640)
    bag = write_sr_bag(tmp_path / "nyu_sr", frames, 8, "nyu")
    lrs = read_topic(bag, "/nyu/camera/depth_lr")
    assert [(m.width, m.height) for m in lrs] == [(80, 60), (80, 60)]
    np.testing.assert_allclose(bag_io.depth_msg_to_array(lrs[0]), block_average_depth(frames[0][1], 8), rtol=1e-6)

    out = tmp_path / "out"
    result = replay(ReplayOptions(bag=bag, output=out, backend="guided_filter", pipeline="super_resolution",
                                  progress=False, max_figures=1))
    report = load_report(out / "report.json")
    assert report["n_frames"] == 2 and report["skipped"] == {}, report
    meta = report["meta"]
    assert meta["pipeline"] == "super_resolution" and meta["nodes"] == ["depth_super_resolution_node",
                                                                         "depth_evaluation_node"]
    assert meta["topics"]["depth_lr"] == "/nyu/camera/depth_lr" and meta["ground_truth"] == "depth"
    assert meta["parameters"]["depth_super_resolution_node"]["use_depth_camera_info"] is True
    preds = read_topic(result.output_bag, "/depth/image")
    gts = read_topic(bag, "/nyu/camera/depth_gt")
    assert len(preds) == 2 and all((p.width, p.height, p.encoding) == (640, 480, "32FC1") for p in preds)
    expected = []
    for frame, pred, gt in zip(report["frames"], preds, gts):
        assert frame["stamp_ns"] == pred.header.stamp.sec * 10**9 + pred.header.stamp.nanosec
        e = to_kitti_units(depth_metrics(bag_io.depth_msg_to_array(pred), bag_io.depth_msg_to_array(gt)))
        for key in METRIC_KEYS:
            assert frame[key] == pytest.approx(e[key], rel=1e-6, abs=1e-9), key
        expected.append(e)
        assert frame["latency_ms"] > 0
    mean = mean_metrics(expected)
    assert report["mean"]["rmse_mm"] == pytest.approx(mean["rmse_mm"], rel=1e-6)
    # x8 super-resolution of a Kinect room: about 10 cm RMSE, far better than the LR block size suggests
    assert 30 < report["mean"]["rmse_mm"] < 300 and report["mean"]["delta1"] > 0.97
    assert (out / "figures" / "frame_000000.png").is_file() and not (out / "figures" / "frame_000001.png").exists()


def test_replay_super_resolution_cli_and_bad_input(shared_data: Path, tmp_path: Path, capsys) -> None:
    frames = nyu_frames(shared_data / "nyu_depth_v2_metric3d")[:1]
    bag = write_sr_bag(tmp_path / "nyu_sr", frames, 8, "nyu")
    rc = cli_main(["replay", str(bag), "--pipeline", "super_resolution", "--backend", "bicubic",
                   "--output", str(tmp_path / "cli"), "--no-figures"])
    text = capsys.readouterr().out
    assert rc == 0, text
    report = load_report(tmp_path / "cli" / "report.json")
    assert report["n_frames"] == 1 and report["meta"]["backend"] == "bicubic"
    assert f"{report['mean']['rmse_mm']:.1f}" in text
    # a completion bag (no depth_lr topic) is refused with a message naming what is missing
    from depth_diffusion_ros.tools.demo import write_motorcycle_bag

    completion_bag = write_motorcycle_bag(tmp_path / "mb", n_frames=1)
    with pytest.raises(ReplayError, match="depth_lr"):
        replay(ReplayOptions(bag=completion_bag, output=tmp_path / "bad", pipeline="super_resolution", progress=False))
    with pytest.raises(ReplayError, match="--pipeline"):
        replay(ReplayOptions(bag=bag, output=tmp_path / "bad2", pipeline="stereo", progress=False))
