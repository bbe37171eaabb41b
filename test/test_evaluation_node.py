"""depth_evaluation_node: a real rclpy node over loopback DDS, scoring real KITTI frames."""
from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import rclpy
from rclpy.context import Context
from rclpy.executors import MultiThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, Image, PointCloud2, PointField
from std_msgs.msg import Header, String

from depth_diffusion_ros.evaluation.metrics import depth_metrics, to_kitti_units
from depth_diffusion_ros.evaluation.report import load_report
from depth_diffusion_ros.geometry.calibration import read_kitti_raw_calib, read_velodyne_bin
from depth_diffusion_ros.geometry.depth_codecs import read_kitti_depth_png
from depth_diffusion_ros.geometry.projection import project_lidar_to_depth
from depth_diffusion_ros.nodes.depth_evaluation_node import DepthEvaluationNode
from depth_diffusion_ros.ros import depth_to_image, intrinsics_to_camera_info

RELIABLE = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)


class Harness:
    """An rclpy context with the evaluation node and a test node that publishes and listens."""

    def __init__(self, **params) -> None:
        self.ctx = Context()
        rclpy.init(context=self.ctx)
        overrides = [Parameter("reliability", value="reliable")] + [Parameter(k, value=v) for k, v in params.items()]
        self.node = DepthEvaluationNode(context=self.ctx, parameter_overrides=overrides)
        self.io = Node("eval_test_io", context=self.ctx)
        self.pub_pred = self.io.create_publisher(Image, "depth/image", RELIABLE)
        self.pub_gt = self.io.create_publisher(Image, "depth_gt", RELIABLE)
        self.pub_points = self.io.create_publisher(PointCloud2, "points_holdout", RELIABLE)
        self.pub_info = self.io.create_publisher(CameraInfo, "camera_info", RELIABLE)
        self.events: list[dict] = []
        self.io.create_subscription(String, "evaluation/metrics", lambda m: self.events.append(json.loads(m.data)), RELIABLE)
        self.executor = MultiThreadedExecutor(num_threads=2, context=self.ctx)
        self.executor.add_node(self.node)
        self.executor.add_node(self.io)
        self.thread = threading.Thread(target=self.executor.spin, daemon=True)
        self.thread.start()

    def wait_matched(self, *pubs, timeout: float = 10.0) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if all(p.get_subscription_count() > 0 for p in pubs) and self.io.count_publishers("evaluation/metrics") > 0:
                return
            time.sleep(0.02)
        raise TimeoutError("DDS discovery did not match the test publishers")

    def wait_events(self, n: int, timeout: float = 20.0) -> list[dict]:
        end = time.monotonic() + timeout
        while len(self.events) < n and time.monotonic() < end:
            time.sleep(0.02)
        assert len(self.events) >= n, f"got {len(self.events)} metrics messages, expected {n}: {self.events}"
        return self.events

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()
        self.io.destroy_node()
        rclpy.shutdown(context=self.ctx)
        self.thread.join(timeout=5)


def header(stamp_ns: int, frame: str = "camera_color_left") -> Header:
    h = Header(frame_id=frame)
    h.stamp.sec, h.stamp.nanosec = divmod(stamp_ns, 1_000_000_000)
    return h


def xyz_cloud(points: np.ndarray, stamp_ns: int) -> PointCloud2:
    pts = np.ascontiguousarray(points[:, :3], dtype="<f4")
    return PointCloud2(
        header=header(stamp_ns, "velo_link"), height=1, width=len(pts),
        fields=[PointField(name=n, offset=4 * i, datatype=PointField.FLOAT32, count=1) for i, n in enumerate("xyz")],
        is_bigendian=False, point_step=12, row_step=12 * len(pts), data=pts.tobytes(), is_dense=True,
    )


@pytest.fixture(scope="module")
def kitti_frame(kitti_raw_dir: Path):
    gt = read_kitti_depth_png(kitti_raw_dir / "depth_completion/groundtruth_image_02.png")
    sparse = read_kitti_depth_png(kitti_raw_dir / "depth_completion/velodyne_raw_image_02.png")
    calib = read_kitti_raw_calib(kitti_raw_dir / "raw/calib_cam_to_cam.txt", kitti_raw_dir / "raw/calib_velo_to_cam.txt", 2)
    points = read_velodyne_bin(kitti_raw_dir / "raw/lidar_data.bin")
    # a prediction with a known error: the real GT scaled by 1.05, holes filled with 20 m
    pred = np.where(gt > 0, gt * 1.05, 20.0).astype(np.float32)
    return gt, sparse, calib, points, pred


