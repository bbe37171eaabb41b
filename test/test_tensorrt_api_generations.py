"""TensorRT 10 (weak typing, precision builder flags) and TensorRT 11 (strongly typed only) builds,
against the FAKE TensorRT of test/fake_tensorrt.py playing either generation.

The fake is written from NVIDIA's API documentation (see its docstring): the 11 fake has no
``BuilderFlag.FP16`` / ``INT8``, no ``int8_calibrator`` and no ``platform_has_fast_fp16``, so a
TensorRT-10-style build fails on it with AttributeError as on the real module. Its engines run
the very ONNX graph they were built from (ONNX Runtime, CPU), so an fp16 engine on 11 really
runs the fp16 copy. Nothing here says anything about TensorRT's speed or fp16 kernels.
"""
from __future__ import annotations

import json
import logging
import types

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxconverter_common")

import fake_tensorrt  # noqa: E402
from depth_diffusion_ros.runtime import onnx_fp16  # noqa: E402
from depth_diffusion_ros.runtime import tensorrt_engine as te  # noqa: E402
from depth_diffusion_ros.runtime.cuda_runtime import CudaRuntime  # noqa: E402
from depth_diffusion_ros.runtime.metadata import file_sha256, read_metadata  # noqa: E402
from depth_diffusion_ros.runtime.tensorrt_graph import TensorRTGraph  # noqa: E402
from test_tensorrt_engine import _affine_onnx  # noqa: E402

GPU = "NVIDIA Orin (fake)"


@pytest.fixture(params=[10, 11], ids=["trt10", "trt11"])
def trt(request):
    return fake_tensorrt.make_fake_tensorrt(request.param)


def _header(trt, engine_path):
    return trt.Runtime(None).deserialize_cuda_engine(engine_path.read_bytes()).header


def _build(trt, tmp_path, onnx_path, **kw):
    return te.get_or_build_engine(onnx_path, tmp_path / "cache", trt=trt, gpu_name=GPU, **kw)


def test_generation_from_version_and_from_the_api():
    fake10, fake11 = fake_tensorrt.make_fake_tensorrt(10), fake_tensorrt.make_fake_tensorrt(11)
    assert te.api_generation(fake10) == 10 and te.api_generation(fake11) == 11
    # the version decides where it says 11 or later; a missing FP16 flag decides on its own
    assert te.api_generation(types.SimpleNamespace(__version__="11.0.0", BuilderFlag=fake10.BuilderFlag)) == 11
    assert te.api_generation(types.SimpleNamespace(__version__="12.1.0", BuilderFlag=fake10.BuilderFlag)) == 11
    assert te.api_generation(types.SimpleNamespace(__version__="10.7.0", BuilderFlag=fake11.BuilderFlag)) == 11
    assert te.api_generation(types.SimpleNamespace(__version__="dev", BuilderFlag=fake10.BuilderFlag)) == 10
    with pytest.raises(te.EngineBuildError, match="TensorRT 8.6.1 is not supported: use TensorRT 10 or 11"):
        te.api_generation(types.SimpleNamespace(__version__="8.6.1", BuilderFlag=fake10.BuilderFlag))
    # network flags: 0 on 10; 11's STRONGLY_TYPED bit is TensorRT's own value (0 there, 1 on 10)
    assert te.network_creation_flags(fake10, 10) == 0
    assert te.network_creation_flags(fake11, 11) == 1 << 0
    assert te.network_creation_flags(fake10, 11) == 1 << 1
    later = types.SimpleNamespace(NetworkDefinitionCreationFlag=types.SimpleNamespace())  # the flag dropped
    assert te.network_creation_flags(later, 11) == 0
    assert te.precision_builder_flags(fake10, 10, "int8") == [fake10.BuilderFlag.FP16, fake10.BuilderFlag.INT8]
    assert te.precision_builder_flags(fake10, 10, "fp32") == []
    assert te.precision_builder_flags(fake11, 11, "fp16") == []
    with pytest.raises(te.EngineBuildError, match="precision must be one of"):
        te.precision_builder_flags(fake11, 11, "bf16")


