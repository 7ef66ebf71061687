"""The standardized posterior-predictive distance: against a hand computation and NPE-PF's own formula."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from sbilab.diagnostics.predictive_distance import MIN_SD, standardized_distance


def test_matches_a_hand_computation() -> None:
    prior = [[0.0, 5.0, 1.0], [2.0, 5.0, 3.0], [4.0, 5.0, 2.0]]  # sds (n - 1): 2, 0 (→ 1), 1
    predictive = [[1.0, 6.0, 2.0], [3.0, 5.0, 0.0]]
    x_o = [1.0, 4.0, 1.0]
    # by hand: row 1 → sqrt(0² + 2² + 1²) = sqrt(5); row 2 → sqrt(1² + 1² + 1²) = sqrt(3)
    result = standardized_distance(np.array(predictive), np.array(x_o), np.array(prior))
    assert result.scale.tolist() == [2.0, 1.0, 1.0]
    assert result.per_simulation.tolist() == pytest.approx([math.sqrt(5), math.sqrt(3)])
    assert result.distance == pytest.approx((math.sqrt(5) + math.sqrt(3)) / 2)
    assert result.metrics()["ppc/standardized_distance"] == result.distance


def test_agrees_with_npe_pf_formula_on_random_data() -> None:
    """NPE-PF (eval_standardized_distance.py): torch.std of the prior predictive, sd < 1e-10 → 1, mean of norms."""
    generator = torch.Generator().manual_seed(0)
    prior_x = torch.randn(500, 7, generator=generator) * torch.tensor([30.0, 5.0, 0.2, 4.0, 80.0, 1.0, 0.0])
    predictive = torch.randn(300, 7, generator=generator) + 1.0
    x_o = torch.randn(7, generator=generator)
    means = prior_x.mean(dim=0, keepdim=True)
    stds = torch.std(prior_x, dim=0, keepdim=True)
    stds = torch.where(stds < 1e-10, torch.ones_like(stds), stds)
    expected = torch.mean(torch.norm((predictive - means) / stds - (x_o - means) / stds, dim=1))
    result = standardized_distance(predictive, x_o, prior_x)
    assert result.distance == pytest.approx(float(expected), rel=1e-5)
    assert result.scale[-1] == 1.0 and MIN_SD == 1e-10


def test_non_finite_simulations_are_left_out_and_counted() -> None:
    prior = np.array([[0.0, 1.0], [2.0, 3.0], [np.nan, 0.0], [4.0, 5.0]])
    predictive = np.array([[1.0, 1.0], [np.inf, 0.0]])
    result = standardized_distance(predictive, np.array([1.0, 3.0]), prior)
    assert (result.num_prior, result.num_invalid_prior, result.num_invalid_predictive) == (3, 1, 1)
    assert result.distance == pytest.approx(1.0)  # (0, -2) / (2, 2)
    with pytest.raises(ValueError, match="3 statistics"):
        standardized_distance(predictive, np.zeros(3), prior)
