"""TensorRT DiffusionDepth backend end to end against a FAKE TensorRT (test/fake_tensorrt.py).

TensorRT cannot run on the CPU-only CI machine. The fake builds "engines" that execute the
embedded ONNX graphs with ONNX Runtime on "device" memory that is host memory, so this test
checks our TensorRT code path — engine per graph, cache keyed by ONNX hash / precision /
version / GPU, device-resident DDIM loop with CUDA-graph replay, bindings, copies — and that it
gives the same depth as the ONNX Runtime backend — on the fake's TensorRT 10 and 11 API
generations. It says nothing about TensorRT's speed or its fp16 kernels (on 11 the fake runs the
fp16 ONNX copies in ONNX Runtime, so only the fp16 rounding of the graph is in the numbers); that
needs the tensorrt-marked test on a GPU machine.
"""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("onnx")

import fake_tensorrt  # noqa: E402
from depth_diffusion_ros.inference.backends import BackendError, make_completion_backend  # noqa: E402
from depth_diffusion_ros.inference.backends.onnxruntime_backend import OnnxRuntimeDiffusionDepthBackend  # noqa: E402
from depth_diffusion_ros.inference.backends.tensorrt_backend import TensorRTDiffusionDepthBackend  # noqa: E402
from runtime_fixtures import STEPS, build_small_export, complete, kitti_frame  # noqa: E402

pytestmark = pytest.mark.torch


@pytest.fixture(scope="module")
def export(tmp_path_factory, shared_data):
    import torch

    torch.set_num_threads(1)
    return build_small_export(tmp_path_factory.mktemp("trt"), shared_data)


@pytest.fixture
def fake_cuda():
    return fake_tensorrt.make_fake_cudart("NVIDIA Jetson AGX Orin (fake)")


def test_step_form_through_fake_tensorrt_equals_onnxruntime(export, shared_data, tmp_path, fake_cuda):
    _, _, onnx_dir = export
    rgb, sparse = kitti_frame(shared_data, 96, 300)
    cache = tmp_path / "engines"
    n0 = fake_tensorrt.BUILD_COUNT
    trt_b = TensorRTDiffusionDepthBackend(onnx_dir, num_inference_steps=5, ensemble_size=2, engine_cache_dir=cache,
                                      precision="fp16", trt=fake_tensorrt, cuda=fake_cuda)
    assert trt_b.form == "step" and fake_tensorrt.BUILD_COUNT == n0 + 3
    engines = sorted(p.name for p in cache.glob("*.engine"))
    assert [e.split(".")[0] for e in engines] == ["decoder", "encoder", "step"]
    assert all(".fp16.trt10-99-0-fake.nvidia-jetson-agx-orin-fake.engine" in e for e in engines)
    got = complete(trt_b, rgb, sparse)
    ref = complete(OnnxRuntimeDiffusionDepthBackend(onnx_dir, num_inference_steps=5, ensemble_size=2), rgb, sparse)
    np.testing.assert_allclose(got.depth, ref.depth, atol=1e-4, rtol=1e-5)
    np.testing.assert_allclose(got.uncertainty, ref.uncertainty, atol=1e-4)
    # member 1: a warm-up step, capture, 4 replays; member 2 replays the same graph 5 times
    assert trt_b.loop.graph_launches == 4 + 5 and fake_cuda.stats["captures"] == 1
    # a second node start finds every engine in the cache
    again = TensorRTDiffusionDepthBackend(onnx_dir, num_inference_steps=5, engine_cache_dir=cache,
                                      trt=fake_tensorrt, cuda=fake_cuda)
    assert fake_tensorrt.BUILD_COUNT == n0 + 3 and not any(r.built for r in again.engine_results)
    # the options the completion node passes for backend "tensorrt" (+ the test doubles)
    b = make_completion_backend("tensorrt", model_path=str(onnx_dir), num_inference_steps=STEPS, ensemble_size=1,
                                engine_cache_dir=str(cache), precision="fp16", seed=0,
                                trt=fake_tensorrt, cuda=fake_cuda)
    assert complete(b, rgb, sparse).depth.shape == (96, 300)