def test_depth_ground_truth_scores_equal_direct_metrics(kitti_frame, tmp_path: Path) -> None:
    gt, _, _, _, pred = kitti_frame
    report_path = tmp_path / "report.json"
    h = Harness(report_path=str(report_path), flush_every=1000)  # so only the shutdown writes it
    try:
        h.wait_matched(h.pub_pred, h.pub_gt)
        h.pub_gt.publish(depth_to_image(gt, header(1_000_000_000)))
        h.pub_pred.publish(depth_to_image(pred, header(1_000_000_000)))
        # a ground truth of another size is counted, not scored
        h.pub_gt.publish(depth_to_image(gt[:100, :200], header(2_000_000_000)))
        h.pub_pred.publish(depth_to_image(pred, header(2_000_000_000)))
        # an all-empty ground truth has nothing to score
        h.pub_gt.publish(depth_to_image(np.zeros_like(gt), header(3_000_000_000)))
        h.pub_pred.publish(depth_to_image(pred, header(3_000_000_000)))
        events = h.wait_events(3)
        assert not report_path.exists()
    finally:
        h.close()
    frame = [e for e in events if e["event"] == "frame"]
    skips = [e for e in events if e["event"] == "skip"]
    assert len(frame) == 1 and frame[0]["stamp_ns"] == 1_000_000_000
    expected = to_kitti_units(depth_metrics(pred, gt))
    for key, value in expected.items():
        assert frame[0]["frame"][key] == pytest.approx(value, rel=1e-9), key
    assert expected["abs_rel"] == pytest.approx(0.05, rel=1e-4)  # the injected 5 % scale error
    assert sorted(e["reason"] for e in skips) == ["gt_size_mismatch", "no_valid_gt"]
    report = load_report(report_path)  # written when the node shut down
    assert report["n_frames"] == 1
    assert report["skipped"] == {"gt_size_mismatch": 1, "no_valid_gt": 1}
    assert report["mean"]["rmse_mm"] == pytest.approx(expected["rmse_mm"])
    assert report["meta"]["ground_truth"] == "depth"


def test_held_out_points_scored_through_the_one_projection(kitti_frame, tmp_path: Path) -> None:
    gt, _, calib, points, pred = kitti_frame
    T = calib.T_camera_lidar
    held = points[::10]
    h = Harness(ground_truth="points", T_camera_lidar=[float(v) for v in T.reshape(-1)], sync_slop=0.05)
    try:
        h.wait_matched(h.pub_pred, h.pub_points, h.pub_info)
        info = intrinsics_to_camera_info(calib.intrinsics, header(1_000_000_000))
        h.pub_info.publish(info)
        time.sleep(0.3)
        # LiDAR and camera stamps differ by 20 ms, within sync_slop
        h.pub_points.publish(xyz_cloud(held, 980_000_000))
        h.pub_pred.publish(depth_to_image(pred, header(1_000_000_000)))
        events = h.wait_events(1)
    finally:
        h.close()
    (ev,) = [e for e in events if e["event"] == "frame"]
    gt_points = project_lidar_to_depth(held[:, :3], T, calib.intrinsics)
    expected = to_kitti_units(depth_metrics(pred, gt_points))
    assert ev["frame"]["n_valid"] == expected["n_valid"] > 1000
    assert ev["frame"]["rmse_mm"] == pytest.approx(expected["rmse_mm"], rel=1e-6)
    assert ev["frame"]["delta1"] == pytest.approx(expected["delta1"], rel=1e-9)


def test_each_frame_is_projected_with_its_own_camera_info(kitti_frame, tmp_path: Path) -> None:
    """KITTI object bags carry one calibration per frame: frame 1 must be scored with frame 1's
    camera_info even when frame 2's has already arrived (the node once used the latest only)."""
    _, _, calib, points, pred = kitti_frame
    T = calib.T_camera_lidar
    held = points[::10]
    second = type(calib.intrinsics)(calib.intrinsics.fx * 1.1, calib.intrinsics.fy * 1.1, calib.intrinsics.cx - 60,
                                    calib.intrinsics.cy + 20, calib.intrinsics.width, calib.intrinsics.height)
    h = Harness(ground_truth="points", T_camera_lidar=[float(v) for v in T.reshape(-1)], sync_slop=0.05)
    try:
        h.wait_matched(h.pub_pred, h.pub_points, h.pub_info)
        h.pub_info.publish(intrinsics_to_camera_info(calib.intrinsics, header(1_000_000_000)))
        h.pub_info.publish(intrinsics_to_camera_info(second, header(2_000_000_000)))
        time.sleep(0.3)
        h.pub_points.publish(xyz_cloud(held, 1_000_000_000))
        h.pub_points.publish(xyz_cloud(held, 2_000_000_000))
        time.sleep(0.2)
        h.pub_pred.publish(depth_to_image(pred, header(1_000_000_000)))
        h.pub_pred.publish(depth_to_image(pred, header(2_000_000_000)))
        events = h.wait_events(2)
    finally:
        h.close()
    frames = {e["stamp_ns"]: e["frame"] for e in events if e["event"] == "frame"}
    for stamp, intrinsics in ((1_000_000_000, calib.intrinsics), (2_000_000_000, second)):
        expected = to_kitti_units(depth_metrics(pred, project_lidar_to_depth(held[:, :3], T, intrinsics)))
        assert frames[stamp]["n_valid"] == expected["n_valid"], stamp
        assert frames[stamp]["rmse_mm"] == pytest.approx(expected["rmse_mm"], rel=1e-6), stamp
    assert frames[1_000_000_000]["rmse_mm"] != pytest.approx(frames[2_000_000_000]["rmse_mm"], rel=1e-3)


