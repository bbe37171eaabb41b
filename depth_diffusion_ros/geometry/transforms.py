"""Rigid transforms as 4x4 homogeneous matrices, and rotations as quaternions.

Naming follows the ``T_target_source`` convention: ``p_target = T_target_source @ p_source``.
"""
from __future__ import annotations

from typing import Iterable, Optional

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


def check_rigid_transform(T: np.ndarray) -> np.ndarray:  # noqa: N803
    """``T`` as a (4, 4) float64 rigid transform, or ValueError naming what is wrong.

    Checks: 16 finite values, last row (0, 0, 0, 1), and an upper-left 3x3 block that is a
    rotation (|R R^T - I| <= 1e-3 and det(R) > 0).
    """
    T = np.asarray(T, dtype=np.float64)
    if T.size != 16:
        raise ValueError(f"must have 16 numbers (row-major 4x4), got {T.size}")
    if not np.all(np.isfinite(T)):
        raise ValueError("contains non-finite values")
    T = T.reshape(4, 4)
    if not np.allclose(T[3], [0, 0, 0, 1], atol=1e-9):
        raise ValueError(f"last row must be 0 0 0 1, got {T[3].tolist()}")
    R = T[:3, :3]  # noqa: N806
    if np.abs(R @ R.T - np.eye(3)).max() > 1e-3 or np.linalg.det(R) <= 0:
        raise ValueError("the upper-left 3x3 block is not a rotation matrix")
    return T


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


def quaternion_to_matrix(x: float, y: float, z: float, w: float) -> np.ndarray:
    """(3, 3) float64 rotation matrix of the quaternion ``(x, y, z, w)``, normalised first.

    Hamilton's convention, as ROS stores rotations (``geometry_msgs/Quaternion``, REP 103).

    Raises:
        ValueError: a zero or non-finite quaternion.
    """
    q = np.array([x, y, z, w], dtype=np.float64)
    n = np.linalg.norm(q)
    if not np.isfinite(n) or n < 1e-12:
        raise ValueError(f"invalid quaternion {q.tolist()}")
    x, y, z, w = q / n
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )


def matrix_to_quaternion(R: np.ndarray) -> tuple[float, float, float, float]:  # noqa: N803
    """Unit quaternion ``(x, y, z, w)`` with ``w >= 0`` of a (3, 3) rotation matrix.

    Shepperd's method (S. W. Shepperd, "Quaternion from rotation matrix", J. Guidance and
    Control 1(3), 1978): the largest of the four diagonal combinations is taken first, which
    keeps the division well conditioned for every rotation.

    Raises:
        ValueError: ``R`` is not a finite 3x3 matrix, or not a proper rotation (``R R^T``
            differs from the identity by more than 1e-3, or ``det R <= 0``).
    """
    R = np.asarray(R, dtype=np.float64)
    if R.shape != (3, 3) or not np.all(np.isfinite(R)):
        raise ValueError(f"rotation must be a finite 3x3 matrix, got shape {R.shape}")
    if np.abs(R @ R.T - np.eye(3)).max() > 1e-3 or np.linalg.det(R) <= 0:
        raise ValueError("matrix is not a proper rotation (R R^T != I or det <= 0)")
    tr = float(np.trace(R))
    if tr > 0:
        s = 2.0 * np.sqrt(tr + 1.0)
        w, x, y, z = 0.25 * s, (R[2, 1] - R[1, 2]) / s, (R[0, 2] - R[2, 0]) / s, (R[1, 0] - R[0, 1]) / s
    elif R[0, 0] > R[1, 1] and R[0, 0] > R[2, 2]:
        s = 2.0 * np.sqrt(1.0 + R[0, 0] - R[1, 1] - R[2, 2])
        w, x, y, z = (R[2, 1] - R[1, 2]) / s, 0.25 * s, (R[0, 1] + R[1, 0]) / s, (R[0, 2] + R[2, 0]) / s
    elif R[1, 1] > R[2, 2]:
        s = 2.0 * np.sqrt(1.0 + R[1, 1] - R[0, 0] - R[2, 2])
        w, x, y, z = (R[0, 2] - R[2, 0]) / s, (R[0, 1] + R[1, 0]) / s, 0.25 * s, (R[1, 2] + R[2, 1]) / s
    else:
        s = 2.0 * np.sqrt(1.0 + R[2, 2] - R[0, 0] - R[1, 1])
        w, x, y, z = (R[1, 0] - R[0, 1]) / s, (R[0, 2] + R[2, 0]) / s, (R[1, 2] + R[2, 1]) / s, 0.25 * s
    q = np.array([x, y, z, w])
    q /= np.linalg.norm(q)
    if q[3] < 0:
        q = -q
    return float(q[0]), float(q[1]), float(q[2]), float(q[3])


def lookup_static_transform(
    transforms: Iterable[tuple[str, str, np.ndarray]], target: str, source: str
) -> Optional[np.ndarray]:
    """(4, 4) float64 ``T_target_source`` from static tf edges, or None when no chain joins them.

    ``transforms``: ``(parent, child, T_parent_child)`` edges, each a (4, 4) transform in metres
    (as ``/tf_static`` gives them). Searches the tf tree as an undirected graph (inverting edges
    as needed), so a chain such as camera <- base_link <- velo resolves too. A leading '/' of
    ``target`` / ``source`` is ignored; edge frame ids are compared as given (without one).
    """
    target, source = target.lstrip("/"), source.lstrip("/")
    if target == source:
        return np.eye(4)
    edges: dict[str, list[tuple[str, np.ndarray]]] = {}
    for parent, child, T in transforms:
        edges.setdefault(parent, []).append((child, T))           # T maps child -> parent
        edges.setdefault(child, []).append((parent, np.linalg.inv(T)))
    # breadth-first search from source; accumulate T_node_source
    frontier = [(source, np.eye(4))]
    seen = {source}
    while frontier:
        nxt = []
        for frame, T_frame_source in frontier:
            for other, T_frame_other in edges.get(frame, []):
                # T_frame_other maps `other` -> `frame`; we need T_other_frame
                if other in seen:
                    continue
                T_other_source = np.linalg.inv(T_frame_other) @ T_frame_source
                if other == target:
                    return T_other_source
                seen.add(other)
                nxt.append((other, T_other_source))
        frontier = nxt
    return None
