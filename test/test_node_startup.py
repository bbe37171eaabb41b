"""Bad parameter values are rejected at start, as separate node processes (all started at once).

Each case must exit with code 2 and one FATAL line that names the parameter (or the file).
"""
from __future__ import annotations

import pytest

from node_harness import NodeProcess

pytestmark = pytest.mark.ros

COMPLETION = "depth_diffusion_ros.nodes.depth_completion_node"
PROJECTION = "depth_diffusion_ros.nodes.lidar_depth_projection_node"
IDENTITY = [1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0]


def _tf2_importable() -> bool:
    try:
        import tf2_ros  # noqa: F401
    except ImportError:
        return False
    return True


CASES = {
    "unknown_backend": (COMPLETION, {"backend": "magic"},
                        r"parameter 'backend' = 'magic' must be one of \[.*'ip_basic'"),
    "unknown_input": (COMPLETION, {"input": "radar"}, r"parameter 'input' = 'radar' must be one of"),
    "negative_slop": (COMPLETION, {"sync_slop": -0.5}, r"parameter 'sync_slop'.*-0.5.*out of range Min: 0.0, Max: 10.0"),
    "string_for_number": (COMPLETION, {"max_depth": "far"}, r"parameter 'max_depth' = 'far' must be a number"),
    "half_processing_size": (COMPLETION, {"processing_width": 640},
                             r"'processing_width' and 'processing_height' must both be 0"),
    "points_without_extrinsics": (COMPLETION, {"input": "points"}, r"parameter 'T_camera_lidar' is empty"),
    "bad_reliability": (COMPLETION, {"reliability": "sometimes"}, r"parameter 'reliability' = 'sometimes'"),
    "missing_model": (COMPLETION, {"backend": "onnxruntime", "model_path": "/nonexistent/model_dir"},
                      r"/nonexistent/model_dir"),
    "not_a_rotation": (PROJECTION, {"T_camera_lidar": [2.0 if i in (0, 5, 10) else v for i, v in enumerate(IDENTITY)]},
                       r"parameter 'T_camera_lidar': the upper-left 3x3 block is not a rotation"),
    "short_transform": (PROJECTION, {"T_camera_lidar": [1.0, 0.0, 0.0]},
                        r"parameter 'T_camera_lidar': must have 16 numbers"),
    "min_above_max": (PROJECTION, {"T_camera_lidar": IDENTITY, "min_depth": 50.0, "max_depth": 10.0},
                      r"parameter 'min_depth' \(50.0\) must be < 'max_depth' \(10.0\)"),
}
if not _tf2_importable():
    CASES["use_tf_without_tf2"] = (PROJECTION, {"use_tf": True},
                                   r"'use_tf' is true but tf2_ros cannot be imported")


@pytest.fixture(scope="module")
def started():
    procs = {name: NodeProcess(module, params) for name, (module, params, _) in CASES.items()}
    try:
        yield procs
    finally:
        for p in procs.values():
            p.cleanup()


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_parameter_is_rejected_at_start(started, case):
    proc = started[case]
    code = proc.wait_exit(timeout=90)
    log = proc.log()
    assert code == 2, f"exit code {code}; log:\n{log}"
    proc.wait_for_log(r"\[FATAL\].*cannot start: .*" + CASES[case][2], timeout=1)
    assert "Traceback" not in log
