"""lidar_depth_projection_node: LiDAR PointCloud2 + CameraInfo -> sparse depth image.

Projects every LiDAR return into the camera with ``T_camera_lidar`` and the CameraInfo
intrinsics (P for rectified images, K otherwise) and renders a z-buffered sparse depth image,
the input of the depth completion node (``input: sparse_depth``) or of any other consumer.
The projection is :func:`depth_diffusion_ros.geometry.projection.project_lidar_to_depth`, the
same one the KITTI loaders and kitti-to-bag use.

Subscribed:
    ``points`` (sensor_msgs/PointCloud2): LiDAR scan, fields x, y, z (FLOAT32/FLOAT64, any layout).
    ``camera_info`` (sensor_msgs/CameraInfo): the camera the depth is rendered for (its binning and
    ROI applied as image_geometry does; see :mod:`depth_diffusion_ros.ros.camera_info`).
    The two are joined by approximate time (``sync_slop``).

Published:
    ``sparse_depth`` (sensor_msgs/Image, 32FC1 metres, NaN = no return): frame_id of the
    camera_info (the ``target_frame``), stamp of the scan, size of the camera_info.
    ``diagnostics`` (diagnostic_msgs/DiagnosticArray): counters and the latest problem.

Parameters: see :data:`PARAMETERS` (``ros2 param describe`` shows descriptions and ranges).

A plain ``rclpy.node.Node``; see :mod:`depth_diffusion_ros.nodes.process` for why not lifecycle.
"""
from __future__ import annotations

import sys
import time
from typing import Any, Optional

import numpy as np
from rclpy.node import Node
from sensor_msgs.msg import CameraInfo, Image, PointCloud2
from std_msgs.msg import Header

from depth_diffusion_ros.geometry.projection import project_lidar_to_depth
from depth_diffusion_ros.nodes.extrinsics import LidarExtrinsics, transform_parameter_specs
from depth_diffusion_ros.nodes.health import NodeHealth
from depth_diffusion_ros.nodes.inputs import SyncedInputs
from depth_diffusion_ros.nodes.parameters import COMMON_PARAMETERS, ParameterError, ParamSpec, declare_parameters
from depth_diffusion_ros.nodes.process import run_node
from depth_diffusion_ros.ros import (
    ImageBuilder,
    InputError,
    camera_info_to_intrinsics,
    pointcloud2_to_xyz,
    qos_from_parameter,
)

NODE_NAME = "lidar_depth_projection_node"

#: Every parameter this node declares (the config/launch tests read this table).
PARAMETERS: tuple[ParamSpec, ...] = COMMON_PARAMETERS + transform_parameter_specs() + (
    ParamSpec("min_depth", 0.1, "returns nearer than this along the optical axis are ignored (metres)",
              range=(1e-3, 1000.0)),
    ParamSpec("max_depth", 100.0, "returns farther than this along the optical axis are ignored (metres)",
              range=(1e-3, 10000.0)),
)


class LidarDepthProjectionNode(Node):
    """Renders synchronised (points, camera_info) pairs into ``sparse_depth`` images.

    Raises:
        ParameterError: on construction, for a bad parameter (named in the message).
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(NODE_NAME, **kwargs)
        self.params = declare_parameters(self, PARAMETERS)
        if self.params["min_depth"] >= self.params["max_depth"]:
            raise ParameterError(
                f"parameter 'min_depth' ({self.params['min_depth']}) must be < 'max_depth' ({self.params['max_depth']})"
            )
        self.extrinsics = LidarExtrinsics(self, self.params["T_camera_lidar"], self.params["use_tf"])
        self.health = NodeHealth(self, "LiDAR to sparse depth", self.params)
        out_qos = qos_from_parameter(self.params["output_reliability"], depth=int(self.params["queue_size"]))
        self.publisher = self.create_publisher(Image, "sparse_depth", out_qos)
        self._sparse_msg = ImageBuilder()  # one reused message + buffer (see ImageBuilder)
        self.inputs = SyncedInputs(self, {"points": PointCloud2, "camera_info": CameraInfo},
                                   self.on_frame, self.health, self.params)
        self.get_logger().info(
            f"projecting '{self.resolve_topic_name('points')}' into '{self.resolve_topic_name('camera_info')}' "
            f"-> '{self.resolve_topic_name('sparse_depth')}' "
            f"(extrinsics from {'tf2' if self.params['use_tf'] else 'T_camera_lidar'})"
        )

    def project(self, points: PointCloud2, camera_info: CameraInfo) -> tuple[np.ndarray, Header]:
        """Sparse depth (H, W) float32 metres (0 = empty) and its header.

        Raises:
            InputError: bad camera_info, malformed/empty cloud, missing transform, or no return
                inside the image (``no_points_in_image``, usually a wrong ``T_camera_lidar``).
        """
        intrinsics = camera_info_to_intrinsics(camera_info)
        xyz = pointcloud2_to_xyz(points)
        if xyz.shape[0] == 0:
            raise InputError(
                f"PointCloud2 has no finite points ({points.width}x{points.height} points)", reason="empty_points"
            )
        target = camera_info.header.frame_id
        T = self.extrinsics.lookup(target, points.header.frame_id, points.header.stamp)  # noqa: N806
        depth = project_lidar_to_depth(
            xyz, T, intrinsics, min_depth=self.params["min_depth"], max_depth=self.params["max_depth"]
        )
        if not np.any(depth > 0):
            raise InputError(
                f"none of the {xyz.shape[0]} LiDAR points projects into the {intrinsics.width}x{intrinsics.height} "
                f"image of {target!r} (check T_camera_lidar / tf and min_depth/max_depth)",
                reason="no_points_in_image",
            )
        return depth, Header(stamp=points.header.stamp, frame_id=target)

    def on_frame(self, points: PointCloud2, camera_info: CameraInfo) -> None:
        """Project one synchronised pair and publish ``sparse_depth``."""
        self.health.frame_in()
        start = time.perf_counter()
        depth, header = self.project(points, camera_info)
        self.publisher.publish(self._sparse_msg.depth(depth, header))
        self.health.frame_done(time.perf_counter() - start)


def main(args: Optional[list[str]] = None) -> int:
    """Console script ``lidar_depth_projection_node`` (``ros2 run depth_diffusion_ros ...``)."""
    return run_node(LidarDepthProjectionNode, args, NODE_NAME)


if __name__ == "__main__":
    sys.exit(main())
