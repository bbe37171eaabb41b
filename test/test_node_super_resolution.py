"""depth_super_resolution_node (backend torch = the shipped DSR-Diff demo weights) as a process.

The test process publishes the real NYU-Depth-v2 frame rgb_00100 from ../shared/data (colour
image + CameraInfo with the NYU intrinsics) with its depth bicubically downsampled x8 (80x60) as
``depth_lr`` and the depth camera's CameraInfo, over loopback DDS, and checks the outputs. Every
bad-input test checks the node's log line and diagnostics (WARN + drop counter) and then that
the next good frame is still answered.
"""
from __future__ import annotations

import itertools
import math
import signal

import cv2
import numpy as np
import pytest
from sensor_msgs.msg import CameraInfo, Image

from depth_diffusion_ros.geometry.depth_codecs import encode_depth
from depth_diffusion_ros.geometry.intrinsics import Intrinsics
from depth_diffusion_ros.inference.backends.torch_backend import DEMO_SR_WEIGHTS as DEMO_WEIGHTS
from depth_diffusion_ros.geometry.resample import bicubic_downsample_depth
from depth_diffusion_ros.ros import array_to_image, camera_info_to_intrinsics, depth_from_image, image_to_array

from node_harness import DepthNodeRig, NodeProcess, diagnostic_values, stamp_header

pytestmark = [pytest.mark.ros, pytest.mark.torch]

MODULE = "depth_diffusion_ros.nodes.depth_super_resolution_node"
FRAME = "nyu_rgb_optical"
NYU_K = (518.8579, 519.46961, 325.58245, 253.73617)
_stamps = itertools.count(2000)


def next_stamp() -> float:
    return float(next(_stamps)) + 0.5


def camera_info(t: float, intr: Intrinsics, fx_offset: float = 0.0, nan: bool = False) -> CameraInfo:
    ci = CameraInfo(width=intr.width, height=intr.height, distortion_model="plumb_bob")
    ci.header = stamp_header(FRAME, t)
    fx = math.nan if nan else intr.fx + fx_offset
    ci.k = [fx, 0.0, intr.cx, 0.0, intr.fy, intr.cy, 0.0, 0.0, 1.0]
    ci.p = [fx, 0.0, intr.cx, 0.0, 0.0, intr.fy, intr.cy, 0.0, 0.0, 0.0, 1.0, 0.0]
    ci.r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    ci.d = [0.0] * 5
    return ci


class Rig(DepthNodeRig):
    def __init__(self, shared_data) -> None:
        from training.datasets.sr_datasets import nyu_frames

        f = nyu_frames(shared_data / "nyu_depth_v2_metric3d", names=["rgb_00100"]).load_frame(0)
        self.rgb, self.gt = f["rgb"], f["gt_depth"]
        self.intr = Intrinsics(*NYU_K, width=640, height=480)
        self.lr = {s: bicubic_downsample_depth(self.gt, s) for s in (4, 8, 16)}
        super().__init__(MODULE, {
            "backend": "torch", "use_depth_camera_info": True, "reliability": "reliable",
            "input_timeout": 1.0, "diagnostics_period": 0.25, "sync_slop": 0.05, "log_throttle": 0.0,
        }, "sr_test_client", [(Image, "image"), (CameraInfo, "camera_info"), (Image, "depth_lr"),
                              (CameraInfo, "depth_lr/camera_info")], match_timeout=90)

    def messages(self, t: float, scale: int = 8, encoding: str = "32FC1", depth=None, info=True, depth_info=True):
        lr = self.lr[scale] if depth is None else depth
        h, w = lr.shape
        arr = encode_depth(lr, encoding) if encoding in ("16UC1", "32FC1") else lr
        image = array_to_image(self.rgb, "rgb8", stamp_header(FRAME, t))
        d = array_to_image(arr, encoding, stamp_header(FRAME, t))
        ci = camera_info(t, self.intr) if info is True else info
        di = camera_info(t, self.intr.scaled(w, h)) if depth_info is True else depth_info
        return image, ci, d, di

    def send_good(self, scale: int = 8, encoding: str = "32FC1", timeout: float = 60.0) -> tuple[float, Image]:
        t = next_stamp()
        self.publish(*self.messages(t, scale, encoding))
        return t, self.wait_depth(t, timeout)


