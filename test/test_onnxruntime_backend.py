"""ONNX Runtime DiffusionDepth backend on a real KITTI frame (through the pipelines), against torch."""
from __future__ import annotations

import logging
import shutil

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("onnx")

from depth_diffusion_ros.inference.backends import BackendError, make_completion_backend  # noqa: E402
from depth_diffusion_ros.inference.backends.onnxruntime_backend import OnnxRuntimeDiffusionDepthBackend  # noqa: E402
from depth_diffusion_ros.inference.backends.torch_backend import TorchDiffusionDepthBackend  # noqa: E402
from depth_diffusion_ros.inference.errors import FrameError  # noqa: E402
from depth_diffusion_ros.inference.pipelines import EstimationPipeline  # noqa: E402
from depth_diffusion_ros.runtime.onnx_session import resolve_providers  # noqa: E402
from runtime_fixtures import STEPS, build_small_export, complete, estimate, kitti_frame  # noqa: E402

pytestmark = pytest.mark.torch


@pytest.fixture(scope="module")
def export(tmp_path_factory, shared_data):
    import torch

    torch.set_num_threads(1)
    return build_small_export(tmp_path_factory.mktemp("ort"), shared_data)


@pytest.fixture(scope="module")
def frame(shared_data):
    return kitti_frame(shared_data, 90, 300)  # not a multiple of 32: padded to 96x320


def test_step_form_matches_torch_backend_on_padded_real_frame(export, frame):
    _, ckpt, onnx_dir = export
    rgb, sparse = frame
    ort_b = OnnxRuntimeDiffusionDepthBackend(onnx_dir, num_inference_steps=STEPS, seed=3)
    assert ort_b.form == "step" and ort_b.name == "onnxruntime"
    got = complete(ort_b, rgb, sparse)
    ref = complete(TorchDiffusionDepthBackend(ckpt, num_inference_steps=STEPS, seed=3), rgb, sparse)
    assert got.depth.shape == (90, 300) and got.depth.dtype == np.float32 and got.uncertainty is None
    np.testing.assert_allclose(got.depth, ref.depth, atol=1e-3, rtol=1e-4)
    # another step count than exported: the host loop takes any number
    got5 = complete(OnnxRuntimeDiffusionDepthBackend(onnx_dir, num_inference_steps=5, seed=3), rgb, sparse)
    ref5 = complete(TorchDiffusionDepthBackend(ckpt, num_inference_steps=5, seed=3), rgb, sparse)
    np.testing.assert_allclose(got5.depth, ref5.depth, atol=1e-3, rtol=1e-4)
    assert np.abs(got5.depth - got.depth).max() > 1e-4  # the step count really changed the loop


def test_ensemble_uncertainty_and_monocular_input(export, frame):
    _, ckpt, onnx_dir = export
    rgb, sparse = frame
    got = complete(OnnxRuntimeDiffusionDepthBackend(onnx_dir, num_inference_steps=2, ensemble_size=3), rgb, sparse)
    ref = complete(TorchDiffusionDepthBackend(ckpt, num_inference_steps=2, ensemble_size=3), rgb, sparse)
    assert got.uncertainty is not None and got.uncertainty.shape == (90, 300)
    np.testing.assert_allclose(got.depth, ref.depth, atol=1e-3, rtol=1e-4)
    np.testing.assert_allclose(got.uncertainty, ref.uncertainty, atol=1e-3)
    mono = estimate(OnnxRuntimeDiffusionDepthBackend(onnx_dir, num_inference_steps=2), rgb)
    mono_ref = estimate(TorchDiffusionDepthBackend(ckpt, num_inference_steps=2), rgb)
    np.testing.assert_allclose(mono.depth, mono_ref.depth, atol=1e-3, rtol=1e-4)


def test_model_without_monocular_branch_refuses_frames_without_lidar(tmp_path, shared_data, frame):
    """mask_unsupported (a model whose monocular branch is untrained): both runtimes refuse a frame without
    LiDAR by name instead of publishing an empty image, and leave unreachable pixels at 0."""
    _, ckpt, onnx_dir = build_small_export(tmp_path, shared_data, forms=("step",), mask_unsupported=True,
                                           prior_scanline_gap=8, prior_levels=3)
    rgb, sparse = frame
    top_cut = sparse.copy()
    top_cut[:50] = 0  # no LiDAR in the top 50 rows: the top 20 are beyond the prior's 8-16 px reach
    depths = []
    for backend in (OnnxRuntimeDiffusionDepthBackend(onnx_dir, num_inference_steps=2),
                    TorchDiffusionDepthBackend(ckpt, num_inference_steps=2)):
        with pytest.raises(BackendError, match="no trained monocular branch"):
            EstimationPipeline(backend)
        with pytest.raises(FrameError, match="no valid pixel"):
            complete(backend, rgb, np.zeros_like(sparse))
        depth = complete(backend, rgb, top_cut).depth
        assert (depth[:20] == 0).all() and (depth[-20:] > 0).all()
        depths.append(depth)
    np.testing.assert_allclose(depths[0], depths[1], atol=1e-3, rtol=1e-4)


