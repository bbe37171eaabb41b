"""One bad stamp must not stall a node (issue 16): depth_completion_node as a real process.

One node process (ip_basic, input sparse_depth, the real KITTI frame) serves the module. Each
test names the problem it sends, checks the node's log line (and diagnostics where its timers
run) and then that good frames are answered again:

* a set stamped 10^6 s in the future is refused as ``future_stamp`` before it is queued;
* with that check and the jump reset off, a rejected future set no longer stalls the node
  (only processed sets advance the synchroniser);
* stamps that jump back (a looping bag) and a backward jump of the ``/clock`` the node follows
  with ``use_sim_time`` reset the synchroniser with one log line;
* a burst that overruns the subscription queue is counted in ``gaps_image``;
* binning / ROI in camera_info are applied; an unknown distortion model, sparse depth out of
  range and over-long image data are dropped by name.
"""
from __future__ import annotations

import itertools
import re
import time

import numpy as np
import pytest
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import CameraInfo, Image

from depth_diffusion_ros.nodes.health import WARN
from depth_diffusion_ros.ros import array_to_image, camera_info_to_intrinsics, depth_from_image

from node_harness import DepthNodeRig, KittiFrame, diagnostic_values, find_diagnostic, stamp_header, stamp_key

pytestmark = pytest.mark.ros

MODULE = "depth_diffusion_ros.nodes.depth_completion_node"
NODE = "depth_completion_node"
_stamps = itertools.count(3000)


def next_stamp() -> float:
    return float(next(_stamps)) + 0.25


class Rig(DepthNodeRig):
    def __init__(self, frame: KittiFrame) -> None:
        self.frame = frame
        super().__init__(MODULE, {
            "backend": "nearest", "input": "sparse_depth", "reliability": "reliable", "input_timeout": 1.0,
            "diagnostics_period": 0.25, "log_throttle": 0.0, "publish_points": False, "publish_colormap": False,
        }, "robustness_test_client", [(Image, "image"), (CameraInfo, "camera_info"), (Image, "sparse_depth")])

    def frame_at(self, t: float) -> tuple[Image, CameraInfo, Image]:
        return self.frame.image(t), self.frame.camera_info(t), self.frame.sparse_image(t)

    def send_good(self, timeout: float = 30.0, t: float | None = None) -> tuple[float, Image]:
        t = next_stamp() if t is None else t
        self.publish(*self.frame_at(t))
        return t, self.wait_depth(t, timeout)

    def set(self, **values) -> None:
        for r in self.client.set_parameters(NODE, **values):
            assert r.successful, r.reason


@pytest.fixture(scope="module")
def rig(kitti_raw_dir):
    yield from Rig(KittiFrame(kitti_raw_dir)).serve()


def _future_bad_set(rig: Rig) -> float:
    """A set stamped 10^6 s ahead of now whose image has a bad encoding (the issue's stall)."""
    t = time.time() + 1e6 + 10.0
    image, info, sparse = rig.frame_at(t)
    image.encoding = "yuv422"
    rig.publish(image, info, sparse)
    return t


def test_a_future_stamp_is_refused_by_name_and_good_frames_follow(rig):
    _future_bad_set(rig)
    rig.expect_drop("future_stamp", r"image stamp \d+\.\d+ is 100000\d\.\d+ s ahead of the node's clock")
    msg = rig.client.wait_for(lambda: find_diagnostic(rig.diag.messages, WARN, "drops_future_stamp", 3), timeout=15,
                              what="all three inputs refused")
    assert "drops_late" not in diagnostic_values(msg)
    for _ in range(3):
        rig.send_good()


def test_a_rejected_future_set_does_not_stall_the_node(rig):
    rig.set(max_future_stamp=0.0, time_jump_threshold=0.0)  # only "processed sets advance" left
    try:
        _future_bad_set(rig)
        rig.expect_drop("bad_encoding", "image encoding 'yuv422' is not a colour encoding")
        for _ in range(3):
            rig.send_good()
        assert "dropped 1: late" not in rig.proc.log()
    finally:
        rig.set(max_future_stamp=10.0, time_jump_threshold=1.0)


def _wait_new_log(rig: Rig, since: int, pattern: str, timeout: float = 15.0) -> re.Match:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        m = re.search(pattern, rig.proc.log()[since:])
        if m:
            return m
        rig.client.spin_for(0.05)
    raise AssertionError(f"{pattern!r} not logged; log tail:\n{rig.proc.log()[-3000:]}")


def test_stamps_that_jump_back_reset_the_synchroniser(rig):
    t_prev, _ = rig.send_good()
    since = len(rig.proc.log())
    t_loop = t_prev - 1000.0  # the bag starts again, 1000 s earlier
    rig.send_good(t=t_loop)
    m = _wait_new_log(rig, since, r"synchroniser reset: (image|camera_info|sparse_depth) stamps jumped back by "
                                  r"1000\.000 s \(from [\d.]+ to ([\d.]+): a looping bag")
    assert float(m.group(2)) == pytest.approx(t_loop, abs=1e-3)
    rig.client.wait_for(lambda: find_diagnostic(rig.diag.messages, WARN, "sync_resets", 1), timeout=15,
                        what="sync_resets in diagnostics")
    rig.send_good()


