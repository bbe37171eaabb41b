"""Helpers shared by every node of the package (parameters, QoS, sync, drops, diagnostics, main).

A node built on these helpers looks like this::

    PARAMETERS = COMMON_PARAMETERS + (ParamSpec("backend", "ip_basic", "...", choices=(...)), ...)

    class MyNode(Node):
        def __init__(self, **kwargs):
            super().__init__("my_node", **kwargs)
            self.params = declare_parameters(self, PARAMETERS)        # ParameterError on bad values
            self.health = NodeHealth(self, "my purpose", self.params)  # diagnostics + drop counters
            self.inputs = SyncedInputs(self, {"image": Image, "camera_info": CameraInfo},
                                       self.on_frame, self.health, self.params)

        def on_frame(self, image, camera_info):   # runs inside health.guard(): bad input is
            ...                                   # counted, logged (throttled) and reported
            self.health.frame_done(latency_s)

    def main(args=None):
        return run_node(MyNode, args)

What each piece does:

* :class:`ParamSpec` / :func:`declare_parameters` — every parameter is declared with a
  ``ParameterDescriptor`` (description, integer/float range, read-only flag, allowed values in
  ``additional_constraints``). Values are checked at start; a bad one raises
  :class:`ParameterError` whose message names the parameter, the value and what is allowed.
  Run-time changes (``ros2 param set``) go through the same checks; read-only ones are refused
  by rclpy. Each node module exports its table as ``PARAMETERS`` (the launch/config tests compare
  the YAML files against it).
* :class:`NodeHealth` — counts frames in/out and drops per reason, logs each problem with a
  per-reason throttle (the first occurrence at once), and publishes ``diagnostics``
  (``diagnostic_msgs/DiagnosticArray``) every ``diagnostics_period`` seconds: level OK, or the
  worst WARN/ERROR since the previous report with the latest problem as message, and every
  counter as a KeyValue. :meth:`NodeHealth.guard` wraps a callback so that
  :class:`~depth_diffusion_ros.ros.InputError` (WARN, counter = its ``reason``),
  :class:`~depth_diffusion_ros.inference.backends.BackendError` (ERROR, ``backend_error``)
  and any other exception (ERROR, ``internal_error``, traceback logged) drop the frame
  and never stop the node.
* :class:`SyncedInputs` — one subscription per input (QoS from ``reliability`` and
  ``queue_size``), an :class:`~depth_diffusion_ros.ros.ApproximateTimeSynchronizer` with
  ``sync_slop`` (changeable at run time), and a watchdog that drops queued messages older than
  ``input_timeout`` seconds and reports the input that is missing (e.g. ``missing_camera_info``)
  or ``unsynchronized``.
* :class:`LidarExtrinsics` — ``T_camera_lidar`` from a 16-float parameter or from tf2.
* :func:`run_node` — :func:`keep_frame_memory` (glibc keeps frame-sized buffers instead of
  page-faulting them in every frame), ``rclpy.init``, construct, ``rclpy.spin``, clean shutdown on SIGINT and
  SIGTERM (rclpy's signal handlers), exit code 2 with one clear log line on bad parameters.

Why plain ``rclpy.node.Node`` and not a lifecycle node: the nodes must run from a single
``ros2 run`` / ``ros2 launch`` command without a lifecycle manager, and ``launch_ros``'
``LifecycleNode`` plus the transition events would be needed in every launch file and test for
no gain here. All configuration work (parameter checks, backend construction, which may build
or load a TensorRT engine) happens once in the constructor, before any subscription exists; a
failure there exits with a message naming the parameter or file, which a launch file can
``respawn``. Backends keep no state that would need ``deactivate``/``cleanup`` between runs.
"""
from __future__ import annotations

import array
import ctypes
import math
import os
import sys
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Optional, Sequence

import cv2
import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import (
    FloatingPointRange,
    IntegerRange,
    ParameterDescriptor,
    ParameterType,
    SetParametersResult,
)
from rclpy.exceptions import ParameterException
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.parameter import Parameter

from depth_diffusion_ros.evaluation.figures import colorize_depth
from depth_diffusion_ros.geometry.intrinsics import Intrinsics
from depth_diffusion_ros.geometry.projection import depth_to_points, project_points_to_depth
from depth_diffusion_ros.inference.backends.base import BackendError
from depth_diffusion_ros.ros import (
    RELIABILITY_CHOICES,
    camera_info_to_intrinsics,
    ApproximateTimeSynchronizer,
    ImageBuilder,
    InputError,
    PointCloud2Builder,
    intrinsics_to_camera_info,
    qos_from_parameter,
    transform_msg_to_matrix,
)

