"""Is a per-pixel uncertainty informative? Sparsification curves and AUSE.

Sparsification (Ilg et al., "Uncertainty Estimates and Multi-Hypotheses Networks for Optical
Flow", ECCV 2018, Sec. 5.2): remove the pixels the method is least sure of first, a fraction at a
time, and follow the error of the pixels left. The *oracle* removes the truly worst pixels first
(the best any uncertainty could do); a *random* order leaves the error flat in expectation.
AUSE, the area between the method's curve and the oracle's, and AURG, the area between the random
order and the method's curve, are the summaries of Poggi et al., "On the Uncertainty of
Self-Supervised Monocular Depth Estimation", CVPR 2020, Sec. 5 (here on RMSE, with the curves
normalised by the RMSE of all pixels so sets of different difficulty compare).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Fractions of pixels removed, 0 .. 0.98 in steps of 0.02 (as Poggi et al.'s evaluation code).
DEFAULT_FRACTIONS = np.round(np.arange(0.0, 1.0, 0.02), 2)


@dataclass(frozen=True)
class Sparsification:
    """Normalised RMSE curves (fraction removed -> RMSE of the rest / RMSE of all) and their areas.

    fractions, model, oracle: (F,) arrays; random: the flat expected curve (all ones);
    ause = mean(model - oracle); aurg = mean(random - model) (> 0: better than chance);
    rmse: RMSE of all pixels (the input's units); n: pixel count.
    """

    fractions: np.ndarray
    model: np.ndarray
    oracle: np.ndarray
    ause: float
    aurg: float
    rmse: float
    n: int


def _rmse_left(sq_err_sorted: np.ndarray, fractions: np.ndarray) -> np.ndarray:
    """RMSE of the pixels kept after removing the first ``fraction`` of ``sq_err_sorted``."""
    n = len(sq_err_sorted)
    tail_sums = np.cumsum(sq_err_sorted[::-1])[::-1]  # tail_sums[k] = sum of elements k..n-1
    starts = np.minimum((fractions * n).astype(np.int64), n - 1)
    return np.sqrt(tail_sums[starts] / (n - starts))


def sparsification(error: np.ndarray, uncertainty: np.ndarray,
                   fractions: np.ndarray = DEFAULT_FRACTIONS) -> Sparsification:
    """The RMSE sparsification curves of ``error`` ordered by ``uncertainty``.

    error: (N,) prediction - GT at the pixels with GT (any units); uncertainty: (N,) the method's
    per-pixel uncertainty (larger = less sure; only its order matters). Ties are broken by pixel
    order, so a constant uncertainty behaves as one fixed arbitrary order.
    Raises ValueError when the arrays differ in length, are empty, or hold non-finite values.
    """
    error = np.asarray(error, np.float64).ravel()
    uncertainty = np.asarray(uncertainty, np.float64).ravel()
    if error.shape != uncertainty.shape or error.size == 0:
        raise ValueError(f"error {error.shape} and uncertainty {uncertainty.shape} must be equal, non-empty")
    if not (np.isfinite(error).all() and np.isfinite(uncertainty).all()):
        raise ValueError("error and uncertainty must be finite")
    fractions = np.asarray(fractions, np.float64)
    sq = np.square(error)
    rmse = float(np.sqrt(sq.mean()))
    scale = rmse if rmse > 0 else 1.0
    model = _rmse_left(sq[np.argsort(-uncertainty, kind="stable")], fractions) / scale
    oracle = _rmse_left(np.sort(sq)[::-1], fractions) / scale
    return Sparsification(fractions, model, oracle, float(np.mean(model - oracle)), float(np.mean(1.0 - model)),
                          rmse, int(error.size))
