"""Classical dense fills of sparse depth that a learned completion model takes as input.

A DiffusionDepth with ``external_priors`` (``DiffusionDepthConfig``) receives, beside the image
and the sparse depth, two of these fills of the same sparse input and learns per pixel which to
follow and how to correct it — a diffusion model on top of the blend of classical fills a one-shot
regressor would learn. The pipelines (inference) and the training transform
(``training.transforms.ClassicalFills``) compute them with :func:`prior_fills`, so training and
inference see the same inputs.

Names (:data:`PRIOR_FILLS`):
  * ``ip_basic`` / ``ip_basic_gaussian``: IP-Basic (Ku et al., CRV 2018) with its bilateral or
    Gaussian final blur, max_depth 100 m (the KITTI setting), extrapolated to the top of the frame;
  * ``linear_hull``: linear interpolation over the Delaunay triangulation of the measured pixels,
    0 (no value) outside their convex hull (the ``linear`` peer without its nearest fill there);
  * ``linear``: the ``linear`` peer (nearest fill outside the hull).
"""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Optional, Sequence

import numpy as np

from depth_diffusion_ros.baselines.ip_basic import ip_basic_complete
from depth_diffusion_ros.baselines.linear import linear_interpolate, linear_interpolate_hull

PRIOR_FILLS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "ip_basic": lambda sparse: ip_basic_complete(sparse, 100.0, True, "bilateral"),
    "ip_basic_gaussian": lambda sparse: ip_basic_complete(sparse, 100.0, True, "gaussian"),
    "linear_hull": linear_interpolate_hull,
    "linear": linear_interpolate,
}


def check_fill_names(names: Sequence[str]) -> list[str]:
    """The problems of a list of fill names (empty when every name is known)."""
    return [f"unknown classical fill {n!r}; choose from {sorted(PRIOR_FILLS)}" for n in names if n not in PRIOR_FILLS]


_POOL: Optional[ThreadPoolExecutor] = None
_POOL_LOCK = threading.Lock()


def _pool() -> ThreadPoolExecutor:
    """The process's pool for the fills (two threads: the fills are OpenCV and numpy work that
    releases the GIL, so two of them run side by side on two cores)."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = ThreadPoolExecutor(max_workers=2, thread_name_prefix="prior_fills")
        return _POOL


def prior_fills(names: Sequence[str], sparse_depth: np.ndarray) -> np.ndarray:
    """The fills ``names`` of one sparse depth map, stacked: (K, H, W) float32 metres, 0 = none.

    sparse_depth: (H, W) metres, 0 = missing. Raises ValueError for an unknown name. Two or more
    fills are computed concurrently (a shared two-thread pool); the result does not depend on it.
    """
    problems = check_fill_names(names)
    if problems:
        raise ValueError("; ".join(problems))
    sparse = np.asarray(sparse_depth, np.float32)
    if len(names) > 1:
        futures = [_pool().submit(PRIOR_FILLS[n], sparse) for n in names]
        out = np.stack([np.asarray(f.result(), np.float32) for f in futures])
    elif names:
        out = np.asarray(PRIOR_FILLS[names[0]](sparse), np.float32)[None]
    else:
        out = np.zeros((0,) + sparse.shape, np.float32)
    return np.where(np.isfinite(out) & (out > 0), out, 0.0).astype(np.float32)
