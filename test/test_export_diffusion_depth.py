"""DiffusionDepth -> ONNX (step and unrolled forms) checked against torch on a real KITTI frame.

A small config keeps the test fast on 2 CPU cores; the export code is the same for the shipped
model (the CLI export of the shipped weights is exercised in test_export_cli).
"""
from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")

from depth_diffusion_ros.export.diffusion_depth import (  # noqa: E402
    check_host_loop_parity,
    export_diffusion_depth,
    unrolled_file_name,
)
from depth_diffusion_ros.export.frames import frame_for_size, tensor_inputs  # noqa: E402
from depth_diffusion_ros.export.onnx_export import run_onnx  # noqa: E402
from depth_diffusion_ros.runtime.metadata import read_metadata  # noqa: E402
from depth_diffusion_ros.inference.pipelines import CompletionPipeline  # noqa: E402
from depth_diffusion_ros.models.config import DiffusionDepthConfig  # noqa: E402
from depth_diffusion_ros.models.ddim import DDIMScheduler  # noqa: E402
from depth_diffusion_ros.models.diffusion_depth import DiffusionDepth  # noqa: E402

pytestmark = pytest.mark.torch
H, W = 96, 320


def small_model(mode: str = "completion") -> DiffusionDepth:
    torch.manual_seed(0)
    cfg = DiffusionDepthConfig(neck_channels=16, latent_stride=8, decoder_channels=8, denoiser_channels=16,
                               denoiser_channel_mult=(1, 2), time_embed_dim=32, sparse_channels=8,
                               mode=mode, num_inference_steps=4)
    return DiffusionDepth(cfg).eval()


@pytest.fixture(scope="module")
def kitti_inputs(shared_data):
    return tensor_inputs(*frame_for_size(shared_data, H, W, "kitti"))


@pytest.fixture(scope="module")
def exported(tmp_path_factory, kitti_inputs):
    torch.set_num_threads(1)
    model = small_model()
    out = tmp_path_factory.mktemp("dd_export")
    report = export_diffusion_depth(model, out, H, W, forms=("step", "unrolled"), num_inference_steps=3,
                                    ensemble_size=2, inputs=kitti_inputs)
    return model, out, report


