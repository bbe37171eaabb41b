"""Changing the resolution of images and depth maps without mixing measured and empty pixels.

numpy + OpenCV (+ Pillow for the antialiased bicubic of the super-resolution protocol). Depth is
float32 metres with 0 = missing; a sparse map must never be interpolated across empty pixels,
so sparse maps move between resolutions by re-projection or min-pooling, dense ones by
interpolation.

* :func:`resize_rgb` — guidance images to a processing resolution.
* :func:`resample_sparse_depth` — a sparse map to other intrinsics (z-buffer re-projection).
* :func:`downsample_sparse_depth` — nearest return per block (a LiDAR seen at lower resolution).
* :func:`resize_depth_nearest` — a dense prediction back to the input size.
* :func:`bicubic_downsample_depth` — the CDSR degradation (DSR-Diff Sec. 4.1), hole-aware.
* :func:`fill_depth_holes` — nearest-valid fill of a low-resolution depth map.
* :func:`super_resolution_scale` — the integer scale between an image and its LR depth.
"""
from __future__ import annotations

from typing import Optional

import cv2
import numpy as np
from PIL import Image

from depth_diffusion_ros.geometry.intrinsics import Intrinsics
from depth_diffusion_ros.geometry.projection import depth_to_points, project_points_to_depth