@pytest.fixture(scope="module")
def rig(shared_data):
    if not (DEMO_WEIGHTS / "model.safetensors").is_file():
        pytest.skip(f"demo weights not built at {DEMO_WEIGHTS}")
    yield from Rig(shared_data).serve(timeout=120.0, attempt_timeout=10.0)


def test_publishes_hr_depth_for_a_real_nyu_frame(rig):
    t, msg = rig.send_good(scale=8)
    assert msg.encoding == "32FC1" and (msg.width, msg.height) == (640, 480)
    assert msg.header.frame_id == FRAME and msg.header.stamp.nanosec == 500_000_000
    raw = image_to_array(msg)
    depth = depth_from_image(msg)
    assert np.all(np.isnan(raw[depth == 0])), "invalid pixels must be NaN on the wire"
    gt = rig.gt
    # depth wherever the LR map had a measurement nearby (bilinear LR validity >= 0.5)
    support = cv2.resize((rig.lr[8] > 0).astype(np.float32), (640, 480), interpolation=cv2.INTER_LINEAR) >= 0.5
    assert (depth[support] > 0).mean() > 0.99 and (depth[~support] == 0).all()
    both = (gt > 0) & (depth > 0)
    assert both.sum() > 0.6 * (gt > 0).sum()
    rmse = float(np.sqrt(np.mean((depth[both] - gt[both]) ** 2)))
    assert rmse < 0.25, f"x8 RMSE against the NYU ground truth {rmse:.3f} m"
    info = rig.client.wait_for(lambda: next((m for m in rig.info.messages if m.header.stamp == msg.header.stamp), None))
    assert camera_info_to_intrinsics(info) == rig.intr
    cloud = rig.client.wait_for(lambda: next((m for m in rig.points.messages if m.header.stamp == msg.header.stamp), None))
    assert (cloud.height, cloud.width, cloud.point_step) == (480, 640, 32) and not cloud.is_dense
    cmap = rig.client.wait_for(lambda: next((m for m in rig.colormap.messages if m.header.stamp == msg.header.stamp), None))
    assert cmap.encoding == "rgb8" and (cmap.width, cmap.height) == (640, 480)


def test_other_scale_and_16uc1_input(rig):
    _, a = rig.send_good(scale=4, encoding="16UC1")
    _, b = rig.send_good(scale=4, encoding="32FC1")
    da, db = depth_from_image(a), depth_from_image(b)
    both = (da > 0) & (db > 0)
    assert both.mean() > 0.5 and np.median(np.abs(da[both] - db[both])) < 0.01  # mm quantisation only


def test_reprojects_when_depth_intrinsics_differ(rig):
    t = next_stamp()
    image, ci, d, _ = rig.messages(t)
    shifted = camera_info(t, rig.intr.scaled(80, 60), fx_offset=3.0)  # 3 px off at 80x60: re-rendered
    rig.publish(image, ci, d, shifted)
    depth = depth_from_image(rig.wait_depth(t))
    assert depth.shape == (480, 640) and (depth > 0).mean() > 0.5


def test_non_integer_scale(rig):
    t = next_stamp()
    lr = np.full((70, 80), 2.0, np.float32)
    rig.publish(*rig.messages(t, depth=lr))
    rig.expect_drop("bad_scale", r"scale is not an integer: image 640x480 / depth_lr 80x70")
    rig.send_good()


def test_rows_and_columns_scale_differ(rig):
    t = next_stamp()
    rig.publish(*rig.messages(t, depth=np.full((120, 80), 2.0, np.float32)))
    rig.expect_drop("bad_scale", r"scale differs between columns \(x8\) and rows \(x4\)")
    rig.send_good()


def test_scale_beyond_trained_range(rig):
    t = next_stamp()
    rig.publish(*rig.messages(t, depth=np.full((15, 20), 2.0, np.float32)))
    rig.expect_drop("scale_out_of_range", r"scale x32 .* is outside the backend's range x2..x16")
    rig.send_good()


