"""IID-RDepth through ONNX: the step-form export (with ``encoder_aux.onnx`` for AV-LFE) is checked
against torch on export, and ONNX Runtime and the (fake) TensorRT backends, through the estimation
pipeline, give torch's depth with and without the auxiliary view."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from depth_diffusion_ros.export.diffusion_depth import export_diffusion_depth  # noqa: E402
from depth_diffusion_ros.inference.pipelines import EstimationPipeline  # noqa: E402
from depth_diffusion_ros.models.checkpoint import save_checkpoint  # noqa: E402
from depth_diffusion_ros.models.iid_rdepth import IIDRDepth  # noqa: E402
from depth_diffusion_ros.models.iid_rdepth_config import IIDRDepthConfig  # noqa: E402
from depth_diffusion_ros.runtime.metadata import read_metadata  # noqa: E402


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    torch.manual_seed(0)
    torch.set_num_threads(2)
    model = IIDRDepth(IIDRDepthConfig(pretrained_path=None, av_lfe=True, num_inference_steps=2)).eval()
    with torch.no_grad():
        for m in model.av_lfe.values():  # trained weights are not zero: make the auxiliary view matter
            torch.nn.init.normal_(m.proj.weight, std=0.5)
        for m in model.transform.modules():
            if hasattr(m, "kernel"):
                m.weight.mul_(10.0)  # the Lipschitz scaling active in the exported weights
    root = tmp_path_factory.mktemp("iid_export")
    ckpt = save_checkpoint(model, root / "ckpt")
    report = export_diffusion_depth(model, root / "onnx", 64, 96, forms=("step",))
    return model, ckpt, root / "onnx", report


def _frames():
    rng = np.random.default_rng(3)
    rgb = rng.integers(0, 255, (60, 90, 3), dtype=np.uint8)
    return rgb, np.roll(rgb, 3, axis=1).copy()


def test_export_writes_the_aux_encoder_checked_against_torch(exported):
    _, _, out, report = exported
    roles = {g.graph: g for g in report.graphs}
    assert set(roles) == {"encoder", "encoder_aux", "step", "decoder"}
    assert (out / "encoder_aux.onnx").is_file()
    for g in report.graphs:
        assert g.max_abs_error and max(g.max_abs_error.values()) < 1e-3
    meta = read_metadata(out / "encoder_aux.onnx")
    assert meta["ddr.graph"] == "encoder_aux"
    assert meta["ddr.export_id"] == read_metadata(out / "encoder.onnx")["ddr.export_id"]
    assert '"architecture"' not in meta["ddr.config"] and '"av_lfe": true' in meta["ddr.config"]


def test_onnxruntime_pipeline_matches_torch_with_and_without_image_aux(exported):
    from depth_diffusion_ros.inference.backends.onnxruntime_backend import OnnxRuntimeDiffusionDepthBackend
    from depth_diffusion_ros.inference.backends.torch_backend import TorchDiffusionDepthBackend

    _, ckpt, out, _ = exported
    ort = EstimationPipeline(OnnxRuntimeDiffusionDepthBackend(out))
    ref = EstimationPipeline(TorchDiffusionDepthBackend(model_path=ckpt))
    assert ort.uses_aux and ref.uses_aux and ort.backend.num_inference_steps == 2
    rgb, aux = _frames()
    alone, with_aux = ort(rgb).depth, ort(rgb, rgb_aux=aux).depth
    np.testing.assert_allclose(alone, ref(rgb).depth, atol=1e-3, rtol=1e-4)
    np.testing.assert_allclose(with_aux, ref(rgb, rgb_aux=aux).depth, atol=1e-3, rtol=1e-4)
    assert np.abs(with_aux - alone).max() > 1e-2  # the AV-LFE path ran


def test_fake_tensorrt_uses_the_aux_encoder_through_the_shared_path(exported, tmp_path):
    import fake_tensorrt

    from depth_diffusion_ros.inference.backends.onnxruntime_backend import OnnxRuntimeDiffusionDepthBackend
    from depth_diffusion_ros.inference.backends.tensorrt_backend import TensorRTDiffusionDepthBackend

    _, _, out, _ = exported
    trt = TensorRTDiffusionDepthBackend(out, engine_cache_dir=tmp_path / "eng", trt=fake_tensorrt,
                                        cuda=fake_tensorrt.make_fake_cudart())
    assert trt.uses_aux and len(trt.engine_results) == 4
    rgb, aux = _frames()
    ort = EstimationPipeline(OnnxRuntimeDiffusionDepthBackend(out))
    np.testing.assert_allclose(EstimationPipeline(trt)(rgb, rgb_aux=aux).depth, ort(rgb, rgb_aux=aux).depth,
                               atol=1e-4, rtol=1e-5)


def test_onnx_cache_exports_an_iid_rdepth_checkpoint(exported, tmp_path):
    from depth_diffusion_ros.tools.onnx_cache import onnx_export_for, read_size_divisor

    _, ckpt, _, _ = exported
    assert read_size_divisor(ckpt) == 32
    target, reused = onnx_export_for(ckpt, tmp_path / "cache", {(64, 96)})
    assert not reused and (target / "encoder_aux.onnx").is_file()
    assert onnx_export_for(ckpt, tmp_path / "cache", {(64, 96)}) == (target, True)