def test_unrolled_form_and_rebuild_on_changed_onnx(export, shared_data, tmp_path, fake_cuda):
    _, _, onnx_dir = export
    rgb, sparse = kitti_frame(shared_data, 96, 320)
    d = tmp_path / "onnx"
    shutil.copytree(onnx_dir, d)
    cache = tmp_path / "engines"
    b = TensorRTDiffusionDepthBackend(d, num_inference_steps=STEPS, export_form="unrolled", engine_cache_dir=cache,
                                  precision="fp32", trt=fake_tensorrt, cuda=fake_cuda, use_cuda_graph=False)
    assert b.form == "unrolled"
    ref = complete(OnnxRuntimeDiffusionDepthBackend(d, num_inference_steps=STEPS, export_form="unrolled"), rgb, sparse)
    np.testing.assert_allclose(complete(b, rgb, sparse).depth, ref.depth, atol=1e-4, rtol=1e-5)
    from depth_diffusion_ros.export.onnx_export import write_metadata

    write_metadata(d / f"sampler_{STEPS}steps_e1.onnx", {"note": "re-exported"})  # new bytes, new hash
    again = TensorRTDiffusionDepthBackend(d, num_inference_steps=STEPS, export_form="unrolled", engine_cache_dir=cache,
                                      precision="fp32", trt=fake_tensorrt, cuda=fake_cuda)
    assert again.engine_results[0].built and len(list(cache.glob("*.engine"))) == 2
    forced = TensorRTDiffusionDepthBackend(d, num_inference_steps=STEPS, export_form="unrolled", engine_cache_dir=cache,
                                       precision="fp32", force_engine_update=True, trt=fake_tensorrt, cuda=fake_cuda)
    assert forced.engine_results[0].reason == "force_engine_update is set"
    side = json.loads(forced.engine_results[0].sidecar_path.read_text())
    assert side["precision"] == "fp32" and side["gpu_name"] == "NVIDIA Jetson AGX Orin (fake)"


def test_clear_errors_without_tensorrt_or_with_bad_files(export, tmp_path, fake_cuda, monkeypatch):
    _, _, onnx_dir = export
    import sys

    monkeypatch.setitem(sys.modules, "tensorrt", None)
    with pytest.raises(BackendError, match="tensorrt backend is not available here: TensorRT is not installed"):
        TensorRTDiffusionDepthBackend(onnx_dir, cuda=fake_cuda)
    with pytest.raises(BackendError, match="model_path not found"):
        TensorRTDiffusionDepthBackend(tmp_path / "none", trt=fake_tensorrt, cuda=fake_cuda)
    bad = tmp_path / "bad"
    shutil.copytree(onnx_dir, bad)
    (bad / "decoder.onnx").write_bytes(b"\x08\x07garbage")
    with pytest.raises(BackendError, match=r"decoder.onnx: not a readable ONNX model"):
        TensorRTDiffusionDepthBackend(bad, engine_cache_dir=tmp_path / "c", trt=fake_tensorrt, cuda=fake_cuda)


@pytest.mark.parametrize("generation", [10, 11])
def test_backend_runs_on_both_api_generations(export, shared_data, tmp_path, fake_cuda, generation):
    """fp16 on the FAKE TensorRT 10 (weak typing: FP16 flag, the fp32 graphs) and 11 (strong typing:
    the fp16 copies, made once in the engine cache; the ONNX folder is left alone)."""
    _, _, onnx_dir = export
    trt = fake_tensorrt.make_fake_tensorrt(generation)
    rgb, sparse = kitti_frame(shared_data, 96, 320)
    before = sorted(p.name for p in onnx_dir.iterdir())
    cache = tmp_path / "engines"
    b = TensorRTDiffusionDepthBackend(onnx_dir, num_inference_steps=STEPS, engine_cache_dir=cache, precision="fp16",
                                      trt=trt, cuda=fake_cuda)
    engines = sorted(p.name for p in cache.glob("*.engine"))
    assert [e.split(".")[0] for e in engines] == ["decoder", "encoder", "step"]
    assert all(f".fp16.trt{generation}-99-0-fake." in e for e in engines)
    headers = [trt.Runtime(None).deserialize_cuda_engine(r.engine_path.read_bytes()).header for r in b.engine_results]
    if generation == 10:
        assert all(h["flags"] == ["FP16"] and not h["strongly_typed"] for h in headers)
        assert all(r.onnx_path.parent == onnx_dir for r in b.engine_results)
    else:
        assert all(h["flags"] == [] and h["strongly_typed"] and h["onnx_float_types"] == ["HALF"] for h in headers)
        assert sorted(r.onnx_path.name.split(".")[0] for r in b.engine_results) == ["decoder", "encoder", "step"]
        assert all(r.onnx_path.parent == cache and r.onnx_path.name.endswith(".fp16.onnx") for r in b.engine_results)
    assert sorted(p.name for p in onnx_dir.iterdir()) == before
    got = complete(b, rgb, sparse)
    ref = complete(OnnxRuntimeDiffusionDepthBackend(onnx_dir, num_inference_steps=STEPS), rgb, sparse)
    err = np.abs(got.depth - ref.depth)
    if generation == 10:  # the fake runs the fp32 graphs (TensorRT's own fp16 kernels are not modelled)
        np.testing.assert_allclose(got.depth, ref.depth, atol=1e-4, rtol=1e-5)
    else:  # the fp16 graphs really run: fp16 rounding of weights and activations
        assert err.max() < 0.03 and err.mean() < 0.006  # measured 8.3 mm and 2.0 mm (2-core CI CPU, ORT 1.31)
    # a second start on 11 converts nothing and builds nothing
    n0 = fake_tensorrt.BUILD_COUNT
    again = TensorRTDiffusionDepthBackend(onnx_dir, num_inference_steps=STEPS, engine_cache_dir=cache,
                                          precision="fp16", trt=trt, cuda=fake_cuda)
    assert fake_tensorrt.BUILD_COUNT == n0 and not any(r.built for r in again.engine_results)


