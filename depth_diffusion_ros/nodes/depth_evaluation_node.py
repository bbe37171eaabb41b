"""``depth_evaluation_node``: scores a depth stream live against ground truth.

The same node scores ``depth-diffusion-ros replay`` runs and live ``ros2 bag play`` +
``ros2 launch depth_diffusion_ros kitti.launch.py evaluate:=true`` runs, so both give the same
``report.json``. Metrics come from :mod:`depth_diffusion_ros.evaluation.metrics` (the one
implementation); held-out LiDAR points are rendered with
:func:`~depth_diffusion_ros.geometry.projection.project_lidar_to_depth` (the one projection).

Subscribed (relative names):
    ``depth/image`` (sensor_msgs/Image 32FC1 m or 16UC1 mm): the prediction.
    ``depth_gt`` (sensor_msgs/Image 32FC1|16UC1): ground truth, when ``ground_truth: depth``.
    ``points_holdout`` (sensor_msgs/PointCloud2): LiDAR points held out from the pipeline's input,
        when ``ground_truth: points``; with ``camera_info`` (sensor_msgs/CameraInfo) of the
        camera and the ``T_camera_lidar`` parameter.
Published:
    ``evaluation/metrics`` (std_msgs/String, JSON; reliable, depth 10): one message per frame,
        ``{"event": "frame", "stamp_ns", "frame_id", "frame": {metrics}, "mean": {...},
        "n_frames", "skipped"}`` or ``{"event": "skip", "reason", "detail", "skipped", ...}``.
        Metrics are in KITTI units: rmse_mm, mae_mm, irmse_1_km, imae_1_km, abs_rel, sq_rel,
        rmse_log, log10, delta1..3, n_valid.
    ``diagnostics`` (diagnostic_msgs/DiagnosticArray, 1 Hz): frames scored, skips per reason, mean.
Parameters: see ``PARAMETERS`` below (each declared with a ParameterDescriptor).

The report (``report_path``) is written after every frame and once more when the node shuts
down. Prediction and ground truth are paired by header stamp within ``sync_slop`` seconds;
predictions without ground truth (and ground truth without prediction) are counted, not scored.
"""
from __future__ import annotations

import json
import time
from typing import Any, Optional

import numpy as np
import rclpy
import rclpy.executors
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, ParameterType
from rclpy.exceptions import ParameterUninitializedException
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, Image, PointCloud2
from std_msgs.msg import String

from depth_diffusion_ros.evaluation.metrics import (
    depth_metrics,
    garg_crop_mask,
    kitti_eigen_crop_mask,
    nyu_eigen_crop_mask,
)
from depth_diffusion_ros.evaluation.report import EvaluationReport
from depth_diffusion_ros.geometry.projection import project_lidar_to_depth
from depth_diffusion_ros.ros import (
    RELIABILITY_CHOICES,
    ApproximateTimeSynchronizer,
    InputError,
    camera_info_to_intrinsics,
    depth_from_image,
    pointcloud2_to_xyz,
    qos_from_parameter,
    stamp_to_ns,
)

NODE_NAME = "depth_evaluation_node"
GROUND_TRUTH_SOURCES = ("depth", "points")
CROPS = {"none": None, "garg": garg_crop_mask, "eigen": kitti_eigen_crop_mask, "nyu_eigen": nyu_eigen_crop_mask}

