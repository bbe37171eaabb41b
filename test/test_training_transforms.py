"""Augmentation keeps image, sparse input, GT and intrinsics aligned."""
from __future__ import annotations

import numpy as np
import pytest

from depth_diffusion_ros.geometry.intrinsics import Intrinsics
from depth_diffusion_ros.geometry.projection import project_points_to_depth
from training.transforms import (
    ColorJitter,
    Compose,
    RandomCrop,
    RandomRotation,
    RandomScale,
    Resize,
    SparseDropout,
    build_transforms,
    crop,
    hflip,
    rotate,
    scatter_depth,
)

H, W = 120, 200
K0 = np.array([[150.0, 0, 97.3], [0, 150.0, 55.8], [0, 0, 1]])


def _points(n=60, seed=0):
    rng = np.random.default_rng(seed)
    z = rng.uniform(3, 30, n)
    u = rng.uniform(5, W - 6, n)
    v = rng.uniform(5, H - 6, n)
    x = (u - K0[0, 2]) * z / K0[0, 0]
    y = (v - K0[1, 2]) * z / K0[1, 1]
    return np.stack([x, y, z], 1)


def _frame_from_points(pts, K=K0, h=H, w=W):
    intr = Intrinsics.from_matrix(K, w, h)
    sparse = project_points_to_depth(pts, intr)
    rgb = np.zeros((h, w, 3), np.uint8)
    rgb[sparse > 0] = 255  # the image marks where the LiDAR points are
    return {"rgb": rgb, "sparse_depth": sparse, "gt_depth": sparse.copy(), "K": K.copy()}


def _pixels(depth):
    v, u = np.nonzero(depth > 0)
    return set(zip(v.tolist(), u.tolist()))


def test_hflip_point_stays_on_its_pixel_and_cx_mirrors():
    pts = _points()
    f = _frame_from_points(pts)
    g = hflip(f)
    assert g["K"][0, 2] == pytest.approx(W - 1 - K0[0, 2])
    for v, u in _pixels(f["sparse_depth"]):
        assert g["sparse_depth"][v, W - 1 - u] == f["sparse_depth"][v, u]
        assert g["rgb"][v, W - 1 - u, 0] == 255
    # Geometric consistency: the mirrored scene (x -> -x) projected with the new K.
    mirrored = pts * np.array([-1.0, 1.0, 1.0])
    expected = project_points_to_depth(mirrored, Intrinsics.from_matrix(g["K"], W, H))
    assert len(_pixels(expected) ^ _pixels(g["sparse_depth"])) <= 2  # only exact half-pixel ties may differ
    np.testing.assert_array_equal(hflip(g)["sparse_depth"], f["sparse_depth"])


def test_crop_updates_principal_point_and_keeps_alignment():
    pts = _points()
    f = _frame_from_points(pts)
    g = crop(f, 17, 9, 150, 100)
    np.testing.assert_allclose(g["K"][:2, 2], K0[:2, 2] - [17, 9])
    expected = project_points_to_depth(pts, Intrinsics.from_matrix(g["K"], 150, 100))
    np.testing.assert_array_equal(g["sparse_depth"], expected)
    assert np.all(g["rgb"][g["sparse_depth"] > 0, 0] == 255)
    rc = RandomCrop((100, 150), vertical="bottom")(f, np.random.default_rng(0))
    assert rc["rgb"].shape == (100, 150, 3) and rc["K"][1, 2] == pytest.approx(K0[1, 2] - (H - 100))
    with pytest.raises(ValueError, match="larger"):
        RandomCrop((H + 1, W))(f, np.random.default_rng(0))


@pytest.mark.parametrize("scale", [0.75, 1.3])
def test_scale_is_zero_preserving_and_consistent_with_k(scale):
    pts = _points(80, seed=1)
    f = _frame_from_points(pts)
    g = Resize((int(round(H * scale)), int(round(W * scale))))(f)
    h2, w2 = g["rgb"].shape[:2]
    sd = g["sparse_depth"]
    # Values are copied, never interpolated or invented; at most as many points as before.
    assert set(np.unique(sd[sd > 0])) <= set(np.unique(f["sparse_depth"][f["sparse_depth"] > 0]))
    assert np.count_nonzero(sd) <= np.count_nonzero(f["sparse_depth"])
    assert np.count_nonzero(sd) >= 0.9 * np.count_nonzero(f["sparse_depth"])
    # The scene projected with the updated K lands on the same pixels (+-1 px double rounding).
    exp = project_points_to_depth(pts, Intrinsics.from_matrix(g["K"], w2, h2))
    ev, eu = np.nonzero(exp)
    for v, u in zip(ev, eu):
        win = sd[max(0, v - 1):v + 2, max(0, u - 1):u + 2]
        assert np.any(np.isclose(win, exp[v, u])), (v, u)
    # K follows geometry.Intrinsics.scaled (the shared half-pixel convention).
    ref = Intrinsics.from_matrix(K0, W, H).scaled(w2, h2)
    np.testing.assert_allclose(g["K"], ref.K, atol=1e-9)


