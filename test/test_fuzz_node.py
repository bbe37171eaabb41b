"""Fuzzing a real node process: depth_completion_node gets hundreds of random messages on all
three inputs (random encodings, sizes, steps, endianness, NaN/inf depths, CameraInfo fields,
stamps behind, between and far ahead), interleaved with the real KITTI frame. Every good frame
must be answered, the process must stay alive, and every drop must carry a named reason (no
``internal_error``, no traceback).

``make test`` sends 300 random messages; ``make fuzz`` (``DDR_FUZZ=long``) also runs the ``slow``
variant with 20000.
"""
from __future__ import annotations

import array
import itertools

import numpy as np
import pytest
from sensor_msgs.msg import CameraInfo, Image

import fuzz_settings
from depth_diffusion_ros.ros import ENCODINGS

from node_harness import DepthNodeRig, KittiFrame, diagnostic_values, stamp_header

pytestmark = pytest.mark.ros

MODULE = "depth_diffusion_ros.nodes.depth_completion_node"
_stamps = itertools.count(7000)
ENCODING_POOL = list(ENCODINGS) + ["rgba8", "mono16", "8UC1", "yuv422", "32FC3", "", "bayer_rggb8"]
DISTORTION_POOL = ["plumb_bob", "rational_polynomial", "equidistant", "", "fisheye62"]
ODD = [0.0, -1.0, 1e-300, 1e300, np.nan, np.inf, -np.inf, 5e-324, 1e9, 721.5, 609.6, 172.9]
DEPTHS = np.array([0.0, -1.0, np.nan, np.inf, -np.inf, 1e-45, 1e-40, 1e-7, 1e30, 3.4e38, 3.0, 40.0], np.float32)


class Rig(DepthNodeRig):
    def __init__(self, frame: KittiFrame) -> None:
        self.frame = frame
        super().__init__(MODULE, {
            "backend": "nearest", "input": "sparse_depth", "reliability": "reliable", "input_timeout": 1.0,
            "diagnostics_period": 0.25, "log_throttle": 5.0, "queue_size": 10, "publish_points": False,
        }, "fuzz_test_client", [(Image, "image"), (CameraInfo, "camera_info"), (Image, "sparse_depth")])

    def send_good(self, timeout: float = 30.0) -> tuple[float, Image]:
        t = float(next(_stamps)) + 0.5
        f = self.frame
        self.publish(f.image(t), f.camera_info(t), f.sparse_image(t))
        return t, self.wait_depth(t, timeout)


def _stamp(rng: np.random.Generator, t_next: float, now: float) -> float:
    """Far ahead of the node's clock (refused), just behind the previous good frame (late), or
    between the two; within one round less than time_jump_threshold (1 s) apart, so these
    stamps never reset the synchroniser (test_node_robustness.py tests resets)."""
    kind = rng.integers(5)
    if kind == 0:
        return now + rng.uniform(11.0, 1e6)
    if kind == 1:
        return t_next - 1.0 - rng.uniform(0.0, 0.05)
    return t_next - rng.uniform(0.1, 0.94)