#: diagnostic levels as ints (DiagnosticStatus stores them as one byte: ``bytes([level])``)
OK = DiagnosticStatus.OK[0]
WARN = DiagnosticStatus.WARN[0]
ERROR = DiagnosticStatus.ERROR[0]


class ParameterError(ValueError):
    """A parameter value is not allowed; the message names the parameter, the value and the rule."""


_TYPES = {
    bool: ParameterType.PARAMETER_BOOL,
    int: ParameterType.PARAMETER_INTEGER,
    float: ParameterType.PARAMETER_DOUBLE,
    str: ParameterType.PARAMETER_STRING,
}
_ARRAY_TYPES = {
    float: ParameterType.PARAMETER_DOUBLE_ARRAY,
    str: ParameterType.PARAMETER_STRING_ARRAY,
    int: ParameterType.PARAMETER_INTEGER_ARRAY,
}


@dataclass(frozen=True)
class ParamSpec:
    """Declaration of one node parameter.

    Attributes:
        name: parameter name.
        default: default value (its Python type fixes the parameter type: bool, int, float, str,
            or a list/tuple for arrays; for an empty list give ``array_of``).
        description: one sentence, with units, shown by ``ros2 param describe``.
        read_only: cannot change after start (model/engine paths, topics, backend).
        range: (from, to) inclusive numeric range, or None.
        choices: allowed string values, or None.
        array_of: element type of an array parameter (float, str, int).
        validate: extra check ``value -> error message or None``.
        dynamic: when not read-only, whether a run-time change takes effect (documented in
            the description; changes to non-dynamic ones are refused).
    """

    name: str
    default: Any
    description: str
    read_only: bool = False
    range: Optional[tuple[float, float]] = None
    choices: Optional[tuple[str, ...]] = None
    array_of: Optional[type] = None
    validate: Optional[Callable[[Any], Optional[str]]] = None
    dynamic: bool = False

    @property
    def type(self) -> int:
        """rcl_interfaces ParameterType of this parameter."""
        if isinstance(self.default, (list, tuple)):
            elem = self.array_of or (type(self.default[0]) if self.default else float)
            return _ARRAY_TYPES[elem]
        return _TYPES[type(self.default)]

    def descriptor(self) -> ParameterDescriptor:
        """The ParameterDescriptor declared for this parameter."""
        d = ParameterDescriptor(name=self.name, type=self.type, description=self.description,
                                read_only=self.read_only or not self.dynamic,
                                dynamic_typing=self._lenient)
        if self.choices:
            d.additional_constraints = "one of: " + ", ".join(self.choices)
        if self.range is not None:
            lo, hi = self.range
            if self.type == ParameterType.PARAMETER_INTEGER:
                d.integer_range = [IntegerRange(from_value=int(lo), to_value=int(hi), step=0)]
            else:
                d.floating_point_range = [FloatingPointRange(from_value=float(lo), to_value=float(hi), step=0.0)]
        return d

    @property
    def _lenient(self) -> bool:
        # float parameters accept integers (``max_depth: 100`` in YAML), and empty-array
        # defaults need dynamic typing (rclpy would type an empty list as a byte array)
        return self.type in (ParameterType.PARAMETER_DOUBLE, ParameterType.PARAMETER_DOUBLE_ARRAY) or (
            isinstance(self.default, (list, tuple)) and not self.default)

    def declared_default(self) -> Any:
        """The value given to ``declare_parameter`` (None for an empty array)."""
        if isinstance(self.default, (list, tuple)):
            return list(self.default) or None
        return self.default

    def coerce(self, value: Any) -> Any:
        """Normalise a parameter value to this spec's Python type.

        Raises:
            ParameterError: the value has the wrong type (the message names the parameter).
        """
        value = _plain(value)
        ptype = self.type
        if ptype == ParameterType.PARAMETER_DOUBLE:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ParameterError(f"parameter {self.name!r} = {value!r} must be a number ({self.description})")
            return float(value)
        if isinstance(self.default, (list, tuple)):
            if value is None:
                return []
            if not isinstance(value, list):
                raise ParameterError(f"parameter {self.name!r} = {value!r} must be a list ({self.description})")
            elem = self.array_of or (type(self.default[0]) if self.default else float)
            ok = [isinstance(v, elem) or (elem is float and isinstance(v, int)) for v in value]
            if not all(ok) or any(isinstance(v, bool) for v in value):
                raise ParameterError(
                    f"parameter {self.name!r} = {value!r} must be a list of {elem.__name__} ({self.description})")
            return [elem(v) for v in value]
        return value

    def check(self, value: Any) -> Optional[str]:
        """Error message for ``value`` or None if it is allowed."""
        if self.choices is not None and value not in self.choices:
            return f"must be one of {list(self.choices)}"
        if self.range is not None and isinstance(value, (int, float)) and not isinstance(value, bool):
            lo, hi = self.range
            if not (lo <= value <= hi):
                return f"must be in [{lo}, {hi}]"
        if self.validate is not None:
            return self.validate(value)
        return None


