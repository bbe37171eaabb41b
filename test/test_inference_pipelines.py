"""The ROS-free pipelines own the frame: processing size and resize back, sparse re-projection and
LiDAR points, the DDIM loop over backend parts, the one ensemble rule, and named frame errors."""
from __future__ import annotations

import numpy as np
import pytest

from depth_diffusion_ros.geometry.intrinsics import Intrinsics
from depth_diffusion_ros.geometry.projection import project_lidar_to_depth
from depth_diffusion_ros.geometry.resample import resize_rgb
from depth_diffusion_ros.inference import frames
from depth_diffusion_ros.inference.backends import BackendError, make_completion_backend, make_super_resolution_backend
from depth_diffusion_ros.inference.backends.base import DiffusionBackend
from depth_diffusion_ros.inference.errors import FrameError
from depth_diffusion_ros.inference.pipelines import CompletionPipeline, EstimationPipeline, SuperResolutionPipeline
from depth_diffusion_ros.inference.sampler import (
    SamplingOptions,
    SchedulerSpec,
    aggregate_depth_members,
    aggregate_ensemble,
    sample_members,
)


def test_aggregate_ensemble_mean_population_std_and_all_member_validity():
    members = np.array([[[1.0, 2.0], [4.0, 0.0]],
                        [[3.0, 2.0], [6.0, 5.0]],
                        [[2.0, 2.0], [8.0, 5.0]]], np.float32)
    mean, std = aggregate_ensemble(members)
    np.testing.assert_allclose(mean, [[2.0, 2.0], [6.0, 0.0]])
    np.testing.assert_allclose(std, [[np.sqrt(2 / 3), 0.0], [np.sqrt(8 / 3), 0.0]], rtol=1e-6)  # ddof 0
    one, none = aggregate_ensemble(members[:1])
    assert none is None and np.array_equal(one, members[0])


class CountingBackend(DiffusionBackend):
    """A numpy DiffusionDepth stand-in: cond = mean of the rgb, each step adds (t - prev) / 1000,
    decode = cond + latents' first channel mean; it records what the loop asked for."""

    name = "counting"

    def __init__(self, batch_capacity, ensemble_size=5, form="step"):
        self.sampling = SamplingOptions(3, ensemble_size, seed=0)
        self.num_inference_steps = 3
        self.scheduler = SchedulerSpec(1000, "leading", 0)
        self.size_divisor, self.latent_channels, self.latent_stride = 8, 2, 4
        self.batch_capacity, self.form = batch_capacity, form
        self.calls = {"encode": 0, "repeat": [], "steps": [], "decode": 0}

    def encode(self, feed):
        self.calls["encode"] += 1
        return np.full((1, 1, 1, 1), feed["rgb"].mean(), np.float32)

    def repeat(self, cond, n):
        self.calls["repeat"].append(n)
        return super().repeat(cond, n)

    def step(self, latents, cond, timestep, prev_timestep):
        self.calls["steps"].append((timestep, prev_timestep))
        return latents + np.float32((timestep - prev_timestep) / 1000.0)

    def decode(self, latents, cond):
        self.calls["decode"] += 1
        h, w = latents.shape[2] * 4, latents.shape[3] * 4
        value = cond.reshape(-1, 1, 1, 1) + latents[:, :1].mean(axis=(2, 3), keepdims=True) + 5.0
        return np.broadcast_to(value, (latents.shape[0], 1, h, w)).astype(np.float32)


def test_sampler_loop_runs_the_scheduler_pairs_in_chunks_of_the_batch_capacity():
    b = CountingBackend(batch_capacity=2)
    feed = {"rgb": np.full((1, 3, 16, 24), 0.5, np.float32), "sparse_depth": np.zeros((1, 1, 16, 24), np.float32),
            "valid_mask": np.zeros((1, 1, 16, 24), np.float32)}
    noise = frames.make_noise((5,) + b.latent_shape(16, 24), 0)
    members = sample_members(b, feed, noise, 3)
    assert members.shape == (5, 1, 16, 24)
    pairs = SchedulerSpec().pairs(3)
    assert pairs == [(666, 333), (333, 0), (0, -333)]
    assert b.calls["encode"] == 1 and b.calls["repeat"] == [2, 2] and b.calls["decode"] == 3
    assert b.calls["steps"] == pairs * 3  # three chunks (2 + 2 + 1 members), every pair each
    expected = 0.5 + noise[:, :1].mean(axis=(2, 3)) + 0.999 + 5.0  # three steps of 333/1000
    np.testing.assert_allclose(members[:, 0, 0, 0], expected[:, 0], rtol=1e-5)


