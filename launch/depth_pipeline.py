"""What the launch files have in common: the shared launch arguments, the package's nodes, the
evaluation node, RViz and the Fast DDS profile.

RViz uses one config (``config/depth_diffusion.rviz``) with relative topic names (``image``,
``depth/colormap``, ``depth/points``, ``points``): the RViz node runs in the ``namespace``
argument (so ``depth/*`` are the pipeline's own outputs there) with ``image`` and ``points``
remapped to each scenario's camera and LiDAR topics, and ``rviz_fixed_frame`` as its fixed frame
(``rviz2 -f``).

kitti.launch.py, nyu.launch.py and super_resolution.launch.py each build their whole
description with :func:`launch_description`, stating only what is theirs (parameter YAML,
default backend, extra arguments, their nodes and remappings).

Why a helper module and not one generic launch file that the scenarios include with
IncludeLaunchDescription: the scenarios differ in *which* nodes run and in their remapping
lists, and launch arguments carry only strings. A generic file would need one switch per node
and remappings spelled as strings, and its arguments would be declared twice (once in the
scenario, once in the include). With this module each scenario stays one flat
LaunchDescription, built from the same launch/launch_ros actions as before the split, and
``ros2 launch --show-args`` lists exactly what it runs.

Loading: this is not a launch file (it has no generate_launch_description). ``ros2 launch``
runs the scenario files from ``share/depth_diffusion_ros/launch``, which is not on
``sys.path``, so they load this module by path from their own folder; setup.py installs it
there (``launch/*.py``). It stays out of the depth_diffusion_ros package on purpose: that
package must import without ROS launch installed.
"""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, SetEnvironmentVariable
from launch.conditions import IfCondition
from launch.substitutions import EnvironmentVariable, LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

PACKAGE = "depth_diffusion_ros"
COMPLETION_BACKENDS = "ip_basic | nearest | torch | onnxruntime | tensorrt"
FASTDDS_PROFILE_VARIABLE = "FASTDDS_DEFAULT_PROFILES_FILE"
REPORT_PATH = "depth_evaluation_report.json"


def share_file(*parts: str) -> PathJoinSubstitution:
    """``<share of depth_diffusion_ros>/<parts...>``, resolved when the launch runs."""
    return PathJoinSubstitution([FindPackageShare(PACKAGE), *parts])


def camera_topic_arguments() -> list:
    """``image_topic`` and ``camera_info_topic``: the colour camera of the RGB-D scenarios."""
    return [DeclareLaunchArgument("image_topic", default_value="/camera/color/image_raw"),
            DeclareLaunchArgument("camera_info_topic", default_value="/camera/color/camera_info")]


def camera_remappings() -> list:
    """``image`` and ``camera_info`` remapped to the ``image_topic`` and ``camera_info_topic``
    arguments (see :func:`camera_topic_arguments`)."""
    return [("image", LaunchConfiguration("image_topic")), ("camera_info", LaunchConfiguration("camera_info_topic"))]


def depth_node(executable: str, remappings: list, parameters: dict | None = None, condition=None) -> Node:
    """A node of this package named after its executable (so the YAML keys match), in the
    ``namespace`` argument; parameters are ``params_file``, then ``use_sim_time``, then
    ``parameters`` (later entries win)."""
    common = [LaunchConfiguration("params_file"), {"use_sim_time": LaunchConfiguration("use_sim_time")}]
    return Node(
        package=PACKAGE, executable=executable, name=executable, namespace=LaunchConfiguration("namespace"),
        parameters=common + ([parameters] if parameters else []), output="screen", emulate_tty=True,
        remappings=remappings, condition=condition,
    )


