"""DenseDepth (the one-shot monocular regressor) through the estimation backends: its ONNX export
(one graph, metadata, parity on export; the `depth-diffusion-ros export` command), ONNX Runtime
against torch on the real KITTI raw frame 0001 #5 through EstimationPipeline (canonical focal
length, metric across focal lengths, the same numbers as training's scoring path), the dispatch
by model family behind the shared backend names, and what the sampling options mean for a
model without steps or an ensemble."""
from __future__ import annotations

import json
import logging

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("onnx")

from depth_diffusion_ros import cli  # noqa: E402
from depth_diffusion_ros.inference.backends import BackendError, make_completion_backend, make_estimation_backend  # noqa: E402
from depth_diffusion_ros.inference.backends.exported import model_family  # noqa: E402
from depth_diffusion_ros.inference.backends.onnxruntime_backend import (  # noqa: E402
    OnnxRuntimeDenseDepthBackend,
    OnnxRuntimeDiffusionDepthBackend,
)
from depth_diffusion_ros.inference.backends.torch_backend import TorchDenseDepthBackend  # noqa: E402
from depth_diffusion_ros.inference.pipelines import EstimationPipeline  # noqa: E402
from depth_diffusion_ros.runtime.metadata import read_ddr_metadata  # noqa: E402
from runtime_fixtures import KITTI_CANONICAL_FOCAL, build_small_densedepth_export  # noqa: E402

pytestmark = pytest.mark.torch


@pytest.fixture(scope="module")
def export(tmp_path_factory, shared_data):
    import torch

    torch.set_num_threads(1)
    return build_small_densedepth_export(tmp_path_factory.mktemp("densedepth"), shared_data)


@pytest.fixture(scope="module")
def frame():
    """KITTI raw 2011_09_26_drive_0001 frame 5 (never trained on): rgb, K, depth-completion GT."""
    from training.monocular import frame_intrinsics, kitti_sets

    f = kitti_sets()["raw 0001/5"].load_frame(0)
    return f["rgb"], frame_intrinsics(f), f["gt_depth"]


def test_export_command_detects_densedepth_and_sizes_the_graph_at_the_canonical_focal(export, tmp_path, capsys,
                                                                                    shared_data):
    model, ckpt, _ = export
    out = tmp_path / "onnx"
    rc = cli.main(["export", "--checkpoint", str(ckpt), "--output", str(out), "--threads", "1",
                   "--data-dir", str(shared_data)])
    text = capsys.readouterr().out
    assert rc == 0, text
    assert "for 640x192 (frame 1242x375 at 721.538 px resized to the canonical 360.769 px (621x188), padded" in text
    assert sorted(p.name for p in out.iterdir()) == ["densedepth.onnx", "export.json"]
    meta = read_ddr_metadata(out / "densedepth.onnx")
    from depth_diffusion_ros.export.onnx_export import model_sha256

    assert meta["graph"] == "densedepth" and meta["model"] == "densedepth"
    assert meta["model_sha256"] == model_sha256(model) == json.loads((out / "export.json").read_text())["model_sha256"]
    assert meta["canonical_focal"] == pytest.approx(KITTI_CANONICAL_FOCAL)
    assert meta["config"]["encoder"] == "mobilenetv3_small_050" and meta["config"]["max_depth"] == 88.0
    assert (meta["height"], meta["width"], meta["size_divisor"]) == (192, 640, 32)
    assert meta["parity_max_abs_error"]["depth"] < 1e-3 + 1e-4 * 88.0  # checked on the real KITTI frame
    # another camera: its focal length is needed to size the graph (or --height/--width)
    rc = cli.main(["export", "--checkpoint", str(ckpt), "--output", str(tmp_path / "o2"), "--frame-size", "640x480",
                   "--no-check"])
    assert rc == 1 and "give the camera's --camera-focal" in capsys.readouterr().err
    rc = cli.main(["export", "--checkpoint", str(ckpt), "--output", str(tmp_path / "o3"), "--frame-size", "640x480",
                   "--camera-focal", "525", "--no-check"])
    assert rc == 0 and "for 448x352 (frame 640x480 at 525 px resized to the canonical 360.769 px (440x330)" in \
        capsys.readouterr().out
    # --model densedepth on a DiffusionDepth checkpoint: refused by name
    from depth_diffusion_ros.tools.export import DEFAULT_CHECKPOINTS

    rc = cli.main(["export", "--model", "densedepth", "--checkpoint", str(DEFAULT_CHECKPOINTS["diffusion_depth"]),
                   "--output", str(tmp_path / "o4"), "--no-check"])
    assert rc == 1 and "not densedepth" in capsys.readouterr().err


