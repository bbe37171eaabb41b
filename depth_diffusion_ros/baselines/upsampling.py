"""Classical colour-guided depth super-resolution baselines.

* :func:`bicubic_upsample` - plain bicubic interpolation.
* :func:`joint_bilateral_upsample` - joint bilateral upsampling (Kopf, Cohen, Lischinski,
  Uyttendaele, "Joint Bilateral Upsampling", SIGGRAPH 2007): a bilateral filter whose range
  weights come from the high-resolution colour image, applied to the upsampled depth
  (``cv2.ximgproc.jointBilateralFilter``).
* :func:`guided_filter_upsample` - guided image filter (He, Sun, Tang, "Guided Image
  Filtering", ECCV 2010 / TPAMI 2013, Eq. 1-8) with the colour image as guide
  (``cv2.ximgproc.guidedFilter``).

Invalid (0) low-resolution pixels: interpolating across them would pull depth toward 0. Each
function therefore (a) fills holes in the low-resolution map with the nearest valid value before
interpolating, and (b) marks a high-resolution pixel invalid (0) when its nearest low-resolution
pixel was invalid, so holes stay holes at the output resolution. The joint bilateral filter is
additionally run as a normalised convolution (filter ``depth * valid`` and ``valid`` with the
same weights and divide), so invalid pixels get zero weight.
"""
from __future__ import annotations

from typing import Optional, Sequence

import cv2
import numpy as np

from depth_diffusion_ros.baselines.nearest import nearest_fill


def _check_depth_lr(depth_lr: np.ndarray) -> np.ndarray:
    d = np.asarray(depth_lr, dtype=np.float32)
    if d.ndim != 2:
        raise ValueError(f"depth_lr must be (h, w), got shape {d.shape}")
    return np.where(np.isfinite(d) & (d > 0), d, 0.0).astype(np.float32)


def _check_size(size: Sequence[int]) -> tuple[int, int]:
    if len(size) != 2:
        raise ValueError(f"output size must be (H, W), got {size!r}")
    h, w = int(size[0]), int(size[1])
    if h <= 0 or w <= 0:
        raise ValueError(f"output size must be positive, got (H, W) = ({h}, {w})")
    return h, w


def _check_guide(guide_rgb: np.ndarray) -> np.ndarray:
    g = np.asarray(guide_rgb)
    if g.ndim != 3 or g.shape[2] != 3 or g.dtype != np.uint8:
        raise ValueError(f"guide_rgb must be (H, W, 3) uint8, got shape {g.shape} dtype {g.dtype}")
    return g


def _hr_valid(valid_lr: np.ndarray, h: int, w: int) -> np.ndarray:
    return cv2.resize(valid_lr.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST) > 0


def bicubic_upsample(depth_lr: np.ndarray, size: Sequence[int]) -> np.ndarray:
    """Bicubic upsampling of a depth map to ``size = (H, W)``.

    Holes are nearest-filled before interpolation and re-masked after (module docstring);
    bicubic overshoot is clipped to the low-resolution depth range.

    Args:
        depth_lr: (h, w) metres, 0 = missing.
        size: (H, W) output size.

    Returns:
        (H, W) float32 metres, 0 where the nearest low-resolution pixel was missing.

    Raises:
        ValueError: bad shapes.
    """
    d = _check_depth_lr(depth_lr)
    h, w = _check_size(size)
    valid = d > 0
    if not valid.any():
        return np.zeros((h, w), np.float32)
    filled = nearest_fill(d)
    up = cv2.resize(filled, (w, h), interpolation=cv2.INTER_CUBIC)
    up = np.clip(up, d[valid].min(), d[valid].max())
    up[~_hr_valid(valid, h, w)] = 0.0
    return up.astype(np.float32)


