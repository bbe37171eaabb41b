"""Figures: colourised depth and the stacked error figure on the real KITTI frame."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from depth_diffusion_ros.evaluation.figures import colorize_depth, error_figure
from depth_diffusion_ros.geometry.depth_codecs import read_kitti_depth_png


def test_colorize_depth_invalid_black_and_consistent_range():
    d = np.array([[0.0, 1.0, 5.0], [np.nan, 10.0, np.inf]], dtype=np.float32)
    c = colorize_depth(d, 1.0, 10.0)
    assert c.shape == (2, 3, 3) and c.dtype == np.uint8
    assert not c[0, 0].any() and not c[1, 0].any() and not c[1, 2].any()
    assert c[0, 1].any() and c[1, 1].any()
    # Same value, same range -> same colour across maps; near differs from far.
    c2 = colorize_depth(np.full((1, 1), 5.0, np.float32), 1.0, 10.0)
    np.testing.assert_array_equal(c2[0, 0], c[0, 2])
    assert not np.array_equal(c[0, 1], c[1, 1])
    with pytest.raises(ValueError, match=r"\(H, W\)"):
        colorize_depth(np.zeros((2, 2, 2)))


def test_error_figure_written_with_expected_size(tmp_path, kitti_raw_dir):
    dc = kitti_raw_dir / "depth_completion"
    rgb = cv2.cvtColor(cv2.imread(str(kitti_raw_dir / "raw" / "sync_rect" / "cam_02.png")), cv2.COLOR_BGR2RGB)
    sparse = read_kitti_depth_png(dc / "velodyne_raw_image_02.png")
    gt = read_kitti_depth_png(dc / "groundtruth_image_02.png")
    pred = np.where(gt > 0, gt * 1.05, 10.0).astype(np.float32)
    out = tmp_path / "figs" / "frame.png"
    fig = error_figure(rgb, sparse, pred, gt, out)
    assert out.is_file()
    back = cv2.imread(str(out))
    assert back.shape == (5 * 375, 1242, 3)
    assert fig.shape == (5 * 375, 1242, 3)
    # The first panel is the RGB image (except where the label is drawn).
    np.testing.assert_array_equal(fig[100:375, :, :], rgb[100:375])
    # The error panel is black where gt is missing and non-black on some gt pixels.
    err = fig[4 * 375 + 60:]  # below the label
    g = gt[60:]
    assert not err[g == 0].any()
    assert err[g > 0].any()


def test_error_figure_without_sparse_or_gt(tmp_path):
    rgb = np.zeros((40, 60, 3), np.uint8)
    pred = np.linspace(1, 5, 40 * 60, dtype=np.float32).reshape(40, 60)
    fig = error_figure(rgb, None, pred, None, tmp_path / "m.png")
    assert fig.shape == (200, 60, 3)
    assert cv2.imread(str(tmp_path / "m.png")).shape == (200, 60, 3)
    with pytest.raises(ValueError, match="pred"):
        error_figure(rgb, None, pred[:10], None, None)