def _plain(value: Any) -> Any:
    if isinstance(value, (np.ndarray, array.array)):  # rclpy returns arrays for some array types
        return list(value.tolist())
    if isinstance(value, tuple):
        return list(value)
    return value


def declare_parameters(node: Node, specs: Sequence[ParamSpec]) -> dict[str, Any]:
    """Declare ``specs`` on ``node`` and return the checked values (name -> value).

    The returned dict stays current: an accepted run-time change of a dynamic parameter updates
    it (and ``node`` may register ``on_parameter_change`` hooks through
    :func:`add_parameter_hook`).

    Raises:
        ParameterError: a value of the wrong type, out of range, not among the choices or
            failing its ``validate`` check; the message names the parameter and value.
    """
    values: dict[str, Any] = {}
    by_name = {s.name: s for s in specs}
    for spec in specs:
        try:
            param = node.declare_parameter(spec.name, spec.declared_default(), spec.descriptor())
        except ParameterException as exc:
            raise ParameterError(f"parameter {spec.name!r}: {exc} ({spec.description})") from exc
        value = spec.coerce(param.value)
        problem = spec.check(value)
        if problem:
            raise ParameterError(f"parameter {spec.name!r} = {value!r} {problem} ({spec.description})")
        values[spec.name] = value
    hooks: dict[str, list[Callable[[Any], None]]] = getattr(node, "_ddr_parameter_hooks", {})
    node._ddr_parameter_hooks = hooks  # type: ignore[attr-defined]

    def on_set(params: list[Parameter]) -> SetParametersResult:
        for p in params:
            spec = by_name.get(p.name)
            if spec is None:
                continue
            if not spec.dynamic:
                return SetParametersResult(successful=False, reason=f"{p.name} cannot change at run time")
            try:
                problem = spec.check(spec.coerce(p.value))
            except ParameterError as exc:
                problem = str(exc)
            if problem:
                return SetParametersResult(successful=False, reason=f"{p.name} = {p.value!r} {problem}")
        for p in params:
            if p.name in by_name:
                values[p.name] = by_name[p.name].coerce(p.value)
                for hook in hooks.get(p.name, []):
                    hook(values[p.name])
        return SetParametersResult(successful=True)

    node.add_on_set_parameters_callback(on_set)
    return values


def add_parameter_hook(node: Node, name: str, hook: Callable[[Any], None]) -> None:
    """Call ``hook(new_value)`` after a run-time change of parameter ``name`` is accepted."""
    node._ddr_parameter_hooks.setdefault(name, []).append(hook)  # type: ignore[attr-defined]


def _check_slop(v: float) -> Optional[str]:
    return None if math.isfinite(v) else "must be finite"


#: Parameters every node of the package declares (inputs, QoS, sync, diagnostics).
COMMON_PARAMETERS: tuple[ParamSpec, ...] = (
    ParamSpec("reliability", "best_effort",
              "QoS reliability of the input subscriptions: best_effort (sensor-data profile, "
              "receives from any publisher) or reliable", read_only=True, choices=RELIABILITY_CHOICES),
    ParamSpec("output_reliability", "reliable",
              "QoS reliability of the published topics: reliable (matches every subscriber) or best_effort",
              read_only=True, choices=RELIABILITY_CHOICES),
    ParamSpec("queue_size", 5, "QoS history depth and per-input synchroniser queue length (messages)",
              read_only=True, range=(1, 100)),
    ParamSpec("sync_slop", 0.05,
              "largest stamp difference (seconds) between the messages of one synchronised set",
              range=(0.0, 10.0), validate=_check_slop, dynamic=True),
    ParamSpec("input_timeout", 2.0,
              "seconds a queued input may wait for its partners before it is dropped and the missing "
              "or unsynchronised input is reported", range=(0.1, 3600.0), dynamic=True),
    ParamSpec("diagnostics_period", 1.0, "seconds between diagnostics messages", read_only=True,
              range=(0.05, 3600.0)),
    ParamSpec("log_throttle", 5.0, "seconds between two log lines of the same problem", range=(0.0, 3600.0),
              dynamic=True),
)


@dataclass
class _Problem:
    level: int = OK
    message: str = ""
    suppressed: int = 0
    last_log: float = -math.inf


