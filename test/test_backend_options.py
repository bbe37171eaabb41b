"""Node parameters reach the backends they are meant for, and only those."""
from __future__ import annotations

import pytest

from depth_diffusion_ros.nodes import depth_completion_node as completion
from depth_diffusion_ros.nodes import depth_super_resolution_node as super_resolution


@pytest.mark.parametrize("node", [completion, super_resolution])
def test_tensorrt_gets_force_engine_update_and_others_do_not(node):
    params = {spec.name: spec.default for spec in node.PARAMETERS}
    params.update(model_path="/models/x", force_engine_update=True, providers=["cpu"])
    trt = node.backend_options("tensorrt", params)
    assert trt["force_engine_update"] is True and trt["model_path"] == "/models/x"
    assert "providers" not in trt
    ort = node.backend_options("onnxruntime", params)
    assert "force_engine_update" not in ort and ort["providers"] == ["cpu"]
