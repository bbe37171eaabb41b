"""KITTI pipeline: LiDAR projection + depth completion (+ evaluation, + RViz).

Plays with bags written by ``depth-diffusion-ros kitti-to-bag`` or kitti2bag (topics
``/kitti/camera_color_left/image_raw``, ``/kitti/camera_color_left/camera_info``,
``/kitti/velo/pointcloud``)::

    ros2 bag play kitti.mcap --clock
    ros2 launch depth_diffusion_ros kitti.launch.py backend:=ip_basic rviz:=true evaluate:=true

Arguments:
    namespace     ROS namespace of the nodes (their own topics, e.g. ``<ns>/depth/image``).
    params_file   parameter YAML (default: the package's ``config/kitti.yaml``).
    backend       completion backend (``ip_basic``, ``nearest``, ``torch``, ``onnxruntime``,
                  ``tensorrt``); overrides the YAML.
    input         ``sparse_depth``: lidar_depth_projection_node renders the scan and feeds
                  depth_completion_node; ``points``: depth_completion_node projects the scan itself.
    rviz          ``true`` starts RViz with ``config/depth_diffusion.rviz``.
    evaluate      ``true`` also starts depth_evaluation_node, scoring ``depth/image`` against
                  ``/kitti/camera_color_left/depth_gt``.
    use_sim_time  ``true`` (default) for ``ros2 bag play --clock``.
    fastdds_profile  Fast DDS XML profile for the nodes (default: $FASTDDS_DEFAULT_PROFILES_FILE,
                  else the package's ``config/fastdds_large_shm.xml``). Give ``ros2 bag play`` and
                  RViz the same file, or best-effort KITTI frames are mostly lost in transit.
"""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, SetEnvironmentVariable
from launch.conditions import IfCondition, LaunchConfigurationEquals
from launch.substitutions import EnvironmentVariable, LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

PACKAGE = "depth_diffusion_ros"
KITTI_IMAGE = "/kitti/camera_color_left/image_raw"
KITTI_CAMERA_INFO = "/kitti/camera_color_left/camera_info"
KITTI_POINTS = "/kitti/velo/pointcloud"
KITTI_POINTS_HOLDOUT = "/kitti/velo/pointcloud_holdout"
KITTI_DEPTH_GT = "/kitti/camera_color_left/depth_gt"


def generate_launch_description():
    share = FindPackageShare(PACKAGE)
    namespace = LaunchConfiguration("namespace")
    params_file = LaunchConfiguration("params_file")
    use_sim_time = LaunchConfiguration("use_sim_time")
    arguments = [
        DeclareLaunchArgument("namespace", default_value="", description="namespace of the nodes"),
        DeclareLaunchArgument("params_file", default_value=PathJoinSubstitution([share, "config", "kitti.yaml"]),
                              description="parameter YAML"),
        DeclareLaunchArgument("backend", default_value="ip_basic",
                              description="ip_basic | nearest | torch | onnxruntime | tensorrt"),
        DeclareLaunchArgument("input", default_value="sparse_depth", choices=["sparse_depth", "points"],
                              description="sparse_depth (projection node) or points (completion node projects)"),
        DeclareLaunchArgument("rviz", default_value="false", description="start RViz"),
        DeclareLaunchArgument("evaluate", default_value="false", description="start depth_evaluation_node"),
        DeclareLaunchArgument(
            "fastdds_profile",
            default_value=EnvironmentVariable(
                "FASTDDS_DEFAULT_PROFILES_FILE",
                default_value=PathJoinSubstitution([share, "config", "fastdds_large_shm.xml"])),
            description="Fast DDS XML profile of the nodes (32 MiB shared-memory segments: the "
                        "512 KiB default loses best-effort images and clouds); '' = Fast DDS defaults"),
        DeclareLaunchArgument("use_sim_time", default_value="true", description="use /clock (bag playback)"),
    ]
    common = [params_file, {"use_sim_time": use_sim_time}]
    projection = Node(
        package=PACKAGE, executable="lidar_depth_projection_node", name="lidar_depth_projection_node",
        namespace=namespace, parameters=common, output="screen", emulate_tty=True,
        remappings=[("points", KITTI_POINTS), ("camera_info", KITTI_CAMERA_INFO)],
        condition=LaunchConfigurationEquals("input", "sparse_depth"),
    )
    completion = Node(
        package=PACKAGE, executable="depth_completion_node", name="depth_completion_node",
        namespace=namespace, output="screen", emulate_tty=True,
        parameters=common + [{"backend": LaunchConfiguration("backend"), "input": LaunchConfiguration("input")}],
        remappings=[("image", KITTI_IMAGE), ("camera_info", KITTI_CAMERA_INFO), ("points", KITTI_POINTS)],
    )
    evaluation = Node(
        package=PACKAGE, executable="depth_evaluation_node", name="depth_evaluation_node",
        namespace=namespace, parameters=common, output="screen", emulate_tty=True,
        remappings=[("depth_gt", KITTI_DEPTH_GT), ("camera_info", KITTI_CAMERA_INFO),
                    ("points_holdout", KITTI_POINTS_HOLDOUT)],
        condition=IfCondition(LaunchConfiguration("evaluate")),
    )
    rviz = Node(
        package="rviz2", executable="rviz2", name="rviz2", output="screen",
        arguments=["-d", PathJoinSubstitution([share, "config", "depth_diffusion.rviz"])],
        parameters=[{"use_sim_time": use_sim_time}],
        condition=IfCondition(LaunchConfiguration("rviz")),
    )
    return LaunchDescription(arguments + [
        SetEnvironmentVariable("FASTDDS_DEFAULT_PROFILES_FILE", LaunchConfiguration("fastdds_profile")),
        projection, completion, evaluation, rviz])
