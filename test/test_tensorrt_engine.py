"""TensorRT engine builder, cache and run-time logic, against a FAKE TensorRT.

TensorRT and CUDA cannot run on the CPU-only CI machine. ``fake_tensorrt`` (test/fake_tensorrt.py)
is a test double with TensorRT 10's API shapes (test_tensorrt_api_generations.py also plays 11):
its "engine" embeds the ONNX bytes and executes them with ONNX Runtime, its "device memory" is
host memory. These tests therefore check our logic (cache keys, rebuild decisions, builder
flags, profiles, binding shapes, copies, CUDA graph replay, error messages), not TensorRT. The real-engine test at the bottom is marked
``tensorrt`` and runs only where ``import tensorrt`` works.
"""
from __future__ import annotations

import json
import sys

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper  # noqa: E402

import fake_tensorrt  # noqa: E402  (test/ is on sys.path)
from depth_diffusion_ros.runtime import tensorrt_engine as te  # noqa: E402
from depth_diffusion_ros.runtime.cuda_runtime import CudaError, CudaRuntime  # noqa: E402
from depth_diffusion_ros.runtime.errors import BackendError  # noqa: E402
from depth_diffusion_ros.runtime.tensorrt_int8 import make_int8_calibrator  # noqa: E402
from depth_diffusion_ros.runtime.tensorrt_graph import (  # noqa: E402
    DeviceStepLoop,
    TensorRTGraph,
    TensorSpec,
    resolve_input_shapes,
)


def _affine_onnx(path, dynamic=False, scale=2.0):
    """y = x * scale + 1 on (1,2,4,4) (batch dynamic if asked): a real ONNX file."""
    shape = ["batch", 2, 4, 4] if dynamic else [1, 2, 4, 4]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)
    s = helper.make_tensor("s", TensorProto.FLOAT, [], [scale])
    one = helper.make_tensor("one", TensorProto.FLOAT, [], [1.0])
    g = helper.make_graph([helper.make_node("Mul", ["x", "s"], ["m"]), helper.make_node("Add", ["m", "one"], ["y"])],
                          "affine", [x], [y], [s, one])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.save(m, str(path))
    return path