#: name -> (default, description, extra descriptor fields)
PARAMETERS: dict[str, tuple[Any, str, dict[str, Any]]] = {
    "ground_truth": ("depth", "ground-truth source: 'depth' (topic depth_gt) or 'points' (topic points_holdout "
                     "+ camera_info + T_camera_lidar)", {"read_only": True}),
    "report_path": ("", "report.json to write after every frame and at shutdown ('' = none)", {"read_only": True}),
    "min_depth": (1e-3, "ground truth below this (m) is ignored; predictions are clipped to it",
                  {"floating_point_range": [FloatingPointRange(from_value=1e-6, to_value=1000.0)]}),
    "max_depth": (0.0, "ground truth above this (m) is ignored and predictions clipped to it (0 = no limit)",
                  {"floating_point_range": [FloatingPointRange(from_value=0.0, to_value=10000.0)]}),
    "crop": ("none", "evaluation crop: none | garg | eigen (KITTI) | nyu_eigen", {}),
    "sync_slop": (0.05, "largest stamp difference (s) between a prediction and its ground truth",
                  {"floating_point_range": [FloatingPointRange(from_value=0.0, to_value=10.0)]}),
    "queue_size": (10, "messages kept per input while waiting for a partner",
                   {"integer_range": [IntegerRange(from_value=1, to_value=1000, step=1)]}),
    "reliability": ("best_effort", "QoS reliability of the subscriptions: best_effort | reliable", {}),
    "stale_timeout": (10.0, "drop (and count) inputs that waited longer than this (s) for a partner",
                      {"floating_point_range": [FloatingPointRange(from_value=0.1, to_value=3600.0)]}),
    "flush_every": (1, "write report_path after every N frames",
                    {"integer_range": [IntegerRange(from_value=1, to_value=100000, step=1)]}),
}
#: T_camera_lidar: 16 doubles, row-major 4x4 (LiDAR -> camera optical frame, metres); needed for points.
T_PARAM = "T_camera_lidar"

_DROP_NAMES = {  # synchroniser reason -> report reason, per input
    ("unsynchronized", "prediction"): "no_ground_truth",
    ("unsynchronized", "ground_truth"): "no_prediction",
    ("queue_full", "prediction"): "no_ground_truth",
    ("queue_full", "ground_truth"): "no_prediction",
}


