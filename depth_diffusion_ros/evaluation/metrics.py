"""Depth error metrics: the ONE implementation used by replay, the evaluation node, benchmarks and training.

Definitions (``p`` prediction, ``g`` ground truth, means over the valid pixels):

* ``rmse = sqrt(mean((p - g)^2))``, ``mae = mean(|p - g|)`` in metres;
* ``irmse = sqrt(mean((1/p - 1/g)^2))``, ``imae = mean(|1/p - 1/g|)`` in 1/m
  (KITTI depth completion reports mm and 1/km; Uhrig et al., "Sparsity Invariant CNNs", 3DV 2017,
  Sec. 5);
* ``abs_rel = mean(|p - g| / g)``, ``sq_rel = mean((p - g)^2 / g)``,
  ``rmse_log = sqrt(mean((ln p - ln g)^2))``, ``log10 = mean(|log10 p - log10 g|)``,
  ``delta_i = mean(max(p/g, g/p) < 1.25^i)`` for i = 1, 2, 3 (Eigen, Puhrsch, Fergus,
  "Depth Map Prediction from a Single Image using a Multi-Scale Deep Network", NIPS 2014, Sec. 4).

Crops: Garg crop for KITTI Eigen split (Garg et al., ECCV 2016), the Eigen crop (Eigen et al. 2014)
and the NYU Eigen crop (rows 45:471, cols 41:601 at 480x640).
"""
from __future__ import annotations

from typing import Iterable, Mapping, Optional

import numpy as np

METRIC_KEYS = (
    "rmse", "mae", "irmse", "imae", "abs_rel", "sq_rel", "rmse_log", "log10",
    "delta1", "delta2", "delta3",
)


def depth_metrics(
    pred: np.ndarray,
    gt: np.ndarray,
    valid_mask: Optional[np.ndarray] = None,
    min_depth: float = 1e-3,
    max_depth: Optional[float] = None,
) -> dict[str, float]:
    """Standard depth metrics of one frame.

    Args:
        pred: (H, W) predicted depth in metres. It is clipped to ``[min_depth, max_depth]``;
            non-finite or <= 0 predictions count as ``min_depth`` (a missing prediction is
            penalised, not skipped, as in the KITTI depth completion benchmark).
        gt: (H, W) ground-truth depth in metres. Pixels with gt non-finite, <= 0, < min_depth or
            > max_depth (when given) are ignored.
        valid_mask: optional (H, W) bool; only True pixels are evaluated (e.g. a crop mask).
        min_depth: lower clip of pred and lower bound of valid gt, metres (> 0).
        max_depth: optional upper clip of pred and upper bound of valid gt, metres.

    Returns:
        dict with rmse, mae (m), irmse, imae (1/m), abs_rel, sq_rel, rmse_log, log10, delta1,
        delta2, delta3 (floats) and n_valid (int, the number of evaluated pixels).

    Raises:
        ValueError: shape mismatch, bad min/max depth, or no valid ground-truth pixel.
    """
    p = np.asarray(pred, dtype=np.float64)
    g = np.asarray(gt, dtype=np.float64)
    if p.shape != g.shape:
        raise ValueError(f"pred shape {p.shape} differs from gt shape {g.shape}")
    if not (min_depth > 0):
        raise ValueError(f"min_depth must be > 0, got {min_depth}")
    if max_depth is not None and not (max_depth > min_depth):
        raise ValueError(f"max_depth must exceed min_depth, got {max_depth} <= {min_depth}")
    valid = np.isfinite(g) & (g > 0) & (g >= min_depth)
    if max_depth is not None:
        valid &= g <= max_depth
    if valid_mask is not None:
        m = np.asarray(valid_mask)
        if m.shape != g.shape:
            raise ValueError(f"valid_mask shape {m.shape} differs from gt shape {g.shape}")
        valid &= m.astype(bool)
    n = int(valid.sum())
    if n == 0:
        raise ValueError("no valid ground-truth pixels to evaluate (gt all <= 0/non-finite or masked out)")
    gv = g[valid]
    pv = p[valid]
    pv = np.where(np.isfinite(pv) & (pv > 0), pv, min_depth)
    pv = np.clip(pv, min_depth, max_depth if max_depth is not None else np.inf)

    err = pv - gv
    inv_err = 1.0 / pv - 1.0 / gv
    log_err = np.log(pv) - np.log(gv)
    ratio = np.maximum(pv / gv, gv / pv)
    return {
        "rmse": float(np.sqrt(np.mean(err**2))),
        "mae": float(np.mean(np.abs(err))),
        "irmse": float(np.sqrt(np.mean(inv_err**2))),
        "imae": float(np.mean(np.abs(inv_err))),
        "abs_rel": float(np.mean(np.abs(err) / gv)),
        "sq_rel": float(np.mean(err**2 / gv)),
        "rmse_log": float(np.sqrt(np.mean(log_err**2))),
        "log10": float(np.mean(np.abs(np.log10(pv) - np.log10(gv)))),
        "delta1": float(np.mean(ratio < 1.25)),
        "delta2": float(np.mean(ratio < 1.25**2)),
        "delta3": float(np.mean(ratio < 1.25**3)),
        "n_valid": n,
    }


