"""The torch completion backend on a real KITTI depth-completion frame (tiny untrained model
checkpoint written to tmp) through the completion and estimation pipelines, and the shared numpy
frame layout."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from depth_diffusion_ros.inference import frames as preprocess
from depth_diffusion_ros.inference.backends import BackendError, make_completion_backend
from depth_diffusion_ros.inference.errors import FrameError
from depth_diffusion_ros.inference.pipelines import CompletionPipeline, DepthOutput, EstimationPipeline
from depth_diffusion_ros.models.checkpoint import WEIGHTS_NAME, save_checkpoint
from depth_diffusion_ros.models.config import DiffusionDepthConfig
from depth_diffusion_ros.models.diffusion_depth import DiffusionDepth

torch.set_num_threads(2)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    cfg = DiffusionDepthConfig(
        backbone="test_efficientnet", neck_channels=8, latent_channels=4, latent_stride=8,
        decoder_channels=8, denoiser_channels=8, denoiser_channel_mult=(1, 2), time_embed_dim=16,
        sparse_channels=8, num_inference_steps=3, max_depth=80.0,
    )
    path = tmp_path_factory.mktemp("ckpt") / "diffusion_depth"
    save_checkpoint(DiffusionDepth(cfg), path)
    return path


@pytest.fixture(scope="module")
def kitti_frame(kitti_raw_dir):
    """Bottom 150x230 crop (odd size: padding is exercised) of the KITTI DC frame."""
    rgb = cv2.cvtColor(cv2.imread(str(kitti_raw_dir / "raw/sync_rect/cam_02.png")), cv2.COLOR_BGR2RGB)
    dc = kitti_raw_dir / "depth_completion"
    sparse = cv2.imread(str(dc / "velodyne_raw_image_02.png"), cv2.IMREAD_UNCHANGED).astype(np.float32) / 256.0
    gt = cv2.imread(str(dc / "groundtruth_image_02.png"), cv2.IMREAD_UNCHANGED).astype(np.float32) / 256.0
    sl = (slice(375 - 150, 375), slice(500, 730))
    return np.ascontiguousarray(rgb[sl]), np.ascontiguousarray(sparse[sl]), np.ascontiguousarray(gt[sl])


def test_frames_pad_crop_and_layouts():
    rgb = np.random.default_rng(0).integers(0, 256, (37, 50, 3), dtype=np.uint8)
    padded, pads = preprocess.pad_to_multiple(rgb, 16)
    assert padded.shape == (48, 64, 3) and pads == (11, 14)
    assert np.array_equal(padded[-1, :50], rgb[-1])  # images repeat the border
    assert np.array_equal(preprocess.crop_padding(padded, pads), rgb)
    depth = np.full((37, 50), 5.0, np.float32)
    dp, _ = preprocess.pad_to_multiple(depth, 16)
    assert dp.shape == (48, 64) and float(dp[40:, :].max()) == 0.0  # depth pads with "missing"
    t = preprocess.rgb_to_tensor_layout(padded)
    assert t.shape == (1, 3, 48, 64) and t.dtype == np.float32 and 0 <= t.min() and t.max() <= 1
    assert np.array_equal(preprocess.crop_padding(np.zeros((1, 1, 48, 64)), pads).shape, (1, 1, 37, 50))
    sparse = np.array([[0, 2.5, np.nan], [np.inf, -1, 7]], np.float32)
    s, v = preprocess.sparse_to_tensor_layout(sparse)
    assert s.shape == v.shape == (1, 1, 2, 3)
    assert s[0, 0].tolist() == [[0, 2.5, 0], [0, 0, 7]] and v[0, 0].tolist() == [[0, 1, 0], [0, 0, 1]]
    assert np.array_equal(preprocess.make_noise((2, 3), 5), preprocess.make_noise((2, 3), 5))
    with pytest.raises(ValueError, match="uint8"):
        preprocess.rgb_to_tensor_layout(rgb.astype(np.float32))
    with pytest.raises(ValueError, match="divisor"):
        preprocess.pad_to_multiple(depth, 0)


def test_backend_completes_real_kitti_frame(checkpoint, kitti_frame):
    rgb, sparse, gt = kitti_frame
    backend = make_completion_backend("torch", model_path=str(checkpoint))
    assert backend.name == "torch" and backend.size_divisor == 32 and backend.num_inference_steps == 3
    pipeline = CompletionPipeline(backend)
    result = pipeline(rgb, sparse)
    assert isinstance(result, DepthOutput) and result.uncertainty is None
    assert result.depth.shape == (150, 230) and result.depth.dtype == np.float32
    assert np.isfinite(result.depth).all() and result.depth.min() >= 0.1 and result.depth.max() <= 80.0
    # deterministic: the same seed gives the same depth
    assert np.array_equal(pipeline(rgb, sparse).depth, result.depth)
    # even untrained, the LiDAR prior path makes completion far better than monocular
    mono = EstimationPipeline(backend)(rgb).depth
    m = gt > 0
    mae_completion = np.abs(result.depth[m] - gt[m]).mean()
    mae_mono = np.abs(mono[m] - gt[m]).mean()
    assert mae_completion < 0.5 * mae_mono, (mae_completion, mae_mono)
    assert mae_completion < 3.0  # metres, on the semi-dense KITTI GT of this crop


def test_backend_ensemble_uncertainty_and_seed(checkpoint, kitti_frame):
    rgb, sparse, _ = kitti_frame
    ens = make_completion_backend("torch", model_path=checkpoint, ensemble_size=3, num_inference_steps=2)
    out = CompletionPipeline(ens)(rgb, sparse)
    assert out.uncertainty is not None and out.uncertainty.shape == (150, 230)
    assert out.uncertainty.dtype == np.float32 and (out.uncertainty >= 0).all()
    assert float(out.uncertainty.max()) > 0
    other = make_completion_backend("torch", model_path=checkpoint, ensemble_size=3,
                                    num_inference_steps=2, seed=1)
    assert not np.array_equal(CompletionPipeline(other)(rgb, sparse).depth, out.depth)


def test_backend_errors_name_the_problem(checkpoint, tmp_path, kitti_frame):
    rgb, sparse, _ = kitti_frame
    with pytest.raises(BackendError, match="missing_dir"):
        make_completion_backend("torch", model_path=tmp_path / "missing_dir")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "config.yaml").write_text((checkpoint / "config.yaml").read_text())
    (bad / WEIGHTS_NAME).write_bytes((checkpoint / WEIGHTS_NAME).read_bytes()[:1000])
    with pytest.raises(BackendError, match="bad/model.safetensors"):
        make_completion_backend("torch", model_path=bad)
    with pytest.raises(BackendError, match="fp16"):
        make_completion_backend("torch", model_path=checkpoint, fp16=True)
    with pytest.raises(BackendError, match="ensemble_size"):
        make_completion_backend("torch", model_path=checkpoint, ensemble_size=0)
    with pytest.raises(BackendError, match="num_inference_steps"):
        make_completion_backend("torch", model_path=checkpoint, num_inference_steps=0)
    pipeline = CompletionPipeline(make_completion_backend("torch", model_path=checkpoint))
    with pytest.raises(FrameError, match="uint8"):
        pipeline(rgb.astype(np.float32), sparse)
    with pytest.raises(FrameError, match="sparse_depth is 230x149 but image is 230x150") as err:
        pipeline(rgb, sparse[:-1])
    assert err.value.reason == "size_mismatch"
    with pytest.raises(FrameError, match="no valid pixel") as err:
        pipeline(rgb, np.zeros_like(sparse))
    assert err.value.reason == "empty_sparse_depth"
