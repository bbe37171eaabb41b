"""Indoor RGB-D pipeline (NYU Depth V2 style): image + sparse depth -> dense depth.

The sparse depth comes from any source publishing an Image (16UC1 mm or 32FC1 m) registered to
the colour camera, e.g. a few hundred valid pixels sampled from a depth sensor::

    ros2 launch depth_diffusion_ros nyu.launch.py image_topic:=/camera/color/image_raw \\
        camera_info_topic:=/camera/color/camera_info sparse_depth_topic:=/camera/sparse_depth

Arguments: namespace, params_file (default ``config/nyu.yaml``), backend, rviz, evaluate
(scores ``depth/image`` against ``depth_gt_topic``), use_sim_time, and the four input topics.
"""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, SetEnvironmentVariable
from launch.conditions import IfCondition
from launch.substitutions import EnvironmentVariable, LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

PACKAGE = "depth_diffusion_ros"


def generate_launch_description():
    share = FindPackageShare(PACKAGE)
    namespace = LaunchConfiguration("namespace")
    params_file = LaunchConfiguration("params_file")
    use_sim_time = LaunchConfiguration("use_sim_time")
    image = LaunchConfiguration("image_topic")
    camera_info = LaunchConfiguration("camera_info_topic")
    arguments = [
        DeclareLaunchArgument("namespace", default_value="", description="namespace of the nodes"),
        DeclareLaunchArgument("params_file", default_value=PathJoinSubstitution([share, "config", "nyu.yaml"]),
                              description="parameter YAML"),
        DeclareLaunchArgument("backend", default_value="ip_basic",
                              description="ip_basic | nearest | torch | onnxruntime | tensorrt"),
        DeclareLaunchArgument("rviz", default_value="false", description="start RViz"),
        DeclareLaunchArgument("evaluate", default_value="false", description="start depth_evaluation_node"),
        DeclareLaunchArgument(
            "fastdds_profile",
            default_value=EnvironmentVariable(
                "FASTDDS_DEFAULT_PROFILES_FILE",
                default_value=PathJoinSubstitution([share, "config", "fastdds_large_shm.xml"])),
            description="Fast DDS XML profile of the nodes (32 MiB shared-memory segments: the "
                        "512 KiB default loses best-effort images and clouds); '' = Fast DDS defaults"),
        DeclareLaunchArgument("use_sim_time", default_value="false", description="use /clock (bag playback)"),
        DeclareLaunchArgument("image_topic", default_value="/camera/color/image_raw"),
        DeclareLaunchArgument("camera_info_topic", default_value="/camera/color/camera_info"),
        DeclareLaunchArgument("sparse_depth_topic", default_value="/camera/sparse_depth"),
        DeclareLaunchArgument("depth_gt_topic", default_value="/camera/depth/image_rect_raw",
                              description="ground-truth depth for evaluate:=true"),
    ]
    common = [params_file, {"use_sim_time": use_sim_time}]
    completion = Node(
        package=PACKAGE, executable="depth_completion_node", name="depth_completion_node",
        namespace=namespace, output="screen", emulate_tty=True,
        parameters=common + [{"backend": LaunchConfiguration("backend"), "input": "sparse_depth"}],
        remappings=[("image", image), ("camera_info", camera_info),
                    ("sparse_depth", LaunchConfiguration("sparse_depth_topic"))],
    )
    evaluation = Node(
        package=PACKAGE, executable="depth_evaluation_node", name="depth_evaluation_node",
        namespace=namespace, parameters=common, output="screen", emulate_tty=True,
        remappings=[("depth_gt", LaunchConfiguration("depth_gt_topic")), ("camera_info", camera_info)],
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
        completion, evaluation, rviz])
