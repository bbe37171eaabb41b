"""Classical depth completion and super-resolution baselines (numpy + OpenCV + scipy)."""
from depth_diffusion_ros.baselines.ip_basic import ip_basic_complete
from depth_diffusion_ros.baselines.linear import linear_interpolate
from depth_diffusion_ros.baselines.nearest import nearest_fill
from depth_diffusion_ros.baselines.upsampling import (
    bicubic_upsample,
    guided_filter_upsample,
    joint_bilateral_upsample,
)

__all__ = [
    "ip_basic_complete",
    "linear_interpolate",
    "nearest_fill",
    "bicubic_upsample",
    "guided_filter_upsample",
    "joint_bilateral_upsample",
]
