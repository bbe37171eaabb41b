"""lidar_depth_projection_node as a separate process on the real KITTI Velodyne scan."""
from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray
from sensor_msgs.msg import CameraInfo, Image, PointCloud2

from depth_diffusion_ros.nodes.health import WARN
from depth_diffusion_ros.ros import depth_from_image, image_to_array

from node_harness import KittiFrame, NodeProcess, RosClient, find_diagnostic

pytestmark = pytest.mark.ros

MODULE = "depth_diffusion_ros.nodes.lidar_depth_projection_node"
_stamps = itertools.count(3000)


def next_stamp() -> float:
    return float(next(_stamps))


class Rig:
    def __init__(self, frame: KittiFrame) -> None:
        self.frame = frame
        self.proc = NodeProcess(MODULE, {
            "T_camera_lidar": frame.T_camera_lidar_param, "reliability": "reliable",
            "input_timeout": 1.0, "diagnostics_period": 0.25, "log_throttle": 0.0,
        })
        self.client = c = RosClient("projection_test_client")
        self.pub_points = c.publisher(PointCloud2, "points")
        self.pub_info = c.publisher(CameraInfo, "camera_info")
        self.sparse = c.subscribe(Image, "sparse_depth")
        self.diag = c.subscribe(DiagnosticArray, "diagnostics")
        c.wait_matched([self.pub_points, self.pub_info], [self.sparse, self.diag], timeout=60)

    def send(self, t: float, points=None, info=None, lag: float = 0.01) -> None:
        if points is not False:
            self.pub_points.publish(points if points is not None else self.frame.points(t + lag))
        if info is not False:
            self.pub_info.publish(info if info is not None else self.frame.camera_info(t))

    def answer(self, t: float, lag: float = 0.01, timeout: float = 30.0) -> Image:
        ns = int(round((t + lag - int(t + lag)) * 1e9))
        key = (int(t + lag), ns)
        return self.client.wait_for(
            lambda: next((m for m in self.sparse.messages if (m.header.stamp.sec, m.header.stamp.nanosec) == key), None),
            timeout, f"sparse_depth for scan stamp {t + lag}")

    def good(self) -> Image:
        t = next_stamp()
        self.send(t)
        return self.answer(t)

    def expect_drop(self, reason: str, text: str) -> None:
        self.proc.wait_for_log(rf"dropped \d+: {reason}: .*{text}", timeout=20, spin=lambda: self.client.spin_for(0.05))
        self.client.wait_for(lambda: find_diagnostic(self.diag.messages, WARN, f"drops_{reason}", 1, reason),
                             timeout=10, what=f"WARN diagnostics with drops_{reason}")


@pytest.fixture(scope="module")
def rig(kitti_raw_dir):
    r = Rig(KittiFrame(kitti_raw_dir))
    try:
        for _ in range(10):  # warm up until discovery matched both ways
            try:
                t = next_stamp()
                r.send(t)
                r.answer(t, timeout=5)
                break
            except AssertionError:
                continue
        yield r
    finally:
        r.client.destroy()
        r.proc.cleanup()


def _agreement(ours: np.ndarray, ref: np.ndarray, tol_m: float) -> tuple[float, float]:
    """Fraction of our returns with a reference return within +-1 px and tol_m, and the median
    depth difference where both maps have a return on the same pixel."""
    h, w = ref.shape
    ys, xs = np.nonzero(ours)
    best = np.full(ys.shape, np.inf)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            r = ref[np.clip(ys + dy, 0, h - 1), np.clip(xs + dx, 0, w - 1)]
            best = np.minimum(best, np.where(r > 0, np.abs(r - ours[ys, xs]), np.inf))
    co = (ours > 0) & (ref > 0)
    return float((best < tol_m).mean()), float(np.median(np.abs(ours - ref)[co]))


def test_sparse_depth_agrees_with_kitti_velodyne_raw(rig):
    t = next_stamp()
    rig.send(t, lag=0.03)
    msg = rig.answer(t, lag=0.03)
    assert msg.encoding == "32FC1" and (msg.width, msg.height) == (1242, 375)
    assert msg.header.frame_id == KittiFrame.CAMERA_FRAME  # the camera_info frame
    raw = image_to_array(msg)
    ours = depth_from_image(msg)
    assert np.isnan(raw[ours == 0]).all()
    ref = rig.frame.sparse
    n_ours, n_ref = np.count_nonzero(ours), np.count_nonzero(ref)
    assert abs(n_ours - n_ref) < 0.05 * n_ref, (n_ours, n_ref)
    within_1px, median_same_px = _agreement(ours, ref, tol_m=0.2)
    assert within_1px > 0.6 and median_same_px < 0.1, (within_1px, median_same_px)
    assert 1.0 < ours[ours > 0].min() and ours.max() < 100.0


def test_malformed_pointcloud(rig):
    t = next_stamp()
    bad = rig.frame.points(t + 0.01)
    bad.fields[0].datatype = 2  # x as UINT8
    rig.send(t, points=bad)
    rig.expect_drop("malformed_points", "field 'x' has datatype 2")
    rig.good()


def test_empty_pointcloud(rig):
    t = next_stamp()
    rig.send(t, points=rig.frame.points(t + 0.01, scan=np.zeros((0, 4), np.float32)))
    rig.expect_drop("empty_points", "no finite points")
    rig.good()


