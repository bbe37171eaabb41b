"""Seeded point sampling: the held-out LiDAR split used for scoring without ground truth."""
from __future__ import annotations

import numpy as np


def holdout_mask(n_points: int, fraction: float, seed: int, frame_index: int) -> np.ndarray:
    """Bool (n_points,) mask of the LiDAR points held out for evaluation (True = held out).

    Exactly ``round(fraction * n_points)`` points, drawn without replacement by
    ``numpy.random.default_rng([seed, frame_index])``: the same split for the same scan, seed and
    frame, whether made by ``kitti-to-bag --holdout-fraction``, by ``replay`` or by the training
    datasets (the ONE held-out split of the project).

    Raises:
        ValueError: a fraction outside [0, 1).
    """
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"holdout fraction must be in [0, 1), got {fraction}")
    mask = np.zeros(int(n_points), dtype=bool)
    k = int(round(fraction * n_points))
    if k:
        rng = np.random.default_rng([int(seed), int(frame_index)])
        mask[rng.choice(int(n_points), size=k, replace=False)] = True
    return mask