def joint_bilateral_upsample(
    depth_lr: np.ndarray,
    guide_rgb: np.ndarray,
    diameter: int = -1,
    sigma_color: float = 6.0,
    sigma_space: Optional[float] = None,
) -> np.ndarray:
    """Joint bilateral upsampling guided by the high-resolution RGB (Kopf et al., SIGGRAPH 2007).

    The depth is bicubic-upsampled to the guide size, then filtered with
    ``cv2.ximgproc.jointBilateralFilter`` as a normalised convolution with the validity mask.

    Args:
        depth_lr: (h, w) metres, 0 = missing.
        guide_rgb: (H, W, 3) uint8 RGB.
        diameter: filter diameter in pixels; -1 = derived from sigma_space.
        sigma_color: range sigma in 8-bit intensity units.
        sigma_space: spatial sigma in high-resolution pixels; None = half the upsampling factor
            (at least 1). Defaults were chosen on the NYU x8 frames in ../shared/data.

    Returns:
        (H, W) float32 metres, 0 where the input had holes.

    Raises:
        ValueError: bad shapes or non-positive sigmas.
    """
    g = _check_guide(guide_rgb)
    h, w = g.shape[:2]
    d = _check_depth_lr(depth_lr)
    if sigma_color <= 0 or (sigma_space is not None and sigma_space <= 0):
        raise ValueError(f"sigmas must be > 0, got sigma_color={sigma_color}, sigma_space={sigma_space}")
    if sigma_space is None:
        sigma_space = max(1.0, 0.5 * w / d.shape[1])
    up = bicubic_upsample(d, (h, w))
    valid = (up > 0).astype(np.float32)
    joint = g.astype(np.float32)
    num = cv2.ximgproc.jointBilateralFilter(joint, up * valid, int(diameter), float(sigma_color), float(sigma_space))
    den = cv2.ximgproc.jointBilateralFilter(joint, valid, int(diameter), float(sigma_color), float(sigma_space))
    out = np.zeros((h, w), np.float32)
    ok = (den > 1e-3) & (valid > 0)
    out[ok] = num[ok] / den[ok]
    return out


def guided_filter_upsample(
    depth_lr: np.ndarray,
    guide_rgb: np.ndarray,
    radius: Optional[int] = None,
    eps: float = 1e-2,
) -> np.ndarray:
    """Guided-filter upsampling (He et al., ECCV 2010): bicubic upsampling, then a guided filter
    with the RGB image (scaled to [0, 1]) as guide.

    Args:
        depth_lr: (h, w) metres, 0 = missing.
        guide_rgb: (H, W, 3) uint8 RGB.
        radius: window radius in high-resolution pixels; None = a quarter of the upsampling
            factor (at least 1). Defaults were chosen on the NYU x8 frames in ../shared/data.
        eps: regularisation in squared guide units ([0, 1] intensities); larger = smoother.

    Returns:
        (H, W) float32 metres, 0 where the input had holes.

    Raises:
        ValueError: bad shapes, radius < 1 or eps <= 0.
    """
    g = _check_guide(guide_rgb)
    h, w = g.shape[:2]
    d = _check_depth_lr(depth_lr)
    if radius is None:
        radius = max(1, int(round(0.25 * w / d.shape[1])))
    if radius < 1 or not (eps > 0):
        raise ValueError(f"need radius >= 1 and eps > 0, got radius={radius}, eps={eps}")
    valid_lr = d > 0
    if not valid_lr.any():
        return np.zeros((h, w), np.float32)
    filled = nearest_fill(d)
    up = cv2.resize(filled, (w, h), interpolation=cv2.INTER_CUBIC)
    up = np.clip(up, d[valid_lr].min(), d[valid_lr].max()).astype(np.float32)
    guide = g.astype(np.float32) / 255.0
    out = cv2.ximgproc.guidedFilter(guide, up, int(radius), float(eps))
    out = np.clip(out, d[valid_lr].min(), d[valid_lr].max()).astype(np.float32)
    out[~_hr_valid(valid_lr, h, w)] = 0.0
    return out
