"""Depth-camera degradations (geometry/degradation.py): noise grows with depth, holes land where
sensors lose returns, quantisation steps, seeded determinism; on synthetic maps and a real SUN3D frame."""
from __future__ import annotations

import numpy as np
import pytest

from depth_diffusion_ros.geometry.degradation import (
    DEGRADATIONS,
    add_depth_noise,
    blob_holes,
    block_average_depth,
    dark_surface_holes,
    degrade_depth,
    depth_discontinuities,
    depth_noise_sigma,
    edge_holes,
    quantise_depth,
)


def _step_scene(h: int = 64, w: int = 64) -> np.ndarray:
    depth = np.full((h, w), 3.0, np.float32)
    depth[:, : w // 2] = 1.0  # a wall at 1 m left, 3 m right: one vertical discontinuity
    return depth


def test_kinect_noise_std_grows_with_depth_as_z_squared():
    rng = np.random.default_rng(0)
    stds = {}
    for z in (1.0, 2.0, 4.0):
        d = np.full((200, 200), z, np.float32)
        stds[z] = float((add_depth_noise(d, rng) - d).std())
        assert stds[z] == pytest.approx(float(depth_noise_sigma(np.float32(z))), rel=0.05)
    assert stds[1.0] < stds[2.0] < stds[4.0]
    # sigma0 + k (z - z0)^2: 4 m is far more than 4x the 1 m noise (quadratic, not linear)
    assert stds[4.0] / stds[1.0] > 8.0


def test_noise_keeps_holes_and_positive_depth():
    d = np.full((50, 50), 0.5, np.float32)
    d[10:20, 10:20] = 0.0
    out = add_depth_noise(d, np.random.default_rng(1), scale=50.0)
    assert np.all(out[10:20, 10:20] == 0.0)
    assert np.all(out[d > 0] > 0)


def test_quantise_fixed_and_disparity_steps():
    d = np.array([[1.0004, 2.0006, 0.0]], np.float32)
    q = quantise_depth(d, 0.001)
    np.testing.assert_allclose(q, [[1.0, 2.001, 0.0]], atol=1e-6)
    z = np.linspace(0.8, 5.0, 2000, dtype=np.float32)[None]
    qd = quantise_depth(z, disparity_step=0.00287)
    levels_near, levels_far = np.unique(qd[z < 1.5]), np.unique(qd[z > 4.0])
    step_near, step_far = np.diff(levels_near).mean(), np.diff(levels_far).mean()
    assert step_far > 5 * step_near  # the depth step grows ~z^2
    assert np.all(np.abs(qd - z) <= 0.5 * 0.00287 * z ** 2 * 1.1)


def test_edge_holes_fall_on_discontinuities_only():
    d = _step_scene()
    edges = depth_discontinuities(d)
    assert edges[:, 31:33].all() and edges.sum() == 2 * 64
    out = edge_holes(d, np.random.default_rng(0), probability=1.0, width_px=2)
    holes = out == 0
    assert holes[:, 30:34].all()
    assert not holes[:, :29].any() and not holes[:, 35:].any()


def test_dark_and_shiny_surfaces_lose_returns():
    d = np.full((40, 40), 2.0, np.float32)
    rgb = np.full((40, 40, 3), 128, np.uint8)
    rgb[:10] = 5  # black band
    rgb[30:] = 255  # saturated band
    out = dark_surface_holes(d, rgb, np.random.default_rng(0), probability=1.0)
    assert np.all(out[:10] == 0) and np.all(out[30:] == 0) and np.all(out[10:30] == 2.0)
    with pytest.raises(ValueError, match="resize the colour"):
        dark_surface_holes(d, rgb[:20], np.random.default_rng(0))


def test_blob_holes_and_block_average():
    d = np.full((64, 64), 2.0, np.float32)
    out = blob_holes(d, np.random.default_rng(3), count=3, max_radius_frac=0.1)
    assert 0 < (out == 0).sum() < d.size * 0.3
    d2 = np.array([[1.0, 3.0, 0.0, 0.0], [0.0, 2.0, 0.0, 0.0]], np.float32)
    np.testing.assert_allclose(block_average_depth(d2, 2), [[2.0, 0.0]])
    with pytest.raises(ValueError, match="multiple"):
        block_average_depth(np.zeros((5, 6), np.float32), 2)


@pytest.mark.parametrize("kind", DEGRADATIONS)
def test_presets_are_seeded_and_sized(kind):
    d = _step_scene(128, 96) + np.linspace(0, 1, 96, dtype=np.float32)[None]
    rgb = np.random.default_rng(0).integers(0, 256, (128, 96, 3), dtype=np.uint8)
    a = degrade_depth(d, rgb, 8, kind, np.random.default_rng(5))
    b = degrade_depth(d, rgb, 8, kind, np.random.default_rng(5))
    assert a.shape == (16, 12) and a.dtype == np.float32
    np.testing.assert_array_equal(a, b)
    assert (a > 0).any()
    if kind in ("noisy", "sensor"):
        c = degrade_depth(d, rgb, 8, kind, np.random.default_rng(6))
        assert not np.array_equal(a, c)


def test_unknown_preset_is_named():
    with pytest.raises(ValueError, match="unknown degradation 'foo'.*sensor"):
        degrade_depth(np.ones((8, 8), np.float32), np.zeros((8, 8, 3), np.uint8), 2, "foo")


def test_sensor_preset_on_a_real_sun3d_frame(shared_data):
    from training.datasets.sun3d import sun3d_frames

    f = sun3d_frames(shared_data / "sun3d_rgbd_3dmatch", fragments=["fragment-1-rgbd-frames"]).load_frame(0)
    gt, rgb = f["gt_depth"], f["rgb"]
    clean = block_average_depth(gt, 8)
    lr = degrade_depth(gt, rgb, 8, "sensor", np.random.default_rng(0))
    assert lr.shape == (60, 80)
    lost = (clean > 0) & (lr == 0)
    # holes: more than the frame already had, concentrated at depth discontinuities
    assert 0.02 < lost.mean() < 0.5
    edges = depth_discontinuities(clean)
    assert lost[edges].mean() > 3 * lost[~edges].mean()
    both = (clean > 0) & (lr > 0)
    err = np.abs(lr[both] - clean[both])
    far, near = clean[both] > 3.0, clean[both] < 1.5
    assert err[far].mean() > 2 * err[near].mean()  # depth-dependent noise + disparity steps
