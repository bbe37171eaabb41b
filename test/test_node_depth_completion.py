"""depth_completion_node (backend ip_basic, input sparse_depth) as a separate process.

One node process serves the whole module; the test process publishes the real KITTI frame
(cam_02 + CameraInfo from P_rect_02 + velodyne_raw_image_02 as sparse_depth) over loopback DDS
and checks the outputs. Every bad-input test checks the node's log line, its diagnostics
(WARN + drop counter) and then that the next good frame is still answered.
"""
from __future__ import annotations

import itertools
import math
import signal

import numpy as np
import pytest
from sensor_msgs.msg import CameraInfo, Image

from depth_diffusion_ros.geometry.pointcloud import unpack_rgb
from depth_diffusion_ros.nodes.health import WARN
from depth_diffusion_ros.ros import camera_info_to_intrinsics, depth_from_image, image_to_array

from node_harness import DepthNodeRig, KittiFrame, diagnostic_values, find_diagnostic

pytestmark = pytest.mark.ros

MODULE = "depth_diffusion_ros.nodes.depth_completion_node"
_stamps = itertools.count(1000)


def next_stamp() -> float:
    return float(next(_stamps)) + 0.25


class Rig(DepthNodeRig):
    def __init__(self, frame: KittiFrame, **params) -> None:
        self.frame = frame
        super().__init__(MODULE, {
            "backend": "ip_basic", "input": "sparse_depth", "reliability": "reliable",
            "input_timeout": 1.0, "diagnostics_period": 0.25, "sync_slop": 0.05,
            "log_throttle": 0.0,  # every problem logged; test_log_lines_are_throttled sets it
            **params,
        }, "completion_test_client", [(Image, "image"), (CameraInfo, "camera_info"), (Image, "sparse_depth")])

    def send_good(self, encoding: str = "32FC1", timeout: float = 30.0) -> tuple[float, Image]:
        """Publish the good KITTI frame and return its stamp and the depth/image answer."""
        t = next_stamp()
        f = self.frame
        self.publish(f.image(t), f.camera_info(t), f.sparse_image(t, encoding))
        return t, self.wait_depth(t, timeout)


@pytest.fixture(scope="module")
def rig(kitti_raw_dir):
    yield from Rig(KittiFrame(kitti_raw_dir)).serve()