def test_a_burst_that_overruns_the_queue_is_counted_as_gaps(rig):
    t_burst = next_stamp()
    tiny = array_to_image(np.zeros((2, 2, 3), np.uint8), "rgb8", stamp_header(KittiFrame.CAMERA_FRAME, t_burst))
    rig.set(log_throttle=30.0)  # the burst's queue_full drops: one line, not hundreds
    try:
        rig.publish(*rig.frame_at(t_burst - 0.25))  # the node is busy with this frame ...
        for _ in range(400):  # ... while 400 images arrive at a queue of 5
            rig.inputs[0].publish(tiny)
        rig.proc.wait_for_log(r"gaps_image \+\d+: \d+ image message\(s\) never reached the node \(publication "
                              r"sequence number jumped to \d+\)", spin=lambda: rig.client.spin_for(0.05))
        msg = rig.client.wait_for(lambda: find_diagnostic(rig.diag.messages, WARN, "gaps_total", 1), timeout=15,
                                  what="gaps_total in diagnostics")
    finally:
        rig.set(log_throttle=0.0)
    vals = {k: int(v) for k, v in diagnostic_values(msg).items() if k.startswith("gaps_")}
    assert vals["gaps_image"] >= 1 and vals["gaps_total"] == sum(v for k, v in vals.items() if k != "gaps_total")
    rig.send_good()


def test_binning_and_roi_are_applied_to_the_intrinsics(rig):
    f = rig.frame
    t = next_stamp()
    info = f.camera_info(t)
    info.binning_x = info.binning_y = 2
    info.roi.x_offset, info.roi.y_offset, info.roi.width, info.roi.height = 100, 0, 1000, 374
    rgb = np.ascontiguousarray(f.rgb[0:374:2, 100:1100:2])
    sparse = np.ascontiguousarray(f.sparse[0:374:2, 100:1100:2])
    rig.publish(array_to_image(rgb, "rgb8", stamp_header(KittiFrame.CAMERA_FRAME, t)), info,
                f.sparse_image(t, depth=sparse))
    depth = rig.wait_depth(t)
    assert (depth.width, depth.height) == (500, 187)
    out = rig.client.wait_for(lambda: next((m for m in rig.info.messages
                                            if (m.header.stamp.sec, m.header.stamp.nanosec) == stamp_key(t)), None))
    K = f.intrinsics
    got = camera_info_to_intrinsics(out)
    np.testing.assert_allclose([got.fx, got.fy, got.cx, got.cy], [K.fx / 2, K.fy / 2, (K.cx - 100) / 2, K.cy / 2])
    assert out.binning_x == 0 and out.roi.width == 0  # the output describes its own image
    assert np.nanmax(depth_from_image(depth)) > 0


@pytest.mark.parametrize("spoil,reason,log_part", [
    ("distortion", "unsupported_distortion_model", "distortion model 'kannala_brandt8'"),
    ("focal", "bad_camera_info", r"focal length fx = 1e\+300 px is implausible"),
    ("long_data", "malformed_image", r"needs \d+ \(height \* step, exactly\)"),
    ("far_depth", "empty_sparse_depth", "outside min_depth..max_depth 0.1..100 m"),
])
def test_inputs_accepted_before_are_dropped_by_name(rig, spoil, reason, log_part):
    t = next_stamp()
    image, info, sparse = rig.frame_at(t)
    if spoil == "distortion":
        info.distortion_model = "kannala_brandt8"
    elif spoil == "focal":
        info.p = [1e300 if i in (0, 5) else v for i, v in enumerate(info.p)]
    elif spoil == "long_data":
        image.data = bytes(image.data) + b"\x00" * 7
    else:
        sparse = rig.frame.sparse_image(t, depth=np.where(rig.frame.sparse > 0, 1e30, 0).astype(np.float32))
    rig.publish(image, info, sparse)
    rig.expect_drop(reason, log_part)
    rig.send_good()


def test_a_backward_clock_jump_with_use_sim_time_resets(rig):
    """Last in the module: it switches the node to /clock (its timers then follow /clock)."""
    clock = rig.client.publisher(Clock, "/clock")
    rig.set(use_sim_time=True)
    rig.proc.wait_for_log(r"synchroniser reset: ROS time activated \(use_sim_time\)")
    rig.client.wait_for(lambda: clock.get_subscription_count() > 0, timeout=30, what="/clock subscriber")

    def tick(seconds: float) -> None:
        msg = Clock()
        msg.clock.sec, msg.clock.nanosec = stamp_key(seconds)
        clock.publish(msg)
        rig.client.spin_for(0.2)

    try:
        tick(5000.0)
        rig.send_good(t=5000.25)
        t_ahead = 5100.25  # 100 s ahead of the simulated clock
        rig.publish(*rig.frame_at(t_ahead))
        rig.proc.wait_for_log(r"future_stamp: image stamp 5100\.250 is 100\.\d+ s ahead of the node's clock \(5000",
                              spin=lambda: rig.client.spin_for(0.05))
        tick(2000.0)  # the bag loops with --clock
        rig.proc.wait_for_log(r"synchroniser reset: the node's clock jumped back by 3000\.000 s",
                              spin=lambda: rig.client.spin_for(0.05))
        rig.send_good(t=2000.25)
    finally:
        rig.set(use_sim_time=False)
    rig.proc.wait_for_log(r"synchroniser reset: ROS time deactivated")
    assert "Traceback" not in rig.proc.log()
