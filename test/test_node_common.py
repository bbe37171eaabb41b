"""In-process checks of the shared node helpers (nodes/parameters, health, extrinsics, process), the
sparse re-projection they use and the backend option table."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import rclpy
from diagnostic_msgs.msg import DiagnosticStatus
from rclpy.context import Context
from rclpy.node import Node
from rclpy.parameter import Parameter

from depth_diffusion_ros.geometry.intrinsics import Intrinsics
from depth_diffusion_ros.inference.backends import COMPLETION_BACKENDS
from depth_diffusion_ros.nodes import depth_completion_node as dcn
from depth_diffusion_ros.geometry.resample import resample_sparse_depth
from depth_diffusion_ros.nodes.extrinsics import parse_transform_parameter
from depth_diffusion_ros.nodes.health import ERROR, WARN, NodeHealth
from depth_diffusion_ros.nodes.parameters import ParameterError, ParamSpec, declare_parameters
from depth_diffusion_ros.ros import InputError


@pytest.fixture()
def ctx():
    c = Context()
    rclpy.init(context=c)
    yield c
    rclpy.try_shutdown(context=c)


def test_backend_option_table_covers_every_backend_and_skips_unset_values():
    assert set(dcn.BACKEND_OPTIONS) == set(COMPLETION_BACKENDS)
    params = {s.name: s.default for s in dcn.PARAMETERS}
    assert dcn.backend_options("ip_basic", params) == {"max_depth": 100.0, "extrapolate": True, "blur_type": "bilateral"}
    assert dcn.backend_options("onnxruntime", params) == {"ensemble_size": 1, "seed": 0}
    params.update(model_path="/models/dd", num_inference_steps=10, providers=["cuda", "cpu"], device="cuda:0")
    assert dcn.backend_options("onnxruntime", params) == {
        "model_path": "/models/dd", "num_inference_steps": 10, "ensemble_size": 1, "providers": ["cuda", "cpu"], "seed": 0}
    assert dcn.backend_options("torch", params)["device"] == "cuda:0"
    names = {s.name for s in dcn.PARAMETERS}
    assert all(opt in names for opts in dcn.BACKEND_OPTIONS.values() for opt in opts)


def test_declare_parameters_descriptors_and_coercion(ctx):
    specs = (ParamSpec("slop", 0.1, "s", range=(0.0, 1.0), dynamic=True),
             ParamSpec("mode", "a", "m", choices=("a", "b"), read_only=True),
             ParamSpec("matrix", [], "T", array_of=float, read_only=True))
    node = Node("p", context=ctx, parameter_overrides=[Parameter("slop", value=1), Parameter("matrix", value=[1, 2])])
    values = declare_parameters(node, specs)
    assert values == {"slop": 1.0, "mode": "a", "matrix": [1.0, 2.0]}  # ints accepted for floats
    d = node.describe_parameter("mode")
    assert d.read_only and d.additional_constraints == "one of: a, b" and d.description == "m"
    assert node.describe_parameter("slop").floating_point_range[0].to_value == 1.0
    assert node.set_parameters([Parameter("slop", value=0.5)])[0].successful and values["slop"] == 0.5
    assert not node.set_parameters([Parameter("slop", value=2.0)])[0].successful and values["slop"] == 0.5
    node.destroy_node()
    node = Node("q", context=ctx, parameter_overrides=[Parameter("mode", value="c")])
    with pytest.raises(ParameterError, match="parameter 'mode' = 'c' must be one of"):
        declare_parameters(node, specs)
    node.destroy_node()


def test_node_health_levels_counters_and_guard(ctx):
    node = Node("h", context=ctx)
    health = NodeHealth(node, "test", {"diagnostics_period": 10.0, "log_throttle": 100.0}, extra={"backend": "x"})
    assert health.status().level == DiagnosticStatus.OK and health.status().message == "waiting for input"

    def bad(kind):
        if kind == "input":
            raise InputError("image encoding 'foo'", reason="bad_encoding")
        raise RuntimeError("boom")

    guarded = health.guard(bad)
    guarded("input")
    guarded("input")
    st = health.status()
    assert st.level == bytes([WARN]) and "bad_encoding: image encoding 'foo'" in st.message
    guarded("crash")
    st = health.status()
    assert st.level == bytes([ERROR]) and "internal_error: RuntimeError: boom" in st.message
    vals = {kv.key: kv.value for kv in st.values}
    assert vals["drops_bad_encoding"] == "2" and vals["drops_internal_error"] == "1" and vals["drops_total"] == "3"
    assert vals["backend"] == "x"
    health.publish()  # a new reporting period starts at OK, counters stay
    st = health.status()
    assert st.level == DiagnosticStatus.OK and "3 dropped" in st.message
    node.destroy_node()


def test_parse_transform_parameter():
    T = parse_transform_parameter([1, 0, 0, 0.5, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1])
    assert T.shape == (4, 4) and T[0, 3] == 0.5
    with pytest.raises(ParameterError, match="non-finite"):
        parse_transform_parameter([float("nan")] * 16)
    with pytest.raises(ParameterError, match="last row"):
        parse_transform_parameter([1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 1, 1])


def test_resample_sparse_depth_never_mixes_returns_with_empty_pixels():
    full = Intrinsics(721.5377, 721.5377, 609.5593, 172.854, 1242, 375)
    half = full.scaled(621, 188)
    rng = np.random.default_rng(0)
    sparse = np.zeros((375, 1242), np.float32)
    idx = rng.choice(sparse.size, 20000, replace=False)
    sparse.reshape(-1)[idx] = rng.uniform(5, 80, idx.size).astype(np.float32)
    out = resample_sparse_depth(sparse, full, half)
    assert out.shape == (188, 621)
    values = set(np.round(sparse[sparse > 0], 4))
    assert set(np.round(out[out > 0], 4)) <= values  # every output value is a measured return
    assert np.count_nonzero(out) > 0.8 * min(20000, out.size * (1 - np.exp(-20000 / out.size)))
    assert resample_sparse_depth(sparse, full, full) is sparse


_FAULTS_SCRIPT = """
import resource, sys
import numpy as np
from depth_diffusion_ros.nodes.process import keep_frame_memory
print(keep_frame_memory(), end=" ")
faults = []
for _ in range(4):  # a 15 MB frame buffer allocated, written and freed, as every frame does
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    a = np.empty(15_000_000, np.uint8)
    a[::4096] = 1
    del a
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(max(faults[1:]))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc mallopt")
def test_keep_frame_memory_reuses_frame_buffers_without_page_faults():
    """After keep_frame_memory a freed 15 MB buffer is reused: the next frame's costs no faults."""
    out = subprocess.run([sys.executable, "-c", _FAULTS_SCRIPT], capture_output=True, text=True, timeout=60,
                         env=dict(os.environ, DDR_MALLOC_TUNING="1"), check=True).stdout.split()
    assert out[0] == "True"
    assert int(out[1]) < 100, f"{out[1]} minor faults for a reused 15 MB buffer (3,663 pages if unmapped)"
    off = subprocess.run([sys.executable, "-c", _FAULTS_SCRIPT], capture_output=True, text=True, timeout=60,
                         env=dict(os.environ, DDR_MALLOC_TUNING="0"), check=True).stdout.split()
    assert off[0] == "False"