def test_completion_pipeline_pads_crops_and_aggregates_a_diffusion_backend():
    b = CountingBackend(batch_capacity=None, ensemble_size=4)
    rgb = np.full((13, 21, 3), 128, np.uint8)
    sparse = np.zeros((13, 21), np.float32)
    sparse[3, 4] = 7.0
    out = CompletionPipeline(b)(rgb, sparse)
    assert out.depth.shape == out.uncertainty.shape == (13, 21) and out.intrinsics is None
    assert b.calls["repeat"] == [4] and b.calls["decode"] == 1  # all members at once (no capacity limit)
    noise = frames.make_noise((4,) + b.latent_shape(16, 24), b.seed)  # padded to 16x24, seeded draw
    per_member = (128 / 255) + noise[:, :1].mean(axis=(1, 2, 3)) + 0.999 + 5.0
    np.testing.assert_allclose(out.depth, per_member.mean(), rtol=1e-5)
    np.testing.assert_allclose(out.uncertainty, per_member.std(), rtol=1e-4)


@pytest.fixture(scope="module")
def kitti(kitti_raw_dir):
    from node_harness import KittiFrame

    return KittiFrame(kitti_raw_dir)


def test_processing_size_reprojects_sparse_rescales_intrinsics_and_resizes_back(kitti):
    pipeline = CompletionPipeline(make_completion_backend("ip_basic"), processing_size=(621, 188))
    out = pipeline(kitti.rgb, kitti.sparse, kitti.intrinsics)
    assert out.depth.shape == (188, 621) and out.rgb.shape == (188, 621, 3)
    assert out.intrinsics == kitti.intrinsics.scaled(621, 188)
    back = CompletionPipeline(make_completion_backend("ip_basic"), processing_size=(621, 188), resize_back=True)(
        kitti.rgb, kitti.sparse, kitti.intrinsics)
    assert back.depth.shape == (375, 1242) and back.intrinsics == kitti.intrinsics and back.rgb is kitti.rgb
    assert set(np.unique(back.depth)) <= set(np.unique(out.depth))  # nearest neighbour: no invented values
    with pytest.raises(FrameError, match="needs the camera intrinsics"):
        pipeline(kitti.rgb, kitti.sparse)
    with pytest.raises(FrameError, match="intrinsics are for 1242x375") as err:
        CompletionPipeline(make_completion_backend("nearest"))(kitti.rgb[:100], kitti.sparse[:100], kitti.intrinsics)
    assert err.value.reason == "size_mismatch"
    with pytest.raises(ValueError, match="processing_size"):
        CompletionPipeline(make_completion_backend("nearest"), processing_size=(0, 10))


def test_lidar_points_are_projected_at_the_processing_intrinsics(kitti):
    xyz, T = kitti.scan[:, :3], kitti.calib.T_camera_lidar
    pipeline = CompletionPipeline(make_completion_backend("nearest"), processing_size=(621, 188),
                                  min_depth=0.5, max_depth=60.0)
    got = pipeline(kitti.rgb, intrinsics=kitti.intrinsics, points=xyz, T_camera_points=T)
    proc = kitti.intrinsics.scaled(621, 188)
    sparse = project_lidar_to_depth(xyz, T, proc, min_depth=0.5, max_depth=60.0)
    ref = CompletionPipeline(make_completion_backend("nearest"))(resize_rgb(kitti.rgb, 621, 188), sparse, proc)
    np.testing.assert_array_equal(got.depth, ref.depth)
    with pytest.raises(FrameError, match="no LiDAR point projects into the image") as err:
        behind = np.tile(np.float32([0.0, 0.0, -5.0]), (10, 1))  # every point behind the camera
        pipeline(kitti.rgb, intrinsics=kitti.intrinsics, points=behind, T_camera_points=np.eye(4))
    assert err.value.reason == "empty_sparse_depth"
    with pytest.raises(FrameError, match="intrinsics"):
        CompletionPipeline(make_completion_backend("nearest"))(kitti.rgb, points=xyz)


