"""IP-Basic depth completion.

Ku, Harakeh, Waslander, "In Defense of Classical Image Processing: Fast Depth Completion on the
CPU", CRV 2018 (arXiv:1802.00036), Sec. III "Method", steps 1-8. The steps below follow the
paper's description; the code is our own.

All morphology runs on *inverted* depth ``d_inv = max_depth - d`` (valid pixels only, empty stay
0), so that a grey dilation (a max filter) lets nearer points win over farther ones and empty
pixels (0) never win over a measurement (Sec. III-1).
"""
from __future__ import annotations

import cv2
import numpy as np

BLUR_TYPES = ("bilateral", "gaussian", "none")


def diamond_kernel(size: int = 5) -> np.ndarray:
    """(size, size) uint8 diamond (L1 ball) structuring element, the paper's custom kernel (Sec. III-2)."""
    if size < 1 or size % 2 == 0:
        raise ValueError(f"diamond kernel size must be odd and >= 1, got {size}")
    r = size // 2
    yy, xx = np.mgrid[-r:r + 1, -r:r + 1]
    return (np.abs(yy) + np.abs(xx) <= r).astype(np.uint8)


def _full(size: int) -> np.ndarray:
    return np.ones((size, size), np.uint8)


def _fill_empty(d_inv: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Dilate, and write the dilated value only into empty (0) pixels."""
    dilated = cv2.dilate(d_inv, kernel)
    empty = d_inv < 0.1
    d_inv[empty] = dilated[empty]
    return d_inv


def _extend_to_top(d_inv: np.ndarray) -> np.ndarray:
    """Sec. III-5: in every column, copy the top-most valid value to all empty pixels above it."""
    h, w = d_inv.shape
    valid = d_inv > 0.1
    has = valid.any(axis=0)
    top_row = np.argmax(valid, axis=0)  # first valid row per column
    cols = np.nonzero(has)[0]
    top_vals = d_inv[top_row[cols], cols]
    rows = np.arange(h)[:, None]
    above = (rows < top_row[None, cols])  # (h, n_cols) pixels above the top value
    sub = d_inv[:, cols]
    sub[above] = np.broadcast_to(top_vals[None, :], above.shape)[above]
    d_inv[:, cols] = sub
    return d_inv


def ip_basic_complete(
    sparse_depth: np.ndarray,
    max_depth: float = 100.0,
    extrapolate: bool = True,
    blur_type: str = "bilateral",
) -> np.ndarray:
    """Complete a sparse LiDAR depth map with IP-Basic (Ku et al., CRV 2018, Sec. III).

    Steps (numbers as in the paper):
      1. depth inversion ``d_inv = max_depth - d`` on valid pixels;
      2. dilation with a 5x5 diamond kernel;
      3. small-hole closure: morphological close with a full 5x5 kernel;
      4. small-hole fill: empty pixels take a 7x7 full-kernel dilation;
      5. extension to the top of the frame: per column, the top-most value is copied upward
         (only when ``extrapolate``), then the remaining holes get a 31x31 dilation fill (6);
      7. median blur 5x5 (outliers) then a bilateral (edge-preserving, default) or 5x5 gaussian
         blur, each written back to valid pixels only;
      8. inversion back to depth.

    Args:
        sparse_depth: (H, W) metres, 0 (or non-finite) = missing. Values above max_depth are
            clipped to max_depth.
        max_depth: inversion constant in metres (the paper uses 100 m for KITTI).
        extrapolate: extend the top value of each column to the top of the frame (step 5).
        blur_type: "bilateral", "gaussian" or "none".

    Returns:
        (H, W) float32 metres; dense except where a column has no measurement and the 31x31
        fill cannot reach (0 there).

    Raises:
        ValueError: not 2-D, max_depth <= 0 or unknown blur_type.
    """
    d = np.asarray(sparse_depth, dtype=np.float32)
    if d.ndim != 2:
        raise ValueError(f"sparse_depth must be (H, W), got shape {d.shape}")
    if not (max_depth > 0):
        raise ValueError(f"max_depth must be > 0, got {max_depth}")
    if blur_type not in BLUR_TYPES:
        raise ValueError(f"blur_type must be one of {BLUR_TYPES}, got {blur_type!r}")
    d = np.where(np.isfinite(d) & (d > 0), np.minimum(d, max_depth), 0.0).astype(np.float32)

    # 1. inversion (valid only); a value at exactly max_depth maps to a tiny positive number.
    valid = d > 0.1
    d_inv = np.zeros_like(d)
    d_inv[valid] = np.maximum(max_depth - d[valid], 0.1 + 1e-3)
    # 2. custom diamond kernel dilation
    d_inv = cv2.dilate(d_inv, diamond_kernel(5))
    # 3. small hole closure
    d_inv = cv2.morphologyEx(d_inv, cv2.MORPH_CLOSE, _full(5))
    # 4. small hole fill
    d_inv = _fill_empty(d_inv, _full(7))
    # 5. extension to the top of the frame
    if extrapolate:
        d_inv = _extend_to_top(d_inv)
    # 6. large hole fill
    d_inv = _fill_empty(d_inv, _full(31))
    # 7. median + bilateral / gaussian blur, on valid pixels only
    valid = d_inv > 0.1
    blurred = cv2.medianBlur(d_inv, 5)
    d_inv[valid] = blurred[valid]
    if blur_type == "bilateral":
        blurred = cv2.bilateralFilter(d_inv, 5, 1.5, 2.0)
        d_inv[valid] = blurred[valid]
    elif blur_type == "gaussian":
        blurred = cv2.GaussianBlur(d_inv, (5, 5), 0)
        d_inv[valid] = blurred[valid]
    # 8. inversion back
    out = np.zeros_like(d_inv)
    valid = d_inv > 0.1
    out[valid] = max_depth - d_inv[valid]
    return out
