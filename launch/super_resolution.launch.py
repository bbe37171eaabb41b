"""Colour-guided depth super-resolution: colour image + low-resolution depth -> depth at the
colour resolution (DSR-Diff demo weights by default).

The low-resolution depth (16UC1 mm or 32FC1 m) must be registered to the colour camera and an
integer factor smaller (e.g. 80x60 or 160x120 for a 640x480 image)::

    ros2 launch depth_diffusion_ros super_resolution.launch.py \\
        image_topic:=/camera/color/image_raw camera_info_topic:=/camera/color/camera_info \\
        depth_lr_topic:=/camera/depth/image_rect_raw depth_lr_camera_info_topic:=/camera/depth/camera_info

Arguments: namespace, params_file (default ``config/super_resolution.yaml``), backend (torch |
guided_filter | joint_bilateral | bicubic | onnxruntime | tensorrt), model_path ('' = the
shipped demo weights for torch), rviz, evaluate (scores ``depth/image`` against
``depth_gt_topic``), use_sim_time, and the input topics.
"""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
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
        DeclareLaunchArgument("params_file",
                              default_value=PathJoinSubstitution([share, "config", "super_resolution.yaml"]),
                              description="parameter YAML"),
        DeclareLaunchArgument("backend", default_value="torch",
                              description="torch | guided_filter | joint_bilateral | bicubic | onnxruntime | tensorrt"),
        DeclareLaunchArgument("model_path", default_value="",
                              description="checkpoint/export directory; '' = the shipped DSR-Diff demo weights (torch)"),
        DeclareLaunchArgument("rviz", default_value="false", description="start RViz"),
        DeclareLaunchArgument("evaluate", default_value="false", description="start depth_evaluation_node"),
        DeclareLaunchArgument("use_sim_time", default_value="false", description="use /clock (bag playback)"),
        DeclareLaunchArgument("image_topic", default_value="/camera/color/image_raw"),
        DeclareLaunchArgument("camera_info_topic", default_value="/camera/color/camera_info"),
        DeclareLaunchArgument("depth_lr_topic", default_value="/camera/depth/image_rect_raw"),
        DeclareLaunchArgument("depth_lr_camera_info_topic", default_value="/camera/depth/camera_info"),
        DeclareLaunchArgument("depth_gt_topic", default_value="/camera/depth_gt/image",
                              description="ground-truth depth at the colour resolution for evaluate:=true"),
    ]
    common = [params_file, {"use_sim_time": use_sim_time}]
    super_resolution = Node(
        package=PACKAGE, executable="depth_super_resolution_node", name="depth_super_resolution_node",
        namespace=namespace, output="screen", emulate_tty=True,
        parameters=common + [{"backend": LaunchConfiguration("backend"),
                              "model_path": LaunchConfiguration("model_path")}],
        remappings=[("image", image), ("camera_info", camera_info),
                    ("depth_lr", LaunchConfiguration("depth_lr_topic")),
                    ("depth_lr/camera_info", LaunchConfiguration("depth_lr_camera_info_topic"))],
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
    return LaunchDescription(arguments + [super_resolution, evaluation, rviz])
