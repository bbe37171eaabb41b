"""Classical backends through the registry and the pipelines, on the real KITTI and NYU frames."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from depth_diffusion_ros.evaluation.metrics import depth_metrics
from depth_diffusion_ros.geometry.depth_codecs import read_kitti_depth_png
from depth_diffusion_ros.geometry.intrinsics import Intrinsics
from depth_diffusion_ros.inference.backends import BackendError, make_completion_backend, make_super_resolution_backend
from depth_diffusion_ros.inference.backends.base import CompletionModel, UpsamplingModel
from depth_diffusion_ros.inference.errors import FrameError
from depth_diffusion_ros.inference.pipelines import (
    CompletionPipeline,
    DepthOutput,
    EstimationPipeline,
    SuperResolutionPipeline,
)

KITTI_INTR = Intrinsics(fx=721.5377, fy=721.5377, cx=609.5593, cy=172.854, width=1242, height=375)


@pytest.fixture(scope="module")
def kitti_frame(kitti_raw_dir):
    rgb = cv2.cvtColor(cv2.imread(str(kitti_raw_dir / "raw" / "sync_rect" / "cam_02.png")), cv2.COLOR_BGR2RGB)
    dc = kitti_raw_dir / "depth_completion"
    return rgb, read_kitti_depth_png(dc / "velodyne_raw_image_02.png"), read_kitti_depth_png(dc / "groundtruth_image_02.png")


@pytest.mark.parametrize("name, bound", [("ip_basic", 2.0), ("nearest", 2.5)])
def test_completion_backends_by_name(name, bound, kitti_frame):
    rgb, sparse, gt = kitti_frame
    backend = make_completion_backend(name)
    assert isinstance(backend, CompletionModel) and backend.name == name
    pipeline = CompletionPipeline(backend)
    result = pipeline(rgb, sparse, KITTI_INTR)
    assert isinstance(result, DepthOutput) and result.uncertainty is None and result.intrinsics == KITTI_INTR
    assert result.depth.shape == (375, 1242) and result.depth.dtype == np.float32
    assert (result.depth > 0).mean() > 0.99
    assert depth_metrics(result.depth, gt)["rmse"] < bound
    with pytest.raises(FrameError, match="needs sparse depth"):
        pipeline(rgb, None, KITTI_INTR)
    with pytest.raises(FrameError, match="sparse_depth is 1242x375 but image is 1242x100"):
        pipeline(rgb[:100], sparse)
    with pytest.raises(BackendError, match="cannot estimate depth from an image alone"):
        EstimationPipeline(backend)


def test_completion_backend_options():
    b = make_completion_backend("ip_basic", max_depth=80.0, extrapolate=False, blur_type="gaussian")
    assert (b.max_depth, b.extrapolate, b.blur_type) == (80.0, False, "gaussian")
    with pytest.raises(TypeError):
        make_completion_backend("ip_basic", kernel="cross")
    with pytest.raises(TypeError):
        make_completion_backend("nearest", max_depth=3)
    with pytest.raises(ValueError, match="blur_type"):
        make_completion_backend("ip_basic", blur_type="median")


@pytest.mark.parametrize("name", ["bicubic", "guided_filter", "joint_bilateral"])
def test_super_resolution_backends_by_name(name, shared_data):
    root = shared_data / "nyu_depth_v2_metric3d"
    gt = cv2.imread(str(root / "depth" / "sync_depth_00050.png"), cv2.IMREAD_UNCHANGED).astype(np.float32) / 1000.0
    rgb = cv2.cvtColor(cv2.imread(str(root / "rgb" / "rgb_00050.jpg")), cv2.COLOR_BGR2RGB)
    lr = cv2.resize(gt, (160, 120), interpolation=cv2.INTER_NEAREST)  # x4, holes kept as 0
    backend = make_super_resolution_backend(name)
    assert isinstance(backend, UpsamplingModel) and backend.name == name
    pipeline = SuperResolutionPipeline(backend)
    out = pipeline(rgb, lr).depth
    assert out.shape == (480, 640) and out.dtype == np.float32
    m = depth_metrics(out, gt, valid_mask=out > 0)
    assert m["n_valid"] > 0.6 * gt.size
    assert m["rmse"] < 0.3
    with pytest.raises(FrameError, match="uint8"):
        pipeline(rgb.astype(np.float32), lr)
    with pytest.raises(FrameError, match="scale is not an integer") as err:
        pipeline(rgb[:100, :100], lr)
    assert err.value.reason == "bad_scale"
    with pytest.raises(FrameError, match="outside the backend's range x1..x2") as err:
        SuperResolutionPipeline(backend, max_scale=2)(rgb, lr)
    assert err.value.reason == "scale_out_of_range"


def test_super_resolution_ignores_depth_lr_outside_min_max_depth(shared_data):
    """1e30 m, 1e-7 m and denormal LR depths are holes (filled like any), not depths; a depth_lr
    with nothing in range is refused by name."""
    root = shared_data / "nyu_depth_v2_metric3d"
    gt = cv2.imread(str(root / "depth" / "sync_depth_00050.png"), cv2.IMREAD_UNCHANGED).astype(np.float32) / 1000.0
    rgb = cv2.cvtColor(cv2.imread(str(root / "rgb" / "rgb_00050.jpg")), cv2.COLOR_BGR2RGB)
    lr = cv2.resize(gt, (160, 120), interpolation=cv2.INTER_NEAREST)
    bad = lr.copy()
    bad[10, 10], bad[50, 80], bad[100, 20] = 1e30, 1e-7, np.float32(1e-42)
    holes = lr.copy()
    holes[10, 10] = holes[50, 80] = holes[100, 20] = 0.0
    pipeline = SuperResolutionPipeline(make_super_resolution_backend("bicubic"), min_depth=0.01, max_depth=100.0)
    out = pipeline(rgb, bad).depth
    assert np.array_equal(out, pipeline(rgb, holes).depth)
    assert np.nanmax(out) < 100.0
    with pytest.raises(FrameError, match="outside min_depth..max_depth 0.01..100 m") as err:
        pipeline(rgb, np.full_like(lr, 1e30))
    assert err.value.reason == "empty_depth_lr"


def test_super_resolution_backend_options():
    b = make_super_resolution_backend("guided_filter", radius=3, eps=0.05)
    assert (b.radius, b.eps) == (3, 0.05)
    b = make_super_resolution_backend("joint_bilateral", sigma_color=10.0, sigma_space=2.0)
    assert (b.sigma_color, b.sigma_space) == (10.0, 2.0)
    with pytest.raises(TypeError):
        make_super_resolution_backend("bicubic", scale=4)
    with pytest.raises(ValueError, match="eps"):
        make_super_resolution_backend("guided_filter", eps=0)
    with pytest.raises(BackendError, match="unknown"):
        make_super_resolution_backend("lanczos")