def _arguments(params_yaml: str, backend: str, backend_help: str, use_sim_time: str, fixed_frame: str,
               after_backend: list, topics: list) -> list:
    return [
        DeclareLaunchArgument("namespace", default_value="", description="namespace of the nodes"),
        DeclareLaunchArgument("params_file", default_value=share_file("config", params_yaml),
                              description="parameter YAML"),
        DeclareLaunchArgument("backend", default_value=backend, description=backend_help),
        *after_backend,
        DeclareLaunchArgument("rviz", default_value="false", description="start RViz"),
        DeclareLaunchArgument("rviz_fixed_frame", default_value=fixed_frame,
                              description="RViz fixed frame (the camera's optical frame)"),
        DeclareLaunchArgument("evaluate", default_value="false", description="start depth_evaluation_node"),
        DeclareLaunchArgument("report_path", default_value=REPORT_PATH,
                              description="report.json of evaluate:=true (relative: to the directory ros2 launch "
                                          "runs in); '' = none"),
        DeclareLaunchArgument(
            "fastdds_profile",
            default_value=EnvironmentVariable(FASTDDS_PROFILE_VARIABLE,
                                              default_value=share_file("config", "fastdds_large_shm.xml")),
            description="Fast DDS XML profile of the nodes (32 MiB shared-memory segments: the "
                        "512 KiB default loses best-effort images and clouds); '' = Fast DDS defaults"),
        DeclareLaunchArgument("use_sim_time", default_value=use_sim_time, description="use /clock (bag playback)"),
        *topics,
    ]


def launch_description(*, params_yaml: str, backend: str, backend_help: str, use_sim_time: str, fixed_frame: str,
                       nodes: list, evaluation_remappings: list | None = None,
                       evaluation_parameters: dict | None = None, rviz_remappings: list | None = None,
                       after_backend: list = (), topics: list = ()) -> LaunchDescription:
    """One scenario: its arguments, the Fast DDS profile, its nodes, evaluation and RViz.

    Arguments, in this order: ``namespace``, ``params_file`` (default ``config/<params_yaml>``),
    ``backend`` (default ``backend``, described by ``backend_help``), ``after_backend``, ``rviz``,
    ``rviz_fixed_frame`` (default ``fixed_frame``), ``evaluate``, ``report_path`` (default
    ``depth_evaluation_report.json``), ``fastdds_profile`` (default
    $FASTDDS_DEFAULT_PROFILES_FILE, else ``config/fastdds_large_shm.xml``), ``use_sim_time``
    (default ``use_sim_time``), ``topics``.

    Actions after the arguments: FASTDDS_DEFAULT_PROFILES_FILE set to the ``fastdds_profile``
    argument for every process started after it; ``nodes``; depth_evaluation_node with
    ``evaluation_remappings`` and ``report_path`` (+ ``evaluation_parameters``) when
    ``evaluate:=true``; RViz with ``config/depth_diffusion.rviz`` in the namespace, its
    ``image`` / ``points`` remapped by ``rviz_remappings``, when ``rviz:=true``. Without
    ``evaluation_remappings`` the evaluation reads ``depth_gt`` from the ``depth_gt_topic``
    argument and ``camera_info`` from ``camera_info_topic``; without ``rviz_remappings`` RViz shows
    ``image_topic`` (the scenarios whose inputs are topic arguments).
    """
    if evaluation_remappings is None:
        evaluation_remappings = [("depth_gt", LaunchConfiguration("depth_gt_topic")),
                                 ("camera_info", LaunchConfiguration("camera_info_topic"))]
    if rviz_remappings is None:
        rviz_remappings = [("image", LaunchConfiguration("image_topic"))]
    arguments = _arguments(params_yaml, backend, backend_help, use_sim_time, fixed_frame,
                           list(after_backend), list(topics))
    profile = [SetEnvironmentVariable(FASTDDS_PROFILE_VARIABLE, LaunchConfiguration("fastdds_profile"))]
    evaluation = depth_node("depth_evaluation_node", evaluation_remappings,
                            {"report_path": LaunchConfiguration("report_path"), **(evaluation_parameters or {})},
                            condition=IfCondition(LaunchConfiguration("evaluate")))
    rviz = Node(
        package="rviz2", executable="rviz2", name="rviz2", namespace=LaunchConfiguration("namespace"),
        output="screen", remappings=list(rviz_remappings) or None,
        arguments=["-d", share_file("config", "depth_diffusion.rviz"), "-f", LaunchConfiguration("rviz_fixed_frame")],
        parameters=[{"use_sim_time": LaunchConfiguration("use_sim_time")}],
        condition=IfCondition(LaunchConfiguration("rviz")),
    )
    return LaunchDescription(arguments + profile + list(nodes) + [evaluation, rviz])