class NodeHealth:
    """Frame and drop counters, throttled problem logging and the ``diagnostics`` publisher.

    Args:
        node: the node (its logger and clock are used).
        purpose: what the node does, e.g. ``"depth completion"``; the diagnostic status is
            named ``"<node name>: <purpose>"``.
        params: the node's parameter dict (``diagnostics_period``, ``log_throttle``).
        extra: constant KeyValues added to every status (e.g. ``{"backend": "ip_basic"}``).

    Counters (all in the status values): ``frames_in`` (synchronised sets or messages handed to
    the node's processing), ``frames_out`` (outputs published), ``drops_total`` and
    ``drops_<reason>`` (messages dropped by the synchroniser, or frames dropped in processing,
    per reason), ``last_latency_ms`` / ``mean_latency_ms`` (processing time per frame).
    """

    def __init__(self, node: Node, purpose: str, params: Mapping[str, Any],
                 extra: Optional[Mapping[str, str]] = None) -> None:
        self.node = node
        self.params = params
        self.name = f"{node.get_name()}: {purpose}"
        self.extra = dict(extra or {})
        self.frames_in = 0
        self.frames_out = 0
        self.drops: dict[str, int] = {}
        self.latency_last = math.nan
        self._latency_sum = 0.0
        self._problems: dict[str, _Problem] = {}
        self._level = OK
        self._message = ""
        self.publisher = node.create_publisher(DiagnosticArray, "diagnostics", 10)
        self.timer = node.create_timer(float(params.get("diagnostics_period", 1.0)), self.publish)

    @property
    def drops_total(self) -> int:
        """Sum of all drop counters."""
        return sum(self.drops.values())

    def frame_in(self) -> None:
        """Count one frame handed to processing."""
        self.frames_in += 1

    def frame_done(self, latency_s: float) -> None:
        """Count one published output and its processing latency (seconds)."""
        self.frames_out += 1
        self.latency_last = latency_s
        self._latency_sum += latency_s

    def drop(self, reason: str, message: str, level: int = WARN, count: int = 1) -> None:
        """Count ``count`` dropped frames/messages for ``reason`` and report ``message``.

        The log line ``"<reason>: <message>"`` is written at once for the first occurrence of a
        reason and then at most every ``log_throttle`` seconds (with the number suppressed).
        The next diagnostics status carries the worst level and the latest message.
        """
        self.drops[reason] = self.drops.get(reason, 0) + count
        text = f"{reason}: {message}"
        if level >= self._level:
            self._level, self._message = level, text
        prob = self._problems.setdefault(reason, _Problem())
        now = time.monotonic()
        if now - prob.last_log >= float(self.params.get("log_throttle", 5.0)):
            suffix = f" ({prob.suppressed} more since the last report)" if prob.suppressed else ""
            line = f"dropped {count}: {text}{suffix} [drops_{reason}={self.drops[reason]}]"
            # one call site per severity: rclpy refuses a severity change at one call site
            if level >= ERROR:
                self.node.get_logger().error(line)
            else:
                self.node.get_logger().warning(line)
            prob.last_log, prob.suppressed = now, 0
        else:
            prob.suppressed += count

    def guard(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        """Wrap a callback: bad input and backend failures drop the frame, never the node."""

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return fn(*args, **kwargs)
            except InputError as exc:
                self.drop(exc.reason, str(exc), WARN)
            except BackendError as exc:
                self.drop("backend_error", str(exc), ERROR)
            except Exception as exc:  # noqa: BLE001 - a node must survive anything a frame does
                self.drop("internal_error", f"{type(exc).__name__}: {exc}", ERROR)
                self.node.get_logger().debug(traceback.format_exc())
            return None

        wrapper.__name__ = getattr(fn, "__name__", "callback")
        wrapper.__doc__ = fn.__doc__
        return wrapper

    def status(self) -> DiagnosticStatus:
        """The current DiagnosticStatus (does not reset the level)."""
        level, message = self._level, self._message
        if level == OK:
            message = (f"running: {self.frames_in} frames in, {self.frames_out} out, "
                       f"{self.drops_total} dropped") if self.frames_in or self.drops else "waiting for input"
        values = {"frames_in": self.frames_in, "frames_out": self.frames_out, "drops_total": self.drops_total}
        values.update({f"drops_{k}": v for k, v in sorted(self.drops.items())})
        values["last_latency_ms"] = "nan" if math.isnan(self.latency_last) else f"{self.latency_last * 1e3:.1f}"
        values["mean_latency_ms"] = (f"{self._latency_sum / self.frames_out * 1e3:.1f}" if self.frames_out else "nan")
        values.update(self.extra)
        return DiagnosticStatus(
            level=bytes([level]), name=self.name, message=message, hardware_id=self.node.get_fully_qualified_name(),
            values=[KeyValue(key=k, value=str(v)) for k, v in values.items()],
        )

    def publish(self) -> None:
        """Publish the status and start a new reporting period (level back to OK)."""
        msg = DiagnosticArray()
        msg.header.stamp = self.node.get_clock().now().to_msg()
        msg.status = [self.status()]
        self.publisher.publish(msg)
        self._level, self._message = OK, ""


class SyncedInputs:
    """Subscriptions to ``topics`` joined by approximate time, feeding ``callback(*msgs)``.

    Args:
        node: the node.
        topics: input name (relative topic) -> message type, in callback argument order.
        callback: the frame handler; it is wrapped with :meth:`NodeHealth.guard`.
        health: drops and problems are reported there (reasons of the synchroniser:
            ``unsynchronized``, ``late``, ``queue_full``, ``missing_<input>``).
        params: uses ``reliability``, ``queue_size``, ``sync_slop``, ``input_timeout``.
    """

    def __init__(self, node: Node, topics: Mapping[str, type], callback: Callable[..., None],
                 health: NodeHealth, params: Mapping[str, Any]) -> None:
        self.node = node
        self.health = health
        self.params = params
        self.sync = ApproximateTimeSynchronizer(
            list(topics), float(params["sync_slop"]), health.guard(callback),
            queue_size=int(params["queue_size"]), on_drop=self._on_drop,
        )
        qos = qos_from_parameter(params["reliability"], depth=int(params["queue_size"]))
        self.subscriptions = [
            node.create_subscription(msg_type, name, self._make_cb(name), qos)
            for name, msg_type in topics.items()
        ]
        add_parameter_hook(node, "sync_slop", lambda v: setattr(self.sync, "slop", float(v)))
        period = min(0.5, float(params["input_timeout"]) / 2)
        self.watchdog = node.create_timer(period, self._check_stale)

    def _make_cb(self, name: str) -> Callable[[Any], None]:
        def cb(msg: Any) -> None:
            self.sync.add(name, msg)

        return cb

    def _on_drop(self, reason: str, topic: str, count: int, detail: str) -> None:
        self.health.drop(reason, detail, WARN, count)

    def _check_stale(self) -> None:
        self.sync.discard_older_than(float(self.params["input_timeout"]))


def parse_transform_parameter(values: Sequence[float], name: str = "T_camera_lidar") -> np.ndarray:
    """A 4x4 rigid transform from 16 row-major numbers (a parameter value).

    Raises:
        ParameterError: not 16 finite numbers, last row not (0, 0, 0, 1), or the 3x3 part not a
            rotation (|R R^T - I| > 1e-3 or det(R) <= 0). The message names the parameter.
    """
    try:
        T = np.asarray([float(v) for v in values], dtype=np.float64)  # noqa: N806
    except (TypeError, ValueError) as exc:
        raise ParameterError(f"parameter {name!r} must be 16 numbers (row-major 4x4): {exc}") from exc
    if T.size != 16:
        raise ParameterError(f"parameter {name!r} must have 16 numbers (row-major 4x4), got {T.size}")
    if not np.all(np.isfinite(T)):
        raise ParameterError(f"parameter {name!r} contains non-finite values")
    T = T.reshape(4, 4)  # noqa: N806
    if not np.allclose(T[3], [0, 0, 0, 1], atol=1e-9):
        raise ParameterError(f"parameter {name!r}: last row must be 0 0 0 1, got {T[3].tolist()}")
    R = T[:3, :3]  # noqa: N806
    if np.abs(R @ R.T - np.eye(3)).max() > 1e-3 or np.linalg.det(R) <= 0:
        raise ParameterError(f"parameter {name!r}: the upper-left 3x3 block is not a rotation matrix")
    return T


class LidarExtrinsics:
    """``T_camera_lidar`` (4x4, LiDAR frame -> camera optical frame) from a parameter or tf2.

    Args:
        node: the node (tf2 listener is attached to it when ``use_tf``).
        matrix: 16 row-major floats (the ``T_camera_lidar`` parameter) or an empty list.
        use_tf: look the transform up with tf2 (``camera frame <- points frame`` at the points
            stamp, falling back to the latest transform).

    Raises:
        ParameterError: ``use_tf`` is false and ``matrix`` is empty or not a rigid transform, or
            ``use_tf`` is true and tf2_ros cannot be imported.
    """

    def __init__(self, node: Node, matrix: Sequence[float], use_tf: bool) -> None:
        self.use_tf = bool(use_tf)
        self.matrix: Optional[np.ndarray] = None
        if self.use_tf:
            try:
                import tf2_ros  # noqa: PLC0415 - optional, only on full ROS installs
            except ImportError as exc:
                raise ParameterError(
                    f"parameter 'use_tf' is true but tf2_ros cannot be imported here ({exc}); "
                    "set use_tf:=false and give T_camera_lidar (16 row-major floats)"
                ) from exc
            self.buffer = tf2_ros.Buffer()
            self.listener = tf2_ros.TransformListener(self.buffer, node)
        else:
            if len(matrix) == 0:
                raise ParameterError(
                    "parameter 'T_camera_lidar' is empty: give the LiDAR-to-camera transform as 16 "
                    "row-major floats, or set use_tf:=true"
                )
            self.matrix = parse_transform_parameter(matrix)

    def lookup(self, target_frame: str, source_frame: str, stamp: Any) -> np.ndarray:
        """(4, 4) ``T_target_source``.

        Raises:
            InputError (reason ``tf_unavailable``): tf2 has no such transform.
        """
        if self.matrix is not None:
            return self.matrix
        from rclpy.time import Time  # noqa: PLC0415

        errors = []
        for when in (Time.from_msg(stamp), Time()):
            try:
                tf = self.buffer.lookup_transform(target_frame, source_frame, when)
                return transform_msg_to_matrix(tf.transform)
            except Exception as exc:  # noqa: BLE001 - tf2 raises several exception types
                errors.append(str(exc))
        raise InputError(
            f"no transform from {source_frame!r} to {target_frame!r} in tf2: {errors[-1]}", reason="tf_unavailable"
        )


def transform_parameter_specs(default: Sequence[float] = ()) -> tuple[ParamSpec, ...]:
    """``T_camera_lidar`` and ``use_tf`` parameter declarations (LiDAR input nodes)."""
    return (
        ParamSpec("T_camera_lidar", list(default),
                  "LiDAR-to-camera-optical-frame transform, 16 row-major floats (metres); for KITTI it "
                  "includes R_rect_00 and the P_rect translation. Ignored when use_tf is true",
                  read_only=True, array_of=float),
        ParamSpec("use_tf", False,
                  "look T_camera_lidar up in tf2 (camera_info frame <- points frame) instead of the "
                  "T_camera_lidar parameter; needs tf2_ros", read_only=True),
    )


def resize_rgb(rgb: np.ndarray, width: int, height: int) -> np.ndarray:
    """Resize an (H, W, 3) uint8 image (area averaging when shrinking, bilinear when enlarging)."""
    if rgb.shape[1] == width and rgb.shape[0] == height:
        return rgb
    shrink = width * height < rgb.shape[0] * rgb.shape[1]
    return cv2.resize(rgb, (width, height), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


def resample_sparse_depth(sparse: np.ndarray, src: Intrinsics, dst: Intrinsics) -> np.ndarray:
    """Move a sparse depth map to other intrinsics without mixing measured and empty pixels.

    Valid pixels are unprojected with ``src`` and rendered again with ``dst`` by the z-buffer
    projection (nearest return per pixel), so no depth is interpolated between a LiDAR return
    and an empty pixel, as resizing would. Returns (dst.height, dst.width) float32 metres.
    """
    if src == dst:
        return sparse
    pts = depth_to_points(sparse, src).reshape(-1, 3)
    pts = pts[np.isfinite(pts[:, 2])]
    return project_points_to_depth(pts, dst, min_depth=1e-6)


#: glibc ``mallopt`` parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3


def keep_frame_memory(enable: Optional[bool] = None) -> bool:
    """Let glibc keep freed frame-sized buffers for the next frame instead of unmapping them.

    A 1242x375 frame is handled as arrays of 0.5-15 MB (images, masks, the organised cloud and
    its C copy inside ``publish``). glibc serves such sizes with a fresh ``mmap`` and returns
    them with ``munmap`` (dynamic threshold from 128 KiB) or trims them from the heap top, so
    every frame page-faults its buffers in again: measured here, ~2,250 faults (~12 ms) per
    IP-Basic call and ~4,500 per 15 MB cloud, about 5-8 us each on this 2-core VM. This sets
    ``M_MMAP_THRESHOLD`` to 32 MiB (glibc's maximum), ``M_TRIM_THRESHOLD`` to 256 MiB and
    ``M_TOP_PAD`` to 16 MiB, so the heap keeps the frame working set (RSS stays at its peak
    instead of shrinking between frames). Same idea as the allocator settings of real-time ROS 2
    setups; glibc only, nothing happens elsewhere.

    Args:
        enable: None = on unless the environment variable ``DDR_MALLOC_TUNING`` is ``0``.

    Returns:
        True if the settings were applied.
    """
    if enable is None:
        enable = os.environ.get("DDR_MALLOC_TUNING", "1") != "0"
    if not enable or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (e.g. musl has no mallopt tunables)
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    ok = mallopt(_M_MMAP_THRESHOLD, 32 * 1024 * 1024)
    ok &= mallopt(_M_TRIM_THRESHOLD, 256 * 1024 * 1024)
    ok &= mallopt(_M_TOP_PAD, 16 * 1024 * 1024)
    return bool(ok)


def run_node(factory: Callable[[], Node], args: Optional[list[str]] = None, name: str = "node") -> int:
    """Run a node until SIGINT/SIGTERM; returns the process exit code.

    :func:`keep_frame_memory` is applied first (``DDR_MALLOC_TUNING=0`` leaves glibc's defaults).
    ``rclpy.init`` installs rclpy's SIGINT and SIGTERM handlers, which shut the context down and
    end ``rclpy.spin`` with ``ExternalShutdownException`` (or ``KeyboardInterrupt``); the node is
    then destroyed and rclpy shut down, and 0 is returned. A :class:`ParameterError` or
    :class:`BackendError` raised while constructing the node is logged as one FATAL line and
    returns 2.
    """
    keep_frame_memory()
    rclpy.init(args=args)
    node = None
    try:
        try:
            node = factory()
        except (ParameterError, BackendError) as exc:
            rclpy.logging.get_logger(name).fatal(f"cannot start: {exc}")
            return 2
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
    return 0


@dataclass
class StageTimer:
    """Wall-clock time of named processing stages of one frame (seconds), for debug logs."""

    start: float = field(default_factory=time.perf_counter)
    stages: dict[str, float] = field(default_factory=dict)
    _last: float = field(default=0.0)

    def __post_init__(self) -> None:
        self._last = self.start

    def mark(self, stage: str) -> None:
        """Close the stage that ran since the previous mark."""
        now = time.perf_counter()
        self.stages[stage] = now - self._last
        self._last = now

    @property
    def total(self) -> float:
        """Seconds since construction."""
        return time.perf_counter() - self.start

    def __str__(self) -> str:
        return ", ".join(f"{k} {v * 1e3:.1f} ms" for k, v in self.stages.items())


class DepthOutputs:
    """The dense-depth outputs of the completion and super-resolution nodes (DESIGN.md).

    Publishes ``depth/image`` (32FC1 m, NaN = none), ``depth/camera_info``, and, only while
    someone subscribes, ``depth/uncertainty`` (32FC1 m), ``depth/colormap`` (rgb8) and
    ``depth/points`` (organised x, y, z, rgb). Each output reuses one message and data buffer
    (no per-frame allocation of the 1.8 MB depth image or the 15 MB cloud at 1242x375); that is
    safe because rclpy publishes synchronously.
    """

    def __init__(self, node: Node, params: Mapping[str, Any]) -> None:
        from sensor_msgs.msg import CameraInfo, Image, PointCloud2

        self.params = params
        qos = qos_from_parameter(params["output_reliability"], depth=int(params["queue_size"]))
        self.pub_depth = node.create_publisher(Image, "depth/image", qos)
        self.pub_info = node.create_publisher(CameraInfo, "depth/camera_info", qos)
        self.pub_points = node.create_publisher(PointCloud2, "depth/points", qos)
        self.pub_colormap = node.create_publisher(Image, "depth/colormap", qos)
        self.pub_uncertainty = node.create_publisher(Image, "depth/uncertainty", qos)
        self._depth_msg = ImageBuilder()
        self._colormap_msg = ImageBuilder()
        self._uncertainty_msg = ImageBuilder()
        self._points_msg = PointCloud2Builder()

    def publish(self, depth: np.ndarray, uncertainty: Optional[np.ndarray], intrinsics: Intrinsics,
                header: Any, camera_info: Any, rgb: np.ndarray) -> None:
        """Publish one frame.

        depth: (H, W) float32 m, 0 = none; uncertainty: (H, W) float32 m or None; intrinsics of
        ``depth``; header of the RGB image; camera_info: the input CameraInfo (distortion etc. are
        copied); rgb: (H, W, 3) uint8 for the cloud's colours.
        """
        p = self.params
        self.pub_depth.publish(self._depth_msg.depth(depth, header))
        self.pub_info.publish(intrinsics_to_camera_info(intrinsics, header, source=camera_info))
        if uncertainty is not None and self.pub_uncertainty.get_subscription_count() > 0:
            unc = np.array(uncertainty, dtype=np.float32)
            unc[~(depth > 0) | ~np.isfinite(unc)] = np.nan
            self.pub_uncertainty.publish(self._uncertainty_msg.image(unc, "32FC1", header))
        if p["publish_colormap"] and self.pub_colormap.get_subscription_count() > 0:
            lo, hi = p["colormap_min_depth"], p["colormap_max_depth"]
            colours = colorize_depth(depth, lo if hi > 0 else None, hi if hi > 0 else None)
            self.pub_colormap.publish(self._colormap_msg.image(colours, "rgb8", header))
        if p["publish_points"] and self.pub_points.get_subscription_count() > 0:
            self.pub_points.publish(self._points_msg.build(depth, intrinsics, header, rgb=rgb))


def image_intrinsics(image: Any, camera_info: Any) -> Intrinsics:
    """Intrinsics of ``image`` from its CameraInfo; InputError ``size_mismatch`` when sizes differ."""
    intrinsics = camera_info_to_intrinsics(camera_info)
    if (image.width, image.height) != (intrinsics.width, intrinsics.height):
        raise InputError(
            f"image is {image.width}x{image.height} but camera_info is {intrinsics.width}x{intrinsics.height}",
            reason="size_mismatch",
        )
    return intrinsics


def checked_depth(depth: Any, intrinsics: Intrinsics, backend: str) -> np.ndarray:
    """A backend's depth as float32 (H, W); BackendError when its size is not the frame's."""
    depth = np.asarray(depth, dtype=np.float32)
    if depth.shape != (intrinsics.height, intrinsics.width):
        raise BackendError(
            f"backend {backend!r} returned depth {depth.shape} for a {intrinsics.width}x{intrinsics.height} frame"
        )
    return depth


#: The learned backends' options (same parameter names in both depth nodes): backend name ->
#: the node parameters passed to the backend factory as keyword options.
LEARNED_BACKEND_OPTIONS: dict[str, tuple[str, ...]] = {
    "torch": ("model_path", "num_inference_steps", "ensemble_size", "device", "seed"),
    "onnxruntime": ("model_path", "num_inference_steps", "ensemble_size", "providers", "seed"),
    "tensorrt": ("model_path", "num_inference_steps", "ensemble_size", "engine_cache_dir", "precision",
                 "force_engine_update", "seed"),
}
#: Values meaning "not set: use the backend's default" for :data:`LEARNED_BACKEND_OPTIONS`.
LEARNED_UNSET: dict[str, Any] = {"model_path": "", "device": "", "engine_cache_dir": "", "precision": "",
                                 "providers": [], "num_inference_steps": 0}


def learned_backend_parameter_specs(model_path: str, num_inference_steps: str, ensemble_size: str,
                                    seed: str) -> tuple[ParamSpec, ...]:
    """The parameters of :data:`LEARNED_BACKEND_OPTIONS`, all read-only; the arguments are the
    node-specific descriptions of ``model_path``, ``num_inference_steps``, ``ensemble_size`` and
    ``seed``."""
    return (
        ParamSpec("model_path", "", model_path, read_only=True),
        ParamSpec("num_inference_steps", 0, num_inference_steps, read_only=True, range=(0, 1000)),
        ParamSpec("ensemble_size", 1, ensemble_size, read_only=True, range=(1, 64)),
        ParamSpec("device", "", "torch device (cpu, cuda, cuda:1); '' = the backend's choice", read_only=True),
        ParamSpec("providers", [], "ONNX Runtime execution providers in order of preference (e.g. "
                  "['cuda', 'cpu']); [] = the backend's default", read_only=True, array_of=str),
        ParamSpec("engine_cache_dir", "", "directory for cached TensorRT engines; '' = the backend's default",
                  read_only=True),
        ParamSpec("precision", "", "TensorRT precision; '' = the backend's default", read_only=True,
                  choices=("", "fp16", "fp32")),
        ParamSpec("force_engine_update", False, "tensorrt: rebuild the cached engine even when one matches the "
                  "ONNX hash, precision, TensorRT version and GPU", read_only=True),
        ParamSpec("seed", 0, seed, read_only=True, range=(0, 2**31 - 1)),
    )


def publish_backend_result(node: Any, timer: StageTimer, result: Any, intrinsics: Intrinsics, image: Any,
                           camera_info: Any, rgb: np.ndarray) -> None:
    """The end of a depth node's frame, after ``backend.infer``: check the depth's size
    (:func:`checked_depth`), publish every output (``node.outputs``, a :class:`DepthOutputs`),
    and record the frame's latency in ``node.health``.

    result: the backend's DepthResult; intrinsics: of ``result.depth``; image: the RGB message
    (its header stamps the outputs); rgb: (H, W, 3) uint8 at the depth's size.
    Raises BackendError when the depth is not the frame's size.
    """
    depth = checked_depth(result.depth, intrinsics, node.params["backend"])
    timer.mark("backend")
    header = image.header
    node.outputs.publish(depth, result.uncertainty, intrinsics, header, camera_info, rgb)
    timer.mark("publish")
    node.health.frame_done(timer.total)
    node.get_logger().debug(f"frame {header.stamp.sec}.{header.stamp.nanosec:09d}: {timer}")


def select_backend_options(table: Mapping[str, Sequence[str]], unset: Mapping[str, Any], backend: str,
                           params: Mapping[str, Any]) -> dict[str, Any]:
    """Keyword options for a backend from node parameters: the names ``table[backend]`` lists,
    left out while at their ``unset`` value (so the backend's own default applies)."""
    return {name: params[name] for name in table.get(backend, ())
            if not (name in unset and params[name] == unset[name])}