def test_dense_gt_uses_nearest_values_only():
    rng = np.random.default_rng(2)
    gt = rng.uniform(1, 5, (H, W)).astype(np.float32)
    f = {"rgb": np.zeros((H, W, 3), np.uint8), "sparse_depth": None, "gt_depth": gt, "K": K0.copy()}
    g = RandomScale((1.4, 1.4))(f, rng)
    assert np.count_nonzero(g["gt_depth"]) == g["gt_depth"].size  # dense stays dense (no scatter holes)
    assert np.isin(g["gt_depth"], gt).all()


def test_rotation_moves_points_with_image_and_principal_point():
    f = _frame_from_points(_points(40, seed=3))
    g = rotate(f, 2.0)
    assert g["rgb"].shape == f["rgb"].shape
    sd = g["sparse_depth"]
    assert np.count_nonzero(sd) >= 0.9 * np.count_nonzero(f["sparse_depth"])
    assert np.all(g["rgb"][sd > 0, 0] > 60)  # the marker is under every moved point
    a = np.deg2rad(2.0)
    c = np.array([(W - 1) / 2, (H - 1) / 2])
    d = K0[:2, 2] - c
    R = np.array([[np.cos(a), np.sin(a)], [-np.sin(a), np.cos(a)]])  # OpenCV: counter-clockwise on screen
    np.testing.assert_allclose(g["K"][:2, 2], c + R @ d, atol=1e-9)
    same = RandomRotation(0.0)(f, np.random.default_rng(0))
    np.testing.assert_array_equal(same["sparse_depth"], f["sparse_depth"])


def test_full_pipeline_keeps_marker_alignment_on_real_frame(kitti_raw_dir):
    from training.datasets.kitti import KittiFileList, torch_kitti_frames

    f = KittiFileList(torch_kitti_frames(kitti_raw_dir, cameras=[2])).load_frame(0)
    f["rgb"] = np.zeros_like(f["rgb"])
    f["rgb"][f["sparse_depth"] > 0] = 255  # paint the LiDAR pixels into the image
    t = build_transforms([
        {"type": "random_scale", "scale_range": [1.0, 1.2]},
        {"type": "random_rotation", "max_degrees": 1.0},
        {"type": "random_crop", "size": [256, 512], "vertical": "bottom"},
        {"type": "random_hflip", "p": 1.0},
    ])
    g = t(f, np.random.default_rng(5))
    m = g["sparse_depth"] > 0
    assert m.sum() > 3000
    r = g["rgb"][..., 0].astype(np.float64)
    # Two bilinear warps spread each 1-px marker, but it stays centred on its point:
    assert np.mean(r[m] > 20) > 0.98
    assert r[m].mean() > 2.0 * np.roll(r, 2, axis=1)[m].mean()  # a 2 px misalignment would fail
    assert r[m].mean() > 2.0 * np.roll(r, 2, axis=0)[m].mean()


def test_color_jitter_touches_rgb_only():
    f = _frame_from_points(_points())
    f["rgb"] = np.full((H, W, 3), 128, np.uint8)
    g = ColorJitter(gamma=(0.5, 0.5), brightness=(1.2, 1.2), color=(1.0, 1.0), p=1.0)(f, np.random.default_rng(0))
    expected = np.clip(((128 / 255) ** 0.5) * 1.2, 0, 1) * 255
    assert abs(int(g["rgb"][0, 0, 0]) - expected) <= 1
    np.testing.assert_array_equal(g["sparse_depth"], f["sparse_depth"])
    np.testing.assert_array_equal(g["K"], f["K"])


def test_sparse_dropout_dropped_points_supervise():
    f = _frame_from_points(_points(200, seed=4))
    f["gt_depth"] = None  # LiDAR only (KITTI object frames)
    g = SparseDropout(keep_range=(0.5, 0.5))(f, np.random.default_rng(1))
    kept, gt, orig = g["sparse_depth"] > 0, g["gt_depth"] > 0, f["sparse_depth"] > 0
    assert not np.any(kept & gt)
    np.testing.assert_array_equal(kept | gt, orig)
    np.testing.assert_array_equal(g["sparse_depth"] + g["gt_depth"], f["sparse_depth"])
    assert 0.35 < kept.sum() / orig.sum() < 0.65


