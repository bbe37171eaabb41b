"""Monocular metric depth: a camera alone -> depth_estimation_node (+ evaluation, + RViz).

The shipped KITTI monocular weights by default (ONNX Runtime, no torch needed); any camera works,
the node brings each image to the model's canonical focal length first::

    ros2 launch depth_diffusion_ros estimation.launch.py rviz:=true
    ros2 bag play out/kitti_raw --clock        # a kitti-to-bag raw drive bag

    ros2 launch depth_diffusion_ros estimation.launch.py use_sim_time:=false \\
        image_topic:=/camera/color/image_raw camera_info_topic:=/camera/color/camera_info

Arguments: namespace, params_file (default ``config/estimation.yaml``), backend (onnxruntime |
torch | tensorrt | row_median), model_path ('' = the shipped weights for the backend), rviz,
rviz_fixed_frame (default ``camera_color_left``), evaluate (scores ``depth/image`` against
``depth_gt_topic``), report_path, fastdds_profile (as in kitti.launch.py), use_sim_time (default
true, for bags), image_topic and camera_info_topic (default the kitti-to-bag names). The pieces
shared with the other launch files are in ``depth_pipeline.py`` beside this file.
"""
import importlib.util
from pathlib import Path

from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration

_spec = importlib.util.spec_from_file_location("depth_pipeline", Path(__file__).with_name("depth_pipeline.py"))
depth_pipeline = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(depth_pipeline)

ESTIMATION_BACKENDS = "onnxruntime | torch | tensorrt | row_median"


def generate_launch_description():
    estimation = depth_pipeline.depth_node(
        "depth_estimation_node", depth_pipeline.camera_remappings(),
        {"backend": LaunchConfiguration("backend"), "model_path": LaunchConfiguration("model_path")})
    return depth_pipeline.launch_description(
        params_yaml="estimation.yaml", backend="onnxruntime", backend_help=ESTIMATION_BACKENDS,
        after_backend=[DeclareLaunchArgument(
            "model_path", default_value="",
            description="ONNX export / checkpoint / row_median_reference.json; '' = the shipped KITTI weights")],
        use_sim_time="true", fixed_frame="camera_color_left",
        topics=[DeclareLaunchArgument("image_topic", default_value="/kitti/camera_color_left/image_raw"),
                DeclareLaunchArgument("camera_info_topic", default_value="/kitti/camera_color_left/camera_info"),
                DeclareLaunchArgument("depth_gt_topic", default_value="/kitti/camera_color_left/depth_gt",
                                      description="ground-truth depth for evaluate:=true")],
        nodes=[estimation],
        evaluation_parameters={"crop": "garg", "max_depth": 80.0})