def test_answers_real_kitti_frame(rig):
    f = rig.frame
    t, depth_msg = rig.send_good()
    # depth/image: 32FC1 in the RGB frame with the RGB stamp
    assert depth_msg.encoding == "32FC1" and (depth_msg.width, depth_msg.height) == (1242, 375)
    assert depth_msg.header.frame_id == KittiFrame.CAMERA_FRAME
    assert depth_msg.header.stamp.sec == int(t) and depth_msg.header.stamp.nanosec == 250_000_000
    raw = image_to_array(depth_msg)
    depth = depth_from_image(depth_msg)
    assert np.all(np.isnan(raw[depth == 0])), "invalid pixels must be NaN on the wire"
    # IP-Basic fills the LiDAR field of view: compare against KITTI DC's semi-dense ground truth
    gt_valid = f.gt > 0
    assert (depth[gt_valid] > 0).mean() > 0.99
    mae = np.abs(depth[gt_valid] - f.gt[gt_valid]).mean()
    assert mae < 1.0, f"IP-Basic MAE against KITTI ground truth {mae:.3f} m"
    # camera_info of the depth image = the input intrinsics (no processing size set)
    info = rig.client.wait_for(lambda: next((m for m in rig.info.messages if m.header.stamp == depth_msg.header.stamp), None))
    assert camera_info_to_intrinsics(info) == f.intrinsics
    np.testing.assert_allclose(info.p, f.calib.P_rect.reshape(-1))
    # organised point cloud with colours that unprojects to the depth image
    cloud = rig.client.wait_for(lambda: next((m for m in rig.points.messages if m.header.stamp == depth_msg.header.stamp), None))
    assert (cloud.height, cloud.width, cloud.point_step) == (375, 1242, 32) and not cloud.is_dense
    assert cloud.header.frame_id == KittiFrame.CAMERA_FRAME
    rec = np.frombuffer(bytes(cloud.data), dtype=np.dtype(
        {"names": ["x", "y", "z", "rgb"], "formats": ["<f4"] * 4, "offsets": [0, 4, 8, 16], "itemsize": 32})).reshape(375, 1242)
    valid = depth > 0
    np.testing.assert_array_equal(rec["z"][valid], depth[valid])
    assert np.isnan(rec["z"][~valid]).all()
    K = f.intrinsics
    u = np.broadcast_to(np.arange(1242, dtype=np.float64)[None, :], depth.shape)
    v = np.broadcast_to(np.arange(375, dtype=np.float64)[:, None], depth.shape)
    np.testing.assert_allclose(rec["x"][valid], ((u - K.cx) * depth / K.fx)[valid], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(rec["y"][valid], ((v - K.cy) * depth / K.fy)[valid], rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(unpack_rgb(rec["rgb"]), f.rgb)
    # colormap: rgb8, black where there is no depth
    cmap = rig.client.wait_for(lambda: next((m for m in rig.colormap.messages if m.header.stamp == depth_msg.header.stamp), None))
    assert cmap.encoding == "rgb8"
    colours = image_to_array(cmap)
    assert np.all(colours[~valid] == 0) and colours[valid].max() > 0
    # ip_basic has no ensemble: no uncertainty
    rig.client.spin_for(0.2)
    assert rig.uncertainty.messages == []


def test_16uc1_sparse_depth_gives_the_same_depth(rig):
    _, a = rig.send_good("32FC1")
    _, b = rig.send_good("16UC1")
    da, db = depth_from_image(a), depth_from_image(b)
    both = (da > 0) & (db > 0)
    assert both.mean() > 0.5
    assert np.median(np.abs(da[both] - db[both])) < 0.01  # millimetre quantisation only


def test_unknown_image_encoding(rig):
    t = next_stamp()
    bad = rig.frame.image(t)
    bad.encoding = "rgba8"
    rig.publish(bad, rig.frame.camera_info(t), rig.frame.sparse_image(t))
    vals = rig.expect_drop("bad_encoding", "'rgba8'")
    assert int(vals["drops_bad_encoding"]) >= 1
    rig.send_good()


def test_unknown_sparse_depth_encoding(rig):
    t = next_stamp()
    bad = rig.frame.sparse_image(t)
    bad.encoding = "64FC1"
    rig.publish(rig.frame.image(t), rig.frame.camera_info(t), bad)
    rig.expect_drop("bad_encoding", "'64FC1'")
    rig.send_good()


def test_image_camera_info_size_mismatch(rig):
    t = next_stamp()
    rig.publish(rig.frame.image(t), rig.frame.camera_info(t, width=621, height=188), rig.frame.sparse_image(t))
    rig.expect_drop("size_mismatch", "image is 1242x375 but camera_info is 621x188")
    rig.send_good()


def test_sparse_depth_in_another_frame(rig):
    """sparse_depth not registered to the image (another frame_id) is dropped, naming both frames."""
    t = next_stamp()
    bad = rig.frame.sparse_image(t)
    bad.header.frame_id = "velo_link"
    rig.publish(rig.frame.image(t), rig.frame.camera_info(t), bad)
    vals = rig.expect_drop("frame_mismatch", "sparse_depth is in frame 'velo_link' but image is in frame "
                           f"'{KittiFrame.CAMERA_FRAME}'")
    assert int(vals["drops_frame_mismatch"]) >= 1
    assert not any(m.header.stamp.sec == int(t) for m in rig.depth.messages)
    # an empty frame_id names no frame: accepted
    t = next_stamp()
    unnamed = rig.frame.sparse_image(t)
    unnamed.header.frame_id = ""
    rig.publish(rig.frame.image(t), rig.frame.camera_info(t), unnamed)
    rig.client.wait_for(lambda: any(m.header.stamp.sec == int(t) for m in rig.depth.messages),
                        timeout=30, what=f"depth/image for stamp {t} (sparse_depth without frame_id)")
    rig.send_good()


def test_all_nan_sparse_depth(rig):
    t = next_stamp()
    nan = np.full((375, 1242), np.nan, np.float32)
    rig.publish(rig.frame.image(t), rig.frame.camera_info(t), rig.frame.sparse_image(t, depth=nan))
    rig.expect_drop("empty_sparse_depth", "no valid pixel")
    rig.send_good()


def test_non_finite_intrinsics(rig):
    t = next_stamp()
    p = rig.frame.calib.P_rect.reshape(-1).copy()
    p[0] = math.nan
    rig.publish(rig.frame.image(t), rig.frame.camera_info(t, p_override=p), rig.frame.sparse_image(t))
    rig.expect_drop("non_finite_intrinsics", "non-finite intrinsics")
    rig.send_good()


def test_missing_camera_info(rig):
    t = next_stamp()
    rig.publish(rig.frame.image(t), None, rig.frame.sparse_image(t))
    vals = rig.expect_drop("missing_camera_info", r"no camera_info received for [\d.]+ s while \w+ arrives")
    assert int(vals["drops_missing_camera_info"]) >= 2  # the image and the sparse depth waited
    rig.send_good()


def test_stamps_out_of_sync_beyond_slop(rig):
    t = next_stamp()
    rig.publish(rig.frame.image(t), rig.frame.camera_info(t), rig.frame.sparse_image(t + 0.5))
    rig.expect_drop("unsynchronized", "found no partner within sync_slop 0.050 s")
    rig.send_good()


def test_log_lines_are_throttled_and_parameters_checked_at_run_time(rig):
    results = rig.client.set_parameters("depth_completion_node", log_throttle=30.0)
    assert results[0].successful, results[0].reason
    assert "malformed_image" not in rig.proc.log()
    for step in (1000, 2000):  # rows shorter than 1242 rgb8 pixels
        t = next_stamp()
        bad = rig.frame.image(t)
        bad.step = step
        rig.publish(bad, rig.frame.camera_info(t), rig.frame.sparse_image(t))
    # both counted and reported in diagnostics, only the first logged
    rig.client.wait_for(lambda: find_diagnostic(rig.diag.messages, WARN, "drops_malformed_image", 2, "step 2000"),
                        timeout=15, what="diagnostics naming step 2000")
    log = rig.proc.log()
    assert "image step 1000 is smaller than one row of 1242 rgb8 pixels" in log
    assert "step 2000" not in log and log.count("malformed_image:") == 1
    # run-time changes are checked like start-up values; read-only ones are refused
    bad = rig.client.set_parameters("depth_completion_node", log_throttle=-1.0)[0]
    assert not bad.successful
    ro = rig.client.set_parameters("depth_completion_node", backend="nearest")[0]
    assert not ro.successful and "read-only" in ro.reason.lower()
    assert rig.client.set_parameters("depth_completion_node", log_throttle=0.0)[0].successful
    rig.send_good()


def test_diagnostics_count_frames(rig):
    before = max(int(diagnostic_values(m)["frames_out"]) for m in rig.diag.messages)
    rig.send_good()
    rig.client.wait_for(lambda: any(int(diagnostic_values(m)["frames_out"]) > before for m in rig.diag.messages),
                        timeout=10, what="frames_out to increase")
    last = rig.diag.messages[-1]
    assert last.status[0].name == "depth_completion_node: depth completion"
    vals = diagnostic_values(last)
    assert vals["backend"] == "ip_basic" and float(vals["last_latency_ms"]) > 0


def test_sigterm_shuts_down_cleanly(rig):
    code = rig.proc.stop(signal.SIGTERM, timeout=15)
    assert code == 0, rig.proc.log()
    assert "Traceback" not in rig.proc.log()


def test_cascade_pipeline_is_selected_by_its_parameters(kitti_raw_dir):
    """cascade_scale 2: IP-Basic at 621x188 (padded to 622x188), then guided-filter
    super-resolution back to the 1242x375 input (RGB-D-Fusion's cascade), published like any frame."""
    frame = KittiFrame(kitti_raw_dir)
    for rig in Rig(frame, cascade_scale=2, cascade_backend="guided_filter").serve():
        rig.proc.wait_for_log(r"backend ip_basic .*cascade x2 -> guided_filter")
        _, msg = rig.send_good()
        depth = depth_from_image(msg)
        assert depth.shape == (375, 1242)
        gt_valid = (frame.gt > 0) & (depth > 0)
        assert gt_valid.sum() > 0.95 * (frame.gt > 0).sum()
        mae = np.abs(depth[gt_valid] - frame.gt[gt_valid]).mean()
        assert mae < 1.5, f"cascade MAE against KITTI ground truth {mae:.3f} m"