def test_the_11_fake_refuses_the_weak_typing_api_like_the_docs_say():
    fake11 = fake_tensorrt.make_fake_tensorrt(11)
    with pytest.raises(AttributeError):
        fake11.BuilderFlag.FP16
    with pytest.raises(AttributeError):
        fake11.BuilderFlag.INT8
    builder = fake11.Builder(fake11.Logger())
    with pytest.raises(AttributeError):
        builder.platform_has_fast_fp16
    with pytest.raises(AttributeError, match="int8_calibrator"):
        builder.create_builder_config().int8_calibrator = object()
    assert builder.create_network(0).strongly_typed  # every network is strongly typed on 11
    fake10 = fake_tensorrt.make_fake_tensorrt(10)
    b10 = fake10.Builder(fake10.Logger())
    assert not b10.create_network(0).strongly_typed and b10.create_network(1 << 1).strongly_typed


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_network_and_config_flags_and_the_graph_each_generation_builds(trt, tmp_path, precision):
    onnx_path = _affine_onnx(tmp_path / "m.onnx")
    res = _build(trt, tmp_path, onnx_path, precision=precision, dla_core=0)
    h = _header(trt, res.engine_path)
    strong = te.api_generation(trt) == 11
    assert h["strongly_typed"] is strong
    assert h["network_flags"] == (1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED) if strong else 0)
    want_flags = ["GPU_FALLBACK"] + (["FP16"] if precision == "fp16" and not strong else [])
    assert h["flags"] == sorted(want_flags) and h["device"] == "DLA"
    fp16_graph = strong and precision == "fp16"
    assert h["onnx_float_types"] == (["HALF"] if fp16_graph else ["FLOAT"])
    # the key hashes the file the network was parsed from; the sidecar names it
    assert res.onnx_path == (tmp_path / "cache" / f"m.{file_sha256(onnx_path)[:16]}.fp16.onnx" if fp16_graph
                             else onnx_path)
    assert res.key.onnx_sha256 == file_sha256(res.onnx_path)
    assert json.loads(res.sidecar_path.read_text())["onnx_path"] == str(res.onnx_path.resolve())
    assert res.engine_path.name.startswith(f"m.{res.key.onnx_sha256[:16]}.{precision}.trt{te._slug(trt.__version__)}")
    # the engine runs (float32 in and out on both generations: keep_io_types)
    g = TensorRTGraph(res.engine_path, trt, CudaRuntime(fake_tensorrt.make_fake_cudart(GPU)))
    x = np.linspace(-3, 3, 32, dtype=np.float32).reshape(1, 2, 4, 4)
    y = g.run({"x": x})["y"]
    assert y.dtype == np.float32
    np.testing.assert_allclose(y, x * 2 + 1, atol=5e-3 if fp16_graph else 1e-6)


def test_fp16_on_11_uses_the_fp16_copy_made_once_and_a_matching_export_copy(tmp_path, caplog):
    fake11 = fake_tensorrt.make_fake_tensorrt(11)
    model_dir = tmp_path / "onnx"
    model_dir.mkdir()
    onnx_path = _affine_onnx(model_dir / "m.onnx")
    first = _build(fake11, tmp_path, onnx_path, precision="fp16")
    assert sorted(p.name for p in model_dir.iterdir()) == ["m.onnx"]  # the model folder is not written to
    made = first.onnx_path.stat().st_mtime_ns
    again = _build(fake11, tmp_path, onnx_path, precision="fp16")
    assert not again.built and again.onnx_path == first.onnx_path and first.onnx_path.stat().st_mtime_ns == made

    # `export --fp16-onnx` wrote a copy beside the graph: that one is used
    beside = onnx_fp16.write_fp16_onnx(onnx_path)
    assert beside == model_dir / "m.fp16.onnx"
    assert _build(fake11, tmp_path, onnx_path, precision="fp16").onnx_path == beside

    # a re-export without --fp16-onnx leaves a stale copy: it is not used, a new one is made
    _affine_onnx(onnx_path, scale=3.0)
    with caplog.at_level(logging.WARNING, logger="depth_diffusion_ros.runtime.onnx_fp16"):
        res = _build(fake11, tmp_path, onnx_path, precision="fp16")
    assert "was made from other bytes than m.onnx" in caplog.text
    assert res.built and res.onnx_path.parent == tmp_path / "cache"
    assert read_metadata(res.onnx_path)[onnx_fp16.SOURCE_SHA_KEY] == file_sha256(onnx_path)
    g = TensorRTGraph(res.engine_path, fake11, CudaRuntime(fake_tensorrt.make_fake_cudart(GPU)))
    np.testing.assert_allclose(g.run({"x": np.ones((1, 2, 4, 4), np.float32)})["y"], 4.0, atol=5e-3)

    # the low-level builder does not quietly build an fp32 engine for an fp16 request
    with pytest.raises(te.EngineBuildError, match="builds fp16 from an fp16 graph .* this one is fp32"):
        te.build_serialized_engine(fake11, onnx_path, "fp16")