def test_bad_encodings(rig):
    t = next_stamp()
    image, ci, d, di = rig.messages(t)
    d.encoding = "8UC1"
    rig.publish(image, ci, d, di)
    rig.expect_drop("bad_encoding", "'8UC1'")
    t = next_stamp()
    image, ci, d, di = rig.messages(t)
    image.encoding = "rgba8"
    rig.publish(image, ci, d, di)
    rig.expect_drop("bad_encoding", "'rgba8'")
    rig.send_good()


def test_image_camera_info_size_mismatch(rig):
    t = next_stamp()
    rig.publish(*rig.messages(t, info=camera_info(t, rig.intr.scaled(320, 240))))
    rig.expect_drop("size_mismatch", "image is 640x480 but camera_info is 320x240")
    t = next_stamp()
    rig.publish(*rig.messages(t, depth_info=camera_info(t, rig.intr.scaled(160, 120))))
    rig.expect_drop("size_mismatch", "depth_lr is 80x60 but depth_lr/camera_info is 160x120")
    rig.send_good()


def test_depth_lr_in_another_frame(rig):
    """depth_lr must be registered to the image: another frame_id is dropped, naming both."""
    t = next_stamp()
    image, ci, d, di = rig.messages(t)
    d.header.frame_id = "tof_optical"
    rig.publish(image, ci, d, di)
    rig.expect_drop("frame_mismatch", f"depth_lr is in frame 'tof_optical' but image is in frame '{FRAME}'")
    rig.send_good()


def test_all_nan_depth_lr(rig):
    t = next_stamp()
    rig.publish(*rig.messages(t, depth=np.full((60, 80), np.nan, np.float32)))
    rig.expect_drop("empty_depth_lr", "no valid pixel")
    rig.send_good()


def test_non_finite_intrinsics(rig):
    t = next_stamp()
    rig.publish(*rig.messages(t, info=camera_info(t, rig.intr, nan=True)))
    rig.expect_drop("non_finite_intrinsics", "non-finite intrinsics")
    rig.send_good()


def test_missing_camera_info(rig):
    t = next_stamp()
    image, _, d, di = rig.messages(t)
    rig.publish(image, None, d, di)
    vals = rig.expect_drop("missing_camera_info", r"no camera_info received")
    assert int(vals["drops_missing_camera_info"]) >= 1
    rig.send_good()


def test_stamps_out_of_sync(rig):
    t = next_stamp()
    image, ci, _, _ = rig.messages(t)
    _, _, d, di = rig.messages(t + 0.5)
    rig.publish(image, ci, d, di)
    rig.expect_drop("unsynchronized", "found no partner within sync_slop 0.050 s")
    rig.send_good()


def test_diagnostics_and_clean_shutdown(rig):
    before = max(int(diagnostic_values(m)["frames_out"]) for m in rig.diag.messages)
    rig.send_good()
    rig.client.wait_for(lambda: any(int(diagnostic_values(m)["frames_out"]) > before for m in rig.diag.messages),
                        timeout=15, what="frames_out to increase")
    last = rig.diag.messages[-1]
    assert last.status[0].name == "depth_super_resolution_node: depth super-resolution"
    vals = diagnostic_values(last)
    assert vals["backend"] == "torch" and vals["scales"] == "x2..x16"
    assert int(vals["drops_total"]) >= 10  # every bad frame above was counted
    code = rig.proc.stop(signal.SIGTERM, timeout=20)
    assert code == 0, rig.proc.log()
    assert "Traceback" not in rig.proc.log()


def test_bad_parameters_exit_with_a_clear_message(tmp_path):
    proc = NodeProcess(MODULE, {"backend": "torch", "model_path": str(tmp_path / "missing")})
    try:
        assert proc.wait_exit(timeout=120) == 2
        assert "cannot start" in proc.log() and "missing" in proc.log()
    finally:
        proc.cleanup()
    proc = NodeProcess(MODULE, {"backend": "lanczos"})
    try:
        assert proc.wait_exit(timeout=60) == 2
        assert "backend" in proc.log() and "lanczos" in proc.log()
    finally:
        proc.cleanup()