def test_lidar_odometry_needs_points_input(ctx):
    overrides = [Parameter("temporal", value=True), Parameter("temporal_ego_motion", value="lidar_odometry")]
    with pytest.raises(ParameterError, match="lidar_odometry needs input 'points'.*got input 'sparse_depth'"):
        dcn.DepthCompletionNode(context=ctx, parameter_overrides=overrides)


class _FakeTf2:
    """A FAKE tf2_ros (tf2_ros cannot be installed here): a Buffer whose lookup_transform_full
    returns a fixed camera motion (or raises), recording its arguments; on a real ROS install the
    node's TfEgoMotion calls the real one with the same arguments."""

    def __init__(self, translation_z: float, fail: bool = False) -> None:
        from geometry_msgs.msg import TransformStamped

        fake = self
        self.calls = []

        class Buffer:
            def lookup_transform_full(self, target, target_time, source, source_time, fixed):
                fake.calls.append((target, target_time.nanoseconds, source, source_time.nanoseconds, fixed))
                if fail:
                    raise RuntimeError("Lookup would require extrapolation into the past")
                tf = TransformStamped()
                tf.transform.translation.z = translation_z
                tf.transform.rotation.w = 1.0
                return tf

        self.Buffer = Buffer
        self.TransformListener = lambda buffer, node: None


