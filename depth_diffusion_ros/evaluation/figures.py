"""Qualitative figures: colourised depth and the RGB | sparse | prediction | GT | error figure.

The error figure lays its five panels out in a grid (two columns, so a KITTI frame gives a wide
figure, not a 1:5 strip), each with a caption strip under it: the panel's name and, for depth and
error panels, a colour bar with its range in metres. Text is drawn once, in white on the dark
caption strip (no outline that thickens or shifts it), at a size scaled with the panel. Panels
with few valid pixels (a LiDAR-like sparse input, held-out LiDAR points as ground truth and the
error on them) are dilated for viewing: each pixel shows the nearest depth within a small square
(the z-buffer rule) and the largest error, so single pixels do not vanish when the figure is
scaled down; the caption says so.
"""
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


#: Panels with fewer valid pixels than this fraction are dilated for viewing.
SPARSE_FRACTION = 0.1
#: Caption text colour (RGB) on the caption strip's background.
TEXT_RGB, CAPTION_RGB = (255, 255, 255), (32, 32, 32)
#: Where the error panel has no ground truth.
NO_DATA_RGB = (96, 96, 96)
_FONT = cv2.FONT_HERSHEY_SIMPLEX


def dilation_size(width: int) -> int:
    """Odd side (pixels) of the square a sparse panel is dilated with: ~width / 250, at least 3."""
    return max(3, int(round(width / 250.0)) | 1)


def dilate_sparse(depth: np.ndarray, size: int, nearest: bool = True) -> np.ndarray:
    """Spread each valid pixel of a sparse map over a ``size`` x ``size`` square (for viewing).

    ``nearest``: each pixel takes the smallest valid value around it (depth: the nearest return
    wins, as in a z-buffer); otherwise the largest (errors: the worst one stays visible).
    Returns (H, W) float32, 0 where no valid pixel is within reach.
    """
    d = np.asarray(depth, np.float32)
    valid = _valid(d)
    kernel = np.ones((size, size), np.uint8)
    if nearest:
        spread = cv2.erode(np.where(valid, d, np.inf).astype(np.float32), kernel)
        return np.where(np.isfinite(spread), spread, 0.0).astype(np.float32)
    return cv2.dilate(np.where(valid, d, 0.0).astype(np.float32), kernel)


def _font_scale(width: int) -> float:
    return max(0.4, min(1.2, width / 1000.0))


def _text(img: np.ndarray, text: str, org: tuple[int, int], scale: float) -> None:
    cv2.putText(img, text, org, _FONT, scale, TEXT_RGB, max(1, int(round(scale * 1.5))), cv2.LINE_AA)


