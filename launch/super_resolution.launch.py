"""Colour-guided depth super-resolution: colour image + low-resolution depth -> depth at the
colour resolution (DSR-Diff demo weights by default).

The low-resolution depth (16UC1 mm or 32FC1 m) must be registered to the colour camera and an
integer factor smaller (e.g. 80x60 or 160x120 for a 640x480 image)::

    ros2 launch depth_diffusion_ros super_resolution.launch.py \\
        image_topic:=/camera/color/image_raw camera_info_topic:=/camera/color/camera_info \\
        depth_lr_topic:=/camera/depth/image_rect_raw depth_lr_camera_info_topic:=/camera/depth/camera_info

Arguments: namespace, params_file (default ``config/super_resolution.yaml``), backend (torch |
guided_filter | joint_bilateral | bicubic | onnxruntime | tensorrt), model_path ('' = the
shipped demo weights for torch), rviz, rviz_fixed_frame (default ``camera_color_optical_frame``),
evaluate (scores ``depth/image`` against ``depth_gt_topic``), report_path, fastdds_profile (as in
kitti.launch.py: a 640x480 depth image fits Fast DDS's 512 KiB default segment, its organised
point cloud does not), use_sim_time, and the input topics. The pieces shared with the other
launch files are in ``depth_pipeline.py`` beside this file.
"""
import importlib.util
from pathlib import Path

from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration

_spec = importlib.util.spec_from_file_location("depth_pipeline", Path(__file__).with_name("depth_pipeline.py"))
depth_pipeline = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(depth_pipeline)

SUPER_RESOLUTION_BACKENDS = "torch | guided_filter | joint_bilateral | bicubic | onnxruntime | tensorrt"


def generate_launch_description():
    super_resolution = depth_pipeline.depth_node(
        "depth_super_resolution_node",
        depth_pipeline.camera_remappings() + [
            ("depth_lr", LaunchConfiguration("depth_lr_topic")),
            ("depth_lr/camera_info", LaunchConfiguration("depth_lr_camera_info_topic"))],
        {"backend": LaunchConfiguration("backend"), "model_path": LaunchConfiguration("model_path")})
    return depth_pipeline.launch_description(
        params_yaml="super_resolution.yaml", backend="torch", backend_help=SUPER_RESOLUTION_BACKENDS,
        after_backend=[DeclareLaunchArgument(
            "model_path", default_value="",
            description="checkpoint/export directory; '' = the shipped DSR-Diff demo weights (torch)")],
        use_sim_time="false", fixed_frame="camera_color_optical_frame",
        topics=depth_pipeline.camera_topic_arguments() + [
            DeclareLaunchArgument("depth_lr_topic", default_value="/camera/depth/image_rect_raw"),
            DeclareLaunchArgument("depth_lr_camera_info_topic", default_value="/camera/depth/camera_info"),
            DeclareLaunchArgument("depth_gt_topic", default_value="/camera/depth_gt/image",
                                  description="ground-truth depth at the colour resolution for evaluate:=true")],
        nodes=[super_resolution])
