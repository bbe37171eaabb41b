"""Launch files, parameter YAMLs and the RViz config, checked without launch_ros.

launch/launch_ros/rviz2 are not installable here, so each launch file is executed the way
``ros2 launch`` loads it (by path, from an installed-like ``share/depth_diffusion_ros/launch``
holding what setup.py installs there) against stand-ins for the launch/launch_ros classes it
uses. The stand-ins take the real constructors' signatures (a keyword the real API lacks is a
TypeError) and record their arguments, rendered in launch's frontend syntax (``$(var x)``,
``$(find-pkg-share p)``, ``$(env NAME default)``), so the tests see every argument, node,
parameter, remapping and condition the launch files build, whichever helper built it. The YAML
files are loaded by rcl's own parser (``--params-file``) into the real nodes, built in-process,
so every key must be a declared parameter with an allowed value. Where launch_ros is installed,
the launch files are also built with the real API.
"""
from __future__ import annotations

import ast
import importlib
import importlib.util
import inspect
import os
import re
import runpy
import shutil
import sys
import types
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from importlib.machinery import SourceFileLoader
from pathlib import Path
from unittest import mock

import pytest
import rclpy
import yaml
from rclpy.context import Context
from rclpy.node import Node

from depth_diffusion_ros.inference.backends import COMPLETION_BACKENDS, SUPER_RESOLUTION_BACKENDS

REPO = Path(__file__).resolve().parents[1]
PACKAGE = "depth_diffusion_ros"
CONFIGS = ["kitti.yaml", "nyu.yaml"]
KITTI_TOPICS = {"/kitti/camera_color_left/image_raw", "/kitti/camera_color_left/camera_info", "/kitti/velo/pointcloud"}
SHARE = f"$(find-pkg-share {PACKAGE})"


