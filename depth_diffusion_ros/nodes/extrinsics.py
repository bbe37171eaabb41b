"""``T_camera_lidar``: the LiDAR-to-camera transform from a parameter or from tf2."""
from __future__ import annotations

from typing import Any, Optional, Sequence

import numpy as np
from rclpy.node import Node

from depth_diffusion_ros.geometry.transforms import check_rigid_transform
from depth_diffusion_ros.nodes.parameters import ParameterError, ParamSpec
from depth_diffusion_ros.ros import InputError, transform_msg_to_matrix


def parse_transform_parameter(values: Sequence[float], name: str = "T_camera_lidar") -> np.ndarray:
    """A 4x4 rigid transform from 16 row-major numbers (a parameter value).

    Raises:
        ParameterError: not 16 finite numbers, last row not (0, 0, 0, 1), or the 3x3 part not a
            rotation (|R R^T - I| > 1e-3 or det(R) <= 0). The message names the parameter.
    """
    try:
        numbers = [float(v) for v in values]
    except (TypeError, ValueError) as exc:
        raise ParameterError(f"parameter {name!r} must be 16 numbers (row-major 4x4): {exc}") from exc
    try:
        return check_rigid_transform(np.asarray(numbers))
    except ValueError as exc:
        raise ParameterError(f"parameter {name!r}: {exc}") from exc


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



class TfEgoMotion:
    """The camera's motion between two frames from tf2, through a fixed frame (odometry).

    ``motion(camera_frame, prev_stamp, stamp)`` is the (4, 4) transform taking points from the
    camera at ``prev_stamp`` to the camera at ``stamp``: tf2's ``lookup_transform_full(target =
    camera at stamp, source = camera at prev_stamp, fixed_frame)``, the time-travel lookup of
    the tf2 tutorials (REP 105: ``odom`` is continuous, so it is the usual fixed frame).

    Args:
        node: the node the tf2 listener attaches to.
        fixed_frame: a frame fixed in the world (``odom``, ``map``).
    Raises:
        ParameterError: tf2_ros cannot be imported (names the parameter to change).
    """

    def __init__(self, node: Node, fixed_frame: str) -> None:
        try:
            import tf2_ros  # noqa: PLC0415 - optional, only on full ROS installs
        except ImportError as exc:
            raise ParameterError(
                f"parameter 'temporal_ego_motion' is tf but tf2_ros cannot be imported here ({exc}); use static "
                "or (with input points) lidar_odometry"
            ) from exc
        if not fixed_frame:
            raise ParameterError("parameter 'temporal_fixed_frame' is empty: give a frame fixed in the world (odom)")
        self.fixed_frame = fixed_frame
        self.buffer = tf2_ros.Buffer()
        self.listener = tf2_ros.TransformListener(self.buffer, node)

    def motion(self, camera_frame: str, prev_stamp: Any, stamp: Any) -> np.ndarray:
        """(4, 4) previous camera -> current camera (metres).

        Raises:
            InputError (reason ``tf_unavailable``): tf2 cannot give the transform (message named).
        """
        from rclpy.time import Time  # noqa: PLC0415

        try:
            tf = self.buffer.lookup_transform_full(camera_frame, Time.from_msg(stamp), camera_frame,
                                                   Time.from_msg(prev_stamp), self.fixed_frame)
        except Exception as exc:  # noqa: BLE001 - tf2 raises several exception types
            raise InputError(f"no motion of {camera_frame!r} relative to {self.fixed_frame!r} in tf2: {exc}",
                             reason="tf_unavailable") from exc
        return transform_msg_to_matrix(tf.transform)