def _step_onnx(path):
    """A 'step' graph: prev_latents = latents * 0.5 + cond + timestep - prev_timestep (real ONNX)."""
    lat = helper.make_tensor_value_info("latents", TensorProto.FLOAT, [1, 2, 3, 3])
    cond = helper.make_tensor_value_info("cond", TensorProto.FLOAT, [1, 2, 3, 3])
    t = helper.make_tensor_value_info("timestep", TensorProto.INT64, [1])
    p = helper.make_tensor_value_info("prev_timestep", TensorProto.INT64, [1])
    out = helper.make_tensor_value_info("prev_latents", TensorProto.FLOAT, [1, 2, 3, 3])
    half = helper.make_tensor("half", TensorProto.FLOAT, [], [0.5])
    nodes = [
        helper.make_node("Sub", ["timestep", "prev_timestep"], ["dt"]),
        helper.make_node("Cast", ["dt"], ["dtf"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["latents", "half"], ["a"]),
        helper.make_node("Add", ["a", "cond"], ["b"]),
        helper.make_node("Add", ["b", "dtf"], ["prev_latents"]),
    ]
    g = helper.make_graph(nodes, "step", [lat, cond, t, p], [out], [half])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.save(m, str(path))
    return path


@pytest.fixture
def cuda():
    return CudaRuntime(fake_tensorrt.make_fake_cudart("NVIDIA Orin (fake)"))


def _build(tmp_path, onnx_path, **kw):
    kw.setdefault("trt", fake_tensorrt)
    kw.setdefault("gpu_name", "NVIDIA Orin (fake)")
    return te.get_or_build_engine(onnx_path, tmp_path / "cache", **kw)


def test_engine_key_file_name_and_sidecar(tmp_path):
    onnx_path = _affine_onnx(tmp_path / "model.onnx")
    res = _build(tmp_path, onnx_path, precision="fp16")
    assert res.built and res.reason.startswith("no engine file")
    sha = te.file_sha256(onnx_path)
    name = res.engine_path.name
    assert name.startswith(f"model.{sha[:16]}.fp16.trt10-99-0-fake.nvidia-orin-fake")
    assert name.endswith(".engine")
    side = json.loads(res.sidecar_path.read_text())
    assert side["onnx_sha256"] == sha and side["precision"] == "fp16"
    assert side["tensorrt_version"] == fake_tensorrt.FAKE_VERSION and side["gpu_name"] == "NVIDIA Orin (fake)"


def test_cache_reuse_and_every_rebuild_reason(tmp_path):
    onnx_path = _affine_onnx(tmp_path / "model.onnx")
    n0 = fake_tensorrt.BUILD_COUNT
    first = _build(tmp_path, onnx_path)
    again = _build(tmp_path, onnx_path)
    assert fake_tensorrt.BUILD_COUNT == n0 + 1
    assert not again.built and again.reason is None and again.engine_path == first.engine_path

    forced = _build(tmp_path, onnx_path, force_engine_update=True)
    assert forced.built and forced.reason == "force_engine_update is set"

    other_gpu = _build(tmp_path, onnx_path, gpu_name="NVIDIA H100")
    assert other_gpu.built and other_gpu.engine_path != first.engine_path

    fp32 = _build(tmp_path, onnx_path, precision="fp32")
    assert fp32.built and ".fp32." in fp32.engine_path.name

    # a sidecar that disagrees with its engine name (e.g. copied by hand) is not trusted
    side = json.loads(first.sidecar_path.read_text())
    side["tensorrt_version"] = "8.6.1"
    first.sidecar_path.write_text(json.dumps(side))
    stale = _build(tmp_path, onnx_path)
    assert stale.built and stale.reason == f"tensorrt_version differs: cached '8.6.1', now '{fake_tensorrt.FAKE_VERSION}'"

    first.sidecar_path.write_text("{not json")
    assert "unreadable" in _build(tmp_path, onnx_path).reason
    first.sidecar_path.unlink()
    assert _build(tmp_path, onnx_path).reason.startswith("no sidecar")

    # a changed ONNX file gets a new key (hash in the file name), so the old engine is not used
    _affine_onnx(onnx_path, scale=3.0)
    changed = _build(tmp_path, onnx_path)
    assert changed.built and changed.engine_path != first.engine_path


def test_rebuild_reason_plain_function(tmp_path):
    key = te.EngineKey("ab" * 32, "fp16", "10.3.0", "Orin")
    eng, side = te.engine_paths(tmp_path, "m.onnx", key)
    eng.write_bytes(b"x")
    side.write_text(json.dumps(dict(key.to_dict(), gpu_name="Xavier")))
    assert te.rebuild_reason(eng, side, key) == "gpu_name differs: cached 'Xavier', now 'Orin'"
    side.write_text(json.dumps(key.to_dict()))
    assert te.rebuild_reason(eng, side, key) is None
    eng.write_bytes(b"")
    assert te.rebuild_reason(eng, side, key).startswith("no engine file")
    with pytest.raises(ValueError, match="precision"):
        te.EngineKey("ab", "bf8", "10", "x")


def test_builder_flags_workspace_dla_and_int8_calibration(tmp_path, cuda):
    onnx_path = _affine_onnx(tmp_path / "m.onnx")
    data = te.build_serialized_engine(fake_tensorrt, onnx_path, "fp16", workspace_bytes=256 << 20, dla_core=1)
    engine = fake_tensorrt.Runtime(None).deserialize_cuda_engine(data)
    h = engine.header
    assert h["flags"] == ["FP16", "GPU_FALLBACK"] and h["workspace"] == 256 << 20
    assert h["device"] == "DLA" and h["dla_core"] == 1
    # TensorRT 10: today's weakly typed network (create_network(0)) from the fp32 graph
    assert h["network_flags"] == 0 and not h["strongly_typed"] and h["onnx_float_types"] == ["FLOAT"]

    batches = [{"x": np.full((1, 2, 4, 4), i, np.float32)} for i in range(3)]
    cal = make_int8_calibrator(fake_tensorrt, batches, tmp_path / "calib.cache", cuda)
    data = te.build_serialized_engine(fake_tensorrt, onnx_path, "int8", int8_calibrator=cal)
    assert fake_tensorrt.Runtime(None).deserialize_cuda_engine(data).header["flags"] == ["FP16", "INT8"]
    assert (tmp_path / "calib.cache").read_bytes() == b"fake-calibration-table"


def test_profiles_and_parser_errors(tmp_path):
    dyn = _affine_onnx(tmp_path / "dyn.onnx", dynamic=True)
    with pytest.raises(te.EngineBuildError, match=r"input 'x' has dynamic shape \(-1, 2, 4, 4\)"):
        te.build_serialized_engine(fake_tensorrt, dyn, "fp32")
    data = te.build_serialized_engine(fake_tensorrt, dyn, "fp32",
                                      profile_ranges={"x": [(1, 2, 4, 4), (2, 2, 4, 4), (4, 2, 4, 4)]})
    assert fake_tensorrt.Runtime(None).deserialize_cuda_engine(data).header["profile"]["x"][2] == [4, 2, 4, 4]
    with pytest.raises(te.EngineBuildError, match="axis 1 is 3, network fixes it to 2"):
        te.optimization_profiles({"x": (-1, 2, 4, 4)}, {"x": [(1, 3, 4, 4)] * 3})
    with pytest.raises(te.EngineBuildError, match="min <= opt <= max"):
        te.optimization_profiles({"x": (-1, 2)}, {"x": [(4, 2), (1, 2), (8, 2)]})
    assert te.optimization_profiles({"x": (1, 2)}) == {}
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"garbage")
    with pytest.raises(te.EngineBuildError, match=r"bad.onnx: TensorRT's ONNX parser failed"):
        te.build_serialized_engine(fake_tensorrt, bad)
    with pytest.raises(te.EngineBuildError, match="ONNX file not found"):
        te.get_or_build_engine(tmp_path / "nope.onnx", tmp_path, trt=fake_tensorrt, gpu_name="x")


