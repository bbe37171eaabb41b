"""Figures: colourised depth and the error figure (grid, captions, colour bars, dilated sparse panels)
on the real KITTI frame."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from depth_diffusion_ros.evaluation.figures import CAPTION_RGB, NO_DATA_RGB, colorize_depth, dilate_sparse, error_figure
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


def test_error_figure_grid_with_captions_and_colour_bars(tmp_path, kitti_raw_dir):
    dc = kitti_raw_dir / "depth_completion"
    rgb = cv2.cvtColor(cv2.imread(str(kitti_raw_dir / "raw" / "sync_rect" / "cam_02.png")), cv2.COLOR_BGR2RGB)
    sparse = read_kitti_depth_png(dc / "velodyne_raw_image_02.png")
    gt = read_kitti_depth_png(dc / "groundtruth_image_02.png")
    pred = np.where(gt > 0, gt * 1.05, 10.0).astype(np.float32)
    out = tmp_path / "figs" / "frame.png"
    fig = error_figure(rgb, sparse, pred, gt, out)
    h, w = gt.shape
    assert out.is_file() and cv2.imread(str(out)).shape == fig.shape
    # two columns of W, three rows of panel + caption: a wide figure, not a 1:5 strip of panels
    assert fig.shape[1] == 2 * w and 3 * h < fig.shape[0] < 3 * h + 3 * 200
    np.testing.assert_array_equal(fig[:h, :w], rgb)  # the RGB panel is untouched (no text on it)
    row = (fig.shape[0]) // 3
    # captions are drawn once, white on the caption strip: no black outline pixels around the text
    caption = fig[h:row, :w]
    assert (caption[..., 0] == caption[..., 1]).all() and (caption[..., 1] == caption[..., 2]).all()
    assert caption.min() >= CAPTION_RGB[0] and caption.max() > 200
    # the prediction panel (row 2, left) carries a TURBO colour bar under it: many distinct colours
    bar_rows = fig[row + h:2 * row, :w].reshape(-1, 3)
    assert len(np.unique(bar_rows, axis=0)) > 100


def test_sparse_panels_are_dilated_so_they_do_not_look_empty(tmp_path, kitti_raw_dir):
    dc = kitti_raw_dir / "depth_completion"
    rgb = cv2.cvtColor(cv2.imread(str(kitti_raw_dir / "raw" / "sync_rect" / "cam_02.png")), cv2.COLOR_BGR2RGB)
    gt_dense = read_kitti_depth_png(dc / "groundtruth_image_02.png")
    held = np.zeros_like(gt_dense)
    ys, xs = np.nonzero(gt_dense)
    keep = np.random.default_rng(0).random(ys.size) < 0.03  # ~0.6 % of the image, like 10 % held-out LiDAR
    held[ys[keep], xs[keep]] = gt_dense[ys[keep], xs[keep]]
    pred = np.where(gt_dense > 0, gt_dense * 1.05, 10.0).astype(np.float32)
    fig = error_figure(rgb, None, pred, held, None)
    h, w = held.shape
    row = fig.shape[0] // 3
    gt_panel = fig[row:row + h, w:]
    err_panel = fig[2 * row:2 * row + h, :w]
    raw_fraction = (held > 0).mean()
    assert raw_fraction < 0.01
    shown = gt_panel.any(axis=2).mean()
    assert shown > 5 * raw_fraction  # each point covers a square, not one pixel
    err_shown = (np.abs(err_panel.astype(int) - NO_DATA_RGB).sum(axis=2) > 0).mean()
    assert err_shown > 5 * raw_fraction
    # the nearest depth wins where dilated squares meet (z-buffer rule)
    d = dilate_sparse(np.array([[0, 0, 0], [0, 5.0, 0], [0, 0, 2.0]], np.float32), 3)
    assert d[1, 1] == 2.0 and d[0, 0] == 5.0 and (d > 0).all()
    e = dilate_sparse(np.array([[0, 0, 0], [0, 5.0, 0], [0, 0, 2.0]], np.float32), 3, nearest=False)
    assert e[1, 1] == 5.0


def test_error_figure_without_sparse_or_gt(tmp_path):
    rgb = np.zeros((40, 60, 3), np.uint8)
    pred = np.linspace(1, 5, 40 * 60, dtype=np.float32).reshape(40, 60)
    fig = error_figure(rgb, None, pred, None, tmp_path / "m.png")
    assert fig.shape[1] == 120 and fig.shape[0] > 3 * 40
    assert cv2.imread(str(tmp_path / "m.png")).shape == fig.shape
    with pytest.raises(ValueError, match="pred"):
        error_figure(rgb, None, pred[:10], None, None)
