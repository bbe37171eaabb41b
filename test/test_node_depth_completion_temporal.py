"""depth_completion_node with ``temporal`` on (ip_basic) as a separate process: the state resets
with a log line after a time gap, a backward jump never reaches it, and blended frames publish
uncertainty."""
from __future__ import annotations

import numpy as np
import pytest
from sensor_msgs.msg import CameraInfo, Image

from depth_diffusion_ros.ros import depth_from_image

from node_harness import DepthNodeRig, KittiFrame, stamp_key

pytestmark = pytest.mark.ros

MODULE = "depth_diffusion_ros.nodes.depth_completion_node"


class Rig(DepthNodeRig):
    def __init__(self, frame: KittiFrame, **params) -> None:
        self.frame = frame
        self.t = 500.0
        super().__init__(MODULE, {
            "backend": "ip_basic", "input": "sparse_depth", "reliability": "reliable",
            "input_timeout": 1.0, "diagnostics_period": 0.25, "sync_slop": 0.05, "log_throttle": 0.0,
            "temporal": True, "temporal_max_gap": 2.0, **params,
        }, "completion_temporal_client", [(Image, "image"), (CameraInfo, "camera_info"), (Image, "sparse_depth")])

    def send_at(self, t: float, timeout: float = 30.0) -> Image:
        f = self.frame
        self.publish(f.image(t), f.camera_info(t), f.sparse_image(t))
        return self.wait_depth(t, timeout)

    def send_good(self, timeout: float = 30.0):
        self.t += 0.1
        return self.t, self.send_at(self.t, timeout)


@pytest.fixture(scope="module")
def rig(kitti_raw_dir):
    yield from Rig(KittiFrame(kitti_raw_dir)).serve()


def uncertainty_for(rig, t):
    key = stamp_key(t)
    return rig.client.wait_for(
        lambda: next((m for m in rig.uncertainty.messages if (m.header.stamp.sec, m.header.stamp.nanosec) == key),
                     None), what=f"depth/uncertainty for {t}")


def test_start_log_and_first_frame_reset(rig):
    rig.proc.wait_for_log(r"temporal \(max gap 2 s, static camera\)")
    rig.proc.wait_for_log(rf"temporal state reset: first frame of camera frame '{KittiFrame.CAMERA_FRAME}'")


def test_consecutive_frames_blend_and_publish_uncertainty(rig):
    t0 = rig.t + 0.1
    a = depth_from_image(rig.send_at(t0))
    b = depth_from_image(rig.send_at(t0 + 0.1))
    rig.t = t0 + 0.1
    both = (a > 0) & (b > 0)
    assert both.mean() > 0.5
    np.testing.assert_allclose(a[both], b[both], rtol=1e-5)  # the same frame again: the filter changes nothing
    unc = depth_from_image(uncertainty_for(rig, t0 + 0.1))
    valid = b > 0
    assert np.isfinite(unc[valid]).mean() > 0.99
    # blended pixels: |d_cur - d| = 0 there, far below the single-frame floor of 5 % of the depth
    assert np.median(unc[valid]) < 0.01 * np.median(b[valid])


def test_gap_resets_with_a_log_line(rig):
    n_before = rig.proc.log().count("temporal state reset")
    rig.send_at(rig.t + 0.1)
    rig.t += 5.1
    rig.send_at(rig.t)
    rig.proc.wait_for_log(r"temporal state reset: gap of 5\.000 s > temporal_max_gap 2 s",
                          spin=lambda: rig.client.spin_for(0.05))
    rig.t += 0.1
    rig.send_at(rig.t)  # back within the gap: no further reset
    rig.client.spin_for(0.3)
    assert rig.proc.log().count("temporal state reset") == n_before + 1


def test_backward_jump_is_refused_before_the_filter(rig):
    # the input sync drops a frame that is not newer than the last one ("late"), so the filter's
    # own backward-jump reset (unit-tested in test_temporal_filter.py) is a second line of defence
    n_before = rig.proc.log().count("temporal state reset")
    t = rig.t - 1.0
    f = rig.frame
    rig.publish(f.image(t), f.camera_info(t), f.sparse_image(t))
    rig.proc.wait_for_log(r"dropped \d+: late: image stamp", spin=lambda: rig.client.spin_for(0.05))
    rig.send_good()
    assert rig.proc.log().count("temporal state reset") == n_before
