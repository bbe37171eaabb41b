"""Qualitative figures: colourised depth and a stacked RGB | sparse | prediction | GT | error panel."""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Union

import cv2
import numpy as np


def _valid(depth: np.ndarray) -> np.ndarray:
    d = np.asarray(depth, dtype=np.float32)
    return np.isfinite(d) & (d > 0)


def depth_range(*depths: Optional[np.ndarray]) -> tuple[float, float]:
    """(min, max) over the valid pixels of the given depth maps (2nd / 98th percentiles, robust).

    Returns (0, 1) when no map has a valid pixel.
    """
    vals = [np.asarray(d, np.float32)[_valid(d)] for d in depths if d is not None]
    vals = [v for v in vals if v.size]
    if not vals:
        return 0.0, 1.0
    allv = np.concatenate(vals)
    lo, hi = np.percentile(allv, [2, 98])
    if hi <= lo:
        hi = lo + 1e-3
    return float(lo), float(hi)


def colorize_depth(
    depth: np.ndarray,
    min_depth: Optional[float] = None,
    max_depth: Optional[float] = None,
    colormap: int = cv2.COLORMAP_TURBO,
    near_is_warm: bool = True,
) -> np.ndarray:
    """Colour a depth map for viewing.

    Args:
        depth: (H, W) metres; 0 / NaN / inf / negative = invalid.
        min_depth, max_depth: colour range in metres; None = robust range of this map (pass the
            same range to several maps to compare them).
        colormap: an OpenCV colormap id (default TURBO).
        near_is_warm: near pixels red, far pixels blue (TURBO) when True.

    Returns:
        (H, W, 3) uint8 RGB, black where invalid.

    Raises:
        ValueError: depth not 2-D.
    """
    d = np.asarray(depth, dtype=np.float32)
    if d.ndim != 2:
        raise ValueError(f"depth must be (H, W), got shape {d.shape}")
    valid = _valid(d)
    if min_depth is None or max_depth is None:
        lo, hi = depth_range(d)
        min_depth = lo if min_depth is None else min_depth
        max_depth = hi if max_depth is None else max_depth
    span = max(float(max_depth) - float(min_depth), 1e-6)
    t = np.clip((np.nan_to_num(d) - float(min_depth)) / span, 0.0, 1.0)
    if near_is_warm:
        t = 1.0 - t
    bgr = cv2.applyColorMap((t * 255).astype(np.uint8), colormap)
    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    rgb[~valid] = 0
    return rgb


def _label(panel: np.ndarray, text: str) -> np.ndarray:
    h = panel.shape[0]
    scale = max(0.4, min(1.0, h / 400.0))
    org = (6, int(18 * scale) + 6)
    cv2.putText(panel, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(panel, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)
    return panel


def error_figure(
    rgb: np.ndarray,
    sparse: Optional[np.ndarray],
    pred: np.ndarray,
    gt: Optional[np.ndarray],
    out_path: Union[str, Path, None],
    max_error: Optional[float] = None,
) -> np.ndarray:
    """Write a PNG with five panels stacked vertically (KITTI frames are wide).

    Panels: RGB | sparse input (points dilated 3x3 for visibility) | prediction | ground truth |
    absolute error ``|pred - gt|`` on valid gt pixels (INFERNO, 0 .. max_error). Depth panels
    share one colour range taken from gt (or pred when gt is None). Each panel has a label.

    Args:
        rgb: (H, W, 3) uint8 RGB.
        sparse: (H, W) metres, 0 = missing, or None (monocular: the panel is left grey).
        pred: (H, W) metres.
        gt: (H, W) metres, 0 = missing, or None (the GT and error panels are left grey).
        out_path: PNG path (parent folders are created); None = do not write.
        max_error: top of the error colour range in metres; None = 98th percentile of the error.

    Returns:
        the figure, (5 H, W, 3) uint8 RGB.

    Raises:
        ValueError: sizes differ. OSError: the file cannot be written.
    """
    img = np.asarray(rgb)
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise ValueError(f"rgb must be (H, W, 3) uint8, got shape {img.shape} dtype {img.dtype}")
    h, w = img.shape[:2]
    for name, a in (("sparse", sparse), ("pred", pred), ("gt", gt)):
        if a is not None and np.asarray(a).shape != (h, w):
            raise ValueError(f"{name} shape {np.asarray(a).shape} differs from rgb size {(h, w)}")
    lo, hi = depth_range(gt if gt is not None else pred)
    grey = np.full((h, w, 3), 64, np.uint8)

    if sparse is not None:
        s = np.nan_to_num(np.asarray(sparse, np.float32))
        s = np.where(s > 0, s, 0).astype(np.float32)
        # Grey dilation keeps the value of a neighbouring point; fine for viewing only.
        s_vis = cv2.dilate(s, np.ones((3, 3), np.uint8))
        sparse_panel = colorize_depth(s_vis, lo, hi)
    else:
        sparse_panel = grey.copy()
    pred_panel = colorize_depth(pred, lo, hi)
    if gt is not None:
        g = np.asarray(gt, np.float32)
        gv = _valid(g)
        gt_panel = colorize_depth(g, lo, hi)
        err = np.zeros((h, w), np.float32)
        p = np.nan_to_num(np.asarray(pred, np.float32))
        err[gv] = np.abs(p[gv] - g[gv])
        top = max_error if max_error is not None else (float(np.percentile(err[gv], 98)) if gv.any() else 1.0)
        top = max(top, 1e-6)
        e8 = (np.clip(err / top, 0, 1) * 255).astype(np.uint8)
        err_panel = cv2.cvtColor(cv2.applyColorMap(e8, cv2.COLORMAP_INFERNO), cv2.COLOR_BGR2RGB)
        err_panel[~gv] = 0
        err_label = f"|error| 0-{top:.2f} m"
    else:
        gt_panel = grey.copy()
        err_panel = grey.copy()
        err_label = "|error| (no ground truth)"

    panels = [
        _label(img.copy(), "RGB"),
        _label(sparse_panel, "sparse input" if sparse is not None else "sparse input (none)"),
        _label(pred_panel, f"prediction {lo:.1f}-{hi:.1f} m"),
        _label(gt_panel, "ground truth" if gt is not None else "ground truth (none)"),
        _label(err_panel, err_label),
    ]
    fig = np.concatenate(panels, axis=0)
    if out_path is not None:
        path = Path(out_path)
        path.parent.mkdir(parents=True, exist_ok=True)
        if not cv2.imwrite(str(path), cv2.cvtColor(fig, cv2.COLOR_RGB2BGR)):
            raise OSError(f"cannot write figure {path}")
    return fig
