"""Rigid transforms as 4x4 homogeneous matrices.

Naming follows the ``T_target_source`` convention: ``p_target = T_target_source @ p_source``.
"""
from __future__ import annotations

import numpy as np


def make_transform(R: np.ndarray, t: np.ndarray) -> np.ndarray:  # noqa: N803
    """Build a (4, 4) float64 transform from a (3, 3) rotation and a (3,) translation (metres).

    Raises:
        ValueError: wrong shapes or non-finite values.
    """
    R = np.asarray(R, dtype=np.float64)
    t = np.asarray(t, dtype=np.float64).reshape(-1)
    if R.shape != (3, 3) or t.shape != (3,):
        raise ValueError(f"make_transform needs R (3,3) and t (3,), got {R.shape} and {t.shape}")
    if not (np.all(np.isfinite(R)) and np.all(np.isfinite(t))):
        raise ValueError("make_transform: R or t contains non-finite values")
    T = np.eye(4, dtype=np.float64)
    T[:3, :3] = R
    T[:3, 3] = t
    return T


def _check_transform(T: np.ndarray) -> np.ndarray:  # noqa: N803
    T = np.asarray(T, dtype=np.float64)
    if T.shape != (4, 4):
        raise ValueError(f"transform must be (4,4), got shape {T.shape}")
    if not np.all(np.isfinite(T)):
        raise ValueError("transform contains non-finite values")
    return T


def invert_transform(T: np.ndarray) -> np.ndarray:  # noqa: N803
    """Inverse of a (4, 4) rigid transform: ``[R^T, -R^T t]`` (exact for rotations).

    Raises:
        ValueError: not (4, 4) or non-finite.
    """
    T = _check_transform(T)
    R = T[:3, :3]
    t = T[:3, 3]
    out = np.eye(4, dtype=np.float64)
    out[:3, :3] = R.T
    out[:3, 3] = -R.T @ t
    return out


def transform_points(points: np.ndarray, T_target_source: np.ndarray) -> np.ndarray:  # noqa: N803
    """Apply ``T_target_source`` (4, 4) to (N, 3) points; returns (N, 3) in the input float dtype.

    The matrix may be any affine 4x4 (e.g. a rectifying rotation folded into an extrinsic).

    Raises:
        ValueError: points not (N, 3) or transform not (4, 4).
    """
    T = _check_transform(T_target_source)
    pts = np.asarray(points)
    if pts.ndim != 2 or pts.shape[1] != 3:
        raise ValueError(f"points must be (N, 3), got shape {pts.shape}")
    dtype = pts.dtype if np.issubdtype(pts.dtype, np.floating) else np.float64
    # Column-wise multiply-adds in float64: as fast as a BLAS matmul for 3x3 and immune to
    # BLAS thread over-subscription on busy robot CPUs.
    x = pts[:, 0].astype(np.float64)
    y = pts[:, 1].astype(np.float64)
    z = pts[:, 2].astype(np.float64)
    out = np.empty(pts.shape, dtype=dtype)
    for i in range(3):
        out[:, i] = T[i, 0] * x + T[i, 1] * y + T[i, 2] * z + T[i, 3]
    return out
