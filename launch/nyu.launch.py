"""Indoor RGB-D pipeline (NYU Depth V2 style): image + sparse depth -> dense depth.

The sparse depth comes from any source publishing an Image (16UC1 mm or 32FC1 m) registered to
the colour camera, e.g. a few hundred valid pixels sampled from a depth sensor::

    ros2 launch depth_diffusion_ros nyu.launch.py image_topic:=/camera/color/image_raw \\
        camera_info_topic:=/camera/color/camera_info sparse_depth_topic:=/camera/sparse_depth

Arguments: namespace, params_file (default ``config/nyu.yaml``), backend, rviz,
rviz_fixed_frame (default ``camera_color_optical_frame``), evaluate (scores ``depth/image``
against ``depth_gt_topic``), report_path, fastdds_profile (as in kitti.launch.py),
use_sim_time, and the four input topics. The pieces shared with the other launch files are in
``depth_pipeline.py`` beside this file.
"""
import importlib.util
from pathlib import Path

from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration

_spec = importlib.util.spec_from_file_location("depth_pipeline", Path(__file__).with_name("depth_pipeline.py"))
depth_pipeline = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(depth_pipeline)


def generate_launch_description():
    completion = depth_pipeline.depth_node(
        "depth_completion_node",
        depth_pipeline.camera_remappings() + [("sparse_depth", LaunchConfiguration("sparse_depth_topic"))],
        {"backend": LaunchConfiguration("backend"), "input": "sparse_depth"})
    return depth_pipeline.launch_description(
        params_yaml="nyu.yaml", backend="ip_basic", backend_help=depth_pipeline.COMPLETION_BACKENDS,
        use_sim_time="false", fixed_frame="camera_color_optical_frame",
        topics=depth_pipeline.camera_topic_arguments() + [
            DeclareLaunchArgument("sparse_depth_topic", default_value="/camera/sparse_depth"),
            DeclareLaunchArgument("depth_gt_topic", default_value="/camera/depth/image_rect_raw",
                                  description="ground-truth depth for evaluate:=true")],
        nodes=[completion])
