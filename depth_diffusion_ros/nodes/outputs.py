"""Output side of the depth nodes: the dense-depth topics and their parameters."""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np
from rclpy.node import Node

from depth_diffusion_ros.evaluation.figures import colorize_depth
from depth_diffusion_ros.inference.pipelines import DepthOutput
from depth_diffusion_ros.nodes.parameters import ParamSpec
from depth_diffusion_ros.ros import ImageBuilder, PointCloud2Builder, intrinsics_to_camera_info, qos_from_parameter


class DepthOutputs:
    """The dense-depth outputs of the depth nodes (DESIGN.md).

    Publishes ``depth/image`` (32FC1 m, NaN = none), ``depth/camera_info``, and, only while
    someone subscribes, ``depth/uncertainty`` (32FC1 m), ``depth/colormap`` (rgb8) and
    ``depth/points`` (organised x, y, z, rgb). Each output reuses one message and data buffer
    (no per-frame allocation of the 1.8 MB depth image or the 15 MB cloud at 1242x375); that is
    safe because rclpy publishes synchronously.

    params: uses ``output_reliability``, ``queue_size``, ``publish_points``, ``publish_colormap``,
    ``colormap_min_depth``, ``colormap_max_depth`` (read per frame: the dynamic ones may change).
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

    def publish(self, output: DepthOutput, header: Any, camera_info: Any) -> None:
        """Publish one frame: ``output`` of a pipeline (its depth, uncertainty, intrinsics and
        the rgb at the depth's size for the cloud's colours); header of the RGB image; camera_info:
        the input CameraInfo (distortion etc. are copied)."""
        p = self.params
        depth, intrinsics = output.depth, output.intrinsics
        self.pub_depth.publish(self._depth_msg.depth(depth, header))
        self.pub_info.publish(intrinsics_to_camera_info(intrinsics, header, source=camera_info))
        if output.uncertainty is not None and self.pub_uncertainty.get_subscription_count() > 0:
            unc = np.array(output.uncertainty, dtype=np.float32)
            unc[~(depth > 0) | ~np.isfinite(unc)] = np.nan
            self.pub_uncertainty.publish(self._uncertainty_msg.image(unc, "32FC1", header))
        if p["publish_colormap"] and self.pub_colormap.get_subscription_count() > 0:
            lo, hi = p["colormap_min_depth"], p["colormap_max_depth"]
            colours = colorize_depth(depth, lo if hi > 0 else None, hi if hi > 0 else None)
            self.pub_colormap.publish(self._colormap_msg.image(colours, "rgb8", header))
        if p["publish_points"] and self.pub_points.get_subscription_count() > 0:
            self.pub_points.publish(self._points_msg.build(depth, intrinsics, header, rgb=output.rgb))


#: The dense-depth output parameters of the depth nodes (same names and meaning in each).
OUTPUT_PARAMETERS: tuple[ParamSpec, ...] = (
    ParamSpec("publish_points", True, "publish depth/points (only while someone subscribes)", dynamic=True),
    ParamSpec("publish_colormap", True, "publish depth/colormap (only while someone subscribes)", dynamic=True),
    ParamSpec("colormap_min_depth", 0.0, "depth shown as the nearest colour (metres); 0 with max 0 = per frame",
              range=(0.0, 10000.0), dynamic=True),
    ParamSpec("colormap_max_depth", 0.0, "depth shown as the farthest colour (metres); 0 = per frame",
              range=(0.0, 10000.0), dynamic=True),
)
