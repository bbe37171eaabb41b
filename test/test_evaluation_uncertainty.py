"""Sparsification curves and AUSE (depth_diffusion_ros.evaluation.uncertainty)."""
from __future__ import annotations

import numpy as np
import pytest

from depth_diffusion_ros.evaluation.uncertainty import sparsification


def test_an_uncertainty_equal_to_the_error_is_the_oracle():
    rng = np.random.default_rng(0)
    err = rng.normal(size=5000) * rng.uniform(0.1, 3.0, size=5000)
    s = sparsification(err, np.abs(err))
    np.testing.assert_allclose(s.model, s.oracle)
    assert s.ause == pytest.approx(0.0, abs=1e-12) and s.aurg > 0.3
    assert s.model[0] == pytest.approx(1.0) and np.all(np.diff(s.oracle) <= 1e-12)  # removing the worst first
    assert s.rmse == pytest.approx(float(np.sqrt(np.mean(err ** 2)))) and s.n == 5000


def test_noisy_uncertainty_lies_between_oracle_and_chance_and_reversed_is_worse_than_chance():
    rng = np.random.default_rng(1)
    sigma = rng.uniform(0.1, 3.0, size=20000)
    err = rng.normal(size=20000) * sigma
    informative = sparsification(err, sigma)  # knows each pixel's error scale, not its draw
    assert 0.0 < informative.ause and informative.aurg > 0.1
    blind = sparsification(err, rng.random(20000))
    assert abs(blind.aurg) < 0.05 and blind.ause > informative.ause
    reversed_ = sparsification(err, -sigma)
    assert reversed_.aurg < -0.1


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="must be equal"):
        sparsification(np.zeros(3), np.zeros(4))
    with pytest.raises(ValueError, match="finite"):
        sparsification(np.array([1.0, np.nan]), np.zeros(2))
