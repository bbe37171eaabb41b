"""inference.temporal: reset rules (per camera frame id) and the temporal filter of depth completion."""
from __future__ import annotations

import numpy as np
import pytest

from depth_diffusion_ros.geometry.intrinsics import Intrinsics
from depth_diffusion_ros.geometry.transforms import make_transform
from depth_diffusion_ros.inference.errors import FrameError
from depth_diffusion_ros.inference.pipelines import DepthOutput
from depth_diffusion_ros.inference.temporal import TemporalFilter

W, H = 80, 60
K = Intrinsics(fx=80.0, fy=80.0, cx=(W - 1) / 2, cy=(H - 1) / 2, width=W, height=H)


def out(depth, intrinsics=K, uncertainty=None, sparse=None) -> DepthOutput:
    depth = np.asarray(depth, np.float32)
    return DepthOutput(depth, uncertainty, intrinsics, np.zeros(depth.shape + (3,), np.uint8), sparse)


def scene() -> np.ndarray:
    d = np.full((H, W), 10.0, np.float32)
    d[20:40, 30:50] = 5.0
    return d


def test_first_frame_starts_the_state_and_returns_the_single_frame_depth():
    f = TemporalFilter(max_gap=0.5)
    r = f(out(scene()), "cam", 1.0)
    assert r.reset == "first frame of camera frame 'cam'"
    np.testing.assert_array_equal(r.output.depth, scene())
    assert not r.blended.any()
    # no backend uncertainty: the fallback floor is agreement * depth
    np.testing.assert_allclose(r.output.uncertainty, 0.05 * scene(), rtol=1e-6)
    assert f(out(scene()), "cam", 1.1).reset is None


@pytest.mark.parametrize("stamp, part", [(1.61, "gap of 0.610 s > temporal_max_gap 0.5 s"),
                                         (0.9, "time jumped back 0.100 s")])
def test_gap_and_backward_jump_reset(stamp, part):
    f = TemporalFilter(max_gap=0.5)
    f(out(scene()), "cam", 1.0)
    f(out(scene() + 0.1), "cam", 1.0)  # same stamp: not a jump
    r = f(out(scene() + 0.3), "cam", stamp)
    assert r.reset is not None and part in r.reset
    np.testing.assert_array_equal(r.output.depth, scene() + 0.3)
    assert not r.blended.any()
    assert f(out(scene()), "cam", stamp + 0.1).reset is None  # the state restarted from that frame


def test_state_is_kept_per_frame_id():
    f = TemporalFilter(max_gap=0.5)
    f(out(scene()), "left", 1.0)
    r = f(out(scene() * 2), "right", 1.05)
    assert r.reset == "first frame of camera frame 'right'"
    r = f(out(scene()), "left", 1.1)  # the other camera did not disturb this one
    assert r.reset is None and r.blended.all()
    f.reset("left")
    assert f(out(scene()), "left", 1.2).reset == "first frame of camera frame 'left'"
    assert f(out(scene() * 2), "right", 1.2).reset is None


def test_forgets_the_least_recent_camera_beyond_max_cameras():
    f = TemporalFilter(max_cameras=2)
    for i, name in enumerate(("a", "b", "c")):
        f(out(scene()), name, 1.0 + 0.01 * i)
    assert f(out(scene()), "a", 1.1).reset.startswith("first frame")
    assert f(out(scene()), "c", 1.1).reset is None