def test_int8_on_11_is_a_clear_error_before_any_work(tmp_path):
    fake11 = fake_tensorrt.make_fake_tensorrt(11)
    onnx_path = _affine_onnx(tmp_path / "m.onnx")
    n0 = fake_tensorrt.BUILD_COUNT
    with pytest.raises(te.EngineBuildError, match=r"precision 'int8' needs TensorRT 10: TensorRT 11.99.0-fake "
                                                  r"removed BuilderFlag.INT8 .* Q/DQ nodes .* precision 'fp32'"):
        _build(fake11, tmp_path, onnx_path, precision="int8")
    with pytest.raises(te.EngineBuildError, match="precision 'int8' needs TensorRT 10"):
        te.build_serialized_engine(fake11, onnx_path, "int8")
    assert fake_tensorrt.BUILD_COUNT == n0 and not (tmp_path / "cache").exists()


def test_cache_keys_and_engines_differ_between_generations(tmp_path):
    fake10, fake11 = fake_tensorrt.make_fake_tensorrt(10), fake_tensorrt.make_fake_tensorrt(11)
    onnx_path = _affine_onnx(tmp_path / "m.onnx")
    for precision in ("fp32", "fp16"):
        r10 = _build(fake10, tmp_path, onnx_path, precision=precision)
        r11 = _build(fake11, tmp_path, onnx_path, precision=precision)
        assert r10.built and r11.built and r10.engine_path != r11.engine_path
        assert r10.key.tensorrt_version != r11.key.tensorrt_version
        assert (r10.key.onnx_sha256 == r11.key.onnx_sha256) is (precision == "fp32")  # fp16 on 11: the copy
        # neither generation takes the other's engine
        assert fake11.Runtime(None).deserialize_cuda_engine(r10.engine_path.read_bytes()) is None
        assert fake10.Runtime(None).deserialize_cuda_engine(r11.engine_path.read_bytes()) is None
    assert len(list((tmp_path / "cache").glob("*.engine"))) == 4


def test_missing_converter_on_11_names_both_ways_out(tmp_path, monkeypatch):
    import sys

    fake11 = fake_tensorrt.make_fake_tensorrt(11)
    onnx_path = _affine_onnx(tmp_path / "m.onnx")
    monkeypatch.setitem(sys.modules, "onnxconverter_common", None)
    with pytest.raises(te.EngineBuildError, match=r"fp16 on TensorRT 11.99.0-fake needs an fp16 graph: .*pip install "
                                                  r"onnx onnxconverter-common.*export --fp16-onnx"):
        _build(fake11, tmp_path, onnx_path, precision="fp16")
    # fp32 needs no converter; TensorRT 10's fp16 needs none either
    assert _build(fake11, tmp_path, onnx_path, precision="fp32").built
    assert _build(fake_tensorrt.make_fake_tensorrt(10), tmp_path, onnx_path, precision="fp16").built