def test_files_names_and_metadata(exported, kitti_inputs):
    model, out, report = exported
    names = sorted(p.path.name for p in report.graphs)
    assert names == sorted(["encoder.onnx", "step.onnx", "decoder.onnx", unrolled_file_name(3, 2)])
    io = {}
    for g in report.graphs:
        m = onnx.load(str(g.path))
        io[g.graph] = ([i.name for i in m.graph.input], [o.name for o in m.graph.output])
        assert {o.version for o in m.opset_import if o.domain in ("", "ai.onnx")} == {17}
        meta = read_metadata(g.path)
        assert meta["ddr.graph"] == g.graph
        assert meta["ddr.model_sha256"] == report.model_sha256 and len(report.model_sha256) == 64
        assert meta["ddr.export_id"] == report.export_id
        assert json.loads(meta["ddr.config"])["latent_stride"] == 8
        assert json.loads(meta["ddr.parity_max_abs_error"])  # the check ran and was recorded
    assert io["sampler"] == (["rgb", "sparse_depth", "valid_mask", "noise"], ["depth"])
    assert io["step"] == (["latents", "cond", "timestep", "prev_timestep"], ["prev_latents"])
    # the condition leaves the encoder unpacked: the step graph gets the features only, the
    # decoder the full-resolution guidance (no pixel-unshuffle round trip through "cond")
    assert io["encoder"][1] == ["cond", "guidance"]
    assert io["decoder"] == (["latents", "guidance"], ["depth"])
    enc = onnx.load(str(out / "encoder.onnx")).graph.output
    dims = {o.name: [d.dim_value for d in o.type.tensor_type.shape.dim] for o in enc}
    assert dims == {"cond": [1, model.feature_channels, H // 8, W // 8], "guidance": [1, 2, H, W]}
    sampler_meta = read_metadata(out / unrolled_file_name(3, 2))
    assert sampler_meta["ddr.num_inference_steps"] == "3" and sampler_meta["ddr.ensemble_size"] == "2"
    # single passes to 1e-4 (decoder relative: depth in metres), whole loop to 1e-3 m
    for g in report.graphs:
        limit = 1e-3 if g.graph in ("sampler", "decoder") else 1e-4
        assert max(g.max_abs_error.values()) < limit, (g.graph, g.max_abs_error)
    assert json.loads((out / "export.json").read_text())["model_sha256"] == report.model_sha256


def test_unrolled_matches_torch_sample_with_new_noise(exported, kitti_inputs):
    """The unrolled graph returns one depth map per ensemble member (the pipeline aggregates)."""
    model, out, _ = exported
    noise = np.random.default_rng(5).standard_normal((2,) + model.latent_shape(H, W), dtype=np.float32)
    got = run_onnx(out / unrolled_file_name(3, 2), dict(kitti_inputs, noise=noise))
    t = {k: torch.from_numpy(kitti_inputs[k]) for k in ("rgb", "sparse_depth", "valid_mask")}
    with torch.no_grad():
        ref = np.concatenate([model.sample(t["rgb"], t["sparse_depth"], t["valid_mask"], noise=torch.from_numpy(
            noise[k:k + 1]), num_inference_steps=3).numpy() for k in range(2)])
    assert got["depth"].shape == (2, 1, H, W)
    np.testing.assert_allclose(got["depth"], ref, atol=1e-3, rtol=1e-4)
    assert got["depth"].min() >= model.config.min_depth and np.abs(ref[0] - ref[1]).max() > 0


@pytest.mark.parametrize("steps", [1, 4, 7])
def test_host_loop_over_step_graphs_matches_torch_for_any_step_count(exported, kitti_inputs, steps):
    model, out, _ = exported
    err = check_host_loop_parity(model, out, kitti_inputs, num_inference_steps=steps, ensemble_size=1)
    assert err < 1e-3


def test_host_loop_ensemble_mean_and_std(exported, kitti_inputs):
    model, out, _ = exported
    assert check_host_loop_parity(model, out, kitti_inputs, num_inference_steps=2, ensemble_size=3) < 1e-3


@pytest.mark.parametrize("spacing,offset", [("leading", 0), ("leading", 1), ("trailing", 0), ("linspace", 0)])
def test_pipeline_timestep_pairs_equal_torch_scheduler(spacing, offset):
    """The loop the pipelines run visits the torch scheduler's steps (one timestep rule)."""
    from depth_diffusion_ros.inference.sampler import SchedulerSpec

    sched = DDIMScheduler(timestep_spacing=spacing, steps_offset=offset)
    for n in (1, 3, 10, 20, 50, 999):
        assert SchedulerSpec(1000, spacing, offset).pairs(n) == sched.timestep_pairs(n)


def test_monocular_model_exports_without_sparse_inputs(tmp_path, kitti_inputs):
    model = small_model("monocular")
    report = export_diffusion_depth(model, tmp_path, H, W, forms=("step",), inputs=kitti_inputs)
    enc = next(g for g in report.graphs if g.graph == "encoder")
    assert max(enc.max_abs_error.values()) < 1e-4
    assert check_host_loop_parity(model, tmp_path, kitti_inputs, num_inference_steps=2) < 1e-3


def test_bad_size_and_form_are_rejected(tmp_path):
    model = small_model()
    with pytest.raises(ValueError, match="size_divisor"):
        export_diffusion_depth(model, tmp_path, 100, 320)
    with pytest.raises(ValueError, match="forms"):
        export_diffusion_depth(model, tmp_path, H, W, forms=("graph",))


@pytest.mark.slow
def test_dynamic_export_runs_at_other_sizes_in_ort_and_fake_tensorrt(tmp_path, shared_data):
    """--dynamic uses the torch.export-based exporter (the tracer bakes interpolation sizes);
    the export checks itself at a second size; ORT and the FAKE TensorRT (auto profile from
    the export's example shapes) then run a frame of yet another size."""
    import fake_tensorrt

    from depth_diffusion_ros.inference import frames
    from depth_diffusion_ros.inference.backends.onnxruntime_backend import OnnxRuntimeDiffusionDepthBackend
    from depth_diffusion_ros.inference.backends.tensorrt_backend import TensorRTDiffusionDepthBackend

    torch.set_num_threads(2)
    model = small_model()
    report = export_diffusion_depth(model, tmp_path / "dyn", 64, 128, forms=("step",), dynamic=True,
                                    inputs=tensor_inputs(*frame_for_size(shared_data, 64, 128, "kitti")))
    meta = read_metadata(report.graphs[0].path)
    assert meta["ddr.exporter"] == "dynamo" and meta["ddr.opset"] == "18"
    assert float(meta["ddr.parity_other_size_error"]) < 1e-3
    rgb, sparse = frame_for_size(shared_data, 90, 200, "kitti")  # padded to 96x224
    b = OnnxRuntimeDiffusionDepthBackend(tmp_path / "dyn", num_inference_steps=2)
    got = CompletionPipeline(b)(rgb, sparse)
    # reference: torch on the frame padded as the pipeline pads it (edge / zero), cropped
    rgb_p, _ = frames.pad_to_multiple(rgb, 32)
    sp_p, _ = frames.pad_to_multiple(sparse, 32)
    s_t, v_t = frames.sparse_to_tensor_layout(sp_p)
    noise = frames.make_noise((1,) + b.latent_shape(96, 224), b.seed)
    with torch.no_grad():
        ref = model.sample(torch.from_numpy(frames.rgb_to_tensor_layout(rgb_p)), torch.from_numpy(s_t),
                           torch.from_numpy(v_t), noise=torch.from_numpy(noise), num_inference_steps=2)
    np.testing.assert_allclose(got.depth, ref.numpy()[0, 0, :90, :200], atol=1e-3, rtol=1e-4)
    trt_b = TensorRTDiffusionDepthBackend(tmp_path / "dyn", num_inference_steps=2, engine_cache_dir=tmp_path / "eng",
                                          trt=fake_tensorrt, cuda=fake_tensorrt.make_fake_cudart())
    np.testing.assert_allclose(CompletionPipeline(trt_b)(rgb, sparse).depth, got.depth, atol=1e-4, rtol=1e-5)
    engine = fake_tensorrt.Runtime(None).deserialize_cuda_engine(trt_b.engine_results[0].engine_path.read_bytes())
    assert engine.header["profile"]["rgb"] == [[1, 3, 32, 64], [1, 3, 64, 128], [8, 3, 128, 256]]


def test_uncertainty_head_model_exports_and_onnxruntime_gives_the_torch_uncertainty(tmp_path, kitti_inputs):
    """The shipped model's structure (classical fills as an extra input, image skips in cond,
    uncertainty head): the exported graphs take ``priors`` and give [depth, sigma]; ONNX Runtime
    and torch pipelines agree on depth and uncertainty."""
    from depth_diffusion_ros.inference.backends.onnxruntime_backend import OnnxRuntimeDiffusionDepthBackend
    from depth_diffusion_ros.inference.backends.torch_backend import TorchDiffusionDepthBackend

    torch.manual_seed(0)
    cfg = DiffusionDepthConfig(backbone="tf_mobilenetv3_small_100", neck_channels=16, neck_stride=8, latent_stride=8,
                               latent_channels=8, decoder_channels=16, decoder_skip_channels=(8, 4),
                               decoder_head_kernel=1, sparse_stem_stride=2, denoiser_channels=16,
                               denoiser_channel_mult=(1, 2), time_embed_dim=32, sparse_channels=8,
                               uncertainty_head=True, external_priors=("ip_basic_gaussian", "linear_hull"),
                               timestep_spacing="trailing", prediction_type="v_prediction", num_inference_steps=1)
    model = DiffusionDepth(cfg).eval()
    report = export_diffusion_depth(model, tmp_path, H, W, forms=("step", "unrolled"), num_inference_steps=1,
                                    inputs=kitti_inputs)
    assert max(max(g.max_abs_error.values()) for g in report.graphs) < 1e-3
    for name in ("encoder.onnx", unrolled_file_name(1, 1)):
        assert "priors" in [i.name for i in onnx.load(str(tmp_path / name)).graph.input]
    rgb = (kitti_inputs["rgb"][0].transpose(1, 2, 0) * 255).round().astype(np.uint8)
    sparse = kitti_inputs["sparse_depth"][0, 0]
    ref = CompletionPipeline(TorchDiffusionDepthBackend(model=model, num_inference_steps=1))(rgb, sparse)
    assert ref.uncertainty is not None and (ref.uncertainty > 0).all()  # one sample, yet an uncertainty
    for form in ("unrolled", "step"):
        got = CompletionPipeline(OnnxRuntimeDiffusionDepthBackend(tmp_path, export_form=form))(rgb, sparse)
        np.testing.assert_allclose(got.depth, ref.depth, atol=1e-3, rtol=1e-4)
        np.testing.assert_allclose(got.uncertainty, ref.uncertainty, atol=1e-3, rtol=1e-3)