@pytest.mark.torch
def test_estimation_pipeline_runs_a_monocular_model_and_refuses_what_cannot(shared_data):
    import torch

    from depth_diffusion_ros.inference.backends.torch_backend import TorchDiffusionDepthBackend
    from depth_diffusion_ros.models.diffusion_depth import DiffusionDepth
    from runtime_fixtures import kitti_frame, small_config

    torch.manual_seed(0)
    model = DiffusionDepth(small_config("monocular", num_train_timesteps=1000)).eval()
    rgb, _ = kitti_frame(shared_data, 90, 300)
    backend = TorchDiffusionDepthBackend(model=model, num_inference_steps=2, ensemble_size=3)
    out = EstimationPipeline(backend)(rgb)
    assert out.depth.shape == (90, 300) and (out.depth > 0).all() and out.uncertainty.max() > 0
    # the ensemble is the one rule over members the torch model samples one at a time
    noise = frames.make_noise((3,) + backend.latent_shape(96, 320), backend.seed)
    rgb_p, _ = frames.pad_to_multiple(rgb, backend.size_divisor)
    t = torch.from_numpy(frames.rgb_to_tensor_layout(rgb_p))
    with torch.no_grad():
        members = np.concatenate([model.sample(t, noise=torch.from_numpy(noise[k:k + 1]), num_inference_steps=2)
                                  .numpy() for k in range(3)])
    mean, std = aggregate_ensemble(members[:, 0])
    np.testing.assert_allclose(out.depth, mean[:90, :300], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(out.uncertainty, std[:90, :300], atol=1e-5)
    with pytest.raises(BackendError, match="cannot estimate depth from an image alone"):
        EstimationPipeline(make_completion_backend("ip_basic"))


def test_super_resolution_pipeline_re_renders_a_depth_camera_with_other_intrinsics():
    colour = Intrinsics(500.0, 500.0, 319.5, 239.5, 640, 480)
    rgb = np.full((480, 640, 3), 100, np.uint8)
    lr = np.full((60, 80), 2.0, np.float32)
    pipeline = SuperResolutionPipeline(make_super_resolution_backend("bicubic"), intrinsics_tolerance=0.5)
    same = pipeline(rgb, lr, colour, colour.scaled(80, 60))
    shifted = Intrinsics(colour.scaled(80, 60).fx, colour.scaled(80, 60).fy, 45.0, 29.5, 80, 60)  # cx 6 px off
    moved = pipeline(rgb, lr, colour, shifted)
    assert (same.depth > 0).all() and (moved.depth == 0).any()  # re-rendered: a border strip is empty
    with pytest.raises(FrameError, match="depth_lr is 80x60 but depth_lr/camera_info is 160x120") as err:
        pipeline(rgb, lr, colour, colour.scaled(160, 120))
    assert err.value.reason == "size_mismatch"
    with pytest.raises(FrameError, match="no valid pixel") as err:
        pipeline(rgb, np.zeros_like(lr))
    assert err.value.reason == "empty_depth_lr"


def test_uncertainty_head_members_give_an_uncertainty_for_one_sample_and_add_the_spread():
    rng = np.random.default_rng(0)
    depth = rng.uniform(5, 50, size=(3, 4, 5)).astype(np.float32)
    sigma = rng.uniform(0.1, 2, size=(3, 4, 5)).astype(np.float32)
    members = np.stack([depth, sigma], axis=1)  # (E, 2, H, W)
    d1, u1 = aggregate_depth_members(members[:1])
    np.testing.assert_allclose(d1, depth[0]) and np.testing.assert_allclose(u1, sigma[0])
    d, u = aggregate_depth_members(members)
    np.testing.assert_allclose(d, depth.mean(0), rtol=1e-6)
    np.testing.assert_allclose(u, np.sqrt((sigma ** 2).mean(0) + depth.var(0)), rtol=1e-5)
    members[1, 0, 0, 0] = 0  # one member without an estimate there: no estimate, no uncertainty
    d, u = aggregate_depth_members(members)
    assert d[0, 0] == 0 and u[0, 0] == 0
    plain_d, plain_u = aggregate_depth_members(members[:1, :1])
    assert plain_u is None


def test_prior_depth_replaces_the_first_classical_fill_of_the_shipped_model(shared_data):
    """CompletionPipeline's ``prior_depth`` (the temporal prior): given the model's own first fill
    it changes nothing; another depth there moves the output towards it; refused where it cannot
    apply."""
    from depth_diffusion_ros.baselines.fills import prior_fills
    from depth_diffusion_ros.inference.backends.torch_backend import TorchDiffusionDepthBackend
    from depth_diffusion_ros.inference.errors import FrameError
    from runtime_fixtures import kitti_frame

    rgb, sparse = kitti_frame(shared_data, 160, 480)
    pipe = CompletionPipeline(TorchDiffusionDepthBackend())
    assert pipe.takes_prior_depth and pipe.output_geometry(rgb, None) == ((160, 480), None)
    plain = pipe(rgb, sparse)
    first = prior_fills(pipe.backend.external_priors, sparse)[0]
    np.testing.assert_array_equal(pipe(rgb, sparse, prior_depth=first).depth, plain.depth)
    farther = pipe(rgb, sparse, prior_depth=1.3 * plain.depth)
    ratio = farther.depth[plain.depth > 0] / plain.depth[plain.depth > 0]
    # it follows the prior it is given (partly: the per-pixel selection also weighs the second fill)
    assert np.percentile(ratio, 10) > 1.01 and np.percentile(ratio, 90) < 1.3
    with pytest.raises(FrameError, match=r"prior_depth has shape \(160, 479\), expected \(160, 480\)"):
        pipe(rgb, sparse, prior_depth=first[:, 1:])
    classical = CompletionPipeline(make_completion_backend("ip_basic"))
    assert not classical.takes_prior_depth
    with pytest.raises(BackendError, match="takes no prior depth"):
        classical(rgb, sparse, prior_depth=first)
