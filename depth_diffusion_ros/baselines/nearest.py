"""Nearest-valid-pixel fill: every pixel takes the depth of the closest measured pixel (Euclidean)."""
from __future__ import annotations

import numpy as np
from scipy import ndimage


def nearest_fill(sparse_depth: np.ndarray) -> np.ndarray:
    """Fill every empty pixel with the value of the nearest valid pixel (exact Euclidean distance).

    Uses ``scipy.ndimage.distance_transform_edt(..., return_distances=False, return_indices=True)``
    on the empty mask (the indices alone: the distances are not needed).

    Args:
        sparse_depth: (H, W) metres, 0 / negative / non-finite = missing.

    Returns:
        (H, W) float32 metres, dense (all pixels > 0) when at least one pixel is valid; all
        zeros when none is.

    Raises:
        ValueError: not 2-D.
    """
    d = np.asarray(sparse_depth, dtype=np.float32)
    if d.ndim != 2:
        raise ValueError(f"sparse_depth must be (H, W), got shape {d.shape}")
    valid = np.isfinite(d) & (d > 0)
    if not valid.any():
        return np.zeros(d.shape, np.float32)
    if valid.all():
        return d.copy()
    iy, ix = ndimage.distance_transform_edt(~valid, return_distances=False, return_indices=True)
    return d[iy, ix].astype(np.float32)
