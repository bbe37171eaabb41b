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
        camera and ``T_camera_lidar`` (the parameter, or tf2 with ``use_tf: true``: camera_info
        frame <- points frame). Each frame is projected with its own calibration, as KITTI object
        bags carry one per frame: the camera_info whose stamp is nearest the points' (within
        ``sync_slop``, else the latest), and the transform looked up when the points arrive (a
        later ``/tf_static`` for the next frame does not re-calibrate a frame still waiting for
        its prediction).
Published:
    ``evaluation/metrics`` (std_msgs/String, JSON; reliable, depth 10): one message per frame,
        ``{"event": "frame", "stamp_ns", "frame_id", "frame": {metrics}, "mean": {...},
        "n_frames", "skipped"}`` or ``{"event": "skip", "reason", "detail", "skipped", ...}``.
        Metrics are in KITTI units: rmse_mm, mae_mm, irmse_1_km, imae_1_km, abs_rel, sq_rel,
        rmse_log, log10, delta1..3, n_valid.
    ``diagnostics`` (diagnostic_msgs/DiagnosticArray): frames scored, drops (skips) per reason, mean.
Parameters: ``PARAMETERS`` below (the common ones of ``nodes/parameters.py`` plus ground_truth,
report_path, min_depth, max_depth, crop, flush_every, T_camera_lidar, use_tf); each declared
with a ParameterDescriptor. ``input_timeout`` defaults to 60 s here: ground truth waits for a
prediction that may take seconds.