def colour_bar(width: int, lo: float, hi: float, colormap: int, near_is_warm: bool, unit: str = "m") -> np.ndarray:
    """A horizontal colour bar strip (h, width, 3) uint8 for the range lo..hi with tick labels."""
    scale = _font_scale(width)
    (_, th), _ = cv2.getTextSize("0", _FONT, scale, 1)
    bar_h, pad = max(8, th), max(4, th // 2)
    strip = np.full((bar_h + th + 3 * pad, width, 3), CAPTION_RGB, np.uint8)
    x0, x1 = pad, width - pad
    ramp = np.linspace(0.0, 1.0, max(2, x1 - x0), dtype=np.float32)
    t = 1.0 - ramp if near_is_warm else ramp
    row = cv2.cvtColor(cv2.applyColorMap((t * 255).astype(np.uint8)[None], colormap), cv2.COLOR_BGR2RGB)[0]
    strip[pad:pad + bar_h, x0:x0 + row.shape[0]] = row[None]
    for k in range(5):
        value = lo + (hi - lo) * k / 4
        label = f"{value:.3g} {unit}" if k in (0, 4) else f"{value:.3g}"
        (tw, _), _ = cv2.getTextSize(label, _FONT, scale, 1)
        x = int(x0 + (x1 - x0) * k / 4 - tw * k / 4)
        _text(strip, label, (x, pad + bar_h + pad + th), scale)
    return strip


def _captioned(panel: np.ndarray, title: str, bar: Optional[np.ndarray] = None) -> np.ndarray:
    """``panel`` with a caption strip under it: the title, then the colour bar (if any)."""
    h, w = panel.shape[:2]
    scale = _font_scale(w)
    (_, th), base = cv2.getTextSize(title, _FONT, scale, 1)
    title_strip = np.full((th + base + 12, w, 3), CAPTION_RGB, np.uint8)
    _text(title_strip, title, (8, th + 6), scale)
    parts = [panel, title_strip] + ([bar] if bar is not None else [])
    return np.concatenate(parts, axis=0)


def _grid(panels: list[np.ndarray], columns: int = 2) -> np.ndarray:
    """Panels (same width) in rows of ``columns``, each row as tall as its tallest; gaps dark."""
    rows = []
    w = panels[0].shape[1]
    for i in range(0, len(panels), columns):
        row = panels[i:i + columns]
        hmax = max(p.shape[0] for p in row)
        cells = [np.concatenate([p, np.full((hmax - p.shape[0], w, 3), CAPTION_RGB, np.uint8)]) for p in row]
        cells += [np.full((hmax, w, 3), CAPTION_RGB, np.uint8)] * (columns - len(row))
        rows.append(np.concatenate(cells, axis=1))
    return np.concatenate(rows, axis=0)


def _viewable(depth: np.ndarray, size: int, nearest: bool = True) -> tuple[np.ndarray, bool]:
    """(map to show, dilated?): a map sparser than SPARSE_FRACTION is dilated (:func:`dilate_sparse`)."""
    d = np.asarray(depth, np.float32)
    if _valid(d).mean() < SPARSE_FRACTION:
        return dilate_sparse(d, size, nearest), True
    return d, False


def _error_panel(pred: np.ndarray, gt: np.ndarray, max_error: Optional[float],
                 size: int) -> tuple[np.ndarray, str, np.ndarray]:
    """(|pred - gt| coloured with INFERNO on valid gt, caption, colour bar)."""
    h, w = gt.shape
    g = np.asarray(gt, np.float32)
    gv = _valid(g)
    err = np.zeros((h, w), np.float32)
    p = np.nan_to_num(np.asarray(pred, np.float32))
    err[gv] = np.abs(p[gv] - g[gv])
    top = max_error if max_error is not None else (float(np.percentile(err[gv], 98)) if gv.any() else 1.0)
    top = max(top, 1e-6)
    shown, dilated = (dilate_sparse(np.where(gv, err + 1e-9, 0), size, nearest=False), True) \
        if gv.mean() < SPARSE_FRACTION else (err, False)
    shown_valid = shown > 0
    e8 = (np.clip(shown / top, 0, 1) * 255).astype(np.uint8)
    panel = cv2.cvtColor(cv2.applyColorMap(e8, cv2.COLORMAP_INFERNO), cv2.COLOR_BGR2RGB)
    panel[~shown_valid] = NO_DATA_RGB  # grey, so that small errors (INFERNO's black end) stay visible
    caption = "|prediction - ground truth|" + (f" (dilated {size}x{size}; grey: no ground truth)" if dilated
                                                else " (grey: no ground truth)")
    return panel, caption, colour_bar(w, 0.0, top, cv2.COLORMAP_INFERNO, near_is_warm=False)


def error_figure(
    rgb: np.ndarray,
    sparse: Optional[np.ndarray],
    pred: np.ndarray,
    gt: Optional[np.ndarray],
    out_path: Union[str, Path, None],
    max_error: Optional[float] = None,
) -> np.ndarray:
    """Write a PNG of five captioned panels in a two-column grid (see the module docstring).

    Panels: RGB | sparse input; prediction | ground truth; absolute error ``|pred - gt|`` on valid
    gt pixels (INFERNO, 0 .. max_error m). The depth panels share one colour range (TURBO, near =
    red) taken from gt (or pred when gt is None), shown by a colour bar in metres under each;
    sparse panels are dilated for viewing (:func:`dilate_sparse`, said in the caption).

    Args:
        rgb: (H, W, 3) uint8 RGB.
        sparse: (H, W) metres, 0 = missing, or None (monocular: the panel is left grey).
        pred: (H, W) metres.
        gt: (H, W) metres, 0 = missing, or None (the GT and error panels are left grey).
        out_path: PNG path (parent folders are created); None = do not write.
        max_error: top of the error colour range in metres; None = 98th percentile of the error.

    Returns:
        the figure, uint8 RGB: two panels (W wide each) per row, three rows, each panel with its
        caption strip; the RGB image is unchanged in the top-left H x W pixels.

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
    size = dilation_size(w)
    panels = [_captioned(img.copy(), "RGB"), _depth_panel(sparse, "sparse input", lo, hi, size, (h, w)),
              _depth_panel(pred, "prediction", lo, hi, size, (h, w)),
              _depth_panel(gt, "ground truth", lo, hi, size, (h, w))]
    if gt is not None:
        err_panel, err_caption, err_bar = _error_panel(pred, gt, max_error, size)
        panels.append(_captioned(err_panel, err_caption, err_bar))
    else:
        panels.append(_captioned(np.full((h, w, 3), 64, np.uint8), "|prediction - ground truth| (no ground truth)"))
    return _write(_grid(panels), out_path)


def _depth_panel(depth: Optional[np.ndarray], name: str, lo: float, hi: float, size: int,
                 hw: tuple[int, int]) -> np.ndarray:
    """A captioned TURBO depth panel on [lo, hi] m (dilated when sparse); grey for None."""
    if depth is None:
        return _captioned(np.full(hw + (3,), 64, np.uint8), f"{name} (none)")
    shown, dilated = _viewable(np.nan_to_num(np.asarray(depth, np.float32)), size)
    title = name + (f" (dilated {size}x{size} for viewing)" if dilated else "")
    bar = colour_bar(hw[1], lo, hi, cv2.COLORMAP_TURBO, near_is_warm=True)
    return _captioned(colorize_depth(shown, lo, hi), title, bar)


def _write(fig: np.ndarray, out_path: Union[str, Path, None]) -> np.ndarray:
    if out_path is not None:
        path = Path(out_path)
        path.parent.mkdir(parents=True, exist_ok=True)
        if not cv2.imwrite(str(path), cv2.cvtColor(fig, cv2.COLOR_RGB2BGR)):
            raise OSError(f"cannot write figure {path}")
    return fig


def comparison_figure(rgb: np.ndarray, depths: list[tuple[str, Optional[np.ndarray]]],
                      out_path: Union[str, Path, None], columns: int = 1) -> np.ndarray:
    """RGB, then one captioned depth panel per (name, (H, W) metres) in ``depths`` (e.g. several
    models' predictions and the LiDAR), in a grid of ``columns``; one colour range (TURBO, near =
    red) for every panel, from the last map (the reference). Returns the uint8 RGB figure and
    writes it as PNG to ``out_path`` when given. Raises ValueError for sizes that differ."""
    img = np.asarray(rgb)
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise ValueError(f"rgb must be (H, W, 3) uint8, got shape {img.shape} dtype {img.dtype}")
    h, w = img.shape[:2]
    for name, d in depths:
        if d is not None and np.asarray(d).shape != (h, w):
            raise ValueError(f"{name}: shape {np.asarray(d).shape} differs from rgb size {(h, w)}")
    ref = [d for _, d in depths if d is not None]
    lo, hi = depth_range(ref[-1] if ref else None)
    size = dilation_size(w)
    panels = [_captioned(img.copy(), "RGB")] + [_depth_panel(d, name, lo, hi, size, (h, w)) for name, d in depths]
    return _write(_grid(panels, columns), out_path)