def test_changed_size_or_intrinsics_reset():
    f = TemporalFilter()
    f(out(scene()), "cam", 1.0)
    small = np.full((H // 2, W // 2), 10.0, np.float32)
    r = f(out(small, K.scaled(W // 2, H // 2)), "cam", 1.1)
    assert r.reset == f"image size changed from {W}x{H} to {W // 2}x{H // 2}"
    f(out(scene()), "cam", 1.2)
    other = Intrinsics(fx=90.0, fy=90.0, cx=K.cx, cy=K.cy, width=W, height=H)
    r = f(out(scene(), other), "cam", 1.3)
    assert r.reset.startswith("intrinsics changed")


def test_static_noisy_input_converges_and_the_std_drops():
    rng = np.random.default_rng(0)
    truth = scene()
    f = TemporalFilter(max_gap=0.5, agreement=0.05, max_weight=8)
    single, filtered = [], []
    for i in range(30):
        noisy = truth * (1 + rng.normal(0, 0.01, truth.shape)).astype(np.float32)
        r = f(out(noisy), "cam", 0.1 * i)
        single.append(noisy)
        filtered.append(r.output.depth)
    single_std = np.std(single[10:], axis=0).mean()
    filtered_std = np.std(filtered[10:], axis=0).mean()
    assert filtered_std < 0.5 * single_std, (filtered_std, single_std)
    assert r.blended.mean() > 0.99
    assert np.abs(filtered[-1] - truth).mean() < 0.5 * np.abs(single[-1] - truth).mean()
    # blended pixels report less uncertainty than the single-frame floor
    assert np.median(r.output.uncertainty) < 0.05 * 5.0


def test_a_moving_object_falls_back_to_the_single_frame_depth_with_raised_uncertainty():
    f = TemporalFilter(max_gap=0.5)
    for i in range(5):
        f(out(scene()), "cam", 0.1 * i)
    moved = np.full((H, W), 10.0, np.float32)
    moved[20:40, 40:60] = 5.0  # the box moved 10 px right
    r = f(out(moved), "cam", 0.5)
    changed = np.abs(moved - scene()) > 1
    np.testing.assert_array_equal(r.output.depth[changed], moved[changed])
    assert not r.blended[changed].any() and r.blended[~changed].all()
    assert np.all(r.output.uncertainty[changed] >= 4.9)  # |d_prev - d_cur| = 5 m
    assert np.all(r.output.uncertainty[~changed] < 0.05 * 5)


def test_lidar_disagreement_vetoes_the_prior_around_the_return():
    f = TemporalFilter(lidar_agreement=0.05, lidar_radius=2, agreement=0.5)
    f(out(scene()), "cam", 0.0)
    cur = scene()
    cur[10, 10] = 12.0  # within the (loose) agreement band of the single-frame output ...
    sparse = np.zeros((H, W), np.float32)
    sparse[10, 10] = 12.0  # ... but the LiDAR says the surface moved: 20 % off
    sparse[50, 70] = 10.1  # an agreeing return changes nothing
    r = f(out(cur, sparse=sparse), "cam", 0.1)
    assert not r.blended[8:13, 8:13].any() and r.blended[7, 7] and r.blended[13, 13]
    assert r.output.depth[10, 10] == 12.0 and r.output.uncertainty[10, 10] >= 2.0
    assert r.blended[50, 70]


def test_ego_motion_warps_the_previous_depth():
    f = TemporalFilter(max_gap=0.5)
    wall = np.full((H, W), 10.0, np.float32)
    f(out(wall), "cam", 0.0)
    # the camera moved 1 m forward: the wall is at 9 m; with the motion the prior agrees ...
    T = make_transform(np.eye(3), np.array([0.0, 0.0, -1.0]))
    r = f(out(np.full((H, W), 9.0, np.float32)), "cam", 0.1, T_prev_to_curr=T)
    assert r.blended.all()  # forward motion: everything was in view, the warp's cracks are filled
    np.testing.assert_allclose(r.output.depth, 9.0)
    # moving back 1 m: the border that was outside the previous view falls back
    T_back = make_transform(np.eye(3), np.array([0.0, 0.0, 1.0]))
    r = f(out(np.full((H, W), 10.0, np.float32)), "cam", 0.2, T_prev_to_curr=T_back)
    assert not r.blended[0, :].any() and not r.blended[:, 0].any()
    assert r.blended[H // 2, W // 2] and r.blended[5:-5, 5:-5].all()
    # without the motion (identity) the 10 m prior disagrees by 11 %: everything falls back
    f.reset()
    f(out(wall), "cam", 0.0)
    assert not f(out(np.full((H, W), 9.0, np.float32)), "cam", 0.1).blended.any()


def test_backend_uncertainty_shrinks_where_blended():
    f = TemporalFilter(max_weight=4)
    u = np.full((H, W), 0.2, np.float32)
    for i in range(6):
        r = f(out(scene(), uncertainty=u), "cam", 0.1 * i)
    np.testing.assert_allclose(r.output.uncertainty, 0.1, rtol=1e-6)  # 0.2 / sqrt(4)


def test_bad_arguments():
    with pytest.raises(ValueError, match="max_gap"):
        TemporalFilter(max_gap=0)
    with pytest.raises(ValueError, match="max_weight"):
        TemporalFilter(max_weight=0.5)
    f = TemporalFilter()
    with pytest.raises(FrameError, match="not finite"):
        f(out(scene()), "cam", float("nan"))
    with pytest.raises(FrameError, match="needs the intrinsics"):
        f(out(scene(), intrinsics=None), "cam", 0.0, T_prev_to_curr=np.eye(4))
    f(out(scene()), "cam", 0.0)
    with pytest.raises(ValueError, match="rotation"):
        f(out(scene()), "cam", 0.1, T_prev_to_curr=np.diag([2.0, 1, 1, 1]))


def test_previous_is_the_warped_state_or_none_where_the_frame_would_reset(monkeypatch):
    import depth_diffusion_ros.inference.temporal as temporal
    from depth_diffusion_ros.geometry.warp import forward_warp_depth

    f = TemporalFilter(max_gap=0.5)
    assert f.previous("cam", 0.0, (H, W), K) is None  # no state yet
    f(out(scene()), "cam", 0.0)
    np.testing.assert_array_equal(f.previous("cam", 0.1, (H, W), K), scene())  # identity: the state itself
    for stamp, shape, k in ((0.7, (H, W), K), (-0.1, (H, W), K), (0.1, (H, W + 2), K),
                            (0.1, (H, W), Intrinsics(70.0, 70.0, K.cx, K.cy, W, H))):
        assert f.previous("cam", stamp, shape, k) is None  # gap, backward jump, size, intrinsics
    assert f.previous("other", 0.1, (H, W), K) is None
    # a known motion (1 m forward): the forward warp of the stored depth, computed once for the frame
    calls = []
    real = temporal.forward_warp_indices
    monkeypatch.setattr(temporal, "forward_warp_indices", lambda *a, **kw: calls.append(1) or real(*a, **kw))
    T = make_transform(np.eye(3), np.array([0.0, 0.0, -1.0]))  # noqa: N806
    prior = f.previous("cam", 0.1, (H, W), K, T)
    np.testing.assert_array_equal(prior, forward_warp_depth(scene(), T, K, fill_cracks=True)[0])
    assert 8.9 < np.median(prior) < 9.1
    prior[:] = 0  # a copy: the state is untouched
    r = f(out(np.full((H, W), 9.0, np.float32)), "cam", 0.1, T_prev_to_curr=T)
    assert len(calls) == 1  # the filter reused the warp of previous()
    reference = TemporalFilter(max_gap=0.5)
    reference(out(scene()), "cam", 0.0)
    np.testing.assert_array_equal(r.output.depth, reference(out(np.full((H, W), 9.0, np.float32)), "cam", 0.1,
                                                            T_prev_to_curr=T).output.depth)


def test_previous_with_the_sparse_depth_vetoes_near_a_disagreeing_return():
    f = TemporalFilter(max_gap=0.5, lidar_radius=2)
    f(out(scene()), "cam", 0.0)
    sparse = np.zeros((H, W), np.float32)
    sparse[10, 10] = 10.2  # agrees (2 %): kept
    sparse[30, 40] = 9.0  # the 5 m box moved away here: vetoed with its 5x5 neighbourhood
    prior = f.previous("cam", 0.1, (H, W), K, None, sparse)
    assert (prior[28:33, 38:43] == 0).all() and (prior[27, 38:43] == 5.0).all() and prior[30, 43] == 5.0
    assert prior[10, 10] == 10.0 and (prior > 0).sum() == H * W - 25
    np.testing.assert_array_equal(f.previous("cam", 0.1, (H, W), K), scene())  # the state untouched
