"""KITTI pipeline: LiDAR projection + depth completion (+ evaluation, + RViz).

Plays with bags written by ``depth-diffusion-ros kitti-to-bag`` or kitti2bag (topics
``/kitti/camera_color_left/image_raw``, ``/kitti/camera_color_left/camera_info``,
``/kitti/velo/pointcloud``)::

    ros2 launch depth_diffusion_ros kitti.launch.py backend:=ip_basic rviz:=true evaluate:=true
    ros2 bag play out/kitti_raw --clock                  # a raw drive bag: scored against depth_gt

    ros2 launch depth_diffusion_ros kitti.launch.py evaluate:=true ground_truth:=points use_tf:=true
    ros2 bag play out/kitti_object --clock               # an object bag (kitti-to-bag --holdout-fraction)

Arguments:
    namespace     ROS namespace of the nodes (their own topics, e.g. ``<ns>/depth/image``).
    params_file   parameter YAML (default: the package's ``config/kitti.yaml``).
    backend       completion backend (``ip_basic``, ``nearest``, ``torch``, ``onnxruntime``,
                  ``tensorrt``); overrides the YAML.
    input         ``sparse_depth``: lidar_depth_projection_node renders the scan and feeds
                  depth_completion_node; ``points``: depth_completion_node projects the scan itself.
    ground_truth  what evaluate:=true scores against: ``depth`` (``/kitti/camera_color_left/depth_gt``,
                  raw drives with KITTI depth-completion annotations) or ``points``
                  (``/kitti/velo/pointcloud_holdout``, from ``kitti-to-bag --holdout-fraction``).
    use_tf        ``true``: every node takes T_camera_lidar from tf2 (the bag's ``/tf_static``,
                  per frame for KITTI object bags) instead of the YAML's (the 2011_09_26 drives).
    rviz          ``true`` starts RViz with ``config/depth_diffusion.rviz`` (fixed frame
                  ``rviz_fixed_frame``, default ``camera_color_left``).
    evaluate      ``true`` also starts depth_evaluation_node; it writes ``report_path``
                  (default ``depth_evaluation_report.json`` in the working directory).
    use_sim_time  ``true`` (default) for ``ros2 bag play --clock``.
    fastdds_profile  Fast DDS XML profile for the nodes (default: $FASTDDS_DEFAULT_PROFILES_FILE,
                  else the package's ``config/fastdds_large_shm.xml``). Give ``ros2 bag play`` and
                  RViz the same file, or best-effort KITTI frames are mostly lost in transit.

The arguments, nodes, RViz and Fast DDS handling shared with the other launch files are in
``depth_pipeline.py`` beside this file.
"""
import importlib.util
from pathlib import Path

from launch.actions import DeclareLaunchArgument
from launch.conditions import LaunchConfigurationEquals
from launch.substitutions import LaunchConfiguration

_spec = importlib.util.spec_from_file_location("depth_pipeline", Path(__file__).with_name("depth_pipeline.py"))
depth_pipeline = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(depth_pipeline)

KITTI_IMAGE = "/kitti/camera_color_left/image_raw"
KITTI_CAMERA_INFO = "/kitti/camera_color_left/camera_info"
KITTI_POINTS = "/kitti/velo/pointcloud"
KITTI_POINTS_HOLDOUT = "/kitti/velo/pointcloud_holdout"
KITTI_DEPTH_GT = "/kitti/camera_color_left/depth_gt"


def generate_launch_description():
    use_tf = {"use_tf": LaunchConfiguration("use_tf")}
    projection = depth_pipeline.depth_node(
        "lidar_depth_projection_node", [("points", KITTI_POINTS), ("camera_info", KITTI_CAMERA_INFO)], use_tf,
        condition=LaunchConfigurationEquals("input", "sparse_depth"))
    completion = depth_pipeline.depth_node(
        "depth_completion_node",
        [("image", KITTI_IMAGE), ("camera_info", KITTI_CAMERA_INFO), ("points", KITTI_POINTS)],
        {"backend": LaunchConfiguration("backend"), "input": LaunchConfiguration("input"), **use_tf})
    return depth_pipeline.launch_description(
        params_yaml="kitti.yaml", backend="ip_basic", backend_help=depth_pipeline.COMPLETION_BACKENDS,
        after_backend=[
            DeclareLaunchArgument("input", default_value="sparse_depth", choices=["sparse_depth", "points"],
                                  description="sparse_depth (projection node) or points (completion node projects)"),
            DeclareLaunchArgument("ground_truth", default_value="depth", choices=["depth", "points"],
                                  description="evaluate:=true scores against depth (the bag's depth_gt) or points "
                                              "(its held-out LiDAR points, KITTI object bags)"),
            DeclareLaunchArgument("use_tf", default_value="false", choices=["true", "false"],
                                  description="T_camera_lidar from tf2 (the bag's /tf_static) instead of the YAML")],
        use_sim_time="true", fixed_frame="camera_color_left",
        nodes=[projection, completion],
        evaluation_remappings=[("depth_gt", KITTI_DEPTH_GT), ("camera_info", KITTI_CAMERA_INFO),
                               ("points_holdout", KITTI_POINTS_HOLDOUT)],
        evaluation_parameters={"ground_truth": LaunchConfiguration("ground_truth"), **use_tf},
        rviz_remappings=[("image", KITTI_IMAGE), ("points", KITTI_POINTS)])