def test_onnxruntime_equals_torch_through_the_estimation_pipeline(export, frame):
    """The same frame through the node's pipeline: ONNX Runtime == torch == training's scoring
    path (training.monocular.model_predictor, which scored the model card), so the node
    reproduces those scores; and the depth stays metric when the camera's focal length halves."""
    from training.monocular import model_predictor

    _, ckpt, onnx_dir = export
    rgb, intr, _ = frame
    ort_p = EstimationPipeline(make_estimation_backend("onnxruntime", model_path=str(onnx_dir), ensemble_size=1,
                                                       seed=0), resize_back=True)
    torch_p = EstimationPipeline(make_estimation_backend("torch", model_path=str(ckpt)), resize_back=True)
    assert isinstance(ort_p.backend, OnnxRuntimeDenseDepthBackend) and isinstance(torch_p.backend, TorchDenseDepthBackend)
    assert ort_p.canonical_focal == torch_p.canonical_focal == pytest.approx(KITTI_CANONICAL_FOCAL)
    assert not hasattr(ort_p.backend, "num_inference_steps")  # one-shot: no DDIM steps
    got, ref = ort_p(rgb, intr), torch_p(rgb, intr)
    assert got.depth.shape == (375, 1242) and got.depth.dtype == np.float32 and got.uncertainty is None
    assert 7.0 < float(np.median(got.depth)) < 40.0  # the stand-in output layer's range, not a constant
    np.testing.assert_allclose(got.depth, ref.depth, atol=1e-3, rtol=1e-4)
    predict, _ = model_predictor(ckpt)
    np.testing.assert_allclose(got.depth, predict(rgb, intr), atol=1e-3, rtol=1e-4)
    # half the focal length (the frame resized by 0.5): brought to the same canonical camera
    import cv2

    half = cv2.resize(rgb, (621, 188), interpolation=cv2.INTER_AREA)
    got_half = ort_p(half, intr.scaled(621, 188))
    assert got_half.depth.shape == (188, 621)
    assert abs(np.median(got_half.depth) / np.median(got.depth) - 1.0) < 0.03


def test_one_shot_sampling_options_are_explicit(export, frame, caplog, tmp_path):
    """ensemble_size > 1 is refused (naming why), num_inference_steps is ignored with a warning
    and changes nothing, seed is unused; every backend name says the same."""
    import fake_tensorrt

    _, ckpt, onnx_dir = export
    rgb, intr, _ = frame
    trt = dict(engine_cache_dir=str(tmp_path / "engines"), trt=fake_tensorrt,
               cuda=fake_tensorrt.make_fake_cudart("NVIDIA Jetson AGX Orin (fake)"))
    for name, path, extra in (("torch", ckpt, {}), ("onnxruntime", onnx_dir, {}), ("tensorrt", onnx_dir, trt)):
        with pytest.raises(BackendError, match=r"ensemble_size=2 is not possible: DenseDepth is a one-shot "
                                               r"regressor .* no spread to publish on depth/uncertainty"):
            make_estimation_backend(name, model_path=str(path), ensemble_size=2, **extra)
    base = EstimationPipeline(make_estimation_backend("onnxruntime", model_path=str(onnx_dir)))(rgb, intr).depth
    with caplog.at_level(logging.WARNING):
        stepped = make_estimation_backend("onnxruntime", model_path=str(onnx_dir), num_inference_steps=7, seed=5)
    assert "num_inference_steps=7 ignored: DenseDepth is a one-shot regressor" in caplog.text
    np.testing.assert_array_equal(EstimationPipeline(stepped)(rgb, intr).depth, base)


def test_family_dispatch_and_the_errors_that_name_the_problem(export, frame):
    _, ckpt, onnx_dir = export
    rgb, intr, _ = frame
    assert model_family(onnx_dir) == model_family(onnx_dir / "densedepth.onnx") == model_family(ckpt) == "densedepth"
    assert model_family("") == model_family("/no/such/dir") == "diffusion_depth"
    with pytest.raises(BackendError, match="this is a torch checkpoint .*`depth-diffusion-ros export --checkpoint"):
        make_estimation_backend("onnxruntime", model_path=str(ckpt))
    with pytest.raises(BackendError, match="a DenseDepth export .* run it with depth_estimation_node"):
        OnnxRuntimeDiffusionDepthBackend(onnx_dir)  # the DiffusionDepth runner, as the completion node would pick
    with pytest.raises(BackendError, match="a DenseDepth export"):
        make_completion_backend("onnxruntime", model_path=str(onnx_dir))
    # the static graph refuses another size by name (canonical focal off: the frame's own 1242x375)
    pipeline = EstimationPipeline(make_estimation_backend("onnxruntime", model_path=str(onnx_dir)), canonical_focal=0)
    with pytest.raises(BackendError, match=r"exported for 640x192 \(WxH\) input, got a 1242x375 frame "
                                           r"\(padded to 1248x384\)"):
        pipeline(rgb, intr)