def random_image(rng: np.random.Generator, t: float, frame_id: str) -> Image:
    enc = ENCODING_POOL[rng.integers(len(ENCODING_POOL))]
    h, w = (int(v) for v in rng.integers(0, 40, 2))
    if rng.random() < 0.05:
        h, w = int(rng.integers(1, 2**31)), int(rng.integers(1, 2**31))  # huge declared size, tiny data
    dtype, channels = ENCODINGS.get(enc, (np.dtype(np.uint8), 1))
    step = max(0, w * channels * dtype.itemsize + int(rng.integers(-2, 3)))
    msg = Image(height=h, width=w, encoding=enc, is_bigendian=int(rng.integers(2)), step=step % 2**32)
    msg.header = stamp_header(frame_id, t)
    n = h * step if h * step < 1 << 16 else int(rng.integers(0, 64))
    if dtype == np.float32 and rng.random() < 0.5:
        values = rng.choice(DEPTHS, size=n // 4)
        data = values.tobytes() + bytes(n % 4)
    else:
        data = rng.integers(0, 256, n + int(rng.integers(-1, 2) if n else 0), dtype=np.uint8).tobytes()
    msg.data = array.array("B", data)
    return msg


def random_camera_info(rng: np.random.Generator, t: float, frame_id: str) -> CameraInfo:
    pick = lambda: float(rng.choice(ODD)) if rng.random() < 0.4 else float(rng.uniform(0.5, 2000))  # noqa: E731
    msg = CameraInfo(width=int(rng.integers(0, 2000)), height=int(rng.integers(0, 600)),
                     distortion_model=DISTORTION_POOL[rng.integers(len(DISTORTION_POOL))],
                     binning_x=int(rng.integers(0, 4)), binning_y=int(rng.integers(0, 4)))
    msg.header = stamp_header(frame_id, t)
    msg.d = [pick() for _ in range(int(rng.choice([0, 3, 4, 5, 8])))]
    fx, fy, cx, cy = pick(), pick(), pick(), pick()
    msg.k = [fx, 0.0, cx, 0.0, fy, cy, 0.0, 0.0, 1.0]
    msg.p = [fx, 0.0, cx, 0.0, 0.0, fy, cy, 0.0, 0.0, 0.0, 1.0, 0.0] if rng.random() < 0.7 else [0.0] * 12
    if rng.random() < 0.3:
        msg.roi.x_offset, msg.roi.y_offset = (int(v) for v in rng.integers(0, 600, 2))
        msg.roi.width, msg.roi.height = (int(v) for v in rng.integers(0, 1300, 2))
    return msg


def fuzz(rig: Rig, n_random: int, seed: int) -> None:
    import time

    rng = np.random.default_rng(seed)
    makers = [random_image, random_camera_info, random_image]
    answered = 0
    per_round = 30
    for start in range(0, n_random, per_round):
        t_next = float(next(_stamps)) + 0.5  # the good frame after this burst
        for _ in range(min(per_round, n_random - start)):
            k = int(rng.integers(3))
            frame_id = KittiFrame.CAMERA_FRAME if rng.random() < 0.8 else "elsewhere"
            rig.inputs[k].publish(makers[k](rng, _stamp(rng, t_next, time.time()), frame_id))
        f = rig.frame
        rig.publish(f.image(t_next), f.camera_info(t_next), f.sparse_image(t_next))
        rig.wait_depth(t_next, timeout=30)
        answered += 1
        assert rig.proc.proc.poll() is None, rig.proc.log()[-3000:]
    # every drop has a named reason: nothing raised anything but the package's errors
    log = rig.proc.log()
    assert "internal_error" not in log and "Traceback" not in log, log[-4000:]
    vals = rig.client.wait_for(lambda: next((v for v in map(diagnostic_values, reversed(rig.diag.messages))
                                             if int(v["frames_out"]) >= answered), None),
                               what=f"diagnostics counting {answered} frames out")
    assert "drops_internal_error" not in vals and int(vals["drops_total"]) > 0
    named = sorted(k for k in vals if k.startswith("drops_") and k != "drops_total")
    assert len(named) >= 5, named  # the random messages hit many of the named reasons


@pytest.fixture(scope="module")
def rig(kitti_raw_dir):
    yield from Rig(KittiFrame(kitti_raw_dir)).serve()


def test_random_messages_between_good_frames(rig):
    fuzz(rig, 300, seed=16)


@pytest.mark.slow
@pytest.mark.skipif(not fuzz_settings.LONG, reason="the long node fuzz runs with make fuzz (DDR_FUZZ=long)")
def test_random_messages_between_good_frames_long(rig):
    fuzz(rig, 20000, seed=None)