def test_graph_run_static_and_dynamic_shapes(tmp_path, cuda):
    res = _build(tmp_path, _affine_onnx(tmp_path / "m.onnx"))
    g = TensorRTGraph(res.engine_path, fake_tensorrt, cuda)
    x = np.arange(32, dtype=np.float32).reshape(1, 2, 4, 4)
    np.testing.assert_allclose(g.run({"x": x})["y"], x * 2 + 1)
    with pytest.raises(BackendError, match=r"input 'x' has shape \(1, 2, 4, 5\), the engine wants \(1, 2, 4, 4\)"):
        g.run({"x": np.zeros((1, 2, 4, 5), np.float32)})
    with pytest.raises(BackendError, match="is float64, the engine wants float32"):
        g.run({"x": x.astype(np.float64)})

    dres = te.get_or_build_engine(_affine_onnx(tmp_path / "d.onnx", dynamic=True), tmp_path / "c2",
                                  trt=fake_tensorrt, gpu_name="g",
                                  profile_ranges={"x": [(1, 2, 4, 4), (2, 2, 4, 4), (3, 2, 4, 4)]})
    d = TensorRTGraph(dres.engine_path, fake_tensorrt, cuda)
    x3 = np.ones((3, 2, 4, 4), np.float32)
    assert d.run({"x": x3})["y"].shape == (3, 2, 4, 4)
    np.testing.assert_allclose(d.run({"x": x[:1]})["y"], x * 2 + 1)  # smaller after bigger: reuses buffers
    with pytest.raises(BackendError, match=r"outside the engine's optimisation profile"):
        d.run({"x": np.ones((4, 2, 4, 4), np.float32)})