def _frame_messages(t: float):
    from sensor_msgs.msg import CameraInfo, Image

    image, info = Image(), CameraInfo()
    image.header.frame_id = info.header.frame_id = "cam"
    image.header.stamp.sec, image.header.stamp.nanosec = int(t), int(round((t % 1) * 1e9))
    return image, info


@pytest.mark.parametrize("fail", [False, True])
def test_temporal_ego_motion_from_tf_with_a_fake_tf2(ctx, monkeypatch, fail):
    from depth_diffusion_ros.geometry.intrinsics import Intrinsics
    from depth_diffusion_ros.inference.pipelines import DepthOutput
    from depth_diffusion_ros.inference.temporal import TemporalFilter

    fake = _FakeTf2(-0.5, fail=fail)
    monkeypatch.setitem(sys.modules, "tf2_ros", fake)
    node = dcn.DepthCompletionNode(context=ctx, parameter_overrides=[
        Parameter("temporal", value=True), Parameter("temporal_ego_motion", value="tf"),
        Parameter("temporal_fixed_frame", value="odom")])
    try:
        K = Intrinsics(40.0, 40.0, 32.0, 24.0, 64, 48)  # noqa: N806
        rng = np.random.default_rng(0)
        outs = [DepthOutput(rng.uniform(4.0, 6.0, (48, 64)).astype(np.float32), None, K,
                            np.zeros((48, 64, 3), np.uint8)) for _ in range(2)]
        first, _ = node.apply_temporal(outs[0], node.temporal_frame(*_frame_messages(10.0)))
        second, reset = node.apply_temporal(outs[1], node.temporal_frame(*_frame_messages(10.1)))
        assert reset is None
        # the lookup: camera at the current stamp <- camera at the previous one, through odom
        assert fake.calls == [("cam", 10_100_000_000, "cam", 10_000_000_000, "odom")]
        reference = TemporalFilter(max_gap=0.5)
        reference(outs[0], "cam", 10.0)
        motion = None if fail else np.array([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, -0.5], [0, 0, 0, 1]], float)
        expected = reference(outs[1], "cam", 10.1, motion).output
        np.testing.assert_array_equal(second.depth, expected.depth)
        if fail:  # counted, and that frame assumed a static camera
            assert node.health.counters["tf_ego_motion_failures"] == 1
        else:
            assert "tf_ego_motion_failures" not in node.health.counters
            static = TemporalFilter(max_gap=0.5)
            static(outs[0], "cam", 10.0)
            assert not np.array_equal(second.depth, static(outs[1], "cam", 10.1).output.depth)
    finally:
        node.destroy_node()


def test_tf_ego_motion_without_tf2_and_lidar_odometry_without_lidar_are_refused(ctx, shared_data):
    import importlib.util

    from depth_diffusion_ros.nodes import depth_estimation_node as den

    if importlib.util.find_spec("tf2_ros") is None:
        with pytest.raises(ParameterError, match="'temporal_ego_motion' is tf but tf2_ros cannot be imported"):
            dcn.DepthCompletionNode(context=ctx, parameter_overrides=[
                Parameter("temporal", value=True), Parameter("temporal_ego_motion", value="tf")])
    with pytest.raises(ParameterError, match="lidar_odometry needs LiDAR scans: depth_estimation_node has none"):
        den.DepthEstimationNode(context=ctx, parameter_overrides=[
            Parameter("backend", value="row_median"),
            Parameter("model_path", value=str(den.ROW_MEDIAN_REFERENCE)),
            Parameter("temporal", value=True), Parameter("temporal_ego_motion", value="lidar_odometry")])


def test_temporal_prior_is_refused_without_temporal_or_a_model_that_takes_priors(ctx):
    with pytest.raises(ParameterError, match="'temporal_prior' needs 'temporal' true"):
        dcn.DepthCompletionNode(context=ctx, parameter_overrides=[Parameter("temporal_prior", value=True)])
    with pytest.raises(ParameterError, match="'temporal_prior' needs a DiffusionDepth completion model .* not backend "
                                             "'ip_basic'"):
        dcn.DepthCompletionNode(context=ctx, parameter_overrides=[
            Parameter("temporal", value=True), Parameter("temporal_prior", value=True)])