def test_sparse_dropout_weights_the_kept_gt_below_the_dropped_points():
    """gt_weight: 1 at the dropped input points, the given weight at the other GT pixels (e.g.
    accumulated neighbour returns); it reaches the sample, 0 where there is no GT, and weights the
    model's pixel loss."""
    import torch

    from training.datasets.common import frame_to_sample

    f = _frame_from_points(_points(200, seed=4))
    neighbours = np.zeros_like(f["sparse_depth"])
    neighbours[::7, ::5] = 9.0
    f["gt_depth"] = np.where(f["sparse_depth"] > 0, f["sparse_depth"], neighbours)
    g = SparseDropout(keep_range=(0.5, 0.5), gt_weight=0.25)(f, np.random.default_rng(1))
    dropped = (f["sparse_depth"] > 0) & (g["sparse_depth"] == 0)
    other = (g["gt_depth"] > 0) & ~dropped
    assert dropped.any() and other.any()
    assert (g["gt_weight"][dropped] == 1).all() and (g["gt_weight"][other] == 0.25).all()
    sample = frame_to_sample(g)
    w = sample["gt_weight"][0].numpy()
    assert (w[g["gt_depth"] <= 0] == 0).all() and (w[dropped] == 1).all()
    assert "gt_weight" not in SparseDropout(keep_range=(0.5, 0.5))(f, np.random.default_rng(1))
    with pytest.raises(ValueError, match="gt_weight"):
        SparseDropout(gt_weight=1.5)
    # the weights enter the loss: errors only on the down-weighted pixels count a quarter
    from depth_diffusion_ros.models.losses import masked_l1

    pred = torch.zeros(1, 1, 2, 2)
    gt = torch.tensor([[[[1.0, 1.0], [4.0, 4.0]]]])
    weight = torch.tensor([[[[1.0, 1.0], [0.25, 0.25]]]])
    assert float(masked_l1(pred, gt, weight)) == pytest.approx((1 + 1 + 1 + 1) / 2.5)


def test_scatter_nearest_wins_and_build_errors():
    d = np.zeros((4, 4), np.float32)
    d[1, 1], d[1, 2] = 5.0, 3.0
    A = np.array([[0.5, 0, 0], [0, 0.5, 0]])  # both land on pixel (1, 1) after rounding... or (0/1)
    out = scatter_depth(d, A, (2, 2))
    assert np.count_nonzero(out) == 1 and out.max() == 3.0
    with pytest.raises(ValueError, match="unknown type"):
        build_transforms([{"type": "mixup"}])
    with pytest.raises(ValueError, match="random_crop"):
        build_transforms([{"type": "random_crop", "sise": [1, 2]}])
    assert isinstance(build_transforms([{"type": "random_hflip"}]), Compose)


def test_vertical_range_keeps_crops_low_and_cache_returns_same_frame(kitti_raw_dir):
    from training.datasets.kitti import KittiFileList, torch_kitti_frames

    f = _frame_from_points(_points())
    t = RandomCrop((40, 100), vertical_range=(0.75, 1.0))
    for seed in range(20):
        g = t(f, np.random.default_rng(seed))
        y0 = K0[1, 2] - g["K"][1, 2]
        assert 0.75 * (H - 40) - 1 <= y0 <= H - 40
    ds = KittiFileList(torch_kitti_frames(kitti_raw_dir, cameras=[2]), cache=True,
                       transform=build_transforms([{"type": "random_hflip", "p": 1.0}]))
    a, b = ds[0], ds[0]
    assert a["gt_depth"].equal(b["gt_depth"])  # the cached frame is not modified by the transform
    assert len(ds._frames) == 1


def test_classical_fills_are_computed_from_the_final_sparse_input_and_reach_the_sample():
    from depth_diffusion_ros.baselines.fills import prior_fills
    from training.datasets.common import frame_to_sample
    from training.transforms import build_transforms

    rng = np.random.default_rng(0)
    h, w = 48, 64
    sparse = np.where(rng.random((h, w)) < 0.2, rng.uniform(5, 30, (h, w)), 0).astype(np.float32)
    frame = {"rgb": np.zeros((h, w, 3), np.uint8), "sparse_depth": sparse, "gt_depth": sparse.copy(),
             "K": np.eye(3)}
    t = build_transforms([{"type": "sparse_dropout", "keep_range": [0.5, 0.5]},
                          {"type": "classical_fills", "names": ["ip_basic_gaussian", "linear_hull"]}])
    out = t(frame, np.random.default_rng(1))
    np.testing.assert_array_equal(out["priors"], prior_fills(["ip_basic_gaussian", "linear_hull"], out["sparse_depth"]))
    assert (out["sparse_depth"] > 0).sum() < (sparse > 0).sum()  # fills of the kept points, not the full scan
    sample = frame_to_sample(out)
    assert sample["priors"].shape == (2, h, w)
    with pytest.raises(ValueError, match="unknown classical fill"):
        build_transforms([{"type": "classical_fills", "names": ["spline"]}])