def test_unrolled_form_and_its_step_count_check(export, frame):
    _, _, onnx_dir = export
    rgb, sparse = frame
    unrolled = OnnxRuntimeDiffusionDepthBackend(onnx_dir, num_inference_steps=STEPS, export_form="unrolled")
    step = OnnxRuntimeDiffusionDepthBackend(onnx_dir, num_inference_steps=STEPS, export_form="step")
    assert unrolled.form == "unrolled"
    np.testing.assert_allclose(complete(unrolled, rgb, sparse).depth, complete(step, rgb, sparse).depth,
                               atol=1e-3, rtol=1e-4)
    with pytest.raises(BackendError, match=r"no graph for num_inference_steps=5, ensemble_size=1 .*sampler_5steps_e1"):
        OnnxRuntimeDiffusionDepthBackend(onnx_dir, num_inference_steps=5, export_form="unrolled")
    sampler = onnx_dir / f"sampler_{STEPS}steps_e1.onnx"
    with pytest.raises(BackendError, match=rf"{sampler.name}: unrolled for num_inference_steps={STEPS}, requested 4"):
        OnnxRuntimeDiffusionDepthBackend(sampler, num_inference_steps=4)
    with pytest.raises(BackendError, match=r"exported for ensemble_size=1, requested 2"):
        OnnxRuntimeDiffusionDepthBackend(sampler, ensemble_size=2)


def test_frame_size_mismatch_names_the_file(export, shared_data):
    _, _, onnx_dir = export
    rgb, sparse = kitti_frame(shared_data, 120, 300)
    b = OnnxRuntimeDiffusionDepthBackend(onnx_dir)
    with pytest.raises(BackendError, match=r"encoder.onnx: exported for 320x96 \(WxH\) input, got a 300x120 frame "
                                           r"\(padded to 320x128\)"):
        complete(b, rgb, sparse)
    with pytest.raises(FrameError, match="sparse_depth is 300x10 but image is 300x120"):
        complete(b, rgb, sparse[:10])
    with pytest.raises(FrameError, match="uint8"):
        complete(b, rgb.astype(np.float32), sparse)


def test_missing_corrupt_mixed_and_mislabelled_files(export, tmp_path):
    _, _, onnx_dir = export
    with pytest.raises(BackendError, match="model_path not found"):
        OnnxRuntimeDiffusionDepthBackend(tmp_path / "nowhere")
    bad = tmp_path / "bad"
    shutil.copytree(onnx_dir, bad)
    (bad / "step.onnx").write_bytes(b"not onnx")
    with pytest.raises(BackendError, match=r"step.onnx: cannot load ONNX model"):
        OnnxRuntimeDiffusionDepthBackend(bad, export_form="step")
    # a decoder from another export (different export_id) must not be mixed in
    mixed = tmp_path / "mixed"
    shutil.copytree(onnx_dir, mixed)
    from depth_diffusion_ros.export.onnx_export import write_metadata

    write_metadata(mixed / "decoder.onnx", {"export_id": "someone-else"})
    with pytest.raises(BackendError, match=r"decoder.onnx: ddr.export_id 'someone-else' differs"):
        OnnxRuntimeDiffusionDepthBackend(mixed)
    swapped = tmp_path / "swapped"
    shutil.copytree(onnx_dir, swapped)
    shutil.copy(onnx_dir / "decoder.onnx", swapped / "encoder.onnx")
    with pytest.raises(BackendError, match=r"encoder.onnx: expected a 'encoder' graph .* is 'decoder'"):
        OnnxRuntimeDiffusionDepthBackend(swapped)
    with pytest.raises(BackendError, match="ensemble_size=0"):
        OnnxRuntimeDiffusionDepthBackend(onnx_dir, ensemble_size=0)


def test_providers_filtered_with_a_log_line(caplog):
    with caplog.at_level(logging.WARNING):
        got = resolve_providers(["cuda", "tensorrt", "cpu"], available=["CPUExecutionProvider"])
    assert got == ["CPUExecutionProvider"]
    assert "CUDAExecutionProvider is not available" in caplog.text
    assert "TensorrtExecutionProvider is not available" in caplog.text
    avail = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    assert resolve_providers("trt,cuda", available=avail) == avail
    assert resolve_providers([("cuda", {"device_id": 1})], available=avail) == [
        ("CUDAExecutionProvider", {"device_id": 1}), "CPUExecutionProvider"]
    assert resolve_providers([], available=avail) == ["CPUExecutionProvider"]
    with pytest.raises(BackendError, match="unknown execution provider 'quantum'"):
        resolve_providers(["quantum"], available=avail)


def test_io_binding_gives_the_same_depth_and_node_style_options(export, frame):
    _, _, onnx_dir = export
    rgb, sparse = frame
    plain = OnnxRuntimeDiffusionDepthBackend(onnx_dir, use_io_binding=False, intra_op_num_threads=1)
    bound = OnnxRuntimeDiffusionDepthBackend(onnx_dir, use_io_binding=True, intra_op_num_threads=1,
                                         graph_optimization_level="basic")
    np.testing.assert_allclose(complete(bound, rgb, sparse).depth, complete(plain, rgb, sparse).depth,
                               atol=1e-4, rtol=1e-5)
    # the options the completion node passes for backend "onnxruntime"
    b = make_completion_backend("onnxruntime", model_path=str(onnx_dir), num_inference_steps=STEPS,
                                ensemble_size=1, providers=["CUDAExecutionProvider", "CPUExecutionProvider"], seed=0)
    assert complete(b, rgb, sparse).depth.shape == (90, 300)
    with pytest.raises(BackendError, match="graph_optimization_level"):
        OnnxRuntimeDiffusionDepthBackend(onnx_dir, graph_optimization_level="max")
