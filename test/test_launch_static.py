"""Launch files, parameter YAMLs and the RViz config, checked without launch_ros.

launch/launch_ros/rviz2 are not installable here, so the launch files are parsed with ``ast``;
the YAML files are loaded by rcl's own parser (``--params-file``) into the real nodes, built
in-process, so every key must be a declared parameter with an allowed value.
"""
from __future__ import annotations

import ast
import importlib
import inspect
from pathlib import Path

import pytest
import rclpy
import yaml
from rclpy.context import Context
from rclpy.node import Node

from depth_diffusion_ros.inference.backends import COMPLETION_BACKENDS

REPO = Path(__file__).resolve().parents[1]
PACKAGE = "depth_diffusion_ros"
LAUNCH_FILES = {"kitti.launch.py": {"namespace", "params_file", "backend", "rviz", "evaluate"},
                "nyu.launch.py": {"namespace", "params_file", "backend", "rviz", "evaluate"}}
CONFIGS = ["kitti.yaml", "nyu.yaml"]
KITTI_TOPICS = {"/kitti/camera_color_left/image_raw", "/kitti/camera_color_left/camera_info", "/kitti/velo/pointcloud"}


def console_scripts() -> set[str]:
    """Node executables declared in setup.py (the NODES list feeding console_scripts)."""
    tree = ast.parse((REPO / "setup.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "NODES" for t in node.targets):
            return {ast.literal_eval(e) for e in node.value.elts}
    raise AssertionError("setup.py has no NODES list")


def _constants(tree: ast.Module) -> dict[str, object]:
    out = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            try:
                out[node.targets[0].id] = ast.literal_eval(node.value)
            except ValueError:
                pass
    return out


def _value(node: ast.AST, consts: dict[str, object]):
    if isinstance(node, ast.Name) and node.id in consts:
        return consts[node.id]
    try:
        return ast.literal_eval(node)
    except ValueError:
        return None


def parse_launch(path: Path) -> tuple[list[dict], set[str]]:
    """(Node(...) calls as dicts of the literal keyword values, declared argument names)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    consts = _constants(tree)
    nodes, args = [], set()
    for call in ast.walk(tree):
        if not isinstance(call, ast.Call) or not isinstance(call.func, ast.Name):
            continue
        if call.func.id == "Node":
            kw = {k.arg: k.value for k in call.keywords}
            entry = {k: _value(v, consts) for k, v in kw.items()}
            remaps = []
            if "remappings" in kw:
                for el in kw["remappings"].elts:
                    src = _value(el.elts[0], consts)
                    dst = _value(el.elts[1], consts)
                    remaps.append((src, dst))
            entry["remappings"] = remaps
            entry["_source"] = ast.get_source_segment(path.read_text(), call)
            nodes.append(entry)
        elif call.func.id == "DeclareLaunchArgument":
            args.add(_value(call.args[0], consts))
    assert any(isinstance(f, ast.FunctionDef) and f.name == "generate_launch_description" for f in tree.body)
    return nodes, args


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


@pytest.mark.parametrize("launch_file", sorted(LAUNCH_FILES))
def test_launch_file_nodes_are_console_scripts_with_valid_remappings(launch_file, ros_context):
    nodes, args = parse_launch(REPO / "launch" / launch_file)
    assert LAUNCH_FILES[launch_file] <= args, f"missing launch arguments {LAUNCH_FILES[launch_file] - args}"
    scripts = console_scripts()
    assert "common = [params_file, " in (REPO / "launch" / launch_file).read_text()
    ours = [n for n in nodes if n.get("package") == PACKAGE]
    assert ours, "no node of this package is launched"
    ctx = ros_context([])
    identity = [1.0, 0, 0, 0, 0, 1.0, 0, 0, 0, 0, 1.0, 0, 0, 0, 0, 1.0]
    for n in ours:
        exe = n["executable"]
        assert exe in scripts, f"{launch_file}: executable {exe!r} is not a console script in setup.py"
        assert n["name"] == exe, "node name must equal the executable so that config keys match"
        assert "namespace=namespace" in n["_source"] and "parameters=common" in n["_source"]
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
    assert {n["executable"] for n in nodes if n.get("package") == "rviz2"} == {"rviz2"}
    assert any("depth_diffusion.rviz" in n["_source"] for n in nodes)
    exes = {n["executable"] for n in ours}
    assert "depth_evaluation_node" in exes and "depth_completion_node" in exes
    evaluation = next(n for n in ours if n["executable"] == "depth_evaluation_node")
    assert 'IfCondition(LaunchConfiguration("evaluate"))' in evaluation["_source"]
    if launch_file == "kitti.launch.py":
        targets = {dst for n in ours for _, dst in n["remappings"]}
        assert KITTI_TOPICS <= targets
        assert "lidar_depth_projection_node" in exes
    # the default backend of the launch file exists
    text = (REPO / "launch" / launch_file).read_text()
    assert 'DeclareLaunchArgument("backend", default_value="ip_basic"' in text and "ip_basic" in COMPLETION_BACKENDS


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
    for key in ("/**/lidar_depth_projection_node", "/**/depth_completion_node"):
        T = data[key]["ros__parameters"]["T_camera_lidar"]
        assert T == pytest.approx(calib.T_camera_lidar.reshape(-1).tolist(), abs=1e-8)


def test_rviz_config_shows_camera_depth_and_points():
    cfg = yaml.safe_load((REPO / "config" / "depth_diffusion.rviz").read_text())
    vm = cfg["Visualization Manager"]
    assert vm["Global Options"]["Fixed Frame"] == "camera_color_left"  # the kitti-to-bag camera frame
    displays = {d["Name"]: d for d in vm["Displays"]}
    assert displays["Camera image"]["Class"] == "rviz_default_plugins/Image"
    assert displays["Camera image"]["Topic"]["Value"] == "/kitti/camera_color_left/image_raw"
    assert displays["Depth colormap"]["Topic"]["Value"] == "/depth/colormap"
    points = displays["Depth points"]
    assert points["Class"] == "rviz_default_plugins/PointCloud2" and points["Topic"]["Value"] == "/depth/points"
    assert points["Color Transformer"] == "RGB8"  # depth/points carries the rgb field