def console_scripts() -> set[str]:
    """Node executables declared in setup.py (the NODES list feeding console_scripts)."""
    tree = ast.parse((REPO / "setup.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "NODES" for t in node.targets):
            return {ast.literal_eval(e) for e in node.value.elts}
    raise AssertionError("setup.py has no NODES list")


@cache
def data_files() -> dict[str, tuple[str, ...]]:
    """setup.py's data_files (install folder -> repository files), from running setup.py itself."""
    with mock.patch("setuptools.setup") as setup, _cwd(REPO):
        runpy.run_path(str(REPO / "setup.py"), run_name="__main__")
    return {folder: tuple(files) for folder, files in setup.call_args.kwargs["data_files"]}


@contextmanager
def _cwd(path: Path):
    old = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


# ---- stand-ins for the launch / launch_ros API the launch files use ----------------------------

class _Recorded:
    """Records the constructor arguments, bound to the real constructor's signature (``_api``).
    Substitutions and conditions also have ``FORMAT``: how launch's frontend would write them."""

    FORMAT: str | None = None

    def __init__(self, *args, **kwargs):
        try:
            bound = inspect.signature(self._api).bind(*args, **kwargs)
        except TypeError as error:  # the real constructor refuses the same call
            raise TypeError(f"{type(self).__name__}: {error}") from None
        bound.apply_defaults()
        self.fields = dict(bound.arguments)


class LaunchConfiguration(_Recorded):
    FORMAT = "$(var {variable_name})"

    @staticmethod
    def _api(variable_name, *, default=None): ...


class FindPackageShare(_Recorded):
    FORMAT = "$(find-pkg-share {package})"

    @staticmethod
    def _api(package): ...


class PathJoinSubstitution(_Recorded):
    @staticmethod
    def _api(substitutions): ...


class EnvironmentVariable(_Recorded):
    FORMAT = "$(env {name} {default_value})"

    @staticmethod
    def _api(name, *, default_value=""): ...


class IfCondition(_Recorded):
    FORMAT = "if {predicate_expression}"

    @staticmethod
    def _api(predicate_expression): ...


class LaunchConfigurationEquals(_Recorded):
    FORMAT = "$(var {launch_configuration_name}) == {expected_value}"

    @staticmethod
    def _api(launch_configuration_name, expected_value): ...


class DeclareLaunchArgument(_Recorded):
    @staticmethod
    def _api(name, *, default_value=None, description=None, choices=None): ...


class SetEnvironmentVariable(_Recorded):
    @staticmethod
    def _api(name, value): ...


class LaunchNode(_Recorded):
    """launch_ros.actions.Node; only the keywords these launch files use (all real ones: Node's
    own, ExecuteProcess's ``output``/``emulate_tty``, Action's ``condition``)."""

    @staticmethod
    def _api(*, executable, package=None, name=None, namespace=None, parameters=None, remappings=None,
             arguments=None, output="log", emulate_tty=False, condition=None): ...


class LaunchDescription(_Recorded):
    @staticmethod
    def _api(initial_entities=None): ...


STAND_INS = {
    "launch": {"LaunchDescription": LaunchDescription},
    "launch.actions": {"DeclareLaunchArgument": DeclareLaunchArgument,
                       "SetEnvironmentVariable": SetEnvironmentVariable},
    "launch.conditions": {"IfCondition": IfCondition, "LaunchConfigurationEquals": LaunchConfigurationEquals},
    "launch.substitutions": {"EnvironmentVariable": EnvironmentVariable, "LaunchConfiguration": LaunchConfiguration,
                             "PathJoinSubstitution": PathJoinSubstitution},
    "launch_ros": {},
    "launch_ros.actions": {"Node": LaunchNode},
    "launch_ros.substitutions": {"FindPackageShare": FindPackageShare},
}


def render(value):
    """Plain data for a recorded value: substitutions as frontend strings, actions as dicts."""
    if isinstance(value, PathJoinSubstitution):
        return "/".join(render(part) for part in value.fields["substitutions"])
    if isinstance(value, _Recorded) and value.FORMAT:
        return value.FORMAT.format(**{k: render(v) for k, v in value.fields.items()})
    if isinstance(value, _Recorded):
        kind = "Node" if isinstance(value, LaunchNode) else type(value).__name__
        return {"kind": kind, **{k: render(v) for k, v in value.fields.items()}}
    if isinstance(value, dict):
        return {render(k): render(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(render(v) for v in value)
    return value


@contextmanager
def _stand_in_modules():
    saved = {name: sys.modules.get(name) for name in STAND_INS}
    for name, members in STAND_INS.items():
        module = types.ModuleType(name)
        module.__dict__.update(members)
        module.__path__ = []  # a package, so that its submodules import
        sys.modules[name] = module
    try:
        yield
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module


@dataclass
class LaunchFile:
    """A launch file's description: its entities in order, rendered by :func:`render`."""

    entities: list[dict]

    @property
    def arguments(self) -> list[dict]:
        return [{k: v for k, v in e.items() if k != "kind"} for e in self.entities if e["kind"] == "DeclareLaunchArgument"]

    @property
    def nodes(self) -> list[dict]:
        return [e for e in self.entities if e["kind"] == "Node"]


def installed_launch_dir(root: Path) -> Path:
    """``root/share/depth_diffusion_ros/launch`` holding the files setup.py installs there."""
    folder = f"share/{PACKAGE}/launch"
    target = root / folder
    target.mkdir(parents=True, exist_ok=True)
    for file in data_files()[folder]:
        shutil.copy(REPO / file, target)
    return target


def load_launch(path: Path) -> LaunchFile:
    """Execute a launch file as ``ros2 launch`` does (SourceFileLoader by path, then
    generate_launch_description()) against the stand-ins."""
    with _stand_in_modules():
        loader = SourceFileLoader("python_launch_file", str(path))
        module = importlib.util.module_from_spec(importlib.util.spec_from_loader(loader.name, loader))
        loader.exec_module(module)
        description = module.generate_launch_description()
    assert isinstance(description, LaunchDescription), f"{path.name} returned {description!r}"
    return LaunchFile(render(list(description.fields["initial_entities"])))


@pytest.fixture(scope="module")
def launch_files(tmp_path_factory) -> dict[str, LaunchFile]:
    """Every launch file, loaded from an installed-like share folder."""
    folder = installed_launch_dir(tmp_path_factory.mktemp("install"))
    files = sorted(folder.glob("*.launch.py"))
    assert files, "setup.py installs no launch file"
    return {path.name: load_launch(path) for path in files}


def node_class(executable: str) -> type:
    module = importlib.import_module(f"{PACKAGE}.nodes.{executable}")
    assert callable(getattr(module, "main", None)), f"{executable} has no main()"
    classes = [c for _, c in inspect.getmembers(module, inspect.isclass)
               if issubclass(c, Node) and c is not Node and c.__module__ == module.__name__]
    assert len(classes) == 1, classes
    return classes[0]


@pytest.fixture()
def ros_context():
    contexts = []

    def make(args: list[str]) -> Context:
        ctx = Context()
        rclpy.init(args=args, context=ctx)
        contexts.append(ctx)
        return ctx

    yield make
    for ctx in contexts:
        rclpy.try_shutdown(context=ctx)


def _subscribed_topics(cls: type, ctx: Context, params: dict) -> set[str]:
    from rclpy.parameter import Parameter

    node = cls(context=ctx, parameter_overrides=[Parameter(k, value=v) for k, v in params.items()])
    try:
        return {s.topic_name.lstrip("/") for s in node.subscriptions}
    finally:
        node.destroy_node()


# ---- what each launch file must declare and start -----------------------------------------------

def _arg(name: str, default: str, description: str | None = None, choices: list | None = None) -> dict:
    return {"name": name, "default_value": default, "description": description, "choices": choices}


COMPLETION_HELP = "ip_basic | nearest | torch | onnxruntime | tensorrt"
SR_HELP = "torch | guided_filter | joint_bilateral | bicubic | onnxruntime | tensorrt"
ESTIMATION_HELP = "onnxruntime | torch | tensorrt | row_median"
NAMESPACE = _arg("namespace", "", "namespace of the nodes")
RVIZ_ARG = _arg("rviz", "false", "start RViz")
EVALUATE_ARG = _arg("evaluate", "false", "start depth_evaluation_node")
REPORT_PATH = _arg("report_path", "depth_evaluation_report.json",
                   "report.json of evaluate:=true (relative: to the directory ros2 launch runs in); '' = none")
FASTDDS_PROFILE = _arg(
    "fastdds_profile", f"$(env FASTDDS_DEFAULT_PROFILES_FILE {SHARE}/config/fastdds_large_shm.xml)",
    "Fast DDS XML profile of the nodes (32 MiB shared-memory segments: the 512 KiB default loses "
    "best-effort images and clouds); '' = Fast DDS defaults")
CAMERA_TOPICS = [_arg("image_topic", "/camera/color/image_raw"), _arg("camera_info_topic", "/camera/color/camera_info")]


def _sim_time(default: str) -> dict:
    return _arg("use_sim_time", default, "use /clock (bag playback)")


def _params_file(name: str) -> dict:
    return _arg("params_file", f"{SHARE}/config/{name}", "parameter YAML")


def _common(fixed_frame: str, sim_time: str) -> list[dict]:
    """rviz, rviz_fixed_frame, evaluate, report_path, fastdds_profile, use_sim_time."""
    return [RVIZ_ARG, _arg("rviz_fixed_frame", fixed_frame, "RViz fixed frame (the camera's optical frame)"),
            EVALUATE_ARG, REPORT_PATH, FASTDDS_PROFILE, _sim_time(sim_time)]


EXPECTED_ARGUMENTS = {
    "kitti.launch.py": [
        NAMESPACE, _params_file("kitti.yaml"), _arg("backend", "ip_basic", COMPLETION_HELP),
        _arg("input", "sparse_depth", "sparse_depth (projection node) or points (completion node projects)",
             ["sparse_depth", "points"]),
        _arg("ground_truth", "depth", "evaluate:=true scores against depth (the bag's depth_gt) or points "
             "(its held-out LiDAR points, KITTI object bags)", ["depth", "points"]),
        _arg("use_tf", "false", "T_camera_lidar from tf2 (the bag's /tf_static) instead of the YAML", ["true", "false"]),
        *_common("camera_color_left", "true")],
    "nyu.launch.py": [
        NAMESPACE, _params_file("nyu.yaml"), _arg("backend", "ip_basic", COMPLETION_HELP),
        *_common("camera_color_optical_frame", "false"), *CAMERA_TOPICS,
        _arg("sparse_depth_topic", "/camera/sparse_depth"),
        _arg("depth_gt_topic", "/camera/depth/image_rect_raw", "ground-truth depth for evaluate:=true")],
    "super_resolution.launch.py": [
        NAMESPACE, _params_file("super_resolution.yaml"), _arg("backend", "torch", SR_HELP),
        _arg("model_path", "", "checkpoint/export directory; '' = the shipped DSR-Diff demo weights (torch)"),
        *_common("camera_color_optical_frame", "false"), *CAMERA_TOPICS,
        _arg("depth_lr_topic", "/camera/depth/image_rect_raw"),
        _arg("depth_lr_camera_info_topic", "/camera/depth/camera_info"),
        _arg("depth_gt_topic", "/camera/depth_gt/image", "ground-truth depth at the colour resolution for evaluate:=true")],
    "estimation.launch.py": [
        NAMESPACE, _params_file("estimation.yaml"), _arg("backend", "onnxruntime", ESTIMATION_HELP),
        _arg("model_path", "", "ONNX export / checkpoint / row_median_reference.json; '' = the shipped KITTI weights"),
        *_common("camera_color_left", "true"),
        _arg("image_topic", "/kitti/camera_color_left/image_raw"), _arg("camera_info_topic", "/kitti/camera_color_left/camera_info"),
        _arg("depth_gt_topic", "/kitti/camera_color_left/depth_gt", "ground-truth depth for evaluate:=true")],
}

KITTI_CAMERA_INFO = ("camera_info", "/kitti/camera_color_left/camera_info")
CAMERA_EVALUATION = [("depth_gt", "$(var depth_gt_topic)"), ("camera_info", "$(var camera_info_topic)")]
EVALUATE = "if $(var evaluate)"
USE_TF = {"use_tf": "$(var use_tf)"}
REPORT = {"report_path": "$(var report_path)"}
# (executable, parameters after params_file and use_sim_time, remappings, condition), in launch order
EXPECTED_NODES = {
    "kitti.launch.py": [
        ("lidar_depth_projection_node", [USE_TF], [("points", "/kitti/velo/pointcloud"), KITTI_CAMERA_INFO],
         "$(var input) == sparse_depth"),
        ("depth_completion_node", [{"backend": "$(var backend)", "input": "$(var input)", **USE_TF}],
         [("image", "/kitti/camera_color_left/image_raw"), KITTI_CAMERA_INFO, ("points", "/kitti/velo/pointcloud")],
         None),
        ("depth_evaluation_node", [{**REPORT, "ground_truth": "$(var ground_truth)", **USE_TF}],
         [("depth_gt", "/kitti/camera_color_left/depth_gt"), KITTI_CAMERA_INFO,
          ("points_holdout", "/kitti/velo/pointcloud_holdout")], EVALUATE)],
    "nyu.launch.py": [
        ("depth_completion_node", [{"backend": "$(var backend)", "input": "sparse_depth"}],
         [("image", "$(var image_topic)"), ("camera_info", "$(var camera_info_topic)"),
          ("sparse_depth", "$(var sparse_depth_topic)")], None),
        ("depth_evaluation_node", [REPORT], CAMERA_EVALUATION, EVALUATE)],
    "super_resolution.launch.py": [
        ("depth_super_resolution_node", [{"backend": "$(var backend)", "model_path": "$(var model_path)"}],
         [("image", "$(var image_topic)"), ("camera_info", "$(var camera_info_topic)"),
          ("depth_lr", "$(var depth_lr_topic)"), ("depth_lr/camera_info", "$(var depth_lr_camera_info_topic)")],
         None),
        ("depth_evaluation_node", [REPORT], CAMERA_EVALUATION, EVALUATE)],
    "estimation.launch.py": [
        ("depth_estimation_node", [{"backend": "$(var backend)", "model_path": "$(var model_path)"}],
         [("image", "$(var image_topic)"), ("camera_info", "$(var camera_info_topic)")], None),
        ("depth_evaluation_node", [{**REPORT, "crop": "garg", "max_depth": 80.0}], CAMERA_EVALUATION, EVALUATE)],
}
# RViz: one config with relative topics, in the namespace, the camera (and LiDAR) remapped per scenario
RVIZ_REMAPPINGS = {
    "kitti.launch.py": [("image", "/kitti/camera_color_left/image_raw"), ("points", "/kitti/velo/pointcloud")],
    "nyu.launch.py": [("image", "$(var image_topic)")],
    "super_resolution.launch.py": [("image", "$(var image_topic)")],
    "estimation.launch.py": [("image", "$(var image_topic)")],
}


def rviz_node(launch_file: str) -> dict:
    return {"kind": "Node", "package": "rviz2", "executable": "rviz2", "name": "rviz2", "namespace": "$(var namespace)",
            "output": "screen", "emulate_tty": False, "remappings": RVIZ_REMAPPINGS[launch_file],
            "condition": "if $(var rviz)",
            "arguments": ["-d", f"{SHARE}/config/depth_diffusion.rviz", "-f", "$(var rviz_fixed_frame)"],
            "parameters": [{"use_sim_time": "$(var use_sim_time)"}]}


FASTDDS_ENVIRONMENT = {"kind": "SetEnvironmentVariable", "name": "FASTDDS_DEFAULT_PROFILES_FILE",
                       "value": "$(var fastdds_profile)"}
LAUNCH_FILE_NAMES = sorted(EXPECTED_ARGUMENTS)


def test_setup_installs_every_launch_file_and_the_shared_module(launch_files):
    installed = {Path(f).name for f in data_files()[f"share/{PACKAGE}/launch"]}
    assert installed == {p.name for p in (REPO / "launch").glob("*.py")}
    assert "depth_pipeline.py" in installed  # loaded by path by the launch files beside it
    assert set(launch_files) == set(LAUNCH_FILE_NAMES)


@pytest.mark.parametrize("launch_file", LAUNCH_FILE_NAMES)
def test_launch_arguments_names_defaults_and_descriptions(launch_files, launch_file):
    assert launch_files[launch_file].arguments == EXPECTED_ARGUMENTS[launch_file]


@pytest.mark.parametrize("launch_file", LAUNCH_FILE_NAMES)
def test_launch_nodes_parameters_remappings_conditions_and_fastdds_profile(launch_files, launch_file):
    described = launch_files[launch_file]
    entities = described.entities
    n_arguments = len(described.arguments)
    assert all(e["kind"] == "DeclareLaunchArgument" for e in entities[:n_arguments]), "arguments come first"
    rest = entities[n_arguments:]
    # every launch file sets the profile before any node starts, so that every node process inherits it
    assert rest[0] == FASTDDS_ENVIRONMENT
    rest = rest[1:]
    assert FASTDDS_ENVIRONMENT not in rest
    assert rest[-1] == rviz_node(launch_file)
    ours = rest[:-1]
    assert [n["executable"] for n in ours] == [e[0] for e in EXPECTED_NODES[launch_file]]
    for node, (executable, overrides, remappings, condition) in zip(ours, EXPECTED_NODES[launch_file]):
        assert node == {
            "kind": "Node", "package": PACKAGE, "executable": executable,
            "name": executable,  # so that the config YAML keys (/**/<executable>) match
            "namespace": "$(var namespace)",
            "parameters": ["$(var params_file)", {"use_sim_time": "$(var use_sim_time)"}, *overrides],
            "remappings": remappings, "condition": condition, "output": "screen", "emulate_tty": True,
            "arguments": None,
        }, executable


@pytest.mark.parametrize("launch_file", LAUNCH_FILE_NAMES)
def test_every_launch_configuration_used_is_declared_and_every_config_file_installed(launch_files, launch_file):
    described = launch_files[launch_file]
    declared = {a["name"] for a in described.arguments}
    text = repr(described.entities)
    used = set(re.findall(r"\$\(var (\w+)\)", text))
    assert used <= declared, f"{launch_file} uses undeclared {sorted(used - declared)}"
    unused = declared - used
    assert not unused, f"{launch_file} declares {sorted(unused)} but nothing reads them"
    installed = {Path(f).name for f in data_files()[f"share/{PACKAGE}/config"]}
    for name in re.findall(rf"{re.escape(SHARE)}/config/([\w.]+)", text):
        assert name in installed and (REPO / "config" / name).is_file(), name


@pytest.mark.parametrize("launch_file", ["kitti.launch.py", "nyu.launch.py"])
def test_launch_file_nodes_are_console_scripts_with_valid_remappings(launch_files, launch_file, ros_context):
    nodes = launch_files[launch_file].nodes
    scripts = console_scripts()
    ours = [n for n in nodes if n.get("package") == PACKAGE]
    assert ours, "no node of this package is launched"
    ctx = ros_context([])
    identity = [1.0, 0, 0, 0, 0, 1.0, 0, 0, 0, 0, 1.0, 0, 0, 0, 0, 1.0]
    for n in ours:
        exe = n["executable"]
        assert exe in scripts, f"{launch_file}: executable {exe!r} is not a console script in setup.py"
        assert n["name"] == exe, "node name must equal the executable so that config keys match"
        cls = node_class(exe)
        # every remapped name is a topic the node really subscribes to (in one of its modes)
        topics: set[str] = set()
        if exe == "depth_completion_node":
            for mode in ("sparse_depth", "points"):
                topics |= _subscribed_topics(cls, ctx, {"input": mode, "T_camera_lidar": [float(v) for v in identity]})
        elif exe == "depth_evaluation_node":
            for gt in ("depth", "points"):
                topics |= _subscribed_topics(cls, ctx, {"ground_truth": gt, "T_camera_lidar": [float(v) for v in identity]})
        else:
            topics |= _subscribed_topics(cls, ctx, {"T_camera_lidar": [float(v) for v in identity]})
        for src, _dst in n["remappings"]:
            assert src in topics, f"{launch_file}: {exe} remaps {src!r} but subscribes only {sorted(topics)}"
    exes = {n["executable"] for n in ours}
    assert "depth_evaluation_node" in exes and "depth_completion_node" in exes
    if launch_file == "kitti.launch.py":
        targets = {dst for n in ours for _, dst in n["remappings"]}
        assert KITTI_TOPICS <= targets
        assert "lidar_depth_projection_node" in exes
    # the default backend of the launch file exists
    backend = next(a for a in launch_files[launch_file].arguments if a["name"] == "backend")
    assert backend["default_value"] == "ip_basic" and "ip_basic" in COMPLETION_BACKENDS
    assert set(backend["description"].split(" | ")) <= set(COMPLETION_BACKENDS)


def test_super_resolution_backends_named_in_the_launch_file_exist(launch_files):
    backend = next(a for a in launch_files["super_resolution.launch.py"].arguments if a["name"] == "backend")
    assert backend["default_value"] in SUPER_RESOLUTION_BACKENDS
    assert set(backend["description"].split(" | ")) <= set(SUPER_RESOLUTION_BACKENDS)


@pytest.mark.skipif(importlib.util.find_spec("launch_ros") is None, reason="launch_ros is not installed")
@pytest.mark.parametrize("launch_file", LAUNCH_FILE_NAMES)
def test_real_launch_api_declares_the_same_arguments_and_nodes(launch_file):
    from launch.launch_description_sources import get_launch_description_from_python_launch_file
    from launch.substitutions import TextSubstitution
    from launch_ros.actions import Node as RosNode

    description = get_launch_description_from_python_launch_file(str(REPO / "launch" / launch_file))
    expected = EXPECTED_ARGUMENTS[launch_file]
    arguments = description.get_launch_arguments()
    assert [a.name for a in arguments] == [e["name"] for e in expected]
    for argument, want in zip(arguments, expected):
        assert argument.choices == want["choices"], argument.name
        if want["description"] is not None:  # launch appends " Valid choices are: [...]" to it
            assert argument.description.startswith(want["description"]), argument.name
        if all(isinstance(s, TextSubstitution) for s in argument.default_value):
            assert "".join(s.text for s in argument.default_value) == want["default_value"], argument.name
    nodes = [e for e in description.entities if isinstance(e, RosNode)]
    assert len(nodes) == len(EXPECTED_NODES[launch_file]) + 1  # + RViz


@pytest.mark.parametrize("config", CONFIGS)
def test_config_keys_are_declared_parameters_and_values_accepted(config, ros_context):
    path = REPO / "config" / config
    data = yaml.safe_load(path.read_text())
    scripts = console_scripts()
    # rcl parses the file itself (wildcard keys, array types) when given as --params-file
    ctx = ros_context(["--ros-args", "--params-file", str(path)])
    for key, section in data.items():
        name = key.rsplit("/", 1)[-1]
        assert name in scripts, f"{config}: {key!r} is not a node of this package"
        params = section["ros__parameters"]
        module = importlib.import_module(f"{PACKAGE}.nodes.{name}")
        declared = {s.name for s in module.PARAMETERS}
        unknown = set(params) - declared
        assert not unknown, f"{config}: {name} does not declare {sorted(unknown)}"
        node = node_class(name)(context=ctx)
        try:
            assert set(params) <= set(node._parameters)
            for k, v in params.items():
                got = node.get_parameter(k).value
                if isinstance(v, list):
                    assert list(got) == pytest.approx(v), k
                else:
                    assert got == pytest.approx(v) if isinstance(v, float) else got == v, k
        finally:
            node.destroy_node()


def test_kitti_config_extrinsics_match_the_raw_calibration(kitti_raw_dir):
    from depth_diffusion_ros.geometry.calibration import read_kitti_raw_calib

    calib = read_kitti_raw_calib(kitti_raw_dir / "raw/calib_cam_to_cam.txt",
                                 kitti_raw_dir / "raw/calib_velo_to_cam.txt", camera=2)
    data = yaml.safe_load((REPO / "config" / "kitti.yaml").read_text())
    for key in ("/**/lidar_depth_projection_node", "/**/depth_completion_node", "/**/depth_evaluation_node"):
        T = data[key]["ros__parameters"]["T_camera_lidar"]
        assert T == pytest.approx(calib.T_camera_lidar.reshape(-1).tolist(), abs=1e-8)


def test_rviz_config_uses_relative_topics_remapped_per_launch(launch_files):
    cfg = yaml.safe_load((REPO / "config" / "depth_diffusion.rviz").read_text())
    vm = cfg["Visualization Manager"]
    displays = {d["Name"]: d for d in vm["Displays"]}
    assert displays["Camera image"]["Class"] == "rviz_default_plugins/Image"
    topics = {name: d["Topic"]["Value"] for name, d in displays.items() if "Topic" in d}
    # relative names: the RViz node runs in the launch namespace, "image"/"points" are remapped
    assert topics == {"Camera image": "image", "Depth colormap": "depth/colormap", "Depth points": "depth/points",
                      "LiDAR scan": "points"}
    points = displays["Depth points"]
    assert points["Class"] == "rviz_default_plugins/PointCloud2"
    assert points["Color Transformer"] == "RGB8"  # depth/points carries the rgb field
    for name, described in launch_files.items():
        (rviz,) = [n for n in described.nodes if n["executable"] == "rviz2"]
        remapped = {src for src, _ in rviz["remappings"]}
        assert "image" in remapped, name
        assert remapped <= {v for v in topics.values() if "/" not in v}, name  # only the inputs, never depth/*


# ---- resolving the launch arguments as `ros2 launch ... name:=value` does ------------------------

def resolve(value, arguments: dict, share: Path):
    """A rendered value with its substitutions replaced: ``$(var x)`` by the argument, the package
    share by ``share``, ``$(env NAME default)`` by the environment or the default."""
    if isinstance(value, dict):
        return {resolve(k, arguments, share): resolve(v, arguments, share) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(resolve(v, arguments, share) for v in value)
    if not isinstance(value, str):
        return value
    value = value.replace(SHARE, str(share))
    value = re.sub(r"\$\(env (\w+) ([^)]*)\)", lambda m: os.environ.get(m.group(1), m.group(2)), value)
    return re.sub(r"\$\(var (\w+)\)", lambda m: str(arguments[m.group(1)]), value)


def resolved_nodes(described: LaunchFile, share: Path, **overrides: str) -> dict[str, dict]:
    """executable -> {parameters: [params file, {name: typed value}], remappings} for the nodes whose
    condition holds, the arguments being their defaults with ``overrides`` (as ``name:=value``)."""
    declared = {a["name"]: a for a in described.arguments}
    unknown = set(overrides) - set(declared)
    assert not unknown, f"not launch arguments: {sorted(unknown)}"
    for name, value in overrides.items():
        choices = declared[name]["choices"]
        assert choices is None or value in choices, f"{name}:={value} is not one of {choices}"
    arguments = {name: resolve(a["default_value"], {}, share) for name, a in declared.items()}
    arguments.update(overrides)
    out = {}
    for node in described.nodes:
        condition = node["condition"]
        if condition:
            text = resolve(condition, arguments, share)
            holds = (text.split(" == ")[0] == text.split(" == ")[1]) if " == " in text else \
                yaml.safe_load(text.removeprefix("if ")) is True
            if not holds:
                continue
        params_file, *overrides_ = resolve(node["parameters"], arguments, share)
        typed = {}
        for entry in overrides_:  # launch_ros reads a substituted string as YAML (true -> bool)
            typed.update({k: yaml.safe_load(v) if isinstance(v, str) else v for k, v in entry.items()})
        out[node["executable"]] = {"params_file": params_file, "parameters": typed,
                                   "remappings": resolve(node["remappings"], arguments, share)}
    return out


@pytest.fixture(scope="module")
def share(tmp_path_factory) -> Path:
    """An installed-like share/depth_diffusion_ros with the config files setup.py installs."""
    root = tmp_path_factory.mktemp("share") / PACKAGE
    (root / "config").mkdir(parents=True)
    for file in data_files()[f"share/{PACKAGE}/config"]:
        shutil.copy(REPO / file, root / "config")
    return root


def _start(cls: type, resolved: dict, ros_context):
    """The node of ``resolved`` built as ros2 launch starts it: --params-file, then the overrides."""
    from rclpy.parameter import Parameter

    ctx = ros_context(["--ros-args", "--params-file", resolved["params_file"]])
    return cls(context=ctx, parameter_overrides=[Parameter(k, value=v) for k, v in resolved["parameters"].items()])


def test_live_evaluation_of_a_kitti_object_bag_resolves(launch_files, share, ros_context):
    """`kitti.launch.py evaluate:=true ground_truth:=points`: the evaluation node starts scoring
    the held-out points with the YAML's T_camera_lidar and writes the default report path."""
    nodes = resolved_nodes(launch_files["kitti.launch.py"], share, evaluate="true", ground_truth="points")
    assert set(nodes) == {"lidar_depth_projection_node", "depth_completion_node", "depth_evaluation_node"}
    evaluation = nodes["depth_evaluation_node"]
    assert evaluation["parameters"] == {"use_sim_time": True, "report_path": "depth_evaluation_report.json",
                                        "ground_truth": "points", "use_tf": False}
    assert ("points_holdout", "/kitti/velo/pointcloud_holdout") in evaluation["remappings"]
    node = _start(node_class("depth_evaluation_node"), evaluation, ros_context)
    try:
        assert node.get_parameter("ground_truth").value == "points"
        assert node.get_parameter("report_path").value == "depth_evaluation_report.json"
        assert node.extrinsics is not None and node.extrinsics.matrix is not None  # the YAML's calibration
        assert {s.topic_name for s in node.subscriptions} >= {"/points_holdout", "/camera_info", "/depth/image"}
    finally:
        node.destroy_node()
    # without evaluate:=true there is no evaluation node; the default scores depth_gt
    assert "depth_evaluation_node" not in resolved_nodes(launch_files["kitti.launch.py"], share)
    default = resolved_nodes(launch_files["kitti.launch.py"], share, evaluate="true")["depth_evaluation_node"]
    assert default["parameters"]["ground_truth"] == "depth"


def test_use_tf_reaches_every_kitti_node(launch_files, share, ros_context):
    nodes = resolved_nodes(launch_files["kitti.launch.py"], share, evaluate="true", ground_truth="points",
                           use_tf="true", input="points")
    assert set(nodes) == {"depth_completion_node", "depth_evaluation_node"}  # input:=points: no projection node
    assert all(n["parameters"]["use_tf"] is True for n in nodes.values())
    with_projection = resolved_nodes(launch_files["kitti.launch.py"], share, use_tf="true")
    assert with_projection["lidar_depth_projection_node"]["parameters"]["use_tf"] is True
    cls = node_class("depth_evaluation_node")
    if importlib.util.find_spec("tf2_ros") is None:  # here: the node names what is missing
        with pytest.raises(ValueError, match="'use_tf' is true but tf2_ros cannot be imported"):
            _start(cls, nodes["depth_evaluation_node"], ros_context)
    else:
        node = _start(cls, nodes["depth_evaluation_node"], ros_context)
        try:
            assert node.extrinsics.use_tf
        finally:
            node.destroy_node()


@pytest.mark.parametrize("launch_file", LAUNCH_FILE_NAMES)
def test_every_launch_file_gives_the_nodes_the_fastdds_profile_and_a_report_path(launch_files, launch_file, share):
    described = launch_files[launch_file]
    profile = resolve(next(a for a in described.arguments if a["name"] == "fastdds_profile")["default_value"], {},
                      share)
    if "FASTDDS_DEFAULT_PROFILES_FILE" not in os.environ:
        assert profile == str(share / "config" / "fastdds_large_shm.xml") and Path(profile).is_file()
    evaluation = resolved_nodes(described, share, evaluate="true", report_path="/tmp/x/report.json")
    assert evaluation["depth_evaluation_node"]["parameters"]["report_path"] == "/tmp/x/report.json"
