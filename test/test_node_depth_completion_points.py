"""depth_completion_node with ``input: points`` (real KITTI Velodyne scan + T_camera_lidar), as
separate processes: one at the input size, one with a processing size of 621x188 (namespace
``/half``). Bad PointCloud2 input is counted and reported, and the next frame is answered.
"""
from __future__ import annotations

import itertools

import cv2

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray
from sensor_msgs.msg import CameraInfo, Image, PointCloud2, PointField

from depth_diffusion_ros.geometry.projection import project_lidar_to_depth
from depth_diffusion_ros.nodes.health import WARN
from depth_diffusion_ros.ros import camera_info_to_intrinsics, depth_from_image, pointcloud2_to_xyz

from node_harness import KittiFrame, NodeProcess, RosClient, find_diagnostic

pytestmark = pytest.mark.ros

MODULE = "depth_diffusion_ros.nodes.depth_completion_node"
LIDAR_LAG = 0.02  # the scan is stamped 20 ms after the image: approximate sync within sync_slop
_stamps = itertools.count(2000)


def next_stamp() -> float:
    return float(next(_stamps))


class Endpoint:
    """Publishers/subscriptions of one node instance (namespace ``ns``)."""

    def __init__(self, client: RosClient, ns: str) -> None:
        self.client = client
        self.pub_image = client.publisher(Image, f"{ns}/image")
        self.pub_info = client.publisher(CameraInfo, f"{ns}/camera_info")
        self.pub_points = client.publisher(PointCloud2, f"{ns}/points")
        self.depth = client.subscribe(Image, f"{ns}/depth/image")
        self.info = client.subscribe(CameraInfo, f"{ns}/depth/camera_info")
        self.cloud = client.subscribe(PointCloud2, f"{ns}/depth/points")
        self.diag = client.subscribe(DiagnosticArray, f"{ns}/diagnostics")
        self.pubs = [self.pub_image, self.pub_info, self.pub_points]
        self.subs = [self.depth, self.info, self.cloud, self.diag]

    def publish(self, frame: KittiFrame, t: float, points=None) -> None:
        self.pub_image.publish(frame.image(t))
        self.pub_info.publish(frame.camera_info(t))
        self.pub_points.publish(points if points is not None else frame.points(t + LIDAR_LAG))

    def answer(self, t: float, timeout: float = 30.0):
        key = (int(t), 0)

        def find(box):
            return next((m for m in box.messages if (m.header.stamp.sec, m.header.stamp.nanosec) == key), None)

        depth = self.client.wait_for(lambda: find(self.depth), timeout, f"depth/image {t}")
        info = self.client.wait_for(lambda: find(self.info), 10, f"depth/camera_info {t}")
        cloud = self.client.wait_for(lambda: find(self.cloud), 10, f"depth/points {t}")
        return depth, info, cloud


@pytest.fixture(scope="module")
def rig(kitti_raw_dir):
    frame = KittiFrame(kitti_raw_dir)
    common = {"backend": "ip_basic", "input": "points", "T_camera_lidar": frame.T_camera_lidar_param,
              "reliability": "reliable", "diagnostics_period": 0.25, "log_throttle": 0.0, "sync_slop": 0.05}
    procs = [NodeProcess(MODULE, common),
             NodeProcess(MODULE, dict(common, processing_width=621, processing_height=188),
                         extra_args=["-r", "__ns:=/half"])]
    client = RosClient("points_test_client")
    try:
        full, half = Endpoint(client, ""), Endpoint(client, "/half")
        client.wait_matched(full.pubs + half.pubs, full.subs + half.subs, timeout=60)
        for ep in (full, half):  # warm up until discovery matched both ways
            for _ in range(10):
                t = next_stamp()
                ep.publish(frame, t)
                try:
                    ep.answer(t, timeout=5)
                    break
                except AssertionError:
                    continue
        yield frame, full, half, procs
    finally:
        client.destroy()
        for p in procs:
            p.cleanup()


def _check_cloud_unprojects(cloud: PointCloud2, depth: np.ndarray, intr) -> None:
    assert (cloud.height, cloud.width) == depth.shape and not cloud.is_dense
    assert [f.name for f in cloud.fields] == ["x", "y", "z", "rgb"]
    assert all(f.datatype == PointField.FLOAT32 for f in cloud.fields)
    rec = np.frombuffer(bytes(cloud.data), dtype=np.dtype(
        {"names": ["x", "y", "z"], "formats": ["<f4"] * 3, "offsets": [0, 4, 8], "itemsize": cloud.point_step}))
    rec = rec.reshape(depth.shape)
    valid = depth > 0
    np.testing.assert_array_equal(rec["z"][valid], depth[valid])
    u = np.broadcast_to(np.arange(depth.shape[1], dtype=np.float64)[None, :], depth.shape)
    np.testing.assert_allclose(rec["x"][valid], ((u - intr.cx) * depth / intr.fx)[valid], rtol=1e-5, atol=1e-5)
    assert np.isnan(rec["x"][~valid]).all()