The report (``report_path``) is written after every frame and once more when the node shuts
down. A prediction at a processing resolution is resized to the ground truth's size (same aspect
ratio only) so that scores are always at ground-truth resolution. Prediction and ground truth are paired by header stamp within ``sync_slop`` seconds;
predictions without ground truth (and ground truth without prediction) are counted, not scored.
"""
from __future__ import annotations

import dataclasses
import json
from collections import OrderedDict
from typing import Any, Optional

import numpy as np
from rclpy.node import Node
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
from depth_diffusion_ros.nodes.extrinsics import LidarExtrinsics, transform_parameter_specs
from depth_diffusion_ros.nodes.health import WARN, NodeHealth
from depth_diffusion_ros.nodes.inputs import NodeSynchronizer
from depth_diffusion_ros.nodes.parameters import COMMON_PARAMETERS, ParameterError, ParamSpec, declare_parameters
from depth_diffusion_ros.nodes.process import run_node
from depth_diffusion_ros.ros import (
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


def _common(spec: ParamSpec) -> ParamSpec:
    # ground truth usually waits for a slow prediction (a diffusion backend on a CPU takes
    # seconds), so the evaluation node keeps inputs longer than the other nodes
    if spec.name == "input_timeout":
        return dataclasses.replace(spec, default=60.0)
    if spec.name == "queue_size":
        return dataclasses.replace(spec, default=10)
    return spec


#: Parameters (ParameterDescriptor for each; see ``nodes.parameters.ParamSpec``).
PARAMETERS: tuple[ParamSpec, ...] = tuple(_common(s) for s in COMMON_PARAMETERS) + (
    ParamSpec("ground_truth", "depth",
              "ground-truth source: 'depth' (topic depth_gt) or 'points' (topic points_holdout, projected "
              "with camera_info and T_camera_lidar)", read_only=True, choices=GROUND_TRUTH_SOURCES),
    ParamSpec("report_path", "", "report.json written after every frame and at shutdown ('' = none)",
              read_only=True),
    ParamSpec("min_depth", 1e-3, "ground truth below this (metres) is ignored; predictions are clipped to it",
              read_only=True, range=(1e-6, 1000.0)),
    ParamSpec("max_depth", 0.0,
              "ground truth above this (metres) is ignored and predictions are clipped to it (0 = no limit)",
              read_only=True, range=(0.0, 10000.0)),
    ParamSpec("crop", "none", "evaluation crop: none, garg or eigen (KITTI), nyu_eigen", read_only=True,
              choices=tuple(CROPS)),
    ParamSpec("flush_every", 1, "write report_path after every N frames", read_only=True, range=(1, 100000)),
) + transform_parameter_specs()

_DROP_NAMES = {  # synchroniser reason -> report reason, per input
    ("unsynchronized", "prediction"): "no_ground_truth",
    ("unsynchronized", "ground_truth"): "no_prediction",
    ("queue_full", "prediction"): "no_ground_truth",
    ("queue_full", "ground_truth"): "no_prediction",
}


def resize_to_ground_truth(pred: np.ndarray, gt_shape: tuple[int, int]) -> np.ndarray:
    """Resize a prediction made at a processing resolution to the ground truth's (H, W).

    Only when the aspect ratios agree within 1 % (a pure rescale, as ``processing_width/height``
    makes); otherwise the prediction is returned unchanged and the frame is skipped as
    ``gt_size_mismatch``. Bilinear when the prediction is valid everywhere, nearest otherwise
    (so no depth is interpolated towards a missing 0).
    """
    import cv2

    h, w = pred.shape
    gh, gw = gt_shape
    if abs((w / h) / (gw / gh) - 1.0) > 0.01:
        return pred
    interp = cv2.INTER_LINEAR if np.all(pred > 0) else cv2.INTER_NEAREST
    return cv2.resize(pred, (gw, gh), interpolation=interp)


class DepthEvaluationNode(Node):
    """Live depth evaluation (see the module docstring). ``kwargs`` go to ``rclpy.node.Node``.

    Raises:
        ParameterError (a ValueError): a parameter is out of range or inconsistent; the message
            names it.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(NODE_NAME, **kwargs)
        self.params = p = declare_parameters(self, PARAMETERS)
        self.source = p["ground_truth"]
        self.min_depth = float(p["min_depth"])
        self.max_depth: Optional[float] = float(p["max_depth"]) or None
        if self.max_depth is not None and self.max_depth <= self.min_depth:
            raise ParameterError(f"parameter 'max_depth' = {self.max_depth} must exceed min_depth = {self.min_depth}")
        self.crop = p["crop"]
        self.extrinsics: Optional[LidarExtrinsics] = None
        if self.source == "points":
            self.extrinsics = LidarExtrinsics(self, p["T_camera_lidar"], p["use_tf"])
        self.report = EvaluationReport(
            p["report_path"] or None,
            meta={"node": self.get_fully_qualified_name(), "ground_truth": self.source, "crop": self.crop,
                  "min_depth": self.min_depth, "max_depth": self.max_depth},
            flush_every=int(p["flush_every"]),
        )
        self.health = NodeHealth(self, "depth evaluation", p, extra={"ground_truth": self.source})
        self._camera_infos: OrderedDict[int, CameraInfo] = OrderedDict()  # stamp ns -> message, recent ones
        self._transforms: OrderedDict[int, np.ndarray] = OrderedDict()  # points stamp ns -> T at arrival
        self._keep = 4 * int(p["queue_size"])

        qos = qos_from_parameter(p["reliability"], depth=int(p["queue_size"]))
        self.metrics_pub = self.create_publisher(
            String, "evaluation/metrics", QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE))
        self.sync = NodeSynchronizer(self, ("prediction", "ground_truth"), self._on_pair, self.health, p,
                                     self._on_sync_drop)
        self.create_subscription(Image, "depth/image", lambda m: self.sync.add("prediction", m), qos)
        if self.source == "depth":
            self.create_subscription(Image, "depth_gt", lambda m: self.sync.add("ground_truth", m), qos)
        else:
            self.create_subscription(PointCloud2, "points_holdout", self._on_points, qos)
            self.create_subscription(CameraInfo, "camera_info", self._on_camera_info, qos)
        self.create_timer(min(0.5, float(p["input_timeout"]) / 2), self._on_watchdog)
        extrinsics = "" if self.extrinsics is None else \
            f" (T_camera_lidar from {'tf2' if self.extrinsics.use_tf else 'the parameter'})"
        self.get_logger().info(
            f"scoring depth/image against {'depth_gt' if self.source == 'depth' else 'points_holdout'}{extrinsics}"
            + (f", report {self.report.path.resolve()}" if self.report.path else ", no report file (report_path '')")
        )

    # -- inputs ----------------------------------------------------------------------------
    def _remember(self, table: OrderedDict, stamp_ns: int, value: Any) -> None:
        table[stamp_ns] = value
        table.move_to_end(stamp_ns)
        while len(table) > self._keep:
            table.popitem(last=False)

    def _on_camera_info(self, msg: CameraInfo) -> None:
        self._remember(self._camera_infos, stamp_to_ns(msg), msg)

    def _on_points(self, msg: PointCloud2) -> None:
        """Held-out points: note the transform in force now (this frame's), then synchronise."""
        info = self._camera_info_for(stamp_to_ns(msg))
        if info is not None:
            try:
                T = self.extrinsics.lookup(info.header.frame_id, msg.header.frame_id,  # type: ignore[union-attr]
                                           msg.header.stamp)
                self._remember(self._transforms, stamp_to_ns(msg), T)
            except InputError:
                pass  # looked up again when the frame is scored (and reported then)
        self.sync.add("ground_truth", msg)

    def _camera_info_for(self, stamp_ns: int) -> Optional[CameraInfo]:
        """The camera_info nearest ``stamp_ns`` within sync_slop, else the latest received."""
        if not self._camera_infos:
            return None
        nearest = min(self._camera_infos, key=lambda t: abs(t - stamp_ns))
        if abs(nearest - stamp_ns) <= float(self.params["sync_slop"]) * 1e9:
            return self._camera_infos[nearest]
        return next(reversed(self._camera_infos.values()))

    def _on_sync_drop(self, reason: str, topic: str, count: int, detail: str) -> None:
        self._skip(_DROP_NAMES.get((reason, topic), f"{reason}_{topic}"), detail, count=count)

    def _on_watchdog(self) -> None:
        self.sync.discard_older_than(float(self.params["input_timeout"]))

    def _report_call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """Run a report update; if its file cannot be written, continue in memory only."""
        try:
            return fn(*args, **kwargs)
        except OSError as exc:
            self.get_logger().error(f"cannot write the report {self.report.path}, continuing without a file: {exc}")
            self.report.path = None
            return None

    def _skip(self, reason: str, detail: str, stamp_ns: Optional[int] = None, count: int = 1) -> None:
        self.health.drop(reason, detail, WARN, count)
        self._report_call(self.report.add_skip, reason, count)
        self._publish({"event": "skip", "reason": reason, "detail": detail, "stamp_ns": stamp_ns, "count": count})

    # -- scoring ---------------------------------------------------------------------------
    def ground_truth_for(self, gt_msg: Any, shape: tuple[int, int], camera_frame: str) -> np.ndarray:
        """Ground-truth depth (H, W) float32 m (0 = none) for a prediction of ``shape``.

        Raises InputError with the skip reason (``gt_size_mismatch``, ``no_camera_info``,
        ``tf_unavailable``, ``malformed_points``, ``bad_encoding`` ...).
        """
        if self.source == "depth":
            gt = depth_from_image(gt_msg)
            if gt.shape != shape:
                raise InputError(
                    f"ground truth is {gt.shape[1]}x{gt.shape[0]}, prediction {shape[1]}x{shape[0]}",
                    reason="gt_size_mismatch",
                )
            return gt
        stamp = stamp_to_ns(gt_msg)
        info = self._camera_info_for(stamp)
        if info is None:
            raise InputError("no camera_info received yet", reason="no_camera_info")
        intrinsics = camera_info_to_intrinsics(info)
        if (intrinsics.height, intrinsics.width) != shape:
            intrinsics = intrinsics.scaled(shape[1], shape[0])
        T = self._transforms.pop(stamp, None)
        if T is None:
            T = self.extrinsics.lookup(camera_frame or info.header.frame_id,  # type: ignore[union-attr]
                                       gt_msg.header.frame_id, gt_msg.header.stamp)
        return project_lidar_to_depth(pointcloud2_to_xyz(gt_msg), T, intrinsics)

    def _on_pair(self, pred_msg: Image, gt_msg: Any) -> None:
        stamp = stamp_to_ns(pred_msg)
        self.health.frame_in()
        try:
            pred = depth_from_image(pred_msg)
            if self.source == "depth" and gt_msg.height and gt_msg.width and \
                    (gt_msg.height, gt_msg.width) != pred.shape:
                pred = resize_to_ground_truth(pred, (int(gt_msg.height), int(gt_msg.width)))
            gt = self.ground_truth_for(gt_msg, pred.shape, pred_msg.header.frame_id)
            mask = CROPS[self.crop](*pred.shape) if CROPS[self.crop] else None
            try:
                metrics = depth_metrics(pred, gt, mask, min_depth=self.min_depth, max_depth=self.max_depth)
            except ValueError as exc:
                raise InputError(str(exc), reason="no_valid_gt") from exc
        except InputError as exc:
            self._skip(exc.reason, str(exc), stamp)
            return
        except Exception as exc:  # noqa: BLE001 - a frame must never stop the node
            self._skip("internal_error", f"{type(exc).__name__}: {exc}", stamp)
            return
        self._report_call(self.report.add_frame, stamp, metrics, frame_id=pred_msg.header.frame_id)
        entry = self.report.frames[-1]
        self.health.frame_done(0.0)
        mean = self.report.mean()
        self.health.extra.update({f"mean_{k}": f"{v:.6g}" for k, v in mean.items()})
        self._publish({"event": "frame", "stamp_ns": stamp, "frame_id": pred_msg.header.frame_id, "frame": entry})

    def _publish(self, payload: dict[str, Any]) -> None:
        payload.update({"n_frames": len(self.report.frames), "mean": self.report.mean(),
                        "skipped": dict(self.report.skipped)})
        self.metrics_pub.publish(String(data=json.dumps(payload, default=float)))

    # -- shutdown --------------------------------------------------------------------------
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


def main(args: Optional[list[str]] = None) -> int:
    """Entry point of ``ros2 run depth_diffusion_ros depth_evaluation_node``."""
    return run_node(DepthEvaluationNode, args, NODE_NAME)


if __name__ == "__main__":
    raise SystemExit(main())