def test_non_finite_intrinsics(rig):
    t = next_stamp()
    p = rig.frame.calib.P_rect.reshape(-1).copy()
    p[5] = math.inf
    rig.send(t, info=rig.frame.camera_info(t, p_override=p))
    rig.expect_drop("non_finite_intrinsics", "non-finite intrinsics")
    rig.good()


def test_no_point_inside_the_image(rig):
    t = next_stamp()
    behind = rig.frame.scan.copy()
    behind[:, 0] = -np.abs(behind[:, 0])
    rig.send(t, points=rig.frame.points(t + 0.01, scan=behind))
    rig.expect_drop("no_points_in_image", "check T_camera_lidar")
    rig.good()


def test_missing_camera_info(rig):
    t = next_stamp()
    rig.send(t, info=False)
    rig.expect_drop("missing_camera_info", "no camera_info received")
    rig.good()


def test_scan_out_of_sync_beyond_slop(rig):
    t = next_stamp()
    rig.send(t, lag=0.3)  # default sync_slop 0.05 s
    rig.expect_drop("unsynchronized", "found no partner within sync_slop 0.050 s")
    rig.good()


def _quaternion(R: np.ndarray) -> tuple[float, float, float, float]:  # noqa: N803
    """(x, y, z, w) of a rotation matrix (Shepperd's method), for the tf2 test."""
    tr = np.trace(R)
    if tr > 0:
        s = 2.0 * math.sqrt(tr + 1.0)
        return ((R[2, 1] - R[1, 2]) / s, (R[0, 2] - R[2, 0]) / s, (R[1, 0] - R[0, 1]) / s, 0.25 * s)
    i = int(np.argmax(np.diag(R)))
    j, k = (i + 1) % 3, (i + 2) % 3
    s = 2.0 * math.sqrt(1.0 + R[i, i] - R[j, j] - R[k, k])
    q = [0.0, 0.0, 0.0, (R[k, j] - R[j, k]) / s]
    q[i] = 0.25 * s
    q[j] = (R[j, i] + R[i, j]) / s
    q[k] = (R[k, i] + R[i, k]) / s
    return tuple(q)


def test_use_tf_gives_the_same_sparse_depth_as_the_parameter(kitti_raw_dir):
    """With tf2 (real ROS installs only): T_camera_lidar from /tf_static instead of the parameter."""
    pytest.importorskip("tf2_ros", reason="tf2_ros is not importable here (no ROS install)")
    tf2_msgs = pytest.importorskip("tf2_msgs.msg")
    from geometry_msgs.msg import TransformStamped
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

    frame = KittiFrame(kitti_raw_dir)
    proc = NodeProcess(MODULE, {"use_tf": True, "reliability": "reliable"})
    client = RosClient("projection_tf_client")
    try:
        static = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
        pub_tf = client.publisher(tf2_msgs.TFMessage, "/tf_static", static)
        pub_points = client.publisher(PointCloud2, "points")
        pub_info = client.publisher(CameraInfo, "camera_info")
        sparse = client.subscribe(Image, "sparse_depth")
        T = frame.calib.T_camera_lidar
        tf = TransformStamped()
        tf.header.frame_id, tf.child_frame_id = KittiFrame.CAMERA_FRAME, KittiFrame.LIDAR_FRAME
        tf.transform.translation.x, tf.transform.translation.y, tf.transform.translation.z = (float(v) for v in T[:3, 3])
        q = _quaternion(T[:3, :3])
        r = tf.transform.rotation
        r.x, r.y, r.z, r.w = (float(v) for v in q)
        pub_tf.publish(tf2_msgs.TFMessage(transforms=[tf]))
        client.wait_matched([pub_points, pub_info], [sparse], timeout=60)
        for k in range(10):
            t = 3900.0 + k
            pub_points.publish(frame.points(t))
            pub_info.publish(frame.camera_info(t))
            try:
                client.wait_for(lambda: sparse.messages, timeout=5, what="sparse_depth")
                break
            except AssertionError:
                continue
        ours = depth_from_image(sparse.messages[0])
        from depth_diffusion_ros.geometry.projection import project_lidar_to_depth

        expected = project_lidar_to_depth(frame.scan, T, frame.intrinsics)
        assert np.count_nonzero(ours) > 15000
        np.testing.assert_allclose(ours, expected, atol=1e-3)
    finally:
        client.destroy()
        proc.cleanup()


def test_quaternion_helper_round_trips_the_kitti_rotation(kitti_raw_dir):
    """The helper of the tf2 test agrees with ros.transform_msg_to_matrix (runs everywhere)."""
    from geometry_msgs.msg import Quaternion, Transform

    from depth_diffusion_ros.ros import transform_msg_to_matrix

    T = KittiFrame(kitti_raw_dir).calib.T_camera_lidar
    for R in (T[:3, :3], np.diag([1.0, -1.0, -1.0]), np.diag([-1.0, 1.0, -1.0])):
        x, y, z, w = _quaternion(R)
        back = transform_msg_to_matrix(Transform(rotation=Quaternion(x=x, y=y, z=z, w=w)))
        np.testing.assert_allclose(back[:3, :3], R, atol=1e-6)