class DepthEvaluationNode(Node):
    """Live depth evaluation (see the module docstring). ``kwargs`` go to ``rclpy.node.Node``.

    Raises:
        ValueError: a parameter is out of range or inconsistent (the message names it).
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(NODE_NAME, **kwargs)
        for name, (default, description, extra) in PARAMETERS.items():
            self.declare_parameter(name, default, ParameterDescriptor(description=description, **extra))
        self.declare_parameter(
            T_PARAM, Parameter.Type.DOUBLE_ARRAY,
            ParameterDescriptor(type=ParameterType.PARAMETER_DOUBLE_ARRAY, read_only=True,
                                description="row-major 4x4 LiDAR -> camera transform (16 values), "
                                            "needed when ground_truth is 'points'"),
        )
        p = {name: self.get_parameter(name).value for name in PARAMETERS}
        self.source = str(p["ground_truth"])
        if self.source not in GROUND_TRUTH_SOURCES:
            raise ValueError(f"parameter ground_truth={self.source!r}: choose one of {list(GROUND_TRUTH_SOURCES)}")
        if p["crop"] not in CROPS:
            raise ValueError(f"parameter crop={p['crop']!r}: choose one of {sorted(CROPS)}")
        if p["reliability"] not in RELIABILITY_CHOICES:
            raise ValueError(f"parameter reliability={p['reliability']!r}: choose one of {list(RELIABILITY_CHOICES)}")
        self.min_depth = float(p["min_depth"])
        self.max_depth: Optional[float] = float(p["max_depth"]) or None
        if self.max_depth is not None and self.max_depth <= self.min_depth:
            raise ValueError(f"parameter max_depth={self.max_depth} must exceed min_depth={self.min_depth}")
        self.crop = str(p["crop"])
        self.stale_timeout = float(p["stale_timeout"])
        self.T_camera_lidar: Optional[np.ndarray] = None
        try:
            t_value = self.get_parameter(T_PARAM).value
        except ParameterUninitializedException:
            t_value = None
        if t_value is not None and len(t_value):
            T = np.asarray(t_value, dtype=np.float64)
            if T.size != 16 or not np.all(np.isfinite(T)) or not np.allclose(T.reshape(4, 4)[3], [0, 0, 0, 1]):
                raise ValueError(f"parameter {T_PARAM} must be 16 finite values of a row-major 4x4 rigid transform")
            self.T_camera_lidar = T.reshape(4, 4)
        if self.source == "points" and self.T_camera_lidar is None:
            raise ValueError(f"parameter {T_PARAM} (16 values, row-major) is required when ground_truth is 'points'")

        self.report = EvaluationReport(
            p["report_path"] or None,
            meta={"node": self.get_fully_qualified_name(), "ground_truth": self.source, "crop": self.crop,
                  "min_depth": self.min_depth, "max_depth": self.max_depth},
            flush_every=int(p["flush_every"]),
        )
        self.frames_scored = 0
        self._camera_info: Optional[CameraInfo] = None
        self._last_skip: Optional[str] = None

        qos = qos_from_parameter(str(p["reliability"]), depth=int(p["queue_size"]))
        out_qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        self.metrics_pub = self.create_publisher(String, "evaluation/metrics", out_qos)
        self.diagnostics_pub = self.create_publisher(DiagnosticArray, "diagnostics", 10)
        self.sync = ApproximateTimeSynchronizer(
            ("prediction", "ground_truth"), float(p["sync_slop"]), self._on_pair,
            queue_size=int(p["queue_size"]), on_drop=self._on_sync_drop,
        )
        self.create_subscription(Image, "depth/image", lambda m: self._add("prediction", m), qos)
        if self.source == "depth":
            self.create_subscription(Image, "depth_gt", lambda m: self._add("ground_truth", m), qos)
        else:
            self.create_subscription(PointCloud2, "points_holdout", lambda m: self._add("ground_truth", m), qos)
            self.create_subscription(CameraInfo, "camera_info", self._on_camera_info, qos)
        self.create_timer(1.0, self._on_timer)
        self.get_logger().info(
            f"scoring depth/image against {'depth_gt' if self.source == 'depth' else 'points_holdout'}"
            + (f", report {self.report.path}" if self.report.path else "")
        )

    # -- inputs ----------------------------------------------------------------------------
    def _add(self, which: str, msg: Any) -> None:
        self.sync.add(which, msg)

    def _on_camera_info(self, msg: CameraInfo) -> None:
        self._camera_info = msg

    def _on_sync_drop(self, reason: str, topic: str, count: int, detail: str) -> None:
        self._skip(_DROP_NAMES.get((reason, topic), f"{reason}_{topic}"), detail, count=count)

    def _report_call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """Run a report update; if its file cannot be written, continue in memory only."""
        try:
            return fn(*args, **kwargs)
        except OSError as exc:
            self.get_logger().error(f"cannot write the report {self.report.path}, continuing without a file: {exc}")
            self.report.path = None
            return None

    def _skip(self, reason: str, detail: str, stamp_ns: Optional[int] = None, count: int = 1) -> None:
        self._report_call(self.report.add_skip, reason, count)
        if self._last_skip != reason:
            self.get_logger().warning(f"frame not scored ({reason}): {detail}")
            self._last_skip = reason
        self._publish({"event": "skip", "reason": reason, "detail": detail, "stamp_ns": stamp_ns,
                       "count": count})

    # -- scoring ---------------------------------------------------------------------------
    def ground_truth_for(self, gt_msg: Any, shape: tuple[int, int]) -> np.ndarray:
        """Ground-truth depth (H, W) float32 m (0 = none) for a prediction of ``shape``.

        Raises InputError with the skip reason (``gt_size_mismatch``, ``no_camera_info``, ...).
        """
        if self.source == "depth":
            gt = depth_from_image(gt_msg)
            if gt.shape != shape:
                raise InputError(
                    f"ground truth is {gt.shape[1]}x{gt.shape[0]}, prediction {shape[1]}x{shape[0]}",
                    reason="gt_size_mismatch",
                )
            return gt
        if self._camera_info is None:
            raise InputError("no camera_info received yet", reason="no_camera_info")
        intrinsics = camera_info_to_intrinsics(self._camera_info)
        if (intrinsics.height, intrinsics.width) != shape:
            intrinsics = intrinsics.scaled(shape[1], shape[0])
        points = pointcloud2_to_xyz(gt_msg)
        return project_lidar_to_depth(points, self.T_camera_lidar, intrinsics)

    def _on_pair(self, pred_msg: Image, gt_msg: Any) -> None:
        stamp = stamp_to_ns(pred_msg)
        try:
            pred = depth_from_image(pred_msg)
            gt = self.ground_truth_for(gt_msg, pred.shape)
            mask = CROPS[self.crop](*pred.shape) if CROPS[self.crop] else None
            try:
                metrics = depth_metrics(pred, gt, mask, min_depth=self.min_depth, max_depth=self.max_depth)
            except ValueError as exc:
                raise InputError(str(exc), reason="no_valid_gt") from exc
        except InputError as exc:
            self._skip(exc.reason, str(exc), stamp)
            return
        except ValueError as exc:  # e.g. malformed arrays rejected by geometry
            self._skip("bad_input", str(exc), stamp)
            return
        self._report_call(self.report.add_frame, stamp, metrics, frame_id=pred_msg.header.frame_id)
        entry = self.report.frames[-1]
        self.frames_scored += 1
        self._publish({"event": "frame", "stamp_ns": stamp, "frame_id": pred_msg.header.frame_id,
                       "frame": entry})

    def _publish(self, payload: dict[str, Any]) -> None:
        payload.update({"n_frames": len(self.report.frames), "mean": self.report.mean(),
                        "skipped": dict(self.report.skipped)})
        self.metrics_pub.publish(String(data=json.dumps(payload, default=float)))

    # -- housekeeping ----------------------------------------------------------------------
    def _on_timer(self) -> None:
        self.sync.discard_older_than(self.stale_timeout)
        self.diagnostics_pub.publish(self.diagnostics())

    def diagnostics(self) -> DiagnosticArray:
        """DiagnosticArray with frames scored, skips per reason and the running mean."""
        mean = self.report.mean()
        status = DiagnosticStatus(
            level=DiagnosticStatus.OK if not self.report.skipped else DiagnosticStatus.WARN,
            name=f"{self.get_name()}: evaluation",
            message=(f"{len(self.report.frames)} frames scored"
                     + (f", mean RMSE {mean['rmse_mm']:.1f} mm" if mean else "")
                     + (f", skipped {self.report.skipped}" if self.report.skipped else "")),
            hardware_id=self.get_fully_qualified_name(),
            values=[KeyValue(key="frames_scored", value=str(len(self.report.frames)))]
            + [KeyValue(key=f"skipped/{k}", value=str(v)) for k, v in sorted(self.report.skipped.items())]
            + [KeyValue(key=f"mean/{k}", value=f"{v:.6g}") for k, v in mean.items()],
        )
        msg = DiagnosticArray(status=[status])
        msg.header.stamp = self.get_clock().now().to_msg()
        return msg

    def write_report(self) -> Optional[str]:
        """Write the report file now; returns its path (None without ``report_path``)."""
        if self.report.path is None:
            return None
        try:
            return str(self.report.flush())
        except OSError as exc:
            self.get_logger().error(f"cannot write the report {self.report.path}: {exc}")
            return None

    def destroy_node(self) -> None:
        """Write the final report, then destroy the node."""
        self.write_report()
        super().destroy_node()


def main(args: Optional[list[str]] = None) -> None:
    """Entry point of ``ros2 run depth_diffusion_ros depth_evaluation_node``."""
    rclpy.init(args=args)
    node = None
    try:
        node = DepthEvaluationNode()
        rclpy.spin(node)
    except (KeyboardInterrupt, rclpy.executors.ExternalShutdownException):
        pass
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()


if __name__ == "__main__":
    main()