def test_resolve_input_shapes_plain():
    specs = {"a": TensorSpec("a", (-1, 3), np.dtype(np.float32), True, ((1, 3), (2, 3), (4, 3))),
             "o": TensorSpec("o", (-1, 3), np.dtype(np.float32), False)}
    assert resolve_input_shapes(specs, {"a": np.zeros((2, 3), np.float32)}, "e.engine") == {"a": (2, 3)}
    with pytest.raises(BackendError, match=r"e.engine: input 'a' not given"):
        resolve_input_shapes(specs, {}, "e.engine")


def test_engine_from_other_tensorrt_version_is_a_clear_error(tmp_path, cuda):
    res = _build(tmp_path, _affine_onnx(tmp_path / "m.onnx"))
    blob = res.engine_path.read_bytes().replace(fake_tensorrt.FAKE_VERSION.encode(), b"10.00.0-fake")
    res.engine_path.write_bytes(blob)
    with pytest.raises(BackendError, match="cannot deserialize this engine .* force_engine_update"):
        TensorRTGraph(res.engine_path, fake_tensorrt, cuda)
    with pytest.raises(BackendError, match="engine file not found"):
        TensorRTGraph(tmp_path / "none.engine", fake_tensorrt, cuda)


@pytest.mark.parametrize("use_graph", [False, True])
def test_device_step_loop_matches_host_loop_and_replays_cuda_graph(tmp_path, cuda, use_graph):
    res = _build(tmp_path, _step_onnx(tmp_path / "step.onnx"))
    g = TensorRTGraph(res.engine_path, fake_tensorrt, cuda)
    rng = np.random.default_rng(0)
    lat0 = rng.standard_normal((1, 2, 3, 3)).astype(np.float32)
    cond = rng.standard_normal((1, 2, 3, 3)).astype(np.float32)
    pairs = [(900, 850), (850, 700), (700, 100), (100, -1)]
    expected = lat0.copy()
    for t, p in pairs:
        expected = expected * 0.5 + cond + np.float32(t - p)
    loop = DeviceStepLoop(g, use_cuda_graph=use_graph)
    np.testing.assert_allclose(loop(lat0, cond, pairs), expected, rtol=1e-6)
    stats = cuda.cudart.stats
    assert loop.graph_launches == (len(pairs) - 1 if use_graph else 0)  # step 0 warms up
    assert stats["captures"] == (1 if use_graph else 0)
    # a second frame reuses the captured graph (no new capture) and stays correct
    np.testing.assert_allclose(loop(lat0 * 2, cond, pairs[:2]), ((lat0 * 2) * 0.5 + cond + 50) * 0.5 + cond + 150, rtol=1e-6)
    assert stats["captures"] == (1 if use_graph else 0)


def test_cuda_runtime_checks_errors():
    cuda = CudaRuntime(fake_tensorrt.make_fake_cudart())
    with pytest.raises(CudaError, match="cudaFree failed"):
        cuda.free(12345)
    assert cuda.device_name(0) == "Fake GPU (test double)"


def test_load_tensorrt_message_when_missing(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    with pytest.raises(ImportError, match="TensorRT is not installed"):
        te.load_tensorrt()


@pytest.mark.tensorrt
def test_real_tensorrt_engine_builds_and_runs(tmp_path):
    """Needs a real TensorRT + GPU: skipped on CI (no GPU there)."""
    pytest.importorskip("tensorrt")
    pytest.importorskip("cuda")
    res = te.get_or_build_engine(_affine_onnx(tmp_path / "m.onnx"), tmp_path / "cache", precision="fp32")
    g = TensorRTGraph(res.engine_path, te.load_tensorrt(), CudaRuntime())
    x = np.arange(32, dtype=np.float32).reshape(1, 2, 4, 4)
    np.testing.assert_allclose(g.run({"x": x})["y"], x * 2 + 1, rtol=1e-5)
