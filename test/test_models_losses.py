"""The masked depth losses of models/losses.py (the one home of the models' losses), by hand.
The DenseDepth pieces of the same module are tested in test_densedepth.py."""
from __future__ import annotations

import math

import pytest
import torch

from depth_diffusion_ros.models.losses import (
    masked_l1,
    masked_l2,
    masked_mean,
    masked_rmse,
    silog_loss,
    valid_depth_mask,
    weighted_total,
)


def _maps():
    pred = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
    gt = torch.tensor([[[[2.0, 0.0], [1.0, 4.0]]]])  # one pixel without ground truth
    return pred, gt


def test_valid_depth_mask():
    _, gt = _maps()
    assert valid_depth_mask(gt).tolist() == [[[[True, False], [True, True]]]]
    mask = torch.tensor([[[[1.0, 1.0], [0.0, 0.9]]]])
    assert valid_depth_mask(gt, mask).tolist() == [[[[True, False], [False, True]]]]


def test_masked_pixel_losses_by_hand():
    pred, gt = _maps()
    m = valid_depth_mask(gt).float()
    # valid errors: -1 (1 vs 2), +2 (3 vs 1), 0 (4 vs 4)
    assert float(masked_l1(pred, gt, m)) == pytest.approx(3.0 / 3)
    assert float(masked_l2(pred, gt, m)) == pytest.approx(5.0 / 3)
    assert float(masked_rmse(pred, gt, m)) == pytest.approx(math.sqrt(5.0 / 3))
    assert float(masked_mean(pred, m)) == pytest.approx(8.0 / 3)
    # no valid pixel: 0, not NaN, and still differentiable
    pred.requires_grad_(True)
    zero = masked_l1(pred, gt, torch.zeros_like(m))
    zero.backward()
    assert float(zero.detach()) == 0.0 and pred.grad is not None and float(pred.grad.abs().sum()) == 0.0


def test_silog_by_hand():
    pred = torch.tensor([[[[2.0, 4.0, 5.0]]]])
    gt = torch.tensor([[[[1.0, 2.0, 0.0]]]])
    m = valid_depth_mask(gt).float()
    # g = log 2 on both valid pixels: mean(g^2) - 0.85 mean(g)^2 = 0.15 (log 2)^2
    expected = math.sqrt(0.15 * math.log(2) ** 2 + 1e-6) * 10.0
    assert float(silog_loss(pred, gt, m)) == pytest.approx(expected, rel=1e-5)
    # scale-invariant for variance_focus = 1
    assert float(silog_loss(pred * 3, gt, m, variance_focus=1.0)) == pytest.approx(
        float(silog_loss(pred, gt, m, variance_focus=1.0)), abs=1e-3)


def test_weighted_total():
    a = torch.tensor(2.0, requires_grad=True)
    out = weighted_total({"l1": a, "l2": a * 3}, {"l1": 1.0, "l2": 0.5})
    assert float(out["loss"].detach()) == pytest.approx(2.0 + 3.0)
    assert out["loss"].requires_grad and not out["l1"].requires_grad
    with pytest.raises(KeyError, match="missing parts \\['ddim'\\]"):
        weighted_total({"l1": a}, {"ddim": 1.0})