def resize_rgb(rgb: np.ndarray, width: int, height: int) -> np.ndarray:
    """Resize an (H, W, 3) uint8 image to (height, width, 3): area averaging when shrinking,
    bilinear when enlarging; the input itself when the size is already right."""
    if rgb.shape[1] == width and rgb.shape[0] == height:
        return rgb
    shrink = width * height < rgb.shape[0] * rgb.shape[1]
    return cv2.resize(rgb, (width, height), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


def resample_sparse_depth(sparse: np.ndarray, src: Intrinsics, dst: Intrinsics) -> np.ndarray:
    """Move a sparse depth map to other intrinsics without mixing measured and empty pixels.

    Valid pixels are unprojected with ``src`` and rendered again with ``dst`` by the z-buffer
    projection (nearest return per pixel), so no depth is interpolated between a LiDAR return
    and an empty pixel, as resizing would. Returns (dst.height, dst.width) float32 metres (the
    input itself when ``src == dst``).
    """
    if src == dst:
        return sparse
    pts = depth_to_points(sparse, src).reshape(-1, 3)
    pts = pts[np.isfinite(pts[:, 2])]
    return project_points_to_depth(pts, dst, min_depth=1e-6)


def downsample_sparse_depth(sparse_depth: np.ndarray, scale: int) -> np.ndarray:
    """Reduce a sparse depth map by an integer ``scale``: each LR pixel keeps the nearest
    (smallest) valid depth of its ``scale x scale`` block, 0 if the block has none (no
    interpolation across missing pixels, as a LiDAR projected at the lower resolution would).

    Args:
        sparse_depth: (H, W) metres, 0/NaN = missing; H, W multiples of ``scale``.
    Returns:
        (H/scale, W/scale) float32 metres.
    Raises:
        ValueError: non-integer scale or sizes not divisible.
    """
    d = np.asarray(sparse_depth, dtype=np.float32)
    s = int(scale)
    if s != scale or s < 1:
        raise ValueError(f"scale must be a positive integer, got {scale}")
    if d.ndim != 2 or d.shape[0] % s or d.shape[1] % s:
        raise ValueError(f"sparse depth {d.shape} must be 2-D with sizes divisible by {s}")
    h, w = d.shape[0] // s, d.shape[1] // s
    blocks = np.where(np.isfinite(d) & (d > 0), d, np.inf).reshape(h, s, w, s)
    out = blocks.min(axis=(1, 3))
    out[~np.isfinite(out)] = 0.0
    return out.astype(np.float32)


def resize_depth_nearest(depth: np.ndarray, width: int, height: int) -> np.ndarray:
    """(h, w) float32 depth (0 = none) to (height, width) by nearest neighbour: no value is
    invented between an estimate and an empty pixel, and metric values are kept as they are."""
    d = np.asarray(depth, dtype=np.float32)
    if d.shape == (height, width):
        return d
    return cv2.resize(d, (int(width), int(height)), interpolation=cv2.INTER_NEAREST)


def _pil_resize(array: np.ndarray, width: int, height: int) -> np.ndarray:
    """Bicubic resize of a float32 (H,W) map with PIL (antialiased like MATLAB ``imresize``)."""
    img = Image.fromarray(np.ascontiguousarray(array, dtype=np.float32), mode="F")
    return np.array(img.resize((width, height), Image.BICUBIC), dtype=np.float32)


def bicubic_downsample_depth(depth: np.ndarray, scale: int, min_valid_fraction: float = 0.5) -> np.ndarray:
    """Downsample metric depth by an integer ``scale`` with antialiased bicubic interpolation.

    This is the standard CDSR degradation (bicubic downsampling of the HR ground truth by 4, 8,
    16; e.g. Kim et al. DKN, Zhong et al. DCTNet, DSR-Diff Sec. 4.1). For a fully valid map it is
    exactly PIL's bicubic resize. With missing pixels (0, NaN, inf) it is a normalised
    convolution: ``down(d*m) / down(m)``, and an LR pixel is valid (non-zero) only where
    ``down(m) >= min_valid_fraction``.

    Args:
        depth: (H, W) metres; H and W must be multiples of ``scale``.
        scale: integer factor >= 1.
    Returns:
        (H/scale, W/scale) float32 metres, 0 = invalid.
    Raises:
        ValueError: non-integer/invalid scale, sizes not divisible, wrong rank.
    """
    depth = np.asarray(depth, dtype=np.float32)
    if depth.ndim != 2:
        raise ValueError(f"depth must be (H, W), got shape {depth.shape}")
    if int(scale) != scale or scale < 1:
        raise ValueError(f"scale must be a positive integer, got {scale}")
    scale = int(scale)
    h, w = depth.shape
    if h % scale or w % scale:
        raise ValueError(f"depth size {w}x{h} is not divisible by scale {scale}; crop it first")
    if scale == 1:
        out = depth.copy()
        out[~np.isfinite(out) | (out <= 0)] = 0.0
        return out
    hl, wl = h // scale, w // scale
    valid = np.isfinite(depth) & (depth > 0)
    if valid.all():
        out = _pil_resize(depth, wl, hl)
    else:
        d = np.where(valid, depth, 0.0).astype(np.float32)
        m = valid.astype(np.float32)
        num = _pil_resize(d, wl, hl)
        den = _pil_resize(m, wl, hl)
        out = np.where(den >= min_valid_fraction, num / np.maximum(den, 1e-6), 0.0).astype(np.float32)
    out[~np.isfinite(out) | (out <= 0)] = 0.0
    return out


def fill_depth_holes(depth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Fill missing pixels (<=0 or non-finite) with the nearest valid depth (L2 distance).

    Returns:
        (filled (H,W) float32 m, valid_mask (H,W) float32 in {0,1}).
    Raises:
        ValueError: the map has no valid pixel.
    """
    depth = np.asarray(depth, dtype=np.float32)
    valid = np.isfinite(depth) & (depth > 0)
    if not valid.any():
        raise ValueError("depth_lr has no valid pixel (all zero/NaN)")
    mask = valid.astype(np.float32)
    if valid.all():
        return depth.copy(), mask
    # Each valid pixel is a distinct seed ("zero" pixel of the distance transform); every
    # invalid pixel receives the label of its nearest seed.
    _, labels = cv2.distanceTransformWithLabels(
        (~valid).astype(np.uint8), cv2.DIST_L2, 5, labelType=cv2.DIST_LABEL_PIXEL
    )
    lut = np.zeros(int(labels.max()) + 1, dtype=np.float32)
    lut[labels[valid]] = depth[valid]
    filled = lut[labels]
    return filled.astype(np.float32), mask


class ScaleError(ValueError):
    """The image / LR depth sizes give no usable super-resolution scale.

    ``reason`` is ``"bad_scale"`` (not an integer, or rows and columns differ) or
    ``"scale_out_of_range"`` (outside what the backend accepts); nodes count drops under it.
    """

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


def super_resolution_scale(height: int, width: int, height_lr: int, width_lr: int,
                           min_scale: int = 1, max_scale: Optional[int] = None) -> int:
    """The integer factor s with (height, width) = s * (height_lr, width_lr).

    Raises:
        ScaleError: an empty LR size, a non-integer factor, different factors for rows and
            columns (reason ``bad_scale``), or s outside [min_scale, max_scale] (reason
            ``scale_out_of_range``). The message names both sizes.
    """
    if height_lr <= 0 or width_lr <= 0:
        raise ScaleError(f"depth_lr is empty ({width_lr}x{height_lr})", "bad_scale")
    if height % height_lr or width % width_lr:
        raise ScaleError(
            f"scale is not an integer: image {width}x{height} / depth_lr {width_lr}x{height_lr} "
            f"= x{width / width_lr:.3f} (cols), x{height / height_lr:.3f} (rows)", "bad_scale")
    sy, sx = height // height_lr, width // width_lr
    if sy != sx:
        raise ScaleError(
            f"scale differs between columns (x{sx}) and rows (x{sy}): image {width}x{height}, "
            f"depth_lr {width_lr}x{height_lr}", "bad_scale")
    if sy < min_scale or (max_scale is not None and sy > max_scale):
        raise ScaleError(
            f"scale x{sy} (image {width}x{height}, depth_lr {width_lr}x{height_lr}) is outside the "
            f"backend's range x{min_scale}..x{max_scale}", "scale_out_of_range")
    return sy
