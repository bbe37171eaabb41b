"""Run a node module as a separate process and talk to it with real rclpy over loopback DDS.

Used by the ``test_node_*.py`` files::

    proc = NodeProcess("depth_diffusion_ros.nodes.depth_completion_node", {"reliability": "reliable"})
    client = RosClient("test_client")
    pub = client.publisher(Image, "image")
    depth = client.subscribe(Image, "depth/image")
    client.wait_matched([pub], [depth])
    pub.publish(msg); client.wait_for(lambda: depth.messages)
    proc.wait_for_log("dropped 1: bad_encoding")
    proc.stop()

The node process inherits ROS_DOMAIN_ID / ROS_AUTOMATIC_DISCOVERY_RANGE from test/conftest.py,
so parallel test sessions do not hear each other. Its log goes to a file that tests read.
"""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Optional

import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

from depth_diffusion_ros.nodes.health import WARN

# The Fast DDS profile (32 MiB SHM segments, 100 ms heartbeat) is chosen in conftest.py for the
# whole session; node processes inherit FASTDDS_DEFAULT_PROFILES_FILE from os.environ.


RELIABLE = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10, reliability=ReliabilityPolicy.RELIABLE,
                      durability=DurabilityPolicy.VOLATILE)


def ros_arg(value: Any) -> str:
    """A Python value as a ``-p name:=value`` string (YAML scalars / flow lists)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(ros_arg(v) for v in value) + "]"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, str):
        return value if value else "''"
    return str(value)


class NodeProcess:
    """``python -m <module> --ros-args -p k:=v ...`` with its log captured to a file."""

    def __init__(self, module: str, params: Optional[dict[str, Any]] = None,
                 remaps: Optional[dict[str, str]] = None, extra_args: Iterable[str] = ()) -> None:
        self.module = module
        args = [sys.executable, "-m", module, "--ros-args", "--log-level", "info"]
        for k, v in (params or {}).items():
            args += ["-p", f"{k}:={ros_arg(v)}"]
        for src, dst in (remaps or {}).items():
            args += ["-r", f"{src}:={dst}"]
        args += list(extra_args)
        self.args = args
        fd, self.log_path = tempfile.mkstemp(prefix="node_", suffix=".log")
        os.close(fd)
        self._log_file = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        env = dict(os.environ, PYTHONUNBUFFERED="1", RCUTILS_LOGGING_BUFFERED_STREAM="0",
                   RCUTILS_COLORIZED_OUTPUT="0")
        self.proc = subprocess.Popen(args, stdout=self._log_file, stderr=subprocess.STDOUT, env=env)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log(self) -> str:
        """Everything the node wrote so far."""
        return Path(self.log_path).read_text(errors="replace")

    def wait_for_log(self, pattern: str, timeout: float = 15.0, spin: Optional[Callable[[], None]] = None) -> re.Match:
        """Wait until ``pattern`` (a regex) appears in the log; ``spin`` is called while waiting."""
        end = time.monotonic() + timeout
        rx = re.compile(pattern)
        while time.monotonic() < end:
            m = rx.search(self.log())
            if m:
                return m
            if self.proc.poll() is not None:
                m = rx.search(self.log())
                if m:
                    return m
                raise AssertionError(f"{self.module} exited ({self.proc.returncode}) before logging "
                                     f"{pattern!r}; log:\n{self.log()}")
            if spin is not None:
                spin()
            else:
                time.sleep(0.05)
        raise AssertionError(f"{pattern!r} not in the log of {self.module} after {timeout} s; log:\n{self.log()}")

    def wait_exit(self, timeout: float = 30.0) -> int:
        """Wait for the process to end on its own and return its exit code."""
        try:
            return self.proc.wait(timeout=timeout)
        finally:
            self._log_file.close()

    def stop(self, sig: int = signal.SIGINT, timeout: float = 10.0) -> Optional[int]:
        """Send ``sig``, wait, kill if still running; returns the exit code (None if killed)."""
        code = None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                code = self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        else:
            code = self.proc.returncode
        if not self._log_file.closed:
            self._log_file.close()
        return code

    def cleanup(self) -> None:
        """Stop (if needed) and delete the log file."""
        self.stop()
        try:
            os.unlink(self.log_path)
        except OSError:
            pass


class Subscription:
    """Messages received on one topic (appended by the executor thread of :class:`RosClient`)."""

    def __init__(self) -> None:
        self.messages: list[Any] = []
        self.sub: Any = None

    def clear(self) -> None:
        self.messages.clear()


class RosClient:
    """A test-side rclpy node in its own context, spun on demand with :meth:`spin_for`."""

    def __init__(self, name: str) -> None:
        self.context = Context()
        rclpy.init(context=self.context)
        self.node = Node(name, context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)

    def publisher(self, msg_type: type, topic: str, qos: QoSProfile = RELIABLE) -> Any:
        return self.node.create_publisher(msg_type, topic, qos)

    def subscribe(self, msg_type: type, topic: str, qos: QoSProfile = RELIABLE) -> Subscription:
        box = Subscription()
        box.sub = self.node.create_subscription(msg_type, topic, box.messages.append, qos)
        return box

    def spin_for(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.executor.spin_once(timeout_sec=min(0.05, max(0.0, end - time.monotonic())))

    def wait_for(self, predicate: Callable[[], Any], timeout: float = 20.0, what: str = "condition") -> Any:
        """Spin until ``predicate()`` is truthy; return its value."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            value = predicate()
            if value:
                return value
            self.executor.spin_once(timeout_sec=0.05)
        raise AssertionError(f"timed out after {timeout} s waiting for {what}")

    def wait_matched(self, publishers: Iterable[Any] = (), subscriptions: Iterable[Subscription] = (),
                     timeout: float = 30.0) -> None:
        """Wait for DDS discovery: every publisher has a subscriber and every subscription a publisher."""
        pubs, subs = list(publishers), list(subscriptions)
        self.wait_for(lambda: all(p.get_subscription_count() > 0 for p in pubs)
                      and all(s.sub.get_publisher_count() > 0 for s in subs), timeout, "DDS discovery")

    def set_parameters(self, node_name: str, timeout: float = 20.0, **values: Any) -> list[Any]:
        """Set parameters of a remote node through its parameter services; returns the results."""
        from rclpy.parameter import Parameter
        from rclpy.parameter_client import AsyncParameterClient

        client = AsyncParameterClient(self.node, node_name)
        self.wait_for(lambda: client.services_are_ready(), timeout, f"parameter services of {node_name}")
        future = client.set_parameters([Parameter(k, value=v) for k, v in values.items()])
        self.wait_for(future.done, timeout, "set_parameters response")
        return list(future.result().results)

    def destroy(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)


