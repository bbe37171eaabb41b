"""Depth metrics against numbers worked out by hand."""
from __future__ import annotations

import math

import numpy as np
import pytest

from depth_diffusion_ros.evaluation.metrics import (
    depth_metrics,
    garg_crop_mask,
    kitti_eigen_crop_mask,
    mean_metrics,
    nyu_eigen_crop_mask,
    to_kitti_units,
)

# pred = [1, 2, 4, 8], gt = [1, 1, 2.5, 8]
PRED = np.array([[1.0, 2.0], [4.0, 8.0]])
GT = np.array([[1.0, 1.0], [2.5, 8.0]])
EXPECTED = {
    # |p-g| = 0, 1, 1.5, 0 ; squares 0, 1, 2.25, 0 (sum 3.25)
    "rmse": math.sqrt(3.25 / 4),            # 0.9013878
    "mae": 2.5 / 4,                         # 0.625
    # 1/p = 1, .5, .25, .125 ; 1/g = 1, 1, .4, .125 ; |diff| = 0, .5, .15, 0
    "imae": 0.65 / 4,                       # 0.1625
    "irmse": math.sqrt((0.25 + 0.0225) / 4),  # 0.2610077
    # |p-g|/g = 0, 1, 0.6, 0
    "abs_rel": 1.6 / 4,                     # 0.4
    # (p-g)^2/g = 0, 1, 0.9, 0
    "sq_rel": 1.9 / 4,                      # 0.475
    # ln(p/g) = 0, ln 2 = 0.6931472, ln 1.6 = 0.4700036, 0
    "rmse_log": math.sqrt((0.6931472**2 + 0.4700036**2) / 4),  # 0.418735
    # log10(p/g) = 0, 0.30103, 0.20412, 0
    "log10": (0.30103 + 0.20412) / 4,       # 0.1262875
    # max ratio = 1, 2, 1.6, 1 ; 1.25, 1.5625, 1.953125
    "delta1": 0.5,
    "delta2": 0.5,
    "delta3": 0.75,
}


@pytest.mark.parametrize("key", sorted(EXPECTED))
def test_each_metric_by_hand(key):
    m = depth_metrics(PRED, GT)
    assert m[key] == pytest.approx(EXPECTED[key], rel=1e-5, abs=1e-7)
    assert m["n_valid"] == 4


def test_hand_numbers_literal():
    m = depth_metrics(PRED, GT)
    assert m["rmse"] == pytest.approx(0.9013878, abs=1e-6)
    assert m["irmse"] == pytest.approx(0.2610077, abs=1e-6)
    assert m["rmse_log"] == pytest.approx(0.418735, abs=1e-6)


def test_invalid_gt_is_ignored():
    pred = np.array([[1.0, 2.0, 5.0, 7.0], [4.0, 8.0, 3.0, 9.0]])
    gt = np.array([[1.0, 1.0, 0.0, np.nan], [2.5, 8.0, -1.0, np.inf]])
    m = depth_metrics(pred, gt)
    assert m["n_valid"] == 4
    assert m["rmse"] == pytest.approx(EXPECTED["rmse"])
    assert m["delta3"] == pytest.approx(0.75)


def test_valid_mask_and_max_depth():
    mask = np.array([[True, True], [False, True]])
    m = depth_metrics(PRED, GT, valid_mask=mask)
    assert m["n_valid"] == 3
    assert m["mae"] == pytest.approx(1.0 / 3)  # |diff| 0, 1, 0
    # max_depth=5 drops gt=8; pred is clipped to 5 as well
    m2 = depth_metrics(np.array([1.0, 9.0, 8.0]), np.array([1.0, 4.0, 8.0]), max_depth=5.0)
    assert m2["n_valid"] == 2
    assert m2["mae"] == pytest.approx(0.5)  # |1-1|, |5-4|


def test_pred_clipped_to_min_depth():
    # pred 0 and NaN count as min_depth=0.5: errors |0.5-1| = 0.5 and |0.5-2| = 1.5
    m = depth_metrics(np.array([0.0, np.nan]), np.array([1.0, 2.0]), min_depth=0.5)
    assert m["mae"] == pytest.approx(1.0)
    assert m["imae"] == pytest.approx((1.0 + 1.5) / 2)  # |2-1|, |2-0.5|


def test_errors():
    with pytest.raises(ValueError, match="no valid"):
        depth_metrics(np.ones((2, 2)), np.zeros((2, 2)))
    with pytest.raises(ValueError, match="no valid"):
        depth_metrics(np.ones((2, 2)), np.ones((2, 2)), valid_mask=np.zeros((2, 2), bool))
    with pytest.raises(ValueError, match="shape"):
        depth_metrics(np.ones((2, 2)), np.ones((2, 3)))
    with pytest.raises(ValueError, match="at least one"):
        mean_metrics([])


def test_kitti_units_and_mean():
    m = depth_metrics(PRED, GT)
    k = to_kitti_units(m)
    assert k["rmse_mm"] == pytest.approx(901.3878, abs=1e-3)
    assert k["imae_1_km"] == pytest.approx(162.5)
    assert k["delta1"] == 0.5 and k["n_valid"] == 4
    perfect = depth_metrics(GT, GT)
    assert perfect["rmse"] == 0 and perfect["delta1"] == 1.0
    avg = mean_metrics([m, perfect])
    assert avg["rmse"] == pytest.approx(EXPECTED["rmse"] / 2)
    assert avg["delta3"] == pytest.approx(0.875)
    assert avg["n_valid"] == 8


def test_crop_masks():
    nyu = nyu_eigen_crop_mask(480, 640)
    rows = np.nonzero(nyu.any(axis=1))[0]
    cols = np.nonzero(nyu.any(axis=0))[0]
    assert (rows[0], rows[-1] + 1, cols[0], cols[-1] + 1) == (45, 471, 41, 601)
    assert nyu.sum() == (471 - 45) * (601 - 41)
    garg = garg_crop_mask(375, 1242)
    rows = np.nonzero(garg.any(axis=1))[0]
    cols = np.nonzero(garg.any(axis=0))[0]
    # int(0.40810811*375)=153, int(0.99189189*375)=371, int(0.03594771*1242)=44, int(0.96405229*1242)=1197
    assert (rows[0], rows[-1] + 1, cols[0], cols[-1] + 1) == (153, 371, 44, 1197)
    eigen = kitti_eigen_crop_mask(375, 1242)
    rows = np.nonzero(eigen.any(axis=1))[0]
    # int(0.3324324*375)=124, int(0.91351351*375)=342
    assert (rows[0], rows[-1] + 1) == (124, 342)