def test_bad_parameters_are_rejected_with_their_names() -> None:
    ctx = Context()
    rclpy.init(context=ctx)
    try:
        with pytest.raises(ValueError, match="ground_truth"):
            DepthEvaluationNode(context=ctx, parameter_overrides=[Parameter("ground_truth", value="lidar")])
        with pytest.raises(ValueError, match="T_camera_lidar"):
            DepthEvaluationNode(context=ctx, parameter_overrides=[Parameter("ground_truth", value="points")])
        with pytest.raises(ValueError, match="crop"):
            DepthEvaluationNode(context=ctx, parameter_overrides=[Parameter("crop", value="square")])
    finally:
        rclpy.shutdown(context=ctx)


def test_unwritable_report_path_keeps_the_node_scoring(kitti_frame, tmp_path: Path) -> None:
    gt, _, _, _, pred = kitti_frame
    (tmp_path / "afile").write_text("not a folder")
    h = Harness(report_path=str(tmp_path / "afile" / "report.json"))
    try:
        h.wait_matched(h.pub_pred, h.pub_gt)
        for i in (1, 2):
            h.pub_gt.publish(depth_to_image(gt, header(i * 1_000_000_000)))
            h.pub_pred.publish(depth_to_image(pred, header(i * 1_000_000_000)))
        events = h.wait_events(2)
        assert [e["event"] for e in events] == ["frame", "frame"]
        assert events[-1]["n_frames"] == 2
        assert h.node.report.path is None  # gave up on the file, still scoring
    finally:
        h.close()


def test_report_round_trip_mean_and_table(tmp_path: Path) -> None:
    from depth_diffusion_ros.evaluation.report import EvaluationReport, format_table

    gt = np.array([[2.0, 4.0], [0.0, 8.0]], np.float32)
    rep = EvaluationReport(tmp_path / "r.json", meta={"backend": "x"})
    rep.add_frame(1, depth_metrics(gt * 1.1, gt), latency_ms=10.0)
    rep.add_frame(2, depth_metrics(gt * 0.8, gt), latency_ms=30.0)
    rep.add_skip("no_output")
    data = load_report(tmp_path / "r.json")  # flushed on every change
    assert data["n_frames"] == 2 and data["skipped"] == {"no_output": 1}
    assert data["mean"]["abs_rel"] == pytest.approx((0.1 + 0.2) / 2)
    assert data["mean"]["latency_ms"] == pytest.approx(20.0)
    assert data["mean"]["n_valid"] == 6
    again = EvaluationReport.from_dict(data)
    assert again.mean()["rmse_mm"] == pytest.approx(data["mean"]["rmse_mm"])
    table = format_table([{"backend": "x", **data["mean"]}], [("backend", "backend")])
    assert table.splitlines()[0].split()[:3] == ["backend", "RMSE", "mm"]
    assert f"{data['mean']['rmse_mm']:.1f}" in table


def test_node_process_writes_report_on_sigint_and_rejects_bad_parameters(tmp_path: Path) -> None:
    import os
    import signal
    import subprocess
    import sys

    cmd = [sys.executable, "-m", "depth_diffusion_ros.nodes.depth_evaluation_node", "--ros-args"]
    bad = subprocess.run(cmd + ["-p", "ground_truth:=bogus"], capture_output=True, text=True, timeout=60,
                         env=os.environ.copy())
    assert bad.returncode == 2 and "ground_truth" in bad.stderr
    report = tmp_path / "live.json"
    proc = subprocess.Popen(cmd + ["-p", f"report_path:={report}"], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=os.environ.copy())
    try:
        line = ""
        while "scoring depth/image" not in line:  # started
            line = proc.stdout.readline()
            assert line, "node exited early"
        time.sleep(1.0)  # spinning (a SIGINT inside the constructor stops it before there is a node)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    data = load_report(report)
    assert data["n_frames"] == 0 and data["meta"]["ground_truth"] == "depth"
