"""What the bag tools share: the rosbags type store, the message type names, :class:`BagError`.

Kept apart so that :mod:`~depth_diffusion_ros.tools.bag_io` (builders, decoders, the writer)
and :mod:`~depth_diffusion_ros.tools.bag_reader` (the reader and its salvage of damaged files)
import it without importing each other.
"""
from __future__ import annotations

from rosbags.typesys import Stores, get_typestore

#: Type store used to write and read bags (Humble message definitions; same CDR on newer distros).
TYPESTORE = get_typestore(Stores.ROS2_HUMBLE)

IMAGE = "sensor_msgs/msg/Image"
CAMERA_INFO = "sensor_msgs/msg/CameraInfo"
POINTCLOUD2 = "sensor_msgs/msg/PointCloud2"
TF_MESSAGE = "tf2_msgs/msg/TFMessage"
STRING = "std_msgs/msg/String"
DIAGNOSTIC_ARRAY = "diagnostic_msgs/msg/DiagnosticArray"


class BagError(RuntimeError):
    """A bag cannot be used: missing, truncated or corrupt file, missing topic, wrong type.

    The message names the bag path and what is wrong.
    """
