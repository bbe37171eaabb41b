"""launch/super_resolution.launch.py and config/super_resolution.yaml, checked without launch_ros
(the launch file built against test_launch_static.py's stand-ins for launch/launch_ros; the YAML
loaded by rcl's own parser into the real nodes), with the helpers of test_launch_static.py.
Its full argument and node tables are checked in test_launch_static.py with the other launch
files; here, that its remappings are exactly the topics the node subscribes to."""
from __future__ import annotations

import importlib

import pytest
import yaml

from depth_diffusion_ros.inference.backends import SUPER_RESOLUTION_BACKENDS

from test_launch_static import (  # noqa: F401
    REPO, _subscribed_topics, console_scripts, launch_files, node_class, ros_context)

pytestmark = pytest.mark.ros

PACKAGE = "depth_diffusion_ros"


def test_launch_file_nodes_and_remappings(launch_files, ros_context):  # noqa: F811
    described = launch_files["super_resolution.launch.py"]
    nodes, args = described.nodes, {a["name"] for a in described.arguments}
    assert {"namespace", "params_file", "backend", "model_path", "rviz", "evaluate", "image_topic",
            "camera_info_topic", "depth_lr_topic", "depth_lr_camera_info_topic"} <= args
    ours = [n for n in nodes if n.get("package") == PACKAGE]
    assert {n["executable"] for n in ours} == {"depth_super_resolution_node", "depth_evaluation_node"}
    scripts = console_scripts()
    ctx = ros_context([])
    for n in ours:
        assert n["executable"] in scripts and n["name"] == n["executable"]
        assert n["namespace"] == "$(var namespace)"
        assert n["parameters"][:2] == ["$(var params_file)", {"use_sim_time": "$(var use_sim_time)"}]
    sr = next(n for n in ours if n["executable"] == "depth_super_resolution_node")
    cls = node_class("depth_super_resolution_node")
    topics = _subscribed_topics(cls, ctx, {"backend": "bicubic", "use_depth_camera_info": True})
    assert topics == {"image", "camera_info", "depth_lr", "depth_lr/camera_info"}
    assert {src for src, _ in sr["remappings"]} == topics
    assert _subscribed_topics(cls, ctx, {"backend": "bicubic"}) == {"image", "camera_info", "depth_lr"}
    evaluation = next(n for n in ours if n["executable"] == "depth_evaluation_node")
    assert evaluation["condition"] == "if $(var evaluate)"
    backend = next(a for a in described.arguments if a["name"] == "backend")
    assert backend["default_value"] == "torch" and "torch" in SUPER_RESOLUTION_BACKENDS
    assert any(n["executable"] == "rviz2" and n["arguments"][1].endswith("/config/depth_diffusion.rviz")
               and ("image", "$(var image_topic)") in n["remappings"] for n in nodes)
    assert "fastdds_profile" in args  # a 640x480 organised cloud overflows Fast DDS's 512 KiB default


def test_config_keys_are_declared_and_accepted(ros_context):  # noqa: F811
    path = REPO / "config" / "super_resolution.yaml"
    data = yaml.safe_load(path.read_text())
    ctx = ros_context(["--ros-args", "--params-file", str(path), "-p",
                       "depth_super_resolution_node:backend:=bicubic"])
    for key, section in data.items():
        name = key.rsplit("/", 1)[-1]
        params = section["ros__parameters"]
        module = importlib.import_module(f"{PACKAGE}.nodes.{name}")
        unknown = set(params) - {s.name for s in module.PARAMETERS}
        assert not unknown, f"{name} does not declare {sorted(unknown)}"
        node = node_class(name)(context=ctx)
        try:
            for k, v in params.items():
                if name == "depth_super_resolution_node" and k == "backend":
                    continue  # overridden to bicubic above so the test needs no torch model
                got = node.get_parameter(k).value
                assert (got == pytest.approx(v)) if isinstance(v, float) else got == v, k
        finally:
            node.destroy_node()
    assert data["/**/depth_super_resolution_node"]["ros__parameters"]["backend"] == "torch"