def diagnostic_values(msg: DiagnosticArray) -> dict[str, str]:
    """KeyValues of the first status of a DiagnosticArray."""
    return {kv.key: kv.value for kv in msg.status[0].values}


def find_diagnostic(messages: list[DiagnosticArray], level: int, key: str, min_count: int = 1,
                    message_part: str = "") -> Optional[DiagnosticArray]:
    """The first diagnostics message with ``level``, ``values[key] >= min_count`` and the text."""
    for m in messages:
        st = m.status[0]
        vals = diagnostic_values(m)
        if st.level == bytes([level]) and int(vals.get(key, 0)) >= min_count and message_part in st.message:
            return m
    return None


# --------------------------------------------------------------------------- KITTI test frames
def stamp_header(frame_id: str, t: float):
    """std_msgs/Header with ``t`` seconds as stamp."""
    from std_msgs.msg import Header

    h = Header(frame_id=frame_id)
    ns = int(round(t * 1e9))
    h.stamp.sec, h.stamp.nanosec = ns // 1_000_000_000, ns % 1_000_000_000
    return h


class KittiFrame:
    """The real KITTI raw frame 2011_09_26_drive_0001 #5 (cam_02 + velodyne) as ROS messages.

    Attributes: ``rgb`` (375, 1242, 3) uint8, ``sparse`` (375, 1242) float32 m from
    velodyne_raw_image_02.png, ``gt`` KITTI DC ground truth, ``scan`` (N, 4) float32 Velodyne
    points, ``calib`` (KittiCalibration: intrinsics from P_rect_02, T_camera_lidar).
    """

    CAMERA_FRAME = "camera_color_left"
    LIDAR_FRAME = "velo_link"

    def __init__(self, kitti_raw_dir: Path) -> None:
        import cv2
        import numpy as np

        from depth_diffusion_ros.geometry.calibration import read_kitti_raw_calib
        from depth_diffusion_ros.geometry.depth_codecs import read_kitti_depth_png

        raw = Path(kitti_raw_dir)
        bgr = cv2.imread(str(raw / "raw/sync_rect/cam_02.png"), cv2.IMREAD_COLOR)
        self.rgb = np.ascontiguousarray(bgr[:, :, ::-1])
        self.sparse = read_kitti_depth_png(raw / "depth_completion/velodyne_raw_image_02.png")
        self.gt = read_kitti_depth_png(raw / "depth_completion/groundtruth_image_02.png")
        self.scan = np.fromfile(raw / "raw/lidar_data.bin", dtype="<f4").reshape(-1, 4)
        self.calib = read_kitti_raw_calib(raw / "raw/calib_cam_to_cam.txt", raw / "raw/calib_velo_to_cam.txt", camera=2)
        self.intrinsics = self.calib.intrinsics

    def image(self, t: float, encoding: str = "rgb8"):
        from depth_diffusion_ros.ros import array_to_image

        arr = self.rgb if encoding == "rgb8" else self.rgb[:, :, ::-1].copy()
        return array_to_image(arr, encoding, stamp_header(self.CAMERA_FRAME, t))

    def camera_info(self, t: float, width: int = 1242, height: int = 375, p_override=None):
        from sensor_msgs.msg import CameraInfo

        P = self.calib.P_rect  # noqa: N806
        ci = CameraInfo(width=width, height=height, distortion_model="plumb_bob")
        ci.header = stamp_header(self.CAMERA_FRAME, t)
        ci.k = [float(P[0, 0]), 0.0, float(P[0, 2]), 0.0, float(P[1, 1]), float(P[1, 2]), 0.0, 0.0, 1.0]
        ci.p = [float(v) for v in (p_override if p_override is not None else P.reshape(-1))]
        ci.r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
        ci.d = [0.0] * 5
        return ci

    def sparse_image(self, t: float, encoding: str = "32FC1", depth=None):
        import numpy as np

        from depth_diffusion_ros.geometry.depth_codecs import encode_depth
        from depth_diffusion_ros.ros import array_to_image

        d = self.sparse if depth is None else depth
        if encoding == "32FC1" and depth is not None:
            return array_to_image(np.asarray(d, np.float32), "32FC1", stamp_header(self.CAMERA_FRAME, t))
        return array_to_image(encode_depth(d, encoding), encoding, stamp_header(self.CAMERA_FRAME, t))

    def points(self, t: float, scan=None):
        import array as _array

        import numpy as np
        from sensor_msgs.msg import PointCloud2, PointField

        pts = self.scan if scan is None else scan
        msg = PointCloud2(height=1, width=int(pts.shape[0]), point_step=16, row_step=16 * int(pts.shape[0]),
                          is_bigendian=False, is_dense=True)
        msg.header = stamp_header(self.LIDAR_FRAME, t)
        msg.fields = [PointField(name=n, offset=4 * i, datatype=PointField.FLOAT32, count=1)
                      for i, n in enumerate(("x", "y", "z", "intensity"))]
        data = _array.array("B")
        data.frombytes(np.ascontiguousarray(pts, dtype="<f4").tobytes())
        msg.data = data
        return msg

    @property
    def T_camera_lidar_param(self) -> list[float]:  # noqa: N802
        return [float(v) for v in self.calib.T_camera_lidar.reshape(-1)]


