"""Camera geometry (numpy + OpenCV image IO only, no ROS): intrinsics, depth codecs, transforms,
LiDAR projection / depth unprojection, the PointCloud2 byte layout and KITTI calibration files."""
from depth_diffusion_ros.geometry.intrinsics import Intrinsics

__all__ = ["Intrinsics"]
