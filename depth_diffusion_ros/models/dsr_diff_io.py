"""Numpy pre- and post-processing for colour-guided depth super-resolution (no torch).

Shared by the torch backend, an ONNX Runtime / TensorRT backend, the SR datasets and the
benchmark, so every path feeds the network the same arrays:

* :func:`bicubic_downsample_depth` — the CDSR protocol's degradation (bicubic downsampling of
  the ground truth by 4, 8, 16; e.g. Kim et al. DKN, Zhong et al. DCTNet, and DSR-Diff Sec. 4.1),
  made hole-aware for real sensor depth with missing pixels.
* :func:`fill_depth_holes` — nearest-valid fill of the low-resolution depth (the network gets
  the filled map plus its validity mask).
* :func:`prepare_sr_inputs` / :func:`finish_sr_output` — scale check, padding to the network's
  size divisor, tensor layout, and cropping/invalidating the output.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import cv2
import numpy as np
from PIL import Image


def _pil_resize(array: np.ndarray, width: int, height: int) -> np.ndarray:
    """Bicubic resize of a float32 (H,W) map with PIL (antialiased like MATLAB ``imresize``)."""
    img = Image.fromarray(np.ascontiguousarray(array, dtype=np.float32), mode="F")
    return np.array(img.resize((width, height), Image.BICUBIC), dtype=np.float32)


def bicubic_downsample_depth(depth: np.ndarray, scale: int, min_valid_fraction: float = 0.5) -> np.ndarray:
    """Downsample metric depth by an integer ``scale`` with antialiased bicubic interpolation.

    This is the standard CDSR degradation (bicubic downsampling of the HR ground truth). For a
    fully valid map it is exactly PIL's bicubic resize. With missing pixels (0, NaN, inf) it
    is a normalised convolution: ``down(d*m) / down(m)``, and an LR pixel is valid (non-zero)
    only where ``down(m) >= min_valid_fraction``.

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


@dataclass
class SRInputs:
    """Network inputs for one frame (NCHW float32) and what is needed to undo the padding.

    rgb: (1,3,Hp,Wp) in [0,1]; depth_lr: (1,1,hp,wp) metres, holes filled;
    valid_mask_lr: (1,1,hp,wp) {0,1}; scale: integer H/h; size: (H, W) before padding.
    """

    rgb: np.ndarray
    depth_lr: np.ndarray
    valid_mask_lr: np.ndarray
    scale: int
    size: tuple


def check_sr_scale(height: int, width: int, height_lr: int, width_lr: int,
                   min_scale: int = 1, max_scale: Optional[int] = None) -> int:
    """Integer scale H/h (= W/w); ValueError naming the sizes when non-integer or out of range."""
    if height_lr <= 0 or width_lr <= 0:
        raise ValueError(f"depth_lr is empty ({width_lr}x{height_lr})")
    if height % height_lr or width % width_lr:
        raise ValueError(
            f"scale is not an integer: image {width}x{height} / depth_lr {width_lr}x{height_lr} "
            f"= x{width / width_lr:.3f} (cols), x{height / height_lr:.3f} (rows)"
        )
    sy, sx = height // height_lr, width // width_lr
    if sy != sx:
        raise ValueError(
            f"scale differs between columns (x{sx}) and rows (x{sy}): image {width}x{height}, "
            f"depth_lr {width_lr}x{height_lr}"
        )
    if sy < min_scale or (max_scale is not None and sy > max_scale):
        raise ValueError(
            f"scale x{sy} is outside the trained range x{min_scale}..x{max_scale} "
            f"(image {width}x{height}, depth_lr {width_lr}x{height_lr})"
        )
    return sy


def prepare_sr_inputs(rgb: np.ndarray, depth_lr: np.ndarray, size_divisor: int,
                      min_scale: int = 1, max_scale: Optional[int] = None) -> SRInputs:
    """Check, fill and pad one frame for a DSR-Diff network.

    The LR map is edge-padded by ``p`` rows/cols and the image by ``p*scale`` so that the
    HR size becomes a multiple of ``size_divisor`` while the scale stays exact.

    Args:
        rgb: (H, W, 3) uint8; depth_lr: (h, w) float32 metres, 0/NaN = missing.
    Raises:
        ValueError: wrong shapes/dtypes, non-integer or out-of-range scale, no valid depth.
    """
    rgb = np.asarray(rgb)
    depth_lr = np.asarray(depth_lr)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"rgb must be (H, W, 3) uint8, got shape {rgb.shape} dtype {rgb.dtype}")
    if depth_lr.ndim != 2:
        raise ValueError(f"depth_lr must be (h, w), got shape {depth_lr.shape}")
    H, W = rgb.shape[:2]
    h, w = depth_lr.shape
    scale = check_sr_scale(H, W, h, w, min_scale, max_scale)
    filled, mask = fill_depth_holes(depth_lr)

    def _pad_lr(n: int) -> int:
        p = 0
        while ((n + p) * scale) % size_divisor:
            p += 1
        return p

    pb, pr = _pad_lr(h), _pad_lr(w)
    if pb or pr:
        filled = np.pad(filled, ((0, pb), (0, pr)), mode="edge")
        mask = np.pad(mask, ((0, pb), (0, pr)), mode="edge")
        rgb = np.pad(rgb, ((0, pb * scale), (0, pr * scale), (0, 0)), mode="edge")
    rgb_t = (rgb.astype(np.float32) / 255.0).transpose(2, 0, 1)[None]
    return SRInputs(
        rgb=np.ascontiguousarray(rgb_t),
        depth_lr=np.ascontiguousarray(filled[None, None]),
        valid_mask_lr=np.ascontiguousarray(mask[None, None]),
        scale=scale,
        size=(H, W),
    )


def finish_sr_output(depth_hr: np.ndarray, inputs: SRInputs, valid_mask_lr: Optional[np.ndarray] = None) -> np.ndarray:
    """Crop the padded network output back to (H, W) and mark unsupported pixels invalid.

    A pixel is kept where the bilinearly upsampled LR validity mask is >= 0.5, i.e. where the
    LR input had a measurement nearby; elsewhere (large LR holes) it is set to 0.

    Args:
        depth_hr: (Hp, Wp) or (1,1,Hp,Wp) metres.
    Returns:
        (H, W) float32 metres, 0 = invalid.
    """
    d = np.asarray(depth_hr, dtype=np.float32).reshape(depth_hr.shape[-2:])
    H, W = inputs.size
    mask_lr = inputs.valid_mask_lr[0, 0] if valid_mask_lr is None else valid_mask_lr
    if mask_lr.min() < 1.0:
        mask_hr = cv2.resize(mask_lr.astype(np.float32), (d.shape[1], d.shape[0]), interpolation=cv2.INTER_LINEAR)
        d = np.where(mask_hr >= 0.5, d, 0.0)
    d = d[:H, :W]
    d = np.where(np.isfinite(d) & (d > 0), d, 0.0).astype(np.float32)
    return d