def test_points_input_real_kitti_scan(rig):
    frame, full, _, _ = rig
    t = next_stamp()
    full.publish(frame, t)
    depth_msg, info, cloud = full.answer(t)
    assert depth_msg.encoding == "32FC1" and depth_msg.header.frame_id == KittiFrame.CAMERA_FRAME
    assert (depth_msg.header.stamp.sec, depth_msg.header.stamp.nanosec) == (int(t), 0)  # the image's stamp
    depth = depth_from_image(depth_msg)
    assert depth.shape == (375, 1242)
    gt_valid = frame.gt > 0
    assert (depth[gt_valid] > 0).mean() > 0.99
    mae = np.abs(depth[gt_valid] - frame.gt[gt_valid]).mean()
    assert mae < 1.0, f"MAE {mae:.3f} m against KITTI ground truth"
    # the node projected the scan itself: where the projected scan has a return, the completed
    # depth is close to it (IP-Basic smooths, so not exact)
    sparse = project_lidar_to_depth(frame.scan, frame.calib.T_camera_lidar, frame.intrinsics)
    hit = sparse > 0
    assert np.median(np.abs(depth[hit] - sparse[hit])) < 0.1
    assert camera_info_to_intrinsics(info) == frame.intrinsics
    _check_cloud_unprojects(cloud, depth, frame.intrinsics)


def test_processing_size_rescales_intrinsics(rig):
    frame, _, half, _ = rig
    t = next_stamp()
    half.publish(frame, t)
    depth_msg, info, cloud = half.answer(t)
    depth = depth_from_image(depth_msg)
    assert depth.shape == (188, 621) and depth_msg.header.frame_id == KittiFrame.CAMERA_FRAME
    intr = camera_info_to_intrinsics(info)
    assert intr == frame.intrinsics.scaled(621, 188)
    assert intr.fx == pytest.approx(721.5377 / 2, rel=1e-3)
    _check_cloud_unprojects(cloud, depth, intr)
    # same scene as at full size: compare with the full-size ground truth, subsampled
    gt_small = cv2.resize(frame.gt, (621, 188), interpolation=cv2.INTER_NEAREST)
    both = (gt_small > 0) & (depth > 0)
    assert both.sum() > 5000 and np.median(np.abs(depth[both] - gt_small[both])) < 0.5


def _expect(ep: Endpoint, proc: NodeProcess, reason: str, text: str) -> None:
    proc.wait_for_log(rf"dropped \d+: {reason}: .*{text}", timeout=20, spin=lambda: ep.client.spin_for(0.05))
    ep.client.wait_for(lambda: find_diagnostic(ep.diag.messages, WARN, f"drops_{reason}", 1, reason),
                       timeout=10, what=f"WARN diagnostics with drops_{reason}")


def test_empty_pointcloud(rig):
    frame, full, _, procs = rig
    t = next_stamp()
    full.publish(frame, t, points=frame.points(t, scan=np.zeros((0, 4), np.float32)))
    _expect(full, procs[0], "empty_points", "no finite points")
    t = next_stamp()
    full.publish(frame, t)
    full.answer(t)


def test_malformed_pointcloud(rig):
    frame, full, _, procs = rig
    t = next_stamp()
    bad = frame.points(t)
    bad.fields = [f for f in bad.fields if f.name != "z"]
    full.publish(frame, t, points=bad)
    _expect(full, procs[0], "malformed_points", "PointCloud2 has no z field")
    t = next_stamp()
    bad = frame.points(t)
    bad.row_step = 8
    full.publish(frame, t, points=bad)
    _expect(full, procs[0], "malformed_points", "row_step 8 is smaller")
    t = next_stamp()
    full.publish(frame, t)
    depth_msg, _, _ = full.answer(t)
    assert np.count_nonzero(depth_from_image(depth_msg)) > 100_000


def test_scan_behind_the_camera(rig):
    """A scan whose points all fall outside the image (e.g. wrong extrinsics) is reported."""
    frame, full, _, procs = rig
    t = next_stamp()
    behind = frame.scan.copy()
    behind[:, 0] = -np.abs(behind[:, 0])  # everything behind the car
    full.publish(frame, t, points=frame.points(t, scan=behind))
    _expect(full, procs[0], "empty_sparse_depth", "no LiDAR point projects into the image")
    assert pointcloud2_to_xyz(frame.points(t, scan=behind)).shape[0] == behind.shape[0]
    t = next_stamp()
    full.publish(frame, t)
    full.answer(t)
