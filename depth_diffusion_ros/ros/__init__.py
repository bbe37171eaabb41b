"""The ROS boundary: messages <-> numpy, QoS and time synchronisation (rclpy + message types, no maths).

Import from here: ``from depth_diffusion_ros.ros import rgb_from_image, depth_to_image, ...``.
Bad input raises :class:`InputError` whose message names the problem and whose ``reason`` is the
drop-counter key a node increments.
"""
from depth_diffusion_ros.ros.camera_info import camera_info_to_intrinsics, intrinsics_to_camera_info
from depth_diffusion_ros.ros.errors import InputError
from depth_diffusion_ros.ros.image import (
    COLOUR_ENCODINGS,
    DEPTH_ENCODINGS,
    ENCODINGS,
    ImageBuilder,
    array_to_image,
    depth_from_image,
    depth_to_image,
    image_to_array,
    rgb_from_image,
)
from depth_diffusion_ros.ros.pointcloud import PointCloud2Builder, depth_to_pointcloud2, pointcloud2_to_xyz
from depth_diffusion_ros.ros.qos import RELIABILITY_CHOICES, qos_from_parameter
from depth_diffusion_ros.ros.sync import ApproximateTimeSynchronizer, stamp_to_ns
from depth_diffusion_ros.ros.transforms import transform_msg_to_matrix
from depth_diffusion_ros.ros.transport import PublicationGaps

__all__ = [
    "ApproximateTimeSynchronizer",
    "COLOUR_ENCODINGS",
    "DEPTH_ENCODINGS",
    "ENCODINGS",
    "ImageBuilder",
    "InputError",
    "PointCloud2Builder",
    "PublicationGaps",
    "RELIABILITY_CHOICES",
    "array_to_image",
    "camera_info_to_intrinsics",
    "depth_from_image",
    "depth_to_image",
    "depth_to_pointcloud2",
    "image_to_array",
    "intrinsics_to_camera_info",
    "pointcloud2_to_xyz",
    "qos_from_parameter",
    "rgb_from_image",
    "stamp_to_ns",
    "transform_msg_to_matrix",
]