def stamp_key(t: float) -> tuple[int, int]:
    """(sec, nanosec) of a float stamp, as :func:`stamp_header` writes it."""
    return int(t), int(round((t - int(t)) * 1e9))


class DepthNodeRig:
    """A depth node (completion or super-resolution) in its own process, and a client that
    publishes its synchronised inputs and subscribes to every output.

    ``inputs``: (message type, topic) of each input, in the order :meth:`publish` takes them.
    Subclasses implement ``send_good(timeout=...) -> (stamp, depth/image message)``.
    Attributes: ``proc``, ``client``, ``inputs`` (publishers) and the subscriptions ``depth``,
    ``info``, ``points``, ``colormap``, ``uncertainty``, ``diag``.
    """

    def __init__(self, module: str, params: dict[str, Any], client_name: str,
                 inputs: Iterable[tuple[type, str]], match_timeout: float = 60.0) -> None:
        from sensor_msgs.msg import CameraInfo, Image, PointCloud2

        self.proc = NodeProcess(module, params)
        c = self.client = RosClient(client_name)
        self.inputs = [c.publisher(msg_type, topic) for msg_type, topic in inputs]
        self.depth = c.subscribe(Image, "depth/image")
        self.info = c.subscribe(CameraInfo, "depth/camera_info")
        self.points = c.subscribe(PointCloud2, "depth/points")
        self.colormap = c.subscribe(Image, "depth/colormap")
        self.uncertainty = c.subscribe(Image, "depth/uncertainty")
        self.diag = c.subscribe(DiagnosticArray, "diagnostics")
        c.wait_matched(self.inputs, [self.depth, self.info, self.points, self.colormap, self.diag],
                       timeout=match_timeout)

    def publish(self, *messages: Any) -> None:
        """Publish one message per input (None = leave that input out)."""
        for pub, msg in zip(self.inputs, messages):
            if msg is not None:
                pub.publish(msg)

    def wait_depth(self, t: float, timeout: float = 60.0) -> Any:
        """The depth/image message stamped ``t``; AssertionError with the node's log tail if none."""
        key = stamp_key(t)
        try:
            return self.client.wait_for(
                lambda: next((m for m in self.depth.messages
                              if (m.header.stamp.sec, m.header.stamp.nanosec) == key), None),
                timeout=timeout, what=f"depth/image for stamp {t}")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; node log:\n{self.proc.log()[-4000:]}") from None

    def send_good(self, timeout: float = 30.0) -> tuple[float, Any]:  # pragma: no cover - abstract
        raise NotImplementedError

    def warm_up(self, timeout: float = 60.0, attempt_timeout: float = 5.0) -> None:
        """Send good frames until one is answered: DDS discovery has matched in both directions.

        A publisher may see the node's subscription before the node has matched the publisher;
        reliable samples sent in that window only arrive after a heartbeat (seconds later).
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                self.send_good(timeout=attempt_timeout)
                return
            except AssertionError:
                continue
        raise AssertionError(f"the node never answered; log:\n{self.proc.log()[-4000:]}")

    def expect_drop(self, reason: str, log_part: str, message_part: str = "") -> dict[str, str]:
        """The log names the problem (``dropped N: <reason>: ...<log_part>``) and diagnostics report
        WARN with the ``drops_<reason>`` counter; returns the diagnostics values."""
        self.proc.wait_for_log(rf"dropped \d+: {reason}: .*{log_part}", timeout=30,
                               spin=lambda: self.client.spin_for(0.05))
        msg = self.client.wait_for(
            lambda: find_diagnostic(self.diag.messages, WARN, f"drops_{reason}", 1, message_part or reason),
            timeout=15, what=f"WARN diagnostics with drops_{reason}")
        assert f"{reason}:" in msg.status[0].message
        return diagnostic_values(msg)

    def serve(self, **warm_up: float):
        """Fixture body: warm up, yield the rig, always clean up the client and the process."""
        try:
            self.warm_up(**warm_up)
            yield self
        finally:
            self.client.destroy()
            self.proc.cleanup()