def to_kitti_units(m: Mapping[str, float]) -> dict[str, float]:
    """Convert :func:`depth_metrics` output to KITTI depth-completion units.

    Returns:
        dict with rmse_mm, mae_mm (mm), irmse_1_km, imae_1_km (1/km) plus abs_rel, sq_rel,
        rmse_log, log10, delta1..3 and n_valid copied unchanged (when present).

    Raises:
        KeyError: a required metric (rmse, mae, irmse, imae) is missing.
    """
    out = {
        "rmse_mm": float(m["rmse"]) * 1000.0,
        "mae_mm": float(m["mae"]) * 1000.0,
        "irmse_1_km": float(m["irmse"]) * 1000.0,
        "imae_1_km": float(m["imae"]) * 1000.0,
    }
    for k in ("abs_rel", "sq_rel", "rmse_log", "log10", "delta1", "delta2", "delta3", "n_valid"):
        if k in m:
            out[k] = m[k]
    return out


def mean_metrics(metrics: Iterable[Mapping[str, float]]) -> dict[str, float]:
    """Average per-frame metric dicts (each frame weighs the same); ``n_valid`` is summed.

    Raises:
        ValueError: empty input or frames with different keys.
    """
    items = list(metrics)
    if not items:
        raise ValueError("mean_metrics needs at least one frame")
    keys = set(items[0])
    for i, d in enumerate(items[1:], start=1):
        if set(d) != keys:
            raise ValueError(f"frame {i} has metric keys {sorted(d)}, frame 0 has {sorted(keys)}")
    out: dict[str, float] = {}
    for k in items[0]:
        if k == "n_valid":
            out[k] = int(sum(int(d[k]) for d in items))
        else:
            out[k] = float(np.mean([float(d[k]) for d in items]))
    return out


def _box_mask(h: int, w: int, top: int, bottom: int, left: int, right: int) -> np.ndarray:
    if h <= 0 or w <= 0:
        raise ValueError(f"crop mask size must be positive, got {h}x{w}")
    mask = np.zeros((h, w), dtype=bool)
    mask[top:bottom, left:right] = True
    return mask


def garg_crop_mask(h: int, w: int) -> np.ndarray:
    """Garg crop for the KITTI Eigen split (Garg et al., ECCV 2016): rows 0.4081-0.9919 h, cols 0.0359-0.9641 w.

    Returns (h, w) bool.
    """
    return _box_mask(h, w, int(0.40810811 * h), int(0.99189189 * h), int(0.03594771 * w), int(0.96405229 * w))


def kitti_eigen_crop_mask(h: int, w: int) -> np.ndarray:
    """Eigen crop for KITTI (Eigen et al., NIPS 2014): rows 0.3324-0.9135 h, cols 0.0359-0.9641 w.

    Returns (h, w) bool.
    """
    return _box_mask(h, w, int(0.3324324 * h), int(0.91351351 * h), int(0.03594771 * w), int(0.96405229 * w))


def nyu_eigen_crop_mask(h: int, w: int) -> np.ndarray:
    """NYU Depth v2 Eigen crop: rows 45:471, cols 41:601 at 480x640, scaled proportionally otherwise.

    Returns (h, w) bool.
    """
    return _box_mask(
        h, w, int(round(45 * h / 480)), int(round(471 * h / 480)),
        int(round(41 * w / 640)), int(round(601 * w / 640)),
    )
