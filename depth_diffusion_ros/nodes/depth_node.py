"""The base class of the depth nodes (completion, estimation, super-resolution): parameters, pipeline, I/O."""
from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence

from rclpy.node import Node

from depth_diffusion_ros.inference.pipelines import DepthOutput
from depth_diffusion_ros.inference.temporal import TemporalFilter
from depth_diffusion_ros.nodes.health import NodeHealth, StageTimer
from depth_diffusion_ros.nodes.inputs import SyncedInputs
from depth_diffusion_ros.nodes.extrinsics import TfEgoMotion
from depth_diffusion_ros.nodes.outputs import OUTPUT_PARAMETERS, DepthOutputs
from depth_diffusion_ros.nodes.parameters import COMMON_PARAMETERS, ParamSpec, declare_parameters
from depth_diffusion_ros.ros import InputError


#: The temporal filter's parameters (completion and estimation nodes; lidar_odometry is the
#: completion node's, with input points).
TEMPORAL_PARAMETERS: tuple[ParamSpec, ...] = (
    ParamSpec("temporal", False, "blend the previous output, moved by temporal_ego_motion, where it agrees with the "
              "current frame; publishes depth/uncertainty", read_only=True),
    ParamSpec("temporal_max_gap", 0.5, "temporal: a longer gap between frames of one camera (seconds) resets "
              "the state, as do a backward time jump and a changed size or intrinsics", read_only=True,
              range=(1e-3, 3600.0)),
    ParamSpec("temporal_ego_motion", "static", "temporal: the camera's motion between frames: static (identity), "
              "tf (the camera frame's motion relative to temporal_fixed_frame in tf2; needs tf2_ros) or "
              "lidar_odometry (KISS-ICP on consecutive scans; depth_completion_node with input points)",
              read_only=True, choices=("static", "tf", "lidar_odometry")),
    ParamSpec("temporal_fixed_frame", "odom", "temporal_ego_motion tf: the world-fixed frame of the lookup",
              read_only=True),
)


def depth_node_parameters(*own: ParamSpec) -> tuple[ParamSpec, ...]:
    """Every parameter a depth node declares: the common ones (inputs, QoS, sync, diagnostics),
    the node's ``own``, then the dense-depth outputs'."""
    return COMMON_PARAMETERS + own + OUTPUT_PARAMETERS


class DepthNode(Node):
    """What the depth nodes share: declared parameters, a pipeline built from them, diagnostics,
    the dense-depth outputs, synchronised inputs, and the end of every frame.

    A subclass calls ``super().__init__(name, PARAMETERS, **kwargs)``, builds ``self.pipeline``
    from ``self.params``, then :meth:`start_io`; its ``on_frame(*messages)`` ends with
    :meth:`publish`. Raises ParameterError (a bad parameter, named) on construction.
    """

    def __init__(self, name: str, parameters: Sequence[ParamSpec], **kwargs: Any) -> None:
        super().__init__(name, **kwargs)
        self.params = declare_parameters(self, parameters)

    def start_io(self, purpose: str, topics: Mapping[str, type], extra: Mapping[str, str], description: str) -> None:
        """Diagnostics (``purpose``, constant ``extra`` values), the outputs, the subscriptions to
        ``topics`` feeding ``self.on_frame``, and one start-up log line."""
        self.health = NodeHealth(self, purpose, self.params, extra=extra)
        self.outputs = DepthOutputs(self, self.params)
        self.inputs = SyncedInputs(self, topics, self.on_frame, self.health, self.params)
        self.get_logger().info(description)

    def start_temporal(self, ego_motion: str = "static camera") -> str:
        """``self.temporal``: the temporal filter (``temporal`` true) or None, and with
        ``temporal_ego_motion`` tf its tf2 lookup; returns the start-up log's words for it ('' when
        off). Raises ParameterError: tf without tf2_ros."""
        p = self.params
        self.temporal: Optional[TemporalFilter] = TemporalFilter(max_gap=p["temporal_max_gap"]) if p["temporal"] \
            else None
        self.tf_ego_motion: Optional[TfEgoMotion] = None
        self._last_stamps: dict[str, Any] = {}  # camera frame id -> the previous frame's stamp (tf only)
        if p["temporal"] and p["temporal_ego_motion"] == "tf":
            self.tf_ego_motion = TfEgoMotion(self, p["temporal_fixed_frame"])
            ego_motion = f"ego-motion from tf relative to {p['temporal_fixed_frame']!r}"
        return f", temporal (max gap {p['temporal_max_gap']:g} s, {ego_motion})" if p["temporal"] else ""

    def temporal_frame(self, image: Any, camera_info: Any, motion: Optional[Any] = None) -> tuple[str, float, Any]:
        """(camera frame id, stamp in seconds, motion) of a frame for the temporal filter: the
        state is kept per camera frame id (the CameraInfo's, else the image's); ``motion`` (4, 4)
        previous -> current camera, None = static, is replaced by tf2's with ``temporal_ego_motion``
        tf. Call it before the pipeline runs (the temporal prior needs the motion)."""
        frame_id = camera_info.header.frame_id or image.header.frame_id
        stamp = image.header.stamp.sec + image.header.stamp.nanosec * 1e-9
        if self.tf_ego_motion is not None:
            motion = self._tf_motion(frame_id, image.header.stamp)
        return frame_id, stamp, motion

    def apply_temporal(self, output: DepthOutput, frame: tuple[str, float, Any]) -> tuple[DepthOutput, Optional[str]]:
        """The temporal filter on one frame's output (``frame`` from :meth:`temporal_frame`).
        Returns the filtered output and the reason the state was reset (logged), or None."""
        result = self.temporal(output, *frame)
        if result.reset is not None:
            self.get_logger().info(f"temporal state reset: {result.reset}")
        return result.output, result.reset

    def _tf_motion(self, frame_id: str, stamp: Any) -> Optional[Any]:
        """tf2's camera motion since this camera's previous frame; None (static for this frame,
        counted as ``tf_ego_motion_failures`` with a log) for the first frame or when tf2 has none."""
        prev = self._last_stamps.get(frame_id)
        self._last_stamps[frame_id] = stamp
        if prev is None:
            return None
        try:
            return self.tf_ego_motion.motion(frame_id, prev, stamp)
        except InputError as exc:
            self.health.count("tf_ego_motion_failures", f"{exc}; static camera assumed for this frame")
            return None

    def on_frame(self, *messages: Any) -> None:  # pragma: no cover - the subclasses' job
        raise NotImplementedError

    def publish(self, timer: StageTimer, output: DepthOutput, header: Any, camera_info: Any) -> None:
        """The end of a frame, after the pipeline ran: publish every output, record the frame's
        latency in the diagnostics and log the stage times at debug level."""
        timer.mark("pipeline")
        self.outputs.publish(output, header, camera_info)
        timer.mark("publish")
        self.health.frame_done(timer.total)
        self.get_logger().debug(f"frame {header.stamp.sec}.{header.stamp.nanosec:09d}: {timer}")