def test_int8_on_tensorrt_11_is_refused_at_start(export, tmp_path, fake_cuda):
    _, _, onnx_dir = export
    with pytest.raises(BackendError, match="precision 'int8' needs TensorRT 10: .* Q/DQ nodes"):
        TensorRTDiffusionDepthBackend(onnx_dir, engine_cache_dir=tmp_path, precision="int8",
                                      trt=fake_tensorrt.make_fake_tensorrt(11), cuda=fake_cuda)


def test_densedepth_engine_through_fake_tensorrt_equals_onnxruntime(tmp_path, shared_data, fake_cuda):
    """FAKE TensorRT: a DenseDepth export (one graph) through backend "tensorrt" of the estimation
    node (dispatched by the model family): one engine, cached on the next start, the same depth
    as ONNX Runtime through the estimation pipeline on the real KITTI frame; ensemble_size 2 refused."""
    from depth_diffusion_ros.export.frames import load_kitti_frame
    from depth_diffusion_ros.geometry.intrinsics import Intrinsics
    from depth_diffusion_ros.inference.backends import make_estimation_backend
    from depth_diffusion_ros.inference.backends.tensorrt_backend import TensorRTDenseDepthBackend
    from depth_diffusion_ros.inference.pipelines import EstimationPipeline
    from runtime_fixtures import build_small_densedepth_export

    _, _, onnx_dir = build_small_densedepth_export(tmp_path / "densedepth", shared_data)
    rgb, _ = load_kitti_frame(shared_data)
    intr = Intrinsics(fx=721.5377, fy=721.5377, cx=609.5593, cy=172.854, width=1242, height=375)
    cache = tmp_path / "engines"
    n0 = fake_tensorrt.BUILD_COUNT
    options = dict(model_path=str(onnx_dir), ensemble_size=1, seed=0, engine_cache_dir=str(cache), precision="fp16",
                   trt=fake_tensorrt, cuda=fake_cuda)
    b = make_estimation_backend("tensorrt", **options)
    assert isinstance(b, TensorRTDenseDepthBackend) and fake_tensorrt.BUILD_COUNT == n0 + 1
    assert [p.name.split(".")[0] for p in cache.glob("*.engine")] == ["densedepth"]
    assert b.input_hw == (192, 640) and b.canonical_focal == pytest.approx(360.76885)
    got = EstimationPipeline(b, resize_back=True)(rgb, intr)
    ref = EstimationPipeline(make_estimation_backend("onnxruntime", model_path=str(onnx_dir)), resize_back=True)(rgb, intr)
    assert got.depth.shape == (375, 1242) and got.uncertainty is None
    np.testing.assert_allclose(got.depth, ref.depth, atol=1e-4, rtol=1e-5)  # the fake runs the fp32 graph
    again = make_estimation_backend("tensorrt", **options)
    assert fake_tensorrt.BUILD_COUNT == n0 + 1 and not any(r.built for r in again.engine_results)
    with pytest.raises(BackendError, match="ensemble_size=2 is not possible"):
        make_estimation_backend("tensorrt", **dict(options, ensemble_size=2))
